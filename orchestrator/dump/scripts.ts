// --action-script: each script runs at the pre-dump and post-dump actions with
// CRTOOLS_SCRIPT_ACTION set (and CRTOOLS_IMAGE_DIR, CRTOOLS_INIT_PID, as criu sets
// them); a script that fails fails the dump.

import { spawnSync } from "node:child_process";

export function runScripts(scripts: readonly string[], action: string, imagesDir: string, pid: number): void {
  for (const path of scripts) {
    const r = spawnSync(path, [], {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, CRTOOLS_SCRIPT_ACTION: action, CRTOOLS_IMAGE_DIR: imagesDir, CRTOOLS_INIT_PID: String(pid) },
    });
    if (r.error) throw new Error(`action script ${path} (${action}) could not run: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`action script ${path} (${action}) exited with ${r.status ?? `signal ${r.signal}`}`);
  }
}
