// The xsave area from criu's user_x86_fpregs_entry: the legacy 512-byte fxsave region,
// the xsave header (xstate_bv; standard format, so xcomp_bv 0) and each extended component
// at the offset CPUID leaf 0xd gives for it on this CPU -- the layout PTRACE_SETREGSET
// NT_X86_XSTATE takes. Components the image has but this CPU does not are refused (criu's
// --cpu-cap=fpu check).

import { bridge } from "../../host-bridge/load.js";
import type { CoreEntry } from "../../images/dir.js";

type Fpregs = NonNullable<CoreEntry["thread_info"]>["fpregs"];

const XSAVE_HEADER = 512;

/** xsave component numbers and the image fields that hold them. */
const COMPONENTS: { bit: number; field: "ymmh_space" | "bndreg_state" | "bndcsr_state" | "opmask_reg" | "zmm_upper" | "hi16_zmm" | "pkru" | "xtilecfg"; word: 4 | 8 }[] = [
  { bit: 2, field: "ymmh_space", word: 4 },
  { bit: 3, field: "bndreg_state", word: 8 },
  { bit: 4, field: "bndcsr_state", word: 8 },
  { bit: 5, field: "opmask_reg", word: 8 },
  { bit: 6, field: "zmm_upper", word: 8 },
  { bit: 7, field: "hi16_zmm", word: 8 },
  { bit: 9, field: "pkru", word: 4 },
  { bit: 17, field: "xtilecfg", word: 8 },
];

const XFEATURE_NAMES: Record<number, string> = {
  0: "x87",
  1: "sse",
  2: "avx (ymm upper halves)",
  3: "mpx bounds registers",
  4: "mpx bounds config",
  5: "avx-512 opmask",
  6: "avx-512 zmm upper halves",
  7: "avx-512 zmm16-31",
  9: "pkru",
  11: "cet user",
  17: "amx tile config",
  18: "amx tile data",
};

/** "avx-512 opmask (bit 5), …" for an xfeature mask. */
export function xfeatureNames(mask: bigint): string {
  const out: string[] = [];
  for (let b = 0; b < 64; b++) if (mask & (1n << BigInt(b))) out.push(`${XFEATURE_NAMES[b] ?? "xfeature"} (bit ${b})`);
  return out.join(", ");
}

/** The features of the image's xsave area this CPU lacks (XCR0), 0n when none. */
export function missingXfeatures(fp: Fpregs): bigint {
  const bv = fp.xsave?.xstate_bv ?? 0n;
  return bv & ~bridge().xgetbv(0);
}

export function buildXstate(fp: Fpregs, size: number): Buffer {
  const b = bridge();
  const out = Buffer.alloc(Math.max(size, 512));
  out.writeUInt16LE(fp.cwd & 0xffff, 0);
  out.writeUInt16LE(fp.swd & 0xffff, 2);
  out.writeUInt16LE(fp.twd & 0xffff, 4);
  out.writeUInt16LE(fp.fop & 0xffff, 6);
  out.writeBigUInt64LE(fp.rip, 8);
  out.writeBigUInt64LE(fp.rdp, 16);
  out.writeUInt32LE(fp.mxcsr >>> 0, 24);
  out.writeUInt32LE(fp.mxcsr_mask >>> 0, 28);
  (fp.st_space ?? []).slice(0, 32).forEach((w, i) => out.writeUInt32LE(w >>> 0, 32 + i * 4));
  (fp.xmm_space ?? []).slice(0, 64).forEach((w, i) => out.writeUInt32LE(w >>> 0, 160 + i * 4));
  if (!fp.xsave || size <= 512) return out.subarray(0, size);
  const xs = fp.xsave;
  out.writeBigUInt64LE(xs.xstate_bv & b.xgetbv(0), XSAVE_HEADER);
  for (const c of COMPONENTS) {
    const words = xs[c.field] as (number | bigint)[] | undefined;
    if (!words || words.length === 0) continue;
    const [csize, coff] = b.cpuid(0xd, c.bit);
    if (!csize || coff + csize > size) continue;
    words.slice(0, csize / c.word).forEach((w, i) => {
      if (c.word === 4) out.writeUInt32LE(Number(w) >>> 0, coff + i * 4);
      else out.writeBigUInt64LE(BigInt.asUintN(64, BigInt(w)), coff + i * 8);
    });
  }
  return out.subarray(0, size);
}
