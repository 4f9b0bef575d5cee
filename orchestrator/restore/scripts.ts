// --action-script for a restore: each script runs at pre-restore, post-restore, pre-resume
// and post-resume with CRTOOLS_SCRIPT_ACTION set, CRTOOLS_IMAGE_DIR, and CRTOOLS_INIT_PID
// once the task exists (as criu sets them). A failing pre-restore or post-restore script
// fails the restore; pre-resume and post-resume failures are reported (criu: "must not
// fail"; the task is complete by then).

import { spawnSync } from "node:child_process";

export type RestoreAction = "pre-restore" | "post-restore" | "pre-resume" | "post-resume";

export function runScripts(scripts: readonly string[], action: RestoreAction, imagesDir: string, pid: number | undefined): void {
  for (const path of scripts) {
    const env: NodeJS.ProcessEnv = { ...process.env, CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: imagesDir };
    if (pid !== undefined) env["CRTOOLS_INIT_PID"] = String(pid);
    const r = spawnSync(path, [], { stdio: ["ignore", "inherit", "inherit"], env });
    if (r.error) throw new Error(`action script ${path} (${action}) could not run: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`action script ${path} (${action}) exited with ${r.status ?? `signal ${r.signal}`}`);
  }
}
