// --action-script: each script runs at the pre-dump and post-dump actions with
// CRTOOLS_SCRIPT_ACTION set (and CRTOOLS_IMAGE_DIR, CRTOOLS_INIT_PID, as criu sets
// them); a script that fails fails the dump.

import { createRequire } from "node:module";

/** node:child_process brings node:net with it (~5 ms of every start): loaded when a script runs. */
const childProcess = (): typeof import("node:child_process") => createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");

export function runScripts(scripts: readonly string[], action: string, imagesDir: string, pid: number): void {
  for (const path of scripts) {
    const r = childProcess().spawnSync(path, [], {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: imagesDir, CRTOOLS_INIT_PID: String(pid) },
    });
    if (r.error) throw new Error(`action script ${path} (${action}) could not run: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`action script ${path} (${action}) exited with ${r.status ?? `signal ${r.signal}`}`);
  }
}

/** Called at each action before the scripts run (criu's RPC notify); throwing fails the dump. */
export type ActionHook = (action: string, pid: number | undefined) => void | Promise<void>;

export async function runActions(scripts: readonly string[], hook: ActionHook | undefined, action: "pre-dump" | "post-dump", imagesDir: string, pid: number): Promise<void> {
  if (hook) await hook(action, undefined);
  runScripts(scripts, action, imagesDir, pid);
}
