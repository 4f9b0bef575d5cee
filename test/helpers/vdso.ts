// The dumped vDSO of an images dir, located in its pages file, so that tests can make it
// look like another kernel's: the restore must then build a proxy (or refuse) however
// this machine's own vDSO is laid out.
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { readImage } from "../../images/io.js";
import { VMA } from "../../images/vma-status.js";
import { PageResolver } from "../../orchestrator/restore/pagesegs.js";
import { join } from "node:path";

export interface DumpedVdso {
  start: bigint;
  bytes: Buffer;
  /** writes `bytes` back where they came from */
  save(): void;
}

export async function dumpedVdso(dir: string, pid: number): Promise<DumpedVdso> {
  const mm = (await readImage(join(dir, `mm-${pid}.img`))).entries[0]!;
  const v = (mm["vmas"] as { start: bigint; end: bigint; status: number }[]).find((x) => x.status & VMA.VDSO)!;
  const { segs } = await new PageResolver(dir, `pagemap-${pid}.img`, pid).resolve();
  const seg = segs.find((s) => s.vaddr <= v.start && v.end <= s.vaddr + BigInt(s.len));
  if (!seg) throw new Error(`the [vdso] at 0x${v.start.toString(16)} is not dumped whole`);
  const off = seg.off + Number(v.start - seg.vaddr);
  const bytes = Buffer.alloc(Number(v.end - v.start));
  const fd = openSync(seg.file, "r+");
  try {
    readSync(fd, bytes, 0, bytes.length, off);
  } finally {
    closeSync(fd);
  }
  return {
    start: v.start,
    bytes,
    save: () => {
      const w = openSync(seg.file, "r+");
      try {
        writeSync(w, bytes, 0, bytes.length, off);
      } finally {
        closeSync(w);
      }
    },
  };
}

interface Section {
  name: string;
  off: number;
  size: number;
}

function sections(img: Buffer): Section[] {
  const shoff = Number(img.readBigUInt64LE(0x28));
  const n = img.readUInt16LE(0x3c);
  const shstr = img.readUInt16LE(0x3e);
  const at = (i: number): { name: number; off: number; size: number } => {
    const o = shoff + i * 64;
    return { name: img.readUInt32LE(o), off: Number(img.readBigUInt64LE(o + 0x18)), size: Number(img.readBigUInt64LE(o + 0x20)) };
  };
  const strs = at(shstr).off;
  return Array.from({ length: n }, (_, i) => {
    const s = at(i);
    return { name: img.toString("latin1", strs + s.name, img.indexOf(0, strs + s.name)), off: s.off, size: s.size };
  });
}

/** The dynamic symbols: [entry offset in the image, value]. */
function dynsyms(img: Buffer): { at: number; name: string; value: bigint }[] {
  const all = sections(img);
  const dynsym = all.find((s) => s.name === ".dynsym")!;
  const dynstr = all.find((s) => s.name === ".dynstr")!;
  const out = [];
  for (let o = dynsym.off + 24; o + 24 <= dynsym.off + dynsym.size; o += 24) {
    const n = dynstr.off + img.readUInt32LE(o);
    out.push({ at: o, name: img.toString("latin1", n, img.indexOf(0, n)), value: img.readBigUInt64LE(o + 8) });
  }
  return out;
}

/**
 * Makes the dumped vDSO another kernel's: every byte of its code becomes int3 (a call
 * that reaches the dumped code instead of this kernel's traps), and getcpu's entry
 * point moves to a spot of that code at least 16 bytes from every other entry (the
 * symbol tables differ, as between kernel builds). Returns the moved symbol names.
 */
export function makeForeign(img: Buffer): string[] {
  const text = sections(img).find((s) => s.name === ".text")!;
  const syms = dynsyms(img);
  img.fill(0xcc, text.off, text.off + text.size);
  const moved = syms.filter((s) => /getcpu$/.test(s.name));
  if (!moved.length) throw new Error("this vDSO has no getcpu");
  const others = syms.filter((s) => !moved.includes(s) && s.value > 0n).map((s) => Number(s.value));
  for (let to = text.off + text.size - 16; to >= text.off; to -= 16) {
    if (others.every((o) => Math.abs(o - to) >= 16) && Number(moved[0]!.value) !== to) {
      for (const s of moved) img.writeBigUInt64LE(BigInt(to), s.at + 8);
      return moved.map((s) => s.name);
    }
  }
  throw new Error("no free spot in the vDSO's code");
}
