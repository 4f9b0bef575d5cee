// Anonymous-inode files (issue 8): eventfds, signalfds, timerfds, epolls and inotify
// instances. Each case of the anonfds workload checks itself before the dump and after
// the restore; the images are checked against what criu 4.2 writes for the same state
// (its fds fixture), and damaged entries are refused at plan with nothing created.
import { copyFileSync, existsSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { toCrit } from "../images/crit-json.js";
import { readImage, writeImage } from "../images/io.js";
import { parseJson, stringifyJson } from "../images/json.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { FIXTURES } from "./helpers/fixtures.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

type Entry = Record<string, unknown>;

async function files(dir: string): Promise<Entry[]> {
  return (await readImage(join(dir, "files.img"))).entries;
}

/** The kind's part of every files.img entry of `type` ("efd" of EVENTFD, …). */
async function parts(dir: string, type: string, key: string): Promise<Entry[]> {
  return (await files(dir)).filter((e) => e["type"] === type).map((e) => e[key] as Entry);
}

async function roundTrip(t: ExecutionContext, name: string, beforeDump?: (w: Workload) => Promise<void>): Promise<{ w: Workload; dir: string }> {
  const w = await startWorkload(t, "anonfds", [name]);
  t.is(await w.check(), `PASS ${name}`, "before the dump");
  await beforeDump?.(w);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(await w.check(), `PASS ${name}`, "after the restore");
  t.is(await w.check(), `PASS ${name}`, "and again");
  return { w, dir };
}

/** Lets `ms` of the workload's time pass (a timer runs on meanwhile). */
async function elapse(ms: number): Promise<void> {
  const until = Date.now() + ms;
  await waitFor(`${ms} ms to pass`, () => Date.now() >= until, ms + 5000);
}

test("eventfd: a count above 2^32 and a semaphore eventfd (EFD_SEMAPHORE in bit 0 of flags)", async (t) => {
  const { dir } = await roundTrip(t, "eventfd");
  const efds = await parts(dir, "EVENTFD", "efd");
  t.deepEqual(efds.map((e) => e["counter"] as bigint).sort((a, b) => Number(a - b)), [3n, 0x200000005n]);
  const sema = efds.find((e) => e["counter"] === 3n)!;
  const big = efds.find((e) => e["counter"] === 0x200000005n)!;
  t.is(Number(sema["flags"]), 0o4002 | 1, "O_RDWR|O_NONBLOCK and EFD_SEMAPHORE");
  t.is(Number(big["flags"]), 0o4002, "O_RDWR|O_NONBLOCK");
});

test("signalfd: the mask, and both pending signals readable through it", async (t) => {
  const { dir } = await roundTrip(t, "signalfd");
  const [s] = await parts(dir, "SIGNALFD", "sgfd");
  t.is(s!["sigmask"], (1n << 11n) | (1n << 35n), "SIGUSR2 and SIGRTMIN+2");
});

test("timerfd-periodic: the expirations nobody read are readable after the restore and the timer keeps ticking", async (t) => {
  const { dir } = await roundTrip(t, "timerfd-periodic", () => elapse(400));
  const [tfd] = await parts(dir, "TIMERFD", "tfd");
  t.true((tfd!["ticks"] as bigint) >= 5n, `ticks ${String(tfd!["ticks"])}: the periods missed are counted at dump`);
  t.true((tfd!["vsec"] as bigint) > 0n || (tfd!["vnsec"] as bigint) > 0n, "armed: the time to its next period");
  t.is(tfd!["insec"], 50_000_000n);
});

test("timerfd-oneshot: time left on a one-shot timer, one expiration of an expired one", async (t) => {
  const { dir } = await roundTrip(t, "timerfd-oneshot");
  const tfds = await parts(dir, "TIMERFD", "tfd");
  t.deepEqual(tfds.map((x) => x["ticks"]).sort(), [0n, 1n]);
});

test("timerfd-abs: TFD_TIMER_ABSTIME timers keep their deadline on the task's clocks", async (t) => {
  const { dir } = await roundTrip(t, "timerfd-abs");
  const tfds = await parts(dir, "TIMERFD", "tfd");
  t.deepEqual(tfds.map((x) => [x["clockid"], x["settime_flags"]]).sort(), [[1, 1], [7, 1]]);
});

test("epoll: targets with their events and data, level- and edge-triggered, a fired oneshot, EPOLLEXCLUSIVE", async (t) => {
  const { dir } = await roundTrip(t, "epoll");
  const [ep] = await parts(dir, "EVENTPOLL", "epfd");
  const tfd = ep!["tfd"] as Entry[];
  t.is(tfd.length, 5);
  t.true(tfd.some((x) => x["data"] === 0xa1a2a3a4a5a6a7a8n), "64-bit data");
  t.true(tfd.some((x) => x["events"] === 0x40000000), "a fired oneshot: its flag alone");
});

test("epoll-nested: an epoll watching an epoll at a higher fd number", async (t) => {
  await roundTrip(t, "epoll-nested");
});

test("epoll-moved: a target dup'd to another number and closed under its own is found under the new number", async (t) => {
  const { dir } = await roundTrip(t, "epoll-moved");
  const [ep] = await parts(dir, "EVENTPOLL", "epfd");
  t.true(Number((ep!["tfd"] as Entry[])[0]!["tfd"]) >= 40, "recorded under the fd that holds it now");
});

test("inotify: watch descriptors 2 and 3 with their masks, events after the restore", async (t) => {
  const { w, dir } = await roundTrip(t, "inotify");
  const [ify] = await parts(dir, "INOTIFY", "ify");
  const wds = (ify!["wd"] as Entry[]).map((x) => [x["wd"], x["mask"], (x["f_handle"] as Entry)["path"]]).sort();
  t.deepEqual(wds, [
    [2, 0x200, join(w.dir, "d2")],
    [3, 0x4000100, join(w.dir, "d3")],
  ]);
});

/** The "fanotify flags:" line of the task's fanotify group, as the task reads it (zdtm's fanotify00 compares it). */
function fanotifyFlags(pid: number): string | undefined {
  const fd = readdirSync(`/proc/${pid}/fd`).find((n) => readlinkSync(`/proc/${pid}/fd/${n}`) === "anon_inode:[fanotify]");
  return fd === undefined ? undefined : /^fanotify flags:.*$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))?.[0];
}

test("fanotify: an inode mark for a directory's children, an ignored mask, a mount mark; events after the restore", async (t) => {
  let flags: string | undefined;
  const { w, dir } = await roundTrip(t, "fanotify", (x) => {
    flags = fanotifyFlags(x.pid);
    return Promise.resolve();
  });
  t.truthy(flags);
  t.is(fanotifyFlags(w.pid), flags, "the group's init and event flags as the task made them (not tscriu's FAN_CLOEXEC)");
  const [ffy] = await parts(dir, "FANOTIFY", "ffy");
  t.is(Number(ffy!["faflags"]) & 0x2, 0x2, "FAN_NONBLOCK among the init flags");
  const marks = (ffy!["mark"] as Entry[]).map((m) => [m["type"], m["mask"], m["ignored_mask"], ((m["ie"] as Entry | undefined)?.["f_handle"] as Entry | undefined)?.["path"] ?? (m["me"] as Entry)["path"]]);
  t.deepEqual(
    marks.filter((m) => m[0] === "INODE").sort((a, b) => String(a[3]).localeCompare(String(b[3]))),
    [
      ["INODE", 0x8000008, 0, join(w.dir, "fd1")],
      ["INODE", 0, 0x8, join(w.dir, "fd1/ignored")],
    ],
    "FAN_CLOSE_WRITE|FAN_EVENT_ON_CHILD on fd1, FAN_CLOSE_WRITE ignored on fd1/ignored",
  );
  const mount = marks.find((m) => m[0] === "MOUNT");
  t.is(mount?.[1], 0x8, "FAN_CLOSE_WRITE on the mount");
});

test("hostile fanotify entries are refused at plan, naming files.img, nothing created", async (t) => {
  const w = await startWorkload(t, "anonfds", ["fanotify"]);
  const dir = await dumpGone(t, w);
  const mark = (f: Entry[], type: string): Entry => ((f.find((e) => e["type"] === "FANOTIFY")!["ffy"] as Entry)["mark"] as Entry[]).find((m) => m["type"] === type)!;
  await hostile(t, w, dir, "a mark of a path that is gone", (f) => void (((mark(f, "INODE")["ie"] as Entry)["f_handle"] as Entry)["path"] = "/nonexistent/tscriu-marked"), /fanotify mark \d: cannot find \/nonexistent\/tscriu-marked: ENOENT/);
  await hostile(t, w, dir, "a mount mark without its path", (f) => void delete (mark(f, "MOUNT")["me"] as Entry)["path"], /a mount mark without its mount's path/);
  await hostile(t, w, dir, "a mark asking for nothing", (f) => void Object.assign(mark(f, "MOUNT"), { mask: 0, ignored_mask: 0 }), /asks for nothing/);
  await hostile(t, w, dir, "unknown mark flags", (f) => void (mark(f, "MOUNT")["mflags"] = 0x1000), /mark flags 0x1000/);
});

/** files.img as crit prints it (criu 4.2's fixture keeps crit's own output). */
async function critFiles(dir: string): Promise<Entry[]> {
  return (parseJson(stringifyJson(toCrit(await readImage(join(dir, "files.img")), false))) as { entries: Entry[] }).entries;
}

/** An entry with what belongs to the machine and the moment (ids, inodes, devices, handles, times) taken out. */
function portable(e: Entry): Entry {
  const key = Object.keys(e).find((k) => k !== "type" && k !== "id")!;
  const p = structuredClone(e[key]) as Entry;
  p["id"] = "id";
  // The kernel lists an epoll's targets in the order of their files' addresses.
  (p["tfd"] as Entry[] | undefined)?.sort((a, b) => Number(a["tfd"]) - Number(b["tfd"]));
  for (const t of (p["tfd"] as Entry[] | undefined) ?? []) [t["dev"], t["inode"]] = ["dev", "inode"];
  if (e["type"] === "TIMERFD") [p["vsec"], p["vnsec"]] = [Number(p["vsec"]) >= 990 && Number(p["vsec"]) <= 1000 ? "about 1000 s" : p["vsec"], "ns"];
  for (const w of (p["wd"] as Entry[] | undefined) ?? []) {
    const h = w["f_handle"] as Entry;
    [w["i_ino"], w["s_dev"], h["handle"], h["path"]] = ["ino", "dev", (h["handle"] as unknown[]).length, basename(String(h["path"]))];
  }
  return { type: e["type"], [key]: p };
}

test("fixture: fds 10..14 of criu 4.2's fds fixture, entry by entry as criu writes them", async (t) => {
  const { dir } = await roundTrip(t, "fixture");
  const fx = join(FIXTURES, "fds");
  const theirs = (parseJson(readFileSync(join(fx, "crit", "files.img.json"), "utf8")) as { entries: Entry[] }).entries;
  const ours = await critFiles(dir);
  for (const type of ["EVENTFD", "EVENTPOLL", "TIMERFD", "SIGNALFD", "INOTIFY"]) {
    const a = ours.filter((e) => e["type"] === type);
    const b = theirs.filter((e) => e["type"] === type);
    t.is(a.length, 1, type);
    t.deepEqual(portable(a[0]!), portable(b[0]!), type);
  }
  const fdinfo = async (d: string): Promise<unknown[]> => {
    const img = readdirSync(d).find((f) => f.startsWith("fdinfo-"))!;
    return (await readImage(join(d, img))).entries.filter((e) => Number(e["fd"]) >= 10 && Number(e["fd"]) <= 14).map((e) => [e["fd"], e["type"], e["flags"]]);
  };
  t.deepEqual(await fdinfo(dir), await fdinfo(fx), "fdinfo: the same types and fd flags");
});

/**
 * A copy of `dir` with files.img changed by `mutate` (given each file id's first fd): restore
 * refuses it at plan, naming files.img, and creates nothing.
 */
async function hostile(t: ExecutionContext, w: Workload, dir: string, what: string, mutate: (files: Entry[], fdOf: (id: unknown) => number) => void, re: RegExp): Promise<void> {
  const copy = tempDir(t);
  for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
  const fdinfo = (await readImage(join(dir, readdirSync(dir).find((f) => f.startsWith("fdinfo-"))!))).entries;
  const img = await readImage(join(copy, "files.img"));
  mutate(img.entries, (id) => Number(fdinfo.find((e) => e["id"] === id)!["fd"]));
  rmSync(join(copy, "files.img"));
  await writeImage(join(copy, "files.img"), img);
  const err = await t.throwsAsync(restore({ imagesDir: copy }), undefined, what);
  t.true(isRestoreError(err), `${what}: ${String(err)}`);
  t.like(err, { step: "plan" }, what);
  t.regex(err?.message ?? "", re, what);
  t.regex(err?.message ?? "", /files\.img/, `${what}: names the file`);
  t.false(existsSync(`/proc/${w.pid}`), `${what}: nothing was created`);
}

const part = (files: Entry[], type: string, key: string): Entry => files.find((e) => e["type"] === type)![key] as Entry;
const targets = (e: Entry): Entry[] => (e["epfd"] as Entry)["tfd"] as Entry[];

test("hostile anonymous-file entries are refused at plan, naming files.img, nothing created", async (t) => {
  const ep = await startWorkload(t, "anonfds", ["epoll-nested"]);
  const epDir = await dumpGone(t, ep);
  const epolls = (f: Entry[]): [outer: Entry, inner: Entry] => {
    const all = f.filter((e) => e["type"] === "EVENTPOLL");
    const outer = all.find((e) => targets(e).length === 2)!;
    return [outer, all.find((e) => e !== outer)!];
  };
  await hostile(t, ep, epDir, "an epoll target that is no fd of the task", (f) => void (targets(epolls(f)[0])[0]!["tfd"] = 999), /epoll target fd 999 is not an fd of the task/);
  await hostile(t, ep, epDir, "epolls watching each other", (f, fdOf) => {
    const [outer, inner] = epolls(f);
    targets(inner)[0]!["tfd"] = fdOf(outer["id"]);
  }, /wait for each other/);
  await hostile(t, ep, epDir, "an epoll watching itself", (f, fdOf) => {
    const [outer] = epolls(f);
    targets(outer)[0]!["tfd"] = fdOf(outer["id"]);
  }, /an epoll that watches itself/);

  const tw = await startWorkload(t, "anonfds", ["timerfd-oneshot"]);
  const tDir = await dumpGone(t, tw);
  await hostile(t, tw, tDir, "a timerfd with a negative time left", (f) => void (part(f, "TIMERFD", "tfd")["vsec"] = (1n << 64n) - 5n), /a timerfd with a negative or malformed time left \(-5 s/);
  await hostile(t, tw, tDir, "a timerfd on clock 42", (f) => void (part(f, "TIMERFD", "tfd")["clockid"] = 42), /a timerfd on clock 42/);

  const ew = await startWorkload(t, "anonfds", ["eventfd"]);
  const eDir = await dumpGone(t, ew);
  await hostile(t, ew, eDir, "an eventfd count of 2^64-1", (f) => void (part(f, "EVENTFD", "efd")["counter"] = (1n << 64n) - 1n), /an eventfd count of 0xffffffffffffffff/);

  const iw = await startWorkload(t, "anonfds", ["inotify"]);
  const iDir = await dumpGone(t, iw);
  await hostile(t, iw, iDir, "an inotify watch of a path that is gone", (f) => {
    const wd = (part(f, "INOTIFY", "ify")["wd"] as Entry[])[0]!;
    (wd["f_handle"] as Entry)["path"] = "/nonexistent/tscriu-watched";
  }, /inotify watch \d: cannot find \/nonexistent\/tscriu-watched: ENOENT/);
  await hostile(t, iw, iDir, "an inotify watch without a path whose handle opens nothing (no ghost was its inode)", (f) => {
    const h = (part(f, "INOTIFY", "ify")["wd"] as Entry[])[0]!["f_handle"] as Entry;
    delete h["path"];
    h["handle"] = (h["handle"] as bigint[]).map(() => 0xdeadn);
  }, /inotify watch \d: inode 0x[0-9a-f]+ has no path in the image, no ghost file was that inode, and its handle opens no such inode here/);
});

test("what the kernel would refuse in the task is refused at plan: owners, fd numbers, epoll watching a regular file or EPOLLEXCLUSIVE misused", async (t) => {
  const ep = await startWorkload(t, "anonfds", ["epoll"]);
  const dir = await dumpGone(t, ep);
  const fdinfoName = readdirSync(dir).find((f) => f.startsWith("fdinfo-"))!;
  const epoll = (f: Entry[]): Entry => f.find((e) => e["type"] === "EVENTPOLL")!["epfd"] as Entry;
  await hostile(t, ep, dir, "an owner signal of 99", (f) => void ((epoll(f)["fown"] as Entry)["signum"] = 99), /owner signal 99 \(at most 64\)/);
  await hostile(t, ep, dir, "an owner pid type of 7", (f) => void ((epoll(f)["fown"] as Entry)["pid_type"] = 7), /owner pid type 7/);
  await hostile(t, ep, dir, "EPOLLEXCLUSIVE with EPOLLPRI", (f) => {
    const tfd = (epoll(f)["tfd"] as Entry[])[0]!;
    tfd["events"] = (1 << 28) | 0x2;
  }, /EPOLLEXCLUSIVE with events 0x10000002/);
  await hostile(t, ep, dir, "an epoll watching a regular file", (f, fdOf) => {
    // the workload's stdout, a regular file
    const reg = f.find((e) => e["type"] === "REG" && ((e["reg"] as Entry)["mode"] as number) >>> 12 === 0o10 && String((e["reg"] as Entry)["name"]).endsWith("/stdout"));
    (epoll(f)["tfd"] as Entry[])[0]!["tfd"] = fdOf(reg!["id"]);
  }, /epoll target fd \d+ is a regular file \(.*\), which epoll cannot watch/);
  // fdinfo: an fd number twice, one out of range
  for (const [what, mutate, re] of [
    ["an fd listed twice", (e: Entry[]) => void (e[1]!["fd"] = e[0]!["fd"]), /fd \d+ is listed twice/],
    ["an fd number above fs.nr_open", (e: Entry[]) => void (e[0]!["fd"] = 4000000000), /fd 4000000000 is not an fd number \(0\.\.\d+\)/],
  ] as const) {
    const copy = tempDir(t);
    for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
    const img = await readImage(join(copy, fdinfoName));
    mutate(img.entries);
    rmSync(join(copy, fdinfoName));
    await writeImage(join(copy, fdinfoName), img);
    const err = await t.throwsAsync(restore({ imagesDir: copy }), undefined, what);
    t.like(err, { step: "plan" }, what);
    t.regex(err?.message ?? "", re, what);
    t.regex(err?.message ?? "", new RegExp(fdinfoName.replace(".", "\\.")), `${what}: names the file`);
    t.false(existsSync(`/proc/${ep.pid}`), `${what}: nothing was created`);
  }
});
