// --link-remap: a file the task holds whose name was removed while the inode keeps
// other hard links (nlink > 0) cannot be a ghost -- its data lives on under the other
// names, and a copy would split it in two -- so it is given a name again, as criu does
// (files-reg.c): a hard link `link_remap.<id>` in the directory the file was in (where
// that directory is gone too, in the nearest one above that is left), made from tscriu's
// own fd of it (linkat AT_EMPTY_PATH). files.img gets a REG entry for that name and
// remap-fpath.img a LINKED entry pointing the file at it; a restore opens the file
// through the link and removes it. One link per inode, shared by every file of it.
//
// The link is a change to the file system: it is removed again when the dump fails or
// the tasks run on (-R), and stays only for the restore of tasks killed or left stopped.

import { unlinkSync, type BigIntStats } from "node:fs";
import { dirname, join } from "node:path";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { ModuleLog } from "../log.js";
import { kernelDev } from "./ghost.js";

export interface LinkRemap {
  /** the files.img id of the link's REG entry */
  id: number;
  /** where the link is */
  path: string;
}

export class LinkRemaps {
  private readonly byInode = new Map<string, LinkRemap>();
  /** every link made, in order */
  readonly made: LinkRemap[] = [];

  constructor(private readonly allowed: boolean) {}

  /** The link of an inode, if the dump made one (by the kernel's device number, as fdinfo shows it). */
  ofInode(dev: number, ino: bigint): LinkRemap | undefined {
    return this.byInode.get(`${dev}:${ino}`);
  }

  /**
   * The link of the unlinked inode behind tscriu's `fd` (a copy of the task's fd, or a
   * map_files link it opened), made on first use with the id `newId` gives. `name` is the
   * path the file had; `nlink` its other links.
   */
  of(fd: number, st: BigIntStats, name: string, newId: () => number): { remap: LinkRemap; made: boolean } {
    const key = `${kernelDev(st.dev)}:${st.ino}`;
    const known = this.byInode.get(key);
    if (known) return { remap: known, made: false };
    if (!this.allowed) {
      throw new Error(`${name} was unlinked but has ${st.nlink} other link${st.nlink === 1n ? "" : "s"}: such a file is dumped with --link-remap (a hard link to it is made next to its old name until the restore), as criu does`);
    }
    const id = newId();
    const file = `link_remap.${id}`;
    let at = join(dirname(name), file);
    for (;;) {
      try {
        bridge().linkFd(fd, at);
        break;
      } catch (e) {
        const code = isNativeError(e) ? e.code : undefined;
        // The directory is gone too: the one above it (criu's trim_last_parent).
        if (code === "ENOENT" && dirname(at) !== "/") {
          at = join(dirname(dirname(at)), file);
          continue;
        }
        const why = code === "EEXIST" ? `${at} exists already (left by an earlier dump?)` : (e as Error).message;
        throw new Error(`cannot link the unlinked file ${name} back as ${at} (--link-remap): ${why}`, { cause: e });
      }
    }
    const remap = { id, path: at };
    this.byInode.set(key, remap);
    this.made.push(remap);
    return { remap, made: true };
  }

  /** Removes the links again (a failed dump, or tasks that run on): the file system as before the dump. */
  remove(log: ModuleLog): void {
    for (const m of this.made.splice(0)) {
      try {
        unlinkSync(m.path);
        log.info(`link remap ${m.path} removed`);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") log.warn(`the link remap ${m.path} was not removed: ${(e as Error).message}`);
      }
    }
    this.byInode.clear();
  }
}

