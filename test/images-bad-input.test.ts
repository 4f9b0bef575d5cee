// Hostile and broken input: every failure is an ImageError naming the file and
// offset; nothing crashes, hangs or allocates by a size field's word.
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeImage, encodeImage, IMG_COMMON_MAGIC, parseHead } from "../images/codec.js";
import { fromCrit } from "../images/crit-json.js";
import { ImageError } from "../images/errors.js";
import { parseJson } from "../images/json.js";
import { FIXTURES, imageFiles, prng } from "./helpers/fixtures.js";

/** Entry boundaries of a well-formed image: offsets where an entry starts or the file ends. */
function boundaries(buf: Uint8Array, file: string): number[] {
  const { type, start } = parseHead(buf, file);
  const img = decodeImage(buf, file);
  const out = [start];
  // Re-encoding a prefix of entries gives the exact offset of each boundary.
  for (let i = 1; i <= img.entries.length; i++) {
    out.push(encodeImage({ type, entries: img.entries.slice(0, i) }).length);
  }
  return out;
}

function expectImageError(t: import("ava").ExecutionContext, fn: () => unknown, file: string, size: number, what: string): void {
  const e = t.throws(fn, { instanceOf: ImageError }, what);
  if (!e) return;
  t.is(e.file, file, what);
  t.true(e.offset !== undefined && e.offset >= 0 && e.offset <= size, `${what}: offset ${e.offset}`);
}

for (const [fx, f] of imageFiles()) {
  test(`${fx}/${f} truncated anywhere: a prefix of entries or an error naming file and offset`, (t) => {
    const full = readFileSync(join(FIXTURES, fx, f));
    const bounds = new Set(boundaries(full, f));
    const fullEntries = decodeImage(full, f).entries;
    const ghostRaw = f.startsWith("ghost-file");
    const start = [...bounds][0]!;
    for (let n = 0; n < full.length; n++) {
      const cut = full.subarray(0, n);
      if (bounds.has(n) && (!ghostRaw || n === start)) {
        // A cut exactly between entries is a shorter, valid image.
        const got = decodeImage(cut, f).entries;
        t.deepEqual(got, fullEntries.slice(0, got.length), `cut at ${n}`);
      } else if (ghostRaw && n >= start + 4 + full.readUInt32LE(start)) {
        // Ghost data runs to EOF: a shorter file is shorter data, not an error.
        t.notThrows(() => decodeImage(cut, f));
      } else {
        expectImageError(t, () => decodeImage(cut, f), f, n, `cut at ${n}`);
      }
    }
  });
}

test("a wrong type magic names the magic, file and offset", (t) => {
  const buf = Buffer.from(readFileSync(join(FIXTURES, "counter/core-15232.img")));
  buf.writeUInt32LE(0x12345678, 4);
  const e = t.throws(() => decodeImage(buf, "core.img"), { instanceOf: ImageError });
  t.regex(e.message, /core\.img: offset 4 \(0x4\): unknown image magic 0x12345678/);
});

test("raw page data is refused as an image", (t) => {
  const buf = readFileSync(join(FIXTURES, "counter/pages-1.img"));
  const e = t.throws(() => decodeImage(buf, "pages-1.img"), { instanceOf: ImageError });
  t.regex(e.message, /pages-1\.img: offset 0 .*unknown image magic .*raw page data/);
});

test("a size field of 2^31 is an error before any allocation", (t) => {
  const head = Buffer.alloc(12);
  head.writeUInt32LE(IMG_COMMON_MAGIC, 0);
  head.writeUInt32LE(0x55053847, 4); // CORE
  head.writeUInt32LE(2 ** 31, 8);
  const e = t.throws(() => decodeImage(head, "core-1.img"), { instanceOf: ImageError });
  t.regex(e.message, /core-1\.img: offset 8 .*claims 2147483648 bytes but only 0 are left/);
});

test("a length inside a message beyond its entry is an error with the offset", (t) => {
  // pstree entry whose 'threads' field claims 200 bytes in a 4-byte message.
  const b = Buffer.from([0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50, 4, 0, 0, 0, 0x08, 0x01, 0x2a, 0xc8]);
  const e = t.throws(() => decodeImage(b, "pstree.img"), { instanceOf: ImageError });
  t.regex(e.message, /pstree\.img: offset 1[45] .*entry 0 \(pstree_entry\)/);
});

test("seeded fuzz: random bytes and mutated fixtures fail cleanly", (t) => {
  const rnd = prng(0x7c21);
  const seeds = imageFiles().map(([fx, f]) => readFileSync(join(FIXTURES, fx, f)));
  let errors = 0;
  const started = Date.now();
  for (let i = 0; i < 4000; i++) {
    let buf: Uint8Array;
    if (i % 4 === 0) {
      // Random bytes behind a valid head, so the entry parser is reached.
      buf = new Uint8Array(8 + Math.floor(rnd() * 256));
      for (let k = 0; k < buf.length; k++) buf[k] = Math.floor(rnd() * 256);
      buf.set(seeds[Math.floor(rnd() * seeds.length)]!.subarray(0, 8));
    } else {
      const src = seeds[Math.floor(rnd() * seeds.length)]!;
      buf = new Uint8Array(src);
      const flips = 1 + Math.floor(rnd() * 8);
      for (let k = 0; k < flips; k++) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
    }
    try {
      const img = decodeImage(buf, "fuzz.img");
      encodeImage(img); // whatever decodes must encode again
    } catch (e) {
      if (!(e instanceof ImageError)) return t.fail(`iteration ${i}: ${String(e)}`);
      errors++;
    }
  }
  t.true(errors > 100, `${errors} inputs were refused`);
  t.true(Date.now() - started < 60_000);
});

test("JSON with a missing required field names the field", (t) => {
  const json = parseJson(readFileSync(join(FIXTURES, "counter/crit/pagemap-15232.img.json"), "utf8"));
  delete ((json as { entries: Record<string, unknown>[] }).entries[3]!)["vaddr"];
  const e = t.throws(() => fromCrit(json, "pm.json"), { instanceOf: ImageError });
  t.is(e.message, "pm.json: entries[3].vaddr: required field is missing");
});

test("JSON with a wrong kind of value or an unknown field names the path", (t) => {
  const base = () => parseJson(readFileSync(join(FIXTURES, "counter/crit/mm-15232.img.json"), "utf8")) as { entries: Record<string, unknown>[] };
  const a = base();
  (a.entries[0]!["vmas"] as Record<string, unknown>[])[2]!["start"] = "not a number";
  t.throws(() => fromCrit(a, "mm.json"), { message: /mm\.json: entries\[0\]\.vmas\[2\]\.start: not an integer/ });
  const b = base();
  b.entries[0]!["bogus"] = 1;
  t.throws(() => fromCrit(b, "mm.json"), { message: /mm_entry has no field "bogus"/ });
  t.throws(() => fromCrit({ magic: "NOPE", entries: [] }, "x.json"), { message: /unknown magic "NOPE"/ });
});
