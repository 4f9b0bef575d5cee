// FIFOs (FIFO entries, criu's fifo.c): a FIFO entry naming the pipe by inode and a REG
// entry with its path (regf_id; an unlinked FIFO is a ghost there); the queued bytes go
// to fifo-data.img once per FIFO. On restore tscriu first opens a reader-and-writer of
// its own (so that no open blocks and the data has somewhere to wait), fills it, then
// opens each of the task's ends.

import { constants as fsc } from "node:fs";
import { join } from "node:path";
import { F } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { RestoreError } from "../restore/errors.js";
import { reopenFlags } from "../restore/fileset.js";
import type { DumpContext, ExtraImage, FdDumper, FdFacts, FdKind, FdRestorer, FdSource, PlanContext } from "./kind.js";
import { fillPipe, QueuedData, readQueued, type Queued } from "./pipe.js";
import { regInheritKeys } from "./regular.js";

class FifoDumper implements FdDumper {
  private readonly queued = new QueuedData();

  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return f.fmt === fsc.S_IFIFO && !f.link.startsWith("pipe:");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const files = this.ctx.files;
    const id = files.newId();
    const regId = files.newId();
    files.add({ type: "REG", id: regId, reg: files.regEntry(regId, f.copy, f.st, f.link, f.flags, 0n, f.fown(), f.pid) });
    files.add({ type: "FIFO", id, fifo: { id, pipe_id: Number(f.st.ino), regf_id: regId } });
    this.queued.take(f);
    return { id, type: "FIFO" };
  }

  images(): ExtraImage[] {
    return this.queued.image("fifo-data.img", "FIFO_DATA");
  }
}

class FifoRestorer implements FdRestorer {
  private data: Promise<Map<number, Queued>> | undefined;
  private readonly helpers = new Map<number, number>();

  constructor(private readonly ctx: PlanContext) {}

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const fifo = e.fifo;
    if (!fifo) throw new RestoreError("plan", this.ctx.pid, `${what}: a FIFO entry without its fifo fields`, { file: join(this.ctx.dir, "files.img") });
    const file = await this.ctx.files.reg(fifo.regf_id ?? e.id, `${what} (FIFO)`);
    this.data ??= readQueued(this.ctx, "fifo-data.img");
    const queued = (await this.data).get(fifo.pipe_id);
    return {
      describe: file.name,
      open: () => {
        if (!this.helpers.has(fifo.pipe_id)) {
          const helper = this.ctx.files.openFresh(file, fsc.O_RDWR | fsc.O_NONBLOCK);
          this.helpers.set(fifo.pipe_id, helper);
          if (queued) fillPipe(helper, queued, `FIFO ${file.name}`, this.ctx.log);
        }
        const fd = this.ctx.files.openFresh(file, reopenFlags(file.flags) | fsc.O_NONBLOCK);
        bridge().fcntl(fd, F.SETFL, reopenFlags(file.flags) & ~3);
        return fd;
      },
    };
  }

  inheritKeys(e: FileEntry): string[] {
    return regInheritKeys(e.fifo ? this.ctx.entries(e.fifo.regf_id ?? e.id).find((x) => x.type === "REG") : undefined);
  }

  close(): void {
    // The helpers are the FileSet's (openFresh): it closes them.
    this.helpers.clear();
  }
}

export const fifoKind: FdKind = {
  type: "FIFO",
  describe: "FIFOs with their queued data",
  images: ["fifo-data.img"],
  dumper: (ctx) => new FifoDumper(ctx),
  restorer: (ctx) => new FifoRestorer(ctx),
};
