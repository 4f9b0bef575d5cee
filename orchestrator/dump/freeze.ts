// Freezing and releasing the task: every thread seized (PTRACE_SEIZE + PTRACE_INTERRUPT),
// the thread list read again until no new thread shows up (a thread made during the
// freeze is caught), then at the end every thread detached (resume), detached into a
// stop (-s), or the task killed and each thread's exit collected (criu's default after
// a dump). With --freeze-cgroup the cgroup freezer stops the tasks first
// (cgroup-freezer.ts). Every ptrace call is made synchronously from this (the main JS) thread.

import { constants } from "node:os";
import { PTRACE_O, STOP_SIGNALS } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import { frozenCgroupOf, seizeFrozen, type CgroupFreezer } from "./cgroup-freezer.js";
import { DumpError } from "./errors.js";
import type { Faults } from "./faults.js";
import { nsInode, parseStat, parseStatus, readProc, statusCreds, threadsAndChildren } from "./proc.js";
import { abortRseqSection, putBackRseqCs, type RseqFix } from "./rseq.js";
import { seizeThreads, waitStop } from "./seize.js";

const { SIGKILL, SIGSTOP } = constants.signals;

export interface Frozen {
  pid: number;
  /** its parent in the tree (0 for the root) */
  ppid: number;
  /** a child that had exited and was not reaped yet: nothing to freeze, only its stat */
  zombie?: { exitCode: number; comm: string; pgid: number; sid: number } | undefined;
  /** every thread, the leader first, each in a ptrace-stop */
  tids: number[];
  /** the task was in a group-stop (state T) before we seized it */
  wasStopped: boolean;
  /**
   * what stopped it: the signal of that group-stop, or SIGSTOP when one is pending (it
   * stops the task as soon as it runs); 0 for a task that runs
   */
  stopSignal: number;
  /** threads under seccomp whose filters still apply to our calls: why they could not be suspended */
  seccompActive?: Map<number, string> | undefined;
  /** threads frozen inside an rseq critical section, by tid (rseq.ts) */
  rseq?: Map<number, RseqFix> | undefined;
  /** microseconds spent freezing */
  freezingUs: number;
  /** when the task became frozen (process.hrtime.bigint) */
  frozenAt: bigint;
}

/** Refuses what this version cannot dump: zombies, tscriu itself, init, a pending time namespace. */
export function checkDumpable(pid: number): void {
  if (pid === process.pid) throw new DumpError("check", pid, "tscriu cannot dump itself");
  if (pid === 1) throw new DumpError("check", pid, "refusing to dump init (pid 1)");
  let st;
  try {
    st = statusCreds(parseStatus(readProc(pid, "status")));
  } catch (e) {
    throw new DumpError("check", pid, `no such process (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
  if (st.state === "Z" || st.state === "X") throw new DumpError("check", pid, "the task is a zombie");
  if (st.tracerPid !== 0) throw new DumpError("check", pid, `the task is already traced by pid ${st.tracerPid}`);
  checkTimeNs(pid);
}

/**
 * unshare(CLONE_NEWTIME) makes a time namespace only the task's future children enter; no
 * image records it (criu refuses such a task too), so a restore would drop it silently.
 */
function checkTimeNs(pid: number): void {
  const timeNs = nsInode(pid, "time");
  const childTimeNs = nsInode(pid, "time_for_children");
  if (timeNs !== undefined && childTimeNs !== undefined && timeNs !== childTimeNs) {
    throw new DumpError(
      "check",
      pid,
      `the task made a time namespace for its children (ns/time_for_children is time:[${childTimeNs}], its own ns/time is time:[${timeNs}], as after unshare(CLONE_NEWTIME)); a pending time namespace cannot be dumped`,
    );
  }
}

/**
 * Suspends seccomp for a stopped thread under it (PTRACE_O_SUSPEND_SECCOMP, CAP_SYS_ADMIN
 * only; it lasts while the thread is traced), so that its filters neither fail nor kill
 * the calls we run inside it. Read per thread and once it is stopped: threads of one task
 * carry different filters, and a stopped thread cannot install one any more. Returns why
 * the kernel refused it, for a thread whose filters then still apply.
 */
function suspendSeccomp(tid: number, faults?: Faults): string | undefined {
  if (statusCreds(parseStatus(readProc(tid, "status"))).seccomp === 0) return undefined;
  if (faults?.has("seccomp-suspend")) return "PTRACE_O_SUSPEND_SECCOMP refused with EPERM (fault injected by TSCRIU_FAULT=seccomp-suspend)";
  try {
    bridge().ptraceSetOptions(tid, PTRACE_O.SUSPEND_SECCOMP);
    return undefined;
  } catch (e) {
    if (isNativeError(e) && (e.code === "EPERM" || e.code === "EINVAL")) return `PTRACE_O_SUSPEND_SECCOMP refused with ${e.code}`;
    throw e;
  }
}

/**
 * The signal that stopped a task found stopped (criu's stop_signo): a seized task in a
 * group-stop reports it as its stop's signal. SIGSTOP when it tells none that stops.
 */
function stopSignalOf(pid: number): number {
  let signo = SIGSTOP;
  try {
    signo = bridge().ptraceStopSignal(pid);
  } catch {
    // (the task was seized and is stopped: no reason to fail here)
  }
  return STOP_SIGNALS.has(signo) ? signo : SIGSTOP;
}

/**
 * Whether a SIGSTOP waits in the process's queue or in one of its threads': sent to a task
 * already stopped (zdtm's stopped01), or while it slept where no signal reaches it. SIGSTOP
 * cannot be blocked, so the task stops as soon as it runs. (The dump's calls inside the
 * task take such a SIGSTOP and send it again, host-bridge/src/remote.c: it stays pending.)
 */
function sigstopPending(tids: readonly number[]): boolean {
  const bit = 1n << BigInt(SIGSTOP - 1);
  return tids.some((tid) => {
    const st = statusCreds(parseStatus(readProc(tid, "status")));
    return ((st.sigPnd | st.shdPnd) & bit) !== 0n;
  });
}

/** Seizes and stops every thread of the task within timeoutMs. */
export function freeze(pid: number, timeoutMs: number, deadline = Date.now() + timeoutMs, preSeized?: Set<number>, faults?: Faults): Frozen {
  const t0 = process.hrtime.bigint();
  const wasStopped = statusCreds(parseStatus(readProc(pid, "status"))).state === "T";
  const tids: number[] = [];
  const seccompActive = new Map<number, string>();
  const rseq = new Map<number, RseqFix>();
  const seized = (tid: number): void => {
    tids.push(tid);
    const refused = suspendSeccomp(tid, faults);
    if (refused !== undefined) seccompActive.set(tid, refused);
  };
  try {
    seizeThreads(pid, wasStopped, { deadline, timeoutMs }, seized, preSeized, faults);
    // Before anything runs inside a thread (see rseq.ts).
    for (const tid of tids) {
      const fix = abortRseqSection(tid);
      if (fix) rseq.set(tid, fix);
    }
  } catch (e) {
    release(pid, "resume", tids);
    throw e instanceof DumpError ? e : new DumpError("seize", pid, (e as Error).message, { cause: e });
  }
  const frozenAt = process.hrtime.bigint();
  return {
    pid,
    ppid: 0,
    tids,
    wasStopped,
    stopSignal: wasStopped ? stopSignalOf(pid) : sigstopPending(tids) ? SIGSTOP : 0,
    seccompActive: seccompActive.size ? seccompActive : undefined,
    rseq: rseq.size ? rseq : undefined,
    freezingUs: Number((frozenAt - t0) / 1000n),
    frozenAt,
  };
}

/**
 * Lets the task go: "resume" detaches every thread so it runs on, "stop" detaches into a
 * stop (-s), "kill" kills it and collects each thread's exit as its tracer so that its
 * parent can reap it at once. A thread the freeze kept in an rseq critical section gets
 * its `rseq_cs` back first. Returns an error message instead of throwing (used on error
 * paths).
 */
export function release(pid: number, how: "resume" | "stop" | "kill", tids: readonly number[] = [pid], rseq?: ReadonlyMap<number, RseqFix>): string | undefined {
  const b = bridge();
  if (how === "kill") {
    try {
      process.kill(pid, SIGKILL);
    } catch (e) {
      return (e as Error).message;
    }
    // Other threads first: the leader's exit is reported once they are all gone.
    for (const tid of [...tids.filter((t) => t !== pid), pid]) {
      try {
        for (;;) {
          const st = b.waitpid(tid, 0, 10_000);
          if (!st || st.exited || st.signaled) break;
        }
      } catch {
        // not ours to wait for any more
      }
    }
    return undefined;
  }
  // The SIGSTOP of -s is queued first: the kernel drops a signal given to PTRACE_DETACH
  // from the PTRACE_EVENT_STOP every thread sits in (also after a remote syscall).
  if (how === "stop") {
    try {
      process.kill(pid, SIGSTOP);
    } catch (e) {
      return (e as Error).message;
    }
  }
  const errors: string[] = [];
  for (const tid of tids) {
    const kept = rseq?.get(tid)?.kept;
    try {
      if (kept) putBackRseqCs(tid, kept);
    } catch (e) {
      errors.push(`thread ${tid}: ${(e as Error).message}`);
    }
    const why = detach(tid);
    if (why) errors.push(tids.length > 1 ? `thread ${tid}: ${why}` : why);
  }
  return errors.length ? errors.join("; ") : undefined;
}

function detach(tid: number): string | undefined {
  const b = bridge();
  try {
    b.ptraceDetach(tid, 0);
    return undefined;
  } catch (e) {
    if (isNativeError(e) && (e.code === "ESRCH" || e.code === "ECHILD")) {
      // Not in a stop we can detach from (or gone): interrupt and try once more.
      try {
        b.ptraceInterrupt(tid);
        b.waitpid(tid, 0, 2000);
        b.ptraceDetach(tid, 0);
        return undefined;
      } catch (e2) {
        return (e2 as Error).message;
      }
    }
    return (e as Error).message;
  }
}

/** True while the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const st = statusCreds(parseStatus(readProc(pid, "status")));
    return st.state !== "Z" && st.state !== "X";
  } catch {
    return false;
  }
}

export interface FrozenTree {
  /** every process, each after its parent (criu's pstree order: depth first) */
  processes: Frozen[];
  freezingUs: number;
  /** --freeze-cgroup: its freezer, and the threads of it seized outside the tree */
  cgroup?: { freezer: CgroupFreezer; others: number[] } | undefined;
}

/**
 * Freezes the process tree under `pid`: each process with all its threads, then its
 * children (read once it is frozen, so it can make no more), depth first. A child that is
 * a zombie is kept as one (its exit status); one that ends while it is being seized is
 * refused by name; everything frozen so far is let go again on any failure.
 */
export function freezeTree(pid: number, timeoutMs: number, freezer?: CgroupFreezer, faults?: Faults): FrozenTree {
  const t0 = process.hrtime.bigint();
  const deadline = Date.now() + timeoutMs;
  const processes: Frozen[] = [];
  const cgroup = freezer ? seizeCgroup(pid, freezer, deadline, timeoutMs) : undefined;
  const preSeized = cgroup ? new Set(cgroup.others) : undefined;
  const visit = (p: number, ppid: number): void => {
    // Its parent is frozen and cannot reap a zombie: it stays as it is until the release.
    const asZombie = (): boolean => {
      if (p === pid || statusCreds(parseStatus(readProc(p, "status"))).state !== "Z") return false;
      const stat = parseStat(readProc(p, "stat"));
      processes.push({ pid: p, ppid, tids: [p], wasStopped: false, stopSignal: 0, freezingUs: 0, frozenAt: process.hrtime.bigint(), zombie: { exitCode: stat.exitCode, comm: stat.comm, pgid: stat.pgid, sid: stat.sid } });
      return true;
    };
    if (p !== pid) {
      if (asZombie()) return;
      const st = statusCreds(parseStatus(readProc(p, "status")));
      if (st.tracerPid !== 0 && !preSeized?.has(p)) throw new DumpError("seize", pid, `pid ${p} (a child of ${ppid}) is already traced by pid ${st.tracerPid}`);
      checkTimeNs(p);
    }
    const frozenIn = preSeized?.has(p) ? undefined : frozenCgroupOf(p);
    if (frozenIn !== undefined) {
      throw new DumpError("seize", pid, `${p === pid ? "the task" : `pid ${p}`} is in the frozen cgroup ${frozenIn}: dump with --freeze-cgroup ${frozenIn} (it is thawed for the dump and frozen again after it), or thaw it first`);
    }
    let f: Frozen;
    try {
      f = freeze(p, timeoutMs, deadline, preSeized, faults);
    } catch (e) {
      // It exited while being seized: a zombie now.
      if (asZombie()) return;
      throw e;
    }
    processes.push({ ...f, ppid });
    for (const c of threadsAndChildren(p).children.sort((a, b) => a - b)) visit(c, p);
  };
  try {
    visit(pid, 0);
    // The cgroup's threads outside the tree: stopped too, let go at the release.
    if (cgroup) {
      cgroup.others = [...preSeized!];
      for (const tid of cgroup.others) waitStop(pid, tid, { deadline, timeoutMs });
    }
  } catch (e) {
    if (cgroup) cgroup.others = [...preSeized!];
    releaseTree({ processes, freezingUs: 0, cgroup }, "resume");
    if (e instanceof DumpError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") throw new DumpError("seize", pid, `a child ended while the tree was being frozen; dumping zombies is not supported yet (${(e as Error).message})`, { cause: e });
    throw new DumpError("seize", pid, (e as Error).message, { cause: e });
  }
  return { processes, freezingUs: Number((process.hrtime.bigint() - t0) / 1000n), cgroup };
}

/**
 * --freeze-cgroup: freezes the cgroup, seizes and interrupts every thread in it, thaws it
 * (the threads then stop in ptrace) and returns the freezer with the TIDs seized.
 */
function seizeCgroup(pid: number, freezer: CgroupFreezer, deadline: number, timeoutMs: number): NonNullable<FrozenTree["cgroup"]> {
  try {
    freezer.freeze(deadline, timeoutMs);
  } catch (e) {
    throw new DumpError("seize", pid, (e as Error).message, { cause: e });
  }
  const seized: number[] = [];
  try {
    seizeFrozen(freezer, seized);
  } catch (e) {
    freezer.thaw();
    for (const tid of seized) detach(tid);
    freezer.restoreOrigin();
    throw new DumpError("seize", pid, `seizing the tasks of the cgroup ${freezer.path}: ${(e as Error).message}`, { cause: e });
  }
  // The threads fall into their ptrace stops once thawed (criu thaws here too).
  freezer.thaw();
  return { freezer, others: seized };
}

/**
 * Lets every process of the tree go: "resume" (a process that was stopped before the dump
 * is left stopped), "stop" (-s), or "kill" (children first). Returns what went wrong, if
 * anything.
 */
export function releaseTree(tree: FrozenTree, how: "resume" | "stop" | "kill"): string | undefined {
  const errors: string[] = [];
  if (tree.cgroup) {
    // A cgroup frozen before the dump is frozen again before its tasks are let go.
    try {
      if (how !== "kill") tree.cgroup.freezer.restoreOrigin();
    } catch (e) {
      errors.push(`freezing the cgroup ${tree.cgroup.freezer.path} again: ${(e as Error).message}`);
    }
    for (const tid of tree.cgroup.others) {
      const why = detach(tid);
      if (why) errors.push(`thread ${tid} of the cgroup: ${why}`);
    }
  }
  for (const f of [...tree.processes].reverse()) {
    if (f.zombie || (how !== "kill" && !alive(f.pid))) continue;
    const why = release(f.pid, how === "resume" && f.wasStopped ? "stop" : how, f.tids, f.rseq);
    if (why) errors.push(tree.processes.length > 1 ? `pid ${f.pid}: ${why}` : why);
  }
  return errors.length ? errors.join("; ") : undefined;
}
