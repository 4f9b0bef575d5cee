// memfds and shared anonymous memory opened as files (MEMFD entries, criu's memfd.c):
// each open file description an entry of its own (flags, offset, owner) naming the
// object's memfd.img inode; the object itself -- contents, size, seals, mappings -- is
// dump/shmem.ts's and restore/shmem.ts's. On restore each description is opened anew
// from tscriu's fd of the object.

import { openSync } from "node:fs";
import { join } from "node:path";
import type { FileEntry } from "../../images/dir.js";
import { procPath } from "../dump/proc.js";
import { ShmemTable } from "../dump/shmem.js";
import { RestoreError } from "../restore/errors.js";
import { reopenFlags } from "../restore/fileset.js";
import { closeFds, UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

const O_CLOEXEC = 0o2000000;

class MemfdDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return f.link.startsWith("/memfd:") || ShmemTable.isShmem(f.link, f.st);
  }

  dump(f: FdFacts): { id: number; type: string } {
    if (!ShmemTable.isShmem(f.link, f.st)) throw new UnsupportedFd(`unsupported fd ${f.fd}: a memfd outside the shmem mount (hugetlb?) (${f.link})`);
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
        const fd = openSync(`/proc/self/fd/${obj.local}`, reopenFlags(m.flags) | O_CLOEXEC);
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
