// A thread frozen inside an rseq critical section (criu's fixup_thread_rseq). The kernel
// aborts such a section when the thread returns to user space after being preempted: it
// sends the thread to the section's abort handler and clears `rseq_cs` in the thread's
// struct rseq. The freeze preempts the thread, but the first return to user space is
// that of a syscall tscriu runs inside it, at tscriu's trampoline: the kernel finds the
// thread outside the section, clears `rseq_cs`, and aborts nothing. Put back in the
// section afterwards, by the restore or by the release after the dump, the thread would
// finish a section that was interrupted, unprotected (a per-CPU commit on the wrong CPU).
//
// So, at the freeze and before anything runs inside the thread, its struct rseq and the
// section it points to are read from memory, and a thread inside the section is sent to
// the abort handler right away, as the kernel would have done: the registers the dump
// saves, and those the task resumes with, start there. A thread stopped inside a syscall
// made within the section leaves the syscall (EINTR) as it would on that abort.
//
// The deprecated RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL (in the section's or the thread's
// flags; kernels since 6.0 ignore it and abort anyway) asks for no abort: criu then keeps
// the thread where it is and saves `rseq_cs` (rseq_entry.rseq_cs_pointer) to write it
// back just before the thread runs again. tscriu does the same, on restore and on the
// release after a dump.

import { ERESTART } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { decodeRegs, encodeRegs } from "../../host-bridge/regs.js";
import { DumpError } from "./errors.js";

/** RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL */
const NO_RESTART_ON_SIGNAL = 2;
/** offsetof(struct rseq, rseq_cs), offsetof(struct rseq, flags) */
const RSEQ_CS_OFFSET = 8n;
const RSEQ_FLAGS_OFFSET = 24;
/** struct rseq_cs: u32 version, u32 flags, u64 start_ip, u64 post_commit_offset, u64 abort_ip */
const RSEQ_CS_SIZE = 32;
const EINTR = 4n;

/** What the freeze did about a thread's rseq critical section. */
export interface RseqFix {
  /** the thread was sent from `from` to the section's abort handler */
  aborted?: { from: bigint; to: bigint };
  /** NO_RESTART_ON_SIGNAL: left in the section; `rseq_cs` to write back at `at` before it runs again */
  kept?: { at: bigint; cs: bigint };
}

function read(tid: number, addr: bigint, len: number, what: string): Buffer {
  const buf = Buffer.alloc(len);
  let n: number;
  try {
    n = bridge().processVmReadv(tid, addr, len, buf);
  } catch (e) {
    throw new DumpError("seize", tid, `thread ${tid}: reading its ${what} at 0x${addr.toString(16)}: ${(e as Error).message}`, { cause: e });
  }
  if (n !== len) throw new DumpError("seize", tid, `thread ${tid}: its ${what} at 0x${addr.toString(16)} is not readable (${n} of ${len} bytes)`);
  return buf;
}

/**
 * Sends the ptrace-stopped thread `tid` to the abort handler of the rseq critical section
 * it is in, if it is in one; nothing must have run inside it since it stopped.
 */
export function abortRseqSection(tid: number): RseqFix | undefined {
  const b = bridge();
  const conf = b.getRseqConfiguration(tid);
  if (conf.rseqAbiPointer === 0n) return undefined;
  const area = read(tid, conf.rseqAbiPointer, RSEQ_FLAGS_OFFSET + 4, "struct rseq");
  const csPtr = area.readBigUInt64LE(Number(RSEQ_CS_OFFSET));
  if (csPtr === 0n) return undefined;
  const cs = read(tid, csPtr, RSEQ_CS_SIZE, "rseq critical section descriptor");
  const version = cs.readUInt32LE(0);
  const flags = cs.readUInt32LE(4) | area.readUInt32LE(RSEQ_FLAGS_OFFSET);
  const start = cs.readBigUInt64LE(8);
  const end = start + cs.readBigUInt64LE(16);
  const abort = cs.readBigUInt64LE(24);
  const regs = decodeRegs(b.getRegs(tid));
  if (regs.rip < start || regs.rip >= end) return undefined;
  // The kernel kills a thread whose section it cannot read (version other than 0) at its next abort; criu refuses it.
  if (version !== 0) throw new DumpError("seize", tid, `thread ${tid} is inside an rseq critical section of version ${version} (at 0x${regs.rip.toString(16)}); only version 0 exists`);
  if (flags & NO_RESTART_ON_SIGNAL) return { kept: { at: conf.rseqAbiPointer + RSEQ_CS_OFFSET, cs: csPtr } };
  const from = regs.rip;
  regs.rip = abort;
  // Inside a syscall (orig_rax >= 0): no restart of it at the abort handler; it was interrupted.
  if (BigInt.asIntN(64, regs.orig_rax) >= 0) {
    const ax = -BigInt.asIntN(64, regs.rax);
    if (ax === BigInt(ERESTART.ERESTARTSYS) || ax === BigInt(ERESTART.ERESTARTNOINTR) || ax === BigInt(ERESTART.ERESTARTNOHAND) || ax === BigInt(ERESTART.ERESTART_RESTARTBLOCK)) regs.rax = BigInt.asUintN(64, -EINTR);
    regs.orig_rax = BigInt.asUintN(64, -1n);
  }
  b.setRegs(tid, encodeRegs(regs));
  return { aborted: { from, to: abort } };
}

/** Writes back the `rseq_cs` of a thread kept in its section (NO_RESTART_ON_SIGNAL), just before it runs again. */
export function putBackRseqCs(tid: number, kept: NonNullable<RseqFix["kept"]>): void {
  const word = Buffer.alloc(8);
  word.writeBigUInt64LE(kept.cs);
  const n = bridge().processVmWritev(tid, kept.at, word);
  if (n !== 8) throw new Error(`thread ${tid}: writing rseq_cs back at 0x${kept.at.toString(16)} wrote ${n} of 8 bytes`);
}
