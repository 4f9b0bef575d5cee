// core-PID.img: registers (general, FS/GS base, the xsave area split the way criu's
// user_x86_fpregs_entry holds it), TLS descriptors, signal state, timers, rlimits,
// credentials, rseq, robust list and the task-wide fields of the leader's tc.

import { constants as os } from "node:os";
import { bridge } from "../../host-bridge/load.js";
import { ERESTART, SCHED } from "../../host-bridge/constants.js";
import { decodeRegs, REG_NAMES, type UserRegs } from "../../host-bridge/regs.js";
import type { InsideState, ThreadInside } from "./inside.js";
import type { ProcCreds, ProcStat } from "./proc.js";
import type { ThreadSeccomp } from "./seccomp.js";

const EINTR = 4;
const { SIGSTOP } = os.signals;
/** GDT TLS entries of x86_64 (GDT_ENTRY_TLS_MIN..MAX). */
const TLS_ENTRIES = [12, 13, 14];

/** criu's names for the user_regs_struct fields. */
const CRIU_REG: Record<string, string> = { rbp: "bp", rbx: "bx", rax: "ax", rcx: "cx", rdx: "dx", rsi: "si", rdi: "di", orig_rax: "orig_ax", rip: "ip", eflags: "flags", rsp: "sp" };

/**
 * The registers to save: a task stopped inside an interrupted syscall is saved the way
 * resuming would have left it, so that the restored task restarts the call (criu's rule).
 */
export function fixupSyscallRestart(regs: UserRegs): UserRegs {
  const r = { ...regs };
  if (BigInt.asIntN(64, r.orig_rax) < 0n) return r;
  const ax = BigInt.asIntN(64, r.rax);
  if (ax === -BigInt(ERESTART.ERESTARTNOHAND) || ax === -BigInt(ERESTART.ERESTARTSYS) || ax === -BigInt(ERESTART.ERESTARTNOINTR)) {
    r.rax = r.orig_rax;
    r.rip -= 2n;
  } else if (ax === -BigInt(ERESTART.ERESTART_RESTARTBLOCK)) {
    r.rax = BigInt.asUintN(64, -BigInt(EINTR));
  }
  return r;
}

export function gpregsEntry(regs: UserRegs): Record<string, unknown> {
  const e: Record<string, unknown> = {};
  for (const n of REG_NAMES) e[CRIU_REG[n] ?? n] = regs[n];
  e["mode"] = "NATIVE";
  return e;
}

function u32s(buf: Buffer, off: number, len: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < len; i += 4) out.push(buf.readUInt32LE(off + i));
  return out;
}
function u64s(buf: Buffer, off: number, len: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < len; i += 8) out.push(buf.readBigUInt64LE(off + i));
  return out;
}

/** user_x86_fpregs_entry from the kernel's (standard-format) xsave area. */
export function fpregsEntry(xs: Buffer): Record<string, unknown> {
  const b = bridge();
  const fp: Record<string, unknown> = {
    cwd: xs.readUInt16LE(0),
    swd: xs.readUInt16LE(2),
    twd: xs.readUInt16LE(4),
    fop: xs.readUInt16LE(6),
    rip: xs.readBigUInt64LE(8),
    rdp: xs.readBigUInt64LE(16),
    mxcsr: xs.readUInt32LE(24),
    mxcsr_mask: xs.readUInt32LE(28),
    st_space: u32s(xs, 32, 128),
    xmm_space: u32s(xs, 160, 256),
  };
  if (xs.length <= 512) return fp;
  const xcr0 = b.xgetbv(0);
  const comp = (n: number): { off: number; size: number } | undefined => {
    if (!(xcr0 & (1n << BigInt(n)))) return undefined;
    const [size, off] = b.cpuid(0xd, n);
    return off + size <= xs.length && size > 0 ? { off, size } : undefined;
  };
  const xsave: Record<string, unknown> = { xstate_bv: xs.readBigUInt64LE(512) };
  let c;
  if ((c = comp(2))) xsave["ymmh_space"] = u32s(xs, c.off, c.size);
  if ((c = comp(3))) xsave["bndreg_state"] = u64s(xs, c.off, c.size);
  if ((c = comp(4))) xsave["bndcsr_state"] = u64s(xs, c.off, c.size);
  if ((c = comp(5))) xsave["opmask_reg"] = u64s(xs, c.off, c.size);
  if ((c = comp(6))) xsave["zmm_upper"] = u64s(xs, c.off, c.size);
  if ((c = comp(7))) xsave["hi16_zmm"] = u64s(xs, c.off, c.size);
  if ((c = comp(9))) xsave["pkru"] = u32s(xs, c.off, Math.max(8, c.size));
  // CET user state is supervisor state, not in the ptrace xsave area; criu 4.x writes
  // zeros when the task has no shadow stack, which is all this kernel gives us.
  xsave["cet"] = { cet: 0n, ssp: 0n };
  fp["xsave"] = xsave;
  return fp;
}

function tlsEntries(pid: number): Record<string, unknown>[] {
  return TLS_ENTRIES.map((n) => {
    const d = bridge().getThreadArea(pid, n);
    const bits = d.readUInt32LE(12);
    return {
      entry_number: d.readUInt32LE(0),
      base_addr: d.readUInt32LE(4),
      limit: d.readUInt32LE(8),
      seg_32bit: (bits & 1) !== 0,
      contents_h: (bits & 4) !== 0,
      contents_l: (bits & 2) !== 0,
      read_exec_only: (bits & 8) !== 0,
      limit_in_pages: (bits & 16) !== 0,
      seg_not_present: (bits & 32) !== 0,
      usable: (bits & 64) !== 0,
    };
  });
}

/**
 * A pending-signal queue as criu writes it, without SIGSTOP: as criu (which takes every
 * pending SIGSTOP out of the queues when it seizes a task), a task with one pending is
 * dumped stopped instead (freeze.ts). SIGSTOP cannot be blocked: queued again at restore it
 * would stop the task there -- criu's restore fails on it ("Task N stopped with 19").
 */
function siginfos(list: Buffer[]): Record<string, unknown> {
  const kept = list.filter((s) => s.readInt32LE(0) !== SIGSTOP);
  return kept.length ? { signals: kept.map((s) => ({ siginfo: new Uint8Array(s) })) } : {};
}

/** The process-wide part of the leader's core (criu's tc). */
export interface CoreInput {
  pid: number;
  stat: ProcStat;
  inside: InsideState;
  comm: string;
  personality: number;
  rlimits: { cur: bigint; max: bigint }[];
  loginuid: number;
  oomScoreAdj: number;
  /** the task was in a group-stop: saved as TASK_STOPPED */
  stopSignal: number;
}

/** One thread's own state: registers and what the thread holds alone. */
export interface ThreadInput {
  tid: number;
  regs: RegState;
  inside: ThreadInside;
  /** /proc/PID/task/TID/stat and status: scheduling and credentials are per thread */
  stat: ProcStat;
  creds: ProcCreds;
  comm: string;
  /** its seccomp mode as the core says it, and its newest filter in seccomp.img */
  seccomp: ThreadSeccomp;
  /** the rseq_cs of a thread the freeze left inside its rseq critical section (rseq.ts) */
  rseqCs?: bigint | undefined;
  /** its cgroup set in cgroup.img (1: the dumper's own) */
  cgSet: number;
}

export interface RegState {
  regs: UserRegs;
  xstate: Buffer;
  blocked: bigint;
}

/** Registers and signal mask of a thread, read before anything runs inside the task. */
export function readRegs(tid: number): RegState {
  const b = bridge();
  return { regs: decodeRegs(b.getRegs(tid)), xstate: b.getXstate(tid), blocked: b.getSigmask(tid) };
}

function credsEntry(creds: ProcCreds, securebits: number): Record<string, unknown> {
  const e: Record<string, unknown> = {
    uid: creds.uids[0],
    gid: creds.gids[0],
    euid: creds.uids[1],
    egid: creds.gids[1],
    suid: creds.uids[2],
    sgid: creds.gids[2],
    fsuid: creds.uids[3],
    fsgid: creds.gids[3],
    cap_inh: creds.capInh,
    cap_prm: creds.capPrm,
    cap_eff: creds.capEff,
    cap_bnd: creds.capBnd,
    secbits: securebits,
    cap_amb: creds.capAmb,
  };
  if (creds.groups.length) e["groups"] = creds.groups;
  if (creds.noNewPrivs) e["no_new_privs"] = creds.noNewPrivs;
  return e;
}

/**
 * The core_entry of one thread: thread_info (registers, FPU, TLS) and thread_core. As
 * criu writes them, the leader's blocked mask is in tc (buildCore), another thread's in
 * its thread_core.
 */
export function buildThreadCore(t: ThreadInput, leader: boolean): Record<string, unknown> {
  const b = bridge();
  const regs = fixupSyscallRestart(t.regs.regs);
  const rseq = b.getRseqConfiguration(t.tid);
  const robust = b.getRobustList(t.tid);
  const { stat, creds, inside } = t;
  const threadCore: Record<string, unknown> = {
    futex_rla: robust.head,
    futex_rla_len: robust.len,
    sched_nice: stat.nice,
    sched_policy: inside.schedPolicy,
  };
  if (!leader) threadCore["blk_sigset"] = t.regs.blocked;
  Object.assign(threadCore, {
    sas: { ss_sp: inside.altstack.sp, ss_size: inside.altstack.size, ss_flags: inside.altstack.flags },
    signals_p: siginfos(b.peekSiginfo(t.tid, false)),
    creds: credsEntry(creds, inside.securebits),
    comm: t.comm,
    cg_set: t.cgSet,
  });
  const policy = inside.schedPolicy & ~SCHED.RESET_ON_FORK;
  if (policy === SCHED.FIFO || policy === SCHED.RR) threadCore["sched_prio"] = stat.rtPriority;
  if (inside.pdeathSig) threadCore["pdeath_sig"] = inside.pdeathSig;
  if (t.seccomp.mode !== 0) {
    threadCore["seccomp_mode"] = t.seccomp.mode === 1 ? "strict" : "filter";
    if (t.seccomp.filter !== undefined) threadCore["seccomp_filter"] = t.seccomp.filter;
  }
  if (rseq.rseqAbiPointer !== 0n) {
    threadCore["rseq_entry"] = { rseq_abi_pointer: rseq.rseqAbiPointer, rseq_abi_size: rseq.rseqAbiSize, signature: rseq.signature, ...(t.rseqCs !== undefined ? { rseq_cs_pointer: t.rseqCs } : {}) };
  }
  return {
    mtype: "X86_64",
    thread_info: {
      clear_tid_addr: inside.tidAddress,
      gpregs: gpregsEntry(regs),
      fpregs: fpregsEntry(t.regs.xstate),
      tls: tlsEntries(t.tid),
    },
    thread_core: threadCore,
  };
}

/** The leader's core_entry: its thread's core plus the process-wide tc. */
export function buildCore(inp: CoreInput, leader: ThreadInput): Record<string, unknown> {
  const b = bridge();
  const { stat, inside } = inp;
  const sigactions: Record<string, unknown>[] = [];
  inside.sigactions.forEach((a, i) => {
    const sig = i + 1;
    if (sig === 9 || sig === 19) return;
    sigactions.push({ sigaction: a.handler, flags: a.flags, restorer: a.restorer, mask: a.mask, compat_sigaction: false });
  });
  const tc: Record<string, unknown> = {
    task_state: inp.stopSignal ? 3 : 1,
    exit_code: 0,
    personality: inp.personality,
    flags: stat.flags,
    blk_sigset: leader.regs.blocked,
    comm: inp.comm,
    timers: {
      real: inside.itimers.real,
      virt: inside.itimers.virt,
      prof: inside.itimers.prof,
      posix: inside.posixTimers.map((t) => ({
        it_id: t.id,
        clock_id: t.clockId,
        si_signo: t.signal,
        it_sigev_notify: t.notify,
        sival_ptr: t.sigevValue,
        overrun: t.overrun,
        isec: t.isec,
        insec: t.insec,
        vsec: t.vsec,
        vnsec: t.vnsec,
        ...(t.notify & 4 ? { notify_thread_id: t.notifyTid } : {}),
      })),
    },
    rlimits: { rlimits: inp.rlimits },
    signals_s: siginfos(b.peekSiginfo(inp.pid, true)),
    loginuid: inp.loginuid,
    oom_score_adj: inp.oomScoreAdj,
    sigactions,
    child_subreaper: inside.childSubreaper,
  };
  if (inp.stopSignal) tc["stop_signo"] = inp.stopSignal;
  if (inside.membarrierMask) tc["membarrier_registration_mask"] = inside.membarrierMask;
  const core = buildThreadCore(leader, true);
  return { mtype: core["mtype"], thread_info: core["thread_info"], tc, thread_core: core["thread_core"] };
}
