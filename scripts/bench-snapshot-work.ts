// How much a task's own work slows while it is dumped with -R: the bigmem workload in its
// "work" mode (1 GiB written, then a word of a pseudo-random page written nonstop, counted
// in a shared file) dumped by `tscriu dump -R --wp-snapshot`, by plain `tscriu dump -R`
// and, where it is there (TSCRIU_CRIU, else /work/criu-4.2/criu/criu), by `criu dump -R`,
// interleaved. For each: the task's writes per second over the dump's wall time against
// its own rate just before (1 s, undisturbed), the longest stall it saw (a gap between two
// clock readings 256 writes apart: the freeze, or a wait in a write-protect fault), and the
// frozen time the dump reports. The task writes everywhere (the worst case for the
// snapshot: nearly every page is written before it is copied and waits for its copy).
// Run: node --import=tsx scripts/bench-snapshot-work.ts [runs] [MiB]
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CRIU, criuEnv, fmt, gone, median, sleep, startWorkload, TSCRIU } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = join(root, "test/workloads/bin/bigmem");
const runs = Number(process.argv[2] ?? 3);
const mib = Number(process.argv[3] ?? 1024);
const haveCriu = existsSync(CRIU);

type Mode = "tscriu --wp-snapshot" | "tscriu -R" | "criu -R";

interface Run {
  /** writes per second during the dump over those just before */
  kept: number;
  /** longest stall during the dump, seconds */
  stall: number;
  frozen: number;
  wall: number;
}

/** The progress file's two words: writes made, longest gap (ns) since it was set to 0. */
function progress(fd: number): [number, number] {
  const b = Buffer.alloc(16);
  if (readSync(fd, b, 0, 16, 0) !== 16) throw new Error("short read of the progress file");
  return [Number(b.readBigUInt64LE(0)), Number(b.readBigUInt64LE(8))];
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((done, fail) => {
    const c = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    c.stdout.on("data", (d: Buffer) => (out += d.toString()));
    c.stderr.on("data", (d: Buffer) => (out += d.toString()));
    c.on("error", fail);
    c.on("close", (code) => done({ code, out }));
  });
}

async function once(mode: Mode): Promise<Run> {
  const work = mkdtempSync(join(tmpdir(), "bench-snapwork-w-"));
  const images = mkdtempSync(join(tmpdir(), "bench-snapwork-i-"));
  const pid = await startWorkload([BIN, work, String(mib), "work"], work);
  const fd = openSync(join(work, "progress"), "r+");
  try {
    const [before] = progress(fd);
    const t0 = process.hrtime.bigint();
    await sleep(1000);
    const [base] = progress(fd);
    const baseRate = (base - before) / (Number(process.hrtime.bigint() - t0) / 1e9);
    writeSync(fd, Buffer.alloc(8), 0, 8, 8);
    const args = ["dump", "-t", String(pid), "-D", images, "-R", "--display-stats", ...(mode === "tscriu --wp-snapshot" ? ["--wp-snapshot"] : [])];
    const [start] = progress(fd);
    const t1 = process.hrtime.bigint();
    const r = mode === "criu -R" ? await run(CRIU, [...args, "-o", "dump.log"], criuEnv) : await run(TSCRIU, args, process.env);
    const wall = Number(process.hrtime.bigint() - t1) / 1e9;
    const [end, gap] = progress(fd);
    if (r.code !== 0) throw new Error(`${mode} failed: ${r.out}`);
    const frozen = Number(/Frozen time: (\d+) us/.exec(r.out)?.[1] ?? NaN) / 1e6;
    return { kept: (end - start) / wall / baseRate, stall: gap / 1e9, frozen, wall };
  } finally {
    closeSync(fd);
    process.kill(pid, "SIGKILL");
    await gone(pid);
    rmSync(images, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

if (!existsSync(TSCRIU)) throw new Error("build the CLI first: node scripts/build-ts.mjs");
const modes: Mode[] = ["tscriu --wp-snapshot", "tscriu -R", ...(haveCriu ? (["criu -R"] as const) : [])];
console.log(`a task writing a word of a random page of its ${mib} MiB nonstop, dumped with -R: its own writes during the dump against its rate just before; medians of ${runs} interleaved runs${haveCriu ? "" : " (no criu here)"}`);
const res = new Map<Mode, Run[]>(modes.map((m) => [m, []]));
for (let i = 0; i < runs; i++) for (const m of modes) res.get(m)!.push(await once(m));
for (const m of modes) {
  const rs = res.get(m)!;
  const med = (k: keyof Run): number => median(rs.map((r) => r[k]));
  console.log(`  ${m.padEnd(21)} work kept ${(med("kept") * 100).toFixed(0).padStart(3)} % of its rate over the dump's ${fmt(med("wall")).padStart(9)}; longest stall ${fmt(med("stall")).padStart(9)}; frozen ${fmt(med("frozen")).padStart(9)}`);
}
