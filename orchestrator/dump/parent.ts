// The parent of an incremental dump (--prev-images-dir) and writing the copied pages
// against it. This kernel has no soft-dirty bit (nor has arm64), so what changed since
// the parent is found by content: each copied page is compared byte for byte with the
// page the parent chain holds at that address (read from the parent's pages files), and
// only an identical page is written as PE_PARENT. A hash of the parent's pages would
// save reading them, but a collision would then restore a stale page without a word;
// the full comparison cannot be wrong, costs a read of the parent's pages (from the page
// cache after a pre-dump; done after the task is let go), and needs nothing from the
// task between passes: a pid reused, a page written and written back, a pass that
// failed half-way are all seen for what they are.

import { existsSync, readdirSync, realpathSync, statSync, symlinkSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { PE_PARENT } from "../../images/pages.js";
import { ImageError } from "../../images/errors.js";
import { RestoreError } from "../restore/errors.js";
import { PageResolver, type PageSeg } from "../restore/pagesegs.js";
import type { Captured } from "./capture.js";
import { DumpError } from "./errors.js";
import type { PageTransport } from "./pagewriter.js";

const PAGE = 4096;
/** The parent's pages are read in pieces of this size to be compared. */
const SCRATCH = 8 << 20;
/** Longest single write, and how many are in flight at once (libuv has 4 threads). */
const WRITE_MAX = 16 << 20;
const IN_FLIGHT = 4;

/**
 * Checks --prev-images-dir before anything is touched: relative to the images dir (as
 * criu reads it), an existing directory that holds images of a dump or pre-dump.
 * Returns its path.
 */
export function checkParentDir(pid: number, imagesDir: string, prev: string): string {
  // Relative to where the images dir really is (an RPC client's dir comes as /proc/PID/fd/N),
  // as the parent link made from it resolves.
  let base = imagesDir;
  try {
    base = realpathSync(imagesDir);
  } catch {
    // made by the dump later: as given
  }
  const path = resolve(base, prev);
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new DumpError("parent", pid, `--prev-images-dir ${prev} (${path}) does not exist: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if (!isDir) throw new DumpError("parent", pid, `--prev-images-dir ${prev} (${path}) is not a directory`);
  const names = readdirSync(path);
  if (!names.includes("inventory.img") || !names.some((n) => /^pagemap-\d+\.img$/.test(n))) {
    throw new DumpError("parent", pid, `--prev-images-dir ${prev} (${path}) holds no images of a dump or pre-dump (no inventory.img and pagemap-PID.img)`);
  }
  return path;
}

/** The `parent` link criu makes in the images dir: the --prev-images-dir value as given. */
export function linkParent(pid: number, imagesDir: string, prev: string): void {
  try {
    symlinkSync(prev, join(imagesDir, "parent"));
  } catch (e) {
    throw new DumpError("parent", pid, `cannot make the parent link in ${imagesDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** The parent chain's view of one pagemap, or undefined when the chain has no such pagemap. */
export function parentPages(imagesDir: string, pagemapName: string, pid: number): PageResolver | undefined {
  if (!existsSync(join(imagesDir, "parent"))) return undefined;
  // Level 0 of the resolver is the images dir itself: start one up, at the parent.
  return new PageResolver(join(imagesDir, "parent"), pagemapName, pid, true);
}

export interface WriteStats {
  written: number;
  /** pages found unchanged in the parent (PE_PARENT) */
  skipped: number;
}

/** Queues writes of page data, a few in flight, adjacent pieces of one buffer joined. */
class Writer {
  private pending: { buf: Buffer; off: number; len: number } | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  done = 0;

  constructor(
    private readonly out: PageTransport,
    private readonly progress: (bytes: number) => void,
  ) {}

  async add(buf: Buffer, off: number, len: number): Promise<void> {
    const p = this.pending;
    if (p && p.buf === buf && p.off + p.len === off && p.len + len <= WRITE_MAX) {
      p.len += len;
      return;
    }
    await this.issue();
    this.pending = { buf, off, len };
  }

  private async issue(): Promise<void> {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    // out.write takes its place in the file before its first await: order is kept.
    const w = this.out.write(p.buf.subarray(p.off, p.off + p.len), p.len).then(() => {
      this.done += p.len;
      this.progress(this.done);
    });
    this.inFlight.add(w);
    void w.finally(() => this.inFlight.delete(w)).catch(() => undefined);
    if (this.inFlight.size >= IN_FLIGHT) await Promise.race(this.inFlight);
  }

  async flush(): Promise<void> {
    await this.issue();
    await Promise.all(this.inFlight);
  }

  async abort(): Promise<void> {
    this.pending = undefined;
    await Promise.allSettled(this.inFlight);
  }
}

/** The parent chain's segments for a run; a damaged chain is this dump's error, naming the file. */
async function locate(parent: PageResolver, pid: number, vaddr: number, pages: number): Promise<PageSeg[]> {
  try {
    return await parent.locate(BigInt(vaddr), pages);
  } catch (e) {
    if (!(e instanceof RestoreError) && !(e instanceof ImageError)) throw e;
    // a RestoreError's message starts with the restore's own "restore: plan of pid N failed: "
    const why = e instanceof RestoreError ? e.message.slice(e.message.indexOf("failed: ") + 8) : e.message;
    throw new DumpError("parent", pid, `the parent chain cannot be read: ${why}`, { cause: e });
  }
}

/**
 * Writes copied pages to `out`: pages the parent chain holds with the same bytes as a
 * PE_PARENT entry, the others with their data.
 */
export async function writeCaptured(c: Captured, out: PageTransport, parent: PageResolver | undefined, progress: (bytes: number) => void = () => undefined): Promise<WriteStats> {
  const w = new Writer(out, progress);
  const files = new Map<string, FileHandle>();
  const scratch = parent ? bridge().allocAligned(SCRATCH) : undefined;
  const stats: WriteStats = { written: 0, skipped: 0 };
  const present = async (vaddr: number, pages: number, flags: number, buf: Buffer, off: number): Promise<void> => {
    out.run({ vaddr: BigInt(vaddr), pages, flags });
    stats.written += pages;
    await w.add(buf, off, pages * PAGE);
  };
  try {
    for (const r of c.runs) {
      if (!parent || r.fresh) {
        await present(r.vaddr, r.pages, r.flags, r.buf, r.off);
        continue;
      }
      for (const seg of await locate(parent, c.pid, r.vaddr, r.pages)) {
        const at = Number(seg.vaddr) - r.vaddr;
        if (seg.file === "") {
          await present(Number(seg.vaddr), seg.len / PAGE, r.flags, r.buf, r.off + at);
          continue;
        }
        let fh = files.get(seg.file);
        if (!fh) files.set(seg.file, (fh = await open(seg.file, "r")));
        for (let done = 0; done < seg.len; ) {
          const n = Math.min(SCRATCH, seg.len - done);
          let got = 0;
          while (got < n) {
            const { bytesRead } = await fh.read(scratch!, got, n - got, seg.off + done + got);
            if (bytesRead === 0) throw new DumpError("memory", c.pid, `${seg.file} ends before offset ${seg.off + done + n} (the parent's pagemap says its pages are there)`);
            got += bytesRead;
          }
          // Runs of equal and of changed pages, each written as one entry.
          let from = 0;
          let same = scratch!.compare(r.buf, r.off + at + done, r.off + at + done + PAGE, 0, PAGE) === 0;
          for (let p = PAGE; p <= n; p += PAGE) {
            const eq = p < n ? scratch!.compare(r.buf, r.off + at + done + p, r.off + at + done + p + PAGE, p, p + PAGE) === 0 : !same;
            if (eq === same) continue;
            const vaddr = Number(seg.vaddr) + done + from;
            if (same) {
              out.run({ vaddr: BigInt(vaddr), pages: (p - from) / PAGE, flags: PE_PARENT });
              stats.skipped += (p - from) / PAGE;
            } else {
              await present(vaddr, (p - from) / PAGE, r.flags, r.buf, r.off + at + done + from);
            }
            from = p;
            same = eq;
          }
          done += n;
        }
      }
    }
    await w.flush();
  } catch (e) {
    await w.abort();
    throw e;
  } finally {
    for (const fh of files.values()) await fh.close();
  }
  return stats;
}
