// The processes of the tree: the root is the stub tscriu spawns; every other process is
// forked (clone3 with set_tid = its PID and SIGCHLD as its exit signal, from the clone
// snippet of threads.ts) while all of them are still stubs, so that each starts with the
// stub's mappings and the trampoline at the same address. A forked child parks in pause()
// until tscriu seizes it, then makes or joins its session and process group. The order and
// the forkers are pstree-plan.ts's: a process's parent, or a helper (a gone session or group
// leader's PID) or a courier that hands it to its parent by exiting. A zombie of the images
// is forked the same way and made to exit as it had once the tree stands.

import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { WaitStatus } from "../../host-bridge/native.js";
import { decodeRegs, encodeRegs } from "../../host-bridge/regs.js";
import { RestoreError } from "./errors.js";
import { NR, Remote } from "./remote.js";
import type { ProcPlan } from "./plan.js";
import type { Then } from "./pstree-plan.js";
import { CLONE, cloneFrom, seizeMade, type MadeThread } from "./threads.js";
import type { ParkedVdso } from "./vdso.js";

const SIGCHLD = 17;
const NR_SETSID = 112;
const NR_SETPGID = 109;

/** A process of the restore as it is being made. */
export interface Task {
  plan: ProcPlan;
  remote: Remote;
  /** its other threads, each as soon as it exists */
  threads: MadeThread[];
  /** where the kernel's vDSO was parked (a vDSO proxy) */
  parked?: ParkedVdso | undefined;
}

/**
 * Forks process `pid` from `parent`'s stub (with `flags`: CLONE_FILES for a child that
 * shares its parent's fd table, CLONE_PARENT for one forked for its forker's parent),
 * seizes it and puts it into its session and group. `made` hears of the child as soon as
 * it exists, so that a failure after the fork still kills it.
 */
export function forkChild(parent: Remote, pid: number, session: Then, made: (r: Remote) => void, flags = 0): Remote {
  // clone3 refuses an exit signal with CLONE_PARENT (EINVAL): the child takes its
  // forker's, SIGCHLD, as the parent it goes to expects.
  cloneFrom(parent, flags, flags & CLONE.PARENT ? 0 : SIGCHLD, pid, "process");
  const r = new Remote(pid, parent.tramp);
  made(r);
  seizeMade(pid, pid, "spawn", "process");
  r.enter("spawn");
  if (session === "setsid") r.call("setsid", NR_SETSID, []);
  else if (session === "setpgid") r.call("setpgid(0, 0)", NR_SETPGID, [0, 0]);
  else if (typeof session === "object") r.call(`setpgid(0, ${session.join})`, NR_SETPGID, [0, session.join]);
  return r;
}

const NR_EXIT_GROUP = 231;
const SIGKILL = 9;
const PR_SET_NAME = 15;
const PR_SET_DUMPABLE = 4;

/**
 * Makes a forked stub the zombie it was: its name, then its death -- exit_group with its
 * code, or its fatal signal (no core file: not dumpable, so a status with the core-dump
 * bit comes back without it, as with criu). Its parent, still a stub, does not reap it; as
 * its tracer tscriu collects the exit, so the parent finds it later. The SIGCHLD of the
 * death is taken back out of `parent`, the process told of it (takeSigchld).
 */
export function becomeZombie(r: Remote, exitCode: number, comm: string, parent: Remote): void {
  dieAs(r, exitCode, comm);
  takeSigchld(parent);
}

function dieAs(r: Remote, exitCode: number, comm: string): void {
  const b = bridge();
  const name = Buffer.alloc(16);
  Buffer.from(comm, "utf8").copy(name, 0, 0, 15);
  r.call(`prctl(PR_SET_NAME, "${comm}")`, NR.prctl, [PR_SET_NAME, r.write(0, name), 0, 0, 0]);
  const signal = exitCode & 0x7f;
  if (signal) {
    r.call("prctl(PR_SET_DUMPABLE, 0)", NR.prctl, [PR_SET_DUMPABLE, 0, 0, 0, 0]);
    b.setSigmask(r.pid, 0n);
    process.kill(r.pid, signal);
    // SIGKILL takes the tracee out of its ptrace stop and kills it: there is no
    // signal-delivery stop to pass it on from, and PTRACE_CONT would find no stopped task.
    // Any other signal waits in the stopped stub for a PTRACE_CONT, then stops it at its
    // delivery, where it is passed on and its default action ends the process.
    let st = signal === SIGKILL ? null : contOrDead(r.pid, 0);
    while (!st) {
      const w = b.waitpid(r.pid, 0, 10_000);
      if (!w) throw new RestoreError("spawn", r.pid, `zombie ${r.pid} did not die of signal ${signal} within 10 s`);
      if (w.exited || w.signaled) st = w;
      else st = contOrDead(r.pid, w.stopped && w.event === 0 ? w.stopSig : 0);
    }
    if (!st.signaled || st.signal !== signal) throw new RestoreError("spawn", r.pid, `zombie ${r.pid} ended with status 0x${st.status.toString(16)}, not by signal ${signal}`);
    return;
  }
  const regs = decodeRegs(b.getRegs(r.pid));
  regs.rip = r.tramp;
  regs.rax = BigInt(NR_EXIT_GROUP);
  regs.orig_rax = 0xffffffffffffffffn;
  regs.rdi = BigInt((exitCode >> 8) & 0xff);
  b.setRegs(r.pid, encodeRegs(regs));
  b.ptraceCont(r.pid, 0);
  for (;;) {
    const st = b.waitpid(r.pid, 0, 10_000);
    if (!st) throw new RestoreError("spawn", r.pid, `zombie ${r.pid} did not exit within 10 s`);
    if (st.exited || st.signaled) return;
    b.ptraceCont(r.pid, 0);
  }
}

/**
 * PTRACE_CONT of a tracee on its way to die of a signal. ESRCH there is a task the signal
 * killed already: its exit is collected and returned. Anything else is an error (so is an
 * ESRCH behind which no exit is found).
 */
function contOrDead(pid: number, sig: number): WaitStatus | null {
  try {
    bridge().ptraceCont(pid, sig);
    return null;
  } catch (e) {
    if (!(isNativeError(e) && e.code === "ESRCH")) throw e;
    const st = bridge().waitpid(pid, 0, 10_000);
    if (st && (st.exited || st.signaled)) return st;
    throw e;
  }
}

const PR_SET_CHILD_SUBREAPER = 36;
const NR_WAIT4 = 61;
const WALL = 0x40000000;

/**
 * Ends a helper or courier: `deliver`, when given, is a child subreaper while it exits, so
 * that its children go to that process (the kernel hands orphans to the nearest child
 * subreaper above; no other process is one while the tree is made, creds.ts sets the
 * images' flags later); its parent `reaper` reaps it, which frees its PID. A zombie handed
 * over tells `deliver` with a SIGCHLD too: taken out as the helper's own.
 */
export function endHelper(helper: Remote, reaper: Remote, deliver: Remote | undefined): void {
  deliver?.call("prctl(PR_SET_CHILD_SUBREAPER, 1)", NR.prctl, [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0]);
  becomeZombie(helper, 0, "tscriu-helper", reaper);
  if (deliver && deliver.pid !== reaper.pid) takeSigchld(deliver);
  deliver?.call("prctl(PR_SET_CHILD_SUBREAPER, 0)", NR.prctl, [PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0]);
  const reaped = reaper.call(`wait4(${helper.pid}) of the helper`, NR_WAIT4, [helper.pid, 0, WALL, 0]);
  if (reaped !== BigInt(helper.pid)) throw new RestoreError("spawn", reaper.pid, `wait4 for helper ${helper.pid} returned ${reaped}`);
}

const NR_RT_SIGTIMEDWAIT = 128;
const EAGAIN = 11;

/**
 * Takes the SIGCHLD that a death in the making of the tree (a zombie's, a helper's) queued
 * for its parent back out: the stub blocks every signal, and a traced task queues even
 * those it ignores, so the task would run with a SIGCHLD it never had (its handler called
 * for no child; criu's restore leaves none either). The parent is still a stub of one
 * thread, and the images' own pending signals (a SIGCHLD among them, with the siginfo it
 * had) are queued later (signals.ts), so none of those is taken, and none is dropped as
 * a second SIGCHLD while one is pending.
 */
function takeSigchld(r: Remote): void {
  const set = Buffer.alloc(8);
  set.writeBigUInt64LE(1n << BigInt(SIGCHLD - 1));
  const got = r.try(NR_RT_SIGTIMEDWAIT, [r.write(0, set), 0, r.write(8, Buffer.alloc(16)), 8]);
  if (got !== BigInt(SIGCHLD) && got !== BigInt(-EAGAIN)) throw new RestoreError("spawn", r.pid, `rt_sigtimedwait(SIGCHLD) after a death in the tree returned ${got}`);
}

/** A late step of the tree: a leader born in another session makes its own; a process joins a group made after it. */
export function setSession(r: Remote, join: number | undefined): void {
  if (join === undefined) r.call("setsid", NR_SETSID, []);
  else r.call(`setpgid(0, ${join})`, NR_SETPGID, [0, join]);
}

export { NR };
