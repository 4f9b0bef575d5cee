// The address space as criu's vma_entry list: /proc/PID/smaps parsed and each VMA
// classified (anonymous, heap, file private/shared, shared anonymous as a memfd,
// hugetlb, vdso, vvar, vsyscall) with the flags, madvise bits and status bits criu stores.
// File-backed VMAs get their files.img ids from the file table.

import { fstatSync, openSync, closeSync, lstatSync } from "node:fs";
import type { FileTable } from "./filetable.js";
import { procPath, readProc } from "./proc.js";
import { hugetlbBits, ShmemTable } from "./shmem.js";

import { MAP } from "../../host-bridge/constants.js";
import { VMA } from "../../images/vma-status.js";

export { VMA };

const MAPF = { SHARED: 0x1, PRIVATE: 0x2, ANON: 0x20, GROWSDOWN: 0x100, LOCKED: 0x2000, NORESERVE: 0x4000, HUGETLB: 0x40000 } as const;
const MADV = { SEQUENTIAL: 2, RANDOM: 1, DONTFORK: 10, DONTDUMP: 16, MERGEABLE: 12, HUGEPAGE: 14, NOHUGEPAGE: 15, WIPEONFORK: 18 } as const;

export interface Vma {
  start: bigint;
  end: bigint;
  pgoff: bigint;
  prot: number;
  flags: number;
  status: number;
  shmid: bigint;
  madv: bigint;
  fdflags: number | undefined;
  /** the name column of smaps */
  name: string;
  /** for memfd-style shared memory: the object's inode number */
  shmemIno?: bigint;
  /** a mapped packet ring: its socket's inode */
  socketIno?: bigint;
  /** registered for userfaultfd write-protect ("uw" in smaps' VmFlags), by whichever userfaultfd */
  uffdWp?: boolean;
  /**
   * every page resident and none swapped (smaps' Rss is its Size, Swap 0): a page of the
   * zero page is not counted in Rss, so each is a page of its own (memory.ts planPages
   * needs no walk of the page table for it)
   */
  allPresent?: boolean;
}

interface SmapsVma {
  start: bigint;
  end: bigint;
  perms: string;
  pgoff: bigint;
  dev: string;
  ino: bigint;
  name: string;
  vmflags: string[];
  /** smaps' Size, Rss and Swap, kB (-1: not listed) */
  sizeKb: number;
  rssKb: number;
  swapKb: number;
}

/** The number of a smaps line like "Rss:   1024 kB". */
const kb = (line: string): number => Number.parseInt(line.slice(line.indexOf(":") + 1), 10);

export function parseSmaps(text: string): SmapsVma[] {
  const out: SmapsVma[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/.exec(line);
    if (m) {
      out.push({
        start: BigInt(`0x${m[1]}`),
        end: BigInt(`0x${m[2]}`),
        perms: m[3]!,
        pgoff: BigInt(`0x${m[4]}`),
        dev: m[5]!,
        ino: BigInt(m[6]!),
        name: m[7]!,
        vmflags: [],
        sizeKb: -1,
        rssKb: -1,
        swapKb: -1,
      });
    } else if (out.length === 0) {
      continue;
    } else if (line.startsWith("VmFlags:")) {
      out[out.length - 1]!.vmflags = line.slice(8).trim().split(/\s+/);
    } else if (line.startsWith("Size:")) {
      out[out.length - 1]!.sizeKb = kb(line);
    } else if (line.startsWith("Rss:")) {
      out[out.length - 1]!.rssKb = kb(line);
    } else if (line.startsWith("Swap:")) {
      out[out.length - 1]!.swapKb = kb(line);
    }
  }
  return out;
}

/**
 * Whether a VMA, as a maps or smaps line shows it, is writable private anonymous memory
 * (unnamed, heap, stack or named anonymous memory, no file): what write tracking and a
 * write-protect snapshot protect, told from the text alone (protectable() judges a Vma).
 */
export function anonWritableLine(perms: string, ino: bigint | string, name: string): boolean {
  return perms[1] === "w" && perms[3] === "p" && String(ino) === "0" && (name === "" || /^\[(heap|stack|anon:)/.test(name));
}

/**
 * Whether a smaps text lists exactly the VMAs of a maps text (the same header lines):
 * a smaps read while the task had a scratch area mapped (dump/inside.ts) does not.
 */
export function sameVmas(smaps: string, maps: string): boolean {
  const heads = smaps.split("\n").filter((l) => /^[0-9a-f]+-[0-9a-f]+ /.test(l));
  const lines = maps.split("\n").filter((l) => l !== "");
  return heads.length === lines.length && heads.every((h, i) => h === lines[i]);
}

/**
 * A maps or smaps text without the VMA [start, end) (its line, and in smaps the lines of
 * its fields); undefined when no VMA has exactly that range.
 */
export function withoutVma(text: string, start: bigint, end: bigint): string | undefined {
  const head = `${start.toString(16).padStart(8, "0")}-${end.toString(16).padStart(8, "0")} `;
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.startsWith(head));
  if (at < 0) return undefined;
  let next = at + 1;
  while (next < lines.length && lines[next] !== "" && !/^[0-9a-f]+-[0-9a-f]+ /.test(lines[next]!)) next++;
  lines.splice(at, next - at);
  return lines.join("\n");
}

export class UnsupportedVma extends Error {}

const hex = (v: bigint): string => v.toString(16);

/** fdflags from the map_files link's mode: the open mode of the mapped file (as criu). */
function mapFileFlags(path: string): number | undefined {
  try {
    const m = lstatSync(path).mode & 0o600;
    return m === 0o600 ? 2 : m === 0o200 ? 1 : 0;
  } catch {
    return undefined;
  }
}

/** A VMA classified from smaps; a file-backed one holds its mapped file open until it is registered. */
interface Classified {
  vma: Vma;
  file?: { fd: number; kind: "shmem" | "reg"; mapFile: string };
}

/**
 * The VMAs of a task's smaps classified, each mapped file open (map_files), not yet given
 * its files.img id: read() while the task is frozen, or ahead of the freeze with the smaps
 * read then (smaps-ahead.ts). register() gives the file-backed ones their ids (a shmem
 * object's, or a regular file's from the file table) in address order, as criu numbers
 * them, from each file as it stands then (its size, say).
 */
export class VmaRead {
  private constructor(
    private readonly pid: number,
    private readonly list: Classified[],
  ) {}

  /** Classifies the VMAs of `smaps` (the text of pid's); throws UnsupportedVma for one tscriu cannot dump. */
  static read(pid: number, smaps: string): VmaRead {
    const list: Classified[] = [];
    try {
      for (const r of parseSmaps(smaps)) classify(pid, r, list);
    } catch (e) {
      new VmaRead(pid, list).close();
      throw e;
    }
    return new VmaRead(pid, list);
  }

  /** The VMAs, the file-backed ones registered in `files` (or `shm`); the files closed. */
  register(files: FileTable, shm: ShmemTable): Vma[] {
    try {
      for (const { vma, file } of this.list) {
        if (!file) continue;
        const st = fstatSync(file.fd, { bigint: true });
        if (file.kind === "shmem") {
          vma.shmid = BigInt(shm.mappingFile(shm.object(file.fd, st, vma.name, file.mapFile)));
          vma.shmemIno = st.ino;
        } else {
          vma.shmid = BigInt(files.mappedFile(file.fd, st, vma.name, this.pid));
        }
      }
      return this.list.map((c) => c.vma);
    } finally {
      this.close();
    }
  }

  /** Closes the mapped files still open (safe to call twice). */
  close(): void {
    for (const c of this.list) {
      if (c.file) closeSync(c.file.fd);
      delete c.file;
    }
  }
}

/**
 * Reads and classifies the VMAs of a stopped task (`smaps`: its smaps read already).
 * File-backed ones are registered in `files` (and shmem objects in `shm`, with MEMFD
 * entries) in address order, as criu numbers them.
 */
export function collectVmas(pid: number, files: FileTable, shm: ShmemTable, smaps = readProc(pid, "smaps")): Vma[] {
  return VmaRead.read(pid, smaps).register(files, shm);
}

/** One smaps VMA classified onto `out` (the vvar_vclock half merged into the [vvar] before it). */
function classify(pid: number, r: SmapsVma, out: Classified[]): void {
  const push = (vma: Vma, file?: Classified["file"]): void => void out.push(file ? { vma, file } : { vma });
  const prot = (r.perms[0] === "r" ? 1 : 0) | (r.perms[1] === "w" ? 2 : 0) | (r.perms[2] === "x" ? 4 : 0);
  let flags: number = r.perms[3] === "s" ? MAPF.SHARED : MAPF.PRIVATE;
  let madv = 0n;
  let special = false;
  for (const f of r.vmflags) {
    if (f === "gd") flags |= MAPF.GROWSDOWN;
    else if (f === "lo") flags |= MAPF.LOCKED;
    else if (f === "nr") flags |= MAPF.NORESERVE;
    else if (f === "ht") flags |= MAPF.HUGETLB;
    // criu's image: a droppable VMA is MAP_DROPPABLE, not MAP_PRIVATE (the kernel takes
    // no map type with it), and still VMA_ANON_PRIVATE in its status.
    else if (f === "dp") flags = (flags & ~MAPF.PRIVATE) | MAP.DROPPABLE;
    const adv = { sr: MADV.SEQUENTIAL, rr: MADV.RANDOM, dc: MADV.DONTFORK, dd: MADV.DONTDUMP, mg: MADV.MERGEABLE, hg: MADV.HUGEPAGE, nh: MADV.NOHUGEPAGE, wf: MADV.WIPEONFORK }[f];
    if (adv !== undefined) madv |= 1n << BigInt(adv);
    if (f === "io" || f === "pf") special = true;
  }
  const base = { start: r.start, end: r.end, pgoff: r.pgoff * 1n, prot, madv, name: r.name, shmid: 0n, fdflags: undefined as number | undefined, ...(r.vmflags.includes("uw") ? { uffdWp: true } : {}), ...(r.sizeKb > 0 && r.rssKb === r.sizeKb && r.swapKb === 0 ? { allPresent: true } : {}) };
  // pgoff in smaps is in bytes already (hex offset column)
  const where = `${hex(r.start)}-${hex(r.end)}`;
  if (r.name === "[vsyscall]") return push({ ...base, flags: flags | MAPF.ANON, status: VMA.VSYSCALL | VMA.ANON_PRIVATE });
  if (r.name === "[vvar]" || r.name === "[vvar_vclock]") {
    // criu >= 4.1 treats [vvar] and [vvar_vclock] as one region (kernel >= 6.16 splits them).
    const prev = out[out.length - 1]?.vma;
    if (r.name === "[vvar_vclock]" && prev && prev.status & VMA.VVAR && prev.end === r.start) {
      prev.end = r.end;
      return;
    }
    return push({ ...base, name: "[vvar]", flags: flags | MAPF.ANON, status: VMA.REGULAR | VMA.ANON_PRIVATE | VMA.VVAR });
  }
  if (special) throw new UnsupportedVma(`VM_IO/VM_PFNMAP mapping ${where} ${r.name}`);
  if (r.name === "[vdso]") return push({ ...base, flags: flags | MAPF.ANON, status: VMA.REGULAR | VMA.ANON_PRIVATE | ((prot & 5) === 5 ? VMA.VDSO : 0) });
  if (r.name.startsWith("[") && r.name !== "[heap]" && r.name !== "[stack]" && !r.name.startsWith("[anon:")) {
    throw new UnsupportedVma(`special mapping ${where} ${r.name}`);
  }
  // criu's socket map: a packet socket's PACKET_RX_RING/PACKET_TX_RING mapped in the task,
  // shared or private. Its pages are the ring's (not dumped, a private mapping's neither:
  // criu's restore takes no pages for a socket map); its shmid names the socket's file,
  // filled in once the fds are dumped (socketMaps).
  const sock = /^socket:\[(\d+)\]$/.exec(r.name);
  if (sock) return push({ ...base, flags, status: VMA.REGULAR | VMA.SOCKET, socketIno: BigInt(sock[1]!) });
  const mapFile = procPath(pid, `map_files/${where}`);
  const hasFile = r.ino !== 0n || (r.name.startsWith("/") && r.dev !== "00:00");
  if (!hasFile) {
    const status = VMA.REGULAR | VMA.ANON_PRIVATE | (r.name === "[heap]" ? VMA.HEAP : 0);
    if (flags & MAPF.SHARED) throw new UnsupportedVma(`shared anonymous mapping without a file ${where}`);
    return push({ ...base, flags: flags | MAPF.ANON, status });
  }
  const fdflags = mapFileFlags(mapFile);
  let fd: number;
  try {
    fd = openSync(mapFile, "r");
  } catch (e) {
    throw new UnsupportedVma(`cannot open ${mapFile} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}) for ${r.name}`);
  }
  let kept = false;
  try {
    const st = fstatSync(fd, { bigint: true });
    if (r.name.startsWith("/SYSV") && r.dev.startsWith("00:")) throw new UnsupportedVma(`System V shared memory ${where} ${r.name}`);
    // criu's image of hugetlb memory: the page size's bits next to MAP_HUGETLB in the
    // flags; private MAP_HUGETLB memory is private anonymous memory, its pages dumped as
    // any (the kernel names its file "/anon_hugepage" all the same).
    const huge = hugetlbBits(st) ?? 0;
    if (huge && !(flags & MAPF.SHARED) && r.name.startsWith("/anon_hugepage")) return push({ ...base, flags: (flags | MAPF.ANON | huge) >>> 0, status: VMA.REGULAR | VMA.ANON_PRIVATE, fdflags });
    // Shared or private, a mapping of a memfd or of shared anonymous memory maps the object.
    if (ShmemTable.isShmem(r.name, st)) {
      push({ ...base, flags: (flags | huge) >>> 0, status: VMA.REGULAR | VMA.MEMFD | (flags & MAPF.SHARED ? VMA.FILE_SHARED : VMA.FILE_PRIVATE), fdflags }, { fd, kind: "shmem", mapFile });
    } else {
      const isReg = (Number(st.mode) & 0o170000) === 0o100000;
      if (!isReg) throw new UnsupportedVma(`mapping of a non-regular file ${where} ${r.name}`);
      push({ ...base, flags, status: VMA.REGULAR | (flags & MAPF.SHARED ? VMA.FILE_SHARED : VMA.FILE_PRIVATE), fdflags }, { fd, kind: "reg", mapFile });
    }
    kept = true;
  } finally {
    if (!kept) closeSync(fd);
  }
}

/** The mm image's vma_entry for a VMA. */
export function vmaEntry(v: Vma): Record<string, unknown> {
  const e: Record<string, unknown> = {
    start: v.start,
    end: v.end,
    pgoff: v.pgoff,
    shmid: v.shmid,
    prot: v.prot,
    flags: v.flags,
    status: v.status,
    fd: -1n,
  };
  if (v.madv !== 0n) e["madv"] = v.madv;
  if (v.fdflags !== undefined) e["fdflags"] = v.fdflags;
  return e;
}
