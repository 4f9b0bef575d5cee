// tscriu page-server: receives a dump's pages over TCP (criu's protocol, wire.ts) and
// writes them as pagemap-*.img and pages-*.img in its own images dir, with page ids from
// 0x10001 as criu's server (a dump may write its other images into the same dir). One
// connection is served, as with criu, then the command exits with its result.
//
// What a peer sends is checked before it is acted on: a dst_id of an unknown type, a run
// that is not page-aligned, reaches past any address space, goes back in the pagemap, or
// has flags criu never sends, a PE_PARENT run the parent images do not hold, an unknown
// command: the session ends with an error naming the peer and the command, and the files
// this session wrote are removed (what the dir held before is left as it was). Page data
// is received in chunks of CHUNK bytes whatever a header claims.
//
// With --lazy-pages it serves instead: the lazy pages of the dump in its images dir, to a
// remote lazy-pages daemon (lazy-images.ts, in lazy-serve.ts's session).
//
// The answer to PS_IOV_CLOSE means "everything is on disk" here: the pages and pagemaps
// are fsynced first, so the dump may kill its tasks when it gets it (criu's server
// answers before anything is synced).

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, rmSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { pagemapCoverage, PE_LAZY, PE_PARENT, PE_PRESENT } from "../../images/pages.js";
import { dedup } from "../dedup.js";
import { Faults } from "../dump/faults.js";
import { LocalPages } from "../dump/pagewriter.js";
import type { ModuleLog } from "../log.js";
import { inheritedListenFd, signalReady, startDaemon, statusFdOf, type DaemonOptions } from "../cli/daemon.js";
import { peerName } from "./send.js";
import { HeaderReader } from "./headers.js";
import { type Channel, listenTcp, PlainChannel, tcpOption, TlsChannel, type TlsOptions } from "./channel.js";
import { INFO_FD_ENV } from "./spawn.js";
import { ImagePageStore } from "./lazy-images.js";
import { serveLazy } from "./lazy-serve.js";
import { commandName, decodeDst, entryFlags, layoutOf, pagemapName, PS_IOV, type Header } from "./wire.js";

const PAGE = 4096;
const TCP_CORK = 3;
/** Page data is received and written in pieces of this size. */
const CHUNK = 4 << 20;
/**
 * Staging buffers: one is received into while the others are written. O_DIRECT writes
 * wait for the disk, and several in flight keep it busy (libuv has 4 threads).
 */
const STAGES = 4;
/** No user address space reaches past 2^57 (x86-64 with 5-level paging; arm64 52 bits). */
const ADDRESS_LIMIT = 1n << 57n;
/** Where criu's page server starts its pages ids. */
const FIRST_PAGES_ID = 0x10001;

export interface SessionOptions {
  /** the images dir (absolute) */
  dir: string;
  /** punch what this session received out of the parent chain's pages (--auto-dedup) */
  autoDedup: boolean;
  log: ModuleLog;
}

export interface SessionResult {
  /** pagemaps written */
  pagemaps: number;
  pagesWritten: bigint;
}

/** The pagemap being received. */
interface Open {
  dstId: bigint;
  name: string;
  out: LocalPages;
  /** where the parent's pagemap has entries ((start, end) pairs); undefined without a parent */
  parent: BigUint64Array | undefined;
  /** end of the last run: runs must come in address order */
  end: bigint;
}

class PeerError extends Error {}

/**
 * Serves one connection until its CLOSE (or an error, which is thrown after the
 * session's files are removed). The channel is not ended here.
 */
export async function serveSession(ch: Channel, peer: string, o: SessionOptions): Promise<SessionResult> {
  const s = new Session(ch, peer, o);
  try {
    return await s.run();
  } catch (e) {
    await s.discard();
    throw e;
  }
}

class Session {
  private readonly b = bridge();
  private readonly faults = new Faults(undefined);
  private headers: HeaderReader | undefined;
  private cur: Open | undefined;
  /** files this session made: removed should it fail */
  private readonly made: string[] = [];
  private readonly names = new Set<string>();
  private nextId = FIRST_PAGES_ID;
  private bufs: Buffer[] = [];
  /** the staging buffer being filled, its fill, and the write of each buffer in flight */
  private which = 0;
  private fill = 0;
  private readonly pending: (Promise<void> | undefined)[] = Array.from({ length: STAGES }, () => undefined);
  private pagemaps = 0;
  private pages = 0n;
  private last = "the first header";

  constructor(
    private readonly ch: Channel,
    private readonly peer: string,
    private readonly o: SessionOptions,
  ) {}

  private fail(h: Header | undefined, why: string): never {
    throw new PeerError(`page server: ${this.peer}, ${h ? commandName(h.cmd) : this.last}: ${why}`);
  }

  /** The next header, or undefined when the peer closed between headers. */
  private header(): Promise<Header | undefined> {
    this.headers ??= new HeaderReader(this.ch, layoutOf, (why) => this.fail(undefined, why), (l) => {
      this.o.log.info(`${this.peer} speaks ${l}-byte headers (criu ${l === 24 ? "up to 4.1" : "4.2"})`);
    });
    return this.headers.next();
  }

  async run(): Promise<SessionResult> {
    for (;;) {
      const h = await this.header();
      if (h === undefined) this.fail(undefined, `the connection closed without ${commandName(PS_IOV.CLOSE)} (after ${this.last}): the dump did not finish`);
      this.last = commandName(h.cmd);
      switch (h.cmd) {
        case PS_IOV.OPEN:
        case PS_IOV.OPEN2: {
          const hasParent = await this.open(h);
          if (h.cmd === PS_IOV.OPEN2) await this.answer(Buffer.of(hasParent ? 1 : 0));
          break;
        }
        case PS_IOV.PARENT: {
          const d = this.dst(h);
          const answer = Buffer.alloc(4);
          answer.writeInt32LE(existsSync(join(this.o.dir, "parent", pagemapName(d))) ? 1 : 0);
          await this.answer(answer);
          break;
        }
        case PS_IOV.ADD:
        case PS_IOV.ADD_F:
        case PS_IOV.HOLE:
          await this.add(h);
          break;
        case PS_IOV.CLOSE:
        case PS_IOV.FORCE_CLOSE:
          await this.close(h);
          return { pagemaps: this.pagemaps, pagesWritten: this.pages };
        case PS_IOV.GET:
          this.fail(h, "asks for lazy pages: this page server receives a dump (page-server --lazy-pages serves one)");
        // falls through: fail() throws
        default:
          this.fail(h, "not a command of criu's page-server protocol");
      }
    }
  }

  private async answer(bytes: Buffer): Promise<void> {
    this.ch.send(bytes);
    await this.ch.flush();
  }

  private dst(h: Header): { kind: "pid" | "shmem"; id: number } {
    const d = decodeDst(h.dstId);
    if (!d) this.fail(h, `dst_id 0x${h.dstId.toString(16)} names no pagemap type criu knows`);
    return d;
  }

  /** Opens a pagemap (ending the one before); whether the parent images have it. */
  private async open(h: Header): Promise<boolean> {
    const d = this.dst(h);
    await this.finish(false);
    const name = pagemapName(d);
    if (this.names.has(name)) this.fail(h, `${name} was sent already in this session`);
    if (existsSync(join(this.o.dir, name))) this.fail(h, `${join(this.o.dir, name)} exists; tscriu does not overwrite images`);
    while (existsSync(join(this.o.dir, `pages-${this.nextId}.img`))) this.nextId++;
    const out = await LocalPages.create(this.o.dir, name, this.nextId++, this.faults);
    this.made.push(out.pagesFile);
    this.names.add(name);
    let parent: BigUint64Array | undefined;
    const parentDir = join(this.o.dir, "parent");
    if (existsSync(join(parentDir, name))) {
      try {
        parent = await pagemapCoverage(parentDir, name);
      } catch (e) {
        this.fail(h, `the parent's ${name} cannot be read: ${(e as Error).message}`);
      }
    }
    this.cur = { dstId: h.dstId, name, out, parent, end: 0n };
    this.o.log.debug(`${this.peer}: ${name} opened (pages-${out.pagesId}.img${parent ? ", with a parent" : ""})`);
    return parent !== undefined;
  }

  private async add(h: Header): Promise<void> {
    // criu's old clients sent runs without opening first: the run opens its pagemap
    if (this.cur?.dstId !== h.dstId) await this.open(h);
    const cur = this.cur!;
    const flags = entryFlags(h);
    if (flags & ~(PE_PARENT | PE_LAZY | PE_PRESENT) || (flags & PE_PARENT && flags & PE_PRESENT)) this.fail(h, `pagemap flags 0x${flags.toString(16)} are not a combination criu writes`);
    if (h.nrPages === 0n) this.fail(h, `a run of 0 pages at 0x${h.vaddr.toString(16)}`);
    const len = h.nrPages * BigInt(PAGE);
    if (h.vaddr % BigInt(PAGE) !== 0n || h.vaddr + len > ADDRESS_LIMIT) this.fail(h, `${h.nrPages} pages at 0x${h.vaddr.toString(16)} are no range of an address space`);
    if (h.vaddr < cur.end) this.fail(h, `the run at 0x${h.vaddr.toString(16)} comes after one that ends at 0x${cur.end.toString(16)} in ${cur.name}`);
    if (flags & PE_PARENT && !covers(cur.parent, h.vaddr, h.vaddr + len)) {
      this.fail(h, cur.parent ? `the parent's ${cur.name} does not hold 0x${h.vaddr.toString(16)}-0x${(h.vaddr + len).toString(16)}` : `a PE_PARENT run, but there are no parent images of ${cur.name}`);
    }
    cur.end = h.vaddr + len;
    cur.out.run({ vaddr: h.vaddr, pages: Number(h.nrPages), flags });
    if (flags & PE_PRESENT) {
      await this.receive(h, Number(len));
      this.pages += h.nrPages;
    }
  }

  /**
   * Receives a run's data into the staging buffers, written out a chunk at a time while
   * the next fills: the runs of a pagemap are contiguous in its pages file, and a pass
   * sends many small ones (the pages a task wrote since its parent), each of which would
   * otherwise wait for a write of its own.
   */
  private async receive(h: Header, len: number): Promise<void> {
    if (this.bufs.length === 0) this.bufs = Array.from({ length: STAGES }, () => this.b.allocAligned(CHUNK));
    let done = 0;
    while (done < len) {
      const n = Math.min(CHUNK - this.fill, len - done);
      const got = await this.ch.recvFull(this.bufs[this.which]!.subarray(this.fill, this.fill + n));
      if (got < n) this.fail(h, `the connection closed after ${done + got} of the ${len} bytes of the run at 0x${h.vaddr.toString(16)}`);
      this.fill += n;
      done += n;
      if (this.fill === CHUNK) await this.flush();
    }
  }

  /** Writes what is staged; the next buffer is free once this returns. */
  private async flush(): Promise<void> {
    const out = this.cur?.out;
    if (out && this.fill > 0) {
      const w = out.write(this.bufs[this.which]!, this.fill);
      // awaited at the next flush; a failure meanwhile is not an unhandled rejection
      w.catch(() => undefined);
      this.pending[this.which] = w;
      this.which = (this.which + 1) % STAGES;
      this.fill = 0;
    }
    const prev = this.pending[this.which];
    this.pending[this.which] = undefined;
    await prev;
  }

  /** Everything staged written, every buffer free. */
  private async drain(): Promise<void> {
    await this.flush();
    await Promise.all(this.pending.filter((p) => p !== undefined));
    for (let i = 0; i < STAGES; i++) this.pending[i] = undefined;
  }

  /** Writes the open pagemap (its pages file synced when asked). */
  private async finish(sync: boolean): Promise<void> {
    const cur = this.cur;
    if (!cur) return;
    await this.drain();
    this.cur = undefined;
    this.made.push(join(this.o.dir, cur.name));
    await cur.out.close(sync);
    this.pagemaps++;
  }

  private async close(h: Header): Promise<void> {
    const status = Buffer.alloc(4);
    try {
      await this.finish(true);
      // each file is synced; the directory holds their names
      syncDir(this.o.dir);
      if (this.o.autoDedup && existsSync(join(this.o.dir, "parent"))) {
        const d = await dedup(this.o.dir, this.o.log);
        this.o.log.info(`--auto-dedup: ${d.bytes} bytes punched from ${d.files} pages files of the parent chain`);
      }
    } catch (e) {
      status.writeInt32LE(-1);
      await this.answer(status);
      this.fail(h, `the images could not be completed: ${(e as Error).message}`);
    }
    await this.answer(status);
    // As criu, wait for the peer to close first (the TIME_WAIT stays on its side); a
    // --ps-socket peer (FORCE_CLOSE) may keep the socket open.
    if (h.cmd === PS_IOV.CLOSE) {
      const one = Buffer.alloc(1);
      if ((await this.ch.recvFull(one)) !== 0) this.o.log.warn(`${this.peer} sent data after ${commandName(PS_IOV.CLOSE)}`);
    }
  }

  /** After a failure: the files of this session go, and nothing else. */
  async discard(): Promise<void> {
    await Promise.allSettled(this.pending.filter((p) => p !== undefined));
    await this.cur?.out.abort();
    for (const f of this.made) rmSync(f, { force: true });
  }
}

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Whether the (start, end) pairs of `cover` hold [from, to) whole. */
function covers(cover: BigUint64Array | undefined, from: bigint, to: bigint): boolean {
  if (!cover) return false;
  let at = from;
  for (let i = 0; i < cover.length && at < to; i += 2) {
    if (cover[i + 1]! <= at) continue;
    if (cover[i]! > at) return false;
    at = cover[i + 1]!;
  }
  return at >= to;
}

export interface PageServerOptions {
  imagesDir: string;
  address?: string | undefined;
  port?: number | undefined;
  psSocket?: number | undefined;
  prevImagesDir?: string | undefined;
  autoDedup?: boolean | undefined;
  /** --tls and its files */
  tls?: TlsOptions | undefined;
  /** --lazy-pages: serve the lazy pages of the dump in the images dir to a lazy-pages daemon (lazy-images.ts) */
  lazyPages?: boolean | undefined;
}

/** The images dir made ready: created when missing, the parent link made from --prev-images-dir. */
export function prepareDir(o: PageServerOptions): string {
  const dir = resolve(o.imagesDir);
  mkdirSync(dir, { recursive: true });
  if (o.prevImagesDir !== undefined) {
    const target = resolve(dir, o.prevImagesDir);
    if (!existsSync(target)) throw new Error(`--prev-images-dir ${o.prevImagesDir} (${target}) does not exist`);
    if (!existsSync(join(dir, "parent"))) symlinkSync(o.prevImagesDir, join(dir, "parent"));
  }
  return dir;
}

export interface PageServerCommand extends PageServerOptions, DaemonOptions {
  daemon: boolean;
}

/** Started for an RPC client (spawn.ts): its pid and port on the fd it was given. */
function tellStarter(port: number): void {
  const v = process.env[INFO_FD_ENV];
  if (v === undefined) return;
  delete process.env[INFO_FD_ENV];
  try {
    writeSync(Number(v), `${process.pid} ${port}\n`);
    closeSync(Number(v));
  } catch {
    // the starter is gone: the session goes on
  }
}

/** tscriu page-server: one session, then the result as the exit code. */
export async function runPageServer(o: PageServerCommand, log: ModuleLog): Promise<number> {
  let dir: string;
  let lazy: ImagePageStore | undefined;
  try {
    if (o.lazyPages) {
      dir = resolve(o.imagesDir);
      lazy = await ImagePageStore.load(dir, log);
    } else dir = prepareDir(o);
  } catch (e) {
    log.error((e as Error).message);
    return 1;
  }
  try {
    return await listenAndServe(o, dir, lazy, log);
  } finally {
    lazy?.close();
  }
}

/** The one connection: accepted (or given), served, ended; the exit code. */
async function listenAndServe(o: PageServerCommand, dir: string, lazy: ImagePageStore | undefined, log: ModuleLog): Promise<number> {
  const b = bridge();
  let conn: number;
  let peer: string;
  if (o.psSocket !== undefined) {
    if (o.address !== undefined || o.port !== undefined) log.warn("--address and --port are not used with --ps-socket");
    signalReady(statusFdOf(o));
    conn = o.psSocket;
    peer = `--ps-socket ${conn} (${peerName(conn)})`;
  } else {
    let listenFd = inheritedListenFd();
    let port = o.port ?? 0;
    if (listenFd === undefined) {
      let l;
      try {
        l = listenTcp(o.address, o.port ?? 0);
      } catch (e) {
        log.error(`cannot listen on ${o.address ?? "0.0.0.0"} port ${o.port ?? 0}: ${(e as Error).message}`);
        return 1;
      }
      log.info(`page server on ${o.address ?? "0.0.0.0"} port ${l.port}, ${lazy ? `serving ${lazy.pages} lazy pages of pid ${lazy.pids.join(", ")} from` : "images in"} ${dir}`);
      if (o.daemon) {
        startDaemon(l.fd, o);
        return 0;
      }
      listenFd = l.fd;
      port = l.port;
      if (o.pidfile !== undefined) writeFileSync(o.pidfile, `${process.pid}`);
    }
    signalReady(statusFdOf(o));
    tellStarter(port);
    try {
      conn = b.accept(listenFd);
    } catch (e) {
      log.error(`cannot accept a connection: ${(e as Error).message}`);
      return 1;
    } finally {
      b.close(listenFd);
    }
    peer = peerName(conn);
    log.info(`accepted a connection from ${peer}`);
  }
  let ch: Channel | undefined;
  try {
    // serving lazy pages, each answer's header and pages go out in full segments (pushed at flush), as dump --lazy-pages's
    if (lazy && !o.tls) tcpOption(conn, TCP_CORK);
    ch = o.tls ? await TlsChannel.open(conn, "server", o.address, o.tls) : new PlainChannel(conn, o.psSocket !== undefined);
    if (o.tls) log.info(`TLS session with ${peer} set up, its certificate verified`);
    if (lazy) {
      await serveLazy(ch, peer, lazy, log);
      return 0;
    }
    const r = await serveSession(ch, peer, { dir, autoDedup: o.autoDedup === true, log });
    log.info(`session with ${peer} over: ${r.pagemaps} pagemaps, ${r.pagesWritten} pages written in ${dir}`);
    return 0;
  } catch (e) {
    log.error((e as Error).message);
    return 1;
  } finally {
    await ch?.end().catch(() => undefined);
    if (ch) ch.close();
    // a TLS channel that failed to open has closed the socket already
    else if (o.psSocket === undefined && !o.tls) b.close(conn);
  }
}
