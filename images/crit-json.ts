// Images as crit's JSON: {"magic": "PAGEMAP", "entries": [...]}, raw data
// base64 under "extra", enums by name, bytes base64 (unix socket names
// quoted-printable). "--pretty" shows integers the way the schema's crit options
// say: hex addresses, flag names, "maj:min" devices, dictionary names, IP text.
// fromCrit reads both forms back, as crit's encode does.

import { entryDef, type Extra, type Image, type ImageEntry, imageTypeByName, startsGhostChunks } from "./codec.js";
import { ImageError } from "./errors.js";
import { type JsonValue, JsonWriter, scalarText, writeJsonValue } from "./json.js";
import type { Msg } from "./message.js";
import {
  base64Lines,
  decodeDev,
  DICTS,
  encodeDev,
  FLAG_TABLES,
  formatIp,
  fromBase64,
  hexString,
  mapFlags,
  parseIntLike,
  parseIp,
  quopriDecode,
  quopriEncode,
  unmapFlags,
} from "./pretty.js";
import type { FieldInfo, MessageDef } from "./schema/dsl.js";

type Obj = { [k: string]: JsonValue };

type Scalar = string | number | bigint | boolean | null;
type Convert = (v: unknown) => Scalar;

const identity: Convert = (v) => v as Scalar;

/**
 * How crit shows one value of a scalar or enum field, decided once per field and
 * mode: the checks of the crit options then run per field, not per value.
 */
function makeConverter(f: FieldInfo, pretty: boolean, hex: boolean): Convert {
  if (f.kind === "enum") return (v) => (typeof v === "string" ? v : null);
  const s = f.scalar!;
  if (s === "bytes") return f.opts.conv === "unix_name" ? (v) => quopriEncode(v as Uint8Array) : (v) => base64Lines(v as Uint8Array);
  if (s === "bool" || s === "string" || s === "float" || s === "double" || !pretty) return identity;
  if (hex) return (v) => hexString(v as number | bigint);
  if (f.opts.dev) {
    const old = f.opts.odev === true;
    return (v) => decodeDev(v as number | bigint, old);
  }
  if (f.opts.flags !== undefined) {
    const table = FLAG_TABLES.get(f.opts.flags);
    return table ? (v) => mapFlags(v as number | bigint, table) : (v) => hexString(v as number | bigint);
  }
  if (f.opts.dict !== undefined) {
    const names = DICTS.get(f.opts.dict)?.get(f.name);
    if (names) return (v) => names.get(Number(v)) ?? (v as number | bigint);
  }
  return identity;
}

const converters = new WeakMap<FieldInfo, Convert[]>();

function converter(f: FieldInfo, pretty: boolean, hex: boolean): Convert {
  let list = converters.get(f);
  if (!list) converters.set(f, (list = []));
  const k = (pretty ? 2 : 0) | (hex ? 1 : 0);
  return (list[k] ??= makeConverter(f, pretty, hex));
}

function castOut(f: FieldInfo, v: unknown, pretty: boolean, hex: boolean): JsonValue {
  if (f.kind === "message") return msgOut(f.message!, v as Msg, pretty, hex);
  return converter(f, pretty, hex)(v);
}

function msgOut(def: MessageDef, m: Msg, pretty: boolean, hexIn: boolean): Obj {
  const out: Obj = {};
  for (const f of def.ordered) {
    const v = m[f.name];
    if (v === undefined) continue;
    const hex = hexIn || f.opts.hex === true;
    if (f.label === "repeated") {
      const arr = v as unknown[];
      if (arr.length === 0) continue;
      if (pretty && f.opts.ipadd) out[f.name] = [formatIp(arr as number[])];
      else out[f.name] = arr.map((x) => castOut(f, x, pretty, hex));
    } else {
      out[f.name] = castOut(f, v, pretty, hex);
    }
  }
  return out;
}

function extraOut(type: Image["type"], e: ImageEntry): JsonValue {
  const x = e.extra;
  if (x === undefined) return null;
  if (x instanceof Uint8Array) return base64Lines(x);
  if (Array.isArray(x)) {
    if (type.layout.kind === "ipc-msg") {
      const def = type.layout.msg;
      return (x as (Msg | Uint8Array)[]).map((m) => (m instanceof Uint8Array ? base64Lines(m) : msgOut(def, m, false, false)));
    }
    return x as number[];
  }
  return { inq: base64Lines(x.inq), outq: base64Lines(x.outq) };
}

/** An image as crit's JSON value. */
export function toCrit(img: Image, pretty = false): Obj {
  const entries = img.entries.map((e, i) => {
    const o = msgOut(entryDef(img.type, i, true), e, pretty, false);
    if (e.extra !== undefined) o["extra"] = extraOut(img.type, e);
    return o;
  });
  return { magic: img.type.name, entries };
}

// ---------------------------------------------------------------- reading crit JSON

class Path {
  constructor(readonly text: string) {}
  fail(msg: string): never {
    throw new ImageError(`${this.text}: ${msg}`);
  }
}

function isObj(v: JsonValue | undefined): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function intIn(f: FieldInfo, v: JsonValue, p: Path): bigint {
  if (typeof v === "number") {
    if (!Number.isInteger(v)) p.fail(`expected an integer, got ${v}`);
    return BigInt(v);
  }
  if (typeof v === "bigint") return v;
  if (typeof v === "boolean") return v ? 1n : 0n;
  if (typeof v !== "string") return p.fail(`expected an integer, got ${v === null ? "null" : typeof v}`);
  try {
    if (f.opts.dev) return encodeDev(v, f.opts.odev === true);
    if (f.opts.flags !== undefined) {
      const table = FLAG_TABLES.get(f.opts.flags);
      if (table) return unmapFlags(v, table);
    }
    if (f.opts.dict !== undefined) {
      const dict = DICTS.get(f.opts.dict)?.get(f.name);
      if (dict) for (const [k, name] of dict) if (name === v) return BigInt(k);
    }
    return parseIntLike(v);
  } catch (e) {
    return p.fail((e as Error).message);
  }
}

function castIn(f: FieldInfo, v: JsonValue, p: Path): unknown {
  if (f.kind === "message") {
    if (!isObj(v)) return p.fail(`expected an object (${f.message!.name})`);
    return msgIn(f.message!, v, p);
  }
  if (f.kind === "enum") {
    if (typeof v === "string") {
      if (!(v in f.enumDef!.values)) p.fail(`${JSON.stringify(v)} is not a value of enum ${f.enumDef!.name}`);
      return v;
    }
    if (typeof v === "number" && Number.isInteger(v)) return f.enumDef!.byNumber.get(v) ?? v;
    return p.fail(`expected an enum name of ${f.enumDef!.name}`);
  }
  const s = f.scalar!;
  switch (s) {
    case "bytes":
      if (typeof v !== "string") return p.fail("expected a base64 string");
      try {
        return f.opts.conv === "unix_name" ? quopriDecode(v) : fromBase64(v);
      } catch (e) {
        return p.fail((e as Error).message);
      }
    case "string":
      if (typeof v !== "string") return p.fail("expected a string");
      return v;
    case "bool":
      if (typeof v === "boolean") return v;
      if (typeof v === "number") return v !== 0;
      return p.fail("expected a boolean");
    case "float":
    case "double":
      if (typeof v !== "number") return p.fail("expected a number");
      return v;
    default: {
      const b = intIn(f, v, p);
      const wide = s === "int64" || s === "uint64" || s === "sint64" || s === "fixed64" || s === "sfixed64";
      if (wide) return b;
      if (b < -(2n ** 31n) || b > 2n ** 32n - 1n) p.fail(`${b} does not fit a 32-bit field`);
      return Number(b);
    }
  }
}

function msgIn(def: MessageDef, o: Obj, p: Path): Msg {
  const out: Msg = {};
  for (const k of Object.keys(o)) {
    if (!def.byName.has(k)) p.fail(`${def.name} has no field ${JSON.stringify(k)}`);
  }
  for (const f of def.ordered) {
    const v = o[f.name];
    const fp = new Path(`${p.text}.${f.name}`);
    if (v === undefined || v === null) {
      if (f.label === "required") fp.fail("required field is missing");
      continue;
    }
    if (f.label === "repeated") {
      if (!Array.isArray(v)) return fp.fail("expected an array");
      if (f.opts.ipadd && typeof v[0] === "string") {
        try {
          out[f.name] = parseIp(v[0]);
        } catch (e) {
          fp.fail((e as Error).message);
        }
        continue;
      }
      out[f.name] = v.map((x, i) => castIn(f, x, new Path(`${fp.text}[${i}]`)));
    } else {
      out[f.name] = castIn(f, v, fp);
    }
  }
  return out;
}

function extraIn(img: { type: Image["type"] }, v: JsonValue, p: Path): Extra {
  const b64 = (x: JsonValue | undefined, pp: Path): Uint8Array => {
    if (typeof x !== "string") return pp.fail("expected base64 data");
    try {
      return fromBase64(x);
    } catch (e) {
      return pp.fail((e as Error).message);
    }
  };
  const layout = img.type.layout;
  switch (layout.kind) {
    case "tcp":
      if (!isObj(v)) return p.fail('expected {"inq": …, "outq": …}');
      return { inq: b64(v["inq"], new Path(`${p.text}.inq`)), outq: b64(v["outq"], new Path(`${p.text}.outq`)) };
    case "ipc-sem":
      if (!Array.isArray(v)) return p.fail("expected a list of semaphore values");
      return v.map((x, i) => {
        if (typeof x !== "number" || !Number.isInteger(x) || x < 0 || x > 0xffff) new Path(`${p.text}[${i}]`).fail("expected a u16");
        return x as number;
      });
    case "ipc-msg":
      if (!Array.isArray(v)) return p.fail("expected a list of messages and their data");
      return v.map((x, i) => {
        const pp = new Path(`${p.text}[${i}]`);
        if (i % 2 === 0) {
          if (!isObj(x)) return pp.fail("expected a message object");
          return msgIn(layout.msg, x, pp);
        }
        return b64(x, pp);
      });
    default:
      return b64(v, p);
  }
}

/** Reads crit's JSON (plain or --pretty) back into an image. Errors name the JSON path. */
export function fromCrit(input: unknown, source = "JSON"): Image {
  const json = input as JsonValue;
  const root = new Path(source);
  if (!isObj(json)) return root.fail('expected an object with "magic" and "entries"');
  const magic = json["magic"];
  if (typeof magic !== "string") return root.fail('"magic" is missing or not a string');
  const type = imageTypeByName(magic);
  if (!type) return root.fail(`unknown magic ${JSON.stringify(magic)}`);
  const list = json["entries"];
  if (!Array.isArray(list)) return root.fail('"entries" is missing or not an array');
  let ghostChunks = false;
  const entries = list.map((e, i): ImageEntry => {
    const p = new Path(`${source}: entries[${i}]`);
    if (!isObj(e)) return p.fail("expected an object");
    const def = entryDef(type, i, ghostChunks);
    const { extra, ...fields } = e;
    const m: ImageEntry = msgIn(def, fields, p);
    if (extra !== undefined && extra !== null) m.extra = extraIn({ type }, extra, new Path(`${p.text}.extra`));
    if (startsGhostChunks(type, i, m)) ghostChunks = true;
    return m;
  });
  return { type, entries };
}

// ---------------------------------------------------------------- streaming text

/** Bytes of raw data after an entry (semaphores count 2 each). */
function extraSize(x: Extra): number {
  if (x instanceof Uint8Array) return x.length;
  if (Array.isArray(x)) return x.reduce<number>((s, v) => s + (v instanceof Uint8Array ? v.length : typeof v === "number" ? 2 : 0), 0);
  return x.inq.length + x.outq.length;
}

/** crit's --nopl size: "17B", "1.5KB", … */
function humanSize(n: number): string {
  for (const unit of ["", "K", "M", "G", "T", "P", "E", "Z"]) {
    if (n < 1024) return Number.isInteger(n) ? `${n}${unit}B` : `${n.toFixed(1)}${unit}B`;
    n /= 1024;
  }
  return `${n.toFixed(1)}YB`;
}

const keyTexts = new WeakMap<FieldInfo, string>();

function keyText(f: FieldInfo): string {
  let k = keyTexts.get(f);
  if (k === undefined) keyTexts.set(f, (k = scalarText(f.name) + ": "));
  return k;
}

/**
 * One message as crit's JSON text, its fields at `level + 1` and its closing brace
 * at `level` (with --pretty). Built as one string per message: far cheaper than a
 * writer call per token on images of a million entries.
 */
function msgText(w: JsonWriter, def: MessageDef, m: Msg, pretty: boolean, hexIn: boolean, level: number): string {
  const inner = level + 1;
  const open = w.newlineText(inner);
  const comma = pretty ? "," + open : ", ";
  let s = "{";
  let first = true;
  for (const f of def.ordered) {
    const v = m[f.name];
    if (v === undefined) continue;
    if (f.label === "repeated" && (v as unknown[]).length === 0) continue;
    s += (first ? open : comma) + keyText(f);
    first = false;
    const hex = hexIn || f.opts.hex === true;
    if (f.label === "repeated") {
      const arr = v as unknown[];
      const itemOpen = w.newlineText(inner + 1);
      const itemComma = pretty ? "," + itemOpen : ", ";
      let a = "[";
      if (pretty && f.opts.ipadd) a += itemOpen + scalarText(formatIp(arr as number[]));
      else if (f.kind === "message") {
        for (let k = 0; k < arr.length; k++) a += (k ? itemComma : itemOpen) + msgText(w, f.message!, arr[k] as Msg, pretty, hex, inner + 1);
      } else {
        const conv = converter(f, pretty, hex);
        for (let k = 0; k < arr.length; k++) a += (k ? itemComma : itemOpen) + scalarText(conv(arr[k]));
      }
      s += a + w.newlineText(inner) + "]";
    } else if (f.kind === "message") {
      s += msgText(w, f.message!, v as Msg, pretty, hex, inner);
    } else {
      s += scalarText(converter(f, pretty, hex)(v));
    }
  }
  return first ? "{}" : s + w.newlineText(level) + "}";
}

/**
 * Writes an image as crit's JSON text straight from the decoded entries (no
 * intermediate JSON objects): the same result as writeJsonValue(w, toCrit(img)),
 * used where images are large.
 */
export function writeCrit(
  w: JsonWriter,
  img: { type: Image["type"]; entries: Iterable<ImageEntry> },
  pretty = false,
  opts: { nopl?: boolean } = {},
): void {
  w.beginObjectValue();
  w.key("magic");
  w.value(img.type.name);
  w.key("entries");
  w.beginArrayValue();
  let i = 0;
  for (const e of img.entries) {
    const def = entryDef(img.type, i++, true);
    if (e.extra === undefined) {
      // entries are items of the array under the root object: level 2
      w.item(msgText(w, def, e, pretty, false, 2));
    } else {
      // Entries with raw data are few and small: the object path is simplest.
      const extra = opts.nopl ? `... <${humanSize(extraSize(e.extra))}>` : extraOut(img.type, e);
      writeJsonValue(w, { ...msgOut(def, e, pretty, false), extra });
    }
  }
  w.endArray();
  w.endObject();
}
