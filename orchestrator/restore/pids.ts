// Is the dumped PID free? clone3's set_tid fails with EEXIST while the number is in use
// in any role: a process, a thread, a zombie not reaped yet, or the id of a process group
// or session whose leader is gone. The check names the holder, before anything is made.

import { readdirSync, readFileSync } from "node:fs";

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function statFields(text: string): { comm: string; state: string; ppid: number; pgrp: number; session: number; flags: number } {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  const f = text.slice(close + 2).split(" ");
  return { comm: text.slice(open + 1, close), state: f[0] ?? "?", ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]), flags: Number(f[6]) };
}

/** the kernel's PF_EXITING in /proc/PID/stat's flags: the task is in its exit */
const PF_EXITING = 0x4;
/** SIGKILL's bit in /proc/PID/status's pending-signal masks */
const SIGKILL_BIT = 1n << 8n;

/**
 * Whether the process holding `pid` is on its way out: a zombie or a task being released,
 * one in its exit, or one with SIGKILL pending (a child killed by its parent's death
 * signal, say, just after its parent went).
 */
export function isDying(pid: number): boolean {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const s = statFields(stat);
  if (s.state === "Z" || s.state === "X" || (s.flags & PF_EXITING) !== 0) return true;
  const status = read(`/proc/${pid}/status`) ?? "";
  return [...status.matchAll(/^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$/gm)].some((m) => (BigInt(`0x${m[1]!}`) & SIGKILL_BIT) !== 0n);
}

/** Whether /proc/PID goes within half a second (looked at every millisecond). */
function goneSoon(pid: number): boolean {
  const tick = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 500; i++) {
    if (read(`/proc/${pid}/stat`) === undefined) return true;
    Atomics.wait(tick, 0, 0, 1);
  }
  return false;
}

/**
 * Why `pid` cannot be taken, or undefined when it is free. Without `groups` only processes
 * and threads are looked at (one /proc lookup); with it every process is read to find a
 * process group or session using that id (done when clone3 said EEXIST).
 */
export function pidHolder(pid: number, groups = true): string | undefined {
  const max = Number(read("/proc/sys/kernel/pid_max")?.trim() ?? 4194304);
  if (pid >= max) return `PID ${pid} is above this system's pid_max (${max})`;
  const stat = read(`/proc/${pid}/stat`);
  if (stat !== undefined) {
    const s = statFields(stat);
    const tgid = Number(/^Tgid:\s*(\d+)/m.exec(read(`/proc/${pid}/status`) ?? "")?.[1] ?? pid);
    if (tgid !== pid) {
      const owner = read(`/proc/${tgid}/stat`);
      return `PID ${pid} is taken by a thread of process ${tgid} (${owner ? statFields(owner).comm : "?"})`;
    }
    // A zombie whose parent reads as 0 is being released (the kernel's reaping of it under
    // way: a tree just killed by a dump): gone in moments.
    if (s.state === "Z" && s.ppid === 0 && goneSoon(pid)) return pidHolder(pid, groups);
    if (s.state === "Z") return `PID ${pid} is taken by a zombie (${s.comm}) that its parent ${s.ppid} has not reaped yet`;
    return `PID ${pid} is taken by process ${pid} (${s.comm}, parent ${s.ppid})`;
  }
  if (!groups) return undefined;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const t = read(`/proc/${d}/stat`);
    if (!t) continue;
    const s = statFields(t);
    if (s.pgrp === pid) return `PID ${pid} is in use as the process group id of process ${d} (${s.comm})`;
    if (s.session === pid) return `PID ${pid} is in use as the session id of process ${d} (${s.comm})`;
  }
  return undefined;
}

/** The state letter of /proc/PID/stat ("R", "S", "T"…), undefined once the process is gone. */
export function processState(pid: number): string | undefined {
  const stat = read(`/proc/${pid}/stat`);
  return stat === undefined ? undefined : statFields(stat).state;
}
