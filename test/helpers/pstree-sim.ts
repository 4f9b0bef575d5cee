// The kernel's rules for sessions, groups and parents, small enough to check the tree plan
// against: fork (CLONE_PARENT), setsid, setpgid, exit with reparenting to the nearest child
// subreaper, zombies. `history` makes a tree as session02/03 of criu's zdtm do (forks,
// CLONE_PARENT forks, setsid, setpgid, deaths with and without reaping, subreapers), from a seed.
import type { BuildStep, TreeTask } from "../../orchestrator/restore/pstree-plan.js";

interface Proc {
  parent: number;
  sid: number;
  pgid: number;
  zombie: boolean;
  subreaper: boolean;
}

export class Kernel {
  readonly procs = new Map<number, Proc>();

  constructor(root: number, sid = root, pgid = root) {
    this.procs.set(root, { parent: 0, sid, pgid, zombie: false, subreaper: false });
  }

  private get(pid: number): Proc {
    const p = this.procs.get(pid);
    if (!p || p.zombie) throw new Error(`no live process ${pid}`);
    return p;
  }

  fork(by: number, pid: number, cloneParent = false): void {
    const f = this.get(by);
    if (this.procs.has(pid)) throw new Error(`fork of ${pid}: PID taken`);
    if ([...this.procs.values()].some((p) => p.pgid === pid || p.sid === pid)) throw new Error(`fork of ${pid}: PID in use as a group or session id`);
    this.procs.set(pid, { parent: cloneParent ? f.parent : by, sid: f.sid, pgid: f.pgid, zombie: false, subreaper: false });
  }

  setsid(pid: number): void {
    const p = this.get(pid);
    if ([...this.procs.values()].some((x) => x.pgid === pid)) throw new Error(`setsid of ${pid}: EPERM (a group leader)`);
    p.sid = p.pgid = pid;
  }

  setpgid(pid: number, pgid: number): void {
    const p = this.get(pid);
    if (p.sid === pid) throw new Error(`setpgid of ${pid}: EPERM (a session leader)`);
    if (pgid !== pid && ![...this.procs.values()].some((x) => x.pgid === pgid && x.sid === p.sid)) throw new Error(`setpgid(${pid}, ${pgid}): EPERM (no such group in session ${p.sid})`);
    p.pgid = pgid;
  }

  /** The process dies: its children go to the nearest live child subreaper above, else to 0 (init). */
  exit(pid: number, reaped: boolean): void {
    const p = this.get(pid);
    let to = p.parent;
    while (to !== 0 && !(this.procs.get(to)!.subreaper && !this.procs.get(to)!.zombie)) to = this.procs.get(to)!.parent;
    for (const [c, x] of this.procs) {
      if (x.parent !== pid) continue;
      if (x.zombie && to === 0) this.procs.delete(c);
      else x.parent = to;
    }
    if (reaped) this.procs.delete(pid);
    else p.zombie = true;
  }

  /** Runs the plan's steps; the root exists. */
  run(steps: readonly BuildStep[]): void {
    for (const s of steps) {
      if (s.op === "fork") {
        this.fork(s.by, s.pid, s.parent);
        if (s.then === "setsid") this.setsid(s.pid);
        else if (s.then === "setpgid") this.setpgid(s.pid, s.pid);
        else if (typeof s.then === "object") this.setpgid(s.pid, s.then.join);
      } else if (s.op === "setsid") this.setsid(s.pid);
      else if (s.op === "join") this.setpgid(s.pid, s.pgid);
      else if (s.op === "die") this.exit(s.pid, false);
      else {
        if (this.get(s.pid).parent !== s.reaper) throw new Error(`exit of ${s.pid}: its parent is ${this.get(s.pid).parent}, not ${s.reaper}`);
        if (s.deliver !== undefined) this.get(s.deliver).subreaper = true;
        this.exit(s.pid, true);
        if (s.deliver !== undefined) this.get(s.deliver).subreaper = false;
      }
    }
  }

  /** The tree as a dump sees it below `root`: pstree order, parents first. */
  tree(root: number): TreeTask[] {
    const out: TreeTask[] = [];
    const walk = (pid: number): void => {
      const p = this.procs.get(pid)!;
      out.push({ pid, ppid: pid === root ? 0 : p.parent, sid: p.sid, pgid: p.pgid, zombie: p.zombie, sharesFiles: false });
      for (const [c, x] of this.procs) if (x.parent === pid) walk(c);
    };
    walk(root);
    return out;
  }
}

/** A process tree made by random forks, CLONE_PARENT forks, setsids, deaths and subreapers from `seed`, as criu's session03 makes one. */
export function history(seed: number, count: number): TreeTask[] {
  let x = seed >>> 0 || 1;
  const rnd = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const root = 100;
  const k = new Kernel(root);
  k.procs.get(root)!.subreaper = true;
  k.fork(root, 101);
  let next = 102;
  for (let made = 1; made < count; ) {
    const live = [...k.procs].filter(([pid, p]) => !p.zombie && pid !== root).map(([pid]) => pid);
    if (live.length === 0) break;
    const who = live[rnd(live.length)]!;
    const op = rnd(10);
    try {
      if (op < 4) {
        k.fork(who, next++, rnd(2) === 1 && k.procs.get(who)!.parent !== root);
        made++;
      } else if (op < 6) k.setsid(who);
      else if (op < 7) k.procs.get(who)!.subreaper = rnd(2) === 1;
      else if (op < 8) {
        const other = live[rnd(live.length)]!;
        k.setpgid(who, rnd(2) === 1 ? who : k.procs.get(other)!.pgid);
      } else if (live.length > 2) {
        const parent = k.procs.get(who)!.parent;
        k.exit(who, op < 9 || parent === 0);
      }
    } catch {
      // EPERM of a setsid by a group leader, of a setpgid into another session: the program goes on, as session03 does
    }
  }
  return k.tree(root);
}
