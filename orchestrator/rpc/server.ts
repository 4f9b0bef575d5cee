// The requests of criu's RPC, served on one connection: `tscriu swrk FD` serves the
// socket its client gave it, a service worker the connection it accepted. What tscriu
// cannot do yet (pre-dump, the page server, lazy pages…) is refused by name; every
// criu_opts field is honoured or refused (opts.ts). A failure is answered with
// success=false, cr_errno and cr_errmsg (the first error, as criu answers with its first
// logged error), and the connection ends unless the request may keep it open.

import { existsSync, realpathSync } from "node:fs";
import { join } from "node:path";
import type { PageServerAddress } from "../page-server/send.js";
import type { TlsOptions } from "../page-server/channel.js";
import type { LazyServeOptions } from "../page-server/lazy-serve.js";
import { bridge } from "../../host-bridge/load.js";
import { fileSink, Logger, type LogLevel, type LogSink, stderrSink } from "../log.js";
import { VERSION } from "../version.js";
import type { CriuCommand } from "../cli/options.js";
import { BadRequest, type CriuReq, type CriuResp, RpcChannel } from "./channel.js";
import { parseExternalUnix } from "../fds/unix-external.js";
import { PidfdStore } from "./pidfd-store.js";
import { rpcCgroupMode, rpcCgroupRoots } from "../cgroup/options.js";
import { cpuCapText, type CriuOpts, refuseOpts, type RpcMode } from "./opts.js";
import type { PeerCheck } from "./peer.js";

/** The criu release whose images, options and RPC tscriu follows (VERSION's answer). */
export const CRIU_COMPAT = { major: 4, minor: 2 } as const;

const EBADRQC = 56;
const ESRCH = 3;
const EEXIST = 17;
const ENOTSUP = 95;

/** What each request is to criu's command line (for the option table) and whether tscriu serves it. */
const REQUESTS: Readonly<Record<string, { command?: CriuCommand; keepOpen: boolean; notYet?: string }>> = {
  DUMP: { command: "dump", keepOpen: false },
  RESTORE: { command: "restore", keepOpen: false },
  CHECK: { command: "check", keepOpen: false },
  PRE_DUMP: { command: "pre-dump", keepOpen: false },
  SINGLE_PRE_DUMP: { command: "pre-dump", keepOpen: false },
  PAGE_SERVER: { command: "page-server", keepOpen: true },
  PAGE_SERVER_CHLD: { command: "page-server", keepOpen: true },
  CPUINFO_DUMP: { command: "cpuinfo dump", keepOpen: true },
  CPUINFO_CHECK: { command: "cpuinfo check", keepOpen: true },
  FEATURE_CHECK: { keepOpen: true },
  VERSION: { keepOpen: true },
  WAIT_PID: { keepOpen: false },
};

/**
 * criu_features as tscriu answers FEATURE_CHECK: what tscriu itself can do on this kernel.
 * mem_track: clients ask it before iterative pre-dumps, which tscriu makes on any kernel
 * (it finds changed pages by comparing them with the parent's, not by soft-dirty bits).
 * lazy_pages: a lazy restore needs userfaultfd (its sysctl is there when the kernel has
 * it; the fork/mremap/munmap events came with Linux 4.11). pidfd_store: pidfd_open and
 * pidfd_getfd (Linux 5.6), which tscriu needs anyway.
 */
const FEATURES: Readonly<Record<"mem_track" | "lazy_pages" | "pidfd_store", () => boolean>> = {
  mem_track: () => true,
  lazy_pages: () => existsSync("/proc/sys/vm/unprivileged_userfaultfd"),
  pidfd_store: () => true,
};

/** An error of a request: answered with cr_errno (when known) and the message. */
export class RpcError extends Error {
  override readonly name = "RpcError";
  constructor(
    message: string,
    readonly errno?: number,
  ) {
    super(message);
  }
}

/** The errno a failure stands for, as criu reports it: ESRCH for a gone task, EEXIST for a PID in use. */
function errnoOf(e: unknown): number | undefined {
  const msg = e instanceof Error ? e.message : "";
  if (e instanceof RpcError) return e.errno;
  if (/^dump: check of pid \d+ failed: no such process/.test(msg)) return ESRCH;
  if (/PID \d+ is taken by|it must be free to restore/.test(msg)) return EEXIST;
  for (let c: unknown = e; c instanceof Error; c = c.cause) {
    const n = (c as { errno?: unknown }).errno;
    if (typeof n === "number" && n !== 0) return Math.abs(n);
  }
  return undefined;
}

/** A log that keeps its first error for cr_errmsg, written to the request's log file or stderr. */
class RequestLog {
  first: string | undefined;
  readonly logger: Logger;
  constructor(level: number, sink: LogSink) {
    const keep: LogSink = {
      write: (l) => {
        if (this.first === undefined && /\bError \(/.test(l)) this.first = l.replace(/^\(\S+\) /, "").replace(/^Error \([^)]*\): /, "").trimEnd();
        sink.write(l);
      },
      close: () => sink.close(),
    };
    this.logger = new Logger(Math.max(0, Math.min(4, level)) as LogLevel, keep);
  }
}

export interface ServeOptions {
  mode: RpcMode;
  /** the client (SO_PEERCRED): images_dir_fd and work_dir_fd are its fds */
  peer: { pid: number; uid: number; gid: number };
  /** who may ask what (service: the peer check); none: the client is trusted (swrk) */
  access?: PeerCheck | undefined;
  /** the process's own log (-v, -o): protocol errors, one line per request */
  log: Logger;
}

/**
 * Serves requests on `fd` until the client closes it or a request ends the connection.
 * Resolves to 0 when every request succeeded, 1 otherwise (swrk's exit code).
 */
export async function serve(fd: number, o: ServeOptions): Promise<number> {
  const ch = new RpcChannel(fd);
  const log = o.log.module("rpc");
  let status = 0;
  for (;;) {
    let req: CriuReq | undefined;
    try {
      req = ch.recv();
    } catch (e) {
      const msg = e instanceof BadRequest ? e.message : `cannot read a request: ${(e as Error).message}`;
      log.error(msg);
      trySend(ch, { type: "EMPTY", success: false, cr_errno: EBADRQC, cr_errmsg: msg }, log);
      return 1;
    }
    if (req === undefined) return status;
    const type = req.type;
    const name = typeof type === "string" ? type : `request type ${type}`;
    log.info(`${name} from pid ${o.peer.pid} (uid ${o.peer.uid})`);
    const spec = typeof type === "string" ? REQUESTS[type] : undefined;
    let resp: CriuResp;
    let keep = false;
    try {
      if (!spec) {
        throw new RpcError(type === "NOTIFY" ? "a NOTIFY request outside a notification (a client answers NOTIFY only when tscriu sends one)" : type === "EMPTY" ? "an EMPTY request" : `unknown request type ${type}`, EBADRQC);
      }
      if (req.keep_open && !spec.keepOpen) throw new RpcError(`keep_open is not allowed with ${name} (as in criu: only VERSION, FEATURE_CHECK, CPUINFO_DUMP/CHECK and the page server keep the connection)`, EBADRQC);
      keep = req.keep_open === true;
      if (spec.notYet !== undefined) throw new RpcError(`${name} is not supported yet by tscriu: ${spec.notYet}`, ENOTSUP);
      o.access?.request(req);
      resp = await handle(ch, req, spec.command, o);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      log.error(`${name}: ${msg}`);
      resp = { type: spec ? (type) : "EMPTY", success: false, cr_errmsg: msg };
      const n = errnoOf(e);
      if (n !== undefined) resp.cr_errno = n;
      if (type === "DUMP") resp.dump = { restored: false };
      if (type === "RESTORE") resp.restore = { pid: -1 };
      keep = false;
    }
    if (!resp.success) status = 1;
    if (!trySend(ch, resp, log)) return 1;
    if (!keep) return status;
  }
}

function trySend(ch: RpcChannel, resp: CriuResp, log: ReturnType<Logger["module"]>): boolean {
  try {
    ch.send(resp);
    return true;
  } catch (e) {
    log.warn(`the response to ${String(resp.type)} could not be sent: ${(e as Error).message}`);
    return false;
  }
}

/** /proc/PEER/fd/N: an fd of the client, as criu opens images_dir_fd and work_dir_fd. */
function clientFd(peer: number, fd: number): string {
  return `/proc/${peer}/fd/${fd}`;
}

interface Dirs {
  images: string | undefined;
  work: string | undefined;
}

function dirsOf(opts: CriuOpts, peer: number, need: boolean): Dirs {
  const images = opts.images_dir_fd !== -1 ? clientFd(peer, opts.images_dir_fd) : opts.images_dir;
  if (images === undefined && need) throw new RpcError("neither images_dir_fd nor images_dir was given", EBADRQC);
  const work = opts.work_dir_fd !== undefined ? clientFd(peer, opts.work_dir_fd) : images;
  return { images, work };
}

/** The request's log: log_file in the work dir (criu's default name criu.log), or stderr. */
function requestLog(opts: CriuOpts, dirs: Dirs): RequestLog {
  const level = opts.log_level ?? 2;
  if (opts.log_to_stderr) return new RequestLog(level, stderrSink());
  const name = opts.log_file ?? "criu.log";
  if (name.includes("/")) throw new RpcError(`criu_opts.log_file ${JSON.stringify(name)}: no subdirectories are allowed in the log file name (use work_dir_fd)`, EBADRQC);
  if (dirs.work === undefined) return new RequestLog(level, stderrSink());
  return new RequestLog(level, fileSink(join(dirs.work, name)));
}

async function handle(ch: RpcChannel, req: CriuReq, command: CriuCommand | undefined, o: ServeOptions): Promise<CriuResp> {
  const opts: CriuOpts = req.opts ?? { images_dir_fd: -1 };
  if (command !== undefined) {
    const refused = refuseOpts(opts, command, o.mode);
    if (refused.length > 0) {
      logRefusals(opts, o, String(req.type), refused);
      throw new RpcError(refused.join("; "), EBADRQC);
    }
  }
  switch (req.type) {
    case "VERSION":
      // No gitid, as a criu release (criu sends one only when built from git): go-criu's
      // GetCriuVersion, and runc through it, read a gitid as "after this release" and add
      // one to the minor number, which made tscriu criu 4.3 to them.
      return {
        type: "VERSION",
        success: true,
        version: { major_number: CRIU_COMPAT.major, minor_number: CRIU_COMPAT.minor, name: `tscriu ${VERSION} (criu ${CRIU_COMPAT.major}.${CRIU_COMPAT.minor} compatible)` },
      };
    case "FEATURE_CHECK": {
      const asked = req.features ?? {};
      const features: CriuResp["features"] = {};
      for (const k of Object.keys(FEATURES) as (keyof typeof FEATURES)[]) features[k] = asked[k] === true ? FEATURES[k]() : false;
      return { type: "FEATURE_CHECK", success: true, features };
    }
    case "WAIT_PID":
      return waitPid(req.pid);
    case "CHECK":
      return await check(opts, o);
    case "CPUINFO_DUMP":
    case "CPUINFO_CHECK":
      return await cpuinfo(req.type, opts, o);
    case "DUMP":
      return await dump(ch, opts, o);
    case "PRE_DUMP":
    case "SINGLE_PRE_DUMP":
      return await dump(ch, opts, o, req.type);
    case "RESTORE":
      return await restore(ch, opts, o);
    case "PAGE_SERVER":
    case "PAGE_SERVER_CHLD":
      return await pageServer(req.type, opts, o);
    default:
      throw new RpcError(`unknown request type ${String(req.type)}`, EBADRQC);
  }
}

/**
 * Writes the refused options to the request's log too, each naming its field: criu opens
 * its log before it judges the options, and runc reports no cr_errmsg, only "criu failed:
 * type DUMP errno 56" and the log file's path, so the log is where its user looks.
 */
function logRefusals(opts: CriuOpts, o: ServeOptions, name: string, refused: readonly string[]): void {
  let rl: RequestLog;
  try {
    rl = requestLog(opts, dirsOf(opts, o.peer.pid, false));
  } catch (e) {
    // the answer still carries the refusals
    o.log.module("rpc").warn(`${name}: the refusal is not in the request's log, which cannot be opened: ${(e as Error).message}`);
    return;
  }
  const m = rl.logger.module("rpc");
  for (const r of refused) m.error(`${name}: ${r}`);
  rl.logger.close();
}

/** Runs `body` with the request's log; its first error becomes the answer's message. */
async function withLog(opts: CriuOpts, dirs: Dirs, body: (log: Logger) => Promise<CriuResp>): Promise<CriuResp> {
  const rl = requestLog(opts, dirs);
  try {
    const r = await body(rl.logger);
    if (!r.success && r.cr_errmsg === undefined && rl.first !== undefined) r.cr_errmsg = rl.first;
    return r;
  } catch (e) {
    // what failed before the work logged anything (a refused option) is in its log too
    if (rl.first === undefined && e instanceof Error) rl.logger.module("rpc").error(e.message);
    if (rl.first !== undefined && e instanceof Error && !(e instanceof RpcError)) {
      // the log's first error names the step; the thrown one may repeat it
      throw Object.assign(new RpcError(rl.first, errnoOf(e)), { cause: e });
    }
    throw e;
  } finally {
    rl.logger.close();
  }
}

function waitPid(pid: number | undefined): CriuResp {
  if (pid === undefined || pid <= 0 || pid > 0x7fffffff) throw new RpcError(`WAIT_PID needs criu_req.pid (got ${pid ?? "none"})`, EBADRQC);
  let st;
  try {
    st = bridge().waitpid(pid, 0);
  } catch (e) {
    throw Object.assign(new RpcError(`cannot wait for pid ${pid}: ${(e as Error).message}`, errnoOf(e)), { cause: e });
  }
  if (!st) throw new RpcError(`cannot wait for pid ${pid}`);
  return { type: "WAIT_PID", success: true, status: st.status };
}

async function check(opts: CriuOpts, o: ServeOptions): Promise<CriuResp> {
  const dirs = dirsOf(opts, o.peer.pid, false);
  return withLog(opts, dirs, async (log) => {
    const { check } = await import("../check.js");
    const r = await check([1], log.module("check"));
    if (r.verdict === 0) return { type: "CHECK", success: true };
    const m = r.missing[0]!;
    return { type: "CHECK", success: false, cr_errmsg: `${m.feature.name} is not supported: ${m.why} (tscriu uses it for ${m.feature.use})` };
  });
}

async function cpuinfo(type: "CPUINFO_DUMP" | "CPUINFO_CHECK", opts: CriuOpts, o: ServeOptions): Promise<CriuResp> {
  const dirs = dirsOf(opts, o.peer.pid, true);
  return withLog(opts, dirs, async (log) => {
    const { cpuinfoCheck, cpuinfoDump } = await import("../cpuinfo/cpuinfo.js");
    const m = log.module("cpuinfo");
    if (type === "CPUINFO_DUMP") {
      await cpuinfoDump(dirs.images!);
      return { type, success: true };
    }
    const r = await cpuinfoCheck(dirs.images!, opts.cpu_cap !== undefined ? cpuCapText(opts.cpu_cap) : undefined);
    for (const msg of r.messages) m.error(msg);
    // criu answers an incompatible CPU with ENOTSUP
    return r.ok ? { type, success: true } : { type, success: false, cr_errno: ENOTSUP, cr_errmsg: r.messages.join("; ") || "the CPU is not compatible with the image" };
  });
}

/** criu_notify for each action-script stage; the client answers NOTIFY with notify_success. */
function notifier(ch: RpcChannel, log: Logger): (action: string, pid: number | undefined) => void {
  const m = log.module("rpc");
  return (action, pid) => {
    // criu names the task only where a client needs it: setup-namespaces and post-restore
    const withPid = pid !== undefined && (action === "setup-namespaces" || action === "post-restore");
    m.debug(`notify ${action}${withPid ? ` (pid ${pid})` : ""}`);
    ch.send({ type: "NOTIFY", success: true, notify: { script: action, ...(withPid ? { pid } : {}) } });
    const answer = ch.recv();
    if (answer === undefined) throw new Error(`the RPC client closed the connection at the ${action} notification`);
    if (answer.type !== "NOTIFY" || answer.notify_success !== true) throw new Error(`the RPC client reported the ${action} notification failed`);
  };
}

/** criu_opts.network_lock (criu's enum: IPTABLES 1, NFTABLES 2, SKIP 3) as dump takes it. */
function lockMethodOf(v: string | number | undefined): "iptables" | "nftables" | "skip" | undefined {
  if (v === undefined) return undefined;
  const name = typeof v === "number" ? ({ 1: "IPTABLES", 2: "NFTABLES", 3: "SKIP" } as Record<number, string>)[v] : v;
  if (name === "IPTABLES" || name === "NFTABLES" || name === "SKIP") return name.toLowerCase() as "iptables" | "nftables" | "skip";
  throw new Error(`criu_opts.network_lock ${v} is not one of criu's methods (IPTABLES, NFTABLES, SKIP)`);
}

/** DUMP, or a pre-dump (PRE_DUMP, SINGLE_PRE_DUMP: memory only, the tasks run on). */
async function dump(ch: RpcChannel, opts: CriuOpts, o: ServeOptions, preDump?: "PRE_DUMP" | "SINGLE_PRE_DUMP"): Promise<CriuResp> {
  const dirs = dirsOf(opts, o.peer.pid, true);
  // as criu: no pid dumps the client itself
  const pid = opts.pid ?? o.peer.pid;
  return withLog(opts, dirs, async (log) => {
    const [{ dump }, { formatStats }, { newRunId }] = await Promise.all([import("../dump/dump.js"), import("../dump/stats.js"), import("../dump/write.js")]);
    const store = opts.pidfd_store_sk !== undefined ? PidfdStore.open(o.peer.pid, opts.pidfd_store_sk, newRunId(), opts.parent_img !== undefined, log.module("rpc")) : undefined;
    const r = await dump({
      pid,
      imagesDir: dirs.images!,
      workDir: dirs.work,
      leaveRunning: opts.leave_running === true,
      leaveStopped: opts.leave_stopped === true,
      shellJob: opts.shell_job === true,
      freezeCgroup: opts.freeze_cgroup,
      cgroupsIgnore: rpcCgroupMode(opts.manage_cgroups_mode) === "ignore",
      cgroupRoots: rpcCgroupRoots(opts.cg_root),
      cgroupYard: opts.cgroup_yard,
      tcpEstablished: opts.tcp_established === true,
      tcpClose: opts.tcp_close === true,
      skipInFlight: opts.tcp_skip_in_flight === true,
      networkLock: lockMethodOf(opts.network_lock),
      fileLocks: opts.file_locks === true,
      externalUnix: parseExternalUnix(opts.ext_unix_sk, opts.external, opts.unix_sk_ino?.map((u) => u.inode)),
      prevImagesDir: opts.parent_img,
      preDump: preDump !== undefined,
      trackMem: opts.track_mem === true,
      preDumpMode: opts.pre_dump_mode === undefined ? undefined : opts.pre_dump_mode === "VM_READ" || opts.pre_dump_mode === 2 ? "read" : "splice",
      autoDedup: opts.auto_dedup === true,
      timeoutSec: opts.timeout,
      ghostLimit: opts.ghost_limit,
      linkRemap: opts.link_remap === true,
      forceIrmap: opts.force_irmap === true,
      irmapScanPaths: opts.irmap_scan_paths ?? [],
      cpuCap: opts.cpu_cap !== undefined ? cpuCapText(opts.cpu_cap) : undefined,
      onAction: opts.notify_scripts ? notifier(ch, log) : undefined,
      pageServer: opts.lazy_pages ? undefined : pageServerOf(opts, o),
      lazyPages: opts.lazy_pages ? lazyPagesOf(opts, log.module("rpc")) : undefined,
      pidfdStore: store,
      log,
    }).finally(() => store?.close());
    if (opts.display_stats) log.log(0, "", formatStats(r.stats).trimEnd());
    if (preDump) return { type: preDump, success: true };
    return { type: "DUMP", success: true, dump: { restored: false } };
  });
}

/**
 * criu_opts.ps of a dump: the page server to send the pages to. Its fd (a socket already
 * connected) is one of this process's own, inherited from the client: swrk only, as criu.
 */
function pageServerOf(opts: CriuOpts, o: ServeOptions): PageServerAddress | undefined {
  const ps = opts.ps;
  if (!ps) return undefined;
  if (ps.fd !== undefined && o.mode !== "swrk") throw new RpcError("criu_opts.ps.fd is an fd the client passes to swrk; a standalone service cannot use one (as criu)", EBADRQC);
  return { address: ps.address, port: ps.port, psSocket: ps.fd, tls: tlsOfOpts(opts) };
}

/**
 * criu_opts.lazy_pages of a DUMP: as criu's service, ps gives only the port to listen on
 * for the lazy-pages daemon (any address; its address and fd are not read), and the dump
 * answers once the daemon has closed.
 */
function lazyPagesOf(opts: CriuOpts, log: { warn(m: string): void }): LazyServeOptions {
  if (opts.ps?.address !== undefined || opts.ps?.fd !== undefined) log.warn("criu_opts.lazy_pages: ps.address and ps.fd are not used (criu listens on any address, at ps.port)");
  return { port: opts.ps?.port || undefined, tls: tlsOfOpts(opts) };
}

/** criu_opts.tls and its files. */
function tlsOfOpts(opts: CriuOpts): TlsOptions | undefined {
  if (!opts.tls) return undefined;
  return { cacert: opts.tls_cacert, cacrl: opts.tls_cacrl, cert: opts.tls_cert, key: opts.tls_key, noCnVerify: opts.tls_no_cn_verify === true };
}

/**
 * PAGE_SERVER, PAGE_SERVER_CHLD: a page server started for the client (tscriu
 * page-server, detached, one session), answered with its pid and port once it listens.
 */
async function pageServer(type: "PAGE_SERVER" | "PAGE_SERVER_CHLD", opts: CriuOpts, o: ServeOptions): Promise<CriuResp> {
  const dirs = dirsOf(opts, o.peer.pid, true);
  // the client's fds are read through /proc while it runs; the server keeps real paths
  const images = realpathSync(dirs.images!);
  const work = dirs.work !== undefined ? realpathSync(dirs.work) : images;
  if (opts.ps?.fd !== undefined) throw new RpcError("criu_opts.ps.fd is not supported yet by tscriu page-server over the RPC (give the address and port)", EBADRQC);
  if (opts.log_file?.includes("/")) throw new RpcError(`criu_opts.log_file ${JSON.stringify(opts.log_file)}: no subdirectories are allowed in the log file name (use work_dir_fd)`, EBADRQC);
  if (opts.lazy_pages) {
    // as page-server --lazy-pages: the served dump is read, not written
    const wrong = [opts.parent_img !== undefined && "parent_img", opts.auto_dedup === true && "auto_dedup"].filter(Boolean);
    if (wrong.length) throw new RpcError(`criu_opts.${wrong.join(" and criu_opts.")} ${wrong.length > 1 ? "are" : "is"} for receiving a dump, not for lazy_pages (serving one)`, EBADRQC);
  }
  const { startPageServer } = await import("../page-server/spawn.js");
  const r = await startPageServer({
    imagesDir: images,
    address: opts.ps?.address,
    port: opts.ps?.port || undefined,
    prevImagesDir: opts.parent_img,
    autoDedup: opts.auto_dedup === true,
    lazyPages: opts.lazy_pages === true,
    tls: tlsOfOpts(opts),
    logFile: opts.log_to_stderr ? undefined : join(work, opts.log_file ?? "page-server.log"),
    level: opts.log_level ?? 2,
  });
  return { type, success: true, ps: { pid: r.pid, port: r.port } };
}

async function restore(ch: RpcChannel, opts: CriuOpts, o: ServeOptions): Promise<CriuResp> {
  const dirs = dirsOf(opts, o.peer.pid, true);
  return withLog(opts, dirs, async (log) => {
    const [{ restore }, { formatStats }] = await Promise.all([import("../restore/restore.js"), import("../restore/stats.js")]);
    // As criu: an RPC restore is always detached; rst_sibling makes the task the client's child.
    const r = await restore({
      imagesDir: dirs.images!,
      workDir: dirs.work,
      detached: true,
      sibling: opts.rst_sibling === true,
      shellJob: opts.shell_job === true,
      tcpEstablished: opts.tcp_established === true,
      tcpClose: opts.tcp_close === true,
      extUnixSk: opts.ext_unix_sk === true,
      skipFileRwxCheck: opts.skip_file_rwx_check === true,
      fileLocks: opts.file_locks === true,
      autoDedup: opts.auto_dedup === true,
      lazyPages: opts.lazy_pages === true,
      leaveStopped: opts.leave_stopped === true,
      cgroupMode: rpcCgroupMode(opts.manage_cgroups_mode),
      cgroupRoots: rpcCgroupRoots(opts.cg_root),
      cgroupYard: opts.cgroup_yard,
      root: opts.root,
      inheritFds: (opts.inherit_fd ?? []).map((x) => `fd[${x.fd}]:${x.key}`),
      cpuCap: opts.cpu_cap !== undefined ? cpuCapText(opts.cpu_cap) : undefined,
      onAction: opts.notify_scripts ? notifier(ch, log) : undefined,
      log,
    });
    if (opts.display_stats) log.log(0, "", formatStats(r.stats).trimEnd());
    return { type: "RESTORE", success: true, restore: { pid: r.pid } };
  });
}
