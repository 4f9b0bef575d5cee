// Encoders made for one message, as message.ts makes its decoders: the fields written in
// order with their property names and tags written out, so that V8 sees one object shape
// and direct calls. An entry of a server's files.img (a socket: ~50 fields in five
// messages) took ~35 us through the general loop of message.ts, run cold by a short-lived
// dump; a thousand of them were the largest part of writing its images.
//
// Only the plain cases are written here: a value of the type the schema wants. Anything
// else (a missing required field, a value of another type, a key the message does not
// have) gives up, and message.ts encodes the message again its general way, which writes
// the same bytes or throws the error that names the field.

import type { EnumDef, FieldInfo, MessageDef, ScalarType } from "./schema/dsl.js";
import type { WireWriter } from "./wire.js";

type Msg = Record<string, unknown>;

/** Writes obj's fields (not `ignore`, a key that is no field); throws when it cannot. */
export type FastEncoder = (w: WireWriter, obj: Msg, ignore: string | undefined) => void;

/** What the generated code calls for the values it does not write itself (message.ts's, which check them). */
export interface EncodeHelpers {
  scalar(w: WireWriter, s: ScalarType, v: unknown): void;
  enumValue(w: WireWriter, e: EnumDef, v: unknown): void;
  wireType(f: FieldInfo): number;
}

/** Thrown to give up: message.ts then encodes the message its general way. */
const GIVE_UP = new Error("not encoded the fast way");
function giveUp(): never {
  throw GIVE_UP;
}

const encoders = new WeakMap<MessageDef, FastEncoder>();

/** The encoder of a message, made once. */
export function fastEncoder(def: MessageDef, h: EncodeHelpers): FastEncoder {
  let enc = encoders.get(def);
  if (!enc) encoders.set(def, (enc = makeEncoder(def, h)));
  return enc;
}

/** Code writing the value in `x` of field f (whose enum or message is consts[k]). */
function valueCode(f: FieldInfo, x: string, k: number): string {
  if (f.kind === "message") {
    return `if (typeof ${x} !== "object" || ${x} === null || Array.isArray(${x}) || ${x} instanceof Uint8Array) giveUp();
      { const at = w.beginLen(); sub(consts[${k}], w, ${x}); w.endLen(at); }`;
  }
  if (f.kind === "enum") return `h.enumValue(w, consts[${k}], ${x});`;
  switch (f.scalar!) {
    case "int32":
    case "sint32":
    case "sfixed32":
      return `if (typeof ${x} !== "number" || (${x} | 0) !== ${x}) giveUp(); w.${f.scalar}(${x});`;
    case "uint32":
    case "fixed32":
      return `if (typeof ${x} !== "number" || ${x} >>> 0 !== ${x}) giveUp(); w.${f.scalar}(${x});`;
    case "int64":
    case "uint64":
      // below 2^32: the varint of a uint32, as message.ts writes it
      return `if (typeof ${x} === "bigint" && ${x} >= 0n && ${x} <= 0xffffffffn) w.uint32(Number(${x}));
      else h.scalar(w, "${f.scalar}", ${x});`;
    case "bool":
      return `if (typeof ${x} !== "boolean") giveUp(); w.bool(${x});`;
    default:
      return `h.scalar(w, "${f.scalar}", ${x});`;
  }
}

function makeEncoder(def: MessageDef, h: EncodeHelpers): FastEncoder {
  const consts: unknown[] = [];
  let body = "";
  for (const f of def.ordered) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(f.name)) throw new Error(`schema ${def.name}: field name ${JSON.stringify(f.name)} is not an identifier`);
    const k = consts.length;
    consts.push(f.kind === "message" ? f.message : f.enumDef);
    const tag = (f.no << 3) | h.wireType(f);
    const read = f.name === "extra" ? `ignore === "extra" ? undefined : obj.extra` : `obj.${f.name}`;
    body += `  v = ${read};\n`;
    if (f.label === "required") body += `  if (v === undefined) giveUp();\n`;
    else body += `  if (v !== undefined) {\n`;
    if (f.label === "repeated") {
      body += `  if (!Array.isArray(v)) giveUp();\n`;
      if (f.packed && f.kind !== "message") {
        body += `  if (v.length) { w.uint32(${(f.no << 3) | 2}); const at = w.beginLen(); for (let i = 0; i < v.length; i++) { const x = v[i]; ${valueCode(f, "x", k)} } w.endLen(at); }\n`;
      } else {
        body += `  for (let i = 0; i < v.length; i++) { const x = v[i]; w.uint32(${tag}); ${valueCode(f, "x", k)} }\n`;
      }
    } else {
      body += `  w.uint32(${tag}); ${valueCode(f, "v", k)}\n`;
    }
    if (f.label !== "required") body += `  }\n`;
  }
  const src = `return function encode(w, obj, ignore) {
  let v;
${body}  for (const key in obj) if (!byName.has(key) && key !== ignore) giveUp();
};`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- code made from our own schema (names checked above), as message.ts's decoders
  const make = new Function("consts", "byName", "h", "giveUp", "sub", src) as (
    c: unknown[],
    b: ReadonlyMap<string, FieldInfo>,
    hh: EncodeHelpers,
    g: () => never,
    s: (d: MessageDef, w: WireWriter, o: Msg) => void,
  ) => FastEncoder;
  return make(consts, def.byName, h, giveUp, (d, w, o) => fastEncoder(d, h)(w, o, undefined));
}
