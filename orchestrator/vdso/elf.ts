// The symbols of a vDSO image, read the way the dynamic loader reads them: the ELF header,
// its program headers, PT_DYNAMIC, then DT_SYMTAB/DT_STRTAB with DT_HASH for the symbol
// count. Section headers are not needed (they sit at the end of the image, and a vDSO
// dumped page by page may lack that page). Every read is bounds-checked against the
// bytes that are really there, so a hostile or partial image gives `undefined`, never
// a throw or a read past the buffer.

export interface VdsoSymbol {
  name: string;
  /** offset from the vDSO's start */
  offset: bigint;
  /** STT_FUNC: code that a proxy redirects */
  func: boolean;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0n;
const DT_HASH = 4n;
const DT_STRTAB = 5n;
const DT_SYMTAB = 6n;
const DT_SYMENT = 11n;
const STT_FUNC = 2;
const SYM_SIZE = 24;
/** More symbols than any vDSO has; a larger DT_HASH count is a damaged image. */
const MAX_SYMBOLS = 4096;

/**
 * The defined dynamic symbols of the vDSO image `img`, by name, or undefined when it is
 * not a readable 64-bit ELF vDSO. `have(off, len)` says whether those bytes were dumped
 * (default: all of `img`).
 */
export function vdsoSymbols(img: Uint8Array, have: (off: number, len: number) => boolean = () => true): Map<string, VdsoSymbol> | undefined {
  const buf = Buffer.from(img.buffer, img.byteOffset, img.byteLength);
  const ok = (off: number, len: number): boolean => Number.isSafeInteger(off) && off >= 0 && off + len <= buf.length && have(off, len);
  const u64 = (off: number): bigint | undefined => (ok(off, 8) ? buf.readBigUInt64LE(off) : undefined);
  if (!ok(0, 64) || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return undefined;
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  if (phentsize < 56 || !ok(phoff, phnum * phentsize)) return undefined;
  // The vDSO is linked at some base (0 today); file offset = vaddr - (p_vaddr - p_offset) of PT_LOAD.
  let bias: bigint | undefined;
  let dynOff: number | undefined;
  let dynSize = 0;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    const type = buf.readUInt32LE(p);
    if (type === PT_LOAD && bias === undefined) bias = buf.readBigUInt64LE(p + 0x10) - buf.readBigUInt64LE(p + 0x08);
    if (type === PT_DYNAMIC) {
      dynOff = Number(buf.readBigUInt64LE(p + 0x08));
      dynSize = Number(buf.readBigUInt64LE(p + 0x20));
    }
  }
  if (bias === undefined || dynOff === undefined) return undefined;
  let symtab: bigint | undefined;
  let strtab: bigint | undefined;
  let hash: bigint | undefined;
  let syment = BigInt(SYM_SIZE);
  for (let d = dynOff; d + 16 <= dynOff + dynSize; d += 16) {
    const tag = u64(d);
    const val = u64(d + 8);
    if (tag === undefined || val === undefined) return undefined;
    if (tag === DT_NULL) break;
    if (tag === DT_SYMTAB) symtab = val;
    else if (tag === DT_STRTAB) strtab = val;
    else if (tag === DT_HASH) hash = val;
    else if (tag === DT_SYMENT) syment = val;
  }
  if (symtab === undefined || strtab === undefined || hash === undefined || syment < BigInt(SYM_SIZE)) return undefined;
  const at = (vaddr: bigint): number => Number(vaddr - bias);
  const nchain = ok(at(hash) + 4, 4) ? buf.readUInt32LE(at(hash) + 4) : undefined;
  if (nchain === undefined || nchain > MAX_SYMBOLS) return undefined;
  const step = Number(syment);
  const symAt = at(symtab);
  if (!ok(symAt, nchain * step)) return undefined;
  const strAt = at(strtab);
  const out = new Map<string, VdsoSymbol>();
  for (let i = 1; i < nchain; i++) {
    const s = symAt + i * step;
    const nameOff = buf.readUInt32LE(s);
    const info = buf[s + 4]!;
    const shndx = buf.readUInt16LE(s + 6);
    if (nameOff === 0 || shndx === 0) continue;
    const from = strAt + nameOff;
    if (!ok(from, 1)) return undefined;
    const end = buf.indexOf(0, from);
    if (end < 0 || !ok(from, end - from + 1)) return undefined;
    const value = buf.readBigUInt64LE(s + 8) - bias;
    out.set(buf.toString("latin1", from, end), { name: buf.toString("latin1", from, end), offset: value, func: (info & 0xf) === STT_FUNC });
  }
  return out;
}
