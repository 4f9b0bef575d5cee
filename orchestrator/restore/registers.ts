// The thread's own state, last: rseq (only once memory is back, else EFAULT), robust
// futex list, clear-tid address and TLS descriptors from inside the task; then the final
// step, which must never return into the trampoline: munmap of the trampoline runs to its
// syscall-exit stop, and there the dumped signal mask, registers and xsave area are set
// (and the rseq_cs of a thread dumped inside an rseq critical section, see dump/rseq.ts).
// Detaching then resumes the task where it was dumped. The registers were fixed up at dump
// time for syscall restarts (-ERESTART* codes), so orig_rax is -1 here.

import { bridge } from "../../host-bridge/load.js";
import { encodeRegs, type UserRegs } from "../../host-bridge/regs.js";
import type { CoreEntry } from "../../images/dir.js";
import { RestoreError } from "./errors.js";
import { NR, TRAMPOLINE_SIZE, type Call, type Remote } from "./remote.js";
import { buildXstate } from "./xstate.js";

const ROBUST_LIST_HEAD_SIZE = 24;

type Gpregs = NonNullable<CoreEntry["thread_info"]>["gpregs"];

/** criu's register names to the kernel's user_regs_struct. */
export function userRegs(g: Gpregs): UserRegs {
  return {
    r15: g.r15,
    r14: g.r14,
    r13: g.r13,
    r12: g.r12,
    rbp: g.bp,
    rbx: g.bx,
    r11: g.r11,
    r10: g.r10,
    r9: g.r9,
    r8: g.r8,
    rax: g.ax,
    rcx: g.cx,
    rdx: g.dx,
    rsi: g.si,
    rdi: g.di,
    orig_rax: 0xffffffffffffffffn,
    rip: g.ip,
    cs: g.cs,
    eflags: g.flags,
    rsp: g.sp,
    ss: g.ss,
    fs_base: g.fs_base,
    gs_base: g.gs_base,
    ds: g.ds,
    es: g.es,
    fs: g.fs,
    gs: g.gs,
  };
}

/** Checks the thread state can be restored on this machine (64-bit, x86). */
export function checkRegisters(pid: number, core: CoreEntry): void {
  if (core.mtype !== "X86_64") throw new RestoreError("plan", pid, `the image is for ${String(core.mtype)}, this is x86_64`);
  const ti = core.thread_info;
  if (!ti) throw new RestoreError("plan", pid, "the core image has no x86 thread_info");
  if (ti.gpregs.mode === "COMPAT") throw new RestoreError("plan", pid, "32-bit (compat) tasks are not supported");
}

const NR_NANOSLEEP = 35;
const NR_CLOCK_NANOSLEEP = 230;
const EINTR = 0xfffffffffffffffcn; // -4
const TIMER_ABSTIME = 1n;

/**
 * A task dumped inside nanosleep or clock_nanosleep has -EINTR in rax: the kernel would
 * have gone on sleeping through its restart_block, which cannot be saved, so the dump
 * (criu's rule) turns the restart into an interruption. The kernel wrote the time left
 * into `rem` before that, so instead of waking the task early the restore re-enters the
 * same syscall for the time that was left (an absolute clock_nanosleep as it was; the
 * time namespace keeps its clock continuous). Without a `rem` the EINTR stays, as in criu.
 */
function restartSleep(pid: number, regs: UserRegs, origAx: bigint): void {
  if (regs.rax !== EINTR || (origAx !== BigInt(NR_NANOSLEEP) && origAx !== BigInt(NR_CLOCK_NANOSLEEP))) return;
  const insn = Buffer.alloc(2);
  if (bridge().processVmReadv(pid, regs.rip - 2n, 2, insn) !== 2 || insn[0] !== 0x0f || insn[1] !== 0x05) return;
  if (origAx === BigInt(NR_NANOSLEEP)) {
    if (regs.rsi === 0n) return;
    regs.rdi = regs.rsi; // nanosleep(rem, rem)
  } else if (!(regs.rsi & TIMER_ABSTIME)) {
    if (regs.r10 === 0n) return;
    regs.rdx = regs.r10; // clock_nanosleep(clock, 0, rem, rem)
  }
  regs.rax = origAx;
  regs.rip -= 2n;
}

/** rseq, robust list, clear-tid address, TLS: all from inside the task. */
export function restoreThreadState(remote: Remote, core: CoreEntry): void {
  const th = core.thread_core;
  const ti = core.thread_info!;
  const calls: Call[] = [];
  if (th?.rseq_entry && th.rseq_entry.rseq_abi_pointer !== 0n) {
    const r = th.rseq_entry;
    calls.push({ what: `rseq(0x${r.rseq_abi_pointer.toString(16)}, ${r.rseq_abi_size})`, nr: NR.rseq, args: [r.rseq_abi_pointer, r.rseq_abi_size, 0, r.signature] });
  }
  if (th && th.futex_rla !== 0n) {
    calls.push({ what: `set_robust_list(0x${th.futex_rla.toString(16)})`, nr: NR.set_robust_list, args: [th.futex_rla, th.futex_rla_len || ROBUST_LIST_HEAD_SIZE] });
  }
  calls.push({ what: `set_tid_address(0x${ti.clear_tid_addr.toString(16)})`, nr: NR.set_tid_address, args: [ti.clear_tid_addr] });
  let off = 0;
  for (const d of ti.tls ?? []) {
    const empty = d.base_addr === 0 && d.limit === 0 && d.seg_not_present && d.read_exec_only;
    if (empty) continue;
    const u = Buffer.alloc(16);
    u.writeUInt32LE(d.entry_number, 0);
    u.writeUInt32LE(d.base_addr, 4);
    u.writeUInt32LE(d.limit, 8);
    const bits =
      (d.seg_32bit ? 1 : 0) | (d.contents_l ? 2 : 0) | (d.contents_h ? 4 : 0) | (d.read_exec_only ? 8 : 0) | (d.limit_in_pages ? 16 : 0) | (d.seg_not_present ? 32 : 0) | (d.usable ? 64 : 0);
    u.writeUInt32LE(bits, 12);
    calls.push({ what: `set_thread_area(${d.entry_number})`, nr: NR.set_thread_area, args: [remote.write(off, u)] });
    off += 16;
  }
  remote.loop(calls);
}

/** A thread's dumped mask, registers and FPU state, put in place while it is stopped. */
export function threadRegisters(tid: number, core: CoreEntry, blocked: bigint, xstateTemplate: Buffer): void {
  const b = bridge();
  const regs = userRegs(core.thread_info!.gpregs);
  restartSleep(tid, regs, core.thread_info!.gpregs.orig_ax);
  const xstate = buildXstate(core.thread_info!.fpregs, xstateTemplate.length);
  b.setSigmask(tid, blocked);
  b.setRegs(tid, encodeRegs(regs));
  try {
    b.setXstate(tid, xstate);
  } catch (e) {
    throw new RestoreError("registers", tid, `the FPU/xsave state of the image was refused: ${(e as Error).message}`, { cause: e });
  }
  putBackRseqCs(tid, core);
}

/**
 * A thread dumped inside an rseq critical section that asks not to be restarted (criu's
 * rseq_cs_pointer, see dump/rseq.ts) gets its struct rseq's rseq_cs back last, once
 * nothing runs in it any more: the kernel cleared it when the restore's calls returned
 * to user space outside the section.
 */
function putBackRseqCs(tid: number, core: CoreEntry): void {
  const r = core.thread_core?.rseq_entry;
  if (!r?.rseq_cs_pointer || r.rseq_abi_pointer === 0n) return;
  const word = Buffer.alloc(8);
  word.writeBigUInt64LE(r.rseq_cs_pointer);
  if (bridge().processVmWritev(tid, r.rseq_abi_pointer + 8n, word) !== 8) throw new RestoreError("registers", tid, `writing rseq_cs (0x${r.rseq_cs_pointer.toString(16)}) back into struct rseq at 0x${r.rseq_abi_pointer.toString(16)} failed`);
}

/**
 * The last step inside the task: unmap the trampoline (stopping at the syscall's exit),
 * then put the dumped mask, registers and FPU state in place. The task stays stopped.
 * Other threads get theirs first (threadRegisters): nothing runs in them any more.
 */
export function finalRegisters(remote: Remote, core: CoreEntry, blocked: bigint, xstateTemplate: Buffer): void {
  remote.toExit("munmap of the trampoline", NR.munmap, [remote.tramp, TRAMPOLINE_SIZE]);
  threadRegisters(remote.pid, core, blocked, xstateTemplate);
}
