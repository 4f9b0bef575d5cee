// epoll instances (EVENTPOLL entries, criu's eventpoll.c): the file's flags and one
// target per fdinfo "tfd:" line -- the target's fd number, events (EPOLLET, EPOLLONESHOT,
// EPOLLEXCLUSIVE included; a oneshot item that fired shows only its flag bits and is
// restored disarmed) and data, with the target's device, inode and offset as criu writes them.
//
// An item is keyed by (file, fd number) as they were at EPOLL_CTL_ADD: the number may
// since have been closed, or name another file. Dump asks the kernel (kcmp
// KCMP_EPOLL_TFD) whether the task's fd of that number is still the target; when it is
// not, the target is looked for among the task's other fds and recorded under the number
// that holds it now (criu does the same). A target the task no longer holds is refused.
//
// Restore: tscriu makes the epoll; once every fd of the task is in place the task itself
// adds the targets (remote epoll_ctl, afterInstall) -- the items must be keyed by the
// task's fd numbers, not tscriu's -- after the hooks of the other kinds (timers armed)
// and after any epoll it watches. An epoll several processes share (made before a fork)
// is planned and filled by the first of them in pstree.img, the one its dump looked in:
// a child may have closed its copy of a target. Readiness is the kernel's to work out on EPOLL_CTL_ADD:
// a target ready at dump is ready again, and an edge-triggered one reports once more.

import { EPOLL, O, PIDFD } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { listFds } from "../dump/proc.js";
import type { ModuleLog } from "../log.js";
import { LOOP_TABLE, NR, type Call, type Remote } from "../restore/remote.js";
import { badEntry, isAnon, MadeFds, part } from "./anon.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

/** struct epoll_event is packed on x86_64: u32 events, u64 data. */
const EVENT_SIZE = 12;
/** epoll_ctl calls per Remote.loop: their events fit the data area below the loop's table. */
const BATCH = Math.floor(LOOP_TABLE / EVENT_SIZE);

const TFD_LINE = /^(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)(?:\s+pos:(\d+)\s+ino:([0-9a-f]+)\s+sdev:([0-9a-f]+))?/;

class EpollDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return isAnon(f, "[eventpoll]");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const seen = new Map<number, number>();
    const tfd: Record<string, unknown>[] = [];
    for (const line of f.info.lines.get("tfd") ?? []) {
      const m = TFD_LINE.exec(line);
      if (!m) throw new Error(`fd ${f.fd} (${f.link}): fdinfo has "tfd: ${line}", which tscriu does not read`);
      const n = Number(m[1]);
      // The how-manieth item of this fd number (kcmp's toff): fdinfo lists them in the kernel's order.
      const toff = seen.get(n) ?? 0;
      seen.set(n, toff + 1);
      const fd = this.holder(f, n, toff, m[5]);
      if (tfd.some((t) => t["tfd"] === fd)) throw new UnsupportedFd(`unsupported fd ${f.fd}: ${f.link} watches the file of fd ${fd} twice, under fd ${n} too, which is closed or another file now`);
      const where = m[4] === undefined ? {} : { dev: Number.parseInt(m[6]!, 16), inode: BigInt(`0x${m[5]}`), pos: BigInt(m[4]) };
      tfd.push({ id: 0, tfd: fd, events: Number.parseInt(m[2]!, 16) >>> 0, data: BigInt(`0x${m[3]}`), ...where });
    }
    const id = this.ctx.files.newId();
    this.ctx.files.add({ type: "EVENTPOLL", id, epfd: { id, flags: f.flags, fown: f.fown(), tfd } });
    return { id, type: "EVENTPOLL" };
  }

  /**
   * The task's fd that is target `tfd` (the toff-th of that number) of epoll f: `tfd` itself
   * unless it was closed or reused. An epoll in flight is looked at in the task that holds
   * the queue (criu takes its numbers unchecked), which adds its targets on restore.
   */
  private holder(f: FdFacts, tfd: number, toff: number, ino: string | undefined): number {
    const b = bridge();
    const same = (fd: number): boolean => {
      try {
        return b.kcmpEpollTfd(f.holder, fd, f.pid, f.fd, tfd, toff) === 0;
      } catch (e) {
        // EBADF: no such fd in the task
        if (isNativeError(e) && (e.code === "EBADF" || e.code === "ENOENT")) return false;
        throw e;
      }
    };
    if (same(tfd)) return tfd;
    const other = listFds(f.holder).find((fd) => fd !== tfd && same(fd));
    if (other === undefined) throw new UnsupportedFd(`unsupported ${f.inFlight ? `file in flight (in a queue of pid ${f.holder})` : `fd ${f.fd}`}: ${f.link} watches a file the task no longer holds (added as fd ${tfd}${ino ? `, inode 0x${ino}` : ""})`);
    return other;
  }

  images(): ExtraImage[] {
    return [];
  }
}

type Target = { tfd: number; events: number; data: bigint };

class EpollRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  plan(e: FileEntry, what: string): Promise<FdSource> {
    const ep = part(this.ctx, e.epfd, "EVENTPOLL", what);
    const after = new Set<number>();
    const numbers = new Set<number>();
    for (const t of ep.tfd ?? []) {
      const target = this.ctx.fds.get(t.tfd);
      if (!target) throw badEntry(this.ctx, what, `epoll target fd ${t.tfd} is not an fd of the task`);
      if (target.id === e.id) throw badEntry(this.ctx, what, `an epoll that watches itself (fd ${t.tfd})`);
      if (numbers.has(t.tfd)) throw badEntry(this.ctx, what, `epoll target fd ${t.tfd} is listed twice`);
      numbers.add(t.tfd);
      if (target.type === "EVENTPOLL") after.add(target.id);
      // A thread pidfd of a thread other than a leader is a stand-in until the threads
      // exist (pidfd.ts), long after the epolls are filled: the watch would be on the stand-in.
      const pidfd = target.type === "PIDFD" ? this.ctx.entries(target.id).find((x) => x.type === "PIDFD")?.pidfd : undefined;
      if (pidfd && pidfd.flags & PIDFD.THREAD && this.ctx.threads.has(pidfd.nspid)) throw badEntry(this.ctx, what, `epoll target fd ${t.tfd} is a thread pidfd of TID ${pidfd.nspid}, which tscriu does not restore in an epoll`);
      // What EPOLL_CTL_ADD would refuse in the task, refused here: a regular file (EPERM),
      // EPOLLEXCLUSIVE on an epoll or with other events than in, out, err, hup (EINVAL).
      const reg = target.type === "REG" ? this.ctx.entries(target.id).find((x) => x.type === "REG")?.reg : undefined;
      if (reg?.mode !== undefined && (reg.mode & 0o170000) === 0o100000) throw badEntry(this.ctx, what, `epoll target fd ${t.tfd} is a regular file (${reg.name}), which epoll cannot watch`);
      if (t.events & EPOLL.EXCLUSIVE) {
        if (target.type === "EVENTPOLL") throw badEntry(this.ctx, what, `epoll target fd ${t.tfd} is an epoll watched with EPOLLEXCLUSIVE`);
        if ((t.events & ~EXCLUSIVE_OK) >>> 0) throw badEntry(this.ctx, what, `epoll target fd ${t.tfd}: EPOLLEXCLUSIVE with events 0x${(t.events >>> 0).toString(16)} (only IN, OUT, ERR, HUP, WAKEUP, ET)`);
      }
    }
    const targets: Target[] = (ep.tfd ?? []).map((t) => ({ tfd: t.tfd, events: t.events, data: t.data }));
    return Promise.resolve({
      describe: `epoll (${targets.length} target${targets.length === 1 ? "" : "s"})`,
      fown: ep.fown,
      after: [...after],
      open: () => this.made.add(bridge().epollCreate1(O.CLOEXEC), ep.flags),
      afterInstall: (remote: Remote, fd: number) => addTargets(remote, fd, targets, this.ctx.log),
    });
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

/** What a target may wait for (ADD adds EPOLLERR and EPOLLHUP itself): IN PRI OUT RDNORM RDBAND WRNORM WRBAND MSG RDHUP. */
const ANY_EVENT = 0x1 | 0x2 | 0x4 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000;
const FLAG_BITS = EPOLL.ONESHOT | EPOLL.ET | EPOLL.WAKEUP | EPOLL.EXCLUSIVE;
/** The kernel's EPOLLEXCLUSIVE_OK_BITS: IN OUT ERR HUP WAKEUP ET EXCLUSIVE. */
const EXCLUSIVE_OK = 0x1 | 0x4 | 0x8 | 0x10 | EPOLL.WAKEUP | EPOLL.ET | EPOLL.EXCLUSIVE;

/**
 * A oneshot item that fired: the kernel left it only its flag bits. EPOLL_CTL_ADD cannot
 * make it so (it always adds EPOLLERR|EPOLLHUP), but letting it fire can: it is added
 * first, alone, waiting for any event, and taken with an epoll_wait. A target ready for
 * nothing keeps waiting for errors and hangups.
 */
function addFired(remote: Remote, epfd: number, t: Target, log: ModuleLog): void {
  const ev = Buffer.alloc(EVENT_SIZE);
  ev.writeUInt32LE((t.events | ANY_EVENT) >>> 0, 0);
  ev.writeBigUInt64LE(t.data, 4);
  const at = remote.write(0, ev);
  remote.call(`epoll_ctl(${epfd}, EPOLL_CTL_ADD, ${t.tfd}) of a fired oneshot`, NR.epoll_ctl, [epfd, EPOLL.CTL_ADD, t.tfd, at]);
  if (remote.call(`epoll_wait(${epfd}) to fire the oneshot of fd ${t.tfd}`, NR.epoll_wait, [epfd, remote.write(EVENT_SIZE, Buffer.alloc(EVENT_SIZE)), 1, 0]) === 1n) return;
  ev.writeUInt32LE(t.events >>> 0, 0);
  remote.call(`epoll_ctl(${epfd}, EPOLL_CTL_MOD, ${t.tfd})`, NR.epoll_ctl, [epfd, EPOLL.CTL_MOD, t.tfd, remote.write(0, ev)]);
  log.warn(`epoll fd ${epfd}: the oneshot item of fd ${t.tfd} fired before the dump; its target is ready for nothing now, so it stays armed for EPOLLERR and EPOLLHUP`);
}

/** EPOLL_CTL_ADD of every target, run in the task (fired oneshots first, one by one). */
function addTargets(remote: Remote, epfd: number, targets: readonly Target[], log: ModuleLog): void {
  const fired = (t: Target): boolean => (t.events & EPOLL.ONESHOT) !== 0 && (t.events & ~FLAG_BITS) === 0;
  for (const t of targets.filter(fired)) addFired(remote, epfd, t, log);
  const rest = targets.filter((t) => !fired(t));
  for (let i = 0; i < rest.length; i += BATCH) {
    const chunk = rest.slice(i, i + BATCH);
    const events = Buffer.alloc(chunk.length * EVENT_SIZE);
    chunk.forEach((t, j) => {
      events.writeUInt32LE(t.events >>> 0, j * EVENT_SIZE);
      events.writeBigUInt64LE(t.data, j * EVENT_SIZE + 4);
    });
    const at = remote.write(0, events);
    const calls: Call[] = chunk.map((t, j) => ({
      what: `epoll_ctl(${epfd}, EPOLL_CTL_ADD, ${t.tfd}, events 0x${(t.events >>> 0).toString(16)})`,
      nr: NR.epoll_ctl,
      args: [epfd, EPOLL.CTL_ADD, t.tfd, at + BigInt(j * EVENT_SIZE)],
    }));
    // one ptrace stop for the whole chunk
    remote.loop(calls);
  }
}

export const epollKind: FdKind = {
  type: "EVENTPOLL",
  describe: "epoll instances, their targets added by the task once every fd is in place",
  dumper: (ctx) => new EpollDumper(ctx),
  restorer: (ctx) => new EpollRestorer(ctx),
};
