// Image files on disk: read whole, stream entry by entry, and write. Writing never
// replaces an existing file unless asked: criu users rely on an image directory
// not being overwritten by accident.

import { closeSync, constants as fsc, fstatSync, fsyncSync, lstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { open, readFile, rename, unlink } from "node:fs/promises";
import { basename } from "node:path";
import {
  decodeImage,
  encodeEntry,
  headBytes,
  type Image,
  type ImageEntry,
  newParseState,
  parseHead,
  parseNext,
  startsGhostChunks,
} from "./codec.js";
import { ImageError } from "./errors.js";
import type { ImageType } from "./registry-types.js";
import { WireWriter } from "./wire.js";

function ioError(e: unknown, path: string, what: string): ImageError {
  const err = e as NodeJS.ErrnoException;
  return new ImageError(`${what}: ${err.code ?? err.message}`, { file: path });
}

/** Read at once below this size; larger files go through the thread pool. */
const SMALL = 1 << 20;

/** Where small files are read first (readSmall), reused: most fit, and need no fstat. */
const FIRST = 64 << 10;
let firstRead: Buffer | undefined;

/**
 * A small file's bytes, read without leaving the thread: most images are a few hundred
 * bytes, and a server's thousand tcp-stream images read through the thread pool (open,
 * fstat, read, close: four round trips each) took longer than decoding them. A file is
 * read into a scratch buffer first, and only one that fills it is asked its size (fstat
 * was a third of reading a thousand small images here: Node makes a Stats object of it).
 * Undefined for a larger file; throws ENOENT and the rest as readFileSync does.
 */
function readSmall(path: string): Buffer | undefined {
  const fd = openSync(path, fsc.O_RDONLY);
  try {
    const first = (firstRead ??= Buffer.allocUnsafeSlow(FIRST));
    let got = 0;
    for (let n; got < FIRST && (n = readSync(fd, first, got, FIRST - got, got)) > 0; ) got += n;
    if (got < FIRST) return Buffer.from(first.subarray(0, got));
    const size = fstatSync(fd).size;
    if (size > SMALL) return undefined;
    const buf = Buffer.allocUnsafe(Math.max(size, FIRST));
    first.copy(buf);
    let off = FIRST;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** A whole file's bytes: a small one read at once, a large one through the thread pool. */
export async function readWhole(path: string): Promise<Buffer> {
  return readSmall(path) ?? (await readFile(path));
}

/** Reads and decodes a whole image file. */
export async function readImage(path: string): Promise<Image> {
  let buf: Buffer;
  try {
    buf = await readWhole(path);
  } catch (e) {
    throw ioError(e, path, "cannot read image");
  }
  return decodeImage(buf, path);
}

const CHUNK = 1 << 20;

/**
 * Streams the entries of an image file without holding the whole file: reads in
 * 1 MiB chunks and yields entries as they complete.
 */
/**
 * An image that may be absent (pipes-data.img without pipes, tty-info.img without
 * terminals): undefined when there is no such file. Any other failure -- a damaged or
 * truncated image -- throws, naming the file and offset: a damaged image is not a missing one.
 */
export async function readOptionalImage(path: string): Promise<Image | undefined> {
  let buf: Buffer;
  try {
    buf = await readWhole(path);
  } catch (e) {
    // Missing, not a link to nowhere (that is a damaged directory).
    if ((e as NodeJS.ErrnoException).code === "ENOENT" && !lstatSync(path, { throwIfNoEntry: false })) return undefined;
    throw ioError(e, path, "cannot read image");
  }
  return decodeImage(buf, path);
}

export async function* readImageEntries(path: string): AsyncGenerator<ImageEntry, void, undefined> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch (e) {
    throw ioError(e, path, "cannot open image");
  }
  try {
    const size = (await fh.stat()).size;
    let buf = new Uint8Array(0);
    let base = 0; // file offset of buf[0]
    let readPos = 0;
    const fill = async (min: number): Promise<void> => {
      // Keeps unconsumed bytes and appends at least `min` more (or up to EOF).
      const want = Math.max(min, CHUNK);
      const room = Math.min(want, size - readPos);
      if (room <= 0) return;
      const nb = new Uint8Array(buf.length + room);
      nb.set(buf);
      const { bytesRead } = await fh.read(nb, buf.length, room, readPos);
      readPos += bytesRead;
      buf = nb.subarray(0, buf.length + bytesRead);
      if (bytesRead === 0) throw new ImageError("file shrank while being read", { file: path, offset: readPos });
    };
    await fill(8);
    const { type, start } = parseHead(buf, path);
    const st = newParseState(type, path);
    let pos = start;
    for (;;) {
      if (base + pos >= size) return;
      const eof = readPos >= size;
      const r = parseNext(st, buf, pos, base, size, eof);
      if (r === null) {
        // Drop what has been consumed, then read more.
        buf = new Uint8Array(buf.subarray(pos));
        base += pos;
        pos = 0;
        await fill(CHUNK);
        continue;
      }
      pos = r.end;
      yield r.entry;
    }
  } finally {
    await fh.close();
  }
}

export interface WriteOptions {
  /** replace an existing file (default: refuse) */
  overwrite?: boolean;
  /** fsync before returning */
  sync?: boolean;
}

function existsError(path: string): ImageError {
  return new ImageError("refusing to overwrite an existing image", { file: path });
}

/** A new image's failure as its writer reports it: refused over an existing file, or the step that failed. */
export function newImageError(e: unknown, path: string, step: "create" | "write"): ImageError {
  return step === "create" ? createError(e, path) : ioError(e, path, "cannot write image");
}

/** Writes a whole image: a new file (an existing one is refused), or a replacement when asked (temp file + rename). */
export async function writeImage(path: string, img: { type: ImageType; entries: readonly ImageEntry[] }, opts: WriteOptions = {}): Promise<void> {
  const w = new ImageWriter(img.type);
  for (const e of img.entries) w.add(e);
  await w.save(path, opts);
}

/** The head of each type's images, made once (ImageWriter copies it). */
const HEADS = new WeakMap<ImageType, Uint8Array>();

/**
 * Builds an image entry by entry in memory, then saves it. `into`: a writer it appends
 * to, after what is there (many small images in one buffer: a dump's batch of tcp-stream
 * images, written together).
 */
export class ImageWriter {
  private readonly w: WireWriter;
  /** where the image starts in w */
  private readonly start: number;
  private index = 0;
  private ghostChunks = false;

  constructor(
    readonly type: ImageType,
    into?: WireWriter,
  ) {
    // Most images are a few hundred bytes (a server's thousand tcp-stream images): grown when needed.
    this.w = into ?? new WireWriter(512);
    this.start = this.w.pos;
    let head = HEADS.get(type);
    if (!head) HEADS.set(type, (head = headBytes(type)));
    this.w.raw(head);
  }

  add(entry: ImageEntry): this {
    encodeEntry(this.w, this.type, entry, this.index, this.ghostChunks);
    if (startsGhostChunks(this.type, this.index, entry)) this.ghostChunks = true;
    this.index++;
    return this;
  }

  /**
   * A pagemap_entry {vaddr, compat_nr_pages, flags, nr_pages} (compat_nr_pages 0 past
   * 32 bits), the bytes add() would write, without the general encoder: a chain's pagemap
   * has tens of thousands of entries, ~18 % of its last default dump's freeze that way.
   * `vaddr` and `pages` are safe integers; `flags` a uint32.
   */
  pagemapEntry(vaddr: number, pages: number, flags: number): this {
    if (this.type.layout.kind !== "pagemap" || this.index === 0) throw new Error(`pagemapEntry: entry ${this.index} of ${this.type.name} is no pagemap_entry`);
    const w = this.w;
    const sizeAt = w.reserve32();
    const start = w.pos;
    w.tag(1, 0);
    w.uint53(vaddr);
    w.tag(2, 0);
    w.uint32(pages <= 0xffffffff ? pages : 0);
    w.tag(4, 0);
    w.uint32(flags);
    w.tag(5, 0);
    w.uint53(pages);
    w.setUint32At(sizeAt, w.pos - start);
    this.index++;
    return this;
  }

  bytes(): Uint8Array {
    return this.w.buf.subarray(this.start, this.w.pos);
  }

  async save(path: string, opts: WriteOptions = {}): Promise<void> {
    const bytes = this.bytes();
    // Most images are a few hundred bytes: written with synchronous calls, each step costs
    // a syscall instead of a trip through libuv's thread pool and back (about a
    // millisecond each on a busy machine; a dump writes a dozen images or more).
    if (bytes.length <= SMALL_IMAGE) return saveSync(path, bytes, opts);
    const target = placing(path, opts);
    let fh;
    try {
      fh = await open(target, CREATE, 0o600);
    } catch (e) {
      throw createError(e, path);
    }
    try {
      await fh.writeFile(bytes);
      if (opts.sync) await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(target).catch(() => undefined);
      throw ioError(e, path, "cannot write image");
    }
    await fh.close();
    if (target === path) return;
    try {
      await rename(target, path);
    } catch (e) {
      await unlink(target).catch(() => undefined);
      throw ioError(e, path, "cannot replace image");
    }
  }
}

/** Images up to this size are written synchronously (ImageWriter.save). */
const SMALL_IMAGE = 256 << 10;

/**
 * Where an image is written first. A new image is created in place
 * with O_EXCL, which fails on an existing file (and is removed again if it cannot be written
 * whole). A replacement is written beside it and renamed over it, so that the old one stays
 * whole until the new one is. A temp file per new image would cost a create and an unlink
 * each: on an ext4 without a journal, every create then skips past the inodes freed in the
 * last minute, and a dump of a thousand connections spent a third of a second so.
 */
function placing(path: string, opts: WriteOptions): string {
  return opts.overwrite ? `${path}.tmp-${process.pid}-${basename(path)}` : path;
}

/** Every image file is made new (O_EXCL): the image itself, or the temp file of a replacement. */
const CREATE = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL;

function createError(e: unknown, path: string): ImageError {
  if ((e as NodeJS.ErrnoException).code === "EEXIST") return existsError(path);
  return ioError(e, path, "cannot create image");
}

/** ImageWriter.save's steps with synchronous calls, the same errors. */
function saveSync(path: string, bytes: Uint8Array, opts: WriteOptions): void {
  const target = placing(path, opts);
  let fd: number;
  try {
    fd = openSync(target, CREATE, 0o600);
  } catch (e) {
    throw createError(e, path);
  }
  try {
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    if (opts.sync) fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkQuiet(target);
    throw ioError(e, path, "cannot write image");
  }
  closeSync(fd);
  if (target === path) return;
  try {
    renameSync(target, path);
  } catch (e) {
    unlinkQuiet(target);
    throw ioError(e, path, "cannot replace image");
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}
