// Regular files, directories, symlinks held by O_PATH fds and memory character devices (/dev/null, /dev/zero, …):
// REG entries, as criu writes them (files-reg.c): path, flags, offset, owner, mode, size
// and ELF build-id; an unlinked one points at a ghost (dump/ghost.ts). On restore the
// file is checked at plan (fileset.ts: present, same size and build-id) and opened anew
// for each open file description; a file of a task's /proc directory once the task's
// other fds are installed (its /proc/self/fdinfo/N needs fd N).

import { constants as fsc } from "node:fs";
import { join } from "node:path";
import type { FileEntry } from "../../images/dir.js";
import { RestoreError } from "../restore/errors.js";
import { inProcDir, reopenFlags } from "../restore/fileset.js";
import { ShmemTable } from "../dump/shmem.js";
import type { DumpContext, ExtraImage, FdDumper, FdFacts, FdKind, FdRestorer, FdSource, PlanContext } from "./kind.js";
import { deviceNumbers } from "./tty-facts.js";

/** The memory devices (mem, null, zero, full, random, urandom, …): major 1. */
const MEM_MAJOR = 1;

/** --inherit-fd names of a file with a path: the path, with and without its leading slash. */
export function regInheritKeys(reg: FileEntry | undefined): string[] {
  const name = reg?.reg?.name;
  return name ? [name, name.replace(/^\//, "")] : [];
}

class RegularDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    if (f.fmt === fsc.S_IFCHR) return deviceNumbers(f.st.rdev)[0] === MEM_MAJOR;
    // A symlink itself is open only as O_PATH|O_NOFOLLOW: criu keeps it as a REG entry too.
    if (f.fmt !== fsc.S_IFREG && f.fmt !== fsc.S_IFDIR && f.fmt !== fsc.S_IFLNK) return false;
    // A memfd or shared anonymous memory is memfd.ts's; anything else without a path is no file of ours.
    return f.link.startsWith("/") && !f.link.startsWith("/memfd:") && !ShmemTable.isShmem(f.link, f.st);
  }

  dump(f: FdFacts): { id: number; type: string } {
    const files = this.ctx.files;
    const id = files.newId();
    files.add({ type: "REG", id, reg: files.regEntry(id, f.copy, f.st, f.link, f.flags, f.info.pos, f.fown(), f.pid) });
    return { id, type: "REG" };
  }

  images(): ExtraImage[] {
    return [];
  }
}

class RegularRestorer implements FdRestorer {
  constructor(private readonly ctx: PlanContext) {}

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    if (!e.reg) throw new RestoreError("plan", this.ctx.pid, `${what}: a REG entry without its file fields`, { file: join(this.ctx.dir, "files.img") });
    const file = await this.ctx.files.reg(e.id, what);
    return {
      describe: file.name,
      pos: file.pos,
      fown: e.reg.fown,
      late: inProcDir(file.name),
      open: () => this.ctx.files.openFresh(file, reopenFlags(file.flags)),
    };
  }

  inheritKeys(e: FileEntry): string[] {
    return regInheritKeys(e);
  }

  close(): void {
    // The FileSet owns what openFresh made.
  }
}

export const regularKind: FdKind = {
  type: "REG",
  describe: "regular files, directories, O_PATH symlinks and memory devices (/dev/null …), unlinked ones as ghosts",
  dumper: (ctx) => new RegularDumper(ctx),
  restorer: (ctx) => new RegularRestorer(ctx),
};
