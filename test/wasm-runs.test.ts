// Pagemap range algebra in wasm, checked against a page-by-page TypeScript model.
import test, { type ExecutionContext } from "ava";
import {
  PE_LAZY,
  PE_PARENT,
  PE_PRESENT,
  intersectRuns,
  mergeRuns,
  splitRuns,
  subtractRuns,
  unionRuns,
  type PagemapRun,
} from "../wasm/index.js";
import { prng } from "./helpers/fixtures.js";

const PAGE = 4096n;
const BASE = 0x7f12_3400_0000n; // a high user address: everything is 64-bit
const FLAG_CHOICES = [PE_PARENT, PE_LAZY, PE_PRESENT, PE_LAZY | PE_PRESENT];


const run = (page: number, nr: number, flags: number): PagemapRun => ({
  vaddr: BASE + BigInt(page) * PAGE,
  nrPages: BigInt(nr),
  flags,
});

/** A sorted, disjoint list over pages [0, universe): runs may touch, and neighbours may share flags. */
function randomRuns(rand: () => number, universe: number, density: number, maxLen: number): PagemapRun[] {
  const out: PagemapRun[] = [];
  let p = Math.floor(rand() * 3);
  while (p < universe) {
    const len = Math.min(universe - p, 1 + Math.floor(rand() * maxLen));
    if (rand() < density) out.push(run(p, len, FLAG_CHOICES[Math.floor(rand() * FLAG_CHOICES.length)] ?? PE_PRESENT));
    p += len + (rand() < 0.5 ? 0 : Math.floor(rand() * maxLen));
  }
  return out;
}

/** Page model: flags + 1 per page of [0, universe), 0 where no run is. */
function toPages(runs: readonly PagemapRun[], universe: number): Uint8Array {
  const pages = new Uint8Array(universe);
  for (const r of runs) {
    const first = Number((r.vaddr - BASE) / PAGE);
    pages.fill(r.flags + 1, first, first + Number(r.nrPages));
  }
  return pages;
}

/** Normalized runs of a page model. */
function fromPages(pages: Uint8Array): PagemapRun[] {
  const out: PagemapRun[] = [];
  let p = 0;
  while (p < pages.length) {
    const f = pages[p] ?? 0;
    let q = p + 1;
    while (q < pages.length && pages[q] === f) q++;
    if (f) out.push(run(p, q - p, f - 1));
    p = q;
  }
  return out;
}

/** Element-wise comparison: ava's deepEqual is slow on lists of 100k+ objects. */
function sameRuns(t: ExecutionContext, got: readonly PagemapRun[], want: readonly PagemapRun[], what: string): void {
  const key = (r: PagemapRun | undefined) => (r ? `${r.vaddr.toString(16)}+${r.nrPages}/${r.flags}` : "none");
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    if (key(got[i]) !== key(want[i])) {
      t.fail(`${what}: run ${i} is ${key(got[i])}, expected ${key(want[i])} (${got.length} runs, expected ${want.length})`);
      return;
    }
  }
  t.pass();
}

function model(op: "subtract" | "intersect" | "union", a: Uint8Array, b: Uint8Array): Uint8Array {
  return a.map((fa, i) => {
    const fb = b[i] ?? 0;
    if (op === "subtract") return fb ? 0 : fa;
    if (op === "intersect") return fb ? fa : 0;
    return fa || fb;
  });
}

test("subtract, intersect, union and merge agree with the page model (seeded, bounded)", (t) => {
  const rand = prng(21);
  for (let iter = 0; iter < 300; iter++) {
    const universe = 1 + Math.floor(rand() * 300);
    const a = randomRuns(rand, universe, rand(), 1 + Math.floor(rand() * 12));
    const b = randomRuns(rand, universe, rand(), 1 + Math.floor(rand() * 12));
    const pa = toPages(a, universe);
    const pb = toPages(b, universe);
    sameRuns(t, subtractRuns(a, b), fromPages(model("subtract", pa, pb)), `subtract, iteration ${iter}`);
    sameRuns(t, intersectRuns(a, b), fromPages(model("intersect", pa, pb)), `intersect, iteration ${iter}`);
    sameRuns(t, unionRuns(a, b), fromPages(model("union", pa, pb)), `union, iteration ${iter}`);
    sameRuns(t, mergeRuns(a), fromPages(pa), `merge, iteration ${iter}`);
  }
});

test("algebraic laws hold on random lists", (t) => {
  const rand = prng(22);
  for (let iter = 0; iter < 100; iter++) {
    const a = randomRuns(rand, 200, 0.6, 8);
    const b = randomRuns(rand, 200, 0.6, 8);
    const na = mergeRuns(a);
    sameRuns(t, unionRuns(subtractRuns(a, b), intersectRuns(a, b)), na, "(a - b) ∪ (a ∩ b) = a");
    sameRuns(t, intersectRuns(subtractRuns(a, b), b), [], "(a - b) ∩ b = ∅");
    sameRuns(t, unionRuns(a, a), na, "a ∪ a = a");
    sameRuns(t, mergeRuns(na), na, "merge is idempotent");
  }
});

test("splitRuns cuts only the straddling run and keeps the others as given", (t) => {
  const rand = prng(23);
  for (let iter = 0; iter < 200; iter++) {
    const runs = randomRuns(rand, 100, 0.7, 10);
    const at = BASE + BigInt(Math.floor(rand() * 110)) * PAGE;
    const { below, above } = splitRuns(runs, at);
    const want: { below: PagemapRun[]; above: PagemapRun[] } = { below: [], above: [] };
    for (const r of runs) {
      const end = r.vaddr + r.nrPages * PAGE;
      if (end <= at) want.below.push(r);
      else if (r.vaddr >= at) want.above.push(r);
      else {
        want.below.push({ vaddr: r.vaddr, nrPages: (at - r.vaddr) / PAGE, flags: r.flags });
        want.above.push({ vaddr: at, nrPages: (end - at) / PAGE, flags: r.flags });
      }
    }
    sameRuns(t, below, want.below, `below, iteration ${iter}`);
    sameRuns(t, above, want.above, `above, iteration ${iter}`);
  }
});

test("hand-made cases: touching runs merge only with equal flags; a's flags win in union", (t) => {
  const a = [run(0, 2, PE_PRESENT), run(2, 2, PE_PRESENT), run(4, 1, PE_PARENT)];
  t.deepEqual(mergeRuns(a), [run(0, 4, PE_PRESENT), run(4, 1, PE_PARENT)]);
  const b = [run(1, 6, PE_LAZY)];
  t.deepEqual(unionRuns(a, b), [run(0, 4, PE_PRESENT), run(4, 1, PE_PARENT), run(5, 2, PE_LAZY)]);
  t.deepEqual(unionRuns(b, a), [run(0, 1, PE_PRESENT), run(1, 6, PE_LAZY)]);
  t.deepEqual(subtractRuns(b, a), [run(5, 2, PE_LAZY)]);
  t.deepEqual(intersectRuns(b, a), [run(1, 4, PE_LAZY)]);
  t.deepEqual(subtractRuns([], a), []);
  t.deepEqual(unionRuns([], []), []);
});

test("addresses near the top of the 64-bit space", (t) => {
  const top = (1n << 64n) - 3n * PAGE; // the last run may end at 2^64 - 4096, not at 2^64
  const a = [{ vaddr: top, nrPages: 1n, flags: PE_PRESENT }];
  const b = [{ vaddr: top + PAGE, nrPages: 1n, flags: PE_PRESENT }];
  t.deepEqual(unionRuns(a, b), [{ vaddr: top, nrPages: 2n, flags: PE_PRESENT }]);
  t.deepEqual(splitRuns(unionRuns(a, b), top + PAGE).above, b);
});

test("lists larger than the exchange buffer are computed in address windows", (t) => {
  const rand = prng(24);
  const universe = 1_200_000;
  const a = randomRuns(rand, universe, 0.9, 8);
  const b = randomRuns(rand, universe, 0.9, 8);
  t.true(a.length + b.length > 200_000, `${a.length} + ${b.length} runs`);
  const pa = toPages(a, universe);
  const pb = toPages(b, universe);
  sameRuns(t, subtractRuns(a, b), fromPages(model("subtract", pa, pb)), "subtract");
  sameRuns(t, intersectRuns(a, b), fromPages(model("intersect", pa, pb)), "intersect");
  sameRuns(t, unionRuns(a, b), fromPages(model("union", pa, pb)), "union");
  sameRuns(t, mergeRuns(a), fromPages(pa), "merge");
  const at = BASE + 600_001n * PAGE;
  const { below, above } = splitRuns(a, at);
  sameRuns(t, mergeRuns(below.concat(above)), fromPages(pa), "split");
  t.true(below.every((r) => r.vaddr + r.nrPages * PAGE <= at) && above.every((r) => r.vaddr >= at));
});

test("an unsorted pair across a validation chunk boundary of a huge list is still found", (t) => {
  const n = 180_000; // the exchange buffer holds 177493 runs: the check runs in two chunks
  const runs: PagemapRun[] = [];
  for (let i = 0; i < n; i++) runs.push(run(2 * i, 1, PE_PRESENT));
  const swapped = runs.slice();
  const i = 177_493;
  [swapped[i - 1], swapped[i]] = [runs[i] ?? run(0, 1, 0), runs[i - 1] ?? run(0, 1, 0)];
  t.throws(() => mergeRuns(swapped), { instanceOf: RangeError, message: /mergeRuns: runs\[177493\] at 0x[0-9a-f]+ \(1 pages\) starts below runs\[177492\]/ });
  const bad = runs.slice();
  bad[170_000] = run(2 * 170_000, 3, PE_PRESENT); // overlaps its successor
  t.throws(() => subtractRuns(runs, bad), { instanceOf: RangeError, message: /subtractRuns: b\[170001\] .* overlaps b\[170000\]/ });
  t.throws(() => splitRuns(bad, BASE), { instanceOf: RangeError, message: /splitRuns: runs\[170001\]/ });
});

// One test per error path.

test("error: a vaddr that is not page aligned", (t) => {
  t.throws(() => mergeRuns([{ vaddr: 4097n, nrPages: 1n, flags: 4 }]), {
    instanceOf: RangeError,
    message: "mergeRuns: runs[0] vaddr 0x1001 is not page aligned",
  });
});

test("error: an empty run", (t) => {
  t.throws(() => subtractRuns([run(0, 1, 4)], [run(0, 1, 4), run(5, 0, 4)]), {
    instanceOf: RangeError,
    message: /subtractRuns: b\[1\] at 0x7f1234005000 \(0 pages\) is empty/,
  });
});

test("error: a run past the end of the address space", (t) => {
  t.throws(() => unionRuns([{ vaddr: (1n << 64n) - PAGE, nrPages: 1n, flags: 4 }], []), {
    instanceOf: RangeError,
    message: /unionRuns: a\[0\] at 0xfffffffffffff000 \(1 pages\) runs past the end of the 64-bit address space/,
  });
});

test("error: runs out of order", (t) => {
  t.throws(() => intersectRuns([run(5, 1, 4), run(1, 1, 4)], []), {
    instanceOf: RangeError,
    message: /intersectRuns: a\[1\] at 0x7f1234001000 \(1 pages\) starts below a\[0\] at 0x7f1234005000 \(1 pages\): runs must be sorted/,
  });
});

test("error: overlapping runs", (t) => {
  t.throws(() => mergeRuns([run(0, 3, 4), run(2, 1, 4)]), {
    instanceOf: RangeError,
    message: "mergeRuns: runs[1] at 0x7f1234002000 (1 pages) overlaps runs[0] (0x7f1234000000-0x7f1234003000)",
  });
});

test("error: run lists and runs of the wrong shape", (t) => {
  const bad = (v: unknown) => v as PagemapRun[];
  t.throws(() => mergeRuns(bad("x")), { instanceOf: TypeError, message: /runs must be an array of runs, got string/ });
  t.throws(() => mergeRuns(bad([null])), { instanceOf: TypeError, message: /runs\[0\] must be a run object, got null/ });
  t.throws(() => mergeRuns(bad([{ vaddr: 0, nrPages: 1n, flags: 4 }])), { instanceOf: TypeError, message: /runs\[0\]\.vaddr must be a bigint/ });
  t.throws(() => mergeRuns(bad([{ vaddr: 0n, nrPages: 1, flags: 4 }])), { instanceOf: TypeError, message: /nrPages must be a bigint/ });
  t.throws(() => mergeRuns(bad([{ vaddr: 0n, nrPages: 1n }])), { instanceOf: TypeError, message: /flags must be a number/ });
});

test("error: values that do not fit the pagemap fields", (t) => {
  t.throws(() => mergeRuns([{ vaddr: -4096n, nrPages: 1n, flags: 4 }]), { instanceOf: RangeError, message: /vaddr -4096 does not fit in 64 bits/ });
  t.throws(() => mergeRuns([{ vaddr: 0n, nrPages: 1n << 64n, flags: 4 }]), { instanceOf: RangeError, message: /nrPages \d+ does not fit/ });
  t.throws(() => mergeRuns([{ vaddr: 0n, nrPages: 1n, flags: 2 ** 32 }]), { instanceOf: RangeError, message: /flags 4294967296 is not a 32-bit/ });
  t.throws(() => mergeRuns([{ vaddr: 0n, nrPages: 1n, flags: 1.5 }]), { instanceOf: RangeError });
});

test("error: splitRuns at an address that is unaligned, negative or not a bigint", (t) => {
  t.throws(() => splitRuns([], 100n), { instanceOf: RangeError, message: "splitRuns: addr 0x64 is not page aligned" });
  t.throws(() => splitRuns([], -4096n), { instanceOf: RangeError, message: /does not fit in 64 bits/ });
  t.throws(() => splitRuns([], 4096 as unknown as bigint), { instanceOf: TypeError, message: /addr must be a bigint/ });
});
