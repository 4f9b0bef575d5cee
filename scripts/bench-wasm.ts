// Throughput of the wasm core against the same C built natively (gcc -O3) and Node's crypto.
//
//   node --import=tsx scripts/bench-wasm.ts [--mib 256] [--runs 5]
//
// Every measurement runs once per round, rounds interleave them, and the table shows
// medians (this VM's timings are noisy). Two views of wasm:
//   api     the public wrappers on a JS Uint8Array: includes copying into wasm memory
//   kernel  pages already in wasm memory (pageBuffer(), e.g. filled by process_vm_readv):
//           a resident 4 MiB batch processed until MIB are done; native does the same
// The native harness (scripts/native-bench/bench.c) is built into a temp dir each run.
import { spawnSync } from "node:child_process";
import { createHash, getHashes } from "node:crypto";
import * as crypto from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BATCH_PAGES, PAGE_SIZE, diffAgainstHashes, diffPages, hashPageBuffer, hashPages, pageBuffer } from "../wasm/index.js";
import { LAYOUT, core } from "../wasm/loader.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { mib: { type: "string", default: "256" }, runs: { type: "string", default: "5" } } });
const mib = Number(values.mib);
const rounds = Number(values.runs);
if (!Number.isInteger(mib) || mib <= 0 || mib % 4 !== 0) throw new RangeError(`--mib ${values.mib}: a positive multiple of 4`);
if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`--runs ${values.runs}: a positive integer`);
const pages = mib * 256;

/** Same data as the native harness: xorshift32 words, every 8th page zero; b differs in every 16th page. */
function makeData(): { a: Uint8Array; b: Uint8Array } {
  const a = new Uint8Array(pages * PAGE_SIZE);
  const w = new Uint32Array(a.buffer);
  let x = 2463534242;
  for (let i = 0; i < pages; i++) {
    const zero = i % 8 === 3;
    for (let j = 0; j < PAGE_SIZE / 4; j++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      w[i * (PAGE_SIZE / 4) + j] = zero ? 0 : x;
    }
  }
  const b = a.slice();
  for (let i = 5; i < pages; i += 16) {
    const at = i * PAGE_SIZE + ((i * 131) % PAGE_SIZE);
    b[at] = (b[at] ?? 0) ^ 0x5a;
  }
  return { a, b };
}

function buildNative(): string | null {
  const dir = mkdtempSync(join(tmpdir(), "tscriu-native-bench-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const exe = join(dir, "native-bench");
  const sources = ["scripts/native-bench/bench.c", ...["buffer", "cpucap", "dedup", "page_diff", "page_hash", "ranges", "xxh64"].map((f) => `core-c/${f}.c`)];
  const r = spawnSync("gcc", ["-O3", "-std=c11", "-o", exe, ...sources], { cwd: root, encoding: "utf8" });
  if (r.error || r.status !== 0) {
    console.error(`bench-wasm: cannot build the native harness with gcc: ${r.error?.message ?? r.stderr}`);
    return null;
  }
  return exe;
}

function native(exe: string, mode: string): number {
  const r = spawnSync(exe, [mode, String(mib)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`native-bench ${mode}: ${r.stderr || `exit ${r.status}`}`);
  return Number(r.stdout.trim());
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

interface Row {
  name: string;
  run: () => number;
  /** The native row this one is compared with. */
  vs?: string;
}

const exe = buildNative();
console.log(`bench-wasm: ${mib} MiB (${pages} pages), ${rounds} interleaved rounds, medians; node ${process.version}`);
const { a, b } = makeData();
const parentHashes = hashPages(b).hashes;
const c = core();
const perPage = (alg: string) => {
  // crypto.hash (Node >= 20.12) is the one-shot fast path; createHash otherwise.
  const oneShot = (crypto as unknown as { hash?: (alg: string, data: Uint8Array, enc: "buffer") => Buffer }).hash;
  return () =>
    time(() => {
      for (let p = 0; p < pages; p++) {
        const page = a.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
        if (oneShot) oneShot(alg, page, "buffer");
        else createHash(alg).update(page).digest();
      }
    });
};

const rows: Row[] = [
  { name: "wasm hashPages (api, copy in)", run: () => time(() => hashPages(a)), vs: "native hash (in place)" },
  {
    name: "wasm hash kernel (resident 4 MiB)",
    run: () => {
      pageBuffer().set(a.subarray(0, BATCH_PAGES * PAGE_SIZE));
      return time(() => {
        for (let p = 0; p < pages; p += BATCH_PAGES) hashPageBuffer(BATCH_PAGES);
      });
    },
    vs: "native hash kernel (resident 4 MiB)",
  },
  { name: "wasm diffPages (api, copy in)", run: () => time(() => diffPages(a, b)), vs: "native diff (in place)" },
  {
    name: "wasm diff kernel (resident 2+2 MiB)",
    run: () => {
      const half = (BATCH_PAGES / 2) * PAGE_SIZE;
      c.bytes.set(a.subarray(0, half), 0);
      c.bytes.set(b.subarray(0, half), half);
      return time(() => {
        for (let p = 0; p < pages; p += BATCH_PAGES / 2) c.x.tc_diff_pages(0, half, BATCH_PAGES / 2, LAYOUT.runs, LAYOUT.runsCap);
      });
    },
    vs: "native diff kernel (resident 2+2 MiB)",
  },
  { name: "wasm diffAgainstHashes (api, copy in)", run: () => time(() => diffAgainstHashes(a, parentHashes)), vs: "native diff vs hashes (in place)" },
];
if (exe) {
  rows.push(
    { name: "native hash (in place)", run: () => native(exe, "hash") },
    { name: "native hash kernel (resident 4 MiB)", run: () => native(exe, "hashk") },
    { name: "native diff (in place)", run: () => native(exe, "diff") },
    { name: "native diff kernel (resident 2+2 MiB)", run: () => native(exe, "diffk") },
    { name: "native diff vs hashes (in place)", run: () => native(exe, "diffh") },
  );
}
for (const alg of ["sha1", "md5"]) {
  if (getHashes().includes(alg)) rows.push({ name: `node crypto ${alg} per page`, run: perPage(alg), vs: "native hash (in place)" });
}

// Warm up the JIT and the caches once, then interleave.
for (const r of rows.filter((r) => r.name.startsWith("wasm"))) r.run();
const samples = new Map<string, number[]>(rows.map((r) => [r.name, []]));
for (let i = 0; i < rounds; i++) {
  for (const r of rows) samples.get(r.name)?.push(r.run());
  process.stderr.write(`round ${i + 1}/${rounds}\r`);
}
process.stderr.write("\n");

const gib = (pages * PAGE_SIZE) / 2 ** 30;
const med = new Map(rows.map((r) => [r.name, median(samples.get(r.name) ?? [])]));
const width = Math.max(...rows.map((r) => r.name.length));
console.log(`${"".padEnd(width)}  median s   GiB/s   vs native`);
for (const r of rows) {
  const s = med.get(r.name) ?? 0;
  const base = r.vs ? med.get(r.vs) : undefined;
  const ratio = base ? `${(base / s).toFixed(2)}x` : "";
  console.log(`${r.name.padEnd(width)}  ${s.toFixed(4).padStart(8)}  ${(gib / s).toFixed(2).padStart(6)}   ${ratio}`);
}
console.log("GiB/s counts the pages of one side; 'vs native' is native time / this time (1.00x = as fast as gcc -O3).");
