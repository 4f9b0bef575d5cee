// pidfd_getfd copies of a workload's pipe: reading the unread data without consuming it,
// and the workload's own read afterwards still getting every byte.
import { closeSync, constants, openSync, readdirSync, readSync, writeSync } from "node:fs";
import test from "ava";
import { F, O } from "../host-bridge/constants.js";
import { bridge } from "../host-bridge/load.js";
import { peekPipe } from "../host-bridge/pipe.js";
import { payloadByte, startWorkload } from "./helpers/workloads.js";

const b = bridge();

function payload(len: number): Buffer {
  const buf = Buffer.alloc(len);
  for (let i = 0; i < len; i++) buf[i] = payloadByte(i);
  return buf;
}

test("pidfdGetfd + tee reads the pipe's contents; the workload still reads all of it", async (t) => {
  const w = await startWorkload(t, "pipe");
  const rfd = Number(w.info.rfd);
  const wfd = Number(w.info.wfd);
  const len = Number(w.info.len);
  const pidfd = b.pidfdOpen(w.pid);
  t.teardown(() => b.close(pidfd));

  const fd = b.pidfdGetfd(pidfd, rfd);
  const wcopy = b.pidfdGetfd(pidfd, wfd);
  try {
    const st = b.fstat(fd);
    t.is(st.type, "fifo");
    t.is(b.fstat(wcopy).ino, st.ino, "both ends are the same pipe");
    t.is(b.readlink(`/proc/self/fd/${fd}`), b.readlink(`/proc/${w.pid}/fd/${rfd}`));
    t.is(b.readlink(`/proc/self/fd/${fd}`), `pipe:[${st.ino}]`);
    t.is(b.fcntl(fd, F.GETFL) & 3, 0, "the read end (O_RDONLY)");
    t.is(b.fcntl(fd, F.GETPIPE_SZ), 65536);
    t.is(b.fionread(fd), len);

    t.deepEqual(peekPipe(fd), payload(len));
    t.is(b.fionread(fd), len, "nothing was consumed");
    t.deepEqual(peekPipe(fd), payload(len), "a second peek sees the same");
  } finally {
    b.close(fd);
    b.close(wcopy);
  }
  t.is(await w.check(), `PASS read=${len}`);
  // The workload refilled it: the copy taken now sees the refill.
  const again = b.pidfdGetfd(pidfd, rfd);
  t.deepEqual(peekPipe(again), payload(len));
  b.close(again);
  t.is(await w.check(), `PASS read=${len}`);
});

test("tee/splice/pipe2 primitives move bytes between our own pipes", (t) => {
  const [r1, w1] = b.pipe2();
  const [r2, w2] = b.pipe2(O.CLOEXEC | O.NONBLOCK);
  try {
    t.is(b.tee(r1, w2, 100, 2 /* SPLICE_F_NONBLOCK */), 0, "an empty pipe tees nothing");
    t.is(b.fcntl(w1, F.GETFL) & O.NONBLOCK, 0);
    t.is(b.fcntl(w2, F.GETFL) & O.NONBLOCK, O.NONBLOCK);
    writeSync(w1, Buffer.from("0123456789"));
    t.is(b.tee(r1, w2, 4, 0), 4);
    t.is(b.fionread(r1), 10);
    t.is(b.fionread(r2), 4);
    t.is(b.splice(r1, null, w2, null, 100, 0), 10);
    t.is(b.fionread(r1), 0);
    const out = Buffer.alloc(14);
    t.is(readSync(r2, out, 0, 14, null), 14);
    t.is(out.toString(), "01230123456789");
  } finally {
    for (const fd of [r1, w1, r2, w2]) b.close(fd);
  }
});

test("fds taken from a workload are closed again (no leak)", async (t) => {
  const w = await startWorkload(t, "pipe");
  const before = readdirSync("/proc/self/fd").length;
  const pidfd = b.pidfdOpen(w.pid);
  for (let i = 0; i < 50; i++) {
    const fd = b.pidfdGetfd(pidfd, Number(w.info.rfd));
    peekPipe(fd);
    b.close(fd);
  }
  b.close(pidfd);
  t.is(readdirSync("/proc/self/fd").length, before);
});

test("a task holding only the write end: a new reader through /proc/PID/fd/N peeks the same data", async (t) => {
  const w = await startWorkload(t, "pipe");
  const fd = openSync(`/proc/${w.pid}/fd/${w.info.wfd}`, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    t.deepEqual(peekPipe(fd), payload(Number(w.info.len)));
  } finally {
    closeSync(fd);
  }
  t.is(await w.check(), `PASS read=${w.info.len}`);
});
