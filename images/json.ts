// JSON that keeps 64-bit integers exact. crit writes u64 values such as
// 18446744073709551615 as plain numbers; JSON.parse would round them. parseJson
// returns integers beyond 2^53 as bigint; stringifyJson writes bigint as digits and
// follows Python's json.dump layout (", " and ": " on one line, or indent=4),
// escaping non-ASCII as \uXXXX like Python's default ensure_ascii.

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [k: string]: JsonValue };

export class JsonSyntaxError extends SyntaxError {
  override readonly name = "JsonSyntaxError";
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} at offset ${offset}`);
  }
}

/** Nesting deeper than this is refused (hostile input; crit JSON is ~6 deep). */
const MAX_DEPTH = 512;

export function parseJson(text: string): JsonValue {
  let i = 0;
  const n = text.length;
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const fail = (msg: string): never => {
    throw new JsonSyntaxError(msg, i);
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail("JSON nested too deeply");
    ws();
    if (i >= n) fail("unexpected end of JSON");
    const c = text[i]!;
    if (c === "{") {
      i++;
      const obj: { [k: string]: JsonValue } = {};
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const k = str();
        ws();
        if (text[i] !== ":") fail('expected ":"');
        i++;
        Object.defineProperty(obj, k, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === "[") {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail("unexpected character");
    i += m[0].length;
    if (m[2] === undefined && m[3] === undefined) {
      const v = Number(m[0]);
      return Number.isSafeInteger(v) ? v : BigInt(m[0]);
    }
    return Number(m[0]);
  };
  const str = (): string => {
    i++; // opening quote
    let out = "";
    let start = i;
    for (;;) {
      if (i >= n) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        i += 2;
        switch (e) {
          case '"':
            out += '"';
            break;
          case "\\":
            out += "\\";
            break;
          case "/":
            out += "/";
            break;
          case "b":
            out += "\b";
            break;
          case "f":
            out += "\f";
            break;
          case "n":
            out += "\n";
            break;
          case "r":
            out += "\r";
            break;
          case "t":
            out += "\t";
            break;
          case "u": {
            const h = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("bad \\u escape");
            out += String.fromCharCode(parseInt(h, 16));
            i += 4;
            break;
          }
          default:
            fail("bad escape");
        }
        start = i;
        continue;
      }
      if (c < 0x20) fail("control character in string");
      i++;
    }
  };
  const v = value(0);
  ws();
  if (i < n) fail("trailing characters after JSON");
  return v;
}

// Characters that need escaping in a JSON string (Python's ensure_ascii rules).
const NEEDS_ESCAPE = /[^\x20\x21\x23-\x5b\x5d-\x7e]/;

function quote(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return '"' + s + '"';
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c < 0x20 || c > 0x7e) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += s[k];
  }
  return out + '"';
}

const ZEROS = ["", "0", "00", "000", "0000", "00000", "000000", "0000000", "00000000"];

/**
 * Number to JSON text. Large integers (addresses) are cut in two below 2^30 each:
 * V8 turns small integers into text much faster than big doubles (2-3x here).
 */
function num(v: number): string {
  if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
    if (v < 0) return "-" + num(-v);
    if (v < 0x40000000) return "" + v;
    const hi = Math.floor(v / 1e9);
    const lo = "" + (v - hi * 1e9);
    return hi + ZEROS[9 - lo.length]! + lo;
  }
  if (Number.isFinite(v)) return String(v);
  return v > 0 ? "Infinity" : v < 0 ? "-Infinity" : "NaN";
}

const PAD_SPACES = " ".repeat(256);

/** JSON text of a scalar, as Python writes it. */
export function scalarText(x: null | boolean | number | bigint | string): string {
  switch (typeof x) {
    case "string":
      return NEEDS_ESCAPE.test(x) ? quote(x) : '"' + x + '"';
    case "number":
      return num(x);
    case "bigint":
      return x.toString();
    case "boolean":
      return x ? "true" : "false";
    default:
      return "null";
  }
}

/**
 * Writes JSON text as bytes (ASCII only: non-ASCII is escaped, as Python does),
 * in Python's json.dump layout. Output goes to a growing buffer, or to `sink` in
 * chunks of about 1 MiB so a large image never exists twice in memory.
 */
export class JsonWriter {
  // Starts small (most images are a few KiB) and doubles; a sink takes it in 1 MiB chunks.
  private buf = Buffer.allocUnsafe(1 << 14);
  private pos = 0;
  /** per open container: has it an item yet */
  private readonly first: boolean[] = [];

  constructor(
    readonly indent: number | undefined,
    private readonly sink?: (chunk: Uint8Array) => void,
  ) {}

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.sink && this.pos > 0 && this.buf.length >= 1 << 20) {
      this.sink(this.buf.subarray(0, this.pos));
      this.buf = Buffer.allocUnsafe(this.buf.length);
      this.pos = 0;
      if (n <= this.buf.length) return;
    }
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = Buffer.allocUnsafe(size);
    this.buf.copy(nb, 0, 0, this.pos);
    this.buf = nb;
  }

  /** Appends ASCII text. */
  /** Text not yet copied into buf: appending to a string is cheap (V8 ropes), and
   * copying 64 KiB at a time beats a native call per small piece. */
  private pending = "";

  raw(s: string): void {
    this.pending += s;
    if (this.pending.length > 1 << 16) this.copyPending();
  }

  private copyPending(): void {
    const s = this.pending;
    this.pending = "";
    this.room(s.length);
    this.pos += this.buf.write(s, this.pos, "latin1");
  }

  /** "\n" + indentation of each level, and the same after ",", made once. */
  private readonly nl: string[] = [];
  private readonly commaNl: string[] = [];

  /** "\n" and the indentation of `level` ("" without indent). */
  newlineText(level: number): string {
    if (this.indent === undefined) return "";
    let t = this.nl[level];
    if (t === undefined) {
      const n = (this.indent ?? 0) * level;
      t = "\n" + (n <= PAD_SPACES.length ? PAD_SPACES.slice(0, n) : " ".repeat(n));
      this.nl[level] = t;
      this.commaNl[level] = "," + t;
    }
    return t;
  }

  private newline(level: number): void {
    this.raw(this.newlineText(level));
  }

  /** Separator before the next item of the innermost container. */
  private sep(): void {
    const d = this.first.length;
    if (d === 0) return;
    if (this.first[d - 1]) {
      this.first[d - 1] = false;
      if (this.indent !== undefined) this.newline(d);
    } else if (this.indent === undefined) this.raw(", ");
    else {
      this.newlineText(d);
      this.raw(this.commaNl[d]!);
    }
  }

  private open(c: string): void {
    this.raw(c);
    this.first.push(true);
  }

  private close(c: string, empty: string): void {
    const wasEmpty = this.first.pop();
    if (wasEmpty) {
      // "{}" / "[]": drop the opening bracket written by open()
      if (this.pending.length > 0) this.pending = this.pending.slice(0, -1);
      else this.pos -= 1;
      this.raw(empty);
      return;
    }
    if (this.indent !== undefined) this.newline(this.first.length);
    this.raw(c);
  }

  beginObject(): void {
    this.open("{");
  }
  endObject(): void {
    this.close("}", "{}");
  }
  beginArray(): void {
    this.open("[");
  }
  endArray(): void {
    this.close("]", "[]");
  }

  /** An object key; the value follows with value() or a begin*(). */
  key(k: string): void {
    this.sep();
    let q = this.keys.get(k);
    if (q === undefined) this.keys.set(k, (q = quote(k) + ": "));
    this.raw(q);
    this.keyed = true;
  }
  private readonly keys = new Map<string, string>();
  /** a key was just written: its value needs no separator */
  private keyed = false;

  /** Before a value: a separator in arrays, nothing after a key. */
  private before(): void {
    if (this.keyed) this.keyed = false;
    else this.sep();
  }

  value(x: null | boolean | number | bigint | string): void {
    this.before();
    this.raw(scalarText(x));
  }

  /** A value given as ready JSON text, e.g. a whole message from crit-json's msgText. */
  item(text: string): void {
    this.before();
    this.raw(text);
  }

  /** begin*() after key() or in an array. */
  beginObjectValue(): void {
    this.before();
    this.beginObject();
  }
  beginArrayValue(): void {
    this.before();
    this.beginArray();
  }

  /** Everything written so far (when there is no sink). */
  text(): string {
    this.copyPending();
    return this.buf.toString("latin1", 0, this.pos);
  }

  /** Hands the rest to the sink. */
  end(): void {
    this.copyPending();
    if (this.sink && this.pos > 0) this.sink(this.buf.subarray(0, this.pos));
    this.pos = 0;
  }
}

/** Writes any JSON value (objects, arrays, bigint, …) to w. */
export function writeJsonValue(w: JsonWriter, x: unknown): void {
  if (x === null || x === undefined || typeof x !== "object") {
    if (typeof x === "function" || typeof x === "symbol") throw new TypeError(`cannot write ${typeof x} as JSON`);
    w.value((x ?? null) as null | boolean | number | bigint | string);
    return;
  }
  if (Array.isArray(x)) {
    w.beginArrayValue();
    for (const e of x) writeJsonValue(w, e);
    w.endArray();
    return;
  }
  w.beginObjectValue();
  const obj = x as Record<string, unknown>;
  for (const k in obj) {
    const v = obj[k];
    if (v === undefined) continue;
    w.key(k);
    writeJsonValue(w, v);
  }
  w.endObject();
}

/** Python json.dump(v) (indent undefined) or json.dump(v, indent=4), as a string. */
export function stringifyJson(v: unknown, indent?: number): string {
  const w = new JsonWriter(indent);
  writeJsonValue(w, v);
  return w.text();
}
