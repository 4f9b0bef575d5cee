// Shared by the dump tests: a fresh images dir per test, crit's decode of every file,
// and the little checks every dump test repeats.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { readImage } from "../../images/io.js";
import { NetworkLock } from "../../orchestrator/net/lock.js";

/** A new empty directory removed by t.teardown. */
export function tempDir(t: ExecutionContext, prefix = "tscriu-img-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(async () => {
    await unlockDumps(dir);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/**
 * Removes the network lock of every dump in dir (or a directory right under it) that a
 * test left locked (a restore refused, or none made): its connections are gone with the
 * test, and a lock table left behind drops any later connection that happens to reuse
 * one of its address and port pairs (criu's own self-check of TCP repair timed out on
 * one). The lock stays while the test runs, as a dump leaves it.
 */
async function unlockDumps(dir: string): Promise<void> {
  let subdirs: string[] = [];
  try {
    subdirs = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(dir, e.name));
  } catch {
    return;
  }
  for (const d of [dir, ...subdirs]) {
    const inv = join(d, "inventory.img");
    if (!existsSync(inv)) continue;
    try {
      const e = (await readImage(inv)).entries[0];
      const runId = e?.["dump_criu_run_id"];
      if (e?.["network_lock_method"] === 1 && typeof runId === "string" && runId !== "") new NetworkLock("nftables", runId).unlock();
    } catch {
      // not an inventory tscriu reads, or no libnftables: nothing of ours to unlock
    }
  }
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
