// Error paths of the bridge: system errors shaped like Node's SystemError (code, errno,
// syscall, pid/path), one per natural cause; argument errors are TypeErrors thrown before
// any syscall is made.
import test, { type ExecutionContext } from "ava";
import { SYS } from "../host-bridge/constants.js";
import { bridge, isNativeError } from "../host-bridge/load.js";
import type { Termios } from "../host-bridge/native.js";
import { killAndReap, seizeAndStop, startWorkload } from "./helpers/workloads.js";

const b = bridge();

type T = ExecutionContext;

/** t.throws for a NativeError, comparing the given fields (ava's own only knows `code`). */
function throwsNative(t: T, call: () => unknown, expected: Record<string, unknown>): void {
  const err = t.throws(call);
  t.true(isNativeError(err), `a NativeError: ${String(err)}`);
  t.like(err, expected);
}

/** A pid that existed a moment ago and is now free. */
async function deadPid(t: T): Promise<number> {
  const w = await startWorkload(t, "sleeper");
  await killAndReap(w.pid);
  return w.pid;
}

test("ESRCH for a pid that is gone, from every family", async (t) => {
  const pid = await deadPid(t);
  const buf = Buffer.alloc(8);
  const calls: [string, () => unknown][] = [
    ["ptraceSeize", () => b.ptraceSeize(pid)],
    ["ptraceInterrupt", () => b.ptraceInterrupt(pid)],
    ["getRegs", () => b.getRegs(pid)],
    ["getSigmask", () => b.getSigmask(pid)],
    ["remoteSyscall", () => b.remoteSyscall(pid, SYS.getpid, [])],
    ["processVmReadv", () => b.processVmReadv(pid, 0x10000, 8, buf)],
    ["processVmReadvBatch", () => b.processVmReadvBatch(pid, new BigUint64Array([0x10000n, 8n]), buf)],
    ["readProcMem", () => b.readProcMem(pid, 0x10000, 8, buf)],
    ["pagemapScan", () => b.pagemapScan(pid, 0, 4096)],
    ["pidfdOpen", () => b.pidfdOpen(pid)],
  ];
  for (const [name, call] of calls) {
    const err = t.throws(call, undefined, name);
    t.true(isNativeError(err), `${name} throws a NativeError`);
    t.like(err, { code: "ESRCH", errno: 3, pid }, name);
    t.regex(err?.message ?? "", new RegExp(`\\b${pid}\\b.*: ESRCH`), name);
  }
});

test("ptrace refuses what it must: EPERM for ourselves and for a second seize", async (t) => {
  throwsNative(t, () => b.ptraceSeize(process.pid), { code: "EPERM", syscall: "ptrace(PTRACE_SEIZE)" });
  const w = await startWorkload(t, "sleeper");
  seizeAndStop(t, w.pid);
  t.throws(() => b.ptraceSeize(w.pid), { code: "EPERM" });
  b.ptraceDetach(w.pid, 0);
});

test("unmapped memory: EIO from ptrace and /proc/PID/mem, EFAULT from process_vm_readv", async (t) => {
  const w = await startWorkload(t, "sleeper");
  seizeAndStop(t, w.pid);
  const buf = Buffer.alloc(8);
  throwsNative(t, () => b.ptracePeekData(w.pid, 0x1000), { code: "EIO", syscall: "ptrace(PTRACE_PEEKDATA)" });
  t.throws(() => b.ptracePokeData(w.pid, 0x1000, 1), { code: "EIO" });
  throwsNative(t, () => b.readProcMem(w.pid, 0x1000, 8, buf), { code: "EIO", path: `/proc/${w.pid}/mem` });
  throwsNative(t, () => b.processVmReadv(w.pid, 0x1000, 8, buf), { code: "EFAULT", syscall: "process_vm_readv" });
  t.throws(() => b.remoteSyscall(w.pid, SYS.getpid, [], 0x1000), { code: "EIO" });
  t.deepEqual(b.processVmReadvBatch(w.pid, new BigUint64Array([0x1000n, 8n]), buf), { bytes: 0, complete: 0, stoppedBy: "EFAULT" });
  b.ptraceDetach(w.pid, 0);
  t.regex(await w.check(), /^PASS/);
});

test("fd errors: EBADF for a target fd that is not open, ECHILD for waiting on a stranger", async (t) => {
  const w = await startWorkload(t, "sleeper");
  const pidfd = b.pidfdOpen(w.pid);
  t.teardown(() => b.close(pidfd));
  throwsNative(t, () => b.pidfdGetfd(pidfd, 999), { code: "EBADF", syscall: "pidfd_getfd", pid: w.pid });
  t.throws(() => b.waitpid(w.pid, 1), { code: "ECHILD" });
  throwsNative(t, () => b.readlink("/nonexistent/link"), { code: "ENOENT", path: "/nonexistent/link" });
  t.throws(() => b.fstat(99999), { code: "EBADF" });
  t.throws(() => b.close(99999), { code: "EBADF" });
  t.throws(() => b.tee(pidfd, pidfd, 1), { code: "EINVAL" });
  // Not a terminal: ENOTTY from reading or setting terminal settings; nothing set is no call.
  const cc = new Array<number>(19).fill(0);
  throwsNative(t, () => b.ttyInfo(pidfd), { code: "ENOTTY", syscall: "ioctl(TCGETS)" });
  throwsNative(t, () => b.ttySetParams(pidfd, { termios: { iflag: 0, oflag: 0, cflag: 0, lflag: 0, line: 0, cc } }), { code: "ENOTTY", syscall: "ioctl(TCSETS)" });
  throwsNative(t, () => b.ttySetParams(pidfd, { winsize: { rows: 1, cols: 1, xpixel: 0, ypixel: 0 } }), { code: "ENOTTY", syscall: "ioctl(TIOCSWINSZ)" });
  t.notThrows(() => b.ttySetParams(pidfd, {}));
});

test("bad arguments are TypeErrors with code ERR_INVALID_ARG_TYPE", (t) => {
  const buf = Buffer.alloc(8);
  const bad: [string, () => unknown][] = [
    ["pid as string", () => b.ptraceSeize("1" as unknown as number)],
    ["pid 0", () => b.ptraceSeize(0)],
    ["negative pid", () => b.getRegs(-5)],
    ["fractional pid", () => b.ptraceInterrupt(1.5)],
    ["missing argument", () => (b.getRegs as unknown as () => void)()],
    ["signal out of range", () => b.ptraceCont(1, 65)],
    ["waitpid flags", () => b.waitpid(1, "x" as unknown as number)],
    ["length past the buffer", () => b.processVmReadv(1, 0x1000, 9, buf)],
    ["offset past the buffer", () => b.processVmReadv(1, 0x1000, 1, buf, 9)],
    ["into not a buffer", () => b.processVmReadv(1, 0x1000, 1, [] as unknown as Uint8Array)],
    ["address overflow", () => b.processVmReadv(1, 0xffffffffffffffffn, 2, buf)],
    ["address above 2^64", () => b.ptracePeekData(1, 1n << 64n)],
    ["negative address", () => b.readProcMem(1, -4096, 1, buf)],
    ["ranges not BigUint64Array", () => b.processVmReadvBatch(1, new Float64Array(2) as unknown as BigUint64Array, buf)],
    ["odd ranges", () => b.processVmReadvBatch(1, new BigUint64Array(3), buf)],
    ["ranges past the buffer", () => b.processVmReadvBatch(1, new BigUint64Array([0x1000n, 9n]), buf)],
    ["setRegs size", () => b.setRegs(1, Buffer.alloc(100))],
    ["setFpregs size", () => b.setFpregs(1, Buffer.alloc(100))],
    ["7 syscall args", () => b.remoteSyscall(1, 39, [1, 2, 3, 4, 5, 6, 7])],
    ["string syscall arg", () => b.remoteSyscall(1, 39, ["1" as unknown as number])],
    ["bigint arg below -2^63", () => b.remoteSyscall(1, 39, [-(1n << 64n)])],
    ["args not an array", () => b.remoteSyscall(1, 39, 5 as unknown as number[])],
    ["unaligned pagemap range", () => b.pagemapScan(1, 1, 4096)],
    ["pagemap end < start", () => b.pagemapScan(1, 8192, 4096)],
    ["pagemap options", () => b.pagemapScan(1, 0, 4096, { returnMask: -1 })],
    ["allocAligned(0)", () => b.allocAligned(0)],
    ["allocAligned too big", () => b.allocAligned(2 ** 33)],
    ["peekSiginfo shared", () => b.peekSiginfo(1, "yes" as unknown as boolean)],
    ["negative fd", () => b.pidfdGetfd(-1, 0)],
    ["fcntl with a pointer", () => b.fcntl(0, 5 /* F_GETLK */)],
    ["readlink path", () => b.readlink(7 as unknown as string)],
    ["setSigmask string", () => b.setSigmask(1, "0" as unknown as bigint)],
    ["ttySetParams termios without cc", () => b.ttySetParams(0, { termios: { iflag: 0, oflag: 0, cflag: 0, lflag: 0, line: 0 } as unknown as Termios })],
    ["ttySetParams winsize past 65535", () => b.ttySetParams(0, { winsize: { rows: 70000, cols: 80, xpixel: 0, ypixel: 0 } })],
  ];
  for (const [name, call] of bad) {
    t.throws(call, { instanceOf: TypeError, code: "ERR_INVALID_ARG_TYPE" }, name);
  }
});
