// seccomp.img: the seccomp filters of the task's threads (PTRACE_SECCOMP_GET_FILTER) in
// criu's layout, whatever its field's name suggests: a thread's thread_core names its
// oldest filter and each entry's `prev` the one installed after it, to the newest, which
// has none (criu's restorer installs them in that order). Threads whose filters from one
// on are the same share those entries. A task without filters gets criu's single empty
// entry.
//
// The kernel does not tell whether two threads' filters are one (inherited at clone, or
// given by SECCOMP_FILTER_FLAG_TSYNC) or copies installed alike; only one filter of all
// threads lets a later TSYNC succeed. As criu's dump does: where every thread of a process
// has the leader's filters, the leader's are marked TSYNC and the other threads get none
// in their core, so that a restore has the leader give them its own (criu's restorer and
// tscriu's install the leader's first).

import { bridge } from "../../host-bridge/load.js";

const SECCOMP_MODE_FILTER = 2;
const SECCOMP_FILTER_FLAG_TSYNC = 1;

export interface SeccompThread {
  tid: number;
  /** the Seccomp line of /proc/PID/task/TID/status */
  mode: number;
}

/** What a thread's core says of seccomp: its mode (0 for none, or given by the leader's TSYNC) and its newest filter. */
export interface ThreadSeccomp {
  mode: number;
  filter: number | undefined;
}

/** The thread's filters, oldest first (the kernel's index 0 is the oldest, whatever ptrace(2) says). */
function chainOf(tid: number): Buffer[] {
  const progs: Buffer[] = [];
  for (let i = 0; ; i++) {
    const p = bridge().seccompGetFilter(tid, i);
    if (!p) return progs;
    progs.push(p);
  }
}

function sameChain(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  return a.length === b.length && a.every((p, i) => p.equals(b[i]!));
}

/** `processes`: each process's threads, the leader first. */
export function seccompImage(processes: readonly (readonly SeccompThread[])[]): { entry: Record<string, unknown>; of: Map<number, ThreadSeccomp> } {
  const filters: { filter: Uint8Array; prev?: number; flags?: number }[] = [];
  const known = new Map<string, number>();
  const of = new Map<number, ThreadSeccomp>();
  for (const threads of processes) {
    const chains = new Map(threads.filter((t) => t.mode === SECCOMP_MODE_FILTER).map((t) => [t.tid, chainOf(t.tid)]));
    const leader = chains.get(threads[0]!.tid);
    const tsync = leader !== undefined && threads.every((t) => sameChain(chains.get(t.tid) ?? [], leader));
    for (const [i, t] of threads.entries()) {
      const chain = chains.get(t.tid);
      if (!chain) {
        of.set(t.tid, { mode: t.mode, filter: undefined });
        continue;
      }
      if (tsync && i > 0) {
        of.set(t.tid, { mode: 0, filter: undefined });
        continue;
      }
      const flags = tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0;
      /** the entry of the filter installed after this one */
      let next: number | undefined;
      for (const p of [...chain].reverse()) {
        const key = `${next ?? -1}:${flags}:${p.toString("hex")}`;
        let idx = known.get(key);
        if (idx === undefined) {
          idx = filters.length;
          filters.push({ filter: new Uint8Array(p), ...(next !== undefined ? { prev: next } : {}), flags });
          known.set(key, idx);
        }
        next = idx;
      }
      of.set(t.tid, { mode: t.mode, filter: next });
    }
  }
  return { entry: filters.length ? { seccomp_filters: filters } : {}, of };
}
