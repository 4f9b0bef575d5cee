// The little language the image schemas are written in. A schema is a plain
// object of fields, declared with req/opt/rep; the TypeScript type of an entry is
// inferred from it (Entry<typeof x>), and the codec walks the same object at run
// time. Field names and numbers are criu's (they are the wire format and crit's
// JSON keys); the crit options (hex, flags, dict, dev, ipadd, conv) drive crit's
// "--pretty" rendering.

export type ScalarType =
  | "int32"
  | "uint32"
  | "sint32"
  | "fixed32"
  | "sfixed32"
  | "int64"
  | "uint64"
  | "sint64"
  | "fixed64"
  | "sfixed64"
  | "bool"
  | "string"
  | "bytes"
  | "float"
  | "double";

export type Label = "required" | "optional" | "repeated";

/** crit's field options (criu's opts.proto): how --pretty shows a value. */
export interface CritOptions {
  /** show integers (and every integer below a message) as "0x…" */
  readonly hex?: boolean;
  /** repeated u32 holding an IPv4 (1 word) or IPv6 (4 words) address, network order */
  readonly ipadd?: boolean;
  /** name of a flag table in pretty.ts ("mmap.prot", "rfile.flags", …) */
  readonly flags?: string;
  /** kernel-encoded dev_t (major << 20 | minor), shown as "maj:min" */
  readonly dev?: boolean;
  /** with dev: old (glibc makedev) encoding */
  readonly odev?: boolean;
  /** name of a dictionary in pretty.ts ("gen", "sk"): value → name by field name */
  readonly dict?: string;
  /** custom bytes conversion ("unix_name": quoted-printable) */
  readonly conv?: string;
}

export interface EnumDef<N extends string = string> {
  readonly kind: "enum";
  readonly name: string;
  readonly values: Readonly<Record<N, number>>;
  readonly byNumber: ReadonlyMap<number, N>;
}

export type FieldType = ScalarType | EnumDef | MessageDef;

export interface FieldSpec<T extends FieldType = FieldType, L extends Label = Label> extends CritOptions {
  readonly no: number;
  readonly label: L;
  readonly type: T;
  /** repeated scalars: written packed (criu marks a few fields [packed=true]) */
  readonly packed?: boolean;
}

export type Fields = Readonly<Record<string, FieldSpec>>;

/** A field as the codec sees it at run time (name filled in, kind resolved). */
export interface FieldInfo {
  readonly name: string;
  readonly no: number;
  readonly label: Label;
  readonly kind: "scalar" | "enum" | "message";
  readonly scalar: ScalarType | undefined;
  readonly enumDef: EnumDef | undefined;
  readonly message: MessageDef | undefined;
  readonly packed: boolean;
  readonly opts: CritOptions;
}

export interface MessageDef<F extends Fields = Fields> {
  readonly kind: "message";
  readonly name: string;
  readonly fields: F;
  /** fields in field-number order: the order criu (protobuf-c) writes them and crit lists them */
  readonly ordered: readonly FieldInfo[];
  /** field number → info; holes are undefined */
  readonly byNo: readonly (FieldInfo | undefined)[];
  readonly byName: ReadonlyMap<string, FieldInfo>;
}

type ScalarValue<S extends ScalarType> = S extends "int64" | "uint64" | "sint64" | "fixed64" | "sfixed64"
  ? bigint
  : S extends "bool"
    ? boolean
    : S extends "string"
      ? string
      : S extends "bytes"
        ? Uint8Array
        : number;

/** The JavaScript value of one element of a field. Unknown enum numbers stay numbers. */
export type ValueOf<T extends FieldType> = T extends ScalarType
  ? ScalarValue<T>
  : T extends EnumDef<infer N>
    ? N | number
    : T extends MessageDef<infer F>
      ? Entry<F>
      : never;

type RequiredKeys<F extends Fields> = {
  [K in keyof F]: F[K]["label"] extends "required" ? K : never;
}[keyof F];
type OptionalKeys<F extends Fields> = Exclude<keyof F, RequiredKeys<F>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The typed entry of a message: required fields present, optional ones may be absent. */
export type Entry<M extends Fields | MessageDef> = M extends MessageDef<infer F>
  ? Entry<F>
  : M extends Fields
    ? Simplify<
        { -readonly [K in RequiredKeys<M>]: ValueOf<M[K]["type"]> } & {
          -readonly [K in OptionalKeys<M>]?: M[K]["label"] extends "repeated"
            ? ValueOf<M[K]["type"]>[]
            : ValueOf<M[K]["type"]>;
        }
      >
    : never;

export function req<T extends FieldType>(no: number, type: T, opts: CritOptions = {}): FieldSpec<T, "required"> {
  return { ...opts, no, label: "required", type };
}

export function opt<T extends FieldType>(no: number, type: T, opts: CritOptions = {}): FieldSpec<T, "optional"> {
  return { ...opts, no, label: "optional", type };
}

export function rep<T extends FieldType>(
  no: number,
  type: T,
  opts: CritOptions & { packed?: boolean } = {},
): FieldSpec<T, "repeated"> {
  return { ...opts, no, label: "repeated", type };
}

export function enumeration<const V extends Record<string, number>>(name: string, values: V): EnumDef<keyof V & string> {
  const byNumber = new Map<number, keyof V & string>();
  for (const [k, v] of Object.entries(values)) if (!byNumber.has(v)) byNumber.set(v, k);
  return { kind: "enum", name, values, byNumber };
}

export function message<const F extends Fields>(name: string, fields: F): MessageDef<F> {
  const infos: FieldInfo[] = [];
  for (const [fname, spec] of Object.entries(fields)) {
    const t = spec.type;
    const kind = typeof t === "string" ? "scalar" : t.kind;
    infos.push({
      name: fname,
      no: spec.no,
      label: spec.label,
      kind,
      scalar: typeof t === "string" ? t : undefined,
      enumDef: typeof t !== "string" && t.kind === "enum" ? t : undefined,
      message: typeof t !== "string" && t.kind === "message" ? t : undefined,
      packed: spec.packed === true,
      // the spec is its crit options (and no, label, type): no copy of each made at start-up
      opts: spec,
    });
  }
  infos.sort((a, b) => a.no - b.no);
  const byNo: (FieldInfo | undefined)[] = [];
  for (const f of infos) {
    if (!Number.isInteger(f.no) || f.no < 1 || f.no > 4096) throw new Error(`schema ${name}: bad field number ${f.no}`);
    if (byNo[f.no]) throw new Error(`schema ${name}: field number ${f.no} used twice`);
    byNo[f.no] = f;
  }
  return { kind: "message", name, fields, ordered: infos, byNo, byName: new Map(infos.map((f) => [f.name, f])) };
}
