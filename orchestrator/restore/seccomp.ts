// Seccomp: strict mode, or the chain of BPF filters of seccomp.img that ends at the
// thread's seccomp_filter (each names the one installed before it), installed oldest
// first. The filters would apply to the syscalls the restore still runs in the task, so
// tscriu first suspends seccomp for its tracee (PTRACE_O_SUSPEND_SECCOMP, root only);
// detaching lifts that. They go in before the credentials, while the task still has
// CAP_SYS_ADMIN (a task without no_new_privs needs it to install a filter).

import { existsSync } from "node:fs";
import { join } from "node:path";
import { PTRACE_O } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { CoreEntry } from "../../images/dir.js";
import { readImage } from "../../images/io.js";
import { RestoreError } from "./errors.js";
import { DATA_OFFSET, NR, TRAMPOLINE_SIZE, type Remote } from "./remote.js";

const SECCOMP_SET_MODE_STRICT = 0;
const SECCOMP_SET_MODE_FILTER = 1;
const BPF_MAXINSNS = 4096;
const SOCK_FILTER_SIZE = 8;
const PROT_RW = 3;
const MAP_PRIVATE_ANON = 0x22;

export interface SeccompPlan {
  mode: "strict" | "filter";
  /** oldest first */
  filters: { prog: Uint8Array; flags: number }[];
}

export async function planSeccomp(dir: string, pid: number, core: CoreEntry): Promise<SeccompPlan | undefined> {
  const mode = core.thread_core?.seccomp_mode ?? core.tc?.old_seccomp_mode;
  if (mode === undefined || mode === "disabled" || mode === 0) return undefined;
  if (mode === "strict" || mode === 1) return { mode: "strict", filters: [] };
  const file = join(dir, "seccomp.img");
  const fail = (msg: string): RestoreError => new RestoreError("plan", pid, msg, { file });
  if (!existsSync(file)) throw fail("the task runs under seccomp filters, but there is no seccomp.img");
  const all = ((await readImage(file)).entries[0]?.["seccomp_filters"] ?? []) as { filter: Uint8Array; prev?: number; flags?: number }[];
  let at: number | undefined = core.thread_core?.seccomp_filter ?? core.tc?.old_seccomp_filter;
  if (at === undefined) throw fail("the task runs under seccomp filters, but its core names none");
  const chain: SeccompPlan["filters"] = [];
  while (at !== undefined) {
    const f: (typeof all)[number] | undefined = all[at];
    if (!f || chain.length > all.length) throw fail(`seccomp filter ${at} is not in seccomp.img (or the chain loops)`);
    if (f.filter.length % SOCK_FILTER_SIZE || f.filter.length === 0 || f.filter.length / SOCK_FILTER_SIZE > BPF_MAXINSNS) {
      throw fail(`seccomp filter ${at} is ${f.filter.length} bytes: not a BPF program of 1..${BPF_MAXINSNS} instructions`);
    }
    chain.push({ prog: f.filter, flags: f.flags ?? 0 });
    at = f.prev;
  }
  return { mode: "filter", filters: chain.reverse() };
}

export function restoreSeccomp(remote: Remote, plan: SeccompPlan | undefined): void {
  if (!plan) return;
  bridge().ptraceSetOptions(remote.pid, PTRACE_O.TRACESYSGOOD | PTRACE_O.EXITKILL | PTRACE_O.SUSPEND_SECCOMP);
  if (plan.mode === "strict") {
    remote.call("seccomp(SECCOMP_SET_MODE_STRICT)", NR.seccomp, [SECCOMP_SET_MODE_STRICT, 0, 0]);
    return;
  }
  for (const [i, f] of plan.filters.entries()) {
    // A program that does not fit the trampoline's data area goes into a page of its own.
    const big = f.prog.length + 16 > TRAMPOLINE_SIZE - DATA_OFFSET;
    const len = (f.prog.length + 4095) & ~4095;
    const progAt = big ? remote.call("mmap for a seccomp filter", NR.mmap, [0, len, PROT_RW, MAP_PRIVATE_ANON, -1, 0]) : remote.write(16, f.prog);
    if (big && bridge().processVmWritev(remote.pid, progAt, f.prog) !== f.prog.length) throw new RestoreError("creds", remote.pid, "short write of a seccomp filter");
    const fprog = Buffer.alloc(16);
    fprog.writeUInt16LE(f.prog.length / SOCK_FILTER_SIZE, 0);
    fprog.writeBigUInt64LE(progAt, 8);
    remote.call(`seccomp(SECCOMP_SET_MODE_FILTER) of filter ${i} (${f.prog.length / SOCK_FILTER_SIZE} instructions)`, NR.seccomp, [SECCOMP_SET_MODE_FILTER, f.flags, remote.write(0, fprog)]);
    if (big) remote.call("munmap", NR.munmap, [progAt, len]);
  }
}
