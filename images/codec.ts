// Image framing: the magics at the head of a file, then entries of a 4-byte
// little-endian size and a protobuf message, some followed by raw bytes (pipe
// data, socket queues, ghost files…). One default path; the registry's layout says
// where the few special types differ.
//
// The same step function parses from a whole buffer (decodeImage) and from a file
// read in chunks (images/stream.ts), so both give the same entries and errors.

import { ImageError, WireError } from "./errors.js";
import { decodeMessage, encodeMessage, EncodeError, type Msg } from "./message.js";
import { typeByMagic, typeByName } from "./registry.js";
import type { ImageType } from "./registry-types.js";
import type { MessageDef } from "./schema/dsl.js";
import { WireWriter } from "./wire.js";

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;

/** An entry of any image: the message's fields, plus `extra` for raw trailing data. */
export type ImageEntry = Msg & { extra?: Extra };
/** Raw data after an entry: bytes; tcp queues; ipc semaphore values; ipc messages. */
export type Extra = Uint8Array | { inq: Uint8Array; outq: Uint8Array } | number[] | (Msg | Uint8Array)[];

export interface Image {
  readonly type: ImageType;
  readonly entries: ImageEntry[];
}

/** The registry's look-ups, under the names the library exports. */
export const imageTypeByMagic = typeByMagic;
export const imageTypeByName = typeByName;

const hex = (n: number): string => "0x" + (n >>> 0).toString(16).padStart(8, "0");

/** Reads the head of an image: which type it is and where the entries start. */
export function parseHead(buf: Uint8Array, file?: string): { type: ImageType; start: number } {
  if (buf.length < 4) {
    throw new ImageError(`file is ${buf.length} bytes, too short for an image magic`, { file, offset: 0 });
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const m0 = dv.getUint32(0, true);
  if (m0 === IMG_COMMON_MAGIC || m0 === IMG_SERVICE_MAGIC) {
    if (buf.length < 8) throw new ImageError("file ends after the first magic", { file, offset: 4 });
    const m1 = dv.getUint32(4, true);
    const type = imageTypeByMagic(m1);
    if (!type) throw new ImageError(`unknown image magic ${hex(m1)}`, { file, offset: 4 });
    return { type, start: 8 };
  }
  const type = imageTypeByMagic(m0);
  if (!type || type.head !== "none") {
    throw new ImageError(
      `unknown image magic ${hex(m0)} (not a criu image; raw page data such as pages-N.img has no magic)`,
      { file, offset: 0 },
    );
  }
  return { type, start: 4 };
}

/** Parser state carried from one entry to the next. */
export interface ParseState {
  readonly type: ImageType;
  readonly file: string | undefined;
  /** entries parsed so far */
  index: number;
  /** ghost-file: later entries are chunks */
  ghostChunks: boolean;
  /** decode 64-bit integers as numbers where exact (text output only; see message.ts) */
  readonly loose64: boolean;
}

export function newParseState(type: ImageType, file?: string, loose64 = false): ParseState {
  return { type, file, index: 0, ghostChunks: false, loose64 };
}

/**
 * The message of entry `index`: pagemaps start with a pagemap_head; a ghost file
 * whose first entry says `chunks` continues with ghost_chunk_entry records.
 */
export function entryDef(type: ImageType, index: number, ghostChunks: boolean): MessageDef {
  const layout = type.layout;
  if (layout.kind === "pagemap" && index === 0) return layout.head;
  if (layout.kind === "ghost" && ghostChunks && index > 0) return layout.chunk;
  return type.entry;
}

/** Whether entries after this first one are ghost chunks. */
export function startsGhostChunks(type: ImageType, index: number, entry: Msg): boolean {
  return type.layout.kind === "ghost" && index === 0 && entry["chunks"] === true;
}

const pad = (n: number, a: number): number => Math.ceil(n / a) * a;

function u32At(buf: Uint8Array, p: number): number {
  return (buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24)) >>> 0;
}

function num(v: unknown): number {
  return typeof v === "bigint" ? Number(v) : typeof v === "number" ? v : 0;
}

function needMore(st: ParseState, eof: boolean, offset: number): null {
  if (eof) throw new ImageError(`truncated entry ${st.index}: the file ends inside it`, { file: st.file, offset });
  return null;
}

/**
 * Parses the entry at buf[pos…]. `base` is the file offset of buf[0], `fileSize`
 * the whole file's size (so a size field can be checked before anything is
 * buffered), `eof` whether buf holds everything up to the end of the file.
 * Returns null when more bytes are needed (only when !eof).
 */
export function parseNext(
  st: ParseState,
  buf: Uint8Array,
  pos: number,
  base: number,
  fileSize: number,
  eof: boolean,
): { entry: ImageEntry; end: number } | null {
  const file = st.file;
  const at = base + pos;
  const avail = buf.length - pos;
  if (avail < 4) {
    if (eof) throw new ImageError(`truncated entry ${st.index}: ${avail} bytes where a 4-byte size belongs`, { file, offset: at });
    return null;
  }
  const size = u32At(buf, pos);
  if (size > fileSize - at - 4) {
    throw new ImageError(`entry ${st.index} claims ${size} bytes but only ${Math.max(0, fileSize - at - 4)} are left in the file`, {
      file,
      offset: at,
    });
  }
  if (avail < 4 + size) return needMore(st, eof, base + buf.length);
  const layout = st.type.layout;
  const def = entryDef(st.type, st.index, st.ghostChunks);
  let entry: ImageEntry;
  try {
    entry = decodeMessage(def, buf, pos + 4, pos + 4 + size, st.loose64);
  } catch (e) {
    if (e instanceof WireError) {
      throw new ImageError(`entry ${st.index} (${def.name}): ${e.message}`, { file, offset: base + e.at });
    }
    throw e;
  }
  let end = pos + 4 + size;
  if (layout.kind === "plain" || layout.kind === "pagemap") {
    st.index++;
    return { entry, end };
  }
  const more = (): null => needMore(st, eof, base + buf.length);

  // Raw data after the entry.
  const take = (n: number, what: string): Uint8Array | null => {
    if (n > fileSize - (base + end)) {
      throw new ImageError(`entry ${st.index}: ${what} of ${n} bytes runs past the end of the file`, { file, offset: base + end });
    }
    if (buf.length - end < n) return null;
    const b = new Uint8Array(buf.subarray(end, end + n));
    end += n;
    return b;
  };
  switch (layout.kind) {
    case "blob": {
      let n = 0;
      for (const f of layout.sizeFields) n += num(entry[f]);
      const b = take(n, "trailing data");
      if (!b) return more();
      entry.extra = b;
      break;
    }
    case "tcp": {
      const inq = take(num(entry["inq_len"]), "input queue");
      if (!inq) return more();
      const outq = take(num(entry["outq_len"]), "output queue");
      if (!outq) return more();
      entry.extra = { inq, outq };
      break;
    }
    case "ghost": {
      if (st.ghostChunks) {
        const b = take(num(entry["len"]), "ghost chunk");
        if (!b) return more();
        entry.extra = b;
      } else if (entry["chunks"] === true) {
        st.ghostChunks = true;
      } else {
        if (!eof) return null;
        const b = take(buf.length - end, "ghost data");
        entry.extra = b!;
      }
      break;
    }
    case "ipc-sem": {
      const nsems = num(entry["nsems"]);
      const b = take(pad(nsems * 2, 8), "semaphore values");
      if (!b) return more();
      const vals: number[] = [];
      for (let i = 0; i < nsems; i++) vals.push(b[2 * i]! | (b[2 * i + 1]! << 8));
      entry.extra = vals;
      break;
    }
    case "ipc-shm": {
      const size = num(entry["size"]);
      const b = take(pad(size, 4), "shared memory contents");
      if (!b) return more();
      entry.extra = b.subarray(0, size);
      break;
    }
    case "ipc-msg": {
      const qnum = num(entry["qnum"]);
      const out: (Msg | Uint8Array)[] = [];
      for (let i = 0; i < qnum; i++) {
        if (buf.length - end < 4) {
          if (base + end >= fileSize) break;
          return more();
        }
        const msize = u32At(buf, end);
        if (msize > fileSize - (base + end) - 4) {
          throw new ImageError(`entry ${st.index}: message ${i} claims ${msize} bytes, past the end of the file`, { file, offset: base + end });
        }
        if (buf.length - end < 4 + msize) return more();
        let m: Msg;
        try {
          m = decodeMessage(layout.msg, buf, end + 4, end + 4 + msize);
        } catch (e) {
          if (e instanceof WireError) throw new ImageError(`entry ${st.index} message ${i}: ${e.message}`, { file, offset: base + e.at });
          throw e;
        }
        end += 4 + msize;
        const len = num(m["msize"]);
        const data = take(pad(len, 8), "message text");
        if (!data) return more();
        out.push(m, data.subarray(0, len));
      }
      entry.extra = out;
      break;
    }
  }
  st.index++;
  return { entry, end };
}

/**
 * Decodes a whole image held in memory. `loose64` is for callers that only print
 * the entries: 64-bit values then come as numbers where exact (see message.ts).
 */
export function decodeImage(buf: Uint8Array, file?: string, opts: { loose64?: boolean } = {}): Image {
  const { type, start } = parseHead(buf, file);
  const st = newParseState(type, file, opts.loose64 === true);
  // (a loop, not iterateImage's generator: a restore decodes a thousand small tcp-stream images, cold)
  const entries: ImageEntry[] = [];
  for (let pos = start; pos < buf.length; ) {
    const r = parseNext(st, buf, pos, 0, buf.length, true)!;
    pos = r.end;
    entries.push(r.entry);
  }
  return { type, entries };
}

/**
 * The type of an image held in memory and its entries one at a time: a caller that
 * handles each entry and lets it go (decode to text) keeps memory flat.
 */
export function iterateImage(
  buf: Uint8Array,
  file?: string,
  opts: { loose64?: boolean } = {},
): { type: ImageType; entries: Iterable<ImageEntry> } {
  const { type, start } = parseHead(buf, file);
  const st = newParseState(type, file, opts.loose64 === true);
  function* entries(): Generator<ImageEntry> {
    let pos = start;
    while (pos < buf.length) {
      const r = parseNext(st, buf, pos, 0, buf.length, true)!;
      pos = r.end;
      yield r.entry;
    }
  }
  return { type, entries: entries() };
}

/** Counts entries without decoding them (crit's "info"). Pagemap heads are not counted. */
export function countEntries(buf: Uint8Array, file?: string): { type: ImageType; count: number } {
  const { type } = parseHead(buf, file);
  return { type, count: decodeImage(buf, file).entries.length - (type.layout.kind === "pagemap" ? 1 : 0) };
}

// ---------------------------------------------------------------- writing

export function headBytes(type: ImageType): Uint8Array {
  const b = new Uint8Array(type.head === "none" ? 4 : 8);
  const dv = new DataView(b.buffer);
  if (type.head === "none") {
    dv.setUint32(0, type.magic >>> 0, true);
  } else {
    dv.setUint32(0, type.head === "service" ? IMG_SERVICE_MAGIC : IMG_COMMON_MAGIC, true);
    dv.setUint32(4, type.magic >>> 0, true);
  }
  return b;
}

function padTo(w: WireWriter, n: number, a: number): void {
  const p = pad(n, a) - n;
  if (p) w.raw(new Uint8Array(p));
}

/** The raw data of entry `index` of an image of `type` (`part` of it: " inq"), checked to be bytes. */
function asBytes(v: unknown, type: ImageType, index: number, part = ""): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new EncodeError(`${type.name} entry ${index}${part}: expected bytes in "extra"`);
  return v;
}

/** Appends one framed entry (size, message, raw data) to w. `index` is its place in the file. */
export function encodeEntry(w: WireWriter, type: ImageType, entry: ImageEntry, index: number, ghostChunks: boolean): void {
  const extra = entry.extra;
  const layout = type.layout;
  const def = entryDef(type, index, ghostChunks);
  const sizeAt = w.reserve32();
  const body = encodeMessage(def, entry, w, "extra");
  w.setUint32At(sizeAt, body.length);
  switch (layout.kind) {
    case "plain":
    case "pagemap":
      return;
    case "blob":
    case "ipc-shm":
      if (extra !== undefined) {
        const b = asBytes(extra, type, index);
        w.raw(b);
        if (layout.kind === "ipc-shm") padTo(w, b.length, 4);
      }
      return;
    case "ghost":
      if (extra !== undefined) w.raw(asBytes(extra, type, index));
      return;
    case "tcp": {
      const q = extra as { inq?: unknown; outq?: unknown } | undefined;
      if (q) {
        w.raw(asBytes(q.inq, type, index, " inq"));
        w.raw(asBytes(q.outq, type, index, " outq"));
      }
      return;
    }
    case "ipc-sem": {
      const vals = (extra ?? []) as number[];
      const b = new Uint8Array(pad(vals.length * 2, 8));
      vals.forEach((v, i) => {
        b[2 * i] = v & 0xff;
        b[2 * i + 1] = (v >> 8) & 0xff;
      });
      w.raw(b);
      return;
    }
    case "ipc-msg": {
      const list = (extra ?? []) as (Msg | Uint8Array)[];
      for (let i = 0; i + 1 < list.length; i += 2) {
        const m = list[i] as Msg;
        const at = w.pos;
        w.raw(new Uint8Array(4));
        const mb = encodeMessage(layout.msg, m, w);
        new DataView(w.buf.buffer, w.buf.byteOffset).setUint32(at, mb.length, true);
        const data = asBytes(list[i + 1], type, index, ` message ${i / 2}`);
        const len = num(m["msize"]);
        const out = new Uint8Array(pad(len, 8));
        out.set(data.subarray(0, len));
        w.raw(out);
      }
      return;
    }
  }
}

/** Encodes a whole image: head magics, then every entry. */
export function encodeImage(img: { type: ImageType; entries: readonly ImageEntry[] }): Uint8Array {
  const w = new WireWriter(4096);
  w.raw(headBytes(img.type));
  let ghostChunks = false;
  img.entries.forEach((e, i) => {
    encodeEntry(w, img.type, e, i, ghostChunks);
    if (startsGhostChunks(img.type, i, e)) ghostChunks = true;
  });
  return w.finish();
}
