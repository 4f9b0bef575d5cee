// seccomp.img: the seccomp filters of the task's threads (PTRACE_SECCOMP_GET_FILTER),
// oldest first, each naming the one installed before it; each thread's thread_core
// points at its newest. Threads that share filters (inherited at clone) share entries.
// A task without filters gets criu's single empty entry.

import { bridge } from "../../host-bridge/load.js";

const SECCOMP_MODE_FILTER = 2;

export interface SeccompThread {
  tid: number;
  /** the Seccomp line of /proc/PID/task/TID/status */
  mode: number;
}

export function seccompImage(threads: readonly SeccompThread[]): { entry: Record<string, unknown>; filterIndex: Map<number, number | undefined> } {
  const filters: { filter: Uint8Array; prev?: number }[] = [];
  const known = new Map<string, number>();
  const filterIndex = new Map<number, number | undefined>();
  for (const t of threads) {
    if (t.mode !== SECCOMP_MODE_FILTER) {
      filterIndex.set(t.tid, undefined);
      continue;
    }
    const progs: Buffer[] = [];
    for (let i = 0; ; i++) {
      const p = bridge().seccompGetFilter(t.tid, i);
      if (!p) break;
      progs.push(p);
    }
    let prev: number | undefined;
    for (const p of progs.reverse()) {
      const key = `${prev ?? -1}:${p.toString("hex")}`;
      let idx = known.get(key);
      if (idx === undefined) {
        idx = filters.length;
        filters.push({ filter: new Uint8Array(p), ...(prev !== undefined ? { prev } : {}) });
        known.set(key, idx);
      }
      prev = idx;
    }
    filterIndex.set(t.tid, prev);
  }
  return { entry: filters.length ? { seccomp_filters: filters } : {}, filterIndex };
}
