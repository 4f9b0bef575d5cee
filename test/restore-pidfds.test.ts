// pidfds (issue 8): a pidfd of a live process of the tree, of the task itself, of a zombie
// of the tree and of a process that is gone come back referring to the same processes,
// written as criu 4.2 writes PIDFD entries; thread pidfds (PIDFD_THREAD) of a second
// thread, of the main thread and of a thread that exits after the restore, held by the task
// and a child it forked (each task's fds replaced), and, dumped again, of that thread gone,
// come back too (criu restores those of the main thread and of a thread gone); a pidfd of a
// process or thread outside the tree, io_uring and userfaultfd are refused at dump by name
// with the task left running; hostile PIDFD entries, and an epoll watching a thread pidfd
// of a thread other than a leader, are refused at plan.
// The tests run one at a time: each restores its processes with their own PIDs, and the
// "pidfd" workload leaves a zombie child that pid 1 reaps late; with pid_max at 32768 the
// PIDs wrap during the suite, and a PID one test restores may be one another test's
// process had before (seen in CI: a restore found its PID held by the other's zombie).
import { copyFileSync, existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { readImage, writeImage } from "../images/io.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { dump } from "../orchestrator/dump/dump.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { killAndReap, startWorkload, waitTreeFree } from "./helpers/workloads.js";

type Entry = Record<string, unknown>;

async function pidfds(dir: string): Promise<Entry[]> {
  return (await readImage(join(dir, "files.img"))).entries.filter((e) => e["type"] === "PIDFD").map((e) => e["pidfd"] as Entry);
}

test.serial("pidfd: pidfds of a live child, of the task itself (non-blocking), of a zombie child and of a reaped child come back", async (t) => {
  const w = await startWorkload(t, "pidfds", ["pidfd"]);
  t.is(await w.check(), "PASS pidfd", "before the dump");
  const [live, zombie] = [Number(w.info["live"]), Number(w.info["zombie"])];
  const dir = await dumpGone(t, w);
  const entries = await pidfds(dir);
  t.deepEqual(entries.map((e) => [e["nspid"], e["flags"]]).sort(), [[-1, 0], [-1, 0o4000], [live, 0], [w.pid, 0o4000], [zombie, 0]].sort(), "nspid and flags (O_RDWR left out, as criu)");
  const gone = entries.filter((e) => e["nspid"] === -1);
  t.is(gone[0]!["ino"], gone[1]!["ino"], "both pidfds of the reaped child: one inode");
  t.true(entries.every((e) => typeof e["ino"] === "bigint" && (e["ino"]) > 0n));
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS pidfd", "after the restore");
  t.is(await w.check(), "PASS pidfd", "and again");
});

const THREAD = 0o200;

test.serial("thread: thread pidfds of a second thread and of the main thread come back; one of a thread that exits reports its exit, and dumped again (-R) comes back as one of a thread gone", async (t) => {
  const w = await startWorkload(t, "pidfds", ["thread"]);
  const [second, third] = [Number(w.info["second"]), Number(w.info["third"])];
  const dir = await dumpGone(t, w);
  const entries = await pidfds(dir);
  t.deepEqual(entries.map((e) => [e["nspid"], e["flags"]]).sort(), [[second, THREAD], [w.pid, THREAD], [third, THREAD]].sort(), "the TIDs and PIDFD_THREAD");
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS thread", "after the restore: the third thread exits, its pidfd reports it");
  // The third thread is gone now: its pidfd is one of a thread that has exited.
  const again = tempDir(t);
  await dump({ pid: w.pid, imagesDir: again, leaveRunning: true });
  t.is(await w.check(), "PASS thread", "left running by -R");
  t.deepEqual((await pidfds(again)).map((e) => [e["nspid"], e["flags"]]).sort(), [[-1, THREAD], [second, THREAD], [w.pid, THREAD]].sort(), "the thread gone: nspid -1, PIDFD_THREAD kept");
  // the child dies of its parent's death signal after the parent: wait for the whole tree
  await killAndReap(w.pid);
  await waitTreeFree(again, [w.pid]);
  await restoreTask(t, again);
  t.is(await w.check(), "PASS thread", "restored from the -R dump");
});

for (const [kind, re] of [
  ["outside", /unsupported fd 20: a pidfd of pid 1, which is outside the dumped tree/],
  ["outside_thread", /unsupported fd 20: a thread pidfd \(PIDFD_THREAD\) of thread 1, which is not a thread of the dumped tree/],
  ["io_uring", /unsupported fd 20: anon_inode:\[io_uring\]/],
  ["userfaultfd", /unsupported fd 20: anon_inode:\[userfaultfd\]/],
] as const) {
  test(`${kind}: refused at dump by name, the task left running`, async (t) => {
    const w = await startWorkload(t, "pidfds", [kind]);
    const dir = tempDir(t);
    const err = await t.throwsAsync(dumpGone(t, w, { imagesDir: dir }));
    t.regex(err?.message ?? "", re);
    t.deepEqual(readdirSync(dir), [], "no image written");
    t.is(await w.check(), `PASS ${kind}`, "the task runs on, its fd in place");
  });
}

test.serial("hostile pidfd entries are refused at plan, naming files.img, nothing created", async (t) => {
  const w = await startWorkload(t, "pidfds", ["pidfd"]);
  const dir = await dumpGone(t, w);
  for (const [what, mutate, re] of [
    ["a pidfd of a process not in the images", (p: Entry) => void (p["nspid"] = 4000000), /a pidfd of pid 4000000, which is not a process of the images/],
    ["unknown flags", (p: Entry) => void (p["flags"] = 0o1000), /a pidfd with flags 0o1000 \(only PIDFD_NONBLOCK and PIDFD_THREAD are restored\)/],
    ["a thread pidfd of a TID not in the images", (p: Entry) => void ((p["flags"] = THREAD), (p["nspid"] = 4000000)), /a thread pidfd of TID 4000000, which is not a thread of the images/],
  ] as const) {
    const copy = tempDir(t);
    for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
    const img = await readImage(join(copy, "files.img"));
    mutate(img.entries.find((e) => e["type"] === "PIDFD" && (e["pidfd"] as Entry)["nspid"] !== -1)!["pidfd"] as Entry);
    rmSync(join(copy, "files.img"));
    await writeImage(join(copy, "files.img"), img);
    const err = await t.throwsAsync(restore({ imagesDir: copy }), undefined, what);
    t.true(isRestoreError(err), `${what}: ${String(err)}`);
    t.like(err, { step: "plan" }, what);
    t.regex(err?.message ?? "", re, what);
    t.regex(err?.message ?? "", /files\.img/, `${what}: names the file`);
    t.false(existsSync(`/proc/${w.pid}`), `${what}: nothing was created`);
  }
});

test.serial("criu restores tscriu's images: pidfds pidfd", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "pidfds", ["pidfd"], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS pidfd");
});

test.serial("an epoll watching a thread pidfd of a thread other than a leader is refused at plan by name (it is made after the epolls are filled)", async (t) => {
  const w = await startWorkload(t, "pidfds", ["thread_epoll"]);
  const third = Number(w.info["third"]);
  const dir = await dumpGone(t, w);
  const img = await readImage(join(dir, "files.img"));
  // The main thread's pidfd (fd 21, which the epoll watches) turned into the third thread's.
  (img.entries.find((e) => e["type"] === "PIDFD" && (e["pidfd"] as Entry)["nspid"] === w.pid)!["pidfd"] as Entry)["nspid"] = third;
  rmSync(join(dir, "files.img"));
  await writeImage(join(dir, "files.img"), img);
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.true(isRestoreError(err), String(err));
  t.like(err, { step: "plan" });
  t.regex(err?.message ?? "", new RegExp(`epoll target fd 21 is a thread pidfd of TID ${third}, which tscriu does not restore in an epoll`));
  t.false(existsSync(`/proc/${w.pid}`), "nothing was created");
});

// criu (4.1.1 and 4.2) opens a pidfd with the entry's flags, a thread pidfd too, but before
// it makes the threads: one of a thread other than the leader fails there (ESRCH). Those
// of the main thread and of a thread gone it restores.
test.serial("criu restores tscriu's images: thread pidfds of the main thread and of a thread gone", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "pidfds", ["thread_main"], { static: true });
  t.is(await w.check(), "PASS thread_main", "before the dump: the third thread is gone");
  const dir = await dumpGone(t, w);
  t.deepEqual((await pidfds(dir)).map((e) => [e["nspid"], e["flags"]]).sort(), [[-1, THREAD], [w.pid, THREAD]].sort());
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS thread_main");
});

test.serial("tscriu restores criu's images: pidfds pidfd", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "pidfds", ["pidfd"]);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  t.is((await pidfds(c.images)).length, 5, "criu wrote the five pidfds");
  await restoreTask(t, c.images);
  t.is(await c.check(), "PASS pidfd");
});
