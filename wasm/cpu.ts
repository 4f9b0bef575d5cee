// cpuinfo comparison with criu's rules (core-c/cpucap.c) and criu's --cpu-cap syntax.
//
// The check modes, as criu's --cpu-cap:
//   fpu  the image's fpu/fxsr/osxsave/xsaves bits are on the host, its xfeatures_mask is
//        a subset of the host's, and xsave_size and xsave_size_max are equal
//   ins  every instruction-set bit of the image (criu's x86_ins_capability_mask) is on the host
//   cpu  every capability word is equal
// criu's default is fpu,ins; `restore` compares only when the "image" bit is set (any
// --cpu-cap other than none), and `cpuinfo check` turns none into all (see cpuinfoCheckCaps).
import { TC_ERR, core, describe, hex, internalError } from "./loader.js";
import { featureName } from "./cpu-features.js";

export const CPU_CAP_NONE = 0;
export const CPU_CAP_FPU = 1;
export const CPU_CAP_CPU = 2;
export const CPU_CAP_INS = 4;
/** Dump writes cpuinfo.img and restore checks it. */
export const CPU_CAP_IMAGE = 8;
export const CPU_CAP_ALL = CPU_CAP_FPU | CPU_CAP_CPU | CPU_CAP_INS;
export const CPU_CAP_DEFAULT = CPU_CAP_FPU | CPU_CAP_INS;

/** cpuinfo_x86_entry.vendor: UNKNOWN = 0, INTEL = 1, AMD = 2. */
export type CpuVendorName = "UNKNOWN" | "INTEL" | "AMD";
const VENDORS: Readonly<Record<CpuVendorName, number>> = { UNKNOWN: 0, INTEL: 1, AMD: 2 };

/** One cpuinfo_x86_entry (the image's, or the host's as read with cpuid). */
export interface CpuCaps {
  /** 1 = INTEL, 2 = AMD (or the enum name). */
  vendorId: number | CpuVendorName;
  cpuFamily: number;
  model: number;
  stepping: number;
  /** 1: 12 capability words, 2: 19 words. */
  capabilityVer: number;
  /** Capability words (u32) in compel's layout. */
  capability: readonly number[] | Uint32Array;
  /** Absent in old images: then the host's value is used, as criu does. */
  xfeaturesMask?: bigint | undefined;
  xsaveSize?: number | undefined;
  xsaveSizeMax?: number | undefined;
  modelId?: string | undefined;
}

/** One capability bit: feature = word * 32 + bit. */
export interface CpuFeatureBit {
  word: number;
  bit: number;
  feature: number;
  /** /proc/cpuinfo name, when known. */
  name: string | null;
}

export interface CpuSizeDiff {
  image: number;
  host: number;
}

export interface CpuCompareResult {
  /** True when every requested check passes. */
  ok: boolean;
  /** The checks that were asked for. */
  checked: { fpu: boolean; ins: boolean; cpu: boolean };
  /** The requested checks that failed. */
  failed: { fpu: boolean; ins: boolean; cpu: boolean };
  /** Image and host vendors differ; criu does not refuse that by itself. */
  vendorDiffers: boolean;
  /** Differences seen by the fpu check (filled whether or not it was requested). */
  fpu: {
    /** Of fpu, fxsr, osxsave, xsaves: those the image has and the host lacks. */
    missing: CpuFeatureBit[];
    /** xfeatures_mask bits the image has and the host lacks. */
    xfeaturesMissing: bigint;
    /** Set when xsave_size differs. */
    xsaveSize: CpuSizeDiff | null;
    /** Set when xsave_size_max differs. */
    xsaveSizeMax: CpuSizeDiff | null;
  };
  /** Instruction-set bits the image has and the host lacks. */
  ins: { missing: CpuFeatureBit[] };
  /** Every differing bit, both ways. */
  cpu: { imageOnly: CpuFeatureBit[]; hostOnly: CpuFeatureBit[] };
  /** One line per failed check, in criu's words with the data. */
  messages: string[];
}

const NCAPINTS = 19;
const MAX_WORDS = 32;
// struct tc_cpuinfo is 176 bytes, struct tc_cpu_result 352.
const IMG_OFF = 0;
const HOST_OFF = 256;
const RES_OFF = 512;
const STR_OFF = 1024;
const STR_MAX = 4096;
const HAS_XFEATURES = 1;
const HAS_XSAVE = 2;
const HAS_XSAVE_MAX = 4;

function checkU32(fn: string, name: string, v: unknown): number {
  if (typeof v !== "number") throw new TypeError(`${fn}: ${name} must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${fn}: ${name} ${v} is not a 32-bit unsigned integer`);
  return v;
}

function checkCaps(fn: string, caps: unknown): number {
  if (typeof caps === "string") return parseCpuCaps(caps);
  const v = checkU32(fn, "caps", caps);
  if (v > 15) throw new RangeError(`${fn}: caps ${v} has bits other than CPU_CAP_FPU|CPU|INS|IMAGE`);
  return v;
}

/** Writes one CpuCaps as struct tc_cpuinfo at `off`. */
function writeCpuinfo(fn: string, name: string, c: unknown, off: number): void {
  if (typeof c !== "object" || c === null) throw new TypeError(`${fn}: ${name} must be a CpuCaps object, got ${describe(c)}`);
  const e = c as Record<string, unknown>;
  let vendor: number;
  const vendorId = e["vendorId"];
  if (typeof vendorId === "string") {
    if (!Object.hasOwn(VENDORS, vendorId)) throw new RangeError(`${fn}: ${name}.vendorId "${vendorId}" is not INTEL, AMD or UNKNOWN`);
    vendor = VENDORS[vendorId as CpuVendorName];
  } else {
    vendor = checkU32(fn, `${name}.vendorId`, vendorId);
  }
  const words = e["capability"];
  if (!Array.isArray(words) && !(words instanceof Uint32Array)) throw new TypeError(`${fn}: ${name}.capability must be an array of u32 words, got ${describe(words)}`);
  if (words.length > MAX_WORDS) throw new RangeError(`${fn}: ${name}.capability has ${words.length} words; at most ${MAX_WORDS}`);
  let has = 0;
  let xfeatures = 0n;
  const xf = e["xfeaturesMask"];
  if (xf !== undefined) {
    if (typeof xf !== "bigint") throw new TypeError(`${fn}: ${name}.xfeaturesMask must be a bigint, got ${describe(xf)}`);
    if (xf < 0n || xf >= 1n << 64n) throw new RangeError(`${fn}: ${name}.xfeaturesMask ${xf} does not fit in 64 bits`);
    xfeatures = xf;
    has |= HAS_XFEATURES;
  }
  const xsave = e["xsaveSize"] === undefined ? 0 : checkU32(fn, `${name}.xsaveSize`, e["xsaveSize"]);
  if (e["xsaveSize"] !== undefined) has |= HAS_XSAVE;
  const xsaveMax = e["xsaveSizeMax"] === undefined ? 0 : checkU32(fn, `${name}.xsaveSizeMax`, e["xsaveSizeMax"]);
  if (e["xsaveSizeMax"] !== undefined) has |= HAS_XSAVE_MAX;

  const { view } = core();
  const fields = [
    vendor,
    checkU32(fn, `${name}.cpuFamily`, e["cpuFamily"]),
    checkU32(fn, `${name}.model`, e["model"]),
    checkU32(fn, `${name}.stepping`, e["stepping"]),
    checkU32(fn, `${name}.capabilityVer`, e["capabilityVer"]),
    words.length,
    has,
    xsave,
    xsaveMax,
    0,
  ];
  fields.forEach((v, i) => view.setUint32(off + 4 * i, v, true));
  view.setBigUint64(off + 40, xfeatures, true);
  for (let w = 0; w < MAX_WORDS; w++) {
    view.setUint32(off + 48 + 4 * w, w < words.length ? checkU32(fn, `${name}.capability[${w}]`, words[w]) : 0, true);
  }
}

function bitsOf(words: (w: number) => number): CpuFeatureBit[] {
  const out: CpuFeatureBit[] = [];
  for (let w = 0; w < NCAPINTS; w++) {
    const v = words(w);
    for (let b = 0; b < 32; b++) {
      if ((v >>> b) & 1) out.push({ word: w, bit: b, feature: w * 32 + b, name: featureName(w, b) });
    }
  }
  return out;
}

/** "avx512f (word 9 bit 16), …": the name a user knows and where criu keeps it. */
function names(bits: readonly CpuFeatureBit[]): string {
  return bits.map((b) => (b.name ? `${b.name} (word ${b.word} bit ${b.bit})` : `word ${b.word} bit ${b.bit}`)).join(", ");
}

function entryError(code: number, list: number, value: number): Error {
  const who = list === 1 ? "host" : "image";
  switch (code) {
    case TC_ERR.VENDOR:
      return new RangeError(`compareCpuinfo: ${who} carries unknown vendor ${value} (criu knows INTEL = 1 and AMD = 2)`);
    case TC_ERR.CAPVER:
      return new RangeError(
        list === 1
          ? `compareCpuinfo: host capabilityVer is ${value}; the host must have all 19 words (version 2)`
          : `compareCpuinfo: image carries unknown capability version ${value} (criu knows 1 and 2)`,
      );
    case TC_ERR.NCAPS:
      return new RangeError(`compareCpuinfo: ${who} carries ${value} capability words, not the count its capabilityVer requires (12 for 1, 19 for 2)`);
    default:
      return internalError("tc_cpu_compare", code);
  }
}

/**
 * Compares an image's cpuinfo with the host's under the checks in `caps` (a CPU_CAP_*
 * mask, or a --cpu-cap string; default fpu,ins). Throws a RangeError for an entry criu
 * would refuse to read (unknown vendor, unknown capability version, wrong word count).
 */
export function compareCpuinfo(image: CpuCaps, host: CpuCaps, caps: number | string = CPU_CAP_DEFAULT): CpuCompareResult {
  const fn = "compareCpuinfo";
  const mask = checkCaps(fn, caps);
  writeCpuinfo(fn, "image", image, IMG_OFF);
  writeCpuinfo(fn, "host", host, HOST_OFF);
  const c = core();
  const r = c.x.tc_cpu_compare(IMG_OFF, HOST_OFF, mask, RES_OFF);
  if (r < 0) throw entryError(r, c.x.tc_err_list(), c.x.tc_err_index() >>> 0);
  const v = c.view;
  const u32 = (off: number) => v.getUint32(RES_OFF + off, true);
  const word = (base: number) => (w: number) => u32(base + 4 * w);
  const fpuMissing = u32(4);
  const xsaveDiff = u32(8);
  const fpuBits: CpuFeatureBit[] = [];
  const fpuFeatures: readonly [number, number, number][] = [
    [1, 0, 0],
    [2, 0, 24],
    [4, 4, 27],
    [8, 10, 3],
  ];
  for (const [flag, w, b] of fpuFeatures) {
    if (fpuMissing & flag) fpuBits.push({ word: w, bit: b, feature: w * 32 + b, name: featureName(w, b) });
  }
  const result: CpuCompareResult = {
    ok: r === 0,
    checked: { fpu: (mask & CPU_CAP_FPU) !== 0, ins: (mask & CPU_CAP_INS) !== 0, cpu: (mask & CPU_CAP_CPU) !== 0 },
    failed: { fpu: (r & CPU_CAP_FPU) !== 0, ins: (r & CPU_CAP_INS) !== 0, cpu: (r & CPU_CAP_CPU) !== 0 },
    vendorDiffers: u32(28) !== 0,
    fpu: {
      missing: fpuBits,
      xfeaturesMissing: v.getBigUint64(RES_OFF + 32, true),
      xsaveSize: xsaveDiff & 1 ? { image: u32(12), host: u32(16) } : null,
      xsaveSizeMax: xsaveDiff & 2 ? { image: u32(20), host: u32(24) } : null,
    },
    ins: { missing: bitsOf(word(48)) },
    cpu: { imageOnly: bitsOf(word(124)), hostOnly: bitsOf(word(200)) },
    messages: [],
  };
  const m = result.messages;
  if (result.failed.fpu) {
    if (fpuBits.length) {
      const flag = (bit: number) => ((fpuMissing & bit) !== 0 ? 1 : 0);
      m.push(
        `FPU feature required by image is not supported on host (fpu:${flag(1)} fxsr:${flag(2)} osxsave:${flag(4)} xsaves:${flag(8)})`,
      );
    }
    if (result.fpu.xfeaturesMissing) m.push(`CPU xfeatures has unsupported bits (${hex(result.fpu.xfeaturesMissing)})`);
    const s = result.fpu.xsaveSize;
    if (s) m.push(`CPU xsave size mismatch (image ${s.image}, host ${s.host})`);
    const sm = result.fpu.xsaveSizeMax;
    if (sm) m.push(`CPU xsave max size mismatch (image ${sm.image}, host ${sm.host})`);
  }
  if (result.failed.ins) m.push(`image needs ${names(result.ins.missing)}; this CPU lacks ${result.ins.missing.length > 1 ? "them" : "it"}`);
  if (result.failed.cpu) {
    const parts: string[] = [];
    if (result.cpu.imageOnly.length) parts.push(`image only: ${names(result.cpu.imageOnly)}`);
    if (result.cpu.hostOnly.length) parts.push(`host only: ${names(result.cpu.hostOnly)}`);
    m.push(`CPU capabilities do not match run time (${parts.join("; ")})`);
  }
  return result;
}

/**
 * Parses a --cpu-cap argument as criu does, starting from `initial` (criu's default
 * fpu,ins; pass the previous result when the option is given twice). `undefined` is the
 * option without a value: every check. Items fpu, cpu, ins, all, none, separated by ','
 * (optional: "fpuins" works); '^' inverts the items after it until the next ','. Any
 * result but none also gets CPU_CAP_IMAGE.
 */
export function parseCpuCaps(arg?: string, initial: number = CPU_CAP_DEFAULT): number {
  const fn = "parseCpuCaps";
  if (arg !== undefined && typeof arg !== "string") throw new TypeError(`${fn}: the argument must be a string, got ${describe(arg)}`);
  const init = checkU32(fn, "initial", initial);
  if (init > 15) throw new RangeError(`${fn}: initial ${init} has bits other than CPU_CAP_FPU|CPU|INS|IMAGE`);
  const bytes = Buffer.from(arg ?? "", "utf8");
  if (bytes.length > STR_MAX) throw new RangeError(`${fn}: the argument is ${bytes.length} bytes; at most ${STR_MAX}`);
  const c = core();
  c.bytes.set(bytes, STR_OFF);
  const r = c.x.tc_cpucap_parse(STR_OFF, bytes.length, arg === undefined ? 0 : 1, init);
  if (r === TC_ERR.SYNTAX) {
    const at = bytes.subarray(0, c.x.tc_err_index() >>> 0).toString("utf8").length;
    const s = arg ?? "";
    throw new RangeError(
      `${fn}: unknown --cpu-cap item "${s.slice(at)}" at offset ${at} of "${s}" (expected fpu, cpu, ins, all, none, '^' or ',')`,
    );
  }
  if (r < 0) throw internalError("tc_cpucap_parse", r);
  return r;
}

/** The checks `criu cpuinfo check` runs: as given, or all of them when none is given. */
export function cpuinfoCheckCaps(caps: number): number {
  return caps === CPU_CAP_NONE ? CPU_CAP_ALL : caps;
}

/** "fpu,ins,image", "none", …: a mask in --cpu-cap words, for logs. */
export function formatCpuCaps(caps: number): string {
  const items: string[] = [];
  if (caps & CPU_CAP_FPU) items.push("fpu");
  if (caps & CPU_CAP_CPU) items.push("cpu");
  if (caps & CPU_CAP_INS) items.push("ins");
  if (caps & CPU_CAP_IMAGE) items.push("image");
  return items.length ? items.join(",") : "none";
}

