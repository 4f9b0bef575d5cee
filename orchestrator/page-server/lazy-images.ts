// The lazy pages of a dump on disk, for `page-server --lazy-pages` (criu's page server in
// that mode): a dump written locally, its pages served to a remote lazy-pages daemon in
// whatever order the restored tasks fault on them, instead of being copied over first.
//
// What is served is what criu's server serves: for every task of pstree.img that has a
// pagemap, its PE_LAZY runs (those the restore leaves to the daemon), read from the pages
// files as a GET asks for them. A lazy run without data (the images of a dump
// --lazy-pages, whose pages were on that dump's own server) cannot be served: refused
// when the images are read, before the server listens. criu's server would splice
// whatever lies at that offset of the pages file.

import { closeSync, constants as fsc, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { ImageDir } from "../../images/dir.js";
import type { ModuleLog } from "../log.js";
import { PageResolver } from "../restore/pagesegs.js";
import { LazyRuns, type LazyRun } from "./lazy-serve.js";

const PAGE = 4096;
/** Page data is read from the pages files in pieces of at most this many bytes. */
const PIECE = 1 << 20;

/** Lazy pages whose data are at `off` in the pages file open as `fd`. */
interface FileRun extends LazyRun {
  fd: number;
  file: string;
  off: number;
}

/** The lazy pages of the dump in an images dir, read from its pages files as they are asked for. */
export class ImagePageStore extends LazyRuns<FileRun> {
  private readonly files = new Map<string, number>();
  /** the two buffers pieces are read into */
  private readonly ring: (Buffer | undefined)[] = [undefined, undefined];
  private turn = 0;

  private constructor(readonly dir: string) {
    super();
  }

  /** Reads the pagemaps of the tasks of `dir`; throws naming the image when one cannot be served. */
  static async load(dir: string, log: ModuleLog): Promise<ImagePageStore> {
    const store = new ImagePageStore(dir);
    const images = new ImageDir(dir);
    try {
      for (const { pid } of await images.tasks()) {
        const name = `pagemap-${pid}.img`;
        // a zombie has no memory, so no pagemap
        if (!(await images.has(name))) continue;
        const runs: FileRun[] = [];
        for (const s of await new PageResolver(dir, name, pid).resolveLazy()) {
          if (s.file === "") throw new Error(`${join(dir, name)}: the lazy pages at 0x${s.vaddr.toString(16)} have no data in these images (a dump with --lazy-pages serves its own)`);
          if (s.vaddr > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${join(dir, name)}: a run at 0x${s.vaddr.toString(16)} lies past any address space`);
          runs.push({ vaddr: Number(s.vaddr), pages: s.len / PAGE, fd: store.open(s.file), file: s.file, off: s.off });
        }
        store.hold(pid, runs);
        log.info(`pid ${pid}: ${runs.reduce((n, r) => n + r.pages, 0)} lazy pages to serve`);
      }
    } catch (e) {
      store.close();
      throw e;
    } finally {
      await images.close();
    }
    return store;
  }

  /**
   * The pages file, opened with O_DIRECT where its file system takes it: read straight
   * into the two buffers, not through page cache pages that would have to be found fresh
   * memory for (slow here, and the restored tasks want as much at the same time).
   */
  private open(file: string): number {
    let fd = this.files.get(file);
    if (fd !== undefined) return fd;
    try {
      fd = openSync(file, fsc.O_RDONLY | fsc.O_DIRECT);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
      fd = openSync(file, "r");
    }
    this.files.set(file, fd);
    return fd;
  }

  protected *data(r: FileRun, skip: number, n: number): Iterable<Buffer> {
    let off = r.off + skip * PAGE;
    let left = n * PAGE;
    while (left > 0) {
      // two buffers taken in turn (a piece stays good until two more are taken: Found):
      // fresh memory for every piece faults in every page of a transfer, slowly here
      const buf = (this.ring[this.turn] ??= bridge().allocAligned(PIECE));
      this.turn ^= 1;
      const piece = buf.subarray(0, Math.min(PIECE, left));
      const got = readSync(r.fd, piece, 0, piece.length, off);
      if (got !== piece.length) throw new Error(`${r.file}: ${got} of ${piece.length} bytes read at offset ${off} (the file was cut short after the server read its pagemap)`);
      yield piece;
      off += got;
      left -= got;
    }
  }

  /** Lets the pages files go. */
  close(): void {
    for (const fd of this.files.values()) closeSync(fd);
    this.files.clear();
  }
}
