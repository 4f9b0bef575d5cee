// tscriu service: criu's RPC on a unix SOCK_SEQPACKET socket, one worker process per
// connection as criu forks one. Node cannot fork, so the service keeps one spare worker
// started ahead, its modules loaded, blocked in accept(2) on the listening socket; the
// worker that takes a connection tells the service (a line on a pipe), which starts the
// next spare (at once, at the lowest priority, where it may raise it back), and serves that one
// client with its own rights check (peer.ts) until it closes, then exits. A warm request
// thus costs no start-up; connections that arrive while the next spare starts wait in the
// listen backlog.

import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, lstatSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { POLL } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { CliContext } from "../cli/run.js";
import { childEnv, inheritedListenFd, signalReady, startDaemon, statusFdOf } from "../cli/daemon.js";

/** criu's default when --address is not given (with a warning, as criu). */
const DEFAULT_ADDRESS = "criu_service.socket";
const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
/** the fds a worker gets the listening socket and its pipe on */
export const LISTEN_FD = 3;
export const REPORT_FD = 4;

export interface ServiceOptions {
  address: string | undefined;
  daemon: boolean;
  statusFd: number | undefined;
  pidfile: string | undefined;
  /** the service's -o file, which its workers append to too (else their stderr) */
  logFile: string | undefined;
  /** the command line, for the daemon to run again without -d */
  argv: readonly string[];
}

/** Binds and listens: the socket file is made 0600 (umask 077 while it is bound, then chmod). */
function listenOn(path: string): number {
  // criu unlinks whatever is there; tscriu replaces only an old socket (a mistyped
  // --address must not remove a file as root).
  let there;
  try {
    there = lstatSync(path);
  } catch {
    // not there
  }
  if (there && !there.isSocket()) throw new Error(`${path} exists and is not a socket; tscriu replaces only an old service socket`);
  if (there) unlinkSync(path);
  const fd = bridge().socket(AF_UNIX, SOCK_SEQPACKET);
  const old = process.umask(0o077);
  try {
    bridge().unixBind(fd, Buffer.from(`${path}\0`));
  } finally {
    process.umask(old);
  }
  chmodSync(path, 0o600);
  bridge().listen(fd, 16);
  return fd;
}

function workerCommand(): { file: string; execArgv: string[] } {
  const url = new URL(import.meta.url.endsWith(".ts") ? "./worker.ts" : "./worker.js", import.meta.url);
  return { file: fileURLToPath(url), execArgv: process.execArgv };
}

export async function runService(o: ServiceOptions, ctx: CliContext): Promise<number> {
  const log = ctx.log.module("service");
  const inherited = inheritedListenFd();
  let listenFd: number;
  if (inherited !== undefined) {
    listenFd = inherited;
  } else {
    if (o.address === undefined) log.warn(`binding to ${DEFAULT_ADDRESS} in the current directory (--address PATH names the socket)`);
    const path = resolve(o.address ?? DEFAULT_ADDRESS);
    try {
      listenFd = listenOn(path);
    } catch (e) {
      log.error(`cannot listen on ${path}: ${(e as Error).message}`);
      return 1;
    }
    log.info(`The service socket is bound to ${path}`);
    if (o.daemon) {
      startDaemon(listenFd, o);
      return 0;
    }
  }
  if (o.pidfile !== undefined) writeFileSync(o.pidfile, `${process.pid}`);
  return await acceptLoop(listenFd, statusFdOf(o), o.logFile, ctx);
}

/**
 * How long after a worker took its client the next spare is started at the latest: at
 * once where it runs at the lowest priority (SPARE_NICE), else a while later.
 */
const NEXT_SPARE_MS = 100;
/**
 * A spare boots and warms up at the lowest priority, so that it can start as soon as the
 * worker before it has taken its client and still take no CPU from that client's request.
 * A client's second request (a restore right after its dump) then finds it started: the
 * spare started later was still booting as it came, and made it wait (1,000 TCP
 * connections: 200 ms against 167 with the spare ready). It takes the service's own
 * priority back once it has a client (worker.ts, told it by SPARE_NICE_BACK_ENV). Only
 * where the service may raise a priority again (canRaisePriority).
 */
export const SPARE_NICE = 19;
/** The priority a worker takes back once it has a client; unset: it was never lowered. */
export const SPARE_NICE_BACK_ENV = "TSCRIU_SPARE_NICE_BACK";

/**
 * Whether this process may raise a priority again: setpriority wants CAP_SYS_NICE in the
 * initial user namespace for that (root in a container's user namespace may lower a
 * priority and not raise it back: its worker would serve at the lowest one).
 */
export function canRaisePriority(): boolean {
  try {
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "latin1"))?.[1];
    const CAP_SYS_NICE = 23n;
    if (capEff === undefined || !((BigInt(`0x${capEff}`) >> CAP_SYS_NICE) & 1n)) return false;
    return readFileSync("/proc/self/uid_map", "latin1").trim().split(/\s+/).join(" ") === "0 0 4294967295";
  } catch {
    return false;
  }
}
/** How often the service looks for a client waiting while its spare is not ready. */
const BOOST_POLL_MS = 20;

/** Every thread of `pid` at nice `nice` (each thread has its own). */
export function renice(pid: number, nice: number, warn?: (msg: string) => void): void {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return; // gone
  }
  for (const tid of tids) {
    try {
      setPriority(Number(tid), nice);
    } catch (e) {
      warn?.(`thread ${tid} of ${pid} keeps its priority: ${(e as Error).message}`);
    }
  }
}

/** Tells a worker its service's pid: a spare ends with the service (worker.ts). */
export const SERVICE_PID_ENV = "TSCRIU_SERVICE_PID";

/** How long a stopping service waits for its spare to clean up before it kills it. */
const SPARE_STOP_MS = 5000;

async function acceptLoop(listenFd: number, statusFd: number | undefined, logFile: string | undefined, ctx: CliContext): Promise<number> {
  const log = ctx.log.module("service");
  const w = workerCommand();
  let spare: ChildProcess | undefined;
  let stopping = false;
  let quickFailures = 0;
  const env = childEnv({ TSCRIU_RPC_LEVEL: String(ctx.log.level), [SERVICE_PID_ENV]: String(process.pid) });
  // the service's own priority is its workers' (`nice tscriu service` runs them niced too)
  const normal = getPriority();
  const niced = normal < SPARE_NICE && canRaisePriority();
  if (niced) env[SPARE_NICE_BACK_ENV] = String(normal);
  if (logFile !== undefined) env["TSCRIU_RPC_LOG"] = logFile;
  const start = (): void => {
    if (stopping) return;
    const t0 = Date.now();
    const child = spawn(process.execPath, [...w.execArgv, w.file], { stdio: ["ignore", "ignore", "inherit", listenFd, "pipe"], env });
    spare = child;
    let boost: NodeJS.Timeout | undefined;
    if (niced && child.pid !== undefined) {
      const pid = child.pid;
      // (the threads it makes from now on inherit it; gone already, its exit says so)
      renice(pid, SPARE_NICE);
      // A client that comes while the spare boots or warms up waits for it: on a busy
      // machine the lowest priority would make that wait long.
      boost = setInterval(() => {
        if (bridge().pollNow(listenFd, POLL.IN) === 0) return;
        clearInterval(boost);
        log.debug(`a client waits for the spare ${pid}: back to the service's priority`);
        renice(pid, normal);
      }, BOOST_POLL_MS);
    }
    let accepted = false;
    let next: NodeJS.Timeout | undefined;
    const startNext = (): void => {
      if (next === undefined) return;
      clearTimeout(next);
      next = undefined;
      start();
    };
    (child.stdio[REPORT_FD] as NodeJS.ReadableStream).on("data", () => {
      if (accepted) return;
      accepted = true;
      clearInterval(boost);
      quickFailures = 0;
      log.info(`worker ${child.pid} took a connection`);
      // The next spare boots (Node, the modules, the warm-up: a CPU's worth for a while)
      // once this worker is done, or NEXT_SPARE_MS after it took its client, or at once at
      // the lowest priority: not on the CPUs that client's request runs on.
      if (spare === child) {
        // a worker now: a stop leaves it to serve its client
        spare = undefined;
        next = setTimeout(startNext, niced ? 0 : NEXT_SPARE_MS);
      }
    });
    child.on("exit", (code, signal) => {
      clearInterval(boost);
      log.info(`worker ${child.pid} exited with ${code ?? `signal ${signal}`}`);
      startNext();
      if (accepted || stopping) return;
      // the spare died before taking a connection: start another, slowly if it keeps failing
      quickFailures = Date.now() - t0 < 1000 ? quickFailures + 1 : 0;
      log.error(`the spare worker ${child.pid} exited before any connection (${code ?? `signal ${signal}`})`);
      setTimeout(start, quickFailures > 2 ? 1000 : 0);
    });
  };
  start();
  signalReady(statusFd);
  return await new Promise<number>((done) => {
    // The spare is asked to stop: one warming up ends its step and removes what it made
    // (its throwaway task, restored or not, and their images: a SIGKILL left them behind);
    // one waiting for a client ends at once. It is killed if it takes too long.
    const stop = (): void => {
      stopping = true;
      const s = spare;
      if (!s || s.exitCode !== null || s.signalCode !== null) return done(0);
      const force = setTimeout(() => s.kill("SIGKILL"), SPARE_STOP_MS);
      s.once("exit", () => {
        clearTimeout(force);
        done(0);
      });
      s.kill("SIGTERM");
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}
