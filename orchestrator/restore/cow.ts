// Copy-on-write sharing between a parent and the children it forked, planned (no side
// effects). After a fork, parent and child share every page of their private memory
// until one of them writes it; the images hold each task's pages apart, so a restore that
// fills each task alone gives the child a copy of every page. As criu does, a private VMA
// a child inherited -- the same start and end as one of its parent's, the same kind of
// memory, and a parent with pages in it -- is mapped and filled in the parent before the
// child is forked (premap.ts), in a slot of an area free in every layout; the child finds
// it there at its fork, and only writes the pages of its own that differ from its
// parent's, and drops the pages its parent has and it had not (a page the child never had
// is zero, or the file's, not the parent's). Pages alike stay one page of both. Every
// task then moves the slot onto the VMA's address.
//
// Which pages differ is read here from both tasks' images: the slot of a parent holds
// exactly its own pages when it forks (its own inherited slots were made so before), so
// comparing a child's page with its parent's image page is comparing it with what the
// child finds in the slot. A VMA a child mapped again at the same place is taken for an
// inherited one: content decides per page, so it still comes back right.

import { closeSync, openSync, readSync } from "node:fs";
import { MAP } from "../../host-bridge/constants.js";
import { RestoreError } from "./errors.js";
import { lazyVma, VMA, type VmaPlan } from "./memory.js";
import type { PageSeg } from "./pagesegs.js";
import type { ProcPlan, TreeNode } from "./plan.js";

const PAGE = 4096;
const MAP_GROWSDOWN = 0x100;
const MAP_LOCKED = 0x2000;
/** a free page between slots, so the kernel never merges two into one VMA */
const SLOT_GAP = BigInt(PAGE);
/** bytes compared at a time */
const CHUNK = 1 << 20;

/** A VMA of a process that goes through a slot of the premap area. */
export interface CowVma {
  vma: VmaPlan;
  /** its slot's offset in the premap area */
  slot: bigint;
  /** the parent made the slot: the process finds it at its fork, with the parent's pages */
  inherited: boolean;
  /** the process's pages to write into the slot (addresses of the VMA, not of the slot) */
  write: PageSeg[];
  /** the parent's pages the process had not: dropped from the slot (MADV_DONTNEED) */
  drop: { start: bigint; len: number }[];
  /** pages left shared with the parent */
  shared: number;
}

/** The premap area's size (0: no slot) and the pages compared and left shared. */
export interface CowSummary {
  span: bigint;
  compared: number;
  shared: number;
}

/**
 * Whether a child's VMA may be the one it inherited from its parent's `pv`: criu's rule
 * (same place, private memory of the same kind and file) less the mappings a slot cannot
 * carry (hugetlb, droppable and locked memory, the kernel's vDSO or its proxy, the lazy
 * restore's VMAs, which the lazy-pages daemon fills in each task).
 */
function inheritable(v: VmaPlan, pv: VmaPlan, lazy: boolean): boolean {
  const a = v.vma;
  const b = pv.vma;
  if (a.start !== b.start || a.end !== b.end || v.shared || pv.shared || v.kind !== pv.kind) return false;
  if (v.kind !== "anon" && v.kind !== "file") return false;
  const odd = MAP.HUGETLB | MAP.DROPPABLE | MAP_LOCKED;
  if ((a.flags | b.flags) & odd || (a.flags ^ b.flags) & MAP_GROWSDOWN) return false;
  if ((a.status | b.status) & (VMA.VDSO | VMA.VVAR | VMA.VSYSCALL)) return false;
  if (v.kind === "file" && (a.shmid !== b.shmid || a.pgoff !== b.pgoff)) return false;
  return !(lazy && (lazyVma(v) || lazyVma(pv)));
}

/** The parts of `segs` (sorted by address, not overlapping) inside [start, end). */
function clip(segs: readonly PageSeg[], start: bigint, end: bigint): PageSeg[] {
  const out: PageSeg[] = [];
  // the first segment that ends past start
  let lo = 0;
  let hi = segs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (segs[mid]!.vaddr + BigInt(segs[mid]!.len) <= start) lo = mid + 1;
    else hi = mid;
  }
  for (let k = lo; k < segs.length && segs[k]!.vaddr < end; k++) {
    const s = segs[k]!;
    const sEnd = s.vaddr + BigInt(s.len);
    const from = s.vaddr > start ? s.vaddr : start;
    const to = sEnd < end ? sEnd : end;
    out.push({ vaddr: from, len: Number(to - from), file: s.file, off: s.off + Number(from - s.vaddr) });
  }
  return out;
}

/** Reads page data out of pages files, each opened once. */
class PageReader {
  private readonly fds = new Map<string, number>();
  private bufs: [Buffer, Buffer] | undefined;

  constructor(private readonly pid: number) {}

  /** two buffers of CHUNK bytes, made at the first comparison */
  get a(): Buffer {
    return (this.bufs ??= [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)])[0];
  }

  get b(): Buffer {
    return (this.bufs ??= [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)])[1];
  }

  read(into: Buffer, file: string, off: number, len: number): void {
    let fd = this.fds.get(file);
    if (fd === undefined) this.fds.set(file, (fd = openSync(file, "r")));
    for (let got = 0; got < len; ) {
      const n = readSync(fd, into, got, len - got, off + got);
      if (n === 0) throw new RestoreError("plan", this.pid, `${file} ends at ${off + got}, before the page data the pagemap places there (${len} bytes at ${off})`, { file });
      got += n;
    }
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
  }
}

/**
 * A child's pages of one inherited VMA against its parent's: those that differ or that
 * the parent has not are to be written, those the parent has and the child not dropped.
 */
function diff(child: readonly PageSeg[], parent: readonly PageSeg[], reader: PageReader): Pick<CowVma, "write" | "drop" | "shared"> & { compared: number } {
  const write: PageSeg[] = [];
  let shared = 0;
  let compared = 0;
  const put = (c: PageSeg, at: bigint, len: number): void => {
    const off = c.off + Number(at - c.vaddr);
    const last = write[write.length - 1];
    if (last && last.file === c.file && last.vaddr + BigInt(last.len) === at && last.off + last.len === off) last.len += len;
    else write.push({ vaddr: at, len, file: c.file, off });
  };
  let j = 0;
  for (const c of child) {
    const end = c.vaddr + BigInt(c.len);
    let at = c.vaddr;
    while (at < end) {
      while (j < parent.length && parent[j]!.vaddr + BigInt(parent[j]!.len) <= at) j++;
      const p = parent[j];
      if (!p || p.vaddr >= end) {
        put(c, at, Number(end - at));
        break;
      }
      if (p.vaddr > at) {
        put(c, at, Number(p.vaddr - at));
        at = p.vaddr;
      }
      const pEnd = p.vaddr + BigInt(p.len);
      const stop = pEnd < end ? pEnd : end;
      while (at < stop) {
        const len = Math.min(CHUNK, Number(stop - at));
        reader.read(reader.a, c.file, c.off + Number(at - c.vaddr), len);
        reader.read(reader.b, p.file, p.off + Number(at - p.vaddr), len);
        for (let o = 0; o < len; o += PAGE) {
          compared++;
          if (reader.a.compare(reader.b, o, o + PAGE, o, o + PAGE) === 0) shared++;
          else put(c, at + BigInt(o), PAGE);
        }
        at += BigInt(len);
      }
    }
  }
  // The parent's pages outside every child page.
  const drop: CowVma["drop"] = [];
  let i = 0;
  for (const p of parent) {
    let at = p.vaddr;
    const end = p.vaddr + BigInt(p.len);
    while (at < end) {
      while (i < child.length && child[i]!.vaddr + BigInt(child[i]!.len) <= at) i++;
      const c = child[i];
      const stop = !c || c.vaddr >= end ? end : c.vaddr > at ? c.vaddr : undefined;
      if (stop === undefined) {
        at = c!.vaddr + BigInt(c!.len);
        continue;
      }
      drop.push({ start: at, len: Number(stop - at) });
      at = stop;
    }
  }
  return { write, drop, shared, compared };
}

const byAddr = (a: PageSeg, b: PageSeg): number => (a.vaddr < b.vaddr ? -1 : a.vaddr > b.vaddr ? 1 : 0);

/**
 * Finds the VMAs each process inherited from its parent and the ones a parent premaps for
 * its children, sets every process's `memory.cow`, and gives the premap area's size.
 * `processes` come each after its parent. A process forked by a helper (its session or
 * group leader is gone), or running another program than its parent, inherits nothing.
 */
export function planCow(processes: readonly ProcPlan[], byPid: ReadonlyMap<number, TreeNode>, lazy: boolean): CowSummary {
  const sorted = new Map<ProcPlan, PageSeg[]>(processes.map((p) => [p, [...p.memory.segs].sort(byAddr)]));
  const from = new Map<VmaPlan, VmaPlan>();
  const premapped = new Set<VmaPlan>();
  const parentOf = new Map<ProcPlan, ProcPlan>();
  for (const p of processes) {
    const q = byPid.get(p.ppid);
    if (!q || !("memory" in q) || p.forker !== p.ppid) continue;
    const parent = q as ProcPlan;
    if (parent.mm.exe_file_id !== p.mm.exe_file_id) continue;
    const theirs = new Map(parent.memory.vmas.map((v) => [v.vma.start, v]));
    for (const v of p.memory.vmas) {
      const pv = theirs.get(v.vma.start);
      if (!pv || !inheritable(v, pv, lazy) || clip(sorted.get(parent)!, pv.vma.start, pv.vma.end).length === 0) continue;
      from.set(v, pv);
      premapped.add(pv);
      parentOf.set(p, parent);
    }
  }
  const slotOf = new Map<VmaPlan, bigint>();
  const summary: CowSummary = { span: 0n, compared: 0, shared: 0 };
  for (const p of processes) {
    p.memory.cow = [];
    const segs = sorted.get(p)!;
    const reader = new PageReader(p.pid);
    try {
      for (const v of p.memory.vmas) {
        const pv = from.get(v);
        const mine = clip(segs, v.vma.start, v.vma.end);
        if (pv) {
          const theirs = clip(sorted.get(parentOf.get(p)!)!, v.vma.start, v.vma.end);
          const d = diff(mine, theirs, reader);
          const slot = slotOf.get(pv)!;
          slotOf.set(v, slot);
          p.memory.cow.push({ vma: v, slot, inherited: true, write: d.write, drop: d.drop, shared: d.shared });
          summary.compared += d.compared;
          summary.shared += d.shared;
        } else if (premapped.has(v)) {
          slotOf.set(v, summary.span);
          p.memory.cow.push({ vma: v, slot: summary.span, inherited: false, write: mine, drop: [], shared: 0 });
          summary.span += v.vma.end - v.vma.start + SLOT_GAP;
        }
      }
    } finally {
      reader.close();
    }
  }
  return summary;
}
