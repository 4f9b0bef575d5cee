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
// likes), and a thread seized as it exits reports its exit instead of a stop.

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
  const exited = new Set<number>();
  let miss = faults?.has("thread-missed") === true;
  for (;;) {
    let fresh = readdirSync(procPath(pid, "task"))
      .map(Number)
      .filter((tid) => !known.has(tid) && !exited.has(tid));
    if (miss && fresh.length > 0) {
      const last = Math.max(...fresh);
      fresh = fresh.filter((tid) => tid !== last);
      miss = fresh.length > 0;
    }
    if (fresh.length === 0) {
      if (threadCount(pid) <= known.size + [...exited].filter((tid) => listed(pid, tid)).length) return;
      if (Date.now() > times.deadline) throw new DumpError("seize", pid, `the task has ${threadCount(pid)} threads, and only ${known.size} could be found and stopped within ${times.timeoutMs} ms (--timeout)`);
      continue;
    }
    // seized, not yet stopped: let go again if the pass fails
    const pending: number[] = [];
    try {
      for (const tid of fresh) {
        if (start(pid, tid, wasStopped, preSeized)) pending.push(tid);
        else exited.add(tid);
      }
      while (pending.length > 0) {
        const tid = pending[0]!;
        if (waitStop(pid, tid, times)) {
          known.add(tid);
          seized(tid);
        } else {
          exited.add(tid);
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

/** PTRACE_SEIZE and PTRACE_INTERRUPT of one thread; false when it has exited. */
function start(pid: number, tid: number, wasStopped: boolean, preSeized?: Set<number>): boolean {
  if (preSeized?.delete(tid)) return true;
  const b = bridge();
  try {
    b.ptraceSeize(tid, 0);
  } catch (e) {
    if (isNativeError(e) && tid !== pid && (e.code === "ESRCH" || (e.code === "EPERM" && hasExited(pid, tid)))) return false;
    throw new DumpError("seize", pid, `thread ${tid}: ${(e as Error).message}`, { cause: e });
  }
  // Seizing a task in group-stop queues its own PTRACE_EVENT_STOP: no interrupt then.
  if (!wasStopped) b.ptraceInterrupt(tid);
  return true;
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

/** Whether thread `tid` of `pid` is gone or has exited (state Z or X). */
function hasExited(pid: number, tid: number): boolean {
  try {
    return /^[ZX]/.test(parseStat(readProc(pid, `task/${tid}/stat`)).state);
  } catch {
    return true;
  }
}

function listed(pid: number, tid: number): boolean {
  try {
    readProc(pid, `task/${tid}/stat`);
    return true;
  } catch {
    return false;
  }
}

/** The kernel's count of the process's threads, those that exited and wait to be reaped included. */
function threadCount(pid: number): number {
  return statusCreds(parseStatus(readProc(pid, "status"))).threads;
}
