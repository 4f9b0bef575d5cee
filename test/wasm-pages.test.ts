// Page hashing and page diffing in wasm, against plain TypeScript references.
import test from "ava";
import {
  BATCH_PAGES,
  PAGE_SIZE,
  diffAgainstHashes,
  diffPageBufferAgainstHashes,
  diffPages,
  hashPageBuffer,
  hashPages,
  pageBuffer,
  xxh64,
  type PageRun,
} from "../wasm/index.js";
import { prng } from "./helpers/fixtures.js";


/** nPages pages: random, with some zero pages and some pages that are zero but for one byte. */
function makePages(rand: () => number, nPages: number): Uint8Array {
  const data = new Uint8Array(nPages * PAGE_SIZE);
  const u32 = new Uint32Array(data.buffer);
  for (let p = 0; p < nPages; p++) {
    const kind = rand();
    if (kind < 0.2) continue; // zero page
    if (kind < 0.3) {
      data[p * PAGE_SIZE + Math.floor(rand() * PAGE_SIZE)] = 1 + Math.floor(rand() * 255);
      continue;
    }
    for (let i = 0; i < PAGE_SIZE / 4; i++) u32[p * (PAGE_SIZE / 4) + i] = Math.floor(rand() * 2 ** 32);
  }
  return data;
}

/** Reference diff: compare every page byte by byte, build runs. */
function refDiff(a: Uint8Array, b: Uint8Array): PageRun[] {
  const runs: PageRun[] = [];
  for (let p = 0; p * PAGE_SIZE < a.length; p++) {
    const pa = a.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    const pb = b.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    if (Buffer.compare(pa, pb) === 0) continue;
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === p) last.count++;
    else runs.push({ first: p, count: 1 });
  }
  return runs;
}

/** b = a with `n` random single-byte changes (a change may land on a page twice). */
function perturb(rand: () => number, a: Uint8Array, n: number): Uint8Array {
  const b = a.slice();
  for (let i = 0; i < n; i++) {
    const at = Math.floor(rand() * b.length);
    b[at] = ((b[at] ?? 0) + 1 + Math.floor(rand() * 255)) & 0xff;
  }
  return b;
}

test("hashPages gives xxh64 of each page and flags exactly the zero pages", (t) => {
  const rand = prng(11);
  const n = 2 * BATCH_PAGES + 37; // three batches, the last one partial
  const data = makePages(rand, n);
  const { hashes, zero } = hashPages(data);
  t.is(hashes.length, n);
  t.is(zero.length, n);
  for (let p = 0; p < n; p++) {
    const page = data.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    t.is(hashes[p], xxh64(page), `page ${p}`);
    t.is(zero[p], page.every((b) => b === 0) ? 1 : 0, `zero flag of page ${p}`);
  }
});

test("hashPages of nothing, and of a Buffer view at an odd offset", (t) => {
  const empty = hashPages(new Uint8Array(0));
  t.is(empty.hashes.length, 0);
  t.is(empty.zero.length, 0);
  const backing = Buffer.alloc(3 * PAGE_SIZE + 1, 7);
  const view = backing.subarray(1, 1 + 3 * PAGE_SIZE);
  const r = hashPages(view);
  t.deepEqual([...r.zero], [0, 0, 0]);
  t.is(r.hashes[2], xxh64(Buffer.alloc(PAGE_SIZE, 7)));
});

test("hashPageBuffer hashes pages written straight into wasm memory", (t) => {
  const rand = prng(12);
  const data = makePages(rand, 64);
  const buf = pageBuffer();
  t.is(buf.length, BATCH_PAGES * PAGE_SIZE);
  buf.set(data);
  const inPlace = hashPageBuffer(64);
  t.deepEqual([...inPlace.hashes], [...hashPages(data).hashes]);
  t.is(hashPageBuffer(0).hashes.length, 0);
});

test("diffPages agrees with a byte-by-byte reference (seeded, bounded)", (t) => {
  const rand = prng(13);
  for (let iter = 0; iter < 12; iter++) {
    const n = iter < 4 ? iter : Math.floor(rand() * 1500);
    const a = makePages(rand, n);
    const b = perturb(rand, a, Math.floor(rand() * 40));
    t.deepEqual(diffPages(a, b), refDiff(a, b), `iteration ${iter}, ${n} pages`);
  }
});

test("diffPages merges a run that crosses a batch boundary", (t) => {
  const n = BATCH_PAGES + 10;
  const a = new Uint8Array(n * PAGE_SIZE);
  const b = a.slice();
  for (let p = BATCH_PAGES / 2 - 3; p < BATCH_PAGES / 2 + 3; p++) b[p * PAGE_SIZE + PAGE_SIZE - 1] = 1; // last byte of the page
  b[(BATCH_PAGES + 2) * PAGE_SIZE] = 9; // first byte of a page in the third batch
  t.deepEqual(diffPages(a, b), [
    { first: BATCH_PAGES / 2 - 3, count: 6 },
    { first: BATCH_PAGES + 2, count: 1 },
  ]);
  t.deepEqual(diffPages(a, a.slice()), []);
});

test("diffPages finds every page different when they all are (alternating and full)", (t) => {
  const n = 700;
  const a = new Uint8Array(n * PAGE_SIZE);
  const every = a.map(() => 1);
  t.deepEqual(diffPages(a, every), [{ first: 0, count: n }]);
  const alt = a.slice();
  for (let p = 0; p < n; p += 2) alt[p * PAGE_SIZE + 100] = 1;
  const runs = diffPages(a, alt);
  t.is(runs.length, n / 2);
  t.deepEqual(runs, refDiff(a, alt));
});

test("diffAgainstHashes agrees with hashing both sides (seeded, bounded)", (t) => {
  const rand = prng(14);
  for (let iter = 0; iter < 6; iter++) {
    const n = Math.floor(rand() * 2500);
    const parent = makePages(rand, n);
    const child = perturb(rand, parent, Math.floor(rand() * 30));
    const parentHashes = hashPages(parent).hashes;
    const r = diffAgainstHashes(child, parentHashes);
    t.deepEqual(r.runs, refDiff(parent, child), `iteration ${iter}`);
    t.deepEqual([...r.hashes], [...hashPages(child).hashes]);
  }
});

test("diffPageBufferAgainstHashes works on pages already in wasm memory", (t) => {
  const rand = prng(15);
  const parent = makePages(rand, 100);
  const child = perturb(rand, parent, 5);
  const parentHashes = hashPages(parent).hashes;
  pageBuffer().set(child);
  const r = diffPageBufferAgainstHashes(100, parentHashes);
  t.deepEqual(r.runs, refDiff(parent, child));
  t.deepEqual([...r.hashes], [...hashPages(child).hashes]);
});

test("hashPages rejects a length that is not whole pages, and non-byte input", (t) => {
  t.throws(() => hashPages(new Uint8Array(4095)), { instanceOf: RangeError, message: /4095 bytes, not a multiple of the page size/ });
  t.throws(() => hashPages(new Uint16Array(2048) as unknown as Uint8Array), { instanceOf: TypeError, message: /must be a Uint8Array/ });
});

test("hashPageBuffer rejects a page count outside the buffer", (t) => {
  t.throws(() => hashPageBuffer(BATCH_PAGES + 1), { instanceOf: RangeError, message: /outside 0\.\.1024/ });
  t.throws(() => hashPageBuffer(-1), { instanceOf: RangeError });
  t.throws(() => hashPageBuffer(1.5), { instanceOf: RangeError });
});

test("diffPages rejects unaligned lengths and different page counts", (t) => {
  const one = new Uint8Array(PAGE_SIZE);
  t.throws(() => diffPages(new Uint8Array(100), one), { instanceOf: RangeError, message: /diffPages: a is 100 bytes/ });
  t.throws(() => diffPages(one, new Uint8Array(PAGE_SIZE + 1)), { instanceOf: RangeError, message: /diffPages: b is 4097 bytes/ });
  t.throws(() => diffPages(one, new Uint8Array(2 * PAGE_SIZE)), { instanceOf: RangeError, message: /a has 1 pages but b has 2/ });
  t.throws(() => diffPages(one, null as unknown as Uint8Array), { instanceOf: TypeError, message: /b must be a Uint8Array \(or Buffer\), got null/ });
});

test("diffAgainstHashes rejects a hash list of the wrong type or length", (t) => {
  const two = new Uint8Array(2 * PAGE_SIZE);
  t.throws(() => diffAgainstHashes(two, new BigUint64Array(3)), { instanceOf: RangeError, message: /2 pages but parentHashes has 3/ });
  t.throws(() => diffAgainstHashes(two, [1n, 2n] as unknown as BigUint64Array), { instanceOf: TypeError, message: /BigUint64Array/ });
  t.throws(() => diffAgainstHashes(new Uint8Array(10), new BigUint64Array(0)), { instanceOf: RangeError, message: /10 bytes/ });
});

test("diffPageBufferAgainstHashes rejects bad counts and hash lists", (t) => {
  t.throws(() => diffPageBufferAgainstHashes(BATCH_PAGES + 1, new BigUint64Array(BATCH_PAGES + 1)), { instanceOf: RangeError });
  t.throws(() => diffPageBufferAgainstHashes(2, new BigUint64Array(1)), { instanceOf: RangeError, message: /parentHashes has 1/ });
  t.throws(() => diffPageBufferAgainstHashes(1, {} as unknown as BigUint64Array), { instanceOf: TypeError });
});
