// xxh64 in wasm: published known answers, chunked == one-shot, agreement with a
// BigInt transcription of the algorithm, and every argument error.
import test from "ava";
import { Xxh64, xxh64 } from "../wasm/index.js";
import { prng } from "./helpers/fixtures.js";

const PRIME32 = 2654435761n;
const PRIME64 = 11400714785074694797n;
const M64 = (1n << 64n) - 1n;

/** xxHash's sanity buffer (cli/xsum_sanity_check.c: XSUM_fillTestBuffer). */
function sanityBuffer(len: number): Uint8Array {
  const out = new Uint8Array(len);
  let gen = PRIME32;
  for (let i = 0; i < len; i++) {
    out[i] = Number(gen >> 56n);
    gen = (gen * PRIME64) & M64;
  }
  return out;
}


function randomBytes(rand: () => number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

// Reference: XXH64 spelled out with BigInt, straight from the algorithm description.
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M64;
const round = (acc: bigint, input: bigint) => (rotl((acc + input * P2) & M64, 31n) * P1) & M64;
const merge = (acc: bigint, v: bigint) => (((acc ^ round(0n, v)) * P1 + P4) & M64);

function refXxh64(data: Uint8Array, seed: bigint): bigint {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const len = data.length;
  let p = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = (seed + P1 + P2) & M64;
    let v2 = (seed + P2) & M64;
    let v3 = seed;
    let v4 = (seed - P1) & M64;
    for (; p + 32 <= len; p += 32) {
      v1 = round(v1, dv.getBigUint64(p, true));
      v2 = round(v2, dv.getBigUint64(p + 8, true));
      v3 = round(v3, dv.getBigUint64(p + 16, true));
      v4 = round(v4, dv.getBigUint64(p + 24, true));
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M64;
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else {
    h = (seed + P5) & M64;
  }
  h = (h + BigInt(len)) & M64;
  for (; p + 8 <= len; p += 8) h = ((rotl(h ^ round(0n, dv.getBigUint64(p, true)), 27n) * P1 + P4) & M64);
  if (p + 4 <= len) {
    h = ((rotl(h ^ ((BigInt(dv.getUint32(p, true)) * P1) & M64), 23n) * P2 + P3) & M64);
    p += 4;
  }
  for (; p < len; p++) h = (rotl(h ^ ((BigInt(data[p] ?? 0) * P5) & M64), 11n) * P1) & M64;
  h ^= h >> 33n;
  h = (h * P2) & M64;
  h ^= h >> 29n;
  h = (h * P3) & M64;
  return h ^ (h >> 32n);
}

// XSUM_XXH64_testdata in xxHash's cli/xsum_sanity_check.c.
const VECTORS: readonly [number, bigint, bigint][] = [
  [0, 0n, 0xef46db3751d8e999n],
  [0, PRIME32, 0xac75fda2929b17efn],
  [1, 0n, 0xe934a84adb052768n],
  [1, PRIME32, 0x5014607643a9b4c3n],
  [4, 0n, 0x9136a0dca57457een],
  [14, 0n, 0x8282dcc4994e35c8n],
  [14, PRIME32, 0xc3bd6bf63deb6df0n],
  [222, 0n, 0xb641ae8cb691c174n],
  [222, PRIME32, 0x20cb8ab7ae10c14an],
];

test("xxh64 matches xxHash's sanity vectors, one-shot, streaming and byte by byte", (t) => {
  const buf = sanityBuffer(222);
  for (const [len, seed, want] of VECTORS) {
    const data = buf.subarray(0, len);
    t.is(xxh64(data, seed), want, `len ${len} seed ${seed}`);
    t.is(new Xxh64(seed).update(data).digest(), want, `streaming len ${len}`);
    const h = new Xxh64(seed);
    for (let i = 0; i < len; i++) h.update(data.subarray(i, i + 1));
    t.is(h.digest(), want, `byte by byte len ${len}`);
    t.is(refXxh64(data, seed), want, `reference len ${len}`);
  }
});

test("xxh64 of short strings and the empty input", (t) => {
  t.is(xxh64(new Uint8Array(0)), 0xef46db3751d8e999n);
  t.is(xxh64(Buffer.from("a")), 0xd24ec4f1a98c6e5bn);
  t.is(xxh64(Buffer.from("abc")), 0x44bc2cf5ad770999n);
  t.is(xxh64(Buffer.from("abc"), 0), xxh64(Buffer.from("abc"), 0n), "number and bigint seeds agree");
});

test("xxh64 agrees with the BigInt reference on random lengths and seeds", (t) => {
  const rand = prng(1);
  for (let i = 0; i < 300; i++) {
    const len = i < 100 ? i : Math.floor(rand() * 5000);
    const data = randomBytes(rand, len);
    const seed = (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32));
    t.is(xxh64(data, seed), refXxh64(data, seed), `len ${len}`);
  }
});

test("chunked updates equal one-shot, for any split", (t) => {
  const rand = prng(2);
  for (let i = 0; i < 200; i++) {
    const data = randomBytes(rand, Math.floor(rand() * 3000));
    const seed = BigInt(Math.floor(rand() * 1000));
    const h = new Xxh64(seed);
    let pos = 0;
    while (pos < data.length) {
      const n = Math.floor(rand() * 80);
      h.update(data.subarray(pos, pos + n));
      pos += n;
    }
    t.is(h.digest(), xxh64(data, seed));
  }
});

test("inputs larger than the exchange buffer: one-shot, streaming, digest twice, reset", (t) => {
  const rand = prng(3);
  const big = randomBytes(rand, 9 * 1024 * 1024 + 123);
  const one = xxh64(big, 7n);
  const h = new Xxh64(7n).update(big.subarray(0, 5_000_001)).update(big.subarray(5_000_001));
  t.is(h.digest(), one);
  t.is(h.digest(), one, "digest leaves the state alone");
  t.is(h.reset(7n).update(big).digest(), one);
  t.is(new Xxh64(7n).update(new Uint8Array(0)).digest(), xxh64(new Uint8Array(0), 7n));
});

test("two streaming hashers do not disturb each other", (t) => {
  const a = new Xxh64();
  const b = new Xxh64(5n);
  a.update(Buffer.from("hello "));
  b.update(Buffer.from("other"));
  a.update(Buffer.from("world"));
  t.is(a.digest(), xxh64(Buffer.from("hello world")));
  t.is(b.digest(), xxh64(Buffer.from("other"), 5n));
});

test("xxh64 rejects data that is not a Uint8Array", (t) => {
  t.throws(() => xxh64("abc" as unknown as Uint8Array), { instanceOf: TypeError, message: /xxh64: data must be a Uint8Array/ });
  t.throws(() => new Xxh64().update([1, 2] as unknown as Uint8Array), { instanceOf: TypeError, message: /Xxh64.update/ });
});

test("xxh64 rejects seeds outside 0..2^64-1", (t) => {
  const d = new Uint8Array(1);
  t.throws(() => xxh64(d, -1n), { instanceOf: RangeError, message: /does not fit in 64 bits/ });
  t.throws(() => xxh64(d, 1n << 64n), { instanceOf: RangeError, message: /does not fit in 64 bits/ });
  t.throws(() => xxh64(d, -3), { instanceOf: RangeError, message: /not a non-negative integer/ });
  t.throws(() => xxh64(d, 1.5), { instanceOf: RangeError, message: /not a non-negative integer/ });
  t.throws(() => xxh64(d, "1" as unknown as bigint), { instanceOf: TypeError, message: /seed must be a bigint/ });
  t.throws(() => new Xxh64(-1n), { instanceOf: RangeError, message: /Xxh64.reset/ });
});
