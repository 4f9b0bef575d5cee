// The dump's side of the page server (dump/pre-dump --page-server): one TCP connection
// for the whole dump, a pagemap opened on it per task (PS_IOV_OPEN2) and per shared
// memory object, each run of pages sent as PS_IOV_ADD_F with its data behind it, and
// PS_IOV_CLOSE at the end, answered once the server has everything. The other images
// stay in the dump's own images dir, as with criu.
//
// The socket is corked (full segments) and pushed with TCP_NODELAY where an answer is
// awaited: after OPEN2, PARENT and CLOSE. criu does not push its CLOSE, and the corked
// header waits for the kernel's 200 ms cork timer while the task may still be frozen.
//
// Which header layout the server reads (24 bytes up to criu 4.1, 32 from criu 4.2) is
// asked at connect with a probe: a PS_IOV_PARENT in the 24-byte layout, for a pagemap id
// no dump uses. A 24-byte server answers it at once; a 32-byte one waits for 8 more
// bytes, which are then sent, chosen so that the whole is the same PARENT in its layout.
// Should a 24-byte server be slower than PROBE_MS to answer, those 8 bytes begin a
// header with an unknown command: it stops, and the dump fails saying so (never a
// silent mix of layouts).

import { lookup } from "node:dns/promises";
import { bridge } from "../../host-bridge/load.js";
import { PE_PRESENT } from "../../images/pages.js";
import { addrWordsOf, parseSockaddr, showAddr, sockaddr } from "../fds/inet-common.js";
import type { ModuleLog } from "../log.js";
import type { PagemapRun, PageTransport } from "../dump/pagewriter.js";
import { commandName, encodeDst, encodeHeader, PS_IOV, type Header, type Layout, type PagemapKind } from "./wire.js";

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const TCP_CORK = 3;
const PAGE = 4096;
/** How long a 24-byte server may take to answer the probe. */
const PROBE_MS = 500;
/** The probe's pagemap id: type 1, id 0xff; as the start of a 24-byte header it reads as command 0xff01. */
const PROBE_DST = encodeDst("pid", 0xff);
/** How long the server may take to answer a command (its CLOSE answer waits for its fsync). */
const ANSWER_MS = 120_000;
/** Bytes gathered before a send (see PageServerClient.queue). */
const OUTBOX = 1 << 20;
/** Data up to this size is gathered with the headers; larger pieces are sent from where they are. */
const SMALL_DATA = 64 << 10;
/** Most pages one header carries (a 24-byte header's u32, in whole pages). */
const MAX_RUN = 0xfffff000;

export interface PageServerAddress {
  /** host name or address; criu's default is the loopback */
  address?: string | undefined;
  port?: number | undefined;
  /** --ps-socket: an fd already connected to the server */
  psSocket?: number | undefined;
}

/** Sets a TCP option to 1; a --ps-socket that is no TCP socket (a unix socketpair) has none, and needs none. */
function tcpOption(fd: number, name: number): void {
  try {
    bridge().setsockoptInts(fd, Int32Array.of(IPPROTO_TCP, name, 1));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EOPNOTSUPP") throw e;
  }
}

/** "127.0.0.1:27" or "[::1]:27": the other end of a connected socket. */
export function peerName(fd: number): string {
  try {
    const p = parseSockaddr(bridge().peerName(fd)!);
    return showAddr(p.family, [0, 4, 8, 12].map((o) => p.addr.readUInt32LE(o)), p.port);
  } catch {
    return `fd ${fd}`;
  }
}

export class PageServerClient {
  private readonly b = bridge();
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly peer: string,
    readonly layout: Layout,
    /** the fd came with --ps-socket: the session ends with FORCE_CLOSE, the fd stays the caller's to close */
    private readonly given: boolean,
    private readonly log: ModuleLog,
  ) {}

  /** Connects (or takes --ps-socket) and learns the server's header layout. */
  static async connect(to: PageServerAddress, log: ModuleLog): Promise<PageServerClient> {
    const b = bridge();
    let fd: number;
    let peer: string;
    if (to.psSocket !== undefined) {
      fd = to.psSocket;
      peer = `--ps-socket ${fd} (${peerName(fd)})`;
    } else {
      if (to.port === undefined || to.port <= 0 || to.port > 65535) throw new Error("--page-server needs the server's --port (1-65535)");
      fd = await connectTcp(to.address, to.port, log);
      peer = peerName(fd);
    }
    try {
      tcpOption(fd, TCP_CORK);
      const layout = probeLayout(fd, peer);
      log.info(`page server ${peer}: ${layout}-byte headers (criu ${layout === 24 ? "up to 4.1" : "4.2"})`);
      return new PageServerClient(fd, peer, layout, to.psSocket !== undefined, log);
    } catch (e) {
      if (to.psSocket === undefined) b.close(fd);
      throw e;
    }
  }

  /**
   * Headers and small pieces of data are gathered here and sent together: a pass of
   * pages written here and there is thousands of short runs, a header and a page or two
   * each, and a send each was most of its time.
   */
  private readonly outbox = Buffer.allocUnsafe(OUTBOX);
  private queued = 0;

  private send(h: Header): void {
    this.queue(encodeHeader(this.layout, h));
  }

  private queue(bytes: Uint8Array): void {
    if (this.queued + bytes.length > OUTBOX) this.flush();
    this.outbox.set(bytes, this.queued);
    this.queued += bytes.length;
  }

  private flush(): void {
    if (this.queued === 0) return;
    this.b.sendFull(this.fd, this.outbox.subarray(0, this.queued));
    this.queued = 0;
  }

  sendData(buf: Uint8Array): void {
    if (buf.length <= SMALL_DATA) return this.queue(buf);
    this.flush();
    this.b.sendFull(this.fd, buf);
  }

  /** Sends what is gathered and pushes what is corked: an answer is awaited. */
  private push(): void {
    this.flush();
    tcpOption(this.fd, TCP_NODELAY);
  }

  private answer(len: 1 | 4, what: number): number {
    const buf = Buffer.alloc(len);
    const got = this.b.recvFull(this.fd, buf, ANSWER_MS);
    if (got !== len) throw new Error(`the page server ${this.peer} closed the connection instead of answering ${commandName(what)}`);
    return len === 1 ? buf[0]! : buf.readInt32LE(0);
  }

  /** PS_IOV_PARENT: whether the server's parent images have this pagemap. */
  hasParent(kind: PagemapKind, id: number): boolean {
    this.send({ cmd: PS_IOV.PARENT, flags: 0, nrPages: 0n, vaddr: 0n, dstId: encodeDst(kind, id) });
    this.push();
    const r = this.answer(4, PS_IOV.PARENT);
    if (r < 0) throw new Error(`the page server ${this.peer} could not look for its parent's ${kind === "pid" ? `pagemap-${id}.img` : `pagemap-shmem-${id}.img`}`);
    return r === 1;
  }

  /** PS_IOV_OPEN2: the pagemap's pages go to the server from here. */
  open(kind: PagemapKind, id: number): RemotePages {
    const dstId = encodeDst(kind, id);
    this.send({ cmd: PS_IOV.OPEN2, flags: 0, nrPages: 0n, vaddr: 0n, dstId });
    this.push();
    const hasParent = this.answer(1, PS_IOV.OPEN2) !== 0;
    this.log.debug(`page server: ${kind} ${id} opened${hasParent ? " (the server has its parent)" : ""}`);
    return new RemotePages(this, dstId, hasParent);
  }

  header(h: Header): void {
    this.send(h);
  }

  /** PS_IOV_CLOSE: the server answers once it has every page (on disk, for tscriu's server). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.send({ cmd: this.given ? PS_IOV.FORCE_CLOSE : PS_IOV.CLOSE, flags: 0, nrPages: 0n, vaddr: 0n, dstId: 0n });
      this.push();
      const status = this.answer(4, PS_IOV.CLOSE);
      if (status !== 0) throw new Error(`the page server ${this.peer} answered the close with status ${status}`);
    } finally {
      if (!this.given) this.b.close(this.fd);
    }
  }

  /** After a failure: the connection goes without a CLOSE, and the server drops what it got. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.given) this.b.close(this.fd);
    else this.b.shutdown(this.fd, 2);
  }
}

async function connectTcp(address: string | undefined, port: number, log: ModuleLog): Promise<number> {
  const b = bridge();
  const names = address === undefined ? ["127.0.0.1", "::1"] : addrWordsOf(address) ? [address] : (await lookup(address, { all: true }).catch(() => [])).map((a) => a.address);
  if (names.length === 0) throw new Error(`the page server's address ${address} does not resolve`);
  const why: string[] = [];
  for (const a of names) {
    const words = addrWordsOf(a)!;
    const family = words.length === 1 ? AF_INET : AF_INET6;
    const fd = b.socket(family, SOCK_STREAM, IPPROTO_TCP);
    try {
      b.connectAddr(fd, sockaddr(family, port, words));
      log.info(`connected to the page server ${showAddr(family, words, port)}`);
      return fd;
    } catch (e) {
      b.close(fd);
      why.push(`${showAddr(family, words, port)}: ${(e as Error).message}`);
    }
  }
  throw new Error(`cannot connect to the page server: ${why.join("; ")}`);
}

/** The probe described at the top: returns the layout the server reads. */
function probeLayout(fd: number, peer: string): Layout {
  const b = bridge();
  const probe = { cmd: PS_IOV.PARENT, flags: 0, nrPages: 0n, vaddr: 0n, dstId: PROBE_DST };
  b.sendFull(fd, encodeHeader(24, probe));
  tcpOption(fd, TCP_NODELAY);
  const answer = Buffer.alloc(4);
  let layout: Layout = 24;
  try {
    if (b.recvFull(fd, answer, PROBE_MS) !== 4) throw new Error(`the page server ${peer} closed the connection at once`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ETIMEDOUT") throw e;
    // A 32-byte server: these bytes make the probe a whole PARENT for the same pagemap.
    const rest = Buffer.alloc(8);
    rest.writeBigUInt64LE(PROBE_DST);
    b.sendFull(fd, rest);
    layout = 32;
    if (b.recvFull(fd, answer, ANSWER_MS) !== 4) throw new Error(`the page server ${peer} closed the connection instead of answering ${commandName(PS_IOV.PARENT)}`);
  }
  return layout;
}

/**
 * One pagemap on the server (PageTransport): runs are sent in order, each PE_PRESENT
 * run's header just before its data. Runs come before their data (the dump's writers
 * call run() first) and may be queued until the data arrives; adjacent runs with the
 * same flags become one while their header is not sent yet.
 */
export class RemotePages implements PageTransport {
  private readonly queue: PagemapRun[] = [];
  /** bytes of the head run's data still to come (its header is sent once this is set) */
  private owed = 0;
  private readonly runs: PagemapRun[] = [];
  writeNs = 0n;

  constructor(
    private readonly client: PageServerClient,
    private readonly dstId: bigint,
    /** the server has a parent for this pagemap: PE_PARENT entries are allowed */
    readonly hasParent: boolean,
  ) {}

  run(r: PagemapRun): void {
    // queued runs have no header sent yet
    const last = this.queue[this.queue.length - 1];
    if (last && last.flags === r.flags && last.vaddr + BigInt(last.pages * PAGE) === r.vaddr) last.pages += r.pages;
    else this.queue.push({ ...r });
    this.sendHeaders();
  }

  /** Sends the headers of queued runs up to the first whose data is still to come. */
  private sendHeaders(): void {
    while (this.queue.length && this.owed === 0) {
      const r = this.queue[0]!;
      // a 24-byte header holds up to 2^32 - 1 pages: longer runs go in pieces
      const pages = Math.min(r.pages, MAX_RUN);
      this.client.header({ cmd: PS_IOV.ADD_F, flags: r.flags, nrPages: BigInt(pages), vaddr: r.vaddr, dstId: this.dstId });
      this.runs.push({ vaddr: r.vaddr, pages, flags: r.flags });
      if (pages < r.pages) {
        r.vaddr += BigInt(pages * PAGE);
        r.pages -= pages;
      } else this.queue.shift();
      if (r.flags & PE_PRESENT) this.owed = pages * PAGE;
    }
  }

  async write(buf: Uint8Array, len: number): Promise<void> {
    const t0 = process.hrtime.bigint();
    let off = 0;
    while (off < len) {
      if (this.owed === 0) this.sendHeaders();
      if (this.owed === 0) throw new Error(`${len - off} bytes of page data with no run of pages to carry them`);
      const n = Math.min(this.owed, len - off);
      this.client.sendData(buf.subarray(off, off + n));
      this.owed -= n;
      off += n;
      if (this.owed === 0) this.sendHeaders();
    }
    this.writeNs += process.hrtime.bigint() - t0;
    return Promise.resolve();
  }

  /** Every run sent (the server writes the pagemap; the session's CLOSE ends it). */
  close(): Promise<void> {
    this.sendHeaders();
    if (this.owed !== 0 || this.queue.length) throw new Error(`the pages of ${this.queue.length} runs were never given (${this.owed} bytes owed)`);
    return Promise.resolve();
  }

  abort(): Promise<void> {
    this.queue.length = 0;
    return Promise.resolve();
  }

  /** The entries sent, in order (what the server's pagemap holds). */
  get entries(): readonly PagemapRun[] {
    return this.runs;
  }
}
