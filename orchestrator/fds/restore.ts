// The fd table on restore (fdinfo-N.img + files.img): every entry is planned by its
// kind (table.ts) and checked before anything is made; then tscriu makes each open file
// description itself, the task takes a copy through pidfd_getfd and dup3s it to its
// number, and offsets and owners are set in the task (the description is shared).
// --inherit-fd gives the task one of tscriu's own fds in place of a file of the images.
// An entry of a kind tscriu does not restore is refused at plan, naming the fd.

import { fstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { F } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FdinfoEntry, FileEntry } from "../../images/dir.js";
import { readImage, readOptionalImage } from "../../images/io.js";
import type { ModuleLog } from "../log.js";
import { RestoreError } from "../restore/errors.js";
import type { FileSet } from "../restore/fileset.js";
import { LOOP_TABLE, NR, type Call, type Remote } from "../restore/remote.js";
import type { ShmTable } from "../restore/shmem.js";
import type { FdRestorer, FdSource, PlanContext } from "./kind.js";
import { FD_KINDS, kindOf } from "./table.js";

const SEEK_SET = 0;
const F_SETOWN_EX = 15;
const F_SETSIG = 10;
const O_CLOEXEC = 0o2000000;
/** The most fds a process can have (fs.nr_open; the kernel's default when unreadable). */
const NR_OPEN = (() => {
  try {
    return Number(readFileSync("/proc/sys/fs/nr_open", "utf8").trim()) || 1 << 20;
  } catch {
    return 1 << 20;
  }
})();

export interface FdPlan {
  fds: { fd: number; id: number; cloexec: boolean }[];
  sources: Map<number, FdSource>;
  maxFd: number;
  /** file ids whose afterInstall runs once every fd is installed, in this order */
  hooks: number[];
  /**
   * files in flight no task holds whose afterInstall runs in this task (an epoll adds its
   * targets by the task's numbers): installed for it, then closed again (criu's fake fd)
   */
  passed: number[];
}

export interface FdOptions {
  shellJob: boolean;
  /** --tcp-established, --tcp-close */
  tcp?: { established: boolean; close: boolean };
  /** --ext-unix-sk: unix sockets connected to a named socket outside the tree connect to it again */
  extUnixSk?: boolean;
  /** --inherit-fd fd[N]:resource */
  inheritFds: readonly string[];
  /** the task's clocks at dump (timens-0.img) */
  clocks?: PlanContext["clocks"];
  /** every process of the images, zombies included */
  pids?: readonly number[];
}

/** --inherit-fd fd[N]:resource as criu writes it. */
export function parseInheritFd(arg: string): { fd: number; key: string } {
  const m = /^fd\[(\d+)\]:(.+)$/.exec(arg);
  if (!m) throw new Error(`--inherit-fd ${arg}: expected fd[N]:resource`);
  return { fd: Number(m[1]), key: m[2]! };
}

/**
 * Plans the fd tables of every process of a restore, one process at a time. The kinds'
 * restorers are shared by all of them: a pipe whose ends two processes hold is one pipe,
 * an open file description two processes share (one files.img id) is opened once.
 */
export class FdPlanner {
  private readonly ctx: PlanContext;
  private readonly inherit: { fd: number; key: string }[];
  private readonly restorers = new Map<string, FdRestorer>();
  /**
   * Every open file description planned so far, by files.img id, for the whole tree: one
   * that several processes hold (inherited across fork) is planned once, by the first of
   * them, as it is made once. The kinds check it against that process's fd table (an
   * epoll's targets are that process's fd numbers, the one its dump looked in: criu's
   * and tscriu's dumps write a shared file with the first process of pstree.img that
   * holds it), and a kind that makes its files all at once must not see it twice.
   */
  private readonly planned = new Map<number, FdSource>();
  /** the process that planned each description first, with its fd table */
  private readonly plannedBy = new Map<number, { pid: number; fds: PlanContext["fds"] }>();
  /** descriptions no task holds, planned for a socket's queue (files in flight) */
  private readonly inFlight = new Set<number>();
  /** each process's plan, by pid: a file in flight may have to be set up in one */
  private readonly plans = new Map<number, FdPlan>();
  /** tscriu's fd of each description made so far, by files.img id, for the whole restore */
  private readonly opened = new Map<number, number>();

  private constructor(dir: string, files: FileSet, shm: ShmTable, opts: FdOptions, log: ModuleLog, all: FileEntry[]) {
    const optional = new Map<string, Promise<Record<string, unknown>[] | undefined>>();
    const byId = new Map<number, FileEntry[]>();
    for (const x of all) {
      const list = byId.get(x.id);
      if (list) list.push(x);
      else byId.set(x.id, [x]);
    }
    this.ctx = {
      pid: 0,
      dir,
      files,
      shm,
      shellJob: opts.shellJob,
      tcp: opts.tcp ?? { established: false, close: false },
      extUnixSk: opts.extUnixSk === true,
      log,
      tree: new Set(opts.pids ?? []),
      fds: new Map(),
      clocks: opts.clocks,
      entries: (id) => byId.get(id) ?? [],
      openFile: (id) => this.openInFlight(id),
      optional: (name) => {
        let p = optional.get(name);
        if (!p) optional.set(name, (p = readOptionalImage(join(dir, name)).then((img) => img?.entries)));
        return p;
      },
    };
    this.inherit = opts.inheritFds.map(parseInheritFd);
  }

  static async create(dir: string, files: FileSet, shm: ShmTable, opts: FdOptions, log: ModuleLog): Promise<FdPlanner> {
    const all = (await readImage(join(dir, "files.img"))).entries as FileEntry[];
    return new FdPlanner(dir, files, shm, opts, log, all);
  }

  /** Once every process is planned: the files in flight, then the kinds' checks across entries (a unix socket's peer among the tree's fds). */
  async finish(): Promise<void> {
    await this.planInFlight();
    for (const r of this.restorers.values()) await r.planned?.();
  }

  /**
   * The files passed in sockets' queues (sk-queues.img's SCM_RIGHTS) that no task holds:
   * each is planned as a task's fd would be, in the process that plans the socket whose
   * queue it is in (criu gives that task a fake fd of it). A socket in flight may carry
   * files in flight in its own queue: planned until none is new. No side effects.
   */
  private async planInFlight(): Promise<void> {
    const { ctx } = this;
    const img = join(ctx.dir, "sk-queues.img");
    const packets = (await ctx.optional("sk-queues.img")) ?? [];
    for (let more = true; more; ) {
      more = false;
      for (const p of packets) {
        const idFor = Number(p["id_for"]);
        const holder = this.plannedBy.get(idFor);
        for (const scm of (p["scm"] as { type: number; rights: number[] }[] | undefined) ?? []) {
          for (const id of scm.rights) {
            if (this.planned.has(id)) continue;
            // A queue of a socket no one plans (yet) is the unix kind's to refuse.
            if (!holder) continue;
            const ino = ctx.entries(idFor).find((x) => x.usk)?.usk?.ino;
            const what = `a file in flight in the queue of ${ino === undefined ? `file id ${idFor}` : `unix socket ${ino} (file id ${idFor})`}`;
            const fail = (msg: string): RestoreError => new RestoreError("plan", holder.pid, msg, { file: img });
            const all = ctx.entries(id);
            if (all.length === 0 && !ctx.files.files.has(id)) throw fail(`a message queued for ${ino === undefined ? `file id ${idFor}` : `unix socket ${ino} (file id ${idFor})`} passes file id ${id} (SCM_RIGHTS), which files.img does not have`);
            // A terminal and the REG naming its device share an id: the REG only names it.
            const f = all.find((x) => x.type !== "REG" && kindOf(String(x.type))) ?? all[0] ?? ctx.files.files.get(id)!;
            const type = String(f.type);
            const kind = kindOf(type);
            if (!kind) throw fail(`${what} (file id ${id}): restoring ${type} files is not supported`);
            ctx.pid = holder.pid;
            ctx.fds = holder.fds;
            let r = this.restorers.get(type);
            if (!r) this.restorers.set(type, (r = kind.restorer(ctx)));
            const src = await r.plan(f, what);
            // Opened once the task has its fds: a file no task holds is never opened so.
            if (src.late) throw fail(`${what} (file id ${id}, ${src.describe}) is held by no task; restoring it in flight is not supported`);
            // Set up inside the task that holds the queue, as the task that held it did.
            if (src.afterInstall) this.plans.get(holder.pid)?.passed.push(id);
            this.planned.set(id, src);
            this.plannedBy.set(id, holder);
            this.inFlight.add(id);
            more = true;
          }
        }
      }
    }
  }

  source(id: number): FdSource {
    const src = this.planned.get(id);
    if (!src) throw new Error(`file id ${id} was not planned`);
    return src;
  }

  /** tscriu's fd of description `id`, made once for the whole restore (shared with the tasks' fds of it). */
  open(id: number, src: FdSource): number {
    let fd = this.opened.get(id);
    if (fd === undefined) this.opened.set(id, (fd = src.open()));
    return fd;
  }

  /** A file passed in a queue: made if no task made it yet, at its offset when no task will set it. */
  private openInFlight(id: number): number {
    const src = this.planned.get(id);
    if (!src) throw new Error(`file id ${id} is passed in a socket's queue, but was not planned`);
    const made = this.opened.has(id);
    const fd = this.open(id, src);
    if (!made && this.inFlight.has(id) && src.pos !== undefined && src.pos > 0n) bridge().seekSet(fd, src.pos);
    return fd;
  }

  /** Every restorer made so far: they close what they made. */
  get all(): FdRestorer[] {
    return [...this.restorers.values()];
  }

  /** Reads and checks the fd table of process `pid` (read from `fdinfoName`). No side effects. */
  async plan(pid: number, fdinfo: readonly FdinfoEntry[], fdinfoName = "fdinfo.img"): Promise<FdPlan> {
    const { ctx, inherit } = this;
    // Messages name the process being planned; its fd table is the one kinds look into.
    ctx.pid = pid;
    ctx.fds = new Map(fdinfo.map((e) => [e.fd, { id: e.id, type: String(e.type) }]));
    for (const i of inherit) {
      try {
        fstatSync(i.fd);
      } catch {
        throw new RestoreError("plan", pid, `--inherit-fd fd[${i.fd}]:${i.key}: tscriu has no fd ${i.fd}`);
      }
    }
    const plan: FdPlan = { fds: [], sources: new Map(), maxFd: -1, hooks: [], passed: [] };
    this.plans.set(pid, plan);
    const rank = new Map<number, number>();
    /** the descriptions this process is the first to hold: their afterInstall hooks run in it */
    const own = new Set<number>();
    const sorted = [...fdinfo].sort((a, b) => a.fd - b.fd);
    const fdinfoFile = join(ctx.dir, fdinfoName);
    for (const [i, e] of sorted.entries()) {
      // An fd number the kernel cannot have, or one listed twice (the second dup3 would
      // silently replace the first).
      if (!Number.isInteger(e.fd) || e.fd < 0 || e.fd >= NR_OPEN) throw new RestoreError("plan", pid, `fd ${e.fd} is not an fd number (0..${NR_OPEN - 1})`, { file: fdinfoFile });
      if (i > 0 && sorted[i - 1]!.fd === e.fd) throw new RestoreError("plan", pid, `fd ${e.fd} is listed twice`, { file: fdinfoFile });
      plan.fds.push({ fd: e.fd, id: e.id, cloexec: (e.flags & 1) !== 0 });
      plan.maxFd = Math.max(plan.maxFd, e.fd);
      if (plan.sources.has(e.id)) continue;
      const known = this.planned.get(e.id);
      if (known) {
        plan.sources.set(e.id, known);
        continue;
      }
      const what = `fd ${e.fd}`;
      const type = String(e.type);
      const f = ctx.entries(e.id).find((x) => x.type === e.type) ?? ctx.files.files.get(e.id);
      if (!f) throw new RestoreError("plan", pid, `${what} refers to file id ${e.id}, which files.img does not have`, { file: join(ctx.dir, "files.img") });
      const kind = kindOf(type);
      if (!kind) throw new RestoreError("plan", pid, `${what}: restoring ${type} files is not supported`, { file: join(ctx.dir, "files.img") });
      rank.set(e.id, FD_KINDS.indexOf(kind));
      let r = this.restorers.get(type);
      if (!r) this.restorers.set(type, (r = kind.restorer(ctx)));
      const keys = inherit.length ? await r.inheritKeys(f) : [];
      const inh = inherit.find((i) => keys.includes(i.key));
      if (inh) {
        const src = { describe: `--inherit-fd fd[${inh.fd}]:${inh.key}`, open: () => inh.fd };
        plan.sources.set(e.id, src);
        this.planned.set(e.id, src);
        continue;
      }
      const src = await r.plan(f, what);
      checkOwner(src, what, (msg) => new RestoreError("plan", pid, msg, { file: join(ctx.dir, "files.img") }));
      plan.sources.set(e.id, src);
      this.planned.set(e.id, src);
      this.plannedBy.set(e.id, { pid, fds: ctx.fds });
      own.add(e.id);
    }
    plan.hooks = hookOrder(plan, own, rank, (msg) => new RestoreError("plan", pid, msg, { file: join(ctx.dir, "files.img") }));
    // A damaged image is an error even where no fd needs it (as criu, which reads them all).
    for (const k of FD_KINDS) for (const name of k.images ?? []) await ctx.optional(name);
    return plan;
  }
}

/** The kernel's _NSIG: F_SETSIG takes 0..64. */
const NSIG = 64;
/** F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP */
const OWNER_TYPES = 3;

/** An owner F_SETOWN_EX and F_SETSIG would refuse at restore: refused at plan instead. */
function checkOwner(src: FdSource, what: string, fail: (msg: string) => Error): void {
  const o = src.fown;
  if (!o) return;
  if (o.signum > NSIG) throw fail(`${what} (${src.describe}): owner signal ${o.signum} (at most ${NSIG})`);
  if (o.pid_type >= OWNER_TYPES) throw fail(`${what} (${src.describe}): owner pid type ${o.pid_type} (0 thread, 1 process, 2 process group)`);
  if (o.pid > 0x3fffffff) throw fail(`${what} (${src.describe}): owner pid ${o.pid}`);
}

/**
 * The order of the afterInstall hooks of the descriptions `own` (those the process is the
 * first to hold): kinds in the table's order (epoll last), then by fd; a hook whose
 * `after` have not run yet waits for them. An `after` that names no file of the task, or
 * a cycle (the kernel allows no epoll loop), is an error.
 */
function hookOrder(plan: FdPlan, own: ReadonlySet<number>, rank: ReadonlyMap<number, number>, fail: (msg: string) => Error): number[] {
  const firstFd = new Map<number, number>();
  for (const { fd, id } of plan.fds) if (!firstFd.has(id)) firstFd.set(id, fd);
  const pending = [...plan.sources]
    .filter(([id, src]) => own.has(id) && src.afterInstall !== undefined)
    .map(([id]) => id)
    .sort((a, b) => rank.get(a)! - rank.get(b)! || firstFd.get(a)! - firstFd.get(b)!);
  for (const id of pending) {
    for (const dep of plan.sources.get(id)!.after ?? []) {
      if (!plan.sources.has(dep)) throw fail(`fd ${firstFd.get(id)} (${plan.sources.get(id)!.describe}) waits for file id ${dep}, which no fd of the task has`);
    }
  }
  const hooked = new Set(pending);
  const done = new Set<number>();
  const order: number[] = [];
  while (pending.length > 0) {
    const i = pending.findIndex((id) => (plan.sources.get(id)!.after ?? []).every((d) => done.has(d) || !hooked.has(d)));
    if (i < 0) throw fail(`${pending.map((id) => `fd ${firstFd.get(id)}`).join(", ")} wait for each other (${plan.sources.get(pending[0]!)!.describe})`);
    const [id] = pending.splice(i, 1);
    done.add(id!);
    order.push(id!);
  }
  return order;
}

/** tscriu's fds of the open file descriptions, made on first use, one per files.img id for the whole restore. */
export class FdMaker {
  private readonly hooked = new Set<number>();

  /** True the first time: a description two processes share is set up inside a task once. */
  firstHook(id: number): boolean {
    if (this.hooked.has(id)) return false;
    this.hooked.add(id);
    return true;
  }

  constructor(private readonly planner: FdPlanner) {}

  make(id: number, src: FdSource): number {
    return this.planner.open(id, src);
  }

  /** The plan of description `id` (a file in flight no task holds). */
  source(id: number): FdSource {
    return this.planner.source(id);
  }

  /** Process `pid` was just made, before it forks any other (a session leader takes its terminal). */
  processMade(pid: number, remote: Remote): void {
    for (const r of this.planner.all) r.processMade?.(pid, remote);
  }

  /** Every process exists, no fd is installed yet: the kinds' work across tasks (/dev/tty opened in its session). */
  beforeFiles(tasks: ReadonlyMap<number, Remote>): void {
    for (const r of this.planner.all) r.beforeFiles?.(tasks);
  }

  /** Every task is about to run: the kinds' last changes (TCP repair mode off, the network unlocked). */
  beforeResume(): void {
    for (const r of this.planner.all) r.beforeResume?.();
  }

  /** Closes what the kinds made (the tasks have their copies). */
  closeAll(): void {
    for (const r of this.planner.all) r.close();
  }
}

/** Calls per remote batch while installing fds (about one per fd). */
const INSTALL_BATCH = 1024;
/** Bytes of the trampoline's data area one batch may use for owners (8 each), below Remote.loop's table. */
const OWNER_AREA = LOOP_TABLE;

/**
 * Installs every fd in the task at its number, with offsets and owners; then what each
 * kind does inside the task once all of them are there (the plan's hooks).
 *
 * The task takes tscriu's fd of a description with pidfd_getfd, which gives it the lowest
 * free number, then dup3s it to its own number. The stopped stub opens nothing by itself,
 * so that lowest number is known beforehand from its fd table: the installs of many fds
 * go in one run of the trampoline's syscall loop (Remote.loop: one ptrace stop for a
 * hundred calls, where a JavaScript round trip per fd cost 20 times criu's time), and
 * each number pidfd_getfd gave is checked against the one expected. A file of a task's
 * /proc directory (FdSource.late) is opened only after every other fd is installed: a task
 * holding its own /proc/self/fdinfo/N has it opened by tscriu once the task has fd N.
 */
export function restoreFds(remote: Remote, plan: FdPlan, maker: FdMaker): void {
  const open = new Set(readdirSync(`/proc/${remote.pid}/fd`).map(Number));
  const first = new Map<number, number>();
  let calls: Call[] = [];
  /** index in `calls` of each pidfd_getfd, and the number it must give */
  let expected: { at: number; fd: number; what: string }[] = [];
  let area = 0;
  const flush = (): void => {
    const res = remote.loop(calls);
    for (const e of expected) {
      if (Number(res[e.at]) !== e.fd) throw new RestoreError("files", remote.pid, `pidfd_getfd of ${e.what} gave fd ${String(res[e.at])}, not the lowest free fd ${e.fd}`);
    }
    calls = [];
    expected = [];
    area = 0;
  };
  // No number below `low` is free (a close lowers it again).
  let low = 0;
  const lowestFree = (): number => {
    while (open.has(low)) low++;
    return low;
  };
  // Files that look at the task as it is when opened come after the others, installed by then.
  const late = plan.fds.filter((x) => plan.sources.get(x.id)!.late === true);
  let lateStarted = false;
  for (const { fd, id, cloexec } of [...plan.fds.filter((x) => plan.sources.get(x.id)!.late !== true), ...late]) {
    const src = plan.sources.get(id)!;
    if (src.late === true && !lateStarted) {
      flush();
      lateStarted = true;
    }
    const local = maker.make(id, src);
    const what = `fd ${fd} (${src.describe})`;
    const shared = first.get(id);
    if (shared !== undefined) {
      calls.push({ what: `dup3 of ${what}`, nr: NR.dup3, args: [shared, fd, cloexec ? O_CLOEXEC : 0] });
      open.add(fd);
    } else {
      const got = lowestFree();
      expected.push({ at: calls.length, fd: got, what });
      calls.push({ what: `pidfd_getfd of ${what}`, nr: NR.pidfd_getfd, args: [remote.pidfdNumber, local, 0] });
      open.add(got);
      if (got !== fd) {
        calls.push({ what: `dup3 of ${what}`, nr: NR.dup3, args: [got, fd, cloexec ? O_CLOEXEC : 0] });
        calls.push({ what: `close(${got})`, nr: NR.close, args: [got] });
        open.delete(got);
        low = Math.min(low, got);
        open.add(fd);
      } else if (!cloexec) {
        calls.push({ what: `fcntl(F_SETFD) of ${what}`, nr: NR.fcntl, args: [fd, F.SETFD, 0] });
      }
      first.set(id, fd);
      // (settle may flush the batch to make room for an owner: its calls go after)
      const then = settle(fd, src, remote, what, () => {
        if (area + 8 > OWNER_AREA) flush();
        area += 8;
        return area - 8;
      });
      calls.push(...then);
    }
    if (calls.length >= INSTALL_BATCH) flush();
  }
  flush();
  for (const id of plan.hooks) if (maker.firstHook(id)) plan.sources.get(id)!.afterInstall!(remote, first.get(id)!);
  for (const id of plan.passed) {
    if (!maker.firstHook(id)) continue;
    const src = plan.sources.get(id) ?? maker.source(id);
    const what = `file in flight ${src.describe}`;
    const fd = remote.takeFd(maker.make(id, src), what);
    src.afterInstall!(remote, fd);
    remote.call(`close(${fd}) of ${what}`, NR.close, [fd]);
  }
}

/** Offset and owner of a freshly installed description; `place` gives room for 8 bytes in the data area. */
function settle(fd: number, src: FdSource, remote: Remote, what: string, place: () => number): Call[] {
  const calls: Call[] = [];
  if (src.pos !== undefined && src.pos > 0n) calls.push({ what: `lseek of ${what} to ${src.pos}`, nr: NR.lseek, args: [fd, src.pos, SEEK_SET] });
  const fown = src.fown;
  if (fown && fown.pid !== 0) {
    const owner = Buffer.alloc(8);
    owner.writeInt32LE(fown.pid_type === 2 ? 2 : fown.pid_type === 1 ? 1 : 0, 0);
    owner.writeInt32LE(fown.pid, 4);
    calls.push({ what: `fcntl(F_SETOWN_EX) of ${what}`, nr: NR.fcntl, args: [fd, F_SETOWN_EX, remote.write(place(), owner)] });
  }
  if (fown && fown.signum !== 0) calls.push({ what: `fcntl(F_SETSIG) of ${what}`, nr: NR.fcntl, args: [fd, F_SETSIG, fown.signum] });
  return calls;
}
