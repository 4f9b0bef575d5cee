// The lazy-pages daemon's side of criu's lazy pages: fetches pages from a dump that
// serves them (dump --lazy-pages, lazy-serve.ts, or criu's) with PS_IOV_GET, as criu's
// uffd.c does through request_remote_pages and page_server_read.
//
// Requests are pipelined: many GETs may be in flight, and as criu's server answers one at
// a time, in order, the answers come back in the order they were asked. Each answer
// `{ADD_F|PE_PRESENT, n, vaddr, pid}` and its n pages (n at most what was asked) is
// checked against its request before a byte of data is taken.
//
// Page data is received straight into page-aligned slabs (UFFDIO_COPY wants a page-aligned
// source): over plain TCP the socket reads into the very bytes the answer is given in
// (net.Socket's onread with a buffer per read, each sized to what the answer still
// lacks); over TLS node:tls decrypts into its own chunks, copied once into the slab.

import { EventEmitter } from "node:events";
import { Socket, type SocketConstructorOpts } from "node:net";
import { bridge } from "../../host-bridge/load.js";
import { PE_PRESENT } from "../../images/pages.js";
import type { ModuleLog } from "../log.js";
import { TlsChannel, type TlsOptions } from "./channel.js";
import { connectTcp, peerName, tlsLayout } from "./send.js";
import { commandName, decodeHeader, encodeDst, encodeHeader, PS_IOV, type Layout } from "./wire.js";

const PAGE = 4096;
/** Page data is received into slabs of this size, an answer's pages a piece of one. */
const SLAB = 4 << 20;
/** The most pages one GET may ask for (4 GiB): an answer is held in memory whole. */
export const MAX_GET_PAGES = 1 << 20;
/** How long a 24-byte server may take to answer the layout probe (send.ts's). */
const PROBE_MS = 500;
/** The probe's pagemap: as in send.ts, a pid no task has. */
const PROBE_DST = encodeDst("pid", 0xff);

export interface FetchOptions {
  /** the dump's address (criu's default: the loopback) */
  address?: string | undefined;
  port?: number | undefined;
  /** a socket already connected to the dump (criu's --ps-socket): the session ends with FORCE_CLOSE */
  fd?: number | undefined;
  tls?: TlsOptions | undefined;
  /** 24 (criu up to 4.1) or 32 (criu 4.2, tscriu); asked with a probe when not given (TLS: 32, or $TSCRIU_PAGE_SERVER_HEADERS) */
  layout?: Layout | undefined;
}

/** An answer: `nrPages` pages from `vaddr` (at most what was asked), `data` page-aligned, nrPages * 4096 bytes. */
export interface FetchedPages {
  vaddr: bigint;
  nrPages: number;
  data: Buffer;
}

type Pending =
  | { kind: "get"; pid: number; vaddr: bigint; nrPages: number; resolve: (p: FetchedPages) => void; reject: (e: Error) => void }
  | { kind: "status"; what: number; resolve: (v: number) => void; reject: (e: Error) => void };

/** The transport under the session: writes, and reads steered by the session. */
interface Wire {
  write(b: Uint8Array): void;
  end(): void;
  destroy(): void;
}

/**
 * A connection to a dump serving lazy pages. Events: "error" (Error) when the connection
 * fails or the server answers wrong, "close" when it is gone; either way every request in
 * flight is rejected with the error, and `lost` resolves with it (undefined after close()).
 */
export class PageFetcher extends EventEmitter {
  private readonly pending: Pending[] = [];
  private wire!: Wire;
  private failure: Error | undefined;
  private closing = false;
  private done = false;
  private resolveLost!: (e: Error | undefined) => void;
  /** resolves when the connection is gone: the error, or undefined after close() */
  readonly lost: Promise<Error | undefined> = new Promise((r) => (this.resolveLost = r));

  // what the head of `pending` still needs: its header, then its data
  private readonly head: Buffer;
  private headFill = 0;
  private data: Buffer | undefined;
  private dataFill = 0;
  private got = 0;
  private slab: Buffer | undefined;
  private slabUsed = 0;
  /** large answers' buffers given back (recycle()), by size */
  private readonly spares = new Map<number, Buffer[]>();
  /**
   * The memory of the large answers' own buffers: only these are taken back by recycle().
   * A small answer is a piece of the slab the next small answers are cut from: taken back
   * as a spare, a large answer would be received over them (a lazy restore's page then
   * held another page's data).
   */
  private readonly own = new WeakSet<ArrayBufferLike>();
  /**
   * Where the socket reads while no request is in flight. Node asks for the next read's
   * buffer after each read, so a request made meanwhile finds its answer here: it is taken
   * from here with a copy (bytes before any request fail the session).
   */
  private readonly spare = Buffer.alloc(64 << 10);

  private constructor(
    readonly peer: string,
    /** the header layout spoken */
    public layout: Layout,
    /** the fd came from the caller: FORCE_CLOSE, as criu with --ps-socket */
    private readonly given: boolean,
  ) {
    super();
    this.head = Buffer.alloc(32);
  }

  /** Connects (or takes `fd`), sets TLS up when asked, and settles the header layout. */
  static async connect(o: FetchOptions, log?: ModuleLog): Promise<PageFetcher> {
    const b = bridge();
    let fd: number;
    if (o.fd !== undefined) fd = o.fd;
    else {
      if (o.port === undefined || !Number.isInteger(o.port) || o.port <= 0 || o.port > 65535) throw new Error("lazy pages: the dump's --port (1-65535) is needed to fetch pages");
      fd = await connectTcp(o.address, o.port, log ?? SILENT);
    }
    const peer = o.fd !== undefined ? `fd ${fd} (${peerName(fd)})` : peerName(fd);
    const f = new PageFetcher(peer, o.layout ?? 32, o.fd !== undefined);
    try {
      if (o.tls) {
        const ch = await TlsChannel.open(fd, "client", o.address, o.tls);
        f.layout = o.layout ?? tlsLayout();
        f.attachTls(ch);
      } else f.attachPlain(fd);
    } catch (e) {
      if (!o.tls && o.fd === undefined) b.close(fd);
      throw new Error(`lazy pages: ${peer}: ${(e as Error).message}`, { cause: e });
    }
    if (o.layout === undefined && !o.tls) {
      try {
        f.layout = await f.probe();
      } catch (e) {
        f.destroy();
        throw e;
      }
    }
    log?.info(`lazy pages: fetching from ${peer} with ${f.layout}-byte headers`);
    return f;
  }

  private attachPlain(fd: number): void {
    // onread is in Node's net.Socket since 12 (not in @types/node's constructor options)
    const sock = new Socket({
      fd,
      readable: true,
      writable: true,
      onread: {
        buffer: () => this.target(),
        callback: (n: number, buf: Buffer) => {
          if (buf === this.spare) this.take(buf.subarray(0, n));
          else this.advance(n);
          return true;
        },
      },
    } as SocketConstructorOpts);
    sock.setNoDelay(true);
    sock.on("error", (e) => this.fail(new Error(`lazy pages: ${this.peer}: ${e.message}`, { cause: e })));
    sock.on("end", () => this.ended());
    sock.on("close", () => this.ended());
    this.wire = { write: (b) => void sock.write(b), end: () => void sock.end(), destroy: () => void sock.destroy() };
  }

  private attachTls(ch: TlsChannel): void {
    // writes through the channel (a header never straddles two TLS records: criu's server
    // fails on a short one); what is decrypted comes here chunk by chunk
    this.wire = {
      write: (b) => {
        try {
          ch.send(b);
        } catch (e) {
          this.fail(new Error(`lazy pages: ${this.peer}: ${(e as Error).message}`, { cause: e }));
        }
      },
      end: () => void ch.end().catch(() => undefined),
      destroy: () => ch.abort(),
    };
    ch.readInto(
      (chunk) => this.take(chunk),
      (e) => (e ? this.fail(new Error(`lazy pages: ${this.peer}: ${e.message}`, { cause: e })) : this.ended()),
    );
  }

  /**
   * Gives back the data of an answer once its pages are used (copied into the task): a
   * large answer's buffer then takes a later answer. Pieces of a shared slab, and buffers
   * given back already, are left alone (the garbage collector has them).
   */
  recycle(data: Buffer): void {
    const whole = data.buffer;
    // once: a buffer given back twice would take two answers at once
    if (!this.own.delete(whole)) return;
    const list = this.spares.get(whole.byteLength) ?? [];
    // a few per size: what is in flight at once
    if (list.length >= 8) return;
    list.push(Buffer.from(whole));
    this.spares.set(whole.byteLength, list);
  }

  /** Requests in flight. */
  get inFlight(): number {
    return this.pending.length;
  }

  /**
   * PS_IOV_GET: up to `nrPages` pages of task `pid` (its pid in the images) from `vaddr`.
   * Resolves with what the server sent (at least one page, maybe fewer than asked: it
   * stops where the lazy pages it holds do); rejects when the connection is lost or the
   * server fails the request (criu's closes the connection then).
   */
  get(pid: number, vaddr: bigint, nrPages: number): Promise<FetchedPages> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error(`lazy pages: ${this.peer}: get after close()`));
    if (!Number.isInteger(pid) || pid <= 0) return Promise.reject(new RangeError(`lazy pages: pid ${pid} is no task's pid`));
    if (!Number.isInteger(nrPages) || nrPages < 1 || nrPages > MAX_GET_PAGES) return Promise.reject(new RangeError(`lazy pages: ${nrPages} pages: 1..${MAX_GET_PAGES} pages per request`));
    if (vaddr < 0n || vaddr % BigInt(PAGE) !== 0n) return Promise.reject(new RangeError(`lazy pages: 0x${vaddr.toString(16)} is not a page address`));
    return new Promise((resolve, reject) => {
      this.pending.push({ kind: "get", pid, vaddr, nrPages, resolve, reject });
      this.wire.write(encodeHeader(this.layout, { cmd: PS_IOV.GET, flags: 0, nrPages: BigInt(nrPages), vaddr, dstId: BigInt(pid) }));
    });
  }

  /**
   * PS_IOV_CLOSE (FORCE_CLOSE on a given fd): waits for the answers in flight and the
   * server's status, then ends the connection (the dump exits then).
   */
  async close(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.closing) return;
    const cmd = this.given ? PS_IOV.FORCE_CLOSE : PS_IOV.CLOSE;
    const status = this.status(cmd, encodeHeader(this.layout, { cmd, flags: 0, nrPages: 0n, vaddr: 0n, dstId: 0n }));
    this.closing = true;
    const s = await status;
    if (s !== 0) throw new Error(`lazy pages: ${this.peer} answered ${commandName(cmd)} with status ${s}`);
    this.finish(undefined);
    this.wire.end();
  }

  /** Drops the connection at once (requests in flight are rejected). */
  destroy(): void {
    this.fail(new Error(`lazy pages: ${this.peer}: the connection was dropped`));
  }

  /** A command answered by a 4-byte status. */
  private status(what: number, header: Uint8Array): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.push({ kind: "status", what, resolve, reject });
      this.wire.write(header);
    });
  }

  /** send.ts's probe: a 24-byte PARENT a 24-byte server answers at once; a 32-byte one waits for 8 more bytes. */
  private async probe(): Promise<Layout> {
    const answer = this.status(PS_IOV.PARENT, encodeHeader(24, { cmd: PS_IOV.PARENT, flags: 0, nrPages: 0n, vaddr: 0n, dstId: PROBE_DST }));
    const timer = new Promise<"late">((r) => setTimeout(() => r("late"), PROBE_MS).unref());
    if ((await Promise.race([answer, timer])) !== "late") return 24;
    const rest = Buffer.alloc(8);
    rest.writeBigUInt64LE(PROBE_DST);
    this.wire.write(rest);
    await answer;
    return 32;
  }

  /** Bytes received elsewhere, copied where they belong. */
  private take(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.done) {
      if (this.pending.length === 0) return this.fail(new Error(`lazy pages: ${this.peer} sent ${chunk.length - at} bytes no request asked for`));
      const t = this.target();
      const n = Math.min(t.length, chunk.length - at);
      t.set(chunk.subarray(at, at + n));
      at += n;
      this.advance(n);
    }
  }

  /** Where the next bytes of the stream go. */
  private target(): Buffer {
    const p = this.pending[0];
    if (!p || this.done) return this.spare;
    if (p.kind === "status") return this.head.subarray(this.headFill, 4);
    if (!this.data) return this.head.subarray(this.headFill, this.layout);
    return this.data.subarray(this.dataFill);
  }

  /** `n` bytes arrived where target() said. */
  private advance(n: number): void {
    if (n <= 0 || this.done) return;
    const p = this.pending[0];
    if (!p) return this.fail(new Error(`lazy pages: ${this.peer} sent ${n} bytes no request asked for`));
    if (p.kind === "status") {
      this.headFill += n;
      if (this.headFill < 4) return;
      this.headFill = 0;
      this.pending.shift();
      p.resolve(this.head.readInt32LE(0));
      return;
    }
    if (!this.data) {
      this.headFill += n;
      if (this.headFill < this.layout) return;
      this.headFill = 0;
      const h = decodeHeader(this.layout, this.head);
      const where = `the answer to ${commandName(PS_IOV.GET)} for pid ${p.pid} at 0x${p.vaddr.toString(16)}, ${p.nrPages} pages`;
      if (h.cmd !== PS_IOV.ADD_F || h.flags !== PE_PRESENT) return this.fail(new Error(`lazy pages: ${this.peer}: ${where} is ${commandName(h.cmd)} with flags 0x${h.flags.toString(16)}, not ${commandName(PS_IOV.ADD_F)} with PE_PRESENT`));
      if (h.vaddr !== p.vaddr || h.dstId !== BigInt(p.pid)) return this.fail(new Error(`lazy pages: ${this.peer}: ${where} is for pid ${h.dstId} at 0x${h.vaddr.toString(16)}`));
      if (h.nrPages < 1n || h.nrPages > BigInt(p.nrPages)) return this.fail(new Error(`lazy pages: ${this.peer}: ${where} carries ${h.nrPages} pages`));
      this.got = Number(h.nrPages);
      this.data = this.room(this.got * PAGE);
      this.dataFill = 0;
      return;
    }
    this.dataFill += n;
    if (this.dataFill < this.data.length) return;
    const data = this.data;
    this.data = undefined;
    this.pending.shift();
    p.resolve({ vaddr: p.vaddr, nrPages: this.got, data });
  }

  /**
   * Page-aligned room for an answer: a piece of the current slab, or a buffer of its own
   * when large (whole slabs, one given back by recycle() when there is one: fresh memory
   * comes slowly on these machines, and a 1 GiB transfer would fault in every page of it).
   */
  private room(len: number): Buffer {
    if (len > SLAB / 4) {
      const size = Math.ceil(len / SLAB) * SLAB;
      const buf = this.spares.get(size)?.pop() ?? bridge().allocAligned(size);
      this.own.add(buf.buffer);
      return buf.subarray(0, len);
    }
    if (!this.slab || this.slabUsed + len > SLAB) {
      this.slab = bridge().allocAligned(SLAB);
      this.slabUsed = 0;
    }
    const b = this.slab.subarray(this.slabUsed, this.slabUsed + len);
    this.slabUsed += len;
    return b;
  }

  private ended(): void {
    if (this.done) return;
    const inFlight = this.pending.length;
    if (this.closing && inFlight === 0) return this.finish(undefined);
    this.fail(new Error(`lazy pages: ${this.peer} closed the connection${inFlight ? ` with ${inFlight} requests unanswered` : ""}`));
  }

  private fail(e: Error): void {
    if (this.done) return;
    this.failure = e;
    this.wire?.destroy();
    this.finish(e);
  }

  private finish(e: Error | undefined): void {
    if (this.done) return;
    this.done = true;
    for (const p of this.pending.splice(0)) p.reject(e ?? new Error(`lazy pages: ${this.peer}: closed`));
    this.resolveLost(e);
    if (e && this.listenerCount("error") > 0) this.emit("error", e);
    this.emit("close");
  }
}

const SILENT = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined } as unknown as ModuleLog;
