// File locks (issue 8, --file-locks): POSIX record locks on byte ranges, flock(2) locks
// and OFD locks, read and write, dumped into filelocks.img as criu 4.2 writes it and taken
// again by the process that held them. The locks workload checks itself from a prober
// process of its own (F_GETLK, F_OFD_GETLK, flock LOCK_NB). Without --file-locks a task
// holding a lock is refused, left running; hostile lock entries are refused at plan; criu
// restores tscriu's images and tscriu criu's, both with --file-locks.
import { copyFileSync, existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { restore } from "../orchestrator/restore/restore.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { hostileLocks } from "./helpers/filelocks.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload, type Workload } from "./helpers/workloads.js";

type Entry = Record<string, unknown>;

const FL_POSIX = 1;
const FL_FLOCK = 2;
const FL_OFD = 4;

async function locks(dir: string): Promise<Entry[]> {
  return (await readImage(join(dir, "filelocks.img"))).entries;
}

/** [flag, type, pid, start, len] of each lock, sorted. */
function rows(entries: Entry[]): [number, number, number, bigint, bigint][] {
  return entries
    .map((e) => [Number(e["flag"]), Number(e["type"]), Number(e["pid"]), e["start"] as bigint, e["len"] as bigint] as [number, number, number, bigint, bigint])
    .sort((a, b) => a[0] - b[0] || Number(a[3] - b[3]));
}

test("locks: POSIX ranges, OFD ranges, an exclusive and a shared flock come back with --file-locks, in filelocks.img as criu writes it", async (t) => {
  const w = await startWorkload(t, "locks");
  t.is(await w.check(), "PASS locks", "before the dump");
  const dir = await dumpGone(t, w, { fileLocks: true });
  const p = w.pid;
  t.deepEqual(rows(await locks(dir)), [
    [FL_POSIX, 1, p, 0n, 100n],
    [FL_POSIX, 0, p, 200n, 100n],
    [FL_POSIX, 1, p, 1000n, 0n],
    [FL_FLOCK, 1, p, 0n, 0n],
    [FL_FLOCK, 0, p, 0n, 0n],
    [FL_OFD, 1, p, 500n, 100n],
    [FL_OFD, 0, p, 700n, 100n],
  ], "each lock once (the dup'd fd shows the POSIX locks again), len 0 for to the end");
  // Each lock names the fd it was found on, an fd of the task on the file it locks.
  const fdinfo = (await readImage(join(dir, readdirSync(dir).find((f) => f.startsWith("fdinfo-"))!))).entries;
  const files = (await readImage(join(dir, "files.img"))).entries;
  for (const l of await locks(dir)) {
    const fde = fdinfo.find((e) => e["fd"] === l["fd"]);
    const reg = files.find((f) => f["id"] === fde?.["id"])?.["reg"] as Entry | undefined;
    t.regex(String(reg?.["name"]), Number(l["flag"]) === FL_FLOCK ? /\/(flock|shared)$/ : /\/db$/, `lock on fd ${String(l["fd"])}`);
  }
  await restoreTask(t, dir, { fileLocks: true });
  t.is(await w.check(), "PASS locks", "after the restore");
  t.is(await w.check(), "PASS locks", "and again");
});

test("locks tree: a child's POSIX lock on a description it inherited is its own; flock and OFD locks of the shared descriptions are written once", async (t) => {
  const w = await startWorkload(t, "locks", ["tree"]);
  t.is(await w.check(), "PASS locks", "before the dump");
  const holder = Number(w.info["holder"]);
  const dir = await dumpGone(t, w, { fileLocks: true });
  const all = rows(await locks(dir));
  t.deepEqual(all.filter((r) => r[2] === holder), [[FL_POSIX, 1, holder, 300n, 100n]], "the child's own lock, nothing of its parent's");
  t.is(all.length, 8);
  await restoreTask(t, dir, { fileLocks: true });
  t.is(await w.check(), "PASS locks", "after the restore");
});

test("without --file-locks a task holding a lock is refused, naming the fd and the option, and runs on", async (t) => {
  const w = await startWorkload(t, "locks");
  const dir = tempDir(t);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: dir }));
  t.regex(err?.message ?? "", /fd \d+ \(.*\/db\) of pid \d+ holds a POSIX write lock on bytes 0-99; dump file locks with --file-locks/);
  t.deepEqual(readdirSync(dir), [], "no image written");
  t.is(await w.check(), "PASS locks", "the task still holds its locks and runs");
});

test("restore without --file-locks leaves the locks out, as criu does", async (t) => {
  const w = await startWorkload(t, "locks");
  const dir = await dumpGone(t, w, { fileLocks: true });
  await restoreTask(t, dir);
  t.regex(await w.check(), /^FAIL locks: prober check 10 /, "the first lock is not held");
});

const hostile = (t: ExecutionContext, w: Workload, dir: string, what: string, mutate: (e: Entry[]) => void, re: RegExp): Promise<void> => hostileLocks(t, w.pid, dir, what, mutate, re);

test("hostile lock entries are refused at plan, naming filelocks.img, nothing created", async (t) => {
  const w = await startWorkload(t, "locks");
  const dir = await dumpGone(t, w, { fileLocks: true });
  const posix = (e: Entry[]): Entry => e.find((x) => x["flag"] === FL_POSIX)!;
  await hostile(t, w, dir, "a lock of a process not in the images", (e) => void (posix(e)["pid"] = 4000000), /lock \d: pid 4000000 is not a live process of the images/);
  await hostile(t, w, dir, "a lock on an fd the task does not have", (e) => void (posix(e)["fd"] = 999), /lock \d: fd 999 is not an fd of pid \d+/);
  await hostile(t, w, dir, "a lease of a lock's type", (e) => void (Object.assign(posix(e), { flag: 8, type: 7 })), /lock \d: a lease of type 7/);
  await hostile(t, w, dir, "an unknown kind", (e) => void (posix(e)["flag"] = 16), /unknown lock kind 16/);
  await hostile(t, w, dir, "an unknown type", (e) => void (posix(e)["type"] = 2), /a POSIX lock of type 2/);
  await hostile(t, w, dir, "a negative range", (e) => void (posix(e)["len"] = -5n), /a lock on bytes 0\+-5/);
});

test("a write lock through a read-only fd is refused at plan", async (t) => {
  const w = await startWorkload(t, "locks");
  const dir = await dumpGone(t, w, { fileLocks: true });
  // The flock'd file's fd, made read-only in files.img, given a POSIX write lock.
  const copy = tempDir(t);
  for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
  const files = await readImage(join(copy, "filelocks.img"));
  const fl = files.entries.find((x) => x["flag"] === FL_FLOCK && x["type"] === 1)!;
  const img = await readImage(join(copy, "files.img"));
  const fdinfo = (await readImage(join(dir, readdirSync(dir).find((f) => f.startsWith("fdinfo-"))!))).entries;
  const id = fdinfo.find((e) => e["fd"] === fl["fd"])!["id"];
  const reg = img.entries.find((f) => f["id"] === id)!["reg"] as Entry;
  reg["flags"] = 0;
  fl["flag"] = FL_POSIX;
  for (const [name, i] of [["files.img", img], ["filelocks.img", files]] as const) {
    rmSync(join(copy, name));
    await writeImage(join(copy, name), i);
  }
  const err = await t.throwsAsync(restore({ imagesDir: copy, fileLocks: true }));
  t.regex(err?.message ?? "", /a POSIX write lock on bytes 0 to the end through fd \d+, which is open read-only \(.*\/flock\).*filelocks\.img/);
  t.false(existsSync(`/proc/${w.pid}`));
});

for (const args of [[], ["tree"]]) {
  test.serial(`criu restores tscriu's images with --file-locks: ${["locks", ...args].join(" ")}`, async (t) => {
    if (!haveRoot(t)) return;
    const w = await startWorkload(t, "locks", args, { static: true });
    const dir = await dumpGone(t, w, { fileLocks: true });
    await restoredByCriu(t, w.pid, dir, 60_000, "--file-locks");
    t.is(await w.check(30_000), "PASS locks");
  });
}

for (const args of [[], ["tree"]]) {
  test.serial(`tscriu restores criu's images with --file-locks: ${["locks", ...args].join(" ")}`, async (t) => {
    if (!haveRoot(t)) return;
    const c = await criuDumps(t, "locks", args, "--file-locks");
    const [pid, images] = [c.pid, c.images];
    t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(images, "dump.log")}`);
    const theirs = rows(await locks(images));
    t.is(theirs.length, 7, "criu wrote the root's seven locks");
    t.true(theirs.every((r) => r[2] === pid), "all of them the root's");
    await restoreTask(t, images, { fileLocks: true });
    const answer = await c.check();
    if (args.length === 0) {
      t.is(answer, "PASS locks");
      return;
    }
    // criu (4.1.1 and 4.2) drops a lock found on an fd whose description an earlier process has
    // (discard_dup_locks_tail), a child's own POSIX lock on an inherited file too: its image
    // lacks the child's lock, so the prober passes every check before that one (10..14) and
    // fails there, as it fails after criu's own restore.
    t.is(answer, "FAIL locks: prober check 15 (status 0xf00)", "criu's own loss: the child's POSIX lock on 300-399");
    t.log("criu's own loss, not tscriu's: criu 4.x does not dump a child's POSIX lock taken through a description it inherited");
  });
}
