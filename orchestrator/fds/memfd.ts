// memfds (MFD_HUGETLB ones too) and shared anonymous memory opened as files (MEMFD entries, criu's memfd.c):
// each open file description an entry of its own (flags, offset, owner) naming the
// object's memfd.img inode; the object itself -- contents, size, seals, mappings -- is
// dump/shmem.ts's and restore/shmem.ts's. On restore each description is opened anew
// from tscriu's fd of the object, but for the first read-write one, which is that fd's own
// description (an executable memfd stays executable).

import { constants as fsc, openSync } from "node:fs";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { procPath } from "../dump/proc.js";
import { ShmemTable } from "../dump/shmem.js";
import { RestoreError } from "../restore/errors.js";
import { reopenFlags } from "../restore/fileset.js";
import { closeFds, UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

const O_CLOEXEC = 0o2000000;
const O_ACCMODE = 3;
const O_LARGEFILE = 0o100000;
const F_GETFL = 3;
const F_SETFL = 4;
/** what F_SETFL changes: O_APPEND, O_ASYNC (FASYNC), O_DIRECT, O_NOATIME, O_NONBLOCK */
const SETFL_MASK = fsc.O_APPEND | 0o20000 | 0o40000 | fsc.O_NOATIME | fsc.O_NONBLOCK;

/**
 * Gives tscriu's description `fd` the status flags `flags` (F_SETFL); false when they are
 * not all F_SETFL's to give (O_SYNC, O_DIRECT refused...): the fd is then reopened with them.
 */
function setFlags(fd: number, flags: number): boolean {
  const rest = flags & ~(O_ACCMODE | O_LARGEFILE | O_CLOEXEC);
  if (rest & ~SETFL_MASK) return false;
  try {
    bridge().fcntl(fd, F_SETFL, rest);
  } catch {
    return false;
  }
  return (bridge().fcntl(fd, F_GETFL) & SETFL_MASK) === rest;
}

class MemfdDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return f.link.startsWith("/memfd:") || ShmemTable.isShmem(f.link, f.st);
  }

  dump(f: FdFacts): { id: number; type: string } {
    if (!ShmemTable.isShmem(f.link, f.st)) throw new UnsupportedFd(`unsupported fd ${f.fd}: a memfd on neither the kernel's shmem mount nor its hugetlbfs mounts (${f.link})`);
    const shm = this.ctx.shm;
    const id = shm.fdFile(shm.object(f.copy, f.st, f.link, procPath(f.pid, `fd/${f.fd}`)), f.flags, f.info.pos, f.fown());
    return { id, type: "MEMFD" };
  }

  images(): ExtraImage[] {
    // memfd.img and the objects' pages are written with the rest of shared memory.
    return [];
  }
}

class MemfdRestorer implements FdRestorer {
  private readonly mine: number[] = [];

  constructor(private readonly ctx: PlanContext) {}

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const m = e.memfd;
    if (!m) throw new RestoreError("plan", this.ctx.pid, `${what}: a MEMFD entry without its memfd fields`, { file: join(this.ctx.dir, "files.img") });
    const obj = await this.ctx.shm.forMemfdFile(e.id, what);
    return {
      describe: `memfd:${obj.name}`,
      pos: m.pos,
      fown: m.fown,
      open: () => {
        const flags = reopenFlags(m.flags);
        // memfd_create's own description, once, to the first read-write fd (as criu): the
        // one a task can execveat() (see ShmObject.given). Its flags are the fd's; the
        // offset is set in the task and mmap of tscriu's fd does not look at either.
        if (!obj.anonymous && !obj.given && (flags & O_ACCMODE) === fsc.O_RDWR && setFlags(obj.local, flags)) {
          obj.given = true;
          return obj.local;
        }
        const fd = openSync(`/proc/self/fd/${obj.local}`, flags | O_CLOEXEC);
        this.mine.push(fd);
        return fd;
      },
    };
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    closeFds(this.mine);
  }
}

export const memfdKind: FdKind = {
  type: "MEMFD",
  describe: "memfds and shared anonymous memory opened through /proc",
  dumper: (ctx) => new MemfdDumper(ctx),
  restorer: (ctx) => new MemfdRestorer(ctx),
};
