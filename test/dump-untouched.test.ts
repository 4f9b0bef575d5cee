// A dump must leave the task it dumps exactly as it found it, whether it succeeds
// (-R, -s) or is refused: every handler, the mask, the pending signals (the signal lines
// of /proc/PID/status), the registers and the mappings. The sigtrap workload has its own
// SIGTRAP handler, which the `syscall; int3` run inside the task used to reset to
// SIG_DFL (a trap with SIGTRAP blocked); its self-check executes an int3 and dies
// without the handler. The images must hold the real handler too. And a task with a
// pending time namespace is refused by name before it is touched.
import { readFileSync } from "node:fs";
import test, { type ExecutionContext } from "ava";
import { bridge } from "../host-bridge/load.js";
import { dump } from "../orchestrator/dump/dump.js";
import { tempDir } from "./helpers/dump.js";
import { restoreTask, status } from "./helpers/restore.js";
import { killAndReap, procState, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

const b = bridge();
const SIGNAL_LINES = ["SigQ", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"];

let uids = 0;
/**
 * A uid of the workload's own, so that SigQ (pending signals per user) counts only its
 * signals: other tests' workloads run as root, each test of this file gets its own uid.
 */
function ownUid(): string {
  return `uid=${200_000 + (process.pid % 100_000) * 16 + uids++}`;
}

/** Registers of a task that sleeps (running) or is in a group-stop (stopped), left as it was. */
function regsOf(pid: number): Buffer {
  const stopped = procState(pid) === "T";
  b.ptraceSeize(pid, 0);
  // Seizing a task in group-stop queues its own PTRACE_EVENT_STOP: no interrupt then.
  if (!stopped) b.ptraceInterrupt(pid);
  const st = b.waitpid(pid, 0, 10_000);
  if (!st?.stopped) throw new Error(`pid ${pid} did not stop for the look at its registers`);
  const regs = b.getRegs(pid);
  // The kernel drops a signal given to PTRACE_DETACH from an event stop, and whether the
  // task goes back into its group-stop then depends on timing: queue the SIGSTOP first
  // (as tscriu's own release does), so the look leaves a stopped task stopped.
  if (stopped) process.kill(pid, "SIGSTOP");
  b.ptraceDetach(pid, 0);
  return regs;
}

interface Look {
  signals: Record<string, string>;
  regs: Buffer;
  maps: string;
}

function look(pid: number): Look {
  const st = status(pid);
  const signals: Record<string, string> = {};
  for (const k of SIGNAL_LINES) signals[k] = st.get(k) ?? "(missing)";
  return { signals, regs: regsOf(pid), maps: readFileSync(`/proc/${pid}/maps`, "utf8") };
}

/**
 * SigQ counts the signals queued for the task's whole user: it says something about this
 * task only when the task runs as a uid of its own (`ownUid`); a root task's SigQ moves
 * with every other root process on the machine, so `sharedUid` leaves it out.
 */
function same(t: ExecutionContext, after: Look, before: Look, what: string, sharedUid = false): void {
  const signals = (l: Look) => {
    const { SigQ, ...rest } = l.signals;
    return sharedUid ? rest : { SigQ, ...rest };
  };
  t.deepEqual(signals(after), signals(before), `${what}: the signal lines of /proc/PID/status`);
  t.deepEqual(after.regs, before.regs, `${what}: the registers`);
  t.is(after.maps, before.maps, `${what}: /proc/PID/maps`);
}

async function sleeping(w: Workload): Promise<void> {
  await waitFor(`${w.name} to sleep in pause()`, () => procState(w.pid) === "S");
}

/** The SigCgt bit of SIGTRAP (5), the symptom in one line. */
function catchesTrap(pid: number): boolean {
  return (BigInt(`0x${status(pid).get("SigCgt") ?? "0"}`) & (1n << 4n)) !== 0n;
}

for (const [mode, args] of [
  ["-R", []],
  ["-R, SIGTRAP blocked and pending", ["trap-pending"]],
] as const) {
  test(`dump ${mode} leaves handlers, mask, pending signals, registers and maps as they were; the images hold the handler`, async (t) => {
    const w = await startWorkload(t, "sigtrap", [...args, ownUid()]);
    await sleeping(w);
    t.true(catchesTrap(w.pid));
    const before = look(w.pid);
    const dir = tempDir(t);
    await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
    same(t, look(w.pid), before, "after dump -R");
    t.regex(await w.check(), /^PASS traps=/, "the task's own check, int3 included");
    // The images: the restored task catches its SIGTRAP too.
    await killAndReap(w.pid);
    await restoreTask(t, dir);
    await sleeping(w);
    const restored = look(w.pid);
    t.deepEqual(restored.signals, before.signals, "the restored task: the signal lines of /proc/PID/status");
    t.regex(await w.check(), /^PASS traps=/, "the restored task's check, int3 included");
  });
}

test("dump -s leaves the task stopped with its signal state, registers and maps; it runs on after SIGCONT", async (t) => {
  const w = await startWorkload(t, "sigtrap", [ownUid()]);
  await sleeping(w);
  const before = look(w.pid);
  await dump({ pid: w.pid, imagesDir: tempDir(t), leaveStopped: true });
  await waitFor("the task to be stopped", () => procState(w.pid) === "T");
  same(t, look(w.pid), before, "after dump -s, while stopped");
  // The look queued a SIGSTOP and detached: the task passes through R into its stop again.
  await waitFor("the task to be stopped again after the look", () => procState(w.pid) === "T");
  process.kill(w.pid, "SIGCONT");
  await sleeping(w);
  t.regex(await w.check(), /^PASS traps=/);
});

for (const [mode, opts] of [
  ["", {}],
  [" -R", { leaveRunning: true }],
  [" -s", { leaveStopped: true }],
] as const) {
  test(`a refused dump${mode} (a signalfd, an io_uring instance) leaves handlers, mask, pending signals, registers and maps as they were`, async (t) => {
    const w = await startWorkload(t, "sigtrap", ["signalfd", "unsupported", "trap-pending", ownUid()]);
    await sleeping(w);
    const before = look(w.pid);
    const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t), ...opts }));
    t.regex(err?.message ?? "", /unsupported fd \d+: anon_inode:\[io_uring\]/);
    await sleeping(w);
    same(t, look(w.pid), before, "after the refused dump");
    t.true(catchesTrap(w.pid));
    t.regex(await w.check(), /^PASS traps=/);
  });
}

test("a task with a pending time namespace (unshare(CLONE_NEWTIME)) is refused by name and runs on untouched", async (t) => {
  const w = await startWorkload(t, "timens");
  await sleeping(w);
  const before = look(w.pid);
  const dir = tempDir(t);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: dir }));
  t.regex(err?.message ?? "", /time namespace for its children.*time_for_children/);
  t.is(status(w.pid).get("TracerPid"), "0", "never seized");
  // The workload must stay root to unshare a time namespace: its SigQ is root's.
  same(t, look(w.pid), before, "after the refusal", true);
  t.regex(await w.check(), /^PASS/);
});
