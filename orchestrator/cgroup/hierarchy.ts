// The cgroup hierarchies as criu's cgroup.img names them, shared by the dump and the
// restore. A hierarchy is named by its line of /proc/PID/cgroup: "cpu,cpuacct" or
// "name=systemd" for cgroup v1, "" for cgroup v2. tscriu reaches each through a mount of
// it that /proc/self/mountinfo shows, else through a detached mount of its own (as criu
// does for every hierarchy), or with --cgroup-yard through a directory holding one mount
// per hierarchy named as criu names them.

import { closeSync, readFileSync } from "node:fs";
import { bridge } from "../../host-bridge/load.js";

/** One line of /proc/PID/cgroup: the hierarchy's name and the task's path in it. */
export interface Member {
  name: string;
  path: string;
}

/** A task's lines of /proc/.../cgroup, ordered by name (bytes) as criu orders its sets. */
export function readMembers(file: string): Member[] {
  const out: Member[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line) continue;
    const a = line.indexOf(":");
    const b = line.indexOf(":", a + 1);
    if (a < 0 || b < 0) throw new Error(`${file}: cannot parse "${line}"`);
    out.push({ name: line.slice(a + 1, b), path: line.slice(b + 1) });
  }
  return out.sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));
}

export function sameMembers(a: readonly Member[], b: readonly Member[]): boolean {
  return a.length === b.length && a.every((m, i) => m.name === b[i]!.name && m.path === b[i]!.path);
}

/** criu's directory for a hierarchy in its yard: "unified" for v2, "name=" dropped, comma-joined. */
export function yardName(cnames: readonly string[]): string {
  return cnames.map((n) => (n === "" ? "unified" : n.startsWith("name=") ? n.slice(5) : n)).join(",");
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

interface Mount {
  root: string;
  dir: string;
  /** the controllers and name= of a v1 mount; [""] for cgroup2 */
  names: string[];
}

/**
 * Where each hierarchy can be reached: a yard directory, else the mounts of cgroup and
 * cgroup2 of this mount namespace, else a detached mount made here. `dirOf` gives the
 * directory of a cgroup path.
 */
export class Hierarchies {
  /** detached mounts made for hierarchies no mount shows: name → root fd */
  private readonly own = new Map<string, number>();
  /** the cgroup mounts of mountinfo, read at the first lookup (a dump in the dumper's cgroups needs none) */
  private mounts: Mount[] | undefined;

  private constructor(private readonly yard: string | undefined) {}

  static current(yard?: string): Hierarchies {
    return new Hierarchies(yard);
  }

  /** Closes the detached mounts (they go with their last fd). */
  close(): void {
    for (const fd of this.own.values()) closeSync(fd);
    this.own.clear();
  }

  private readMounts(): Mount[] {
    const mounts: Mount[] = [];
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const sep = line.indexOf(" - ");
      if (sep < 0) continue;
      const f = line.slice(0, sep).split(" ");
      const [fstype, , superOpts] = line.slice(sep + 3).split(" ");
      if (fstype === "cgroup2") mounts.push({ root: unescapeMount(f[3]!), dir: unescapeMount(f[4]!), names: [""] });
      else if (fstype === "cgroup") {
        const names = (superOpts ?? "").split(",").filter((o) => o !== "rw" && o !== "ro" && o !== "xattr" && !o.startsWith("release_agent=") && o !== "noprefix" && o !== "clone_children" && o !== "cpuset_v2_mode");
        mounts.push({ root: unescapeMount(f[3]!), dir: unescapeMount(f[4]!), names });
      }
    }
    return mounts;
  }

  /** The directory of `path` in the hierarchy `name` ("cpu,cpuacct", "name=systemd", ""). */
  dirOf(name: string, path: string): string {
    const dir = this.mountedDir(name, path);
    if (dir !== undefined) return dir;
    let fd = this.own.get(name);
    if (fd === undefined) {
      try {
        fd = bridge().detachedMount(name === "" ? "cgroup2" : "cgroup", name);
      } catch (e) {
        throw new Error(`mounting the cgroup hierarchy ${name || "v2"}: ${(e as Error).message}`, { cause: e });
      }
      this.own.set(name, fd);
    }
    return `/proc/self/fd/${fd}${path === "/" ? "" : path}`;
  }

  private mountedDir(name: string, path: string): string | undefined {
    if (this.yard !== undefined) return `${this.yard}/${yardName(name.split(","))}${path === "/" ? "" : path}`;
    const want = name.split(",");
    this.mounts ??= this.readMounts();
    for (const m of this.mounts) {
      if (m.names.length !== want.length || !want.every((w) => m.names.includes(w))) continue;
      if (m.root === "/") return `${m.dir}${path === "/" ? "" : path}`;
      if (path === m.root) return m.dir;
      if (path.startsWith(`${m.root}/`)) return `${m.dir}${path.slice(m.root.length)}`;
    }
    return undefined;
  }
}

/** The properties criu dumps for each controller (its built-in list, cgroup-props.c). */
export const CONTROLLER_PROPS: Readonly<Record<string, readonly string[]>> = {
  cpu: ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.rt_period_us", "cpu.rt_runtime_us"],
  memory: [
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "memory.swappiness",
    "memory.soft_limit_in_bytes",
    "memory.move_charge_at_immigrate",
    "memory.oom_control",
    "memory.use_hierarchy",
    "memory.kmem.limit_in_bytes",
    "memory.kmem.tcp.limit_in_bytes",
  ],
  cpuset: [
    "cpuset.cpus",
    "cpuset.mems",
    "cpuset.memory_migrate",
    "cpuset.cpu_exclusive",
    "cpuset.mem_exclusive",
    "cpuset.mem_hardwall",
    "cpuset.memory_spread_page",
    "cpuset.memory_spread_slab",
    "cpuset.sched_load_balance",
    "cpuset.sched_relax_domain_level",
  ],
  blkio: ["blkio.weight"],
  net_cls: ["net_cls.classid"],
  net_prio: ["net_prio.ifpriomap"],
  pids: ["pids.max"],
  devices: ["devices.list"],
};
export const GLOBAL_PROPS_V1 = ["cgroup.clone_children", "notify_on_release", "cgroup.procs", "tasks"];
export const GLOBAL_PROPS_V2 = ["cgroup.subtree_control", "cgroup.max.descendants", "cgroup.max.depth", "cgroup.freeze", "cgroup.type"];

/**
 * Properties the kernel takes only while the cgroup has no task and no child (a cpuset
 * without cpus and mems refuses tasks): set as soon as the directory is made, as criu does.
 */
export const EARLY_PROPS = new Set(["cpuset.cpus", "cpuset.mems", "devices.list", "memory.kmem.limit_in_bytes", "memory.swappiness", "memory.oom_control", "memory.use_hierarchy", "cgroup.type"]);
