// Starting, watching and cleaning up the C workloads of test/workloads/ from ava tests.
// Workloads are started through the bridge's spawnDetached (never child_process: a
// tracee that is a child of Node's child_process loses its stop notifications to
// libuv), each with its own state directory, and killed + reaped by t.teardown even
// when the test fails.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { ExecutionContext } from "ava";
import { readImage } from "../../images/io.js";
import { WAIT } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { WaitStatus } from "../../host-bridge/native.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const WORKLOAD_BIN = join(root, "test/workloads/bin");

let built = false;

/** Builds the workloads once per test process (the script itself is race-safe). */
export function buildWorkloads(): void {
  if (built) return;
  const r = spawnSync(process.execPath, [join(root, "scripts/build-workloads.mjs")], { encoding: "utf8" });
  if (r.status !== 0) {
    throw new Error(`scripts/build-workloads.mjs failed (${r.status ?? r.error?.message}):\n${r.stderr}`);
  }
  built = true;
}

/** Polls `probe` until it returns something other than undefined/false; never a fixed sleep. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Waits until every process and thread of a dumped tree (pstree.img in `images`) and each
 * of `also` is gone: after a dump killed the tree, a zombie of it may still be in its
 * parent's reaping when the root is gone, and a restore would find its PID taken.
 */
export async function waitTreeFree(images: string, also: readonly number[] = []): Promise<void> {
  const tree = existsSync(join(images, "pstree.img")) ? (await readImage(join(images, "pstree.img"))).entries : [];
  const pids = new Set([...also, ...tree.flatMap((e) => [e["pid"] as number, ...((e["threads"] as number[] | undefined) ?? [])])].filter((p) => p > 0));
  for (const p of pids) await waitFor(`pid ${p} to be free after the dump`, () => !existsSync(`/proc/${p}`));
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

/** The state letter of /proc/PID/stat ("S", "R", "t", "Z", ...), or undefined when gone. */
export function procState(pid: number): string | undefined {
  const stat = readOr(`/proc/${pid}/stat`, "");
  const close = stat.lastIndexOf(")");
  return close < 0 ? undefined : stat.slice(close + 2, close + 3);
}

/** Whether pid is gone or a zombie (read once: it may vanish between two reads). */
export function goneOrZombie(pid: number): boolean {
  const s = procState(pid);
  return s === undefined || s === "Z";
}

/** The states of a task that runs on, neither stopped, traced nor dead: a task writing its
 * counter file may be caught in the write (D) on a busy machine. */
export const RUNS_ON = /^[RSD]$/;

/** The parent pid from /proc/PID/stat. */
export function procPpid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

export interface Workload {
  name: string;
  pid: number;
  dir: string;
  /** The key=value pairs of its "ready" line. */
  info: Record<string, string>;
  /** A hex address from the ready line ("pattern", "counter", ...). */
  addr(key: string): number;
  /** The value in DIR/counter (counter workload). */
  counter(): number;
  /** Lines appended to DIR/result so far. */
  results(): string[];
  /** Sends SIGUSR1 and waits for the self-check's line. */
  check(timeoutMs?: number): Promise<string>;
}

/** Kills and reaps: as tracer if we trace it (its real parent only reaps after us), then
 * waits for the subreaper to have reaped it. */
export async function killAndReap(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
  await waitFor(`pid ${pid} to be reaped`, () => {
    try {
      bridge().waitpid(pid, WAIT.WNOHANG);
    } catch (e) {
      if (!(isNativeError(e) && e.code === "ECHILD")) throw e;
    }
    return !existsSync(`/proc/${pid}`);
  });
}

/** Kills `pids` at teardown (a workload's other processes; its own teardown kills the root). */
export function killAtEnd(t: ExecutionContext, pids: readonly number[]): void {
  t.teardown(() => {
    for (const p of pids) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone
      }
    }
  });
}

/** Starts test/workloads/bin/NAME (bin/static/NAME with `static`) with a fresh state dir and waits for its ready line. */
export async function startWorkload(t: ExecutionContext, name: string, args: readonly string[] = [], opts: { static?: boolean } = {}): Promise<Workload> {
  buildWorkloads();
  const dir = mkdtempSync(join(tmpdir(), `tscriu-${name}-`));
  const stdout = join(dir, "stdout");
  let pid = 0;
  t.teardown(async () => {
    if (pid > 0) await killAndReap(pid);
    rmSync(dir, { recursive: true, force: true });
  });
  pid = bridge().spawnDetached([join(WORKLOAD_BIN, opts.static ? "static" : "", name), dir, ...args], { stdout, killWithParent: true });
  const line = await waitFor(`${name} (pid ${pid}) to print its ready line`, () => {
    const out = readOr(stdout, "");
    const ready = out.split("\n").find((l) => l.startsWith("ready "));
    if (ready) return ready;
    if (!existsSync(`/proc/${pid}`) || procState(pid) === "Z") {
      throw new Error(`${name} (pid ${pid}) died before it was ready; its output:\n${out}`);
    }
    return undefined;
  });
  const [, readyPid, ...pairs] = line.split(" ");
  if (Number(readyPid) !== pid) throw new Error(`${name}: ready line names pid ${readyPid}, spawnDetached said ${pid}`);
  const info: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf("=");
    if (eq > 0) info[p.slice(0, eq)] = p.slice(eq + 1);
  }
  const results = (): string[] => readOr(join(dir, "result"), "").split("\n").filter((l) => l !== "");
  return {
    name,
    pid,
    dir,
    info,
    addr(key) {
      const v = info[key];
      if (v === undefined || !/^0x[0-9a-f]+$/.test(v)) throw new Error(`${name}: no address "${key}" in its ready line: ${line}`);
      return Number.parseInt(v.slice(2), 16);
    },
    counter() {
      return Number(readOr(join(dir, "counter"), "NaN"));
    },
    results,
    async check(timeoutMs = 10_000) {
      const before = results().length;
      process.kill(pid, "SIGUSR1");
      const lines = await waitFor(`${name} (pid ${pid}) to answer its self-check`, () => {
        const r = results();
        return r.length > before ? r : undefined;
      }, timeoutMs);
      return lines[before] ?? "";
    },
  };
}

/**
 * vforker (test/workloads/vforker.c): has it vfork and waits until it waits for its child
 * (state D, where no signal but a fatal one reaches it); returns the child's PID.
 */
export async function vforkWaiting(w: Workload): Promise<number> {
  process.kill(w.pid, "SIGUSR2");
  return waitFor("the vfork child to exist and its parent to wait for it", () => {
    const kids = readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim();
    return kids !== "" && procState(w.pid) === "D" ? Number(kids) : undefined;
  });
}

/** Waits until the counter file has gone up by `by` from its current value. */
export async function counterAdvances(w: Workload, by = 3): Promise<void> {
  const start = w.counter();
  await waitFor(`${w.name} (pid ${w.pid}) to count on from ${start}`, () => w.counter() >= start + by);
}

/**
 * PTRACE_SEIZE + PTRACE_INTERRUPT and the resulting PTRACE_EVENT_STOP. The teardown (which
 * runs before the workload's own, registered earlier) detaches if the test left it seized.
 */
export function seizeAndStop(t: ExecutionContext, pid: number, options = 0): WaitStatus {
  const b = bridge();
  b.ptraceSeize(pid, options);
  t.teardown(() => {
    try {
      b.ptraceDetach(pid, 0);
    } catch {
      // detached already, or running (detach needs a stop): the kill teardown handles it
    }
  });
  b.ptraceInterrupt(pid);
  const st = b.waitpid(pid, 0, 10_000);
  if (!st) throw new Error(`pid ${pid} did not stop within 10 s of PTRACE_INTERRUPT`);
  return st;
}

/** Seizes pid and leaves it running; teardown stops and detaches it (if it still lives). */
export function seizeRunning(t: ExecutionContext, pid: number): void {
  const b = bridge();
  b.ptraceSeize(pid);
  t.teardown(() => {
    try {
      b.ptraceInterrupt(pid);
      b.waitpid(pid, 0, 10_000);
      b.ptraceDetach(pid, 0);
    } catch {
      // gone already
    }
  });
}

/** The pattern word i of the counter workload (test/workloads/counter.c). */
export function patternWord(i: number): bigint {
  return BigInt.asUintN(64, (BigInt(i) + 1n) * 0x9e3779b97f4a7c15n) ^ 0x5453435249550000n;
}

/** The pattern bytes [from, from+len) of the counter workload's pattern region. */
export function patternBytes(from: number, len: number): Buffer {
  const firstWord = Math.floor(from / 8);
  const words = Math.ceil((from + len) / 8) - firstWord;
  const buf = Buffer.alloc(words * 8);
  for (let i = 0; i < words; i++) buf.writeBigUInt64LE(patternWord(firstWord + i), i * 8);
  return buf.subarray(from - firstWord * 8, from - firstWord * 8 + len);
}

/** Payload byte i of the pipe workload (test/workloads/pipe.c). */
export function payloadByte(i: number): number {
  return (i * 7 + 3 + (i >> 8)) & 0xff;
}

/** The executable mapping remoteSyscall borrows by default: the first "x" mapping that is
 * not [vdso]/[vsyscall]/[uprobes]. */
export function firstExecMapping(pid: number): number {
  for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) ..x. \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m && !(m[3] ?? "").startsWith("[")) return Number.parseInt(m[1] ?? "", 16);
  }
  throw new Error(`pid ${pid} has no executable mapping`);
}

/** The VMAs of /proc/PID/maps. */
export function maps(pid: number): { start: number; end: number; perms: string; name: string }[] {
  return readFileSync(`/proc/${pid}/maps`, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(l);
      if (!m) throw new Error(`unparsable maps line: ${l}`);
      return { start: Number.parseInt(m[1] ?? "", 16), end: Number.parseInt(m[2] ?? "", 16), perms: m[3] ?? "", name: m[4] ?? "" };
    });
}

/** bigmem's word i of its region (test/workloads/bigmem.c). */
export function bigmemWord(i: number): bigint {
  return BigInt(Math.floor((i * 8) / 4096)) ^ 0xb16b00b5000000n ^ BigInt(i);
}
