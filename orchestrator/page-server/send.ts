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

import { createRequire } from "node:module";
import { bridge } from "../../host-bridge/load.js";
import { PE_PARENT, PE_PRESENT } from "../../images/pages.js";
import { addrWordsOf, parseSockaddr, showAddr, sockaddr } from "../fds/inet-common.js";
import type { ModuleLog } from "../log.js";
import type { PagemapRun, PageTransport } from "../dump/pagewriter.js";
import { type Channel, PlainChannel, RECORD, tcpOption, TlsChannel, type TlsOptions } from "./channel.js";
import { commandName, encodeDst, encodeHeader, PS_IOV, type Header, type Layout, type PagemapKind } from "./wire.js";

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const IPPROTO_TCP = 6;
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
  /** --tls and its files */
  tls?: TlsOptions | undefined;
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
  private closed = false;

  private constructor(
    private readonly ch: Channel,
    readonly peer: string,
    readonly layout: Layout,
    /** the fd came with --ps-socket: the session ends with FORCE_CLOSE */
    private readonly given: boolean,
    /** over TLS each header goes alone (the channel keeps it in one record), nothing is gathered */
    readonly tls: boolean,
    private readonly log: ModuleLog,
  ) {}

  /** Connects (or takes --ps-socket), sets TLS up when asked, and learns the server's header layout. */
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
    let ch: Channel | undefined;
    try {
      // corked plain; TLS sends whole records, each pushed (TlsChannel)
      if (!to.tls) tcpOption(fd, TCP_CORK);
      ch = to.tls ? await TlsChannel.open(fd, "client", to.address, to.tls) : new PlainChannel(fd, to.psSocket !== undefined);
      if (to.tls) log.info(`page server ${peer}: TLS session set up, its certificate verified`);
      const layout = to.tls ? tlsLayout() : await probeLayout(ch, peer);
      log.info(`page server ${peer}: ${layout}-byte headers (criu ${layout === 24 ? "up to 4.1" : "4.2"})`);
      return new PageServerClient(ch, peer, layout, to.psSocket !== undefined, to.tls !== undefined, log);
    } catch (e) {
      if (ch) ch.abort();
      // a TLS channel that failed to open has closed the socket already
      else if (to.psSocket === undefined && !to.tls) b.close(fd);
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

  header(h: Header): void {
    this.queue(encodeHeader(this.layout, h));
  }

  private queue(bytes: Uint8Array): void {
    if (this.tls) return this.ch.send(bytes);
    if (this.queued + bytes.length > OUTBOX) this.sendQueued();
    this.outbox.set(bytes, this.queued);
    this.queued += bytes.length;
  }

  private sendQueued(): void {
    if (this.queued === 0) return;
    this.ch.send(this.outbox.subarray(0, this.queued));
    this.queued = 0;
  }

  /** Page data; resolves once buf may be reused and the channel can take more. */
  async sendData(buf: Uint8Array): Promise<void> {
    if (buf.length <= SMALL_DATA && !this.tls) return this.queue(buf);
    this.sendQueued();
    await this.ch.sendAsync(buf);
  }

  /** Sends what is gathered and pushes what is corked: an answer is awaited. */
  private async push(): Promise<void> {
    this.sendQueued();
    await this.ch.flush();
  }

  private async answer(len: 1 | 4, what: number): Promise<number> {
    const buf = Buffer.alloc(len);
    const got = await this.ch.recvFull(buf, ANSWER_MS);
    if (got !== len) throw new Error(`the page server ${this.peer} closed the connection instead of answering ${commandName(what)}`);
    return len === 1 ? buf[0]! : buf.readInt32LE(0);
  }

  /** PS_IOV_PARENT: whether the server's parent images have this pagemap. */
  async hasParent(kind: PagemapKind, id: number): Promise<boolean> {
    this.header({ cmd: PS_IOV.PARENT, flags: 0, nrPages: 0n, vaddr: 0n, dstId: encodeDst(kind, id) });
    await this.push();
    const r = await this.answer(4, PS_IOV.PARENT);
    if (r < 0) throw new Error(`the page server ${this.peer} could not look for its parent's ${kind === "pid" ? `pagemap-${id}.img` : `pagemap-shmem-${id}.img`}`);
    return r === 1;
  }

  /** PS_IOV_OPEN2: the pagemap's pages go to the server from here. */
  async open(kind: PagemapKind, id: number): Promise<RemotePages> {
    const dstId = encodeDst(kind, id);
    this.header({ cmd: PS_IOV.OPEN2, flags: 0, nrPages: 0n, vaddr: 0n, dstId });
    await this.push();
    const hasParent = (await this.answer(1, PS_IOV.OPEN2)) !== 0;
    this.log.debug(`page server: ${kind} ${id} opened${hasParent ? " (the server has its parent)" : ""}`);
    return new RemotePages(this, dstId, hasParent);
  }

  /** PS_IOV_CLOSE: the server answers once it has every page (on disk, for tscriu's server). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      this.header({ cmd: this.given ? PS_IOV.FORCE_CLOSE : PS_IOV.CLOSE, flags: 0, nrPages: 0n, vaddr: 0n, dstId: 0n });
      await this.push();
      const status = await this.answer(4, PS_IOV.CLOSE);
      if (status !== 0) throw new Error(`the page server ${this.peer} answered the close with status ${status}`);
      await this.ch.end();
    } finally {
      this.ch.close();
    }
  }

  /** After a failure: the connection goes without a CLOSE, and the server drops what it got. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.ch.abort();
  }
}

export async function connectTcp(address: string | undefined, port: number, log: ModuleLog): Promise<number> {
  const b = bridge();
  // node:dns only when a name has to be looked up (it costs every dump a millisecond to load)
  const lookup = async (name: string): Promise<string[]> => {
    const dns = createRequire(import.meta.url)("node:dns/promises") as typeof import("node:dns/promises");
    return (await dns.lookup(name, { all: true }).catch(() => [])).map((a) => a.address);
  };
  const names = address === undefined ? ["127.0.0.1", "::1"] : addrWordsOf(address) ? [address] : await lookup(address);
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

/**
 * Over TLS there is no probe: criu reads a header from one TLS record and stops at a
 * short one, so a 24-byte probe ends a criu 4.2 server's session. tscriu speaks criu 4.2's
 * layout there; TSCRIU_PAGE_SERVER_HEADERS=24 for a criu 4.1 server (tscriu's own server
 * reads either).
 */
export function tlsLayout(): Layout {
  const v = process.env["TSCRIU_PAGE_SERVER_HEADERS"];
  if (v === undefined || v === "32") return 32;
  if (v === "24") return 24;
  throw new Error(`TSCRIU_PAGE_SERVER_HEADERS=${v}: 24 (criu up to 4.1) or 32 (criu 4.2)`);
}

/** The probe described at the top: returns the layout the server reads. */
async function probeLayout(ch: Channel, peer: string): Promise<Layout> {
  ch.send(encodeHeader(24, { cmd: PS_IOV.PARENT, flags: 0, nrPages: 0n, vaddr: 0n, dstId: PROBE_DST }));
  await ch.flush();
  const answer = Buffer.alloc(4);
  try {
    if ((await ch.recvFull(answer, PROBE_MS)) !== 4) throw new Error(`the page server ${peer} closed the connection at once`);
    return 24;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ETIMEDOUT") throw e;
  }
  // A 32-byte server: these bytes make the probe a whole PARENT for the same pagemap.
  const rest = Buffer.alloc(8);
  rest.writeBigUInt64LE(PROBE_DST);
  ch.send(rest);
  await ch.flush();
  if ((await ch.recvFull(answer, ANSWER_MS)) !== 4) throw new Error(`the page server ${peer} closed the connection instead of answering ${commandName(PS_IOV.PARENT)}`);
  return 32;
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
    // criu's server writes a PE_PARENT entry it has no parent for without a word: an image that cannot restore
    if (r.flags & PE_PARENT && !this.hasParent) throw new Error(`a run of pages unchanged since the parent at 0x${r.vaddr.toString(16)}, but the page server ${this.client.peer} has no parent of this pagemap`);
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

  /** writes in the order they were asked for: the writers keep several in flight, and a TLS send may wait */
  private chain: Promise<void> = Promise.resolve();

  write(buf: Uint8Array, len: number): Promise<void> {
    const w = this.chain.then(() => this.writeNow(buf, len));
    this.chain = w.catch(() => undefined);
    return w;
  }

  private async writeNow(buf: Uint8Array, len: number): Promise<void> {
    const t0 = process.hrtime.bigint();
    let off = 0;
    while (off < len) {
      if (this.owed === 0) this.sendHeaders();
      if (this.owed === 0) throw new Error(`${len - off} bytes of page data with no run of pages to carry them`);
      const n = Math.min(this.owed, len - off);
      // owed drops only once the data is out: a run() meanwhile must not send the next header
      if (this.client.tls) await this.record(buf.subarray(off, off + n), n === this.owed);
      else await this.client.sendData(buf.subarray(off, off + n));
      this.owed -= n;
      off += n;
      if (this.owed === 0) this.sendHeaders();
    }
    this.writeNs += process.hrtime.bigint() - t0;
  }

  /**
   * Over TLS a run's data goes in records of 16 KiB counted from the run's start: criu's
   * server takes whole records into a pipe of 64 KiB per read, and one that crossed its
   * 64 KiB steps would not fit (criu 4.1's server then waits for ever on its own pipe).
   */
  private readonly rec = Buffer.allocUnsafe(RECORD);
  private recFill = 0;

  private async record(data: Uint8Array, ends: boolean): Promise<void> {
    for (let at = 0; at < data.length; ) {
      const n = Math.min(RECORD - this.recFill, data.length - at);
      this.rec.set(data.subarray(at, at + n), this.recFill);
      this.recFill += n;
      at += n;
      if (this.recFill === RECORD || (at === data.length && ends)) {
        await this.client.sendData(this.rec.subarray(0, this.recFill));
        this.recFill = 0;
      }
    }
  }

  /** Every run sent (the server writes the pagemap; the session's CLOSE ends it). */
  async close(): Promise<void> {
    await this.chain;
    this.sendHeaders();
    if (this.owed !== 0 || this.queue.length) throw new Error(`the pages of ${this.queue.length} runs were never given (${this.owed} bytes owed)`);
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
