// How the process tree is made so that every process ends in its session and group under
// its parent. The kernel lets a process only inherit its forker's session or make its own
// (setsid), join a group of its own session (setpgid), and move a process to another
// parent only by CLONE_PARENT (its forker's parent) or, when its parent exits, to the
// nearest child subreaper above. A tree whose sessions were made by processes that are gone,
// or whose members were forked before their parent's setsid, or reparented after deaths,
// is made again as criu does, with helpers: a session helper takes the PID of a gone session
// leader and makes that session; a group helper does the same for a gone group leader; a
// courier (a spare PID) is forked in the right session below the process's parent, forks
// the process, and exits while the parent is a child subreaper for the moment, which hands
// the process over. A session leader whose children are in another session is born in that
// session (criu's born_sid), forks them, then makes its own. What no arrangement of these
// makes is refused by name. Pure: the steps are executed by restore.ts.

/** One process of the images as the tree needs it. */
export interface TreeTask {
  pid: number;
  /** 0 for the root */
  ppid: number;
  sid: number;
  pgid: number;
  zombie: boolean;
  /** forked with CLONE_FILES: only its parent can fork it */
  sharesFiles: boolean;
}

/** What a process does right after its fork. */
export type Then = "setsid" | "setpgid" | "inherit" | { join: number };

export type BuildStep =
  /** `by` forks `pid` (CLONE_PARENT: `by`'s parent becomes its parent) */
  | { op: "fork"; pid: number; by: number; parent: boolean; kind: "task" | "session" | "group" | "courier"; then: Then }
  /** a session leader born in another session makes its own, once it forked the children of that one */
  | { op: "setsid"; pid: number }
  /** setpgid(0, pgid) once the group exists */
  | { op: "join"; pid: number; pgid: number }
  /** a helper or courier exits, `reaper` (its parent) reaps it; its children go to `deliver`, a child subreaper for the moment */
  | { op: "exit"; pid: number; reaper: number; deliver: number | undefined }
  /** a zombie of the images dies, under its parent by now */
  | { op: "die"; pid: number };

/** Why the tree cannot be made: the message and the process it is about. */
export class TreeError extends Error {
  constructor(
    message: string,
    readonly pid: number,
  ) {
    super(message);
  }
}

interface Made {
  pid: number;
  kind: "task" | "session" | "group" | "courier" | "root";
  /** its parent once every process is forked */
  up: number;
  depth: number;
  /** the session it forks in before its setsid (a leader born elsewhere), if any */
  born?: number | undefined;
  /** its session at the end (for helpers and couriers: the one they are in) */
  sid: number;
  /** the processes it forks, each with the session it must be in then */
  kids: { pid: number; session: number | undefined }[];
}

/**
 * The steps that make `tasks` (pstree order, the root first; `shellJob`: the root keeps
 * tscriu's session) with their sessions, groups and parents. `spare` gives a free PID for
 * a courier; `taken` holds every PID and TID of the images.
 */
export function planTree(tasks: readonly TreeTask[], shellJob: boolean, taken: ReadonlySet<number>, spare: () => number): BuildStep[] {
  // Each process forked by its parent when it can be; when that leaves a session no one
  // place serves, each forked as deep as its session allows, so that the parents of a
  // session's members come to lie on one line below which its helper serves all; then
  // leaders (and helpers) made below the parents their members were handed to. The first
  // that makes the tree is taken; the first refusal is the one told.
  let first: unknown;
  for (const how of [{ deep: false, hosted: false }, { deep: true, hosted: false }, { deep: false, hosted: true }, { deep: true, hosted: true }]) {
    try {
      return tryTree(tasks, shellJob, taken, spare, how);
    } catch (e) {
      if (!(e instanceof TreeError)) throw e;
      first ??= e;
    }
  }
  throw first;
}

function tryTree(tasks: readonly TreeTask[], shellJob: boolean, taken: ReadonlySet<number>, spare: () => number, { deep, hosted }: { deep: boolean; hosted: boolean }): BuildStep[] {
  const root = tasks[0]!;
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  if (!shellJob && root.sid !== root.pid) throw new TreeError(`the task's session leader (sid ${root.sid}) is not in the images: restore it as a shell job (--shell-job) to put it into tscriu's session`, root.pid);
  if (!shellJob && root.pgid !== root.pid && root.pgid !== root.sid) throw new TreeError(`the task's process group leader (pgid ${root.pgid}) is not in the images`, root.pid);
  for (const t of tasks) {
    if (t.sid === t.pid && t.pgid !== t.pid) throw new TreeError(`pid ${t.pid} leads session ${t.sid} but is in group ${t.pgid}, which the kernel does not allow`, t.pid);
    const p = byPid.get(t.ppid);
    if (p?.zombie) throw new TreeError(`pid ${t.pid}'s parent ${t.ppid} is a zombie`, t.pid);
  }
  const made = new Map<number, Made>([[root.pid, { pid: root.pid, kind: "root", up: 0, depth: 0, sid: root.sid, kids: [] }]]);
  const leads = (t: TreeTask): boolean => t !== root && t.sid === t.pid;
  const couriers = new Map<number, number>();
  const under = (anc: number, m: Made): boolean => {
    for (let x: Made | undefined = m; x; x = made.get(x.up)) if (x.pid === anc) return true;
    return false;
  };
  /** the processes that fork into each session (a leader born elsewhere into two) */
  const forkers = new Map<number, Made[]>([[root.sid, [made.get(root.pid)!]]]);
  /** The process that can fork into session `s` below `p`: `p` itself, else the deepest. */
  const forker = (s: number, p: number): Made | undefined => {
    const all = forkers.get(s) ?? [];
    if (!deep && all.some((m) => m.pid === p)) return made.get(p);
    let best: Made | undefined;
    for (const m of all) if ((!best || m.depth > best.depth) && under(p, m)) best = m;
    return best;
  };
  const add = (m: Omit<Made, "depth" | "kids">, by: Made, session: number | undefined): Made => {
    const n: Made = { ...m, depth: made.get(m.up)!.depth + 1, kids: [] };
    made.set(n.pid, n);
    by.kids.push({ pid: n.pid, session });
    if (n.kind === "task" || n.kind === "session") for (const s of new Set([n.sid, n.born ?? n.sid])) forkers.set(s, [...(forkers.get(s) ?? []), n]);
    return n;
  };
  const groupHelpers = new Set<number>();
  /** Makes `t` from `by` (in session `s`, undefined: any), under its parent. */
  const place = (t: TreeTask, by: Made, s: number | undefined, born: number | undefined, below = false): void => {
    if (t.sharesFiles && by.pid !== t.ppid) throw new TreeError(`pid ${t.pid} shares its parent's fd table but must be forked by another process to get its session ${t.sid}; that is not supported`, t.pid);
    // A group whose leader is gone is made by a helper with its id, in the member's session.
    if (!leads(t) && t.pgid !== t.pid && t.pgid !== t.sid && !byPid.has(t.pgid) && !groupHelpers.has(t.pgid)) {
      if (taken.has(t.pgid)) throw new TreeError(`pid ${t.pid}'s process group ${t.pgid} is a thread's id`, t.pid);
      groupHelpers.add(t.pgid);
      add({ pid: t.pgid, kind: "group", up: by.pid, sid: t.sid }, by, s);
    }
    if (by.pid === t.ppid || (by.up === t.ppid && !below)) {
      add({ pid: t.pid, kind: "task", up: t.ppid, sid: t.sid, born }, by, s);
      return;
    }
    const c = spare();
    couriers.set(c, t.ppid);
    const cm = add({ pid: c, kind: "courier", up: by.pid, sid: s ?? by.sid }, by, s);
    add({ pid: t.pid, kind: "task", up: c, sid: t.sid, born }, cm, s);
  };
  const { hosts, hostsOf, wants } = shapeOf(tasks, hosted);
  const needs = (t: TreeTask): number[] => wants.get(t.pid)!;
  const tryPlace = (t: TreeTask): boolean => {
    if (!leads(t)) {
      const by = forker(t.sid, t.ppid);
      if (by) place(t, by, t.sid, undefined);
      return by !== undefined;
    }
    const above = [t.ppid, ...(hosts.get(t.pid) ?? [])].map((h) => made.get(h));
    if (above.some((h) => !h)) return false;
    const base = above.reduce((a, b) => (b!.depth > a!.depth ? b : a))!.pid;
    const want = needs(t);
    if (want.length === 0) {
      place(t, made.get(base)!, undefined, undefined, true);
      return true;
    }
    for (const s of want) {
      const by = forker(s, base);
      if (by) {
        place(t, by, s, s, base !== t.ppid);
        return true;
      }
    }
    return false;
  };
  let pending = tasks.slice(1);
  while (pending.length > 0) {
    const before = pending.length;
    pending = pending.filter((t) => !(made.has(t.ppid) && tryPlace(t)));
    if (pending.length < before) continue;
    const stuck = pending.filter((t) => made.has(t.ppid));
    // A session whose leader is gone: its helper goes below the deepest parent that waits for it.
    const gone = stuck.flatMap((t) => (leads(t) ? needs(t) : [t.sid]).filter((s) => !byPid.has(s) && !made.has(s)).map((s) => ({ s, t })));
    if (gone.length > 0) {
      // Best once every parent of its members that is of another session is made: below them all.
      const { s, t } = gone.find((g) => hostsOf(g.s).every((h) => made.has(h))) ?? gone[0]!;
      if (taken.has(s)) throw new TreeError(`pid ${t.pid}'s session ${s} is a thread's id`, t.pid);
      const at = [...gone.filter((g) => g.s === s).map((g) => g.t.ppid), ...hostsOf(s)].flatMap((h) => made.get(h) ?? []);
      const deepest = at.reduce((a, b) => (b.depth > a.depth ? b : a));
      add({ pid: s, kind: "session", up: deepest.pid, sid: s }, deepest, undefined);
      continue;
    }
    const leader = stuck.find(leads);
    if (leader) {
      place(leader, made.get(leader.ppid)!, undefined, undefined);
      pending = pending.filter((t) => t !== leader);
      continue;
    }
    const t = stuck[0] ?? pending[0]!;
    throw new TreeError(`pid ${t.pid} is in session ${t.sid}, but no process of that session can be made below its parent ${t.ppid} (the session's leader ${t.sid} is ${byPid.has(t.sid) ? "in another branch of the tree" : "not in the images and its helper is in another branch"})`, t.pid);
  }
  return sequence(tasks, made, couriers);
}

/** What the images' tree says of its sessions before anything is placed. */
interface Shape {
  /** a leader made below parents of its members outside its subtree (hosted strategy) */
  hosts: Map<number, number[]>;
  /** the parents, of other sessions, of a session's members */
  hostsOf: (s: number) => number[];
  /** the sessions from outside a leader's subtree its children need: it is born in one */
  wants: Map<number, number[]>;
}

function shapeOf(tasks: readonly TreeTask[], hosted: boolean): Shape {
  const root = tasks[0]!;
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  const children = new Map<number, TreeTask[]>();
  for (const t of tasks.slice(1)) children.set(t.ppid, [...(children.get(t.ppid) ?? []), t]);
  // Where each process's subtree of the images begins and ends (preorder).
  const span = new Map<number, [number, number]>();
  const number = (t: TreeTask): void => {
    const from = span.size;
    span.set(t.pid, [from, from]);
    for (const c of children.get(t.pid) ?? []) number(c);
    span.get(t.pid)![1] = span.size - 1;
  };
  number(root);
  const inside = (pid: number, of: number): boolean => span.get(pid)![0] >= span.get(of)![0] && span.get(pid)![0] <= span.get(of)![1];
  const members = new Map<number, number[]>();
  for (const t of tasks) members.set(t.sid, [...(members.get(t.sid) ?? []), t.pid]);
  // A leader whose members were handed to parents of other sessions outside its subtree
  // (subreapers that got them), all on one line below its own parent, can be made below
  // them and hand the members up as a helper would, instead of those parents being born
  // in its session.
  const hosts = new Map<number, number[]>();
  for (const t of hosted ? tasks : []) {
    const l = byPid.get(t.sid);
    if (l && l !== t && l !== root && byPid.get(t.ppid)!.sid !== l.pid && !inside(t.pid, l.pid)) hosts.set(l.pid, [...new Set([...(hosts.get(l.pid) ?? []), t.ppid])]);
  }
  for (const [l, at] of hosts) {
    const line = at.every((h) => inside(h, byPid.get(l)!.ppid)) && at.some((low) => at.every((h) => inside(low, h)));
    if (!line) hosts.delete(l);
  }
  const hostsOf = (s: number): number[] => [...new Set(members.get(s)!.filter((m) => m !== root.pid && byPid.get(byPid.get(m)!.ppid)!.sid !== s).map((m) => byPid.get(m)!.ppid))];
  // So is a gone leader's helper (hosted strategy): below the lowest of those parents
  // when they lie on one line.
  const lowest = new Map<number, number>();
  for (const s of hosted ? members.keys() : []) {
    const at = hostsOf(s);
    const low = at.find((l) => at.every((h) => inside(l, h)));
    if (!byPid.has(s) && low !== undefined) lowest.set(s, low);
  }
  /** Session `s` is made outside `l`'s subtree: by its leader there, or, gone, for members there. */
  const outside = (s: number, l: number): boolean => {
    if (byPid.has(s)) return !inside(s, l) && !(hosts.get(s) ?? []).some((h) => inside(h, l));
    const low = lowest.get(s);
    return low !== undefined ? !inside(low, l) : members.get(s)!.some((m) => !inside(m, l));
  };
  // The sessions from outside that a leader's children are in or are born in (a leader
  // child forks its own before its setsid): the leader is born in one of them. A session
  // made inside its subtree is made below it.
  const wants = new Map<number, number[]>();
  for (const t of [...tasks].reverse()) {
    const all = (children.get(t.pid) ?? []).flatMap((c) => (c.sid === c.pid ? (wants.get(c.pid) ?? []) : [c.sid]));
    wants.set(t.pid, [...new Set(all.filter((s) => s !== t.pid && outside(s, t.pid)))]);
  }
  return { hosts, hostsOf, wants };
}

/** The steps in the order of making: each process's forks, its late setsid among them; then the late joins, the exits, the zombies' deaths. */
function sequence(tasks: readonly TreeTask[], made: Map<number, Made>, couriers: Map<number, number>): BuildStep[] {
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  const root = tasks[0]!;
  const now = new Map<number, { sid: number; pgid: number }>([[root.pid, { sid: root.sid, pgid: root.pgid }]]);
  const steps: BuildStep[] = [];
  const late: { pid: number; pgid: number }[] = [];
  const exits: BuildStep[] = [];
  const groupIn = (g: number, s: number): boolean => [...now.values()].some((x) => x.pgid === g && x.sid === s);
  // A process that made a group and left it for another of its session: it makes its
  // group at its fork, and goes to the other once the members joined.
  const movers = new Set(tasks.filter((t) => t.pgid !== t.pid && tasks.some((m) => m.pgid === t.pid && m.sid === t.sid)).map((t) => t.pid));
  const moves: { pid: number; pgid: number }[] = [];
  const make = (m: Made, by: Made): void => {
    const at = { ...now.get(by.pid)! };
    const t = byPid.get(m.pid);
    let then: Then = "inherit";
    if (m.born !== undefined && at.sid !== m.born) throw new TreeError(`pid ${m.pid} would be born in session ${at.sid}, not ${m.born}`, m.pid);
    if (m.kind === "session") then = "setsid";
    else if (m.kind === "group") then = "setpgid";
    else if (t && m.kind === "task") {
      if (t.sid === t.pid && m.born === undefined) then = "setsid";
      else if (t.sid !== t.pid) {
        if (at.sid !== t.sid) throw new TreeError(`pid ${t.pid} would be forked in session ${at.sid}, not ${t.sid}`, t.pid);
        if (movers.has(t.pid)) moves.push({ pid: t.pid, pgid: t.pgid });
        if (t.pgid === t.pid || movers.has(t.pid)) then = "setpgid";
        else if (t.pgid === at.pgid) then = "inherit";
        else if (groupIn(t.pgid, t.sid)) then = { join: t.pgid };
        else late.push({ pid: t.pid, pgid: t.pgid });
      }
    }
    steps.push({ op: "fork", pid: m.pid, by: by.pid, parent: m.up !== by.pid, kind: m.kind === "root" ? "task" : m.kind, then });
    if (then === "setsid") Object.assign(at, { sid: m.pid, pgid: m.pid });
    else if (then === "setpgid") at.pgid = m.pid;
    else if (typeof then === "object") at.pgid = then.join;
    now.set(m.pid, at);
    const own = (k: { session: number | undefined }): boolean => m.born === undefined || k.session !== m.born;
    for (const k of m.kids.filter((k) => !own(k))) make(made.get(k.pid)!, m);
    if (m.born !== undefined) {
      steps.push({ op: "setsid", pid: m.pid });
      now.set(m.pid, { sid: m.pid, pgid: m.pid });
    }
    for (const k of m.kids.filter(own)) make(made.get(k.pid)!, m);
    if (m.kind === "courier" || m.kind === "session" || m.kind === "group") exits.push({ op: "exit", pid: m.pid, reaper: m.up, deliver: couriers.get(m.pid) });
  };
  const r = made.get(root.pid)!;
  for (const k of r.kids) make(made.get(k.pid)!, r);
  for (const j of [...late, ...moves]) {
    const t = byPid.get(j.pid)!;
    if (!groupIn(j.pgid, t.sid)) throw new TreeError(`pid ${t.pid} is in process group ${j.pgid}, which no process of its session ${t.sid} makes (its leader ${j.pgid} is ${byPid.has(j.pgid) ? `in session ${byPid.get(j.pgid)!.sid}, group ${byPid.get(j.pgid)!.pgid}` : "gone"})`, t.pid);
    steps.push({ op: "join", pid: t.pid, pgid: j.pgid });
    now.get(t.pid)!.pgid = j.pgid;
  }
  steps.push(...exits);
  for (const t of tasks) if (t.zombie) steps.push({ op: "die", pid: t.pid });
  return steps;
}
