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

function quote(s: string): string {
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

function num(v: number): string {
  if (Number.isFinite(v)) return Number.isInteger(v) && !Object.is(v, -0) ? String(v) : String(v);
  return v > 0 ? "Infinity" : v < 0 ? "-Infinity" : "NaN";
}

/** Python json.dump(v) (indent undefined) or json.dump(v, indent=4). */
export function stringifyJson(v: unknown, indent?: number): string {
  const parts: string[] = [];
  const walk = (x: unknown, level: number): void => {
    if (x === null || x === undefined) parts.push("null");
    else if (typeof x === "boolean") parts.push(x ? "true" : "false");
    else if (typeof x === "number") parts.push(num(x));
    else if (typeof x === "bigint") parts.push(x.toString());
    else if (typeof x === "string") parts.push(quote(x));
    else if (Array.isArray(x)) {
      if (x.length === 0) {
        parts.push("[]");
        return;
      }
      if (indent === undefined) {
        parts.push("[");
        x.forEach((e, k) => {
          if (k) parts.push(", ");
          walk(e, level + 1);
        });
        parts.push("]");
      } else {
        const pad = "\n" + " ".repeat(indent * (level + 1));
        parts.push("[");
        x.forEach((e, k) => {
          parts.push(k ? "," + pad : pad);
          walk(e, level + 1);
        });
        parts.push("\n" + " ".repeat(indent * level) + "]");
      }
    } else if (typeof x === "object") {
      const keys = Object.keys(x).filter((k) => (x as Record<string, unknown>)[k] !== undefined);
      if (keys.length === 0) {
        parts.push("{}");
        return;
      }
      const pad = indent === undefined ? "" : "\n" + " ".repeat(indent * (level + 1));
      parts.push("{");
      keys.forEach((k, idx) => {
        if (indent === undefined) parts.push(idx ? ", " : "");
        else parts.push(idx ? "," + pad : pad);
        parts.push(quote(k), ": ");
        walk((x as Record<string, unknown>)[k], level + 1);
      });
      parts.push(indent === undefined ? "}" : "\n" + " ".repeat(indent * level) + "}");
    } else {
      throw new TypeError(`cannot write ${typeof x} as JSON`);
    }
  };
  walk(v, 0);
  return parts.join("");
}
