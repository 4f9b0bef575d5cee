// criu's --daemon for the commands that listen (service, page-server): the socket is
// bound and listening before the command returns, so a client may connect at once. Node
// cannot fork, so the command runs again in the background, detached, with the
// listening socket as fd 3 (and --status-fd as fd 4); the foreground writes --pidfile
// with the daemon's pid and exits 0.

import { createRequire } from "node:module";
import { closeSync, writeFileSync, writeSync } from "node:fs";

/** the fds the daemon gets the listening socket and the status fd on */
const LISTEN_FD = 3;
const STATUS_FD = 4;
const LISTEN_ENV = "TSCRIU_DAEMON_LISTEN_FD";
const STATUS_ENV = "TSCRIU_DAEMON_STATUS_FD";

export interface DaemonOptions {
  statusFd: number | undefined;
  pidfile: string | undefined;
  /** the command line, run again without -d/--daemon */
  argv: readonly string[];
}

/** In the daemon: the listening socket its foreground made, else undefined. */
export function inheritedListenFd(): number | undefined {
  const v = process.env[LISTEN_ENV];
  return v === undefined ? undefined : Number(v);
}

/** The fd to write criu's ready byte to: the daemon's, or --status-fd. */
export function statusFdOf(o: DaemonOptions): number | undefined {
  const v = process.env[STATUS_ENV];
  return v !== undefined ? Number(v) : o.statusFd;
}

/** criu's ready signal: one \0 byte, then the fd is closed. */
export function signalReady(statusFd: number | undefined): void {
  if (statusFd === undefined) return;
  writeSync(statusFd, Buffer.from([0]));
  closeSync(statusFd);
}

/** Environment for what the daemon starts itself: without the daemon's own variables. */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env[LISTEN_ENV];
  delete env[STATUS_ENV];
  return env;
}

/** The command line again for the daemon: without -d, and the parent has done --pidfile; --status-fd goes by env. */
function daemonArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-d" || a === "--daemon" || /^--(status-fd|pidfile)=/.test(a)) continue;
    if (a === "--status-fd" || a === "--pidfile") {
      i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

/** Starts the daemon on `listenFd`; returns its pid once --pidfile is written. */
export function startDaemon(listenFd: number, o: DaemonOptions): number {
  const env: NodeJS.ProcessEnv = { ...process.env, [LISTEN_ENV]: String(LISTEN_FD) };
  const stdio: (number | "ignore")[] = ["ignore", "ignore", "ignore", listenFd];
  if (o.statusFd !== undefined) {
    env[STATUS_ENV] = String(STATUS_FD);
    stdio.push(o.statusFd);
  }
  // node:child_process (with node:net and node:dgram) only for the daemon's start: a dump
  // that signals readiness through this module does not pay for it
  const { spawn } = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...daemonArgv(o.argv)], { detached: true, stdio, env });
  if (o.pidfile !== undefined) writeFileSync(o.pidfile, `${child.pid}`);
  child.unref();
  return child.pid!;
}
