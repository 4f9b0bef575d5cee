// The other threads of a process (pstree.img's threads after the leader, each with its
// core-TID.img). The leader makes each one with clone3 (CLONE_THREAD and the others a
// thread shares, set_tid = its TID) from a snippet in the trampoline page: the parent
// half stops at the syscall's exit as every remote call does, the child half parks the
// new thread in a pause() loop with every signal blocked (it inherits the stub's mask)
// until tscriu seizes it. From then on each thread restores what is its own through
// remote syscalls of its own (altstack, seccomp, scheduling, credentials, private pending
// signals, rseq, robust list, clear-tid address, TLS) and, last, its registers.

import { PTRACE_EVENT, PTRACE_O } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { CoreEntry } from "../../images/dir.js";
import { RestoreError } from "./errors.js";
import { NR, Remote } from "./remote.js";
import type { SeccompPlan } from "./seccomp.js";

export const CLONE = { VM: 0x100, FS: 0x200, FILES: 0x400, SIGHAND: 0x800, PARENT: 0x8000, THREAD: 0x10000, SYSVSEM: 0x40000 } as const;
const THREAD_FLAGS = CLONE.VM | CLONE.FS | CLONE.FILES | CLONE.SIGHAND | CLONE.THREAD | CLONE.SYSVSEM;
const NR_CLONE3 = 435;
const NR_PAUSE = 34;
/** struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1). */
const CLONE_ARGS_SIZE = 80;

/** Where the clone snippet sits in the trampoline page (between the call code and the data area). */
export const CLONE_CODE_OFFSET = 16;

/**
 * syscall; test rax,rax; jnz parent; child: mov eax,__NR_pause; syscall; jmp child;
 * parent: int3. The parent never reaches its int3: the call runs to its syscall-exit stop.
 */
export const CLONE_CODE = Buffer.from([0x0f, 0x05, 0x48, 0x85, 0xc0, 0x75, 0x09, 0xb8, NR_PAUSE, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7, 0xcc]);

export interface ThreadPlan {
  tid: number;
  core: CoreEntry;
  /** its blocked mask (thread_core.blk_sigset) */
  blocked: bigint;
  seccomp: SeccompPlan | undefined;
}

/** A made thread: its own remote-syscall runner (the same trampoline page). */
export interface MadeThread {
  plan: ThreadPlan;
  remote: Remote;
}

/** Seizes a just-made thread or process (parked in pause()) and waits for its stop. */
export function seizeMade(pid: number, tid: number, step: string, what: string): void {
  const b = bridge();
  b.ptraceSeize(tid, PTRACE_O.TRACESYSGOOD | PTRACE_O.EXITKILL);
  b.ptraceInterrupt(tid);
  for (;;) {
    const st = b.waitpid(tid, 0, 10_000);
    if (!st) throw new RestoreError(step, pid, `${what} ${tid} did not stop within 10 s of PTRACE_INTERRUPT`);
    if (st.exited || st.signaled) throw new RestoreError(step, pid, `${what} ${tid} died (${st.exited ? `exit ${st.code}` : `signal ${st.signal}`})`);
    if (st.stopped && st.event === PTRACE_EVENT.STOP) return;
    b.ptraceCont(tid, 0);
  }
}

/**
 * Runs clone3 in `parent` (a remote of a stopped stub) from the clone snippet, with
 * `flags`, exit signal `exitSignal` and the id `id` (set_tid); the child parks in pause().
 */
export function cloneFrom(parent: Remote, flags: number, exitSignal: number, id: number, what: string): void {
  const b = bridge();
  const code = parent.tramp + BigInt(CLONE_CODE_OFFSET);
  if (b.processVmWritev(parent.pid, code, CLONE_CODE) !== CLONE_CODE.length) throw new RestoreError("threads", parent.pid, "short write of the clone snippet", { address: code });
  const setTid = Buffer.alloc(4);
  setTid.writeInt32LE(id, 0);
  const tidAt = parent.write(CLONE_ARGS_SIZE, setTid);
  const args = Buffer.alloc(CLONE_ARGS_SIZE);
  args.writeBigUInt64LE(BigInt(flags), 0);
  args.writeBigUInt64LE(BigInt(exitSignal), 32);
  args.writeBigUInt64LE(tidAt, 64);
  args.writeBigUInt64LE(1n, 72);
  const cloner = new Remote(parent.pid, code);
  const got = cloner.toExit(`clone3 of ${what} ${id}`, NR_CLONE3, [parent.write(0, args), CLONE_ARGS_SIZE]);
  if (Number(got) !== id) throw new RestoreError("threads", parent.pid, `clone3 of ${what} ${id} made ${got}`);
}

/**
 * Makes every thread of the plan with its TID, in the leader's process, and seizes it.
 * `made` gets each thread as soon as it exists, so that a failure half-way still knows
 * every thread to collect.
 */
export function makeThreads(leader: Remote, threads: readonly ThreadPlan[], made: MadeThread[]): void {
  for (const t of threads) {
    cloneFrom(leader, THREAD_FLAGS, 0, t.tid, "thread");
    const remote = new Remote(t.tid, leader.tramp);
    made.push({ plan: t, remote });
    seizeMade(leader.pid, t.tid, "threads", "thread");
    remote.enter("threads");
  }
}

/** Runs `fn` for the leader and then every made thread, naming the thread in errors. */
export function eachThread(leader: Remote, leaderCore: CoreEntry, made: readonly MadeThread[], fn: (remote: Remote, core: CoreEntry, tid: number) => void): void {
  fn(leader, leaderCore, leader.pid);
  for (const t of made) {
    try {
      fn(t.remote, t.plan.core, t.plan.tid);
    } catch (e) {
      if (e instanceof RestoreError) throw Object.assign(e, { message: `${e.message} (thread ${t.plan.tid})` });
      throw new RestoreError("threads", leader.pid, `thread ${t.plan.tid}: ${(e as Error).message}`, { cause: e });
    }
  }
}

const PR_SET_NAME = 15;

/** The thread's name (thread_core.comm), set by the thread itself. */
export function restoreThreadName(remote: Remote, core: CoreEntry): void {
  const comm = core.thread_core?.comm;
  if (comm === undefined) return;
  const name = Buffer.alloc(16);
  Buffer.from(comm, "utf8").copy(name, 0, 0, 15);
  remote.call(`prctl(PR_SET_NAME, "${comm}")`, NR.prctl, [PR_SET_NAME, remote.write(0, name), 0, 0, 0]);
}
