// Shared by the restore tests: dump a workload (the task is killed, its PID freed), restore
// it through the library with cleanup registered, and fingerprint an images directory to
// show it was not changed.
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ExecutionContext } from "ava";
import { dump, type DumpOptions } from "../../orchestrator/dump/dump.js";
import { isRestoreError } from "../../orchestrator/restore/errors.js";
import { restore, type RestoreOptions, type RestoreResult } from "../../orchestrator/restore/restore.js";
import { readImage, writeImage } from "../../images/io.js";
import { tempDir } from "./dump.js";
import { killAndReap, seizeAndStop, waitFor, waitTreeFree, type Workload } from "./workloads.js";
import { bridge } from "../../host-bridge/load.js";
import { decodeRegs } from "../../host-bridge/regs.js";

/** Dumps the workload into a new images dir (the task is killed) and waits until its PID is free. */
export async function dumpGone(t: ExecutionContext, w: Pick<Workload, "pid">, opts: Partial<DumpOptions> = {}): Promise<string> {
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, ...opts });
  await waitTreeFree(dir, [w.pid]);
  return dir;
}

/**
 * dump -R: the workload must pass its check after the dump (it runs on), then is killed;
 * its images must restore into a task that passes again.
 */
export async function dumpRunningThenRestore(t: ExecutionContext, w: Pick<Workload, "pid" | "check">, pass: string): Promise<void> {
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  t.is(await w.check(), pass, "the task dumped with -R runs on");
  await killAndReap(w.pid);
  await waitTreeFree(dir, [w.pid]);
  await restoreTask(t, dir);
  t.is(await w.check(), pass, "after the restore");
}

/** Restores through the library; the restored task is killed and reaped at teardown. */
export async function restoreTask(t: ExecutionContext, dir: string, opts: Partial<RestoreOptions> = {}): Promise<RestoreResult> {
  const r = await restore({ imagesDir: dir, ...opts });
  t.teardown(() => killAndReap(r.pid));
  return r;
}

/** sha256 of every file of a directory (and its size): equal before and after means untouched. */
export function digest(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (!statSync(p).isFile()) continue;
    out[f] = createHash("sha256").update(readFileSync(p)).digest("hex");
  }
  return out;
}

/** The fields of /proc/PID/status as a map. */
export function status(pid: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/status`, "utf8").split("\n")) {
    const c = line.indexOf(":");
    if (c > 0) m.set(line.slice(0, c), line.slice(c + 1).trim());
  }
  return m;
}

/**
 * /proc/PID/maps as "start-end perms offset name" rows, with neighbours joined where the
 * kernel may join them (same perms and file, contiguous offsets): a restore maps VMAs one
 * by one and the kernel merges some that the original kept apart for reasons no image
 * records (e.g. the accounting flag of a once-writable relro segment).
 */
export function mapsSummary(pid: number): string[] {
  const rows = readFileSync(`/proc/${pid}/maps`, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const f = l.split(/\s+/);
      const [a, b] = f[0]!.split("-").map((x) => BigInt(`0x${x}`));
      return { start: a!, end: b!, perms: f[1]!, off: BigInt(`0x${f[2]}`), name: f.slice(5).join(" ") };
    });
  const out: typeof rows = [];
  for (const r of rows) {
    const p = out[out.length - 1];
    const anon = r.name === "" || r.name === "[heap]" || r.name === "[stack]";
    if (p && p.end === r.start && p.perms === r.perms && p.name === r.name && !r.name.startsWith("[v") && (anon || p.off + (p.end - p.start) === r.off)) {
      p.end = r.end;
      continue;
    }
    out.push({ ...r });
  }
  return out.map((r) => `${r.start.toString(16)}-${r.end.toString(16)} ${r.perms} ${r.off.toString(16)} ${r.name}`);
}

/**
 * The regs workload after a restore: r12..r15, xmm0 and the ymm0/ymm1 upper halves hold
 * what it set, and its loop (rbx) counts on. Seizes the task for the look.
 */
export async function regsAsLeft(t: ExecutionContext, pid: number): Promise<void> {
  seizeAndStop(t, pid);
  const b = bridge();
  const regs = decodeRegs(b.getRegs(pid));
  t.is(regs.r12, 0x1212121212121212n);
  t.is(regs.r13, 0x1313131313131313n);
  t.is(regs.r14, 0x1414141414141414n);
  t.is(regs.r15, 0x1515151515151515n);
  const xs = b.getXstate(pid);
  const [, ymmOff] = b.cpuid(0xd, 2);
  t.is(xs.readBigUInt64LE(160), 0x1111111111111111n, "xmm0 low");
  t.is(xs.readBigUInt64LE(ymmOff), 0x3333333333333333n, "ymm0 upper half");
  t.is(xs.readBigUInt64LE(ymmOff + 16 + 8), 0xfedcba9876543210n, "ymm1 upper half");
  const rbx = regs.rbx;
  b.ptraceCont(pid, 0);
  await waitFor("the loop to count on", () => {
    b.ptraceInterrupt(pid);
    b.waitpid(pid, 0, 5000);
    const now = decodeRegs(b.getRegs(pid)).rbx;
    b.ptraceCont(pid, 0);
    return now > rbx;
  });
  t.pass();
}

/** A files.img entry's own fields (nlsk, psk, …), as readImage gives them. */
export type FileFields = Record<string, unknown>;

/**
 * Each case changes the first `type` entry of files.img (its `part` fields) in a copy of
 * the images in `dir`; the restore of the copy must be refused at plan with `re`,
 * naming the copy's files.img.
 */
export async function refusedAtPlan(t: ExecutionContext, dir: string, type: string, part: string, cases: readonly [what: string, change: (e: FileFields) => void, re: RegExp][]): Promise<void> {
  await refusedAtPlanOf(t, dir, "files.img", (entries) => entries.find((e) => e["type"] === type)![part] as FileFields, cases);
}

/**
 * Each case changes the entry `pick` finds in image `image` in a copy of the images in
 * `dir`; the restore of the copy must be refused at plan with `re`, naming the copy's image.
 */
export async function refusedAtPlanOf(t: ExecutionContext, dir: string, image: string, pick: (entries: FileFields[]) => FileFields, cases: readonly [what: string, change: (e: FileFields) => void, re: RegExp][]): Promise<void> {
  const img = await readImage(join(dir, image));
  for (const [what, change, re] of cases) {
    const copy = tempDir(t);
    const entries = img.entries.map((e) => structuredClone(e));
    change(pick(entries));
    for (const f of readdirSync(dir)) if (f !== image) copyFileSync(join(dir, f), join(copy, f));
    await writeImage(join(copy, image), { type: img.type, entries });
    const err = await t.throwsAsync(restore({ imagesDir: copy }), undefined, what);
    t.true(isRestoreError(err), what);
    t.like(err, { step: "plan" }, what);
    t.regex(err?.message ?? "", re, what);
    t.true((err?.message ?? "").includes(join(copy, image)), `${what}: names the file`);
  }
}

/**
 * A root for `restore --root`: every file the images name (files.img's REG entries),
 * copied under `root` with its size, build-id and mode (criu's checks); a character device
 * is made as /dev/null's. ROOT itself keeps its own mode.
 */
export async function filesUnderRoot(dir: string, root: string): Promise<void> {
  for (const e of (await readImage(join(dir, "files.img"))).entries) {
    const reg = e["reg"] as { name: string; mode?: number } | undefined;
    if (!reg) continue;
    const to = join(root, reg.name);
    const fmt = (reg.mode ?? 0) & 0o170000;
    if (fmt === 0o040000) mkdirSync(to, { recursive: true });
    else if (fmt === 0o020000) {
      mkdirSync(dirname(to), { recursive: true });
      spawnSync("mknod", [to, "c", "1", "3"]);
    } else {
      mkdirSync(dirname(to), { recursive: true });
      cpSync(reg.name, to);
    }
    if (reg.name !== "/") chmodSync(to, (reg.mode ?? 0) & 0o7777);
  }
}
