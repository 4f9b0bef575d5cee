// The [vvar] [vvar_vclock] [vdso] block. The kernel maps its own vDSO into the stub. When
// it is the vDSO the task used (same sizes and order, the same symbols at the same
// offsets: criu's rule), the restore moves the block onto the dumped addresses, so code
// and data pointers into it (glibc's cached clock_gettime, AT_SYSINFO_EHDR) stay valid.
//
// When it is not (the image comes from another kernel build), the dumped vDSO becomes a
// proxy, as criu builds one: its pages come back at the old address as private memory,
// each function it exports gets a jump to the same function of this kernel's vDSO, and the
// kernel's block is parked at a free address, with criu's mark (vdso/mark.ts) at its start
// so that the next dump, by criu or tscriu, dumps the task's own vDSO again. The old vvar
// comes back as an empty private area: nothing reads it once every entry point jumps away.
//
// mremap moves one special mapping at a time and refuses overlapping source and target
// ranges (DESIGN.md), so the block goes first to a free spot, then to its place.

import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { bridge } from "../../host-bridge/load.js";
import type { MmEntry } from "../../images/dir.js";
import { PAGE_SIZE } from "../../images/pages.js";
import { VMA } from "../../images/vma-status.js";
import type { ModuleLog } from "../log.js";
import { vdsoSymbols, type VdsoSymbol } from "../vdso/elf.js";
import { encodeMark, NO_ADDR } from "../vdso/mark.js";
import { RestoreError } from "./errors.js";
import { findGap, readMaps, type Mapping } from "./layout.js";
import type { PageSeg } from "./pagesegs.js";
import { NR, type Remote } from "./remote.js";

const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;

interface Region {
  start: bigint;
  end: bigint;
}

export interface VdsoPlan {
  /** the image's vvar region (vvar + vvar_vclock), undefined when the task had none */
  vvar: Region | undefined;
  vdso: Region | undefined;
  /**
   * none: the task had no vDSO; remap: this kernel's block goes onto the image's
   * addresses; proxy: the image's vDSO stays, redirected to this kernel's (parked)
   */
  mode: "none" | "remap" | "proxy";
  /** proxy: the image's functions, each to be sent to this kernel's function of that name */
  redirect: VdsoSymbol[];
}

type Vma = NonNullable<MmEntry["vmas"]>[number];

function regions(vmas: readonly Vma[], bit: number): Region | undefined {
  const list = vmas.filter((v) => (v.status & bit) !== 0).sort((a, b) => (a.start < b.start ? -1 : 1));
  if (list.length === 0) return undefined;
  for (let i = 1; i < list.length; i++) {
    if (list[i]!.start !== list[i - 1]!.end) throw new Error(`the image has ${list.length} separate ${bit === VMA.VVAR ? "[vvar]" : "[vdso]"} areas`);
  }
  return { start: list[0]!.start, end: list[list.length - 1]!.end };
}

/** A block of this kernel's: [vvar] + [vvar_vclock] and [vdso], as mapped into some process. */
function kernelBlock(maps: readonly Mapping[]): { vvar: Mapping[]; vdso: Mapping | undefined } {
  return {
    vvar: maps.filter((m) => m.name === "[vvar]" || m.name === "[vvar_vclock]").sort((a, b) => (a.start < b.start ? -1 : 1)),
    vdso: maps.find((m) => m.name === "[vdso]"),
  };
}

const size = (r: Region | undefined): bigint => (r ? r.end - r.start : 0n);

interface HostVdso {
  vdsoSize: bigint;
  vvarSize: bigint;
  vvarFirst: boolean;
  symbols: Map<string, VdsoSymbol>;
}

let host: HostVdso | undefined | null;

/** This kernel's vDSO, read from tscriu's own mapping of it (the stub gets the same one). */
function hostVdso(): HostVdso | undefined {
  if (host !== undefined) return host ?? undefined;
  const block = kernelBlock(readMaps("self"));
  if (!block.vdso) {
    host = null;
    return undefined;
  }
  const mine = Buffer.alloc(Number(size(block.vdso)));
  bridge().processVmReadv(process.pid, block.vdso.start, mine.length, mine);
  const symbols = vdsoSymbols(mine);
  if (!symbols) throw new Error("this kernel's vDSO is not a readable ELF image");
  host = {
    vdsoSize: size(block.vdso),
    vvarSize: block.vvar.reduce((s, m) => s + (m.end - m.start), 0n),
    vvarFirst: block.vvar.length > 0 && block.vvar[0]!.start < block.vdso.start,
    symbols,
  };
  return host;
}

/**
 * Decides, before anything is created, how the image's vDSO comes back: moved in place
 * when this kernel's is the same, else through a proxy. Refuses only what no proxy can
 * serve: a vDSO on a kernel without one, or dumped bytes that are not a vDSO.
 */
export function planVdso(pid: number, vmas: readonly Vma[], segs: readonly PageSeg[], log: ModuleLog): VdsoPlan {
  const vvar = regions(vmas, VMA.VVAR);
  const vdso = regions(vmas, VMA.VDSO);
  const refuse = (why: string): RestoreError => new RestoreError("plan", pid, `the image's vDSO cannot be restored: ${why}`, { address: vdso?.start });
  if (!vdso) {
    if (vvar) throw refuse("the image has a [vvar] without a [vdso]");
    return { vvar, vdso, mode: "none", redirect: [] };
  }
  const here = hostVdso();
  if (!here) throw refuse("this kernel maps no [vdso]");
  const dumped = dumpedBytes(pid, vdso, segs);
  const image = vdsoSymbols(dumped.bytes, dumped.have);
  const sameLayout = size(vdso) === here.vdsoSize && vvar !== undefined && size(vvar) === here.vvarSize && vvar.start < vdso.start === here.vvarFirst;
  if (!image) {
    // tscriu before 0.2 dumped only the vDSO pages the task had touched; its images from
    // this kernel restore as they did, in place. Anything else needs the symbols.
    if (sameLayout && dumped.complete === false) {
      log.warn(`the image's vDSO pages are incomplete (an older dump): its symbols cannot be compared with this kernel's; moving this kernel's vDSO in place`);
      return { vvar, vdso, mode: "remap", redirect: [] };
    }
    throw refuse(dumped.complete ? "the dumped [vdso] pages are not an ELF vDSO" : "the dumped [vdso] pages are incomplete and its symbol table is not among them");
  }
  const why = differs(vdso, vvar, image, here);
  if (!why) return { vvar, vdso, mode: "remap", redirect: [] };
  const redirect = [...image.values()].filter((s) => s.func && s.offset + BigInt(JUMP_SIZE) <= size(vdso));
  const lost = redirect.filter((s) => !here.symbols.get(s.name)?.func).map((s) => s.name);
  if (lost.length) log.warn(`this kernel's vDSO lacks ${lost.join(", ")}: calls to ${lost.length > 1 ? "them" : "it"} run the dumped code`);
  log.info(`this kernel's vDSO differs from the image's (${why}): restoring through a vDSO proxy`);
  return { vvar, vdso, mode: "proxy", redirect: redirect.filter((s) => !lost.includes(s.name)) };
}

/** Why the image's vDSO is not this kernel's (criu's blobs_matches), or undefined. */
function differs(vdso: Region, vvar: Region | undefined, image: Map<string, VdsoSymbol>, here: HostVdso): string | undefined {
  if (size(vdso) !== here.vdsoSize) return `[vdso] is ${here.vdsoSize} bytes here, ${size(vdso)} in the image`;
  if (!vvar) return "the image has no [vvar]";
  if (size(vvar) !== here.vvarSize) return `[vvar] + [vvar_vclock] are ${here.vvarSize} bytes here, ${size(vvar)} in the image`;
  if (vvar.start < vdso.start !== here.vvarFirst) return "[vvar] and [vdso] are in another order";
  const hex = (v: bigint | undefined): string => (v === undefined ? "missing" : `0x${v.toString(16)}`);
  for (const [name, s] of image) if (here.symbols.get(name)?.offset !== s.offset) return `${name} is at ${hex(s.offset)} in the image, ${hex(here.symbols.get(name)?.offset)} here`;
  for (const name of here.symbols.keys()) if (!image.has(name)) return `${name} is not in the image's vDSO`;
  return undefined;
}

/** The vDSO's dumped bytes (zeros where no page was dumped) and which of them are there. */
function dumpedBytes(pid: number, vdso: Region, segs: readonly PageSeg[]): { bytes: Buffer; have: (off: number, len: number) => boolean; complete: boolean } {
  const bytes = Buffer.alloc(Number(size(vdso)));
  const pages = new Uint8Array(bytes.length / PAGE_SIZE);
  for (const s of segs) {
    const from = s.vaddr > vdso.start ? s.vaddr : vdso.start;
    const to = s.vaddr + BigInt(s.len) < vdso.end ? s.vaddr + BigInt(s.len) : vdso.end;
    if (from >= to) continue;
    const fd = openSync(s.file, "r");
    try {
      const want = Number(to - from);
      const got = readSync(fd, bytes, Number(from - vdso.start), want, s.off + Number(from - s.vaddr));
      if (got !== want) throw new RestoreError("plan", pid, `${s.file}: offset ${s.off + got}: the file ends inside the [vdso] pages`, { file: s.file });
    } finally {
      closeSync(fd);
    }
    pages.fill(1, Number(from - vdso.start) / PAGE_SIZE, Number(to - vdso.start) / PAGE_SIZE);
  }
  const have = (off: number, len: number): boolean => {
    for (let p = Math.floor(off / PAGE_SIZE); p * PAGE_SIZE < off + len; p++) if (!pages[p]) return false;
    return true;
  };
  return { bytes, have, complete: pages.every((p) => p === 1) };
}

/** Where this kernel's vDSO block ended up in the task. */
export interface ParkedVdso {
  vdso: bigint;
  /** the start of its vvar region, NO_ADDR without one */
  vvar: bigint;
}

/**
 * Moves the stub's block onto the dumped addresses (remap), or parks it at a free spot
 * (proxy), or unmaps it when the task had none. `busy` are the image's VMAs and the
 * trampoline, which the free spot must avoid.
 */
export function moveVdso(remote: Remote, plan: VdsoPlan, stubMaps: readonly Mapping[], busy: readonly Region[]): ParkedVdso | undefined {
  const block = kernelBlock(stubMaps);
  const parts = [...block.vvar, ...(block.vdso ? [block.vdso] : [])].sort((a, b) => (a.start < b.start ? -1 : 1));
  if (plan.mode === "none") {
    for (const m of parts) remote.call(`munmap of the stub's ${m.name}`, NR.munmap, [m.start, m.end - m.start]);
    return undefined;
  }
  const total = parts.reduce((s, m) => s + Number(m.end - m.start), 0);
  const tmp = findGap([...stubMaps, ...busy], total + PAGE_SIZE);
  let t = tmp;
  const hop = new Map<Mapping, bigint>();
  for (const m of parts) {
    remote.call(`mremap of the stub's ${m.name} to 0x${t.toString(16)}`, NR.mremap, [m.start, m.end - m.start, m.end - m.start, MREMAP_MAYMOVE | MREMAP_FIXED, t]);
    hop.set(m, t);
    t += m.end - m.start;
  }
  const vvarAt = block.vvar.length ? hop.get(block.vvar[0]!)! : NO_ADDR;
  if (plan.mode === "proxy") return { vdso: hop.get(block.vdso!)!, vvar: vvarAt };
  // Where each piece goes: vvar pieces in order from the image's vvar start, vdso to its place.
  let at = plan.vvar!.start;
  for (const m of parts) {
    const len = m.end - m.start;
    const to = m === block.vdso ? plan.vdso!.start : at;
    if (m !== block.vdso) at += len;
    remote.call(`mremap of ${m.name} to 0x${to.toString(16)}`, NR.mremap, [hop.get(m)!, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to]);
  }
  return { vdso: plan.vdso!.start, vvar: plan.vvar!.start };
}

/** movabs $target, %rax; jmp *%rax; int3 x4 -- criu's x86_64 trampoline, 16 bytes. */
const JUMP_SIZE = 16;

function jump(target: bigint): Buffer {
  const j = Buffer.alloc(JUMP_SIZE, 0xcc);
  j[0] = 0x48;
  j[1] = 0xb8;
  j.writeBigUInt64LE(target, 2);
  j[10] = 0xff;
  j[11] = 0xe0;
  return j;
}

/**
 * Turns the restored copy of the image's vDSO into a proxy: a jump at each of its entry
 * points to the parked kernel vDSO's function of that name, and criu's mark at the
 * parked vDSO's start. Written through /proc/PID/mem, which writes into read-only private
 * pages (the proxy is r-x; the kernel's vDSO pages are copied on write, as for a
 * debugger's breakpoint). Returns the number of entry points redirected.
 */
export function writeVdsoProxy(pid: number, plan: VdsoPlan, parked: ParkedVdso): number {
  const here = hostVdso()!;
  const fd = openSync(`/proc/${pid}/mem`, "r+");
  const put = (addr: bigint, bytes: Buffer, what: string): void => {
    const n = writeSync(fd, bytes, 0, bytes.length, Number(addr));
    if (n !== bytes.length) throw new RestoreError("vdso", pid, `short write of ${what}`, { address: addr });
  };
  try {
    for (const s of plan.redirect) {
      const to = parked.vdso + here.symbols.get(s.name)!.offset;
      put(plan.vdso!.start + s.offset, jump(to), `the proxy jump of ${s.name}`);
    }
    put(parked.vdso, encodeMark({ origVdso: plan.vdso!.start, origVvar: plan.vvar?.start ?? NO_ADDR, rtVvar: parked.vvar }), "the vDSO mark");
  } finally {
    closeSync(fd);
  }
  return plan.redirect.length;
}
