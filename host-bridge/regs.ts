// The named view of x86_64 `struct user_regs_struct`, the layout getRegs/setRegs move as
// bytes (PTRACE_GETREGSET NT_PRSTATUS). The bytes stay the source of truth: the image
// writer and restore use them verbatim, this view is for reading and patching fields.

/** Field order of the kernel's struct; each field is a little-endian u64. */
export const REG_NAMES = [
  "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
  "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp",
  "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
] as const;

export type RegName = (typeof REG_NAMES)[number];
export type UserRegs = Record<RegName, bigint>;

/** sizeof(struct user_regs_struct) on x86_64. */
export const USER_REGS_SIZE = REG_NAMES.length * 8;

/** Byte offset of a field inside the struct. */
export function regOffset(name: RegName): number {
  return REG_NAMES.indexOf(name) * 8;
}

/** Decodes the 216 bytes getRegs returns; fields are unsigned (orig_rax -1 is 2^64-1). */
export function decodeRegs(bytes: Uint8Array): UserRegs {
  if (bytes.byteLength !== USER_REGS_SIZE) {
    throw new RangeError(`decodeRegs: expected ${USER_REGS_SIZE} bytes (x86_64 user_regs_struct), got ${bytes.byteLength}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const regs = {} as UserRegs;
  REG_NAMES.forEach((name, i) => {
    regs[name] = view.getBigUint64(i * 8, true);
  });
  return regs;
}

/** Encodes a register set for setRegs; negative values are stored in two's complement. */
export function encodeRegs(regs: UserRegs): Buffer {
  const out = Buffer.alloc(USER_REGS_SIZE);
  REG_NAMES.forEach((name, i) => {
    out.writeBigUInt64LE(BigInt.asUintN(64, regs[name]), i * 8);
  });
  return out;
}

/** A register read as a signed value: syscall results and orig_rax. */
export function signedReg(value: bigint): bigint {
  return BigInt.asIntN(64, value);
}
