// eventfds (EVENTFD entries, criu's eventfd.c): the count and the file's flags. The
// kernel shows the whole 64-bit count (eventfd-count, hex) and, since 6.3, whether it
// counts as a semaphore (eventfd-semaphore). criu's entry has no field for that, and
// criu 4.2 loses it (and cuts counts above 2^32-1, passing the count to eventfd(2) as
// its unsigned int). tscriu keeps EFD_SEMAPHORE in bit 0 of `flags`: that is O_WRONLY,
// never set in an eventfd's f_flags (they are always O_RDWR), and criu's restore keeps
// only the F_SETFL bits of `flags`, so criu still restores tscriu's image (as a plain
// eventfd, as it restores its own).
// On restore the eventfd is made with its count, a count above 2^32-1 written into it.

import { writeSync } from "node:fs";
import { EFD, O } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { badEntry, field, isAnon, MadeFds, part } from "./anon.js";
import type { DumpContext, ExtraImage, FdDumper, FdFacts, FdKind, FdRestorer, FdSource, PlanContext } from "./kind.js";

/** eventfd_write refuses ULLONG_MAX: the largest count an eventfd holds. */
const MAX_COUNT = 0xfffffffffffffffen;

class EventfdDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return isAnon(f, "[eventfd]");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const counter = BigInt(`0x${field(f, f.info, "eventfd-count", /^([0-9a-f]+)$/)[1]}`);
    const sema = f.info.lines.get("eventfd-semaphore")?.[0] === "1";
    const id = this.ctx.files.newId();
    this.ctx.files.add({ type: "EVENTFD", id, efd: { id, flags: f.flags | (sema ? EFD.SEMAPHORE : 0), fown: f.fown(), counter } });
    return { id, type: "EVENTFD" };
  }

  images(): ExtraImage[] {
    return [];
  }
}

class EventfdRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  plan(e: FileEntry, what: string): Promise<FdSource> {
    const efd = part(this.ctx, e.efd, "EVENTFD", what);
    if (efd.counter > MAX_COUNT) throw badEntry(this.ctx, what, `an eventfd count of 0x${efd.counter.toString(16)} (at most 0x${MAX_COUNT.toString(16)})`);
    const sema = (efd.flags & EFD.SEMAPHORE) !== 0;
    return Promise.resolve({
      describe: `eventfd (count ${efd.counter}${sema ? ", semaphore" : ""})`,
      fown: efd.fown,
      open: () => {
        const small = efd.counter <= 0xffffffffn;
        const fd = this.made.add(bridge().eventfd(small ? Number(efd.counter) : 0, O.CLOEXEC | (sema ? EFD.SEMAPHORE : 0)), efd.flags);
        if (!small) {
          const b = Buffer.alloc(8);
          b.writeBigUInt64LE(efd.counter);
          writeSync(fd, b);
        }
        return fd;
      },
    });
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

export const eventfdKind: FdKind = {
  type: "EVENTFD",
  describe: "eventfds: the 64-bit count, semaphore or not",
  dumper: (ctx) => new EventfdDumper(ctx),
  restorer: (ctx) => new EventfdRestorer(ctx),
};
