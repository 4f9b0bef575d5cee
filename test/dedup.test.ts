// dedup on a synthetic chain of three dumps written with the codec: holes land where
// criu's rule says, offsets never move, and every byte the newest dump covers reads
// the same before and after.
import test from "ava";
import { closeSync, mkdirSync, openSync, readFileSync, statSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bridge } from "../host-bridge/load.js";
import { imageTypeByName } from "../images/codec.js";
import { ImageWriter } from "../images/io.js";
import { PageReader, PE_PARENT, PE_PRESENT } from "../images/pages.js";
import { dedup } from "../orchestrator/dedup.js";
import { tscriu } from "./helpers/cli.js";
import { prng } from "./helpers/fixtures.js";
import { scratchDir } from "./helpers/tmp.js";

const P = 4096;
const BASE = 0x7f0000000000n;
type Run = [page: number, count: number, flags: number];

/** Writes one dump of `runs` (pages relative to BASE): pagemap-1.img and pages-N.img, page p of layer L filled with a tag. */
function writeDump(dir: string, layer: number, runs: readonly Run[], parent?: string): void {
  mkdirSync(dir, { recursive: true });
  const w = new ImageWriter(imageTypeByName("PAGEMAP")!);
  const pagesId = 10 + layer;
  w.add({ pages_id: pagesId });
  const chunks: Buffer[] = [];
  for (const [page, count, flags] of runs) {
    w.add({ vaddr: BASE + BigInt(page * P), compat_nr_pages: 0, flags, nr_pages: BigInt(count) });
    if (flags & PE_PRESENT) for (let k = 0; k < count; k++) chunks.push(pageOf(layer, page + k));
  }
  writeFileSync(join(dir, "pagemap-1.img"), w.bytes());
  writeFileSync(join(dir, `pages-${pagesId}.img`), Buffer.concat(chunks));
  if (parent) symlinkSync(parent, join(dir, "parent"));
}

function pageOf(layer: number, page: number): Buffer {
  const b = Buffer.alloc(P);
  for (let o = 0; o < P; o += 8) b.writeBigUInt64LE((BigInt(layer + 1) << 56n) | BigInt(page * P + o), o);
  return b;
}

/** Data extents of a file as [offset, end) pairs, through SEEK_DATA / SEEK_HOLE. */
function extents(file: string): [number, number][] {
  const fd = openSync(file, "r");
  const out: [number, number][] = [];
  try {
    let off = 0;
    for (;;) {
      const d = bridge().seekData(fd, off);
      if (d < 0) break;
      const h = bridge().seekHole(fd, d);
      out.push([d, h]);
      off = h;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Pages (by file page index) that are holes. */
function holePages(file: string): number[] {
  const size = statSync(file).size;
  const data = new Uint8Array(size / P);
  for (const [a, b] of extents(file)) data.fill(1, a / P, b / P);
  return [...data.keys()].filter((k) => !data[k]);
}

/** Everything the newest dump covers, read through the page reader (parents followed). */
async function snapshot(dir: string, runs: readonly Run[]): Promise<Buffer> {
  const r = await PageReader.open(dir, "pagemap-1.img");
  const parts: Buffer[] = [];
  for (const [page, count] of runs) parts.push(Buffer.from(await r.read(BASE + BigInt(page * P), count * P)));
  await r.close();
  return Buffer.concat(parts);
}

// The chain (pages 0..15 of BASE), oldest d0 → d1 → d2 (newest):
const D0: Run[] = [[0, 8, PE_PRESENT], [8, 4, PE_PRESENT], [12, 4, PE_PRESENT]];
const D1: Run[] = [[0, 2, PE_PRESENT], [2, 6, PE_PARENT], [8, 4, PE_PARENT], [12, 1, PE_PRESENT], [13, 3, PE_PARENT], [20, 3, PE_PRESENT]];
const D2: Run[] = [[0, 1, PE_PARENT], [1, 3, PE_PRESENT], [4, 4, PE_PARENT], [8, 2, PE_PRESENT], [10, 2, PE_PARENT], [12, 4, PE_PARENT], [20, 1, PE_PRESENT], [21, 2, PE_PARENT]];

function makeChain(root: string): string[] {
  const dirs = [join(root, "d0"), join(root, "d1"), join(root, "d2")];
  writeDump(dirs[0]!, 0, D0);
  writeDump(dirs[1]!, 1, D1, "../d0");
  writeDump(dirs[2]!, 2, D2, "../d1");
  return dirs;
}

test("dedup punches the newest dump's fresh pages out of every ancestor, offsets unchanged", async (t) => {
  const [d0, d1, d2] = makeChain(scratchDir("tscriu-dedup-"));
  const before = await snapshot(d2!, D2);
  const sizes = [statSync(join(d0!, "pages-10.img")).size, statSync(join(d1!, "pages-11.img")).size];

  const r = tscriu(["dedup", "-D", d2!, "-v3"], { env: { HOME: scratchDir("h-") } });
  t.is(r.code, 0, r.stderr);

  // d2 is fresh at pages 1,2,3 and 8,9 and 20. In d1 (file pages: 0,1 | 12→2 | 20,21,22→3,4,5):
  // page 1 → file page 1; pages 2,3 are PE_PARENT there (kept in d1, walk goes on);
  // pages 8,9 PE_PARENT; page 20 → file page 3.
  t.deepEqual(holePages(join(d1!, "pages-11.img")), [1, 3]);
  // In d0 (file page = page): 1,2,3 (through d1's present and parent runs), 8,9; page 20 has no run in d0.
  t.deepEqual(holePages(join(d0!, "pages-10.img")), [1, 2, 3, 8, 9]);
  t.deepEqual([statSync(join(d0!, "pages-10.img")).size, statSync(join(d1!, "pages-11.img")).size], sizes);
  // The newest dump's own pages file is never touched.
  t.deepEqual(holePages(join(d2!, "pages-12.img")), []);
  t.true((await snapshot(d2!, D2)).equals(before), "the newest dump reads the same bytes");

  // Running it again changes nothing.
  t.is(tscriu(["dedup", "-D", d2!]).code, 0);
  t.deepEqual(holePages(join(d0!, "pages-10.img")), [1, 2, 3, 8, 9]);
});

test("dedup on random chains keeps every byte of the newest dump (seeded)", async (t) => {
  const rand = prng(77);
  for (let iter = 0; iter < 25; iter++) {
    const root = scratchDir("tscriu-dedup-r-");
    const universe = 8 + Math.floor(rand() * 40);
    const layers: Run[][] = [];
    for (let l = 0; l < 3; l++) {
      const runs: Run[] = [];
      let p = 0;
      while (p < universe) {
        const len = 1 + Math.floor(rand() * 5);
        const kind = rand();
        // The oldest dump has no parent: only present runs and gaps there.
        if (kind < 0.2) {
          p += len; // gap
          continue;
        }
        const flags = l === 0 || kind < 0.6 ? PE_PRESENT : PE_PARENT;
        runs.push([p, Math.min(len, universe - p), flags]);
        p += len;
      }
      layers.push(runs);
    }
    // A PE_PARENT run must be backed all the way down: keep only those the ancestors cover.
    const covered = (l: number, page: number): boolean =>
      l >= 0 && layers[l]!.some(([a, n, f]) => page >= a && page < a + n && (f & PE_PRESENT || covered(l - 1, page)));
    for (let l = 1; l < 3; l++) layers[l] = layers[l]!.filter(([a, n, f]) => f & PE_PRESENT || [...Array(n).keys()].every((k) => covered(l - 1, a + k)));
    const dirs = [0, 1, 2].map((l) => join(root, `d${l}`));
    layers.forEach((runs, l) => writeDump(dirs[l]!, l, runs, l ? `../d${l - 1}` : undefined));
    const before = await snapshot(dirs[2]!, layers[2]!);
    await dedup(dirs[2]!);
    t.true((await snapshot(dirs[2]!, layers[2]!)).equals(before), `iteration ${iter}`);
  }
});

test("a pages file shorter than its pagemap says: an error naming it, and nothing punched", async (t) => {
  const [d0, d1, d2] = makeChain(scratchDir("tscriu-dedup-bad-"));
  truncateSync(join(d1!, "pages-11.img"), 2 * P); // d1 must hold 6 pages
  const e = await t.throwsAsync(dedup(d2!));
  t.regex(e.message, /pages-11\.img: offset 12288 .*does not fit this pages file of 8192 bytes/);
  t.deepEqual(holePages(join(d0!, "pages-10.img")), [], "the grandparent was not touched either");
});

test("a parent link loop is refused", async (t) => {
  const root = scratchDir("tscriu-dedup-loop-");
  writeDump(join(root, "a"), 0, D0, "../b");
  writeDump(join(root, "b"), 1, D1, "../a");
  await t.throwsAsync(dedup(join(root, "b")), { message: /parent chain loops/ });
});

test("dedup of a dump without a parent does nothing", async (t) => {
  const root = scratchDir("tscriu-dedup-one-");
  writeDump(join(root, "d0"), 0, D0);
  const before = readFileSync(join(root, "d0/pages-10.img"));
  const s = await dedup(join(root, "d0"));
  t.is(s.bytes, 0);
  t.true(readFileSync(join(root, "d0/pages-10.img")).equals(before));
});

test("dedup of a missing images directory, or of a file: named, nothing done", async (t) => {
  const dir = scratchDir("tscriu-dedup-");
  const file = join(dir, "file");
  writeFileSync(file, "");
  await t.throwsAsync(dedup(join(dir, "none")), { message: `${join(dir, "none")}: cannot open the images directory: ENOENT` });
  await t.throwsAsync(dedup(file), { message: `${file}: cannot open the images directory: ENOTDIR` });
});
