// Freezing and releasing the task: PTRACE_SEIZE + PTRACE_INTERRUPT, then at the end
// detach (resume), detach into a stop (-s), or kill (criu's default after a dump).
// Every ptrace call is made synchronously from this (the main JS) thread.

import { constants } from "node:os";
import { PTRACE_EVENT, PTRACE_O } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import { DumpError } from "./errors.js";
import { nsInode, parseStatus, readProc, statusCreds, threadsAndChildren } from "./proc.js";

const { SIGKILL, SIGSTOP } = constants.signals;

export interface Frozen {
  pid: number;
  /** the task was in a group-stop (state T) before we seized it */
  wasStopped: boolean;
  /** the stop signal of that group-stop */
  stopSignal: number;
  /** microseconds spent freezing */
  freezingUs: number;
  /** when the task became frozen (process.hrtime.bigint) */
  frozenAt: bigint;
}

/** Refuses what this version cannot dump: trees, threads, zombies, ourselves. */
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
  // unshare(CLONE_NEWTIME) makes a time namespace only the task's future children
  // enter; no image records it (criu refuses such a task too), so a restore would
  // drop it silently.
  const timeNs = nsInode(pid, "time");
  const childTimeNs = nsInode(pid, "time_for_children");
  if (timeNs !== undefined && childTimeNs !== undefined && timeNs !== childTimeNs) {
    throw new DumpError(
      "check",
      pid,
      `the task made a time namespace for its children (ns/time_for_children is time:[${childTimeNs}], its own ns/time is time:[${timeNs}], as after unshare(CLONE_NEWTIME)); a pending time namespace cannot be dumped`,
    );
  }
  const { threads, children } = threadsAndChildren(pid);
  if (threads.length > 1) {
    throw new DumpError("check", pid, `the task has ${threads.length} threads (${threads.join(", ")}); multi-threaded dumps are not supported yet`);
  }
  if (children.length > 0) {
    throw new DumpError("check", pid, `the task has children (${children.join(", ")}); dumping process trees is not supported yet`);
  }
}

/** Seizes and stops the task within timeoutMs. */
export function freeze(pid: number, timeoutMs: number): Frozen {
  const b = bridge();
  const t0 = process.hrtime.bigint();
  const status = statusCreds(parseStatus(readProc(pid, "status")));
  const wasStopped = status.state === "T";
  // A task under a seccomp filter could be killed by the syscalls we run inside it.
  const opts = status.seccomp !== 0 ? PTRACE_O.SUSPEND_SECCOMP : 0;
  try {
    b.ptraceSeize(pid, opts);
  } catch (e) {
    throw new DumpError("seize", pid, (e as Error).message, { cause: e });
  }
  try {
    // Seizing a task in group-stop queues its own PTRACE_EVENT_STOP: no interrupt then.
    if (!wasStopped) b.ptraceInterrupt(pid);
    for (;;) {
      const st = b.waitpid(pid, 0, timeoutMs);
      if (!st) throw new DumpError("seize", pid, `the task did not stop within ${timeoutMs} ms (--timeout)`);
      if (st.exited || st.signaled) throw new DumpError("seize", pid, "the task exited while being frozen");
      if (st.stopped && st.event === PTRACE_EVENT.STOP) break;
      // A signal arrived before our interrupt: let it through and keep waiting.
      b.ptraceCont(pid, st.stopped && st.event === 0 ? st.stopSig : 0);
    }
  } catch (e) {
    release(pid, "resume");
    throw e instanceof DumpError ? e : new DumpError("seize", pid, (e as Error).message, { cause: e });
  }
  // It may have cloned between the check and the seize.
  const { threads, children } = threadsAndChildren(pid);
  if (threads.length > 1 || children.length > 0) {
    release(pid, "resume");
    throw new DumpError("seize", pid, "the task started threads or children while being frozen; trees and threads are not supported yet");
  }
  const frozenAt = process.hrtime.bigint();
  return {
    pid,
    wasStopped,
    stopSignal: wasStopped ? SIGSTOP : 0,
    freezingUs: Number((frozenAt - t0) / 1000n),
    frozenAt,
  };
}

/**
 * Lets the task go: "resume" detaches so it runs on, "stop" detaches into a stop
 * (-s), "kill" kills it and collects the exit as its tracer so that its parent can
 * reap it at once. Returns an error message instead of throwing (used on error paths).
 */
export function release(pid: number, how: "resume" | "stop" | "kill"): string | undefined {
  const b = bridge();
  try {
    if (how === "kill") {
      process.kill(pid, SIGKILL);
      for (;;) {
        const st = b.waitpid(pid, 0, 10_000);
        if (!st || st.exited || st.signaled) break;
      }
      return undefined;
    }
    // PTRACE_DETACH needs a ptrace-stop; after a remote syscall the task sits in a
    // PTRACE_EVENT_STOP again, as after the freeze. The kernel drops the signal given
    // to PTRACE_DETACH from such a stop, so the SIGSTOP of -s is queued first.
    if (how === "stop") process.kill(pid, SIGSTOP);
    b.ptraceDetach(pid, 0);
    return undefined;
  } catch (e) {
    if (isNativeError(e) && (e.code === "ESRCH" || e.code === "ECHILD")) {
      // Not in a stop we can detach from (or gone): interrupt and try once more.
      try {
        b.ptraceInterrupt(pid);
        b.waitpid(pid, 0, 2000);
        b.ptraceDetach(pid, 0);
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
