// The tables and conversions behind crit's human-readable forms: flag names,
// value dictionaries, device numbers, IP addresses, quoted-printable unix socket
// names and base64 with line breaks. Facts from crit (pycriu/images/pb2dict.py).

export type FlagTable = readonly (readonly [string, number])[];

const mmapProt: FlagTable = [
  ["PROT_READ", 0x1],
  ["PROT_WRITE", 0x2],
  ["PROT_EXEC", 0x4],
];

const mmapFlags: FlagTable = [
  ["MAP_SHARED", 0x1],
  ["MAP_PRIVATE", 0x2],
  ["MAP_DROPPABLE", 0x08],
  ["MAP_ANON", 0x20],
  ["MAP_GROWSDOWN", 0x0100],
];

const mmapStatus: FlagTable = [
  ["VMA_AREA_NONE", 0],
  ["VMA_AREA_REGULAR", 1 << 0],
  ["VMA_AREA_STACK", 1 << 1],
  ["VMA_AREA_VSYSCALL", 1 << 2],
  ["VMA_AREA_VDSO", 1 << 3],
  ["VMA_AREA_HEAP", 1 << 5],
  ["VMA_FILE_PRIVATE", 1 << 6],
  ["VMA_FILE_SHARED", 1 << 7],
  ["VMA_ANON_SHARED", 1 << 8],
  ["VMA_ANON_PRIVATE", 1 << 9],
  ["VMA_AREA_SYSVIPC", 1 << 10],
  ["VMA_AREA_SOCKET", 1 << 11],
  ["VMA_AREA_VVAR", 1 << 12],
  ["VMA_AREA_AIORING", 1 << 13],
  ["VMA_AREA_MEMFD", 1 << 14],
  ["VMA_AREA_SHSTK", 1 << 15],
  ["VMA_AREA_UPROBES", 1 << 17],
  ["VMA_UNSUPP", 2 ** 31],
];

const rfileFlags: FlagTable = [
  ["O_WRONLY", 0o1],
  ["O_RDWR", 0o2],
  ["O_CREAT", 0o100],
  ["O_EXCL", 0o200],
  ["O_NOCTTY", 0o400],
  ["O_TRUNC", 0o1000],
  ["O_APPEND", 0o2000],
  ["O_NONBLOCK", 0o4000],
  ["O_DSYNC", 0o10000],
  ["FASYNC", 0o20000],
  ["O_DIRECT", 0o40000],
  ["O_LARGEFILE", 0o100000],
  ["O_DIRECTORY", 0o200000],
  ["O_NOFOLLOW", 0o400000],
  ["O_NOATIME", 0o1000000],
  ["O_CLOEXEC", 0o2000000],
];

const sealsFlags: FlagTable = [
  ["F_SEAL_SEAL", 0x1],
  ["F_SEAL_SHRINK", 0x2],
  ["F_SEAL_GROW", 0x4],
  ["F_SEAL_WRITE", 0x8],
  ["F_SEAL_FUTURE_WRITE", 0x10],
];

const pmapFlags: FlagTable = [
  ["PE_PARENT", 1 << 0],
  ["PE_LAZY", 1 << 1],
  ["PE_PRESENT", 1 << 2],
];

export const FLAG_TABLES: ReadonlyMap<string, FlagTable> = new Map([
  ["mmap.prot", mmapProt],
  ["mmap.flags", mmapFlags],
  ["mmap.status", mmapStatus],
  ["rfile.flags", rfileFlags],
  ["pmap.flags", pmapFlags],
  ["seals.flags", sealsFlags],
]);

/** Value dictionaries by dictionary name, then by field name. */
export const DICTS: ReadonlyMap<string, ReadonlyMap<string, ReadonlyMap<number, string>>> = new Map([
  ["gen", new Map([["task_state", new Map([[1, "Alive"], [2, "Dead"], [3, "Stopped"], [6, "Zombie"]])]])],
  [
    "sk",
    new Map([
      ["family", new Map([[1, "UNIX"], [2, "INET"], [10, "INET6"], [16, "NETLINK"], [17, "PACKET"]])],
      ["type", new Map([[1, "STREAM"], [2, "DGRAM"], [3, "RAW"], [5, "SEQPACKET"], [10, "PACKET"]])],
      [
        "state",
        new Map([
          [1, "ESTABLISHED"],
          [2, "SYN_SENT"],
          [3, "SYN_RECV"],
          [4, "FIN_WAIT1"],
          [5, "FIN_WAIT2"],
          [6, "TIME_WAIT"],
          [7, "CLOSE"],
          [8, "CLOSE_WAIT"],
          [9, "LAST_ACK"],
          [10, "LISTEN"],
        ]),
      ],
      ["proto", new Map([[0, "IP"], [6, "TCP"], [17, "UDP"], [136, "UDPLITE"]])],
    ]),
  ],
]);

export function hexString(v: number | bigint): string {
  if (typeof v === "number") {
    if (v < 0) return "-" + hexString(-v);
    // Doubles print in hex slowly; two 32-bit halves print fast (addresses are > 2^32).
    if (v > 0xffffffff && v <= Number.MAX_SAFE_INTEGER) {
      const lo = (v % 0x100000000).toString(16);
      return "0x" + Math.floor(v / 0x100000000).toString(16) + "00000000".slice(lo.length) + lo;
    }
    return "0x" + v.toString(16);
  }
  const b = v;
  return b < 0n ? "-0x" + (-b).toString(16) : "0x" + b.toString(16);
}

const flagMemo = new WeakMap<FlagTable, Map<number, string>>();

/** "A | B | 0x40": known bits by name, the rest in hex; "" for 0. Memoized: flag values repeat. */
export function mapFlags(value: number | bigint, table: FlagTable): string {
  if (typeof value === "number") {
    let memo = flagMemo.get(table);
    if (!memo) flagMemo.set(table, (memo = new Map<number, string>()));
    let s = memo.get(value);
    if (s === undefined) {
      s = mapFlagsSlow(value, table);
      if (memo.size < 4096) memo.set(value, s);
    }
    return s;
  }
  return mapFlagsSlow(value, table);
}

function mapFlagsSlow(value: number | bigint, table: FlagTable): string {
  let v = BigInt(value);
  const names: string[] = [];
  let all = 0n;
  for (const [name, bit] of table) {
    const b = BigInt(bit);
    if (v & b) names.push(name);
    all |= b;
  }
  v &= ~all;
  if (v) names.push(hexString(v));
  return names.join(" | ");
}

/** Inverse of mapFlags; accepts names and numbers ("0x40", "64"). */
export function unmapFlags(s: string, table: FlagTable): bigint {
  if (s === "") return 0n;
  const byName = new Map(table.map(([n, b]) => [n, BigInt(b)]));
  let v = 0n;
  for (const part of s.split("|")) {
    const p = part.trim();
    const known = byName.get(p);
    if (known !== undefined) v += known;
    else v += parseIntLike(p);
  }
  return v;
}

/** Python's int(s, 0): decimal, 0x…, 0o…, 0b…, with sign. Throws on anything else. */
export function parseIntLike(s: string): bigint {
  const t = s.trim().replace(/_/g, "");
  const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0+|[1-9][0-9]*)$/.exec(t);
  if (!m) throw new SyntaxError(`not an integer: ${JSON.stringify(s)}`);
  const body = m[2]!;
  const mag = /^0[oO]/.test(body) ? BigInt("0o" + body.slice(2)) : BigInt(body);
  return m[1] === "-" ? -mag : mag;
}

const MINORBITS = 20;

/** Device numbers: the kernel's encoding (major << 20 | minor), or glibc's makedev with odev. */
export function decodeDev(value: number | bigint, old: boolean): string {
  const v = BigInt(value);
  if (old) {
    const major = ((v >> 8n) & 0xfffn) | ((v >> 32n) & ~0xfffn);
    const minor = (v & 0xffn) | ((v >> 12n) & ~0xffn);
    return `${major}:${minor}`;
  }
  return `${v >> BigInt(MINORBITS)}:${v & ((1n << BigInt(MINORBITS)) - 1n)}`;
}

export function encodeDev(s: string, old: boolean): bigint {
  const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(s);
  if (!m) throw new SyntaxError(`not a device number "major:minor": ${JSON.stringify(s)}`);
  const major = BigInt(m[1]!);
  const minor = BigInt(m[2]!);
  if (old) {
    return ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
  }
  return (major << BigInt(MINORBITS)) | minor;
}

const bswap32 = (v: number): number =>
  (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | ((v >>> 24) & 0xff)) >>> 0;

/** An address stored as network-order u32 words (1 for IPv4, 4 for IPv6), compressed text form. */
export function formatIp(words: readonly number[]): string {
  if (words.length === 1) {
    const v = bswap32(words[0]!);
    return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff].join(".");
  }
  const groups: number[] = [];
  for (let i = 0; i < 4; i++) {
    const v = bswap32(words[i] ?? 0);
    groups.push(v >>> 16, v & 0xffff);
  }
  // IPv4-mapped addresses print as ::ffff:a.b.c.d, as Python's ipaddress does.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const v = bswap32(words[3]!);
    return `::ffff:${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
  }
  // Longest run of two or more zero groups becomes "::" (first one on ties).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hexes = groups.map((g) => g.toString(16));
  if (best < 0) return hexes.join(":");
  return `${hexes.slice(0, best).join(":")}::${hexes.slice(best + bestLen).join(":")}`;
}

export function parseIp(s: string): number[] {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) {
    const b = v4.slice(1).map(Number);
    if (b.some((x) => x > 255)) throw new SyntaxError(`bad IPv4 address ${JSON.stringify(s)}`);
    return [bswap32(((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0)];
  }
  let text = s;
  const tail: number[] = [];
  const mapped = /^(.*:)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/.exec(s);
  if (mapped) {
    const w = bswap32(parseIp(mapped[2]!)[0]!);
    tail.push(w >>> 16, w & 0xffff);
    text = mapped[1]!.endsWith("::") ? mapped[1]! : mapped[1]!.slice(0, -1);
  }
  const halves = text.split("::");
  if (halves.length > 2) throw new SyntaxError(`bad IPv6 address ${JSON.stringify(s)}`);
  const parse = (p: string): number[] =>
    p === ""
      ? []
      : p.split(":").map((g) => {
          if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new SyntaxError(`bad IPv6 address ${JSON.stringify(s)}`);
          return parseInt(g, 16);
        });
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - head.length - rest.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) throw new SyntaxError(`bad IPv6 address ${JSON.stringify(s)}`);
  const groups = [...head, ...new Array<number>(fill).fill(0), ...rest, ...tail];
  const words: number[] = [];
  for (let i = 0; i < 8; i += 2) words.push(bswap32(((groups[i]! << 16) | groups[i + 1]!) >>> 0));
  return words;
}

/** Python's base64.encodebytes: lines of 76 characters, each ending in "\n". */
export function base64Lines(b: Uint8Array): string {
  const s = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
  if (s.length === 0) return "";
  let out = "";
  for (let i = 0; i < s.length; i += 76) out += s.slice(i, i + 76) + "\n";
  return out;
}

export function fromBase64(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 === 1) {
    throw new SyntaxError("not valid base64");
  }
  return new Uint8Array(Buffer.from(clean, "base64"));
}

const MAXLINE = 76;
const hexByte = (c: number): string => "=" + c.toString(16).toUpperCase().padStart(2, "0");

/** Quoted-printable, as Python's quopri.encodestring (crit's unix socket names). */
export function quopriEncode(b: Uint8Array): string {
  const lines: number[][] = [[]];
  for (const c of b) {
    if (c === 0x0a) lines.push([]);
    else lines[lines.length - 1]!.push(c);
  }
  const endsWithNl = b.length > 0 && b[b.length - 1] === 0x0a;
  if (endsWithNl) lines.pop();
  const out: string[] = [];
  lines.forEach((line, i) => {
    let enc = "";
    for (const c of line) {
      enc += c === 0x3d || c < 0x20 || c > 0x7e ? (c === 0x20 || c === 0x09 ? String.fromCharCode(c) : hexByte(c)) : String.fromCharCode(c);
    }
    const last = i === lines.length - 1;
    const lineEnd = last ? (endsWithNl ? "\n" : "") : "\n";
    while (enc.length > MAXLINE) {
      out.push(trailing(enc.slice(0, MAXLINE - 1)) + "=\n");
      enc = enc.slice(MAXLINE - 1);
    }
    out.push(trailing(enc) + lineEnd);
  });
  return out.join("");
}

/** RFC 1521: a line may not end in a space or tab; those are quoted. */
function trailing(s: string): string {
  const last = s.charCodeAt(s.length - 1);
  return last === 0x20 || last === 0x09 ? s.slice(0, -1) + hexByte(last) : s;
}

export function quopriDecode(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    if (ch === 0x3d) {
      if (s[i + 1] === "\n") {
        i += 1;
        continue;
      }
      if (s[i + 1] === "\r" && s[i + 2] === "\n") {
        i += 2;
        continue;
      }
      const h = s.slice(i + 1, i + 3);
      if (/^[0-9a-fA-F]{2}$/.test(h)) {
        out.push(parseInt(h, 16));
        i += 2;
        continue;
      }
      out.push(ch);
    } else {
      const bytes = Buffer.from(s[i]!, "utf8");
      for (const x of bytes) out.push(x);
    }
  }
  return new Uint8Array(out);
}
