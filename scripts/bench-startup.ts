// Start-up latency: a dump and a restore of a small task (`sleep`, a few MiB) with the CLI
// as an operator runs it (the file package.json's "bin" names, through its launcher line,
// with the environment as it is), side by side with criu 4.2 (interleaved runs, medians, ratios);
// the same two requests through a warm `tscriu service` (goal: 20 ms each); `tscriu
// --version` and `tscriu decode` of a small image (goal: 50 ms), next to an empty Node.
// criu runs with CRIU_FAULT=130 (its hardware breakpoints never fire under this VM's
// hypervisor). Figures on these shared VMs are noisy: read the ratios.
// Run: node --import=tsx scripts/bench-startup.ts [runs]   (TSCRIU_CRIU=path for another criu)
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bridge } from "../host-bridge/load.js";
import { RpcClient } from "../orchestrator/rpc/client.js";
import { fmt, median, timeCommand } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(root, (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { bin: { tscriu: string } }).bin.tscriu);
const CRIU = process.env["TSCRIU_CRIU"] ?? "/work/criu-4.2/criu/criu";
const runs = Number(process.argv[2] ?? 5);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const secs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
const scratch = mkdtempSync(join(tmpdir(), "bench-startup-"));
let n = 0;
/** A new empty images dir (criu wants it to exist). */
const fresh = (): string => {
  const d = join(scratch, `d${n++}`);
  mkdirSync(d);
  return d;
};

function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 5000 && (alive(pid) || existsSync(`/proc/${pid}`)); i++) await sleep(2);
}

async function smallTask(): Promise<number> {
  const pid = bridge().spawnDetached(["/bin/sleep", "1000"], { stdout: "/dev/null", killWithParent: true });
  for (let i = 0; i < 1000 && !readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("sleep"); i++) await sleep(2);
  return pid;
}

function kill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone
  }
}

const criuEnv = { ...process.env, CRIU_FAULT: "130" };
function timeCriu(args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(CRIU, args, { stdio: ["ignore", "ignore", "pipe"], env: criuEnv });
  const dt = secs(t0);
  if (r.status !== 0) throw new Error(`criu ${args.join(" ")} failed: ${r.stderr.toString().slice(0, 300)}`);
  return dt;
}

const haveCriu = existsSync(CRIU);
const t: Record<string, number[]> = { "tscriu dump": [], "tscriu restore": [], "criu dump": [], "criu restore": [] };
for (let i = 0; i < runs; i++) {
  for (const who of haveCriu ? ["tscriu", "criu"] : ["tscriu"]) {
    const pid = await smallTask();
    const dir = fresh();
    t[`${who} dump`]!.push(who === "tscriu" ? timeCommand(CLI, ["dump", "-t", String(pid), "-D", dir]) : timeCriu(["dump", "-t", String(pid), "-D", dir, "-o", "dump.log"]));
    await waitGone(pid);
    t[`${who} restore`]!.push(who === "tscriu" ? timeCommand(CLI, ["restore", "-D", dir, "-d"]) : timeCriu(["restore", "-D", dir, "-d", "-o", "restore.log"]));
    kill(pid);
    await waitGone(pid);
  }
}

console.log(`start-up latency: a small task (sleep), medians of ${runs} interleaved runs${haveCriu ? `; criu: ${CRIU}` : ` (no criu at ${CRIU})`}`);
for (const op of ["dump", "restore"]) {
  const ts = median(t[`tscriu ${op}`]!);
  const line = `  CLI ${op.padEnd(8)} tscriu ${fmt(ts).padStart(9)}`;
  if (!haveCriu) console.log(line);
  else {
    const c = median(t[`criu ${op}`]!);
    console.log(`${line}   criu ${fmt(c).padStart(9)}   tscriu / criu ${(ts / c).toFixed(2)}x`);
  }
}

// Warm requests through the service: the worker that takes the connection is loaded already.
const sock = join(scratch, "svc.sock");
const svc = spawn(CLI, ["service", "--address", sock], { stdio: "ignore" });
for (let i = 0; i < 2000 && !existsSync(sock); i++) await sleep(5);
const warm: Record<string, number[]> = { dump: [], restore: [] };
for (let i = 0; i < runs; i++) {
  const pid = await smallTask();
  const dir = fresh();
  await sleep(1500); // the spare worker started for the previous connection has loaded by now
  let c = RpcClient.connect(sock);
  let t0 = process.hrtime.bigint();
  await c.dump({ images_dir: dir, pid, log_file: "dump.log" });
  warm["dump"]!.push(secs(t0));
  await c.close();
  await waitGone(pid);
  await sleep(1500);
  c = RpcClient.connect(sock);
  t0 = process.hrtime.bigint();
  await c.restore({ images_dir: dir, log_file: "restore.log" });
  warm["restore"]!.push(secs(t0));
  await c.close();
  kill(pid);
  await waitGone(pid);
}
svc.kill("SIGTERM");
for (const op of ["dump", "restore"]) console.log(`  service ${op.padEnd(8)} ${fmt(median(warm[op]!)).padStart(9)} (warm worker; goal 20 ms)`);

// The CLI's floor: Node itself, then --version and a decode of a small image.
const img = join(scratch, "d0", "inventory.img");
const small: Record<string, number[]> = { "node -e ''": [], "node -e '' (no CA certs)": [], "tscriu --version": [], "tscriu decode inventory.img": [] };
for (let i = 0; i < runs; i++) {
  small["node -e ''"]!.push(timeCommand(process.execPath, ["-e", ""]));
  small["node -e '' (no CA certs)"]!.push(timeCommand("/usr/bin/env", ["-u", "NODE_EXTRA_CA_CERTS", process.execPath, "-e", ""]));
  small["tscriu --version"]!.push(timeCommand(CLI, ["--version"]));
  small["tscriu decode inventory.img"]!.push(timeCommand(CLI, ["decode", "-i", img]));
}
for (const [k, v] of Object.entries(small)) console.log(`  ${k.padEnd(28)} ${fmt(median(v)).padStart(9)}${k.startsWith("tscriu") ? " (goal 50 ms)" : ""}`);
console.log(`  NODE_EXTRA_CA_CERTS is ${process.env["NODE_EXTRA_CA_CERTS"] ? "set (about 60 ms of every Node start: node -e '' pays it, tscriu's launcher does not)" : "not set"}`);
rmSync(scratch, { recursive: true, force: true });
