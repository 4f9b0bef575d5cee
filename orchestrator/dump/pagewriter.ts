// Page transport of a dump: where page data goes. The local variant writes a raw
// pages-<id>.img and its pagemap; writes run on libuv's thread pool while the main
// thread reads the next chunk of task memory, so reading and writing overlap.
//
// The pages file is written with O_DIRECT where the file system takes it: page data is
// written once and read back rarely, and the page cache is the slow part here. 1 GiB
// from an aligned buffer took 1.9-2.2 s into the page cache and 0.27-0.36 s with
// O_DIRECT (then an fsync of ~0.5 s either way). Every write is whole pages from a
// page-aligned buffer at a page-aligned offset, which is what O_DIRECT asks.

import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { ImageWriter } from "../../images/io.js";
import { imageTypeByName } from "../../images/codec.js";
import type { Faults } from "./faults.js";

/** Bytes written between two early writebacks (datasync on the thread pool). */
const EARLY_SYNC = 64 << 20;

export { PE_LAZY, PE_PRESENT } from "../../images/pages.js";

export interface PagemapRun {
  vaddr: bigint;
  pages: number;
  flags: number;
}

/** One destination for pages: the data stream plus the pagemap that describes it. */
export interface PageTransport {
  /** queues `len` bytes of buf for writing; resolves when the buffer may be reused */
  write(buf: Uint8Array, len: number): Promise<void>;
  /** appends a pagemap entry; data for PE_PRESENT entries comes through write() in order */
  run(r: PagemapRun): void;
  /**
   * Takes the next `len` bytes of the pages file, to be written in place by someone else
   * (a write-protect snapshot's threads, wpsnap.ts): the file's fd and the offset.
   * Only a transport into a local file has it.
   */
  hole?(len: number): { fd: number; at: number };
  /** flushes, writes the pagemap, fsyncs when asked */
  close(sync: boolean): Promise<void>;
  /** removes what was written (after a failure) */
  abort(): Promise<void>;
  /** nanoseconds spent waiting for writes */
  writeNs: bigint;
  /** the pagemap's entries so far, in order */
  readonly entries: readonly PagemapRun[];
}

export class LocalPages implements PageTransport {
  private fh: FileHandle | undefined;
  private readonly runs: PagemapRun[] = [];
  private pos = 0;
  private flushing: Promise<void> | undefined;
  /** the early writeback's failure, reported by close() */
  private flushFailed: Error | undefined;
  private flushedAt = 0;
  /** start writeback while copying, so the final fsync has little left to do */
  syncEarly = false;
  writeNs = 0n;

  private constructor(
    readonly dir: string,
    readonly pagemapName: string,
    readonly pagesId: number,
    private readonly faults: Faults,
  ) {}

  static async create(dir: string, pagemapName: string, pagesId: number, faults: Faults): Promise<LocalPages> {
    const p = new LocalPages(dir, pagemapName, pagesId, faults);
    const path = join(dir, `pages-${pagesId}.img`);
    const { O_WRONLY, O_CREAT, O_EXCL, O_DIRECT } = constants;
    try {
      p.fh = await open(path, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT, 0o600);
    } catch (e) {
      // A file system without O_DIRECT (EINVAL at open): through the page cache.
      if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
      p.fh = await open(path, "wx", 0o600);
    }
    return p;
  }

  get pagesFile(): string {
    return join(this.dir, `pages-${this.pagesId}.img`);
  }

  async write(buf: Uint8Array, len: number): Promise<void> {
    if (len === 0) return;
    this.faults.write(true);
    const t0 = process.hrtime.bigint();
    // Reserve the file range before the first await: the next write() may start
    // while this one is in flight (reading and writing overlap), and must go after it.
    const at = this.pos;
    this.pos += len;
    let off = 0;
    while (off < len) {
      const { bytesWritten } = await this.fh!.write(buf, off, len - off, at + off);
      if (bytesWritten === 0) throw Object.assign(new Error(`write ${this.pagesFile}: no progress`), { code: "EIO" });
      off += bytesWritten;
    }
    this.writeNs += process.hrtime.bigint() - t0;
    if (this.syncEarly && !this.flushing && this.pos - this.flushedAt >= EARLY_SYNC) {
      this.flushedAt = this.pos;
      // a failure is kept for close() (the kernel reports a writeback error to one sync
      // only: the final fsync would not see it again), and is no unhandled rejection meanwhile
      const fh = this.fh!;
      this.flushing = this.faults.writeback(() => fh.datasync()).then(
        () => void (this.flushing = undefined),
        (e: unknown) => {
          this.flushing = undefined;
          this.flushFailed ??= e instanceof Error ? e : new Error(String(e));
        },
      );
    }
  }

  hole(len: number): { fd: number; at: number } {
    const at = this.pos;
    this.pos += len;
    return { fd: this.fh!.fd, at };
  }

  run(r: PagemapRun): void {
    const last = this.runs[this.runs.length - 1];
    if (last && last.flags === r.flags && last.vaddr + BigInt(last.pages * 4096) === r.vaddr) last.pages += r.pages;
    else this.runs.push({ ...r });
  }

  get entries(): readonly PagemapRun[] {
    return this.runs;
  }

  async close(sync: boolean): Promise<void> {
    await this.flushing;
    if (this.flushFailed) throw Object.assign(new Error(`${this.pagesFile}: the writeback of the pages written failed: ${this.flushFailed.message}`, { cause: this.flushFailed }), { code: (this.flushFailed as NodeJS.ErrnoException).code });
    if (sync) await this.fh!.sync();
    await this.fh!.close();
    this.fh = undefined;
    const w = new ImageWriter(imageTypeByName("PAGEMAP")!);
    w.add({ pages_id: this.pagesId });
    // criu 4.2 writes compat_nr_pages 0 and reads nr_pages; criu up to 4.1 reads only
    // compat_nr_pages (and restored none of the pages of 4.2's layout, tried here with
    // Debian's criu 4.1.1). Both carry the count, so every criu 4.x reads these.
    for (const r of this.runs) w.pagemapEntry(Number(r.vaddr), r.pages, r.flags);
    this.faults.write(false);
    await w.save(join(this.dir, this.pagemapName), { sync });
  }

  async abort(): Promise<void> {
    await this.flushing?.catch(() => undefined);
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
  }
}
