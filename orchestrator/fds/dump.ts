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
import { listFds, parseFdinfo, procPath, readProc } from "../dump/proc.js";
import { LockDump } from "./locks.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts } from "./kind.js";
import { FD_KINDS } from "./table.js";
import { deviceNumbers } from "./tty.js";

export { UnsupportedFd };

const O_CLOEXEC = 0o2000000;

function owner(fd: number): Fown {
  const o = bridge().fdOwner(fd);
  // An fd without an owner keeps zeros, as criu writes them.
  if (o.pid === 0) return { uid: 0, euid: 0, signum: o.signum, pid_type: 0, pid: 0 };
  return { uid: o.uid, euid: o.euid, signum: o.signum, pid_type: o.pidType, pid: o.pid };
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

/** What the dump of every process's fd table shares: the kinds, and every open file description met so far. */
export interface FdDumpState {
  dumpers: FdDumper[];
  known: { pid: number; fd: number; id: number; type: string; key: string }[];
  /** "pid:id" of every open file description met in each process */
  inProcess: Set<string>;
  locks: LockDump;
}

export function newFdDumpState(ctx: DumpContext): FdDumpState {
  return { dumpers: FD_KINDS.flatMap((k) => (k.dumper ? [k.dumper(ctx)] : [])), known: [], inProcess: new Set(), locks: new LockDump(ctx.fileLocks) };
}

/** The dump is over (see FdDumper.release); every kind is told, the first error is thrown once all are. */
export function releaseFds(state: FdDumpState, outcome: "resume" | "kill" | "stop"): void {
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

/** The kinds' own images (pipe data, tty info), for the whole tree. */
export function fdImages(state: FdDumpState): ExtraImage[] {
  return [...state.dumpers.flatMap((d) => d.images()), ...state.locks.images()];
}

/** The fdinfo entries of process `pid`; files.img entries go to the shared file table. */
export function collectFds(pid: number, state: FdDumpState): Record<string, unknown>[] {
  const b = bridge();
  const pidfd = b.pidfdOpen(pid);
  const fdinfo: Record<string, unknown>[] = [];
  try {
    for (const fd of listFds(pid)) {
      const info = parseFdinfo(readProc(pid, `fdinfo/${fd}`));
      const link = b.readlink(procPath(pid, `fd/${fd}`));
      const fdflags = info.flags & O_CLOEXEC ? 1 : 0;
      const copy = b.pidfdGetfd(pidfd, fd);
      try {
        const st = fstatSync(copy, { bigint: true });
        // The same open file description under another fd number, or in another process
        // (dup, fork): the same entry. kcmp only where device and inode agree.
        const key = `${st.dev}:${st.ino}`;
        const same = state.known.find((k) => k.key === key && b.kcmp(k.pid, pid, KCMP.FILE, k.fd, fd) === 0);
        const locks = info.lines.get("lock");
        if (same) {
          if (locks) state.locks.note(pid, fd, link, locks, false, !state.inProcess.has(`${pid}:${same.id}`));
          state.inProcess.add(`${pid}:${same.id}`);
          fdinfo.push({ id: same.id, flags: fdflags, type: same.type, fd });
          continue;
        }
        const facts: FdFacts = { pid, fd, copy, st, fmt: Number(st.mode) & fsc.S_IFMT, link, flags: info.flags & ~O_CLOEXEC, info, fown: () => owner(copy) };
        const kind = state.dumpers.find((d) => d.matches(facts));
        if (!kind) throw new UnsupportedFd(`unsupported fd ${fd}: ${whatItIs(facts)}`);
        const { id, type } = kind.dump(facts);
        if (locks) state.locks.note(pid, fd, link, locks, true, true);
        state.inProcess.add(`${pid}:${id}`);
        state.known.push({ pid, fd, id, type, key });
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
