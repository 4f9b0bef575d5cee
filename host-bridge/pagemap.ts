// Which pages of a range are present or swapped: the PAGEMAP_SCAN ioctl through the
// bridge (Linux >= 6.7, whole runs per call), and the fallback that reads
// /proc/PID/pagemap itself (8 bytes per page) for kernels without it.
import { closeSync, openSync, readSync } from "node:fs";
import { bridge, isNativeError } from "./load.js";
import { u64At, u64Halves } from "./u64.js";
import type { PagemapScanOptions } from "./native.js";

/** PAGE_IS_* category bits of PAGEMAP_SCAN (include/uapi/linux/fs.h). */
export const PAGE_IS = {
  WPALLOWED: 1 << 0,
  WRITTEN: 1 << 1,
  FILE: 1 << 2,
  PRESENT: 1 << 3,
  SWAPPED: 1 << 4,
  PFNZERO: 1 << 5,
  HUGE: 1 << 6,
  SOFT_DIRTY: 1 << 7,
  GUARD: 1 << 8,
} as const;

/** PM_SCAN_* flags. */
export const PM_SCAN = {
  WP_MATCHING: 1 << 0,
  CHECK_WPASYNC: 1 << 1,
} as const;

/** Bits of a /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst). */
export const PM_ENTRY = {
  PRESENT: 1n << 63n,
  SWAPPED: 1n << 62n,
  /** File page or shared anonymous page (not a private anonymous one). */
  FILE_SHARED: 1n << 61n,
  UFFD_WP: 1n << 57n,
  EXCLUSIVE: 1n << 56n,
  SOFT_DIRTY: 1n << 55n,
  PFN_MASK: (1n << 55n) - 1n,
} as const;

export const PAGE_SIZE = 4096;

/** A run of pages [start, end) with the same categories (PAGE_IS_* bits). */
export interface PageRegion {
  start: number;
  end: number;
  categories: number;
}

/** Selection and reported bits, as PAGEMAP_SCAN takes them. */
export interface PageSelect {
  /** A page is selected when it has any of these (default PRESENT|SWAPPED). */
  anyOf?: number | undefined;
  /** Bits reported per region. */
  returnMask?: number | undefined;
}

const DEFAULT_ANYOF = PAGE_IS.PRESENT | PAGE_IS.SWAPPED;
const SCAN_RETURN = PAGE_IS.PRESENT | PAGE_IS.SWAPPED | PAGE_IS.FILE | PAGE_IS.PFNZERO | PAGE_IS.HUGE;
/** The categories the fallback can tell from a pagemap entry. */
const FALLBACK_RETURN = PAGE_IS.PRESENT | PAGE_IS.SWAPPED | PAGE_IS.FILE | PAGE_IS.SOFT_DIRTY | PAGE_IS.WRITTEN;

function checkRange(fn: string, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start % PAGE_SIZE || end % PAGE_SIZE || end < start) {
    throw new RangeError(`${fn}: start/end must be page-aligned safe integers with start <= end (got 0x${start.toString(16)}-0x${end.toString(16)})`);
  }
}

/** PAGEMAP_SCAN through the bridge, as regions. */
export function pagemapScan(pid: number, start: number, end: number, options?: PagemapScanOptions): PageRegion[] {
  checkRange("pagemapScan", start, end);
  const triples = bridge().pagemapScan(pid, start, end, options);
  const h = u64Halves(triples);
  const out: PageRegion[] = new Array<PageRegion>(Math.floor(triples.length / 3));
  for (let j = 0; j < out.length; j++) {
    out[j] = { start: u64At(h, 3 * j), end: u64At(h, 3 * j + 1), categories: u64At(h, 3 * j + 2) };
  }
  return out;
}

/** The categories the fallback derives from one pagemap entry. */
export function entryCategories(entry: bigint): number {
  let c = 0;
  if (entry & PM_ENTRY.PRESENT) c |= PAGE_IS.PRESENT;
  if (entry & PM_ENTRY.SWAPPED) c |= PAGE_IS.SWAPPED;
  if ((entry & (PM_ENTRY.PRESENT | PM_ENTRY.SWAPPED)) !== 0n) {
    if (entry & PM_ENTRY.FILE_SHARED) c |= PAGE_IS.FILE;
    // As PAGEMAP_SCAN: a mapped page without the uffd write-protect bit counts as written.
    if (!(entry & PM_ENTRY.UFFD_WP)) c |= PAGE_IS.WRITTEN;
  }
  if (entry & PM_ENTRY.SOFT_DIRTY) c |= PAGE_IS.SOFT_DIRTY;
  return c;
}

/**
 * The fallback: reads /proc/PID/pagemap over [start, end) and builds the same regions
 * PAGEMAP_SCAN would for PRESENT/SWAPPED/FILE/SOFT_DIRTY/WRITTEN (it cannot tell PFNZERO or
 * HUGE). Costs 8 bytes of reading per page, so pass VMA ranges, not the address space.
 */
export function readPagemap(pid: number, start: number, end: number, select: PageSelect = {}): PageRegion[] {
  checkRange("readPagemap", start, end);
  const anyOf = select.anyOf ?? DEFAULT_ANYOF;
  const returnMask = (select.returnMask ?? SCAN_RETURN) & FALLBACK_RETURN;
  const out: PageRegion[] = [];
  const path = `/proc/${pid}/pagemap`;
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw Object.assign(new Error(`open ${path}: ESRCH (No such process)`), { code: "ESRCH", syscall: "open", pid, path });
    }
    throw e;
  }
  try {
    const CHUNK = 8192; // entries per read: 32 MiB of address space
    const buf = Buffer.alloc(CHUNK * 8);
    let last: PageRegion | undefined;
    for (let page = start / PAGE_SIZE; page < end / PAGE_SIZE; ) {
      const n = Math.min(CHUNK, end / PAGE_SIZE - page);
      const got = readSync(fd, buf, 0, n * 8, page * 8);
      if (got < 8) break; // past the end of the user address space
      for (let i = 0; i < got / 8; i++) {
        const cats = entryCategories(buf.readBigUInt64LE(i * 8));
        const addr = (page + i) * PAGE_SIZE;
        if (!(cats & anyOf)) continue;
        const c = cats & returnMask;
        if (last && last.end === addr && last.categories === c) {
          last.end = addr + PAGE_SIZE;
        } else {
          last = { start: addr, end: addr + PAGE_SIZE, categories: c };
          out.push(last);
        }
      }
      page += got / 8;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * Present-or-swapped pages of [start, end): PAGEMAP_SCAN where the kernel has it, else the
 * /proc/PID/pagemap reader (ENOTTY before 6.7).
 */
export function presentPages(pid: number, start: number, end: number): PageRegion[] {
  try {
    return pagemapScan(pid, start, end);
  } catch (e) {
    if (isNativeError(e) && (e.code === "ENOTTY" || e.code === "EINVAL" || e.code === "EOPNOTSUPP")) {
      return readPagemap(pid, start, end);
    }
    throw e;
  }
}
