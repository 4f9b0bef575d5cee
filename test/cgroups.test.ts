// cgroup.img (dump/cgroups.ts, restore/cgroups.ts): a counter put by the test into a fresh
// cgroup of the v1 pids hierarchy (pids.max set) and one of cgroup v2 (cgroup.max.descendants
// set; criu dumps only v2's own cgroup.* files) is dumped; the restore puts it back by
// --manage-cgroups mode, --cgroup-root renames the cgroup, a failed restore removes what
// it made; criu 4.1.1 restores tscriu's images and tscriu criu's.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import type { CgroupMode } from "../orchestrator/cgroup/options.js";
import { RpcClient } from "../orchestrator/rpc/client.js";
import { CLI, tscriu } from "./helpers/cli.js";
import { criuDumps, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { counterAdvances, killAndReap, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

const PIDS = "/sys/fs/cgroup/pids";
const V2 = "/sys/fs/cgroup/unified";

/** The lines of /proc/PID/cgroup by hierarchy name ("" for v2). */
function cgroupsOf(pid: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").filter(Boolean)) {
    const [, name, path] = /^\d+:([^:]*):(.*)$/.exec(l)!;
    m.set(name!, path!);
  }
  return m;
}

const prop = (dir: string, name: string): string => readFileSync(join(dir, name), "utf8").trim();

/** Removes a cgroup directory (and its sub-cgroups) once no task is left in it. */
async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) await removeCgroup(join(dir, e.name));
  await waitFor(`cgroup ${dir} to be empty`, () => prop(dir, "cgroup.procs") === "");
  rmdirSync(dir);
}

interface Placed {
  w: Workload;
  name: string;
  pids: string;
  v2: string;
}

/** A counter in a fresh pids cgroup (pids.max 57) and a fresh v2 cgroup (cgroup.max.descendants 3). */
async function placed(t: ExecutionContext, opts: { static?: boolean } = {}): Promise<Placed> {
  const name = `tscriu-cg-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const pids = join(PIDS, name);
  const v2 = join(V2, name);
  t.teardown(async () => {
    await removeCgroup(pids);
    await removeCgroup(v2);
  });
  mkdirSync(pids);
  mkdirSync(v2);
  writeFileSync(join(pids, "pids.max"), "57");
  writeFileSync(join(v2, "cgroup.max.descendants"), "3");
  const w = await startWorkload(t, "counter", [], opts);
  for (const d of [pids, v2]) writeFileSync(join(d, "cgroup.procs"), String(w.pid));
  return { w, name, pids, v2 };
}

/** The placed counter dumped (and gone), its pids cgroup removed after the dump. */
async function dumpedPidsGone(t: ExecutionContext): Promise<{ p: Placed; dir: string }> {
  const p = await placed(t);
  const dir = await dumpGone(t, p.w);
  rmdirSync(p.pids);
  return { p, dir };
}

/** A restore in `mode` refused at the cgroups step, with `re`; no task left. */
async function refusedAtCgroups(t: ExecutionContext, dir: string, mode: CgroupMode, pid: number, re: RegExp): Promise<void> {
  const err = await t.throwsAsync(restore({ imagesDir: dir, cgroupMode: mode }));
  t.true(isRestoreError(err));
  t.like(err, { step: "cgroups", pid });
  t.regex(err?.message ?? "", re);
  t.false(existsSync(`/proc/${pid}`), "no task left");
}

function inPlace(t: ExecutionContext, pid: number, name: string, what: string): void {
  const cg = cgroupsOf(pid);
  t.is(cg.get("pids"), `/${name}`, `${what}: in the pids cgroup`);
  t.is(cg.get(""), `/${name}`, `${what}: in the v2 cgroup`);
}

test("the dump writes the task's set and its cgroups with their properties; none when the task shares tscriu's cgroups", async (t) => {
  const p = await placed(t);
  const dir = await dumpGone(t, p.w);
  const core = (await readImage(join(dir, `core-${p.w.pid}.img`))).entries[0] as { thread_core: { cg_set: number } };
  const inv = (await readImage(join(dir, "inventory.img"))).entries[0] as { root_cg_set: number };
  t.is(inv.root_cg_set, 1);
  t.is(core.thread_core.cg_set, 2);
  const cg = (await readImage(join(dir, "cgroup.img"))).entries[0] as {
    sets: { id: number; ctls: { name: string; path: string }[] }[];
    controllers: { cnames: string[]; dirs: { dir_name: string; properties: { name: string; value: string }[] }[] }[];
  };
  t.deepEqual(
    cg.sets.map((s) => s.id),
    [2],
  );
  t.deepEqual(cg.sets[0]!.ctls.find((c) => c.name === "pids"), { name: "pids", path: `/${p.name}` });
  const pidsCtl = cg.controllers.find((c) => c.cnames.includes("pids"))!;
  t.is(pidsCtl.dirs[0]?.dir_name, p.name);
  t.is(pidsCtl.dirs[0]?.properties.find((x) => x.name === "pids.max")?.value, "57");
  const v2Ctl = cg.controllers.find((c) => c.cnames[0] === "")!;
  t.is(v2Ctl.dirs[0]?.properties.find((x) => x.name === "cgroup.max.descendants")?.value, "3");
  // tscriu's own cgroups hold no task of the dump: their trees are not walked
  t.is(cg.controllers.find((c) => c.cnames.includes("cpu"))?.dirs?.length ?? 0, 0);

  const plain = await startWorkload(t, "counter");
  const d2 = tempDir(t);
  await dump({ pid: plain.pid, imagesDir: d2, leaveRunning: true });
  t.false(existsSync(join(d2, "cgroup.img")), "no cgroup.img when every task is in the dumper's cgroups");
});

test("dump -R leaves the cgroups and the task as they were", async (t) => {
  const p = await placed(t);
  await dump({ pid: p.w.pid, imagesDir: tempDir(t), leaveRunning: true });
  inPlace(t, p.w.pid, p.name, "after dump -R");
  t.is(prop(p.pids, "pids.max"), "57");
  t.is(prop(p.v2, "cgroup.max.descendants"), "3");
  await counterAdvances(p.w);
  t.regex(await p.w.check(), /^PASS/);
});

test("full: the removed cgroups come back with their properties, the task inside; an existing one gets its dumped property", async (t) => {
  const { p, dir } = await dumpedPidsGone(t);
  writeFileSync(join(p.v2, "cgroup.max.descendants"), "5");
  const r = await restoreTask(t, dir, { cgroupMode: "full" });
  inPlace(t, r.pid, p.name, "restored");
  t.is(prop(p.pids, "pids.max"), "57", "made again with its pids.max");
  t.is(prop(p.v2, "cgroup.max.descendants"), "3", "full sets the existing cgroup's property");
  t.regex(await p.w.check(), /^PASS/);
});

test("soft (the default): a missing cgroup is made with its properties, an existing one is left as it is", async (t) => {
  const { p, dir } = await dumpedPidsGone(t);
  writeFileSync(join(p.v2, "cgroup.max.descendants"), "5");
  const r = tscriu(["restore", "-D", dir, "-d", "--manage-cgroups"]);
  t.is(r.code, 0, r.stderr);
  t.teardown(() => killAndReap(p.w.pid));
  inPlace(t, p.w.pid, p.name, "restored");
  t.is(prop(p.pids, "pids.max"), "57");
  t.is(prop(p.v2, "cgroup.max.descendants"), "5", "not overwritten");
  t.regex(await p.w.check(), /^PASS/);
});

test("none: the cgroups must exist (the restore names the missing one, and made nothing); the task moves in, nothing set", async (t) => {
  const { p, dir } = await dumpedPidsGone(t);
  await refusedAtCgroups(t, dir, "none", p.w.pid, new RegExp(`the cgroup pids:/${p.name} does not exist \\(--manage-cgroups=none makes none\\)`));
  mkdirSync(p.pids);
  const r = await restoreTask(t, dir, { cgroupMode: "none" });
  inPlace(t, r.pid, p.name, "restored");
  t.is(prop(p.pids, "pids.max"), "max", "no property set");
  t.regex(await p.w.check(), /^PASS/);
});

test("props: the cgroups must exist; the properties are set on all of them", async (t) => {
  const { p, dir } = await dumpedPidsGone(t);
  await refusedAtCgroups(t, dir, "props", p.w.pid, new RegExp(`the cgroup pids:/${p.name} does not exist \\(--manage-cgroups=props makes none\\)`));
  mkdirSync(p.pids);
  writeFileSync(join(p.v2, "cgroup.max.descendants"), "5");
  const r = await restoreTask(t, dir, { cgroupMode: "props" });
  inPlace(t, r.pid, p.name, "restored");
  t.is(prop(p.pids, "pids.max"), "57");
  t.is(prop(p.v2, "cgroup.max.descendants"), "3");
});

test("strict: an existing cgroup is refused by name; once gone, all are made", async (t) => {
  const { p, dir } = await dumpedPidsGone(t);
  await refusedAtCgroups(t, dir, "strict", p.w.pid, new RegExp(`the cgroup v2:/${p.name} exists already \\(--manage-cgroups=strict\\)`));
  t.false(existsSync(p.pids), "the pids cgroup it made first is removed again");
  rmdirSync(p.v2);
  const r = await restoreTask(t, dir, { cgroupMode: "strict" });
  inPlace(t, r.pid, p.name, "restored");
  t.is(prop(p.pids, "pids.max"), "57");
  t.is(prop(p.v2, "cgroup.max.descendants"), "3");
});

test("ignore: cgroup.img is not read, the task stays in the restorer's cgroups", async (t) => {
  const p = await placed(t);
  const dir = await dumpGone(t, p.w);
  const r = await restoreTask(t, dir, { cgroupMode: "ignore" });
  const mine = cgroupsOf(process.pid);
  t.is(cgroupsOf(r.pid).get("pids"), mine.get("pids"));
  t.is(cgroupsOf(r.pid).get(""), mine.get(""));
  t.regex(await p.w.check(), /^PASS/);
});

test("--cgroup-root pids:/NEW puts the pids cgroup under another name, with its property", async (t) => {
  const p = await placed(t);
  const dir = await dumpGone(t, p.w);
  const other = join(PIDS, `${p.name}-new`);
  t.teardown(() => removeCgroup(other));
  const r = tscriu(["restore", "-D", dir, "-d", "--cgroup-root", `pids:/${p.name}-new`]);
  t.is(r.code, 0, r.stderr);
  t.teardown(() => killAndReap(p.w.pid));
  t.is(cgroupsOf(p.w.pid).get("pids"), `/${p.name}-new`);
  t.is(cgroupsOf(p.w.pid).get(""), `/${p.name}`, "the other hierarchies as dumped");
  t.is(prop(other, "pids.max"), "57");
});

test("a failed restore kills the task and removes the cgroups it made: a property the kernel refuses, a fault after the move", async (t) => {
  const p = await placed(t);
  const dir = await dumpGone(t, p.w);
  rmdirSync(p.pids);
  rmdirSync(p.v2);
  // pids.max "bogus": made at cgroups, refused at cgroup-props, once the task is inside
  const copy = tempDir(t);
  for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
  const img = await readImage(join(dir, "cgroup.img"));
  const e = structuredClone(img.entries[0]!) as { controllers: { cnames: string[]; dirs: { properties: { name: string; value: string }[] }[] }[] };
  e.controllers.find((c) => c.cnames.includes("pids"))!.dirs[0]!.properties.find((x) => x.name === "pids.max")!.value = "bogus";
  rmSync(join(copy, "cgroup.img"));
  await writeImage(join(copy, "cgroup.img"), { type: img.type, entries: [e] });
  const err = await t.throwsAsync(restore({ imagesDir: copy, cgroupMode: "full" }));
  t.like(err, { step: "cgroup-props" });
  t.regex(err?.message ?? "", new RegExp(`setting pids.max of the cgroup pids:/${p.name} to "bogus"`));
  await waitFor("the pid to be free", () => !existsSync(`/proc/${p.w.pid}`));
  t.false(existsSync(p.pids), "pids cgroup removed");
  t.false(existsSync(p.v2), "v2 cgroup removed");
  const err2 = await t.throwsAsync(restore({ imagesDir: dir, faults: "restore:vdso" }));
  t.like(err2, { step: "vdso" });
  await waitFor("the pid to be free", () => !existsSync(`/proc/${p.w.pid}`));
  t.false(existsSync(p.pids), "removed after a later fault too");
  // a cgroup that existed before is left alone
  mkdirSync(p.v2);
  const err3 = await t.throwsAsync(restore({ imagesDir: dir, faults: "restore:cgroup-move" }));
  t.like(err3, { step: "cgroup-move" });
  t.true(existsSync(p.v2), "the cgroup it did not make stays");
  t.false(existsSync(p.pids));
});

test("dump --cgroup-root pids:/PARENT walks the pids hierarchy from there; dump --manage-cgroups=ignore names the sets only", async (t) => {
  const p = await placed(t);
  const sub = join(p.pids, "sub");
  mkdirSync(sub);
  writeFileSync(join(sub, "cgroup.procs"), String(p.w.pid));
  const dirs = async (dir: string): Promise<{ dir_name: string; children?: { dir_name: string }[] }[] | undefined> => {
    const cg = (await readImage(join(dir, "cgroup.img"))).entries[0] as { controllers: { cnames: string[]; dirs?: { dir_name: string; children?: { dir_name: string }[] }[] }[] };
    return cg.controllers.find((c) => c.cnames.includes("pids"))!.dirs;
  };
  const d1 = tempDir(t);
  t.is(tscriu(["dump", "-t", String(p.w.pid), "-D", d1, "-R"]).code, 0);
  t.deepEqual((await dirs(d1))?.map((d) => d.dir_name), [`${p.name}/sub`]);
  const d2 = tempDir(t);
  const r = tscriu(["dump", "-t", String(p.w.pid), "-D", d2, "-R", "--cgroup-root", `pids:/${p.name}`]);
  t.is(r.code, 0, r.stderr);
  const walked = await dirs(d2);
  t.deepEqual(walked?.map((d) => d.dir_name), [p.name]);
  t.deepEqual(walked?.[0]?.children?.map((d) => d.dir_name), ["sub"]);
  const d3 = tempDir(t);
  t.is(tscriu(["dump", "-t", String(p.w.pid), "-D", d3, "-R", "--manage-cgroups=ignore"]).code, 0);
  t.is(await dirs(d3), undefined, "no cgroup walked");
  const core = (await readImage(join(d3, `core-${p.w.pid}.img`))).entries[0] as { thread_core: { cg_set: number } };
  t.is(core.thread_core.cg_set, 2, "the set is still named");
  t.regex(await p.w.check(), /^PASS/);
});

test("--cgroup-yard: dump and restore reach the hierarchies through a directory of mounts named as criu names them", async (t) => {
  const p = await placed(t);
  const yard = tempDir(t, "tscriu-yard-");
  mkdirSync(join(yard, "pids"));
  mkdirSync(join(yard, "unified"));
  const mount = (args: string[]): void => {
    const r = spawnSync("mount", args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`mount ${args.join(" ")}: ${r.stderr}`);
  };
  mount(["-t", "cgroup", "-o", "pids", "none", join(yard, "pids")]);
  t.teardown(() => void spawnSync("umount", [join(yard, "pids")]));
  mount(["-t", "cgroup2", "none", join(yard, "unified")]);
  t.teardown(() => void spawnSync("umount", [join(yard, "unified")]));
  const dir = tempDir(t);
  const d = tscriu(["dump", "-t", String(p.w.pid), "-D", dir, "--cgroup-yard", yard]);
  t.is(d.code, 0, d.stderr);
  await waitFor("the pid to be free", () => !existsSync(`/proc/${p.w.pid}`));
  rmdirSync(p.pids);
  const bad = tscriu(["restore", "-D", dir, "--cgroup-yard", join(yard, "none")]);
  t.is(bad.code, 1);
  t.regex(bad.stderr, new RegExp(`cgroups of pid \\d+ failed: making the cgroup pids:/${p.name}: ENOENT`), "a yard without the hierarchies is named at the cgroups step");
  const r = tscriu(["restore", "-D", dir, "-d", "--cgroup-yard", yard]);
  t.is(r.code, 0, r.stderr);
  t.teardown(() => killAndReap(p.w.pid));
  inPlace(t, p.w.pid, p.name, "restored");
  t.is(prop(p.pids, "pids.max"), "57");

});

test("RPC: manage_cgroups at dump; manage_cgroups_mode FULL and cg_root at restore", async (t) => {
  const p = await placed(t);
  const dir = tempDir(t);
  const c = RpcClient.swrk(CLI);
  await c.dump({ images_dir: dir, pid: p.w.pid, manage_cgroups: true });
  t.is(await c.close(), 0);
  await waitFor("the pid to be free", () => !existsSync(`/proc/${p.w.pid}`));
  const other = join(PIDS, `${p.name}-rpc`);
  t.teardown(() => removeCgroup(other));
  writeFileSync(join(p.v2, "cgroup.max.descendants"), "5");
  const r = RpcClient.swrk(CLI);
  const pid = await r.restore({ images_dir: dir, manage_cgroups_mode: "FULL", cg_root: [{ ctrl: "pids", path: `/${p.name}-rpc` }] });
  t.teardown(() => killAndReap(pid));
  t.is(await r.close(), 0);
  t.is(cgroupsOf(pid).get("pids"), `/${p.name}-rpc`);
  t.is(prop(other, "pids.max"), "57");
  t.is(prop(p.v2, "cgroup.max.descendants"), "3", "FULL sets the existing cgroup's property");
});

test("bad --manage-cgroups and --cgroup-root values are named", (t) => {
  const r = tscriu(["restore", "-D", "/nonexistent", "--manage-cgroups=sometimes"]);
  t.is(r.code, 1);
  t.regex(r.stderr, /--manage-cgroups sometimes: not a mode \(ignore, none, props, soft, full, strict\)/);
  const r2 = tscriu(["restore", "-D", "/nonexistent", "--cgroup-root", "pids:relative"]);
  t.is(r2.code, 1);
  t.regex(r2.stderr, /--cgroup-root pids:relative: the new root must be an absolute cgroup path/);
});

test("criu 4.1.1 restores tscriu's images into the dumped cgroups, made again with their properties", async (t) => {
  if (!haveRoot(t)) return;
  const p = await placed(t, { static: true });
  const dir = await dumpGone(t, p.w);
  rmdirSync(p.pids); // made again by criu
  await restoredByCriu(t, p.w.pid, dir, 20_000, "--manage-cgroups=full");
  inPlace(t, p.w.pid, p.name, "restored by criu");
  t.is(prop(p.pids, "pids.max"), "57");
  t.is(prop(p.v2, "cgroup.max.descendants"), "3");
  t.regex(await p.w.check(), /^PASS/);
});

test("tscriu restores criu 4.1.1's images with their cgroup.img", async (t) => {
  if (!haveRoot(t)) return;
  const name = `tscriu-cg-${process.pid}-criu`;
  const pids = join(PIDS, name);
  t.teardown(() => removeCgroup(pids));
  mkdirSync(pids);
  writeFileSync(join(pids, "pids.max"), "43");
  // the criu root has no /sys: its shell mounts the pids hierarchy to move the task in
  const c = await criuDumps(t, "counter", [], "", `mkdir -p /tmp/${name}.mnt && mount -t cgroup -o pids none /tmp/${name}.mnt && echo "$pid" > /tmp/${name}.mnt/${name}/cgroup.procs; umount /tmp/${name}.mnt; rmdir /tmp/${name}.mnt`);
  t.is(c.status, 0, c.stderr);
  t.true(existsSync(join(c.images, "cgroup.img")));
  rmdirSync(pids);
  const r = await restoreTask(t, c.images);
  t.is(cgroupsOf(r.pid).get("pids"), `/${name}`);
  t.is(prop(pids, "pids.max"), "43");
  t.regex(await c.check(), /^PASS/);
});

test("dump --freeze-cgroup of a frozen v1 freezer cgroup: the restore makes it again and freezes it last, the task inside", async (t) => {
  const name = `tscriu-cg-${process.pid}-frz`;
  const cg = join("/sys/fs/cgroup/freezer", name);
  mkdirSync(cg);
  t.teardown(async () => {
    if (existsSync(cg)) writeFileSync(join(cg, "freezer.state"), "THAWED");
    await removeCgroup(cg);
  });
  const w = await startWorkload(t, "counter");
  writeFileSync(join(cg, "cgroup.procs"), String(w.pid));
  writeFileSync(join(cg, "freezer.state"), "FROZEN");
  await waitFor("the cgroup to freeze", () => prop(cg, "freezer.state") === "FROZEN");
  const dir = await dumpGone(t, w, { freezeCgroup: cg });
  const img = (await readImage(join(dir, "cgroup.img"))).entries[0] as { controllers: { cnames: string[]; dirs?: { properties?: { name: string; value: string }[] }[] }[] };
  t.is(img.controllers.find((c) => c.cnames.includes("freezer"))?.dirs?.[0]?.properties?.find((x) => x.name === "freezer.state")?.value, "FROZEN");
  rmdirSync(cg);
  const r = await restoreTask(t, dir);
  t.is(cgroupsOf(r.pid).get("freezer"), `/${name}`);
  await waitFor("the cgroup to be frozen again", () => prop(cg, "freezer.state") === "FROZEN");
  writeFileSync(join(cg, "freezer.state"), "THAWED");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("cpuset and cpu v1: a made cpuset gets cpuset.cpus and .mems before the task moves in (an empty cpuset takes no task), cpu.shares after", async (t) => {
  const name = `tscriu-cg-${process.pid}-cpu`;
  const cpuset = join("/sys/fs/cgroup/cpuset", name);
  const cpu = join("/sys/fs/cgroup/cpu", name);
  t.teardown(async () => {
    await removeCgroup(cpuset);
    await removeCgroup(cpu);
  });
  mkdirSync(cpuset);
  mkdirSync(cpu);
  writeFileSync(join(cpuset, "cpuset.cpus"), "0");
  writeFileSync(join(cpuset, "cpuset.mems"), "0");
  writeFileSync(join(cpu, "cpu.shares"), "333");
  const w = await startWorkload(t, "counter");
  for (const d of [cpuset, cpu]) writeFileSync(join(d, "cgroup.procs"), String(w.pid));
  const dir = await dumpGone(t, w);
  rmdirSync(cpuset);
  rmdirSync(cpu);
  const r = await restoreTask(t, dir);
  t.is(cgroupsOf(r.pid).get("cpuset"), `/${name}`);
  t.is(cgroupsOf(r.pid).get("cpu"), `/${name}`);
  t.is(prop(cpuset, "cpuset.cpus"), "0");
  t.is(prop(cpu, "cpu.shares"), "333");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});
