// A task dumped stopped is stopped again, and its parent must not hear of that stop: it
// had (its SIGCHLD handler ran for it with CLD_STOPPED, or that SIGCHLD is pending in the
// parent's image). Every group stop that completes tells the real parent with a SIGCHLD
// (kernel/signal.c, do_notify_parent_cldstop) unless the parent's SIGCHLD action has
// SA_NOCLDSTOP or is SIG_IGN -- also a stop taken under ptrace, where the tracer is not the
// parent. So the parent runs the restore with SA_NOCLDSTOP added to its SIGCHLD action,
// its children stop while tscriu still traces them, and then the parent gets its own
// action back. A task detached in a completed group stop stops again without telling
// anyone (__ptrace_unlink sets the stop pending, without the count that notifies). The
// stop itself stays there for its parent's waitpid(WUNTRACED): the images do not say
// whether the parent took it, and criu's restore gives it back too.
// criu sends the stop signal just before its detach: the parent's handler runs once more.

import { bridge } from "../../host-bridge/load.js";
import type { WaitStatus } from "../../host-bridge/native.js";
import type { CoreEntry } from "../../images/dir.js";
import { RestoreError } from "./errors.js";
import { NR, type Remote } from "./remote.js";
import { sigactionSignal } from "./signals.js";
import type { Task } from "./tree.js";

const SIGCHLD = 17;
const SA_NOCLDSTOP = 1n;
const SA_SIZE = 32;
const PTRACE_EVENT_STOP = 128;

/** The processes whose children stop at restore, quietly: their SIGCHLD action gets SA_NOCLDSTOP until then. */
export function parentsOfKnownStops(tasks: readonly Task[]): Set<number> {
  return new Set(tasks.filter((t) => t.plan.stopKnown).map((t) => t.plan.ppid));
}

function sigchldAction(core: CoreEntry): { sigaction: bigint; flags: bigint; restorer: bigint; mask: bigint } {
  const acts = core.tc?.sigactions ?? [];
  const a = acts.find((_, i) => sigactionSignal(i) === SIGCHLD);
  return { sigaction: a?.sigaction ?? 0n, flags: a?.flags ?? 0n, restorer: a?.restorer ?? 0n, mask: a?.mask ?? 0n };
}

/** Sets the task's SIGCHLD action: the image's, with SA_NOCLDSTOP added when `quiet`. */
export function setSigchldAction(remote: Remote, core: CoreEntry, quiet: boolean): void {
  const a = sigchldAction(core);
  const buf = Buffer.alloc(SA_SIZE);
  buf.writeBigUInt64LE(a.sigaction, 0);
  buf.writeBigUInt64LE(quiet ? a.flags | SA_NOCLDSTOP : a.flags, 8);
  buf.writeBigUInt64LE(a.restorer, 16);
  buf.writeBigUInt64LE(a.mask, 24);
  const what = `rt_sigaction(SIGCHLD)${quiet ? " with SA_NOCLDSTOP while its children stop" : ""}`;
  remote.call(what, NR.rt_sigaction, [SIGCHLD, remote.write(0, buf), 0, 8]);
}

/**
 * Stops a traced process, its registers final, by signal `sig`: given at the PTRACE_CONT
 * from its syscall-exit stop (as a signal given to the detach would be), the kernel queues
 * it for the thread itself, and a thread takes its own signals before the process's, so a
 * stop signal pending for the process (the images') stays pending. At its delivery stop it
 * is passed on; every thread is then brought into the group stop (each one must take part
 * for the stop to complete). The process stays traced, each thread in its group-stop trap.
 */
export function stopTraced(task: Task, sig: number): void {
  const pid = task.plan.pid;
  const b = bridge();
  b.ptraceCont(pid, sig);
  for (let other = 0; ; other++) {
    const st = waitStop(pid, sig, "the delivery stop of its stop signal");
    if (st.event === 0 && st.stopSig === sig) break;
    // A signal pending for the thread alone, of a lower number, comes first: passed on, as
    // it would have been once the task ran (its handler runs once the task is continued).
    if (st.event !== 0 || other >= 64) throw new RestoreError("registers", pid, `waiting for the delivery stop of its stop signal (${sig}): status 0x${st.status.toString(16)}`);
    b.ptraceCont(pid, st.stopSig);
  }
  b.ptraceCont(pid, sig);
  expectGroupStop(pid, sig, "its group stop");
  for (const t of task.threads) {
    b.ptraceCont(t.plan.tid, 0);
    expectGroupStop(t.plan.tid, sig, `thread ${t.plan.tid}'s part in the group stop`);
  }
}

function waitStop(tid: number, sig: number, what: string): WaitStatus {
  const st = bridge().waitpid(tid, 0, 10_000);
  if (!st) throw new RestoreError("registers", tid, `${what} (signal ${sig}) did not come within 10 s`);
  if (!st.stopped) throw new RestoreError("registers", tid, `waiting for ${what} (signal ${sig}): status 0x${st.status.toString(16)}`);
  return st;
}

function expectGroupStop(tid: number, sig: number, what: string): void {
  const st = waitStop(tid, sig, what);
  if (st.stopSig !== sig || st.event !== PTRACE_EVENT_STOP) throw new RestoreError("registers", tid, `waiting for ${what} (signal ${sig}): status 0x${st.status.toString(16)}`);
}
