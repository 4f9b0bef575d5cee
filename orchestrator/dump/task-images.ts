// The images of a frozen tree other than its pages and those of its fd kinds' own
// (fds/dump.ts): each process's core (each thread's), mm, ids, fs and fdinfo, the zombies'
// cores, pstree, files, memfd inodes, remaps and ghosts, seccomp, cgroups, the time
// namespace's clocks, cpuinfo and the inventory, in criu's layout. Built while the tree is
// frozen (some entries read the tasks: pending signals, robust lists, rseq), written by the
// dump once the tree is let go (dump.ts).

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { CPU_CAP_IMAGE, parseCpuCaps } from "../../wasm/index.js";
import { hostCpuinfo } from "../cpuinfo/host.js";
import { fdImages, type FdDumpState } from "../fds/dump.js";
import { LOCK_METHOD_ID, type LockMethod } from "../net/lock.js";
import type { CgroupFreezer } from "./cgroup-freezer.js";
import type { DumpOptions } from "./dump.js";
import { CgroupDump } from "./cgroups.js";
import { buildCore, buildThreadCore, type ThreadInput } from "./core.js";
import type { FileTable } from "./filetable.js";
import type { Frozen, FrozenTree } from "./freeze.js";
import { ghostImageEntries } from "./ghost.js";
import type { TaskIds } from "./ids.js";
import type { InsideState } from "./inside.js";
import type { ProcCreds, ProcStat } from "./proc.js";
import { seccompImage } from "./seccomp.js";
import type { ShmemTable } from "./shmem.js";
import { vmaEntry, type Vma } from "./vmas.js";
import { inventoryEntry, namespaceIds, taskClocks } from "./write.js";

/** What the dump collected of one process of the frozen tree. */
export interface Collected {
  pid: number;
  ppid: number;
  frozen: Frozen;
  stat: ProcStat;
  creds: ProcCreds;
  nsIds: Record<string, number>;
  rlimits: { cur: bigint; max: bigint }[];
  comm: string;
  personality: number;
  loginuid: number;
  oomScoreAdj: number;
  auxv: bigint[];
  inside: InsideState;
  vmas: Vma[];
  fdinfo: Record<string, unknown>[];
  /** its fd table is its parent's (CLONE_FILES): one fdinfo image, written with the parent's */
  sharesFiles: boolean;
  exeId: number;
  cwdId: number;
  rootId: number;
  threads: Omit<ThreadInput, "seccomp" | "cgSet">[];
  ids: TaskIds;
}

/** criu's task_state of a zombie. */
const TASK_DEAD = 2;

/** /proc/uptime in microseconds, as criu records it in a pre-dump's inventory. */
function uptimeUs(): bigint {
  const [sec, frac] = readFileSync("/proc/uptime", "utf8").split(" ")[0]!.split(".");
  return BigInt(sec!) * 1_000_000n + BigInt((frac ?? "0").padEnd(2, "0").slice(0, 2)) * 10_000n;
}

export interface TreeImagesInput {
  preDump: boolean;
  preDumpMode: DumpOptions["preDumpMode"];
  /** the tree's root */
  pid: number;
  runId: string;
  lockMethod: LockMethod;
  procs: readonly Collected[];
  tree: FrozenTree;
  files: FileTable;
  fdState: FdDumpState;
  shm: ShmemTable;
  freezer: CgroupFreezer | undefined;
  frozenAt: { monotonic: bigint; boottime: bigint };
  /** criu's work dir: a relative --cgroup-yard is found from there */
  workDir: string;
  cgroupsIgnore: boolean | undefined;
  cgroupRoots: DumpOptions["cgroupRoots"];
  cgroupYard: string | undefined;
  cpuCap: DumpOptions["cpuCap"];
}

/** One image to write: its file name, its type and its entries. */
export type BuiltImage = [name: string, type: string, entries: Record<string, unknown>[]];

/** The images of the frozen tree (for a pre-dump, its inventory alone). */
export function treeImages(x: TreeImagesInput): BuiltImage[] {
  const built: BuiltImage[] = [];
  const image = (name: string, type: string, entries: Record<string, unknown>[]): void => void built.push([name, type, entries]);
  if (x.preDump) {
    // criu's pre-dump inventory: the uptime (criu checks a pid was not reused with it) and the mode.
    image(`inventory.img`, "INVENTORY", [{ ...inventoryEntry(namespaceIds(x.pid), x.runId, LOCK_METHOD_ID[x.lockMethod]), dump_uptime: uptimeUs(), pre_dump_mode: x.preDumpMode === "read" ? 2 : 1 }]);
  }
  if (!x.preDump) {
    const seccomp = seccompImage(x.procs.map((c) => c.threads.map((t) => ({ tid: t.tid, mode: t.creds.seccomp }))));
    // criu works in its work dir: a relative yard is found from there (zdtm's cgroup_yard)
    const cgroups = new CgroupDump(x.cgroupsIgnore !== true, x.cgroupRoots ?? [], x.cgroupYard !== undefined ? resolve(x.workDir, x.cgroupYard) : undefined);
    for (const c of x.procs) {
      const threadInput = (t: Collected["threads"][number]): ThreadInput => ({ ...t, seccomp: seccomp.of.get(t.tid)!, cgSet: cgroups.setOf(c.pid, t.tid) });
      const core = buildCore(
        { pid: c.pid, stat: c.stat, inside: c.inside, comm: c.comm, personality: c.personality, rlimits: c.rlimits, loginuid: c.loginuid, oomScoreAdj: c.oomScoreAdj, stopSignal: c.frozen.stopSignal },
        threadInput(c.threads[0]!),
      );
      image(`core-${c.pid}.img`, "CORE", [core]);
      for (const t of c.threads.slice(1)) image(`core-${t.tid}.img`, "CORE", [buildThreadCore(threadInput(t), false)]);
      image(`mm-${c.pid}.img`, "MM", [
        {
          mm_start_code: c.stat.startCode,
          mm_end_code: c.stat.endCode,
          mm_start_data: c.stat.startData,
          mm_end_data: c.stat.endData,
          mm_start_stack: c.stat.startStack,
          mm_start_brk: c.stat.startBrk,
          mm_brk: c.inside.brk,
          mm_arg_start: c.stat.argStart,
          mm_arg_end: c.stat.argEnd,
          mm_env_start: c.stat.envStart,
          mm_env_end: c.stat.envEnd,
          exe_file_id: c.exeId,
          mm_saved_auxv: c.auxv,
          vmas: c.vmas.map(vmaEntry),
          dumpable: c.inside.dumpable,
          thp_disabled: c.inside.thpDisabled,
        },
      ]);
      image(`ids-${c.pid}.img`, "IDS", [{ ...c.ids, ...c.nsIds }]);
      image(`fs-${c.pid}.img`, "FS", [{ cwd_id: c.cwdId, root_id: c.rootId, umask: c.creds.umask }]);
      if (!c.sharesFiles) image(`fdinfo-${c.ids.files_id}.img`, "FDINFO", c.fdinfo);
    }
    // Zombies: a core with only their exit status and name (criu's layout), nothing else.
    for (const z of x.tree.processes) {
      if (!z.zombie) continue;
      const tc = { task_state: TASK_DEAD, exit_code: z.zombie.exitCode, personality: 0, flags: 0, blk_sigset: 0n, comm: z.zombie.comm };
      image(`core-${z.pid}.img`, "CORE", [{ mtype: "X86_64", tc }]);
    }
    image(
      `pstree.img`,
      "PSTREE",
      x.tree.processes.map((f) => {
        const c = x.procs.find((p) => p.pid === f.pid);
        // criu writes a zombie's thread list as [0]
        return { pid: f.pid, ppid: f.ppid, pgid: c?.stat.pgid ?? f.zombie!.pgid, sid: c?.stat.sid ?? f.zombie!.sid, threads: f.zombie ? [0] : f.tids };
      }),
    );
    image(`files.img`, "FILES", x.files.entries);
    for (const f of fdImages(x.fdState)) image(f.name, f.type, f.entries);
    if (x.shm.objects.size) image(`memfd.img`, "MEMFD_INODE", x.shm.inodeEntries());
    if (x.files.remaps.length) image(`remap-fpath.img`, "REMAP_FPATH", x.files.remaps);
    for (const g of x.files.ghosts.files) image(`ghost-file-${g.id.toString(16)}.img`, "GHOST_FILE", ghostImageEntries(g));
    image(`seccomp.img`, "SECCOMP", [seccomp.entry]);
    if (x.freezer && !x.freezer.v2) cgroups.freezerState(x.freezer.origin);
    const cgroupEntry = cgroups.entry();
    cgroups.close();
    if (cgroupEntry) image(`cgroup.img`, "CGROUP", [cgroupEntry]);
    const ts = (ns: bigint): Record<string, bigint> => ({ tv_sec: ns / 1_000_000_000n, tv_nsec: ns % 1_000_000_000n });
    const clocks = taskClocks(x.pid, x.frozenAt);
    image(`timens-0.img`, "TIMENS", [{ monotonic: ts(clocks.monotonic), boottime: ts(clocks.boottime) }]);
    // criu writes cpuinfo.img when --cpu-cap asks for any check ("none" does not).
    if (x.cpuCap !== undefined && parseCpuCaps(x.cpuCap === "" ? undefined : x.cpuCap) & CPU_CAP_IMAGE) {
      image(`cpuinfo.img`, "CPUINFO", [{ x86_entry: [hostCpuinfo()] }]);
    }
    image(`inventory.img`, "INVENTORY", [inventoryEntry(x.procs[0]!.nsIds, x.runId, LOCK_METHOD_ID[x.lockMethod])]);
  }
  return built;
}
