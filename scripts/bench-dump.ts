// Benchmark of `tscriu dump` (the compiled CLI, as an operator runs it) on a task
// with 256 MiB and 1 GiB of written anonymous memory: wall time, frozen time (from
// --display-stats) and throughput, medians of interleaved runs, next to the raw
// limits of this VM measured in the same runs (this VM's disk and page cache vary a
// lot from hour to hour): process_vm_readv of the task's memory into an aligned
// buffer, and writing that much to the page cache, then fsync. Where criu is there
// (TSCRIU_CRIU, else /work/criu-4.2/criu/criu) it dumps the same task in the same runs,
// interleaved, and the figures are given as ratios tscriu / criu.
// Run: node --import=tsx scripts/bench-dump.ts [runs]
import { spawnSync } from "node:child_process";
import { closeSync, constants, existsSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { bridge } from "../host-bridge/load.js";
import { CRIU, criuEnv, fmt, gone, median, startWorkload, TSCRIU } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = TSCRIU;
const BIN = join(root, "test/workloads/bin/bigmem");
const runs = Number(process.argv[2] ?? 5);

function start(mib: number, work: string): Promise<number> {
  return startWorkload([BIN, work, String(mib)], work);
}

interface Run {
  wall: number;
  frozen: number;
}

const CHUNK = 8 << 20;

interface Limits {
  readv: number;
  write: number;
  fsync: number;
  direct: number;
  flush: number;
}

/**
 * The raw limits for `mib` MiB: readv of a live task's memory; page-cache write and the
 * fsync after it; O_DIRECT write (as tscriu writes pages) and the fsync after it (the
 * host's cache flushed: these VMs' disks cache writes).
 */
async function raw(mib: number): Promise<Limits> {
  const work = mkdtempSync(join(tmpdir(), "bench-dump-raw-"));
  const pid = await start(mib, work);
  const b = bridge();
  const buf = b.allocAligned(CHUNK);
  try {
    const ready = readFileSync(join(work, "stdout"), "utf8");
    const mem = Number(/mem=(0x[0-9a-f]+)/.exec(ready)![1]);
    const len = mib << 20;
    const t0 = process.hrtime.bigint();
    for (let off = 0; off < len; off += CHUNK) b.processVmReadv(pid, mem + off, CHUNK, buf);
    const t1 = process.hrtime.bigint();
    const fd = openSync(join(work, "raw.img"), "w");
    for (let off = 0; off < len; off += CHUNK) writeSync(fd, buf, 0, CHUNK, off);
    const t2 = process.hrtime.bigint();
    fsyncSync(fd);
    const t3 = process.hrtime.bigint();
    closeSync(fd);
    const s = (from: bigint, to: bigint): number => Number(to - from) / 1e9;
    let dfd: number;
    try {
      dfd = openSync(join(work, "direct.img"), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600);
    } catch (e) {
      // a file system without O_DIRECT (tscriu writes through the page cache there too)
      if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
      return { readv: s(t0, t1), write: s(t1, t2), fsync: s(t2, t3), direct: NaN, flush: NaN };
    }
    for (let off = 0; off < len; off += CHUNK) writeSync(dfd, buf, 0, CHUNK, off);
    const t4 = process.hrtime.bigint();
    fsyncSync(dfd);
    const t5 = process.hrtime.bigint();
    closeSync(dfd);
    return { readv: s(t0, t1), write: s(t1, t2), fsync: s(t2, t3), direct: s(t3, t4), flush: s(t4, t5) };
  } finally {
    process.kill(pid, "SIGKILL");
    await gone(pid);
    rmSync(work, { recursive: true, force: true });
  }
}

const haveCriu = existsSync(CRIU);

type Mode = "kill" | "leave-running" | "wp-snapshot";

async function once(mib: number, mode: Mode, tool: "tscriu" | "criu"): Promise<Run> {
  const work = mkdtempSync(join(tmpdir(), "bench-dump-w-"));
  const images = mkdtempSync(join(tmpdir(), "bench-dump-i-"));
  const pid = await start(mib, work);
  try {
    const common = ["dump", "-t", String(pid), "-D", images, "--display-stats", ...(mode === "kill" ? [] : ["-R"]), ...(mode === "wp-snapshot" ? ["--wp-snapshot"] : [])];
    const t0 = process.hrtime.bigint();
    const r =
      tool === "tscriu"
        ? spawnSync(CLI, common, { encoding: "utf8" })
        : spawnSync(CRIU, [...common, "-o", "dump.log"], { encoding: "utf8", env: criuEnv });
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.status !== 0) throw new Error(`${tool} dump failed: ${r.stderr}${r.stdout}`);
    const frozen = Number(/Frozen time: (\d+) us/.exec(r.stdout + r.stderr)?.[1] ?? NaN) / 1e6;
    return { wall, frozen };
  } finally {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // killed by the dump already
    }
    await gone(pid);
    rmSync(images, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

if (!existsSync(CLI)) throw new Error("build the CLI first: node scripts/build-ts.mjs");
console.log(`tscriu dump benchmark: medians of ${runs} interleaved runs${haveCriu ? `, side by side with ${CRIU}` : " (no criu here: tscriu alone)"}`);
const tools = haveCriu ? (["tscriu", "criu"] as const) : (["tscriu"] as const);
for (const mib of [256, 1024]) {
  const res: Record<string, Run[]> = {};
  const limits: Limits[] = [];
  for (let i = 0; i < runs; i++) {
    limits.push(await raw(mib));
    for (const mode of ["kill", "leave-running"] as const) for (const tool of tools) (res[`${tool} ${mode}`] ??= []).push(await once(mib, mode, tool));
    // tscriu's own (criu has none): set beside criu's -R
    (res["tscriu wp-snapshot"] ??= []).push(await once(mib, "wp-snapshot", "tscriu"));
  }
  const gib = mib / 1024;
  const lim = (k: keyof Limits): number => median(limits.map((l) => l[k]));
  console.log(
    `${String(mib).padStart(5)} MiB  raw: process_vm_readv ${fmt(lim("readv"))} (${(gib / lim("readv")).toFixed(2)} GiB/s), page-cache write ${fmt(lim("write"))} = ${(lim("write") / gib).toFixed(2)} s/GiB, then fsync ${fmt(lim("fsync"))}; O_DIRECT write ${fmt(lim("direct"))}, then fsync ${fmt(lim("flush"))}`,
  );
  for (const mode of ["kill", "leave-running", "wp-snapshot"] as const) {
    const m = (tool: string, k: keyof Run, md: Mode = mode): number => median(res[`${tool} ${md}`]!.map((r) => r[k]));
    const criuMode = mode === "wp-snapshot" ? "leave-running" : mode;
    const vs = haveCriu ? `   tscriu/criu${criuMode !== mode ? " -R" : ""}: wall ${(m("tscriu", "wall") / m("criu", "wall", criuMode)).toFixed(2)}x, frozen ${(m("tscriu", "frozen") / m("criu", "frozen", criuMode)).toFixed(2)}x` : "";
    for (const tool of mode === "wp-snapshot" ? (["tscriu"] as const) : tools) {
      console.log(`${String(mib).padStart(5)} MiB  ${tool.padEnd(6)} ${mode.padEnd(13)}  wall ${fmt(m(tool, "wall")).padStart(9)}  frozen ${fmt(m(tool, "frozen")).padStart(9)}  throughput ${(gib / m(tool, "wall")).toFixed(2)} GiB/s (wall)`);
    }
    if (vs) console.log(`${String(mib).padStart(5)} MiB  ${mode.padEnd(20)}${vs}`);
  }
}
