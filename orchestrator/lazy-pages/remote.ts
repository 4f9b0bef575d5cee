// Where a lazy-pages daemon started with --page-server gets its pages: the page server
// of a `dump --lazy-pages`, asked with criu's PS_IOV_GET (page-server/fetch.ts speaks it).

import { PageFetcher, type FetchOptions } from "../page-server/fetch.js";
import type { ModuleLog } from "../log.js";

/** An answer: the server may send fewer pages than were asked for, never more. */
export interface LazyPages {
  vaddr: bigint;
  nrPages: number;
  data: Buffer;
}

export interface LazySource {
  /** asks for `nrPages` pages of task `pid` from `vaddr`; answers come in the order asked */
  get(pid: number, vaddr: bigint, nrPages: number): Promise<LazyPages>;
  /** an answer's data, used: its memory may take a later answer */
  recycle(data: Buffer): void;
  /** the connection failed or closed under the requests */
  onError(cb: (e: Error) => void): void;
  /** tells the server the transfer is over, and closes */
  close(): Promise<void>;
}

/** The dump's page server through page-server/fetch.ts's pipelined client. */
export async function connectLazySource(o: FetchOptions, log: ModuleLog): Promise<LazySource> {
  const f = await PageFetcher.connect(o, log);
  log.info(`fetching lazy pages from ${f.peer} (${f.layout}-byte headers${o.tls ? "; TLS, the server's certificate verified" : ""})`);
  return {
    get: (pid, vaddr, nrPages) => f.get(pid, vaddr, nrPages),
    recycle: (data) => f.recycle(data),
    onError: (cb) => {
      void f.lost.then((e) => {
        if (e) cb(e);
      });
    },
    close: () => f.close(),
  };
}
