// tscriu service: criu's RPC on a unix SOCK_SEQPACKET socket, one worker process per
// connection as criu forks one. Node cannot fork, so the service keeps spare workers
// (--spare-workers, two by default) started ahead, their modules loaded and their code
// warmed up, blocked in accept(2) on the listening socket. A worker says on its pipe when
// it is ready and when it took a connection; the service then starts the next spare (at
// once, at the lowest priority, where it may raise it back; one boots at a time) and the
// worker serves that one client with its own rights check (peer.ts) until it closes, then
// exits. A warm request thus costs no start-up, and neither does a client's second request
// right after its first (a restore after its dump: 1,000 TCP connections restored in
// 133-201 ms with a second spare ready, 346-503 ms when the only one was still warming up).
// Connections that come while no spare is ready wait in the listen backlog, and hurry the
// spare that started first: it ends its warm-up after the step under way.

import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, lstatSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import type { Duplex } from "node:stream";
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
  /** --spare-workers: how many workers are kept ready (default DEFAULT_SPARES) */
  spares?: number | undefined;
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

/**
 * A worker's V8 flags besides the service's own: a young generation of 32 MiB (the CLI's
 * 16), emptied by a full collection once the warm-up is done (worker.ts; `gc` exposed for
 * it). A request then allocates into an empty young generation its warm-up has touched
 * through, and a dump or restore of a server's thousand connections (~20 MB) runs without
 * a scavenge. 14 requests each of a service with and without it (2026-12-06): dump
 * 161 -> 156 ms, restore 121 -> 107 ms (medians, time spent serving). 32 MiB without the
 * collection was slower than 16 (restore 171 ms): the warm-up's garbage filled it first.
 */
const WORKER_V8_FLAGS = ["--min-semi-space-size=32", "--expose-gc"];

function workerCommand(): { file: string; execArgv: string[] } {
  const url = new URL(import.meta.url.endsWith(".ts") ? "./worker.ts" : "./worker.js", import.meta.url);
  return { file: fileURLToPath(url), execArgv: [...process.execArgv.filter((a) => !a.startsWith("--min-semi-space-size=")), ...WORKER_V8_FLAGS] };
}

/** Spare workers kept ready by default, and at most (--spare-workers). */
export const DEFAULT_SPARES = 2;
export const MAX_SPARES = 4;

export async function runService(o: ServiceOptions, ctx: CliContext): Promise<number> {
  const log = ctx.log.module("service");
  const spares = o.spares ?? DEFAULT_SPARES;
  if (!Number.isInteger(spares) || spares < 1 || spares > MAX_SPARES) {
    log.error(`--spare-workers ${o.spares}: a number of workers from 1 to ${MAX_SPARES}`);
    return 1;
  }
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
  return await acceptLoop(listenFd, statusFdOf(o), o.logFile, spares, ctx);
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
/** How often the service looks for a client waiting while no spare is ready. */
const BOOST_POLL_MS = 20;

/** What a worker writes on its pipe (REPORT_FD), and the service on it to a spare. */
export const REPORT = { ready: "ready\n", accepted: "accepted\n", hurry: "hurry\n" } as const;

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

/** A worker started ahead that has not taken a client yet. */
interface Spare {
  child: ChildProcess;
  /** blocked in accept: its warm-up is done (or was cut short) */
  ready: boolean;
  /** told to end its warm-up, a client waiting */
  hurried: boolean;
}

async function acceptLoop(listenFd: number, statusFd: number | undefined, logFile: string | undefined, count: number, ctx: CliContext): Promise<number> {
  const log = ctx.log.module("service");
  const w = workerCommand();
  const spares = new Set<Spare>();
  let stopping = false;
  let quickFailures = 0;
  const env = childEnv({ TSCRIU_RPC_LEVEL: String(ctx.log.level), [SERVICE_PID_ENV]: String(process.pid) });
  // the service's own priority is its workers' (`nice tscriu service` runs them niced too)
  const normal = getPriority();
  const niced = normal < SPARE_NICE && canRaisePriority();
  if (niced) env[SPARE_NICE_BACK_ENV] = String(normal);
  if (logFile !== undefined) env["TSCRIU_RPC_LOG"] = logFile;

  // While a spare boots or warms up, a client that waits with no spare ready hurries the
  // one started first: back to the service's priority (on a busy machine the lowest one
  // would make that wait long), and told to end its warm-up after the step under way. A
  // ready spare takes a client at once, so a connection pending beside one is no wait.
  let watch: NodeJS.Timeout | undefined;
  const watchWaiting = (): void => {
    if (watch !== undefined || [...spares].every((s) => s.ready)) return;
    watch = setInterval(() => {
      const list = [...spares];
      if (list.every((s) => s.ready)) {
        clearInterval(watch);
        watch = undefined;
        return;
      }
      if (list.some((s) => s.ready) || bridge().pollNow(listenFd, POLL.IN) === 0) return;
      const s = list.find((x) => !x.hurried);
      if (!s) return;
      s.hurried = true;
      log.debug(`a client waits and no spare is ready: spare ${s.child.pid} ends its warm-up${niced ? ", back at the service's priority" : ""}`);
      if (niced && s.child.pid !== undefined) renice(s.child.pid, normal);
      const pipe = s.child.stdio[REPORT_FD] as Duplex;
      pipe.write(REPORT.hurry);
    }, BOOST_POLL_MS);
  };

  // Spares up to `count`, one booting at a time (Node, the modules, the warm-up: a CPU's
  // worth for a while): the next starts once the others are ready.
  const fill = (): void => {
    if (!stopping && spares.size < count && [...spares].every((s) => s.ready)) start();
  };

  const start = (): void => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [...w.execArgv, w.file], { stdio: ["ignore", "ignore", "inherit", listenFd, "pipe"], env });
    const s: Spare = { child, ready: false, hurried: false };
    spares.add(s);
    // (the threads it makes from now on inherit it; gone already, its exit says so)
    if (niced && child.pid !== undefined) renice(child.pid, SPARE_NICE);
    watchWaiting();
    let accepted = false;
    let said = "";
    const pipe = child.stdio[REPORT_FD] as Duplex;
    pipe.on("error", () => undefined); // a hurry written as it exits: its exit says the rest
    pipe.on("data", (d: Buffer) => {
      said += d.toString("latin1");
      if (!s.ready && said.includes(REPORT.ready)) {
        s.ready = true;
        log.debug(`spare ${child.pid} is ready`);
        fill();
      }
      if (accepted || !said.includes(REPORT.accepted)) return;
      accepted = true;
      spares.delete(s);
      quickFailures = 0;
      log.info(`worker ${child.pid} took a connection`);
      // The next spare starts at once at the lowest priority (not on the CPUs this
      // client's request runs on), else once this worker is done or NEXT_SPARE_MS after
      // it took its client.
      setTimeout(fill, niced ? 0 : NEXT_SPARE_MS);
      watchWaiting();
    });
    child.on("exit", (code, signal) => {
      log.info(`worker ${child.pid} exited with ${code ?? `signal ${signal}`}`);
      if (accepted || stopping) return fill();
      spares.delete(s);
      // a spare died before taking a connection: another, slowly if they keep failing
      quickFailures = Date.now() - t0 < 1000 ? quickFailures + 1 : 0;
      log.error(`the spare worker ${child.pid} exited before any connection (${code ?? `signal ${signal}`})`);
      setTimeout(fill, quickFailures > 2 ? 1000 : 0);
    });
  };
  fill();
  signalReady(statusFd);
  return await new Promise<number>((done) => {
    // The spares are asked to stop: one warming up ends its step and removes what it made
    // (its throwaway task, restored or not, and their images: a SIGKILL left them behind);
    // one waiting for a client ends at once. One that takes too long is killed.
    const stop = (): void => {
      stopping = true;
      clearInterval(watch);
      const left = [...spares].map((s) => s.child).filter((c) => c.exitCode === null && c.signalCode === null);
      if (left.length === 0) return done(0);
      let running = left.length;
      for (const c of left) {
        const force = setTimeout(() => c.kill("SIGKILL"), SPARE_STOP_MS);
        c.once("exit", () => {
          clearTimeout(force);
          if (--running === 0) done(0);
        });
        c.kill("SIGTERM");
      }
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}
