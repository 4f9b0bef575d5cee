// A spare service worker warms its code up before it waits for a client: it dumps a
// throwaway `sleep` of its own with -R, then again (killing it), restores it and kills
// that, for a few rounds. A worker that has loaded the modules still runs every function
// for the first time on its first request (parsed, compiled, its inline caches empty): a
// small dump took ~55 ms that way, ~35 ms after two rounds, and ~20 ms after six, when V8
// has optimised the hot paths. From the second round on (a first round's steps, all code
// cold, are long enough without them) the `sleep` holds TCP connections on loopback (both
// ends, data queued in each direction) and their listener, dumped and restored with
// --tcp-established: runc and podman checkpoint servers, and a first dump of 1,000
// connections in a process took ~300 ms cold, ~200 ms after a dozen dumps of 16. A client
// that connects meanwhile stops the warm-up at the end of the step under way (`pending`),
// so that it waits for one dump or restore at most. Best effort: anything that goes wrong
// here only costs the warmth, and is logged; without loopback TCP the `sleep` holds none.

import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AF_INET, SOCK } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { addrWordsOf, parseSockaddr, sockaddr } from "../fds/inet-common.js";
import { Logger, type ModuleLog } from "../log.js";

const ROUNDS = 6;
/** Loopback connections the throwaway task holds. */
const CONNECTIONS = 16;
const LOOPBACK = addrWordsOf("127.0.0.1")!;

/**
 * A listener on loopback and CONNECTIONS connections to it, both ends, with a few bytes
 * queued each way: the fds, ours to close once the task has them. None where loopback
 * TCP cannot be had (logged by the caller).
 */
function loopbackConnections(): number[] {
  const b = bridge();
  const fds: number[] = [];
  try {
    const listener = b.socket(AF_INET, SOCK.STREAM, 0);
    fds.push(listener);
    b.bindAddr(listener, sockaddr(AF_INET, 0, LOOPBACK));
    b.listen(listener, CONNECTIONS);
    const to = sockaddr(AF_INET, parseSockaddr(b.sockName(listener)).port, LOOPBACK);
    for (let i = 0; i < CONNECTIONS; i++) {
      const c = b.socket(AF_INET, SOCK.STREAM, 0);
      fds.push(c);
      b.connectAddr(c, to);
      const a = b.accept(listener, 1000);
      fds.push(a);
      b.sendFull(c, Buffer.from("warm-up\n"));
      b.sendFull(a, Buffer.from("warm-up too\n"));
    }
    return fds;
  } catch (e) {
    for (const fd of fds) b.close(fd);
    throw e;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether pid is gone (or a zombie nobody reaped yet). */
function gone(pid: number): boolean {
  try {
    return / Z /.test(readFileSync(`/proc/${pid}/stat`, "latin1").replace(/^.*\)/, ")"));
  } catch {
    return true;
  }
}

async function killAndWait(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  for (let i = 0; i < 1000 && existsSync(`/proc/${pid}`); i++) await sleep(2);
}

/**
 * One round: a throwaway task dumped with -R, dumped again and killed, restored, killed;
 * cut short when a client waits. Whether its task held TCP connections.
 */
async function round(dir: string, quiet: Logger, log: ModuleLog, pending: () => boolean, tcp: boolean): Promise<boolean> {
  const [{ dump }, { restore }] = await Promise.all([import("../dump/dump.js"), import("../restore/restore.js")]);
  let pid = 0;
  let restored = 0;
  try {
    let fds: number[] = [];
    try {
      if (tcp) fds = loopbackConnections();
    } catch (e) {
      log.debug(`warm-up: no loopback TCP connections (${(e as Error).message})`);
    }
    try {
      pid = bridge().spawnDetached(["/bin/sleep", "3600"], { stdout: "/dev/null", killWithParent: true, fds });
    } finally {
      for (const fd of fds) bridge().close(fd);
    }
    for (let i = 0; i < 500 && !gone(pid) && readFileSync(`/proc/${pid}/comm`, "latin1").trim() !== "sleep"; i++) await sleep(2);
    const established = { tcpEstablished: true, networkLock: "skip" } as const;
    await dump({ pid, imagesDir: join(dir, "r"), leaveRunning: true, log: quiet, ...established });
    if (!pending()) {
      await dump({ pid, imagesDir: join(dir, "k"), log: quiet, ...established });
      await killAndWait(pid);
      if (!pending()) restored = (await restore({ imagesDir: join(dir, "k"), detached: true, log: quiet, tcpEstablished: true })).pid;
    }
    return fds.length > 0;
  } finally {
    if (restored) await killAndWait(restored);
    if (pid) await killAndWait(pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Up to ROUNDS rounds, fewer when `pending` says a client waits: V8 compiles a function
 * on its first call and optimizes what runs again.
 */
export async function warmUp(log: ModuleLog, pending: () => boolean = () => false): Promise<void> {
  const quiet = new Logger(2, { write: () => undefined, close: () => undefined });
  const t0 = process.hrtime.bigint();
  let i = 0;
  let tcp = 0;
  try {
    for (; i < ROUNDS && !pending(); i++) if (await round(mkdtempSync(join(tmpdir(), "tscriu-warmup-")), quiet, log, pending, i > 0)) tcp++;
  } catch (e) {
    log.debug(`warm-up: ${(e as Error).message}`);
  }
  log.debug(`warm-up: ${i} rounds in ${Number((process.hrtime.bigint() - t0) / 1000000n)} ms (${tcp} with ${CONNECTIONS} loopback TCP connections)`);
}
