// cgroups for the tests of cgroup.img (cgroups.test.ts, cgroups-options.test.ts): a fresh
// cgroup of the v1 pids hierarchy and of cgroup v2 (both mounted on this machine kind), a
// task's cgroups as /proc says them, a cgroup removed once empty.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { startWorkload, waitFor, type Workload } from "./workloads.js";

export const PIDS = "/sys/fs/cgroup/pids";
export const V2 = "/sys/fs/cgroup/unified";

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
  rmdirSync(dir);
}

export interface Placed {
  w: Workload;
  name: string;
  pids: string;
  v2: string;
}

/** A counter in a fresh pids cgroup (pids.max 57) and a fresh v2 cgroup (cgroup.max.descendants 3). */
export async function placed(t: ExecutionContext, opts: { static?: boolean } = {}): Promise<Placed> {
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

export function inPlace(t: ExecutionContext, pid: number, name: string, what: string): void {
  const cg = cgroupsOf(pid);
  t.is(cg.get("pids"), `/${name}`, `${what}: in the pids cgroup`);
  t.is(cg.get(""), `/${name}`, `${what}: in the v2 cgroup`);
}
