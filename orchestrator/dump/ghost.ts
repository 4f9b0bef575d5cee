// Ghost files: files that were unlinked while the task still uses them (an fd, a
// mapping, its cwd, root or exe). As criu: one ghost per inode, shared by every fd and
// mapping of it (remap-fpath.img points each files.img entry at it), holding the
// inode's type, owner, mode and times (ghost_file_entry) and, for a regular file, its
// data. A regular file of three pages or more is stored in chunks that leave its holes
// out (SEEK_DATA/SEEK_HOLE), so a sparse file comes back sparse and costs only its
// data; --ghost-limit bounds the data, not the apparent size. Directories, FIFOs and
// device nodes have no data: they come back as empty nodes of their kind; a symlink (held
// by an O_PATH fd) keeps its target (symlnk_target), as criu 4.2 does.

import { closeSync, constants as fsc, openSync, readSync, type BigIntStats } from "node:fs";
import { bridge } from "../../host-bridge/load.js";

/** Files this large (bytes) and larger are written in chunks (criu's threshold). */
const CHUNKS_FROM = 3 * 4096;
/** st_blocks counts 512-byte units. */
const BLOCK = 512n;

export interface GhostChunk {
  off: number;
  data: Uint8Array;
}

export interface GhostFile {
  id: number;
  /** ghost_file_entry without its data */
  entry: Record<string, unknown>;
  /** a regular file's data: one piece from offset 0 (small files) or its chunks */
  chunks: GhostChunk[] | undefined;
}

/** The kernel's dev_t encoding (major << 20 | minor) criu stores, from glibc's st_dev. */
export function kernelDev(dev: bigint): number {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return Number((major << 20n) | minor);
}

const timeval = (ns: bigint): Record<string, bigint> => ({ tv_sec: ns / 1_000_000_000n, tv_usec: (ns % 1_000_000_000n) / 1000n });

export class Ghosts {
  private readonly byInode = new Map<string, number>();
  readonly files: GhostFile[] = [];

  constructor(private readonly limit: number) {}

  /** Whether the dump keeps a ghost of this inode (dev: the kernel's device number, as fdinfo shows it). */
  has(dev: number, ino: bigint): boolean {
    return this.byInode.has(`${dev}:${ino}`);
  }

  /**
   * The ghost id of the unlinked inode behind tscriu's `fd` (a copy of the task's fd, or a
   * map_files/proc link opened by tscriu), saved on first use. `name` is the path it had.
   */
  of(fd: number, st: BigIntStats, name: string): number {
    const key = `${kernelDev(st.dev)}:${st.ino}`;
    const known = this.byInode.get(key);
    if (known !== undefined) return known;
    const type = Number(st.mode) & fsc.S_IFMT;
    const entry: Record<string, unknown> = {
      uid: Number(st.uid),
      gid: Number(st.gid),
      mode: Number(st.mode),
      dev: kernelDev(st.dev),
      ino: st.ino,
      atim: timeval(st.atimeNs),
      mtim: timeval(st.mtimeNs),
    };
    let chunks: GhostChunk[] | undefined;
    if (type === fsc.S_IFREG) {
      const data = st.blocks * BLOCK;
      if (data > BigInt(this.limit)) {
        throw new Error(`unlinked file ${name} holds ${data} bytes of data, more than --ghost-limit ${this.limit}`);
      }
      chunks = readData(fd, st.size, name, this.limit);
      if (st.size >= BigInt(CHUNKS_FROM)) {
        entry["chunks"] = true;
        entry["size"] = st.size;
      } else {
        chunks = [{ off: 0, data: wholeOf(chunks, Number(st.size)) }];
      }
    } else if (type === fsc.S_IFCHR || type === fsc.S_IFBLK) {
      // criu keeps the node's number as glibc's st_rdev (old encoding for small numbers)
      entry["rdev"] = Number(st.rdev & 0xffffffffn);
    } else if (type === fsc.S_IFLNK) {
      // Only an O_PATH|O_NOFOLLOW fd holds a symlink; readlinkat(fd, "") reads it unlinked.
      entry["symlnk_target"] = bridge().readlink("", fd);
    } else if (type !== fsc.S_IFDIR && type !== fsc.S_IFIFO) {
      throw new Error(`unlinked ${name} is a ${type === fsc.S_IFSOCK ? "socket" : `file of type 0${type.toString(8)}`}; tscriu keeps unlinked regular files, directories, symlinks, FIFOs and device nodes`);
    }
    const id = this.files.length + 1;
    this.files.push({ id, entry, chunks });
    this.byInode.set(key, id);
    return id;
  }
}

/** The file's data ranges (holes left out), read through /proc/self/fd: the task's own fd may be write-only. */
function readData(fd: number, size: bigint, name: string, limit: number): GhostChunk[] {
  const rd = openSync(`/proc/self/fd/${fd}`, fsc.O_RDONLY);
  try {
    const end = Number(size);
    const chunks: GhostChunk[] = [];
    let total = 0;
    for (let at = 0; at < end; ) {
      let data: number;
      let hole: number;
      try {
        data = bridge().seekData(rd, at);
        if (data < 0 || data >= end) break;
        hole = bridge().seekHole(rd, data);
        if (hole < 0 || hole > end) hole = end;
      } catch {
        // A file system without SEEK_DATA: all of it is data.
        data = at;
        hole = end;
      }
      total += hole - data;
      if (total > limit) throw new Error(`unlinked file ${name} holds more than --ghost-limit ${limit} bytes of data`);
      const buf = Buffer.alloc(hole - data);
      let got = 0;
      while (got < buf.length) {
        const n = readSync(rd, buf, got, buf.length - got, data + got);
        if (n === 0) break;
        got += n;
      }
      // The file shrank while it was read: keep what is there.
      chunks.push({ off: data, data: buf.subarray(0, got) });
      at = hole;
    }
    return chunks;
  } finally {
    closeSync(rd);
  }
}

/** A small file's bytes in one piece, holes as zeros. */
function wholeOf(chunks: GhostChunk[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (const c of chunks) out.set(c.data.subarray(0, Math.max(0, size - c.off)), c.off);
  return out;
}

/** The ghost-file image's entries: the head, then the raw data or one entry per chunk. */
export function ghostImageEntries(g: GhostFile): Record<string, unknown>[] {
  if (!g.chunks) return [g.entry];
  if (g.entry["chunks"] !== true) return [{ ...g.entry, extra: g.chunks[0]?.data ?? new Uint8Array(0) }];
  return [g.entry, ...g.chunks.map((c) => ({ len: c.data.length, off: c.off, extra: c.data }))];
}
