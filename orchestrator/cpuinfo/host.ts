// What this CPU offers, collected with CPUID the way criu (compel) does, into
// criu's cpuinfo_x86_entry: 19 capability words in criu's own layout (not the
// kernel's: criu froze word 11 as CPUID 7.0 ECX), family/model/stepping, the
// model name, and the xsave feature mask and sizes.

import { bridge } from "../../host-bridge/load.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { cpuinfo_x86_entry } from "../../images/schema/index.js";

export type CpuinfoX86 = Entry<typeof cpuinfo_x86_entry>;

/** criu's capability word numbers (compel's enum cpuid_leafs; an ABI of the image). */
export const WORD = {
  CPUID_1_EDX: 0,
  CPUID_8000_0001_EDX: 1,
  CPUID_8086_0001_EDX: 2,
  CPUID_LNX_1: 3,
  CPUID_1_ECX: 4,
  CPUID_C000_0001_EDX: 5,
  CPUID_8000_0001_ECX: 6,
  CPUID_LNX_2: 7,
  CPUID_LNX_3: 8,
  CPUID_7_0_EBX: 9,
  CPUID_D_1_EAX: 10,
  CPUID_7_0_ECX: 11,
  CPUID_F_1_EDX: 12,
  CPUID_8000_0008_EBX: 13,
  CPUID_6_EAX: 14,
  CPUID_8000_000A_EDX: 15,
  CPUID_F_0_EDX: 16,
  CPUID_8000_0007_EBX: 17,
  CPUID_7_0_EDX: 18,
} as const;

export const NCAPINTS = 19;
/** criu writes capability_ver 2: 19 words (version 1 had 12). */
export const CAPABILITY_VER = 2;

const bit = (word: number, b: number): number => word * 32 + b;
const FEATURE = {
  FPU: bit(0, 0),
  XMM: bit(0, 25),
  AVX: bit(4, 28),
  XSAVE: bit(4, 26),
  MPX: bit(9, 14),
  AVX512F: bit(9, 16),
  INTEL_PT: bit(9, 25),
  PKU: bit(11, 3),
  HDC: bit(14, 13),
  CQM_LLC: bit(16, 1),
  CPUID: bit(3, 25),
  NOPL: bit(3, 20),
  REP_GOOD: bit(3, 16),
  ERMS: bit(9, 9),
};

/** xsave component i is usable only if this CPUID feature is there (as the kernel and criu say). */
const XSAVE_COMPONENT_FEATURE = [
  FEATURE.FPU,
  FEATURE.XMM,
  FEATURE.AVX,
  FEATURE.MPX,
  FEATURE.MPX,
  FEATURE.AVX512F,
  FEATURE.AVX512F,
  FEATURE.AVX512F,
  FEATURE.INTEL_PT,
  FEATURE.PKU,
  FEATURE.HDC,
];

/** FP, SSE, YMM, BNDREGS, BNDCSR, OPMASK, ZMM_Hi256, Hi16_ZMM, PKRU. */
const XFEATURE_MASK_USER = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x200;
/**
 * criu's supervisor mask is `XFEATURE_MASK_PT | XFEATURE_HDC`: the second is the
 * feature *number* 10, not its mask, so criu clears bits 1 (SSE) and 3 as well.
 * Its images therefore never have SSE in xfeatures_mask (this machine: 0x7 → 0x5);
 * we compute the same so images and checks agree with criu's.
 */
const CRIU_SUPERVISOR_MASK = (1 << 8) | 10;

export interface CpuidSource {
  cpuid(leaf: number, subleaf: number): [number, number, number, number];
}

function ascii(words: readonly number[]): string {
  let s = "";
  for (const w of words) for (let k = 0; k < 4; k++) s += String.fromCharCode((w >>> (8 * k)) & 0xff);
  return s;
}

/** Collects this CPU's cpuinfo entry (or that of `src`, for tests). Throws on a vendor criu does not support. */
export function hostCpuinfo(src: CpuidSource = bridge()): CpuinfoX86 {
  const cap = new Array<number>(NCAPINTS).fill(0);
  const has = (f: number): boolean => ((cap[f >> 5]! >>> (f & 31)) & 1) === 1;
  const set = (f: number): void => {
    cap[f >> 5] = (cap[f >> 5]! | (1 << (f & 31))) >>> 0;
  };
  const clear = (f: number): void => {
    cap[f >> 5] = (cap[f >> 5]! & ~(1 << (f & 31))) >>> 0;
  };

  const [maxLeaf, b0, c0, d0] = src.cpuid(0, 0);
  const vendorText = ascii([b0, d0, c0]);
  let vendor: "INTEL" | "AMD";
  if (vendorText === "GenuineIntel") vendor = "INTEL";
  else if (vendorText === "AuthenticAMD") vendor = "AMD";
  else throw new Error(`unsupported CPU vendor ${JSON.stringify(vendorText)} (criu knows Intel and AMD)`);

  let family = 4;
  let model = 0;
  let stepping = 0;
  if (maxLeaf >= 1) {
    const [a, , c, d] = src.cpuid(1, 0);
    family = (a >>> 8) & 0xf;
    model = (a >>> 4) & 0xf;
    stepping = a & 0xf;
    if (family === 0xf) family += (a >>> 20) & 0xff;
    if (family >= 6) model += ((a >>> 16) & 0xf) << 4;
    cap[WORD.CPUID_1_EDX] = d >>> 0;
    cap[WORD.CPUID_1_ECX] = c >>> 0;
  }
  if (maxLeaf >= 6) cap[WORD.CPUID_6_EAX] = src.cpuid(6, 0)[0] >>> 0;
  if (maxLeaf >= 7) {
    const [, b, c, d] = src.cpuid(7, 0);
    cap[WORD.CPUID_7_0_EBX] = b >>> 0;
    cap[WORD.CPUID_7_0_ECX] = c >>> 0;
    cap[WORD.CPUID_7_0_EDX] = d >>> 0;
  }
  if (maxLeaf >= 0xd) cap[WORD.CPUID_D_1_EAX] = src.cpuid(0xd, 1)[0] >>> 0;
  if (maxLeaf >= 0xf) {
    cap[WORD.CPUID_F_0_EDX] = src.cpuid(0xf, 0)[3] >>> 0;
    if (has(FEATURE.CQM_LLC)) cap[WORD.CPUID_F_1_EDX] = src.cpuid(0xf, 1)[3] >>> 0;
  }
  const extMax = src.cpuid(0x80000000, 0)[0] >>> 0;
  let modelId = "";
  if (((extMax & 0xffff0000) >>> 0) === 0x80000000) {
    if (extMax >= 0x80000001) {
      const [, , c, d] = src.cpuid(0x80000001, 0);
      cap[WORD.CPUID_8000_0001_ECX] = c >>> 0;
      cap[WORD.CPUID_8000_0001_EDX] = d >>> 0;
    }
    if (extMax >= 0x80000004) {
      const raw = ascii([...src.cpuid(0x80000002, 0), ...src.cpuid(0x80000003, 0), ...src.cpuid(0x80000004, 0)]);
      // Intel right-justifies the name; criu strips the leading blanks and ends at the first NUL.
      modelId = raw.replace(/^ +/, "").split("\0")[0]!;
    }
    if (extMax >= 0x80000007) cap[WORD.CPUID_8000_0007_EBX] = src.cpuid(0x80000007, 0)[1] >>> 0;
    if (extMax >= 0x8000000a) cap[WORD.CPUID_8000_000A_EDX] = src.cpuid(0x8000000a, 0)[3] >>> 0;
    if (extMax >= 0x80000008) cap[WORD.CPUID_8000_0008_EBX] = src.cpuid(0x80000008, 0)[1] >>> 0;
  }
  set(FEATURE.CPUID); // always there on x86-64
  set(FEATURE.NOPL);
  if (maxLeaf < 0xd) clear(FEATURE.XSAVE);
  if (vendor === "INTEL") {
    if (family === 15) {
      clear(FEATURE.REP_GOOD);
      clear(FEATURE.ERMS);
    } else if (family === 6) set(FEATURE.REP_GOOD);
  } else {
    clear(bit(0, 31)); // bit 31 of leaf 1 EDX is AMD's nonstandard 3DNow id
    if (family >= 0x10) set(FEATURE.REP_GOOD);
    if (family === 0xf) {
      const level = src.cpuid(1, 0)[0] >>> 0;
      if ((level >= 0x0f48 && level < 0x0f50) || level >= 0x0f58) set(FEATURE.REP_GOOD);
    }
  }

  let xfeatures = 0n;
  let xsaveSize = 0;
  let xsaveSizeMax = 0;
  if (has(FEATURE.FPU) && has(FEATURE.XSAVE)) {
    const [a, b, c, d] = src.cpuid(0xd, 0);
    let mask = (BigInt(d >>> 0) << 32n) | BigInt(a >>> 0);
    XSAVE_COMPONENT_FEATURE.forEach((f, i) => {
      if (!has(f)) mask &= ~(1n << BigInt(i));
    });
    mask &= BigInt(XFEATURE_MASK_USER);
    mask &= ~BigInt(CRIU_SUPERVISOR_MASK);
    xfeatures = mask;
    xsaveSize = b >>> 0;
    xsaveSizeMax = c >>> 0;
  }

  return {
    vendor_id: vendor,
    cpu_family: family,
    model,
    stepping,
    capability_ver: CAPABILITY_VER,
    capability: cap,
    model_id: modelId,
    xfeatures_mask: xfeatures,
    xsave_size: xsaveSize,
    xsave_size_max: xsaveSizeMax,
  };
}
