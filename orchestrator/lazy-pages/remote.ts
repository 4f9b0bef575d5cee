// Where a lazy-pages daemon started with --page-server gets its pages: the page server
// of a `dump --lazy-pages`, asked with criu's PS_IOV_GET (page-server/fetch.ts speaks it).

/** An answer: the server may send fewer pages than were asked for, never more. */
export interface LazyPages {
  vaddr: bigint;
  nrPages: number;
  data: Buffer;
}

export interface LazySource {
  /** asks for `nrPages` pages of task `pid` from `vaddr`; answers come in the order asked */
  get(pid: number, vaddr: bigint, nrPages: number): Promise<LazyPages>;
  /** the connection failed or closed under the requests */
  onError(cb: (e: Error) => void): void;
  /** tells the server the transfer is over, and closes */
  close(): Promise<void>;
}
