// xxh64 over arbitrary bytes (one-shot and streaming) and per-page hashing with
// zero-page detection. Large inputs go through the exchange buffer in 4 MiB batches.
import { BATCH_PAGES, LAYOUT, PAGE_SIZE, checkBytes, checkPages, core, describe, internalError } from "./loader.js";

const U64_MAX = (1n << 64n) - 1n;
/** Where the streaming state and one-shot results live in the exchange buffer. */
const STATE_OFF = 0;
const STATE_SIZE = 80; // struct tc_xxh64_state
const RESULT_OFF = 96;
const DATA_OFF = 128;

export interface PageHashes {
  /** xxh64 (seed 0) of each page. */
  hashes: BigUint64Array;
  /** 1 where the page is all zeroes, else 0. */
  zero: Uint8Array;
}

function checkSeed(fn: string, seed: unknown): bigint {
  if (typeof seed === "number") {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`${fn}: seed ${seed} is not a non-negative integer`);
    return BigInt(seed);
  }
  if (typeof seed !== "bigint") throw new TypeError(`${fn}: seed must be a bigint or a number, got ${describe(seed)}`);
  if (seed < 0n || seed > U64_MAX) throw new RangeError(`${fn}: seed ${seed} does not fit in 64 bits`);
  return seed;
}

/** xxh64 of `data`; equal to the streaming {@link Xxh64} over any split of the same bytes. */
export function xxh64(data: Uint8Array, seed: bigint | number = 0n): bigint {
  checkBytes("xxh64", "data", data);
  const s = checkSeed("xxh64", seed);
  const c = core();
  if (data.length <= c.size - DATA_OFF) {
    c.bytes.set(data, DATA_OFF);
    const r = c.x.tc_xxh64(DATA_OFF, data.length, s, RESULT_OFF);
    if (r !== 0) throw internalError("tc_xxh64", r);
    return c.u64[RESULT_OFF / 8] ?? 0n;
  }
  return new Xxh64(s).update(data).digest();
}

/**
 * Streaming xxh64: `new Xxh64(seed).update(a).update(b).digest()` equals `xxh64(a ++ b, seed)`.
 * The 80-byte state lives on the JS side, so any number of hashers can be open at once.
 */
export class Xxh64 {
  readonly #state = new Uint8Array(STATE_SIZE);

  constructor(seed: bigint | number = 0n) {
    this.reset(seed);
  }

  /** Starts over with `seed`. */
  reset(seed: bigint | number = 0n): this {
    const s = checkSeed("Xxh64.reset", seed);
    const c = core();
    const r = c.x.tc_xxh64_reset(STATE_OFF, s);
    if (r !== 0) throw internalError("tc_xxh64_reset", r);
    this.#state.set(c.bytes.subarray(STATE_OFF, STATE_OFF + STATE_SIZE));
    return this;
  }

  /** Adds bytes; large inputs are fed in buffer-sized pieces. */
  update(data: Uint8Array): this {
    checkBytes("Xxh64.update", "data", data);
    const c = core();
    const chunk = c.size - DATA_OFF;
    if (data.length === 0) return this;
    c.bytes.set(this.#state, STATE_OFF);
    for (let pos = 0; pos < data.length; pos += chunk) {
      const piece = data.subarray(pos, pos + chunk);
      c.bytes.set(piece, DATA_OFF);
      const r = c.x.tc_xxh64_update(STATE_OFF, DATA_OFF, piece.length);
      if (r !== 0) throw internalError("tc_xxh64_update", r);
    }
    this.#state.set(c.bytes.subarray(STATE_OFF, STATE_OFF + STATE_SIZE));
    return this;
  }

  /** The hash of everything added so far; the hasher stays usable. */
  digest(): bigint {
    const c = core();
    c.bytes.set(this.#state, STATE_OFF);
    const r = c.x.tc_xxh64_digest(STATE_OFF, RESULT_OFF);
    if (r !== 0) throw internalError("tc_xxh64_digest", r);
    return c.u64[RESULT_OFF / 8] ?? 0n;
  }
}

function hashBatch(nPages: number, hashes: BigUint64Array, zero: Uint8Array, at: number): void {
  const c = core();
  const r = c.x.tc_hash_pages(LAYOUT.pages, nPages, LAYOUT.hashes, LAYOUT.zero);
  if (r < 0) throw internalError("tc_hash_pages", r);
  hashes.set(c.u64.subarray(LAYOUT.hashes / 8, LAYOUT.hashes / 8 + nPages), at);
  zero.set(c.bytes.subarray(LAYOUT.zero, LAYOUT.zero + nPages), at);
}

/** Hashes every 4096-byte page of `data` (its length must be a multiple of 4096). */
export function hashPages(data: Uint8Array): PageHashes {
  const n = checkPages("hashPages", "data", data);
  const c = core();
  const hashes = new BigUint64Array(n);
  const zero = new Uint8Array(n);
  for (let p = 0; p < n; p += BATCH_PAGES) {
    const k = Math.min(BATCH_PAGES, n - p);
    c.bytes.set(data.subarray(p * PAGE_SIZE, (p + k) * PAGE_SIZE), LAYOUT.pages);
    hashBatch(k, hashes, zero, p);
  }
  return { hashes, zero };
}

/**
 * The page region of the exchange buffer (4 MiB, 4096-aligned, inside wasm memory).
 * Fill it directly, e.g. with process_vm_readv, then call {@link hashPageBuffer}:
 * that avoids one copy. Any other call into the core may overwrite it.
 */
export function pageBuffer(): Uint8Array {
  return core().bytes.subarray(LAYOUT.pages, LAYOUT.pages + BATCH_PAGES * PAGE_SIZE);
}

/** Hashes the first `nPages` pages of {@link pageBuffer} in place. */
export function hashPageBuffer(nPages: number): PageHashes {
  if (!Number.isInteger(nPages) || nPages < 0 || nPages > BATCH_PAGES) {
    throw new RangeError(`hashPageBuffer: nPages ${nPages} is outside 0..${BATCH_PAGES}`);
  }
  const hashes = new BigUint64Array(nPages);
  const zero = new Uint8Array(nPages);
  hashBatch(nPages, hashes, zero, 0);
  return { hashes, zero };
}
