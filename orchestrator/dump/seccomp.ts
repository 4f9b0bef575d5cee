// seccomp.img: the seccomp filters of the task (PTRACE_SECCOMP_GET_FILTER), oldest
// first, each naming the one installed before it; the task's thread_core points at
// the newest. A task without filters gets criu's single empty entry.

import { bridge } from "../../host-bridge/load.js";

const SECCOMP_MODE_FILTER = 2;

export function seccompImage(pid: number, mode: number): { entry: Record<string, unknown>; filterIndex: number | undefined } {
  if (mode !== SECCOMP_MODE_FILTER) return { entry: {}, filterIndex: undefined };
  const progs: Buffer[] = [];
  for (let i = 0; ; i++) {
    const p = bridge().seccompGetFilter(pid, i);
    if (!p) break;
    progs.push(p);
  }
  progs.reverse();
  const filters = progs.map((p, i) => ({ filter: new Uint8Array(p), ...(i > 0 ? { prev: i - 1 } : {}) }));
  return { entry: { seccomp_filters: filters }, filterIndex: filters.length - 1 };
}
