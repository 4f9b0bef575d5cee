// cgroup.img's options: --cgroup-root at dump and restore, --cgroup-yard, bad values, the
// RPC's fields, --freeze-cgroup's freezer state; criu 4.1.1 restores tscriu's images into
// the cgroups and tscriu criu's (the modes: cgroups.test.ts).
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { RpcClient } from "../orchestrator/rpc/client.js";
import { CLI, tscriu } from "./helpers/cli.js";
import { cgroupMount, cgroupsOf, freshCgroups, inPlace, placed, prop, removeCgroup } from "./helpers/cgroups.js";
import { criuDumps, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { counterAdvances, killAndReap, startWorkload, waitFor } from "./helpers/workloads.js";

test("--cgroup-root pids:/NEW puts the pids cgroup under another name, with its property", async (t) => {
  const p = await placed(t);
  const dir = await dumpGone(t, p.w);
  const other = join(cgroupMount("pids"), `${p.name}-new`);
  t.teardown(() => removeCgroup(other));
  const r = tscriu(["restore", "-D", dir, "-d", "--cgroup-root", `pids:/${p.name}-new`]);
  t.is(r.code, 0, r.stderr);
  t.teardown(() => killAndReap(p.w.pid));
  t.is(cgroupsOf(p.w.pid).get("pids"), `/${p.name}-new`);
  t.is(cgroupsOf(p.w.pid).get(""), `/${p.name}`, "the other hierarchies as dumped");
  t.is(prop(other, "pids.max"), "57");
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
  const other = join(cgroupMount("pids"), `${p.name}-rpc`);
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
  const [pids] = freshCgroups(t, name, { [cgroupMount("pids")]: { "pids.max": "43" } }) as [string];
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
  const cg = join(cgroupMount("freezer"), name);
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
