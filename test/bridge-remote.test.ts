// remoteSyscall: a syscall run inside a stopped workload, after which its code bytes,
// registers and signal mask are exactly as before -- checked from outside
// (/proc/PID/mem, getRegs) and from inside (the workload's own self-check).
import { constants } from "node:os";
import test from "ava";
import { MAP, PROT, SYS } from "../host-bridge/constants.js";
import { bridge, isNativeError } from "../host-bridge/load.js";
import { decodeRegs } from "../host-bridge/regs.js";
import { counterAdvances, firstExecMapping, procState, seizeAndStop, seizeRunning, startWorkload, waitFor } from "./helpers/workloads.js";

const b = bridge();
const { SIGUSR1, SIGUSR2 } = constants.signals;
const EBADF = 9;
const SA_RESTORER = 0x04000000n;
const SA_RESTART = 0x10000000n;

function memAt(pid: number, addr: number, len = 16): Buffer {
  const buf = Buffer.alloc(len);
  if (b.readProcMem(pid, addr, len, buf) !== len) throw new Error(`short read of /proc/${pid}/mem at 0x${addr.toString(16)}`);
  return buf;
}

/** Everything a remote syscall must leave as it found it. */
function snapshot(pid: number, codeAt: number): { code: Buffer; regs: Buffer; mask: bigint } {
  return { code: memAt(pid, codeAt), regs: b.getRegs(pid), mask: b.getSigmask(pid) };
}

test("getpid and rt_sigaction inside the task; bytes, registers and mask are put back", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid);
  const code = firstExecMapping(w.pid);
  const before = snapshot(w.pid, code);

  t.is(b.remoteSyscall(w.pid, SYS.getpid, []), BigInt(w.pid));
  t.deepEqual(snapshot(w.pid, code), before);

  // A scratch page in the task for the kernel to write the old sigaction into.
  const page = b.remoteSyscall(w.pid, SYS.mmap, [0, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0]);
  t.true(page > 0n && page % 4096n === 0n, `mmap returned ${page}`);
  t.is(b.remoteSyscall(w.pid, SYS.rt_sigaction, [SIGUSR1, 0, page, 8]), 0n);
  const act = Buffer.alloc(32); // kernel struct sigaction: handler, flags, restorer, mask
  t.is(b.processVmReadv(w.pid, page, 32, act), 32);
  t.is(act.readBigUInt64LE(0), BigInt(w.addr("handler")), "the handler the workload installed");
  const flags = act.readBigUInt64LE(8);
  t.true((flags & SA_RESTORER) !== 0n, "glibc sets SA_RESTORER");
  t.is(flags & SA_RESTART, 0n);
  t.true(act.readBigUInt64LE(16) > 0n, "glibc's __restore_rt");
  t.is(act.readBigUInt64LE(24), 1n << BigInt(SIGUSR2 - 1), "sa_mask holds SIGUSR2");
  t.is(b.remoteSyscall(w.pid, SYS.munmap, [page, 4096]), 0n);

  t.deepEqual(snapshot(w.pid, code), before);
  b.ptraceDetach(w.pid, 0);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("a failing syscall returns -errno; an explicit scratch address is used and restored", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid);
  // A later word of the first executable mapping: not the default spot.
  const scratch = firstExecMapping(w.pid) + 64;
  const before = snapshot(w.pid, scratch);
  t.is(b.remoteSyscall(w.pid, SYS.close, [9999], scratch), -BigInt(EBADF));
  t.is(b.remoteSyscall(w.pid, SYS.getpid, [], BigInt(scratch)), BigInt(w.pid));
  t.deepEqual(snapshot(w.pid, scratch), before);
  b.ptraceDetach(w.pid, 0);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("the injected code faulting (non-executable scratch) throws EFAULT and restores everything", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid);
  const scratch = w.addr("pattern");
  const before = snapshot(w.pid, scratch);
  const err = t.throws(() => b.remoteSyscall(w.pid, SYS.getpid, [], scratch));
  t.true(isNativeError(err));
  t.like(err, { code: "EFAULT", pid: w.pid });
  t.regex(err?.message ?? "", /signal 11/);
  t.deepEqual(snapshot(w.pid, scratch), before, "pattern bytes, registers and mask are back");
  // The next call works from the signal-delivery-stop the fault left (SIGSEGV suppressed).
  t.is(b.remoteSyscall(w.pid, SYS.getpid, []), BigInt(w.pid));
  b.ptraceDetach(w.pid, 0);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/, "the pattern the workload checks is intact");
});

test("a remote syscall that blocks past its timeout is interrupted: ETIME, state restored", async (t) => {
  const w = await startWorkload(t, "busy");
  seizeAndStop(t, w.pid);
  const code = firstExecMapping(w.pid);
  const page = b.remoteSyscall(w.pid, SYS.mmap, [0, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0]);
  const ts = Buffer.alloc(16);
  ts.writeBigInt64LE(3600n, 0); // one hour
  t.is(b.processVmWritev(w.pid, page, ts), 16);
  const before = snapshot(w.pid, code);
  const err = t.throws(() => b.remoteSyscall(w.pid, SYS.nanosleep, [page, 0], null, 100));
  t.like(err, { code: "ETIME", pid: w.pid });
  t.deepEqual(snapshot(w.pid, code), before);
  t.is(b.remoteSyscall(w.pid, SYS.munmap, [page, 4096]), 0n);

  const counter = w.addr("counter");
  const buf = Buffer.alloc(8);
  b.processVmReadv(w.pid, counter, 8, buf);
  const stopped = buf.readBigUInt64LE(0);
  b.ptraceDetach(w.pid, 0);
  await waitFor("the busy loop to run on", () => {
    b.processVmReadv(w.pid, counter, 8, buf);
    return buf.readBigUInt64LE(0) > stopped;
  });
  t.regex(await w.check(), /^PASS/);
});

test("remoteSyscall on a task that is seized but running fails with ESRCH and changes nothing", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeRunning(t, w.pid);
  t.throws(() => b.remoteSyscall(w.pid, SYS.getpid, []), { code: "ESRCH" });
  await counterAdvances(w);
});

test("the registers seen in a remote call's stop are the task's own again afterwards", async (t) => {
  const w = await startWorkload(t, "sleeper");
  await waitFor("the sleeper to sleep", () => procState(w.pid) === "S");
  seizeAndStop(t, w.pid);
  const regs = decodeRegs(b.getRegs(w.pid));
  for (let i = 0; i < 20; i++) t.is(b.remoteSyscall(w.pid, SYS.gettid, []), BigInt(w.pid));
  t.deepEqual(decodeRegs(b.getRegs(w.pid)), regs);
  b.ptraceDetach(w.pid, 0);
  t.regex(await w.check(), /^PASS slept=/);
});
