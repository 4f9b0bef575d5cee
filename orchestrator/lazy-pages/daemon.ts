// tscriu lazy-pages: the daemon of a lazy (post-copy) restore. It listens on
// lazy-pages.socket in the work directory; `restore --lazy-pages` (tscriu's or criu's)
// connects, hands over each task's userfaultfd (lazy-handoff.ts has the bytes), and lets
// the tasks run while their lazy pages are missing. The engine (host-bridge/src/lazy.c)
// serves each fault at once and fills the rest in the background on several threads,
// from the pages images here, or with --page-server from the dump's page server
// (remote.ts), which answers criu's PS_IOV_GET. The daemon ends once the restore said it
// finished and every page is in; a restore that hangs up before that, a task's page the
// source does not have, or a lost page server kill the restored tree (a task left waiting
// on a fault nobody serves would hang for ever, and one whose userfaultfd closes reads
// zeros), and the daemon exits 1 saying why.

import { closeSync, openSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { Socket } from "node:net";
import { constants as osConstants } from "node:os";
import { join, resolve } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { F, O } from "../../host-bridge/constants.js";
import type { LazyStatus } from "../../host-bridge/native.js";
import { ImageDir } from "../../images/dir.js";
import { PAGE_SIZE } from "../../images/pages.js";
import { inheritedListenFd, signalReady, startDaemon, statusFdOf, type DaemonOptions } from "../cli/daemon.js";
import type { ModuleLog } from "../log.js";
import { LAZY_SOCKET, RESTORE_FINISHED } from "../restore/lazy-handoff.js";
import { PageResolver, type PageSeg } from "../restore/pagesegs.js";
import type { LazySource } from "./remote.js";

export interface LazyPagesCommand extends DaemonOptions {
  imagesDir: string;
  workDir: string;
  daemon: boolean;
  /** --page-server: the pages come from the dump's page server */
  source?: (() => Promise<LazySource>) | undefined;
  /** fill threads (default 2) */
  threads?: number | undefined;
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const NO_SOURCE = (1n << 64n) - 1n;
const NOTE = 24;
const N = { FAULT: 1, FORK: 2, EXITED: 3, ERROR: 4, DRAINED: 5 } as const;
/** pages a remote fault asks for: the faulting one and those after it */
const FAULT_PAGES = 16;
/** pages of one background request to the page server, and how many are in flight */
const FILL_PAGES = 1024;
const IN_FLIGHT = 4;

/** Listens on the work directory's socket (or takes the daemon's inherited one). */
function listenSocket(workDir: string): number {
  const b = bridge();
  try {
    unlinkSync(join(workDir, LAZY_SOCKET));
  } catch {
    // none yet
  }
  const fd = b.socket(AF_UNIX, SOCK_STREAM);
  try {
    b.unixBind(fd, Buffer.from(`${LAZY_SOCKET}\0`), workDir);
    b.listen(fd, 10);
  } catch (e) {
    b.close(fd);
    throw e;
  }
  return fd;
}

/** Every process below `pids` (their threads' children, recursively), the pids first. */
function treeOf(pids: readonly number[]): number[] {
  const out: number[] = [];
  const seen = new Set<number>();
  const walk = (pid: number): void => {
    if (seen.has(pid)) return;
    seen.add(pid);
    out.push(pid);
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    for (const t of tids) {
      let kids = "";
      try {
        kids = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8");
      } catch {
        continue;
      }
      for (const k of kids.split(" ").filter(Boolean)) walk(Number(k));
    }
  };
  for (const p of pids) walk(p);
  return out;
}

/** A space of the engine: a restored task (or a child it forked) and its pages. */
interface Task {
  pid: number;
  pages: number;
}

export async function runLazyPages(o: LazyPagesCommand, log: ModuleLog): Promise<number> {
  const b = bridge();
  const images = new ImageDir(resolve(o.imagesDir));
  const workDir = resolve(o.workDir);
  let expected: number;
  let treePids: Set<number>;
  try {
    const tasks = await images.tasks();
    expected = tasks.length;
    treePids = new Set(tasks.map((t) => t.pid));
  } catch (e) {
    log.error(`cannot read the tree of ${images.dir}: ${(e as Error).message}`);
    return 1;
  }
  let listenFd = inheritedListenFd();
  if (listenFd === undefined) {
    try {
      listenFd = listenSocket(workDir);
    } catch (e) {
      log.error(`cannot listen on ${join(workDir, LAZY_SOCKET)}: ${(e as Error).message}`);
      return 1;
    }
    log.info(`lazy-pages daemon listening on ${join(workDir, LAZY_SOCKET)} for ${expected} task(s) of ${images.dir}`);
    if (o.daemon) {
      startDaemon(listenFd, o);
      return 0;
    }
    if (o.pidfile !== undefined) writeFileSync(o.pidfile, `${process.pid}`);
  }
  signalReady(statusFdOf(o));
  let conn: number;
  try {
    conn = b.accept(listenFd);
  } catch (e) {
    log.error(`cannot accept the restore's connection: ${(e as Error).message}`);
    return 1;
  } finally {
    b.close(listenFd);
    try {
      unlinkSync(join(workDir, LAZY_SOCKET));
    } catch {
      // someone else's now
    }
  }
  return new Session(o, images, conn, expected, treePids, log).run();
}

class Session {
  private readonly b = bridge();
  private readonly files = new Map<string, number>();
  private readonly tasks: Task[] = [];
  private readonly pids: number[] = [];
  private source: LazySource | undefined;
  private finished = false;
  private failure: string | undefined;
  private done!: (code: number) => void;
  private noteRead: Socket | undefined;
  private control: Socket | undefined;
  private started = false;
  private readonly t0 = process.hrtime.bigint();
  private noteW = -1;
  /** remote requests under way: (image, first image address, pages) */
  private readonly inFlight: { pid: number; at: bigint; pages: number; fault: boolean }[] = [];
  private readonly faultQueue: { pid: number; at: bigint }[] = [];
  /** where the background requests of each task go on from */
  private readonly cursors = new Map<number, bigint>();

  constructor(
    private readonly o: LazyPagesCommand,
    private readonly images: ImageDir,
    private readonly conn: number,
    private readonly expected: number,
    private readonly treePids: Set<number>,
    private readonly log: ModuleLog,
  ) {}

  async run(): Promise<number> {
    const [noteR, noteW] = this.b.pipe2(O.CLOEXEC);
    this.noteW = noteW;
    // the event thread blocks on a full pipe: room for many faults at once
    try {
      this.b.fcntl(noteW, F.SETPIPE_SZ, 1 << 20);
    } catch {
      // fs.pipe-max-size is lower: the default size does
    }
    try {
      if (this.o.source) {
        this.source = await this.o.source().catch((e: Error) => {
          throw new Error(`the page server: ${e.message}`, { cause: e });
        });
        this.source.onError((e) => this.fail(`the page server: ${e.message}`));
      }
      this.b.lazyStart(noteW, this.o.threads ?? 2);
      this.started = true;
      await this.receiveTasks();
    } catch (e) {
      this.fail((e as Error).message);
      closeSync(noteR);
      return 1;
    }
    const code = new Promise<number>((r) => (this.done = r));
    this.noteRead = new Socket({ fd: noteR, readable: true, writable: false });
    let pendingNotes: Buffer = Buffer.alloc(0);
    this.noteRead.on("data", (chunk: Buffer) => {
      pendingNotes = pendingNotes.length ? Buffer.concat([pendingNotes, chunk]) : chunk;
      let off = 0;
      try {
        for (; off + NOTE <= pendingNotes.length; off += NOTE) this.onNote(pendingNotes.subarray(off, off + NOTE));
      } catch (e) {
        this.fail((e as Error).message);
      }
      pendingNotes = pendingNotes.subarray(off);
    });
    this.control = new Socket({ fd: this.conn, readable: true, writable: false });
    let ctl: Buffer = Buffer.alloc(0);
    this.control.on("data", (chunk: Buffer) => {
      ctl = Buffer.concat([ctl, chunk]);
      if (ctl.length >= 4) {
        if (ctl.readUInt32LE(0) !== RESTORE_FINISHED) this.fail(`the restore sent 0x${ctl.readUInt32LE(0).toString(16)} where "restore finished" (0x${RESTORE_FINISHED.toString(16)}) was due`);
        else {
          this.finished = true;
          this.log.info("the restore finished; the tasks run");
          // the background fill starts now: before, criu's restore may not have moved
          // and registered the VMAs yet (a copy there fails, and the page was lost)
          this.b.lazyFill();
          this.pump();
          this.check();
        }
      }
    });
    this.control.on("end", () => {
      if (!this.finished) this.fail("the restore closed the lazy-pages socket before it finished (it failed, or was killed)");
    });
    this.control.on("error", (e) => {
      if (!this.finished) this.fail(`the lazy-pages socket: ${e.message}`);
    });
    try {
      this.pump();
      this.check();
    } catch (e) {
      this.fail((e as Error).message);
    }
    const c = await code;
    return c;
  }

  /** criu's handshake: a pid (int) per task, then its userfaultfd; a zombie's pid negated. */
  private async receiveTasks(): Promise<void> {
    const seen = new Set<number>();
    for (let i = 0; i < this.expected; i++) {
      const head = Buffer.alloc(4);
      if (this.b.recvFull(this.conn, head) !== 4) throw new Error(`the restore closed the lazy-pages socket after ${i} of ${this.expected} tasks`);
      const raw = head.readInt32LE(0);
      const pid = Math.abs(raw);
      if (!this.treePids.has(pid) || seen.has(pid)) throw new Error(`the restore sent pid ${raw}, which is ${seen.has(pid) ? "a task it sent already" : `not a task of ${this.images.dir}`}`);
      seen.add(pid);
      if (raw < 0) {
        this.log.debug(`pid ${pid} is a zombie: no memory`);
        continue;
      }
      const { data, fd } = this.b.recvFd(this.conn, 1);
      if (fd < 0) throw new Error(`the restore sent pid ${pid} without its userfaultfd${data.length === 0 ? " (it closed the socket)" : ""}`);
      this.pids.push(pid);
      await this.addTask(pid, fd);
    }
  }

  /** The task's lazy pages as the engine's views, from the pagemap (and the page files). */
  private async addTask(pid: number, uffd: number): Promise<void> {
    let segs;
    try {
      segs = await new PageResolver(this.images.dir, `pagemap-${pid}.img`, pid).resolveLazy();
    } catch (e) {
      this.b.close(uffd);
      throw e;
    }
    // A copy must lie in one VMA, and a pagemap run may go on into the next: cut there.
    let bounds: bigint[];
    try {
      bounds = ((await this.images.mm(pid)).vmas ?? []).map((v) => v.end).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    } catch (e) {
      this.b.close(uffd);
      throw e;
    }
    const quads: bigint[] = [];
    let pages = 0;
    for (const s of cutAt(segs, bounds)) {
      const n = s.len / PAGE_SIZE;
      pages += n;
      if (this.source) {
        quads.push(s.vaddr, BigInt(n), NO_SOURCE, 0n);
        continue;
      }
      if (s.file === "") {
        this.b.close(uffd);
        throw new Error(`pid ${pid}: the images hold no data for the lazy pages at 0x${s.vaddr.toString(16)} (a dump with --lazy-pages): the daemon needs --page-server --address --port of that dump`);
      }
      let fd = this.files.get(s.file);
      if (fd === undefined) this.files.set(s.file, (fd = openSync(s.file, "r")));
      quads.push(s.vaddr, BigInt(n), BigInt(fd), BigInt(s.off));
    }
    this.b.lazyAddSpace(uffd, pid, new BigUint64Array(quads));
    this.tasks.push({ pid, pages });
    if (this.source) this.cursors.set(pid, 0n);
    this.log.info(`pid ${pid}: ${pages} lazy pages${this.source ? " from the page server" : ""}`);
  }

  private onNote(n: Buffer): void {
    const type = n.readUInt32LE(0);
    const space = n.readUInt32LE(4);
    const image = Number(n.readBigUInt64LE(8));
    const addr = n.readBigUInt64LE(16);
    switch (type) {
      case N.FAULT:
        this.faultQueue.push({ pid: image, at: addr });
        this.pump();
        break;
      case N.FORK:
        this.log.debug(`a task of pid ${image}'s memory forked (space ${space} from ${addr})`);
        break;
      case N.EXITED:
        this.log.debug(`space ${space} (pid ${image}'s memory): the task is gone`);
        this.check();
        break;
      case N.ERROR:
        this.fail(`filling pid ${image}'s memory at 0x${addr.toString(16)}: ${errnoName(Number(addr))}`);
        break;
      case N.DRAINED:
        this.check();
        break;
    }
  }

  /** Remote: faults first, then (once the restore finished) the next background runs, IN_FLIGHT requests at most. */
  private pump(): void {
    const src = this.source;
    if (!src || this.failure !== undefined) return;
    while (this.inFlight.length < IN_FLIGHT) {
      let req: { pid: number; at: bigint; pages: number; fault: boolean } | undefined;
      while (!req && this.faultQueue.length) {
        const f = this.faultQueue.shift()!;
        if (this.inFlight.some((r) => r.pid === f.pid && r.at <= f.at && f.at < r.at + BigInt(r.pages * PAGE_SIZE))) continue;
        const w = this.b.lazyWanted(f.pid, f.at, FAULT_PAGES);
        if (w && w[0] === f.at) req = { pid: f.pid, at: w[0], pages: w[1], fault: true };
      }
      if (!req && this.finished) {
        for (const [pid, from] of this.cursors) {
          const w = this.b.lazyWanted(pid, from, FILL_PAGES);
          if (!w) {
            this.cursors.delete(pid);
            continue;
          }
          // past what is under way already: the answer may not be in yet
          const busy = this.inFlight.find((r) => r.pid === pid && r.at <= w[0] && w[0] < r.at + BigInt(r.pages * PAGE_SIZE));
          if (busy) {
            this.cursors.set(pid, busy.at + BigInt(busy.pages * PAGE_SIZE));
            req = undefined;
            continue;
          }
          req = { pid, at: w[0], pages: w[1], fault: false };
          this.cursors.set(pid, w[0] + BigInt(w[1] * PAGE_SIZE));
          break;
        }
      }
      if (!req) return;
      const r = req;
      this.inFlight.push(r);
      src.get(r.pid, r.at, r.pages).then(
        (got) => {
          this.inFlight.splice(this.inFlight.indexOf(r), 1);
          if (this.failure !== undefined) return;
          if (got.nrPages === 0) {
            this.fail(`the page server has no pages of pid ${r.pid} at 0x${r.at.toString(16)}`);
            return;
          }
          try {
            this.b.lazySupply(r.pid, got.vaddr, got.data.subarray(0, got.nrPages * PAGE_SIZE));
            // copied into the tasks: its memory takes the next answer
            src.recycle(got.data);
            // pages it did not send (a shorter answer) are asked for again
            if (got.nrPages < r.pages && !r.fault) this.cursors.set(r.pid, got.vaddr + BigInt(got.nrPages * PAGE_SIZE));
            this.pump();
            this.check();
          } catch (e) {
            this.fail((e as Error).message);
          }
        },
        (e: Error) => this.fail(`the page server, asked for ${r.pages} pages of pid ${r.pid} at 0x${r.at.toString(16)}: ${e.message}`),
      );
    }
  }

  /** Done once the restore finished and no page is left. */
  private check(): void {
    if (this.failure !== undefined || !this.finished || !this.started) return;
    const s = this.b.lazyStatus();
    if (s.left > 0) {
      if (this.source && this.inFlight.length === 0) {
        // a forked child or an mremap may want pages behind the cursors
        for (const t of this.tasks) if (!this.cursors.has(t.pid)) this.cursors.set(t.pid, 0n);
        this.pump();
      }
      return;
    }
    this.summary(s);
    this.finish(0);
  }

  private summary(s: LazyStatus): void {
    const ms = Number(process.hrtime.bigint() - this.t0) / 1e6;
    const pages = this.tasks.reduce((n, t) => n + t.pages, 0);
    this.log.info(
      `all lazy pages in: ${pages} pages of ${this.tasks.length} task(s) in ${ms.toFixed(0)} ms; ${s.faults} faults (${s.faultPages} pages), ${s.fillPages} pages filled in the background, ${s.suppliedPages} from the page server, ${s.zeroPages} zero pages${s.zeroAt.length ? ` (at ${s.zeroAt.map((a) => `0x${a.toString(16)}`).join(", ")}${s.zeroPages > s.zeroAt.length ? ", …" : ""})` : ""}, ${s.events} fork/mremap/munmap events`,
    );
  }

  private fail(why: string): void {
    if (this.failure !== undefined) return;
    this.failure = why;
    const victims = treeOf(this.pids);
    for (const p of victims) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone already
      }
    }
    this.log.error(`${why}; the restored tree is killed${victims.length ? ` (${victims.join(", ")})` : ""}`);
    this.finish(1);
  }

  private finish(code: number): void {
    this.noteRead?.destroy();
    this.control?.destroy();
    if (this.started) this.b.lazyStop();
    this.started = false;
    if (this.noteW >= 0) closeSync(this.noteW);
    this.noteW = -1;
    for (const fd of this.files.values()) closeSync(fd);
    this.files.clear();
    // criu's daemon says PS_IOV_CLOSE and waits for the answer: the dump then ends well
    const closed = code === 0 && this.source ? this.source.close().catch((e: Error) => this.log.warn(`closing the page server session: ${e.message}`)) : Promise.resolve();
    void closed.then(() => this.done?.(code));
  }
}

/** The segments cut at each boundary address (sorted) inside them. */
function cutAt(segs: readonly PageSeg[], bounds: readonly bigint[]): PageSeg[] {
  const out: PageSeg[] = [];
  let i = 0;
  for (const s of segs) {
    let at = s.vaddr;
    const end = s.vaddr + BigInt(s.len);
    while (i < bounds.length && bounds[i]! <= at) i++;
    while (at < end) {
      const b = i < bounds.length && bounds[i]! < end ? bounds[i]! : end;
      out.push({ vaddr: at, len: Number(b - at), file: s.file, off: s.file === "" ? s.off : s.off + Number(at - s.vaddr) });
      at = b;
      if (b < end) i++;
    }
  }
  return out;
}

function errnoName(e: number): string {
  const name = Object.entries(osConstants.errno).find(([, n]) => n === e)?.[0];
  return name ? `${name} (errno ${e})` : `errno ${e}`;
}
