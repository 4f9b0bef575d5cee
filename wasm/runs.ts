// Range algebra on pagemap runs, computed in wasm (core-c/ranges.c).
//
// A run is { vaddr, nrPages, flags } as in pagemap-N.img: vaddr page aligned, nrPages > 0.
// Every input list must be sorted by vaddr with no two runs overlapping (touching is
// fine); anything else is a RangeError naming the list and the run.
//
//   mergeRuns(runs)        normalize: merge runs that touch and carry equal flags
//   splitRuns(runs, addr)  cut the run that straddles addr; { below, above }
//   subtractRuns(a, b)     pages of a that b does not have, with a's flags
//   intersectRuns(a, b)    pages both have, with a's flags
//   unionRuns(a, b)        pages either has; where both do, a's flags win ("a over b")
//
// merge/subtract/intersect/union return normalized lists; split keeps runs as given.
// Lists too large for the exchange buffer are cut into address windows, each computed
// in wasm, and the results joined.
import { TC_ERR, core, describe, hex, internalError } from "./loader.js";

/** Pagemap entry flags (criu's PE_*). */
export const PE_PARENT = 1;
export const PE_LAZY = 2;
export const PE_PRESENT = 4;

export interface PagemapRun {
  vaddr: bigint;
  nrPages: bigint;
  flags: number;
}

export const RUN_BYTES = 24; // struct tc_run
const U64_LIMIT = 1n << 64n;
const PAGE_SHIFT = 12n;

export function runEnd(r: PagemapRun): bigint {
  return r.vaddr + (r.nrPages << PAGE_SHIFT);
}

/** TypeError/RangeError for anything that is not a list of runs with u64 fields and u32 flags. */
export function checkRunShapes(fn: string, name: string, runs: unknown): asserts runs is readonly PagemapRun[] {
  if (!Array.isArray(runs)) throw new TypeError(`${fn}: ${name} must be an array of runs, got ${describe(runs)}`);
  for (let i = 0; i < runs.length; i++) {
    const r: unknown = runs[i];
    if (typeof r !== "object" || r === null) throw new TypeError(`${fn}: ${name}[${i}] must be a run object, got ${describe(r)}`);
    const { vaddr, nrPages, flags } = r as Record<string, unknown>;
    if (typeof vaddr !== "bigint") throw new TypeError(`${fn}: ${name}[${i}].vaddr must be a bigint, got ${describe(vaddr)}`);
    if (typeof nrPages !== "bigint") throw new TypeError(`${fn}: ${name}[${i}].nrPages must be a bigint, got ${describe(nrPages)}`);
    if (typeof flags !== "number") throw new TypeError(`${fn}: ${name}[${i}].flags must be a number, got ${describe(flags)}`);
    if (vaddr < 0n || vaddr >= U64_LIMIT) throw new RangeError(`${fn}: ${name}[${i}].vaddr ${vaddr} does not fit in 64 bits`);
    if (nrPages < 0n || nrPages >= U64_LIMIT) throw new RangeError(`${fn}: ${name}[${i}].nrPages ${nrPages} does not fit in 64 bits`);
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) {
      throw new RangeError(`${fn}: ${name}[${i}].flags ${flags} is not a 32-bit unsigned integer`);
    }
  }
}

/** Writes runs[from..to) at byte offset `off` of the exchange buffer. */
export function writeRuns(runs: readonly PagemapRun[], off: number, from = 0, to = runs.length): void {
  const { u64, u32 } = core();
  let q = off / 8;
  for (let i = from; i < to; i++, q += 3) {
    const r = runs[i];
    if (!r) break;
    u64[q] = r.vaddr;
    u64[q + 1] = r.nrPages;
    u32[2 * q + 4] = r.flags;
    u32[2 * q + 5] = 0;
  }
}

export function readRuns(off: number, n: number): PagemapRun[] {
  const { u64, u32 } = core();
  const out: PagemapRun[] = new Array<PagemapRun>(n);
  for (let i = 0, q = off / 8; i < n; i++, q += 3) {
    out[i] = { vaddr: u64[q] ?? 0n, nrPages: u64[q + 1] ?? 0n, flags: u32[2 * q + 4] ?? 0 };
  }
  return out;
}

function at(runs: readonly PagemapRun[], i: number): string {
  const r = runs[i];
  return r ? `${hex(r.vaddr)} (${r.nrPages} pages)` : "?";
}

/** Turns a core error about run `index` of `runs` into a RangeError that names it. */
export function runError(fn: string, code: number, name: string, runs: readonly PagemapRun[], index: number): Error {
  const here = `${name}[${index}] at ${at(runs, index)}`;
  const prev = runs[index - 1];
  switch (code) {
    case TC_ERR.ALIGN:
      return new RangeError(`${fn}: ${name}[${index}] vaddr ${hex(runs[index]?.vaddr ?? 0n)} is not page aligned`);
    case TC_ERR.EMPTY_RUN:
      return new RangeError(`${fn}: ${here} is empty: nrPages must be at least 1`);
    case TC_ERR.OVERFLOW:
      return new RangeError(`${fn}: ${here} runs past the end of the 64-bit address space`);
    case TC_ERR.UNSORTED:
      return new RangeError(`${fn}: ${here} starts below ${name}[${index - 1}] at ${at(runs, index - 1)}: runs must be sorted by vaddr`);
    case TC_ERR.OVERLAP:
      return new RangeError(
        `${fn}: ${here} overlaps ${name}[${index - 1}] (${hex(prev?.vaddr ?? 0n)}-${hex(prev ? runEnd(prev) : 0n)})`,
      );
    case TC_ERR.FLAGS:
      return new RangeError(`${fn}: ${here} has both PE_PARENT and PE_PRESENT (flags ${runs[index]?.flags})`);
    default:
      return internalError(fn, code);
  }
}

/** Validates a list of any length in buffer-sized chunks that overlap by one run. */
export function validateRuns(fn: string, name: string, runs: readonly PagemapRun[], dedupFlags: boolean): void {
  const c = core();
  const per = Math.floor(c.size / RUN_BYTES);
  for (let start = 0; start < runs.length; start += per - 1) {
    const end = Math.min(runs.length, start + per);
    writeRuns(runs, 0, start, end);
    const r = c.x.tc_runs_validate(0, end - start, dedupFlags ? 1 : 0);
    if (r < 0) throw runError(fn, r, name, runs, start + (c.x.tc_err_index() >>> 0));
    if (end === runs.length) break;
  }
}

/** Copies of the parts of runs inside [lo, hi), in order; runs are sorted and disjoint. */
export function clipRuns(runs: readonly PagemapRun[], lo: bigint, hi: bigint): PagemapRun[] {
  let l = 0;
  let h = runs.length;
  while (l < h) {
    const m = (l + h) >> 1;
    const r = runs[m];
    if (r && runEnd(r) <= lo) l = m + 1;
    else h = m;
  }
  const out: PagemapRun[] = [];
  for (let i = l; i < runs.length; i++) {
    const r = runs[i];
    if (!r || r.vaddr >= hi) break;
    const e0 = runEnd(r);
    const s = r.vaddr < lo ? lo : r.vaddr;
    const e = e0 > hi ? hi : e0;
    out.push({ vaddr: s, nrPages: (e - s) >> PAGE_SHIFT, flags: r.flags });
  }
  return out;
}

/**
 * Computes `attempt` over the whole address space, or, when it answers null (the
 * lists do not fit the buffer), over two halves split at the median start of the
 * longest list, recursively, and joins the halves with `join`. `tryWhole` = false
 * skips the first attempt when the caller already knows it fails.
 * The lists must already be validated (sorted and disjoint).
 */
export function windowed<T>(
  lists: readonly (readonly PagemapRun[])[],
  attempt: (clipped: readonly (readonly PagemapRun[])[], lo: bigint) => T | null,
  join: (left: T, right: T) => T,
  tryWhole = true,
  lo = 0n,
  hi = U64_LIMIT,
  depth = 0,
): T {
  const r = tryWhole ? attempt(lists, lo) : null;
  if (r !== null) return r;
  let longest: readonly PagemapRun[] = [];
  for (const l of lists) if (l.length > longest.length) longest = l;
  const mid = longest[longest.length >> 1]?.vaddr;
  if (mid === undefined || longest.length < 2 || mid <= lo || mid >= hi || depth > 128) {
    throw new Error(`wasm core: cannot cut ${longest.length} runs into windows that fit the exchange buffer`);
  }
  const left = windowed(
    lists.map((l) => clipRuns(l, lo, mid)),
    attempt,
    join,
    true,
    lo,
    mid,
    depth + 1,
  );
  const right = windowed(
    lists.map((l) => clipRuns(l, mid, hi)),
    attempt,
    join,
    true,
    mid,
    hi,
    depth + 1,
  );
  return join(left, right);
}

/** Joins two normalized lists whose address ranges follow each other. */
function joinNormalized(left: PagemapRun[], right: PagemapRun[]): PagemapRun[] {
  const last = left[left.length - 1];
  const first = right[0];
  if (last && first && runEnd(last) === first.vaddr && last.flags === first.flags) {
    left[left.length - 1] = { vaddr: last.vaddr, nrPages: last.nrPages + first.nrPages, flags: last.flags };
    right = right.slice(1);
  }
  return left.concat(right);
}

type BinaryExport = "tc_runs_subtract" | "tc_runs_intersect" | "tc_runs_union";

/** One call into the core, or null when the inputs plus the largest possible output do not fit. */
function callBinary(
  fn: string,
  exp: BinaryExport | "tc_runs_merge",
  a: readonly PagemapRun[],
  b: readonly PagemapRun[],
  names: readonly [string, string],
): PagemapRun[] | null {
  const c = core();
  const bOff = a.length * RUN_BYTES;
  const outOff = bOff + b.length * RUN_BYTES;
  if (outOff > c.size) return null;
  const cap = Math.floor((c.size - outOff) / RUN_BYTES);
  // No result has more runs than its inputs together.
  if (cap < a.length + b.length) return null;
  writeRuns(a, 0);
  writeRuns(b, bOff);
  const r =
    exp === "tc_runs_merge" ? c.x.tc_runs_merge(0, a.length, outOff, cap) : c.x[exp](0, a.length, bOff, b.length, outOff, cap);
  if (r === TC_ERR.NOSPACE) return null;
  if (r < 0) {
    const list = c.x.tc_err_list();
    throw runError(fn, r, list === 1 ? names[1] : names[0], list === 1 ? b : a, c.x.tc_err_index() >>> 0);
  }
  return readRuns(outOff, r);
}

function binary(
  fn: string,
  exp: BinaryExport | "tc_runs_merge",
  a: unknown,
  b: unknown,
  names: readonly [string, string],
): PagemapRun[] {
  checkRunShapes(fn, names[0], a);
  checkRunShapes(fn, names[1], b);
  const direct = callBinary(fn, exp, a, b, names);
  if (direct) return direct;
  validateRuns(fn, names[0], a, false);
  validateRuns(fn, names[1], b, false);
  return windowed([a, b], (l) => callBinary(fn, exp, l[0] ?? [], l[1] ?? [], names), joinNormalized);
}

/** Normalizes a sorted, disjoint list: runs that touch and carry equal flags become one. */
export function mergeRuns(runs: readonly PagemapRun[]): PagemapRun[] {
  return binary("mergeRuns", "tc_runs_merge", runs, [], ["runs", "runs"]);
}

/** The pages of `a` that `b` does not have, with a's flags; normalized. */
export function subtractRuns(a: readonly PagemapRun[], b: readonly PagemapRun[]): PagemapRun[] {
  return binary("subtractRuns", "tc_runs_subtract", a, b, ["a", "b"]);
}

/** The pages both `a` and `b` have, with a's flags; normalized. */
export function intersectRuns(a: readonly PagemapRun[], b: readonly PagemapRun[]): PagemapRun[] {
  return binary("intersectRuns", "tc_runs_intersect", a, b, ["a", "b"]);
}

/** The pages `a` or `b` has; where both have a page, a's flags win (a laid over b); normalized. */
export function unionRuns(a: readonly PagemapRun[], b: readonly PagemapRun[]): PagemapRun[] {
  return binary("unionRuns", "tc_runs_union", a, b, ["a", "b"]);
}

export interface SplitRuns {
  /** Runs (and the part of a straddling run) below addr. */
  below: PagemapRun[];
  /** Runs (and the part of a straddling run) at or above addr. */
  above: PagemapRun[];
}

/** Cuts a sorted, disjoint list at page-aligned `addr`; runs are otherwise kept as they are. */
export function splitRuns(runs: readonly PagemapRun[], addr: bigint): SplitRuns {
  const fn = "splitRuns";
  checkRunShapes(fn, "runs", runs);
  if (typeof addr !== "bigint") throw new TypeError(`${fn}: addr must be a bigint, got ${describe(addr)}`);
  if (addr < 0n || addr >= U64_LIMIT) throw new RangeError(`${fn}: addr ${addr} does not fit in 64 bits`);
  if (addr & 0xfffn) throw new RangeError(`${fn}: addr ${hex(addr)} is not page aligned`);
  const c = core();
  const outOff = runs.length * RUN_BYTES;
  if ((2 * runs.length + 1) * RUN_BYTES <= c.size) {
    writeRuns(runs, 0);
    const cap = Math.floor((c.size - outOff) / RUN_BYTES);
    const r = c.x.tc_runs_split(0, runs.length, addr, outOff, cap);
    if (r < 0) throw runError(fn, r, "runs", runs, c.x.tc_err_index() >>> 0);
    const below = c.x.tc_aux() >>> 0;
    const all = readRuns(outOff, r);
    return { below: all.slice(0, below), above: all.slice(below) };
  }
  validateRuns(fn, "runs", runs, false);
  return { below: clipRuns(runs, 0n, addr), above: clipRuns(runs, addr, U64_LIMIT) };
}
