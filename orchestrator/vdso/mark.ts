// criu's vDSO mark. A task restored through a vDSO proxy has two vDSOs: the dumped one at
// its old address (now the proxy: each entry point jumps to this kernel's), and the
// kernel's own, parked elsewhere. The restore writes a mark over the start of the kernel's
// one (its ELF header, which nothing reads any more: the task's libc found its symbols in
// the old one) naming where the old vDSO and vvar are. The next dump, by criu or tscriu,
// finds the mark, dumps the old pair as the task's [vdso] and [vvar], and leaves the
// kernel's pair out: a restore on any kernel starts again from the task's own vDSO.
//
// Layout (criu's struct vdso_mark, five native words): signature, orig_vdso_addr,
// version, orig_vvar_addr, rt_vvar_addr. Versions 1 and 2 lack the last words.

export const VDSO_MARK_SIZE = 40;
const SIGNATURE_V1 = 0x6f73647675697263n; // "criuvdso"
const SIGNATURE_V2 = 0x4f53447675697263n; // "criuvDSO"
const SIGNATURE_V3 = 0x4f53447655495243n; // "CRIUvDSO"
const VERSION = 3n;
/** criu's VDSO_BAD_ADDR / VVAR_BAD_ADDR: no such area */
export const NO_ADDR = 0xffffffffffffffffn;

export interface VdsoMark {
  origVdso: bigint;
  /** NO_ADDR when the task had no vvar */
  origVvar: bigint;
  /** the kernel's vvar next to the marked vDSO; NO_ADDR in old marks */
  rtVvar: bigint;
}

export function encodeMark(m: VdsoMark): Buffer {
  const b = Buffer.alloc(VDSO_MARK_SIZE);
  b.writeBigUInt64LE(SIGNATURE_V3, 0);
  b.writeBigUInt64LE(m.origVdso, 8);
  b.writeBigUInt64LE(VERSION, 16);
  b.writeBigUInt64LE(m.origVvar, 24);
  b.writeBigUInt64LE(m.rtVvar, 32);
  return b;
}

/** The mark at the start of `b`, undefined when there is none; throws on a version it does not know. */
export function decodeMark(b: Uint8Array): VdsoMark | undefined {
  if (b.length < VDSO_MARK_SIZE) return undefined;
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const sig = v.readBigUInt64LE(0);
  const origVdso = v.readBigUInt64LE(8);
  if (sig === SIGNATURE_V1) return { origVdso, origVvar: NO_ADDR, rtVvar: NO_ADDR };
  if (sig === SIGNATURE_V2) return { origVdso, origVvar: v.readBigUInt64LE(24), rtVvar: NO_ADDR };
  if (sig !== SIGNATURE_V3) return undefined;
  const version = v.readBigUInt64LE(16);
  if (version !== VERSION) throw new Error(`vDSO mark of version ${version} (criu writes ${VERSION})`);
  return { origVdso, origVvar: v.readBigUInt64LE(24), rtVvar: v.readBigUInt64LE(32) };
}
