// Benchmark of an incremental chain: a task with 1 GiB that writes 1 % of it every 100 ms
// (test/workloads/incr) goes through `pre-dump`, `pre-dump --prev-images-dir`, then the
// final `dump --prev-images-dir` (killed after fsync, and -R), against a plain dump of the
// same task: frozen and wall time (from --display-stats), pages written and found in the
// parent; medians of interleaved runs. The pre-dumps leave the task's writes tracked
// (userfaultfd, write-tracking.ts), so the second pass and the final dump copy only what
// was written since. criu 4.2 cannot pre-dump on this kernel (no soft-dirty: "Tracking
// memory is not available"), so there is nothing of criu's to set beside it.
// Run: node --import=tsx scripts/bench-incr.ts [runs] [MiB]
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { bridge } from "../host-bridge/load.js";
import { fmt, median, TSCRIU } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = TSCRIU;
const BIN = join(root, "test/workloads/bin/incr");
const runs = Number(process.argv[2] ?? 3);
const mib = Number(process.argv[3] ?? 1024);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function start(work: string): Promise<number> {
  const out = join(work, "stdout");
  const pid = bridge().spawnDetached([BIN, work, String(mib), "1"], { stdout: out, killWithParent: true });
  for (let i = 0; i < 12000; i++) {
    if (existsSync(out) && readFileSync(out, "utf8").startsWith("ready")) return pid;
    await sleep(5);
  }
  throw new Error(`incr ${mib} MiB did not get ready`);
}

interface Pass {
  wall: number;
  frozen: number;
  written: number;
  parent: number;
}

function pass(args: string[]): Pass {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(CLI, [...args, "--display-stats"], { encoding: "utf8" });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`tscriu ${args.join(" ")} failed: ${r.stderr}`);
  const n = (what: string): number => Number(new RegExp(`${what}: (\\d+)`).exec(r.stdout)?.[1] ?? NaN);
  return { wall, frozen: n("Frozen time") / 1e6, written: n("Memory pages written"), parent: n("Memory pages skipped from parent") };
}

async function chain(final: "kill" | "-R" | "plain -R"): Promise<Pass[]> {
  const work = mkdtempSync(join(tmpdir(), "bench-incr-w-"));
  const base = mkdtempSync(join(tmpdir(), "bench-incr-i-"));
  const pid = await start(work);
  try {
    await sleep(300);
    if (final === "plain -R") return [pass(["dump", "-t", String(pid), "-D", join(base, "d"), "-R"])];
    const p1 = pass(["pre-dump", "-t", String(pid), "-D", join(base, "d1")]);
    await sleep(300);
    const p2 = pass(["pre-dump", "-t", String(pid), "-D", join(base, "d2"), "--prev-images-dir", "../d1"]);
    await sleep(300);
    const d = pass(["dump", "-t", String(pid), "-D", join(base, "d3"), "--prev-images-dir", "../d2", ...(final === "-R" ? ["-R"] : [])]);
    return [p1, p2, d];
  } finally {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // killed by the dump
    }
    for (let i = 0; i < 2000 && existsSync(`/proc/${pid}`); i++) await sleep(5);
    rmSync(base, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

if (!existsSync(CLI)) throw new Error("build the CLI first: node scripts/build-ts.mjs");
if (!existsSync(BIN)) throw new Error("build the workloads first: node scripts/build-workloads.mjs");
console.log(`tscriu incremental chain, ${mib} MiB writing 1 % per 100 ms: medians of ${runs} interleaved runs (criu 4.2 cannot pre-dump here: no soft-dirty)`);
const res: Record<"kill" | "-R" | "plain -R", Pass[][]> = { kill: [], "-R": [], "plain -R": [] };
for (let i = 0; i < runs; i++) for (const k of Object.keys(res) as (keyof typeof res)[]) res[k].push(await chain(k));
const names = ["pre-dump 1", "pre-dump 2", "dump"];
for (const [k, rs] of Object.entries(res)) {
  for (let j = 0; j < rs[0]!.length; j++) {
    const m = (f: keyof Pass): number => median(rs.map((r) => r[j]![f]));
    const what = k === "plain -R" ? "plain dump -R (no parent)" : `${names[j]}${j === 2 ? ` ${k}` : ""}`;
    console.log(`${what.padEnd(26)} wall ${fmt(m("wall")).padStart(9)}  frozen ${fmt(m("frozen")).padStart(9)}  pages written ${String(m("written")).padStart(7)}  from parent ${String(m("parent")).padStart(7)}`);
  }
}
