// Unix sockets (issue 8): each case of the unixsk workload dumped and restored, checked by
// the workload itself (queues read out message by message, names, shutdown, options,
// connections accepted after the restore); the images laid out as criu 4.2 lays out its
// own (the fds fixture's UNIXSK entries and sk-queues.img); criu's fixture restored with
// its sockets; a peer outside the task refused with the task untouched; hostile images
// refused at plan.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { readRunFile, stageFixture } from "./helpers/criu-fixtures.js";
import { tempDir } from "./helpers/dump.js";
import { FIXTURES } from "./helpers/fixtures.js";
import { dumpGone, filesUnderRoot, restoreTask, status } from "./helpers/restore.js";
import { killAndReap, procState, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

type E = Record<string, unknown>;
const S_IFSOCK = 0o140000;

async function roundTrip(t: ExecutionContext, name: string): Promise<{ w: Workload; dir: string }> {
  const w = await startWorkload(t, "unixsk", [name]);
  t.is(await w.check(), `PASS ${name}`, "before the dump");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(await w.check(), `PASS ${name}`, "after the restore");
  t.is(await w.check(), `PASS ${name}`, "and again (the check puts back what it reads)");
  return { w, dir };
}

async function entries(dir: string, file: string): Promise<E[]> {
  return (await readImage(join(dir, file))).entries;
}

/** files.img's UNIXSK entries (their usk) in file order, and the fd of each. */
async function sockets(dir: string): Promise<(E & { fd: number })[]> {
  const fds = new Map((await entries(dir, "fdinfo-2.img")).map((f) => [Number(f["id"]), Number(f["fd"])]));
  return (await entries(dir, "files.img")).filter((f) => f["type"] === "UNIXSK").map((f) => ({ ...(f["usk"] as E), fd: fds.get(Number(f["id"]))! }));
}

const keys = (o: unknown): string[] => Object.keys(o as E).sort();
const text = (b: unknown): string => Buffer.from(b as Uint8Array).toString("latin1");

/** criu 4.2's own entries for a socketpair end and a listener (fds fixture, fds 16 and 18). */
async function criuEntries(): Promise<{ pair: E; listener: E; queue: E }> {
  const usk = (await entries(join(FIXTURES, "fds"), "files.img")).filter((f) => f["type"] === "UNIXSK").map((f) => f["usk"] as E);
  return { pair: usk.find((u) => u["state"] === 1)!, listener: usk.find((u) => u["state"] === 10)!, queue: (await entries(join(FIXTURES, "fds"), "sk-queues.img"))[0]! };
}

test("stream: a socketpair with data queued both ways; files.img and sk-queues.img as criu 4.2 writes them", async (t) => {
  const { dir } = await roundTrip(t, "stream");
  const criu = await criuEntries();
  const sks = await sockets(dir);
  t.is(sks.length, 2);
  // criu writes the entry of a socket whose peer comes later after the peer's: fd 4's first.
  t.deepEqual(
    sks.map((s) => s.fd),
    [4, 3],
  );
  for (const s of sks) {
    const { fd: _fd, ...u } = s;
    t.deepEqual(keys(u), keys(criu.pair), "the fields criu writes for a socketpair end");
    t.deepEqual(keys(u["opts"]), keys(criu.pair["opts"]), "and for its options");
    t.like(u, { type: 1, state: 1, flags: 2, uflags: 0, ns_id: 2, name: new Uint8Array(0) });
  }
  const [b, a] = sks;
  t.is(a!["peer"], b!["ino"]);
  t.is(b!["peer"], a!["ino"]);
  const q = await entries(dir, "sk-queues.img");
  t.deepEqual(keys(q[0]), keys(criu.queue));
  // One entry per socket whose queue it is (id_for), in fd order; a stream's writes come as one.
  t.deepEqual(
    q.map((p) => [p["id_for"], text(p["extra"])]),
    [
      [a!["id"], "stream b->a|"],
      [b!["id"], "stream a->b one|two|"],
    ],
  );
});

test("dgram: several messages each way, boundaries and order kept (sk-queues.img: one entry per message)", async (t) => {
  const { dir } = await roundTrip(t, "dgram");
  const [b, a] = await sockets(dir);
  const q = await entries(dir, "sk-queues.img");
  t.deepEqual(
    q.filter((p) => p["id_for"] === b!["id"]).map((p) => p["length"]),
    [5, 14, 3000, 4],
  );
  t.deepEqual(
    q.filter((p) => p["id_for"] === a!["id"]).map((p) => text(p["extra"])),
    ["reply one", "reply two"],
  );
});

test("seqpacket: several messages each way, boundaries and order kept", async (t) => {
  const { dir } = await roundTrip(t, "seqpacket");
  t.true((await sockets(dir)).every((s) => s["type"] === 5));
});

test("listen: a listener bound to a relative name, a connection accepted and one waiting to be", async (t) => {
  const { w, dir } = await roundTrip(t, "listen");
  const criu = await criuEntries();
  const sks = await sockets(dir);
  const l = sks.find((s) => s.fd === 3)!;
  const { fd: _fd, ...lu } = l;
  t.deepEqual(keys(lu), keys(criu.listener), "the fields criu writes for a listener bound to a relative name");
  t.like(lu, { state: 10, backlog: 7, peer: 0, name_dir: w.dir, flags: 0o4002 });
  t.is(text(lu["name"]), "listen.sock\0", "the name as the kernel keeps it, NUL included");
  t.is(Number((lu["file_perms"] as E)["mode"]) & 0o170000, S_IFSOCK);
  const waiting = sks.find((s) => s.fd === 6)!;
  t.like(waiting, { state: 1, peer: l["ino"] }, "criu's peer for a connection not yet accepted: the listener");
  const accepted = sks.find((s) => s.fd === 5)!;
  t.is(text(accepted["name"]), "listen.sock\0", "an accepted socket has its listener's name");
  t.is(accepted["peer"], sks.find((s) => s.fd === 4)!["ino"]);
});

test("abstract: abstract names; a datagram socket with messages from one connected to it, connected since to a third", async (t) => {
  const { dir } = await roundTrip(t, "abstract");
  const sks = await sockets(dir);
  const [srv, cli, other] = [3, 4, 5].map((fd) => sks.find((s) => s.fd === fd)!);
  t.is(cli!["peer"], srv!["ino"]);
  t.is(srv!["peer"], other!["ino"], "one-way connections: the restore connects cli to srv before srv to other");
  const named = sks.filter((s) => (s["name"] as Uint8Array).length > 0);
  t.is(named.length, 3);
  for (const s of named) {
    t.is((s["name"] as Uint8Array)[0], 0, "an abstract name starts with a NUL");
    t.false("file_perms" in s || "name_dir" in s, "and has no file");
  }
});

test("shutdown: one end shut for writing after sending, and a socket whose peer is closed", async (t) => {
  const { dir } = await roundTrip(t, "shutdown");
  const sks = await sockets(dir);
  t.deepEqual(
    sks.map((s) => [s.fd, s["shutdown"], s["peer"] === 0]).sort(),
    [
      [3, "WRITE", false],
      [4, "READ", false],
      [5, "BOTH", true],
    ],
  );
});

test("opts: SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_RCVTIMEO, SO_PRIORITY, SO_KEEPALIVE come back", async (t) => {
  const { dir } = await roundTrip(t, "opts");
  const [b, a] = await sockets(dir);
  t.like(a!["opts"], { so_passcred: false, so_rcv_tmo_sec: 3n, so_rcv_tmo_usec: 500000n });
  t.like(b!["opts"], { so_passcred: true, so_priority: 5, so_keepalive: true });
});

test("deleted: a datagram socket bound to a removed name keeps it and its messages; a file made with the name since stays", async (t) => {
  const { w, dir } = await roundTrip(t, "deleted");
  const sks = await sockets(dir);
  t.deepEqual(
    sks.filter((s) => s["deleted"] === true).map((s) => text(s["name"])),
    ["gone.sock\0", "taken.sock\0"],
  );
  t.deepEqual(
    readdirSync(w.dir).filter((f) => f !== "result" && f !== "stdout"),
    ["taken.sock"],
    "nothing made for the restore is left",
  );
});

test("--root: path names, relative and absolute, are bound under ROOT as the task chrooted there sees them", async (t) => {
  const w = await startWorkload(t, "unixsk", ["listen"]);
  t.is(await w.check(), "PASS listen");
  const dir = await dumpGone(t, w);
  const root = tempDir(t, "tscriu-root-");
  await filesUnderRoot(dir, root);
  const r = await restoreTask(t, dir, { root });
  t.true(statSync(join(root, w.dir, "listen.sock")).isSocket(), "the relative name, in its directory under ROOT");
  t.true(statSync(join(root, w.dir, "abs.sock")).isSocket(), "the absolute name, under ROOT");
  process.kill(r.pid, "SIGUSR1");
  // a whole line: the file is there (empty) before the task's write into it
  const result = await waitFor("the check under ROOT", () => {
    const text = existsSync(join(root, w.dir, "result")) ? readFileSync(join(root, w.dir, "result"), "utf8") : "";
    return text.endsWith("\n") && text;
  });
  t.is(result, "PASS listen\n", "the task finds its names where they were (getsockname too)");
});

test("a stale socket file at a listener's name is replaced; any other file there is left and the restore fails naming it", async (t) => {
  const w = await startWorkload(t, "unixsk", ["listen"]);
  const dir = await dumpGone(t, w);
  t.true(existsSync(join(w.dir, "listen.sock")), "the dumped task's socket file is still there");
  const r = await restoreTask(t, dir);
  t.is(await w.check(), "PASS listen");
  await killAndReap(r.pid);
  rmSync(join(w.dir, "listen.sock"));
  copyFileSync(join(dir, "inventory.img"), join(w.dir, "listen.sock"));
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.regex(err?.message ?? "", /bind of unix socket \d+ \(listen\.sock\) for fd 3: bind listen\.sock: EADDRINUSE/);
  t.deepEqual(readFileSync(join(w.dir, "listen.sock")), readFileSync(join(dir, "inventory.img")), "the file is untouched");
  await waitFor("the task made to be gone again", () => !existsSync(`/proc/${w.pid}`));
});

test("a peer outside the task is refused by name, with the options that allow it, and the task runs on untouched", async (t) => {
  const work = tempDir(t);
  const path = join(work, "outside.sock");
  const accepted: Socket[] = [];
  const server = createServer((s) => void accepted.push(s));
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => {
    for (const s of accepted) s.destroy();
    server.close();
  });
  const w = await startWorkload(t, "unixsk", ["outside", path]);
  await waitFor("the server to accept", () => accepted.length > 0);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(work, "img") }));
  t.like(err, { step: "files", pid: w.pid });
  const m = /unsupported fd 3: unix stream socket (\d+) is connected to socket (\d+) outside the dumped tree; --ext-unix-sk allows a datagram socket connected to a named one, --external unix\[\1\] this socket \(restored from --inherit-fd\)/.exec(err?.message ?? "");
  t.truthy(m, err?.message);
  const ino = Number(m?.[2]);
  // (net.Socket keeps its fd in an internal handle)
  const fd = (accepted[0] as unknown as { _handle: { fd: number } })._handle.fd;
  t.is(readlinkSync(`/proc/self/fd/${fd}`), `socket:[${ino}]`, "the inode named is the server's end of the connection");
  t.not(procState(w.pid), undefined, "the task runs");
  t.is(status(w.pid).get("TracerPid"), "0", "not traced");
  t.is(await w.check(), "PASS outside");
});

test("inflight: a stream pair with an fd in flight (SCM_RIGHTS) comes back with it (restore-scmrights.test.ts has the cases)", async (t) => {
  const { dir } = await roundTrip(t, "inflight");
  const q = await entries(dir, "sk-queues.img");
  t.is(q.length, 1);
  t.is(((q[0]!["scm"] as E[])[0]!["rights"] as number[]).length, 1);
});

test("criu 4.2's fds fixture, whole: its socketpair (with queued data), listener, eventfd, epoll, timerfd, signalfd, inotify and the rest come back as criu's own restore gave them", async (t) => {
  const s = await stageFixture(t, "fds", "fds", { "rw.dat": Buffer.alloc(100, "a"), "append.log": Buffer.from("appended line\n") });
  if (!s) {
    t.pass();
    return;
  }
  rmSync(join(s.run, "fifo"), { force: true });
  spawnSync("mkfifo", [join(s.run, "fifo")]);
  // The directory the inotify watched (the fixture's run directory held it).
  mkdirSync(join(s.run, "watched"), { recursive: true });
  const r = await restoreTask(t, s.images);
  t.is(r.pid, s.pid);
  rmSync(join(s.run, "check.txt"), { force: true });
  process.kill(r.pid, "SIGUSR1");
  const check = await waitFor("check.txt", () => readRunFile(s, "check.txt"));
  t.regex(check, /^sock16=pair 17->16 unread\|$/m);
  t.regex(check, /^sock17=pair 16->17 unread\|$/m);
  t.regex(check, /^listen\.acceptconn=1 connect=0 accept_ok=1$/m);
  // Every line is what criu's own restore gave (fixture-info.txt).
  const info = readFileSync(join(FIXTURES, "fds/fixture-info.txt"), "utf8");
  const criuSaw = /^check\.txt \(SIGUSR1 after restore\):\n((?: {2}.*\n)+)/m.exec(info)![1]!.split("\n").map((l) => l.trim());
  for (const line of criuSaw.filter((l) => l !== "" && !/^timerfd\.value_s=/.test(l))) t.true(check.split("\n").includes(line), line);
  // The timer's value goes on from the dump (999.35 s left on CLOCK_MONOTONIC, whose
  // time namespace continues from the dump): criu's restore saw 997 after its own 2 s,
  // a quick restore sees up to 999.
  const timer = /^timerfd\.value_s=(\d+) interval_s=(\d+)$/m.exec(check);
  t.truthy(timer, "the timerfd line");
  t.true(Number(timer![1]) <= 999 && Number(timer![1]) >= 990 && Number(timer![2]) === 5, check);
});

test("hostile images: a peer that is not there, messages for no socket, control messages that are not one SCM_RIGHTS: refused at plan naming the file, nothing made", async (t) => {
  const w = await startWorkload(t, "unixsk", ["stream"]);
  const dir = await dumpGone(t, w);
  const cases: [string, string, (e: E[]) => void, RegExp][] = [
    ["a peer inode that does not exist", "files.img", (e) => void ((e.find((f) => f["type"] === "UNIXSK")!["usk"] as E)["peer"] = 4000000000), /fd \d: unix socket \d+'s peer \(inode 4000000000\) is not in files\.img \(.*files\.img\)/],
    ["messages for a file id no socket has", "sk-queues.img", (e) => void (e[0]!["id_for"] = 9999), /messages are queued for file id 9999, which is no unix socket of the task \(.*sk-queues\.img\)/],
    ["a control message other than SCM_RIGHTS", "sk-queues.img", (e) => void (e[0]!["scm"] = [{ type: 2, rights: [3] }]), /a message queued for file id \d+ has a control message of type 2; only SCM_RIGHTS \(1\) passes files \(.*sk-queues\.img\)/],
    ["more files than one message passes", "sk-queues.img", (e) => void (e[0]!["scm"] = [{ type: 1, rights: new Array<number>(254).fill(3) }]), /a message queued for file id \d+ passes 254 files; the kernel passes at most 253 in one \(.*sk-queues\.img\)/],
    ["two control messages", "sk-queues.img", (e) => void (e[0]!["scm"] = [{ type: 1, rights: [3] }, { type: 1, rights: [3] }]), /a message queued for file id \d+ has 2 control messages; the kernel gives one \(SCM_RIGHTS\) \(.*sk-queues\.img\)/],
    ["a peer of another type", "files.img", (e) => void ((e.find((f) => f["type"] === "UNIXSK")!["usk"] as E)["type"] = 2), /unix datagram socket \d+ and its peer \d+ are of different types|unix stream socket \d+ and its peer \d+ are of different types/],
  ];
  for (const [what, file, mutate, re] of cases) {
    const copy = tempDir(t);
    for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
    const img = await readImage(join(copy, file));
    mutate(img.entries);
    rmSync(join(copy, file));
    await writeImage(join(copy, file), img);
    const err = await t.throwsAsync(restore({ imagesDir: copy }), undefined, what);
    t.true(isRestoreError(err), `${what}: ${String(err)}`);
    t.like(err, { step: "plan" }, what);
    t.regex(err?.message ?? "", re, what);
    t.false(existsSync(`/proc/${w.pid}`), `${what}: nothing was created`);
  }
});
