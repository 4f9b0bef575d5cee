// Reading and checking the images before anything is created: what this restore can do
// (a tree of processes with their threads, the file and memory kinds of memory.ts and
// fds/), that
// every file they name is there as it was, that this kernel's vDSO and this CPU's FPU fit,
// and that the dumped PID is free. Any "no" here is an error naming the image or file,
// and nothing has changed on the machine.

import { constants as os } from "node:os";
import { STOP_SIGNALS } from "../../host-bridge/constants.js";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { lockMethodOf, NetworkLock } from "../net/lock.js";
import { join, resolve } from "node:path";
import { openImageDir, taskId, type CoreEntry, type FdinfoEntry, type FileEntry, type FsEntry, type IdsEntry, type ImageDir, type MmEntry, type PstreeEntry } from "../../images/dir.js";
import { readImage, readOptionalImage } from "../../images/io.js";
import type { ModuleLog } from "../log.js";
import { cpuinfoCheck } from "../cpuinfo/cpuinfo.js";
import { RestoreError } from "./errors.js";
import { FileSet, type RegFile } from "./fileset.js";
import type { FileValidation } from "../fds/file-validation.js";
import { FdPlanner, type FdPlan } from "../fds/restore.js";
import { ReadAhead } from "../read-ahead.js";
import { TCP_STREAM_IMAGE } from "../net/tcp-repair.js";
import { planLocks, type FileLockEntry } from "../fds/locks.js";
import { planFs, type FsPlan } from "./fs.js";
import { planMemory, type MemoryPlan } from "./memory.js";
import { planCow, type CowSummary } from "./cow.js";
import { isDying, pidHolder } from "./pids.js";
import { procfsHelpers } from "./procfs-helpers.js";
import { planTree, TreeError, type BuildStep, type TreeTask } from "./pstree-plan.js";
import { checkRegisters } from "./registers.js";
import { ShmTable } from "./shmem.js";
import type { ThreadPlan } from "./threads.js";
import { planSeccomp, sharedFilters, type SeccompPlan } from "./seccomp.js";
import { checkSignals, sigstopQueued } from "./signals.js";
import { missingXfeatures, xfeatureNames } from "./xstate.js";

const TASK_ALIVE = 1;
const TASK_DEAD = 2;
const TASK_STOPPED = 3;
const SIGSTOP = os.signals.SIGSTOP;
const NS_KEYS = ["pid_ns_id", "net_ns_id", "ipc_ns_id", "uts_ns_id", "mnt_ns_id", "user_ns_id", "cgroup_ns_id", "time_ns_id"] as const;

export interface PlanOptions {
  imagesDir: string;
  shellJob?: boolean | undefined;
  tcpEstablished?: boolean | undefined;
  tcpClose?: boolean | undefined;
  /** --ext-unix-sk */
  extUnixSk?: boolean | undefined;
  /** --skip-file-rwx-check */
  skipFileRwxCheck?: boolean | undefined;
  /** --file-validation */
  fileValidation?: FileValidation | undefined;
  root?: string | undefined;
  inheritFds?: readonly string[] | undefined;
  /** --file-locks: take the locks of filelocks.img again */
  fileLocks?: boolean | undefined;
  /** --cpu-cap: undefined = not given (criu's default fpu check), null = given without a value */
  cpuCap?: string | null | undefined;
  /** --lazy-pages: the PE_LAZY pages are left to a lazy-pages daemon */
  lazyPages?: boolean | undefined;
}

/** A process of the tree, live or a zombie: where it sits. */
export interface TreeNode {
  pid: number;
  /** its parent in the images (0 for the root) */
  ppid: number;
  pstree: PstreeEntry;
  /** the root only: how the stub starts ("setsid"; "inherit" for a shell job: tscriu's session) */
  session: "setsid" | "inherit";
  children: TreeNode[];
  /** the process that forks it (pstree-plan.ts): its parent, or a process of its session, a helper or a courier */
  forker: number;
}

/** A child that had exited and was not reaped at dump time: it comes back as a zombie. */
export interface ZombiePlan extends TreeNode {
  zombie: { exitCode: number; comm: string };
}

/** One live process of the images: everything its restore needs, checked. */
export interface ProcPlan extends TreeNode {
  core: CoreEntry;
  mm: MmEntry;
  ids: IdsEntry;
  fs: FsEntry;
  fdinfo: FdinfoEntry[];
  exe: RegFile;
  memory: MemoryPlan;
  fds: FdPlan;
  /** cwd, root and umask */
  dirs: FsPlan;
  /** the task was stopped at dump time */
  stopped: boolean;
  /**
   * it was in a stop its parent had heard of (TASK_STOPPED in the image), not one still to
   * come from a pending SIGSTOP: stopped again at restore without telling the parent (stops.ts)
   */
  stopKnown: boolean;
  /**
   * the signal that stopped it (the image's stop_signo; SIGSTOP when it has none, or when it
   * ran with a SIGSTOP pending), 0 when it ran
   */
  stopSignal: number;
  /** the signal mask to give back */
  blocked: bigint;
  seccomp: SeccompPlan | undefined;
  /** how many of the oldest filters every thread has alike: the leader installs them for all (TSYNC) */
  seccompShared: number;
  /** the other threads, in pstree order */
  threads: ThreadPlan[];
  /** its fd table is its parent's (CLONE_FILES): forked sharing it; the parent restores it */
  sharesFiles: boolean;
  /** the file locks it takes again (--file-locks) */
  locks: FileLockEntry[];
}

export interface Plan {
  dir: string;
  images: ImageDir;
  files: FileSet;
  shm: ShmTable;
  fdPlanner: FdPlanner;
  timens: { monotonicNs: bigint; boottimeNs: bigint } | undefined;
  root: ProcPlan;
  /** every live process, each after its parent (pstree order) */
  processes: ProcPlan[];
  /** every process of the images, zombies too, each after its parent (pstree order) */
  order: TreeNode[];
  /** how the tree is made: forks (helpers and couriers too), late setsids and joins, exits, deaths */
  build: BuildStep[];
  /** the PIDs of gone processes whose /proc directories files of the images are in: helpers, the root's children, take them until every task has its files (procfs-helpers.ts) */
  procfs: number[];
  /** the network lock the dump left (inventory.img), removed once the connections are back */
  netLock: NetworkLock;
  /** the premap area's size and the pages left shared between parents and children (cow.ts) */
  cow: CowSummary;
}

/**
 * The clocks of the tree's time namespace: timens-0.img as tscriu and criu write it for a
 * task in the dumper's time namespace, or timens-ID.img for a task in a time namespace of
 * its own (criu names it by the task's time_ns_id: one tscriu or criu restored before).
 * Either way the tree comes back in a new time namespace whose clocks go on from these.
 */
async function timens(dir: string, fail: PlanShared["fail"]): Promise<Plan["timens"]> {
  const found = readdirSync(dir).filter((f) => /^timens-\d+\.img$/.test(f));
  if (found.length > 1) throw fail(`the images hold ${found.length} time namespaces (${found.join(", ")}); tscriu restores a tree in one`, found[1]);
  if (found.length === 0) return undefined;
  const file = join(dir, found[0]!);
  const e = (await readImage(file)).entries[0];
  if (!e) return undefined;
  const ns = (t: unknown): bigint => {
    const o = t as { tv_sec?: bigint; tv_nsec?: bigint };
    return BigInt(o.tv_sec ?? 0n) * 1_000_000_000n + BigInt(o.tv_nsec ?? 0n);
  };
  return { monotonicNs: ns(e["monotonic"]), boottimeNs: ns(e["boottime"]) };
}

const DYING_WAIT_MS = 5000;

export async function planRestore(opts: PlanOptions, log: ModuleLog): Promise<Plan> {
  const dir = resolve(opts.imagesDir);
  const images = await openImageDir(dir);
  const fail = (msg: string, file?: string, pid = 0): RestoreError => new RestoreError("plan", pid, msg, { file: file ? join(dir, file) : undefined });
  const inv = await images.inventory();
  if (inv.img_version !== 2) throw fail(`image version ${inv.img_version} is not supported (criu 4.x writes 2)`, "inventory.img");
  if (inv.fdinfo_per_id !== true) throw fail("images with per-task fdinfo files (fdinfo_per_id off) are not supported", "inventory.img");
  const lockMethod = lockMethodOf(inv.network_lock_method);
  if (!lockMethod) throw fail(`the network lock method ${String(inv.network_lock_method)} is none of criu's (0 iptables, 1 nftables, 2 skip)`, "inventory.img");
  // the connections' streams read on the thread pool while the rest is planned
  const readAhead = opts.tcpEstablished === true ? new ReadAhead(dir, readdirSync(dir).filter((n) => TCP_STREAM_IMAGE.test(n))) : undefined;
  const tasks = await images.tasks();
  if (tasks.length === 0) throw fail("the images hold no process", "pstree.img");
  const rootPid = tasks[0]!.pid;
  const seen = new Set<number>();
  for (const { pid, entry } of tasks) {
    if (!(pid > 0)) throw fail(`bad pid ${pid}`, "pstree.img");
    if (seen.has(pid)) throw fail(`pid ${pid} is in the tree twice`, "pstree.img", pid);
    const ppid = Number(entry.ppid ?? 0);
    if (pid !== rootPid && !seen.has(ppid)) throw fail(`pid ${pid}'s parent ${ppid} is not before it in the tree`, "pstree.img", pid);
    if (pid === rootPid && ppid !== 0 && tasks.some((t) => t.pid === ppid)) throw fail(`the root ${pid} has a parent in the tree`, "pstree.img", pid);
    seen.add(pid);
  }
  // First of the checks on this machine: a taken PID says more than what follows from it.
  // A dump that killed its task leaves a zombie for the task's parent to reap; pid 1
  // on these machines reaps orphans ~1.5 s late, and a tree just killed may still have a
  // child dying of its parent's death signal: give a dying PID a few seconds.
  /** `purpose`: what else the PID is for (and the image that says so) */
  const free = async (id: number, owner: number | undefined, purpose?: { what: string; image: string }): Promise<void> => {
    let holder: string | undefined;
    for (let waited = 0; ; waited += 50) {
      // dying first, the holder after: one that went in between is not taken for a live one
      const dying = isDying(id);
      holder = pidHolder(id, false);
      if (!holder || !dying || waited >= DYING_WAIT_MS) break;
      if (waited === 0) log.info(`PID ${id} is held by a process on its way out; waiting up to ${DYING_WAIT_MS / 1000} s for it to go`);
      await new Promise((r) => setTimeout(r, 50));
    }
    if (holder) throw fail(`${holder}; it must be free to restore ${purpose?.what ?? (owner ? `thread ${id} of pid ${owner} with its TID` : "the task with its PID")}`, purpose?.image, owner ?? id);
  };
  // The processes' PIDs first, then the thread lists, then the threads' TIDs.
  for (const t of tasks) await free(t.pid, undefined);
  // A zombie's thread list says nothing: criu 4.2 writes [0], criu 4.1.1 leaves it
  // uninitialized. Its core tells it is one.
  const dead = new Set<number>();
  for (const { pid, entry } of tasks) {
    const tids = entry.threads ?? [];
    if (tids[0] !== pid) {
      if (tids.length === 1 && Number((await images.core(pid)).tc?.task_state) === TASK_DEAD) {
        dead.add(pid);
        continue;
      }
      throw fail(`pid ${pid}'s thread list (${tids.join(", ")}) does not start with the leader`, "pstree.img", pid);
    }
    if (new Set(tids).size !== tids.length || tids.some((t) => !(Number.isInteger(t) && t > 0))) throw fail(`pid ${pid}'s thread list (${tids.join(", ")}) has a bad or repeated TID`, "pstree.img", pid);
  }
  for (const t of tasks) if (!dead.has(t.pid)) for (const tid of (t.entry.threads ?? []).slice(1)) await free(tid, t.pid);
  const filesById = await images.files();
  const files = await FileSet.load(dir, filesById, opts.root, rootPid, opts.skipFileRwxCheck === true, opts.fileValidation);
  const shm = await ShmTable.load(dir, filesById, rootPid);
  const clocks = await timens(dir, fail);
  const fdPlanner = FdPlanner.create(dir, files, shm, { shellJob: opts.shellJob === true, tcp: { established: opts.tcpEstablished === true, close: opts.tcpClose === true }, readAhead, extUnixSk: opts.extUnixSk === true, inheritFds: opts.inheritFds ?? [], clocks, pids: tasks.map((t) => t.pid), threads: new Map(tasks.flatMap((t) => (dead.has(t.pid) ? [] : (t.entry.threads ?? []).slice(1).map((tid) => [Number(tid), t.pid] as const)))) }, log, (await images.image("files.img")).entries as FileEntry[]);
  const order: TreeNode[] = [];
  const filesOwners = new Map<number, ProcPlan>();
  const idsOf = new Map<number, IdsEntry>();
  for (const { pid, entry } of tasks) {
    const core = await images.core(pid);
    if (Number(core.tc?.task_state ?? TASK_ALIVE) === TASK_DEAD) {
      if (pid === rootPid) throw fail(`the root ${pid} is a zombie`, `core-${pid}.img`, pid);
      if ((entry.threads ?? []).length !== 1) throw fail(`zombie ${pid} has ${(entry.threads ?? []).length} threads`, "pstree.img", pid);
    }
    if (Number(core.tc?.task_state ?? TASK_ALIVE) === TASK_DEAD) {
      const why = badZombieStatus(Number(core.tc!.exit_code));
      if (why) throw fail(`zombie ${pid}: exit status ${core.tc!.exit_code} ${why}`, `core-${pid}.img`, pid);
      order.push({ pid, ppid: Number(entry.ppid ?? 0), pstree: entry, session: "inherit", children: [], forker: Number(entry.ppid ?? 0), zombie: { exitCode: Number(core.tc!.exit_code), comm: core.tc!.comm } } as ZombiePlan);
      continue;
    }
    order.push(await planProcess(pid, entry, { images, dir, files, shm, fdPlanner, opts, log, fail, inv, filesOwners, idsOf }));
  }
  await fdPlanner.finish();
  const byPid = new Map(order.map((p) => [p.pid, p]));
  for (const p of order.slice(1)) {
    const parent = byPid.get(p.ppid)!;
    if ("zombie" in parent) throw fail(`pid ${p.pid}'s parent ${p.ppid} is a zombie`, "pstree.img", p.pid);
    parent.children.push(p);
  }
  const root = order[0] as ProcPlan;
  root.session = opts.shellJob === true ? "inherit" : "setsid";
  const treeIds = new Set(tasks.flatMap((t) => [t.pid, ...(t.entry.threads ?? [])]));
  const goneProcs = files.deadProcFiles();
  const build = await buildSteps(order, opts.shellJob === true, treeIds, new Set(goneProcs.map((f) => f.pid)), fail, free);
  const procfs = procfsHelpers(goneProcs, treeIds, build, fail);
  for (const file of procfs) await free(file.pid, undefined, { what: `${file.name}, a file of a process gone at dump time (a PROCFS remap): a helper takes the PID while the file is opened`, image: "remap-fpath.img" });
  // (a child forked by another than its parent inherits none of its parent's memory: cow.ts)
  for (const s of build) if (s.op === "fork" && s.kind === "task") byPid.get(s.pid)!.forker = s.by;
  const processes = order.filter((p): p is ProcPlan => !("zombie" in p));
  const cow = planCow(processes, byPid, opts.lazyPages === true);
  const lockImage = await readOptionalImage(join(dir, "filelocks.img"));
  const locks = planLocks(dir, lockImage?.entries as FileLockEntry[] | undefined, opts.fileLocks === true, processes, (id) => filesById.get(id), log);
  for (const p of processes) p.locks = locks.get(p.pid) ?? [];
  // criu's images from before run ids name the nftables table by the root pid.
  const netLock = new NetworkLock(lockMethod, typeof inv.dump_criu_run_id === "string" && inv.dump_criu_run_id !== "" ? inv.dump_criu_run_id : String(rootPid), log);
  return { dir, images, files, shm, fdPlanner, timens: clocks, root, processes, order, build, procfs: procfs.map((f) => f.pid), netLock, cow };
}

interface PlanShared {
  images: ImageDir;
  dir: string;
  files: FileSet;
  shm: ShmTable;
  fdPlanner: FdPlanner;
  opts: PlanOptions;
  log: ModuleLog;
  fail: (msg: string, file?: string, pid?: number) => RestoreError;
  inv: Awaited<ReturnType<ImageDir["inventory"]>>;
  /** the process that restores each fd table (files_id), for children sharing it */
  filesOwners: Map<number, ProcPlan>;
  /** the ids of each process planned so far (each after its parent) */
  idsOf: Map<number, IdsEntry>;
}

async function planProcess(pid: number, pstree: PstreeEntry, sh: PlanShared): Promise<ProcPlan> {
  const { images, dir, files, shm, opts, log, fail, inv } = sh;
  const tids = pstree.threads ?? [];
  const core = await images.core(pid);
  checkRegisters(pid, core);
  const state = Number(core.tc?.task_state ?? TASK_ALIVE);
  if (state !== TASK_ALIVE && state !== TASK_STOPPED) throw fail(`the task's state ${state} (dead or a helper) cannot be restored`, `core-${pid}.img`, pid);
  const stopSignal = state !== TASK_STOPPED ? 0 : (core.tc?.stop_signo ?? SIGSTOP);
  if (stopSignal !== 0 && !STOP_SIGNALS.has(stopSignal)) throw fail(`the task was stopped by signal ${stopSignal}, which stops no task (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU do)`, `core-${pid}.img`, pid);
  checkSignals(pid, core);
  const ids = await images.ids(pid);
  const root = inv.root_ids as Record<string, unknown> | undefined;
  for (const k of NS_KEYS) {
    const mine = (ids as Record<string, unknown>)[k] as number | undefined;
    const theirs = root?.[k] as number | undefined;
    // A time namespace of its own is the one the images' timens-ID.img describes.
    if (k === "time_ns_id" && mine !== undefined && existsSync(join(sh.dir, `timens-${mine}.img`))) continue;
    if (mine !== undefined && theirs !== undefined && mine !== theirs) {
      throw fail(`the task was in a namespace of its own (${k} ${mine}, dumper's ${theirs}); restoring namespaces is not supported`, `ids-${pid}.img`, pid);
    }
  }
  const seccomp = await planSeccomp(dir, pid, core);
  const threads: ThreadPlan[] = [];
  for (const tid of tids.slice(1)) {
    const t = await images.core(tid);
    const file = `core-${tid}.img`;
    try {
      checkRegisters(pid, t);
      checkSignals(pid, t);
    } catch (e) {
      throw fail(`thread ${tid}: ${(e as Error).message}`, file, pid);
    }
    if (t.tc) throw fail(`thread ${tid}'s core has process state (tc), which only the leader's has`, file, pid);
    threads.push({ tid, core: t, blocked: t.thread_core?.blk_sigset ?? 0n, seccomp: await planSeccomp(dir, pid, t) });
  }
  const mm = await images.mm(pid);
  const fs = await images.fs(pid);
  const fdinfo = await images.fdinfo(pid);
  const exe = await files.reg(mm.exe_file_id, "the exe link");
  const memory = await planMemory(pid, dir, mm, files, shm, log, sh.opts.lazyPages === true);
  const dirs = await planFs(fs, files);
  // An fd table shared with the parent (CLONE_FILES) is forked with it, and restored once,
  // by the first process that holds it; down a line of sharers (a grandchild of the holder
  // whose parent shares it too) each gets it from its parent, as criu does. A table the
  // parent does not hold has no process to be forked from with it (criu cannot either).
  const owner = sh.filesOwners.get(ids.files_id);
  const ppid = Number(pstree.ppid ?? 0);
  const parentIds = sh.idsOf.get(ppid);
  if (owner && parentIds?.files_id !== ids.files_id) throw fail(`pid ${pid} shares its fd table (files_id ${ids.files_id}) with pid ${owner.pid} but not with its parent ${ppid}; only a table shared along parent and child can be restored`, `ids-${pid}.img`, pid);
  sh.idsOf.set(pid, ids);
  const fds = owner ? owner.fds : await sh.fdPlanner.plan(pid, fdinfo, `fdinfo-${String(ids.files_id)}.img`);
  log.debug(`pid ${pid}: ${memory.vmas.length} VMAs, ${memory.pages} pages, ${fds.fds.length} fds, ${tids.length} threads`);

  // FPU: criu checks the image's xsave features against this CPU unless --cpu-cap=none.
  const cap = opts.cpuCap;
  if (cap !== "none") {
    for (const [tid, c] of [[pid, core] as const, ...threads.map((t) => [t.tid, t.core] as const)]) {
      const missing = missingXfeatures(c.thread_info!.fpregs);
      if (missing !== 0n) throw fail(`the FPU state uses xsave features this CPU does not have: ${xfeatureNames(missing)} (--cpu-cap=none to try anyway)`, `core-${tid}.img`, pid);
    }
    if (existsSync(join(dir, "cpuinfo.img")) && cap !== undefined) {
      const r = await cpuinfoCheck(dir, cap);
      if (!r.ok) throw fail(`the CPU is not compatible with the image (--cpu-cap ${cap === null ? "" : cap}): ${r.messages.join("; ")}`, "cpuinfo.img", pid);
    }
  }
  // A SIGSTOP in the queues is not queued again (no mask holds it off the restore's calls):
  // the task is stopped by it instead, as it would have been as soon as it ran.
  const sigstop = state === TASK_ALIVE && sigstopQueued([core, ...threads.map((t) => t.core)]);
  if (sigstop) log.info(`pid ${pid}: a SIGSTOP is pending in core-${pid}.img or its threads': restored stopped by it`);
  const plan: ProcPlan = {
    pid,
    ppid,
    pstree,
    core,
    mm,
    ids,
    fs,
    fdinfo,
    exe,
    memory,
    fds,
    dirs,
    stopped: state === TASK_STOPPED || sigstop,
    stopKnown: state === TASK_STOPPED,
    stopSignal: sigstop ? SIGSTOP : stopSignal,
    blocked: core.tc?.blk_sigset ?? core.thread_core?.blk_sigset ?? 0n,
    seccomp,
    seccompShared: sharedFilters([seccomp, ...threads.map((t) => t.seccomp)]),
    threads,
    locks: [],
    sharesFiles: owner !== undefined,
    session: "inherit",
    children: [],
    forker: ppid,
  };
  if (!owner) sh.filesOwners.set(ids.files_id, plan);
  return plan;
}

/**
 * The steps that make the tree (pstree-plan.ts), each helper's and courier's PID checked
 * free (a courier's none of `dead`, the PIDs the helpers of gone processes' /proc
 * directories take); a tree no steps can make is refused naming pstree.img.
 */
async function buildSteps(order: TreeNode[], shellJob: boolean, taken: ReadonlySet<number>, dead: ReadonlySet<number>, fail: PlanShared["fail"], free: (id: number, owner: undefined) => Promise<void>): Promise<BuildStep[]> {
  const tasks: TreeTask[] = order.map((n) => ({ pid: n.pid, ppid: n.ppid, sid: taskId(n.pstree, "sid"), pgid: taskId(n.pstree, "pgid"), zombie: "zombie" in n, sharesFiles: "sharesFiles" in n && (n as ProcPlan).sharesFiles }));
  const max = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8").trim());
  let next = max;
  // Couriers take free PIDs from the top, away from where the kernel hands out new ones.
  const spare = (): number => {
    for (next--; next > 300; next--) if (!taken.has(next) && !dead.has(next) && !pidHolder(next, false)) return next;
    throw fail("no free PID is left for a courier process", "pstree.img");
  };
  let steps: BuildStep[];
  try {
    steps = planTree(tasks, shellJob, taken, spare);
  } catch (e) {
    if (e instanceof TreeError) throw fail(e.message, "pstree.img", e.pid);
    throw e;
  }
  for (const s of steps) if (s.op === "fork" && s.kind !== "task") await free(s.pid, undefined);
  return steps;
}

/** Signals whose default action is not to end the process: no zombie died of one. */
const NOT_FATAL = new Set([17, 18, 19, 20, 21, 22, 23, 28]);

/** Why a zombie's wait status cannot be made again (undefined when it can): an exit code, or a fatal signal with or without the core-dump bit. */
function badZombieStatus(status: number): string | undefined {
  if (status < 0 || status > 0xffff) return "is no wait status";
  const signal = status & 0x7f;
  if (signal === 0) return status & 0x80 ? "has the core-dump bit without a signal" : undefined;
  if (status >> 8) return "has both an exit code and a signal";
  if (signal > 64) return "is a stopped or continued status, no death";
  if (NOT_FATAL.has(signal)) return `names signal ${signal}, whose default action does not end a process`;
  return undefined;
}
