// Benchmark of dump and restore as the tree grows: a root with N-1 children
// (test/workloads/fan.c; N = 10, 25, 50) and a process with N threads
// (test/workloads/threads.c; N = 25, 50, 100), through the compiled CLI as an operator
// runs it: `tscriu dump -t PID -D DIR` (the tree killed after the images are on disk)
// and `tscriu restore -D DIR -d`. Medians of interleaved runs; the time per process or
// thread shows whether the cost grows linearly. With TSCRIU_BENCH_CRIU=/path/to/criu
// the same is timed for that criu in the same runs (it needs a kernel where criu can
// dump; criu 4.1.1 in the trixie root cannot on the 2026-12 machine kind).
// Run: node --import=tsx scripts/bench-tree.ts [runs]
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { bridge } from "../host-bridge/load.js";
import { fmt, median, TSCRIU } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = TSCRIU;
const BIN = join(root, "test/workloads/bin");
const runs = Number(process.argv[2] ?? 3);
const criu = process.env["TSCRIU_BENCH_CRIU"];

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function start(name: string, n: number, work: string): Promise<number> {
  const out = join(work, "stdout");
  const pid = bridge().spawnDetached([join(BIN, name), work, String(n)], { stdout: out, killWithParent: true });
  for (let i = 0; i < 6000; i++) {
    if (existsSync(out) && readFileSync(out, "utf8").startsWith("ready")) return pid;
    await sleep(5);
  }
  throw new Error(`${name} ${n} did not get ready`);
}

async function gone(pid: number): Promise<void> {
  for (let i = 0; i < 4000 && existsSync(`/proc/${pid}`); i++) await sleep(5);
}

function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status}\n${r.stderr}`);
  return s;
}

async function once(tool: "tscriu" | "criu", name: string, n: number): Promise<{ dump: number; restore: number }> {
  const work = mkdtempSync(join(tmpdir(), "bench-tree-w-"));
  const images = mkdtempSync(join(tmpdir(), "bench-tree-i-"));
  const pid = await start(name, n, work);
  try {
    const dump = tool === "tscriu" ? timed(CLI, ["dump", "-t", String(pid), "-D", images]) : timed(criu!, ["dump", "-t", String(pid), "-D", images]);
    await gone(pid);
    const restore = tool === "tscriu" ? timed(CLI, ["restore", "-D", images, "-d"]) : timed(criu!, ["restore", "-D", images, "-d"]);
    return { dump, restore };
  } finally {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
    await gone(pid);
    rmSync(work, { recursive: true, force: true });
    rmSync(images, { recursive: true, force: true });
  }
}

const cases: [string, string, string, number[]][] = [
  ["processes", "process", "fan", [10, 25, 50]],
  ["threads", "thread", "threads", [25, 50, 100]],
];
for (const [what, one, name, sizes] of cases) {
  console.log(`\n${what}: median of ${runs} (dump = until the tree is killed with its images on disk; restore -d = until it runs)`);
  for (const n of sizes) {
    const tools: ("tscriu" | "criu")[] = criu ? ["tscriu", "criu"] : ["tscriu"];
    const got: Record<string, { dump: number[]; restore: number[] }> = {};
    for (let i = 0; i < runs; i++) {
      for (const tool of tools) {
        const r = await once(tool, name, n);
        (got[tool] ??= { dump: [], restore: [] }).dump.push(r.dump);
        got[tool].restore.push(r.restore);
      }
    }
    const line = (tool: string): string => {
      const d = median(got[tool]!.dump);
      const r = median(got[tool]!.restore);
      return `${tool} dump ${fmt(d)} (${((d / n) * 1000).toFixed(1)} ms per ${one}), restore ${fmt(r)} (${((r / n) * 1000).toFixed(1)} ms each)`;
    };
    let text = `  ${String(n).padStart(3)} ${what}: ${line("tscriu")}`;
    if (criu) {
      const ratio = (k: "dump" | "restore"): string => (median(got["tscriu"]![k]) / median(got["criu"]![k])).toFixed(2);
      text += `\n      ${line("criu")}; tscriu/criu: dump ${ratio("dump")}, restore ${ratio("restore")}`;
    }
    console.log(text);
  }
}
if (!criu) console.log("\ncriu: not measured (set TSCRIU_BENCH_CRIU to a criu binary that can dump on this kernel)");
