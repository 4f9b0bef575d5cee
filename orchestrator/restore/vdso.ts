// The [vvar] [vvar_vclock] [vdso] block. The kernel maps its own vDSO into the stub; the
// restore moves it onto the addresses the dumped task had, so code and data pointers into
// it (glibc's cached clock_gettime, AT_SYSINFO_EHDR) stay valid. That is only right when
// this kernel's vDSO is the one the task used: same sizes and, when the images carry the
// vDSO pages (criu's and tscriu's dumps do), the same bytes. Otherwise restore refuses
// (a vDSO proxy as criu builds one is not implemented).
//
// mremap moves one special mapping at a time and refuses overlapping source and target
// ranges (DESIGN.md), so the block goes first to a free spot, then to its place.

import { bridge } from "../../host-bridge/load.js";
import type { MmEntry } from "../../images/dir.js";
import { RestoreError } from "./errors.js";
import { findGap, readMaps, type Mapping } from "./layout.js";
import { PAGE_SIZE } from "../../images/pages.js";
import type { PageSeg } from "./pagesegs.js";
import { closeSync, openSync, readSync } from "node:fs";
import { NR, type Remote } from "./remote.js";

const VMA_VDSO = 1 << 3;
const VMA_VVAR = 1 << 12;
const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;

export interface VdsoPlan {
  /** the image's vvar region (vvar + vvar_vclock), undefined when the task had none */
  vvar: { start: bigint; end: bigint } | undefined;
  vdso: { start: bigint; end: bigint } | undefined;
}

type Vma = NonNullable<MmEntry["vmas"]>[number];

function regions(vmas: readonly Vma[], bit: number): { start: bigint; end: bigint } | undefined {
  const list = vmas.filter((v) => (v.status & bit) !== 0).sort((a, b) => (a.start < b.start ? -1 : 1));
  if (list.length === 0) return undefined;
  for (let i = 1; i < list.length; i++) {
    if (list[i]!.start !== list[i - 1]!.end) throw new Error(`the image has ${list.length} separate ${bit === VMA_VVAR ? "[vvar]" : "[vdso]"} areas`);
  }
  return { start: list[0]!.start, end: list[list.length - 1]!.end };
}

/** This kernel's block, as mapped into tscriu itself. */
function hostBlock(maps: readonly Mapping[]): { vvar: Mapping[]; vdso: Mapping | undefined } {
  return {
    vvar: maps.filter((m) => m.name === "[vvar]" || m.name === "[vvar_vclock]"),
    vdso: maps.find((m) => m.name === "[vdso]"),
  };
}

const size = (r: { start: bigint; end: bigint } | undefined): bigint => (r ? r.end - r.start : 0n);

/**
 * Checks, before anything is created, that this kernel's vDSO is the image's: sizes of
 * both regions, and its symbols against the dumped vDSO pages when there are any.
 */
export function planVdso(pid: number, vmas: readonly Vma[], segs: readonly PageSeg[]): VdsoPlan {
  const plan: VdsoPlan = { vvar: regions(vmas, VMA_VVAR), vdso: regions(vmas, VMA_VDSO) };
  const host = hostBlock(readMaps("self"));
  const hostVvar = host.vvar.reduce((s, m) => s + (m.end - m.start), 0n);
  const differs = (why: string): RestoreError =>
    new RestoreError("plan", pid, `this kernel's vDSO differs from the image's (${why}); restoring with a vDSO proxy is not implemented`);
  if (plan.vdso && !host.vdso) throw differs("this kernel maps no [vdso]");
  if (plan.vdso && size(plan.vdso) !== size(host.vdso)) throw differs(`[vdso] is ${size(host.vdso)} bytes here, ${size(plan.vdso)} in the image`);
  if (plan.vdso && !plan.vvar) throw differs("the image has a [vdso] without [vvar]");
  if (plan.vvar && size(plan.vvar) !== hostVvar) throw differs(`[vvar] + [vvar_vclock] are ${hostVvar} bytes here, ${size(plan.vvar)} in the image`);
  if (plan.vdso && host.vdso) {
    const mine = Buffer.alloc(Number(size(host.vdso)));
    bridge().processVmReadv(process.pid, host.vdso.start, mine.length, mine);
    const dumped = dumpedBytes(plan.vdso, segs);
    if (dumped) {
      // As criu decides: the same symbols at the same offsets is the same vDSO. The bytes
      // may differ elsewhere (the build-id note, strings) between builds of one kernel.
      const a = vdsoSymbols(dumped);
      const b = vdsoSymbols(mine);
      if (!a) throw differs("the dumped vDSO pages are not an ELF image");
      if (!b) throw differs("this kernel's vDSO is not a readable ELF image");
      for (const [name, off] of a) {
        if (b.get(name) !== off) throw differs(`${name} is at 0x${off.toString(16)} in the image, ${b.has(name) ? `0x${b.get(name)!.toString(16)}` : "missing"} here`);
      }
      for (const name of b.keys()) if (!a.has(name)) throw differs(`${name} is not in the image's vDSO`);
    }
  }
  return plan;
}

/** The vDSO's bytes from the dumped pages, when every page of it was dumped. */
function dumpedBytes(vdso: { start: bigint; end: bigint }, segs: readonly PageSeg[]): Buffer | undefined {
  const out = Buffer.alloc(Number(vdso.end - vdso.start));
  let covered = 0;
  for (const s of segs) {
    const from = s.vaddr > vdso.start ? s.vaddr : vdso.start;
    const to = s.vaddr + BigInt(s.len) < vdso.end ? s.vaddr + BigInt(s.len) : vdso.end;
    if (from >= to) continue;
    const fd = openSync(s.file, "r");
    try {
      covered += readSync(fd, out, Number(from - vdso.start), Number(to - from), s.off + Number(from - s.vaddr));
    } finally {
      closeSync(fd);
    }
  }
  return covered === out.length ? out : undefined;
}

/** name -> value of every defined dynamic symbol of a vDSO image, or undefined when not ELF. */
export function vdsoSymbols(img: Buffer): Map<string, bigint> | undefined {
  if (img.length < 64 || img.readUInt32BE(0) !== 0x7f454c46 || img[4] !== 2) return undefined;
  const shoff = Number(img.readBigUInt64LE(0x28));
  const shentsize = img.readUInt16LE(0x3a);
  const shnum = img.readUInt16LE(0x3c);
  if (shoff + shnum * shentsize > img.length || shentsize < 64) return undefined;
  const sec = (i: number): { type: number; off: number; size: number; link: number; entsize: number } => {
    const o = shoff + i * shentsize;
    return { type: img.readUInt32LE(o + 4), off: Number(img.readBigUInt64LE(o + 0x18)), size: Number(img.readBigUInt64LE(o + 0x20)), link: img.readUInt32LE(o + 0x28), entsize: Number(img.readBigUInt64LE(o + 0x38)) };
  };
  const SHT_DYNSYM = 11;
  const out = new Map<string, bigint>();
  for (let i = 0; i < shnum; i++) {
    const s = sec(i);
    if (s.type !== SHT_DYNSYM || s.entsize < 24 || s.off + s.size > img.length || s.link >= shnum) continue;
    const str = sec(s.link);
    for (let o = s.off; o + 24 <= s.off + s.size; o += s.entsize) {
      const nameOff = img.readUInt32LE(o);
      const shndx = img.readUInt16LE(o + 6);
      if (nameOff === 0 || shndx === 0 || str.off + nameOff >= img.length) continue;
      const end = img.indexOf(0, str.off + nameOff);
      out.set(img.toString("latin1", str.off + nameOff, end < 0 ? img.length : end), img.readBigUInt64LE(o + 8));
    }
  }
  return out;
}

/**
 * Moves the stub's block onto the dumped addresses (or unmaps it when the task had none).
 * `busy` are the image's VMAs, which the temporary spot must avoid too.
 */
export function moveVdso(remote: Remote, plan: VdsoPlan, stubMaps: readonly Mapping[], busy: readonly { start: bigint; end: bigint }[]): void {
  const block = hostBlock(stubMaps);
  const parts = [...block.vvar, ...(block.vdso ? [block.vdso] : [])].sort((a, b) => (a.start < b.start ? -1 : 1));
  if (!plan.vdso && !plan.vvar) {
    for (const m of parts) remote.call(`munmap of the stub's ${m.name}`, NR.munmap, [m.start, m.end - m.start]);
    return;
  }
  // Where each piece goes: vvar pieces in order from the image's vvar start, vdso to its place.
  const dest = new Map<Mapping, bigint>();
  let at = plan.vvar!.start;
  for (const m of block.vvar.sort((a, b) => (a.start < b.start ? -1 : 1))) {
    dest.set(m, at);
    at += m.end - m.start;
  }
  if (block.vdso && plan.vdso) dest.set(block.vdso, plan.vdso.start);
  const total = parts.reduce((s, m) => s + Number(m.end - m.start), 0);
  const tmp = findGap([...stubMaps, ...busy], total + PAGE_SIZE);
  let t = tmp;
  const hop = new Map<Mapping, bigint>();
  for (const m of parts) {
    remote.call(`mremap of the stub's ${m.name} to a free spot`, NR.mremap, [m.start, m.end - m.start, m.end - m.start, MREMAP_MAYMOVE | MREMAP_FIXED, t]);
    hop.set(m, t);
    t += m.end - m.start;
  }
  for (const m of parts) {
    const to = dest.get(m);
    const len = m.end - m.start;
    if (to === undefined) {
      remote.call(`munmap of the stub's ${m.name}`, NR.munmap, [hop.get(m)!, len]);
      continue;
    }
    remote.call(`mremap of ${m.name} to 0x${to.toString(16)}`, NR.mremap, [hop.get(m)!, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to]);
  }
}
