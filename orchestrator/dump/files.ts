// The fd table: each fd of the task becomes a fdinfo entry pointing at a files.img
// entry. Supported: regular files and directories (unlinked ones as ghosts), memfds and
// shared anonymous memory opened through /proc (MEMFD, shmem.ts), memory character
// devices (/dev/null, /dev/zero, ...: REG as criu), pipes and FIFOs with their unread data
// (tee from a pidfd_getfd copy, never consumed), terminals with --shell-job. Any other
// kind is refused with "unsupported fd N: <kind>".

import { fstatSync, openSync, closeSync } from "node:fs";
import { constants as fsc } from "node:fs";
import { F, KCMP } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { peekPipe } from "../../host-bridge/pipe.js";
import { type FileTable, type Fown } from "./filetable.js";
import { listFds, parseFdinfo, procPath, readProc } from "./proc.js";
import { ShmemTable } from "./shmem.js";
import { ttyFile, type TtyState } from "./tty.js";

const O_CLOEXEC = 0o2000000;
const MEM_MAJOR = 1;

export interface PipeData {
  pipeId: number;
  fifo: boolean;
  data: Buffer;
  size: number;
}

export interface FdTable {
  fdinfo: Record<string, unknown>[];
  pipeData: PipeData[];
}

export class UnsupportedFd extends Error {}

function major(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
function minor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

export function isTtyMajor(maj: number): boolean {
  return maj === 4 || maj === 5 || (maj >= 136 && maj <= 143) || (maj >= 128 && maj <= 135);
}

function owner(fd: number): Fown {
  const o = bridge().fdOwner(fd);
  // An fd without an owner keeps zeros, as criu writes them.
  if (o.pid === 0) return { uid: 0, euid: 0, signum: o.signum, pid_type: 0, pid: 0 };
  return { uid: o.uid, euid: o.euid, signum: o.signum, pid_type: o.pidType, pid: o.pid };
}

export function collectFds(pid: number, files: FileTable, shm: ShmemTable, shellJob: boolean, tty: TtyState): FdTable {
  const b = bridge();
  const pidfd = b.pidfdOpen(pid);
  const fdinfo: Record<string, unknown>[] = [];
  const pipeData: PipeData[] = [];
  const seenPipes = new Set<number>();
  const known: { fd: number; id: number; type: string }[] = [];
  try {
    for (const fd of listFds(pid)) {
      const info = parseFdinfo(readProc(pid, `fdinfo/${fd}`));
      const link = b.readlink(procPath(pid, `fd/${fd}`));
      const fdflags = info.flags & O_CLOEXEC ? 1 : 0;
      const flags = info.flags & ~O_CLOEXEC;
      // The same open file description under another fd number: the same entry.
      const same = known.find((k) => b.kcmp(pid, pid, KCMP.FILE, k.fd, fd) === 0);
      if (same) {
        fdinfo.push({ id: same.id, flags: fdflags, type: same.type, fd });
        continue;
      }
      const copy = b.pidfdGetfd(pidfd, fd);
      try {
        const st = fstatSync(copy, { bigint: true });
        const fmt = Number(st.mode) & fsc.S_IFMT;
        let type: string;
        let id: number;
        if (fmt === fsc.S_IFREG && ShmemTable.isShmem(link, st)) {
          type = "MEMFD";
          id = shm.fdFile(shm.object(copy, st, link, procPath(pid, `fd/${fd}`)), flags, info.pos, owner(copy));
        } else if (fmt === fsc.S_IFREG || fmt === fsc.S_IFDIR) {
          if (link.startsWith("/memfd:")) throw new UnsupportedFd(`unsupported fd ${fd}: a memfd outside the shmem mount (hugetlb?) (${link})`);
          if (!link.startsWith("/")) throw new UnsupportedFd(`unsupported fd ${fd}: ${link}`);
          type = "REG";
          id = files.newId();
          files.add({ type, id, reg: files.regEntry(id, copy, st, link, flags, info.pos, owner(copy), pid) });
        } else if (fmt === fsc.S_IFCHR) {
          const maj = major(st.rdev);
          if (maj === MEM_MAJOR) {
            type = "REG";
            id = files.newId();
            files.add({ type, id, reg: files.regEntry(id, copy, st, link, flags, info.pos, owner(copy), pid) });
          } else if (isTtyMajor(maj)) {
            if (!shellJob) throw new UnsupportedFd(`unsupported fd ${fd}: tty ${link} (dump a shell job with --shell-job)`);
            type = "TTY";
            id = files.newId();
            ttyFile(tty, files, id, copy, st, link, flags, owner(copy), pid);
          } else {
            throw new UnsupportedFd(`unsupported fd ${fd}: character device ${maj}:${minor(st.rdev)} (${link})`);
          }
        } else if (fmt === fsc.S_IFIFO) {
          const pipeId = Number(st.ino);
          const isPipe = link.startsWith("pipe:");
          id = files.newId();
          if (isPipe) {
            type = "PIPE";
            files.add({ type, id, pipe: { id, pipe_id: pipeId, flags, fown: owner(copy) } });
          } else {
            type = "FIFO";
            const regId = files.newId();
            files.add({ type: "REG", id: regId, reg: files.regEntry(regId, copy, st, link, flags, 0n, owner(copy), pid) });
            files.add({ type, id, fifo: { id, pipe_id: pipeId, regf_id: regId } });
          }
          if (!seenPipes.has(pipeId)) {
            seenPipes.add(pipeId);
            pipeData.push({ pipeId, fifo: !isPipe, data: peekAny(pid, fd, copy, flags), size: b.fcntl(copy, F.GETPIPE_SZ) });
          }
        } else if (fmt === fsc.S_IFSOCK) {
          throw new UnsupportedFd(`unsupported fd ${fd}: socket (${link})`);
        } else {
          throw new UnsupportedFd(`unsupported fd ${fd}: ${link}`);
        }
        known.push({ fd, id, type });
        fdinfo.push({ id, flags: fdflags, type, fd });
      } finally {
        b.close(copy);
      }
    }
  } finally {
    b.close(pidfd);
  }
  return { fdinfo, pipeData };
}

/** A pipe's queued bytes, left in place. A write-only end is read through a new read end. */
function peekAny(pid: number, fd: number, copy: number, flags: number): Buffer {
  if ((flags & 3) !== 1) return peekPipe(copy);
  const rd = openSync(procPath(pid, `fd/${fd}`), fsc.O_RDONLY | fsc.O_NONBLOCK);
  try {
    return peekPipe(rd);
  } finally {
    closeSync(rd);
  }
}
