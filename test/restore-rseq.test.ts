// A thread frozen inside an rseq critical section (test/workloads/rseqcs.c: a worker that
// sleeps in a futex wait inside its section, so every dump finds it there). The syscalls
// tscriu runs inside the thread return to user space outside the section, where the
// kernel clears rseq_cs and aborts nothing: the thread put back in the section finished
// it unprotected, after the restore and after a dump that leaves it running (criu's
// zdtm transition/rseq01). The freeze now sends it to the abort handler first, as the
// kernel would; a section that asks not to be restarted is left alone with its rseq_cs
// saved (criu's rseq_cs_pointer), and a restore writes that back last.
import { rmSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import type { CoreEntry } from "../images/dir.js";
import { readImage, writeImage } from "../images/io.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload, type Workload } from "./helpers/workloads.js";
import { dump } from "../orchestrator/dump/dump.js";

const PASS = /^PASS rseq rounds=\d+ aborts=\d+$/;

async function rseqcs(t: ExecutionContext, args: string[] = [], opts: { static?: boolean } = {}): Promise<Workload> {
  const w = await startWorkload(t, "rseqcs", args, opts);
  if (args.length === 0) t.regex(await w.check(), PASS, "before the dump");
  return w;
}

async function workerCore(dir: string, w: Workload): Promise<CoreEntry> {
  return (await readImage(join(dir, `core-${w.info["tid"]}.img`))).entries[0] as CoreEntry;
}

test("restored: the thread goes on at the section's abort handler, and the section it enters again is protected", async (t) => {
  const w = await rseqcs(t);
  const dir = await dumpGone(t, w);
  const core = await workerCore(dir, w);
  t.is(core.thread_info!.gpregs.ip, BigInt(w.addr("abort")), "the image has it at the abort handler");
  t.is(core.thread_core!.rseq_entry!.rseq_cs_pointer, undefined, "and keeps no rseq_cs (criu keeps one only for sections that ask not to be restarted)");
  await restoreTask(t, dir);
  t.regex(await w.check(), PASS, "after the restore");
  t.regex(await w.check(), PASS, "and again");
});

test("left running after the dump (-R): the thread goes on at the abort handler too", async (t) => {
  const w = await rseqcs(t);
  await dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true });
  t.regex(await w.check(), PASS, "after the dump");
  t.regex(await w.check(), PASS, "and again");
});

test("a section that asks not to be restarted (NO_RESTART flags): left in it, its rseq_cs saved as criu saves it", async (t) => {
  // The kernel kills such a thread when it wakes in the section: this one is dumped, never woken.
  const w = await rseqcs(t, ["norestart"]);
  const dir = await dumpGone(t, w);
  const core = await workerCore(dir, w);
  const ip = core.thread_info!.gpregs.ip;
  t.true(ip >= BigInt(w.addr("start")) && ip < BigInt(w.addr("end")), `ip 0x${ip.toString(16)} in the section`);
  t.is(core.thread_core!.rseq_entry!.rseq_cs_pointer, BigInt(w.addr("cs")));
});

test("an image that asks for rseq_cs back (criu's rseq_cs_pointer) gets it once nothing runs in the thread any more", async (t) => {
  const w = await rseqcs(t);
  const dir = await dumpGone(t, w);
  // The worker put back at the start of its section, as criu leaves a thread whose section
  // asks not to be restarted: without its rseq_cs the section would commit unprotected.
  const file = join(dir, `core-${w.info["tid"]}.img`);
  const img = await readImage(file);
  const core = img.entries[0] as CoreEntry;
  core.thread_info!.gpregs.ip = BigInt(w.addr("start"));
  core.thread_core!.rseq_entry!.rseq_cs_pointer = BigInt(w.addr("cs"));
  rmSync(file);
  await writeImage(file, img);
  await restoreTask(t, dir);
  t.regex(await w.check(), PASS, "after the restore");
});

test.serial("criu restores tscriu's images of a thread frozen in an rseq section", async (t) => {
  if (!haveRoot(t)) return;
  const w = await rseqcs(t, [], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir);
  t.regex(await w.check(), PASS);
});

test.serial("tscriu restores criu's images of a thread frozen in an rseq section", async (t) => {
  if (!haveRoot(t)) return;
  const d = await criuDumps(t, "rseqcs", []);
  t.is(d.status, 0, `criu dump: ${d.stderr}\n${criuLogTail(d.images, "dump.log")}`);
  await restoreTask(t, d.images);
  t.regex(await d.check(), PASS);
  t.regex(await d.check(), PASS, "and again");
});
