// Files in flight (SCM_RIGHTS) in a unix socket's queue: the scmrights workload's six
// messages, with and without fds, on a stream, datagram and seqpacket pair -- a pipe end
// the task holds too, both ends of a pipe no one holds, a regular file at an offset and a
// socket (with its own queue) no one holds; an epoll and a timerfd no one holds. Each is dumped with -R (queue and fds left as
// they were), dumped and restored, and checked by the workload (the fds it receives work
// and are the same files); the images as criu lays them out (one file entry per
// description, the message naming their ids); a socket in flight in its own queue and in
// another's; a TCP connection in flight, which no process's fd walk meets (its state read
// in a batch of its own); criu 4.1.1 restores tscriu's images and tscriu criu's; a hostile
// image is refused at plan naming sk-queues.img and the socket.
import { existsSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { criuDumps, criuLogTail, criuVersion, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask, status } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

type E = Record<string, unknown>;

async function entries(dir: string, file: string): Promise<E[]> {
  return (await readImage(join(dir, file))).entries;
}

const text = (b: unknown): string => Buffer.from(b as Uint8Array).toString("latin1");

/** What the images say: the queue of the task's fd 4 (sk[1]) as [data, types of the files passed], and the ids of those files. */
async function queue(dir: string): Promise<{ msgs: [string, string[]][]; files: Map<number, E>; fdOf: Map<number, number> }> {
  const fdinfo = await entries(dir, `fdinfo-2.img`);
  const fdOf = new Map(fdinfo.map((f) => [Number(f["id"]), Number(f["fd"])]));
  const byFd = new Map(fdinfo.map((f) => [Number(f["fd"]), Number(f["id"])]));
  const files = new Map((await entries(dir, "files.img")).map((f) => [Number(f["id"]), f]));
  const sk1 = byFd.get(4)!;
  const msgs = (await entries(dir, "sk-queues.img"))
    .filter((p) => p["id_for"] === sk1)
    .map((p): [string, string[]] => [text(p["extra"]), ((p["scm"] as E[] | undefined) ?? []).flatMap((s) => (s["rights"] as number[]).map((id) => String(files.get(id)?.["type"])))]);
  return { msgs, files, fdOf };
}

async function roundTrip(t: ExecutionContext, type: string): Promise<string> {
  const w = await startWorkload(t, "scmrights", [type]);
  t.is(await w.check(), `PASS ${type}`, "before the dump");
  await dump({ pid: w.pid, imagesDir: join(tempDir(t), "left"), leaveRunning: true });
  t.is(status(w.pid).get("TracerPid"), "0", "dump -R: not traced");
  t.is(await w.check(), `PASS ${type}`, "dump -R left the queue and its fds as they were");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(await w.check(), `PASS ${type}`, "after the restore");
  t.is(await w.check(), `PASS ${type}`, "and again (the check sends back what it receives)");
  return dir;
}

for (const type of ["dgram", "seqpacket"]) {
  test(`${type}: six messages with and without fds in flight come back, the fds working and the same files`, async (t) => {
    const dir = await roundTrip(t, type);
    const { msgs, files, fdOf } = await queue(dir);
    t.deepEqual(msgs, [
      ["plain-one", []],
      ["held", ["PIPE"]],
      ["gone-pipe", ["PIPE", "PIPE"]],
      ["plain-two", []],
      ["file+sock", ["REG", "UNIXSK"]],
      ["plain-three", []],
    ]);
    const scm = (await entries(dir, "sk-queues.img")).flatMap((p) => ((p["scm"] as E[] | undefined) ?? []).map((s) => s["rights"] as number[]));
    // The pipe end the task holds (fd 8, hp[1]) is one entry, its id in fdinfo and in the message.
    t.is(fdOf.get(scm[0]![0]!), 8, "the held pipe end: the task's own entry");
    for (const id of [...scm[1]!, ...scm[2]!]) t.is(fdOf.get(id), undefined, `file id ${id}: held by no task, an entry of its own`);
    t.like(files.get(scm[2]![0]!)?.["reg"], { pos: 5n });
    t.regex(String((files.get(scm[2]![0]!)?.["reg"] as E)["name"]), /\/data$/);
    // The socket in flight keeps its own queue.
    t.deepEqual(
      (await entries(dir, "sk-queues.img")).filter((p) => p["id_for"] === scm[2]![1]).map((p) => text(p["extra"])),
      ["inner"],
    );
  });
}

test("stream: a read runs on into the next message with fds; the queue comes back as one", async (t) => {
  const dir = await roundTrip(t, "stream");
  // The peek reads as a reader does (criu's images have the same chunks).
  t.deepEqual((await queue(dir)).msgs, [
    ["plain-oneheld", ["PIPE"]],
    ["gone-pipe", ["PIPE", "PIPE"]],
    ["plain-twofile+sock", ["REG", "UNIXSK"]],
    ["plain-three", []],
  ]);
});

test("timerfd: an epoll (watching the socket whose queue passes it) and an armed timerfd in flight, held by no task: set up in the task that holds the queue", async (t) => {
  const dir = await roundTrip(t, "timerfd");
  const { msgs, files } = await queue(dir);
  t.deepEqual(msgs, [
    ["ep", ["EVENTPOLL", "TIMERFD"]],
    ["after", []],
  ]);
  const ep = [...files.values()].find((f) => f["type"] === "EVENTPOLL")!["epfd"] as E;
  t.deepEqual(
    (ep["tfd"] as E[]).map((x) => [x["tfd"], x["data"]]),
    [[4, 42n]],
    "its target by the number in the task that holds the queue",
  );
});

test("nested: a socket in flight in its own queue (a loop) and in another's: one entry, its own queue naming its own id", async (t) => {
  const dir = await roundTrip(t, "nested");
  const files = await entries(dir, "files.img");
  const fdinfo = new Set((await entries(dir, "fdinfo-2.img")).map((f) => Number(f["id"])));
  const inFlight = files.filter((f) => f["type"] === "UNIXSK" && !fdinfo.has(Number(f["id"])));
  t.is(inFlight.length, 1, "a[1]: one entry of its own");
  const a1 = Number(inFlight[0]!["id"]);
  const q = await entries(dir, "sk-queues.img");
  const passes = (p: E): number[] => ((p["scm"] as E[] | undefined) ?? []).flatMap((x) => x["rights"] as number[]);
  t.deepEqual(
    q.filter((p) => p["id_for"] === a1).map(passes),
    [[a1]],
    "its own queue passes itself",
  );
  t.deepEqual(
    q.filter((p) => p["id_for"] !== a1).map(passes),
    [[a1]],
    "b[1]'s queue passes it",
  );
});

test("tcp: a TCP connection in flight, unread data in its queue, is read in repair mode on its own (no process holds it) and comes back working", async (t) => {
  const w = await startWorkload(t, "scmrights", ["tcp"]);
  t.is(await w.check(), "PASS tcp", "before the dump");
  const opts = { tcpEstablished: true, networkLock: "skip" as const };
  await dump({ pid: w.pid, imagesDir: join(tempDir(t), "left"), leaveRunning: true, ...opts });
  t.is(await w.check(), "PASS tcp", "dump -R: out of repair mode again, working");
  const dir = await dumpGone(t, w, opts);
  const { msgs, files } = await queue(dir);
  t.deepEqual(msgs, [["tcp", ["INETSK"]]]);
  const passed = (await entries(dir, "sk-queues.img")).flatMap((p) => ((p["scm"] as E[] | undefined) ?? []).flatMap((x) => x["rights"] as number[]));
  const isk = files.get(passed[0]!)?.["isk"] as E | undefined;
  t.like(isk, { state: 1, proto: 6 }, "an established TCP connection");
  t.true(existsSync(join(dir, `tcp-stream-${Number(isk?.["ino"]).toString(16)}.img`)), "its state and queues kept");
  await restoreTask(t, dir, { tcpEstablished: true });
  t.is(await w.check(), "PASS tcp", "after the restore");
  t.is(await w.check(), "PASS tcp", "and again");
});

test("a message passing a file id files.img does not have is refused at plan, naming sk-queues.img and the socket", async (t) => {
  const w = await startWorkload(t, "scmrights", ["dgram"]);
  const dir = await dumpGone(t, w);
  const img = await readImage(join(dir, "sk-queues.img"));
  const p = img.entries.find((e) => ((e["scm"] as E[] | undefined) ?? []).length > 0)!;
  (p["scm"] as E[])[0]!["rights"] = [4242];
  await writeImage(join(dir, "sk-queues.img"), img, { overwrite: true });
  const ino = ((await entries(dir, "files.img")).find((f) => f["id"] === p["id_for"])!["usk"] as E)["ino"];
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.true(isRestoreError(err));
  t.like(err, { step: "plan", file: join(dir, "sk-queues.img") });
  t.regex(err?.message ?? "", new RegExp(`a message queued for unix socket ${String(ino)} \\(file id ${String(p["id_for"])}\\) passes file id 4242 \\(SCM_RIGHTS\\), which files.img does not have`));
});

// (The timerfd case is not among them: criu 4.1.1 arms a timerfd in flight in its restorer
// through the fake fd it has closed by then, "Can't restore timerfd -9".)
for (const type of ["dgram", "stream", "epoll", "nested"]) {
  test.serial(`criu restores tscriu's images of fds in flight: ${type}`, async (t) => {
    if (!haveRoot(t)) return;
    const w = await startWorkload(t, "scmrights", [type], { static: true });
    const dir = await dumpGone(t, w);
    await restoredByCriu(t, w.pid, dir);
    t.is(await w.check(), `PASS ${type}`, `criu ${criuVersion()}`);
  });

  test.serial(`tscriu restores criu's images of fds in flight: ${type}`, async (t) => {
    if (!haveRoot(t)) return;
    const c = await criuDumps(t, "scmrights", [type]);
    t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
    if (c.status !== 0) return;
    await restoreTask(t, c.images);
    t.is(await c.check(), `PASS ${type}`);
  });
}
