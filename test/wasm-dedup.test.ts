// Dedup planning in wasm: hand-made chains, and a page-by-page transcription of criu's
// recursive dedup walk (cr-dedup.c / dedup_one_iovec) as the reference.
import test, { type ExecutionContext } from "ava";
import { PE_LAZY, PE_PARENT, PE_PRESENT, planDedup, type PagemapRun, type PunchRange } from "../wasm/index.js";
import { prng } from "./helpers/fixtures.js";

const P = 4096;
const BASE = 0x5555_0000_0000n;

const run = (page: number, nr: number, flags: number): PagemapRun => ({
  vaddr: BASE + BigInt(page) * 4096n,
  nrPages: BigInt(nr),
  flags,
});
const present = (page: number, nr: number) => run(page, nr, PE_PRESENT);
const parent = (page: number, nr: number) => run(page, nr, PE_PARENT);
const range = (offsetPages: number, pages: number): PunchRange => ({ offset: offsetPages * P, length: pages * P });


/**
 * Reference: criu's walk, page by page. For every run of the newest layer that is not
 * PE_PARENT, each page goes down the chain: in ancestor j, a PE_PRESENT run at that
 * page is punched there; any run lets the walk go on to j + 1; no run stops it.
 */
function reference(layers: readonly PagemapRun[][], universe: number): PunchRange[][] {
  // Per layer and page: the run's flags + 1 (0: no run) and the page's index in the pages file.
  const flags = layers.map((runs) => {
    const f = new Int32Array(universe);
    for (const r of runs) {
      const first = Number((r.vaddr - BASE) / 4096n);
      f.fill(r.flags + 1, first, first + Number(r.nrPages));
    }
    return f;
  });
  const fileIndex = layers.map((runs) => {
    const idx = new Int32Array(universe).fill(-1);
    let next = 0;
    for (const r of runs) {
      const first = Number((r.vaddr - BASE) / 4096n);
      if (r.flags & PE_PRESENT) for (let k = 0; k < Number(r.nrPages); k++) idx[first + k] = next++;
    }
    return idx;
  });
  const punched = layers.map(() => new Uint8Array(universe));
  for (let i = 0; i < Math.min(1, layers.length); i++) {
    const fi = flags[i] ?? new Int32Array(0);
    for (let p = 0; p < universe; p++) {
      const f = fi[p] ?? 0;
      if (!f || (f - 1) & PE_PARENT) continue;
      for (let j = i + 1; j < layers.length; j++) {
        const fj = flags[j]?.[p] ?? 0;
        if (!fj) break;
        if ((fj - 1) & PE_PRESENT) (punched[j] ?? new Uint8Array(0))[fileIndex[j]?.[p] ?? 0] = 1;
      }
    }
  }
  return punched.map((bits) => {
    const out: PunchRange[] = [];
    for (let k = 0; k < bits.length; k++) {
      if (!bits[k]) continue;
      const last = out[out.length - 1];
      if (last && last.offset + last.length === k * P) last.length += P;
      else out.push({ offset: k * P, length: P });
    }
    return out;
  });
}

function randomLayer(rand: () => number, universe: number, maxLen: number): PagemapRun[] {
  const choices = [PE_PRESENT, PE_PRESENT, PE_PARENT, PE_PARENT, PE_LAZY, PE_LAZY | PE_PRESENT];
  const out: PagemapRun[] = [];
  let p = Math.floor(rand() * 3);
  while (p < universe) {
    const len = Math.min(universe - p, 1 + Math.floor(rand() * maxLen));
    if (rand() < 0.85) out.push(run(p, len, choices[Math.floor(rand() * choices.length)] ?? PE_PRESENT));
    p += len + (rand() < 0.7 ? 0 : Math.floor(rand() * maxLen));
  }
  return out;
}

function samePlan(t: ExecutionContext, got: PunchRange[][], want: PunchRange[][], what: string): void {
  t.is(got.length, want.length, `${what}: layer count`);
  for (let j = 0; j < want.length; j++) {
    const g = got[j] ?? [];
    const w = want[j] ?? [];
    const key = (r: PunchRange | undefined) => (r ? `${r.offset}+${r.length}` : "none");
    for (let i = 0; i < Math.max(g.length, w.length); i++) {
      if (key(g[i]) !== key(w[i])) {
        t.fail(`${what}: layer ${j} range ${i} is ${key(g[i])}, expected ${key(w[i])}`);
        return;
      }
    }
  }
  t.pass();
}

test("fresh child pages make the same parent pages redundant", (t) => {
  const plan = planDedup([[present(2, 3)], [present(0, 10)]]);
  t.deepEqual(plan, [[], [range(2, 3)]]);
});

test("pages the child marks PE_PARENT are kept in the parent", (t) => {
  const child = [present(0, 2), parent(2, 4), present(6, 2)];
  t.deepEqual(planDedup([child, [present(0, 8)]]), [[], [range(0, 2), range(6, 2)]]);
});

test("offsets count only the parent's PE_PRESENT pages, in run order", (t) => {
  const par = [present(0, 2), parent(2, 3), run(5, 2, PE_LAZY), present(7, 3)];
  const child = [present(1, 1), present(8, 2)];
  // parent file: pages 0,1 at file pages 0,1; pages 7,8,9 at file pages 2,3,4.
  t.deepEqual(planDedup([child, par]), [[], [range(1, 1), range(3, 2)]]);
});

test("grandparent data goes too, through the parent's PE_PARENT runs", (t) => {
  const gp = [present(0, 10)];
  const par = [parent(0, 4), present(4, 2), parent(6, 4)];
  const child = [present(0, 10)];
  t.deepEqual(planDedup([child, par, gp]), [[], [range(0, 2)], [range(0, 10)]]);
});

test("a hole in an ancestor's pagemap stops the walk for those pages", (t) => {
  const gp = [present(0, 10)];
  const par = [parent(0, 5)]; // nothing at pages 5..9
  const child = [present(0, 10)];
  t.deepEqual(planDedup([child, par, gp]), [[], [], [range(0, 5)]]);
});

test("only the newest dump's fresh pages punch: the parent's own fresh pages leave the grandparent alone (criu's dedup)", (t) => {
  const gp = [present(0, 4)];
  const par = [parent(0, 2), present(2, 2)];
  const child = [parent(0, 4)];
  t.deepEqual(planDedup([child, par, gp]), [[], [], []]);
});

test("lazy runs count as fresh (criu: not in parent); only PE_PRESENT data is punched", (t) => {
  const par = [run(0, 2, PE_LAZY | PE_PRESENT), run(2, 2, PE_LAZY), present(4, 2)];
  const child = [run(0, 6, PE_LAZY)];
  // parent file: pages 0,1 (lazy + present) at file pages 0,1; pages 4,5 at file pages 2,3.
  t.deepEqual(planDedup([child, par]), [[], [range(0, 4)]]);
});

test("a single layer, and an empty chain, have nothing to punch", (t) => {
  t.deepEqual(planDedup([[present(0, 3)]]), [[]]);
  t.deepEqual(planDedup([]), []);
  t.deepEqual(planDedup([[], [present(0, 1)]]), [[], []]);
});

test("agrees with criu's walk on random chains (seeded, bounded)", (t) => {
  const rand = prng(31);
  for (let iter = 0; iter < 300; iter++) {
    const universe = 1 + Math.floor(rand() * 200);
    const depth = 1 + Math.floor(rand() * 5);
    const layers = Array.from({ length: depth }, () => randomLayer(rand, universe, 1 + Math.floor(rand() * 10)));
    samePlan(t, planDedup(layers), reference(layers, universe), `iteration ${iter}`);
  }
});

test("chains too large for the exchange buffer are planned in address windows", (t) => {
  const rand = prng(32);
  const universe = 900_000;
  const layers = [randomLayer(rand, universe, 6), randomLayer(rand, universe, 6), randomLayer(rand, universe, 6)];
  t.true(layers.every((l) => l.length > 150_000), layers.map((l) => l.length).join(", "));
  samePlan(t, planDedup(layers), reference(layers, universe), "windowed");
});

// One test per error path.

test("error: a run with both PE_PARENT and PE_PRESENT", (t) => {
  t.throws(() => planDedup([[present(0, 1)], [present(0, 1), run(3, 2, PE_PARENT | PE_PRESENT)]]), {
    instanceOf: RangeError,
    message: "planDedup: layers[1][1] at 0x555500003000 (2 pages) has both PE_PARENT and PE_PRESENT (flags 5)",
  });
});

test("error: an unsorted layer is named", (t) => {
  t.throws(() => planDedup([[present(0, 1)], [present(0, 1)], [present(5, 1), present(2, 1)]]), {
    instanceOf: RangeError,
    message: /planDedup: layers\[2\]\[1\] at 0x555500002000 \(1 pages\) starts below layers\[2\]\[0\]/,
  });
});

test("error: layers that are not arrays of runs", (t) => {
  t.throws(() => planDedup({} as unknown as PagemapRun[][]), { instanceOf: TypeError, message: /layers must be an array of run lists/ });
  t.throws(() => planDedup([[], "x"] as unknown as PagemapRun[][]), { instanceOf: TypeError, message: /layers\[1\] must be an array of runs/ });
});
