// Ghost files on restore: the unlinked files the task used (remap-fpath.img GHOST
// entries, ghost-file-N.img) are made again -- a regular file with its data (its holes
// left as holes), an empty directory, a symlink to its target, a FIFO or a device node -- under their old name
// when it is free (so /proc shows the same "(deleted)" path), else under a name beside
// it; where the old directory is gone too, one level up, as criu does. Owner, mode and
// times are set through tscriu's own fd of the node, never by a path another process
// could swap. Every fd and mapping of the task is opened from that node; at the end of
// the restore the names are removed again. One node per ghost, shared by every file
// that points at it.

import { chmodSync, chownSync, closeSync, constants as fsc, fstatSync, ftruncateSync, mkdirSync, openSync, rmdirSync, symlinkSync, unlinkSync, utimesSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { readImage } from "../../images/io.js";
import type { ModuleLog } from "../log.js";
import { RestoreError } from "./errors.js";

/** open(2)'s O_CLOEXEC and O_PATH (node:fs constants leave them out). */
const O_CLOEXEC = 0o2000000;
const O_PATH = 0o10000000;

export interface Ghost {
  remapId: number;
  /** the inode it was (the kernel's device number, as fdinfo shows it), where the image says */
  dev: number | undefined;
  ino: bigint | undefined;
  mode: number;
  uid: number;
  gid: number;
  rdev: number;
  atime: number | undefined;
  mtime: number | undefined;
  /** a regular file's data pieces and its size */
  chunks: { off: number; data: Uint8Array }[];
  size: number;
  /** a symlink's target */
  target: string | undefined;
}

const timeval = (t: unknown): number | undefined => {
  const o = t as { tv_sec?: bigint | number; tv_usec?: bigint | number } | undefined;
  return o?.tv_sec !== undefined ? Number(o.tv_sec) + Number(o.tv_usec ?? 0) / 1e6 : undefined;
};

/** Reads and checks ghost-file-<remapId>.img. No side effects. */
export async function readGhost(dir: string, remapId: number, pid: number): Promise<Ghost> {
  const file = join(dir, `ghost-file-${remapId.toString(16)}.img`);
  const img = await readImage(file);
  const [head, ...rest] = img.entries;
  if (!head) throw new RestoreError("plan", pid, "the ghost image has no entry", { file });
  const mode = Number(head["mode"]);
  const type = mode & fsc.S_IFMT;
  const g: Ghost = {
    remapId,
    dev: head["dev"] === undefined ? undefined : Number(head["dev"]),
    ino: head["ino"] === undefined ? undefined : BigInt(head["ino"] as bigint | number),
    mode,
    uid: Number(head["uid"] ?? 0),
    gid: Number(head["gid"] ?? 0),
    rdev: Number(head["rdev"] ?? 0),
    atime: timeval(head["atim"]),
    mtime: timeval(head["mtim"]),
    chunks: [],
    size: 0,
    target: typeof head["symlnk_target"] === "string" ? head["symlnk_target"] : undefined,
  };
  if (type === fsc.S_IFCHR || type === fsc.S_IFBLK) {
    if (head["rdev"] === undefined) throw new RestoreError("plan", pid, "a ghost device node without its device number (rdev)", { file });
  } else if (type === fsc.S_IFLNK) {
    // criu before 3.x wrote none (its restore refuses such an image too); symlink(2)
    // refuses an empty target with ENOENT, which would read as a missing directory.
    if (g.target === undefined || g.target === "") throw new RestoreError("plan", pid, "a ghost symlink without its target (symlnk_target)", { file });
  } else if (type !== fsc.S_IFREG && type !== fsc.S_IFDIR && type !== fsc.S_IFIFO) {
    throw new RestoreError("plan", pid, `a ghost of type 0${type.toString(8)} (mode 0${mode.toString(8)}): tscriu makes regular files, directories, symlinks, FIFOs and device nodes`, { file });
  }
  if (type !== fsc.S_IFREG) return g;
  if (head["chunks"] === true) {
    if (head["size"] === undefined) throw new RestoreError("plan", pid, "a chunked ghost file without its size", { file });
    g.size = Number(head["size"]);
    let end = 0;
    for (const [i, c] of rest.entries()) {
      const off = Number(c["off"]);
      const data = c["extra"] as Uint8Array;
      if (off < end || off + data.length > g.size) {
        throw new RestoreError("plan", pid, `ghost chunk ${i + 1} (${data.length} bytes at ${off}) overlaps the one before it or lies past the file's ${g.size} bytes`, { file });
      }
      end = off + data.length;
      g.chunks.push({ off, data });
    }
  } else {
    const data = (head["extra"] as Uint8Array | undefined) ?? new Uint8Array(0);
    g.chunks.push({ off: 0, data });
    g.size = data.length;
  }
  return g;
}

interface Made {
  path: string;
  fd: number;
  dir: boolean;
}

export class GhostNodes {
  private readonly made = new Map<number, Made>();

  constructor(private readonly pid: number) {}

  /** tscriu's fd of the ghost's node (made on first use); reopen it through /proc/self/fd. */
  fd(g: Ghost, path: string, name: string): number {
    const known = this.made.get(g.remapId);
    if (known) return known.fd;
    const type = g.mode & fsc.S_IFMT;
    const made = this.create(g, path, name);
    this.made.set(g.remapId, made);
    const self = `/proc/self/fd/${made.fd}`;
    try {
      if (type === fsc.S_IFREG) {
        for (const c of g.chunks) for (let done = 0; done < c.data.length; ) done += writeSync(made.fd, c.data, done, c.data.length - done, c.off + done);
        ftruncateSync(made.fd, g.size);
      }
      try {
        chownSync(self, g.uid, g.gid);
      } catch {
        // keep tscriu's owner when the id cannot be had here
      }
      // A symlink's mode is always 0777 and its times follow the link (utimes through
      // /proc/self/fd reaches the target): only its owner is set, as criu's lchown.
      if (type !== fsc.S_IFLNK) {
        // After the chown, which clears set-user-ID and set-group-ID bits.
        chmodSync(self, g.mode & 0o7777);
        if (g.atime !== undefined || g.mtime !== undefined) utimesSync(self, g.atime ?? Date.now() / 1000, g.mtime ?? Date.now() / 1000);
      }
      if (type === fsc.S_IFREG) {
        // Kept read-only from here: the kernel refuses a file open for writing as a task's
        // exe (PR_SET_MM_MAP: EACCES), and the task's own fds reopen it with their flags.
        const ro = openSync(self, fsc.O_RDONLY | O_CLOEXEC);
        closeSync(made.fd);
        made.fd = ro;
      }
    } catch (e) {
      throw Object.assign(new Error(`the unlinked file ${name}, made again at ${made.path}: ${(e as Error).message}`), { file: made.path, cause: e });
    }
    return made.fd;
  }

  private create(g: Ghost, path: string, name: string): Made {
    const type = g.mode & fsc.S_IFMT;
    let at = path;
    for (let i = 0; ; i++) {
      try {
        return this.node(type, at, g);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT" && dirname(dirname(at)) !== dirname(at)) {
          // The directory is gone too: one level up.
          at = join(dirname(dirname(at)), basename(at));
        } else if (code === "EEXIST" && i < 100) {
          at = join(dirname(at), `.tscriu-ghost-${process.pid}-${g.remapId}-${i}`);
        } else {
          throw Object.assign(new Error(`cannot make the unlinked file ${name} again at ${at}: ${code ?? (e as Error).message}`), { file: at, cause: e });
        }
      }
    }
  }

  private node(type: number, path: string, g: Ghost): Made {
    if (type === fsc.S_IFREG) return { path, fd: openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | O_CLOEXEC, 0o600), dir: false };
    if (type === fsc.S_IFDIR) {
      mkdirSync(path, 0o700);
      return { path, fd: openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW | O_CLOEXEC), dir: true };
    }
    if (type === fsc.S_IFLNK) symlinkSync(g.target!, path);
    else bridge().mknod(path, type | 0o600, type === fsc.S_IFIFO ? 0 : g.rdev);
    return { path, fd: openSync(path, O_PATH | fsc.O_NOFOLLOW | O_CLOEXEC), dir: false };
  }

  /**
   * Opens the node of ghost `g` (made by fd() first) by its name with `flags`, for an fd
   * with O_NOFOLLOW (an O_PATH fd of a symlink): through /proc/self/fd that flag would open
   * the magic link itself, and without it the fd would lack the flag the task had. The node
   * opened is checked to be the one tscriu made.
   */
  openByName(g: Ghost, flags: number): number {
    const made = this.made.get(g.remapId)!;
    const fd = openSync(made.path, flags);
    const [a, b] = [fstatSync(fd), fstatSync(made.fd)];
    if (a.dev !== b.dev || a.ino !== b.ino) {
      closeSync(fd);
      throw new Error(`the ghost ${made.path} was replaced while tscriu restored`);
    }
    return fd;
  }

  /** Removes the names again (files first, then directories, the newest first). */
  remove(log: ModuleLog): void {
    const all = [...this.made.values()];
    for (const m of [...all.filter((x) => !x.dir), ...all.filter((x) => x.dir).reverse()]) {
      try {
        if (m.dir) rmdirSync(m.path);
        else unlinkSync(m.path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") log.warn(`pid ${this.pid}: the ghost ${m.path} was not removed: ${(e as Error).message}`);
      }
    }
  }

  /** Closes tscriu's fds of the nodes (the names stay until remove). */
  closeAll(): void {
    for (const m of this.made.values()) {
      if (m.fd < 0) continue;
      try {
        closeSync(m.fd);
      } catch {
        // closed already
      }
      m.fd = -1;
    }
  }
}
