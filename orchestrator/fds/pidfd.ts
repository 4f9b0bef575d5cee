// pidfds (PIDFD entries, criu 4.2's pidfd.c): the process a pidfd refers to, by its pid
// (fdinfo "NSpid:", the last of the list: the pid in the task's own namespace), its pidfs
// inode and the file's flags (PIDFD_NONBLOCK is O_NONBLOCK). A pidfd of a process that is
// gone (reaped; "Pid: -1") is kept as criu keeps it, with nspid -1.
//
// Only what a restore can make again is dumped: a pidfd of a process of the dumped tree
// (it is there again, with its PID, zombies included) or of no process at all. A pidfd of
// a process outside the tree is refused by name (criu refuses it too), and so is a thread
// pidfd (PIDFD_THREAD, as criu 4.2).
//
// Restore: every process of the tree exists (as a stub, or a zombie) before any fd is
// made, so tscriu opens the pidfd itself (pidfd_open of the pid, its flags) and the task
// takes it. A pidfd of a process that was gone is opened on a throwaway process of
// tscriu's, killed and reaped at once: it reads as exited, and signals to it fail with
// ESRCH, as before. Pidfds of one dead process (one inode) share one throwaway process.

import { readFileSync } from "node:fs";
import { O } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { badEntry, field, isAnon, MadeFds, part } from "./anon.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

/** PIDFD_THREAD is O_EXCL. */
const PIDFD_THREAD = 0o200;
const O_RDWR = 2;

class PidfdDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return isAnon(f, "[pidfd]");
  }

  dump(f: FdFacts): { id: number; type: string } {
    if (f.flags & PIDFD_THREAD) throw new UnsupportedFd(`unsupported fd ${f.fd}: a thread pidfd (PIDFD_THREAD), which tscriu does not dump`);
    const pid = Number(field(f, f.info, "Pid", /^(-?\d+)$/)[1]);
    const nspid = Number(field(f, f.info, "NSpid", /(-?\d+)\s*$/)[1]);
    const ino = BigInt(field(f, f.info, "ino", /^(\d+)$/)[1]!);
    if (pid !== -1 && !this.ctx.pids.includes(pid) && !this.ctx.zombies.includes(pid)) {
      throw new UnsupportedFd(`unsupported fd ${f.fd}: a pidfd of pid ${pid}, which is outside the dumped tree`);
    }
    const id = this.ctx.files.newId();
    this.ctx.files.add({ type: "PIDFD", id, pidfd: { id, ino, flags: f.flags & ~O_RDWR, nspid, fown: f.fown() } });
    return { id, type: "PIDFD" };
  }

  images(): ExtraImage[] {
    return [];
  }
}

class PidfdRestorer implements FdRestorer {
  private readonly made = new MadeFds();
  /** the pidfds of a dead process to make, by its inode: file id -> file flags */
  private readonly deadPlanned = new Map<bigint, Map<number, number>>();
  /** the pidfds made on a throwaway process, by file id */
  private readonly deadMade = new Map<number, number>();

  constructor(private readonly ctx: PlanContext) {}

  plan(e: FileEntry, what: string): Promise<FdSource> {
    const p = part(this.ctx, e.pidfd, "PIDFD", what);
    if (p.flags & ~(O.NONBLOCK | O.CLOEXEC)) throw badEntry(this.ctx, what, `a pidfd with flags 0o${p.flags.toString(8)} (only PIDFD_NONBLOCK is restored)`);
    if (p.nspid !== -1 && !this.ctx.tree.has(p.nspid)) throw badEntry(this.ctx, what, `a pidfd of pid ${p.nspid}, which is not a process of the images`);
    const flags = p.flags & O.NONBLOCK;
    if (p.nspid === -1) {
      let same = this.deadPlanned.get(p.ino);
      if (!same) this.deadPlanned.set(p.ino, (same = new Map<number, number>()));
      same.set(p.id, p.flags);
    }
    return Promise.resolve({
      describe: p.nspid === -1 ? "pidfd of a process that is gone" : `pidfd of pid ${p.nspid}`,
      fown: p.fown,
      open: () => (p.nspid === -1 ? this.openDead(p.ino, p.id) : this.made.add(bridge().pidfdOpen(p.nspid, flags), p.flags)),
    });
  }

  /**
   * A pidfd of a process that has exited and been reaped: every pidfd of that process is
   * opened on one throwaway process, which is then killed and reaped.
   */
  private openDead(ino: bigint, id: number): number {
    const made = this.deadMade.get(id);
    if (made !== undefined) return made;
    const b = bridge();
    const pid = b.spawnDetached(["/bin/sleep", "1000"]);
    let last = -1;
    try {
      for (const [other, flags] of this.deadPlanned.get(ino) ?? []) this.deadMade.set(other, (last = this.made.add(b.pidfdOpen(pid, flags & O.NONBLOCK), flags)));
    } finally {
      process.kill(pid, "SIGKILL");
    }
    // Its subreaper reaps it at once; the pidfds then show Pid -1, as they did.
    const until = Date.now() + 5000;
    while (!/^Pid:\s*-1$/m.test(readFileSync(`/proc/self/fdinfo/${last}`, "utf8"))) {
      if (Date.now() > until) throw new Error(`the throwaway process ${pid} for a pidfd of a process that is gone was not reaped`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
    return this.deadMade.get(id)!;
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

export const pidfdKind: FdKind = {
  type: "PIDFD",
  describe: "pidfds of processes of the tree, or of processes that are gone",
  dumper: (ctx) => new PidfdDumper(ctx),
  restorer: (ctx) => new PidfdRestorer(ctx),
};
