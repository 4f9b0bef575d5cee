// Every workload of test/workloads/ through dump + restore: each passes its own check
// afterwards, and what the kernel shows of it (/proc maps, fds, signal state, timers,
// registers) is what it was before the dump.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { dumpGone, mapsSummary, regsAsLeft, restoreTask, status } from "./helpers/restore.js";
import { CLI } from "./helpers/cli.js";
import { killAndReap, procState, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

/** Sends SIGUSR1 until the check line matches `re` (timers take a while to fire). */
async function checkUntil(w: Workload, re: RegExp, timeoutMs = 8000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = await w.check();
    if (re.test(line) || Date.now() > deadline) return line;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function fdTable(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
    const pos = /^pos:\s*(\d+)/m.exec(info)?.[1];
    const flags = /^flags:\s*(\d+)/m.exec(info)?.[1];
    out[fd] = `${readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/\[\d+\]/, "[N]")} pos=${pos} flags=${flags}`;
  }
  return out;
}

test("memkinds: private/shared anonymous, PROT_NONE, read-only, file private/shared, deleted file", async (t) => {
  const w = await startWorkload(t, "memkinds");
  const maps = mapsSummary(w.pid);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.deepEqual(mapsSummary(w.pid), maps, "the same VMAs, /dev/zero and the deleted file included");
  t.regex(await w.check(), /^PASS/);
  t.true(readFileSync(`/proc/${w.pid}/maps`, "utf8").includes(`${w.dir}/deleted.dat (deleted)`));
  t.deepEqual(readdirSync(w.dir).filter((f) => f.startsWith("deleted") || f.startsWith(".tscriu")), [], "the recreated unlinked file is gone again");
});

test("fdkinds: offsets, flags, cloexec, pipe and FIFO data, dup, unlinked file, O_PATH file and directory", async (t) => {
  const w = await startWorkload(t, "fdkinds");
  // Stopped first, so that the table read here is the one the dump sees: the workload
  // opens counter.tmp for a moment at every count, and a running task may have it open
  // at one moment and not the next. A task dumped stopped comes back stopped.
  process.kill(w.pid, "SIGSTOP");
  await waitFor("the workload to stop", () => procState(w.pid) === "T");
  const fds = fdTable(w.pid);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.deepEqual(fdTable(w.pid), fds);
  t.is(procState(w.pid), "T");
  process.kill(w.pid, "SIGCONT");
  t.regex(await w.check(), /^PASS/);
  t.regex(await w.check(), /^PASS/, "the check puts the data back: a second one passes too");
});

test("procself: files of the task's own /proc directory that name its fds (/proc/self/fdinfo/N above and below N, as zdtm's fanotify00) are opened once those fds are there", async (t) => {
  const w = await startWorkload(t, "procself");
  t.is(await w.check(), "PASS procself");
  const fds = fdTable(w.pid);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.deepEqual(fdTable(w.pid), fds);
  t.is(await w.check(), "PASS procself");
});

test("sigstate: handlers, masks, pending signals, altstack, itimer and POSIX timer firing, rlimits, creds, comm", async (t) => {
  const w = await startWorkload(t, "sigstate");
  const keys = ["SigBlk", "SigPnd", "ShdPnd", "SigIgn", "SigCgt", "Umask", "NoNewPrivs", "CapEff", "CapPrm", "CapBnd", "Name"];
  // The timers' own signals (SIGALRM, SIGRTMIN+1) are pending for a moment each time
  // they fire, until the busy task gets to run its handler, and blocked while the handler
  // runs (no SA_NODEFER): not part of the state kept.
  const bit = (signal: number): bigint => 1n << BigInt(signal - 1);
  const firing = bit(14) | bit(Number(w.info["sigrtmin"]) + 1);
  const masked = new Set(["SigBlk", "SigPnd", "ShdPnd"]);
  const steady = (k: string, v: string | undefined): string | undefined => (masked.has(k) && v !== undefined ? (BigInt(`0x${v}`) & ~firing).toString(16).padStart(16, "0") : v);
  const state = (): (string | undefined)[] => keys.map((k) => steady(k, status(w.pid).get(k)));
  const before = state();
  const timers = readFileSync(`/proc/${w.pid}/timers`, "utf8");
  const limits = readFileSync(`/proc/${w.pid}/limits`, "utf8");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.deepEqual(state(), before);
  t.is(readFileSync(`/proc/${w.pid}/timers`, "utf8"), timers, "the POSIX timer with its id, signal, value and clock");
  t.is(readFileSync(`/proc/${w.pid}/limits`, "utf8"), limits);
  const line = await checkUntil(w, /^PASS alarms=[1-9]\d* rt=[1-9]/);
  t.regex(line, /^PASS alarms=[1-9]\d* rt=[1-9]/, "ITIMER_REAL and the POSIX timer fire after the restore");
});

test("threadtimers: a POSIX timer aimed at a thread (SIGEV_THREAD_ID), made once that thread is back, signals it; ids (with the hole of a deleted one), intervals and time left kept", async (t) => {
  const w = await startWorkload(t, "threadtimers");
  t.regex(await w.check(), /^PASS/);
  const timers = readFileSync(`/proc/${w.pid}/timers`, "utf8");
  t.regex(timers, new RegExp(`^notify: signal/tid\\.${w.info["worker"]}$`, "m"), "the thread's timer is aimed at the worker, not the leader");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(readFileSync(`/proc/${w.pid}/timers`, "utf8"), timers, "ids, signals, values, targets and clocks");
  t.regex(await w.check(), /^PASS thread=\d+ process=\d+/);
});

test("sched: policies with SCHED_RESET_ON_FORK (RR, OTHER), FIFO, BATCH, IDLE, priorities and nice, thread by thread", async (t) => {
  const w = await startWorkload(t, "sched");
  t.regex(await w.check(), /^PASS/);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.regex(await w.check(), /^PASS sched=6/);
});

test("rlimits: a hard limit the restore may not raise (no CAP_SYS_RESOURCE) is kept as high as it goes, with a warning; the limits after it are set", async (t) => {
  const w = await startWorkload(t, "counter");
  // lowered in the task (as root may), so that the image's are known: STACK before
  // NOFILE in criu's order, MSGQUEUE after it
  const set = spawnSync("prlimit", ["-p", String(w.pid), "--stack=4194304:16777216", "--nofile=4096:4096", "--msgqueue=409600:409600"], { encoding: "utf8" });
  t.is(set.status, 0, set.stderr);
  const dir = await dumpGone(t, w);
  // restored under a hard NOFILE of 1000: the image's 4096 cannot be had
  const r = spawnSync("prlimit", ["--nofile=512:1000", CLI, "restore", "-D", dir, "-d"], { encoding: "utf8" });
  t.teardown(() => killAndReap(w.pid));
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /RLIMIT_NOFILE: hard limit 4096 needs CAP_SYS_RESOURCE; kept 1000, soft 1000 \(wanted 4096\)/);
  const limits = readFileSync(`/proc/${w.pid}/limits`, "utf8");
  t.regex(limits, /^Max stack size\s+4194304\s+16777216\s+bytes/m);
  t.regex(limits, /^Max open files\s+1000\s+1000\s+files/m);
  t.regex(limits, /^Max msgqueue size\s+409600\s+409600\s+bytes/m);
  t.regex(await w.check(), /^PASS/);
});

test("regs: general registers and AVX halves where the spinning task left them; it spins on", async (t) => {
  const w = await startWorkload(t, "regs");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  await regsAsLeft(t, w.pid);
});


test("r-fpu: ymm0-3, MXCSR and the x87 control word survive in a loop that never calls the kernel", async (t) => {
  const w = await startWorkload(t, "r-fpu");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.regex(await w.check(), /^PASS rounds=\d+/);
});

test("busy: a loop without syscalls counts on in memory", async (t) => {
  const w = await startWorkload(t, "busy");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  const read = (): bigint => {
    const buf = Buffer.alloc(8);
    bridge().processVmReadv(w.pid, w.addr("counter"), 8, buf);
    return buf.readBigUInt64LE(0);
  };
  const first = read();
  await waitFor("the counter in memory to move", () => read() > first);
  t.regex(await w.check(), /^PASS/);
});

test("sleeper: a task dumped in nanosleep sleeps on for the time that was left (no early EINTR)", async (t) => {
  const w = await startWorkload(t, "sleeper");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  await waitFor("the task to sleep", () => /^State:\s+S/m.test(readFileSync(`/proc/${w.pid}/status`, "utf8")));
  t.deepEqual(w.results(), [], "no FAIL line: the sleep was not cut short");
  t.regex(await w.check(), /^PASS slept=\d+/);
});

test("pipe: 10000 unread bytes in three pipe buffers are there to read", async (t) => {
  const w = await startWorkload(t, "pipe");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS read=10000");
});

test("r-vdso: clock_gettime through the vDSO runs on, CLOCK_MONOTONIC continuous across a 1.5 s wait", async (t) => {
  const w = await startWorkload(t, "r-vdso");
  const dir = await dumpGone(t, w);
  const waitedUntil = Date.now() + 1500;
  await waitFor("1.5 s to pass between dump and restore", () => Date.now() >= waitedUntil, 5000);
  await restoreTask(t, dir);
  const line = await w.check();
  t.regex(line, /^PASS calls=\d+ maxstep_ms=\d+/);
  t.true(Number(/maxstep_ms=(\d+)/.exec(line)?.[1]) < 1000, `the clock did not jump by the time the images waited: ${line}`);
});

// 40 MiB: several of the dump's 8 MiB write chunks in flight (a lost-write bug lived there).
test("bigmem: 40 MiB of written memory comes back word by word", async (t) => {
  const w = await startWorkload(t, "bigmem", ["40"]);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  const mem = w.addr("mem");
  const buf = Buffer.alloc(40 << 20);
  t.is(bridge().processVmReadv(w.pid, mem, buf.length, buf), buf.length);
  let bad = -1;
  for (let i = 0; i < buf.length / 8 && bad < 0; i++) {
    const want = BigInt(Math.floor((i * 8) / 4096)) ^ 0xb16b00b5000000n ^ BigInt(i);
    if (buf.readBigUInt64LE(i * 8) !== want) bad = i;
  }
  t.is(bad, -1, "every word as the workload wrote it");
});

test("r-seccomp: the seccomp filter is back (getppid still fails with EPERM) and the restore was not hit by it", async (t) => {
  const w = await startWorkload(t, "r-seccomp");
  t.regex(await w.check(), /^PASS filters=1/);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(status(w.pid).get("Seccomp"), "2");
  t.is(await w.check(), "PASS filters=1");
});

test("seccomp-threads: threads whose own filters fail the calls a dump runs inside them are dumped and restored, each filter still acting", async (t) => {
  const w = await startWorkload(t, "seccomp-threads");
  t.is(await w.check(), "PASS seccomp-threads");
  const tids = w.info["tids"]!.split(",").map(Number);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  for (const tid of tids) t.is(status(tid).get("Seccomp"), "2", `thread ${tid}`);
  t.is(status(w.pid).get("Seccomp"), "0");
  t.is(await w.check(), "PASS seccomp-threads");
});
