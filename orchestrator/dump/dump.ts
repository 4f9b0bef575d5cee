// The dump of one single-threaded task: freeze, collect, write images, then let the
// task go as asked (kill by default, -R leave running, -s leave stopped). Any failure
// resumes the task exactly as it was and names the step that failed.

import { closeSync, fstatSync, mkdirSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { CLOCK } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { Logger, ModuleLog } from "../log.js";
import { buildCore, readRegs } from "./core.js";
import { asDumpError, DumpError } from "./errors.js";
import { Faults, type DumpStep } from "./faults.js";
import { collectFds, type FdTable } from "../fds/dump.js";
import { FileTable } from "./filetable.js";
import { alive, checkDumpable, freeze, release, type Frozen } from "./freeze.js";
import { collectInside } from "./inside.js";
import { copyPages, copyShmem, planPages } from "./memory.js";
import { LocalPages } from "./pagewriter.js";
import { parseAuxv, parseLimits, parseStat, parseStatus, parseTimers, procPath, readProc, statusCreds } from "./proc.js";
import { runScripts } from "./scripts.js";
import { emptyStats, statsEntry, type DumpStats } from "./stats.js";
import { collectVmas, vmaEntry } from "./vmas.js";
import { ghostImageEntries } from "./ghost.js";
import { ShmemTable } from "./shmem.js";
import { unproxyVdso } from "./vdso.js";
import { ImageSet, inventoryEntry, namespaceIds, taskClocks } from "./write.js";
import { seccompImage } from "./seccomp.js";
import { hostCpuinfo } from "../cpuinfo/host.js";
import { CPU_CAP_IMAGE, parseCpuCaps } from "../../wasm/index.js";

export interface DumpOptions {
  /** the task to dump (-t) */
  pid: number;
  /** where the images go (-D); created when missing */
  imagesDir: string;
  /** logs and stats (-W); defaults to imagesDir */
  workDir?: string | undefined;
  leaveRunning?: boolean | undefined;
  leaveStopped?: boolean | undefined;
  shellJob?: boolean | undefined;
  /** seconds to wait for the task to freeze (--timeout, default 10) */
  timeoutSec?: number | undefined;
  /** largest unlinked file copied into the images, bytes (--ghost-limit, default 1 MiB) */
  ghostLimit?: number | undefined;
  /** --cpu-cap given: also write cpuinfo.img */
  cpuCap?: string | undefined;
  actionScripts?: readonly string[] | undefined;
  log?: Logger | undefined;
  /** fault injection spec; defaults to $TSCRIU_FAULT */
  faults?: string | undefined;
}

export type DumpEvent =
  | { type: "step"; step: string }
  | { type: "memory-start"; bytes: number }
  | { type: "memory-progress"; done: number }
  | { type: "memory-done" };

export interface DumpResult {
  pid: number;
  imagesDir: string;
  stats: DumpStats;
  files: string[];
}

const NULL_LOG: ModuleLog = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined } as unknown as ModuleLog;

/** criu truncates old images; tscriu never overwrites one, so it refuses before freezing. */
function refuseOldImages(pid: number, dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".img")).sort();
  } catch (e) {
    throw new DumpError("images", pid, `cannot read ${dir}: ${(e as Error).message}`, { cause: e });
  }
  if (names.length === 0) return;
  const some = names.slice(0, 3).join(", ") + (names.length > 3 ? `, … (${names.length} files)` : "");
  throw new DumpError("images", pid, `${dir} already holds images (${some}); tscriu does not overwrite them: remove them or dump into another directory`);
}

function us(from: bigint, to = process.hrtime.bigint()): number {
  return Number((to - from) / 1000n);
}

/** Dumps a task; every failure is logged here once, with what its cleanup ran into. */
export async function dump(opts: DumpOptions, onEvent: (e: DumpEvent) => void = () => undefined): Promise<DumpResult> {
  const log = opts.log?.module("dump") ?? NULL_LOG;
  try {
    return await dumpTask(opts, log, onEvent);
  } catch (e) {
    const err = asDumpError("dump", opts.pid, e);
    log.error(err.message);
    for (const note of err.notes) log.error(note);
    throw err;
  }
}

async function dumpTask(opts: DumpOptions, log: ModuleLog, onEvent: (e: DumpEvent) => void): Promise<DumpResult> {
  const pid = opts.pid;
  const faults = new Faults(opts.faults ?? process.env["TSCRIU_FAULT"]);
  const dir = resolve(opts.imagesDir);
  const workDir = resolve(opts.workDir ?? dir);
  const finalState = opts.leaveRunning ? "resume" : opts.leaveStopped ? "stop" : "kill";
  const stats = emptyStats();

  checkDumpable(pid);
  let createdDir = false;
  if (existsSync(dir)) refuseOldImages(pid, dir);
  else {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new DumpError("images", pid, `cannot create ${dir}: ${(e as Error).message}`, { cause: e });
    }
    createdDir = true;
  }
  try {
    mkdirSync(workDir, { recursive: true });
  } catch (e) {
    if (createdDir) rmSync(dir, { recursive: true, force: true });
    throw new DumpError("images", pid, `cannot create the work dir ${workDir}: ${(e as Error).message}`, { cause: e });
  }
  const scripts = opts.actionScripts ?? [];
  try {
    runScripts(scripts, "pre-dump", dir, pid);
  } catch (e) {
    if (createdDir) rmSync(dir, { recursive: true, force: true });
    throw asDumpError("pre-dump", pid, e);
  }

  log.info(`Dumping process (pid: ${pid})`);
  let step = "seize";
  const enter = (s: DumpStep): void => {
    step = s;
    onEvent({ type: "step", step: s });
    log.info(`step: ${s}`);
    faults.step(s);
  };
  let frozen: Frozen;
  try {
    enter("seize");
    frozen = freeze(pid, Math.round((opts.timeoutSec ?? 10) * 1000));
  } catch (e) {
    if (createdDir) rmSync(dir, { recursive: true, force: true });
    throw asDumpError("seize", pid, e);
  }
  stats.freezing_time = frozen.freezingUs;
  // The clocks the task saw when it stopped: a restore continues them from here (timens),
  // so however long the memory takes to write, the task sees no jump for it.
  const frozenAt = { monotonic: bridge().clockGettime(CLOCK.MONOTONIC), boottime: bridge().clockGettime(CLOCK.BOOTTIME) };
  const images = new ImageSet(dir, faults);
  const pages: LocalPages[] = [];
  try {
    const files = new FileTable(opts.ghostLimit ?? 1 << 20);

    enter("proc");
    const stat = parseStat(readProc(pid, "stat"));
    const creds = statusCreds(parseStatus(readProc(pid, "status")));
    const nsIds = namespaceIds(pid);
    const timers = parseTimers(readProc(pid, "timers"));
    const rlimits = parseLimits(readProc(pid, "limits"));
    const comm = readProc(pid, "comm").replace(/\n$/, "");
    const personality = Number.parseInt(readProc(pid, "personality").trim(), 16);
    const loginuid = Number(readProc(pid, "loginuid").trim());
    const oomScoreAdj = Number(readProc(pid, "oom_score_adj").trim());
    const auxv = parseAuxv(readFileSync(procPath(pid, "auxv")));

    enter("registers");
    const regs = readRegs(pid);

    enter("inside");
    const inside = collectInside(pid, timers);

    enter("vmas");
    const shm = new ShmemTable(files);
    const scan = { vmas: collectVmas(pid, files, shm) };
    unproxyVdso(pid, scan.vmas, log);
    log.debug(`${scan.vmas.length} VMAs`);

    enter("files");
    const fds: FdTable = collectFds(pid, files, shm, opts.shellJob === true, frozenAt);
    const special = (name: string): number => {
      const fd = openSync(procPath(pid, name), "r");
      try {
        return files.mappedFile(fd, fstatSync(fd, { bigint: true }), readlinkSync(procPath(pid, name)), pid);
      } finally {
        closeSync(fd);
      }
    };
    const exeId = special("exe");
    const cwdId = special("cwd");
    const rootId = special("root");

    enter("memory");
    let pagesId = 0;
    const memStart = process.hrtime.bigint();
    let readNs = 0n;
    let writeNs = 0n;
    for (const obj of shm.objects.values()) {
      const out = await LocalPages.create(dir, `pagemap-shmem-${obj.ino}.img`, ++pagesId, faults);
      pages.push(out);
      const r = await copyShmem(obj, out, faults);
      await out.close(false);
      images.written.push(out.pagesFile, join(dir, out.pagemapName));
      writeNs += out.writeNs;
      stats.shpages_scanned += BigInt(r.scanned);
      stats.shpages_written += BigInt(r.written);
    }
    const plan = planPages(pid, scan.vmas);
    const out = await LocalPages.create(dir, `pagemap-${pid}.img`, ++pagesId, faults);
    out.syncEarly = finalState === "kill";
    pages.push(out);
    onEvent({ type: "memory-start", bytes: plan.pages * 4096 });
    readNs += await copyPages(pid, plan, out, faults, (done) => onEvent({ type: "memory-progress", done }));
    await out.close(false);
    images.written.push(out.pagesFile, join(dir, out.pagemapName));
    onEvent({ type: "memory-done" });
    writeNs += out.writeNs;
    stats.pages_scanned = BigInt(plan.scanned);
    stats.pages_written = BigInt(plan.pages);
    stats.page_pipes = BigInt(Math.max(1, Math.ceil((plan.pages * 4096) / (8 << 20))));
    stats.page_pipe_bufs = stats.page_pipes;
    stats.memdump_time = Number(readNs / 1000n);
    stats.memwrite_time = Math.max(0, Math.min(Number(writeNs / 1000n), us(memStart) - stats.memdump_time));
    log.info(`${plan.pages} pages written (${plan.scanned} scanned) in ${us(memStart)} us`);

    enter("images");
    const core = buildCore(
      { pid, stat, creds, inside, comm, personality, rlimits, loginuid, oomScoreAdj, stopSignal: frozen.stopSignal, seccompFilter: undefined },
      regs,
    );
    const seccomp = seccompImage(pid, creds.seccomp);
    if (seccomp.filterIndex !== undefined) (core["thread_core"] as Record<string, unknown>)["seccomp_filter"] = seccomp.filterIndex;
    await images.write(`core-${pid}.img`, "CORE", [core]);
    await images.write(`mm-${pid}.img`, "MM", [
      {
        mm_start_code: stat.startCode,
        mm_end_code: stat.endCode,
        mm_start_data: stat.startData,
        mm_end_data: stat.endData,
        mm_start_stack: stat.startStack,
        mm_start_brk: stat.startBrk,
        mm_brk: inside.brk,
        mm_arg_start: stat.argStart,
        mm_arg_end: stat.argEnd,
        mm_env_start: stat.envStart,
        mm_env_end: stat.envEnd,
        exe_file_id: exeId,
        mm_saved_auxv: auxv,
        vmas: scan.vmas.map(vmaEntry),
        dumpable: inside.dumpable,
        thp_disabled: inside.thpDisabled,
      },
    ]);
    await images.write(`pstree.img`, "PSTREE", [{ pid, ppid: 0, pgid: stat.pgid, sid: stat.sid, threads: [pid] }]);
    await images.write(`ids-${pid}.img`, "IDS", [{ vm_id: 2, files_id: 2, fs_id: 2, sighand_id: 2, ...nsIds }]);
    await images.write(`fs-${pid}.img`, "FS", [{ cwd_id: cwdId, root_id: rootId, umask: creds.umask }]);
    await images.write(`fdinfo-2.img`, "FDINFO", fds.fdinfo);
    await images.write(`files.img`, "FILES", files.entries);
    for (const x of fds.images) await images.write(x.name, x.type, x.entries);
    if (shm.objects.size) await images.write(`memfd.img`, "MEMFD_INODE", shm.inodeEntries());
    if (files.remaps.length) await images.write(`remap-fpath.img`, "REMAP_FPATH", files.remaps);
    for (const g of files.ghosts.files) await images.write(`ghost-file-${g.id.toString(16)}.img`, "GHOST_FILE", ghostImageEntries(g));
    await images.write(`seccomp.img`, "SECCOMP", [seccomp.entry]);
    const ts = (ns: bigint): Record<string, bigint> => ({ tv_sec: ns / 1_000_000_000n, tv_nsec: ns % 1_000_000_000n });
    const clocks = taskClocks(pid, frozenAt);
    await images.write(`timens-0.img`, "TIMENS", [{ monotonic: ts(clocks.monotonic), boottime: ts(clocks.boottime) }]);
    // criu writes cpuinfo.img when --cpu-cap asks for any check ("none" does not).
    if (opts.cpuCap !== undefined && parseCpuCaps(opts.cpuCap === "" ? undefined : opts.cpuCap) & CPU_CAP_IMAGE) {
      await images.write(`cpuinfo.img`, "CPUINFO", [{ x86_entry: [hostCpuinfo()] }]);
    }
    await images.write(`inventory.img`, "INVENTORY", [inventoryEntry(nsIds)]);

    enter("post-dump");
    runScripts(scripts, "post-dump", dir, pid);

    enter("sync");
    // Killing the task destroys the only other copy of its state: the images must be on disk first.
    if (finalState === "kill") await images.syncAll();
  } catch (e) {
    for (const p of pages) await p.abort();
    const err = asDumpError(step, pid, e);
    const why = alive(pid) ? release(pid, frozen.wasStopped ? "stop" : "resume") : "the task is gone";
    if (why) err.notes.push(`resuming pid ${pid} after the failure: ${why}`);
    if (createdDir) rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  stats.frozen_time = us(frozen.frozenAt);
  const why = release(pid, finalState);
  if (why) throw new DumpError("release", pid, `images are complete, but the task could not be ${finalState === "kill" ? "killed" : "released"}: ${why}`);
  log.info(`Dumping finished successfully (${finalState === "kill" ? "task killed" : finalState === "stop" ? "task left stopped" : "task left running"})`);
  try {
    await images.write("stats-dump", "STATS", [statsEntry(stats)], workDir);
  } catch (e) {
    // As criu: the dump itself is done; only the statistics are missing.
    log.warn(`stats-dump not written: ${(e as Error).message}`);
  }
  return { pid, imagesDir: dir, stats, files: images.written };
}
