// The dump of a process tree with its threads: freeze it whole, collect each process,
// copy the memory, write images, then let the tree go as asked (kill by default, -R leave running, -s leave stopped). Any failure
// resumes the task exactly as it was and names the step that failed.
//
// With -R or -s the tree goes as soon as its state is collected and its pages copied into
// memory (capture.ts); the pages are written after. A kill waits for every image on disk.
// A pre-dump is the same walk taking memory only. With a parent (--prev-images-dir) pages
// whose bytes the parent chain holds are written as PE_PARENT (parent.ts).

import { closeSync, fstatSync, mkdirSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { CLOCK, MAP, O } from "../../host-bridge/constants.js";
import { PAGE_IS, PAGE_SIZE, presentPages } from "../../host-bridge/pagemap.js";
import { bridge } from "../../host-bridge/load.js";
import type { Logger, ModuleLog } from "../log.js";
import { readRegs } from "./core.js";
import { asDumpError, DumpError } from "./errors.js";
import { Faults, type DumpStep } from "./faults.js";
import { NO_EXTERNAL_UNIX, type ExternalUnix } from "../fds/unix-external.js";
import { collectFds, newFdDumpState, releaseFds, settleFds, type FdDumpState } from "../fds/dump.js";
import { NetworkLock, type LockMethod } from "../net/lock.js";
import { FileTable } from "./filetable.js";
import type { FileValidation } from "../fds/file-validation.js";
import { CgroupFreezer } from "./cgroup-freezer.js";
import { checkDumpable, freezeTree, releaseTree, type Frozen, type FrozenTree } from "./freeze.js";
import { SharedIds } from "./ids.js";
import { collectInside, mapInsideScratch, type Scratch } from "./inside.js";
import { copyPages, copyShmem, planPages, slicePlan, takeLazy, withLateSegments, type PagePlan, type Segment } from "./memory.js";
import { CapturePool, captureLimit, capturePages, estimateAnon, estimateUnprotected, withPreCopied, type Captured } from "./capture.js";
import { checkParentDir, linkParent, PageSink, parentPages, preloadParent, stagingMemory, syncParentChain, writeCaptured } from "./parent.js";
import type { PageResolver } from "../restore/pagesegs.js";
import { dedup } from "../dedup.js";
import { SmapsAhead, type Ahead } from "./smaps-ahead.js";
import { armAhead, protectable, protectableInMaps, WpSnapshot, type WpArmed } from "./wpsnap.js";
import { WriteTracking } from "./write-tracking.js";
import { LocalPages, type PageTransport } from "./pagewriter.js";
import { PageServerClient, type PageServerAddress } from "../page-server/send.js";
import { LazyPagesServer, LazyPageStore, type LazyServeOptions, type LazyServeResult } from "../page-server/lazy-serve.js";
import { parseAuxv, parseLimits, parseStat, parseStatus, parseTimers, procPath, readFdinfoAhead, readProc, readProcAhead, statusCreds } from "./proc.js";
import { runActions, type ActionHook } from "./scripts.js";
import { emptyStats, statsEntry, type DumpStats } from "./stats.js";
import { collectVmas, sameVmas, withoutVma, type Vma } from "./vmas.js";
import { ShmemTable } from "./shmem.js";
import { unproxyVdso } from "./vdso.js";
import { ImageSet, namespaceIds, newRunId } from "./write.js";
import { treeImages, type Collected } from "./task-images.js";
import { Irmap } from "../fds/irmap.js";

/** A write-protect snapshot written in place: its sink (pagemap, unprotected pages) and its stream. */
interface InPlace {
  sink: PageSink;
  streamed: Promise<number>;
}

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
  /** --freeze-cgroup: the cgroup (v1 freezer or v2) that stops the tasks first */
  freezeCgroup?: string | undefined;
  /** --manage-cgroups=ignore: cgroup.img names the sets only, no cgroup is walked */
  cgroupsIgnore?: boolean | undefined;
  /** --cgroup-root [controller:]/path: the path walked instead of the task's */
  cgroupRoots?: readonly { controller?: string | undefined; root: string }[] | undefined;
  /** --cgroup-yard: a directory with one mount per hierarchy, named as criu names them (relative: to the work dir) */
  cgroupYard?: string | undefined;
  /** --tcp-established: dump established TCP connections (TCP_REPAIR) */
  tcpEstablished?: boolean | undefined;
  /** --tcp-close: leave established TCP connections out, to restore them closed */
  tcpClose?: boolean | undefined;
  /** --skip-in-flight: leave out connections a listener has not accepted yet */
  skipInFlight?: boolean | undefined;
  /** --network-lock: iptables (criu's default), nftables or skip */
  networkLock?: LockMethod | undefined;
  /** seconds to wait for the task to freeze (--timeout, default 10) */
  timeoutSec?: number | undefined;
  /** largest unlinked file copied into the images, bytes (--ghost-limit, default 1 MiB) */
  ghostLimit?: number | undefined;
  /** --link-remap: an unlinked file with other hard links gets a link for the restore (link-remap.ts) */
  linkRemap?: boolean | undefined;
  /** --file-validation: filesize records no ELF build-id of the regular files (buildid, criu's default, does) */
  fileValidation?: FileValidation | undefined;
  /** --force-irmap: walk for the path of a watched inode whose handle does not open (fds/irmap.ts) */
  forceIrmap?: boolean | undefined;
  /** --irmap-scan-path: where that walk looks first */
  irmapScanPaths?: readonly string[] | undefined;
  /** --file-locks: dump the tasks' file locks (without it a task holding one is refused) */
  fileLocks?: boolean | undefined;
  /** unix sockets allowed a peer outside the tree (--ext-unix-sk, --external unix[INO]: fds/unix-external.ts) */
  externalUnix?: ExternalUnix | undefined;
  /** --cpu-cap given: also write cpuinfo.img */
  cpuCap?: string | undefined;
  actionScripts?: readonly string[] | undefined;
  /** called at pre-dump and post-dump before the scripts (the RPC's notify) */
  onAction?: ActionHook | undefined;
  log?: Logger | undefined;
  /** fault injection spec; defaults to $TSCRIU_FAULT */
  faults?: string | undefined;
  /**
   * pre-dump: only memory (pagemaps, pages, inventory), the task left running; as criu,
   * the start of a chain that a later dump names with prevImagesDir
   */
  preDump?: boolean | undefined;
  /** the previous dump of the chain, relative to imagesDir (--prev-images-dir) */
  prevImagesDir?: string | undefined;
  /** punch the pages this dump holds out of the parent chain's pages files (--auto-dedup) */
  autoDedup?: boolean | undefined;
  /**
   * write-protect the task's private anonymous memory and copy it while the task runs
   * (wpsnap.ts); the frozen time no longer grows with that memory. With leaveRunning it
   * runs on; without, it is frozen again and killed once its images are on disk (its
   * connections locked meanwhile). Not with leaveStopped, a pre-dump or action scripts.
   */
  wpSnapshot?: boolean | undefined;
  /**
   * criu's --track-mem: keep tracking the tasks' writes after this dump for the next pass
   * (write-tracking.ts); a pre-dump always does. Only when the tasks run on.
   */
  trackMem?: boolean | undefined;
  /** criu's --pre-dump-mode, recorded in the inventory (tscriu reads memory one way: process_vm_readv) */
  preDumpMode?: "splice" | "read" | undefined;
  /** --page-server: the pages go to a page server (page-server/send.ts), the other images into imagesDir */
  pageServer?: PageServerAddress | undefined;
  /**
   * --lazy-pages: the pages of lazy VMAs stay out of the images (PE_LAZY entries), held in
   * tscriu's memory and served from here to a lazy-pages daemon once the dump is done
   * (page-server/lazy-serve.ts); the dump returns when the daemon has closed
   */
  lazyPages?: LazyServeOptions | undefined;
  /** --status-fd: \0 is written there when the lazy pages are ready to be fetched */
  statusFd?: number | undefined;
  /**
   * criu's pidfd store of an RPC client (rpc/pidfd-store.ts): a pass with a parent asks it
   * whether each process's pid was reused; a pre-dump leaves each one's pidfd in it
   */
  pidfdStore?: { reused(pid: number): boolean; add(pid: number): void } | undefined;
}

export type DumpEvent =
  | { type: "step"; step: string }
  | { type: "memory-start"; bytes: number }
  | { type: "memory-progress"; done: number }
  | { type: "memory-done" }
  /** --lazy-pages: the dump is done; its lazy pages wait for the daemon there */
  | { type: "lazy-pages"; where: string; pages: number };

export interface DumpResult {
  pid: number;
  imagesDir: string;
  stats: DumpStats;
  files: string[];
  /** --lazy-pages: the session that fetched them */
  lazy?: LazyServeResult | undefined;
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

/** What is collected of one process before its memory is copied and its images written. */


const PAGE = 4096;
/**
 * Pages compared with a parent while the task stays frozen go through one buffer of this
 * size, used again and again: fresh memory is what costs here (see capture.ts).
 */
const SLICE = 16 << 20;
/** How a write-protect snapshot's early copies are counted in the log (host-bridge's uffd_wp.c copies a fault's block of 16). */
const AT_WRITES = "pages copied first, at its writes (each with the pages of its block of 16 not copied yet)";

function us(from: bigint, to = process.hrtime.bigint()): number {
  return Number((to - from) / 1000n);
}

/** Runs calls inside a frozen task; a failure its own seccomp filters may explain says so. */
function callsInside<T>(fp: Frozen, calls: () => T): T {
  try {
    return calls();
  } catch (e) {
    // Without PTRACE_O_SUSPEND_SECCOMP the task's own filters judge our calls.
    const active = fp.seccompActive;
    if (!active || (e as { errno?: number }).errno === undefined) throw e;
    const why = [...active].map(([tid, r]) => `thread ${tid}: ${r}`).join("; ");
    throw new DumpError("inside", fp.pid, `${(e as Error).message}; the task's seccomp filters apply to the calls tscriu runs inside it, as seccomp could not be suspended (${why})`, { cause: e });
  }
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

/**
 * A mapped packet ring names its socket's file (shmid), as criu's socket map: the socket
 * must be an fd of the same process, which the restore maps the ring from again.
 */
function socketMaps(pid: number, vmas: readonly Vma[], fdinfo: readonly Record<string, unknown>[], files: FileTable, log: ModuleLog): void {
  for (const v of vmas) {
    if (v.socketIno === undefined) continue;
    const id = files.sockets.get(v.socketIno);
    if (id === undefined || !fdinfo.some((e) => e["id"] === id)) {
      throw new DumpError("files", pid, `the packet ring mapped at ${v.start.toString(16)}-${v.end.toString(16)} belongs to socket:[${v.socketIno}], which pid ${pid} has no fd of (criu refuses it too)`);
    }
    v.shmid = BigInt(id);
    if (!(v.flags & MAP.SHARED)) warnWrittenRing(pid, v, log);
  }
}

/**
 * A page the task wrote in a private mapping of a ring is its own copy (anonymous), not
 * the ring's: criu's socket map keeps no page, so it is lost, as with criu; said, not
 * silently. The ring's own pages show as file pages.
 */
function warnWrittenRing(pid: number, v: Vma, log: ModuleLog): void {
  const own = presentPages(pid, Number(v.start), Number(v.end))
    .filter((r) => !(r.categories & PAGE_IS.FILE))
    .reduce((n, r) => n + (r.end - r.start) / PAGE_SIZE, 0);
  if (own) log.warn(`pid ${pid}: ${own} page(s) written in the private mapping ${v.start.toString(16)}-${v.end.toString(16)} of the packet ring of socket:[${v.socketIno}] are lost: criu's socket map keeps no page, the restore maps the ring again`);
}

async function dumpTask(opts: DumpOptions, log: ModuleLog, onEvent: (e: DumpEvent) => void): Promise<DumpResult> {
  const pid = opts.pid;
  const faults = new Faults(opts.faults ?? process.env["TSCRIU_FAULT"]);
  const dir = resolve(opts.imagesDir);
  const workDir = resolve(opts.workDir ?? dir);
  const preDump = opts.preDump === true;
  // criu's pre-dump always leaves the tasks running.
  const finalState = opts.leaveRunning || preDump ? "resume" : opts.leaveStopped ? "stop" : "kill";
  const stats = emptyStats();

  // --freeze-cgroup names a cgroup that can freeze, or nothing is touched.
  // The parent chain's pages are on the page server: only it can punch them (criu's too).
  if (opts.pageServer && opts.autoDedup) throw new DumpError("check", pid, "--auto-dedup with --page-server: the parent's pages are on the page server; give --auto-dedup to the page server instead");
  if (opts.lazyPages) {
    // what tscriu's lazy dump does not combine with yet, by name rather than ignored
    const not = [preDump && "pre-dump", opts.prevImagesDir !== undefined && "--prev-images-dir", opts.trackMem && "--track-mem", opts.wpSnapshot && "--wp-snapshot"].filter(Boolean);
    if (not.length) throw new DumpError("check", pid, `--lazy-pages with ${not.join(", ")} is not supported yet by tscriu`);
  }
  // --wp-snapshot: the tree runs while its pages are copied; without -R it is killed after.
  if (opts.wpSnapshot === true) {
    const not = [preDump && "a pre-dump", finalState === "stop" && "-s (a tree that ran on while its pages were copied would be left stopped elsewhere than its images)", (opts.actionScripts?.length ?? 0) > 0 && "--action-script (criu runs post-dump with the tree frozen)"].filter(Boolean);
    if (not.length) throw new DumpError("check", pid, `--wp-snapshot with ${not.join(", ")} is not supported by tscriu`);
  }
  const freezer = opts.freezeCgroup !== undefined ? CgroupFreezer.open(opts.freezeCgroup) : undefined;
  if (typeof freezer === "string") throw new DumpError("check", pid, freezer);
  checkDumpable(pid);
  const parentDir = opts.prevImagesDir !== undefined ? checkParentDir(pid, dir, opts.prevImagesDir, opts.pageServer !== undefined) : undefined;
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
  /** --wp-snapshot without -R: the tree is let go early to run while its pages are copied, then frozen again and killed */
  const snapKill = opts.wpSnapshot === true && finalState === "kill";
  // The task goes before its pages are written when nothing needs it frozen until the
  // end: not killed (that waits for the images on disk), no post-dump script (criu runs
  // it with the task still frozen). Its pages are then copied into memory populated
  // before the freeze, as much as its anonymous memory, if that fits and the machine
  // gives memory fast enough (capture.ts).
  // A --lazy-pages dump copies its lazy pages while frozen anyway, and serves them after.
  const early = (finalState !== "kill" || snapKill) && scripts.length === 0 && !opts.lazyPages;
  const limit = captureLimit();
  let pool: CapturePool | undefined;
  /** the memory of the slices a page sink takes while frozen, and its staging buffers */
  let slicing: { pool: CapturePool; stage: Buffer[] } | undefined;
  /** the parent chain's pagemaps of these processes, read before the freeze */
  const parentsAhead = new Map<number, PageResolver>();
  // Writes tracked since the parent pass, and whether to track them for the next one.
  const tracking = await WriteTracking.open(pid, parentDir, (preDump || opts.trackMem === true) && finalState === "resume", log);
  // A write-protect snapshot into local pages files writes the protected pages in place
  // (wpsnap.ts): only the others are held in memory.
  /** the write-protect snapshot is taken (not when the incremental dump's tracking protects the memory) */
  const snapshot = opts.wpSnapshot === true && !tracking.active;
  const streamSnap = snapshot && !opts.pageServer;
  let remote: PageServerClient | undefined;
  let lazyServer: LazyPagesServer | undefined;
  /** the lazy pages' buffers, populated before the freeze (capture.ts) */
  let lazyPool: CapturePool | undefined;
  /** the smaps of the processes protected ahead or tracked, read while they run (smaps-ahead.ts) */
  let smapsAhead: SmapsAhead | undefined;
  try {
    if (opts.lazyPages) {
      // Listening before the freeze: a port in use fails the dump with the tasks untouched.
      lazyServer = LazyPagesServer.listen(opts.lazyPages, log);
      const anon = estimateAnon(pid);
      if (anon > limit) throw new Error(`--lazy-pages holds the lazy pages in tscriu's memory until they are fetched: the tree has ${anon} bytes of anonymous memory, more than the ${limit} tscriu may hold here (half of MemAvailable)`);
      lazyPool = CapturePool.forCapture(anon, log, true);
    }
    if (opts.pageServer) {
      remote = await PageServerClient.connect(opts.pageServer, log);
      // Unwritten pages are PE_PARENT entries only where the server has the parent's pagemap.
      for (const p of tracking.trackedPids()) if (!(await remote.hasParent("pid", p))) tracking.noParent(p, `the page server ${remote.peer} has no parent pagemap of it`);
    }
    if (opts.prevImagesDir !== undefined) linkParent(pid, dir, opts.prevImagesDir);
    await runActions(scripts, opts.onAction, "pre-dump", dir, pid);
    // What was written since the parent is copied while the task runs (precopy.ts): its
    // memory and the capture pool's are populated first, the pages protected again and
    // copied last, so that the task writes for as short a time as can be before the freeze.
    const preCopying = early && tracking.valid;
    if (preCopying) tracking.prepare(limit);
    // (their smaps read while their pages are pre-copied, once prepare() registered what it
    // registers: the VmFlags it changes are in it)
    if (preCopying) smapsAhead = SmapsAhead.start(tracking.trackedPids(), log);
    // Of the memory the pre-copy takes, what is written again before the freeze is copied
    // by it: a quarter is counted (the pool grows while the pages stream if it falls short).
    const want = !early ? 0 : streamSnap ? estimateUnprotected(pid) : Math.max(0, estimateAnon(pid) - tracking.unwrittenBytes - tracking.preCopyBytes + Math.ceil(tracking.preCopyBytes / 4));
    if (early && want <= limit) pool = CapturePool.forCapture(want, log, opts.wpSnapshot === true);
    // A default dump with a parent compares and writes its pages while frozen, a slice at
    // a time, through staging buffers, and is killed once its images and the chain's are
    // on disk (parent.ts). Before the freeze: the memory of the slices and of the staging;
    // the chain's pagemaps of the processes that had one (the tree may have others by the
    // freeze: theirs are read then); and the chain's images synced.
    if (finalState === "kill" && parentDir !== undefined) {
      slicing = { pool: new CapturePool(SLICE, SLICE).touched(), stage: stagingMemory() };
      if (!opts.pageServer) {
        for (const p of new Set([pid, ...tracking.trackedPids()])) {
          const r = parentPages(dir, `pagemap-${p}.img`, p);
          if (!r) continue;
          await preloadParent(r, p);
          parentsAhead.set(p, r);
        }
      }
      const t0 = process.hrtime.bigint();
      const n = syncParentChain(dir);
      log.info(`the parent chain's images synced (${n} file system${n === 1 ? "" : "s"}) in ${(process.hrtime.bigint() - t0) / 1000n} us`);
    }
    if (preCopying) tracking.preCopy(faults);
    await smapsAhead?.settled();
  } catch (e) {
    await smapsAhead?.close();
    tracking.release();
    remote?.abort();
    lazyServer?.close();
    if (createdDir) rmSync(dir, { recursive: true, force: true });
    else rmSync(join(dir, "parent"), { force: true });
    throw asDumpError(opts.lazyPages && !lazyServer ? "lazy-pages" : remote || !opts.pageServer ? "pre-dump" : "page-server", pid, e);
  }

  log.info(`Dumping process (pid: ${pid})`);
  let step = "seize";
  const enter = (s: DumpStep): void => {
    step = s;
    onEvent({ type: "step", step: s });
    log.info(`step: ${s}`);
    faults.step(s);
  };
  let tree: FrozenTree;
  // --wp-snapshot: the protection made ahead, while the tree runs (wpsnap.ts armAhead)
  let armed = new Map<number, WpArmed>();
  let armedUs = 0;
  /** Ends what was armed and not taken over; what went wrong goes to `notes` (a failed dump's), else to the log. */
  const endArmed = (notes?: string[]): void => {
    for (const a of armed.values()) {
      const why = a.end();
      if (!why) continue;
      const note = `removing the write-protection made ahead in pid ${a.pid}: ${why}`;
      if (notes) notes.push(note);
      else log.warn(note);
    }
    armed.clear();
  };
  try {
    enter("seize");
    if (snapshot && !freezer) {
      ({ armed, frozenUs: armedUs, smaps: smapsAhead } = await armAhead(pid, Math.round((opts.timeoutSec ?? 10) * 1000), log));
      // TSCRIU_WP_AHEAD_MS: a wait between the two (tests: more written and mapped meanwhile)
      const wait = Number(process.env["TSCRIU_WP_AHEAD_MS"] ?? 0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    tree = freezeTree(pid, Math.round((opts.timeoutSec ?? 10) * 1000), freezer, faults);
  } catch (e) {
    await smapsAhead?.close();
    endArmed();
    tracking.release();
    remote?.abort();
    lazyServer?.close();
    if (createdDir) rmSync(dir, { recursive: true, force: true });
    throw asDumpError("seize", pid, e);
  }
  const frozen = tree.processes[0]!;
  // (counted before anything runs inside the tree: the calls made there are tscriu's)
  const smapsKept = (await smapsAhead?.atFreeze()) ?? new Map<number, Ahead>();
  stats.freezing_time = tree.freezingUs;
  // The clocks the task saw when it stopped: a restore continues them from here (timens),
  // so however long the memory takes to write, the task sees no jump for it.
  const frozenAt = { monotonic: bridge().clockGettime(CLOCK.MONOTONIC), boottime: bridge().clockGettime(CLOCK.BOOTTIME) };
  const images = new ImageSet(dir, faults);
  const pages: PageTransport[] = [];
  /** each process's pagemap (what the next pass's parent covers) */
  const pidPages = new Map<number, PageTransport>();
  /** where one pagemap's pages go: a pages file here, or the page server */
  let pagesId = 0;
  const openPages = async (kind: "pid" | "shmem", id: number): Promise<PageTransport> => {
    if (remote) {
      const out = await remote.open(kind, id);
      pages.push(out);
      if (kind === "pid") pidPages.set(id, out);
      return out;
    }
    const out = await LocalPages.create(dir, kind === "pid" ? `pagemap-${id}.img` : `pagemap-shmem-${id}.img`, ++pagesId, faults);
    out.syncEarly = finalState === "kill";
    pages.push(out);
    if (kind === "pid") pidPages.set(id, out);
    images.written.push(out.pagesFile, join(dir, out.pagemapName));
    return out;
  };
  // criu's run id names the dump (inventory.img) and its network lock (nftables' table).
  const runId = newRunId();
  const netLock = new NetworkLock(opts.networkLock ?? "iptables", runId, log);
  let fdState: FdDumpState | undefined;
  /** the connections are out of repair mode and unlocked (once, before the tasks run on) */
  let connectionsFreed = false;
  const freeConnections = (): void => {
    if (connectionsFreed) return;
    connectionsFreed = true;
    if (fdState) releaseFds(fdState, "resume");
    netLock.unlock();
  };
  /** The listeners closed with their tasks: their ports are no longer locked (net/lock.ts). */
  const unlockListeners = (): void => {
    try {
      netLock.unlockListeners();
    } catch (e) {
      log.error(`the tree is gone, but its listeners' ports are still locked: ${(e as Error).message} (remove that part of the lock with: nft flush set ${netLock.table} lports; nft flush set ${netLock.table} listen4; nft flush set ${netLock.table} listen6)`);
    }
  };
  /**
   * Lets the tree go: with -R its connections go on as they were before their tasks run
   * (criu unlocks too); killed or stopped, they stay in repair mode and locked until a restore.
   */
  const letGo = (how: "resume" | "stop" | "kill"): string | undefined => {
    if (how === "resume") freeConnections();
    const why = releaseTree(tree, how);
    if (how !== "resume" && fdState) releaseFds(fdState, how);
    if (how === "kill") unlockListeners();
    return why;
  };
  let released = false;
  /**
   * The end of a snapshot without -R: the tree, let go to run while its pages were copied,
   * frozen again (with what it started meanwhile) and killed now that its images are on
   * disk; what went wrong, or undefined. A tree gone meanwhile has nothing left to kill.
   */
  const killRunOn = (): string | undefined => {
    let again: FrozenTree | undefined;
    try {
      again = freezeTree(pid, Math.round((opts.timeoutSec ?? 10) * 1000));
    } catch (e) {
      if (existsSync(`/proc/${pid}`)) return `freezing it again to kill it: ${(e as Error).message}`;
      log.warn(`pid ${pid} exited while its pages were copied: nothing left to kill`);
    }
    const why = again ? releaseTree(again, "kill") : undefined;
    if (fdState) releaseFds(fdState, "kill");
    unlockListeners();
    return why;
  };
  const snaps: WpSnapshot[] = [];
  /** scratch areas mapped in the frozen tasks (inside.ts): unmapped before they are let go */
  const scratches = new Set<Scratch>();
  /** snapshots being protected, by pid: started once a process's VMAs are read */
  const protecting = new Map<number, Promise<WpSnapshot | undefined>>();
  /** a frozen process's snapshot: its protection made ahead completed, or made now */
  const protectFrozen = (p: number, vmas: readonly { start: bigint; end: bigint }[], refused?: string): Promise<WpSnapshot | undefined> => {
    const a = armed.get(p);
    armed.delete(p);
    return a ? WpSnapshot.rearm(a, vmas, log, refused) : WpSnapshot.protect(p, vmas, log, refused);
  };
  /** snapshots writing in place: settled before anything they use is closed */
  const inPlace: InPlace[] = [];
  const lazyStore = new LazyPageStore();
  const files = new FileTable({ ghostLimit: opts.ghostLimit ?? 1 << 20, linkRemap: opts.linkRemap === true, preDump, treeIds: new Set(tree.processes.flatMap((f) => [f.pid, ...f.tids])), fileValidation: opts.fileValidation });
  try {
    const shm = new ShmemTable(files);
    fdState = newFdDumpState({
      pids: tree.processes.filter((f) => !f.zombie).map((f) => f.pid),
      zombies: tree.processes.filter((f) => f.zombie).map((f) => f.pid),
      threads: new Map(tree.processes.filter((f) => !f.zombie).flatMap((f) => f.tids.map((tid) => [tid, f.pid] as const))),
      files,
      shm,
      irmap: new Irmap({ force: opts.forceIrmap === true, scanPaths: opts.irmapScanPaths ?? [] }),
      shellJob: opts.shellJob === true,
      fileLocks: opts.fileLocks === true,
      externalUnix: opts.externalUnix ?? NO_EXTERNAL_UNIX,
      tcp: { established: opts.tcpEstablished === true, close: opts.tcpClose === true, skipInFlight: opts.skipInFlight === true, lockListeners: finalState === "kill" },
      netLock,
      log,
      frozenAt,
      writeSoon: (img) => images.writeSoon(img.name, img.type, img.entries),
    });
    const ids = new SharedIds();
    const procs: Collected[] = [];
    const memProcs: { pid: number; vmas: Vma[] }[] = [];
    for (const fp of tree.processes) {
      if (fp.zombie) continue;
      const p = fp.pid;
      log.info(`Collecting pid ${p}${fp.tids.length > 1 ? ` (${fp.tids.length} threads)` : ""}`);
      for (const [tid, fix] of fp.rseq ?? []) {
        if (fix.aborted) log.warn(`thread ${tid} was frozen inside an rseq critical section (at 0x${fix.aborted.from.toString(16)}): it goes on at the section's abort handler 0x${fix.aborted.to.toString(16)}`);
        else log.warn(`thread ${tid} was frozen inside an rseq critical section that asks not to be restarted (RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL): left there, its rseq_cs saved`);
      }
      // criu's pidfd store (an RPC client's, between passes): told of each process, frozen
      if (opts.pidfdStore && opts.prevImagesDir !== undefined) opts.pidfdStore.reused(p);
      if (preDump) opts.pidfdStore?.add(p);
      if (preDump) {
        // A pre-dump takes memory only: no fd is looked at, and no syscall runs inside the
        // task but the one that makes its write tracking the first time (write-tracking.ts).
        enter("vmas");
        const kept = smapsKept.get(p);
        const vmas = kept?.vmas && sameVmas(kept.text, readProc(p, "maps")) ? kept.vmas.register(files, shm) : collectVmas(p, files, shm);
        unproxyVdso(p, vmas, log);
        // hugetlb memory is left to the dump, as criu's pre-dump does (memory.ts)
        memProcs.push({ pid: p, vmas: vmas.filter((v) => !(v.flags & MAP.HUGETLB)) });
        continue;
      }
      enter("proc");
      const timers = parseTimers(readProc(p, "timers"));
      // The scratch area for the calls inside the task first, then smaps read on the thread
      // pool from now on (it walks every page table, holding the mmap lock that the area's
      // mmap and munmap need): the area is left out of the VMAs by its range and unmapped
      // once smaps is read. A snapshot's protection starts once nothing runs in the task any
      // more: after that unmap, or, when the whole of it is made now (not ahead), right
      // after the calls inside, with smaps read from then on (the old order: the two walks
      // side by side).
      const protectNow = streamSnap && pool?.complete === true && !armed.has(p);
      const scratch = protectNow ? undefined : callsInside(fp, () => mapInsideScratch(p, timers));
      if (scratch) scratches.add(scratch);
      // (or read before the freeze, while the task ran, when it made no mapping call since: smaps-ahead.ts)
      const kept = smapsKept.get(p);
      let smapsRead = kept !== undefined ? Promise.resolve(kept.text) : scratch ? readProcAhead(p, "smaps") : undefined;
      void smapsRead?.catch(() => undefined);
      const stat = parseStat(readProc(p, "stat"));
      const creds = statusCreds(parseStatus(readProc(p, "status")));
      const nsIds = namespaceIds(p);
      const rlimits = parseLimits(readProc(p, "limits"));
      const comm = readProc(p, "comm").replace(/\n$/, "");
      const personality = Number.parseInt(readProc(p, "personality").trim(), 16);
      const loginuid = Number(readProc(p, "loginuid").trim());
      const oomScoreAdj = Number(readProc(p, "oom_score_adj").trim());
      const auxv = parseAuxv(readFileSync(procPath(p, "auxv")));
      const taskIds = ids.of(p, procs.map((x) => x.pid));
      // An fd table shared with the parent (CLONE_FILES) is dumped once, with the table's
      // first holder, and shared again on restore by forking with CLONE_FILES from the
      // parent, as criu does: a grandchild of the table's holder gets it through its parent
      // that holds it too. A table the parent does not hold has no process to be forked
      // from with it; that is refused, not split silently in two (criu refuses it too).
      const parent = procs.find((x) => x.pid === fp.ppid);
      const sharesFiles = parent?.ids.files_id === taskIds.files_id ? parent : undefined;
      const holder = procs.find((x) => x.ids.files_id === taskIds.files_id);
      if (holder && !sharesFiles) throw new DumpError("proc", pid, `pid ${p} shares an fd table (CLONE_FILES) with pid ${holder.pid} but not with its parent ${fp.ppid}; only a table shared along parent and child can be restored (criu refuses it too)`);
      // its fds' fdinfo read on the thread pool meanwhile (taken at "files"; the fd table
      // of a frozen tree does not change)
      const fdinfoAhead = sharesFiles ? undefined : readFdinfoAhead(p);
      void fdinfoAhead?.catch(() => undefined);
      for (const [key, what] of [
        ["vm_id", "an address space (CLONE_VM, vfork)"],
        ["fs_id", "a cwd and root (CLONE_FS)"],
        ["sighand_id", "signal handlers (CLONE_SIGHAND)"],
      ] as const) {
        const other = procs.find((x) => x.ids[key] === taskIds[key]);
        if (other) throw new DumpError("proc", pid, `pid ${p} shares ${what} with pid ${other.pid} without being its thread; tscriu cannot restore that sharing yet`);
      }

      enter("registers");
      const regs = new Map(fp.tids.map((tid) => [tid, readRegs(tid)]));

      enter("inside");
      const inside = callsInside(fp, () => collectInside(p, timers, fp.tids, scratch));

      /** The snapshot's protection started on the thread pool (from maps, which needs no walk; checked against smaps' VMAs below). */
      const startProtection = (): { maps: string; fromMaps: { start: bigint; end: bigint }[] | undefined } => {
        const maps = readProc(p, "maps");
        const fromMaps = streamSnap && pool?.complete === true ? protectableInMaps(maps) : undefined;
        if (fromMaps) {
          const protection = protectFrozen(p, fromMaps, "protected again from smaps' VMAs if they differ, else its pages are copied while it is frozen");
          void protection.catch(() => undefined); // awaited in "memory", or on failure
          protecting.set(p, protection);
        }
        return { maps, fromMaps };
      };
      let started: ReturnType<typeof startProtection> | undefined;
      if (!smapsRead) {
        smapsRead = readProcAhead(p, "smaps");
        void smapsRead.catch(() => undefined);
        started = startProtection();
      }

      // The fds before the VMAs: meanwhile smaps walks the page tables on the thread pool
      // (and the fds get their files.img ids before the mapped files, as with criu).
      enter("files");
      const fdinfo = sharesFiles ? sharesFiles.fdinfo : collectFds(p, fdState, await fdinfoAhead!.catch(() => undefined));
      // cwd and root as O_PATH, as criu: a directory of a gone process's /proc refuses open (ESRCH).
      const special = (name: string, flags: number | string): number => {
        const fd = openSync(procPath(p, name), flags);
        try {
          return files.mappedFile(fd, fstatSync(fd, { bigint: true }), readlinkSync(procPath(p, name)), p);
        } finally {
          closeSync(fd);
        }
      };
      const exeId = special("exe", "r");
      const cwdId = special("cwd", O.PATH);
      const rootId = special("root", O.PATH);

      enter("vmas");
      let ahead = await smapsRead.catch(() => undefined);
      if (scratch) {
        const sr = scratch.range;
        scratches.delete(scratch);
        scratch.unmap();
        // Nothing of tscriu's is mapped in the task now, and nothing runs there until it is
        // let go: a write there (the kernel's own, to its rseq area, at the return from a
        // call made inside it) would wait on the protection, which starts now.
        started = startProtection();
        if (ahead !== undefined && kept === undefined) ahead = withoutVma(ahead, sr.start, sr.end);
      }
      const { maps, fromMaps } = started!;
      const smaps = ahead !== undefined && sameVmas(ahead, maps) ? ahead : undefined;
      if (smaps === undefined) log.debug(`pid ${p}: smaps read again (${ahead === undefined ? "the read ahead failed, or the scratch area is not one VMA of it" : "it does not list the VMAs of maps"})`);
      // (classified ahead too, when the smaps kept is the one of maps)
      const vmas = smaps !== undefined && smaps === kept?.text && kept.vmas ? kept.vmas.register(files, shm) : collectVmas(p, files, shm, smaps);
      kept?.vmas?.close();
      unproxyVdso(p, vmas, log);
      log.debug(`pid ${p}: ${vmas.length} VMAs`);
      if (fromMaps) {
        // maps cannot tell every VMA protectable() leaves out (MAP_DROPPABLE, say): where
        // smaps' VMAs differ, the protection is ended and made again from them.
        const want = vmas.filter(protectable);
        if (want.length !== fromMaps.length || want.some((v, i) => v.start !== fromMaps[i]!.start || v.end !== fromMaps[i]!.end)) {
          log.info(`pid ${p}: the protectable VMAs of smaps are not those of maps: protected again from smaps'`);
          const again = protecting.get(p)!.then((first) => (first?.end(), WpSnapshot.protect(p, want, log)));
          void again.catch(() => undefined);
          protecting.set(p, again);
        }
      }

      socketMaps(p, vmas, fdinfo, files, log);
      // Scheduling, credentials, name and seccomp are each thread's own.
      const threads = fp.tids.map((tid) => {
        const task = (f: string): string => readProc(p, `task/${tid}/${f}`);
        return { tid, stat: parseStat(task("stat")), creds: statusCreds(parseStatus(task("status"))), comm: task("comm").replace(/\n$/, ""), regs: regs.get(tid)!, inside: inside.threads.get(tid)!, rseqCs: fp.rseq?.get(tid)?.kept?.cs };
      });
      procs.push({ pid: p, ppid: fp.ppid, frozen: fp, stat, creds, nsIds, rlimits, comm, personality, loginuid, oomScoreAdj, auxv, inside, vmas, fdinfo, sharesFiles: sharesFiles !== undefined, exeId, cwdId, rootId, threads, ids: taskIds });
      memProcs.push({ pid: p, vmas });
    }
    // (what the whole tree's fds tell, a unix socket's peer outside it, belongs to the files
    // step, though the VMAs came after it)
    step = "files";
    if (!preDump) settleFds(fdState);
    // the images the fds' kinds wrote meanwhile (connections' streams) are on the disk, or
    // their failure fails the dump here, naming its file
    await images.flushSoon();
    if (finalState === "kill") images.startWriteback();

    enter("memory");
    const memStart = process.hrtime.bigint();
    let readNs = 0n;
    let writeNs = 0n;
    // Shared memory is written whole and while the task is frozen (criu's pre-dump takes
    // it too; tscriu's leaves it to the dump).
    for (const obj of preDump ? [] : shm.objects.values()) {
      const out = await openPages("shmem", Number(obj.ino));
      const r = await copyShmem(obj, out, faults);
      await out.close(false);
      writeNs += out.writeNs;
      stats.shpages_scanned += BigInt(r.scanned);
      stats.shpages_written += BigInt(r.written);
    }
    // The parent's pages are on the page server, out of reach of the byte comparison.
    const parents = memProcs.map((c) => (opts.prevImagesDir !== undefined && !remote ? (parentsAhead.get(c.pid) ?? parentPages(dir, `pagemap-${c.pid}.img`, c.pid)) : undefined));
    const plans: PagePlan[] = [];
    for (const c of memProcs) {
      const tracked = tracking.valid ? tracking.trackedVmas(c.pid, c.vmas) : undefined;
      const sps = procs.find((x) => x.pid === c.pid)?.threads.map((th) => th.regs.regs.rsp) ?? [];
      // (the pre-copied pages' runs made once the task is let go, where the pages are captured)
      const plan = planPages(c.pid, c.vmas, tracked, tracking.covered(c.pid), sps, tracking.preCopied(c.pid), pool?.complete === true && !streamSnap);
      if (plan.holes) log.info(`pid ${c.pid}: ${plan.holes} unwritten pages have no entry in the parent's pagemap: copied`);
      plans.push(plan);
    }
    if (opts.wpSnapshot && tracking.active) log.info("--wp-snapshot stands aside: the write tracking of the incremental dump protects the same memory");
    const total = plans.reduce((sum, pl) => sum + pl.pages, 0);
    onEvent({ type: "memory-start", bytes: total * PAGE });
    // Copied now, written once the task is let go; or, when that is not possible or does
    // not fit in memory, written now (in slices, when compared with a parent).
    /** `base`: the bytes of the dump's pages before these (the progress events count them all) */
    const deferred: { c: Captured; out: PageTransport; parent: PageResolver | undefined; unchanged: BigUint64Array[]; base: number; snap?: WpSnapshot | undefined; inPlace?: InPlace }[] = [];
    // (a snapshot written in place holds only the unprotected pages: the pool's estimate)
    const fits = pool?.complete === true && (streamSnap || total * PAGE <= limit);
    if (pool?.complete && !fits) log.info(`${total * PAGE} bytes of pages are more than tscriu may hold in memory (${limit}): writing them while the task is frozen`);
    // Otherwise the pages stream while the task is frozen, into a spare pool (what was
    // populated already, grown on the thread pool while they stream): the task is let go once
    // it holds the rest (copyPages).
    let spare = early && !fits ? CapturePool.spare(limit, pool) : undefined;
    let before = 0;
    const progress = (base: number) => (done: number) => onEvent({ type: "memory-progress", done: base + done });
    for (const [i, c] of memProcs.entries()) {
      let plan = plans[i]!;
      if (lazyPool) {
        // copied now, as the frozen task holds them; its pagemap gets PE_LAZY entries
        const lazy = takeLazy(plan);
        const t0 = process.hrtime.bigint();
        const held = capturePages(c.pid, lazy, lazyPool, faults);
        readNs += process.hrtime.bigint() - t0;
        lazyStore.hold(c.pid, held.runs);
        stats.pages_lazy += BigInt(lazy.pages);
        if (lazyStore.pages * PAGE > limit) throw new DumpError("memory", pid, `--lazy-pages: ${lazyStore.pages * PAGE} bytes of lazy pages are more than tscriu may hold in memory here (${limit}, half of MemAvailable)`);
        log.info(`pid ${c.pid}: ${lazy.pages} lazy pages held for the lazy-pages daemon`);
      }
      const out = await openPages("pid", c.pid);
      stats.pages_scanned += BigInt(plan.scanned);
      const parent = parents[i];
      const base = before;
      before += plan.pages * PAGE;
      const t0 = process.hrtime.bigint();
      const snap = fits && snapshot ? await (protecting.get(c.pid) ?? protectFrozen(c.pid, c.vmas.filter(protectable))) : undefined;
      if (snap) snaps.push(snap);
      // A snapshot that could not protect falls back to the pool, which holds everything
      // unless it was sized for a snapshot written in place: then the pages stream now.
      if (snap || (fits && !streamSnap)) {
        const later = snap ? (s: Segment): boolean => !s.procMem && !s.fresh && snap.covers(s.addr, s.len) : undefined;
        deferred.push({ c: capturePages(c.pid, plan, pool!, faults, later, !streamSnap), out, parent, unchanged: plan.parentRanges, base, snap });
        readNs += process.hrtime.bigint() - t0;
        tracking.arm(c.pid, c.vmas, plan);
        continue;
      }
      if (early && !spare) spare = CapturePool.spare(limit, pool);
      plan = withLateSegments(plan);
      if (!parent && plan.parentRanges.length === 0) {
        const r = await copyPages(c.pid, plan, out, faults, progress(base), spare);
        readNs += r.readNs;
        if (r.rest) {
          const t0 = process.hrtime.bigint();
          const streamed = (plan.pages - r.rest.pages) * PAGE;
          deferred.push({ c: capturePages(c.pid, r.rest, spare!, faults), out, parent: undefined, unchanged: [], base: base + streamed });
          readNs += process.hrtime.bigint() - t0;
          stats.pages_written += BigInt(plan.pages - r.rest.pages);
          log.info(`pid ${c.pid}: ${plan.pages - r.rest.pages} pages written while frozen, the other ${r.rest.pages} copied into memory populated meanwhile`);
          tracking.arm(c.pid, c.vmas, plan);
          continue;
        }
        stats.pages_written += BigInt(plan.pages);
      } else {
        const slices = slicing?.pool ?? new CapturePool(SLICE, SLICE);
        const sink = new PageSink(out, parent, progress(base), plan.parentRanges, slicing?.stage);
        try {
          for (const slice of slicePlan(plan, SLICE)) {
            const t0 = process.hrtime.bigint();
            const got = capturePages(c.pid, slice, slices, faults);
            readNs += process.hrtime.bigint() - t0;
            await sink.add(got);
            await sink.drain();
            slices.recycle(got);
          }
          const r = await sink.finish();
          stats.pages_written += BigInt(r.written);
          stats.pages_skipped_parent += BigInt(r.skipped);
        } catch (e) {
          await sink.abort();
          throw e;
        }
      }
      await out.close(false);
      writeNs += out.writeNs;
      tracking.arm(c.pid, c.vmas, plan);
    }
    if (pool?.extra) log.info(`${pool.extra} bytes of memory populated while frozen: more pages to copy than estimated before the freeze`);
    pool?.drop();
    spare?.drop();
    if (deferred.length) log.info(`${total} pages copied in ${Number(readNs / 1000n)} us; written once the task is let go`);

    enter("images");
    // Built now, from the tree as it stands frozen (some entries read the tasks: pending
    // signals, robust lists, rseq); encoded and written below, after a task let go early.
    const built = treeImages({
      preDump,
      preDumpMode: opts.preDumpMode,
      pid,
      runId,
      lockMethod: netLock.method,
      procs,
      tree,
      files,
      fdState,
      shm,
      freezer,
      frozenAt,
      workDir,
      cgroupsIgnore: opts.cgroupsIgnore,
      cgroupRoots: opts.cgroupRoots,
      cgroupYard: opts.cgroupYard,
      cpuCap: opts.cpuCap,
    });

    endArmed();
    if (early) {
      stats.frozen_time = us(frozen.frozenAt) + armedUs;
      released = true;
      // (a snapshot without -R: the tree runs on until its images are on disk, its connections still locked)
      const why = snapKill ? releaseTree(tree, "resume") : letGo(finalState);
      if (why) throw new DumpError("release", pid, `the task could not be ${finalState === "stop" ? "left stopped" : "released"} before its pages were written: ${why}`);
      log.info(`task let go after ${stats.frozen_time} us frozen${armedUs ? ` (${armedUs} us of it ahead, for its userfaultfds)` : ""}; writing its pages`);
      // (meanwhile: awaited at the end)
      void smapsAhead?.close();
    }
    for (const d of deferred) withPreCopied(d.c);
    // Snapshots written in place go one process after another (each runs threads of its
    // own); a write of a later process waits until its own copy has started.
    let previous: Promise<unknown> = Promise.resolve();
    for (const d of deferred) {
      if (!d.snap) continue;
      if (streamSnap) {
        // its pagemap and the unprotected pages queued; the protected ones written in place meanwhile
        const sink = new PageSink(d.out, d.parent, progress(d.base), d.unchanged);
        const { holes, fd } = await sink.add(d.c);
        const snap = d.snap;
        // (after a failure of an earlier one, not started: the failure ends every protection)
        const streamed = previous.then(() => snap.stream(holes, fd));
        previous = streamed;
        // awaited below, or on failure; a rejection meanwhile is not unhandled
        void streamed.catch(() => undefined);
        d.inPlace = { sink, streamed };
        inPlace.push(d.inPlace);
        continue;
      }
      const t0 = process.hrtime.bigint();
      const early = d.snap.copy(d.c, d.c.reserved);
      readNs += process.hrtime.bigint() - t0;
      log.info(`pid ${d.c.pid}: write-protect snapshot copied with the task running, ${early} ${AT_WRITES}`);
    }
    for (const [name, type, entries] of built) await images.write(name, type, entries);
    const writeStart = process.hrtime.bigint();
    for (const d of deferred) {
      if (d.inPlace) {
        const r = await d.inPlace.sink.finish();
        const early = await d.inPlace.streamed;
        // the sink counted the unprotected pages only: now all of this process's are out
        progress(d.base)(d.c.pages * PAGE);
        log.info(`pid ${d.c.pid}: write-protect snapshot written in place with the task running, ${early} ${AT_WRITES}`);
        stats.pages_written += BigInt(r.written);
        await d.out.close(false);
        d.c.runs.length = 0;
        continue;
      }
      const r = await writeCaptured(d.c, d.out, d.parent, progress(d.base), d.unchanged);
      stats.pages_written += BigInt(r.written);
      stats.pages_skipped_parent += BigInt(r.skipped);
      await d.out.close(false);
      writeNs += d.out.writeNs;
      d.c.runs.length = 0;
    }
    if (deferred.length) writeNs = process.hrtime.bigint() - writeStart;
    if (remote) {
      // answered once the server holds every page (tscriu's server: on its disk)
      enter("page-server");
      await remote.close();
    }
    onEvent({ type: "memory-done" });
    stats.page_pipes = BigInt(Math.max(1, Math.ceil((total * PAGE) / (8 << 20))));
    stats.page_pipe_bufs = stats.page_pipes;
    stats.memdump_time = Number(readNs / 1000n);
    stats.memwrite_time = deferred.length ? Number(writeNs / 1000n) : Math.max(0, Math.min(Number(writeNs / 1000n), us(memStart) - stats.memdump_time));
    log.info(`${stats.pages_written} pages written, ${stats.pages_skipped_parent} found in the parent (${stats.pages_scanned} scanned) in ${us(memStart)} us`);
    if (opts.autoDedup && opts.prevImagesDir !== undefined) {
      const d = await dedup(dir, log);
      log.info(`--auto-dedup: ${d.bytes} bytes punched from ${d.files} pages files of the parent chain`);
    }

    enter("post-dump");
    await runActions(scripts, opts.onAction, "post-dump", dir, pid);

    enter("sync");
    // Killing the task destroys the only other copy of its state: the images must be on disk first.
    if (finalState === "kill") await images.syncAll();
  } catch (e) {
    const err = asDumpError(step, pid, e);
    lazyServer?.close();
    await smapsAhead?.close();
    // images being written on the thread pool done before anything is removed
    await images.flushSoon().catch(() => undefined);
    // protections still under way finished (then removed below with the others)
    for (const p of protecting.values()) {
      const s = await p.catch(() => undefined);
      if (s && !snaps.includes(s)) snaps.push(s);
    }
    // the threads writing in place done before their userfaultfd and pages file close
    await Promise.allSettled(inPlace.map((x) => x.streamed));
    for (const x of inPlace) await x.sink.abort();
    for (const sc of scratches) {
      const at = sc.range.start;
      try {
        sc.unmap();
      } catch (u) {
        err.notes.push(`unmapping tscriu's scratch area at 0x${at.toString(16)} in the task: ${(u as Error).message}`);
      }
    }
    // Unprotected before the task may run (or, let go already, before it waits on a write for good).
    endArmed(err.notes);
    for (const s of snaps) {
      const why = s.end();
      if (why) err.notes.push(`removing the write-protection of pid ${s.pid}: ${why}`);
    }
    const untracked = tracking.release();
    if (untracked) err.notes.push(`ending the write tracking: ${untracked}`);
    for (const p of pages) await p.abort();
    remote?.abort();
    // Connections out of repair mode and unlocked before their tasks run again (also
    // after an early -s release: the images that would restore them are not complete).
    try {
      freeConnections();
    } catch (u) {
      err.notes.push(`undoing the dump's changes to the task's connections: ${(u as Error).message}`);
    }
    // Let go early, the task runs on (or stays stopped, -s) as asked: only the images failed.
    const why = released ? undefined : releaseTree(tree, "resume");
    if (why) err.notes.push(`resuming the dumped processes after the failure: ${why}`);
    files.links.remove(log);
    if (createdDir) rmSync(dir, { recursive: true, force: true });
    else rmSync(join(dir, "parent"), { force: true });
    throw err;
  }

  if (!released) stats.frozen_time = us(frozen.frozenAt) + armedUs;
  const why = !released ? letGo(finalState) : snapKill ? killRunOn() : undefined;
  await smapsAhead?.close();
  // As criu: the links made for the restore go when the tasks run on (a post-dump script
  // keeps the file system as the images need it); killed or stopped, they stay.
  if (finalState === "resume") files.links.remove(log);
  if (why) {
    tracking.release();
    lazyServer?.close();
    throw new DumpError("release", pid, `images are complete, but the task could not be ${finalState === "kill" ? "killed" : "released"}: ${why}`);
  }
  const untracked = await tracking.commit(dir, new Map([...pidPages].map(([p, out]) => [p, out.entries])));
  if (untracked) log.warn(`ending the write tracking: ${untracked}`);
  log.info(`${preDump ? "Pre-dumping" : "Dumping"} finished successfully (${finalState === "kill" ? "task killed" : finalState === "stop" ? "task left stopped" : "task left running"})`);
  try {
    await images.write("stats-dump", "STATS", [statsEntry(stats)], workDir);
  } catch (e) {
    // As criu: the dump itself is done; only the statistics are missing.
    log.warn(`stats-dump not written: ${(e as Error).message}`);
  }
  let lazy: LazyServeResult | undefined;
  if (lazyServer) {
    lazyPool?.drop();
    onEvent({ type: "lazy-pages", where: lazyServer.where, pages: lazyStore.pages });
    try {
      lazy = await lazyServer.serve(lazyStore, opts.statusFd);
    } catch (e) {
      throw new DumpError("lazy-pages", pid, `the images are complete and the tasks ${finalState === "kill" ? "killed" : finalState === "stop" ? "left stopped" : "running"}, but serving their lazy pages failed: ${(e as Error).message}`, { cause: e });
    }
  }
  return { pid, imagesDir: dir, stats, files: images.written, lazy };
}
