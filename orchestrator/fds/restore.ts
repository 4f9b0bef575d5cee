// The fd table on restore (fdinfo-N.img + files.img): every entry is planned by its
// kind (table.ts) and checked before anything is made, the files in flight in sockets'
// queues too; install.ts then puts them in the tasks.
// --inherit-fd gives the task one of tscriu's own fds in place of a file of the images.
// An entry of a kind tscriu does not restore is refused at plan, naming the fd.

import { fstatSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import type { FdinfoEntry, FileEntry } from "../../images/dir.js";
import { readOptionalImage } from "../../images/io.js";
import { decodeImage } from "../../images/codec.js";
import type { ReadAhead } from "../read-ahead.js";
import type { ModuleLog } from "../log.js";
import { RestoreError } from "../restore/errors.js";
import type { FileSet } from "../restore/fileset.js";
import type { ShmTable } from "../restore/shmem.js";
import type { FdRestorer, FdSource, PlanContext } from "./kind.js";
import { FD_KINDS, kindOf } from "./table.js";

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

/** An optional image's entries: read ahead, or read now (undefined: not in the images). */
async function readOptional(dirSlash: string, name: string, ahead: ReadAhead | undefined): Promise<Record<string, unknown>[] | undefined> {
  // (the images dir with a slash after it: no path.join per connection's stream)
  const path = dirSlash + name;
  const bytes = await ahead?.take(name);
  return bytes ? decodeImage(bytes, path).entries : (await readOptionalImage(path))?.entries;
}

export interface FdOptions {
  shellJob: boolean;
  /** --tcp-established, --tcp-close */
  tcp?: { established: boolean; close: boolean };
  /** images read ahead (the connections' streams), taken by `optional` */
  readAhead?: ReadAhead | undefined;
  /** --ext-unix-sk: unix sockets connected to a named socket outside the tree connect to it again */
  extUnixSk?: boolean;
  /** --inherit-fd fd[N]:resource */
  inheritFds: readonly string[];
  /** the task's clocks at dump (timens-0.img) */
  clocks?: PlanContext["clocks"];
  /** every process of the images, zombies included */
  pids?: readonly number[];
  /** the threads of the images other than the leaders: TID -> its process */
  threads?: ReadonlyMap<number, number>;
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

  private constructor(dir: string, files: FileSet, shm: ShmTable, opts: FdOptions, log: ModuleLog, all: readonly FileEntry[]) {
    const optional = new Map<string, Promise<Record<string, unknown>[] | undefined>>();
    const prefix = join(dir, "/");
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
      threads: opts.threads ?? new Map(),
      fds: new Map(),
      clocks: opts.clocks,
      entries: (id) => byId.get(id) ?? [],
      openFile: (id) => this.openInFlight(id),
      optional: (name) => {
        let p = optional.get(name);
        if (!p) optional.set(name, (p = readOptional(prefix, name, opts.readAhead)));
        return p;
      },
    };
    this.inherit = opts.inheritFds.map(parseInheritFd);
  }

  /** `all`: files.img's entries, as the restore read them (the image is read and decoded once). */
  static create(dir: string, files: FileSet, shm: ShmTable, opts: FdOptions, log: ModuleLog, all: readonly FileEntry[]): FdPlanner {
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
    // The queues are filled with the files, before the threads it waits for exist.
    if (src.afterThreads) throw new Error(`file id ${id} (${src.describe}) is passed in a socket's queue: it can be made only once the threads exist, and tscriu does not restore it in a queue`);
    const made = this.opened.has(id);
    const fd = this.open(id, src);
    if (!made && this.inFlight.has(id) && src.pos !== undefined && src.pos > 0n) bridge().seekSet(fd, src.pos);
    return fd;
  }

  /** Every restorer made so far: they close what they made. */
  get all(): FdRestorer[] {
    return [...this.restorers.values()];
  }

  /** The --inherit-fd that names file `f`, if one does. */
  private async inherited(r: FdRestorer, f: FileEntry): Promise<{ fd: number; key: string } | undefined> {
    const keys = await r.inheritKeys(f);
    return this.inherit.find((i) => keys.includes(i.key));
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
    // (indexed: this loop runs once per fd, cold)
    for (let i = 0; i < sorted.length; i++) {
      const e = sorted[i]!;
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
      const inh = inherit.length ? await this.inherited(r, f) : undefined;
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
