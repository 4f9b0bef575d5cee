// Reading page contents out of an image directory: pagemap-*.img says which
// virtual pages were dumped and how (PE_PRESENT: data in pages-<id>.img in order;
// PE_PARENT: look in the parent dump; PE_LAZY: served by a page server), and the
// raw pages file holds the bytes. Reads follow the `parent` symlink chain.

import { lstat, open, realpath, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { decodeImage } from "./codec.js";
import { ImageError } from "./errors.js";
import { readWhole } from "./io.js";

export const PAGE_SIZE = 4096;
export const PE_PARENT = 1;
export const PE_LAZY = 2;
export const PE_PRESENT = 4;

/** One pagemap run with old-image compatibility applied. */
export interface PageRun {
  vaddr: bigint;
  nrPages: number;
  flags: number;
  /** page index in the pages file of the first page (PE_PRESENT runs only; -1 otherwise) */
  pageOffset: number;
}

export interface Pagemap {
  file: string;
  pagesId: number;
  runs: PageRun[];
}

function toNum(v: unknown): number {
  return typeof v === "bigint" ? Number(v) : typeof v === "number" ? v : 0;
}

/**
 * Normalizes pagemap entries: old images mark parent pages with in_parent, have no
 * flags (meaning PE_PRESENT) and count pages in compat_nr_pages.
 */
export function parsePagemap(buf: Uint8Array, file: string): Pagemap {
  const img = decodeImage(buf, file);
  if (img.type.layout.kind !== "pagemap") throw new ImageError(`not a pagemap image (magic ${img.type.name})`, { file });
  const [head, ...rest] = img.entries;
  if (!head) throw new ImageError("pagemap has no pagemap_head entry", { file, offset: 8 });
  const runs: PageRun[] = [];
  let next = 0;
  let prevEnd = 0n;
  for (const e of rest) {
    const vaddr = e["vaddr"] as bigint;
    const nrPages = e["nr_pages"] !== undefined ? toNum(e["nr_pages"]) : toNum(e["compat_nr_pages"]);
    let flags: number;
    if (e["flags"] !== undefined) flags = e["flags"] as number;
    else flags = e["in_parent"] === true ? PE_PARENT : PE_PRESENT;
    if (vaddr % BigInt(PAGE_SIZE) !== 0n) throw new ImageError(`pagemap entry at 0x${vaddr.toString(16)} is not page aligned`, { file });
    if (vaddr < prevEnd) throw new ImageError(`pagemap entries overlap or are unsorted at 0x${vaddr.toString(16)}`, { file });
    prevEnd = vaddr + BigInt(nrPages) * BigInt(PAGE_SIZE);
    const present = (flags & PE_PRESENT) !== 0 && (flags & PE_PARENT) === 0;
    runs.push({ vaddr, nrPages, flags, pageOffset: present ? next : -1 });
    if (present) next += nrPages;
  }
  return { file, pagesId: toNum(head["pages_id"]), runs };
}

/** Reads and normalizes pagemap `name` of an images dir. */
export async function readPagemap(dir: string, name: string): Promise<Pagemap> {
  const file = join(dir, name);
  let buf: Buffer;
  try {
    buf = await readWhole(file);
  } catch (e) {
    throw new ImageError(`cannot read pagemap: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
  }
  return parsePagemap(buf, file);
}

/**
 * The address ranges pagemap entries have data for, here or further up the chain
 * (PE_PRESENT or PE_PARENT), as (start, end) pairs with adjacent entries joined.
 */
export function coverageOf(runs: readonly Pick<PageRun, "vaddr" | "nrPages" | "flags">[]): BigUint64Array {
  const covered: bigint[] = [];
  for (const r of runs) {
    if (!(r.flags & (PE_PRESENT | PE_PARENT)) || r.nrPages === 0) continue;
    const end = r.vaddr + BigInt(r.nrPages) * BigInt(PAGE_SIZE);
    if (covered.length && covered[covered.length - 1] === r.vaddr) covered[covered.length - 1] = end;
    else covered.push(r.vaddr, end);
  }
  return new BigUint64Array(covered);
}

/** What a pagemap image covers (coverageOf its entries). */
export async function pagemapCoverage(dir: string, name: string): Promise<BigUint64Array> {
  return coverageOf((await readPagemap(dir, name)).runs);
}

/** Finds the run holding page address a (binary search), or undefined. */
export function findRun(runs: readonly PageRun[], a: bigint): PageRun | undefined {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid]!;
    if (a < r.vaddr) hi = mid - 1;
    else if (a >= r.vaddr + BigInt(r.nrPages) * BigInt(PAGE_SIZE)) lo = mid + 1;
    else return r;
  }
  return undefined;
}

const MAX_CHAIN = 64;

/** Reads the bytes a dumped task had at any virtual address, across the parent chain. */
export class PageReader {
  private fh: FileHandle | undefined;
  private parentReader: PageReader | null | undefined;

  private constructor(
    readonly dir: string,
    readonly pagemapName: string,
    readonly pagemap: Pagemap,
    private readonly depth: number,
  ) {}

  /** Opens pagemap `name` (e.g. "pagemap-42.img") in dir. */
  static async open(dir: string, pagemapName: string, depth = 0): Promise<PageReader> {
    return new PageReader(dir, pagemapName, await readPagemap(dir, pagemapName), depth);
  }

  get pagesFile(): string {
    return join(this.dir, `pages-${this.pagemap.pagesId}.img`);
  }

  private async parent(): Promise<PageReader | null> {
    if (this.parentReader !== undefined) return this.parentReader;
    if (this.depth >= MAX_CHAIN) throw new ImageError(`parent chain longer than ${MAX_CHAIN} (a loop?)`, { file: this.dir });
    let pdir: string;
    try {
      pdir = await realpath(join(this.dir, "parent"));
    } catch (e) {
      // No parent link ends the chain; a link that leads nowhere is a broken chain.
      const link = await lstat(join(this.dir, "parent")).then(
        (st) => st.isSymbolicLink(),
        () => false,
      );
      if ((e as NodeJS.ErrnoException).code === "ENOENT" && !link) {
        this.parentReader = null;
        return null;
      }
      throw new ImageError(`the parent link is broken: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: join(this.dir, "parent") });
    }
    this.parentReader = await PageReader.open(pdir, this.pagemapName, this.depth + 1);
    return this.parentReader;
  }

  /** Reads `length` bytes at virtual address `addr` into a new buffer. */
  async read(addr: bigint | number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(BigInt(addr), out);
    return out;
  }

  async readInto(addr: bigint, out: Uint8Array): Promise<void> {
    let done = 0;
    const P = BigInt(PAGE_SIZE);
    while (done < out.length) {
      const a = addr + BigInt(done);
      const page = a - (a % P);
      const run = findRun(this.pagemap.runs, page);
      if (!run) {
        throw new ImageError(`address 0x${a.toString(16)} is not in the dump`, { file: this.pagemap.file });
      }
      const runEnd = run.vaddr + BigInt(run.nrPages) * P;
      const n = Number(BigInt(Math.min(out.length - done, Number(runEnd - a)))); // bytes from this run
      if (run.flags & PE_PARENT) {
        const parent = await this.parent();
        if (!parent) throw new ImageError(`0x${a.toString(16)} is in the parent dump, but there is no parent link`, { file: this.pagemap.file });
        await parent.readInto(a, out.subarray(done, done + n));
      } else if (run.flags & PE_PRESENT) {
        const off = (run.pageOffset + Number((a - run.vaddr) / P)) * PAGE_SIZE + Number(a % P);
        this.fh ??= await open(this.pagesFile, "r").catch((e: Error) => {
          throw new ImageError(`cannot open pages: ${e.message}`, { file: this.pagesFile });
        });
        const { bytesRead } = await this.fh.read(out, done, n, off);
        if (bytesRead !== n) {
          throw new ImageError(`pages file ends before the data of 0x${a.toString(16)}`, { file: this.pagesFile, offset: off + bytesRead });
        }
      } else {
        throw new ImageError(`0x${a.toString(16)} is lazy (PE_LAZY): its data is not in the images`, { file: this.pagemap.file });
      }
      done += n;
    }
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
    if (this.parentReader) await this.parentReader.close();
  }
}
