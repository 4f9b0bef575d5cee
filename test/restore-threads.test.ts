// A process with threads through dump and restore: every thread comes back with its TID,
// name, registers, FPU state, TLS, signal mask, private pending signal, altstack and nice
// value, and keeps running (the workload checks all of it itself). The images hold a
// core per thread as criu writes them (the leader's with tc and the blocked mask there,
// the others' in thread_core). A dump -R leaves every thread as it was; a failed restore
// leaves no thread behind.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { dump } from "../orchestrator/dump/dump.js";
import { restore } from "../orchestrator/restore/restore.js";
import { readImage } from "../images/io.js";
import { join } from "node:path";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { killAndReap, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

function tidsOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b);
}

function names(pid: number): string[] {
  return tidsOf(pid).map((t) => readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim());
}

async function threaded(t: Parameters<typeof startWorkload>[0], n: number): Promise<{ w: Workload; tids: number[] }> {
  const w = await startWorkload(t, "threads", [String(n)]);
  return settled(t, w, n);
}

async function settled(t: Parameters<typeof startWorkload>[0], w: Workload, n: number): Promise<{ w: Workload; tids: number[] }> {
  const tids = [w.pid, ...w.info["tids"]!.split(",").map(Number)].sort((a, b) => a - b);
  t.deepEqual(tidsOf(w.pid), tids);
  t.is(await w.check(), `PASS threads=${n}`, "before the dump");
  return { w, tids };
}

test("threads: every thread comes back with its TID and name and passes its own checks", async (t) => {
  const { w, tids } = await threaded(t, 4);
  const before = names(w.pid);
  const dir = await dumpGone(t, w);
  const pstree = (await readImage(join(dir, "pstree.img"))).entries[0]!;
  t.deepEqual([...(pstree["threads"] as number[])].sort((a, b) => a - b), tids);
  const leader = (await readImage(join(dir, `core-${w.pid}.img`))).entries[0]!;
  t.truthy(leader["tc"], "the leader's core has tc");
  for (const tid of tids.filter((x) => x !== w.pid)) {
    const c = (await readImage(join(dir, `core-${tid}.img`))).entries[0]!;
    t.falsy(c["tc"], `core-${tid}: no tc`);
    t.not((c["thread_core"] as Record<string, unknown>)["blk_sigset"], undefined, `core-${tid}: its mask in thread_core`);
  }
  await restoreTask(t, dir);
  t.deepEqual(tidsOf(w.pid), tids, "the same TIDs");
  t.deepEqual(names(w.pid), before, "the same names");
  t.is(await w.check(), "PASS threads=4", "after the restore");
});

test("threads: dump -R leaves every thread running as it was; a dump of the restored process restores again", async (t) => {
  const { w, tids } = await threaded(t, 3);
  await dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true });
  t.deepEqual(tidsOf(w.pid), tids);
  t.is(await w.check(), "PASS threads=3", "after dump -R");
  for (const tid of tids) t.is(/TracerPid:\s+(\d+)/.exec(readFileSync(`/proc/${w.pid}/task/${tid}/status`, "utf8"))?.[1], "0", `thread ${tid} not traced`);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS threads=3", "after the first restore");
  const again = await dumpGone(t, w);
  await restoreTask(t, again);
  t.deepEqual(tidsOf(w.pid), tids);
  t.is(await w.check(), "PASS threads=3", "after the second restore");
});

test("threads: a restore that fails after the threads exist leaves no thread and no PID behind", async (t) => {
  const { w, tids } = await threaded(t, 2);
  const dir = await dumpGone(t, w);
  const err = await t.throwsAsync(restore({ imagesDir: dir, faults: "restore:creds" }));
  t.regex(err?.message ?? "", /creds/);
  for (const tid of tids) await waitFor(`TID ${tid} to be free`, () => !existsSync(`/proc/${tid}`));
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS threads=2", "the images restore after the failed try");
});

test("threads: threads made and ended without a pause during the freeze are caught or gone; the dump succeeds and restores", async (t) => {
  const w = await startWorkload(t, "threads", ["2", "churn"]);
  t.is(await w.check(), "PASS threads=2", "before the dumps");
  for (let i = 0; i < 5; i++) {
    await dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true });
    t.is(await w.check(), "PASS threads=2", `after dump -R number ${i + 1}`);
  }
  const dir = await dumpGone(t, w);
  const pstree = (await readImage(join(dir, "pstree.img"))).entries[0]!;
  t.true((pstree["threads"] as number[]).length >= 4, "the leader, two workers, the churner (and the short-lived thread of the moment, if any)");
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS threads=2", "after the restore");
});

// The kernel refuses to attach to a thread that has exited but is not reaped yet (EPERM):
// zdtm's transition/thread-bomb met one now and then, as its threads end all the time. A
// thread that exits while another tracer holds it stays so until that tracer reaps it:
// the test is that tracer here, which makes the moment last.
test("threads: a thread that has exited but is not reaped yet (EPERM to PTRACE_SEIZE) is left out; the dump succeeds and restores", async (t) => {
  const w = await startWorkload(t, "threads", ["2", "exiter"]);
  const exiter = Number(w.info["exiter"]);
  const b = bridge();
  b.ptraceSeize(exiter, 0);
  let reaped = false;
  const reap = (): void => {
    if (!reaped) b.waitpid(exiter, 0, 10_000);
    reaped = true;
  };
  t.teardown(() => {
    try {
      reap();
    } catch {
      // gone with the workload
    }
  });
  process.kill(w.pid, "SIGUSR2");
  await waitFor(`thread ${exiter} to exit and wait for its tracer`, () => /^Z/.test(statState(w.pid, exiter)));
  t.true(tidsOf(w.pid).includes(exiter), "it is still one of the process's threads");
  // -R: a killed process would wait for that thread's tracer (this test) to be gone
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  const pstree = (await readImage(join(dir, "pstree.img"))).entries[0]!;
  t.false((pstree["threads"] as number[]).includes(exiter), "not in the images");
  t.is((pstree["threads"] as number[]).length, 3, "the leader and the two workers");
  reap();
  t.is(await w.check(), "PASS threads=2", "after the dump");
  await killAndReap(w.pid);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS threads=2", "after the restore");
});

function statState(pid: number, tid: number): string {
  try {
    return readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8").replace(/^.*\) /s, "");
  } catch {
    return "gone";
  }
}

// A read of /proc/PID/task skips threads when others end while it reads (zdtm's
// transition/thread-bomb: a thread left running through the dump changed the memory
// under it, and the restored process crashed in malloc). TSCRIU_FAULT=thread-missed
// leaves the newest worker out of the reads until one finds nothing new: the kernel's
// thread count says one is missing.
test("threads: a thread the read of /proc/PID/task missed is found by the kernel's count of threads and frozen too", async (t) => {
  const w = await startWorkload(t, "threads", ["2"]);
  const { tids } = await settled(t, w, 2);
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true, faults: "thread-missed" });
  const pstree = (await readImage(join(dir, "pstree.img"))).entries[0]!;
  t.deepEqual([...(pstree["threads"] as number[])].sort((a, b) => a - b), tids, "every thread in the images");
  t.is(await w.check(), "PASS threads=2", "after the dump");
  await killAndReap(w.pid);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS threads=2", "after the restore");
});
