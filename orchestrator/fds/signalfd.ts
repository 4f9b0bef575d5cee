// signalfds (SIGNALFD entries, criu's signalfd.c): the mask (fdinfo sigmask, hex) and
// the file's flags. A signalfd holds nothing else: what it reads are the signals pending
// for the task that reads, which the restore queues again with the task's other state.

import { O } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { field, isAnon, MadeFds, part } from "./anon.js";
import type { DumpContext, ExtraImage, FdDumper, FdFacts, FdKind, FdRestorer, FdSource, PlanContext } from "./kind.js";

class SignalfdDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return isAnon(f, "[signalfd]");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const sigmask = BigInt(`0x${field(f, f.info, "sigmask", /^([0-9a-f]+)$/)[1]}`);
    const id = this.ctx.files.newId();
    this.ctx.files.add({ type: "SIGNALFD", id, sgfd: { id, flags: f.flags, fown: f.fown(), sigmask } });
    return { id, type: "SIGNALFD" };
  }

  images(): ExtraImage[] {
    return [];
  }
}

class SignalfdRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  plan(e: FileEntry, what: string): Promise<FdSource> {
    const s = part(this.ctx, e.sgfd, "SIGNALFD", what);
    return Promise.resolve({
      describe: `signalfd (mask 0x${s.sigmask.toString(16)})`,
      fown: s.fown,
      open: () => this.made.add(bridge().signalfd(s.sigmask, O.CLOEXEC), s.flags),
    });
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

export const signalfdKind: FdKind = {
  type: "SIGNALFD",
  describe: "signalfds and their masks",
  dumper: (ctx) => new SignalfdDumper(ctx),
  restorer: (ctx) => new SignalfdRestorer(ctx),
};
