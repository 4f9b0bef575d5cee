// Restore of the counter workload dumped by tscriu, through the library: the task comes
// back with its PID as our child, with the same address space (every VMA at its address
// with its protections and files), counts on from where it was, and passes its own check
// (pattern pages, the PROT_NONE page, its SIGUSR1 handler). The same images restore again
// once that task is gone; a restore while the PID is taken fails before creating anything
// and names the holder; stats-restore is written.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { bridge } from "../host-bridge/load.js";
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore, waitRestored } from "../orchestrator/restore/restore.js";
import { isDying } from "../orchestrator/restore/pids.js";
import { CLI } from "./helpers/cli.js";
import { tempDir } from "./helpers/dump.js";
import { digest, dumpGone, mapsSummary, restoreTask, status } from "./helpers/restore.js";
import { counterAdvances, killAndReap, procPpid, procState, startWorkload, waitFor } from "./helpers/workloads.js";

/** What the kernel shows of a task's mm and thread state, from outside. */
function taskView(pid: number): Record<string, unknown> {
  const b = bridge();
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const rseq = (() => {
    b.ptraceSeize(pid);
    b.ptraceInterrupt(pid);
    b.waitpid(pid, 0, 5000);
    try {
      return { rseq: b.getRseqConfiguration(pid), robust: b.getRobustList(pid) };
    } finally {
      b.ptraceDetach(pid, 0);
    }
  })();
  return {
    auxv: readFileSync(`/proc/${pid}/auxv`).toString("hex"),
    cmdline: readFileSync(`/proc/${pid}/cmdline`, "utf8"),
    environ: readFileSync(`/proc/${pid}/environ`, "utf8"),
    exe: readlinkSync(`/proc/${pid}/exe`),
    cwd: readlinkSync(`/proc/${pid}/cwd`),
    // start_code end_code start_stack ... start_brk arg_start arg_end env_start env_end (stat fields 26-28, 45-51)
    mm: [...f.slice(23, 26), ...f.slice(42, 49)].join(" "),
    sig: ["SigBlk", "SigIgn", "SigCgt"].map((k) => status(pid).get(k)).join(" "),
    ...rseq,
  };
}

test("counter: same PID, same mappings, counts on, passes its check; our child until it exits", async (t) => {
  const w = await startWorkload(t, "counter");
  const before = mapsSummary(w.pid);
  const view = taskView(w.pid);
  const sigBefore = status(w.pid).get("SigCgt");
  const dir = await dumpGone(t, w);
  const counted = w.counter();
  const r = await restoreTask(t, dir);
  t.is(r.pid, w.pid);
  t.is(r.mode, "child");
  t.is(procPpid(r.pid), process.pid, "the restored task is our child");
  t.deepEqual(mapsSummary(r.pid), before, "every VMA at its address with its protection, offset and file");
  t.deepEqual(taskView(r.pid), view, "auxv, cmdline, environ, exe, cwd, mm ranges, signal sets, rseq, robust list");
  t.is(status(r.pid).get("SigCgt"), sigBefore);
  t.is(status(r.pid).get("TracerPid"), "0", "detached");
  await counterAdvances(w);
  t.true(w.counter() > counted);
  t.regex(await w.check(), /^PASS/);
  const st = (await readImage(join(dir, "stats-restore"))).entries[0]!["restore"] as Record<string, unknown>;
  t.true(Number(st["pages_restored"]) > 8, "stats-restore counts the pages");
  t.true(Number(st["restore_time"]) > 0);
  process.kill(r.pid, "SIGTERM");
  t.deepEqual(await waitRestored(r.pid), { code: 128 + 15, signal: 15 }, "we reap it and see how it ended");
});

// busy holds no fd but 0-2: the counter workload may be dumped between opening and
// renaming its counter.tmp, and once a restored copy has renamed it, the images name a
// file that is gone (a correct refusal, as criu's).
test("the same images restore again after the first restored task is killed", async (t) => {
  const w = await startWorkload(t, "busy");
  const dir = await dumpGone(t, w);
  const images = digest(dir);
  for (let round = 0; round < 2; round++) {
    const r = await restoreTask(t, dir);
    t.regex(await w.check(), /^PASS/, `round ${round}`);
    await killAndReap(r.pid);
  }
  const after = digest(dir);
  delete after["stats-restore"];
  delete images["stats-restore"];
  t.deepEqual(after, images, "the images themselves are unchanged");
});

test("restoring while the dumped task still runs fails before creating anything, naming the PID and its holder", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = join(await dumpGone(t, w, { leaveRunning: false }), "");
  // The PID is free now; take it again with a restored copy, then restore once more.
  const r = await restoreTask(t, dir);
  const images = digest(dir);
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.true(isRestoreError(err));
  t.like(err, { step: "plan", pid: w.pid });
  t.regex(err.message, new RegExp(`PID ${w.pid} is taken by process ${w.pid} \\(counter, parent ${process.pid}\\)`));
  t.deepEqual(digest(dir), images, "images untouched");
  t.regex(await w.check(), /^PASS/, "the running task is unharmed");
  t.is(r.pid, w.pid);
});

test("a PID held by a zombie counts as on its way out (a restore waits for it); a live process or a free PID does not", async (t) => {
  const w = await startWorkload(t, "pidfds", ["pidfd"]);
  const [live, zombie] = [Number(w.info["live"]), Number(w.info["zombie"])];
  t.is(procState(zombie), "Z");
  t.true(isDying(zombie), "the zombie child the workload does not reap");
  t.false(isDying(live), "a child that pauses");
  t.false(isDying(w.pid), "the workload itself");
  await killAndReap(w.pid);
  await waitFor(`pid ${zombie} to be reaped`, () => !existsSync(`/proc/${zombie}`));
  t.false(isDying(zombie), "a PID no process has");
});

test("-R dump: restoring while the original still runs names the original", async (t) => {
  const w = await startWorkload(t, "counter");
  const { dump } = await import("../orchestrator/dump/dump.js");
  const { tempDir } = await import("./helpers/dump.js");
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.regex(err.message, new RegExp(`restore: plan of pid ${w.pid} failed: PID ${w.pid} is taken by process ${w.pid} \\(counter, parent \\d+\\)`));
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
  t.false(existsSync(join(dir, "stats-restore")), "a failed restore writes nothing into the images dir");
});

test("a dump run in a time namespace of its own (as zdtm runs criu) records the task's clocks: ours less our offsets, plus the task's", async (t) => {
  // tscriu in a time namespace 1,000,000 s ahead (monotonic) and 500,000 s (boottime), the
  // task in the root one: its clocks are the host's (they were ours plus 1,000,000 s)
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const hostNs = bridge().clockGettime(1);
  const r = spawnSync("unshare", ["-T", "--monotonic", "1000000", "--boottime", "500000", process.execPath, CLI, "dump", "-t", String(w.pid), "-D", dir], { encoding: "utf8" });
  t.is(r.status, 0, r.stderr);
  const timens = (await readImage(join(dir, "timens-0.img"))).entries[0] as { monotonic: { tv_sec: bigint; tv_nsec: bigint } };
  const drift = timens.monotonic.tv_sec * 1_000_000_000n + timens.monotonic.tv_nsec - hostNs;
  t.true(drift >= 0n && drift < 30_000_000_000n, `timens-0.img holds the host's monotonic clock, drift ${drift} ns`);
  await waitFor(`pid ${w.pid} to be free after the dump`, () => !existsSync(`/proc/${w.pid}`));
  await restoreTask(t, dir);
  t.regex(await w.check(), /^PASS/);
});

test("detached (-d): the task's parent is a subreaper that reaps it at once", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const r = await restoreTask(t, dir, { detached: true });
  t.is(r.mode, "detached");
  t.true(r.reaper > 0);
  t.is(procPpid(r.pid), r.reaper);
  t.is(readFileSync(`/proc/${r.reaper}/comm`, "utf8").trim(), "tscriu-reaper");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
  process.kill(r.pid, "SIGKILL");
  await waitFor("the reaper to reap the task and exit", () => !existsSync(`/proc/${r.pid}`) && (procState(r.reaper) ?? "Z") === "Z");
  t.pass();
});

test("a restored task (in its own time namespace) dumps and restores again, its clocks carried on", async (t) => {
  const w = await startWorkload(t, "counter");
  const first = await dumpGone(t, w);
  await restoreTask(t, first);
  const offsets = readFileSync(`/proc/${w.pid}/timens_offsets`, "utf8");
  t.notRegex(offsets, /^monotonic\s+0\s+0$/m, "restored into a time namespace with offsets");
  const m = /^monotonic\s+(-?\d+)\s+(\d+)$/m.exec(offsets)!;
  const offsetNs = BigInt(m[1]!) * 1_000_000_000n + BigInt(m[2]!);
  const second = await dumpGone(t, w);
  const hostNs = bridge().clockGettime(1);
  const timens = (await readImage(join(second, "timens-0.img"))).entries[0] as { monotonic: { tv_sec: bigint; tv_nsec: bigint } };
  const taskNs = timens.monotonic.tv_sec * 1_000_000_000n + timens.monotonic.tv_nsec;
  const drift = taskNs - (hostNs + offsetNs);
  t.true(drift < 0n && drift > -2_000_000_000n, `timens-0.img holds the task's own clock (host + offset), drift ${drift} ns`);
  await restoreTask(t, second);
  t.regex(await w.check(), /^PASS/);
});
