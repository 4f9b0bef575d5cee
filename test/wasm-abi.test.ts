// The raw C entry points of core.wasm: the error paths the typed wrappers never reach
// (they size and place everything themselves), and the properties of the module.
import test from "ava";
import { readFileSync } from "node:fs";
import { LAYOUT, TC_ERR, core } from "../wasm/loader.js";

const RUN = 24;

function putRun(off: number, vaddr: bigint, nrPages: bigint, flags: number): void {
  const { view } = core();
  view.setBigUint64(off, vaddr, true);
  view.setBigUint64(off + 8, nrPages, true);
  view.setUint32(off + 16, flags, true);
  view.setUint32(off + 20, 0, true);
}

test("the module imports nothing and exports a fixed 5 MiB memory", (t) => {
  const bytes = readFileSync(new URL("../wasm/core.wasm", import.meta.url));
  const wasm = (globalThis as unknown as { WebAssembly: { Module: { new (b: Uint8Array): object; imports(m: object): unknown[] } } }).WebAssembly;
  t.deepEqual(wasm.Module.imports(new wasm.Module(bytes)), []);
  const c = core();
  t.is(c.x.memory.buffer.byteLength, 5 * 1024 * 1024);
  t.is(c.size, 4 * 1024 * 1024 + 64 * 1024);
  t.is(core(), c, "loaded once");
});

test("TC_ERR_BOUNDS: regions outside the buffer or misaligned", (t) => {
  const { x, size } = core();
  t.is(x.tc_hash_pages(size - 4096, 2, LAYOUT.hashes, LAYOUT.zero), TC_ERR.BOUNDS, "pages past the end");
  t.is(x.tc_hash_pages(4, 1, LAYOUT.hashes, LAYOUT.zero), TC_ERR.BOUNDS, "pages not 8-aligned");
  t.is(x.tc_hash_pages(0, 1, LAYOUT.hashes + 4, LAYOUT.zero), TC_ERR.BOUNDS, "hashes not 8-aligned");
  t.is(x.tc_diff_pages(0, size, 1, LAYOUT.runs, 1), TC_ERR.BOUNDS);
  t.is(x.tc_diff_hashes(0, 1, size - 4, LAYOUT.hashes, LAYOUT.runs, 1), TC_ERR.BOUNDS);
  t.is(x.tc_xxh64(size - 1, 2, 0n, 0), TC_ERR.BOUNDS);
  t.is(x.tc_xxh64(0, 0, 0n, 3), TC_ERR.BOUNDS, "result slot not aligned");
  t.is(x.tc_xxh64_reset(size - 8, 0n), TC_ERR.BOUNDS);
  t.is(x.tc_xxh64_update(0, size, 1), TC_ERR.BOUNDS);
  t.is(x.tc_xxh64_digest(0, size), TC_ERR.BOUNDS);
  t.is(x.tc_runs_validate(0, 0x7fffffff, 0), TC_ERR.BOUNDS);
  t.is(x.tc_runs_merge(0, 1, size - 8, 1), TC_ERR.BOUNDS);
  t.is(x.tc_runs_split(0, 1, 0n, size, 1), TC_ERR.BOUNDS);
  t.is(x.tc_dedup_step(0, 0, 0, 0, 0n, size, 1, 0, 0, 1), TC_ERR.BOUNDS);
  t.is(x.tc_cpu_compare(0, 256, 0, size - 16), TC_ERR.BOUNDS);
  t.is(x.tc_cpucap_parse(size, 1, 1, 0), TC_ERR.BOUNDS);
  t.is(x.tc_hash_pages(0, 0xffffffff, LAYOUT.hashes, LAYOUT.zero), TC_ERR.BOUNDS, "a count whose size wraps 32 bits");
});

test("TC_ERR_BOUNDS: an output region that overlaps an input", (t) => {
  const { x } = core();
  putRun(0, 0n, 1n, 4);
  putRun(RUN, 8192n, 1n, 4);
  t.is(x.tc_runs_merge(0, 2, RUN, 2), TC_ERR.BOUNDS);
  t.is(x.tc_runs_union(0, 1, RUN, 1, RUN, 2), TC_ERR.BOUNDS);
  t.is(x.tc_runs_split(0, 2, 0n, 0, 3), TC_ERR.BOUNDS);
  t.is(x.tc_runs_merge(0, 2, 2 * RUN, 2), 2, "adjacent is fine");
});

test("TC_ERR_NOSPACE: outputs larger than the capacity given", (t) => {
  const { x, bytes, u64 } = core();
  // a = pages 0..2, all zero; b = pages 4..6: ones, zeroes, ones. Pages 0 and 2 differ: two runs.
  bytes.fill(0, 0, 8 * 4096);
  bytes.fill(1, 4 * 4096, 5 * 4096);
  bytes.fill(1, 6 * 4096, 7 * 4096);
  t.is(x.tc_diff_pages(0, 4 * 4096, 3, LAYOUT.runs, 1), TC_ERR.NOSPACE);
  t.is(x.tc_diff_pages(0, 4 * 4096, 3, LAYOUT.runs, 2), 2);
  u64[LAYOUT.parent / 8] = 0n; // not the hash of a zero page
  t.is(x.tc_diff_hashes(0, 1, LAYOUT.parent, LAYOUT.hashes, LAYOUT.runs, 0), TC_ERR.NOSPACE);
  putRun(0, 0n, 1n, 4);
  putRun(RUN, 8192n, 1n, 4);
  t.is(x.tc_runs_merge(0, 2, 2 * RUN, 1), TC_ERR.NOSPACE);
  t.is(x.tc_runs_split(0, 2, 4096n, 2 * RUN, 1), TC_ERR.NOSPACE);
  t.is(x.tc_dedup_step(0, 0, 0, 2, 0n, 4096, 0, 8192, 1, 1), TC_ERR.NOSPACE, "next reach needs 2 spans");
});

test("TC_ERR_ARG: a streaming state with an impossible buffered length, and a bad reach list", (t) => {
  const { x, view } = core();
  t.is(x.tc_xxh64_reset(0, 0n), 0);
  view.setUint32(72, 32, true); // memsize
  t.is(x.tc_xxh64_update(0, 128, 0), TC_ERR.ARG);
  t.is(x.tc_xxh64_digest(0, 96), TC_ERR.ARG);
  // reach spans: [8192, 4096) is empty/backwards
  view.setBigUint64(0, 8192n, true);
  view.setBigUint64(8, 4096n, true);
  t.is(x.tc_dedup_step(0, 1, 64, 0, 0n, 4096, 16, 8192, 16, 1), TC_ERR.ARG);
  t.is(x.tc_err_list(), -1);
  // unsorted reach spans
  view.setBigUint64(0, 8192n, true);
  view.setBigUint64(8, 12288n, true);
  view.setBigUint64(16, 0n, true);
  view.setBigUint64(24, 4096n, true);
  t.is(x.tc_dedup_step(0, 2, 64, 0, 0n, 4096, 16, 8192, 16, 1), TC_ERR.ARG);
  t.is(x.tc_err_index(), 1);
});

test("TC_ERR_ALIGN from split names no list; the detail is cleared by the next call", (t) => {
  const { x } = core();
  t.is(x.tc_runs_split(0, 0, 100n, 64, 1), TC_ERR.ALIGN);
  t.is(x.tc_err_list(), -1);
  putRun(0, 4097n, 1n, 4);
  t.is(x.tc_runs_validate(0, 1, 0), TC_ERR.ALIGN);
  t.is(x.tc_err_list(), 0);
  t.is(x.tc_runs_validate(0, 0, 0), 0);
  t.is(x.tc_err_list(), -1);
  t.is(x.tc_aux(), 0);
});

test("TC_ERR_OVERFLOW: a pages-file offset past 2^64 in dedup", (t) => {
  const { x, view } = core();
  view.setBigUint64(0, 0n, true); // reach [0, 8192)
  view.setBigUint64(8, 8192n, true);
  putRun(64, 0n, 2n, 4);
  t.is(x.tc_dedup_step(0, 1, 64, 1, 1n << 52n, 4096, 16, 8192, 16, 1), TC_ERR.OVERFLOW);
  t.is(x.tc_dedup_step(0, 1, 64, 1, (1n << 52n) - 3n, 4096, 16, 8192, 16, 1), 1);
});
