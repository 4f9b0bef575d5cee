// What the anonymous-inode kinds share (eventfd.ts, signalfd.ts, timerfd.ts, epoll.ts,
// inotify.ts): how they are recognised (the kernel's anon_inode:NAME link), the fdinfo
// fields they read, the entry they need at plan, and the fds tscriu makes for them.

import { closeSync } from "node:fs";
import { join } from "node:path";
import { F, SETFL_MASK } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { parseFdinfo, readProc, type FdInfo } from "../dump/proc.js";
import { RestoreError } from "../restore/errors.js";
import type { FdFacts, PlanContext } from "./kind.js";

/** Whether the fd is the anonymous inode `name` ("[eventfd]", "inotify"). */
export function isAnon(f: FdFacts, name: string): boolean {
  return f.link === `anon_inode:${name}`;
}

/** The fdinfo of the task's fd read again (after something changed it, as timerfd_gettime). */
export function rereadFdinfo(f: FdFacts): FdInfo {
  return parseFdinfo(readProc(f.pid, `fdinfo/${f.fd}`));
}

/** The one value of an fdinfo key; a missing or malformed one refuses the fd by name. */
export function field(f: FdFacts, info: FdInfo, key: string, re: RegExp): RegExpExecArray {
  const v = info.lines.get(key)?.[0];
  const m = v === undefined ? null : re.exec(v);
  if (!m) throw new Error(`fd ${f.fd} (${f.link}): fdinfo has ${v === undefined ? `no "${key}:"` : `"${key}: ${v}"`}, which tscriu does not read`);
  return m;
}

/** The kind's part of a files.img entry (efd, tfd, …), or an error at plan naming the fd. */
export function part<T>(ctx: PlanContext, value: T | undefined, type: string, what: string): T {
  if (value === undefined) throw new RestoreError("plan", ctx.pid, `${what}: an ${type} entry without its ${type.toLowerCase()} fields`, { file: join(ctx.dir, "files.img") });
  return value;
}

/** An error at plan about a files.img entry. */
export function badEntry(ctx: PlanContext, what: string, msg: string): RestoreError {
  return new RestoreError("plan", ctx.pid, `${what}: ${msg}`, { file: join(ctx.dir, "files.img") });
}

/** The fds a restorer made: their status flags set as dumped, all closed at the end. */
export class MadeFds {
  private readonly fds: number[] = [];

  /** Keeps `fd` and gives it the image's file status flags (O_NONBLOCK, …), as criu's set_fd_flags. */
  add(fd: number, flags: number): number {
    this.fds.push(fd);
    const b = bridge();
    const now = b.fcntl(fd, F.GETFL);
    const want = (now & ~SETFL_MASK) | (flags & SETFL_MASK);
    if (want !== now) b.fcntl(fd, F.SETFL, want);
    return fd;
  }

  closeAll(): void {
    for (const fd of this.fds.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        // closed already
      }
    }
  }
}

/**
 * Runs the steps of making one file for a restore: a step that throws is named, with
 * the file and what it is made for ("bind of packet socket 7 for fd 3 of pid 42: …").
 */
export function stepsOf(file: string, what: string): <T>(name: string, run: () => T) => T {
  return (name, run) => {
    try {
      return run();
    } catch (err) {
      throw new Error(`${name} of ${file} for ${what}: ${(err as Error).message}`, { cause: err });
    }
  };
}
