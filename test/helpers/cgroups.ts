// cgroups for the tests of cgroup.img (cgroups.test.ts, cgroups-options.test.ts) and of
// --freeze-cgroup: where the kernel mounted each hierarchy, a fresh cgroup of the v1 pids
// hierarchy and of cgroup v2 (both mounted on this machine kind), a task's cgroups as
// /proc says them, a cgroup removed once empty.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { startWorkload, waitFor, type Workload } from "./workloads.js";

/**
 * Where the kernel mounted cgroup v2 (`"v2"`), or the v1 hierarchy of `controller`, from
 * /proc/self/mounts; a machine without it fails the test that needs it, naming it.
 */
export function cgroupMount(controller: string): string {
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const [, dir, type, opts] = line.split(" ");
    if (controller === "v2" ? type === "cgroup2" : type === "cgroup" && opts!.split(",").includes(controller)) return dir!;
  }
  throw new Error(`no ${controller === "v2" ? "cgroup v2" : `cgroup v1 ${controller} hierarchy`} is mounted (/proc/self/mounts): this machine kind has it`);
}

/** The lines of /proc/PID/cgroup by hierarchy name ("" for v2). */
export function cgroupsOf(pid: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").filter(Boolean)) {
    const [, name, path] = /^\d+:([^:]*):(.*)$/.exec(l)!;
    m.set(name!, path!);
  }
  return m;
}

export const prop = (dir: string, name: string): string => readFileSync(join(dir, name), "utf8").trim();

/** Removes a cgroup directory (and its sub-cgroups) once no task is left in it. */
export async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) await removeCgroup(join(dir, e.name));
  await waitFor(`cgroup ${dir} to be empty`, () => prop(dir, "cgroup.procs") === "");
  // a v2 cgroup stays busy a moment after its last task left cgroup.procs (it is still exiting)
  await waitFor(`cgroup ${dir} to be removed`, () => {
    try {
      rmdirSync(dir);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EBUSY") return false;
      throw e;
    }
  });
}

export interface Placed {
  w: Workload;
  name: string;
  pids: string;
  v2: string;
}

/**
 * Fresh cgroups named `name` under each mount of `props` (a hierarchy's directory), each with
 * its properties written in order; removed at teardown once empty.
 */
export function freshCgroups(t: ExecutionContext, name: string, props: Record<string, Record<string, string>>): string[] {
  const dirs = Object.keys(props).map((m) => join(m, name));
  t.teardown(async () => {
    for (const d of dirs) await removeCgroup(d);
  });
  for (const [mount, values] of Object.entries(props)) {
    mkdirSync(join(mount, name));
    for (const [k, v] of Object.entries(values)) writeFileSync(join(mount, name, k), v);
  }
  return dirs;
}

/** Moves `pid` into each cgroup directory of `dirs`. */
export function enter(dirs: readonly string[], pid: number): void {
  for (const d of dirs) writeFileSync(join(d, "cgroup.procs"), String(pid));
}

/** A counter in a fresh pids cgroup (pids.max 57) and a fresh v2 cgroup (cgroup.max.descendants 3). */
export async function placed(t: ExecutionContext, opts: { static?: boolean } = {}): Promise<Placed> {
  const name = `tscriu-cg-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const [pids, v2] = freshCgroups(t, name, { [cgroupMount("pids")]: { "pids.max": "57" }, [cgroupMount("v2")]: { "cgroup.max.descendants": "3" } }) as [string, string];
  const w = await startWorkload(t, "counter", [], opts);
  enter([pids, v2], w.pid);
  return { w, name, pids, v2 };
}

export function inPlace(t: ExecutionContext, pid: number, name: string, what: string): void {
  const cg = cgroupsOf(pid);
  t.is(cg.get("pids"), `/${name}`, `${what}: in the pids cgroup`);
  t.is(cg.get(""), `/${name}`, `${what}: in the v2 cgroup`);
}
