// The regular files the images refer to (files.img REG entries): checked before anything
// is created, then opened by tscriu when a mapping, an fd, the exe link, cwd or root needs
// them. As criu: a regular file must have the size it had at dump time and, for ELF files
// with a build-id, the same build-id; a missing file is an error naming it. Files that
// were unlinked while in use come back from their ghost images (ghost.ts), made again,
// opened, and removed again at the end of the restore. Those dumped with --link-remap
// are opened through the link the dump made, which a successful restore removes (a
// failed one leaves it for the next try, as criu does). A file of a gone process's /proc
// directory (a PROCFS remap) keeps its name: a helper process with that PID lives while
// it is opened (procfs-helpers.ts).

import { closeSync, constants as fsc, existsSync, lstatSync, openSync, fstatSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { readImage } from "../../images/io.js";
import type { FileEntry } from "../../images/dir.js";
import type { ModuleLog } from "../log.js";
import { elfBuildId } from "../dump/filetable.js";
import type { FileValidation } from "../fds/file-validation.js";
import { RestoreError } from "./errors.js";
import { GhostNodes, readGhost, type Ghost } from "./ghost.js";

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

/** Joins an image path onto --root (the images hold absolute paths of the dumped task). */
export function underRoot(root: string | undefined, path: string): string {
  if (!root || root === "/") return path;
  return join(root, path);
}

/** A process's /proc directory or a file in it (/proc/PID, /proc/PID/...). */
const PROC_PID_FILE = /^\/proc\/\d+(?:\/|$)/;

/** The largest PID the kernel can have (PID_MAX_LIMIT on 64-bit). */
const PID_MAX_LIMIT = 4194304;

/** A file of a gone process's /proc directory (remap-fpath.img's PROCFS entry). */
export interface DeadProcFile {
  /** the gone process's PID */
  pid: number;
  /** the file's name in the images */
  name: string;
}

/** Whether an image's path is a process's /proc directory or a file in it (/proc/PID, /proc/PID/fdinfo/3, /proc/PID/stat). */
export function inProcDir(name: string): boolean {
  return PROC_PID_FILE.test(name);
}

export class FileSet {
  private readonly remaps = new Map<number, { remapId: number; type: string }>();
  private readonly opened = new Map<string, number>();
  private readonly ghosts: GhostNodes;
  private readonly ghostImages = new Map<number, Promise<Ghost>>();

  private constructor(
    readonly dir: string,
    readonly files: Map<number, FileEntry>,
    readonly root: string | undefined,
    readonly pid: number,
    /** --skip-file-rwx-check: the permission bits are left out of the mode check */
    private readonly skipRwx: boolean,
    /** --file-validation filesize: the recorded ELF build-ids are not compared */
    private readonly buildIds: boolean,
  ) {
    this.ghosts = new GhostNodes(pid);
  }

  static async load(dir: string, files: Map<number, FileEntry>, root: string | undefined, pid: number, skipRwx = false, validation: FileValidation = "buildid"): Promise<FileSet> {
    const set = new FileSet(dir, files, root, pid, skipRwx, validation === "buildid");
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
    // Opened while the helper with the PID lives, not before: nothing to look at now.
    if (remap?.type === "PROCFS") return out;
    if (remap?.type === "GHOST") {
      // Files that share a ghost share one read of it.
      let g = this.ghostImages.get(remap.remapId);
      if (!g) this.ghostImages.set(remap.remapId, (g = readGhost(this.dir, remap.remapId, this.pid)));
      out.ghost = await g;
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

  /**
   * The files of gone processes' /proc directories (PROCFS remaps), one per PID, checked:
   * the remap names a PID, and its file is in that PID's /proc directory.
   */
  deadProcFiles(): DeadProcFile[] {
    const out = new Map<number, DeadProcFile>();
    const image = join(this.dir, "remap-fpath.img");
    for (const [origId, remap] of this.remaps) {
      if (remap.type !== "PROCFS") continue;
      const pid = remap.remapId;
      const name = this.entry(origId, `the PROCFS remap of PID ${pid}`).reg?.name;
      if (name === undefined) throw new RestoreError("plan", this.pid, `the PROCFS remap of PID ${pid} points at file id ${origId}, which is no regular file entry`, { file: image });
      if (!(Number.isInteger(pid) && pid > 0 && pid <= PID_MAX_LIMIT)) throw new RestoreError("plan", this.pid, `the PROCFS remap of ${name} names PID ${pid}, which is no PID`, { file: image });
      if (PROC_PID_FILE.exec(name)?.[0].replace(/\/$/, "") !== `/proc/${pid}`) throw new RestoreError("plan", this.pid, `the PROCFS remap of PID ${pid} is for ${name}, which is not in /proc/${pid}`, { file: image });
      if (!out.has(pid)) out.set(pid, { pid, name });
    }
    return [...out.values()];
  }

  /**
   * criu's file validation: present, same size, same mode (type, permission bits unless
   * --skip-file-rwx-check, set-id and sticky bits), same ELF build-id. A file of a process's
   * /proc directory (a child's /proc/PID/stat held open) is looked at when it is opened: its
   * process may be one the restore has not made yet.
   */
  private check(f: RegFile, what: string): void {
    if (PROC_PID_FILE.test(f.name)) return;
    const path = f.linkedFrom ?? f.path;
    if (((f.mode ?? 0) & fsc.S_IFMT) === fsc.S_IFLNK) {
      // An O_PATH fd of the symlink itself: the link must be there, whatever it points at.
      let st;
      try {
        st = lstatSync(path);
      } catch (e) {
        throw new RestoreError("plan", this.pid, `cannot find the symlink ${path} (${what}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: path, cause: e });
      }
      if (!st.isSymbolicLink()) throw new RestoreError("plan", this.pid, `${path} is no longer a symlink (${what})`, { file: path });
      return;
    }
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
      // Under --root the root is the directory given for it, whatever its mode.
      if (f.mode !== undefined && !(this.root && f.name === "/")) {
        const ignored = this.skipRwx ? 0o777 : 0;
        const now = Number(st.mode) & ~ignored;
        const then = f.mode & ~ignored;
        if (now !== then) {
          const hint = this.skipRwx ? "" : "; --skip-file-rwx-check restores it with other permission bits";
          throw new RestoreError("plan", this.pid, `file ${path} has bad mode 0${now.toString(8)} (expect 0${then.toString(8)}) (${what})${hint}`, { file: path });
        }
      }
      if (isReg && f.buildId && this.buildIds) {
        const now = elfBuildId(fd);
        if (now && now.join(",") !== f.buildId.join(",")) {
          throw new RestoreError("plan", this.pid, `file ${path} has another ELF build-id than at dump time (${what}); --file-validation filesize checks its size only`, { file: path });
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
    const fd = this.openNew(f, flags);
    this.opened.set(key, fd);
    return fd;
  }

  /** A fresh open file description (an fd of the task: offset and flags of its own). */
  openFresh(f: RegFile, flags: number): number {
    const key = `${f.id}:${flags}:fresh:${this.opened.size}`;
    const fd = this.openNew(f, flags);
    this.opened.set(key, fd);
    return fd;
  }

  private openNew(f: RegFile, flags: number): number {
    if (f.ghost) {
      const ghostFd = this.ghostFd(f);
      if (flags & fsc.O_NOFOLLOW) return this.ghosts.openByName(f.ghost, flags | O_CLOEXEC);
      return openSync(`/proc/self/fd/${ghostFd}`, flags | O_CLOEXEC);
    }
    const path = f.linkedFrom ?? f.path;
    try {
      return openSync(path, flags | O_CLOEXEC | fsc.O_NOCTTY);
    } catch (e) {
      throw Object.assign(new Error(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`), { file: path });
    }
  }

  private ghostFd(f: RegFile): number {
    return this.ghosts.fd(f.ghost!, f.path, f.name);
  }

  /**
   * The ghost of an unlinked inode (the kernel's device number and the inode number, as an
   * inotify watch names it), as the file that points at it; undefined when no ghost was
   * that inode. As criu's lookup_ghost_remap: a watch on a file that was unlinked comes
   * back on the file made again.
   */
  async ghostOfInode(dev: number, ino: bigint): Promise<RegFile | undefined> {
    for (const [origId, remap] of this.remaps) {
      if (remap.type !== "GHOST") continue;
      const f = await this.reg(origId, `the ghost of inode 0x${ino.toString(16)}`);
      if (f.ghost?.dev === dev && f.ghost.ino === ino) return f;
    }
    return undefined;
  }

  /** tscriu's read-only fd of a ghost's node (made on first use); it stays tscriu's. */
  ghostNode(f: RegFile): number {
    if (!f.ghost) throw new Error(`${f.name} is not a ghost file`);
    return this.ghostFd(f);
  }

  /**
   * Removes the names of made-again unlinked files (once every fd and mapping holds
   * them). Link-remap files stay: a failed restore needs them for the next try.
   */
  unlinkTemporaries(log: ModuleLog): void {
    this.ghosts.remove(log);
  }

  /** The restore succeeded: the links --link-remap made at dump go, as criu removes them. */
  removeLinkRemaps(log: ModuleLog): void {
    const done = new Set<string>();
    for (const f of this.regs.values()) {
      if (f.linkedFrom === undefined || done.has(f.linkedFrom)) continue;
      done.add(f.linkedFrom);
      try {
        unlinkSync(f.linkedFrom);
        log.info(`link remap ${f.linkedFrom} removed`);
      } catch (e) {
        // The tasks hold the file already: nothing of the restore is lost.
        log.warn(`pid ${this.pid}: the link remap ${f.linkedFrom} of ${f.name} was not removed: ${(e as Error).message}`);
      }
    }
  }

  /** Closes every fd tscriu opened (the task holds its own copies by now). */
  closeAll(): void {
    for (const fd of this.opened.values()) {
      try {
        closeSync(fd);
      } catch {
        // closed already
      }
    }
    this.opened.clear();
    this.ghosts.closeAll();
  }
}

/** O_TMPFILE without its O_DIRECTORY part (the kernel's __O_TMPFILE). */
const O_TMPFILE_BIT = 0o20000000;

/**
 * open(2) flags to reopen a file as the task had it: no O_CREAT/O_EXCL/O_TRUNC/O_NOCTTY,
 * and a file made with O_TMPFILE (whose f_flags keep O_TMPFILE, O_DIRECTORY included)
 * reopened as the regular file it is.
 */
export function reopenFlags(flags: number): number {
  let f = flags & ~(fsc.O_CREAT | fsc.O_EXCL | fsc.O_TRUNC | fsc.O_NOCTTY);
  if (f & O_TMPFILE_BIT) f &= ~(O_TMPFILE_BIT | fsc.O_DIRECTORY);
  return f;
}

