// Signal state of core-PID.img: the 62 sigactions (1..64 without SIGKILL and SIGSTOP), the
// alternate signal stack, and the pending signals -- process-wide (tc.signals_s) and the
// thread's own (thread_core.signals_p) -- queued again with their full siginfo. A task may
// queue any siginfo to itself (the kernel refuses forged si_codes only between tasks), so
// they are queued from inside the task, while every signal is still blocked there; the
// dumped mask is set at the very end (registers.ts). All but SIGSTOP, which no mask blocks:
// a task with one pending is stopped by it instead (plan.ts), as it would have been.

import { constants as os } from "node:os";
import type { CoreEntry } from "../../images/dir.js";
import { RestoreError } from "./errors.js";
import { DATA_OFFSET, NR, TRAMPOLINE_SIZE, type Call, type Remote } from "./remote.js";

const SIGTRAP = 5;
const { SIGSTOP } = os.signals;

const SIGINFO_SIZE = 128;
const SS_DISABLE = 2;
const SS_AUTODISARM = 0x80000000;
const SA_SIZE = 32;

/** Signal number of entry i of tc.sigactions (SIGKILL and SIGSTOP are left out). */
export function sigactionSignal(i: number): number {
  return i < 8 ? i + 1 : i < 17 ? i + 2 : i + 3;
}

/** Checks that the signal state is something this restore can give back. */
export function checkSignals(pid: number, core: CoreEntry): void {
  const acts = core.tc?.sigactions ?? [];
  if (acts.length > 62) throw new RestoreError("plan", pid, `${acts.length} sigactions in the core image (at most 62)`);
  if (acts.some((a) => a.compat_sigaction === true)) throw new RestoreError("plan", pid, "32-bit (compat) sigactions are not supported");
  for (const q of [core.tc?.signals_s?.signals ?? [], core.thread_core?.signals_p?.signals ?? []]) {
    for (const s of q) if (s.siginfo.length !== SIGINFO_SIZE) throw new RestoreError("plan", pid, `a pending siginfo is ${s.siginfo.length} bytes, not ${SIGINFO_SIZE}`);
  }
}

const signo = (info: Uint8Array): number => Buffer.from(info.buffer, info.byteOffset, info.byteLength).readInt32LE(0);

/**
 * Whether these cores (a process's leader and threads) queue a SIGSTOP: tscriu's dumps did
 * until 2026-12 (criu's never do: it takes a pending SIGSTOP out when it seizes the task,
 * and dumps the task stopped).
 */
export function sigstopQueued(cores: readonly CoreEntry[]): boolean {
  return cores.some((c) => [...(c.tc?.signals_s?.signals ?? []), ...(c.thread_core?.signals_p?.signals ?? [])].some((s) => signo(s.siginfo) === SIGSTOP));
}

/** Every sigaction that is not SIG_DFL with no flags and no mask (the stub has only those). */
export function restoreSigactions(remote: Remote, core: CoreEntry): number {
  const acts = core.tc?.sigactions ?? [];
  const buf = Buffer.alloc(acts.length * SA_SIZE);
  const set: number[] = [];
  acts.forEach((a, i) => {
    if (a.sigaction === 0n && a.flags === 0n && a.mask === 0n) return;
    const o = i * SA_SIZE;
    buf.writeBigUInt64LE(a.sigaction, o);
    buf.writeBigUInt64LE(a.flags, o + 8);
    buf.writeBigUInt64LE(a.restorer, o + 16);
    buf.writeBigUInt64LE(a.mask, o + 24);
    set.push(i);
  });
  const at = remote.write(0, buf);
  const call = (i: number): Call => ({ what: `rt_sigaction(${sigactionSignal(i)})`, nr: NR.rt_sigaction, args: [sigactionSignal(i), at + BigInt(i * SA_SIZE), 0, 8] });
  // SIGTRAP's own last, one call at a time: the loop ends in a trap that must meet the
  // handler the task had so far, not one made ignoring while the loop runs.
  remote.loop(set.filter((i) => sigactionSignal(i) !== SIGTRAP).map(call));
  remote.batch(set.filter((i) => sigactionSignal(i) === SIGTRAP).map(call));
  return set.length;
}

export function restoreAltstack(remote: Remote, core: CoreEntry): void {
  const sas = core.thread_core?.sas;
  if (!sas || sas.ss_flags & SS_DISABLE) return;
  const st = Buffer.alloc(24);
  st.writeBigUInt64LE(sas.ss_sp, 0);
  st.writeUInt32LE(sas.ss_flags >= SS_AUTODISARM ? SS_AUTODISARM : 0, 8);
  st.writeBigUInt64LE(sas.ss_size, 16);
  remote.call(`sigaltstack(0x${sas.ss_sp.toString(16)}, ${sas.ss_size})`, NR.sigaltstack, [remote.write(0, st), 0]);
}

/**
 * Queues the pending signals again, in their order: the process's (tc, the leader's core
 * only) and thread `tid`'s own, but a SIGSTOP (see sigstopQueued). Returns how many.
 */
export function restorePending(remote: Remote, core: CoreEntry, pid: number, tid = pid): number {
  const items: { info: Uint8Array; shared: boolean }[] = [
    ...(core.tc?.signals_s?.signals ?? []).map((s) => ({ info: s.siginfo, shared: true })),
    ...(core.thread_core?.signals_p?.signals ?? []).map((s) => ({ info: s.siginfo, shared: false })),
  ].filter((s) => signo(s.info) !== SIGSTOP);
  const room = Math.floor((TRAMPOLINE_SIZE - DATA_OFFSET) / SIGINFO_SIZE);
  for (let start = 0; start < items.length; start += room) {
    const part = items.slice(start, start + room);
    const calls: Call[] = part.map((s, i) => {
      const info = Buffer.from(s.info);
      const sig = info.readInt32LE(0);
      const at = remote.write(i * SIGINFO_SIZE, info);
      return s.shared
        ? { what: `rt_sigqueueinfo(${sig}) (pending for the process)`, nr: NR.rt_sigqueueinfo, args: [pid, sig, at] }
        : { what: `rt_tgsigqueueinfo(${sig}) (pending for the thread)`, nr: NR.rt_tgsigqueueinfo, args: [pid, tid, sig, at] };
    });
    remote.batch(calls);
  }
  return items.length;
}
