// Benchmark of dump and restore of a server holding N established TCP connections
// (default 1000) from clients outside its tree (this script's own sockets): the inetsk
// workload's echo server, dumped with --tcp-established (--network-lock nftables, and
// skip: the clients stay quiet) and restored with --tcp-established, by tscriu (the compiled CLI) and, side by side, by
// criu where one is given (TSCRIU_CRIU=/path/to/criu; it runs with CRIU_FAULT=130, see
// test/helpers/criu-root.ts). Each tool restores its own dump; after every restore each
// client sends a line and must get its answer, so a run that loses a connection fails.
// Wall times, medians of interleaved runs, and the CPU time of the CLI runs (the figure
// that holds on a busy machine). The same requests go through each tool's RPC
// service too (`service --address`, the way runc and podman drive criu; with the network
// lock skipped): a client's time from its connection to the answer, the worker warm.
// Run: node --import=tsx scripts/bench-tcp.ts [runs] [connections]
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bridge } from "../host-bridge/load.js";
import { RpcClient } from "../orchestrator/rpc/client.js";
import { fmt, median, TSCRIU } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = join(root, "test/workloads/bin/inetsk");
const runs = Number(process.argv[2] ?? 5);
const conns = Number(process.argv[3] ?? 1000);
const CRIU = process.env["TSCRIU_CRIU"];
/**
 * TSCRIU_PROF=DIR: tscriu's runs write V8 CPU profiles there; TSCRIU_NODE_ARGS: node options
 * for tscriu's runs (the bundle run by node with them, which NODE_OPTIONS may not carry).
 */
const PROF = process.env["TSCRIU_PROF"];
const NODE_ARGS = [...(process.env["TSCRIU_NODE_ARGS"]?.split(" ").filter((a) => a !== "") ?? []), ...(PROF ? ["--cpu-prof", `--cpu-prof-dir=${PROF}`] : [])];
const tscriu = (args: string[]): [string, string[]] => (NODE_ARGS.length ? [process.execPath, [...NODE_ARGS, TSCRIU, ...args]] : [TSCRIU, args]);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Server {
  pid: number;
  work: string;
  clients: { s: Socket; got: string }[];
}

async function start(): Promise<Server> {
  const work = mkdtempSync(join(tmpdir(), "bench-tcp-"));
  const out = join(work, "stdout");
  const pid = bridge().spawnDetached([BIN, work, "echo"], { stdout: out, killWithParent: true });
  let port = 0;
  for (let i = 0; i < 2000 && !port; i++) {
    port = Number(/p3=(\d+)/.exec(existsSync(out) ? readFileSync(out, "utf8") : "")?.[1] ?? 0);
    if (!port) await sleep(5);
  }
  if (!port) throw new Error("the echo server did not get ready");
  const clients: Server["clients"] = [];
  for (let i = 0; i < conns; i++) {
    const s = connect({ port, host: "127.0.0.1" });
    const c = { s, got: "" };
    s.setEncoding("latin1");
    s.on("data", (d: string) => (c.got += d));
    s.on("error", (e) => (c.got += `<${e.message}>`));
    clients.push(c);
  }
  await roundTrip({ pid, work, clients }, "hello\n");
  return { pid, work, clients };
}

/** Every client sends `line` and waits for its answer. */
async function roundTrip(srv: Server, line: string): Promise<void> {
  const want = srv.clients.map((c) => c.got + line.toUpperCase());
  for (const c of srv.clients) c.s.write(line);
  for (let i = 0; i < 4000; i++) {
    if (srv.clients.every((c, k) => c.got === want[k])) return;
    await sleep(5);
  }
  const bad = srv.clients.findIndex((c, k) => c.got !== want[k]);
  throw new Error(`client ${bad} got ${JSON.stringify(srv.clients[bad]!.got.slice(-80))}`);
}

function stop(srv: Server): void {
  for (const c of srv.clients) c.s.destroy();
  try {
    process.kill(srv.pid, "SIGKILL");
  } catch {
    // gone
  }
  rmSync(srv.work, { recursive: true, force: true });
}

/**
 * CPU time (user + system, seconds) of this script's children it has waited for, and of
 * theirs: /proc/self/stat's cutime and cstime, in clock ticks (100 a second), what
 * /usr/bin/time would give without a process of its own. A CPU figure stands where wall
 * times do not, on a busy machine; criu's restore does most of its work in the restored
 * task, which is not counted (nor waited for).
 */
function childrenCpu(): number {
  const stat = readFileSync("/proc/self/stat", "latin1");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[13]) + Number(f[14])) / 100;
}

/** CPU time of each CLI run, by tool and step ("tscriu nftables dump"). */
const cpu: Record<string, number[]> = {};

function timed(key: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const c0 = childrenCpu();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"], env });
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr.toString().slice(0, 400)}`);
  (cpu[key] ??= []).push(childrenCpu() - c0);
  return dt;
}

/**
 * The network lock tables now in this namespace ("table inet CRIU-<run id>", criu's and
 * tscriu's name for them); none when nftables cannot be asked.
 */
function lockTables(): Set<string> {
  try {
    return new Set(
      bridge()
        .nftRun("list tables")
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => /^table inet CRIU-/.test(l)),
    );
  } catch {
    return new Set();
  }
}

async function gone(pid: number): Promise<void> {
  for (let i = 0; i < 2000 && existsSync(`/proc/${pid}`); i++) await sleep(5);
}

type Tool = { dump: (pid: number, dir: string) => number | Promise<number>; restore: (dir: string) => number | Promise<number> };
const TOOLS: Record<string, Tool> = {};
for (const lock of ["nftables", "skip"]) {
  TOOLS[`tscriu ${lock}`] = {
    dump: (pid, dir) => timed(`tscriu ${lock} dump`, ...tscriu(["dump", "-t", String(pid), "-D", dir, "--tcp-established", "--network-lock", lock])),
    restore: (dir) => timed(`tscriu ${lock} restore`, ...tscriu(["restore", "-D", dir, "-d", "--tcp-established"])),
  };
  if (CRIU) {
    const env = { ...process.env, CRIU_FAULT: "130" };
    TOOLS[`criu ${lock}`] = {
      dump: (pid, dir) => timed(`criu ${lock} dump`, CRIU, ["dump", "-t", String(pid), "-D", dir, "--tcp-established", "--network-lock", lock, "-o", "dump.log"], env),
      restore: (dir) => timed(`criu ${lock} restore`, CRIU, ["restore", "-D", dir, "-d", "--tcp-established", "-o", "restore.log"], env),
    };
  }
}

/** A tool's `service --address SOCK`, and requests to it timed from the client's side. */
const services: ChildProcess[] = [];
const serviceDir = mkdtempSync(join(tmpdir(), "bench-tcp-svc-"));
async function service(name: string, cmd: string, env: NodeJS.ProcessEnv): Promise<Tool> {
  const sock = join(serviceDir, `${name}.sock`);
  services.push(spawn(cmd, ["service", "--address", sock], { stdio: "ignore", env }));
  for (let i = 0; i < 2000 && !existsSync(sock); i++) await sleep(5);
  const ask = async (req: (c: RpcClient) => Promise<unknown>): Promise<number> => {
    // The worker that takes a connection has loaded by now (start() takes seconds).
    const c = RpcClient.connect(sock);
    const t0 = process.hrtime.bigint();
    try {
      await req(c);
    } finally {
      await c.close();
    }
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  return {
    dump: async (pid, dir) => ask((c) => c.dump({ images_dir: dir, pid, tcp_established: true, network_lock: "SKIP", log_file: "dump.log" })),
    restore: async (dir) => ask((c) => c.restore({ images_dir: dir, tcp_established: true, log_file: "restore.log" })),
  };
}
TOOLS["tscriu service"] = await service("tscriu", TSCRIU, process.env);
if (CRIU) TOOLS["criu service"] = await service("criu", CRIU, { ...process.env, CRIU_FAULT: "130" });

const times: Record<string, { dump: number[]; restore: number[] }> = {};
const failed: Record<string, string> = {};
// The images dirs are removed at the end, not between runs: on an ext4 without a journal
// (these machines' root), each file created in the seconds after a thousand were removed
// skips past every one of their inodes, and the next dump would pay for this script's cleanup.
const dirs: string[] = [];
for (let i = 0; i < runs; i++) {
  for (const [name, tool] of Object.entries(TOOLS)) {
    if (failed[name]) continue;
    const srv = await start();
    const dir = mkdtempSync(join(tmpdir(), "bench-tcp-img-"));
    dirs.push(dir);
    const locks = lockTables();
    try {
      const d = await tool.dump(srv.pid, dir);
      await gone(srv.pid);
      const r = await tool.restore(dir);
      await roundTrip(srv, `after the restore ${i}\n`);
      (times[name] ??= { dump: [], restore: [] }).dump.push(d);
      times[name].restore.push(r);
    } catch (e) {
      // A tool that cannot do it is reported, not retried.
      failed[name] = (e as Error).message.split("\n")[0]!.slice(0, 300);
    } finally {
      stop(srv);
      // A failed dump may leave its lock behind: criu 4.2's nftables lock aborts at 1,000
      // connections (FD_SETSIZE) with its table made. Left there, every packet on the
      // machine would pass its chains from then on (later runs, and whatever else runs).
      for (const t of lockTables()) if (!locks.has(t)) bridge().nftRun(`delete ${t}`);
    }
  }
}
for (const svc of services) svc.kill("SIGTERM");
for (const dir of [...dirs, serviceDir]) rmSync(dir, { recursive: true, force: true });
console.log(`${conns} established connections from clients outside the tree, ${runs} runs each, medians (every connection answered after each restore):`);
for (const [name, t] of Object.entries(times)) console.log(`  ${name.padEnd(16)} dump ${fmt(median(t.dump)).padStart(9)}   restore ${fmt(median(t.restore)).padStart(9)}`);
for (const [name, why] of Object.entries(failed)) console.log(`  ${name.padEnd(16)} FAILED: ${why}`);
for (const lock of ["nftables", "skip", "service"]) {
  const [a, b] = [times[`tscriu ${lock}`], times[`criu ${lock}`]];
  if (a && b) console.log(`  tscriu/criu (${lock}): dump ${(median(a.dump) / median(b.dump)).toFixed(2)}x, restore ${(median(a.restore) / median(b.restore)).toFixed(2)}x`);
}
console.log("CPU time (user + system) of the CLI runs, medians (criu's restore: without the restored task's own work):");
for (const name of Object.keys(times)) {
  const [d, r] = [cpu[`${name} dump`], cpu[`${name} restore`]];
  if (d?.length && r?.length) console.log(`  ${name.padEnd(16)} dump ${fmt(median(d)).padStart(9)}   restore ${fmt(median(r)).padStart(9)}`);
}
process.exit(0);
