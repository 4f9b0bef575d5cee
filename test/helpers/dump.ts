// Shared by the dump tests: a fresh images dir per test, crit's decode of every file,
// and the little checks every dump test repeats.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";

/** A new empty directory removed by t.teardown. */
export function tempDir(t: ExecutionContext, prefix = "tscriu-img-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A path under a new temp dir that does not exist yet (tscriu creates it). */
export function freshDir(t: ExecutionContext): string {
  return join(tempDir(t, "tscriu-parent-"), "images");
}

const CRIT = "/usr/bin/crit";

/**
 * Whether Debian's crit is here for the cross-checks. CI installs it (package criu) and
 * must run them; a developer's machine without it skips them with a note.
 */
export function critInstalled(t: ExecutionContext): boolean {
  if (existsSync(CRIT)) return true;
  if (process.env["CI"]) t.fail("Debian's crit is not installed (apt-get install criu); CI must run the crit cross-checks");
  else t.log("crit cross-check skipped: /usr/bin/crit is not installed (apt-get install criu)");
  return false;
}

/** Decodes every image of dir with Debian's crit; returns failures as "file: message". */
export function critDecodeAll(dir: string): { decoded: string[]; failed: string[] } {
  const decoded: string[] = [];
  const failed: string[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (/^pages-\d+\.img$/.test(f) || !(f.endsWith(".img") || f === "stats-dump")) continue;
    const r = spawnSync("/usr/bin/python3", [CRIT, "decode", "-i", join(dir, f)], { encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.status === 0) decoded.push(f);
    else failed.push(`${f}: ${r.stderr.trim().split("\n").pop() ?? ""}`);
  }
  return { decoded, failed };
}

/** The entries crit prints for one image (JSON), or throws. */
export function critJson(file: string): { entries: Record<string, unknown>[] } {
  const r = spawnSync("/usr/bin/python3", [CRIT, "decode", "-i", file], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`crit decode ${file}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { entries: Record<string, unknown>[] };
}
