// Copying a frozen task's pages into tscriu's own memory, so that the task can be let go
// before the pages are written (dump -R, -s, pre-dump): it then stands still only while
// its pages are copied (process_vm_readv, ~0.1 s per GiB here), not while they go to disk
// (1-2 s per GiB here). The buffers are allocated and populated before the freeze, sized
// from the tree's anonymous memory; a task with more pages to dump than the memory tscriu
// may hold is dumped the old way (its pages written while it is frozen).
//
// Fresh memory is not free: this VM's host backs it page by page, and populating 1 GiB
// took 0.1-0.3 s on a quiet machine but 1.5-4 s on a new one or under load (where the
// pages file, written with O_DIRECT, needs no fresh memory at all: 0.3-0.6 s per GiB);
// memory freed moments before comes at 0.05 s per GiB. Small pages or huge ones may come
// faster (host-bridge's memory.c, which also makes the populate cost what the memory
// costs): huge ones are tried when small ones come slowly, and the faster kind kept
// (Populator). Populating is timed buffer by buffer: once it goes slower than writing the
// pages while frozen (about 0.5 s per GiB), it stops, and the pages are written while
// frozen instead, into the pages file and, on the thread pool beside them, into a spare
// grown from the buffers populated so far: the task is let go as soon as the spare holds
// the pages not written yet (memory.ts, copyPages). TSCRIU_CAPTURE=always|never
// overrides that guess (benchmarks, tests).

import { readFileSync } from "node:fs";
import { bridge } from "../../host-bridge/load.js";
import type { Faults } from "./faults.js";
import { preCopiedPieces, readBatch, readMem, readFailed, type PagePlan, type Segment, type Spare } from "./memory.js";
import { threadsAndChildren } from "./proc.js";
import { anonWritableLine } from "./vmas.js";

const PAGE = 4096;
/** One buffer of the pool: big enough for few syscalls, small enough to waste little. */
export const CAPTURE_CHUNK = 64 << 20;
/** The first PROBES buffers of a pool, which say how fast memory comes, are this big at most. */
const PROBE_CHUNK = 8 << 20;
const PROBES = 4;
/** The smallest buffer of a pool: pages beyond a small estimate come in buffers this big. */
const SMALL_CHUNK = 1 << 20;
/** A spare pool's buffers (populated on the thread pool: few jobs, each short beside the stream). */
const SPARE_CHUNK = 8 << 20;
/** Populated before a spare's pace is judged. */
const SPARE_PROBE = 16 << 20;
/**
 * Seconds per GiB to write pages while frozen (O_DIRECT, reading and writing overlapped),
 * measured here: 0.37-0.55 s frozen for 1 GiB with TSCRIU_CAPTURE=never (2026-12-05).
 */
const STREAM_S_PER_GIB = 0.5;
/** A spare stops growing when memory comes slower than this (seconds per GiB). */
const SPARE_S_PER_GIB = 2;
/** Small pages that come this fast (seconds per GiB) are kept without trying huge ones. */
const SMALL_PAGES_FAST = 0.5;
/** The buffer of a run that has no room (written in place by a snapshot). */
const NO_ROOM = Buffer.alloc(0);

/** A run of pages copied out of the task: its data at buf[off, off + pages * 4096). */
export interface CapturedRun {
  vaddr: number;
  pages: number;
  flags: number;
  /** never written as PE_PARENT (the vDSO: a restore reads its symbols from this dump) */
  fresh: boolean;
  buf: Buffer;
  off: number;
}

export interface Captured {
  pid: number;
  runs: CapturedRun[];
  pages: number;
  scanned: number;
  /** runs given room but not read yet (a write-protect snapshot copies them later) */
  reserved: Set<number>;
  /** pages copied before the freeze whose runs are not made yet (PagePlan.late: withPreCopied) */
  late?: PagePlan["late"];
}

/**
 * Makes the runs of the pages copied before the freeze that the plan left out (a task's
 * scattered writes: ten thousand runs, made once it is let go), among the others in
 * address order; the indices in `reserved` follow their runs.
 */
export function withPreCopied(c: Captured): void {
  if (!c.late) return;
  const pieces = preCopiedPieces(c.late);
  c.late = undefined;
  const runs: CapturedRun[] = [];
  const reserved = new Set<number>();
  let j = 0;
  for (const [i, r] of c.runs.entries()) {
    for (; j < pieces.length && pieces[j]!.addr < r.vaddr; j++) runs.push(preRun(pieces[j]!));
    if (c.reserved.has(i)) reserved.add(runs.length);
    runs.push(r);
  }
  for (; j < pieces.length; j++) runs.push(preRun(pieces[j]!));
  c.runs = runs;
  c.reserved = reserved;
}

/** The run of a piece copied before the freeze: it points at that copy. */
function preRun(s: Segment): CapturedRun {
  return { vaddr: s.addr, pages: s.len / PAGE, flags: s.flags, fresh: true, buf: s.pre!.buf, off: s.addr - s.pre!.at };
}

/**
 * Buffers of fresh memory in small or huge pages, whichever comes faster now, timed. The
 * pace of each kind follows its latest buffers (half weight to the last one): memory
 * freed moments ago comes first and fast, and a pool that goes on past it meets slower
 * memory, where the other kind may come faster.
 */
class Populator {
  /** Seconds per GiB of [small pages, huge pages]: NaN until tried. */
  private readonly paces = [NaN, NaN];
  populated = 0;

  /** Seconds per GiB of the kind used from now on. */
  get pace(): number {
    return this.paces[this.kind()]!;
  }

  /** Its pace says what memory costs now: small pages came fast, or both kinds were tried. */
  get settled(): boolean {
    return this.paces[0]! <= SMALL_PAGES_FAST || !Number.isNaN(this.paces[1]);
  }

  /** Small pages until they come slowly, then huge ones while those come faster. */
  private kind(): 0 | 1 {
    const [small, huge] = this.paces as [number, number];
    return small > SMALL_PAGES_FAST && !(huge >= small) ? 1 : 0;
  }

  describe(): string {
    const name = ["small", "huge"] as const;
    return this.paces.flatMap((p, k) => (Number.isNaN(p) ? [] : [`${name[k]} pages ${p.toFixed(2)} s/GiB`])).join(", ");
  }

  alloc(size: number): Buffer {
    const kind = this.kind();
    const t0 = process.hrtime.bigint();
    const b = bridge().allocPopulated(size, kind === 1);
    this.timed(kind, size, Number(process.hrtime.bigint() - t0));
    return b;
  }

  /** alloc() on the thread pool, timed there. */
  async allocAsync(size: number): Promise<Buffer> {
    const kind = this.kind();
    const { buffer, ns } = await bridge().allocPopulatedAsync(size, kind === 1);
    this.timed(kind, size, ns);
    return buffer;
  }

  private timed(kind: 0 | 1, size: number, ns: number): void {
    const pace = (ns / 1e9) * ((1 << 30) / size);
    const was = this.paces[kind]!;
    this.paces[kind] = Number.isNaN(was) ? pace : (was + pace) / 2;
    this.populated += size;
  }
}

/** Populated buffers, taken one by one while the task is frozen. */
export class CapturePool implements Spare {
  private readonly free: Buffer[] = [];
  /** the buffers this pool populated or was given: recycle() takes back no others */
  private readonly owned = new WeakSet<Buffer>();
  /** bytes taken beyond what was populated before the freeze */
  extra = 0;
  /** holds what it was asked for (forCapture stops early when memory comes slowly) */
  complete = true;
  /** grow() stopped: memory came slowly, or not at all, or the limit was reached */
  private full = false;
  /** the most bytes grow() populates in all */
  private limit = Infinity;
  private populator = new Populator();
  /** the bytes a spare is to hold (want()) */
  private wanted = 0;
  /** a spare's buffer is being populated on the thread pool */
  private growing = false;
  private dropped = false;

  constructor(
    bytes: number,
    readonly chunk = CAPTURE_CHUNK,
  ) {
    for (let n = 0; n < bytes; n += chunk) this.free.push(this.own(this.populator.alloc(chunk)));
  }

  private own(b: Buffer): Buffer {
    this.owned.add(b);
    return b;
  }

  /**
   * Every buffer written once from user space too (see parent.ts' stagingMemory): for a
   * pool whose pages are read by JavaScript (compared, staged) while the tasks are frozen.
   */
  touched(): this {
    for (const b of this.free) b.fill(0);
    return this;
  }

  /** One more populated buffer of `size`. */
  private populate(size: number): void {
    this.free.push(this.own(this.populator.alloc(size)));
  }

  private get populated(): number {
    return this.populator.populated;
  }

  /** Seconds per GiB that populating takes now. */
  private get pace(): number {
    return this.populator.pace;
  }

  /**
   * A pool for `bytes` of pages, populated a buffer at a time as long as memory comes
   * faster than the pages would be written while the task is frozen (see the top of this
   * file); `complete` says whether it got there. Undefined with TSCRIU_CAPTURE=never.
   */
  static forCapture(bytes: number, log?: { info(m: string): void }, force = false): CapturePool | undefined {
    const mode = force ? "always" : (process.env["TSCRIU_CAPTURE"] ?? "auto");
    if (mode === "never") return undefined;
    // The estimate is taken while the task runs, and a buffer taken while it is frozen costs
    // its populating: a little more is populated (a 256 MiB task had 12 KiB more at the
    // freeze, and populated 64 MiB while frozen for them). A small task gets one buffer of
    // its own size and a quarter more, not a chunk of 64 MiB (that alone took 0.1 s of a
    // small dump).
    const big = bytes > CAPTURE_CHUNK;
    const chunk = big ? CAPTURE_CHUNK : Math.min(CAPTURE_CHUNK, Math.ceil((bytes * 1.25 + SMALL_CHUNK) / PAGE) * PAGE);
    const target = big ? bytes + Math.ceil(bytes / 64 / PAGE) * PAGE + SMALL_CHUNK : chunk;
    const pool = new CapturePool(0, chunk);
    // Judged once the kind of pages is chosen (after one or two buffers), then after every
    // buffer, by the pace of the latest ones (Populator): memory freed moments ago comes at
    // 0.05 s per GiB here and the rest at 1-4, so a first buffer that came fast says little;
    // one buffer's pace alone is noise (a huge page compacted). A big pool's first buffers
    // are small: at 2 s per GiB two probes of 64 MiB took a quarter of a second before the
    // freeze, only to find that the pages should stream. The last buffer is no bigger than
    // what is left (a 256 MiB task got 320 MiB), and a pool that holds all it was asked for
    // is complete, however slowly its last buffer came.
    for (let i = 0; pool.populated < target; i++) {
      pool.populate(Math.min(big && i < PROBES ? PROBE_CHUNK : chunk, target - pool.populated));
      if (pool.populated >= target) break;
      if (mode !== "always" && big && pool.populator.settled && pool.pace > STREAM_S_PER_GIB) {
        log?.info(`fresh memory comes slowly here now (${pool.populator.describe()}): ${pool.populated} of ${target} bytes populated, the other pages are written while the task is frozen`);
        pool.complete = false;
        break;
      }
    }
    if (pool.complete) log?.info(`${pool.populated} bytes populated for the pages (${pool.populator.describe()})`);
    return pool;
  }

  /**
   * A pool grown while the pages stream (memory.ts' Spare), starting from what this one
   * holds (a pool forCapture stopped early) or from nothing, in buffers of SPARE_CHUNK
   * populated on the thread pool while the main thread reads the pages.
   */
  static spare(limit: number, from?: CapturePool): CapturePool | undefined {
    if (process.env["TSCRIU_CAPTURE"] === "never") return undefined;
    const pool = new CapturePool(0, SPARE_CHUNK);
    if (from) {
      for (const b of from.free.splice(0)) pool.free.push(pool.own(b));
      pool.populator = from.populator;
    }
    pool.limit = limit;
    return pool;
  }

  get room(): number {
    return this.free.reduce((n, b) => n + b.length, 0);
  }

  want(bytes: number): void {
    this.wanted = bytes;
    this.grow();
  }

  /** One more buffer populated on the thread pool, while the copy reads on the main thread. */
  private grow(): void {
    if (this.growing || this.full || this.room >= this.wanted) return;
    if (this.populated + SPARE_CHUNK > this.limit) {
      this.full = true;
      return;
    }
    this.growing = true;
    this.populator.allocAsync(SPARE_CHUNK).then(
      (b) => {
        this.growing = false;
        if (this.dropped) return;
        this.free.push(this.own(b));
        // Memory that comes slower than the pages stream takes more CPU from the stream than
        // it saves (on 2 cores under load, fresh memory came at 3-5 s per GiB).
        if (this.populated >= SPARE_PROBE && this.pace > SPARE_S_PER_GIB && process.env["TSCRIU_CAPTURE"] !== "always") this.full = true;
        this.grow();
      },
      () => {
        // no more memory now: the pages stream as they would without a spare
        this.growing = false;
        this.full = true;
      },
    );
  }

  take(): Buffer {
    const b = this.free.pop();
    if (b) return b;
    // (while frozen: a buffer no bigger than a probe)
    const size = Math.min(this.chunk, PROBE_CHUNK);
    this.extra += size;
    return this.own(this.populator.alloc(size));
  }

  /** gives the buffers of a capture back once its pages are written (not those it does not own: a pre-copy's) */
  recycle(c: Captured): void {
    for (const b of new Set(c.runs.map((r) => r.buf))) if (this.owned.has(b)) this.free.push(b);
    c.runs.length = 0;
  }

  /** lets the GC have what was not used, and what is being populated now once it is */
  drop(): void {
    this.dropped = true;
    this.free.length = 0;
  }
}

/** /proc/meminfo's MemAvailable, bytes (0 when unknown). */
function memAvailable(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * The most page data tscriu holds in memory at once: half of what the system has
 * available, so that copying a task never pushes the machine into reclaim.
 */
export function captureLimit(): number {
  return Math.floor(memAvailable() / 2);
}

/** The sum of `each` over the processes of the tree under pid (those gone meanwhile count 0). */
function sumTree(pid: number, each: (p: number) => number): number {
  let bytes = 0;
  const seen = new Set<number>();
  const visit = (p: number): void => {
    if (seen.has(p) || seen.size > 4096) return;
    seen.add(p);
    try {
      bytes += each(p);
      for (const c of threadsAndChildren(p).children) visit(c);
    } catch {
      // gone, or a zombie: nothing to copy
    }
  };
  visit(pid);
  return bytes;
}

/** The anonymous memory of the tree under pid (smaps_rollup), read before the freeze to size the pool. */
export function estimateAnon(pid: number): number {
  return sumTree(pid, (p) => {
    const m = /^Anonymous:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  });
}

/**
 * The anonymous memory of the tree under pid outside writable private anonymous VMAs
 * (smaps): what a write-protect snapshot still copies while the task is frozen
 * (copy-on-written pages of private file mappings, read-only anonymous memory).
 */
export function estimateUnprotected(pid: number): number {
  return sumTree(pid, (p) => {
    let bytes = 0;
    let counted = false;
    for (const line of readFileSync(`/proc/${p}/smaps`, "utf8").split("\n")) {
      const vma = /^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
      if (vma) {
        const [, perms, inode, path] = vma;
        counted = !anonWritableLine(perms!, inode!, path!);
        continue;
      }
      if (counted && line.startsWith("Anonymous:")) bytes += Number(/(\d+) kB/.exec(line)?.[1] ?? 0) * 1024;
    }
    return bytes;
  });
}

/**
 * Copies the planned pages of a frozen task into buffers of the pool; the segments
 * `later` picks are not read, and get their room only with `laterRoom` (a snapshot that
 * copies them into it; one that writes them in place needs none).
 */
export function capturePages(pid: number, plan: PagePlan, pool: CapturePool, faults: Faults, later?: (s: Segment) => boolean, laterRoom = true): Captured {
  const runs: CapturedRun[] = [];
  const reserved = new Set<number>();
  let buf = pool.take();
  let fill = 0;
  let queuedFrom = 0;
  const ranges: number[] = [];
  const flush = (): void => {
    if (ranges.length === 0) return;
    faults.vmRead();
    faults.taskExit();
    readBatch(pid, ranges, buf, queuedFrom);
    ranges.length = 0;
  };
  try {
    for (const s of plan.segments) {
      if (s.pre) {
        runs.push(preRun(s));
        continue;
      }
      let at = s.addr;
      let left = s.len;
      while (left > 0) {
        if (later?.(s) && !laterRoom) {
          reserved.add(runs.length);
          runs.push({ vaddr: at, pages: left / PAGE, flags: s.flags, fresh: false, buf: NO_ROOM, off: 0 });
          break;
        }
        if (fill === buf.length) {
          flush();
          buf = pool.take();
          fill = 0;
        }
        const n = Math.min(left, buf.length - fill);
        if (later?.(s)) {
          // the queued ranges are read packed one after another: not across this gap
          flush();
          reserved.add(runs.length);
        } else if (s.procMem) {
          flush();
          faults.vmRead();
          readMem(pid, at, n, buf, fill);
        } else {
          if (ranges.length === 0) queuedFrom = fill;
          ranges.push(at, n);
          if (ranges.length >= 2048) flush();
        }
        runs.push({ vaddr: at, pages: n / PAGE, flags: s.flags, fresh: s.fresh === true, buf, off: fill });
        fill += n;
        at += n;
        left -= n;
      }
    }
    flush();
  } catch (e) {
    throw readFailed(e);
  }
  return { pid, runs, pages: plan.pages, scanned: plan.scanned, reserved, ...(plan.late ? { late: plan.late } : {}) };
}
