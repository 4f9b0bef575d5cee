// The parent of an incremental dump (--prev-images-dir) and writing the copied pages
// against it. This kernel has no soft-dirty bit (nor has arm64), so what changed since
// the parent is found by content: each copied page is compared byte for byte with the
// page the parent chain holds at that address (read from the parent's pages files), and
// only an identical page is written as PE_PARENT. A hash of the parent's pages would
// save reading them, but a collision would then restore a stale page without a word;
// the full comparison cannot be wrong, costs a read of the parent's pages (from the page
// cache after a pre-dump; done after the task is let go), and needs nothing from the
// task between passes: a pid reused, a page written and written back, a pass that
// failed half-way are all seen for what they are.

import { closeSync, existsSync, fstatSync, openSync, readdirSync, realpathSync, statSync, symlinkSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { PE_PARENT } from "../../images/pages.js";
import { ImageError } from "../../images/errors.js";
import { RestoreError } from "../restore/errors.js";
import { MAX_CHAIN, PageResolver, type PageSeg } from "../restore/pagesegs.js";
import type { Captured } from "./capture.js";
import { DumpError } from "./errors.js";
import type { PageTransport } from "./pagewriter.js";

const PAGE = 4096;
/** The parent's pages are read in pieces of this size to be compared. */
const SCRATCH = 8 << 20;
/** Longest single write, and how many are in flight at once (libuv has 4 threads). */
const WRITE_MAX = 16 << 20;
const IN_FLIGHT = 4;
/** Pieces shorter than this go through a staging buffer of STAGE bytes. */
const DIRECT_MIN = 1 << 20;
const STAGE = 2 << 20;

/**
 * Checks --prev-images-dir before anything is touched: relative to the images dir (as
 * criu reads it), an existing directory that holds images of a dump or pre-dump.
 * Returns its path.
 */
export function checkParentDir(pid: number, imagesDir: string, prev: string, pagesRemote = false): string {
  // Relative to where the images dir really is (an RPC client's dir comes as /proc/PID/fd/N),
  // as the parent link made from it resolves.
  let base = imagesDir;
  try {
    base = realpathSync(imagesDir);
  } catch {
    // made by the dump later: as given
  }
  const path = resolve(base, prev);
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new DumpError("parent", pid, `--prev-images-dir ${prev} (${path}) does not exist: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if (!isDir) throw new DumpError("parent", pid, `--prev-images-dir ${prev} (${path}) is not a directory`);
  const names = readdirSync(path);
  // With --page-server the pagemaps are on the server: the inventory is here.
  if (!names.includes("inventory.img") || (!pagesRemote && !names.some((n) => /^pagemap-\d+\.img$/.test(n)))) {
    throw new DumpError("parent", pid, `--prev-images-dir ${prev} (${path}) holds no images of a dump or pre-dump (no inventory.img${pagesRemote ? "" : " and pagemap-PID.img"})`);
  }
  return path;
}

/** The `parent` link criu makes in the images dir: the --prev-images-dir value as given. */
export function linkParent(pid: number, imagesDir: string, prev: string): void {
  try {
    symlinkSync(prev, join(imagesDir, "parent"));
  } catch (e) {
    throw new DumpError("parent", pid, `cannot make the parent link in ${imagesDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** The parent chain's view of one pagemap, or undefined when the chain has no such pagemap. */
export function parentPages(imagesDir: string, pagemapName: string, pid: number): PageResolver | undefined {
  if (!existsSync(join(imagesDir, "parent"))) return undefined;
  // Level 0 of the resolver is the images dir itself: start one up, at the parent.
  return new PageResolver(join(imagesDir, "parent"), pagemapName, pid, true);
}

/**
 * Before the freeze of a default dump on top of a parent: the parent chain's images on
 * disk. Pre-dumps do not sync theirs, and the promise that nothing is killed before its
 * images are on disk covers the pages the dump leaves to its parents (`PE_PARENT`). One
 * syncfs per file system of the chain; on these VMs that is the host's flush of what the
 * pre-dumps wrote (0.1-0.6 s), which the freeze's own sync then does not wait for.
 * Returns the number of file systems synced.
 */
export function syncParentChain(imagesDir: string): number {
  const devs = new Set<bigint>();
  let link = join(imagesDir, "parent");
  for (let i = 0; i < MAX_CHAIN; i++) {
    let dir: string;
    try {
      dir = realpathSync(link);
    } catch {
      // the chain ends (a broken link is reported where the pages are looked up)
      break;
    }
    const fd = openSync(dir, "r");
    try {
      const dev = fstatSync(fd, { bigint: true }).dev;
      if (!devs.has(dev)) {
        devs.add(dev);
        bridge().syncfs(fd);
      }
    } finally {
      closeSync(fd);
    }
    link = join(dir, "parent");
  }
  return devs.size;
}

export interface WriteStats {
  written: number;
  /** pages found unchanged in the parent (PE_PARENT) */
  skipped: number;
}

/**
 * Staging buffers for the Writers of a default dump with a parent, which stages its
 * scattered pages while the tasks are frozen: made before the freeze and written once
 * from user space. On these PVM guests the first user-space write to each page costs
 * ~6 µs however the memory was populated (8 MiB copied page by page: 13-20 ms the first
 * time, 1 ms after). Buffers of 2 MiB, not 8: less memory to touch, and O_DIRECT writes of
 * 2 MiB keep the disk as busy.
 */
export function stagingMemory(): Buffer[] {
  return Array.from({ length: IN_FLIGHT }, () => bridge().allocAligned(STAGE).fill(0));
}

/**
 * Queues writes of page data, a few in flight. Adjacent pieces of one buffer are joined;
 * small pieces (the pages a task changed since its parent, scattered) are gathered into a
 * staging buffer first: written one by one with O_DIRECT, each would wait for the disk
 * (a chain of a 1 GiB task took 10-20 s that way).
 */
class Writer {
  private pending: { buf: Buffer; off: number; len: number } | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stage: Buffer[];
  private readonly stageBusy: (Promise<void> | undefined)[] = [];
  private cur = 0;
  private fill = 0;
  /** the first write that failed: every later call throws it */
  private error: Error | undefined;
  done = 0;

  /** `stage`: staging buffers made ahead (stagingMemory), else made on first use */
  constructor(
    private readonly out: PageTransport,
    private readonly progress: (bytes: number) => void,
    stage: readonly Buffer[] = [],
  ) {
    this.stage = [...stage];
  }

  async add(buf: Buffer, off: number, len: number): Promise<void> {
    if (this.error !== undefined) throw this.error;
    if (len < DIRECT_MIN) {
      await this.issue();
      if (this.fill + len > STAGE) await this.flushStage();
      if (this.stage.length <= this.cur) this.stage.push(bridge().allocAligned(STAGE));
      buf.copy(this.stage[this.cur]!, this.fill, off, off + len);
      this.fill += len;
      return;
    }
    await this.flushStage();
    const p = this.pending;
    if (p && p.buf === buf && p.off + p.len === off && p.len + len <= WRITE_MAX) {
      p.len += len;
      return;
    }
    await this.issue();
    this.pending = { buf, off, len };
  }

  /** Starts a write (out.write takes its place in the file before its first await: order is kept). */
  private start(data: Buffer): Promise<void> {
    const w = this.out.write(data, data.length).then(
      () => {
        this.done += data.length;
        this.progress(this.done);
      },
      (e: unknown) => {
        this.error ??= e instanceof Error ? e : new Error(String(e));
      },
    );
    this.inFlight.add(w);
    void w.finally(() => this.inFlight.delete(w));
    return w;
  }

  private async issue(): Promise<void> {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    void this.start(p.buf.subarray(p.off, p.off + p.len));
    if (this.inFlight.size >= IN_FLIGHT) await Promise.race(this.inFlight);
    if (this.error !== undefined) throw this.error;
  }

  private async flushStage(): Promise<void> {
    if (this.fill === 0) return;
    const w = this.start(this.stage[this.cur]!.subarray(0, this.fill));
    this.stageBusy[this.cur] = w;
    this.cur = (this.cur + 1) % IN_FLIGHT;
    this.fill = 0;
    // the next staging buffer is filled again only once its write is done
    const prev = this.stageBusy[this.cur];
    this.stageBusy[this.cur] = undefined;
    if (prev) await prev;
    if (this.error !== undefined) throw this.error;
  }

  /** Starts what is queued (its place in the file is taken), without waiting for it. */
  async seal(): Promise<void> {
    await this.issue();
    await this.flushStage();
  }

  async flush(): Promise<void> {
    await this.issue();
    await this.flushStage();
    await Promise.all(this.inFlight);
    if (this.error !== undefined) throw this.error;
  }

  async abort(): Promise<void> {
    this.pending = undefined;
    await Promise.allSettled(this.inFlight);
  }
}

/**
 * Reads of a parent's pages file through a window of SCRATCH bytes: the pages a run needs
 * lie at increasing offsets, often close together (the parent's own pages between its
 * parent's), so one read serves many.
 */
class ParentFile {
  private readonly buf = bridge().allocAligned(SCRATCH);
  private start = 0;
  private len = 0;

  constructor(private readonly fh: FileHandle, readonly path: string) {}

  /** The bytes [off, off + n) (n <= SCRATCH) as buf[at, at + n). */
  async get(off: number, n: number, pid: number): Promise<{ buf: Buffer; at: number }> {
    if (off < this.start || off + n > this.start + this.len) {
      this.start = off;
      this.len = 0;
      while (this.len < n) {
        const { bytesRead } = await this.fh.read(this.buf, this.len, SCRATCH - this.len, off + this.len);
        if (bytesRead === 0) break;
        this.len += bytesRead;
      }
      if (this.len < n) throw new DumpError("parent", pid, `${this.path} ends before offset ${off + n} (the parent's pagemap says its pages are there)`);
    }
    return { buf: this.buf, at: off - this.start };
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** A damaged parent chain as this dump's error, naming the file (other errors as they are). */
function chainError(e: unknown, pid: number): unknown {
  if (!(e instanceof RestoreError) && !(e instanceof ImageError)) return e;
  // a RestoreError's message starts with the restore's own "restore: plan of pid N failed: "
  const why = e instanceof RestoreError ? e.message.slice(e.message.indexOf("failed: ") + 8) : e.message;
  return new DumpError("parent", pid, `the parent chain cannot be read: ${why}`, { cause: e });
}

/** The parent chain's segments for a run; a damaged chain is this dump's error, naming the file. */
async function locate(parent: PageResolver, pid: number, vaddr: number, pages: number): Promise<PageSeg[]> {
  try {
    return await parent.locate(BigInt(vaddr), pages);
  } catch (e) {
    throw chainError(e, pid);
  }
}

/** Every pagemap of `pid`'s parent chain read now, before the freeze; a damaged chain fails as locate() says. */
export async function preloadParent(parent: PageResolver, pid: number): Promise<void> {
  try {
    await parent.preload();
  } catch (e) {
    throw chainError(e, pid);
  }
}

/**
 * Writes copied pages to `out`, one capture after another: pages the parent chain holds
 * with the same bytes as a PE_PARENT entry, the others with their data. Its buffers (the
 * parent's windows, the staging buffers) serve every capture: fresh memory costs here.
 */
export class PageSink {
  private readonly w: Writer;
  private readonly files = new Map<string, ParentFile>();
  readonly stats: WriteStats = { written: 0, skipped: 0 };
  /** the next of `unchanged`: array, then pair */
  private ua = 0;
  private up = 0;

  /**
   * `unchanged`: pages known unchanged since the parent (write tracking), (start, length)
   * pairs in address order, written as PE_PARENT entries between the runs.
   */
  constructor(
    private readonly out: PageTransport,
    private readonly parent: PageResolver | undefined,
    progress: (bytes: number) => void = () => undefined,
    private readonly unchanged: readonly BigUint64Array[] = [],
    stage?: readonly Buffer[],
  ) {
    this.w = new Writer(out, progress, stage);
  }

  /** Writes the unchanged ranges that start below `until` (all with Infinity). */
  private unchangedBelow(until: number): void {
    for (; this.ua < this.unchanged.length; this.ua++, this.up = 0) {
      const a = this.unchanged[this.ua]!;
      for (; this.up < a.length; this.up += 2) {
        if (Number(a[this.up]!) >= until) return;
        const pages = Number(a[this.up + 1]!) / PAGE;
        this.out.run({ vaddr: a[this.up]!, pages, flags: PE_PARENT });
        this.stats.skipped += pages;
      }
    }
  }

  private async present(vaddr: number, pages: number, flags: number, buf: Buffer, off: number): Promise<void> {
    this.out.run({ vaddr: BigInt(vaddr), pages, flags });
    this.stats.written += pages;
    await this.w.add(buf, off, pages * PAGE);
  }

  /**
   * Queues the runs of `c` (their buffers stay in use until drain()). Its reserved runs
   * (not copied: a write-protect snapshot writes them in place) get their pagemap entry
   * and their place in the pages file only; returned as (addr, length, file offset)
   * triples, with the file's fd. Reserved runs need a transport with hole() and no parent.
   */
  async add(c: Captured): Promise<{ holes: bigint[]; fd: number }> {
    const parent = this.parent;
    const holes: bigint[] = [];
    let fd = -1;
    for (const [i, r] of c.runs.entries()) {
      this.unchangedBelow(r.vaddr);
      if (c.reserved.has(i)) {
        if (!this.out.hole || parent) throw new Error("reserved pages need a local pages file and no parent");
        this.out.run({ vaddr: BigInt(r.vaddr), pages: r.pages, flags: r.flags });
        this.stats.written += r.pages;
        await this.w.seal();
        const place = this.out.hole(r.pages * PAGE);
        fd = place.fd;
        const at = place.at;
        holes.push(BigInt(r.vaddr), BigInt(r.pages * PAGE), BigInt(at));
        continue;
      }
      if (!parent || r.fresh) {
        await this.present(r.vaddr, r.pages, r.flags, r.buf, r.off);
        continue;
      }
      for (const seg of await locate(parent, c.pid, r.vaddr, r.pages)) {
        const at = Number(seg.vaddr) - r.vaddr;
        if (seg.file === "") {
          await this.present(Number(seg.vaddr), seg.len / PAGE, r.flags, r.buf, r.off + at);
          continue;
        }
        let pf = this.files.get(seg.file);
        if (!pf) this.files.set(seg.file, (pf = new ParentFile(await open(seg.file, "r"), seg.file)));
        for (let done = 0; done < seg.len; ) {
          const n = Math.min(SCRATCH, seg.len - done);
          const { buf: scratch, at: base } = await pf.get(seg.off + done, n, c.pid);
          // Runs of equal and of changed pages, each written as one entry.
          const mine = r.off + at + done;
          let from = 0;
          let same = scratch.compare(r.buf, mine, mine + PAGE, base, base + PAGE) === 0;
          for (let p = PAGE; p <= n; p += PAGE) {
            const eq = p < n ? scratch.compare(r.buf, mine + p, mine + p + PAGE, base + p, base + p + PAGE) === 0 : !same;
            if (eq === same) continue;
            const vaddr = Number(seg.vaddr) + done + from;
            if (same) {
              this.out.run({ vaddr: BigInt(vaddr), pages: (p - from) / PAGE, flags: PE_PARENT });
              this.stats.skipped += (p - from) / PAGE;
            } else {
              await this.present(vaddr, (p - from) / PAGE, r.flags, r.buf, mine + from);
            }
            from = p;
            same = eq;
          }
          done += n;
        }
      }
    }
    return { holes, fd };
  }

  /** Waits until every write queued so far is done: the captured buffers may be used again. */
  async drain(): Promise<void> {
    await this.w.flush();
  }

  async finish(): Promise<WriteStats> {
    this.unchangedBelow(Infinity);
    try {
      await this.w.flush();
    } finally {
      for (const pf of this.files.values()) await pf.close();
      this.files.clear();
    }
    return this.stats;
  }

  async abort(): Promise<void> {
    await this.w.abort();
    for (const pf of this.files.values()) await pf.close().catch(() => undefined);
    this.files.clear();
  }
}

/**
 * Writes copied pages to `out`: pages the parent chain holds with the same bytes as a
 * PE_PARENT entry, the others with their data; `unchanged` ranges as PE_PARENT.
 */
export async function writeCaptured(c: Captured, out: PageTransport, parent: PageResolver | undefined, progress: (bytes: number) => void = () => undefined, unchanged: readonly BigUint64Array[] = []): Promise<WriteStats> {
  const sink = new PageSink(out, parent, progress, unchanged);
  try {
    await sink.add(c);
    return await sink.finish();
  } catch (e) {
    await sink.abort();
    throw e;
  }
}
