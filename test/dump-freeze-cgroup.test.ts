// dump --freeze-cgroup: the tree is stopped through the cgroup freezer first (cgroup v2's
// cgroup.freeze and cgroup v1's freezer.state, both mounted on this machine kind), its
// threads seized while frozen, the cgroup thawed. A process of the cgroup outside the
// dumped tree is stopped too and let go untouched; a cgroup frozen before the dump is
// frozen again after it; a path that is no freezer is named before anything is touched.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { dump } from "../orchestrator/dump/dump.js";
import { cgroupMount } from "./helpers/cgroups.js";
import { tscriu } from "./helpers/cli.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { counterAdvances, killAndReap, RUNS_ON, procState, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

/** A new cgroup of this test, removed at teardown once its tasks are gone. */
function newCgroup(t: ExecutionContext, version: "v2" | "v1"): string {
  const dir = join(cgroupMount(version === "v2" ? "v2" : "freezer"), `tscriu-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(dir);
  t.teardown(async () => {
    thaw(dir, version);
    await waitFor(`cgroup ${dir} to be empty`, () => readFileSync(join(dir, version === "v2" ? "cgroup.procs" : "tasks"), "utf8").trim() === "");
    rmdirSync(dir);
  });
  return dir;
}

function enter(cg: string, pid: number): void {
  writeFileSync(join(cg, "cgroup.procs"), String(pid));
}

function frozen(cg: string, version: "v2" | "v1"): boolean {
  return version === "v2" ? /^frozen 1$/m.test(readFileSync(join(cg, "cgroup.events"), "utf8")) : readFileSync(join(cg, "freezer.state"), "utf8").trim() === "FROZEN";
}

function freezeNow(cg: string, version: "v2" | "v1"): void {
  writeFileSync(join(cg, version === "v2" ? "cgroup.freeze" : "freezer.state"), version === "v2" ? "1" : "FROZEN");
}

function thaw(cg: string, version: "v2" | "v1"): void {
  writeFileSync(join(cg, version === "v2" ? "cgroup.freeze" : "freezer.state"), version === "v2" ? "0" : "THAWED");
}

const tracer = (pid: number): string | undefined => /TracerPid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];

/** The tree workload (five processes, two zombies) and a bystander counter, all in `cg`. */
async function inCgroup(t: ExecutionContext, cg: string): Promise<{ w: Workload; kids: number[]; bystander: Workload }> {
  const w = await startWorkload(t, "tree");
  const kids = ["a", "b", "g", "c"].map((k) => Number(w.info[k]));
  t.teardown(() => {
    for (const p of kids) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone
      }
    }
  });
  const bystander = await startWorkload(t, "counter");
  for (const p of [w.pid, ...kids, bystander.pid]) enter(cg, p);
  t.is(await w.check(), "PASS tree=5", "before the dump");
  return { w, kids, bystander };
}

for (const version of ["v2", "v1"] as const) {
  test(`cgroup ${version}: dump -R --freeze-cgroup leaves the tree and a bystander of the cgroup running untraced, the cgroup thawed; the tree restores`, async (t) => {
    const cg = newCgroup(t, version);
    const { w, kids, bystander } = await inCgroup(t, cg);
    await dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true, freezeCgroup: cg });
    t.false(frozen(cg, version), "thawed as it was");
    for (const p of [w.pid, ...kids, bystander.pid]) {
      t.is(tracer(p), "0", `pid ${p} not traced`);
      t.regex(procState(p) ?? "gone", RUNS_ON, `pid ${p} runs on`);
    }
    await counterAdvances(bystander);
    t.regex(await bystander.check(), /^PASS/, "the bystander is untouched");
    t.is(await w.check(), "PASS tree=5", "after dump -R");
    const dir = await dumpGone(t, w, { freezeCgroup: cg });
    t.regex(await bystander.check(), /^PASS/, "a dump that kills the tree lets the bystander go");
    await restoreTask(t, dir);
    t.is(await w.check(), "PASS tree=5", "after the restore");
  });

  test(`cgroup ${version}: a cgroup frozen before the dump is frozen again after dump -R, nobody traced; thawed, all run on`, async (t) => {
    const cg = newCgroup(t, version);
    const { w, kids, bystander } = await inCgroup(t, cg);
    freezeNow(cg, version);
    await waitFor(`cgroup ${cg} to freeze`, () => frozen(cg, version));
    await dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true, freezeCgroup: cg });
    await waitFor(`cgroup ${cg} to be frozen again`, () => frozen(cg, version));
    for (const p of [w.pid, ...kids, bystander.pid]) t.is(tracer(p), "0", `pid ${p} not traced`);
    thaw(cg, version);
    await counterAdvances(bystander);
    t.is(await w.check(), "PASS tree=5", "thawed after the dump");
  });
}

test("cgroup v2: dump -R --wp-snapshot --freeze-cgroup makes the write-protection at the freeze, not ahead; every page as at the freeze", async (t) => {
  const cg = newCgroup(t, "v2");
  // 5 % of 64 MiB every 10 ms
  const w = await startWorkload(t, "incr", ["64", "50"]);
  enter(cg, w.pid);
  const base = tempDir(t);
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(base, "d"), "-R", "--wp-snapshot", "--freeze-cgroup", cg, "-v4", "-o", join(base, "dump.log")]);
  t.is(r.code, 0, r.stderr);
  const log = readFileSync(join(base, "dump.log"), "utf8");
  t.notRegex(log, /made ahead/);
  t.regex(log, /write-protect snapshot written in place with the task running/);
  t.false(frozen(cg, "v2"), "thawed as it was");
  await killAndReap(w.pid);
  await restoreTask(t, join(base, "d"));
  t.regex(await w.check(), /^PASS /);
});

for (const version of ["v2", "v1"] as const) {
  test(`cgroup ${version}: a task in a frozen cgroup, dumped without --freeze-cgroup, is refused naming the cgroup (no hang); it stays frozen, untraced`, async (t) => {
    const cg = newCgroup(t, version);
    const w = await startWorkload(t, "counter");
    enter(cg, w.pid);
    freezeNow(cg, version);
    await waitFor(`cgroup ${cg} to freeze`, () => frozen(cg, version));
    const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true, timeoutSec: 3 }));
    t.regex(err?.message ?? "", new RegExp(`the task is in the frozen cgroup ${cg}: dump with --freeze-cgroup ${cg}`));
    t.true(frozen(cg, version), "still frozen");
    t.is(tracer(w.pid), "0");
    thaw(cg, version);
    await counterAdvances(w);
    t.regex(await w.check(), /^PASS/);
  });
}

test("--freeze-cgroup that is missing or no freezer is named before the task is touched", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  for (const [path, why] of [
    ["/sys/fs/cgroup/tscriu-missing", "no such cgroup"],
    ["/proc", "neither a cgroup v2 directory \\(cgroup.freeze\\) nor a cgroup v1 freezer \\(freezer.state\\)"],
  ] as const) {
    const r = tscriu(["dump", "-t", String(w.pid), "-D", dir, "--freeze-cgroup", path]);
    t.is(r.code, 1);
    t.regex(r.stderr, new RegExp(`--freeze-cgroup ${path}: ${why}`));
  }
  t.false(existsSync(join(dir, "inventory.img")));
  t.is(tracer(w.pid), "0");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});
