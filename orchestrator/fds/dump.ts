// The fd table on dump: each fd of the task becomes a fdinfo entry pointing at a
// files.img entry that its kind (table.ts) writes. Two fds of one open file description
// (dup, fork) share the entry, found with kcmp. Each fd is looked at through a copy
// taken with pidfd_getfd, never through the task. A file of no kind is refused with
// "unsupported fd N: <what it is>", before anything is written.

import { fstatSync } from "node:fs";
import { constants as fsc } from "node:fs";
import { KCMP } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { Fown } from "../dump/filetable.js";
import { listFds, parseFdinfo, procPath, readProc, type FdInfo } from "../dump/proc.js";
import { LockDump } from "./locks.js";
import { closeFds, fownOf, UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts } from "./kind.js";
import { FD_KINDS } from "./table.js";
import { deviceNumbers } from "./tty-facts.js";
import { getsockoptInts } from "./sockopts.js";
import { SO, SOL_SOCKET } from "../../host-bridge/constants.js";

const DOMAIN = [[SOL_SOCKET, SO.DOMAIN]] as const;

export { UnsupportedFd };

const O_CLOEXEC = 0o2000000;
const O_PATH = 0o10000000;

const ownerOut = new Int32Array(5);

function owner(fd: number): Fown {
  bridge().fdOwner(fd, ownerOut);
  return fownOf(ownerOut);
}

/** What an fd of no kind is, for the refusal. */
function whatItIs(f: FdFacts): string {
  if (f.fmt === fsc.S_IFSOCK) return `socket (${f.link})`;
  if (f.fmt === fsc.S_IFCHR || f.fmt === fsc.S_IFBLK) {
    const [maj, min] = deviceNumbers(f.st.rdev);
    return `${f.fmt === fsc.S_IFCHR ? "character" : "block"} device ${maj}:${min} (${f.link})`;
  }
  return f.link;
}

/** An open file description met so far: the first fd that had it, its entry's id and type. */
interface Known {
  pid: number;
  fd: number;
  id: number;
  type: string;
}

/**
 * The open file descriptions met so far, by device and inode, each list in kcmp's order.
 * Every eventfd, epoll, timerfd and signalfd shares one anonymous inode, so a lookup by
 * inode alone would compare a new one with all of them (10,000 fds: 10^7 kcmp calls);
 * kcmp orders files (1: the first is less, 2: greater), so a binary search takes log n.
 */
class Descriptions {
  private readonly byInode = new Map<string, Known[]>();

  /** The description `pid`'s fd `fd` (of inode `key`) shares with one met before, or where it goes in the list. */
  find(key: string, pid: number, fd: number): Known | { at: number; list: Known[] } {
    let list = this.byInode.get(key);
    if (!list) this.byInode.set(key, (list = []));
    let lo = 0;
    let hi = list.length;
    const b = bridge();
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const k = list[mid]!;
      const order = b.kcmp(pid, k.pid, KCMP.FILE, fd, k.fd);
      if (order === 0) return k;
      if (order === 1) hi = mid;
      else if (order === 2) lo = mid + 1;
      else return this.linear(list, pid, fd);
    }
    return { at: lo, list };
  }

  /** Without an order (kcmp says 3): one by one. */
  private linear(list: Known[], pid: number, fd: number): Known | { at: number; list: Known[] } {
    const b = bridge();
    return list.find((k) => b.kcmp(pid, k.pid, KCMP.FILE, fd, k.fd) === 0) ?? { at: list.length, list };
  }
}

/** What the dump of every process's fd table shares: the kinds, and every open file description met so far. */
export interface FdDumpState {
  dumpers: FdDumper[];
  known: Descriptions;
  /** "pid:id" of every open file description met in each process */
  inProcess: Set<string>;
  locks: LockDump;
  /** tscriu's fds received from sockets' queues, open until the dump is over */
  inFlight: number[];
}

export function newFdDumpState(base: Omit<DumpContext, "inFlight">): FdDumpState {
  const state: FdDumpState = { dumpers: [], known: new Descriptions(), inProcess: new Set(), locks: new LockDump(base.fileLocks), inFlight: [] };
  const ctx: DumpContext = { ...base, inFlight: (fds, holder) => dumpInFlight(state, fds, holder) };
  state.dumpers = FD_KINDS.flatMap((k) => (k.dumper ? [k.dumper(ctx)] : []));
  return state;
}

/** The dump is over (see FdDumper.release); every kind is told, the first error is thrown once all are. */
export function releaseFds(state: FdDumpState, outcome: "resume" | "kill" | "stop"): void {
  closeFds(state.inFlight);
  let first: Error | undefined;
  for (const d of state.dumpers) {
    try {
      d.release?.(outcome);
    } catch (e) {
      first ??= e as Error;
    }
  }
  if (first !== undefined) throw first;
}

/** Every fd of the tree is dumped: the kinds complete what depends on other files (FdDumper.settle). */
export function settleFds(state: FdDumpState): void {
  for (const d of state.dumpers) d.settle?.();
}

/** The kinds' own images (pipe data, tty info), for the whole tree. */
export function fdImages(state: FdDumpState): ExtraImage[] {
  return [...state.dumpers.flatMap((d) => d.images()), ...state.locks.images()];
}

/** A socket's address family as a kind knows it already (FdDumper.knownFamily), if one does. */
function knownFamily(state: FdDumpState, ino: number): number | undefined {
  for (let i = 0; i < state.dumpers.length; i++) {
    const family = state.dumpers[i]!.knownFamily?.(ino);
    if (family !== undefined) return family;
  }
  return undefined;
}

/**
 * The files.img entry of the open file description `pid`'s fd `fd` holds (tscriu's copy:
 * `copy`): one met before (kcmp), or a new one its kind writes. `inFlight` when the fd is
 * tscriu's own, received from a socket's queue.
 */
function describe(state: FdDumpState, pid: number, fd: number, copy: number, info: FdInfo, holder: number): { id: number; type: string; known: boolean; link: string } {
  const inFlight = holder !== pid;
  const st = fstatSync(copy, { bigint: true });
  // A socket's link is its inode's name (sockfs names every socket so): no readlink for a server's thousand connections.
  const link = (Number(st.mode) & fsc.S_IFMT) === fsc.S_IFSOCK ? `socket:[${st.ino}]` : bridge().readlink(procPath(pid, `fd/${fd}`));
  // The same open file description under another fd number, or in another process
  // (dup, fork), or in flight: the same entry. kcmp only where device and inode agree.
  const found = state.known.find(`${st.dev}:${st.ino}`, pid, fd);
  if ("id" in found) return { id: found.id, type: found.type, known: true, link };
  const fmt = Number(st.mode) & fsc.S_IFMT;
  let domain: number | undefined;
  const facts: FdFacts = {
    pid,
    fd,
    copy,
    st,
    fmt,
    link,
    flags: info.flags & ~O_CLOEXEC,
    info,
    inFlight,
    holder,
    // An O_PATH fd has no owner to ask about (F_GETOWN_EX: EBADF); criu writes none.
    fown: () => (info.flags & O_PATH ? { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 } : owner(copy)),
    domain: () => (domain ??= fmt === fsc.S_IFSOCK ? (knownFamily(state, Number(st.ino)) ?? getsockoptInts(copy, DOMAIN)[0]!) : -1),
  };
  const kind = state.dumpers.find((d) => d.matches(facts));
  if (!kind) throw new UnsupportedFd(`unsupported ${inFlight ? "file in flight" : `fd ${fd}`}: ${whatItIs(facts)}`);
  const { id, type } = kind.dump(facts);
  found.list.splice(found.at, 0, { pid, fd, id, type });
  return { id, type, known: false, link };
}

/**
 * The files.img entries of fds received from a socket's queue (SCM_RIGHTS, criu's
 * dump_my_file): each is a file of the dump like a task's, the same entry as a task's fd
 * of the same description. tscriu keeps the fds open until the dump is over: kcmp
 * compares later fds with them by number.
 */
function dumpInFlight(state: FdDumpState, fds: readonly number[], holder: number): number[] {
  state.inFlight.push(...fds);
  return fds.map((fd) => describe(state, process.pid, fd, fd, parseFdinfo(readProc(process.pid, `fdinfo/${fd}`)), holder).id);
}

/**
 * The fdinfo entries of process `pid`; files.img entries go to the shared file table.
 * `fdinfoAhead`: the fds' /proc fdinfo texts read ahead (readFdinfoAhead).
 */
export function collectFds(pid: number, state: FdDumpState, fdinfoAhead?: ReadonlyMap<string, Buffer>): Record<string, unknown>[] {
  const b = bridge();
  const pidfd = b.pidfdOpen(pid);
  const fdinfo: Record<string, unknown>[] = [];
  try {
    const fds = listFds(pid).map((fd) => ({ fd, info: parseFdinfo(fdinfoAhead?.get(String(fd))?.toString("utf8") ?? readProc(pid, `fdinfo/${fd}`)) }));
    for (const d of state.dumpers) d.begin?.(pid, fds);
    // (indexed: the walk's code runs once per fd, cold)
    for (let i = 0; i < fds.length; i++) {
      const { fd, info } = fds[i]!;
      const fdflags = info.flags & O_CLOEXEC ? 1 : 0;
      const copy = b.pidfdGetfd(pidfd, fd);
      try {
        const { id, type, known, link } = describe(state, pid, fd, copy, info, pid);
        const locks = info.lines.get("lock");
        if (locks) state.locks.note(pid, fd, link, locks, !known, !state.inProcess.has(`${pid}:${id}`));
        state.inProcess.add(`${pid}:${id}`);
        fdinfo.push({ id, flags: fdflags, type, fd });
      } finally {
        b.close(copy);
      }
    }
  } finally {
    b.close(pidfd);
  }
  return fdinfo;
}
