// 64-bit values between JavaScript numbers (addresses and lengths, all below 2^53) and the
// bridge's BigUint64Arrays, through their 32-bit halves (little-endian, as every platform
// tscriu runs on): a BigInt per value costs more than the syscalls the values describe.

/** The 32-bit halves of `a`'s values, sharing its memory. */
export function u64Halves(a: BigUint64Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length * 2);
}

/** Value `i` of the array whose halves `h` are. */
export function u64At(h: Uint32Array, i: number): number {
  return h[2 * i + 1]! * 0x1_0000_0000 + h[2 * i]!;
}

/** `values` as a BigUint64Array. */
export function toU64Array(values: readonly number[]): BigUint64Array {
  const a = new BigUint64Array(values.length);
  const h = u64Halves(a);
  values.forEach((v, i) => {
    h[2 * i] = v % 0x1_0000_0000;
    h[2 * i + 1] = Math.floor(v / 0x1_0000_0000);
  });
  return a;
}
