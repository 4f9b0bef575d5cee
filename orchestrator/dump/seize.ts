// Every thread of one process seized and stopped, while its threads may be making new
// threads and ending all the time (criu's collect_threads; zdtm's transition/thread-bomb).
//
// The leader first; then, pass after pass, each thread not seen before is seized and
// interrupted, all of them before any is waited for: a thread that runs until it is
// waited for may make another one meanwhile, and a chain of threads each making the next
// is caught only if a pass is quicker than a link of the chain. The passes end when one
// finds no new thread. A pass reads /proc/PID/task, which skips threads when others end
// while it is read (the kernel resumes a directory read at the position of the thread
// it returned last, and that thread may be gone): so the end is when the kernel's count
// of the process's threads (Threads: in status) is no more than the threads stopped and
// those that exited and wait to be reaped; otherwise a thread was missed, and it may be
// running still. A thread that has exited is left out: PTRACE_SEIZE gives ESRCH when it
// is gone, EPERM while it waits to be reaped (by another tracer maybe, for as long as it
// likes), and a thread seized as it exits reports its exit instead of a stop. Threads
// that come and go all the time wrap pid_max around within a freeze: a number once seen
// gone or exited may name a new thread on the next pass.

import { readdirSync } from "node:fs";
import { PTRACE_EVENT } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import { DumpError } from "./errors.js";
import type { Faults } from "./faults.js";
import { parseStat, parseStatus, procPath, readProc, statusCreds } from "./proc.js";

export interface SeizeTimes {
  deadline: number;
  timeoutMs: number;
}

/**
 * Seizes and stops every thread of `pid`, the leader first, calling `seized` for each in
 * the order they stopped. A thread in `preSeized` (seized while its cgroup was frozen) is
 * only waited for. With `wasStopped` the task is in a group-stop, which a seize reports
 * by itself (no interrupt).
 */
export function seizeThreads(pid: number, wasStopped: boolean, times: SeizeTimes, seized: (tid: number) => void, preSeized?: Set<number>, faults?: Faults): void {
  if (!start(pid, pid, wasStopped, preSeized) || !waitStop(pid, pid, times)) throw new DumpError("seize", pid, "the task exited while being frozen");
  seized(pid);
  const known = new Set([pid]);
  /** threads that have exited and wait to be reaped (EPERM) */
  const zombies = new Set<number>();
  let miss = faults?.has("thread-missed") === true;
  for (;;) {
    // One reaped since: gone, or its number given to a new thread already (threads that
    // come and go all the time wrap pid_max around within a freeze).
    for (const tid of zombies) if (threadState(pid, tid) !== "exited") zombies.delete(tid);
    let fresh = readdirSync(procPath(pid, "task"))
      .map(Number)
      .filter((tid) => !known.has(tid) && !zombies.has(tid));
    if (miss && fresh.length > 0) {
      const last = Math.max(...fresh);
      fresh = fresh.filter((tid) => tid !== last);
      miss = fresh.length > 0;
    }
    if (fresh.length === 0) {
      if (threadCount(pid) <= known.size + zombies.size) return;
      if (Date.now() > times.deadline) throw new DumpError("seize", pid, `the task has ${threadCount(pid)} threads, and only ${known.size} could be found and stopped within ${times.timeoutMs} ms (--timeout)`);
      continue;
    }
    // seized, not yet stopped: let go again if the pass fails
    const pending: number[] = [];
    try {
      for (const tid of fresh) {
        const r = start(pid, tid, wasStopped, preSeized);
        if (r === "seized") pending.push(tid);
        else if (r === "exited") zombies.add(tid);
      }
      // (one that exits instead of stopping is reaped by its wait: gone)
      while (pending.length > 0) {
        const tid = pending[0]!;
        if (waitStop(pid, tid, times)) {
          known.add(tid);
          seized(tid);
        }
        pending.shift();
      }
    } catch (e) {
      for (const tid of pending) letGo(tid);
      throw e;
    }
  }
}

/** Detaches a thread seized and interrupted whose stop was not collected (a failed pass). */
function letGo(tid: number): void {
  const b = bridge();
  try {
    b.waitpid(tid, 0, 2000);
    b.ptraceDetach(tid, 0);
  } catch {
    // gone, or not stopped: the kernel detaches it when tscriu exits
  }
}

/** PTRACE_SEIZE and PTRACE_INTERRUPT of one thread, unless it is gone or has exited. */
function start(pid: number, tid: number, wasStopped: boolean, preSeized?: Set<number>): "seized" | "gone" | "exited" {
  if (preSeized?.delete(tid)) return "seized";
  const b = bridge();
  try {
    b.ptraceSeize(tid, 0);
  } catch (e) {
    // (a number seen again on a later pass is tried again: another thread may have it by then)
    if (isNativeError(e) && tid !== pid && e.code === "ESRCH") return "gone";
    if (isNativeError(e) && tid !== pid && e.code === "EPERM") {
      const state = threadState(pid, tid);
      if (state !== "live") return state;
    }
    throw new DumpError("seize", pid, `thread ${tid}: ${(e as Error).message}`, { cause: e });
  }
  // Seizing a task in group-stop queues its own PTRACE_EVENT_STOP: no interrupt then.
  if (!wasStopped) b.ptraceInterrupt(tid);
  return "seized";
}

/** Waits for a seized thread's PTRACE_EVENT_STOP, passing on signals that come first; false when it exited instead. */
export function waitStop(pid: number, tid: number, times: SeizeTimes): boolean {
  const b = bridge();
  for (;;) {
    const st = b.waitpid(tid, 0, Math.max(1, times.deadline - Date.now()));
    if (!st) throw new DumpError("seize", pid, `${tid === pid ? "the task" : `thread ${tid}`} did not stop within ${times.timeoutMs} ms (--timeout)`);
    if (st.exited || st.signaled) {
      if (tid === pid) throw new DumpError("seize", pid, "the task exited while being frozen");
      return false;
    }
    if (st.stopped && st.event === PTRACE_EVENT.STOP) return true;
    // A signal arrived before our interrupt: let it through and keep waiting.
    b.ptraceCont(tid, st.stopped && st.event === 0 ? st.stopSig : 0);
  }
}

/** Whether thread `tid` of `pid` is gone, has exited (state Z or X) or lives. */
function threadState(pid: number, tid: number): "gone" | "exited" | "live" {
  let stat: string;
  try {
    stat = readProc(pid, `task/${tid}/stat`);
  } catch {
    return "gone";
  }
  return /^[ZX]/.test(parseStat(stat).state) ? "exited" : "live";
}

/** The kernel's count of the process's threads, those that exited and wait to be reaped included. */
function threadCount(pid: number): number {
  return statusCreds(parseStatus(readProc(pid, "status"))).threads;
}
