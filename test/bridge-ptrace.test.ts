// ptrace control and register sets against real workloads: every test leaves (or checks
// that it leaves) the task running as before, proven by the workload counting on and
// passing its own self-check.
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import test from "ava";
import { ERESTART, PTRACE_EVENT, PTRACE_O, SYS } from "../host-bridge/constants.js";
import { bridge } from "../host-bridge/load.js";
import { decodeRegs, encodeRegs, regOffset, signedReg, USER_REGS_SIZE } from "../host-bridge/regs.js";
import { counterAdvances, patternWord, procState, seizeAndStop, seizeRunning, startWorkload, waitFor } from "./helpers/workloads.js";

const b = bridge();
const { SIGTRAP, SIGUSR1, SIGTERM } = constants.signals;

test("seize + interrupt + getRegs + detach leaves the counter counting", async (t) => {
  const w = await startWorkload(t, "counter");
  await counterAdvances(w);
  const st = seizeAndStop(t, w.pid);
  t.like(st, { pid: w.pid, stopped: true, stopSig: SIGTRAP, event: PTRACE_EVENT.STOP, exited: false, signaled: false });
  t.is(procState(w.pid), "t");

  const raw = b.getRegs(w.pid);
  t.is(raw.length, USER_REGS_SIZE);
  const regs = decodeRegs(raw);
  t.true(regs.rip > 0n && regs.rsp > 0n);
  t.true(regs.fs_base > 0n, "glibc's TLS pointer is in fs_base");
  t.is(regs.cs, 0x33n, "64-bit user code segment");
  t.deepEqual(encodeRegs(regs), raw);
  t.is(raw.readBigUInt64LE(regOffset("rip")), regs.rip);

  b.ptraceDetach(w.pid, 0);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS count=\d+ inbox=$/);
});

test("a busy loop without syscalls stops in user code and runs on after detach", async (t) => {
  const w = await startWorkload(t, "busy");
  const counter = w.addr("counter");
  const buf = Buffer.alloc(8);
  const read = (): bigint => {
    t.is(b.processVmReadv(w.pid, counter, 8, buf), 8);
    return buf.readBigUInt64LE(0);
  };
  const first = read();
  await waitFor("the busy counter to move", () => read() > first);

  seizeAndStop(t, w.pid);
  const regs = decodeRegs(b.getRegs(w.pid));
  t.is(signedReg(regs.orig_rax), -1n, "not inside a syscall");
  const stopped = read();
  t.is(read(), stopped, "a stopped task does not count");

  b.ptraceDetach(w.pid, 0);
  await waitFor("the busy counter to move after detach", () => read() > stopped + 1000n);
  t.regex(await w.check(), /^PASS count=\d+$/);
});

test("a task stopped in nanosleep shows the restart code and sleeps on after detach", async (t) => {
  const w = await startWorkload(t, "sleeper");
  await waitFor("the sleeper to sleep", () => procState(w.pid) === "S");
  seizeAndStop(t, w.pid);
  const regs = decodeRegs(b.getRegs(w.pid));
  t.is(regs.orig_rax, BigInt(SYS.nanosleep));
  t.is(signedReg(regs.rax), -BigInt(ERESTART.ERESTART_RESTARTBLOCK));

  t.is(b.remoteSyscall(w.pid, SYS.getpid, []), BigInt(w.pid));
  b.ptraceDetach(w.pid, 0);
  // The kernel resumes the sleep through restart_syscall; an early return would be a FAIL line.
  await waitFor("the sleeper to sleep again", () => {
    const nr = readFileSync(`/proc/${w.pid}/syscall`, "utf8").split(" ")[0];
    return procState(w.pid) === "S" && (nr === String(SYS.restart_syscall) || nr === String(SYS.nanosleep));
  });
  t.deepEqual(w.results(), []);
  t.regex(await w.check(), /^PASS slept=\d+$/);
});

test("FPU, xstate, sigmask and rseq of a stopped task, written back unchanged", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid);

  const fp = b.getFpregs(w.pid);
  t.is(fp.length, 512);
  const xs = b.getXstate(w.pid);
  t.true(xs.length >= 576, `xsave area of ${xs.length} bytes`);
  const MXCSR = 24;
  t.is(xs.readUInt32LE(MXCSR), fp.readUInt32LE(MXCSR), "the legacy area of xsave is the fxsave image");
  b.setXstate(w.pid, xs);
  t.deepEqual(b.getXstate(w.pid), xs);
  b.setFpregs(w.pid, fp);
  t.deepEqual(b.getFpregs(w.pid), fp);

  t.is(b.getSigmask(w.pid), 0n, "the counter blocks nothing");
  b.setSigmask(w.pid, 1n << BigInt(SIGUSR1 - 1));
  t.is(b.getSigmask(w.pid), 1n << BigInt(SIGUSR1 - 1));
  b.setSigmask(w.pid, 0n);

  const rseq = b.getRseqConfiguration(w.pid);
  t.true(rseq.rseqAbiPointer > 0n, "glibc >= 2.35 registers rseq");
  t.is(rseq.rseqAbiSize, 32);
  t.is(rseq.signature, 0x53053053);

  const regs = b.getRegs(w.pid);
  b.setRegs(w.pid, regs);
  t.deepEqual(b.getRegs(w.pid), regs);

  b.ptraceDetach(w.pid, 0);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("peekSiginfo sees a pending signal without taking it; it is delivered after detach", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid);
  t.deepEqual(b.peekSiginfo(w.pid, true), []);
  t.deepEqual(b.peekSiginfo(w.pid), []);

  // Process-wide queue: kill(2) from us.
  process.kill(w.pid, "SIGUSR1");
  const shared = await waitFor("the signal to be queued", () => {
    const q = b.peekSiginfo(w.pid, true);
    return q.length ? q : undefined;
  });
  t.is(shared.length, 1);
  const si = shared[0];
  if (!si) throw new Error("unreachable");
  t.is(si.length, 128);
  t.is(si.readInt32LE(0), SIGUSR1, "si_signo");
  t.is(si.readInt32LE(8), 0, "si_code SI_USER");
  t.is(si.readInt32LE(16), process.pid, "si_pid");
  t.deepEqual(b.peekSiginfo(w.pid), [], "nothing in the thread's own queue");
  t.is(b.peekSiginfo(w.pid, true).length, 1, "peeking does not consume");

  const before = w.results().length;
  b.ptraceDetach(w.pid, 0);
  const line = await waitFor("the pending SIGUSR1 to be handled", () => w.results()[before]);
  t.regex(line, /^PASS/);
});

test("a per-thread signal queued from inside the task shows in the thread's queue", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid);
  // tgkill inside the task runs with every signal blocked, so the signal stays queued.
  const TGKILL = 234;
  t.is(b.remoteSyscall(w.pid, TGKILL, [w.pid, w.pid, SIGUSR1]), 0n);
  const q = b.peekSiginfo(w.pid);
  t.is(q.length, 1);
  t.is(q[0]?.readInt32LE(0), SIGUSR1);
  t.is(q[0]?.readInt32LE(8), -6, "si_code SI_TKILL");
  t.deepEqual(b.peekSiginfo(w.pid, true), []);
  const before = w.results().length;
  b.ptraceDetach(w.pid, 0);
  t.regex(await waitFor("the queued SIGUSR1 to be handled", () => w.results()[before]), /^PASS/);
});

test("peekData/pokeData read and write words; the workload sees its pattern intact after", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid);
  const at = w.addr("pattern") + 8 * 5;
  t.is(b.ptracePeekData(w.pid, at), patternWord(5));
  b.ptracePokeData(w.pid, at, -2n);
  t.is(b.ptracePeekData(w.pid, at), 0xfffffffffffffffen);
  b.ptracePokeData(w.pid, at, patternWord(5));
  t.is(b.ptracePeekData(w.pid, BigInt(at)), patternWord(5));
  b.ptraceDetach(w.pid, 0);
  t.regex(await w.check(), /^PASS/);
});

test("PTRACE_SYSCALL stops at a syscall with TRACESYSGOOD", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid, PTRACE_O.TRACESYSGOOD);
  b.ptraceSyscall(w.pid, 0);
  const st = b.waitpid(w.pid, 0, 10_000);
  t.like(st, { stopped: true, stopSig: SIGTRAP | 0x80, event: 0 });
  const regs = decodeRegs(b.getRegs(w.pid));
  t.true(signedReg(regs.orig_rax) >= 0n, "a syscall number at a syscall stop");
  b.ptraceDetach(w.pid, 0);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("PTRACE_O_TRACEEXIT: the exit event carries the status in the event message", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid, PTRACE_O.TRACEEXIT);
  b.ptraceCont(w.pid, 0);
  process.kill(w.pid, "SIGTERM");
  // SIGTERM first stops as a signal-delivery-stop; pass it on.
  let st = b.waitpid(w.pid, 0, 10_000);
  while (st && st.stopped && st.event === 0) {
    b.ptraceCont(w.pid, st.stopSig);
    st = b.waitpid(w.pid, 0, 10_000);
  }
  t.like(st, { stopped: true, event: PTRACE_EVENT.EXIT });
  t.is(b.ptraceGetEventMsg(w.pid), SIGTERM, "wait status of death by SIGTERM");
  b.ptraceCont(w.pid, 0);
  t.like(b.waitpid(w.pid, 0, 10_000), { pid: w.pid, signaled: true, signal: SIGTERM, exited: false });
});

test("waitpid with a timeout returns null while a seized task keeps running", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeRunning(t, w.pid);
  t.is(b.waitpid(w.pid, 0, 30), null);
  t.is(b.waitpid(w.pid, 1 /* WNOHANG */), null);
  await counterAdvances(w);
});
