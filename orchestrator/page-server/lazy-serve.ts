// The serving side of criu's lazy pages. For dump --lazy-pages (post-copy migration) the
// pages of lazy VMAs are not written; they are copied out of the frozen tasks into the
// dump's own memory (LazyPageStore), and once the images are complete and the tasks
// gone, the dump serves them to one lazy-pages daemon (criu's uffd.c, or tscriu's) in
// criu's page-server protocol until it closes (LazyPagesServer).
//
// criu keeps those pages in page pipes (vmsplice) and serves them while the tasks are
// still frozen, killing or resuming them afterwards. tscriu has no parasite to vmsplice
// with: it copies the pages (process_vm_readv) and lets the tasks go first, so that a
// restore on the same host finds their pids free. page-server --lazy-pages serves the
// same session from a dump on disk (ImagePageStore, lazy-images.ts).
//
// The session is criu's and as synchronous: a PS_IOV_GET {pid, vaddr, nr_pages} is
// answered by PS_IOV_ADD_F|PE_PRESENT {n, vaddr, pid} and n pages, n at most what was
// asked and as many as the held pages run on without a gap from vaddr (criu stops at the
// end of the page pipe's iovec). A GET nothing is held for ends the session with an
// error, as criu's server does; so do an unknown command, a pid not dumped and a header
// cut short. Answers are sent from the store's buffers whatever a header asks: a huge
// nr_pages allocates nothing. A connection that ends without PS_IOV_CLOSE is an error
// too (criu's server takes it as the end): the daemon died, and the restore with it.

import { bridge } from "../../host-bridge/load.js";
import { PE_PRESENT } from "../../images/pages.js";
import { signalReady } from "../cli/daemon.js";
import type { ModuleLog } from "../log.js";
import { HeaderReader } from "./headers.js";
import { type Channel, listenTcp, PlainChannel, tcpOption, TlsChannel, type TlsOptions } from "./channel.js";
import { peerName } from "./send.js";
import { commandName, decodeDst, encodeHeader, lazyLayoutOf, PS_IOV, type Header, type Layout } from "./wire.js";

const PAGE = 4096;
const TCP_CORK = 3;

/** A run of lazy pages a server holds: `pages` pages from `vaddr`. */
export interface LazyRun {
  vaddr: number;
  pages: number;
}

/** Pages copied out of a task: its data at buf[off, off + pages * 4096). */
export interface HeldRun extends LazyRun {
  buf: Buffer;
  off: number;
}

/**
 * What answers a GET: `pages` pages whose data are `pieces` one after another. A piece may
 * be a buffer the store reuses: it stays good until two more pieces have been taken.
 */
export interface Found {
  pages: number;
  pieces: Iterable<Buffer>;
}

/**
 * The lazy pages of every task a server serves, by pid, in address order; where their
 * data are is the subclass's (the dump's memory, or the images' pages files).
 */
export abstract class LazyRuns<R extends LazyRun> {
  private readonly tasks = new Map<number, R[]>();
  /** pages held */
  pages = 0;

  /** The data of `n` pages of `r`, from its page `skip` on. */
  protected abstract data(r: R, skip: number, n: number): Iterable<Buffer>;

  /** Holds a task's runs (in address order, as a capture or a pagemap gives them). */
  hold(pid: number, runs: readonly R[]): void {
    const list = this.tasks.get(pid) ?? [];
    for (const r of runs) {
      const last = list[list.length - 1];
      if (last && r.vaddr < last.vaddr + last.pages * PAGE) throw new RangeError(`lazy pages of pid ${pid}: the run at 0x${r.vaddr.toString(16)} comes before the end of the one at 0x${last.vaddr.toString(16)}`);
      list.push(r);
      this.pages += r.pages;
    }
    this.tasks.set(pid, list);
  }

  get pids(): number[] {
    return [...this.tasks.keys()];
  }

  has(pid: number): boolean {
    return this.tasks.has(pid);
  }

  /**
   * The held pages from `vaddr` on, at most `want`, as far as they run without a gap; a
   * reason when the page at `vaddr` is not held. The data are read as the pieces are taken.
   */
  find(pid: number, vaddr: bigint, want: bigint): Found | string {
    const runs = this.tasks.get(pid);
    if (!runs) return `pid ${pid} is not a task of this dump`;
    if (vaddr % BigInt(PAGE) !== 0n) return `0x${vaddr.toString(16)} is not a page address`;
    if (vaddr > BigInt(Number.MAX_SAFE_INTEGER)) return `pid ${pid} holds no lazy page at 0x${vaddr.toString(16)}`;
    const at = Number(vaddr);
    // the last run starting at or below the address
    let lo = 0;
    let hi = runs.length - 1;
    let i = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (runs[mid]!.vaddr <= at) {
        i = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const first = runs[i];
    if (!first || first.vaddr + first.pages * PAGE <= at) return `pid ${pid} holds no lazy page at 0x${vaddr.toString(16)}`;
    const parts: { r: R; skip: number; n: number }[] = [];
    let pages = 0;
    let next = at;
    for (let j = i; j < runs.length && BigInt(pages) < want; j++) {
      const r = runs[j]!;
      if (r.vaddr > next) break;
      const skip = (next - r.vaddr) / PAGE;
      const n = Math.min(r.pages - skip, Number(want - BigInt(pages)));
      parts.push({ r, skip, n });
      pages += n;
      next += n * PAGE;
    }
    const data = (r: R, skip: number, n: number): Iterable<Buffer> => this.data(r, skip, n);
    return {
      pages,
      pieces: (function* () {
        for (const p of parts) yield* data(p.r, p.skip, p.n);
      })(),
    };
  }
}

/** The lazy pages of a dump --lazy-pages, as the frozen tasks held them (copied into the dump's memory). */
export class LazyPageStore extends LazyRuns<HeldRun> {
  protected data(r: HeldRun, skip: number, n: number): Iterable<Buffer> {
    const from = r.off + skip * PAGE;
    return [r.buf.subarray(from, from + n * PAGE)];
  }
}

export interface LazyServeOptions {
  /** where to listen (criu: any IPv4 address) */
  address?: string | undefined;
  port?: number | undefined;
  /** --ps-socket: a connection to the daemon already made */
  psSocket?: number | undefined;
  tls?: TlsOptions | undefined;
}

export interface LazyServeResult {
  peer: string;
  requests: number;
  pagesSent: number;
}

/**
 * The listening side: bound when made (before the tasks are frozen, so that a port in use
 * fails the dump while the tasks are still untouched), one connection accepted by serve().
 */
export class LazyPagesServer {
  private constructor(
    private listenFd: number | undefined,
    /** the port listened on (the kernel's pick for --port 0) */
    readonly port: number,
    private readonly o: LazyServeOptions,
    private readonly log: ModuleLog,
  ) {}

  static listen(o: LazyServeOptions, log: ModuleLog): LazyPagesServer {
    if (o.psSocket !== undefined) return new LazyPagesServer(undefined, 0, o, log);
    let l;
    try {
      l = listenTcp(o.address, o.port ?? 0);
    } catch (e) {
      throw new Error(`lazy pages: cannot listen on ${o.address ?? "0.0.0.0"} port ${o.port ?? 0}: ${(e as Error).message}`, { cause: e });
    }
    log.info(`lazy pages will be served on ${o.address ?? "0.0.0.0"} port ${l.port}`);
    return new LazyPagesServer(l.fd, l.port, o, log);
  }

  /** "127.0.0.1 port 40000", or the --ps-socket */
  get where(): string {
    return this.o.psSocket !== undefined ? `--ps-socket ${this.o.psSocket}` : `${this.o.address ?? "0.0.0.0"} port ${this.port}`;
  }

  /** Lets the port go unused (the dump failed before serving). */
  close(): void {
    if (this.listenFd !== undefined) bridge().close(this.listenFd);
    this.listenFd = undefined;
  }

  /**
   * Waits for the lazy-pages daemon (after the ready byte on `statusFd`, criu's
   * status_ready), serves `store` to it until it closes, and returns what was served.
   */
  async serve(store: LazyRuns<LazyRun>, statusFd: number | undefined): Promise<LazyServeResult> {
    const b = bridge();
    let conn: number;
    let peer: string;
    this.log.info(`serving ${store.pages} lazy pages of pid ${store.pids.join(", ")} on ${this.where}`);
    signalReady(statusFd);
    if (this.listenFd === undefined) {
      conn = this.o.psSocket!;
      peer = `--ps-socket ${conn} (${peerName(conn)})`;
    } else {
      try {
        conn = b.accept(this.listenFd);
      } catch (e) {
        throw new Error(`lazy pages: cannot accept a connection on ${this.where}: ${(e as Error).message}`, { cause: e });
      } finally {
        this.close();
      }
      peer = peerName(conn);
      this.log.info(`lazy pages: accepted a connection from ${peer}`);
    }
    let ch: Channel | undefined;
    try {
      if (this.o.tls) {
        ch = await TlsChannel.open(conn, "server", this.o.address, this.o.tls);
        this.log.info(`lazy pages: TLS session with ${peer} set up, its certificate verified`);
      } else {
        tcpOption(conn, TCP_CORK);
        ch = new PlainChannel(conn, this.o.psSocket !== undefined);
      }
      const r = await serveLazy(ch, peer, store, this.log);
      await ch.end().catch(() => undefined);
      ch.close();
      return r;
    } catch (e) {
      if (ch) ch.abort();
      // a TLS channel that failed to open has closed the socket already
      else if (this.o.psSocket === undefined && !this.o.tls) b.close(conn);
      throw e;
    }
  }
}

/**
 * Serves `store` on an open channel until the daemon's CLOSE; what was served. The
 * channel is not ended here.
 */
export async function serveLazy(ch: Channel, peer: string, store: LazyRuns<LazyRun>, log: ModuleLog): Promise<LazyServeResult> {
  const r = await new LazySession(ch, peer, store, log).run();
  log.info(`lazy pages: session with ${peer} over: ${r.pagesSent} pages sent in ${r.requests} answers`);
  return r;
}

class LazySession {
  private layout: Layout | undefined;
  private headers: HeaderReader | undefined;
  private requests = 0;
  private pagesSent = 0;
  private last = "the first header";

  constructor(
    private readonly ch: Channel,
    private readonly peer: string,
    private readonly store: LazyRuns<LazyRun>,
    private readonly log: ModuleLog,
  ) {}

  private fail(h: Header | undefined, why: string): never {
    throw new Error(`lazy pages: ${this.peer}, ${h ? commandName(h.cmd) : this.last}: ${why}`);
  }

  /** The next header, or undefined when the peer closed between headers. */
  private header(): Promise<Header | undefined> {
    this.headers ??= new HeaderReader(this.ch, lazyLayoutOf, (why) => this.fail(undefined, why), (l) => {
      this.layout = l;
      this.log.info(`lazy pages: ${this.peer} speaks ${l}-byte headers (criu ${l === 24 ? "up to 4.1" : "4.2"})`);
    });
    return this.headers.next();
  }

  async run(): Promise<LazyServeResult> {
    for (;;) {
      const h = await this.header();
      if (h === undefined) {
        this.fail(undefined, `the connection closed without ${commandName(PS_IOV.CLOSE)} after ${this.requests} answers (${this.pagesSent} of ${this.store.pages} lazy pages sent): the restore there did not finish`);
      }
      this.last = commandName(h.cmd);
      switch (h.cmd) {
        case PS_IOV.GET:
          await this.get(h);
          break;
        case PS_IOV.PARENT: {
          // tscriu's client probes the header layout with it (send.ts); a lazy dump has no parent here
          if (!decodeDst(h.dstId)) this.fail(h, `dst_id 0x${h.dstId.toString(16)} names no pagemap type criu knows`);
          this.ch.send(Buffer.alloc(4));
          await this.ch.flush();
          break;
        }
        case PS_IOV.CLOSE:
        case PS_IOV.FORCE_CLOSE: {
          this.ch.send(Buffer.alloc(4));
          await this.ch.flush();
          // as criu, the peer closes first (its side keeps the TIME_WAIT)
          if (h.cmd === PS_IOV.CLOSE && (await this.ch.recvFull(Buffer.alloc(1))) !== 0) this.log.warn(`lazy pages: ${this.peer} sent data after ${commandName(PS_IOV.CLOSE)}`);
          return { peer: this.peer, requests: this.requests, pagesSent: this.pagesSent };
        }
        default:
          this.fail(h, `not a command a lazy-pages server answers (${commandName(PS_IOV.GET)}, ${commandName(PS_IOV.CLOSE)})`);
      }
    }
  }

  private async get(h: Header): Promise<void> {
    const where = `pid ${h.dstId}, 0x${h.vaddr.toString(16)}`;
    if (h.dstId > BigInt(Number.MAX_SAFE_INTEGER) || !this.store.has(Number(h.dstId))) this.fail(h, `${where}: pid ${h.dstId} is not a task of this dump (${this.store.pids.join(", ")})`);
    if (h.nrPages === 0n) this.fail(h, `${where}: 0 pages asked`);
    const found = this.store.find(Number(h.dstId), h.vaddr, h.nrPages);
    if (typeof found === "string") this.fail(h, `${where}, ${h.nrPages} pages: ${found}`);
    this.ch.send(encodeHeader(this.layout!, { cmd: PS_IOV.ADD_F, flags: PE_PRESENT, nrPages: BigInt(found.pages), vaddr: h.vaddr, dstId: h.dstId }));
    // Each piece goes out on the thread pool while the next is read (a piece stays good
    // until two more are taken: see Found); the send before it is awaited first.
    const pieces = found.pieces[Symbol.iterator]();
    let sending: Promise<void> | undefined;
    try {
      for (;;) {
        let p: IteratorResult<Buffer>;
        try {
          p = pieces.next();
        } catch (e) {
          // the data could not be read (a pages file cut short): the daemon gets no more
          this.fail(h, `${where}: ${(e as Error).message}`);
        }
        if (p.done) break;
        await sending;
        sending = this.ch.sendAsync(p.value);
      }
    } finally {
      await sending?.catch(() => undefined);
    }
    await sending;
    await this.ch.flush();
    this.requests++;
    this.pagesSent += found.pages;
    this.log.debug(`lazy pages: ${where}: ${found.pages} of ${h.nrPages} pages sent`);
  }
}
