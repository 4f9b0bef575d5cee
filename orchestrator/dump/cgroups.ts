// cgroup.img: the cgroups the dumped threads are in, in criu's layout. Every distinct list
// of (hierarchy, path) a thread is in is a set; the dumper's own is set 1 (inventory's
// root_cg_set) and is not written: a task in it stays wherever the restorer runs. Each
// other set's cgroups are walked with their sub-cgroups (empty ones too) and the
// properties criu dumps for their controllers (hierarchy.ts), unless --manage-cgroups=ignore.
// Nothing is written when every thread is in the dumper's set, as criu does.
//
// Where criu walks a hierarchy from the task's path even when it is the dumper's own path
// or the root (the whole machine's tree then), tscriu walks only the hierarchies where
// the task is elsewhere than the dumper, and takes the root of a hierarchy without its
// sub-cgroups: those belong to everyone else on the machine.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { CONTROLLER_PROPS, GLOBAL_PROPS_V1, GLOBAL_PROPS_V2, Hierarchies, readMembers, sameMembers, type Member } from "../cgroup/hierarchy.js";

interface Perms {
  mode: number;
  uid: number;
  gid: number;
}
interface Prop {
  name: string;
  value: string;
  perms: Perms;
}
interface Dir {
  path: string;
  perms: Perms;
  props: Prop[];
  children: Dir[];
}
interface Controller {
  cnames: string[];
  heads: Dir[];
  threaded: boolean;
}

/** Values criu reads whole are under 1 KiB; the longest (ifpriomap) is cut there by criu too. */
const PROP_MAX = 1023;

function perms(path: string): Perms {
  const st = statSync(path);
  return { mode: st.mode, uid: st.uid, gid: st.gid };
}

function readProp(dir: string, name: string): Prop | undefined {
  const file = `${dir}/${name}`;
  let p: Perms;
  try {
    p = perms(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined; // not on this kernel
    throw e;
  }
  if (name === "cgroup.procs" || name === "tasks") return { name, value: "", perms: p };
  let value = readFileSync(file, "utf8").slice(0, PROP_MAX).replace(/\n$/, "");
  // criu writes -1 for a value of LLONG_MAX ("unlimited" in v1 limits)
  if (/^\s*9223372036854775807/.test(value)) value = "-1";
  if (name === "memory.oom_control") {
    const m = /^oom_kill_disable (\d+)/.exec(value);
    if (!m) throw new Error(`${file}: no oom_kill_disable in "${value}"`);
    value = m[1]!;
  }
  return { name, value, perms: p };
}

/** True when `path` lies inside `dir` (a cgroup path). */
function under(path: string, dir: string): boolean {
  return dir === "/" || path === dir || path.startsWith(`${dir}/`);
}

export class CgroupDump {
  /** sets in the order they were met; the dumper's first, id 1 */
  private readonly sets: { id: number; members: Member[] }[];
  private readonly controllers: Controller[];
  private readonly hier: Hierarchies;

  /**
   * `collect`: walk the cgroups (not for --manage-cgroups=ignore); `roots`: --cgroup-root,
   * the path walked instead of the task's for a hierarchy (all when `controller` is absent).
   */
  constructor(
    private readonly collect: boolean,
    private readonly roots: readonly { controller?: string | undefined; root: string }[],
    yard?: string,
  ) {
    this.hier = Hierarchies.current(yard);
    const mine = readMembers("/proc/self/cgroup");
    this.sets = [{ id: 1, members: mine }];
    // criu's controllers: the real ones in the order of the dumper's /proc/self/cgroup; a
    // named hierarchy (name=...) is added when a set names it
    const lines = readFileSync("/proc/self/cgroup", "utf8").split("\n").filter(Boolean);
    this.controllers = lines
      .map((l) => l.split(":")[1]!)
      .filter((n) => !n.startsWith("name="))
      .map((n) => ({ cnames: n.split(","), heads: [], threaded: false }));
  }

  /** The set of thread `tid` of process `pid`, made (and its cgroups walked) if new. */
  setOf(pid: number, tid: number): number {
    const members = readMembers(`/proc/${pid}/task/${tid}/cgroup`);
    const known = this.sets.find((s) => sameMembers(s.members, members));
    if (known) return known.id;
    const id = this.sets.length + 1;
    this.sets.push({ id, members });
    const mine = this.sets[0]!.members;
    for (const m of members) {
      const ctl = this.controllerOf(m.name);
      const own = mine.find((x) => x.name === m.name);
      if (!this.collect || (own && own.path === m.path)) continue;
      const root = this.roots.find((r) => r.controller !== undefined && m.name.split(",").includes(r.controller))?.root ?? this.roots.find((r) => r.controller === undefined)?.root ?? m.path;
      try {
        this.walk(ctl, root, this.hier.dirOf(m.name, root), root !== "/");
      } catch (e) {
        throw new Error(`thread ${tid}'s cgroup ${m.name || "v2"}:${root}: ${(e as Error).message}`, { cause: e });
      }
    }
    return id;
  }

  private controllerOf(name: string): Controller {
    const names = name.split(",");
    const c = this.controllers.find((x) => names.every((n) => x.cnames.includes(n)));
    if (c) return c;
    if (!name.startsWith("name=")) throw new Error(`the cgroup controller ${name} is in no hierarchy of the dumper's (/proc/self/cgroup)`);
    const made = { cnames: [name], heads: [], threaded: false };
    this.controllers.push(made);
    return made;
  }

  /** Adds `path` (and with `deep` its sub-cgroups) to the controller's tree, as criu's ftw walk. */
  private walk(ctl: Controller, path: string, dir: string, deep: boolean): void {
    let list = ctl.heads;
    let parent: Dir | undefined;
    for (;;) {
      const d = list.find((x) => under(path, x.path));
      if (!d) break;
      if (d.path === path) return; // walked already (a set sharing the cgroup)
      parent = d;
      list = d.children;
    }
    const names = ctl.cnames[0] === "" ? [] : ctl.cnames;
    const propNames = [...names.flatMap((n) => CONTROLLER_PROPS[n] ?? []), ...(ctl.cnames[0] === "" ? GLOBAL_PROPS_V2 : GLOBAL_PROPS_V1)];
    const props: Prop[] = [];
    for (const n of propNames) {
      const p = readProp(dir, n);
      if (!p) continue;
      if ((n === "cgroup.type" && p.value === "threaded") || n === "tasks") ctl.threaded = true;
      props.push(p);
    }
    const node: Dir = { path, perms: perms(dir), props, children: [] };
    (parent ? parent.children : ctl.heads).push(node);
    if (!deep) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) this.walk(ctl, `${path === "/" ? "" : path}/${e.name}`, `${dir}/${e.name}`, true);
    }
  }

  /** Lets go of the hierarchies mounted for the walk. */
  close(): void {
    this.hier.close();
  }

  /**
   * --freeze-cgroup with a v1 freezer: the state the cgroup had before the dump goes into
   * freezer.state of the freezer hierarchy's top cgroups (criu's add_freezer_state), for the
   * restore to put back last.
   */
  freezerState(state: string): void {
    const ctl = this.controllers.find((c) => c.cnames.includes("freezer"));
    for (const d of ctl?.heads ?? []) d.props.push({ name: "freezer.state", value: state, perms: perms(`${this.hier.dirOf("freezer", d.path)}/freezer.state`) });
  }

  /** The cgroup.img entry, or undefined when every thread is in the dumper's set. */
  entry(): Record<string, unknown> | undefined {
    if (this.sets.length === 1) return undefined;
    const permsEntry = (p: Perms): Perms => ({ mode: p.mode, uid: p.uid, gid: p.gid });
    const dirEntry = (d: Dir, parentPath: string | undefined): Record<string, unknown> => ({
      // a head carries its path without the leading "/", a child its own name
      dir_name: parentPath === undefined ? d.path.slice(1) : d.path.slice(parentPath === "/" ? 1 : parentPath.length + 1),
      children: d.children.map((c) => dirEntry(c, d.path)),
      properties: d.props.map((p) => ({ name: p.name, value: p.value, perms: permsEntry(p.perms) })),
      dir_perms: permsEntry(d.perms),
    });
    return {
      sets: this.sets.slice(1).map((s) => ({ id: s.id, ctls: s.members.map((m) => ({ name: m.name, path: m.path })) })),
      controllers: this.controllers.map((c) => ({ cnames: c.cnames, dirs: c.heads.map((d) => dirEntry(d, undefined)), is_threaded: c.threaded })),
    };
  }
}
