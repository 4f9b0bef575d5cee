// The one loader of core.wasm: read the bytes that sit next to this file, compile and
// instantiate synchronously on first use, check the exports, and hand out typed views
// of the fixed exchange buffer. No emscripten JS glue: the module imports nothing.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const PAGE_SIZE = 4096;
/** Pages that fit the page region of the exchange buffer (4 MiB). */
export const BATCH_PAGES = 1024;

/**
 * Layout of the exchange buffer (offsets relative to its start):
 * page data in [0, 4 MiB), then 64 KiB of small results.
 */
export const LAYOUT = {
  pages: 0,
  hashes: BATCH_PAGES * PAGE_SIZE, // 8 KiB: one u64 per page
  zero: BATCH_PAGES * PAGE_SIZE + 8 * 1024, // 1 KiB: one byte per page
  parent: BATCH_PAGES * PAGE_SIZE + 16 * 1024, // 8 KiB: parent hashes
  runs: BATCH_PAGES * PAGE_SIZE + 32 * 1024, // 32 KiB: (first, count) u32 pairs
  runsCap: 4096,
} as const;

/** ABI version the wrappers are written against (TC_ABI_VERSION in core-c/tc.h). */
const ABI_VERSION = 1;

/** Error codes of core-c/tc.h. */
export const TC_ERR = {
  BOUNDS: -1,
  ALIGN: -2,
  EMPTY_RUN: -3,
  OVERFLOW: -4,
  UNSORTED: -5,
  OVERLAP: -6,
  NOSPACE: -7,
  FLAGS: -8,
  VENDOR: -9,
  CAPVER: -10,
  NCAPS: -11,
  SYNTAX: -12,
  ARG: -13,
} as const;

interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

/** The exports of core.wasm, as declared in core-c/*.c (TC_EXPORT). Offsets are relative to tc_buf. */
export interface CoreExports {
  readonly memory: WasmMemory;
  tc_abi_version(): number;
  tc_buf(): number;
  tc_buf_size(): number;
  tc_err_list(): number;
  tc_err_index(): number;
  tc_aux(): number;
  tc_xxh64(off: number, len: number, seed: bigint, outOff: number): number;
  tc_xxh64_reset(stateOff: number, seed: bigint): number;
  tc_xxh64_update(stateOff: number, off: number, len: number): number;
  tc_xxh64_digest(stateOff: number, outOff: number): number;
  tc_hash_pages(off: number, n: number, hashesOff: number, zeroOff: number): number;
  tc_diff_pages(aOff: number, bOff: number, n: number, outOff: number, cap: number): number;
  tc_diff_hashes(off: number, n: number, parentOff: number, hashesOff: number, outOff: number, cap: number): number;
  tc_runs_validate(off: number, n: number, dedupFlags: number): number;
  tc_runs_merge(off: number, n: number, outOff: number, cap: number): number;
  tc_runs_subtract(aOff: number, na: number, bOff: number, nb: number, outOff: number, cap: number): number;
  tc_runs_intersect(aOff: number, na: number, bOff: number, nb: number, outOff: number, cap: number): number;
  tc_runs_union(aOff: number, na: number, bOff: number, nb: number, outOff: number, cap: number): number;
  tc_runs_split(off: number, n: number, addr: bigint, outOff: number, cap: number): number;
  tc_dedup_step(
    reachOff: number,
    nReach: number,
    runsOff: number,
    nRuns: number,
    basePage: bigint,
    punchOff: number,
    punchCap: number,
    nextOff: number,
    nextCap: number,
    newest: number,
  ): number;
  tc_cpu_compare(imgOff: number, hostOff: number, caps: number, outOff: number): number;
  tc_cpucap_parse(off: number, len: number, hasArg: number, initial: number): number;
}

const REQUIRED: readonly (keyof CoreExports)[] = [
  "tc_abi_version",
  "tc_buf",
  "tc_buf_size",
  "tc_err_list",
  "tc_err_index",
  "tc_aux",
  "tc_xxh64",
  "tc_xxh64_reset",
  "tc_xxh64_update",
  "tc_xxh64_digest",
  "tc_hash_pages",
  "tc_diff_pages",
  "tc_diff_hashes",
  "tc_runs_validate",
  "tc_runs_merge",
  "tc_runs_subtract",
  "tc_runs_intersect",
  "tc_runs_union",
  "tc_runs_split",
  "tc_dedup_step",
  "tc_cpu_compare",
  "tc_cpucap_parse",
];

/** The loaded core: its exports and views of the exchange buffer inside wasm memory. */
export interface Core {
  readonly x: CoreExports;
  /** Size of the exchange buffer in bytes. */
  readonly size: number;
  readonly bytes: Uint8Array;
  readonly u32: Uint32Array;
  readonly u64: BigUint64Array;
  readonly view: DataView;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, never>) => { readonly exports: Record<string, unknown> };
}

let loaded: Core | undefined;

function fail(what: string): never {
  throw new Error(`wasm core: ${what}`);
}

function load(): Core {
  const url = new URL("./core.wasm", import.meta.url);
  const path = fileURLToPath(url);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    fail(`cannot read ${path}: ${e instanceof Error ? e.message : String(e)} (rebuild it with: npm run build:wasm)`);
  }
  // lib ES2022 has no WebAssembly declarations; this is the one place it is typed.
  const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
  let exports: Record<string, unknown>;
  try {
    exports = new wasm.Instance(new wasm.Module(bytes), {}).exports;
  } catch (e) {
    fail(`cannot instantiate ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  for (const name of REQUIRED) {
    if (typeof exports[name] !== "function") fail(`${path} does not export ${name}()`);
  }
  const memory = exports["memory"];
  if (typeof memory !== "object" || memory === null || !("buffer" in memory) || !(memory.buffer instanceof ArrayBuffer)) {
    fail(`${path} does not export its memory`);
  }
  // STANDALONE_WASM reactors run their static constructors here.
  const init = exports["_initialize"];
  if (typeof init === "function") (init as () => void)();
  const x = exports as unknown as CoreExports;
  const abi = x.tc_abi_version();
  if (abi !== ABI_VERSION) fail(`${path} has ABI version ${abi}, the loader expects ${ABI_VERSION}`);
  const base = x.tc_buf() >>> 0;
  const size = x.tc_buf_size() >>> 0;
  if (base % 64 !== 0 || size < LAYOUT.runs + LAYOUT.runsCap * 8) fail(`${path} has an unexpected buffer (${size} bytes at ${base})`);
  // Memory never grows (ALLOW_MEMORY_GROWTH=0), so these views stay valid.
  const buf = x.memory.buffer;
  return {
    x,
    size,
    bytes: new Uint8Array(buf, base, size),
    u32: new Uint32Array(buf, base, size / 4),
    u64: new BigUint64Array(buf, base, size / 8),
    view: new DataView(buf, base, size),
  };
}

/** Loads core.wasm on first call (synchronously) and returns the same instance afterwards. */
export function core(): Core {
  loaded ??= load();
  return loaded;
}

/** Thrown for a code that means the wrapper itself misused the core: never the caller's fault. */
export function internalError(fn: string, code: number): Error {
  return new Error(`wasm core: ${fn} returned ${code} (${codeName(code)}): this is a bug in wasm/`);
}

export function codeName(code: number): string {
  for (const [name, value] of Object.entries(TC_ERR)) if (value === code) return `TC_ERR_${name}`;
  return "unknown error";
}

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

/** Checks that data is a byte array (Buffer included). */
export function checkBytes(fn: string, name: string, data: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(`${fn}: ${name} must be a Uint8Array (or Buffer), got ${describe(data)}`);
  }
}

/** Checks that data is a whole number of 4096-byte pages and returns the page count. */
export function checkPages(fn: string, name: string, data: unknown): number {
  checkBytes(fn, name, data);
  if (data.length % PAGE_SIZE !== 0) {
    throw new RangeError(`${fn}: ${name} is ${data.length} bytes, not a multiple of the page size (${PAGE_SIZE})`);
  }
  return data.length / PAGE_SIZE;
}

export function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return v.constructor?.name ?? "an object";
  return typeof v;
}
