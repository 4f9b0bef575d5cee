// criu's page-server protocol: a stream of fixed headers {cmd, nr_pages, vaddr, dst_id},
// each PS_IOV_ADD_F with PE_PRESENT followed by its pages' bytes. The low 16 bits of cmd
// are the command, the high 16 its pagemap flags; dst_id is (image id << 8 | type).
//
// Two layouts are in use: criu up to 4.1.1 sends 24-byte headers (u32 nr_pages), criu
// 4.2 32-byte ones (u64 nr_pages after 4 bytes of padding), with nothing on the wire to
// tell them apart but the bytes themselves. A server tells them from the first header
// (`layoutOf`); a client asks the server with a probe (send.ts).

import { PE_PARENT, PE_PRESENT } from "../../images/pages.js";

export const PS_IOV = {
  ADD: 1,
  HOLE: 2,
  OPEN: 3,
  OPEN2: 4,
  PARENT: 5,
  ADD_F: 6,
  GET: 7,
  CLOSE: 0x1023,
  FORCE_CLOSE: 0x1024,
} as const;

const NAMES = new Map<number, string>(Object.entries(PS_IOV).map(([k, v]) => [v, `PS_IOV_${k}`]));

/** "PS_IOV_OPEN2", or "command 0x1234" for one criu does not have. */
export function commandName(cmd: number): string {
  return NAMES.get(cmd) ?? `command 0x${cmd.toString(16)}`;
}

/** Header sizes: criu ≤ 4.1 (u32 nr_pages) and criu 4.2 (u64 nr_pages). */
export type Layout = 24 | 32;

export interface Header {
  /** the command (low 16 bits of the wire's cmd) */
  cmd: number;
  /** pagemap flags of PS_IOV_ADD_F (high 16 bits) */
  flags: number;
  nrPages: bigint;
  vaddr: bigint;
  dstId: bigint;
}

const TYPE_PID = 1;
const TYPE_SHMEM = 2;
/** dst_id types older criu versions sent for a task's pagemap, and for shared memory. */
const LEGACY_PID = new Set([TYPE_PID, 10, 11, 16, 17]);
const LEGACY_SHMEM = new Set([TYPE_SHMEM, 27, 28, 29, 32, 33, 34]);

export type PagemapKind = "pid" | "shmem";

export function encodeDst(kind: PagemapKind, id: number): bigint {
  return (BigInt(id) << 8n) | BigInt(kind === "pid" ? TYPE_PID : TYPE_SHMEM);
}

/** The pagemap a dst_id names, or undefined for a type criu never sent. */
export function decodeDst(dstId: bigint): { kind: PagemapKind; id: number } | undefined {
  const type = Number(dstId & 0xffn);
  const id = dstId >> 8n;
  if (id > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  if (LEGACY_PID.has(type)) return { kind: "pid", id: Number(id) };
  if (LEGACY_SHMEM.has(type)) return { kind: "shmem", id: Number(id) };
  return undefined;
}

/** The image a pagemap's dst_id is written to, as criu names it. */
export function pagemapName(d: { kind: PagemapKind; id: number }): string {
  return d.kind === "pid" ? `pagemap-${d.id}.img` : `pagemap-shmem-${d.id}.img`;
}

export function encodeHeader(layout: Layout, h: Header): Buffer {
  const b = Buffer.alloc(layout);
  b.writeUInt32LE(((h.flags << 16) | h.cmd) >>> 0, 0);
  if (layout === 24) {
    if (h.nrPages > 0xffffffffn) throw new RangeError(`${h.nrPages} pages do not fit a 24-byte page-server header`);
    b.writeUInt32LE(Number(h.nrPages), 4);
    b.writeBigUInt64LE(h.vaddr, 8);
    b.writeBigUInt64LE(h.dstId, 16);
  } else {
    b.writeBigUInt64LE(h.nrPages, 8);
    b.writeBigUInt64LE(h.vaddr, 16);
    b.writeBigUInt64LE(h.dstId, 24);
  }
  return b;
}

export function decodeHeader(layout: Layout, b: Uint8Array): Header {
  const v = new DataView(b.buffer, b.byteOffset, layout);
  const raw = v.getUint32(0, true);
  const wide = layout === 32;
  return {
    cmd: raw & 0xffff,
    flags: raw >>> 16,
    nrPages: wide ? v.getBigUint64(8, true) : BigInt(v.getUint32(4, true)),
    vaddr: v.getBigUint64(wide ? 16 : 8, true),
    dstId: v.getBigUint64(wide ? 24 : 16, true),
  };
}

/**
 * The layout of a connection from its first 24 bytes. Every client opens with a command
 * that names a pagemap (OPEN2, OPEN or PARENT), whose vaddr is 0: in a 24-byte header
 * bytes 16..24 are its dst_id (never 0), in a 32-byte one they are that vaddr. A session
 * with no pagemap at all opens with CLOSE, all zero in either layout: `undefined`, the
 * caller looks for 8 more bytes.
 */
export function layoutOf(first24: Uint8Array): Layout | undefined {
  const v = new DataView(first24.buffer, first24.byteOffset, 24);
  if (v.getBigUint64(16, true) !== 0n) return 24;
  const cmd = v.getUint32(0, true) & 0xffff;
  return cmd === PS_IOV.CLOSE || cmd === PS_IOV.FORCE_CLOSE ? undefined : 32;
}

/** The pagemap flags a command writes (ADD: present; HOLE: in the parent; ADD_F: its own). */
export function entryFlags(h: Header): number {
  if (h.cmd === PS_IOV.ADD) return PE_PRESENT;
  if (h.cmd === PS_IOV.HOLE) return PE_PARENT;
  return h.flags;
}

/** pid_max's ceiling (PID_MAX_LIMIT on 64-bit): a task's pid is below it. */
const PID_LIMIT = 1n << 22n;

/**
 * The layout of a lazy-pages session from its first 24 bytes, or undefined when they do
 * not tell (a session that opens with CLOSE: the caller looks for 8 more bytes, as above).
 * A lazy-pages daemon opens with PS_IOV_GET, whose dst_id is a task's pid and vaddr a
 * page address: in a 24-byte header bytes 16..24 are that pid and bytes 8..16 a
 * page-aligned address; in a 32-byte one bytes 8..16 are the page count and 16..24 the
 * address. Only an address below 4 MiB (nothing is mapped there by default) asked with a
 * count that is a multiple of 4096 would read wrong. tscriu's client may open with the
 * probe PARENT of send.ts instead, which `layoutOf` reads.
 */
export function lazyLayoutOf(first24: Uint8Array): Layout | undefined {
  const v = new DataView(first24.buffer, first24.byteOffset, 24);
  if ((v.getUint32(0, true) & 0xffff) !== PS_IOV.GET) return layoutOf(first24);
  const at8 = v.getBigUint64(8, true);
  const at16 = v.getBigUint64(16, true);
  return at16 < PID_LIMIT && at8 !== 0n && at8 % 4096n === 0n ? 24 : 32;
}
