// Stopped tasks with a stop signal still pending (zdtm's stopped01, stopped02, stopped12):
// the workload's children are stopped, then sent SIGSTOP again for the process, for one of
// its threads, or SIGSTOP and SIGTSTP to one stopped by SIGTSTP. As criu does, a dump keeps
// no SIGSTOP in the pending queues (no mask holds one off a restore's calls, and criu's
// restore fails on one) but dumps the task stopped; the blockable stop signals stay queued.
// Restored, each child is stopped by its own signal, its parent's waitid says so, and it
// runs on once continued. Both ways with criu too; and a task that was not stopped yet,
// with a SIGSTOP pending while it waited for its vfork child.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { CLI } from "./helpers/cli.js";
import { criuDumps, criuLogTail, criuVersion, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask, status } from "./helpers/restore.js";
import { counterAdvances, procState, startWorkload, vforkWaiting, waitFor, type Workload } from "./helpers/workloads.js";

const SIGSTOP = 19;
const SIGTSTP = 20;
const PASS = "PASS stopped=3";

const children = (w: Workload): number[] => ["shared", "thread", "tstp"].map((k) => Number(w.info[k]));

/** Kills the children at teardown: the workload's own teardown kills only the root. */
function killAtEnd(t: ExecutionContext, pids: readonly number[]): void {
  t.teardown(() => {
    for (const p of pids) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone
      }
    }
  });
}

async function stoppending(t: ExecutionContext, opts: { static?: boolean } = {}): Promise<Workload> {
  const w = await startWorkload(t, "stoppending", [], opts);
  killAtEnd(t, children(w));
  t.is(await w.check(), PASS, "before the dump");
  return w;
}

type Tc = { task_state?: number; stop_signo?: number; signals_s?: { signals?: { siginfo: Uint8Array }[] } };
type ThreadCore = { signals_p?: { signals?: { siginfo: Uint8Array }[] } };

/** The signal numbers queued in core-ID.img: the process's (tc) and the thread's own. */
async function queued(dir: string, id: number): Promise<{ tc: Tc | undefined; shared: number[]; own: number[] }> {
  const core = (await readImage(join(dir, `core-${id}.img`))).entries[0]!;
  const tc = core["tc"] as Tc | undefined;
  const signo = (q: { siginfo: Uint8Array }[] | undefined): number[] => (q ?? []).map((s) => Buffer.from(s.siginfo).readInt32LE(0));
  return { tc, shared: signo(tc?.signals_s?.signals), own: signo((core["thread_core"] as ThreadCore).signals_p?.signals) };
}

/** Each child stopped by its own signal, with no SIGSTOP queued anywhere; SIGTSTP kept queued where it was. */
async function imagesAsCriuWrites(t: ExecutionContext, dir: string, kids: readonly number[], tid: number, tstpQueued: boolean): Promise<void> {
  for (const [i, pid] of kids.entries()) {
    const q = await queued(dir, pid);
    t.like(q.tc, { task_state: 3, stop_signo: i === 2 ? SIGTSTP : SIGSTOP }, `child ${pid}: TASK_STOPPED by its signal`);
    t.false([...q.shared, ...q.own].includes(SIGSTOP), `child ${pid}: no SIGSTOP queued`);
    if (i === 2 && tstpQueued) t.deepEqual(q.shared, [SIGTSTP], "the SIGTSTP pending for the process is kept");
  }
  t.false((await queued(dir, tid)).own.includes(SIGSTOP), `thread ${tid}: no SIGSTOP queued`);
}

test("stoppending: no SIGSTOP in the queues, each child dumped stopped by its signal; restored, each is stopped by it again, SIGTSTP still pending, and runs on once continued", async (t) => {
  const w = await stoppending(t);
  // -R: the children are left as they were, stop signals still pending.
  await dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true });
  t.is(await w.check(), PASS, "after dump -R");
  const dir = await dumpGone(t, w);
  await imagesAsCriuWrites(t, dir, children(w), Number(w.info["tid"]), true);
  await restoreTask(t, dir);
  killAtEnd(t, children(w));
  const tstp = Number(w.info["tstp"]);
  await waitFor("the children to be stopped again", () => children(w).every((p) => procState(p) === "T"));
  t.is(BigInt(`0x${status(tstp).get("ShdPnd")}`) & (1n << BigInt(SIGTSTP - 1)), 1n << BigInt(SIGTSTP - 1), "SIGTSTP pending for the tstp child");
  t.is(await w.check(), PASS, "after the restore");
});

test("stoppending: an image that queues SIGSTOP (tscriu's dumps did) restores the task stopped by it rather than queueing it", async (t) => {
  const w = await stoppending(t);
  const dir = await dumpGone(t, w);
  // A SIGSTOP (SI_USER from pid 1) for the running root's process, and one more for the
  // second thread of a stopped child.
  const info = Buffer.alloc(128);
  info.writeInt32LE(SIGSTOP, 0);
  info.writeInt32LE(1, 16);
  const add = async (id: number, part: "tc" | "thread_core", key: "signals_s" | "signals_p"): Promise<void> => {
    const file = join(dir, `core-${id}.img`);
    const img = await readImage(file);
    const holder = img.entries[0]![part] as Record<string, { signals?: unknown[] } | undefined>;
    holder[key] = { signals: [...(holder[key]?.signals ?? []), { siginfo: new Uint8Array(info) }] };
    await writeImage(file, img, { overwrite: true });
  };
  await add(w.pid, "tc", "signals_s");
  await add(Number(w.info["tid"]), "thread_core", "signals_p");
  await restoreTask(t, dir);
  killAtEnd(t, children(w));
  await waitFor("the root to be stopped", () => procState(w.pid) === "T");
  const st = status(w.pid);
  t.is((BigInt(`0x${st.get("ShdPnd")}`) | BigInt(`0x${st.get("SigPnd")}`)) & (1n << BigInt(SIGSTOP - 1)), 0n, "no SIGSTOP left pending for the root");
  process.kill(w.pid, "SIGCONT");
  t.is(await w.check(), PASS, "after the restore, the root continued");
});

// A SIGSTOP can wait in the queue of a task that is not stopped: one that sleeps where no
// signal but a fatal one reaches it, as a vfork parent waiting for its child. Such a task
// is frozen once it wakes, with the SIGSTOP still queued: dumped stopped by it.
test("vforker: a task with a SIGSTOP pending while it waits for its vfork child is dumped stopped by SIGSTOP, restored stopped, and counts on once continued", async (t) => {
  const w = await startWorkload(t, "vforker", ["60"]);
  const child = await vforkWaiting(w);
  killAtEnd(t, [child]);
  process.kill(w.pid, "SIGSTOP");
  const bit = 1n << BigInt(SIGSTOP - 1);
  t.is(BigInt(`0x${status(w.pid).get("ShdPnd")}`) & bit, bit, "SIGSTOP pending");
  t.is(procState(w.pid), "D", "and the task still waiting for its child");
  // The dump in a process of its own: it waits for the task to stop, which the child's end lets it.
  const dir = tempDir(t);
  const cli = spawn(CLI, ["dump", "-t", String(w.pid), "-D", dir, "-v4", "-o", "dump.log"], { stdio: "ignore" });
  const done = new Promise<number | null>((resolve) => cli.on("exit", (code) => resolve(code)));
  await waitFor("the dump to seize the task", () => /^TracerPid:\s+[1-9]/m.test(readFileSync(`/proc/${w.pid}/status`, "utf8")));
  process.kill(child, "SIGKILL");
  t.is(await done, 0, "the dump");
  const q = await queued(dir, w.pid);
  t.like(q.tc, { task_state: 3, stop_signo: SIGSTOP }, "TASK_STOPPED by SIGSTOP");
  t.false([...q.shared, ...q.own].includes(SIGSTOP), "no SIGSTOP queued");
  await waitFor(`pid ${w.pid} to be free after the dump`, () => procState(w.pid) === undefined);
  await restoreTask(t, dir);
  t.is(procState(w.pid), "T", "restored stopped");
  process.kill(w.pid, "SIGCONT");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS count=\d+/);
});

test.serial("criu restores tscriu's images: stoppending", async (t) => {
  if (!haveRoot(t)) return;
  const w = await stoppending(t, { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir);
  killAtEnd(t, children(w));
  t.is(await w.check(30_000), PASS, `criu ${criuVersion()}`);
});

test.serial("tscriu restores criu's images: stoppending", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "stoppending", []);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  const pstree = (await readImage(join(c.images, "pstree.img"))).entries;
  const kids = pstree.slice(1).map((e) => Number(e["pid"]));
  killAtEnd(t, kids);
  const tid = Number((pstree[2]!["threads"] as number[])[1]);
  // criu takes a pending SIGTSTP out of the queue too (it is not blocked, so it stops the task).
  await imagesAsCriuWrites(t, c.images, kids, tid, false);
  await restoreTask(t, c.images);
  t.is(await c.check(), PASS, `criu ${criuVersion()} dumped it`);
});
