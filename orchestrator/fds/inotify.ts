// inotify instances (INOTIFY entries, criu's fsnotify.c): the file's flags and one
// watch per fdinfo "inotify wd:" line -- descriptor, mask, and the watched inode (device,
// number, file handle), given a path on dump as criu does (watched.ts; a watched file
// that was unlinked comes back through its ghost or its link remap).
//
// Restore: an inotify instance with each watch added, in the order of their
// descriptors, each given its old descriptor -- a program compares the wd of every event
// with those it got -- through INOTIFY_IOC_SETNEXTWD, or where the kernel lacks it by
// adding and removing a watch until the number comes up (criu's two ways). Watch
// descriptors belong to the instance, not to the process, so tscriu adds them itself.
// Events queued at dump are lost, as with criu.

import { closeSync } from "node:fs";
import { IN, O } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { badEntry, isAnon, MadeFds, part } from "./anon.js";
import type { DumpContext, ExtraImage, FdDumper, FdFacts, FdKind, FdRestorer, FdSource, PlanContext } from "./kind.js";
import { WatchedInodes, watchTarget, type WatchTarget } from "./watched.js";

/** The flags of a watch that inotify_add_watch takes back (fdinfo shows them in the mask). */
const WATCH_BITS = IN.ALL_EVENTS | IN.ONESHOT | IN.EXCL_UNLINK;
/** Without INOTIFY_IOC_SETNEXTWD, descriptors skipped one by one at most this many times. */
const MAX_SKIPS = 1 << 16;
const WD_LINE = /^([0-9a-f]+) ino:([0-9a-f]+) sdev:([0-9a-f]+) mask:([0-9a-f]+) ignored_mask:([0-9a-f]+) fhandle-bytes:([0-9a-f]+) fhandle-type:([0-9a-f]+) f_handle:([0-9a-f]*)$/;

class InotifyDumper implements FdDumper {
  private readonly inodes: WatchedInodes;

  constructor(private readonly ctx: DumpContext) {
    this.inodes = new WatchedInodes(ctx.files, ctx.irmap);
  }

  matches(f: FdFacts): boolean {
    return isAnon(f, "inotify");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const id = this.ctx.files.newId();
    const wd = (f.info.lines.get("inotify wd") ?? []).map((line) => {
      const m = WD_LINE.exec(line);
      if (!m) throw new Error(`fd ${f.fd} (${f.link}): fdinfo has "inotify wd:${line}", which tscriu does not read`);
      const [sdev, ino, type, bytes] = [Number.parseInt(m[3]!, 16), BigInt(`0x${m[2]}`), Number.parseInt(m[7]!, 16), Number.parseInt(m[6]!, 16)];
      const handle = Buffer.from(m[8]!, "hex").subarray(0, bytes);
      const watch = Number.parseInt(m[1]!, 16);
      return {
        id: 0,
        i_ino: ino,
        mask: Number.parseInt(m[4]!, 16) >>> 0,
        ignored_mask: Number.parseInt(m[5]!, 16) >>> 0,
        s_dev: sdev,
        wd: watch,
        f_handle: this.inodes.entry(sdev, ino, type, handle, { pid: f.pid, fd: f.fd, what: `${f.link} watch ${watch}` }),
      };
    });
    this.ctx.files.add({ type: "INOTIFY", id, ify: { id, flags: f.flags, fown: f.fown(), wd } });
    return { id, type: "INOTIFY" };
  }

  settle(): void {
    this.inodes.settle();
  }

  images(): ExtraImage[] {
    return [];
  }
}

type Watch = { wd: number; target: WatchTarget; mask: number };

class InotifyRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const ify = part(this.ctx, e.ify, "INOTIFY", what);
    const watches: Watch[] = [];
    for (const w of [...(ify.wd ?? [])].sort((a, b) => a.wd - b.wd)) {
      const name = `inotify watch ${w.wd}`;
      if (w.wd < 1 || w.wd > 0x7fffffff) throw badEntry(this.ctx, what, `${name}: a watch descriptor out of range`);
      if (watches.some((x) => x.wd === w.wd)) throw badEntry(this.ctx, what, `${name} is listed twice`);
      if ((w.mask & IN.ALL_EVENTS) === 0) throw badEntry(this.ctx, what, `${name}: mask 0x${(w.mask >>> 0).toString(16)} asks for no event`);
      watches.push({ wd: w.wd, target: await watchTarget(this.ctx, w.s_dev, w.i_ino, w.f_handle, `${what}: ${name}`), mask: (w.mask & WATCH_BITS) >>> 0 });
    }
    return {
      describe: `inotify (${watches.length} watch${watches.length === 1 ? "" : "es"})`,
      fown: ify.fown,
      open: () => {
        // Every inode first: a ghost made again here is no event for the instance's other watches.
        const targets = watches.map((w) => w.target.open());
        try {
          const fd = this.made.add(bridge().inotifyInit1(O.CLOEXEC | (ify.flags & O.NONBLOCK)), ify.flags);
          for (const [i, w] of watches.entries()) addWatch(fd, w, targets[i]!.fd);
          return fd;
        } finally {
          for (const t of targets) if (t.owned) closeSync(t.fd);
        }
      },
    };
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

/**
 * inotify_add_watch giving watch `w` its descriptor, through tscriu's fd of the inode:
 * the watch is on that inode, and no event is made. Watches come in ascending order.
 */
function addWatch(fd: number, w: Watch, target: number): void {
  const b = bridge();
  let settable = true;
  try {
    b.inotifySetNextWd(fd, w.wd);
  } catch (e) {
    if (!(isNativeError(e) && e.code === "ENOTTY")) throw e;
    settable = false;
  }
  for (;;) {
    const got = b.inotifyAddWatch(fd, `/proc/self/fd/${target}`, w.mask);
    if (got === w.wd) return;
    if (settable || got > w.wd || w.wd - got > MAX_SKIPS) throw new Error(`inotify watch ${w.wd} on ${w.target.describe} came back as watch ${got}`);
    // Descriptors are handed out in increasing order: drop this one, the next is higher.
    b.inotifyRmWatch(fd, got);
  }
}

export const inotifyKind: FdKind = {
  type: "INOTIFY",
  describe: "inotify instances: each watch by path, mask and watch descriptor",
  dumper: (ctx) => new InotifyDumper(ctx),
  restorer: (ctx) => new InotifyRestorer(ctx),
};
