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
/** Trees bigger than this are planned the plain way only. */
const MANY = 3000;

export function planTree(tasks: readonly TreeTask[], shellJob: boolean, taken: ReadonlySet<number>, spare: () => number): BuildStep[] {
  // Each process forked by its parent when it can be; when that leaves a session no one
  // place serves, each forked as deep as its session allows, so that the parents of a
  // session's members come to lie on one line below which its helper serves all; then
  // leaders (and helpers) made below the parents their members were handed to. The first
  // that makes the tree is taken; the first refusal is the one told.
  // The other ways cost up to the square of the tree's size: a big tree (or a hostile
  // image) is planned the plain way only.
  const ways = [{ deep: false, hosted: false }, { deep: true, hosted: false }, { deep: false, hosted: true }, { deep: true, hosted: true }];
  let first: unknown;
  for (const how of tasks.length > MANY ? ways.slice(0, 1) : ways) {
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
  /** `m` is `anc` or below it (walked up no higher than `anc`'s depth) */
  const under = (anc: Made, m: Made): boolean => {
    let x: Made | undefined = m;
    while (x && x.depth > anc.depth) x = made.get(x.up);
    return x === anc;
  };
  /** the processes that fork into each session (a leader born elsewhere into two), by depth; each session's depths in order */
  const forkers = new Map<number, { at: Map<number, Made[]>; depths: number[] }>();
  const forks = (n: Made): void => {
    for (const s of new Set([n.sid, n.born ?? n.sid])) {
      const f = forkers.get(s) ?? { at: new Map<number, Made[]>(), depths: [] };
      forkers.set(s, f);
      const same = f.at.get(n.depth);
      if (same) same.push(n);
      else {
        f.at.set(n.depth, [n]);
        let i = f.depths.length;
        while (i > 0 && f.depths[i - 1]! > n.depth) i--;
        f.depths.splice(i, 0, n.depth);
      }
    }
  };
  forks(made.get(root.pid)!);
  /** The process that can fork into session `s` below `p`: `p` itself, else the deepest. */
  const forker = (s: number, p: number): Made | undefined => {
    const pm = made.get(p)!;
    if (!deep && (pm.sid === s || pm.born === s) && pm.kind !== "group" && pm.kind !== "courier") return pm;
    const f = forkers.get(s);
    for (let i = (f?.depths.length ?? 0) - 1; i >= 0 && f!.depths[i]! >= pm.depth; i--) {
      const found = f!.at.get(f!.depths[i]!)!.find((m) => under(pm, m));
      if (found) return found;
    }
    return undefined;
  };
  const add = (m: Omit<Made, "depth" | "kids">, by: Made, session: number | undefined): Made => {
    const n: Made = { ...m, depth: made.get(m.up)!.depth + 1, kids: [] };
    made.set(n.pid, n);
    by.kids.push({ pid: n.pid, session });
    if (n.kind === "task" || n.kind === "session") forks(n);
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
  for (const t of tasks.slice(1)) {
    const all = children.get(t.ppid) ?? [];
    all.push(t);
    children.set(t.ppid, all);
  }
  // Where each process's subtree of the images begins and ends (preorder).
  const span = new Map<number, [number, number]>();
  const walk: [TreeTask, boolean][] = [[root, false]];
  for (let w = walk.pop(); w; w = walk.pop()) {
    const [t, done] = w;
    if (done) span.get(t.pid)![1] = span.size - 1;
    else {
      span.set(t.pid, [span.size, span.size]);
      walk.push([t, true], ...[...(children.get(t.pid) ?? [])].reverse().map((c): [TreeTask, boolean] => [c, false]));
    }
  }
  const inside = (pid: number, of: number): boolean => span.get(pid)![0] >= span.get(of)![0] && span.get(pid)![0] <= span.get(of)![1];
  const members = new Map<number, number[]>();
  for (const t of tasks) {
    const all = members.get(t.sid) ?? [];
    all.push(t.pid);
    members.set(t.sid, all);
  }
  // The first and last place (preorder) of a session's members: all inside a subtree or not.
  const reach = new Map<number, [number, number]>();
  for (const t of tasks) {
    const at = span.get(t.pid)![0];
    const r = reach.get(t.sid);
    reach.set(t.sid, r ? [Math.min(r[0], at), Math.max(r[1], at)] : [at, at]);
  }
  // A leader whose members were handed to parents of other sessions outside its subtree
  // (subreapers that got them), all on one line below its own parent, can be made below
  // them and hand the members up as a helper would, instead of those parents being born
  // in its session.
  const hostSets = new Map<number, Set<number>>();
  for (const t of hosted ? tasks : []) {
    const l = byPid.get(t.sid);
    if (l && l !== t && l !== root && byPid.get(t.ppid)!.sid !== l.pid && !inside(t.pid, l.pid)) hostSets.set(l.pid, (hostSets.get(l.pid) ?? new Set()).add(t.ppid));
  }
  const hosts = new Map([...hostSets].map(([l, at]) => [l, [...at]]));
  for (const [l, at] of hosts) {
    const line = at.every((h) => inside(h, byPid.get(l)!.ppid)) && at.some((low) => at.every((h) => inside(low, h)));
    if (!line) hosts.delete(l);
  }
  const hostsBySession = new Map<number, number[]>();
  const hostsOf = (s: number): number[] => {
    let at = hostsBySession.get(s);
    if (!at) hostsBySession.set(s, (at = [...new Set(members.get(s)!.filter((m) => m !== root.pid && byPid.get(byPid.get(m)!.ppid)!.sid !== s).map((m) => byPid.get(m)!.ppid))]));
    return at;
  };
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
    const [from, to] = reach.get(s)!;
    return low !== undefined ? !inside(low, l) : from < span.get(l)![0] || to > span.get(l)![1];
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
  // How many processes are in each group of each session, kept with `now`.
  const count = new Map<string, number>([[`${root.pgid}:${root.sid}`, 1]]);
  const groupIn = (g: number, s: number): boolean => (count.get(`${g}:${s}`) ?? 0) > 0;
  const moveTo = (pid: number, at: { sid: number; pgid: number }): void => {
    const was = now.get(pid);
    if (was) count.set(`${was.pgid}:${was.sid}`, count.get(`${was.pgid}:${was.sid}`)! - 1);
    now.set(pid, at);
    count.set(`${at.pgid}:${at.sid}`, (count.get(`${at.pgid}:${at.sid}`) ?? 0) + 1);
  };
  // A process that made a group and left it for another of its session: it makes its
  // group at its fork, and goes to the other once the members joined.
  const grouped = new Set(tasks.map((m) => `${m.pgid}:${m.sid}`));
  const movers = new Set(tasks.filter((t) => t.pgid !== t.pid && grouped.has(`${t.pid}:${t.sid}`)).map((t) => t.pid));
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
    moveTo(m.pid, at);
    // Then, in this order: the children of the session it is born in, its setsid, the
    // others, its exit (a helper's or courier's): on a stack, as a tree can be deep.
    const own = (k: { session: number | undefined }): boolean => m.born === undefined || k.session !== m.born;
    const next: Work[] = [...m.kids.filter((k) => !own(k)).map((k) => ({ m: made.get(k.pid)!, by: m })), ...(m.born !== undefined ? [{ setsid: m }] : []), ...m.kids.filter(own).map((k) => ({ m: made.get(k.pid)!, by: m })), { exit: m }];
    work.push(...next.reverse());
  };
  type Work = { m: Made; by: Made } | { setsid: Made } | { exit: Made };
  const r = made.get(root.pid)!;
  const work: Work[] = r.kids.map((k) => ({ m: made.get(k.pid)!, by: r })).reverse();
  for (let w = work.pop(); w; w = work.pop()) {
    if ("by" in w) make(w.m, w.by);
    else if ("setsid" in w) {
      steps.push({ op: "setsid", pid: w.setsid.pid });
      moveTo(w.setsid.pid, { sid: w.setsid.pid, pgid: w.setsid.pid });
    } else if (w.exit.kind === "courier" || w.exit.kind === "session" || w.exit.kind === "group") exits.push({ op: "exit", pid: w.exit.pid, reaper: w.exit.up, deliver: couriers.get(w.exit.pid) });
  }
  for (const j of [...late, ...moves]) {
    const t = byPid.get(j.pid)!;
    if (!groupIn(j.pgid, t.sid)) throw new TreeError(`pid ${t.pid} is in process group ${j.pgid}, which no process of its session ${t.sid} makes (its leader ${j.pgid} is ${byPid.has(j.pgid) ? `in session ${byPid.get(j.pgid)!.sid}, group ${byPid.get(j.pgid)!.pgid}` : "gone"})`, t.pid);
    steps.push({ op: "join", pid: t.pid, pgid: j.pgid });
    moveTo(t.pid, { sid: t.sid, pgid: j.pgid });
  }
  steps.push(...exits);
  for (const t of tasks) if (t.zombie) steps.push({ op: "die", pid: t.pid });
  return steps;
}
