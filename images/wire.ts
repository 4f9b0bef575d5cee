// The protobuf wire layer: varints, zigzag, fixed-width numbers and
// length-delimited fields, read from and written to plain byte arrays. It knows
// nothing about schemas. Every read checks bounds first and throws WireError with
// the offset; nothing here allocates more than the input already holds.

import { WireError } from "./errors.js";

export const WT_VARINT = 0;
export const WT_I64 = 1;
export const WT_LEN = 2;
export const WT_SGROUP = 3;
export const WT_EGROUP = 4;
export const WT_I32 = 5;

const TWO32 = 0x1_0000_0000;
const U64_MASK = (1n << 64n) - 1n;

export class WireReader {
  pos: number;
  /** made on first use: most messages have no fixed-width fields, and a DataView costs */
  private dv: DataView | undefined;

  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  private get view(): DataView {
    return (this.dv ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength));
  }

  /** Halves of the last varint read by varint64() (kept here to avoid allocating a pair). */
  private lo = 0;
  private hi = 0;

  /** Reads a varint of up to 64 bits into this.lo / this.hi (unsigned 32-bit halves). */
  private varint64(): void {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    let p = this.pos;
    const end = this.end;
    for (let i = 0; i < 10; i++) {
      if (p >= end) throw new WireError("truncated varint", this.pos);
      const b = buf[p++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if ((b & 0x80) === 0) {
        this.pos = p;
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    throw new WireError("varint longer than 10 bytes", this.pos);
  }

  /** A varint that must fit 32 bits unsigned (tags, lengths, uint32, enums). */
  uint32(): number {
    const p = this.pos;
    // Fast path: one byte.
    if (p < this.end) {
      const b = this.buf[p]!;
      if (b < 0x80) {
        this.pos = p + 1;
        return b;
      }
    }
    this.varint64();
    return this.lo;
  }

  /** int32: negative values are sign-extended to 10 bytes on the wire. */
  int32(): number {
    // (one byte: 0..127, read as uint32 reads it)
    return this.uint32() | 0;
  }

  sint32(): number {
    const v = this.uint32();
    return (v >>> 1) ^ -(v & 1);
  }

  uint64(): bigint {
    const p = this.pos;
    // Fast path: one byte (most 64-bit fields are small: timeouts of 0, counts).
    if (p < this.end) {
      const b = this.buf[p]!;
      if (b < 0x80) {
        this.pos = p + 1;
        return b === 0 ? 0n : BigInt(b);
      }
    }
    this.varint64();
    // One BigInt allocation when the value fits a double exactly (addresses, sizes).
    return this.hi < 0x200000 ? BigInt(this.hi * TWO32 + this.lo) : (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** uint64 as a number when it fits a double exactly, else bigint. */
  uint64Loose(): number | bigint {
    this.varint64();
    return this.hi < 0x200000 ? this.hi * TWO32 + this.lo : (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  int64Loose(): number | bigint {
    this.varint64();
    if (this.hi < 0x200000) return this.hi * TWO32 + this.lo;
    const v = BigInt.asIntN(64, (BigInt(this.hi) << 32n) | BigInt(this.lo));
    return v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  int64(): bigint {
    this.varint64();
    if (this.hi < 0x200000) return BigInt(this.hi * TWO32 + this.lo);
    return BigInt.asIntN(64, (BigInt(this.hi) << 32n) | BigInt(this.lo));
  }

  sint64(): bigint {
    const v = this.uint64();
    return (v >> 1n) ^ -(v & 1n);
  }

  bool(): boolean {
    const p = this.pos;
    // Fast path: one byte (0 or 1, as every encoder writes a bool).
    if (p < this.end) {
      const b = this.buf[p]!;
      if (b < 0x80) {
        this.pos = p + 1;
        return b !== 0;
      }
    }
    this.varint64();
    return this.lo !== 0 || this.hi !== 0;
  }

  private need(n: number): number {
    const p = this.pos;
    if (this.end - p < n) throw new WireError(`truncated: need ${n} bytes, ${this.end - p} left`, p);
    this.pos = p + n;
    return p;
  }

  fixed32(): number {
    return this.view.getUint32(this.need(4), true);
  }

  sfixed32(): number {
    return this.view.getInt32(this.need(4), true);
  }

  fixed64(): bigint {
    return this.view.getBigUint64(this.need(8), true);
  }

  sfixed64(): bigint {
    return this.view.getBigInt64(this.need(8), true);
  }

  float(): number {
    return this.view.getFloat32(this.need(4), true);
  }

  double(): number {
    return this.view.getFloat64(this.need(8), true);
  }

  /** Length of a length-delimited field, checked against what is left. */
  length(): number {
    const at = this.pos;
    this.varint64();
    const lo = this.lo;
    const hi = this.hi;
    if (hi !== 0 || lo > this.end - this.pos) {
      const n = hi === 0 ? lo : hi * TWO32 + lo;
      throw new WireError(`length ${n} exceeds the ${this.end - this.pos} bytes left`, at);
    }
    return lo;
  }

  bytes(): Uint8Array {
    const n = this.length();
    const p = this.pos;
    this.pos = p + n;
    // A copy, and a plain Uint8Array even when the input is a Buffer (whose slice() is a view).
    return new Uint8Array(this.buf.subarray(p, p + n));
  }

  string(): string {
    const n = this.length();
    const p = this.pos;
    this.pos = p + n;
    return decodeUtf8(this.buf, p, p + n);
  }

  /** Skips one field of the given wire type (unknown fields). */
  skip(wt: number, fieldNo: number): void {
    switch (wt) {
      case WT_VARINT:
        this.varint64();
        return;
      case WT_I64:
        this.need(8);
        return;
      case WT_LEN:
        this.pos += this.length();
        return;
      case WT_I32:
        this.need(4);
        return;
      case WT_SGROUP: {
        // Groups are obsolete; skip to the matching end tag, bounded by the input.
        for (;;) {
          const at = this.pos;
          if (at >= this.end) throw new WireError(`unterminated group ${fieldNo}`, at);
          const tag = this.uint32();
          const t = tag & 7;
          if (t === WT_EGROUP) {
            if (tag >>> 3 !== fieldNo) throw new WireError("mismatched group end", at);
            return;
          }
          this.skip(t, tag >>> 3);
        }
      }
      default:
        throw new WireError(`invalid wire type ${wt} for field ${fieldNo}`, this.pos);
    }
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

function decodeUtf8(buf: Uint8Array, start: number, end: number): string {
  // Short ASCII strings (comm, paths) are the common case; TextDecoder has a fixed cost.
  if (end - start < 64) {
    let s = "";
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (c >= 0x80) return utf8.decode(buf.subarray(start, end));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return utf8.decode(buf.subarray(start, end));
}

/** A growable output buffer. */
export class WireWriter {
  buf: Uint8Array;
  pos = 0;
  private view: DataView;

  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = new Uint8Array(size);
    nb.set(this.buf.subarray(0, this.pos));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  tag(no: number, wt: number): void {
    this.uint32((no << 3) | wt);
  }

  uint32(v: number): void {
    this.ensure(5);
    v >>>= 0;
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }

  /** Writes an unsigned 64-bit value given as two 32-bit halves. */
  private varint64(lo: number, hi: number): void {
    this.ensure(10);
    lo >>>= 0;
    hi >>>= 0;
    while (hi !== 0 || lo >= 0x80) {
      this.buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.buf[this.pos++] = lo;
  }

  int32(v: number): void {
    if (v >= 0) this.uint32(v);
    else this.varint64(v, 0xffffffff);
  }

  sint32(v: number): void {
    this.uint32(((v << 1) ^ (v >> 31)) >>> 0);
  }

  uint64(v: bigint): void {
    const u = v & U64_MASK;
    this.varint64(Number(u & 0xffffffffn), Number(u >> 32n));
  }

  /** A uint64 varint of a non-negative safe integer, without a BigInt. */
  uint53(v: number): void {
    this.varint64(v % 0x1_0000_0000, Math.floor(v / 0x1_0000_0000));
  }

  sint64(v: bigint): void {
    this.uint64((v << 1n) ^ (v >> 63n));
  }

  bool(v: boolean): void {
    this.ensure(1);
    this.buf[this.pos++] = v ? 1 : 0;
  }

  fixed32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
  }

  sfixed32(v: number): void {
    this.ensure(4);
    this.view.setInt32(this.pos, v | 0, true);
    this.pos += 4;
  }

  fixed64(v: bigint): void {
    this.ensure(8);
    this.view.setBigUint64(this.pos, v & U64_MASK, true);
    this.pos += 8;
  }

  sfixed64(v: bigint): void {
    this.ensure(8);
    this.view.setBigInt64(this.pos, BigInt.asIntN(64, v), true);
    this.pos += 8;
  }

  float(v: number): void {
    this.ensure(4);
    this.view.setFloat32(this.pos, v, true);
    this.pos += 4;
  }

  double(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  /** Four bytes kept for a size written later (setUint32At); returns where they are. */
  reserve32(): number {
    this.ensure(4);
    this.pos += 4;
    return this.pos - 4;
  }

  /** A little-endian uint32 written at `at`, before pos. */
  setUint32At(at: number, v: number): void {
    this.view.setUint32(at, v >>> 0, true);
  }

  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  bytes(b: Uint8Array): void {
    this.uint32(b.length);
    this.raw(b);
  }

  /**
   * Starts a length-delimited value written in place (a nested message, a packed list):
   * one byte is kept for its length, which endLen fills in. Returns where it is.
   */
  beginLen(): number {
    this.ensure(1);
    return this.pos++;
  }

  /** Ends the value begun at `at`: its length written there, the value moved on when the length takes more than a byte. */
  endLen(at: number): void {
    const len = this.pos - at - 1;
    if (len < 0x80) {
      this.buf[at] = len;
      return;
    }
    let n = 1;
    for (let v = len; v >= 0x80; v >>>= 7) n++;
    this.ensure(n - 1);
    this.buf.copyWithin(at + n, at + 1, this.pos);
    this.pos += n - 1;
    let v = len;
    let i = at;
    while (v >= 0x80) {
      this.buf[i++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[i] = v;
  }
}

const utf8e = new TextEncoder();
export function encodeUtf8(s: string): Uint8Array {
  return utf8e.encode(s);
}
