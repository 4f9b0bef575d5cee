// Reading and checking the images before anything is created: what this restore can do
// (one single-threaded task, the file and memory kinds of memory.ts and files.ts), that
// every file they name is there as it was, that this kernel's vDSO and this CPU's FPU fit,
// and that the dumped PID is free. Any "no" here is an error naming the image or file,
// and nothing has changed on the machine.

import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { openImageDir, taskId, type CoreEntry, type FdinfoEntry, type FsEntry, type IdsEntry, type ImageDir, type MmEntry, type PstreeEntry } from "../../images/dir.js";
import { readImage } from "../../images/io.js";
import type { ModuleLog } from "../log.js";
import { cpuinfoCheck } from "../cpuinfo/cpuinfo.js";
import { RestoreError } from "./errors.js";
import { FileSet, type RegFile } from "./fileset.js";
import { planFds, type FdPlan } from "../fds/restore.js";
import { planFs, type FsPlan } from "./fs.js";
import { planMemory, type MemoryPlan } from "./memory.js";
import { pidHolder } from "./pids.js";
import { checkRegisters } from "./registers.js";
import { ShmTable } from "./shmem.js";
import { planSeccomp, type SeccompPlan } from "./seccomp.js";
import { checkSignals } from "./signals.js";
import { missingXfeatures, xfeatureNames } from "./xstate.js";

const TASK_ALIVE = 1;
const TASK_STOPPED = 3;
const NS_KEYS = ["pid_ns_id", "net_ns_id", "ipc_ns_id", "uts_ns_id", "mnt_ns_id", "user_ns_id", "cgroup_ns_id", "time_ns_id"] as const;

export interface PlanOptions {
  imagesDir: string;
  shellJob?: boolean | undefined;
  root?: string | undefined;
  inheritFds?: readonly string[] | undefined;
  /** --cpu-cap: undefined = not given (criu's default fpu check), null = given without a value */
  cpuCap?: string | null | undefined;
}

export interface Plan {
  dir: string;
  images: ImageDir;
  pid: number;
  pstree: PstreeEntry;
  core: CoreEntry;
  mm: MmEntry;
  ids: IdsEntry;
  fs: FsEntry;
  fdinfo: FdinfoEntry[];
  files: FileSet;
  shm: ShmTable;
  exe: RegFile;
  memory: MemoryPlan;
  fds: FdPlan;
  /** cwd, root and umask */
  dirs: FsPlan;
  /** the task was stopped (SIGSTOP) at dump time */
  stopped: boolean;
  session: "setsid" | "setpgid" | "inherit";
  timens: { monotonicNs: bigint; boottimeNs: bigint } | undefined;
  /** the signal mask to give back */
  blocked: bigint;
  seccomp: SeccompPlan | undefined;
}

async function timens(dir: string): Promise<Plan["timens"]> {
  const file = join(dir, "timens-0.img");
  if (!existsSync(file)) return undefined;
  const e = (await readImage(file)).entries[0];
  if (!e) return undefined;
  const ns = (t: unknown): bigint => {
    const o = t as { tv_sec?: bigint; tv_nsec?: bigint };
    return BigInt(o.tv_sec ?? 0n) * 1_000_000_000n + BigInt(o.tv_nsec ?? 0n);
  };
  return { monotonicNs: ns(e["monotonic"]), boottimeNs: ns(e["boottime"]) };
}

const ZOMBIE_WAIT_MS = 5000;

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return false;
  }
}

export async function planRestore(opts: PlanOptions, log: ModuleLog): Promise<Plan> {
  const dir = resolve(opts.imagesDir);
  const images = await openImageDir(dir);
  const fail = (msg: string, file?: string, pid = 0): RestoreError => new RestoreError("plan", pid, msg, { file: file ? join(dir, file) : undefined });
  const inv = await images.inventory();
  if (inv.img_version !== 2) throw fail(`image version ${inv.img_version} is not supported (criu 4.x writes 2)`, "inventory.img");
  if (inv.fdinfo_per_id !== true) throw fail("images with per-task fdinfo files (fdinfo_per_id off) are not supported", "inventory.img");
  const tasks = await images.tasks();
  if (tasks.length !== 1) throw fail(`the images hold ${tasks.length} processes (${tasks.map((t) => t.pid).join(", ")}); restoring process trees is not supported yet`, "pstree.img");
  const { pid, entry: pstree } = tasks[0]!;
  if (!(pid > 0)) throw fail(`bad pid ${pid}`, "pstree.img");
  if ((pstree.threads ?? []).length !== 1) {
    throw fail(`pid ${pid} has ${(pstree.threads ?? []).length} threads (${(pstree.threads ?? []).join(", ")}); restoring multi-threaded processes is not supported yet`, "pstree.img", pid);
  }
  // First of the checks on this machine: a taken PID says more than what follows from it.
  // A dump that killed its task leaves a zombie for the task's parent to reap; pid 1
  // on these machines reaps orphans ~1.5 s late, so give a dying PID a few seconds.
  let holder = pidHolder(pid, false);
  for (let waited = 0; holder && isZombie(pid) && waited < ZOMBIE_WAIT_MS; waited += 50) {
    if (waited === 0) log.info(`PID ${pid} is a zombie not reaped yet; waiting up to ${ZOMBIE_WAIT_MS / 1000} s for its parent to reap it`);
    await new Promise((r) => setTimeout(r, 50));
    holder = pidHolder(pid, false);
  }
  if (holder) throw fail(`${holder}; it must be free to restore the task with its PID`, undefined, pid);
  const core = await images.core(pid);
  checkRegisters(pid, core);
  const state = Number(core.tc?.task_state ?? TASK_ALIVE);
  if (state !== TASK_ALIVE && state !== TASK_STOPPED) throw fail(`the task's state ${state} (dead or a helper) cannot be restored`, `core-${pid}.img`, pid);
  checkSignals(pid, core);
  const ids = await images.ids(pid);
  const root = inv.root_ids as Record<string, unknown> | undefined;
  for (const k of NS_KEYS) {
    const mine = (ids as Record<string, unknown>)[k] as number | undefined;
    const theirs = root?.[k] as number | undefined;
    if (mine !== undefined && theirs !== undefined && mine !== theirs) {
      throw fail(`the task was in a namespace of its own (${k} ${mine}, dumper's ${theirs}); restoring namespaces is not supported`, `ids-${pid}.img`, pid);
    }
  }
  const seccomp = await planSeccomp(dir, pid, core);
  const mm = await images.mm(pid);
  const fs = await images.fs(pid);
  const fdinfo = await images.fdinfo(pid);
  const filesById = await images.files();
  const files = await FileSet.load(dir, filesById, opts.root, pid);
  const shm = await ShmTable.load(dir, filesById, pid);
  const exe = await files.reg(mm.exe_file_id, "the exe link");
  const memory = await planMemory(pid, dir, mm, files, shm, log);
  const cwdRoot = await planFs(fs, files);
  const clocks = await timens(dir);
  const fds = await planFds(pid, dir, fdinfo, files, shm, { shellJob: opts.shellJob === true, inheritFds: opts.inheritFds ?? [], clocks }, log);
  log.debug(`${memory.vmas.length} VMAs, ${memory.pages} pages, ${fds.fds.length} fds`);

  // FPU: criu checks the image's xsave features against this CPU unless --cpu-cap=none.
  const cap = opts.cpuCap;
  if (cap !== "none") {
    const missing = missingXfeatures(core.thread_info!.fpregs);
    if (missing !== 0n) throw fail(`the FPU state uses xsave features this CPU does not have: ${xfeatureNames(missing)} (--cpu-cap=none to try anyway)`, `core-${pid}.img`, pid);
    if (existsSync(join(dir, "cpuinfo.img")) && cap !== undefined) {
      const r = await cpuinfoCheck(dir, cap);
      if (!r.ok) throw fail(`the CPU is not compatible with the image (--cpu-cap ${cap === null ? "" : cap}): ${r.messages.join("; ")}`, "cpuinfo.img", pid);
    }
  }

  const sid = taskId(pstree, "sid");
  const pgid = taskId(pstree, "pgid");
  let session: Plan["session"];
  if (opts.shellJob) session = "inherit";
  else if (sid === pid) session = "setsid";
  else throw fail(`the task's session leader (sid ${sid}) is not in the images: restore it as a shell job (--shell-job) to put it into tscriu's session`, "pstree.img", pid);
  if (!opts.shellJob && pgid !== pid && pgid !== sid) throw fail(`the task's process group leader (pgid ${pgid}) is not in the images`, "pstree.img", pid);

  const blocked = core.tc?.blk_sigset ?? core.thread_core?.blk_sigset ?? 0n;
  return {
    dir,
    images,
    pid,
    pstree,
    core,
    mm,
    ids,
    fs,
    fdinfo,
    files,
    shm,
    exe,
    memory,
    fds,
    dirs: cwdRoot,
    stopped: state === TASK_STOPPED,
    session,
    timens: clocks,
    blocked,
    seccomp,
  };
}
