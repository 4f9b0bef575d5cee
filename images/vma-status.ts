// vma_entry.status bits: what kind of mapping a VMA is (criu's VMA_AREA_* values, a
// fact of the image format; pretty.ts has the same bits by name for crit's --pretty).
export const VMA = {
  REGULAR: 1 << 0,
  STACK: 1 << 1,
  VSYSCALL: 1 << 2,
  VDSO: 1 << 3,
  HEAP: 1 << 5,
  FILE_PRIVATE: 1 << 6,
  FILE_SHARED: 1 << 7,
  ANON_SHARED: 1 << 8,
  ANON_PRIVATE: 1 << 9,
  SYSVIPC: 1 << 10,
  SOCKET: 1 << 11,
  VVAR: 1 << 12,
  AIORING: 1 << 13,
  MEMFD: 1 << 14,
  SHSTK: 1 << 15,
  UPROBES: 1 << 17,
  UNSUPP: 2 ** 31,
} as const;
