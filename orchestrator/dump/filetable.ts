// files.img: every file the images refer to, numbered as criu numbers them (in the
// order the dump meets them: mapped files, then fds, then cwd and root). Files that
// are not opened through an fd (mappings, exe, cwd, root) are shared by device and
// inode; files open in fds by open file description. Unlinked files get a ghost copy
// (remap-fpath.img + ghost-file-N.img), as criu does, within --ghost-limit.

import { closeSync, openSync, readSync, type BigIntStats } from "node:fs";

const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_APPEND = 0o2000;

export interface Fown {
  uid: number;
  euid: number;
  signum: number;
  pid_type: number;
  pid: number;
}

export const NO_OWNER: Fown = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };

export interface GhostFile {
  id: number;
  entry: Record<string, unknown>;
  data: Uint8Array;
}

/** The kernel's dev_t encoding (major << 20 | minor) criu stores, from glibc's st_dev. */
export function kernelDev(dev: bigint): number {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return Number((major << 20n) | minor);
}

/** The GNU build-id of an ELF file as little-endian 32-bit words, or undefined (also for unreadable fds). */
export function elfBuildId(fd: number): number[] | undefined {
  try {
    return buildIdOf(fd);
  } catch {
    return undefined;
  }
}

function buildIdOf(fd: number): number[] | undefined {
  const hdr = Buffer.alloc(64);
  if (readSync(fd, hdr, 0, 64, 0) < 64) return undefined;
  if (hdr.readUInt32BE(0) !== 0x7f454c46 || hdr[4] !== 2 || hdr[5] !== 1) return undefined; // 64-bit LE only
  const phoff = Number(hdr.readBigUInt64LE(32));
  const phentsize = hdr.readUInt16LE(54);
  const phnum = hdr.readUInt16LE(56);
  if (phnum === 0 || phnum > 256 || phentsize < 56) return undefined;
  const ph = Buffer.alloc(phentsize * phnum);
  if (readSync(fd, ph, 0, ph.length, phoff) < ph.length) return undefined;
  for (let i = 0; i < phnum; i++) {
    const p = i * phentsize;
    if (ph.readUInt32LE(p) !== 4) continue; // PT_NOTE
    const off = Number(ph.readBigUInt64LE(p + 8));
    const size = Math.min(Number(ph.readBigUInt64LE(p + 32)), 1 << 16);
    const notes = Buffer.alloc(size);
    const got = readSync(fd, notes, 0, size, off);
    for (let q = 0; q + 12 <= got; ) {
      const namesz = notes.readUInt32LE(q);
      const descsz = notes.readUInt32LE(q + 4);
      const type = notes.readUInt32LE(q + 8);
      const name = q + 12;
      const desc = name + ((namesz + 3) & ~3);
      if (desc + descsz > got) break;
      if (type === 3 && namesz === 4 && notes.toString("latin1", name, name + 3) === "GNU") {
        const words: number[] = [];
        for (let k = 0; k + 4 <= descsz; k += 4) words.push(notes.readUInt32LE(desc + k));
        return words;
      }
      q = desc + ((descsz + 3) & ~3);
    }
  }
  return undefined;
}

export class FileTable {
  private next = 1;
  private readonly byInode = new Map<string, number>();
  private readonly byShmem = new Map<bigint, number>();
  readonly entries: Record<string, unknown>[] = [];
  readonly remaps: Record<string, unknown>[] = [];
  readonly ghosts: GhostFile[] = [];
  private ghostIds = 0;

  constructor(private readonly ghostLimit: number) {}

  newId(): number {
    return this.next++;
  }

  add(entry: Record<string, unknown>): void {
    this.entries.push(entry);
  }

  /** The MEMFD entry of a shared memory object (by inode), added when first met. */
  memfd(ino: bigint, inodeId: number): number {
    let id = this.byShmem.get(ino);
    if (id === undefined) {
      id = this.newId();
      this.byShmem.set(ino, id);
      this.add({ type: "MEMFD", id, memfd: { id, flags: 0, pos: 0n, fown: NO_OWNER, inode_id: inodeId } });
    }
    return id;
  }

  /**
   * A REG entry for a file that is not an fd (a mapping, exe, cwd, root), shared by
   * device and inode. `fd` is open on the file itself, `linkName` is the kernel's name
   * for it (with " (deleted)" when unlinked).
   */
  mappedFile(fd: number, st: BigIntStats, linkName: string, pid: number): number {
    const key = `${st.dev}:${st.ino}`;
    const known = this.byInode.get(key);
    if (known !== undefined) return known;
    const id = this.newId();
    this.byInode.set(key, id);
    this.add({ type: "REG", id, reg: this.regEntry(id, fd, st, linkName, 0, 0n, NO_OWNER, pid) });
    return id;
  }

  /** The reg_file_entry of an open file; registers a ghost copy when it is unlinked. */
  regEntry(id: number, fd: number, st: BigIntStats, linkName: string, flags: number, pos: bigint, fown: Fown, pid: number): Record<string, unknown> {
    const deleted = linkName.endsWith(" (deleted)") && st.nlink === 0n;
    const name = deleted ? linkName.slice(0, -" (deleted)".length) : linkName;
    const reg: Record<string, unknown> = { id, flags, pos, fown, name, mode: Number(st.mode) };
    const isReg = (Number(st.mode) & 0o170000) === 0o100000;
    // criu skips the size check of append-only logs: they grow after the dump.
    if (isReg && !((flags & O_ACCMODE) === O_WRONLY && flags & O_APPEND)) {
      reg["size"] = st.size;
      const bid = elfBuildId(fd);
      if (bid) reg["build_id"] = bid;
    }
    if (deleted) this.ghost(id, fd, st, name, pid);
    return reg;
  }

  private ghost(origId: number, fd: number, st: BigIntStats, name: string, pid: number): void {
    const isReg = (Number(st.mode) & 0o170000) === 0o100000;
    if (!isReg) throw new Error(`unlinked ${name} of pid ${pid} is not a regular file; only regular ghost files are supported`);
    if (st.size > BigInt(this.ghostLimit)) {
      throw new Error(`unlinked file ${name} is ${st.size} bytes, more than --ghost-limit ${this.ghostLimit}`);
    }
    const data = Buffer.alloc(Number(st.size));
    // Through /proc/self/fd: the task's own fd may be write-only.
    const rd = openSync(`/proc/self/fd/${fd}`, "r");
    try {
      for (let got = 0; got < data.length; ) {
        const n = readSync(rd, data, got, data.length - got, got);
        if (n === 0) break;
        got += n;
      }
    } finally {
      closeSync(rd);
    }
    const remapId = ++this.ghostIds;
    const tv = (ns: bigint): Record<string, bigint> => ({ tv_sec: ns / 1_000_000_000n, tv_usec: (ns % 1_000_000_000n) / 1000n });
    this.ghosts.push({
      id: remapId,
      entry: {
        uid: Number(st.uid),
        gid: Number(st.gid),
        mode: Number(st.mode),
        dev: kernelDev(st.dev),
        ino: st.ino,
        atim: tv(st.atimeNs),
        mtim: tv(st.mtimeNs),
      },
      data,
    });
    this.remaps.push({ orig_id: origId, remap_id: remapId, remap_type: "GHOST" });
  }
}
