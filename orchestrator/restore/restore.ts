// The restore of one process and its threads from an images directory (tscriu's or
// criu's): check everything (plan.ts), start the stub with the dumped PID, seize it, and
// rebuild the task in it step by step from a trampoline page, the other threads made by
// it (threads.ts) once its memory and files are back; then detach so it runs on where it
// was dumped. A failure at any step kills what was created, waits until the PID is free
// again, removes what tscriu made on the way (recreated ghost files, the pidfile) and
// names the step; the images are only read.

import { unlinkSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { availableParallelism, constants as os } from "node:os";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { Logger, ModuleLog } from "../log.js";
import { adviseShm, fillMemory, mapVmas } from "./memory.js";
import { asRestoreError, RestoreError } from "./errors.js";
import { RestoreFaults, type RestoreStep } from "./faults.js";
import { FdMaker, restoreFds } from "../fds/restore.js";
import { restoreFs } from "./fs.js";
import { findGap, readMaps } from "./layout.js";
import { restoreMembarrier, restoreMm } from "./mm.js";
import { planRestore, type Plan } from "./plan.js";
import { pidHolder } from "./pids.js";
import { restoreCreds, restoreFromOutside, restoreLoginuid, restoreRlimits, restoreSched, restoreTaskFlags } from "./creds.js";
import { finalRegisters, restoreThreadState, threadRegisters } from "./registers.js";
import { eachThread, makeThreads, restoreThreadName, type MadeThread } from "./threads.js";
import { NR, Remote, TRAMPOLINE_SIZE } from "./remote.js";
import { runScripts } from "./scripts.js";
import { restoreSeccomp } from "./seccomp.js";
import { restoreAltstack, restorePending, restoreSigactions } from "./signals.js";
import { killCreated, seizeStub, spawnStub, type Spawned } from "./spawn.js";
import { emptyStats, writeStats, type RestoreStats } from "./stats.js";
import { restoreItimers, restorePosixTimers } from "./timers.js";
import { moveVdso, writeVdsoProxy } from "./vdso.js";

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
  /** -s: leave the task stopped (SIGSTOP) */
  leaveStopped?: boolean | undefined;
  pidfile?: string | undefined;
  /** -r: the root the images' paths are under */
  root?: string | undefined;
  /** --inherit-fd fd[N]:resource */
  inheritFds?: readonly string[] | undefined;
  /** --cpu-cap: undefined when not given, null when given without a value */
  cpuCap?: string | null | undefined;
  actionScripts?: readonly string[] | undefined;
  /** threads writing memory (default: 2 to 4, by the CPUs there are) */
  pageThreads?: number | undefined;
  log?: Logger | undefined;
  /** fault injection spec; defaults to $TSCRIU_FAULT */
  faults?: string | undefined;
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
  const enter = (s: RestoreStep): void => {
    step = s;
    onEvent({ type: "step", step: s });
    log.info(`step: ${s}`);
    remote?.enter(s);
    faults.step(s);
  };

  let plan: Plan;
  try {
    enter("plan");
    plan = await planRestore({ imagesDir: dir, shellJob: opts.shellJob, root: opts.root, inheritFds: opts.inheritFds, cpuCap: opts.cpuCap }, log);
  } catch (e) {
    const err = asRestoreError("plan", 0, e);
    log.error(err.message);
    throw err;
  }
  const pid = plan.pid;
  log.info(`Restoring pid ${pid} from ${dir} (${mode})`);
  let spawned: Spawned | undefined;
  let maker: FdMaker | undefined;
  /** the other threads, each as soon as it exists */
  const made: MadeThread[] = [];
  let pidfileWritten = false;
  try {
    enter("pre-restore");
    runScripts(scripts, "pre-restore", dir, undefined);

    enter("spawn");
    const tSpawn = process.hrtime.bigint();
    try {
      spawned = spawnStub({ pid, mode, session: plan.session, ...(plan.timens ? { timens: plan.timens } : {}) });
    } catch (e) {
      if (isNativeError(e) && e.code === "EEXIST") {
        throw new RestoreError("spawn", pid, `${pidHolder(pid) ?? `PID ${pid} is in use`}; it must be free to restore the task with its PID`, { cause: e });
      }
      throw e;
    }
    stats.forking_time = us(tSpawn);
    onEvent({ type: "spawned", pid: spawned.pid, reaper: spawned.reaper });
    if (spawned.pid !== pid) throw new RestoreError("spawn", pid, `the stub got pid ${spawned.pid}`);

    enter("seize");
    seizeStub(pid);
    const xstateTemplate = bridge().getXstate(pid);

    enter("trampoline");
    const stubMaps = readMaps(pid);
    const imageVmas = plan.memory.vmas.map((p) => p.vma);
    remote = Remote.create(pid, findGap([...stubMaps, ...imageVmas], TRAMPOLINE_SIZE));
    remote.enter("trampoline");
    remote.openPidfd(Math.max(3, plan.fds.maxFd + 1));
    log.debug(`trampoline at 0x${remote.tramp.toString(16)}`);

    enter("vdso");
    const special = new Set(["[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]"]);
    remote.batch(
      stubMaps
        .filter((m) => !special.has(m.name) && m.start !== remote!.tramp)
        .map((m) => ({ what: `munmap of the stub's ${m.name || "anonymous memory"} ${m.start.toString(16)}-${m.end.toString(16)}`, nr: NR.munmap, args: [m.start, m.end - m.start] })),
    );
    const parked = moveVdso(remote, plan.memory.vdso, stubMaps, [...imageVmas, { start: remote.tramp, end: remote.tramp + BigInt(TRAMPOLINE_SIZE) }]);

    enter("vmas");
    mapVmas(remote, plan.memory, plan.files, log);

    enter("pages");
    // Two threads gave the most here (2 vCPUs); more help where there are more cores.
    const threads = opts.pageThreads ?? Math.max(2, Math.min(4, availableParallelism()));
    const bytes = plan.memory.segs.reduce((s, x) => s + x.len, 0);
    onEvent({ type: "memory-start", bytes });
    const fault = faults.has("pages-write") ? () => { throw Object.assign(new Error("writePages: EIO (fault injected by TSCRIU_FAULT=restore:pages-write)"), { code: "EIO" }); } : undefined;
    // Shared memory objects first: a private mapping of one gets its written pages below.
    const shmPages = plan.shm.restore(remote, threads, log);
    adviseShm(remote, plan.memory);
    fillMemory(remote, plan.memory, threads, log, (done) => onEvent({ type: "memory-progress", done }), fault);
    onEvent({ type: "memory-done" });
    stats.pages_restored = BigInt(bytes / 4096 + shmPages);
    if (plan.memory.vdso.mode === "proxy") {
      const n = writeVdsoProxy(pid, plan.memory.vdso, parked!);
      log.info(`vDSO proxy at 0x${plan.memory.vdso.vdso!.start.toString(16)}: ${n} entry points jump to this kernel's vDSO at 0x${parked!.vdso.toString(16)}`);
    }

    enter("files");
    maker = new FdMaker(plan.fds);
    restoreFds(remote, plan.fds, maker);
    restoreFs(remote, plan.dirs, plan.files);

    enter("mm");
    restoreMm(remote, plan.mm, plan.exe, plan.files, plan.core.thread_core?.comm ?? plan.core.tc?.comm ?? "");
    restoreMembarrier(remote, plan.core.tc?.membarrier_registration_mask);
    remote.closePidfd();
    // Every fd and mapping holds the recreated unlinked files now.
    plan.files.unlinkTemporaries(log);

    enter("signals");
    remote.useExitStops();
    restoreSigactions(remote, plan.core);

    enter("timers");
    restoreItimers(remote, plan.core);
    restorePosixTimers(remote, plan.core);

    enter("threads");
    // Process-wide, and what new threads must inherit (the audit login uid), while the
    // task still has every capability: then the threads, which need it for their TIDs.
    restoreRlimits(remote, plan.core, log);
    restoreLoginuid(remote, plan.core, log);
    makeThreads(remote, plan.threads, made);
    for (const t of made) t.remote.useExitStops();

    enter("creds");
    const seccompOf = new Map([[pid, plan.seccomp], ...made.map((t) => [t.plan.tid, t.plan.seccomp] as const)]);
    eachThread(remote, plan.core, made, (r, core, tid) => {
      if (tid !== pid) restoreThreadName(r, core);
      restoreAltstack(r, core);
      restoreSeccomp(r, seccompOf.get(tid));
      restoreSched(r, core);
      restoreCreds(r, core, log);
      restoreTaskFlags(r, core, plan.mm);
    });
    // Queued once the task has its own uid: a pending signal counts against the user its
    // task had when it was queued (SigQ, RLIMIT_SIGPENDING).
    eachThread(remote, plan.core, made, (r, core, tid) => {
      restorePending(r, core, pid, tid);
      restoreFromOutside(tid, core, log);
    });

    enter("post-restore");
    runScripts(scripts, "post-restore", dir, pid);

    enter("registers");
    eachThread(remote, plan.core, made, (r, core) => restoreThreadState(r, core));
    for (const t of made) threadRegisters(t.plan.tid, t.plan.core, t.plan.blocked, xstateTemplate);
    finalRegisters(remote, plan.core, plan.blocked, xstateTemplate);
    if (opts.pidfile) {
      writeFileSync(opts.pidfile, `${pid}`);
      pidfileWritten = true;
    }

    enter("pre-resume");
    try {
      runScripts(scripts, "pre-resume", dir, pid);
    } catch (e) {
      log.error(`${(e as Error).message} (the restore goes on: pre-resume scripts must not fail)`);
    }

    enter("resume");
    // The other threads first: the process runs on as a whole once its leader goes too
    // (a SIGSTOP given to the leader's detach stops every thread).
    for (const t of made) bridge().ptraceDetach(t.plan.tid, 0);
    bridge().ptraceDetach(pid, opts.leaveStopped || plan.stopped ? os.signals.SIGSTOP : 0);
  } catch (e) {
    const err = asRestoreError(step, pid, e);
    log.error(err.message);
    if (spawned) {
      const why = await killCreated(spawned.pid, made.map((t) => t.plan.tid));
      if (why) log.error(`cleaning up after the failure: ${why}`);
    }
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
    maker?.closeAll();
    plan.files.closeAll();
    plan.shm.closeAll();
    await plan.images.close();
  }
  stats.restore_time = us(t0);
  log.info(`Restore finished successfully; pid ${pid} resumed${opts.leaveStopped || plan.stopped ? " (stopped)" : ""}`);
  try {
    runScripts(scripts, "post-resume", dir, pid);
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
