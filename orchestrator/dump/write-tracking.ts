// Write tracking between the passes of an incremental dump (pre-dump, dump --track-mem),
// on kernels without soft-dirty bits: each process of the tree gets a userfaultfd in
// asynchronous write-protect mode (host-bridge/src/uffd_track.c). While the tree is
// frozen, its writable private anonymous VMAs are registered and their pages protected;
// a write then clears a page's protection in the kernel (no fault to serve), and the next
// pass asks PAGEMAP_SCAN which pages were written. A protected page the task never wrote
// still holds what the last pass saved: it is written as PE_PARENT without being copied
// or compared. Everything else (other memory kinds, VMAs mapped since, a task whose
// tracking cannot be trusted) goes through the byte comparison with the parent (parent.ts).
//
// The userfaultfds outlive tscriu in a small holder process (host-bridge/src/tracker.c),
// recorded in a state file per tree root ($TSCRIU_TRACK_DIR, default /run/tscriu/track).
// A pass trusts the tracking only when the state says it was armed by the pass whose
// images are this pass's parent (same directory, same inventory.img), for the same root
// process (start time) and the same holder. The state is marked unarmed before anything
// changes, so a pass that fails or dies half-way leaves nothing that claims to be valid.
// A pass that keeps the tracking (a pre-dump; a dump --track-mem leaving the task
// running) hands the fds to a new holder once its images are complete; any other pass,
// and any failure, ends it: the fds closed, the ranges unregistered and unprotected.

import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bridge, helperProgram, isNativeError } from "../../host-bridge/load.js";
import { PAGE_IS, pagemapScan } from "../../host-bridge/pagemap.js";
import { toU64Array } from "../../host-bridge/u64.js";
import type { ModuleLog } from "../log.js";
import { coverageOf, pagemapCoverage } from "../../images/pages.js";
import type { PagemapRun } from "./pagewriter.js";
import type { PagePlan } from "./memory.js";
import type { Faults } from "./faults.js";
import { copyRuns, rearmWritten, type PreCopy } from "./precopy.js";
import { anonWritableLine, parseSmaps, type Vma } from "./vmas.js";
import { protectable, takeUserfaultfd } from "./wpsnap.js";

const EBUSY = 16;
const PAGE = 4096;
/** How long the holder may take to say it holds the fds. */
const READY_MS = 5000;
/** Written runs this close (bytes) are protected again as one range (one ioctl ~ 10 us, a protected page ~ 0.2 us here). */
const MERGE_GAP = 48 * PAGE;
/**
 * A pre-copy's memory is populated before its pages are protected again (prepare, then
 * preCopy), so that the task writes for as short a time as can be between the two: each
 * page it writes then is one the freeze copies. Populating it after, as first done, took
 * 0.05-0.2 s of fresh memory here, and the freeze of a chain's last pass copied 13,000-
 * 16,000 pages written meanwhile. The task writes new pages until they are protected, so a
 * quarter more and 1 MiB are populated; runs that do not fit get memory of their own then.
 */
const PRE_MARGIN = 4;
const PRE_SLACK = 1 << 20;

interface TaskEntry {
  /** start time (clock ticks since boot, /proc/PID/stat): a reused pid is not the task */
  start: string;
  /** the userfaultfd's number in the holder */
  fd: number;
}

interface TrackState {
  root: number;
  rootStart: string;
  holder: { pid: number; start: string };
  /** the pass the protection was set by; null while a pass changes it */
  armed: { dir: string; dev: string; ino: string } | null;
  tasks: Record<string, TaskEntry>;
  /**
   * what the arming pass's pagemap of each task covers, as hex "start-end" ranges: its
   * parent for the next pass, also when that pagemap is on a page server
   */
  covered?: Record<string, string[]>;
  /** holders being replaced when the state was written: killed by the next pass if still there */
  retired?: { pid: number; start: string }[];
}

function stateDir(): string {
  return process.env["TSCRIU_TRACK_DIR"] ?? "/run/tscriu/track";
}

/** A process's start time, or undefined when it is gone. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function alive(pid: number, start: string): boolean {
  const now = startTime(pid);
  if (now !== start) return false;
  try {
    return !/^State:\s+[ZX]/m.test(readFileSync(`/proc/${pid}/status`, "latin1"));
  } catch {
    return false;
  }
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Which pass a directory's images are: its real path and its inventory.img. */
function passIdentity(dir: string): TrackState["armed"] {
  try {
    const real = realpathSync(dir);
    const st = statSync(join(real, "inventory.img"), { bigint: true });
    return { dir: real, dev: String(st.dev), ino: String(st.ino) };
  } catch {
    return null;
  }
}

/**
 * Bytes of the task's pages protected and not written since (only a VMA registered for
 * write-protect has such pages), counted with the task running: an estimate.
 */
function unwrittenNow(pid: number): number {
  try {
    // the task's mappings but the vsyscall page, which is no VMA of its own
    const lines = readFileSync(`/proc/${pid}/maps`, "latin1").trimEnd().split("\n").filter((l) => !l.endsWith("[vsyscall]"));
    const range = (l: string | undefined): string[] => (l ?? "0-0").split(" ")[0]!.split("-");
    const start = Number.parseInt(range(lines[0])[0]!, 16);
    const end = Number.parseInt(range(lines[lines.length - 1])[1]!, 16);
    let bytes = 0;
    const w = PAGE_IS.WRITTEN;
    for (const r of pagemapScan(pid, start, end, { categoryMask: w, categoryInverted: w, categoryAnyofMask: PAGE_IS.PRESENT | PAGE_IS.SWAPPED, returnMask: w })) bytes += r.end - r.start;
    return bytes;
  } catch {
    return 0;
  }
}

/** Bytes of written (unprotected) pages in `ranges` ((start, length) pairs), counted with the task running. */
function writtenBytes(pid: number, ranges: readonly number[]): number {
  let bytes = 0;
  const w = PAGE_IS.WRITTEN;
  for (let i = 0; i < ranges.length; i += 2) {
    for (const r of pagemapScan(pid, ranges[i]!, ranges[i]! + ranges[i + 1]!, { categoryMask: w, categoryAnyofMask: PAGE_IS.PRESENT | PAGE_IS.SWAPPED, returnMask: w })) bytes += r.end - r.start;
  }
  return bytes;
}

/** The state file, or undefined (with a warning naming it, when it is there but not a state tscriu wrote). */
function readState(path: string, log: ModuleLog): TrackState | undefined {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") log.warn(`write tracking state ${path} unreadable (${(e as Error).message}): ignored`);
    return undefined;
  }
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
  const isProc = (x: unknown): boolean => isObj(x) && Number.isInteger(x["pid"]) && (x["pid"] as number) > 0 && typeof x["start"] === "string";
  const ok =
    isObj(v) &&
    Number.isInteger(v["root"]) &&
    typeof v["rootStart"] === "string" &&
    isProc(v["holder"]) &&
    (v["armed"] === null || (isObj(v["armed"]) && ["dir", "dev", "ino"].every((k) => typeof (v["armed"] as Record<string, unknown>)[k] === "string"))) &&
    isObj(v["tasks"]) &&
    Object.values(v["tasks"]).every((t) => isObj(t) && typeof t["start"] === "string" && Number.isInteger(t["fd"]) && (t["fd"] as number) >= 0) &&
    (v["retired"] === undefined || (Array.isArray(v["retired"]) && v["retired"].every(isProc))) &&
    (v["covered"] === undefined || (isObj(v["covered"]) && Object.values(v["covered"]).every((c) => Array.isArray(c) && c.every((r) => typeof r === "string" && /^[0-9a-f]{1,16}-[0-9a-f]{1,16}$/.test(r)))));
  if (!ok) {
    log.warn(`write tracking state ${path} is not one tscriu wrote: ignored`);
    return undefined;
  }
  return v as TrackState;
}

/** Replaces the state file whole (a reader never sees half of it). */
function writeState(path: string, state: TrackState): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(state));
  renameSync(`${path}.tmp`, path);
}

/** Coverage pairs as the state file keeps them, and back. */
function toRanges(pairs: BigUint64Array): string[] {
  const out: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) out.push(`${pairs[i]!.toString(16)}-${pairs[i + 1]!.toString(16)}`);
  return out;
}

function fromRanges(ranges: readonly string[]): BigUint64Array {
  return new BigUint64Array(ranges.flatMap((r) => r.split("-").map((h) => BigInt(`0x${h}`))));
}

function rangesOf(list: readonly { start: number; len: number }[]): BigUint64Array {
  return toU64Array(list.flatMap((r) => [r.start, r.len]));
}

/** One process's userfaultfd (ours), the ranges registered on it, and what this pass knows. */
interface TaskTrack {
  fd: number;
  /** VMAs whose writes were tracked since the parent (start addresses) */
  tracked: Set<bigint>;
  /** ranges registered on it by this pass */
  registered: { start: number; len: number }[];
}

export class WriteTracking {
  private readonly tasks = new Map<number, TaskTrack>();
  /** the address ranges each task's parent pagemap has entries for (or why not) */
  private readonly covered_ = new Map<number, BigUint64Array | string>();
  /** what preCopy copied, by pid */
  private readonly pre = new Map<number, PreCopy>();
  private ended = false;
  /** each task's pre-copy made ready (prepare): the ranges it protects and the memory populated for it */
  private readonly ready = new Map<number, { ours: number[]; buf: Buffer }>();
  /** before the freeze: bytes of tracked pages not written since the parent (what this pass will likely not copy) */
  unwrittenBytes = 0;
  /** bytes written since the parent that preCopy will copy (neither will the freeze, but for what is written meanwhile) */
  preCopyBytes = 0;

  private constructor(
    private readonly root: number,
    private readonly log: ModuleLog,
    /** the state found, valid for this pass's parent */
    private readonly old: TrackState | undefined,
    /** keep the tracking after a successful pass */
    readonly keep: boolean,
  ) {}

  /** Whether the writes since the parent are known for some of the tree's memory. */
  get valid(): boolean {
    return this.old !== undefined;
  }

  /** Whether this pass changes any task's memory protection (the write-protect snapshot then stands aside). */
  get active(): boolean {
    return this.valid || this.keep;
  }

  private static statePath(root: number): string {
    return join(stateDir(), `${root}.json`);
  }

  /**
   * Before the freeze: reads the tree's tracking state and decides whether it holds for
   * `parentDir` (the resolved --prev-images-dir, if any). Tracking that does not hold is
   * ended here (its holder killed: the protection goes with its fds), so that the VMAs
   * this pass sees are registered by nothing of tscriu's.
   */
  static async open(root: number, parentDir: string | undefined, keep: boolean, log: ModuleLog): Promise<WriteTracking> {
    const path = WriteTracking.statePath(root);
    const state = readState(path, log);
    if (!state) return new WriteTracking(root, log, undefined, keep);
    // A pass that died while handing the fds over: the holders it left are not trusted.
    for (const h of state.retired ?? []) killHolder(h.pid, h.start);
    const holderAlive = alive(state.holder.pid, state.holder.start);
    const parent = parentDir !== undefined ? passIdentity(parentDir) : null;
    const why =
      state.root !== root || state.rootStart !== startTime(root)
        ? "it was for another process of that pid"
        : !holderAlive
          ? "its holder process is gone"
          : state.armed === null
            ? "the pass that set it did not finish"
            : parent === null
              ? "this pass has no parent images"
              : state.armed.dir !== parent.dir || state.armed.dev !== parent.dev || state.armed.ino !== parent.ino
                ? `it was set by the pass in ${state.armed.dir}, not by the parent ${parent.dir}`
                : undefined;
    // Nothing may claim the tracking valid while this pass changes it.
    try {
      writeState(path, { ...state, armed: null });
    } catch (e) {
      log.warn(`cannot update ${path}: ${(e as Error).message}`);
    }
    if (why !== undefined) {
      log.info(`write tracking of pid ${root} not used: ${why}`);
      if (holderAlive) killHolder(state.holder.pid, state.holder.start);
      rmSync(path, { force: true });
      return new WriteTracking(root, log, undefined, keep);
    }
    log.info(`write tracking of pid ${root} holds since the parent (${state.armed!.dir})`);
    const t = new WriteTracking(root, log, state, keep);
    // What the parent's pagemaps cover, read now rather than while the tree is frozen,
    // and how much memory this pass will not copy (to size its buffers).
    for (const pid of Object.keys(state.tasks)) {
      const recorded = state.covered?.[pid];
      t.covered_.set(Number(pid), recorded ? fromRanges(recorded) : await pagemapCoverage(parentDir!, `pagemap-${pid}.img`).catch((e: unknown) => (e as Error).message));
      t.unwrittenBytes += unwrittenNow(Number(pid));
    }
    log.info(`${t.unwrittenBytes} bytes tracked as not written since the parent`);
    return t;
  }

  /** The processes whose writes are tracked since the parent. */
  trackedPids(): number[] {
    return this.old ? Object.keys(this.old.tasks).map(Number) : [];
  }

  /** The parent holds no pages of `pid` after all: every page of it is copied. */
  noParent(pid: number, why: string): void {
    this.covered_.set(pid, why);
    this.pre.delete(pid);
  }

  /**
   * With the process frozen: the VMAs of `vmas` whose writes are known since the parent
   * (registered on this tree's userfaultfd since then). A VMA registered by a userfaultfd
   * of the task's own (EBUSY) is not.
   */
  trackedVmas(pid: number, vmas: readonly Vma[]): (v: Vma) => boolean {
    const t = this.taskFd(pid);
    if (!t) return () => false;
    const candidates = vmas.filter((v) => v.uffdWp && protectable(v));
    if (candidates.length) {
      const errs = bridge().uffdTrackRegister(t.fd, rangesOf(candidates.map((v) => ({ start: Number(v.start), len: Number(v.end - v.start) }))));
      candidates.forEach((v, i) => {
        if (errs[i] === 0) t.tracked.add(v.start);
        else if (errs[i] !== EBUSY) this.log.info(`pid ${pid}: re-registering ${v.start.toString(16)}-${v.end.toString(16)} failed (errno ${errs[i]}): compared with the parent`);
      });
    }
    this.log.info(`pid ${pid}: ${t.tracked.size} VMAs with their writes tracked since the parent`);
    return (v) => t.tracked.has(v.start);
  }

  /** The tracking userfaultfd of `pid`, taken from the holder once; undefined when the tracking of it does not hold. */
  private taskFd(pid: number): TaskTrack | undefined {
    const have = this.tasks.get(pid);
    if (have) return have;
    const entry = this.old?.tasks[String(pid)];
    if (!this.old || !entry || entry.start !== startTime(pid)) return undefined;
    const b = bridge();
    const pidfd = b.pidfdOpen(this.old.holder.pid);
    try {
      const t: TaskTrack = { fd: b.pidfdGetfd(pidfd, entry.fd), tracked: new Set(), registered: [] };
      this.tasks.set(pid, t);
      return t;
    } catch (e) {
      this.log.info(`pid ${pid}: the tracking userfaultfd cannot be taken from its holder (${(e as Error).message}): compared with the parent`);
      return undefined;
    } finally {
      b.close(pidfd);
    }
  }

  /**
   * Before the freeze, first of two steps (precopy.ts): measures each tracked task's pages
   * written since the parent, at most `limit` bytes in all, and populates the memory their
   * pre-copy will take, with a margin for the pages written until preCopy() protects them.
   * Nothing is protected yet. Then unwrittenBytes and preCopyBytes say how much of the
   * tasks' memory the freeze will likely not copy (the capture pool is sized from them).
   */
  prepare(limit: number): void {
    if (!this.old) return;
    let held = 0;
    for (const pid of this.trackedPids()) {
      if (typeof this.covered_.get(pid) === "string") continue;
      const t = this.taskFd(pid);
      if (!t) continue;
      try {
        // The VMAs registered on this tree's userfaultfd (re-registering on the same one is
        // allowed; a userfaultfd of the task's own says EBUSY).
        const candidates = parseSmaps(readFileSync(`/proc/${pid}/smaps`, "latin1")).filter((v) => v.vmflags.includes("uw") && anonWritableLine(v.perms, v.ino, v.name));
        const ranges = candidates.map((v) => ({ start: Number(v.start), len: Number(v.end - v.start) }));
        const errs = ranges.length ? bridge().uffdTrackRegister(t.fd, rangesOf(ranges)) : new Int32Array(0);
        const ours = ranges.filter((_, i) => errs[i] === 0).flatMap((r) => [r.start, r.len]);
        const written = writtenBytes(pid, ours);
        const room = written + Math.ceil(written / PRE_MARGIN / PAGE) * PAGE + PRE_SLACK;
        if (held + room > limit) {
          this.log.info(`pid ${pid}: ${written} bytes written since the parent: more than tscriu may hold, copied while frozen`);
          continue;
        }
        held += room;
        this.ready.set(pid, { ours, buf: bridge().allocPopulated(room, false) });
        this.preCopyBytes += written;
      } catch (e) {
        this.log.info(`pid ${pid}: no pre-copy (${(e as Error).message})`);
      }
    }
    this.unwrittenBytes = this.trackedPids().reduce((n, pid) => n + unwrittenNow(pid), 0);
  }

  /**
   * Right before the freeze, second step: each prepared task's pages written since the
   * parent are protected again and copied; the freeze then copies only what is written
   * after. A task whose pre-copy fails after protecting pages trusts none of its tracking
   * (its pages are all copied while frozen).
   */
  preCopy(faults: Faults): void {
    for (const [pid, { ours, buf }] of this.ready) {
      const t0 = process.hrtime.bigint();
      try {
        const runs = rearmWritten(pid, ours);
        faults.preCopy();
        const pre = copyRuns(pid, runs, faults, buf);
        this.pre.set(pid, pre);
        this.log.info(`pid ${pid}: ${pre.bytes / PAGE} pages written since the parent copied before the freeze in ${(process.hrtime.bigint() - t0) / 1000n} us${pre.bytes > buf.length ? ` (${pre.bytes - buf.length} bytes more than populated for them)` : ""}`);
      } catch (e) {
        // (the scan that protects them again may have protected some before failing)
        this.noParent(pid, `its pre-copy failed (${(e as Error).message})`);
        this.log.info(`pid ${pid}: no pre-copy (${(e as Error).message}): every page of it is copied while frozen`);
      }
    }
    this.ready.clear();
  }

  /** What preCopy copied of `pid` (none once the parent is not trusted for it). */
  preCopied(pid: number): PreCopy | undefined {
    return typeof this.covered_.get(pid) === "string" ? undefined : this.pre.get(pid);
  }

  /**
   * Where the parent's pagemap of `pid` has entries ((start, end) pairs), read before the
   * freeze: unwritten pages outside them are copied. Empty when it could not be read.
   */
  covered(pid: number): BigUint64Array | undefined {
    const c = this.covered_.get(pid);
    if (typeof c === "string") this.log.info(`pid ${pid}: the parent's pagemap cannot be read (${c}): every page is copied`);
    return typeof c === "string" ? new BigUint64Array(0) : c;
  }

  /**
   * With the process frozen, once its pages are copied (or planned and copied before it
   * runs): protects what the next pass must see written. Tracked VMAs only need the
   * pages written since the parent protected again; other VMAs are registered and
   * protected whole. Does nothing unless the tracking is kept.
   */
  arm(pid: number, vmas: readonly Vma[], plan: PagePlan): void {
    if (!this.keep) return;
    const b = bridge();
    let t = this.tasks.get(pid);
    if (t && !vmas.some((v) => v.uffdWp)) {
      // Nothing of this address space is registered: the fd is of an address space the
      // task left (execve). A new one serves this one.
      b.close(t.fd);
      this.tasks.delete(pid);
      t = undefined;
    }
    if (!t) {
      const fd = takeUserfaultfd(pid, this.log);
      if (typeof fd === "string") {
        this.log.info(`pid ${pid}: no write tracking (${fd}): the next pass compares its pages with this one`);
        return;
      }
      try {
        b.uffdTrackStart(fd);
      } catch (e) {
        b.close(fd);
        this.log.info(`pid ${pid}: no write tracking (${(e as Error).message}): the next pass compares its pages with this one`);
        return;
      }
      t = { fd, tracked: new Set(), registered: [] };
      this.tasks.set(pid, t);
    }
    const tracked = vmas.filter((v) => t.tracked.has(v.start));
    try {
      const ranges = vmas.filter((v) => protectable(v) && !t.tracked.has(v.start)).map((v) => ({ start: Number(v.start), len: Number(v.end - v.start) }));
      const errs = ranges.length ? b.uffdTrackRegister(t.fd, rangesOf(ranges)) : new Int32Array(0);
      const whole = ranges.filter((_, i) => errs[i] === 0);
      const busy = errs.filter((e) => e === EBUSY).length;
      if (busy) this.log.info(`pid ${pid}: ${busy} VMAs have a userfaultfd of the task's own: compared with the parent at the next pass`);
      t.registered.push(...whole);
      const written = writtenIn(plan, tracked);
      b.uffdTrackProtect(t.fd, rangesOf([...whole, ...written]), true);
      this.log.debug(`pid ${pid}: ${whole.length} VMAs protected whole, ${written.length} written runs protected again`);
    } catch (e) {
      // This process goes untracked (the next pass compares its pages); nothing of the
      // tracking may stay on it: the old holder's copy of the fd is killed at commit.
      this.log.info(`pid ${pid}: write tracking not set (${(e as Error).message}): the next pass compares its pages with this one`);
      const all = [...t.registered, ...tracked.map((v) => ({ start: Number(v.start), len: Number(v.end - v.start) }))];
      try {
        if (all.length) b.uffdRegister(t.fd, rangesOf(all), false);
      } catch {
        // unmapped meanwhile: nothing left to unregister
      }
      b.close(t.fd);
      this.tasks.delete(pid);
    }
  }

  /**
   * After a successful pass: a kept tracking goes to a new holder, recorded as armed by
   * the images in `imagesDir`; otherwise it ends. Returns what went wrong in ending it.
   */
  async commit(imagesDir: string, pagemaps: ReadonlyMap<number, readonly PagemapRun[]>): Promise<string | undefined> {
    if (!this.keep || this.tasks.size === 0) return this.release();
    const b = bridge();
    const dir = stateDir();
    const path = WriteTracking.statePath(this.root);
    const outFile = join(dir, `${this.root}.holder`);
    let holder: number | undefined;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      rmSync(outFile, { force: true });
      const list = [...this.tasks].map(([pid, t]) => `${pid}:${t.fd}`);
      holder = b.spawnDetached([helperProgram("tscriu_tracker", "TSCRIU_TRACKER"), String(process.pid), ...list], { stdout: outFile });
      // Written at once: should this process die before the state below, the next pass
      // finds both holders and kills them.
      const holders = [{ pid: holder, start: startTime(holder) ?? "" }, ...(this.old ? [this.old.holder] : [])];
      writeState(path, { root: this.root, rootStart: startTime(this.root) ?? "", holder: holders[0]!, armed: null, tasks: {}, retired: holders });
      const got = await holderReady(outFile, holder);
      const tasks: Record<string, TaskEntry> = {};
      for (const [pid, fd] of got) {
        const start = startTime(pid);
        if (start !== undefined) tasks[String(pid)] = { start, fd };
      }
      const armed = passIdentity(imagesDir);
      if (!armed) throw new Error(`${imagesDir}/inventory.img is missing`);
      // The old holder stays retired until it is killed below.
      const covered: Record<string, string[]> = {};
      for (const pid of Object.keys(tasks)) {
        const runs = pagemaps.get(Number(pid));
        if (runs) covered[pid] = toRanges(coverageOf(runs.map((r) => ({ vaddr: r.vaddr, nrPages: r.pages, flags: r.flags }))));
      }
      writeState(path, { root: this.root, rootStart: startTime(this.root) ?? "", holder: holders[0]!, armed, tasks, covered, retired: holders.slice(1) });
    } catch (e) {
      this.log.warn(`write tracking not kept (${(e as Error).message}): the next pass compares pages with these images`);
      if (holder !== undefined) killHolder(holder, startTime(holder));
      return this.release();
    } finally {
      rmSync(outFile, { force: true });
    }
    const n = this.tasks.size;
    for (const t of this.tasks.values()) b.close(t.fd);
    this.tasks.clear();
    this.ended = true;
    if (this.old) {
      killHolder(this.old.holder.pid, this.old.holder.start);
      try {
        writeState(path, { ...(JSON.parse(readFileSync(path, "utf8")) as TrackState), retired: [] });
      } catch {
        // the next pass finds the old holder gone
      }
    }
    this.log.info(`write tracking of ${n} processes kept by holder pid ${holder} until the next pass`);
    return undefined;
  }

  /**
   * Ends the tracking, once: every range this pass registered unregistered (which drops
   * its protection), the fds closed, the holder killed (closing the last copies drops the
   * rest), the state removed. Returns what went wrong.
   */
  release(): string | undefined {
    if (this.ended) return undefined;
    this.ended = true;
    const b = bridge();
    const problems: string[] = [];
    for (const [pid, t] of this.tasks) {
      const all = [...t.registered];
      if (all.length) {
        try {
          b.uffdRegister(t.fd, rangesOf(all), false);
        } catch (e) {
          // a task that exited or unmapped meanwhile has nothing left to unregister
          if (!(isNativeError(e) && (e.code === "ESRCH" || e.code === "EINVAL" || e.code === "ENOMEM"))) problems.push(`pid ${pid}: ${(e as Error).message}`);
        }
      }
      b.close(t.fd);
    }
    this.tasks.clear();
    if (this.old) killHolder(this.old.holder.pid, this.old.holder.start);
    rmSync(WriteTracking.statePath(this.root), { force: true });
    return problems.length ? problems.join("; ") : undefined;
  }
}

/** The copied runs of `plan` inside the `tracked` VMAs (both in address order), clipped to them. */
function writtenIn(plan: PagePlan, tracked: readonly Vma[]): { start: number; len: number }[] {
  const out: { start: number; len: number }[] = [];
  let i = 0;
  let lastVma = -1;
  for (const s of plan.segments) {
    // pre-copied pages were protected again before the freeze, and not written since
    if (s.pre) continue;
    const end = s.addr + s.len;
    while (i < tracked.length && Number(tracked[i]!.end) <= s.addr) i++;
    for (let j = i; j < tracked.length && Number(tracked[j]!.start) < end; j++) {
      const from = Math.max(s.addr, Number(tracked[j]!.start));
      const to = Math.min(end, Number(tracked[j]!.end));
      if (to <= from) continue;
      // Runs close together in one VMA are protected as one: protecting pages that are
      // protected already costs less than another ioctl.
      const last = out[out.length - 1];
      if (last && lastVma === j && from - (last.start + last.len) <= MERGE_GAP) last.len = to - last.start;
      else out.push({ start: from, len: to - from });
      lastVma = j;
    }
  }
  return out;
}

/** Kills a holder (if it is still the one recorded) and waits until its fds are closed. */
function killHolder(pid: number, start: string | undefined): void {
  if (start === undefined || !alive(pid, start)) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  // Its fds are closed on exit, before it is a zombie.
  for (let i = 0; i < 5000 && alive(pid, start); i++) sleepMs(1);
}

/** Waits for the holder's "ready": the (task pid, fd) pairs it holds. */
async function holderReady(outFile: string, holder: number): Promise<[number, number][]> {
  const start = startTime(holder);
  for (let waited = 0; waited < READY_MS; waited += 2) {
    const text = existsSync(outFile) ? readFileSync(outFile, "utf8") : "";
    const err = /^error (\S+) (\d+)$/m.exec(text);
    if (err) throw new Error(`the holder failed at ${err[1]} (errno ${err[2]})`);
    if (/^ready$/m.test(text)) {
      return [...text.matchAll(/^(\d+) (\d+)$/gm)].map((m) => [Number(m[1]), Number(m[2])] as [number, number]);
    }
    if (start === undefined || !alive(holder, start)) throw new Error(`the holder (pid ${holder}) exited: ${text.trim() || "no output"}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`the holder (pid ${holder}) did not get ready in ${READY_MS} ms`);
}
