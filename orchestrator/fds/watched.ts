// The inode an inotify watch or a fanotify inode mark is on (criu's fh_entry, fsnotify.c):
// fdinfo names it by device, inode number and file handle, and the dump gives it a path,
// as criu does -- the handle is opened (open_by_handle_at on a mount of its device,
// CAP_DAC_READ_SEARCH) and the kernel's name for it read back. A handle that opens nothing
// leaves the walk of irmap.ts (criu's irmap), when criu would walk.
//
// A watched inode whose name was removed has no path. If a file of the dump holds it,
// criu's way applies: a ghost (nlink 0) is found again by device and inode on restore and
// watched once made again; an inode linked back for the restore (--link-remap) is watched
// through that link. Which it is is known only once every file of the dump is, so such a
// watch is settled then (WatchedInodes.settle, from FdDumper.settle). An inode that keeps other links is
// left to its handle, as criu leaves it; one with no link that no file of the dump holds
// cannot come back, and the dump says so.

import { closeSync, openSync, readFileSync, readlinkSync, statSync, fstatSync } from "node:fs";
import { O } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { FileTable } from "../dump/filetable.js";
import { underRoot } from "../restore/fileset.js";
import { badEntry } from "./anon.js";
import type { Irmap } from "./irmap.js";
import { UnsupportedFd, type PlanContext } from "./kind.js";

/** criu's fh_entry keeps the handle as 16 u64 (FH_ENTRY_SIZES__min_entries), the kernel's MAX_HANDLE_SZ. */
export const HANDLE_WORDS = 16;

/** criu's fh_entry. */
export interface HandleEntry {
  bytes: number;
  type: number;
  handle: bigint[];
  path?: string;
}

/** The mounts of a device (kernel dev_t: major << 20 | minor) in tscriu's mount table: mount point and filesystem type. */
function mountsOf(sdev: number): { point: string; fstype: string }[] {
  const want = `${sdev >>> 20}:${sdev & 0xfffff}`;
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f[2] === want && f[4] !== undefined)
    .map((f) => ({
      point: f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))),
      fstype: f[f.indexOf("-") + 1] ?? "",
    }));
}

/**
 * An O_PATH fd of inode `ino` by its file handle (tscriu's to close), or undefined when no
 * mount of its device opens it. A handle that opens another inode is not it: ext4 skips the
 * generation check of a handle whose generation is 0, so a damaged one can open anything.
 */
function openHandle(sdev: number, ino: bigint, type: number, handle: Uint8Array): number | undefined {
  const b = bridge();
  for (const { point: mnt } of mountsOf(sdev)) {
    let mfd: number;
    try {
      // Not O_PATH: open_by_handle_at takes no O_PATH fd for its mount (EBADF).
      mfd = openSync(mnt, O.DIRECTORY | O.CLOEXEC);
    } catch {
      continue;
    }
    try {
      const fd = b.openByHandleAt(mfd, type, handle, O.PATH | O.CLOEXEC);
      if (fstatSync(fd, { bigint: true }).ino === ino) return fd;
      closeSync(fd);
    } catch (e) {
      // ESTALE (the inode is gone), a filesystem without handles
      if (!isNativeError(e)) throw e;
    } finally {
      closeSync(mfd);
    }
  }
  return undefined;
}

/** The path of the inode a file handle names, checked against its inode number; undefined when none is found. */
export function pathOfHandle(sdev: number, ino: bigint, type: number, handle: Uint8Array): string | undefined {
  const fd = openHandle(sdev, ino, type, handle);
  if (fd === undefined) return undefined;
  try {
    const path = readlinkSync(`/proc/self/fd/${fd}`);
    if (path.startsWith("/") && !path.endsWith(" (deleted)") && statSync(path, { bigint: true }).ino === ino) return path;
  } catch (e) {
    // a path that no longer resolves
    if ((e as NodeJS.ErrnoException).code === undefined) throw e;
  } finally {
    closeSync(fd);
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

interface Pending {
  entry: HandleEntry;
  sdev: number;
  ino: bigint;
  nlink: bigint;
  /** the watch, for messages: its task and fd, and what it is */
  at: WatchedBy;
}

export interface WatchedBy {
  pid: number;
  fd: number;
  /** "anon_inode:inotify watch 2" */
  what: string;
}

/** The dump side: the fh_entry of every watched inode, those without a path settled at the end. */
export class WatchedInodes {
  private readonly pending: Pending[] = [];

  constructor(
    private readonly files: FileTable,
    private readonly irmap: Irmap,
  ) {}

  /** The fh_entry of inode `ino` of device `sdev` (kernel dev_t), watched as `at` says. */
  entry(sdev: number, ino: bigint, type: number, handle: Buffer, at: WatchedBy): HandleEntry {
    const entry: HandleEntry = { bytes: handle.length, type, handle: handleWords(handle) };
    const path = pathOfHandle(sdev, ino, type, handle);
    if (path !== undefined) return { ...entry, path };
    const fd = openHandle(sdev, ino, type, handle);
    if (fd === undefined) return { ...entry, path: this.irmapPath(sdev, ino, at) };
    let nlink: bigint;
    try {
      nlink = fstatSync(fd, { bigint: true }).nlink;
    } finally {
      closeSync(fd);
    }
    this.pending.push({ entry, sdev, ino, nlink, at });
    return entry;
  }

  /**
   * The handle does not open: as criu (check_open_handle), the inode is looked for by walking
   * (irmap.ts) when no mount of its device is tscriu's to open it by, or with --force-irmap
   * unless it is on tmpfs -- whose inode numbers a path found now would not carry over.
   */
  private irmapPath(sdev: number, ino: bigint, at: WatchedBy): string {
    const inode = `inode 0x${ino.toString(16)} of device ${sdev >>> 20}:${sdev & 0xfffff}`;
    const mounts = mountsOf(sdev);
    if (mounts.length > 0 && !this.irmap.opts.force) throw new UnsupportedFd(`unsupported fd ${at.fd}: ${at.what} is on ${inode}, which has no path tscriu can find and whose handle does not open it (--force-irmap looks for its path)`);
    if (mounts.some((m) => m.fstype === "tmpfs" || m.fstype === "devtmpfs")) throw new UnsupportedFd(`unsupported fd ${at.fd}: ${at.what} is on ${inode}, a ${mounts[0]!.fstype} file whose handle does not open it`);
    const path = this.irmap.lookup(sdev, ino);
    if (path === undefined) throw new UnsupportedFd(`unsupported fd ${at.fd}: ${at.what} is on ${inode}: its handle does not open it and no place walked for it has it (${[...this.irmap.opts.scanPaths, "criu's hints"].join(", ")}; --irmap-scan-path adds one)`);
    return path;
  }

  /** Every file of the dump is known: each unlinked watched inode gets its way back, or the dump fails naming it. */
  settle(): void {
    for (const p of this.pending.splice(0)) {
      const remap = this.files.remapOfInode(p.sdev, p.ino);
      if (remap && "link" in remap) p.entry.path = remap.link;
      else if (!remap && p.nlink === 0n) {
        throw new Error(`pid ${p.at.pid}: fd ${p.at.fd}: ${p.at.what} is on the unlinked inode 0x${p.ino.toString(16)} of device ${p.sdev >>> 20}:${p.sdev & 0xfffff}, which no task of the dump holds open: it cannot be made again for the restore`);
      }
    }
  }
}

/** The restore side: where a watch goes, checked at plan; open() gives an fd of the inode to watch through /proc/self/fd. */
export interface WatchTarget {
  describe: string;
  /** the fd, and whether the caller closes it (a ghost's node stays the FileSet's) */
  open(): { fd: number; owned: boolean };
}

/**
 * The inode of an fh_entry on restore: by its path; else the ghost that was that inode
 * (criu's lookup_ghost_remap); else by its handle, as criu's open_handle. No side effects
 * but reading ghost images.
 */
export async function watchTarget(ctx: PlanContext, sdev: number, ino: bigint, h: { bytes: number; type: number; handle?: readonly bigint[] | undefined; path?: string | undefined }, what: string): Promise<WatchTarget> {
  if (h.path !== undefined) {
    const path = underRoot(ctx.files.root, h.path);
    try {
      statSync(path);
    } catch (err) {
      throw badEntry(ctx, what, `cannot find ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    return { describe: path, open: () => ({ fd: openSync(path, O.PATH | O.CLOEXEC), owned: true }) };
  }
  const ghost = await ctx.files.ghostOfInode(sdev, ino);
  if (ghost) return { describe: `${ghost.name} (unlinked, made again)`, open: () => ({ fd: ctx.files.ghostNode(ghost), owned: false }) };
  const handle = handleBytes(h.handle ?? [], Math.min(h.bytes, HANDLE_WORDS * 8));
  const probe = openHandle(sdev, ino, h.type, handle);
  if (probe === undefined) throw badEntry(ctx, what, `inode 0x${ino.toString(16)} has no path in the image, no ghost file was that inode, and its handle opens no such inode here`);
  closeSync(probe);
  const describe = `inode 0x${ino.toString(16)} (by its handle)`;
  return {
    describe,
    open: () => {
      const fd = openHandle(sdev, ino, h.type, handle);
      if (fd === undefined) throw new Error(`${what}: the handle of ${describe} opens nothing any more`);
      return { fd, owned: true };
    },
  };
}
