// Which pages changed: byte comparison of two equally long page arrays, or hash comparison
// against the parent image's page hashes. Results are runs of page indexes.
import { BATCH_PAGES, LAYOUT, PAGE_SIZE, checkPages, core, describe, internalError } from "./loader.js";

/** A run of consecutive pages: indexes first .. first + count - 1. */
export interface PageRun {
  first: number;
  count: number;
}

export interface HashDiff {
  /** Runs of pages whose hash differs from the parent's. */
  runs: PageRun[];
  /** The hash of every page of the batch, for the next comparison. */
  hashes: BigUint64Array;
}

/** Appends the runs the core wrote for one batch, merging with the previous batch's last run. */
function collectRuns(runs: PageRun[], n: number, base: number): void {
  const u32 = core().u32;
  const at = LAYOUT.runs / 4;
  for (let i = 0; i < n; i++) {
    const first = (u32[at + 2 * i] ?? 0) + base;
    const count = u32[at + 2 * i + 1] ?? 0;
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === first) last.count += count;
    else runs.push({ first, count });
  }
}

/** Runs of pages where `a` and `b` differ byte-wise. Both must have the same whole number of pages. */
export function diffPages(a: Uint8Array, b: Uint8Array): PageRun[] {
  const n = checkPages("diffPages", "a", a);
  const nb = checkPages("diffPages", "b", b);
  if (n !== nb) throw new RangeError(`diffPages: a has ${n} pages but b has ${nb}`);
  const c = core();
  const half = BATCH_PAGES / 2;
  const bOff = LAYOUT.pages + half * PAGE_SIZE;
  const runs: PageRun[] = [];
  for (let p = 0; p < n; p += half) {
    const k = Math.min(half, n - p);
    c.bytes.set(a.subarray(p * PAGE_SIZE, (p + k) * PAGE_SIZE), LAYOUT.pages);
    c.bytes.set(b.subarray(p * PAGE_SIZE, (p + k) * PAGE_SIZE), bOff);
    const r = c.x.tc_diff_pages(LAYOUT.pages, bOff, k, LAYOUT.runs, LAYOUT.runsCap);
    if (r < 0) throw internalError("tc_diff_pages", r);
    collectRuns(runs, r, p);
  }
  return runs;
}

/**
 * Hashes every page of `data` and returns the runs whose hash differs from
 * `parentHashes` (one xxh64 per page, as {@link hashPages} gives), with the new hashes.
 */
export function diffAgainstHashes(data: Uint8Array, parentHashes: BigUint64Array): HashDiff {
  const n = checkPages("diffAgainstHashes", "data", data);
  if (!(parentHashes instanceof BigUint64Array)) {
    throw new TypeError(`diffAgainstHashes: parentHashes must be a BigUint64Array, got ${describe(parentHashes)}`);
  }
  if (parentHashes.length !== n) {
    throw new RangeError(`diffAgainstHashes: data has ${n} pages but parentHashes has ${parentHashes.length} hashes`);
  }
  const c = core();
  const hashes = new BigUint64Array(n);
  const runs: PageRun[] = [];
  for (let p = 0; p < n; p += BATCH_PAGES) {
    const k = Math.min(BATCH_PAGES, n - p);
    c.bytes.set(data.subarray(p * PAGE_SIZE, (p + k) * PAGE_SIZE), LAYOUT.pages);
    c.u64.set(parentHashes.subarray(p, p + k), LAYOUT.parent / 8);
    const r = c.x.tc_diff_hashes(LAYOUT.pages, k, LAYOUT.parent, LAYOUT.hashes, LAYOUT.runs, LAYOUT.runsCap);
    if (r < 0) throw internalError("tc_diff_hashes", r);
    hashes.set(c.u64.subarray(LAYOUT.hashes / 8, LAYOUT.hashes / 8 + k), p);
    collectRuns(runs, r, p);
  }
  return { runs, hashes };
}

/**
 * Like {@link diffAgainstHashes} for the first `nPages` pages already in the exchange
 * buffer ({@link pageBuffer}), without copying them in.
 */
export function diffPageBufferAgainstHashes(nPages: number, parentHashes: BigUint64Array): HashDiff {
  if (!Number.isInteger(nPages) || nPages < 0 || nPages > BATCH_PAGES) {
    throw new RangeError(`diffPageBufferAgainstHashes: nPages ${nPages} is outside 0..${BATCH_PAGES}`);
  }
  if (!(parentHashes instanceof BigUint64Array)) {
    throw new TypeError(`diffPageBufferAgainstHashes: parentHashes must be a BigUint64Array, got ${describe(parentHashes)}`);
  }
  if (parentHashes.length !== nPages) {
    throw new RangeError(`diffPageBufferAgainstHashes: ${nPages} pages but parentHashes has ${parentHashes.length} hashes`);
  }
  const c = core();
  c.u64.set(parentHashes, LAYOUT.parent / 8);
  const r = c.x.tc_diff_hashes(LAYOUT.pages, nPages, LAYOUT.parent, LAYOUT.hashes, LAYOUT.runs, LAYOUT.runsCap);
  if (r < 0) throw internalError("tc_diff_hashes", r);
  const runs: PageRun[] = [];
  collectRuns(runs, r, 0);
  return { runs, hashes: c.u64.slice(LAYOUT.hashes / 8, LAYOUT.hashes / 8 + nPages) };
}
