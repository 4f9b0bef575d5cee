// pidfds (PIDFD entries, criu 4.2's pidfd.c): the process a pidfd refers to, by its pid
// (fdinfo "NSpid:", the last of the list: the pid in the task's own namespace), its pidfs
// inode and the file's flags (PIDFD_NONBLOCK is O_NONBLOCK, PIDFD_THREAD O_EXCL). A pidfd of
// a process that is gone (reaped; "Pid: -1") is kept as criu keeps it, with nspid -1.
//
// A thread pidfd (PIDFD_THREAD) refers to one thread: its fdinfo names the TID, and a
// thread that has exited reads "Pid: -1" as a process that is gone does (a thread is
// released as it exits), and is kept the same way, PIDFD_THREAD in its flags. criu 4.2
// refuses thread pidfds at dump but restores them from an image: pidfd_open of nspid with
// the entry's flags, so the entry is the same.
//
// Only what a restore can make again is dumped: a pidfd of a process of the dumped tree
// (it is there again, with its PID, zombies included), a thread pidfd of a thread of it,
// or one of no process at all. A pidfd of a process or thread outside the tree is refused
// by name (criu refuses it too).
//
// Restore: every process of the tree exists (as a stub, or a zombie) before any fd is
// made, so tscriu opens the pidfd itself (pidfd_open of the pid, its flags) and the task
// takes it. A thread other than a leader is made only after the fds (step "threads"): its
// pidfd is installed as a stand-in first (FdSource.afterThreads), a thread pidfd of its
// process's leader, and made for real once it exists. A pidfd of a process that was gone
// is opened on a throwaway process of tscriu's, killed and reaped at once: it reads as
// exited, and signals to it fail with ESRCH, as before. Pidfds of one dead process (one
// inode) share one throwaway process.

import { readFileSync } from "node:fs";
import { O, PIDFD } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { badEntry, field, isAnon, MadeFds, part } from "./anon.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

const O_RDWR = 2;
/** the flags pidfd_open takes that are kept in the file's flags */
const OPEN_FLAGS = PIDFD.NONBLOCK | PIDFD.THREAD;

class PidfdDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return isAnon(f, "[pidfd]");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const pid = Number(field(f, f.info, "Pid", /^(-?\d+)$/)[1]);
    const nspid = Number(field(f, f.info, "NSpid", /(-?\d+)\s*$/)[1]);
    const ino = BigInt(field(f, f.info, "ino", /^(\d+)$/)[1]!);
    if (f.flags & PIDFD.THREAD) {
      // A zombie's leader is the one thread of it left.
      if (pid !== -1 && !this.ctx.threads.has(pid) && !this.ctx.zombies.includes(pid)) {
        throw new UnsupportedFd(`unsupported fd ${f.fd}: a thread pidfd (PIDFD_THREAD) of thread ${pid}, which is not a thread of the dumped tree`);
      }
    } else if (pid !== -1 && !this.ctx.pids.includes(pid) && !this.ctx.zombies.includes(pid)) {
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
    if (p.flags & ~(OPEN_FLAGS | O.CLOEXEC)) throw badEntry(this.ctx, what, `a pidfd with flags 0o${p.flags.toString(8)} (only PIDFD_NONBLOCK and PIDFD_THREAD are restored)`);
    const thread = (p.flags & PIDFD.THREAD) !== 0;
    const leader = thread ? this.ctx.threads.get(p.nspid) : undefined;
    if (p.nspid !== -1 && !this.ctx.tree.has(p.nspid) && leader === undefined) {
      throw badEntry(this.ctx, what, thread ? `a thread pidfd of TID ${p.nspid}, which is not a thread of the images` : `a pidfd of pid ${p.nspid}, which is not a process of the images`);
    }
    const flags = p.flags & OPEN_FLAGS;
    if (p.nspid === -1) {
      let same = this.deadPlanned.get(p.ino);
      if (!same) this.deadPlanned.set(p.ino, (same = new Map<number, number>()));
      same.set(p.id, p.flags);
    }
    const describe = p.nspid === -1 ? `${thread ? "thread " : ""}pidfd of a ${thread ? "thread" : "process"} that is gone` : thread ? `thread pidfd of TID ${p.nspid}` : `pidfd of pid ${p.nspid}`;
    if (leader !== undefined) {
      return Promise.resolve({
        describe,
        fown: p.fown,
        open: () => this.made.add(bridge().pidfdOpen(leader, flags), p.flags),
        afterThreads: () => this.made.add(bridge().pidfdOpen(p.nspid, flags), p.flags),
      });
    }
    return Promise.resolve({
      describe,
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
      for (const [other, flags] of this.deadPlanned.get(ino) ?? []) this.deadMade.set(other, (last = this.made.add(b.pidfdOpen(pid, flags & OPEN_FLAGS), flags)));
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
  describe: "pidfds of processes and threads of the tree, or of ones that are gone",
  dumper: (ctx) => new PidfdDumper(ctx),
  restorer: (ctx) => new PidfdRestorer(ctx),
};
