// The Debian trixie root with criu 4.x (scripts/criu-root.sh) that the interop tests run
// criu in, and whether criu works there at all on this machine. TSCRIU_CRIU=/path/to/criu
// runs a criu binary of the host instead (an upstream build, say: criu 4.1.1 in the root
// hangs on some kernels where 4.2 works); CI uses the root.
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, openSync, readFileSync, symlinkSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { ROOT } from "./fixtures.js";
import { scratchDir } from "./tmp.js";
import { buildWorkloads, procState, RUNS_ON, waitFor, waitTreeFree, WORKLOAD_BIN } from "./workloads.js";

export const CRIU_ROOT = process.env["TSCRIU_CRIU_ROOT"] ?? join(process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "tscriu/criu-root-trixie");
export const SCRIPT = join(ROOT, "scripts/criu-root.sh");
/** a host criu binary to use instead of the root's */
export const HOST_CRIU = process.env["TSCRIU_CRIU"];

/**
 * `bash -c script` where `criu` is the interop criu: in the root, or the host binary
 * (TSCRIU_CRIU) found first on PATH.
 */
export function criuShell(script: string): { cmd: string; args: string[]; env: NodeJS.ProcessEnv } {
  // criu stops the task at the end of its parasite with a hardware breakpoint; in a VM
  // whose hypervisor accepts but never fires them (the PVM guests of the 2026-12 machine
  // kind) criu 4.1.1 waits for that trap forever. criu 4.2 tests for working breakpoints
  // itself; CRIU_FAULT=130 (criu's FI_NO_BREAKPOINTS) makes any criu stop on the syscall
  // instead, which works everywhere.
  const full = `export CRIU_FAULT=130\n${script}`;
  if (!HOST_CRIU) return { cmd: "bash", args: [SCRIPT, "run", CRIU_ROOT, ROOT, "bash", "-c", full], env: process.env };
  const bin = scratchDir("tscriu-host-criu-");
  symlinkSync(HOST_CRIU, join(bin, "criu"));
  return { cmd: "bash", args: ["-c", full], env: { ...process.env, PATH: `${bin}:${process.env["PATH"] ?? ""}` } };
}

/** Runs `script` (see criuShell) to its end. */
export function runCriuShell(script: string): SpawnSyncReturns<string> {
  const c = criuShell(script);
  return spawnSync(c.cmd, c.args, { encoding: "utf8", env: c.env });
}

let canary: string | undefined;

/**
 * Can criu checkpoint and restore at all here? It dumps a task of its own, in its root,
 * under a time limit. criu 4.1.1 cannot on some kernel builds: on the 2026-12-02 machine
 * kind (6.18.44, another build) its dump and its restore both wait for the task's final
 * rt_sigreturn stop, which never comes, and hang. undefined when it can, else why not.
 */
function criuCannot(): string | undefined {
  if (canary !== undefined) return canary || undefined;
  const work = scratchDir("tscriu-criu-canary-");
  const bin = join(WORKLOAD_BIN, "static", "sleeper");
  const script = [
    `cd ${work}`,
    `setsid ${bin} ${work} >${work}/out 2>&1 </dev/null &`,
    `for i in $(seq 200); do grep -q '^ready ' ${work}/out 2>/dev/null && break; sleep 0.05; done`,
    `pid=$(awk '/^ready /{print $2}' ${work}/out)`,
    `timeout -s KILL 15 criu dump -t "$pid" -D ${work} -v4 -o dump.log; rc=$?`,
    `kill -9 "$pid" 2>/dev/null; exit $rc`,
  ].join("\n");
  buildWorkloads();
  const r = runCriuShell(script);
  const log = existsSync(join(work, "dump.log")) ? readFileSync(join(work, "dump.log"), "utf8").trim().split("\n").slice(-2).join(" / ") : r.stderr;
  canary = r.status === 0 ? "" : `criu ${criuVersion()} cannot checkpoint a task of its own on this kernel (${r.status === 137 ? "its dump hung for 15 s" : `exit ${r.status}`}; it last logged: ${log})`;
  return canary || undefined;
}

export function haveRoot(t: ExecutionContext): boolean {
  if ((HOST_CRIU ? existsSync(HOST_CRIU) : existsSync(join(CRIU_ROOT, "usr/sbin/criu"))) && tmpdir() === "/tmp") {
    const broken = criuCannot();
    if (!broken) return true;
    // Not a missing tool: criu itself does not work here. Said on every test it affects.
    t.log(`NOT CHECKED: ${broken}`);
    t.pass();
    return false;
  }
  const why = tmpdir() !== "/tmp" ? `TMPDIR is ${tmpdir()}, the root only sees /tmp` : `no criu root at ${CRIU_ROOT} (bash scripts/criu-root.sh create ${CRIU_ROOT})`;
  if (process.env["CI"]) t.fail(`CI must check that criu restores tscriu's images: ${why}`);
  else {
    t.log(`skipped: ${why}`);
    t.pass();
  }
  return false;
}

let version: string | undefined;
export function criuVersion(): string {
  version ??= /Version: (\S+)/.exec(runCriuShell("criu --version").stdout)?.[1] ?? "?";
  return version;
}


/** criu's stderr and the errors and warnings at the end of its log LOG in `dir`. */
export function criuLogTail(dir: string, log = "restore.log"): string {
  const read = (f: string): string => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), "utf8") : "");
  return `${read("criu.stderr")}\n${read(log).split("\n").filter((l) => /Error|Warn/.test(l)).slice(-8).join("\n")}`;
}

/**
 * criu restore of `dir`, started in the criu root (criu stays the task's parent, as
 * without -d; killed at teardown); resolves once criu says the task runs its own code
 * again, registers and all. `extra`: more of criu's options ("--file-locks").
 */
export async function restoredByCriu(t: ExecutionContext, pid: number, dir: string, timeoutMs = 20_000, extraArgs = ""): Promise<void> {
  const err = openSync(join(dir, "criu.stderr"), "w");
  const sh = criuShell(`exec criu restore -D ${dir} -v4 -o restore.log ${extraArgs}`);
  const c = spawn(sh.cmd, sh.args, { stdio: ["ignore", err, err], env: sh.env });
  t.teardown(() => {
    c.kill("SIGKILL");
  });
  try {
    await waitFor(
      `criu to restore pid ${pid}`,
      () => {
        if (c.exitCode !== null) throw new Error(`criu restore exited with ${c.exitCode} before pid ${pid} ran`);
        const log = join(dir, "restore.log");
        return existsSync(log) && readFileSync(log, "utf8").includes("Restore finished successfully. Tasks resumed.") && RUNS_ON.test(procState(pid) ?? "");
      },
      timeoutMs,
    );
  } catch (e) {
    t.fail(`${(e as Error).message}; criu said:\n${criuLogTail(dir)}`);
    throw e;
  }
}

/** A workload that criu dumped (criuDumps): where its images and its state are. */
export interface CriuDumped {
  pid: number;
  images: string;
  /** criu's exit status */
  status: number | null;
  stderr: string;
  /** the key=value pairs of its ready line */
  info: Record<string, string>;
  /** asks the restored workload for its self-check (SIGUSR1) and returns its answer */
  check(timeoutMs?: number): Promise<string>;
}

/**
 * Starts the static build of workload `name` in the criu root, has criu dump it (`extra`:
 * more of criu's options; `setup`: shell run before the dump, the task's PID in $pid) and
 * waits for its PID to be free. The task is killed at teardown.
 */
export async function criuDumps(t: ExecutionContext, name: string, args: readonly string[], extra = "", setup = ""): Promise<CriuDumped> {
  buildWorkloads();
  const work = scratchDir(`tscriu-fromcriu-${name}-${args.join("-").replace(/\//g, "_")}-`);
  const [state, images, out] = [join(work, "state"), join(work, "images"), join(work, "out")];
  const script = [
    `mkdir -p ${state} ${images}`,
    `cd ${work}`,
    `setsid ${join(WORKLOAD_BIN, "static", name)} ${state} ${args.join(" ")} >${out} 2>&1 </dev/null &`,
    `for i in $(seq 200); do grep -q '^ready ' ${out} 2>/dev/null && break; sleep 0.05; done`,
    `pid=$(awk '/^ready /{print $2}' ${out})`,
    setup,
    `criu dump -t "$pid" -D ${images} -v4 -o dump.log${extra ? ` ${extra}` : ""}`,
  ].join("\n");
  const r = runCriuShell(script);
  const ready = /^ready (\d+)(.*)$/m.exec(existsSync(out) ? readFileSync(out, "utf8") : "");
  const pid = Number(ready?.[1]);
  const info = Object.fromEntries((ready?.[2] ?? "").split(" ").flatMap((p) => (p.indexOf("=") > 0 ? [[p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)]] : [])));
  t.teardown(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  });
  if (r.status === 0) await waitTreeFree(images, [pid]);
  const results = (): string[] => (existsSync(join(state, "result")) ? readFileSync(join(state, "result"), "utf8").split("\n").filter(Boolean) : []);
  return {
    pid,
    images,
    status: r.status,
    stderr: r.stderr,
    info,
    async check(timeoutMs = 30_000) {
      const before = results().length;
      process.kill(pid, "SIGUSR1");
      const lines = await waitFor(`${name} (pid ${pid}) to answer its self-check`, () => (results().length > before ? results() : undefined), timeoutMs);
      return lines[before]!;
    },
  };
}
