// A spare service worker warms its code up before it waits for a client: it dumps a
// throwaway `sleep` of its own with -R, then again (killing it), restores it and kills
// that, for a few rounds. A worker that has loaded the modules still runs every function
// for the first time on its first request (parsed, compiled, its inline caches empty): a
// small dump took ~55 ms that way, ~35 ms after two rounds, and ~20 ms after six, when V8
// has optimised the hot paths. A client that connects meanwhile stops the warm-up at the
// end of the step under way (`pending`), so that it waits for one dump or restore at most. Best
// effort: anything that goes wrong here only costs the warmth, and is logged.

import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { Logger, type ModuleLog } from "../log.js";

const ROUNDS = 6;
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

/** One round: a throwaway task dumped with -R, dumped again and killed, restored, killed; cut short when a client waits. */
async function round(dir: string, quiet: Logger, pending: () => boolean): Promise<void> {
  const [{ dump }, { restore }] = await Promise.all([import("../dump/dump.js"), import("../restore/restore.js")]);
  let pid = 0;
  let restored = 0;
  try {
    pid = bridge().spawnDetached(["/bin/sleep", "3600"], { stdout: "/dev/null", killWithParent: true });
    for (let i = 0; i < 500 && !gone(pid) && readFileSync(`/proc/${pid}/comm`, "latin1").trim() !== "sleep"; i++) await sleep(2);
    await dump({ pid, imagesDir: join(dir, "r"), leaveRunning: true, log: quiet });
    if (pending()) return;
    await dump({ pid, imagesDir: join(dir, "k"), log: quiet });
    await killAndWait(pid);
    if (pending()) return;
    restored = (await restore({ imagesDir: join(dir, "k"), detached: true, log: quiet })).pid;
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
  try {
    for (; i < ROUNDS && !pending(); i++) await round(mkdtempSync(join(tmpdir(), "tscriu-warmup-")), quiet, pending);
  } catch (e) {
    log.debug(`warm-up: ${(e as Error).message}`);
  }
  log.debug(`warm-up: ${i} rounds in ${Number((process.hrtime.bigint() - t0) / 1000000n)} ms`);
}
