// Benchmark of dump and restore as the number of fds grows: one process holding N fds of
// mixed kinds (test/workloads/manyfds.c: regular files and dups, pipes and socketpairs
// with queued data, eventfds, timerfds, epolls; N = 1000, 3000, 10000), through the
// compiled CLI as an operator runs it: `tscriu dump -t PID -D DIR` (the task killed once
// its images are on disk) and `tscriu restore -D DIR -d`. After each restore the task
// checks every fd itself (offsets, queued bytes, counts, timers, epoll readiness). Medians
// of interleaved runs; the time per 1000 fds shows whether the cost grows linearly. With
// TSCRIU_BENCH_CRIU=/path/to/criu the same is timed for that criu in the same runs
// (CRIU_FAULT=130: criu's parasite stops on the syscall, as in the interop tests).
// Run: node --import=tsx scripts/bench-fds.ts [runs] [sizes, comma-separated]
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
const sizes = (process.argv[3] ?? "1000,3000,10000").split(",").map(Number);
const criu = process.env["TSCRIU_BENCH_CRIU"];

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(what: string, f: () => boolean, ms = 60_000): Promise<void> {
  for (const end = Date.now() + ms; !f(); await sleep(5)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

/** CPU seconds of the children this process has waited for (cutime + cstime of /proc/self/stat). */
function childCpu(): number {
  const f = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
  return (Number(f[13]) + Number(f[14])) / 100;
}

/** Wall and CPU seconds of one run of a command (CPU: the machine is shared, wall time is noisy). */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { wall: number; cpu: number } {
  const c0 = childCpu();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: "utf8", env });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status}\n${r.stderr}`);
  return { wall, cpu: childCpu() - c0 };
}

type Times = { dump: { wall: number; cpu: number }; restore: { wall: number; cpu: number } };

/** The restored task's own check of every fd. */
async function check(pid: number, work: string, n: number): Promise<void> {
  const result = join(work, "result");
  const before = existsSync(result) ? readFileSync(result, "utf8") : "";
  process.kill(pid, "SIGUSR1");
  await until(`pid ${pid}'s check`, () => existsSync(result) && readFileSync(result, "utf8") !== before);
  const line = readFileSync(result, "utf8").slice(before.length).trim();
  if (!line.startsWith("PASS") || Number(/fds=(\d+)/.exec(line)?.[1]) < n) throw new Error(`after the restore: ${line}`);
}

async function once(tool: "tscriu" | "criu", n: number): Promise<Times> {
  const work = mkdtempSync(join(tmpdir(), "bench-fds-w-"));
  const images = mkdtempSync(join(tmpdir(), "bench-fds-i-"));
  const out = join(work, "stdout");
  const pid = bridge().spawnDetached([join(BIN, "manyfds"), work, String(n)], { stdout: out, killWithParent: true });
  const env = { ...process.env, CRIU_FAULT: "130" };
  try {
    await until(`manyfds ${n} to be ready`, () => existsSync(out) && readFileSync(out, "utf8").startsWith("ready"));
    const dump = tool === "tscriu" ? timed(CLI, ["dump", "-t", String(pid), "-D", images]) : timed(criu!, ["dump", "-t", String(pid), "-D", images], env);
    await until(`pid ${pid} to be free`, () => !existsSync(`/proc/${pid}`));
    const restore = tool === "tscriu" ? timed(CLI, ["restore", "-D", images, "-d"]) : timed(criu!, ["restore", "-D", images, "-d"], env);
    await check(pid, work, n);
    return { dump, restore };
  } finally {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
    await until(`pid ${pid} to go`, () => !existsSync(`/proc/${pid}`)).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
    rmSync(images, { recursive: true, force: true });
  }
}

console.log(
  `\nfds of mixed kinds in one process: median of ${runs}, runs interleaved across sizes and tools (dump = until the task is killed with its images on disk; restore -d = until it runs; each restored task checked every fd). Wall time, and CPU time of the command in brackets`,
);
const tools: ("tscriu" | "criu")[] = criu ? ["tscriu", "criu"] : ["tscriu"];
const got = new Map<string, Times[]>();
for (let i = 0; i < runs; i++) {
  for (const n of sizes) {
    for (const tool of tools) {
      const key = `${tool} ${n}`;
      if (!got.has(key)) got.set(key, []);
      got.get(key)!.push(await once(tool, n));
    }
  }
}
const med = (tool: string, n: number, k: "dump" | "restore", w: "wall" | "cpu"): number => median(got.get(`${tool} ${n}`)!.map((x) => x[k][w]));
for (const n of sizes) {
  const line = (tool: string): string =>
    (["dump", "restore"] as const).map((k) => `${k} ${fmt(med(tool, n, k, "wall"))} [${fmt(med(tool, n, k, "cpu"))}]`).join(", ");
  let text = `  ${String(n).padStart(5)} fds: tscriu ${line("tscriu")}`;
  if (criu) {
    const ratio = (k: "dump" | "restore", w: "wall" | "cpu"): string => (med("tscriu", n, k, w) / med("criu", n, k, w)).toFixed(2);
    text += `\n             criu   ${line("criu")}; tscriu/criu: dump ${ratio("dump", "wall")} [${ratio("dump", "cpu")}], restore ${ratio("restore", "wall")} [${ratio("restore", "cpu")}]`;
  }
  console.log(text);
}
// The cost per fd: the slope between the smallest and the largest size.
const [lo, hi] = [sizes[0]!, sizes[sizes.length - 1]!];
if (hi > lo) {
  for (const tool of tools) {
    const slope = (k: "dump" | "restore", w: "wall" | "cpu"): string => (((med(tool, hi, k, w) - med(tool, lo, k, w)) / (hi - lo)) * 1e6).toFixed(0);
    console.log(`  ${tool}: per fd from ${lo} to ${hi}: dump ${slope("dump", "wall")} us [${slope("dump", "cpu")} us CPU], restore ${slope("restore", "wall")} us [${slope("restore", "cpu")} us CPU]`);
  }
}
if (!criu) console.log("\ncriu: not measured (set TSCRIU_BENCH_CRIU to a criu binary, e.g. /work/criu-4.2/criu/criu)");
