// Which pages to dump and copying them out of the task. Present (or swapped) pages
// come from PAGEMAP_SCAN (falling back to /proc/PID/pagemap); as criu: anonymous VMAs
// give every present page but the shared zero page, private file VMAs only their
// copy-on-written pages (private mappings of memfds and shared anonymous memory too),
// shared mappings none (their data is in the file or the shmem object), vvar and
// vsyscall none, the vDSO all of its pages. Memory is read with process_vm_readv in
// large batches into aligned buffers, /proc/PID/mem for pages the task cannot read
// itself (PROT_NONE).

import { closeSync, openSync, readSync } from "node:fs";
import { MAP } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import { PAGE_IS, presentPages } from "../../host-bridge/pagemap.js";
import { toU64Array, u64At, u64Halves } from "../../host-bridge/u64.js";
import type { Faults } from "./faults.js";
import type { PreCopy, PreData } from "./precopy.js";
import { PE_LAZY, PE_PRESENT, type PageTransport } from "./pagewriter.js";
import type { ShmemObject } from "./shmem.js";
import { VMA, type Vma } from "./vmas.js";

const PAGE = 4096;
const MAP_PRIVATE = 0x2;
const MAP_ANON = 0x20;
const MAP_LOCKED = 0x2000;
const MAP_HUGETLB = MAP.HUGETLB;
const NOTHING_COVERED = new BigUint64Array(0);
const NO_RUNS = new BigUint64Array(0);
/** Bytes per read batch (BUFFERS such buffers take turns between reading and writing). */
const CHUNK = 8 << 20;

export interface Segment {
  addr: number;
  len: number;
  flags: number;
  /** read through /proc/PID/mem (the VMA is not readable) */
  procMem: boolean;
  /** never compared with the parent: the vDSO, whose symbols a restore reads from this dump; pages written since a tracked parent */
  fresh?: boolean;
  /** copied before the freeze (precopy.ts): not read from the task again */
  pre?: PreData;
}

export interface PagePlan {
  segments: Segment[];
  scanned: number;
  /** pages to copy */
  pages: number;
  /**
   * Pages not copied: unchanged since the parent (write tracking), written as PE_PARENT;
   * (start, length) pairs in address order, one array per tracked VMA
   */
  parentRanges: BigUint64Array[];
  /** tracked pages not written that the parent has no entry for (copied) */
  holes: number;
  /**
   * Pages copied before the freeze that planPages left out of `segments` (asked to: a plan
   * that is captured, whose runs of them are made once the task is let go,
   * withPreCopied): each tracked VMA's pagemapSplit runs, of which those tagged > 0
   */
  late?: { runs: BigUint64Array; flags: number; pre: PreCopy }[];
}

/** criu's vma_entry_can_be_lazy: private anonymous memory a lazy-pages daemon can fill with userfaultfd. */
function lazyVma(v: Vma): boolean {
  return (v.flags & MAP_ANON) !== 0 && (v.flags & MAP_PRIVATE) !== 0 && (v.flags & (MAP_LOCKED | MAP_HUGETLB)) === 0 && (v.status & (VMA.VDSO | VMA.VVAR | VMA.VSYSCALL)) === 0;
}

/**
 * The page under each thread's stack pointer is not lazy: the task touches it as soon as
 * it runs, and a fault there only costs a round trip to the dump's host. This is what
 * criu's is_stack() meant (commit 5432a964d); its mask, `(sp ^ vaddr) & ~PAGE_MASK`,
 * compares the offsets within the page instead, so criu 4.2 marks that page lazy unless
 * the stack pointer is page-aligned, and then marks no page of any lazy VMA lazy at all
 * (the counter fixture's stack pointer page is PE_LAZY).
 */
function unlazyStackPages(segments: Segment[], stackPointers: readonly bigint[]): Segment[] {
  if (stackPointers.length === 0) return segments;
  const pages = [...new Set(stackPointers.map((sp) => Number(sp & ~BigInt(PAGE - 1))))].sort((a, b) => a - b);
  // The segments that hold a stack pointer's page, found by bisection: the others stay as
  // they are (a dump of scattered written pages has ten thousand runs, and a look at each
  // took milliseconds of the freeze).
  const hit = new Set<number>();
  for (const p of pages) {
    let lo = 0;
    let hi = segments.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (segments[mid]!.addr + segments[mid]!.len <= p) lo = mid + 1;
      else hi = mid;
    }
    const s = segments[lo];
    if (s && s.addr <= p && s.flags & PE_LAZY) hit.add(lo);
  }
  if (hit.size === 0) return segments;
  const out: Segment[] = [];
  segments.forEach((s, i) => {
    if (!hit.has(i)) {
      out.push(s);
      return;
    }
    let at = s.addr;
    for (const p of pages) {
      if (p < at || p >= s.addr + s.len) continue;
      if (p > at) out.push({ ...s, addr: at, len: p - at });
      out.push({ ...s, addr: p, len: PAGE, flags: s.flags & ~PE_LAZY });
      at = p + PAGE;
    }
    if (at < s.addr + s.len) out.push({ ...s, addr: at, len: s.addr + s.len - at });
  });
  return out;
}

/**
 * A --lazy-pages dump: the lazy runs of the plan lose PE_PRESENT (their data stays out
 * of the pages images, served to a lazy-pages daemon instead); returns them, to be
 * copied out of the task while it is frozen.
 */
export function takeLazy(plan: PagePlan): PagePlan {
  const lazy: PagePlan = { segments: [], scanned: 0, pages: 0, parentRanges: [], holes: 0 };
  for (const s of plan.segments) {
    if (!(s.flags & PE_LAZY)) continue;
    lazy.segments.push({ ...s });
    lazy.pages += s.len / PAGE;
    s.flags = PE_LAZY;
  }
  plan.pages -= lazy.pages;
  return lazy;
}

/**
 * The pages to dump, VMA by VMA. In the VMAs `tracked` picks (their writes tracked since
 * the parent dump, write-tracking.ts), only the pages written since are copied (`fresh`),
 * and those the parent's pagemap does not cover (`covered`: sorted (start, end) pairs);
 * the others go to `parentRanges`, found in one pass of the bridge (a region per written
 * run is too many objects for a task that stands frozen meanwhile). Of those, the pages
 * in `pre` were copied before the freeze (precopy.ts): written from that copy; with
 * `lateRuns` they are left out of the segments, in `late` (a run of a task's scattered
 * writes each, ten thousand objects made while it stands frozen: preCopiedPieces makes
 * them after).
 */
export function planPages(pid: number, vmas: readonly Vma[], tracked?: (v: Vma) => boolean, covered: BigUint64Array = NOTHING_COVERED, stackPointers: readonly bigint[] = [], pre?: PreCopy, lateRuns = false): PagePlan {
  const segments: Segment[] = [];
  const parentRanges: BigUint64Array[] = [];
  const late: NonNullable<PagePlan["late"]> = [];
  let scanned = 0;
  let pages = 0;
  let holes = 0;
  let preAt = 0;
  /** one per run of `pre`, shared by its pieces */
  const preData: PreData[] = [];
  for (const v of vmas) {
    if (v.status & (VMA.VSYSCALL | VMA.VVAR | VMA.FILE_SHARED | VMA.ANON_SHARED | VMA.SOCKET)) continue;
    // The kernel may drop a droppable VMA's pages at any time (they read back as zeros):
    // nothing of it is dumped, as criu does.
    if (v.flags & MAP.DROPPABLE) continue;
    const filePrivate = (v.status & VMA.FILE_PRIVATE) !== 0;
    const flags = PE_PRESENT | (lazyVma(v) ? PE_LAZY : 0);
    const procMem = (v.prot & 1) === 0;
    if (v.status & VMA.VDSO) {
      // Whole, present or not, as criu does: a restore reads the dumped vDSO's symbols
      // (criu's restorer reads them from the restored pages) to decide how to map it.
      segments.push({ addr: Number(v.start), len: Number(v.end - v.start), flags: PE_PRESENT, procMem, fresh: true });
      scanned += Number(v.end - v.start) / PAGE;
      pages += Number(v.end - v.start) / PAGE;
      continue;
    }
    if (tracked?.(v) === true) {
      const split = bridge().pagemapSplit(pid, v.start, v.end, covered, pre?.pairs ?? NO_RUNS, preAt);
      scanned += split.scanned;
      holes += split.holes;
      preAt = split.next;
      // the pages read now and those read before the freeze, in address order
      const h = u64Halves(split.runs);
      let held = false;
      for (let i = 0; i < split.runs.length; i += 3) {
        const addr = u64At(h, i);
        const len = u64At(h, i + 1);
        const tag = h[2 * (i + 2)]!;
        pages += len / PAGE;
        if (tag === 0) segments.push({ addr, len, flags, procMem, fresh: true });
        else if (lateRuns) held = true;
        else segments.push({ addr, len, flags, procMem, fresh: true, pre: preDataOf(preData, pre!, tag - 1) });
      }
      if (held) late.push({ runs: split.runs, flags, pre: pre! });
      if (split.parent.length) parentRanges.push(split.parent);
      continue;
    }
    // hugetlb pages are never left to the parent (criu's restorer reads a hugetlb VMA's
    // pages from this dump's pages image alone: such a VMA is not premapped).
    const huge = (v.flags & MAP_HUGETLB) !== 0;
    // anonymous memory smaps found all resident: one run, without a walk of its page table
    const all = v.allPresent === true && !filePrivate && !huge ? [{ start: Number(v.start), end: Number(v.end), categories: 0 }] : undefined;
    for (const r of all ?? presentPages(pid, Number(v.start), Number(v.end))) {
      const n = (r.end - r.start) / PAGE;
      scanned += n;
      if (r.categories & PAGE_IS.PFNZERO) continue;
      if (filePrivate && r.categories & PAGE_IS.FILE) continue;
      const last = segments[segments.length - 1];
      if (last && last.addr + last.len === r.start && last.flags === flags && last.procMem === procMem && !last.fresh && !huge) last.len += r.end - r.start;
      else segments.push({ addr: r.start, len: r.end - r.start, flags, procMem, ...(huge ? { fresh: true } : {}) });
      pages += n;
    }
  }
  return { segments: unlazyStackPages(segments, stackPointers), scanned, pages, parentRanges, holes, ...(late.length ? { late } : {}) };
}

/** Where run `j` of a pre-copy has its data (one object per run, shared by its pieces). */
function preDataOf(cache: PreData[], pre: PreCopy, j: number): PreData {
  return (cache[j] ??= { buf: pre.bufs[j]!, at: pre.runs[2 * j]! - pre.offs[j]! });
}

/** The pieces of pages copied before the freeze that planPages left in a plan's `late`, in address order. */
export function preCopiedPieces(late: NonNullable<PagePlan["late"]>): Segment[] {
  const out: Segment[] = [];
  // (every entry of one plan has the same pre-copy)
  const cache: PreData[] = [];
  for (const l of late) {
    const h = u64Halves(l.runs);
    for (let i = 0; i < l.runs.length; i += 3) {
      const tag = h[2 * (i + 2)]!;
      if (tag !== 0) out.push({ addr: u64At(h, i), len: u64At(h, i + 1), flags: l.flags, procMem: false, fresh: true, pre: preDataOf(cache, l.pre, tag - 1) });
    }
  }
  return out;
}

/** `plan` with the pieces it left in `late` among its segments again (a plan to be streamed, not captured). */
export function withLateSegments(plan: PagePlan): PagePlan {
  if (!plan.late) return plan;
  const pieces = preCopiedPieces(plan.late);
  const segments: Segment[] = [];
  let j = 0;
  for (const s of plan.segments) {
    while (j < pieces.length && pieces[j]!.addr < s.addr) segments.push(pieces[j++]!);
    segments.push(s);
  }
  while (j < pieces.length) segments.push(pieces[j++]!);
  const { late: _, ...rest } = plan;
  return { ...rest, segments };
}

/** The plan cut into pieces of at most `bytes` (page-aligned) of pages each. */
export function slicePlan(plan: PagePlan, bytes: number): PagePlan[] {
  const out: PagePlan[] = [];
  let cur: PagePlan = { segments: [], scanned: 0, pages: 0, parentRanges: [], holes: 0 };
  let size = 0;
  for (const s of plan.segments) {
    for (let at = 0; at < s.len; ) {
      const n = Math.min(s.len - at, bytes - size);
      cur.segments.push({ ...s, addr: s.addr + at, len: n });
      cur.pages += n / PAGE;
      size += n;
      at += n;
      if (size === bytes) {
        out.push(cur);
        cur = { segments: [], scanned: 0, pages: 0, parentRanges: [], holes: 0 };
        size = 0;
      }
    }
  }
  if (cur.segments.length) out.push(cur);
  return out;
}

export interface CopyProgress {
  (bytesDone: number): void;
}

/** A failure to read task memory (a native error or an injected fault) as the dump reports it. */
export function readFailed(e: unknown): unknown {
  if (!isNativeError(e) && (e as Error).name !== "InjectedFault") return e;
  const err = new Error(`reading task memory: ${(e as Error).message}`);
  return Object.assign(err, { cause: e, code: (e as NodeJS.ErrnoException).code });
}

/**
 * process_vm_readv of (addr, len) pairs, packed one after another into buf from `start`;
 * what it cannot read (a page the task cannot read after all) through /proc/PID/mem.
 */
export function readBatch(pid: number, ranges: readonly number[], buf: Buffer, start: number): void {
  let total = 0;
  for (let i = 1; i < ranges.length; i += 2) total += ranges[i]!;
  const r = bridge().processVmReadvBatch(pid, toU64Array(ranges), buf, start);
  if (r.bytes >= total) return;
  let off = start;
  for (let i = 0; i < ranges.length; i += 2) {
    const addr = ranges[i]!;
    const len = ranges[i + 1]!;
    const have = Math.max(0, Math.min(len, r.bytes - (off - start)));
    if (have < len) readMem(pid, addr + have, len - have, buf, off + have);
    off += len;
  }
}

/**
 * Buffers in turn: one is read into while the others are written. With O_DIRECT each write
 * waits for the disk, so several in flight keep it busy (libuv has 4 threads).
 */
const BUFFERS = 4;

/**
 * Memory populated while the pages stream out of a frozen task that is to run on (dump.ts):
 * once it can hold the pages not streamed yet, they are left to it (copied at memory speed,
 * the task let go, then written), so the task stands still for what the transport takes in
 * that time, not for all of it.
 */
export interface Spare {
  /** goes on populating, on another thread than the copy's, while it holds less than `bytes` */
  want(bytes: number): void;
  /** bytes it can take */
  readonly room: number;
}

export interface Copied {
  /** nanoseconds spent reading */
  readNs: bigint;
  /** the pages left to `spare`, not copied (their runs not given to the transport either) */
  rest?: PagePlan | undefined;
}

/**
 * Copies the planned pages into the transport, reading one chunk while the previous
 * ones are written; with `spare`, fills it while waiting for a write and stops once
 * it can hold the rest.
 */
export async function copyPages(pid: number, plan: PagePlan, out: PageTransport, faults: Faults, progress?: CopyProgress, spare?: Spare): Promise<Copied> {
  const b = bridge();
  // Buffers for what there is: a small process does not get 4 x 8 MiB (fifty of them made
  // V8 spend a fifth of a tree's dump in collections the external memory asked for).
  const total = plan.segments.reduce((n, s) => n + (s.flags & PE_PRESENT ? s.len : 0), 0);
  const chunk = Math.max(PAGE, Math.min(CHUNK, Math.ceil(total / PAGE) * PAGE));
  const bufs = Array.from({ length: Math.max(1, Math.min(BUFFERS, Math.ceil(total / chunk))) }, () => b.allocAligned(chunk));
  const pending: (Promise<void> | undefined)[] = bufs.map(() => undefined);
  let which = 0;
  let fill = 0;
  let readNs = 0n;
  let done = 0;
  /** bytes given to the transport (read or queued) */
  let taken = 0;
  const ranges: number[] = [];

  const flushRanges = (buf: Buffer): void => {
    // process_vm_readv of the queued ranges into buf[0, fill)
    if (ranges.length === 0) return;
    const total = ranges.reduce((s, v, i) => (i % 2 ? s + v : s), 0);
    faults.vmRead();
    faults.taskExit();
    readBatch(pid, ranges, buf, fill - total);
    ranges.length = 0;
  };

  const emit = async (): Promise<void> => {
    const buf = bufs[which]!;
    const t0 = process.hrtime.bigint();
    flushRanges(buf);
    readNs += process.hrtime.bigint() - t0;
    const len = fill;
    const w = out.write(buf, len).then(() => {
      done += len;
      progress?.(done);
    });
    // awaited when its buffer comes round again, or at the end: a failure meanwhile (the
    // copy waiting on an older write) is not an unhandled rejection, which would end the
    // process before the task is let go
    w.catch(() => undefined);
    pending[which] = w;
    which = (which + 1) % bufs.length;
    fill = 0;
    // The next buffer must be written out before it is filled again.
    spare?.want(total - taken);
    const prev = pending[which];
    pending[which] = undefined;
    await prev;
  };

  let rest: PagePlan | undefined;
  spare?.want(total);
  try {
    segments: for (const [i, s] of plan.segments.entries()) {
      // a lazy run of a --lazy-pages dump: an entry without data
      if (!(s.flags & PE_PRESENT)) {
        out.run({ vaddr: BigInt(s.addr), pages: s.len / PAGE, flags: s.flags });
        continue;
      }
      let at = s.addr;
      let left = s.len;
      while (left > 0) {
        if (fill === 0 && spare && spare.room >= total - taken) {
          const segments = [{ ...s, addr: at, len: left }, ...plan.segments.slice(i + 1)];
          rest = { segments, scanned: 0, pages: (total - taken) / PAGE, parentRanges: [], holes: 0 };
          break segments;
        }
        const n = Math.min(left, chunk - fill);
        // a run per piece: the transports join adjacent ones, and the rest may start at any piece
        out.run({ vaddr: BigInt(at), pages: n / PAGE, flags: s.flags });
        if (s.pre) {
          flushRanges(bufs[which]!);
          s.pre.buf.copy(bufs[which]!, fill, at - s.pre.at, at - s.pre.at + n);
        } else if (s.procMem) {
          const t0 = process.hrtime.bigint();
          flushRanges(bufs[which]!);
          faults.vmRead();
          readMem(pid, at, n, bufs[which]!, fill);
          readNs += process.hrtime.bigint() - t0;
        } else {
          ranges.push(at, n);
        }
        // fill counts the queued ranges before they are flushed: flushRanges places
        // them at fill - (their total).
        fill += n;
        taken += n;
        at += n;
        left -= n;
        if (fill === chunk) await emit();
        else if (ranges.length >= 2048) {
          const t0 = process.hrtime.bigint();
          flushRanges(bufs[which]!);
          readNs += process.hrtime.bigint() - t0;
        }
      }
    }
    if (fill > 0) await emit();
    await Promise.all(pending.filter((p) => p !== undefined));
  } catch (e) {
    await Promise.allSettled(pending.filter((p) => p !== undefined));
    throw readFailed(e);
  }
  return { readNs, rest };
}

export function readMem(pid: number, addr: number, len: number, buf: Buffer, off: number): void {
  let got = 0;
  while (got < len) {
    const n = bridge().readProcMem(pid, addr + got, len - got, buf, off + got);
    if (n <= 0) throw new Error(`/proc/${pid}/mem: short read at 0x${(addr + got).toString(16)}`);
    got += n;
  }
}

/** Copies the data pages of a shared memory object (memfd or shared anonymous mapping). Returns pages written. */
export async function copyShmem(obj: ShmemObject, out: PageTransport, faults: Faults): Promise<{ scanned: number; written: number }> {
  const b = bridge();
  const fd = openSync(obj.readPath, "r");
  try {
    const size = Number(obj.size);
    const buf = b.allocAligned(CHUNK);
    let written = 0;
    let off = 0;
    while (off < size) {
      const data = b.seekData(fd, off);
      if (data < 0 || data >= size) break;
      let hole = b.seekHole(fd, data);
      if (hole < 0 || hole > size) hole = size;
      const start = Math.floor(data / PAGE) * PAGE;
      const end = Math.min(Math.ceil(hole / PAGE) * PAGE, Math.ceil(size / PAGE) * PAGE);
      out.run({ vaddr: BigInt(start), pages: (end - start) / PAGE, flags: PE_PRESENT });
      for (let p = start; p < end; ) {
        const n = Math.min(CHUNK, end - p);
        buf.fill(0, 0, n);
        faults.vmRead();
        let got = 0;
        while (got < n) {
          const r = readSync(fd, buf, got, n - got, p + got);
          if (r === 0) break;
          got += r;
        }
        await out.write(buf, n);
        p += n;
      }
      written += (end - start) / PAGE;
      off = end;
    }
    return { scanned: Math.ceil(size / PAGE), written };
  } finally {
    closeSync(fd);
  }
}
