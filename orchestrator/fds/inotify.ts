// inotify instances (INOTIFY entries, criu's fsnotify.c): the file's flags and one
// watch per fdinfo "inotify wd:" line -- descriptor, mask, and the watched inode (device,
// number, file handle). The inode is given a path on dump, as criu does: the handle is
// opened (open_by_handle_at on a mount of its device, CAP_DAC_READ_SEARCH) and the
// kernel's name for it read back; the path is kept in the handle's entry.
//
// Restore: an inotify instance with each watch added by path, in the order of their
// descriptors, each given its old descriptor -- a program compares the wd of every event
// with those it got -- through INOTIFY_IOC_SETNEXTWD, or where the kernel lacks it by
// adding and removing a watch until the number comes up (criu's two ways). Watch
// descriptors belong to the instance, not to the process, so tscriu adds them itself.
// Events queued at dump are lost, as with criu.

import { closeSync, openSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { IN, O } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { underRoot } from "../restore/fileset.js";
import { badEntry, isAnon, MadeFds, part } from "./anon.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

/** criu's fh_entry keeps the handle as 16 u64 (FH_ENTRY_SIZES__min_entries), the kernel's MAX_HANDLE_SZ. */
export const HANDLE_WORDS = 16;
/** The flags of a watch that inotify_add_watch takes back (fdinfo shows them in the mask). */
const WATCH_BITS = IN.ALL_EVENTS | IN.ONESHOT | IN.EXCL_UNLINK;
/** Without INOTIFY_IOC_SETNEXTWD, descriptors skipped one by one at most this many times. */
const MAX_SKIPS = 1 << 16;
const WD_LINE = /^([0-9a-f]+) ino:([0-9a-f]+) sdev:([0-9a-f]+) mask:([0-9a-f]+) ignored_mask:([0-9a-f]+) fhandle-bytes:([0-9a-f]+) fhandle-type:([0-9a-f]+) f_handle:([0-9a-f]*)$/;

/** The mount points of a device (kernel dev_t: major << 20 | minor) in tscriu's mount table. */
function mountsOf(sdev: number): string[] {
  const want = `${sdev >>> 20}:${sdev & 0xfffff}`;
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f[2] === want && f[4] !== undefined)
    .map((f) => f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))));
}

/** The path of the inode a file handle names, checked against its inode number; undefined when none is found. */
export function pathOfHandle(sdev: number, ino: bigint, type: number, handle: Uint8Array): string | undefined {
  const b = bridge();
  for (const mnt of mountsOf(sdev)) {
    let mfd: number;
    try {
      // Not O_PATH: open_by_handle_at takes no O_PATH fd for its mount (EBADF).
      mfd = openSync(mnt, O.DIRECTORY | O.CLOEXEC);
    } catch {
      continue;
    }
    try {
      const fd = b.openByHandleAt(mfd, type, handle, O.PATH | O.CLOEXEC);
      let path: string;
      try {
        path = readlinkSync(`/proc/self/fd/${fd}`);
      } finally {
        closeSync(fd);
      }
      if (path.startsWith("/") && !path.endsWith(" (deleted)") && statSync(path, { bigint: true }).ino === ino) return path;
    } catch (e) {
      // ESTALE (the inode is gone), a filesystem without handles, a path that no longer resolves
      if (!(isNativeError(e) || (e as NodeJS.ErrnoException).code !== undefined)) throw e;
    } finally {
      closeSync(mfd);
    }
  }
  return undefined;
}

/** criu's layout of a handle: its bytes as little-endian u64s, 16 of them. */
export function handleWords(bytes: Buffer): bigint[] {
  const padded = Buffer.alloc(HANDLE_WORDS * 8);
  bytes.copy(padded, 0, 0, Math.min(bytes.length, padded.length));
  return Array.from({ length: HANDLE_WORDS }, (_, i) => padded.readBigUInt64LE(i * 8));
}

export function handleBytes(words: readonly bigint[], n: number): Buffer {
  const b = Buffer.alloc(Math.max(words.length * 8, n));
  words.forEach((w, i) => b.writeBigUInt64LE(BigInt.asUintN(64, w), i * 8));
  return b.subarray(0, n);
}

class InotifyDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

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
      const path = pathOfHandle(sdev, ino, type, handle);
      if (path === undefined) throw new UnsupportedFd(`unsupported fd ${f.fd}: ${f.link} watches inode 0x${ino.toString(16)} of device ${sdev >>> 20}:${sdev & 0xfffff}, which has no path tscriu can find (removed?)`);
      return {
        id: 0,
        i_ino: ino,
        mask: Number.parseInt(m[4]!, 16) >>> 0,
        ignored_mask: Number.parseInt(m[5]!, 16) >>> 0,
        s_dev: sdev,
        wd: Number.parseInt(m[1]!, 16),
        f_handle: { bytes, type, handle: handleWords(handle), path },
      };
    });
    this.ctx.files.add({ type: "INOTIFY", id, ify: { id, flags: f.flags, fown: f.fown(), wd } });
    return { id, type: "INOTIFY" };
  }

  images(): ExtraImage[] {
    return [];
  }
}

type Watch = { wd: number; path: string; mask: number };

class InotifyRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  plan(e: FileEntry, what: string): Promise<FdSource> {
    const ify = part(this.ctx, e.ify, "INOTIFY", what);
    const watches: Watch[] = [];
    for (const w of [...(ify.wd ?? [])].sort((a, b) => a.wd - b.wd)) {
      const name = `inotify watch ${w.wd}`;
      if (w.wd < 1 || w.wd > 0x7fffffff) throw badEntry(this.ctx, what, `${name}: a watch descriptor out of range`);
      if (watches.some((x) => x.wd === w.wd)) throw badEntry(this.ctx, what, `${name} is listed twice`);
      if ((w.mask & IN.ALL_EVENTS) === 0) throw badEntry(this.ctx, what, `${name}: mask 0x${(w.mask >>> 0).toString(16)} asks for no event`);
      const h = w.f_handle;
      const found = h.path ?? pathOfHandle(w.s_dev, w.i_ino, h.type, handleBytes(h.handle ?? [], Math.min(h.bytes, HANDLE_WORDS * 8)));
      if (found === undefined) throw badEntry(this.ctx, what, `${name}: inode 0x${w.i_ino.toString(16)} has no path in the image and its handle opens nothing here`);
      const path = underRoot(this.ctx.files.root, found);
      try {
        statSync(path);
      } catch (err) {
        throw badEntry(this.ctx, what, `${name}: cannot find ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      watches.push({ wd: w.wd, path, mask: (w.mask & WATCH_BITS) >>> 0 });
    }
    return Promise.resolve({
      describe: `inotify (${watches.length} watch${watches.length === 1 ? "" : "es"})`,
      fown: ify.fown,
      open: () => {
        const fd = this.made.add(bridge().inotifyInit1(O.CLOEXEC | (ify.flags & O.NONBLOCK)), ify.flags);
        for (const w of watches) addWatch(fd, w);
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

/** inotify_add_watch giving watch `w` its descriptor. Watches come in ascending order. */
function addWatch(fd: number, w: Watch): void {
  const b = bridge();
  let settable = true;
  try {
    b.inotifySetNextWd(fd, w.wd);
  } catch (e) {
    if (!(isNativeError(e) && e.code === "ENOTTY")) throw e;
    settable = false;
  }
  // Through an O_PATH fd: the watch is on the inode the path names now, and no event is made.
  const target = openSync(w.path, O.PATH | O.CLOEXEC);
  try {
    for (;;) {
      const got = b.inotifyAddWatch(fd, `/proc/self/fd/${target}`, w.mask);
      if (got === w.wd) return;
      if (settable || got > w.wd || w.wd - got > MAX_SKIPS) throw new Error(`inotify watch ${w.wd} on ${w.path} came back as watch ${got}`);
      // Descriptors are handed out in increasing order: drop this one, the next is higher.
      b.inotifyRmWatch(fd, got);
    }
  } finally {
    closeSync(target);
  }
}

export const inotifyKind: FdKind = {
  type: "INOTIFY",
  describe: "inotify instances: each watch by path, mask and watch descriptor",
  dumper: (ctx) => new InotifyDumper(ctx),
  restorer: (ctx) => new InotifyRestorer(ctx),
};
