// Starting the stub with the dumped PID, seizing it, and getting rid of it again when a
// restore fails (kill, then wait until the PID is free).

import { existsSync } from "node:fs";
import { PTRACE_EVENT, PTRACE_O } from "../../host-bridge/constants.js";
import { bridge, helperProgram, isNativeError } from "../../host-bridge/load.js";
import type { RestoreSpawnOptions } from "../../host-bridge/native.js";
import { RestoreError } from "./errors.js";

/** Where tscriu_stub is: $TSCRIU_STUB, or built next to the addon (source tree or dist/). */
export function stubPath(): string {
  return helperProgram("tscriu_stub", "TSCRIU_STUB");
}

export interface Spawned {
  pid: number;
  /** the subreaper of a detached restore, 0 otherwise */
  reaper: number;
  mode: "child" | "sibling" | "detached";
}

export function spawnStub(opts: Omit<RestoreSpawnOptions, "stub">): Spawned {
  const r = bridge().restoreSpawn({ stub: stubPath(), ...opts });
  return { pid: r.pid, reaper: r.reaper, mode: opts.mode ?? "child" };
}

/**
 * Seizes the stub and stops it. The stub blocks every signal and pauses, so the only
 * stop to expect is our interrupt; EXITKILL makes sure it dies with us if tscriu dies
 * half-way, TRACESYSGOOD tells syscall stops apart for the last call of the restore.
 */
export function seizeStub(pid: number): void {
  const b = bridge();
  b.ptraceSeize(pid, PTRACE_O.TRACESYSGOOD | PTRACE_O.EXITKILL);
  b.ptraceInterrupt(pid);
  for (;;) {
    const st = b.waitpid(pid, 0, 10_000);
    if (!st) throw new RestoreError("seize", pid, "the stub did not stop within 10 s of PTRACE_INTERRUPT");
    if (st.exited || st.signaled) throw new RestoreError("seize", pid, `the stub died (${st.exited ? `exit ${st.code}` : `signal ${st.signal}`})`);
    if (st.stopped && st.event === PTRACE_EVENT.STOP) return;
    b.ptraceCont(pid, 0);
  }
}

/** A PID is free once /proc has no entry for it (a zombie still holds it). */
function gone(pid: number): boolean {
  return !existsSync(`/proc/${pid}`);
}

/**
 * Kills the processes this restore created (each with the threads it made) and waits until
 * every PID is free: all are killed at once (a child whose parent is still a stub would
 * otherwise wait for a reaper that never comes); as the tracer of each process and thread
 * we collect their exits; their parents (us, the reaper, or whoever inherits an orphan)
 * reap them. Returns a message when a PID could not be seen free within the time limit.
 */
export async function killCreated(tasks: readonly { pid: number; tids: readonly number[] }[], timeoutMs = 8000): Promise<string | undefined> {
  const b = bridge();
  for (const t of tasks) {
    try {
      process.kill(t.pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // Traced threads wait for their tracer (us) to collect them before the leader's exit
    // is reported.
    for (const t of tasks) {
      for (const tid of [...t.tids.filter((x) => x !== t.pid), t.pid]) {
        try {
          b.waitpid(tid, 1 /* WNOHANG */);
        } catch (e) {
          if (!(isNativeError(e) && e.code === "ECHILD")) return (e as Error).message;
        }
      }
    }
    const left = tasks.filter((t) => !gone(t.pid));
    if (left.length === 0) return undefined;
    if (Date.now() > deadline) return `pid ${left.map((t) => t.pid).join(", ")} still there ${timeoutMs} ms after SIGKILL`;
    await new Promise((r) => setTimeout(r, 2));
  }
}
