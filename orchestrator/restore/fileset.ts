// The regular files the images refer to (files.img REG entries): checked before anything
// is created, then opened by tscriu when a mapping, an fd, the exe link, cwd or root needs
// them. As criu: a regular file must have the size it had at dump time and, for ELF files
// with a build-id, the same build-id; a missing file is an error naming it. Files that
// were unlinked while in use come back from their ghost images (remap-fpath.img +
// ghost-file-N.img): recreated under their old name when it is free (so /proc shows the
// same "(deleted)" path), opened, and unlinked again at the end of the restore.

import { closeSync, constants as fsc, existsSync, fchmodSync, fchownSync, ftruncateSync, futimesSync, openSync, fstatSync, unlinkSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { readImage } from "../../images/io.js";
import type { FileEntry } from "../../images/dir.js";
import { elfBuildId } from "../dump/filetable.js";
import { RestoreError } from "./errors.js";

/** open(2)'s O_CLOEXEC (node:fs constants leave it out; libuv adds it by itself). */
const O_CLOEXEC = 0o2000000;

export interface RegFile {
  id: number;
  /** the name in the image */
  name: string;
  /** where tscriu opens it (under --root) */
  path: string;
  flags: number;
  pos: bigint;
  size: bigint | undefined;
  buildId: number[] | undefined;
  mode: number | undefined;
  /** the file was unlinked: its contents are in a ghost image */
  ghost: Ghost | undefined;
  /** --link-remap: opened through this linked name, which is removed afterwards */
  linkedFrom: string | undefined;
}

interface Ghost {
  remapId: number;
  entry: Record<string, unknown>;
  chunks: { off: number; data: Uint8Array }[];
  size: number;
}

/** Joins an image path onto --root (the images hold absolute paths of the dumped task). */
export function underRoot(root: string | undefined, path: string): string {
  if (!root || root === "/") return path;
  return join(root, path);
}

export class FileSet {
  private readonly remaps = new Map<number, { remapId: number; type: string }>();
  private readonly opened = new Map<string, number>();
  private readonly ghostFiles: string[] = [];
  private readonly ghostFds = new Map<number, number>();

  private constructor(
    readonly dir: string,
    readonly files: Map<number, FileEntry>,
    readonly root: string | undefined,
    readonly pid: number,
  ) {}

  static async load(dir: string, files: Map<number, FileEntry>, root: string | undefined, pid: number): Promise<FileSet> {
    const set = new FileSet(dir, files, root, pid);
    if (existsSync(join(dir, "remap-fpath.img"))) {
      for (const e of (await readImage(join(dir, "remap-fpath.img"))).entries) {
        set.remaps.set(Number(e["orig_id"]), { remapId: Number(e["remap_id"]), type: typeof e["remap_type"] === "string" ? e["remap_type"] : e["remap_type"] === 1 ? "GHOST" : e["remap_type"] === 2 ? "PROCFS" : "LINKED" });
      }
    }
    return set;
  }

  private entry(id: number, what: string): FileEntry {
    const f = this.files.get(id);
    if (!f) throw new RestoreError("plan", this.pid, `${what} refers to file id ${id}, which files.img does not have`, { file: join(this.dir, "files.img") });
    return f;
  }

  private readonly regs = new Map<number, RegFile>();

  /** The REG entry behind id, with its remap resolved; reads ghost data. Plan-time checks included (once per id). */
  async reg(id: number, what: string): Promise<RegFile> {
    const known = this.regs.get(id);
    if (known) return known;
    const f = await this.resolve(id, what);
    this.regs.set(id, f);
    return f;
  }

  private async resolve(id: number, what: string): Promise<RegFile> {
    const f = this.entry(id, what);
    const reg = f.reg;
    if (!reg) throw new RestoreError("plan", this.pid, `${what}: file id ${id} is ${String(f.type)}, not a regular file entry`, { file: join(this.dir, "files.img") });
    const out: RegFile = {
      id,
      name: reg.name,
      path: underRoot(this.root, reg.name),
      flags: reg.flags,
      pos: reg.pos,
      size: reg.size,
      buildId: reg.build_id && reg.build_id.length ? reg.build_id : undefined,
      mode: reg.mode,
      ghost: undefined,
      linkedFrom: undefined,
    };
    const remap = this.remaps.get(id);
    if (remap?.type === "GHOST") {
      out.ghost = await this.readGhost(remap.remapId);
      return out;
    }
    if (remap?.type === "LINKED") {
      const linked = this.entry(remap.remapId, `the link-remap of ${reg.name}`).reg;
      if (!linked) throw new RestoreError("plan", this.pid, `the link-remap of ${reg.name} is not a regular file entry`);
      out.linkedFrom = underRoot(this.root, linked.name);
    } else if (remap) {
      throw new RestoreError("plan", this.pid, `${reg.name}: remap type ${remap.type} is not supported`, { file: join(this.dir, "remap-fpath.img") });
    }
    this.check(out, what);
    return out;
  }

  private async readGhost(remapId: number): Promise<Ghost> {
    const file = join(this.dir, `ghost-file-${remapId.toString(16)}.img`);
    const img = await readImage(file);
    const [head, ...chunks] = img.entries;
    if (!head) throw new RestoreError("plan", this.pid, "ghost image has no entry", { file });
    if (head["chunks"] === true) {
      const list = chunks.map((c) => ({ off: Number(c["off"]), data: c["extra"] as Uint8Array }));
      return { remapId, entry: head, chunks: list, size: Number(head["size"] ?? 0) };
    }
    const data = (head["extra"] as Uint8Array | undefined) ?? new Uint8Array(0);
    return { remapId, entry: head, chunks: [{ off: 0, data }], size: data.length };
  }

  /** criu's file validation: present, same size, same ELF build-id. */
  private check(f: RegFile, what: string): void {
    const path = f.linkedFrom ?? f.path;
    let fd: number;
    try {
      fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new RestoreError("plan", this.pid, `cannot open ${path} (${what}): ${code}`, { file: path, cause: e });
    }
    try {
      const st = fstatSync(fd, { bigint: true });
      const isReg = (Number(st.mode) & fsc.S_IFMT) === fsc.S_IFREG;
      if (isReg && f.size !== undefined && st.size !== f.size) {
        throw new RestoreError("plan", this.pid, `file ${path} has bad size ${st.size} (expect ${f.size}) (${what})`, { file: path });
      }
      if (isReg && f.buildId) {
        const now = elfBuildId(fd);
        if (now && now.join(",") !== f.buildId.join(",")) {
          throw new RestoreError("plan", this.pid, `file ${path} has another ELF build-id than at dump time (${what})`, { file: path });
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  /**
   * A local fd of the file, opened with `flags` (O_CLOEXEC added), cached per (id, flags):
   * several mappings of one file share it. Ghost files are recreated on first use.
   */
  open(f: RegFile, flags: number): number {
    const key = `${f.id}:${flags}`;
    const known = this.opened.get(key);
    if (known !== undefined) return known;
    let fd: number;
    if (f.ghost) {
      const g = this.ghostFd(f);
      fd = openSync(`/proc/self/fd/${g}`, flags | O_CLOEXEC);
    } else {
      const path = f.linkedFrom ?? f.path;
      try {
        fd = openSync(path, flags | O_CLOEXEC | fsc.O_NOCTTY);
      } catch (e) {
        throw Object.assign(new Error(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`), { file: path });
      }
    }
    this.opened.set(key, fd);
    return fd;
  }

  /** A fresh open file description (an fd of the task: offset and flags of its own). */
  openFresh(f: RegFile, flags: number): number {
    const key = `${f.id}:${flags}:fresh:${this.opened.size}`;
    const fd = f.ghost ? openSync(`/proc/self/fd/${this.ghostFd(f)}`, flags | O_CLOEXEC) : openSync(f.linkedFrom ?? f.path, flags | O_CLOEXEC | fsc.O_NOCTTY);
    this.opened.set(key, fd);
    return fd;
  }

  private ghostFd(f: RegFile): number {
    const known = this.ghostFds.get(f.id);
    if (known !== undefined) return known;
    const g = f.ghost!;
    const mode = Number(g.entry["mode"] ?? f.mode ?? 0o100600);
    if ((mode & fsc.S_IFMT) !== fsc.S_IFREG) throw new Error(`ghost file ${f.name}: only regular files can be recreated (mode 0${mode.toString(8)})`);
    // The old name when it is free; else a name beside it that says what it is.
    let path = f.path;
    let fd: number | undefined;
    for (let i = 0; fd === undefined; i++) {
      try {
        fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | O_CLOEXEC, 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST" || i > 100) {
          throw Object.assign(new Error(`cannot recreate the unlinked file ${f.name} at ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`), { file: path });
        }
        path = join(dirname(f.path), `.tscriu-ghost-${process.pid}-${g.remapId}-${i}`);
      }
    }
    this.ghostFiles.push(path);
    for (const c of g.chunks) for (let done = 0; done < c.data.length; ) done += writeSync(fd, c.data, done, c.data.length - done, c.off + done);
    // chunked images may end in a hole
    if (g.size > fstatSync(fd).size) ftruncateSync(fd, g.size);
    fchmodSync(fd, mode & 0o7777);
    try {
      fchownSync(fd, Number(g.entry["uid"] ?? 0), Number(g.entry["gid"] ?? 0));
    } catch {
      // keep our owner when the id does not exist here
    }
    const tv = (t: unknown): number => {
      const o = t as { tv_sec?: bigint; tv_usec?: bigint } | undefined;
      return o?.tv_sec !== undefined ? Number(o.tv_sec) + Number(o.tv_usec ?? 0n) / 1e6 : Date.now() / 1000;
    };
    futimesSync(fd, tv(g.entry["atim"]), tv(g.entry["mtim"]));
    this.ghostFds.set(f.id, fd);
    return fd;
  }

  /**
   * Removes recreated ghost files (once every fd and mapping holds them). Link-remap files
   * stay: the images still need them for the next restore.
   */
  unlinkTemporaries(): void {
    for (const p of this.ghostFiles.splice(0)) {
      try {
        unlinkSync(p);
      } catch {
        // gone already
      }
    }
  }

  /** Closes every fd tscriu opened (the task holds its own copies by now). */
  closeAll(): void {
    for (const fd of [...this.opened.values(), ...this.ghostFds.values()]) {
      try {
        closeSync(fd);
      } catch {
        // closed already
      }
    }
    this.opened.clear();
    this.ghostFds.clear();
  }
}

/** open(2) flags to reopen a file as the task had it (the kernel keeps no O_CREAT/O_TRUNC in f_flags). */
export function reopenFlags(flags: number): number {
  return flags & ~(fsc.O_CREAT | fsc.O_EXCL | fsc.O_TRUNC | fsc.O_NOCTTY);
}

