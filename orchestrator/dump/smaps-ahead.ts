// smaps read ahead of the freeze, for the write-protect snapshot (criu has none). smaps is
// the one place that tells each VMA's flags (VmFlags: locked, madvise'd, growing down...),
// and reading it walks every page table of the task: 10-15 ms for 1 GiB here, the longest
// step inside the snapshot's freeze. So it is read while the task runs, once its
// protection is made (wpsnap.ts armAhead), and kept at the freeze when the task made
// none of the calls that change its mappings or their flags since the read began:
//
// - Before the read, a perf counter is put on each thread of the process (the
//   raw_syscalls:sys_enter and sys_exit tracepoints, filtered by syscall number, inherited
//   by the threads and processes it starts later). The threads are listed again until no
//   new one shows: a thread started before its parent was watched is then watched itself.
// - A call that began before the counters and ends after them is counted by its exit; a
//   thread the freeze stops in the middle of a call leaves it first (its exit counted).
// - At the freeze, before anything runs inside the tree, the counts are read: a process
//   that made no such call keeps the read; the VMAs are still checked against maps read in
//   the freeze (a stack grown by a fault alone changes them), as for any smaps read ahead.
// - The VMAs are classified ahead too, their mapped files opened (vmas.ts VmaRead); the
//   freeze only gives the files their ids, from each file as it stands then.
//
// What the counters do not see (README, limits): a change made to the task's mappings by
// another process (one it passed a userfaultfd to, registering ranges of it), and a 32-bit
// call of a 64-bit task (int 0x80: the numbers are i386's). Where the kernel cannot count
// (no syscall tracepoints, no perf) or a process has more threads than are watched, smaps
// is read in the freeze, as before.

import { readdirSync, readFileSync } from "node:fs";
import { bridge } from "../../host-bridge/load.js";
import type { ModuleLog } from "../log.js";
import { readProcAhead } from "./proc.js";
import { parseSmaps, VmaRead } from "./vmas.js";

/**
 * The x86_64 calls that map, unmap, move or protect memory, change a VMA's flags, or can
 * do so on the task's behalf (io_uring's madvise), or replace the address space (exec).
 */
const MAPPING_CALLS = {
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  brk: 12,
  mremap: 25,
  madvise: 28,
  shmat: 30,
  execve: 59,
  shmdt: 67,
  mlock: 149,
  munlock: 150,
  mlockall: 151,
  munlockall: 152,
  prctl: 157,
  arch_prctl: 158,
  remap_file_pages: 216,
  mbind: 237,
  execveat: 322,
  userfaultfd: 323,
  mlock2: 325,
  pkey_mprotect: 329,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  process_madvise: 440,
  map_shadow_stack: 453,
  mseal: 462,
} as const;
const NRS = Int32Array.from(Object.values(MAPPING_CALLS));

/** The most threads watched in one process (two counters each). */
const MAX_THREADS = 256;
/** How many times a process's threads are listed again for the ones started meanwhile. */
const LIST_ROUNDS = 8;

const TRACEFS = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/** The ids of raw_syscalls:sys_enter and sys_exit in the tracefs at `root`; undefined where it has none. */
function idsIn(root: string): { enter: number; exit: number } | undefined {
  try {
    const id = (name: string): number => Number(readFileSync(`${root}/events/raw_syscalls/${name}/id`, "latin1"));
    const ids = { enter: id("sys_enter"), exit: id("sys_exit") };
    return Number.isInteger(ids.enter) && Number.isInteger(ids.exit) ? ids : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The ids of raw_syscalls:sys_enter and sys_exit, or why there are none: from tracefs where
 * it is mounted, else from one mounted detached for the purpose (no mount table shows it;
 * a machine that boots without systemd mounts none).
 */
function tracepoints(): { enter: number; exit: number } | string {
  for (const root of TRACEFS) {
    const ids = idsIn(root);
    if (ids) return ids;
  }
  let fd: number;
  try {
    fd = bridge().detachedMount("tracefs", "");
  } catch (e) {
    return `tracefs is not mounted, and mounting it failed (${(e as Error).message})`;
  }
  try {
    return idsIn(`/proc/self/fd/${fd}`) ?? "tracefs has no raw_syscalls tracepoints (a kernel without CONFIG_FTRACE_SYSCALLS)";
  } finally {
    bridge().close(fd);
  }
}

/** The threads of pid; undefined when it is gone. */
function tidsOf(pid: number): number[] | undefined {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return undefined;
  }
}

/** One process's counters and its read. */
interface Watched {
  fds: Int32Array[];
  read: Promise<Ahead | undefined>;
}

/** A process's smaps read ahead, and its VMAs classified from it (none when that failed: then at the freeze). */
export interface Ahead {
  text: string;
  vmas: VmaRead | undefined;
}

/** The most mapped files a process's VMAs classified ahead hold open (else they are classified at the freeze). */
const MAX_FILES_AHEAD = 256;

/** The VMAs of `text` classified, their files open; undefined when they cannot be (left to the freeze, which says why). */
function classifyAhead(pid: number, text: string): VmaRead | undefined {
  if (parseSmaps(text).filter((r) => r.ino !== 0n).length > MAX_FILES_AHEAD) return undefined;
  try {
    return VmaRead.read(pid, text);
  } catch {
    return undefined;
  }
}

/** Closes counters on the thread pool (a tracepoint's last close takes tens of ms here). */
function closeAll(fds: readonly Int32Array[]): Promise<void> {
  return Promise.all(fds.map((set) => bridge().syscallWatchClose(set))).then(() => undefined);
}

/**
 * Puts counters on every thread of `pid` (listing them again until no new one shows);
 * undefined, the counters closed, when it is gone, has too many threads, or keeps starting
 * new ones.
 */
function watch(pid: number, ids: { enter: number; exit: number }): Int32Array[] | undefined {
  const fds: Int32Array[] = [];
  const seen = new Set<number>();
  try {
    for (let round = 0; round < LIST_ROUNDS; round++) {
      const fresh = tidsOf(pid)?.filter((t) => !seen.has(t));
      if (!fresh) break;
      if (fresh.length === 0) return fds;
      if (seen.size + fresh.length > MAX_THREADS) break;
      const tids = Int32Array.from(fresh);
      for (const id of [ids.enter, ids.exit]) {
        const out = new Int32Array(tids.length);
        bridge().syscallWatch(tids, NRS, id, out);
        fds.push(out);
      }
      for (const t of fresh) seen.add(t);
    }
  } catch (e) {
    void closeAll(fds);
    throw e;
  }
  void closeAll(fds);
  return undefined;
}

export class SmapsAhead {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly watched: Map<number, Watched>,
    private readonly log: ModuleLog,
  ) {}

  /**
   * Watches each process of `pids`, then starts reading its smaps (on the thread pool);
   * undefined, with the reason logged, where the kernel cannot count the calls.
   */
  static start(pids: readonly number[], log: ModuleLog): SmapsAhead | undefined {
    if (pids.length === 0) return undefined;
    if (process.arch !== "x64") return undefined;
    const ids = tracepoints();
    if (typeof ids === "string") {
      log.info(`smaps is read in the freeze: ${ids}`);
      return undefined;
    }
    const watched = new Map<number, Watched>();
    for (const pid of pids) {
      let fds: Int32Array[] | undefined;
      try {
        fds = watch(pid, ids);
      } catch (e) {
        log.info(`smaps is read in the freeze: its mapping calls cannot be counted (${(e as Error).message})`);
        for (const w of watched.values()) void closeAll(w.fds);
        return undefined;
      }
      if (!fds) {
        log.info(`pid ${pid}: smaps is read in the freeze (gone, more than ${MAX_THREADS} threads, or starting new ones while they were listed)`);
        continue;
      }
      const read = readProcAhead(pid, "smaps").then(
        (text) => ({ text, vmas: classifyAhead(pid, text) }),
        () => undefined,
      );
      watched.set(pid, { fds, read });
    }
    return new SmapsAhead(watched, log);
  }

  /** Resolves once every read (and classification) is done: awaited before the freeze (in it, the task's first call inside would wait for the walk). */
  async settled(): Promise<void> {
    await Promise.all([...this.watched.values()].map((w) => w.read));
  }

  /**
   * At the freeze, before anything runs inside the tree: the reads kept, by pid (those of
   * the processes that made no mapping call since theirs began). The counters stay open
   * (close them once the tree is let go).
   */
  async atFreeze(): Promise<Map<number, Ahead>> {
    const counts = new Map<number, number | string>();
    for (const [pid, w] of this.watched) {
      try {
        counts.set(pid, w.fds.reduce((sum, set) => sum + bridge().syscallWatchCount(set), 0));
      } catch (e) {
        counts.set(pid, (e as Error).message);
      }
    }
    const kept = new Map<number, Ahead>();
    for (const [pid, w] of this.watched) {
      const n = counts.get(pid)!;
      const ahead = await w.read;
      if (n === 0 && ahead !== undefined) {
        kept.set(pid, ahead);
        this.log.debug(`pid ${pid}: smaps read ahead kept (no mapping call since)`);
      } else {
        const why = typeof n === "string" ? `its counters could not be read (${n})` : ahead === undefined ? "the read ahead failed" : `${n} entries or exits of mapping calls since it was read ahead`;
        this.log.debug(`pid ${pid}: smaps read again in the freeze: ${why}`);
        ahead?.vmas?.close();
      }
    }
    return kept;
  }

  /** Closes the counters on the thread pool, and the files of VMAs not registered; the same promise each call. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const counters = closeAll([...this.watched.values()].flatMap((w) => w.fds));
      for (const w of this.watched.values()) (await w.read)?.vmas?.close();
      await counters;
    })();
    return this.closing;
  }
}
