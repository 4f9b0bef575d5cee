// The restore of one process and its threads from an images directory (tscriu's or
// criu's): check everything (plan.ts), start the stub with the dumped PID, seize it, and
// rebuild the task in it step by step from a trampoline page, the other threads made by
// it (threads.ts) once its memory and files are back; then detach so it runs on where it
// was dumped. A failure at any step kills what was created, waits until the PID is free
// again, removes what tscriu made on the way (recreated ghost files, the pidfile) and
// names the step; the images are only read.

import { closeSync, openSync, unlinkSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { availableParallelism, constants as os } from "node:os";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { PageSeg } from "./pagesegs.js";
import type { Logger, ModuleLog } from "../log.js";
import { adviseShm, fillMemory, mapSocketRings, mapVmas } from "./memory.js";
import { LazyHandoff } from "./lazy-handoff.js";
import { asRestoreError, RestoreError } from "./errors.js";
import { RestoreFaults, type RestoreStep } from "./faults.js";
import { FdMaker, restoreFds } from "../fds/install.js";
import { restoreFs } from "./fs.js";
import { ImageDir, imagesDirProblem } from "../../images/dir.js";
import { CgroupRestore, cgSetOf } from "./cgroups.js";
import type { CgroupMode, CgroupRoot } from "../cgroup/options.js";
import { restoreLocks } from "../fds/locks.js";
import { findGap, readMaps } from "./layout.js";
import { restoreMembarrier, restoreMm } from "./mm.js";
import { planRestore, type Plan, type ProcPlan, type ZombiePlan } from "./plan.js";
import { pidHolder, processState } from "./pids.js";
import { inSlot, moveSlots, premap, slotRanges } from "./premap.js";
import { restoreCreds, restoreFromOutside, restoreLoginuid, restoreRlimits, restoreSched, restoreTaskFlags } from "./creds.js";
import { finalRegisters, restoreThreadState, threadRegisters } from "./registers.js";
import { CLONE, eachThread, makeThreads, restoreThreadName } from "./threads.js";
import { becomeZombie, endHelper, forkChild, setSession, type Task } from "./tree.js";
import { NR, Remote, TRAMPOLINE_SIZE } from "./remote.js";
import { runActions, type ActionHook } from "./scripts.js";
import { restoreSeccomp } from "./seccomp.js";
import { restoreAltstack, restorePending, restoreSigactions } from "./signals.js";
import { parentsOfKnownStops, setSigchldAction, stopTraced } from "./stops.js";
import { killCreated, seizeStub, spawnStub, type Spawned } from "./spawn.js";
import { emptyStats, writeStats, type RestoreStats } from "./stats.js";
import { restoreItimers, restorePosixTimers } from "./timers.js";
import { moveVdso, writeVdsoProxy } from "./vdso.js";
import type { FileValidation } from "../fds/file-validation.js";

export interface RestoreOptions {
  /** -D */
  imagesDir: string;
  /** -W: stats-restore goes there (default: the images dir) */
  workDir?: string | undefined;
  /** -d: the task is not our child but a new subreaper's, and outlives tscriu */
  detached?: boolean | undefined;
  /** -S: the task becomes a child of our parent */
  sibling?: boolean | undefined;
  /** -j */
  shellJob?: boolean | undefined;
  /** --tcp-established: restore TCP connections with their state */
  tcpEstablished?: boolean | undefined;
  /** --tcp-close: restore TCP connections closed */
  tcpClose?: boolean | undefined;
  /** --ext-unix-sk: connect datagram unix sockets to their named peers outside the tree again */
  extUnixSk?: boolean | undefined;
  /** --skip-file-rwx-check: a file's permission bits may differ from the dumped ones */
  skipFileRwxCheck?: boolean | undefined;
  /** --file-validation: filesize compares no ELF build-id (buildid, criu's default, does) */
  fileValidation?: FileValidation | undefined;
  /** -s: leave the task stopped (SIGSTOP) */
  leaveStopped?: boolean | undefined;
  pidfile?: string | undefined;
  /** -r: the root the images' paths are under */
  root?: string | undefined;
  /** --inherit-fd fd[N]:resource */
  inheritFds?: readonly string[] | undefined;
  /** --file-locks: take the dumped file locks again */
  fileLocks?: boolean | undefined;
  /** --cpu-cap: undefined when not given, null when given without a value */
  cpuCap?: string | null | undefined;
  actionScripts?: readonly string[] | undefined;
  /** called at each action before the scripts (the RPC's notify) */
  onAction?: ActionHook | undefined;
  /** threads writing memory (default: 2 to 4, by the CPUs there are) */
  pageThreads?: number | undefined;
  /** --lazy-pages: the PE_LAZY pages are filled by a lazy-pages daemon while the tree runs */
  lazyPages?: boolean | undefined;
  log?: Logger | undefined;
  /** fault injection spec; defaults to $TSCRIU_FAULT */
  faults?: string | undefined;
  /** punch the restored pages out of the pages files once the tree runs (--auto-dedup) */
  autoDedup?: boolean | undefined;
  /** --manage-cgroups (default soft: cgroups.ts) */
  cgroupMode?: CgroupMode | undefined;
  /** --cgroup-root [controller:]/newroot */
  cgroupRoots?: readonly CgroupRoot[] | undefined;
  /** --cgroup-yard: a directory with one mount per hierarchy, named as criu names them (relative: to the work dir, as criu) */
  cgroupYard?: string | undefined;
}

export type RestoreEvent =
  | { type: "step"; step: RestoreStep }
  /** the task exists (as the stub) with its PID; `reaper` is its subreaper with -d */
  | { type: "spawned"; pid: number; reaper: number }
  | { type: "memory-start"; bytes: number }
  | { type: "memory-progress"; done: number }
  | { type: "memory-done" };

export interface RestoreResult {
  pid: number;
  /** the subreaper of a detached restore (-d), 0 otherwise */
  reaper: number;
  /** "child": tscriu's child (wait for it with waitRestored); "detached"; "sibling" */
  mode: "child" | "sibling" | "detached";
  stats: RestoreStats;
}

const NULL_LOG = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined } as unknown as ModuleLog;

const us = (from: bigint): number => Number((process.hrtime.bigint() - from) / 1000n);

/** fallocate(PUNCH_HOLE) of every segment's range in its pages file; returns the bytes punched. */
function punchSegments(segs: readonly PageSeg[]): number {
  const byFile = new Map<string, PageSeg[]>();
  for (const s of segs) byFile.set(s.file, [...(byFile.get(s.file) ?? []), s]);
  let bytes = 0;
  for (const [file, list] of byFile) {
    const fd = openSync(file, "r+");
    try {
      for (const s of list) {
        bridge().punchHole(fd, s.off, s.len);
        bytes += s.len;
      }
    } catch (e) {
      throw new Error(`punching ${file}: ${(e as Error).message}`, { cause: e });
    } finally {
      closeSync(fd);
    }
  }
  return bytes;
}

export async function restore(opts: RestoreOptions, onEvent: (e: RestoreEvent) => void = () => undefined): Promise<RestoreResult> {
  const log = opts.log?.module("restore") ?? NULL_LOG;
  const faults = new RestoreFaults(opts.faults ?? process.env["TSCRIU_FAULT"]);
  const dir = resolve(opts.imagesDir);
  const scripts = opts.actionScripts ?? [];
  const stats = emptyStats();
  const t0 = process.hrtime.bigint();
  const mode = opts.detached ? (opts.sibling ? "sibling" : "detached") : opts.sibling ? "sibling" : "child";
  let step: RestoreStep = "plan";
  let remote: Remote | undefined;
  /** every process made so far (the root first), with its threads as soon as each exists */
  const tasks: Task[] = [];
  /** the zombies and helpers made so far (a helper leaves once reaped) */
  const zombies: number[] = [];
  /** names step `s` in errors from now on */
  const name = (s: RestoreStep): void => {
    step = s;
    remote?.enter(s);
    for (const t of tasks) {
      t.remote.enter(s);
      for (const th of t.threads) th.remote.enter(s);
    }
  };
  const enter = (s: RestoreStep): void => {
    name(s);
    onEvent({ type: "step", step: s });
    log.info(`step: ${s}`);
    faults.step(s);
  };

  let plan: Plan;
  let cgroups: CgroupRestore | undefined;
  // An images directory that is missing, or no directory, is said so before any step.
  const noDir = imagesDirProblem(dir);
  if (noDir !== undefined) {
    const err = new RestoreError("plan", 0, `cannot open the images directory: ${noDir}`, { file: dir });
    log.error(err.message);
    throw err;
  }
  // The cgroups before the plan: the plan opens the tasks' files, and a file or directory
  // inside a cgroup (an fd on a cgroup's directory) is there once the cgroup is made again.
  const rootPid = await new ImageDir(dir).pstree().then(
    (p) => p[0]?.pid ?? 0,
    () => 0,
  );
  try {
    enter("cgroups");
    cgroups = await CgroupRestore.load(new ImageDir(dir), { mode: opts.cgroupMode ?? "soft", roots: opts.cgroupRoots ?? [], yard: opts.cgroupYard !== undefined ? resolve(opts.workDir ?? dir, opts.cgroupYard) : undefined }, log);
    cgroups?.prepare();
    enter("plan");
    plan = await planRestore({ imagesDir: dir, shellJob: opts.shellJob, tcpEstablished: opts.tcpEstablished, tcpClose: opts.tcpClose, extUnixSk: opts.extUnixSk, skipFileRwxCheck: opts.skipFileRwxCheck, fileValidation: opts.fileValidation, root: opts.root, inheritFds: opts.inheritFds, fileLocks: opts.fileLocks, cpuCap: opts.cpuCap, lazyPages: opts.lazyPages }, log);
  } catch (e) {
    const err = asRestoreError(step, step === "plan" ? 0 : rootPid, e);
    log.error(err.message);
    const left = cgroups?.undo();
    if (left) log.error(`cleaning up after the failure: ${left}`);
    cgroups?.close();
    throw err;
  }
  const root = plan.root;
  const pid = root.pid;
  log.info(`Restoring pid ${pid}${plan.processes.length > 1 ? ` and ${plan.processes.length - 1} more processes` : ""} from ${dir} (${mode})`);
  let spawned: Spawned | undefined;
  let lazy: LazyHandoff | undefined;
  const maker = new FdMaker(plan.fdPlanner);
  let pidfileWritten = false;
  /** -s: every process left stopped (SIGSTOP); otherwise those dumped stopped, each by its own signal */
  const stopped = opts.leaveStopped === true;
  /** the process being rebuilt, named when a step fails */
  let current = pid;
  try {
    if (opts.lazyPages) lazy = LazyHandoff.connect(resolve(opts.workDir ?? dir), pid);
    enter("pre-restore");
    await runActions(scripts, opts.onAction, "pre-restore", dir, undefined);

    enter("spawn");
    const tSpawn = process.hrtime.bigint();
    try {
      spawned = spawnStub({ pid, mode, session: root.session, ...(plan.timens ? { timens: plan.timens } : {}) });
    } catch (e) {
      if (isNativeError(e) && e.code === "EEXIST") {
        throw new RestoreError("spawn", pid, `${pidHolder(pid) ?? `PID ${pid} is in use`}; it must be free to restore the task with its PID`, { cause: e });
      }
      throw e;
    }
    onEvent({ type: "spawned", pid: spawned.pid, reaper: spawned.reaper });
    if (spawned.pid !== pid) throw new RestoreError("spawn", pid, `the stub got pid ${spawned.pid}`);

    enter("seize");
    seizeStub(pid);
    const xstateTemplate = bridge().getXstate(pid);

    enter("trampoline");
    const stubMaps = readMaps(pid);
    // One trampoline address for every process: the children are forked from it.
    const imageVmas = plan.processes.flatMap((p) => p.memory.vmas.map((v) => v.vma));
    remote = Remote.create(pid, findGap([...stubMaps, ...imageVmas].sort((a, b) => (a.start < b.start ? -1 : 1)), TRAMPOLINE_SIZE));
    remote.enter("trampoline");
    tasks.push({ plan: root, remote, threads: [] });
    log.debug(`trampoline at 0x${remote.tramp.toString(16)}`);
    // The slots of the memory parents share with their children (cow.ts), free in every layout.
    const slotBase = plan.cow.span > 0n ? findGap([...stubMaps, ...imageVmas, { start: remote.tramp, end: remote.tramp + BigInt(TRAMPOLINE_SIZE) }], Number(plan.cow.span)) : 0n;
    if (plan.cow.span > 0n) log.debug(`premap area at 0x${slotBase.toString(16)}, ${plan.cow.span} bytes; ${plan.cow.shared} of ${plan.cow.compared} compared pages stay shared`);
    const threadsOut = opts.pageThreads ?? Math.max(2, Math.min(4, availableParallelism()));
    let premapBytes = 0;
    // Each process as soon as it exists, before it forks: into its cgroups before any of
    // its memory is charged (a page is charged where it is first made), then its slots,
    // which the children forked after it inherit.
    const made = (p: ProcPlan, r: Remote): void => {
      current = p.pid;
      enter("cgroup-move");
      cgroups?.moveProcess(p.pid, cgSetOf(p.core));
      enter("premap");
      premapBytes += premap(r, p.memory, slotBase, plan.files, Math.max(3, p.fds.maxFd + 1), threadsOut, log);
      name("spawn");
    };
    // The other processes, forked while all are still stubs, as pstree-plan.ts lays out.
    const makers = new Map<number, Remote>([[pid, remote]]);
    // A session leader takes its controlling terminal before it forks: a process inherits
    // the terminal at fork, one forked before it was set never has it (/dev/tty: ENXIO). A
    // leader born in another session takes it at its setsid.
    maker.processMade(pid, remote);
    made(root, remote);
    const nodes = new Map(plan.order.map((n) => [n.pid, n]));
    const lateLeaders = new Set(plan.build.flatMap((s) => (s.op === "setsid" ? [s.pid] : [])));
    for (const s of plan.build) {
      current = s.pid;
      const node = nodes.get(s.pid);
      if (s.op === "fork") {
        const forker = makers.get(s.by)!;
        const flags = s.parent ? CLONE.PARENT : 0;
        if (!node || "zombie" in node) {
          makers.set(s.pid, forkChild(forker, s.pid, s.then, () => zombies.push(s.pid), flags));
          continue;
        }
        const p = node as ProcPlan;
        makers.set(p.pid, forkChild(forker, p.pid, s.then, (child) => tasks.push({ plan: p, remote: child, threads: [] }), (p.sharesFiles ? CLONE.FILES : 0) | flags));
        if (!lateLeaders.has(p.pid)) maker.processMade(p.pid, makers.get(p.pid)!);
        made(p, makers.get(p.pid)!);
      } else if (s.op === "setsid" || s.op === "join") {
        setSession(makers.get(s.pid)!, s.op === "join" ? s.pgid : undefined);
        if (s.op === "setsid" && node && !("zombie" in node)) maker.processMade(s.pid, makers.get(s.pid)!);
      } else if (s.op === "exit") {
        endHelper(makers.get(s.pid)!, makers.get(s.reaper)!, s.deliver === undefined ? undefined : makers.get(s.deliver)!);
        zombies.splice(zombies.indexOf(s.pid), 1);
      } else {
        const z = node as ZombiePlan;
        becomeZombie(makers.get(z.pid)!, z.zombie.exitCode, z.zombie.comm, makers.get(z.ppid)!);
        lazy?.zombie(z.pid);
      }
    }
    // Helpers of gone processes' /proc directories: the root's children in its session and
    // group, until every task has its files.
    for (const h of plan.procfs) {
      current = h;
      makers.set(h, forkChild(remote, h, "inherit", () => zombies.push(h)));
    }
    current = pid;
    stats.forking_time = us(tSpawn);
    // criu's stages once every task exists; tscriu makes no namespace but the time one,
    // made with the root: an action script or RPC client may still set things up here.
    await runActions(scripts, opts.onAction, "setup-namespaces", dir, pid);
    await runActions(scripts, opts.onAction, "post-setup-namespaces", dir, pid);

    // Before any task gets its fds: /dev/tty is opened inside a task of its session (the
    // session has its terminal by now), before the tasks' own memory is in place.
    enter("ttys");
    maker.beforeFiles(new Map(tasks.map((t) => [t.plan.pid, t.remote])));

    const bytes = plan.processes.reduce((sum, p) => sum + p.memory.segs.reduce((s2, x) => s2 + x.len, 0), 0);
    let shmPages = 0;
    for (const task of tasks) {
      const p = task.plan;
      const r = task.remote;
      current = p.pid;
      r.openPidfd(Math.max(3, p.fds.maxFd + 1));

      enter("vdso");
      const maps = readMaps(p.pid);
      // (its slots stay: they become its VMAs at the vmas step; the others it inherited go)
      const slots = slotRanges(slotBase, p.memory);
      const special = new Set(["[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]"]);
      r.batch(
        maps
          .filter((m) => !special.has(m.name) && m.start !== r.tramp && !inSlot(m, slots))
          .map((m) => ({ what: `munmap of the stub's ${m.name || "anonymous memory"} ${m.start.toString(16)}-${m.end.toString(16)}`, nr: NR.munmap, args: [m.start, m.end - m.start] })),
      );
      task.parked = moveVdso(r, p.memory.vdso, maps, [...p.memory.vmas.map((v) => v.vma), { start: r.tramp, end: r.tramp + BigInt(TRAMPOLINE_SIZE) }]);

      enter("vmas");
      mapVmas(r, p.memory, plan.files, log);
      moveSlots(r, p.memory, slotBase);

      enter("pages");
      if (task === tasks[0]) onEvent({ type: "memory-start", bytes });
      const fault = faults.has("pages-write") ? () => { throw Object.assign(new Error("writePages: EIO (fault injected by TSCRIU_FAULT=restore:pages-write)"), { code: "EIO" }); } : undefined;
      // Shared memory objects first: a private mapping of one gets its written pages below.
      shmPages += plan.shm.restore(r, threadsOut);
      adviseShm(r, p.memory);
      fillMemory(r, p.memory, threadsOut, log, (done) => onEvent({ type: "memory-progress", done }), fault, lazy);
      if (p.memory.vdso.mode === "proxy") {
        const n = writeVdsoProxy(p.pid, p.memory.vdso, task.parked!);
        log.info(`pid ${p.pid}: vDSO proxy at 0x${p.memory.vdso.vdso!.start.toString(16)}: ${n} entry points jump to this kernel's vDSO at 0x${task.parked!.vdso.toString(16)}`);
      }

      enter("files");
      // A table shared with the parent (CLONE_FILES) was filled by the parent already.
      if (!p.sharesFiles) restoreFds(r, p.fds, maker);
      mapSocketRings(r, p.memory, p.fds);
      restoreFs(r, p.dirs, plan.files);

      enter("mm");
      restoreMm(r, p.mm, p.exe, plan.files, p.core.thread_core?.comm ?? p.core.tc?.comm ?? "");
      restoreMembarrier(r, p.core.tc?.membarrier_registration_mask);

      // Last of the files: a close in the task (the exe's fd in mm) drops its POSIX locks.
      enter("locks");
      restoreLocks(r, p.locks);
      r.closePidfd();
    }
    plan.shm.seal(log);
    onEvent({ type: "memory-done" });
    stats.pages_restored = BigInt(bytes / 4096 - plan.cow.shared + shmPages);
    stats.pages_compared = BigInt(plan.cow.compared);
    stats.pages_skipped_cow = BigInt(plan.cow.shared);
    log.debug(`${premapBytes} bytes written into the premap area`);
    // Every fd and mapping holds the recreated unlinked files now.
    plan.files.unlinkTemporaries(log);
    // and the files of gone processes' /proc directories: those go again with their helpers
    // (which fork nothing: no children to hand on).
    for (const h of plan.procfs) {
      current = h;
      endHelper(makers.get(h)!, remote, undefined);
      zombies.splice(zombies.indexOf(h), 1);
    }
    current = pid;

    const quietParents = parentsOfKnownStops(tasks);
    for (const task of tasks) {
      const p = task.plan;
      const r = task.remote;
      current = p.pid;
      enter("signals");
      r.useExitStops();
      restoreSigactions(r, p.core);
      if (quietParents.has(p.pid)) setSigchldAction(r, p.core, true);

      enter("threads");
      // Process-wide, and what new threads must inherit (the audit login uid), while the
      // task still has every capability: then the threads, which need it for their TIDs.
      restoreRlimits(r, p.core, log);
      restoreLoginuid(r, p.core, log);
      makeThreads(r, p.threads, task.threads);
      for (const t of task.threads) t.remote.useExitStops();
    }

    // Once every thread of every process exists, before any task drops its credentials (a
    // task takes the file from tscriu with pidfd_getfd): the files that refer to a thread
    // (a thread pidfd of another process's thread too) replace their stand-ins.
    current = pid;
    enter("thread-files");
    maker.afterThreads();

    for (const task of tasks) {
      const p = task.plan;
      const r = task.remote;
      current = p.pid;
      // Once every thread exists: a timer of SIGEV_THREAD_ID names the thread its signal
      // goes to (glibc's SIGEV_THREAD helper thread, for one), and timer_create refuses a
      // TID that is not yet there (EINVAL). Before the credentials and seccomp, as criu's
      // restorer does: CLOCK_*_ALARM needs CAP_WAKE_ALARM.
      enter("timers");
      restoreItimers(r, p.core);
      restorePosixTimers(r, p.core);

      enter("creds");
      // Every thread's at once, once all exist: the leader gives the filters they share
      // to all of them with TSYNC (seccomp.ts).
      restoreSeccomp([{ remote: r, plan: p.seccomp }, ...task.threads.map((t) => ({ remote: t.remote, plan: t.plan.seccomp }))], p.seccompShared);
      eachThread(r, p.core, task.threads, (tr, core, tid) => {
        if (tid !== p.pid) restoreThreadName(tr, core);
        restoreAltstack(tr, core);
        restoreSched(tr, core);
        restoreCreds(tr, core, log);
        restoreTaskFlags(tr, core, p.mm);
      });
      // Queued once the task has its own uid: a pending signal counts against the user its
      // task had when it was queued (SigQ, RLIMIT_SIGPENDING).
      eachThread(r, p.core, task.threads, (tr, core, tid) => {
        restorePending(tr, core, p.pid, tid);
        restoreFromOutside(tid, core, log);
      });
    }

    enter("cgroup-props");
    if (cgroups) {
      for (const task of tasks) {
        current = task.plan.pid;
        for (const t of task.threads) cgroups.moveThread(t.plan.tid, cgSetOf(t.plan.core), cgSetOf(task.plan.core));
      }
      current = pid;
      cgroups.setProperties();
    }

    enter("post-restore");
    await runActions(scripts, opts.onAction, "post-restore", dir, pid);

    enter("registers");
    // Children first: a process dumped stopped stops here, still traced, while its parent's
    // SIGCHLD action keeps the stop from telling it (stops.ts); the parent gets its own after.
    for (const task of [...tasks].reverse()) {
      const p = task.plan;
      current = p.pid;
      if (quietParents.has(p.pid)) setSigchldAction(task.remote, p.core, false);
      eachThread(task.remote, p.core, task.threads, (r, core) => restoreThreadState(r, core));
      for (const t of task.threads) threadRegisters(t.plan.tid, t.plan.core, t.plan.blocked, xstateTemplate);
      finalRegisters(task.remote, p.core, p.blocked, xstateTemplate);
      if (p.stopKnown) stopTraced(task, p.stopSignal);
    }
    current = pid;
    if (opts.pidfile) {
      writeFileSync(opts.pidfile, `${pid}`);
      pidfileWritten = true;
    }

    // criu's restore tells its daemon here, once every task is ready and none runs yet
    lazy?.finish();

    enter("pre-resume");
    try {
      await runActions(scripts, opts.onAction, "pre-resume", dir, pid);
    } catch (e) {
      log.error(`${(e as Error).message} (the restore goes on: pre-resume scripts must not fail)`);
    }

    enter("resume");
    cgroups?.setFreezers();
    // Every task holds its files: the names the dump linked them under go (criu: before resuming).
    plan.files.removeLinkRemaps(log);
    // TCP connections leave repair mode just before the tasks run (the lock goes once they do).
    maker.beforeResume();
    // Children first, each process's other threads before its leader: a process runs on
    // as a whole once its leader goes too (a stop signal given to the leader's detach stops
    // every thread). A task dumped stopped is in its group stop already, by the signal that
    // stopped it (criu's stop_signo), which its parent's waitpid(WUNTRACED) tells; one that
    // was to stop by a pending SIGSTOP is stopped by it now.
    for (const task of [...tasks].reverse()) {
      for (const t of task.threads) bridge().ptraceDetach(t.plan.tid, 0);
      bridge().ptraceDetach(task.plan.pid, stopped ? os.signals.SIGSTOP : task.plan.stopKnown ? 0 : task.plan.stopSignal);
    }
    awaitStopped(tasks.filter((x) => stopped || x.plan.stopped).map((x) => x.plan.pid), log);
  } catch (e) {
    const err = asRestoreError(step, current, e);
    log.error(err.message);
    if (spawned) {
      const created = tasks.length ? tasks.map((x) => ({ pid: x.plan.pid, tids: x.threads.map((th) => th.plan.tid) })) : [{ pid: spawned.pid, tids: [] }];
      created.push(...zombies.map((z) => ({ pid: z, tids: [] })));
      const why = await killCreated(created);
      if (why) log.error(`cleaning up after the failure: ${why}`);
    }
    const left = cgroups?.undo();
    if (left) log.error(`cleaning up after the failure: ${left}`);
    plan.files.unlinkTemporaries(log);
    if (pidfileWritten && opts.pidfile) {
      try {
        unlinkSync(opts.pidfile);
      } catch {
        // gone
      }
    }
    throw err;
  } finally {
    // without "restore finished" first, the daemon takes the hangup for a failed restore
    lazy?.close();
    cgroups?.close();
    maker.closeAll();
    plan.files.closeAll();
    plan.shm.closeAll();
    await plan.images.close();
  }
  // As criu, the network is unlocked once the tasks run, and once tscriu has closed its own
  // copies of their sockets: libnftables polls its netlink socket with select(), which
  // aborts on an fd past 1023 (a server with a thousand connections).
  try {
    plan.netLock.unlock();
  } catch (e) {
    log.error(`the tasks run, but their connections are still locked: ${(e as Error).message} (remove the lock with: nft delete table ${plan.netLock.table})`);
  }
  stats.restore_time = us(t0);
  log.info(`Restore finished successfully; pid ${pid} resumed${stopped || root.stopped ? " (stopped)" : ""}`);
  if (opts.autoDedup) {
    // criu punches each page once restored, freeing the images' disk space (they restore no
    // more); tscriu does it once the tree runs, so a failed restore leaves them whole.
    const segs = [...plan.processes.flatMap((p) => p.memory.segs), ...[...plan.shm.objects.values()].flatMap((o) => o.segs)];
    try {
      const bytes = punchSegments(segs);
      log.info(`--auto-dedup: ${bytes} bytes of restored pages punched out of the pages files`);
    } catch (e) {
      log.error(`--auto-dedup: ${(e as Error).message}`);
    }
  }
  try {
    await runActions(scripts, opts.onAction, "post-resume", dir, pid);
  } catch (e) {
    log.error((e as Error).message);
  }
  try {
    await writeStats(resolve(opts.workDir ?? dir), stats);
  } catch (e) {
    log.warn(`stats-restore not written: ${(e as Error).message}`);
  }
  return { pid, reaper: spawned.reaper, mode, stats };
}

export interface ExitStatus {
  /** exit code, or 128 + signal for a task killed by a signal (as shells report it) */
  code: number;
  signal: number;
}

/**
 * Waits for a task restored as our child ("child" mode) to end, polling so the event loop
 * stays free, and returns how it ended.
 */
export async function waitRestored(pid: number, pollMs = 20): Promise<ExitStatus> {
  const b = bridge();
  for (;;) {
    const st = b.waitpid(pid, 1 /* WNOHANG */);
    if (st && st.exited) return { code: st.code, signal: 0 };
    if (st && st.signaled) return { code: 128 + st.signal, signal: st.signal };
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Waits for the processes given SIGSTOP at their detach to be stopped: the signal is taken
 * once each runs again, a moment after the detach, and a restore that returns first would
 * show a task dumped stopped as running. Two seconds at most: something else may have
 * sent SIGCONT meanwhile (a warning then, not a failure: the tasks are restored).
 */
function awaitStopped(pids: number[], log: ModuleLog): void {
  const until = Date.now() + 2000;
  for (const pid of pids) {
    let state = processState(pid);
    while (state !== undefined && state !== "T" && state !== "t" && Date.now() < until) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      state = processState(pid);
    }
    if (state !== "T" && state !== "t") log.warn(`pid ${pid} was to be left stopped but is in state ${state ?? "gone"}`);
  }
}
