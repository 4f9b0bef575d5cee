// files.img: every file the images refer to, numbered as criu numbers them (in the
// order the dump meets them: mapped files, then fds, then cwd and root). Files that
// are not opened through an fd (mappings, exe, cwd, root) are shared by device and
// inode; files open in fds by open file description. Unlinked files point at a ghost
// (remap-fpath.img + ghost-file-N.img, ghost.ts), as criu does, within --ghost-limit;
// those that keep other hard links at a link made for the restore (--link-remap,
// link-remap.ts). Files of a gone process's /proc directory get a PROCFS remap
// (procfs-remap.ts).

import type { FileValidation } from "../fds/file-validation.js";
import { lstatSync, readSync, type BigIntStats } from "node:fs";
import { Ghosts } from "./ghost.js";
import { LinkRemaps } from "./link-remap.js";
import { ProcfsRemaps } from "./procfs-remap.js";

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

function sameInode(path: string, st: BigIntStats): boolean {
  try {
    const now = lstatSync(path, { bigint: true });
    return now.ino === st.ino && now.dev === st.dev;
  } catch {
    return false;
  }
}

export class FileTable {
  private next = 1;
  private readonly byInode = new Map<string, number>();
  readonly entries: Record<string, unknown>[] = [];
  readonly remaps: Record<string, unknown>[] = [];
  /** the file id of each packet socket dumped, by inode (a mapped ring names its socket by it) */
  readonly sockets = new Map<bigint, number>();
  readonly ghosts: Ghosts;
  readonly links: LinkRemaps;
  private readonly procfs: ProcfsRemaps;
  /** a pre-dump writes no file image: unlinked files get no ghost or link */
  private readonly remapping: boolean;

  /** `treeIds`: the PIDs and TIDs of the dumped tree */
  /** --file-validation filesize: no build-id recorded */
  private readonly buildIds: boolean;

  constructor(opts: { ghostLimit: number; linkRemap: boolean; preDump: boolean; treeIds: ReadonlySet<number>; fileValidation?: FileValidation | undefined }) {
    this.buildIds = opts.fileValidation !== "filesize";
    this.ghosts = new Ghosts(opts.ghostLimit);
    this.links = new LinkRemaps(opts.linkRemap);
    this.procfs = new ProcfsRemaps(opts.treeIds);
    this.remapping = !opts.preDump;
  }

  /**
   * How the dump keeps an unlinked inode (by the kernel's device number, as fdinfo shows
   * it): a ghost, a link made for it, or nothing (no file of the dump holds it).
   */
  remapOfInode(dev: number, ino: bigint): { ghost: true } | { link: string } | undefined {
    if (this.ghosts.has(dev, ino)) return { ghost: true };
    const link = this.links.ofInode(dev, ino);
    return link ? { link: link.path } : undefined;
  }

  newId(): number {
    return this.next++;
  }

  add(entry: Record<string, unknown>): void {
    this.entries.push(entry);
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
    let proc;
    try {
      proc = this.procfs.classify(st, linkName);
    } catch (e) {
      throw new Error(`pid ${pid}: ${(e as Error).message}`, { cause: e });
    }
    // (A file really named "x (deleted)" is that file, not an unlinked "x".)
    const deleted = !proc && linkName.endsWith(" (deleted)") && !sameInode(linkName, st);
    const name = proc ? proc.name : deleted ? linkName.slice(0, -" (deleted)".length) : linkName;
    const reg: Record<string, unknown> = { id, flags, pos, fown, name, mode: Number(st.mode) };
    const isReg = (Number(st.mode) & 0o170000) === 0o100000;
    // criu skips the size check of append-only logs: they grow after the dump.
    if (isReg && !((flags & O_ACCMODE) === O_WRONLY && flags & O_APPEND)) {
      reg["size"] = st.size;
      const bid = this.buildIds ? elfBuildId(fd) : undefined;
      if (bid) reg["build_id"] = bid;
    }
    if (proc?.deadPid !== undefined && this.remapping) {
      const remap = this.procfs.remapOf(id, proc.deadPid);
      if (remap) this.remaps.push(remap);
    }
    if (deleted && this.remapping) {
      try {
        this.remaps.push(st.nlink > 0n ? { orig_id: id, remap_id: this.linkRemap(fd, st, name), remap_type: "LINKED" } : { orig_id: id, remap_id: this.ghosts.of(fd, st, name), remap_type: "GHOST" });
      } catch (e) {
        throw new Error(`pid ${pid}: ${(e as Error).message}`, { cause: e });
      }
    }
    return reg;
  }

  /** The id of the REG entry of the link made for an unlinked file with other links (written once per inode). */
  private linkRemap(fd: number, st: BigIntStats, name: string): number {
    const { remap, made } = this.links.of(fd, st, name, () => this.newId());
    // As criu writes it: the name only, no flags, offset, owner, mode or size.
    if (made) this.add({ type: "REG", id: remap.id, reg: { id: remap.id, flags: 0, pos: 0n, fown: NO_OWNER, name: remap.path } });
    return remap.id;
  }
}
