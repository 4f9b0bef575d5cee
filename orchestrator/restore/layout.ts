// Address-space bookkeeping: the stub's own mappings (from /proc/PID/maps) and the search
// for a gap that is free in both the stub's and the image's layout, for the trampoline.

import { readFileSync } from "node:fs";

export interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  name: string;
}

export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) out.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perms: m[3]!, name: m[4]! });
  }
  return out;
}

export function readMaps(pid: number | "self"): Mapping[] {
  return parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8"));
}

/** The lowest address user mappings may use (vm.mmap_min_addr) and the top of user space. */
const MIN_ADDR = 0x10000n;
const TOP = 0x7ffffffff000n;
/** Keep this much room around the trampoline: not right below a stack's guard gap. */
const MARGIN = 0x10000000n;

/** Preferred places: far from where binaries, heaps, libraries and stacks usually sit. */
const PREFERRED = [0x2b0000000000n, 0x1b0000000000n, 0x3b0000000000n, 0x0b0000000000n, 0x100000000n];

/**
 * A page-aligned address for `size` bytes that overlaps none of `busy` (with a margin),
 * preferring the usual empty parts of the address space, else the first gap from the top.
 */
export function findGap(busy: readonly { start: bigint; end: bigint }[], size: number): bigint {
  const len = BigInt(size);
  const sorted = [...busy].filter((r) => r.start < TOP).sort((a, b) => (a.start < b.start ? -1 : 1));
  const free = (at: bigint): boolean => sorted.every((r) => at + len + MARGIN <= r.start || at >= r.end + MARGIN);
  for (const at of PREFERRED) if (free(at)) return at;
  // Walk the gaps from the top down.
  let ceiling = TOP;
  for (let i = sorted.length - 1; i >= -1; i--) {
    const floor = i >= 0 ? sorted[i]!.end : MIN_ADDR;
    if (ceiling > floor + len + 2n * MARGIN) return (ceiling - MARGIN - len) & ~0xfffn;
    if (ceiling > floor + len) return floor;
    if (i >= 0) ceiling = sorted[i]!.start < ceiling ? sorted[i]!.start : ceiling;
  }
  throw new Error(`no free ${size}-byte gap in the address space`);
}
