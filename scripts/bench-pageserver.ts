// Benchmark of `dump -R` over the page server on loopback, tscriu and criu side by
// side (issue 11): a task with N MiB of written anonymous memory; each run starts a
// page server (tscriu's for tscriu, criu's for criu) into a fresh directory, dumps
// the task with -R into it, and measures the dump command's wall time, the frozen
// time (from stats-dump) and when the page server exits (its status must be 0).
// criu's server holds TCP_CORK on the CLOSE header, which costs its client ~250 ms
// at disconnect while the task is still frozen: that shows in criu's frozen time.
// Runs of the two tools are interleaved; the kill mode (no -R) too, each run on a task
// of its own. The raw limits beside them: N MiB through a loopback TCP socket between
// two processes, and N MiB written to this disk with O_DIRECT and fsynced.
// tscriu's page server answers the dump's close once every page is fsynced, criu's
// before anything is synced: "on disk" adds to criu's server exit the fsync of the
// pages it received, for the same promise. The load average is printed before and after.
// Run: node --import=tsx scripts/bench-pageserver.ts [MiB=1024] [runs=3]
import { spawn } from "node:child_process";
import { closeSync, constants, existsSync, fsyncSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bridge } from "../host-bridge/load.js";
import { readImage } from "../images/io.js";
import { CRIU, criuEnv, fmt, gone, median, startWorkload } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// the bin, as an operator runs it (bundled, with its code cache: 40-100 ms less start-up than dist/orchestrator/cli/main.js)
const CLI = join(root, (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { bin: { tscriu: string } }).bin.tscriu);
const BIN = join(root, "test/workloads/bin/bigmem");
const mib = Number(process.argv[2] ?? 1024);
const runs = Number(process.argv[3] ?? 3);

type Tool = "tscriu" | "criu";

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** process.hrtime at exit, ns */
  at: bigint;
}

/** Spawns a command, collecting stderr; `exited` resolves when it has exited and its pipes closed. */
function launch(cmd: string, args: string[], env: NodeJS.ProcessEnv, statusFd: boolean): { exited: Promise<Exit>; ready: Promise<void>; kill: () => void } {
  const child = spawn(cmd, args, { env, stdio: ["ignore", "ignore", "pipe", statusFd ? "pipe" : "ignore"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const exited = new Promise<Exit>((res, rej) => {
    child.on("error", rej);
    child.on("close", (code, signal) => res({ code, signal, stderr, at: process.hrtime.bigint() }));
  });
  // --status-fd 3: both servers write one byte there once they listen (criu's status_ready()).
  const ready = !statusFd
    ? Promise.resolve()
    : new Promise<void>((res, rej) => {
        const status = child.stdio[3] as NodeJS.ReadableStream;
        status.once("data", () => res());
        void exited.then((e) => rej(new Error(`${cmd} ${args.join(" ")}: exited (${e.code ?? e.signal}) before it listened: ${e.stderr}`)));
      });
  return { exited, ready, kill: () => child.kill("SIGKILL") };
}

/** A loopback port free now (a page server listens on it a moment later). */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

const secs = (a: bigint, b: bigint): number => Number(b - a) / 1e9;

/** criu writes its errors to the log (-o), not to stderr. */
function logTail(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").slice(-15).join("\n") : "";
}

interface Run {
  /** the dump command, start to exit */
  wall: number;
  frozen: number;
  /** from the dump's start to the page server's exit */
  server: number;
  /** the page server's exit after the dump's (negative: before it) */
  tail: number;
  /** from the dump's start until the pages are on disk (criu: its server's exit, then an fsync of them) */
  durable: number;
}

/** fsync of every file in dir, then of dir; seconds. */
function syncAll(dir: string): number {
  const t0 = process.hrtime.bigint();
  for (const f of [...readdirSync(dir).map((f) => join(dir, f)), dir]) {
    const fd = openSync(f, "r");
    fsyncSync(fd);
    closeSync(fd);
  }
  return secs(t0, process.hrtime.bigint());
}

async function once(tool: Tool, pid: number, leaveRunning: boolean): Promise<Run> {
  const recv = mkdtempSync(join(tmpdir(), "bench-ps-recv-"));
  const images = mkdtempSync(join(tmpdir(), "bench-ps-img-"));
  try {
    const port = String(await freePort());
    const psArgs = ["page-server", "-D", recv, "--address", "127.0.0.1", "--port", port, "--status-fd", "3"];
    const dumpArgs = ["dump", "-t", String(pid), "-D", images, "--page-server", "--address", "127.0.0.1", "--port", port, ...(leaveRunning ? ["-R"] : [])];
    const server = tool === "tscriu" ? launch(CLI, psArgs, process.env, true) : launch(CRIU, [...psArgs, "-o", "ps.log"], criuEnv, true);
    await server.ready;
    const t0 = process.hrtime.bigint();
    const dump = tool === "tscriu" ? launch(CLI, dumpArgs, process.env, false) : launch(CRIU, [...dumpArgs, "-o", "dump.log"], criuEnv, false);
    const d = await dump.exited;
    if (d.code !== 0) {
      server.kill();
      throw new Error(`${tool} dump over the page server failed (${d.code ?? d.signal}): ${d.stderr}${logTail(join(images, "dump.log"))}`);
    }
    // a server that does not see the end of the dump would hang the benchmark
    const timer = setTimeout(server.kill, 30_000);
    const s = await server.exited;
    clearTimeout(timer);
    if (s.code !== 0) throw new Error(`${tool} page-server exited ${s.code ?? s.signal}: ${s.stderr}${logTail(join(recv, "ps.log"))}`);
    const stats = (await readImage(join(images, "stats-dump"))).entries[0]?.["dump"] as { frozen_time?: number } | undefined;
    if (stats?.frozen_time === undefined) throw new Error(`${tool}: no frozen_time in ${join(images, "stats-dump")}`);
    // The pages went over the wire: all of them in the server's directory, none beside the other images.
    const pages = (dir: string): number => readdirSync(dir).filter((f) => /^pages-\d+\.img$/.test(f)).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
    const got = pages(recv) / 2 ** 20;
    if (got < mib || got > mib + 64) throw new Error(`${tool}: the page server received ${got.toFixed(1)} MiB of pages for a task with ${mib} MiB`);
    if (pages(images) !== 0) throw new Error(`${tool}: pages written to the images dir ${images}, not sent`);
    if (leaveRunning && !existsSync(`/proc/${pid}`)) throw new Error(`${tool}: task ${pid} gone after dump -R`);
    // tscriu's server has fsynced them before it answered the close
    const durable = secs(t0, s.at) + (tool === "criu" ? syncAll(recv) : 0);
    const r = { wall: secs(t0, d.at), frozen: stats.frozen_time / 1e6, server: secs(t0, s.at), tail: secs(d.at, s.at), durable };
    // each run as it comes: this VM's noise shows in the spread
    console.log(`        ${tool.padEnd(6)} ${leaveRunning ? "-R  " : "kill"}  wall ${fmt(r.wall).padStart(9)}  frozen ${fmt(r.frozen).padStart(9)}  server exit ${fmt(r.server).padStart(9)}  on disk ${fmt(r.durable).padStart(9)}`);
    return r;
  } finally {
    rmSync(recv, { recursive: true, force: true });
    rmSync(images, { recursive: true, force: true });
  }
}

/**
 * The raw limit: `mib` MiB through a loopback TCP socket into another process that
 * discards them (into one reused 4 MiB buffer: node's default reads allocate 64 KiB
 * at a time and measured 0.3 GiB/s here, a limit of the sink, not of the kernel).
 */
async function loopback(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
  const { port } = srv.address() as { port: number };
  const accepted = new Promise<Socket>((res) => srv.once("connection", res));
  const sink = spawn(
    process.execPath,
    ["-e", `const b=Buffer.allocUnsafe(4<<20);require("net").connect({port:${port},host:"127.0.0.1",onread:{buffer:b,callback:()=>true}}).on("end",()=>process.exit(0))`],
    { stdio: "inherit" },
  );
  const exited = new Promise<number | null>((res) => sink.on("close", res));
  const c = await accepted;
  srv.close();
  const buf = Buffer.alloc(8 << 20, 0xa5);
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < mib << 20; sent += buf.length) if (!c.write(buf)) await new Promise((r) => c.once("drain", r));
  c.end();
  if ((await exited) !== 0) throw new Error("loopback: the sink process failed");
  return secs(t0, process.hrtime.bigint());
}

/** The disk's limit: `mib` MiB written with O_DIRECT in 4 MiB pieces, then fsynced (seconds). */
function disk(): number {
  const dir = mkdtempSync(join(tmpdir(), "bench-ps-disk-"));
  try {
    // O_DIRECT (as tscriu's page server writes) wants a page-aligned buffer
    const buf = bridge().allocAligned(4 << 20).fill(0xa5);
    const t0 = process.hrtime.bigint();
    let fd: number;
    try {
      fd = openSync(join(dir, "f"), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600);
    } catch {
      // a file system without O_DIRECT
      fd = openSync(join(dir, "f"), "w");
    }
    for (let off = 0; off < mib << 20; off += buf.length) writeSync(fd, buf, 0, buf.length, off);
    fsyncSync(fd);
    closeSync(fd);
    return secs(t0, process.hrtime.bigint());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function task(work: string): Promise<number> {
  return startWorkload([BIN, work, String(mib)], work);
}

async function kill(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // killed by the dump already
  }
  await gone(pid);
}

if (!existsSync(CLI)) throw new Error(`build the CLI first (${CLI}): node scripts/build-ts.mjs`);
if (!existsSync(CRIU)) throw new Error(`no criu at ${CRIU} (TSCRIU_CRIU=/path/to/criu): this benchmark compares with it`);
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(" ");
console.log(`dump over the page server on loopback, ${mib} MiB: medians of ${runs} interleaved runs, tscriu side by side with ${CRIU}; load average ${load()}`);
const res: Record<string, Run[]> = {};
const limits: number[] = [];
const disks: number[] = [];
const work = mkdtempSync(join(tmpdir(), "bench-ps-w-"));
const pid = await task(work);
try {
  for (let i = 0; i < runs; i++) {
    limits.push(await loopback());
    disks.push(disk());
    for (const tool of ["tscriu", "criu"] as const) (res[`${tool} -R`] ??= []).push(await once(tool, pid, true));
  }
} finally {
  await kill(pid);
  rmSync(work, { recursive: true, force: true });
}
// the kill mode, each run on a task of its own
for (let i = 0; i < runs; i++) {
  for (const tool of ["tscriu", "criu"] as const) {
    const w = mkdtempSync(join(tmpdir(), "bench-ps-w-"));
    const p = await task(w);
    try {
      (res[`${tool} kill`] ??= []).push(await once(tool, p, false));
    } finally {
      await kill(p);
      rmSync(w, { recursive: true, force: true });
    }
  }
}

const gib = mib / 1024;
const lim = median(limits);
console.log(`${String(mib).padStart(5)} MiB  raw: loopback TCP between two processes ${fmt(lim)} (${(gib / lim).toFixed(2)} GiB/s); O_DIRECT write and fsync ${fmt(median(disks))}; load average now ${load()}`);
for (const mode of ["-R", "kill"] as const) {
  const m = (tool: Tool, k: keyof Run): number => median(res[`${tool} ${mode}`]!.map((r) => r[k]));
  const n = res[`tscriu ${mode}`]!.length;
  for (const tool of ["tscriu", "criu"] as const) {
    const tail = m(tool, "tail");
    const when = `${fmt(Math.abs(tail))} ${tail < 0 ? "before" : "after"} the dump's`;
    console.log(
      `${String(mib).padStart(5)} MiB  ${tool.padEnd(6)} ${mode.padEnd(4)} (${n}x)  wall ${fmt(m(tool, "wall")).padStart(9)}  frozen ${fmt(m(tool, "frozen")).padStart(9)}  server exit ${fmt(m(tool, "server")).padStart(9)} (${when})  on disk ${fmt(m(tool, "durable")).padStart(9)}  throughput ${(gib / m(tool, "wall")).toFixed(2)} GiB/s (wall)`,
    );
  }
  const ratio = (k: keyof Run): string => `${(m("tscriu", k) / m("criu", k)).toFixed(2)}x`;
  console.log(`${String(mib).padStart(5)} MiB  ${mode.padEnd(20)}tscriu/criu: wall ${ratio("wall")}, frozen ${ratio("frozen")}, server exit ${ratio("server")}, on disk ${ratio("durable")}`);
}
