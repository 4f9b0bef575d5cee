// --action-script for a restore: each script runs at pre-restore, setup-namespaces and
// post-setup-namespaces (once every process exists), post-restore, pre-resume and post-resume with CRTOOLS_SCRIPT_ACTION set, CRTOOLS_IMAGE_DIR, and CRTOOLS_INIT_PID
// once the task exists (as criu sets them). A failing pre-restore or post-restore script
// fails the restore; pre-resume and post-resume failures are reported (criu: "must not
// fail"; the task is complete by then).

import { createRequire } from "node:module";

/** node:child_process brings node:net with it (~5 ms of every start): loaded when a script runs. */
const childProcess = (): typeof import("node:child_process") => createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");

export type RestoreAction = "pre-restore" | "setup-namespaces" | "post-setup-namespaces" | "post-restore" | "pre-resume" | "post-resume";

/**
 * Called at each action before the scripts run, as criu's RPC notifies its client
 * (criu_notify) before its own scripts; a hook that throws fails the action as a script does.
 */
export type ActionHook = (action: string, pid: number | undefined) => void | Promise<void>;

/** The hook, then each script, for one action. */
export async function runActions(scripts: readonly string[], hook: ActionHook | undefined, action: RestoreAction, imagesDir: string, pid: number | undefined): Promise<void> {
  if (hook) await hook(action, pid);
  runScripts(scripts, action, imagesDir, pid);
}

export function runScripts(scripts: readonly string[], action: RestoreAction, imagesDir: string, pid: number | undefined): void {
  for (const path of scripts) {
    const env: NodeJS.ProcessEnv = { ...process.env, CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: imagesDir };
    if (pid !== undefined) env["CRTOOLS_INIT_PID"] = String(pid);
    const r = childProcess().spawnSync(path, [], { stdio: ["ignore", "inherit", "inherit"], env });
    if (r.error) throw new Error(`action script ${path} (${action}) could not run: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`action script ${path} (${action}) exited with ${r.status ?? `signal ${r.signal}`}`);
  }
}
