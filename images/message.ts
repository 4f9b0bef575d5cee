// Schema-driven protobuf messages: decode bytes into plain objects and encode
// them back. 64-bit integers are bigint, 32-bit ones numbers, bytes Uint8Array,
// enums their name (or the number when the schema does not know it). Fields are
// written in field-number order, as protobuf-c (criu) writes them, so a decoded
// image encodes back to the same bytes.

import { WireError } from "./errors.js";
import { type EncodeHelpers, fastEncoder } from "./encoder.js";
import type { EnumDef, FieldInfo, MessageDef, ScalarType } from "./schema/dsl.js";
import { encodeUtf8, WireReader, WireWriter, WT_I32, WT_I64, WT_LEN, WT_VARINT } from "./wire.js";

export type Msg = Record<string, unknown>;

type Reader = (r: WireReader) => unknown;

const scalarReaders: Record<ScalarType, Reader> = {
  int32: (r) => r.int32(),
  uint32: (r) => r.uint32(),
  sint32: (r) => r.sint32(),
  fixed32: (r) => r.fixed32(),
  sfixed32: (r) => r.sfixed32(),
  int64: (r) => r.int64(),
  uint64: (r) => r.uint64(),
  sint64: (r) => r.sint64(),
  fixed64: (r) => r.fixed64(),
  sfixed64: (r) => r.sfixed64(),
  bool: (r) => r.bool(),
  string: (r) => r.string(),
  bytes: (r) => r.bytes(),
  float: (r) => r.float(),
  double: (r) => r.double(),
};

export function wireTypeOf(s: ScalarType): number {
  switch (s) {
    case "fixed64":
    case "sfixed64":
    case "double":
      return WT_I64;
    case "fixed32":
    case "sfixed32":
    case "float":
      return WT_I32;
    case "string":
    case "bytes":
      return WT_LEN;
    default:
      return WT_VARINT;
  }
}

interface CompiledField {
  info: FieldInfo;
  wt: number;
  read: Reader;
  /** repeated numeric scalars may arrive packed even when the schema says not */
  packable: boolean;
}

interface Compiled {
  /** by field number */
  fields: (CompiledField | undefined)[];
}

/**
 * Loose 64-bit mode, for code that only turns entries into text (crit's JSON):
 * 64-bit integers that fit a double exactly come back as numbers, the rest as
 * bigint. Skipping a BigInt per value makes large pagemaps decode ~30% faster.
 */
const looseReaders: Record<ScalarType, Reader> = {
  ...scalarReaders,
  int64: (r) => r.int64Loose(),
  uint64: (r) => r.uint64Loose(),
  fixed64: (r) => {
    const v = r.fixed64();
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  },
};

const compiledStrict = new WeakMap<MessageDef, Compiled>();
const compiledLoose = new WeakMap<MessageDef, Compiled>();

function compile(def: MessageDef, loose: boolean): Compiled {
  const cache = loose ? compiledLoose : compiledStrict;
  let c = cache.get(def);
  if (c) return c;
  c = { fields: [] };
  for (const f of def.ordered) {
    let read: Reader;
    let wt: number;
    if (f.kind === "message") {
      const sub = f.message!;
      wt = WT_LEN;
      read = (r) => {
        const n = r.length();
        const end = r.pos + n;
        const inner = new WireReader(r.buf, r.pos, end);
        const v = decodeFields(sub, inner, loose);
        r.pos = end;
        return v;
      };
    } else if (f.kind === "enum") {
      const e = f.enumDef!;
      wt = WT_VARINT;
      read = (r) => {
        const n = r.int32();
        return e.byNumber.get(n) ?? n;
      };
    } else {
      wt = wireTypeOf(f.scalar!);
      read = (loose ? looseReaders : scalarReaders)[f.scalar!];
    }
    c.fields[f.no] = { info: f, wt, read, packable: f.label === "repeated" && wt !== WT_LEN };
  }
  cache.set(def, c);
  return c;
}

/**
 * One field read the general way: the packed form of a repeated scalar, an unknown
 * field (skipped), or a wire type the schema does not expect (an error).
 */
function slowField(def: MessageDef, table: readonly (CompiledField | undefined)[], out: Msg, r: WireReader, tag: number, at: number): void {
  const no = tag >>> 3;
  const wt = tag & 7;
  if (no === 0) throw new WireError(`${def.name}: field number 0`, at);
  const cf = table[no];
  if (cf === undefined) {
    r.skip(wt, no);
    return;
  }
  const name = cf.info.name;
  if (cf.info.label === "repeated" && wt === WT_LEN && cf.packable) {
    let arr = out[name] as unknown[] | undefined;
    if (arr === undefined) out[name] = arr = [];
    const n = r.length();
    const pend = r.pos + n;
    const inner = new WireReader(r.buf, r.pos, pend);
    while (inner.pos < pend) arr.push(cf.read(inner));
    r.pos = pend;
    return;
  }
  throw new WireError(`${def.name}.${name}: wire type ${wt}, expected ${cf.wt}`, at);
}

function missingField(def: MessageDef, name: string, at: number): never {
  throw new WireError(`${def.name}: required field ${name} (${def.byName.get(name)!.no}) is missing`, at);
}

/** WireReader methods that read a scalar directly, by mode. */
const DIRECT_STRICT: Partial<Record<ScalarType, string>> = {
  int32: "int32",
  uint32: "uint32",
  sint32: "sint32",
  fixed32: "fixed32",
  sfixed32: "sfixed32",
  int64: "int64",
  uint64: "uint64",
  sint64: "sint64",
  fixed64: "fixed64",
  sfixed64: "sfixed64",
  bool: "bool",
  string: "string",
  bytes: "bytes",
  float: "float",
  double: "double",
};
// fixed64 has no loose method: it goes through looseReaders.
const { fixed64: _fixed64, ...DIRECT_COMMON } = DIRECT_STRICT;
const DIRECT_LOOSE: Partial<Record<ScalarType, string>> = { ...DIRECT_COMMON, int64: "int64Loose", uint64: "uint64Loose" };

type Decoder = (r: WireReader) => Msg;
const decodersStrict = new WeakMap<MessageDef, Decoder>();
const decodersLoose = new WeakMap<MessageDef, Decoder>();

/**
 * A decoder made for one message: a switch over the tags the schema expects, with
 * the property names written out, so V8 sees one object shape and direct calls
 * (a large pagemap decodes about twice as fast as through a generic loop). Other
 * tags go to slowField. The generated text holds only our schema's field names
 * (checked to be identifiers) and numbers.
 */
function decoderFor(def: MessageDef, loose: boolean): Decoder {
  const cache = loose ? decodersLoose : decodersStrict;
  const hit = cache.get(def);
  if (hit) return hit;
  const table = compile(def, loose).fields;
  const direct = loose ? DIRECT_LOOSE : DIRECT_STRICT;
  const reads: ((r: WireReader) => unknown)[] = [];
  let cases = "";
  let checks = "";
  for (const f of def.ordered) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(f.name)) throw new Error(`schema ${def.name}: field name ${JSON.stringify(f.name)} is not an identifier`);
    const cf = table[f.no]!;
    const method = f.kind === "scalar" ? direct[f.scalar!] : undefined;
    let read: string;
    if (method) read = `r.${method}()`;
    else {
      reads.push(cf.read);
      read = `reads[${reads.length - 1}](r)`;
    }
    const tag = (f.no << 3) | cf.wt;
    if (f.label === "repeated") cases += `      case ${tag}: (out.${f.name} ??= []).push(${read}); break;\n`;
    else cases += `      case ${tag}: out.${f.name} = ${read}; break;\n`;
    if (f.label === "required") checks += `  if (out.${f.name} === undefined) missing(def, ${JSON.stringify(f.name)}, r.pos);\n`;
  }
  const body = `return function decode(r) {
  const out = {};
  const end = r.end;
  while (r.pos < end) {
    const at = r.pos;
    const tag = r.uint32();
    switch (tag) {
${cases}      default: slow(def, table, out, r, tag, at);
    }
  }
${checks}  return out;
};`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- code made from our own schema (names checked above), as protobufjs does
  const make = new Function("def", "table", "reads", "slow", "missing", body) as (
    d: MessageDef,
    t: typeof table,
    rd: typeof reads,
    sl: typeof slowField,
    mi: typeof missingField,
  ) => Decoder;
  const dec = make(def, table, reads, slowField, missingField);
  cache.set(def, dec);
  return dec;
}

/**
 * The same decoding through the message's table: nothing to generate and compile. A
 * type's first decodings take this way (a small image holds a type once or a few times,
 * and generating its decoder cost more than reading it: ~0.4 ms a type, about half of a
 * small restore's image reading); the generated decoder takes over for a type that
 * keeps coming (the entries of a pagemap, of a large files.img).
 */
function decodeByTable(def: MessageDef, table: readonly (CompiledField | undefined)[], r: WireReader): Msg {
  const out: Msg = {};
  const end = r.end;
  while (r.pos < end) {
    const at = r.pos;
    const tag = r.uint32();
    const cf = table[tag >>> 3];
    if (cf === undefined || (tag & 7) !== cf.wt) {
      slowField(def, table, out, r, tag, at);
      continue;
    }
    const name = cf.info.name;
    if (cf.info.label === "repeated") ((out[name] ??= []) as unknown[]).push(cf.read(r));
    else out[name] = cf.read(r);
  }
  for (const f of def.ordered) if (f.label === "required" && out[f.name] === undefined) missingField(def, f.name, r.pos);
  return out;
}

/** Decodings of a type by its table before its decoder is generated. */
const BY_TABLE = 16;
const decodedByTable = new WeakMap<MessageDef, number>();

function decodeFields(def: MessageDef, r: WireReader, loose: boolean): Msg {
  const generated = (loose ? decodersLoose : decodersStrict).get(def);
  if (generated) return generated(r);
  const n = decodedByTable.get(def) ?? 0;
  if (n >= BY_TABLE) return decoderFor(def, loose)(r);
  decodedByTable.set(def, n + 1);
  return decodeByTable(def, compile(def, loose).fields, r);
}

/**
 * Decodes one message from buf[start, end). Throws WireError with an offset into buf.
 * `loose64`: see looseReaders (for text output only; entries then break the typed API's bigint promise).
 */
export function decodeMessage(def: MessageDef, buf: Uint8Array, start = 0, end = buf.length, loose64 = false): Msg {
  return decodeFields(def, new WireReader(buf, start, end), loose64);
}

// ---------------------------------------------------------------- encoding

/** Encoding problems name the field path, e.g. "core_entry.tc.comm". */
export class EncodeError extends Error {
  override readonly name = "EncodeError";
  /** whether the message names its field yet (a value's check throws without, writeValue adds it) */
  located = true;
}

/** A value's problem, before the field it is in is known. */
function bad(msg: string): EncodeError {
  const e = new EncodeError(msg);
  e.located = false;
  return e;
}

/** "core_entry.tc.comm", "mm_entry.vmas[3]" */
function fieldPath(path: string, f: FieldInfo, i: number): string {
  return i < 0 ? `${path}.${f.name}` : `${path}.${f.name}[${i}]`;
}

const I32_MIN = -0x8000_0000;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);

function asInt(v: unknown, min: number, max: number): number {
  if (typeof v === "bigint") v = Number(v);
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw bad(`expected an integer in [${min}, ${max}], got ${describe(v)}`);
  }
  return v;
}

const I64_MAX = (1n << 63n) - 1n;

function asBig(v: unknown, signed: boolean): bigint {
  let b: bigint;
  if (typeof v === "bigint") b = v;
  else if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
  else throw bad(`expected a 64-bit integer, got ${describe(v)}`);
  if (signed ? b < I64_MIN || b > I64_MAX : b < 0n || b > U64_MAX) {
    throw bad(`${b} is out of range for a ${signed ? "signed" : "unsigned"} 64-bit field`);
  }
  return b;
}

function describe(v: unknown): string {
  if (typeof v === "string") return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (v instanceof Uint8Array) return "bytes";
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return `${typeof v} ${v}`;
  return typeof v;
}

function writeScalar(w: WireWriter, s: ScalarType, v: unknown): void {
  switch (s) {
    case "int32":
      return w.int32(asInt(v, I32_MIN, 0x7fff_ffff));
    case "uint32":
      return w.uint32(asInt(v, 0, 0xffff_ffff));
    case "sint32":
      return w.sint32(asInt(v, I32_MIN, 0x7fff_ffff));
    case "fixed32":
      return w.fixed32(asInt(v, 0, 0xffff_ffff));
    case "sfixed32":
      return w.sfixed32(asInt(v, I32_MIN, 0x7fff_ffff));
    // A value below 2^32 (most: sizes, times, flags) is the varint of its uint32: no BigInt arithmetic.
    case "int64":
      if (typeof v === "bigint" && v >= 0n && v <= 0xffffffffn) return w.uint32(Number(v));
      return w.uint64(BigInt.asUintN(64, asBig(v, true)));
    case "uint64":
      if (typeof v === "bigint" && v >= 0n && v <= 0xffffffffn) return w.uint32(Number(v));
      return w.uint64(asBig(v, false));
    case "sint64":
      return w.sint64(asBig(v, true));
    case "fixed64":
      return w.fixed64(asBig(v, false));
    case "sfixed64":
      return w.sfixed64(asBig(v, true));
    case "bool":
      if (typeof v !== "boolean") throw bad(`expected a boolean, got ${describe(v)}`);
      return w.bool(v);
    case "string":
      if (typeof v !== "string") throw bad(`expected a string, got ${describe(v)}`);
      return w.bytes(encodeUtf8(v));
    case "bytes":
      if (!(v instanceof Uint8Array)) throw bad(`expected bytes, got ${describe(v)}`);
      return w.bytes(v);
    case "float":
    case "double":
      if (typeof v !== "number") throw bad(`expected a number, got ${describe(v)}`);
      return s === "float" ? w.float(v) : w.double(v);
  }
}

/** An enum's value: its name, or a number. */
function writeEnum(w: WireWriter, e: EnumDef, v: unknown): void {
  let n: number;
  if (typeof v === "string") {
    const known = (e.values as Record<string, number>)[v];
    if (known === undefined) throw bad(`${JSON.stringify(v)} is not a value of enum ${e.name}`);
    n = known;
  } else {
    n = asInt(v, I32_MIN, 0x7fff_ffff);
  }
  w.int32(n);
}

/** One value of field f (element i of a repeated one, or -1) of the message at `path`. */
function writeValue(w: WireWriter, f: FieldInfo, v: unknown, path: string, i: number): void {
  try {
    if (f.kind === "message") {
      if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) {
        throw bad(`expected an object (${f.message!.name}), got ${describe(v)}`);
      }
      // written in place, its length filled in after
      const at = w.beginLen();
      encodeFields(w, f.message!, v as Msg, fieldPath(path, f, i));
      w.endLen(at);
    } else if (f.kind === "enum") {
      writeEnum(w, f.enumDef!, v);
    } else {
      writeScalar(w, f.scalar!, v);
    }
  } catch (e) {
    if (e instanceof EncodeError && !e.located) {
      e.message = `${fieldPath(path, f, i)}: ${e.message}`;
      e.located = true;
    }
    throw e;
  }
}

/** `ignore`: a key of obj that is no field, whatever the message says (an image entry's "extra", its raw data). */
function encodeFields(w: WireWriter, def: MessageDef, obj: Msg, path: string, ignore?: string): void {
  for (const f of def.ordered) {
    const v = f.name === ignore ? undefined : obj[f.name];
    if (v === undefined) {
      if (f.label === "required") throw new EncodeError(`${fieldPath(path, f, -1)}: required field is missing`);
      continue;
    }
    if (f.label === "repeated") {
      if (!Array.isArray(v)) throw new EncodeError(`${fieldPath(path, f, -1)}: expected an array, got ${describe(v)}`);
      if (v.length === 0) continue;
      if (f.packed && f.kind !== "message") {
        w.tag(f.no, WT_LEN);
        const at = w.beginLen();
        for (let i = 0; i < v.length; i++) writeValue(w, f, v[i], path, i);
        w.endLen(at);
      } else {
        const wt = f.kind === "message" ? WT_LEN : f.kind === "enum" ? WT_VARINT : wireTypeOf(f.scalar!);
        for (let i = 0; i < v.length; i++) {
          w.tag(f.no, wt);
          writeValue(w, f, v[i], path, i);
        }
      }
    } else {
      const wt = f.kind === "message" ? WT_LEN : f.kind === "enum" ? WT_VARINT : wireTypeOf(f.scalar!);
      w.tag(f.no, wt);
      writeValue(w, f, v, path, -1);
    }
  }
  // every key a field of the message (for-in: no array of the keys made)
  for (const k in obj) {
    if (!def.byName.has(k) && k !== ignore) throw new EncodeError(`${path}: ${def.name} has no field ${JSON.stringify(k)}`);
  }
}

const FAST: EncodeHelpers = {
  scalar: writeScalar,
  enumValue: writeEnum,
  wireType: (f) => (f.kind === "message" ? WT_LEN : f.kind === "enum" ? WT_VARINT : wireTypeOf(f.scalar!)),
};
/** Encodings of a type the general way before its encoder is made (as decodings, BY_TABLE). */
const GENERAL = 16;
const encodedGenerally = new WeakMap<MessageDef, number>();

/** Encodes one message body (without the size prefix); `ignore`: see encodeFields. */
export function encodeMessage(def: MessageDef, obj: Msg, w: WireWriter = new WireWriter(), ignore?: string): Uint8Array {
  const start = w.pos;
  const n = encodedGenerally.get(def) ?? 0;
  if (n >= GENERAL) {
    try {
      fastEncoder(def, FAST)(w, obj, ignore);
      return w.buf.subarray(start, w.pos);
    } catch {
      // not a plain message: the general way below writes it or says what is wrong
      w.pos = start;
    }
  } else {
    encodedGenerally.set(def, n + 1);
  }
  encodeFields(w, def, obj, def.name, ignore);
  return w.buf.subarray(start, w.pos);
}
