// Seccomp filters that threads share, and SECCOMP_FILTER_FLAG_TSYNC after a restore (criu's
// zdtm seccomp_filter_tsync). TSYNC gives the caller's filters to every thread of the
// process, and the kernel refuses it (answering with a thread's TID) unless each thread's
// filters are the caller's or an older part of them: a restore must give back one filter of
// several threads as one, not as a copy in each. The dump writes threads whose filters are
// all the leader's as criu does (the leader's chain marked TSYNC, the others with none, to
// be given theirs by it); the restore has the leader install the filters every thread has
// alike with TSYNC, before each thread installs the rest of its own.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { restore } from "../orchestrator/restore/restore.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask, status } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

type Entry = Record<string, unknown>;

const SECCOMP_FILTER_FLAG_TSYNC = 1;

async function seccompOf(dir: string, tids: number[]): Promise<{ filters: Entry[]; threads: (Entry | undefined)[] }> {
  const filters = ((await readImage(join(dir, "seccomp.img"))).entries[0]?.["seccomp_filters"] ?? []) as Entry[];
  const threads = await Promise.all(tids.map(async (tid) => (await readImage(join(dir, `core-${tid}.img`))).entries[0]!["thread_core"] as Entry | undefined));
  return { filters, threads };
}

const [SYS_getpgid, SYS_getsid, SYS_getpriority] = [121, 124, 140];

/**
 * The syscalls the workload's filters of a thread fail, in the order they are installed:
 * criu's layout names the oldest in the thread's core, each entry's prev the next one.
 */
function chain(filters: Entry[], core: Entry | undefined): number[] {
  const out: number[] = [];
  for (let at = core?.["seccomp_filter"] as number | undefined; at !== undefined && out.length <= filters.length; at = filters[at]!["prev"] as number | undefined) {
    out.push(Buffer.from(filters[at]!["filter"] as Uint8Array).readUInt32LE(12));
  }
  return out;
}

/** The leader, then its other threads. */
function tidsOf(pid: number): number[] {
  return [pid, ...readdirSync(`/proc/${pid}/task`).map(Number).filter((t) => t !== pid)];
}

test("seccomp-tsync: threads under one filter come back under one filter; TSYNC works after the restore, and after a second one", async (t) => {
  const w = await startWorkload(t, "seccomp-tsync");
  t.is(await w.check(), "PASS seccomp-tsync 1", "before the dump");
  const tids = tidsOf(w.pid);
  t.is(tids.length, 2);
  const dir = await dumpGone(t, w);
  const { filters, threads } = await seccompOf(dir, tids);
  t.is(filters.length, 2, "F and the first round's filter, once");
  t.deepEqual(chain(filters, threads[0]), [SYS_getpgid, SYS_getsid], "the leader: F, then the round's, in criu's layout");
  t.true(filters.every((f) => ((f["flags"] as number) & SECCOMP_FILTER_FLAG_TSYNC) !== 0), "the leader's chain marked TSYNC, as criu");
  t.is(threads[1]?.["seccomp_mode"], undefined, "the other thread is given its filters by the leader's TSYNC");
  await restoreTask(t, dir);
  for (const tid of tids) t.is(status(tid).get("Seccomp"), "2", `thread ${tid} under filters`);
  t.is(await w.check(), "PASS seccomp-tsync 2", "after the restore");
  const again = await dumpGone(t, w);
  await restoreTask(t, again);
  t.is(await w.check(), "PASS seccomp-tsync 3", "after a second restore");
});

test("seccomp-tsync: a filter the threads share under one only the leader has comes back shared (the leader installs it with TSYNC), so TSYNC works", async (t) => {
  const w = await startWorkload(t, "seccomp-tsync", ["prefix"]);
  const tids = tidsOf(w.pid);
  // No check before the dump: a TSYNC would give T the leader's filters, all of them.
  const dir = await dumpGone(t, w);
  const { filters, threads } = await seccompOf(dir, tids);
  t.deepEqual(chain(filters, threads[0]), [SYS_getpgid, SYS_getpriority], "the leader: F, then M");
  t.deepEqual(chain(filters, threads[1]), [SYS_getpgid], "T: F alone");
  t.true(filters.every((f) => ((f["flags"] as number | undefined ?? 0) & SECCOMP_FILTER_FLAG_TSYNC) === 0), "no TSYNC: the threads' filters differ");
  await restoreTask(t, dir);
  // Installed in their order again: a dump of the restored task reads them the same.
  const again = tempDir(t);
  await dump({ pid: w.pid, imagesDir: again, leaveRunning: true });
  const back = await seccompOf(again, tids);
  t.deepEqual([chain(back.filters, back.threads[0]), chain(back.filters, back.threads[1])], [[SYS_getpgid, SYS_getpriority], [SYS_getpgid]], "the restored filters, as dumped");
  t.is(await w.check(), "PASS seccomp-tsync 1", "after the restore");
});

test.serial("criu restores tscriu's images: seccomp-tsync", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "seccomp-tsync", [], { static: true });
  t.is(await w.check(), "PASS seccomp-tsync 1", "before the dump");
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS seccomp-tsync 2");
});

for (const args of [[], ["prefix"]]) {
  test.serial(`tscriu restores criu's images: seccomp-tsync ${args.join(" ")}`, async (t) => {
    if (!haveRoot(t)) return;
    const c = await criuDumps(t, "seccomp-tsync", args);
    t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
    await restoreTask(t, c.images);
    t.is(await c.check(), "PASS seccomp-tsync 1");
  });
}

test("seccomp-tsync: a filter whose flags ask for a notification listener (an fd nobody would hold) is refused at plan naming seccomp.img; as dumped, the images restore", async (t) => {
  const w = await startWorkload(t, "seccomp-tsync");
  const dir = await dumpGone(t, w);
  const file = join(dir, "seccomp.img");
  const img = await readImage(file);
  const first = (img.entries[0]!["seccomp_filters"] as Entry[])[0]!;
  const was = first["flags"];
  first["flags"] = 8; // SECCOMP_FILTER_FLAG_NEW_LISTENER
  await writeImage(file, img, { overwrite: true });
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.regex(err?.message ?? "", /seccomp filter 0 has flags 0x8; .*seccomp\.img/);
  first["flags"] = was;
  await writeImage(file, img, { overwrite: true });
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS seccomp-tsync 1");
});
