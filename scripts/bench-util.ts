// Shared helpers of the benchmark scripts: timing commands, interleaved medians,
// starting a workload and waiting for it, where criu is and how it must run here.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bridge } from "../host-bridge/load.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/**
 * The tscriu command as an operator runs it: package.json's bin (the bundled CLI, run
 * through its launcher line), executed directly. Benchmarks time this, not the
 * unbundled modules under dist/ (which load slower than what is shipped).
 */
export const TSCRIU = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tscriu: string } }).bin.tscriu);

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Wall time of one run of a command, in seconds; throws if it fails. */
export function timeCommand(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"], maxBuffer: 64 << 20 });
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr?.toString().slice(0, 400)}`);
  return dt;
}

/**
 * Runs each variant `runs` times, interleaved (a b a b …) so that the VM's noise
 * hits all of them alike, and returns the median seconds per variant.
 */
export function interleaved(variants: Record<string, () => number>, runs: number): Record<string, number> {
  const times: Record<string, number[]> = {};
  for (const k of Object.keys(variants)) times[k] = [];
  for (let i = 0; i < runs; i++) for (const [k, f] of Object.entries(variants)) times[k]!.push(f());
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
}

export function fmt(s: number): string {
  return s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(2)} s`;
}

/** Runs a command that prints its own measured seconds as the last line of stdout. */
export function selfTimed(cmd: string, args: string[]): number {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr?.toString().slice(0, 400)}`);
  const v = Number(r.stdout.toString().trim().split("\n").pop());
  if (!Number.isFinite(v)) throw new Error(`${cmd}: no time printed`);
  return v;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Starts a workload from test/workloads/bin (argv[1] is its work dir, where its
 * stdout goes), detached in its own session as criu wants its root task, and
 * returns its pid once it has printed "ready".
 */
export async function startWorkload(argv: string[], work: string): Promise<number> {
  const out = join(work, "stdout");
  const pid = bridge().spawnDetached(argv, { stdout: out, killWithParent: true });
  for (let i = 0; i < 6000; i++) {
    if (existsSync(out) && readFileSync(out, "utf8").startsWith("ready")) return pid;
    await sleep(5);
  }
  throw new Error(`${basename(argv[0]!)} ${argv.slice(2).join(" ")} (pid ${pid}) did not get ready in 30 s`);
}

/** Waits (up to 10 s) for a killed task to be gone from /proc. */
export async function gone(pid: number): Promise<void> {
  for (let i = 0; i < 2000 && existsSync(`/proc/${pid}`); i++) await sleep(5);
}

/** The criu to compare with: TSCRIU_CRIU, else the one built in /work. */
export const CRIU = process.env["TSCRIU_CRIU"] ?? "/work/criu-4.2/criu/criu";

/** criu stops its parasite on the syscall (CRIU_FAULT=130): this VM never fires hardware breakpoints. */
export const criuEnv = { ...process.env, CRIU_FAULT: "130" };
