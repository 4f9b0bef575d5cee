// Installing the planned fd tables (restore.ts plans them): tscriu makes each open file
// description once for the whole restore (FdMaker), the task takes a copy through
// pidfd_getfd and dup3s it to its number, offsets and owners are set in the task, then
// what each kind does inside the task once all of its fds are there.

import { readdirSync } from "node:fs";
import { F } from "../../host-bridge/constants.js";
import { RestoreError } from "../restore/errors.js";
import { LOOP_TABLE, NR, type Call, type Remote } from "../restore/remote.js";
import type { FdSource } from "./kind.js";
import type { FdPlan, FdPlanner } from "./restore.js";

const SEEK_SET = 0;
const F_SETOWN_EX = 15;
const F_SETSIG = 10;
const O_CLOEXEC = 0o2000000;

/** A task's fd that holds a stand-in until the threads exist (FdSource.afterThreads). */
interface StandIn {
  remote: Remote;
  fd: number;
  cloexec: boolean;
  /** above the task's fds: where its pidfd of tscriu goes while it takes the real one */
  above: number;
}

/** tscriu's fds of the open file descriptions, made on first use, one per files.img id for the whole restore. */
export class FdMaker {
  private readonly hooked = new Set<number>();
  /** the descriptions installed as stand-ins, by files.img id, with every task's fd that holds one */
  private readonly standIns = new Map<number, { src: FdSource; holders: StandIn[] }>();

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

  /** Task fd `holder.fd` holds the stand-in of description `id` (restoreFds). */
  holdsStandIn(id: number, src: FdSource, holder: StandIn): void {
    let known = this.standIns.get(id);
    if (!known) this.standIns.set(id, (known = { src, holders: [] }));
    known.holders.push(holder);
  }

  /**
   * Every thread of every process exists: each description that waited for them is made
   * (FdSource.afterThreads) and put in place of its stand-in at each fd that holds it, the
   * task taking it as at install (pidfd_getfd) and dup3ing it over the stand-in, which keeps
   * the fd's number and close-on-exec flag. A table shared by processes (CLONE_FILES) was
   * filled by one of them, which replaces it for all. The stand-in itself goes once
   * tscriu closes its copy (closeAll).
   */
  afterThreads(): void {
    for (const { src, holders } of this.standIns.values()) {
      const local = src.afterThreads!();
      for (const h of holders) {
        const what = `fd ${h.fd} (${src.describe})`;
        h.remote.openPidfd(h.above);
        const got = h.remote.takeFd(local, what);
        h.remote.loop([
          { what: `dup3 of ${what} over its stand-in`, nr: NR.dup3, args: [got, h.fd, h.cloexec ? O_CLOEXEC : 0] },
          { what: `close(${got})`, nr: NR.close, args: [got] },
          ...settle(h.fd, src, h.remote, () => what, () => 0),
        ]);
        h.remote.closePidfd();
      }
    }
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
  let expected: { at: number; fd: number; what: () => string }[] = [];
  let area = 0;
  const flush = (): void => {
    const res = remote.loop(calls);
    for (const e of expected) {
      if (Number(res[e.at]) !== e.fd) throw new RestoreError("files", remote.pid, `pidfd_getfd of ${e.what()} gave fd ${String(res[e.at])}, not the lowest free fd ${e.fd}`);
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
    // (the calls' words made only for an error: four template strings per fd, a thousand fds)
    const what = (): string => `fd ${fd} (${src.describe})`;
    const shared = first.get(id);
    if (shared !== undefined) {
      calls.push({ what: () => `dup3 of ${what()}`, nr: NR.dup3, args: [shared, fd, cloexec ? O_CLOEXEC : 0] });
      open.add(fd);
      if (src.afterThreads) maker.holdsStandIn(id, src, { remote, fd, cloexec, above: Math.max(3, plan.maxFd + 1) });
    } else {
      const got = lowestFree();
      expected.push({ at: calls.length, fd: got, what });
      calls.push({ what: () => `pidfd_getfd of ${what()}`, nr: NR.pidfd_getfd, args: [remote.pidfdNumber, local, 0] });
      open.add(got);
      if (got !== fd) {
        calls.push({ what: () => `dup3 of ${what()}`, nr: NR.dup3, args: [got, fd, cloexec ? O_CLOEXEC : 0] });
        calls.push({ what: () => `close(${got})`, nr: NR.close, args: [got] });
        open.delete(got);
        low = Math.min(low, got);
        open.add(fd);
      } else if (!cloexec) {
        calls.push({ what: () => `fcntl(F_SETFD) of ${what()}`, nr: NR.fcntl, args: [fd, F.SETFD, 0] });
      }
      first.set(id, fd);
      if (src.afterThreads) maker.holdsStandIn(id, src, { remote, fd, cloexec, above: Math.max(3, plan.maxFd + 1) });
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
function settle(fd: number, src: FdSource, remote: Remote, what: () => string, place: () => number): Call[] {
  const calls: Call[] = [];
  if (src.pos !== undefined && src.pos > 0n) calls.push({ what: () => `lseek of ${what()} to ${src.pos}`, nr: NR.lseek, args: [fd, src.pos, SEEK_SET] });
  const fown = src.fown;
  if (fown && fown.pid !== 0) {
    const owner = Buffer.alloc(8);
    owner.writeInt32LE(fown.pid_type === 2 ? 2 : fown.pid_type === 1 ? 1 : 0, 0);
    owner.writeInt32LE(fown.pid, 4);
    calls.push({ what: () => `fcntl(F_SETOWN_EX) of ${what()}`, nr: NR.fcntl, args: [fd, F_SETOWN_EX, remote.write(place(), owner)] });
  }
  if (fown && fown.signum !== 0) calls.push({ what: () => `fcntl(F_SETSIG) of ${what()}`, nr: NR.fcntl, args: [fd, F_SETSIG, fown.signum] });
  return calls;
}
