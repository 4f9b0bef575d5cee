// The tasks go back into the cgroups cgroup.img names (dump/cgroups.ts), as criu restores
// them: before the stub is made the cgroups' directories are made where missing, with the
// properties the kernel takes only while a cgroup is empty (cpuset.cpus and .mems first:
// an empty cpuset refuses tasks); each process is moved in once forked, before its memory
// is charged; a thread with a set of its own once made; the other properties last, once
// every thread is in (a low pids.max would refuse the threads); a freezer's state just before
// the tasks are let go, as criu (frozen earlier, they would stop tscriu's own work in them).
// --manage-cgroups says what is made and set (criu's modes):
//   none   every cgroup must exist; nothing set
//   props  every cgroup must exist; properties set on all
//   soft   missing cgroups made, properties set only on those (the default)
//   full   missing cgroups made, properties set on all
//   strict no cgroup may exist; all made, properties set
//   ignore cgroup.img is not read: the tasks stay in the restorer's cgroups
// A task in the dumper's own set (inventory's root_cg_set) stays in the restorer's cgroups.
// A directory this restore made is removed again if the restore fails.

import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import type { ImageDir } from "../../images/dir.js";
import { EARLY_PROPS, Hierarchies, readMembers, type Member } from "../cgroup/hierarchy.js";
import type { CgroupMode, CgroupRoot } from "../cgroup/options.js";
import type { ModuleLog } from "../log.js";

/** Set just before the tasks are let go: the freezers */
const LATE_PROPS = new Set(["freezer.state", "cgroup.freeze"]);

interface Perms {
  mode: number;
  uid: number;
  gid: number;
}
interface PropEntry {
  name: string;
  value: string;
  perms?: Perms | undefined;
}
interface DirEntry {
  dir_name: string;
  children?: DirEntry[] | undefined;
  properties?: PropEntry[] | undefined;
  dir_perms?: Perms | undefined;
}
interface ControllerEntry {
  cnames: string[];
  dirs: DirEntry[];
}
interface SetEntry {
  id: number;
  ctls: { name: string; path: string; cgns_prefix?: number }[];
}

/** A cgroup path of the image: "/" or absolute with each part a name (no "", "." or ".."): it stays inside its hierarchy. */
function goodPath(path: string): boolean {
  return path === "/" || (path.startsWith("/") && path.slice(1).split("/").every(goodName));
}

/** A file name inside a cgroup directory: a directory's own name, a property's. */
function goodName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}

/**
 * The image's directories, checked before anything is made: a name that leaves its
 * hierarchy (a hostile image's "../x") would make a directory, or write a file, outside
 * the cgroup file system. criu names a top directory by its path from the hierarchy's
 * root ("" for the root itself), each one below by its own name.
 */
function checkDirs(dirs: readonly DirEntry[], hierarchy: string, parent?: string): void {
  for (const d of dirs) {
    const top = parent === undefined;
    const path = top ? `/${d.dir_name}` : `${parent === "/" ? "" : parent}/${d.dir_name}`;
    if (top ? !goodPath(path) : !goodName(d.dir_name)) throw new Error(`cgroup.img: the cgroup ${hierarchy}:${JSON.stringify(path)} is named by ${JSON.stringify(d.dir_name)}, which leaves its hierarchy or is no name`);
    for (const p of d.properties ?? []) {
      if (!goodName(p.name)) throw new Error(`cgroup.img: the cgroup ${hierarchy}:${path} has a property named ${JSON.stringify(p.name)}, which is no file name`);
    }
    checkDirs(d.children ?? [], hierarchy, path);
  }
}

/** A cgroup of the image: its hierarchy, path, and whether this restore made it. */
interface Cgroup {
  name: string;
  path: string;
  dir: string;
  entry: DirEntry;
  made: boolean;
}

/**
 * rmdir of a cgroup whose tasks were just killed: a v2 cgroup stays busy (EBUSY) a moment
 * after its last task is reaped, while the kernel lets the task go.
 */
function rmdirBusy(dir: string): void {
  for (let i = 0; ; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EBUSY" || i === 50) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

/** A task's set in cgroup.img (criu's older images have it in tc); 0: none (zombies). */
export function cgSetOf(core: { thread_core?: { cg_set?: number | undefined } | undefined; tc?: { cg_set?: number | undefined } | undefined }): number {
  return core.thread_core?.cg_set ?? core.tc?.cg_set ?? 0;
}

/** Gives `path` the dumped owner and mode; says what it had when that changed. */
function applyPerms(path: string, p: Perms | undefined): string | undefined {
  if (!p) return undefined;
  const st = statSync(path);
  if (st.uid === p.uid && st.gid === p.gid && (st.mode & 0o7777) === (p.mode & 0o7777)) return undefined;
  chownSync(path, p.uid, p.gid);
  chmodSync(path, p.mode & 0o7777);
  return `owner ${st.uid}:${st.gid} mode ${(st.mode & 0o7777).toString(8)} made ${p.uid}:${p.gid} ${(p.mode & 0o7777).toString(8)}`;
}

/** --cgroup-root at restore: the first cgroup of a hierarchy in the image (its head) is renamed, and every set path under it. */
function rewriteRoots(controllers: ControllerEntry[], sets: SetEntry[], roots: readonly CgroupRoot[]): void {
  const global = roots.find((r) => r.controller === undefined)?.root;
  for (const c of controllers) {
    const mine = roots.filter((r) => r.controller !== undefined && c.cnames.some((n) => r.controller!.split(",").includes(n)));
    const newroot = mine[0]?.root ?? global;
    if (newroot === undefined) continue;
    for (const d of c.dirs) {
      const old = d.dir_name;
      for (const s of sets) {
        for (const m of s.ctls) {
          if (!m.name.split(",").every((n) => c.cnames.includes(n)) || !`${m.path.slice(1)}/`.startsWith(old === "" ? "" : `${old}/`)) continue;
          m.path = `${newroot}${m.path.slice(old.length + 1)}`.replace(/\/+$/, "") || "/";
        }
      }
      d.dir_name = newroot.replace(/^\/+/, "");
    }
  }
}

export class CgroupRestore {
  private readonly cgroups: Cgroup[] = [];
  private readonly mine = readMembers("/proc/self/cgroup");

  private constructor(
    private readonly mode: CgroupMode,
    private readonly controllers: ControllerEntry[],
    private readonly sets: SetEntry[],
    private readonly rootSet: number,
    private readonly hier: Hierarchies,
    private readonly log: ModuleLog,
  ) {}

  /** The images' cgroups, or undefined with none to restore (no cgroup.img, or mode ignore). */
  static async load(images: ImageDir, opts: { mode: CgroupMode; roots: readonly CgroupRoot[]; yard?: string | undefined }, log: ModuleLog): Promise<CgroupRestore | undefined> {
    if (opts.mode === "ignore" || !(await images.has("cgroup.img"))) return undefined;
    const e = (await images.image("cgroup.img")).entries[0] as { sets?: SetEntry[]; controllers?: ControllerEntry[] } | undefined;
    if (!e || !e.sets?.length) return undefined;
    const controllers = (e.controllers ?? []).map((c) => ({ ...c, cnames: c.cnames ?? [], dirs: c.dirs ?? [] }));
    for (const s of e.sets) {
      s.ctls ??= [];
      for (const m of s.ctls) {
        if (m.cgns_prefix) throw new Error(`cgroup.img: set ${s.id} has a cgroup namespace (${m.name}:${m.path}); tscriu restores no cgroup namespace`);
        if (!goodPath(m.path)) throw new Error(`cgroup.img: set ${s.id} names the cgroup ${m.name}:${JSON.stringify(m.path)}, which is no absolute path inside its hierarchy`);
      }
    }
    for (const c of controllers) checkDirs(c.dirs, c.cnames.join(",") || "v2");
    rewriteRoots(controllers, e.sets, opts.roots);
    const rootSet = (await images.inventory()).root_cg_set ?? 0;
    return new CgroupRestore(opts.mode, controllers, e.sets, rootSet, Hierarchies.current(opts.yard), log);
  }

  /** Makes the missing cgroups (by the mode) with their early properties. */
  prepare(): void {
    for (const c of this.controllers) {
      const name = c.cnames.join(",");
      const walk = (entries: DirEntry[], parent: string): void => {
        for (const e of entries) {
          const path = parent === "/" ? `/${e.dir_name}` : `${parent}/${e.dir_name}`;
          const where = `the cgroup ${name || "v2"}:${path}`;
          if (e.dir_name === "") {
            // a hierarchy's root is there (and gets no property): no mount needed for it
            this.cgroups.push({ name, path, dir: "", entry: e, made: false });
            walk(e.children ?? [], path);
            continue;
          }
          const dir = this.hier.dirOf(name, path);
          if (existsSync(dir)) {
            if (this.mode === "strict") throw new Error(`${where} exists already (--manage-cgroups=strict)`);
            this.cgroups.push({ name, path, dir, entry: e, made: false });
            const was = this.mode !== "none" ? applyPerms(dir, e.dir_perms) : undefined;
            if (was) this.log.info(`${where} exists: its ${was} as dumped (--manage-cgroups=${this.mode})`);
          } else {
            if (this.mode === "none" || this.mode === "props") throw new Error(`${where} does not exist (--manage-cgroups=${this.mode} makes none)`);
            try {
              mkdirSync(dir);
            } catch (err) {
              throw new Error(`making ${where}: ${(err as Error).message}`, { cause: err });
            }
            const cg = { name, path, dir, entry: e, made: true };
            this.cgroups.push(cg);
            this.log.info(`made ${where}`);
            applyPerms(dir, e.dir_perms);
            for (const p of e.properties ?? []) if (EARLY_PROPS.has(p.name)) this.setProp(cg, p);
          }
          walk(e.children ?? [], path);
        }
      };
      walk(c.dirs ?? [], "/");
    }
  }

  private setOf(id: number): SetEntry {
    const s = this.sets.find((x) => x.id === id);
    if (!s) throw new Error(`cgroup.img has no set ${id}`);
    return s;
  }

  private targets(set: number): Member[] {
    if (!set || set === this.rootSet) return [];
    // a hierarchy where the restorer is in that cgroup already: the stub inherited it; one
    // the restorer is in no cgroup of (no mount left it alive), the same for its root
    return this.setOf(set).ctls.filter((m) => (this.mine.find((x) => x.name === m.name)?.path ?? "/") !== m.path);
  }

  /** Moves process `pid` (every thread of it) into its set's cgroups. */
  moveProcess(pid: number, set: number): void {
    for (const m of this.targets(set)) this.write(m, "cgroup.procs", pid);
  }

  /** Moves thread `tid` into its set's cgroups when they are not its process's (cgroup v2 threaded, v1 per thread). */
  moveThread(tid: number, set: number, processSet: number): void {
    if (!set || set === processSet) return;
    for (const m of this.setOf(set).ctls) {
      const of = this.setOf(processSet).ctls.find((x) => x.name === m.name);
      if (of?.path !== m.path) this.write(m, m.name === "" ? "cgroup.threads" : "tasks", tid);
    }
  }

  private write(m: Member, file: string, id: number): void {
    const where = `the cgroup ${m.name || "v2"}:${m.path}`;
    try {
      writeFileSync(`${this.hier.dirOf(m.name, m.path)}/${file}`, `${id}`);
    } catch (e) {
      throw new Error(`moving ${id} into ${where} (${file}): ${(e as Error).message}`, { cause: e });
    }
  }

  /** The properties set by `setProperties` (late: only the freezer's), by the mode. */
  private eachProp(late: boolean, f: (cg: Cgroup, p: PropEntry) => void): void {
    if (this.mode === "none") return;
    for (const cg of this.cgroups) {
      if (cg.entry.dir_name === "" || (this.mode === "soft" && !cg.made)) continue;
      for (const p of cg.entry.properties ?? []) {
        if (!EARLY_PROPS.has(p.name) && LATE_PROPS.has(p.name) === late) f(cg, p);
      }
    }
  }

  /** The other properties, once every task is in: all (props, full, strict) or on the made cgroups only (soft). */
  setProperties(): void {
    this.eachProp(false, (cg, p) => this.setProp(cg, p));
  }

  /**
   * A frozen cgroup frozen again, just before the tasks are let go (criu: after pre-resume):
   * a task frozen earlier would stop tscriu's own work inside it.
   */
  setFreezers(): void {
    this.eachProp(true, (cg, p) => this.setProp(cg, p));
  }

  private setProp(cg: Cgroup, p: PropEntry): void {
    const file = `${cg.dir}/${p.name}`;
    const where = `${p.name} of the cgroup ${cg.name || "v2"}:${cg.path}`;
    try {
      if (p.name === "devices.list") {
        // only the list can be read: deny all, then allow each line (one rule per write)
        writeFileSync(`${cg.dir}/devices.deny`, "a");
        for (const l of p.value.split("\n").filter(Boolean)) writeFileSync(`${cg.dir}/devices.allow`, l);
        return;
      }
      applyPerms(file, p.perms);
      if (p.name === "cgroup.procs" || p.name === "tasks") return; // their perms only
      if (p.name === "cgroup.type" && p.value !== "threaded") return;
      if (p.name === "memory.swappiness" && p.value === "60") return;
      if (p.name === "memory.oom_control" && p.value === "0") return;
      if (!cg.made) this.log.info(`${where}: ${readFileSync(file, "utf8").trim()} replaced by ${p.value} (--manage-cgroups=${this.mode})`);
      if (p.name === "cgroup.subtree_control") {
        const want = p.value.split(/\s+/).filter(Boolean);
        if (want.length) writeFileSync(file, want.map((c) => `+${c}`).join(" "));
      } else if (p.name === "net_prio.ifpriomap") {
        // one interface a write; interfaces of the dumping machine may be missing here
        for (const l of p.value.split("\n").filter((x) => Number.parseInt(x.split(" ")[1] ?? "0", 10) !== 0)) {
          try {
            writeFileSync(file, l);
          } catch (e) {
            this.log.warn(`${where}: "${l}" not set: ${(e as Error).message}`);
          }
        }
      } else writeFileSync(file, p.value);
    } catch (e) {
      throw new Error(`setting ${where} to "${p.value}": ${(e as Error).message}`, { cause: e });
    }
  }

  /** Lets go of the hierarchies mounted for the restore. */
  close(): void {
    this.hier.close();
  }

  /** After a failed restore, once its tasks are gone: the cgroups it made are removed, deepest first. */
  undo(): string | undefined {
    const errors: string[] = [];
    for (const cg of [...this.cgroups].reverse()) {
      if (!cg.made) continue;
      try {
        rmdirBusy(cg.dir);
      } catch (e) {
        errors.push(`removing the cgroup ${cg.name || "v2"}:${cg.path} it made: ${(e as Error).message}`);
      }
    }
    return errors.length ? errors.join("; ") : undefined;
  }
}
