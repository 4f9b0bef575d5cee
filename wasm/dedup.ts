// Dedup planning for a chain of incremental images (criu's `dedup` / --auto-dedup):
// which byte ranges of each older image's pages file can be punched because a newer
// image has its own data for those pages. The rule itself is in core-c/dedup.c.
import { TC_ERR, core, describe, internalError } from "./loader.js";
import {
  PE_PRESENT,
  RUN_BYTES,
  checkRunShapes,
  runEnd,
  runError,
  validateRuns,
  windowed,
  writeRuns,
  type PagemapRun,
} from "./runs.js";

/** A byte range of a pages-N.img file: fallocate(PUNCH_HOLE | KEEP_SIZE, offset, length). */
export interface PunchRange {
  offset: number;
  length: number;
}

const SPAN_BYTES = 16; // struct tc_span
const FN = "planDedup";

function toNumber(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`${FN}: ${what} ${v} is beyond 2^53`);
  return Number(v);
}

/** Appends ranges, merging one that starts where the previous ends. */
function pushRange(out: PunchRange[], offset: number, length: number): void {
  const last = out[out.length - 1];
  if (last && last.offset + last.length === offset) last.length += length;
  else out.push({ offset, length });
}

/**
 * Runs the chain through the core, one call per layer, for the runs given (the whole
 * lists, or one address window of them with `bases` = pages-file page index of the
 * window's first PE_PRESENT page in each layer). Null when a layer does not fit.
 */
function planChain(layers: readonly (readonly PagemapRun[])[], bases: readonly bigint[]): PunchRange[][] | null {
  const c = core();
  const result: PunchRange[][] = layers.map(() => []);
  let nReach = 0; // reach spans of the layer at hand sit at offset 0
  for (let j = 0; j < layers.length; j++) {
    const runs = layers[j] ?? [];
    const out = result[j] ?? [];
    const runsOff = nReach * SPAN_BYTES;
    const punchOff = runsOff + runs.length * RUN_BYTES;
    if (punchOff + 2 * SPAN_BYTES > c.size) return null;
    const room = Math.floor((c.size - punchOff) / SPAN_BYTES);
    const punchCap = room >> 1;
    const nextOff = punchOff + punchCap * SPAN_BYTES;
    writeRuns(runs, runsOff);
    const r = c.x.tc_dedup_step(0, nReach, runsOff, runs.length, bases[j] ?? 0n, punchOff, punchCap, nextOff, room - punchCap, j === 0 ? 1 : 0);
    if (r === TC_ERR.NOSPACE) return null;
    if (r < 0) {
      if (c.x.tc_err_list() !== 0) throw internalError("tc_dedup_step", r);
      throw runError(FN, r, `layers[${j}]`, runs, c.x.tc_err_index() >>> 0);
    }
    for (let i = 0, q = punchOff / 8; i < r; i++, q += 2) {
      const offset = toNumber(c.u64[q] ?? 0n, `layers[${j}] punch offset`);
      pushRange(out, offset, toNumber(c.u64[q + 1] ?? 0n, `layers[${j}] punch length`));
    }
    nReach = c.x.tc_aux() >>> 0;
    c.bytes.copyWithin(0, nextOff, nextOff + nReach * SPAN_BYTES);
  }
  return result;
}

/** Page index in the pages file of the first PE_PRESENT page at or above `lo`, per layer. */
function basesAt(layers: readonly (readonly PagemapRun[])[], prefix: readonly bigint[][], lo: bigint): bigint[] {
  return layers.map((runs, j) => {
    let l = 0;
    let h = runs.length;
    while (l < h) {
      const m = (l + h) >> 1;
      const r = runs[m];
      if (r && runEnd(r) <= lo) l = m + 1;
      else h = m;
    }
    let base = prefix[j]?.[l] ?? 0n;
    const r = runs[l];
    if (r && r.vaddr < lo && r.flags & PE_PRESENT) base += (lo - r.vaddr) >> 12n;
    return base;
  });
}

/**
 * Plans `criu dedup` over a chain of images of one process, newest first:
 * `layers[0]` is the newest pagemap, `layers[1]` its parent, and so on. Each layer is
 * that image's pagemap runs (PE_PRESENT runs have their pages in the layer's pages
 * file, in run order; PE_PARENT runs have none).
 *
 * Returns, for every layer, the byte ranges of its pages file that no longer need to
 * be kept, sorted by offset with touching ranges merged; `result[0]` is always empty.
 * As criu: every run of a newer layer that is not PE_PARENT (present or lazy) makes
 * the same pages redundant in its ancestors, through every ancestor that has a run
 * there, whatever that run's flags; pages a newer layer marks PE_PARENT are kept.
 */
export function planDedup(layers: readonly (readonly PagemapRun[])[]): PunchRange[][] {
  const input: unknown = layers;
  if (!Array.isArray(input)) throw new TypeError(`${FN}: layers must be an array of run lists, got ${describe(input)}`);
  layers.forEach((runs, j) => checkRunShapes(FN, `layers[${j}]`, runs));
  const direct = planChain(
    layers,
    layers.map(() => 0n),
  );
  if (direct) return direct;

  layers.forEach((runs, j) => validateRuns(FN, `layers[${j}]`, runs, true));
  const prefix = layers.map((runs) => {
    const p: bigint[] = [0n];
    let sum = 0n;
    for (const r of runs) {
      if (r.flags & PE_PRESENT) sum += r.nrPages;
      p.push(sum);
    }
    return p;
  });
  return windowed(
    layers,
    (clipped, lo) => planChain(clipped, basesAt(layers, prefix, lo)),
    (left, right) =>
      left.map((ranges, j) => {
        for (const r of right[j] ?? []) pushRange(ranges, r.offset, r.length);
        return ranges;
      }),
    false, // the whole chain was just tried above
  );
}
