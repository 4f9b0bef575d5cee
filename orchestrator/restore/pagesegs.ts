// Where the bytes of every dumped page are: pagemap runs resolved to (pages file, offset)
// segments, following the `parent` chain for PE_PARENT runs (pre-dumps and incremental
// dumps), as the page reader does for single reads. PE_LAZY runs count as present when
// PE_PRESENT is set too (criu marks every anonymous page that way); a lazy run without
// data (a `dump --lazy-pages`) needs a lazy-pages daemon. With `restore --lazy-pages`
// the top-level PE_LAZY runs are left out and go to the daemon (resolveLazy), as criu
// leaves them.

import { existsSync, lstatSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT, readPagemap, type Pagemap } from "../../images/pages.js";
import { RestoreError } from "./errors.js";

export interface PageSeg {
  /** address in the task (or offset in a shared memory object) */
  vaddr: bigint;
  /** bytes */
  len: number;
  /** the raw pages file */
  file: string;
  /** byte offset in that file */
  off: number;
}

export const MAX_CHAIN = 64;

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

interface Level {
  dir: string;
  map: Pagemap;
}

/** Resolves every run of pagemap `name` in `dir` (and its parents) to page segments. */
export class PageResolver {
  private readonly levels: (Level | null)[] = [];

  constructor(
    private readonly dir: string,
    private readonly name: string,
    private readonly pid: number,
    /** a dump in the chain without this pagemap ends the chain (a dump's parent lookup) */
    private readonly missingEnds = false,
  ) {}

  private async level(i: number): Promise<Level | null> {
    if (i < this.levels.length) return this.levels[i]!;
    if (i >= MAX_CHAIN) throw new RestoreError("plan", this.pid, `parent chain of ${this.dir} is longer than ${MAX_CHAIN} (a loop?)`);
    let dir = this.dir;
    if (i > 0) {
      const prev = await this.level(i - 1);
      if (!prev) return null;
      try {
        dir = realpathSync(join(prev.dir, "parent"));
      } catch (e) {
        // No parent link: the chain ends. A link that leads nowhere is a broken chain.
        const err = e as NodeJS.ErrnoException;
        if (err.code === "ENOENT" && !isLink(join(prev.dir, "parent"))) {
          this.levels.push(null);
          return null;
        }
        throw new RestoreError("plan", this.pid, `the parent link of ${prev.dir} is broken: ${err.code ?? err.message}`, { file: join(prev.dir, "parent") });
      }
    }
    if (this.missingEnds && !existsSync(join(dir, this.name))) {
      this.levels.push(null);
      return null;
    }
    const map = await readPagemap(dir, this.name);
    const lvl = { dir, map };
    this.levels.push(lvl);
    return lvl;
  }

  /** Reads every pagemap of the chain now (a dump does it before its freeze, not while the tasks are frozen). */
  async preload(): Promise<void> {
    for (let i = 0; (await this.level(i)) !== null; i++);
  }

  /**
   * Every page of the pagemap as segments, in address order; throws for pages without
   * data. With `skipLazy`, the PE_LAZY runs are left out (a lazy restore's daemon fills
   * them) and listed in `lazy`.
   */
  async resolve(skipLazy = false): Promise<{ segs: PageSeg[]; pages: number; lazy: { vaddr: bigint; pages: number }[] }> {
    const top = (await this.level(0))!;
    const segs: PageSeg[] = [];
    let pages = 0;
    const lazy: { vaddr: bigint; pages: number }[] = [];
    for (const r of top.map.runs) {
      if (r.nrPages === 0) continue;
      if (skipLazy && r.flags & PE_LAZY) {
        lazy.push({ vaddr: r.vaddr, pages: r.nrPages });
        continue;
      }
      await this.resolveRange(0, r.vaddr, r.nrPages, segs);
      pages += r.nrPages;
    }
    await this.checkSizes(segs);
    return { segs, pages, lazy };
  }

  /**
   * The PE_LAZY runs of the pagemap, for a lazy-pages daemon: where the images hold their
   * data (PE_PRESENT too), segments of the pages file; where they do not (a dump with
   * --lazy-pages), segments with file "" (the data is on the dump's page server).
   */
  async resolveLazy(): Promise<PageSeg[]> {
    const top = (await this.level(0))!;
    const out: PageSeg[] = [];
    for (const r of top.map.runs) {
      if (r.nrPages === 0 || !(r.flags & PE_LAZY)) continue;
      if (r.flags & PE_PRESENT) await this.resolveRange(0, r.vaddr, r.nrPages, out);
      else this.gap(out, r.vaddr, r.nrPages);
    }
    await this.checkSizes(out.filter((s) => s.file !== ""));
    return out;
  }

  /**
   * Where the chain holds pages [vaddr, vaddr + nrPages): segments in address order, those
   * the chain does not hold (no entry, a lazy page without data, no pagemap) with file "".
   * For an incremental dump, which looks its pages up in its parent.
   */
  async locate(vaddr: bigint, nrPages: number): Promise<PageSeg[]> {
    const out: PageSeg[] = [];
    await this.resolveRange(0, vaddr, nrPages, out, true);
    await this.checkSizes(out.filter((s) => s.file !== ""));
    return out;
  }

  private gap(out: PageSeg[], at: bigint, n: number): void {
    const last = out[out.length - 1];
    if (last && last.file === "" && last.vaddr + BigInt(last.len) === at) last.len += n * PAGE_SIZE;
    else out.push({ vaddr: at, len: n * PAGE_SIZE, file: "", off: -1 });
  }

  private async resolveRange(depth: number, vaddr: bigint, nrPages: number, out: PageSeg[], gaps = false): Promise<void> {
    const lvl = await this.level(depth);
    const P = BigInt(PAGE_SIZE);
    if (!lvl && gaps) return this.gap(out, vaddr, nrPages);
    if (!lvl) throw new RestoreError("plan", this.pid, `pages at 0x${vaddr.toString(16)} are in the parent dump, but there is no parent link`, { file: join(this.dir, this.name) });
    let at = vaddr;
    const end = vaddr + BigInt(nrPages) * P;
    // runs are sorted: binary search the first run ending after `at`
    const runs = lvl.map.runs;
    let lo = 0;
    let hi = runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const r = runs[mid]!;
      if (r.vaddr + BigInt(r.nrPages) * P <= at) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; at < end; i++) {
      const r = runs[i];
      if ((!r || r.vaddr > at) && gaps) {
        const stop = r && r.vaddr < end ? r.vaddr : end;
        this.gap(out, at, Number((stop - at) / P));
        at = stop;
        i--;
        continue;
      }
      if (!r || r.vaddr > at) {
        throw new RestoreError("plan", this.pid, `missing 0x${at.toString(16)} in the pagemap of ${lvl.dir}`, { file: join(lvl.dir, this.name) });
      }
      const rEnd = r.vaddr + BigInt(r.nrPages) * P;
      const stop = rEnd < end ? rEnd : end;
      const n = Number((stop - at) / P);
      if (r.flags & PE_PARENT) {
        await this.resolveRange(depth + 1, at, n, out, gaps);
      } else if (r.flags & PE_PRESENT) {
        const file = join(lvl.dir, `pages-${lvl.map.pagesId}.img`);
        const off = (r.pageOffset + Number((at - r.vaddr) / P)) * PAGE_SIZE;
        const last = out[out.length - 1];
        if (last && last.file === file && last.vaddr + BigInt(last.len) === at && last.off + last.len === off) last.len += n * PAGE_SIZE;
        else out.push({ vaddr: at, len: n * PAGE_SIZE, file, off });
      } else if (gaps) {
        this.gap(out, at, n);
      } else if (r.flags & PE_LAZY) {
        throw new RestoreError("plan", this.pid, `0x${at.toString(16)} is a lazy page (PE_LAZY) with no data in the images: restore it with --lazy-pages and a lazy-pages daemon`, { file: join(lvl.dir, this.name) });
      } else {
        throw new RestoreError("plan", this.pid, `pagemap entry at 0x${r.vaddr.toString(16)} has unknown flags ${r.flags}`, { file: join(lvl.dir, this.name) });
      }
      at = stop;
    }
  }

  /** Bounds before buffers: every segment must lie inside its pages file. */
  private async checkSizes(segs: readonly PageSeg[]): Promise<void> {
    const sizes = new Map<string, number>();
    for (const s of segs) {
      let size = sizes.get(s.file);
      if (size === undefined) {
        try {
          size = statSync(s.file).size;
        } catch (e) {
          throw new RestoreError("plan", this.pid, `cannot read pages: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: s.file, cause: e });
        }
        sizes.set(s.file, size);
      }
      if (s.off + s.len > size) {
        throw new RestoreError("plan", this.pid, `the pages file ends at ${size} bytes, but the pagemap wants data up to ${s.off + s.len} (for 0x${s.vaddr.toString(16)})`, { file: s.file });
      }
    }
  }
}
