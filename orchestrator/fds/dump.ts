// The fd table on dump: each fd of the task becomes a fdinfo entry pointing at a
// files.img entry that its kind (table.ts) writes. Two fds of one open file description
// (dup, fork) share the entry, found with kcmp. Each fd is looked at through a copy
// taken with pidfd_getfd, never through the task. A file of no kind is refused with
// "unsupported fd N: <what it is>", before anything is written.

import { fstatSync } from "node:fs";
import { constants as fsc } from "node:fs";
import { KCMP } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileTable, Fown } from "../dump/filetable.js";
import { listFds, parseFdinfo, procPath, readProc } from "../dump/proc.js";
import type { ShmemTable } from "../dump/shmem.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdFacts } from "./kind.js";
import { FD_KINDS } from "./table.js";
import { deviceNumbers } from "./tty.js";

export { UnsupportedFd };

const O_CLOEXEC = 0o2000000;

export interface FdTable {
  fdinfo: Record<string, unknown>[];
  /** the kinds' own images (pipe data, tty info) */
  images: ExtraImage[];
}

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

export function collectFds(pid: number, files: FileTable, shm: ShmemTable, shellJob: boolean, frozenAt: DumpContext["frozenAt"]): FdTable {
  const b = bridge();
  const dumpers = FD_KINDS.flatMap((k) => (k.dumper ? [k.dumper({ pid, files, shm, shellJob, frozenAt })] : []));
  const pidfd = b.pidfdOpen(pid);
  const fdinfo: Record<string, unknown>[] = [];
  const known: { fd: number; id: number; type: string }[] = [];
  try {
    for (const fd of listFds(pid)) {
      const info = parseFdinfo(readProc(pid, `fdinfo/${fd}`));
      const link = b.readlink(procPath(pid, `fd/${fd}`));
      const fdflags = info.flags & O_CLOEXEC ? 1 : 0;
      // The same open file description under another fd number: the same entry.
      const same = known.find((k) => b.kcmp(pid, pid, KCMP.FILE, k.fd, fd) === 0);
      if (same) {
        fdinfo.push({ id: same.id, flags: fdflags, type: same.type, fd });
        continue;
      }
      const copy = b.pidfdGetfd(pidfd, fd);
      try {
        const st = fstatSync(copy, { bigint: true });
        const facts: FdFacts = { pid, fd, copy, st, fmt: Number(st.mode) & fsc.S_IFMT, link, flags: info.flags & ~O_CLOEXEC, info, fown: () => owner(copy) };
        const kind = dumpers.find((d) => d.matches(facts));
        if (!kind) throw new UnsupportedFd(`unsupported fd ${fd}: ${whatItIs(facts)}`);
        const { id, type } = kind.dump(facts);
        known.push({ fd, id, type });
        fdinfo.push({ id, flags: fdflags, type, fd });
      } finally {
        b.close(copy);
      }
    }
  } finally {
    b.close(pidfd);
  }
  return { fdinfo, images: dumpers.flatMap((d) => d.images()) };
}
