// The write-protect snapshot of `dump -R --wp-snapshot` (criu has none): while the task is
// frozen, its writable private anonymous memory is write-protected through a userfaultfd
// made inside it; the task is let go at once, and its pages are copied while it runs. A
// page it writes before it was copied waits in the fault until a thread of tscriu has
// copied it (host-bridge/src/uffd_wp.c), so the copy is the memory of the frozen instant.
// The task stands still for the protection (page tables, not data), not for the copy.
// Into a local pages file the protected pages are written in place by threads of the
// bridge (stream), so no memory of their size is populated for them (fresh memory is
// what costs here) and reading overlaps writing; for the page server they are copied
// into tscriu's buffers first (copy) and sent after, in order.
//
// The protection itself is made ahead (armAhead): the tree stands still only for a
// userfaultfd to be made in each process, its memory is protected while it runs (a write
// meanwhile faults, and a thread of the bridge unprotects the page), and at the freeze
// only the pages not protected then (written since, or mapped since) are protected
// (WpSnapshot.rearm, PAGEMAP_SCAN). Where that cannot be, the protection is made while
// the task is frozen, as it first was.
//
// Limits: only writable private anonymous VMAs (heap, stacks, anonymous mappings) are
// protected; the other pages that a dump takes (copy-on-written pages of private file
// mappings, read-only anonymous memory, the vDSO, shared memory) are copied while the
// task is frozen, as without the snapshot. A task that uses userfaultfd itself on those
// VMAs, or a kernel without write-protect faults, falls back to copying while frozen.
// With -R the task runs on; without, it runs while its pages are copied (its connections
// locked) and is frozen again and killed once its images are on disk (dump.ts). Not with
// -s: a task that ran on would be left stopped elsewhere than its images.

import { readdirSync, readFileSync } from "node:fs";
import { MAP } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { ModuleLog } from "../log.js";
import type { Captured } from "./capture.js";
import { DumpError } from "./errors.js";
import { freezeTree, releaseTree, type FrozenTree } from "./freeze.js";
import { readProc } from "./proc.js";
import { SmapsAhead } from "./smaps-ahead.js";
import { anonWritableLine, VMA, type Vma } from "./vmas.js";

const NR_USERFAULTFD = 323;
const NR_CLOSE = 3;
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const MAP_PRIVATE = 0x2;
const MAP_ANON = 0x20;
const PROT_WRITE = 2;

/**
 * The VMAs a snapshot protects (and write tracking follows): writable, private, anonymous,
 * none of the kernel's special ones, not hugetlb (criu never leaves hugetlb pages to a
 * parent dump, and write-protect faults there want huge-page-sized copies).
 */
export function protectable(v: Vma): boolean {
  return (
    (v.status & VMA.ANON_PRIVATE) !== 0 &&
    (v.flags & MAP.HUGETLB) === 0 &&
    (v.status & (VMA.VDSO | VMA.VVAR | VMA.VSYSCALL)) === 0 &&
    (v.flags & (MAP_PRIVATE | MAP_ANON)) === (MAP_PRIVATE | MAP_ANON) &&
    (v.prot & PROT_WRITE) !== 0
  );
}

/**
 * The ranges protectable() picks, read off /proc/PID/maps of the frozen task, which walks
 * no page table where smaps walks them all (anonWritableLine: writable private memory of
 * no file). maps cannot tell every VMA protectable() leaves out (MAP_DROPPABLE): the dump
 * checks these ranges against smaps' VMAs once read.
 */
export function protectableInMaps(maps: string): { start: bigint; end: bigint }[] {
  const out: { start: bigint; end: bigint }[] = [];
  for (const line of maps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (m && anonWritableLine(m[3]!, m[4]!, m[5]!)) out.push({ start: BigInt(`0x${m[1]!}`), end: BigInt(`0x${m[2]!}`) });
  }
  return out;
}

/**
 * A userfaultfd of the frozen task's address space, made inside it (a userfaultfd serves
 * the memory of whoever made it), taken here with pidfd_getfd and closed in the task
 * again: the task's fd table is as it was. A string says why there is none.
 */
export function takeUserfaultfd(pid: number, log: ModuleLog): number | string {
  const b = bridge();
  const rfd = b.remoteSyscall(pid, NR_USERFAULTFD, [O_CLOEXEC | O_NONBLOCK]);
  if (rfd < 0n) return `userfaultfd inside the task returned errno ${-rfd}`;
  const pidfd = b.pidfdOpen(pid);
  try {
    return b.pidfdGetfd(pidfd, Number(rfd));
  } finally {
    b.close(pidfd);
    const r = b.remoteSyscall(pid, NR_CLOSE, [rfd]);
    if (r < 0n) log.warn(`pid ${pid}: close(${rfd}) of the userfaultfd inside the task returned errno ${-r}`);
  }
}

function asRanges(vmas: readonly { start: bigint; end: bigint }[]): BigUint64Array {
  return new BigUint64Array(vmas.flatMap((v) => [v.start, v.end - v.start]));
}

/** Unregistered (every page unprotected, every waiting write let go) and closed; what went wrong. */
function unregisterAndClose(uffd: number, ranges: BigUint64Array): string | undefined {
  try {
    bridge().uffdRegister(uffd, ranges, false);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  } finally {
    bridge().close(uffd);
  }
}

/** A process's memory protected ahead of the freeze (armAhead), until WpSnapshot.rearm takes it over or it is ended. */
export class WpArmed {
  private done = false;

  constructor(
    readonly pid: number,
    readonly uffd: number,
    readonly ranges: BigUint64Array,
  ) {}

  /** Hands the userfaultfd over (to the snapshot), once. */
  take(): number {
    this.done = true;
    return this.uffd;
  }

  /** The armed thread stopped, the ranges unregistered and the userfaultfd closed, once. */
  end(): string | undefined {
    if (this.done) return undefined;
    this.done = true;
    bridge().uffdWpDisarm(this.uffd);
    return unregisterAndClose(this.uffd, this.ranges);
  }
}

/**
 * Arms the snapshot of the tree under `pid` ahead of its freeze: the tree is frozen only
 * for a userfaultfd to be made in each process and is let go at once; each one's memory is
 * then protected while it runs (the bridge's thread unprotects what it writes meanwhile).
 * Returns the processes armed and how long the tree stood still for it; a process that
 * cannot be armed is left out (its protection is made at the freeze, as without this).
 * Their smaps is read meanwhile (smaps-ahead.ts), for the freeze to keep where it may.
 */
export async function armAhead(pid: number, timeoutMs: number, log: ModuleLog): Promise<{ armed: Map<number, WpArmed>; frozenUs: number; smaps?: SmapsAhead }> {
  const armed = new Map<number, WpArmed>();
  const t0 = process.hrtime.bigint();
  let tree: FrozenTree;
  try {
    tree = freezeTree(pid, timeoutMs);
  } catch (e) {
    log.info(`the write-protection is not made ahead (${(e as Error).message}): it is made at the freeze`);
    return { armed, frozenUs: 0 };
  }
  const taken: WpArmed[] = [];
  try {
    for (const f of tree.processes) {
      if (f.zombie) continue;
      const ranges = protectableInMaps(readProc(f.pid, "maps"));
      if (ranges.length === 0) continue;
      const uffd = takeUserfaultfd(f.pid, log);
      if (typeof uffd === "string") log.info(`pid ${f.pid}: ${uffd}: its write-protection is made at the freeze`);
      else taken.push(new WpArmed(f.pid, uffd, asRanges(ranges)));
    }
  } catch (e) {
    log.info(`the write-protection is not made ahead for every process (${(e as Error).message}): the others' is made at the freeze`);
  }
  const why = releaseTree(tree, "resume");
  // from the moment it stood still, as the freeze's own frozen time counts (not the seize before)
  const frozenUs = Number((process.hrtime.bigint() - (tree.processes[0]?.frozenAt ?? t0)) / 1000n);
  if (why) {
    for (const a of taken) a.end();
    throw new DumpError("seize", pid, `letting the tree go after making its userfaultfds: ${why}`);
  }
  await Promise.all(
    taken.map(async (a) => {
      try {
        await bridge().uffdWpArm(a.uffd, a.ranges);
        armed.set(a.pid, a);
      } catch (e) {
        log.info(`pid ${a.pid}: write-protection ahead refused (${(e as Error).message}): it is made at the freeze`);
        a.end();
      }
    }),
  );
  // smaps read meanwhile, once the protection is made (its VmFlags say so)
  const smaps = SmapsAhead.start([...armed.keys()], log);
  await firstRuns([...armed.keys()], FIRST_RUN_WAIT_MS, log);
  await smaps?.settled();
  log.info(`write-protection made ahead for ${armed.size} of ${taken.length} processes; the tree stood still ${frozenUs} us for their userfaultfds`);
  return { armed, frozenUs, ...(smaps ? { smaps } : {}) };
}

/** How long the dump waits, at most, for a process to run once after its protection was made ahead. */
const FIRST_RUN_WAIT_MS = 100;
/** The threads whose timeslices are read at each look, over all the processes waited for. */
const THREADS_WATCHED = 64;

/**
 * Waits until a thread of each of `pids` has been on a CPU since now and that run is over
 * (the thread is off the CPU, or was switched in twice), at most `capMs` in all. Where the
 * VM keeps shadow page tables (a PVM guest, as here), the first time a task runs after it
 * was stopped and its page tables rewritten (making the userfaultfd stops it, the
 * protection of each page rewrites them) costs 15-20 ms per GiB at once, as it starts (a
 * freeze as soon as it was switched in found the cost still being paid). A task frozen
 * before it ran again paid that inside the freeze, at the first call made inside it; one
 * that runs once before (a 50 ms timer, a request served) pays it on its own time. An idle
 * task pays it in the freeze still, after this wait. Counted by the timeslices each thread
 * has run (/proc/PID/task/TID/schedstat), of the first threads of each process (64 over
 * them all, at least one each), looked at every millisecond; no wait without schedstat.
 * Returns the processes that ran.
 */
export async function firstRuns(pids: readonly number[], capMs: number, log: ModuleLog): Promise<Set<number>> {
  const t0 = process.hrtime.bigint();
  const per = Math.max(1, Math.floor(THREADS_WATCHED / Math.max(1, pids.length)));
  const waiting = new Map<number, Map<string, number>>();
  for (const pid of pids) {
    const before = timeslices(threadsOf(pid, per));
    if (before.size) waiting.set(pid, before);
  }
  const ran = new Set<number>();
  const elapsedUs = (): number => Number((process.hrtime.bigint() - t0) / 1000n);
  const look = (): void => {
    for (const [pid, before] of waiting) {
      for (const [path, n] of timeslices([...before.keys()])) {
        const was = before.get(path)!;
        // switched in since; and that run over (the cost is paid as it starts): off the CPU now, or switched in again
        if (n <= was || (n === was + 1 && onCpu(path))) continue;
        waiting.delete(pid);
        ran.add(pid);
        log.info(`pid ${pid} ran ${elapsedUs()} us after its protection was made (the first run after it is paid before the freeze)`);
        break;
      }
    }
  };
  look();
  while (waiting.size && elapsedUs() < capMs * 1000) {
    await new Promise((r) => setTimeout(r, 1));
    look();
  }
  for (const pid of waiting.keys()) log.info(`pid ${pid} did not run within ${capMs} ms of its protection: the first run after it is paid inside the freeze`);
  return ran;
}

/** Whether the thread of a schedstat file is running or runnable (R in its stat); not when it is gone. */
function onCpu(schedstat: string): boolean {
  try {
    const stat = readFileSync(schedstat.replace(/schedstat$/, "stat"), "latin1");
    return stat[stat.lastIndexOf(")") + 2] === "R";
  } catch {
    return false;
  }
}

/** The schedstat files of the first `n` threads of `pid` (none when it is gone). */
function threadsOf(pid: number, n: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/task`)
      .slice(0, n)
      .map((tid) => `/proc/${pid}/task/${tid}/schedstat`);
  } catch {
    return [];
  }
}

/** The timeslices each of `files` (schedstat files) counts; a thread gone, or no schedstat, is left out. */
function timeslices(files: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of files) {
    try {
      const n = Number(readFileSync(f, "latin1").split(" ")[2]);
      if (Number.isFinite(n)) out.set(f, n);
    } catch {
      // gone meanwhile, or no schedstat
    }
  }
  return out;
}

/** One task's protected memory, from the freeze until the copy is done. */
export class WpSnapshot {
  private done = false;

  private constructor(
    readonly pid: number,
    private readonly uffd: number,
    private readonly ranges: BigUint64Array,
  ) {}

  /**
   * Makes a userfaultfd in the frozen task and takes it (here, at once: ptrace), then
   * protects the ranges `vmas` on the thread pool, in two halves at once past 64 MiB (the
   * page tables of 1 GiB took 12-40 ms on these VMs, which the dump spends on the rest of
   * the task meanwhile); undefined (and the
   * task as it was) when the kernel or the task does not allow it (`refused` tells the
   * log what follows).
   */
  static async protect(pid: number, vmas: readonly { start: bigint; end: bigint }[], log: ModuleLog, refused = "its pages are copied while it is frozen"): Promise<WpSnapshot | undefined> {
    const b = bridge();
    if (vmas.length === 0) return undefined;
    const uffd = takeUserfaultfd(pid, log);
    if (typeof uffd === "string") {
      log.info(`pid ${pid}: ${uffd}: its pages are copied while it is frozen`);
      return undefined;
    }
    const ranges = asRanges(vmas);
    try {
      await b.uffdWriteProtect(uffd, ranges);
    } catch (e) {
      log.info(`pid ${pid}: write-protect refused (${(e as Error).message}): ${refused}`);
      try {
        b.uffdRegister(uffd, ranges, false);
      } catch {
        // some were never registered
      }
      b.close(uffd);
      return undefined;
    }
    return new WpSnapshot(pid, uffd, ranges);
  }

  /**
   * The task frozen: takes over the protection `armed` made ahead (the pages not
   * protected now, written or mapped since, protected: the memory of `vmas` is then as
   * protect() leaves it). If that fails, the armed protection is ended and made anew.
   */
  static async rearm(armed: WpArmed, vmas: readonly { start: bigint; end: bigint }[], log: ModuleLog, refused?: string): Promise<WpSnapshot | undefined> {
    const ranges = asRanges(vmas);
    try {
      const pages = await bridge().uffdWpRearm(armed.uffd, armed.pid, ranges);
      log.info(`pid ${armed.pid}: write-protection made ahead; ${pages} pages written or mapped since protected at the freeze`);
      return new WpSnapshot(armed.pid, armed.take(), ranges);
    } catch (e) {
      log.info(`pid ${armed.pid}: the write-protection made ahead could not be completed (${(e as Error).message}): made anew`);
      armed.end();
      return WpSnapshot.protect(armed.pid, vmas, log, refused);
    }
  }

  /**
   * Writes the reserved runs of a capture in place in the pages file `out` while the task
   * runs (`holes`: (addr, length, file offset) triples, PageSink.add's); resolves to the
   * pages copied early (the task wrote them first). Ends the protection either way.
   */
  async stream(holes: readonly bigint[], out: number): Promise<number> {
    try {
      if (holes.length === 0) return 0;
      // TSCRIU_WP_HOLD: fewer pages written first held in memory (tests of the path past it)
      const hold = process.env["TSCRIU_WP_HOLD"];
      return (await bridge().uffdSnapshotStream(this.uffd, this.pid, new BigUint64Array(holes), out, hold === undefined ? undefined : Number(hold))).early;
    } finally {
      this.end();
    }
  }

  /** Copies the reserved runs of `c` while the task runs; returns pages copied early (the task wrote them). */
  copy(c: Captured, reserved: ReadonlySet<number>): number {
    const bufs: Buffer[] = [];
    const index = new Map<Buffer, number>();
    const quads: bigint[] = [];
    c.runs.forEach((r, i) => {
      if (!reserved.has(i)) return;
      let bi = index.get(r.buf);
      if (bi === undefined) index.set(r.buf, (bi = bufs.push(r.buf) - 1));
      quads.push(BigInt(r.vaddr), BigInt(r.pages * 4096), BigInt(bi), BigInt(r.off));
    });
    try {
      const early = bridge().uffdSnapshotCopy(this.uffd, this.pid, new BigUint64Array(quads), bufs).early;
      for (const i of [...reserved]) c.reserved.delete(i);
      return early;
    } finally {
      this.end();
    }
  }

  /**
   * Unregisters (every page unprotected, every waiting write let go) and closes, once.
   * Returns what went wrong (a task that exited meanwhile has nothing left to unregister).
   */
  end(): string | undefined {
    if (this.done) return undefined;
    this.done = true;
    return unregisterAndClose(this.uffd, this.ranges);
  }

  /** Whether [addr, addr + len) lies inside the protected ranges. */
  covers(addr: number, len: number): boolean {
    for (let i = 0; i < this.ranges.length; i += 2) {
      const start = Number(this.ranges[i]!);
      if (addr >= start && addr + len <= start + Number(this.ranges[i + 1]!)) return true;
    }
    return false;
  }
}
