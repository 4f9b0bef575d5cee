// The anonymous-inode calls of the bridge (src/anonfd.c) and kcmpEpollTfd: each does what
// the restore and the dump rely on, and each fails with a NativeError naming the syscall
// (and the path), or a TypeError for a bad argument before any syscall.
import { closeSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { EFD, O } from "../host-bridge/constants.js";
import { bridge, isNativeError } from "../host-bridge/load.js";

const b = bridge();

function fdinfo(fd: number): string {
  return readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
}

test("eventfd and signalfd are made with their count, flags and mask", (t) => {
  const e = b.eventfd(7, EFD.SEMAPHORE | O.CLOEXEC | O.NONBLOCK);
  const s = b.signalfd((1n << 11n) | (1n << 35n), O.CLOEXEC);
  t.teardown(() => [e, s].forEach((fd) => closeSync(fd)));
  t.regex(fdinfo(e), /eventfd-count:\s+7\n/);
  t.regex(fdinfo(e), /eventfd-semaphore: 1/);
  t.regex(fdinfo(e), /flags:\s+0?2004002\n/);
  t.regex(fdinfo(s), /sigmask:\s+0000000800000800\n/);
});

// Its moving an expired periodic timer on is test/restore-anonfds.test.ts's (timerfd-periodic).
test("timerfdCreate and timerfdGettime: a new timer is disarmed", (t) => {
  const fd = b.timerfdCreate(1, O.CLOEXEC);
  t.teardown(() => closeSync(fd));
  t.deepEqual(b.timerfdGettime(fd), { valueNs: 0n, intervalNs: 0n }, "disarmed");
});

test("epoll and inotify: created, a watch added with the descriptor asked for, removed", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "tscriu-bridge-anonfd-"));
  const ep = b.epollCreate1(O.CLOEXEC);
  const ify = b.inotifyInit1(O.CLOEXEC);
  t.teardown(() => {
    [ep, ify].forEach((fd) => closeSync(fd));
    rmSync(dir, { recursive: true, force: true });
  });
  t.is(readlinkSync(`/proc/self/fd/${ep}`), "anon_inode:[eventpoll]");
  b.inotifySetNextWd(ify, 5);
  t.is(b.inotifyAddWatch(ify, dir, 0x100), 5);
  t.regex(fdinfo(ify), new RegExp(`inotify wd:5 ino:${statSync(dir).ino.toString(16)} `));
  b.inotifyRmWatch(ify, 5);
  t.notRegex(fdinfo(ify), /inotify wd:5 /);
});

test("openByHandleAt opens the inode an inotify watch names by its handle", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "tscriu-bridge-handle-"));
  const ify = b.inotifyInit1(O.CLOEXEC);
  const root = openSync("/", O.DIRECTORY | O.CLOEXEC);
  t.teardown(() => {
    [ify, root].forEach((fd) => closeSync(fd));
    rmSync(dir, { recursive: true, force: true });
  });
  b.inotifyAddWatch(ify, dir, 0x100);
  const m = /fhandle-type:([0-9a-f]+) f_handle:([0-9a-f]+)/.exec(fdinfo(ify))!;
  if (statSync(dir).dev !== statSync("/").dev) {
    t.log("the temporary directory is not on the root filesystem: not checked");
    t.pass();
    return;
  }
  const fd = b.openByHandleAt(root, Number.parseInt(m[1]!, 16), Buffer.from(m[2]!, "hex"), O.PATH | O.CLOEXEC);
  t.teardown(() => closeSync(fd));
  t.is(readlinkSync(`/proc/self/fd/${fd}`), dir);
});

// Its answer for a real target is test/restore-anonfds.test.ts's (epoll-moved): the bridge
// adds no epoll targets, the restored task does.
test("kcmpEpollTfd: ENOENT for a target the epoll does not have", (t) => {
  const ep = b.epollCreate1(O.CLOEXEC);
  const e = b.eventfd(0, O.CLOEXEC);
  t.teardown(() => [ep, e].forEach((fd) => closeSync(fd)));
  const err = t.throws(() => b.kcmpEpollTfd(process.pid, e, process.pid, ep, e, 0));
  t.true(isNativeError(err));
  t.like(err, { code: "ENOENT", syscall: "kcmp", pid: process.pid });
});

test("system errors name the syscall, and the path where there is one", (t) => {
  const ify = b.inotifyInit1(O.CLOEXEC);
  const e = b.eventfd(0, O.CLOEXEC);
  t.teardown(() => [ify, e].forEach((fd) => closeSync(fd)));
  const cases: [string, () => unknown, Record<string, unknown>][] = [
    ["a clock timerfds do not take", () => b.timerfdCreate(99, 0), { code: "EINVAL", syscall: "timerfd_create" }],
    ["an eventfd flag that does not exist", () => b.eventfd(0, 0x40), { code: "EINVAL", syscall: "eventfd" }],
    ["signalfd flags that do not exist", () => b.signalfd(1n, 0x40), { code: "EINVAL", syscall: "signalfd4" }],
    ["timerfd_gettime of an eventfd", () => b.timerfdGettime(e), { code: "EINVAL", syscall: "timerfd_gettime" }],
    ["epoll_create1 flags that do not exist", () => b.epollCreate1(0x40), { code: "EINVAL", syscall: "epoll_create1" }],
    ["inotify_init1 flags that do not exist", () => b.inotifyInit1(0x40), { code: "EINVAL", syscall: "inotify_init1" }],
    ["a watch on no file", () => b.inotifyAddWatch(ify, "/nonexistent/tscriu", 0x100), { code: "ENOENT", syscall: "inotify_add_watch", path: "/nonexistent/tscriu" }],
    ["removing a watch that is not there", () => b.inotifyRmWatch(ify, 77), { code: "EINVAL", syscall: "inotify_rm_watch" }],
    ["SETNEXTWD on an eventfd", () => b.inotifySetNextWd(e, 3), { code: "ENOTTY", syscall: "ioctl(INOTIFY_IOC_SETNEXTWD)" }],
    ["a handle on an eventfd as mount", () => b.openByHandleAt(e, 1, Buffer.alloc(8), O.PATH), { syscall: "open_by_handle_at" }],
    ["fanotify_init flags that do not exist", () => b.fanotifyInit(0x80000000, 0), { code: "EINVAL", syscall: "fanotify_init" }],
    ["a fanotify mark through an eventfd", () => b.fanotifyMark(e, 1, 8, "/"), { code: "EINVAL", syscall: "fanotify_mark" }],
    ["a fanotify mark on no file", () => {
      const fan = b.fanotifyInit(1, 0);
      try {
        b.fanotifyMark(fan, 1, 8, "/nonexistent/tscriu");
      } finally {
        closeSync(fan);
      }
    }, { code: "ENOENT", syscall: "fanotify_mark", path: "/nonexistent/tscriu" }],
  ];
  for (const [what, call, expected] of cases) {
    const err = t.throws(call, undefined, what);
    t.true(isNativeError(err), `${what}: ${String(err)}`);
    t.like(err, expected, what);
  }
});

test("bad arguments are TypeErrors before any syscall", (t) => {
  const bad: [string, () => unknown][] = [
    ["eventfd count above 2^32-1", () => b.eventfd(2 ** 32, 0)],
    ["negative signal mask", () => b.signalfd(-1n, 0)],
    ["fd as string", () => b.timerfdGettime("3" as unknown as number)],
    ["path not a string", () => b.inotifyAddWatch(0, 5 as unknown as string, 1)],
    ["an empty handle", () => b.openByHandleAt(0, 1, Buffer.alloc(0), 0)],
    ["a handle of 129 bytes", () => b.openByHandleAt(0, 1, Buffer.alloc(129), 0)],
    ["kcmpEpollTfd pid 0", () => b.kcmpEpollTfd(0, 1, 1, 1, 1, 0)],
    ["fanotify flags negative", () => b.fanotifyInit(-1, 0)],
    ["fanotify mark path not a string", () => b.fanotifyMark(0, 1, 8, 5 as unknown as string)],
  ];
  for (const [what, call] of bad) t.throws(call, { instanceOf: TypeError, code: "ERR_INVALID_ARG_TYPE" }, what);
});
