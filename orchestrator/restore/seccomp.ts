// Seccomp: strict mode, or the chain of BPF filters of seccomp.img that starts at the
// thread's seccomp_filter, installed in the chain's order: in criu's layout the thread
// names its oldest filter and each entry's `prev` the one installed after it. The filters
// would apply to the syscalls the restore still runs in the task, so tscriu first
// suspends seccomp for every thread (PTRACE_O_SUSPEND_SECCOMP, root only); detaching
// lifts that. They go in before the credentials, while the task still has
// CAP_SYS_ADMIN (a task without no_new_privs needs it to install a filter).
//
// One filter of several threads must come back as one: a later SECCOMP_FILTER_FLAG_TSYNC
// succeeds only where every thread's filters are the caller's or an older part of them.
// The filters every thread has alike, oldest first, the leader installs once with TSYNC,
// which gives them to all threads; then each thread installs the rest of its own, the
// leader first (criu's images mark the leader's filters TSYNC where they are every
// thread's, leaving the other threads none: those get them from the leader).

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
const SECCOMP_FILTER_FLAG_TSYNC = 1;
const BPF_MAXINSNS = 4096;
const SOCK_FILTER_SIZE = 8;
const PROT_RW = 3;
/** SECCOMP_FILTER_FLAG_TSYNC, _LOG, _SPEC_ALLOW, _TSYNC_ESRCH */
const FILTER_FLAGS = 0x1 | 0x2 | 0x4 | 0x10;
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
  // criu's images from before per-thread seccomp held the process's filters in its task
  // core: they were every thread's, and criu's restorer gives them to all with TSYNC.
  const old = core.thread_core?.seccomp_filter === undefined ? SECCOMP_FILTER_FLAG_TSYNC : 0;
  const chain: SeccompPlan["filters"] = [];
  while (at !== undefined) {
    const f: (typeof all)[number] | undefined = all[at];
    if (!f || chain.length > all.length) throw fail(`seccomp filter ${at} is not in seccomp.img (or the chain loops)`);
    if (f.filter.length % SOCK_FILTER_SIZE || f.filter.length === 0 || f.filter.length / SOCK_FILTER_SIZE > BPF_MAXINSNS) {
      throw fail(`seccomp filter ${at} is ${f.filter.length} bytes: not a BPF program of 1..${BPF_MAXINSNS} instructions`);
    }
    if ((f.flags ?? 0) & ~FILTER_FLAGS) throw fail(`seccomp filter ${at} has flags 0x${(f.flags ?? 0).toString(16)}; tscriu installs filters with TSYNC, LOG, SPEC_ALLOW and TSYNC_ESRCH only (a notification listener would be an fd nobody holds)`);
    chain.push({ prog: f.filter, flags: (f.flags ?? 0) | old });
    at = f.prev;
  }
  return { mode: "filter", filters: chain };
}

function sameFilter(a: SeccompPlan["filters"][number], b: SeccompPlan["filters"][number]): boolean {
  return (a.flags & ~SECCOMP_FILTER_FLAG_TSYNC) === (b.flags & ~SECCOMP_FILTER_FLAG_TSYNC) && Buffer.from(a.prog).equals(b.prog);
}

/** How many filters, oldest first, all threads of a process have alike (the leader's plan first); 0 for one thread. */
export function sharedFilters(plans: readonly (SeccompPlan | undefined)[]): number {
  if (plans.length < 2 || plans.some((p) => p?.mode !== "filter")) return 0;
  const [first, ...rest] = plans as SeccompPlan[];
  let n = 0;
  while (n < first!.filters.length && rest.every((p) => n < p.filters.length && sameFilter(p.filters[n]!, first!.filters[n]!))) n++;
  return n;
}

/** Seccomp of every thread of a process (the leader first), `shared` filters installed once by the leader for all. */
export function restoreSeccomp(threads: readonly { remote: Remote; plan: SeccompPlan | undefined }[], shared: number): void {
  if (threads.every((t) => t.plan === undefined)) return;
  // All at once: a filter the leader installs with TSYNC lands on every thread.
  for (const t of threads) bridge().ptraceSetOptions(t.remote.pid, PTRACE_O.TRACESYSGOOD | PTRACE_O.EXITKILL | PTRACE_O.SUSPEND_SECCOMP);
  const leader = threads[0]!;
  if (shared > 0) installFilters(leader.remote, leader.plan!.filters.slice(0, shared), SECCOMP_FILTER_FLAG_TSYNC);
  for (const t of threads) {
    if (!t.plan) continue;
    if (t.plan.mode === "strict") {
      t.remote.call("seccomp(SECCOMP_SET_MODE_STRICT)", NR.seccomp, [SECCOMP_SET_MODE_STRICT, 0, 0]);
      continue;
    }
    installFilters(t.remote, t.plan.filters.slice(shared), 0);
  }
}

/** Installs `filters` in the thread, oldest first, each with its flags and `more`. */
function installFilters(remote: Remote, filters: SeccompPlan["filters"], more: number): void {
  for (const [i, f] of filters.entries()) {
    // A program that does not fit the trampoline's data area goes into a page of its own.
    const big = f.prog.length + 16 > TRAMPOLINE_SIZE - DATA_OFFSET;
    const len = (f.prog.length + 4095) & ~4095;
    const progAt = big ? remote.call("mmap for a seccomp filter", NR.mmap, [0, len, PROT_RW, MAP_PRIVATE_ANON, -1, 0]) : remote.write(16, f.prog);
    if (big && bridge().processVmWritev(remote.pid, progAt, f.prog) !== f.prog.length) throw new RestoreError("creds", remote.pid, "short write of a seccomp filter");
    const fprog = Buffer.alloc(16);
    fprog.writeUInt16LE(f.prog.length / SOCK_FILTER_SIZE, 0);
    fprog.writeBigUInt64LE(progAt, 8);
    const flags = f.flags | more;
    const what = `seccomp(SECCOMP_SET_MODE_FILTER${flags & SECCOMP_FILTER_FLAG_TSYNC ? ", TSYNC" : ""}) of filter ${i} (${f.prog.length / SOCK_FILTER_SIZE} instructions) in thread ${remote.pid}`;
    const got = remote.call(what, NR.seccomp, [SECCOMP_SET_MODE_FILTER, flags, remote.write(0, fprog)]);
    // TSYNC's failure is no -errno: the TID of a thread it cannot give the filter to.
    if (got !== 0n) throw new RestoreError("creds", remote.pid, flags & SECCOMP_FILTER_FLAG_TSYNC ? `${what}: thread ${got} has filters of its own that the leader's do not extend, so TSYNC cannot give it the leader's` : `${what} returned ${got}`);
    if (big) remote.call("munmap", NR.munmap, [progAt, len]);
  }
}
