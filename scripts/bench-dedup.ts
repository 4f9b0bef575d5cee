// Benchmark: `tscriu dedup` on a chain of three dumps holding 1 GiB of pages.
// d0: 128 Ki pages (512 MiB) present; d1 and d2: half of the address space fresh
// each (256 MiB), in runs of 1..64 pages, the rest PE_PARENT. The chain is rebuilt
// before each run (dedup changes it); only the dedup command is timed.
// Run: node --import=tsx scripts/bench-dedup.ts [--runs N]
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, openSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { imageTypeByName } from "../images/codec.js";
import { ImageWriter } from "../images/io.js";
import { fmt, median, timeCommand, TSCRIU } from "./bench-util.js";

const cli = TSCRIU;
const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 5;
const PAGES = 128 * 1024;
const P = 4096;
const BASE = 0x7f0000000000n;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function layer(dir: string, id: number, fresh: (p: number) => boolean, parent?: string): number {
  mkdirSync(dir);
  const w = new ImageWriter(imageTypeByName("PAGEMAP")!);
  w.add({ pages_id: id });
  let present = 0;
  let p = 0;
  while (p < PAGES) {
    const f = fresh(p);
    let q = p + 1;
    while (q < PAGES && fresh(q) === f) q++;
    w.add({ vaddr: BASE + BigInt(p * P), compat_nr_pages: 0, flags: f ? 4 : 1, nr_pages: BigInt(q - p) });
    if (f) present += q - p;
    p = q;
  }
  writeFileSync(join(dir, "pagemap-1.img"), w.bytes());
  const fd = openSync(join(dir, `pages-${id}.img`), "w");
  const chunk = Buffer.alloc(1 << 20, id);
  for (let left = present * P; left > 0; left -= chunk.length) writeSync(fd, chunk, 0, Math.min(left, chunk.length));
  closeSync(fd);
  if (parent) symlinkSync(parent, join(dir, "parent"));
  return present;
}

function freshMap(seed: number): (p: number) => boolean {
  const rand = prng(seed);
  const map = new Uint8Array(PAGES);
  let p = 0;
  let on = true;
  while (p < PAGES) {
    const len = 1 + Math.floor(rand() * 64);
    if (on) map.fill(1, p, p + len);
    p += len;
    on = !on;
  }
  return (x) => map[x] === 1;
}

const times: number[] = [];
let total = 0;
for (let i = 0; i < runs; i++) {
  const work = mkdtempSync(join(tmpdir(), "tscriu-bench-dedup-"));
  try {
    total = layer(join(work, "d0"), 1, () => true);
    total += layer(join(work, "d1"), 2, freshMap(1), "../d0");
    total += layer(join(work, "d2"), 3, freshMap(2), "../d1");
    times.push(timeCommand(cli, ["dedup", "-D", join(work, "d2")]));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
console.log(`dedup of a 3-dump chain holding ${((total * P) / 2 ** 30).toFixed(2)} GiB of pages (${PAGES} pages of address space): median ${fmt(median(times))} over ${runs} runs`);
