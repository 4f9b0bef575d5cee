// Socket options as criu keeps them (sk_opts_entry, criu's sockets.c): read with
// getsockopt on tscriu's copy of a socket at dump time, set again on the new socket at
// restore in criu's order. The buffer sizes are kept as the kernel reports them, which is
// twice what was asked for: a restore asks for half.

import { bridge } from "../../host-bridge/load.js";
import { SO, SOL_SOCKET } from "../../host-bridge/constants.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { sk_opts_entry } from "../../images/schema/index.js";

export type SkOpts = Entry<typeof sk_opts_entry>;

/** The kernel keeps a buffer size in an int and doubles what it is given. */
const MAX_BUF = Math.floor(0x7fffffff / 2);

/** The most instructions a classic filter has (the kernel's BPF_MAXINSNS). */
export const MAX_FILTER_INSNS = 4096;

/**
 * A socket's classic BPF filter in criu's packing (code<<48 | jt<<40 | jf<<32 | k, so that
 * the image does not depend on the byte order); refused when it cannot be kept: an eBPF
 * program (SO_ATTACH_BPF) has no classic form to read back, and a locked filter
 * (SO_LOCK_FILTER) has no field in criu's image (criu 4.2 loses the lock).
 */
export function dumpFilter(fd: number, locked: boolean, refuse: (why: string) => Error): bigint[] {
  if (locked) throw refuse("has its socket filter locked (SO_LOCK_FILTER), which criu's image has no field for (the lock would be lost)");
  let raw: Buffer;
  try {
    raw = bridge().getSocketFilter(fd);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EACCES") throw refuse("has an eBPF socket filter (SO_ATTACH_BPF), which neither criu nor tscriu dumps (SO_GET_FILTER gives back classic filters only)");
    throw e;
  }
  return Array.from({ length: raw.length / 8 }, (_, i) => {
    const at = 8 * i;
    return (BigInt(raw.readUInt16LE(at)) << 48n) | (BigInt(raw[at + 2]!) << 40n) | (BigInt(raw[at + 3]!) << 32n) | BigInt(raw.readUInt32LE(at + 4));
  });
}

/** Attaches an image's classic filter (SO_ATTACH_FILTER); the kernel's checker refuses a bad program. */
function attachFilter(fd: number, words: readonly bigint[]): void {
  const raw = Buffer.alloc(8 * words.length);
  words.forEach((w, i) => {
    const at = 8 * i;
    raw.writeUInt16LE(Number((w >> 48n) & 0xffffn), at);
    raw[at + 2] = Number((w >> 40n) & 0xffn);
    raw[at + 3] = Number((w >> 32n) & 0xffn);
    raw.writeUInt32LE(Number(w & 0xffffffffn), at + 4);
  });
  try {
    bridge().attachSocketFilter(fd, raw);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "EINVAL" ? " (the kernel's checker refused the program)" : "";
    throw new Error(`setsockopt(SO_ATTACH_FILTER) of ${words.length} instructions: ${code ?? (e as Error).message}${why}`, { cause: e });
  }
}

/** Why an image's filter cannot be attached, found before anything is made (undefined when it can be tried). */
export function filterProblem(o: SkOpts): string | undefined {
  const n = o.so_filter?.length ?? 0;
  return n > MAX_FILTER_INSNS ? `has a socket filter of ${n} instructions, more than the kernel's ${MAX_FILTER_INSNS}` : undefined;
}

/**
 * The options of a socket, with the fields criu 4.2 writes for one: the timeouts,
 * priority, rcvlowat, buf_lock and the flags always; mark and linger only when set. A
 * unix or netlink socket's credentials options too (criu keeps them for those only;
 * since Linux 6.16 no other family has them). Two options criu 4.2 does not know
 * are written only when they differ from the default (SO_PASSPIDFD on, SO_PASSRIGHTS
 * off), so that a plain socket's entry is criu's.
 */
export function dumpSockOpts(fd: number, family: SkFamily, refuse: (why: string) => Error): SkOpts {
  const { spec, size } = sockOptsSpec(family);
  const raw = Buffer.allocUnsafe(size);
  bridge().getsockoptsInto(fd, spec, raw);
  return sockOptsOf(raw, family, (locked) => dumpFilter(fd, locked, refuse));
}

type SkFamily = "unix" | "netlink" | "inet" | "packet";

function layoutOf(family: SkFamily): Layout {
  const unix = family === "unix";
  return LAYOUTS.get(unix ? UNIX_OPTS : family === "netlink" ? NETLINK_OPTS : INET_OPTS)!;
}

/** The getsockoptsInto spec of a family's socket options ((level, name, size) triples) and the bytes it fills. */
export function sockOptsSpec(family: SkFamily): { spec: Int32Array; size: number } {
  const { spec, size } = layoutOf(family);
  return { spec, size };
}

/** Where an int option of `family`'s layout is, in bytes. */
function optionAt(l: Layout, family: SkFamily, name: number): number {
  const o = l.at.get(name);
  if (o === undefined) throw new Error(`socket option ${name} is not read for ${family} sockets`);
  return o;
}

/** One int option of those sockOptsSpec's spec read into `raw`. */
export function sockOptInt(raw: Buffer, family: SkFamily, name: number): number {
  return raw.readInt32LE(optionAt(layoutOf(family), family, name));
}

/**
 * dumpSockOpts of options already read by sockOptsSpec's spec into `raw` (a batch of
 * sockets read at once: tcpRepairSaveMany); `filter` reads the socket's classic filter
 * (refusing a locked one).
 */
export function sockOptsOf(raw: Buffer, family: SkFamily, filter: (locked: boolean) => bigint[]): SkOpts {
  const unix = family === "unix";
  const creds = unix || family === "netlink";
  const layout = layoutOf(family);
  const tail = layout.tail;
  // The ints as the kernel gave them, in the host's order (read through an Int32Array: a
  // Buffer read per option was ~20 µs of each socket of a thousand, in cold code).
  const words = raw.byteOffset % 4 === 0 ? new Int32Array(raw.buffer, raw.byteOffset, raw.length >> 2) : new Int32Array(Uint8Array.from(raw).buffer);
  const int = (name: number): number => words[optionAt(layout, family, name) >> 2]!;
  const bool = (name: number): boolean => int(name) !== 0;
  // the timeouts: two timevals (seconds, microseconds); most are 0 (no BigInt read then)
  const tv = (o: number): bigint => (words[(tail + o) >> 2] === 0 && words[(tail + o + 4) >> 2] === 0 ? 0n : raw.readBigInt64LE(tail + o));
  const mark = int(SO.MARK);
  const lingerOn = words[(tail + 32) >> 2] !== 0;
  const dev = raw[tail + 40] === 0 ? "" : raw.toString("latin1", tail + 40, tail + 40 + DEV_SIZE).replace(/\0.*$/s, "");
  const filters = filter(bool(SO.LOCK_FILTER));
  // (the optional fields set one by one, not spread in: this runs once per socket, cold)
  const o: SkOpts = {
    so_sndbuf: int(SO.SNDBUF),
    so_rcvbuf: int(SO.RCVBUF),
    so_snd_tmo_sec: tv(0),
    so_snd_tmo_usec: tv(8),
    so_rcv_tmo_sec: tv(16),
    so_rcv_tmo_usec: tv(24),
    reuseaddr: bool(SO.REUSEADDR),
    so_priority: int(SO.PRIORITY),
    so_rcvlowat: int(SO.RCVLOWAT),
  };
  if (mark !== 0) o.so_mark = mark;
  if (creds) {
    o.so_passcred = bool(SO.PASSCRED);
    o.so_passsec = bool(SO.PASSSEC);
  }
  o.so_dontroute = bool(SO.DONTROUTE);
  o.so_no_check = bool(SO.NO_CHECK);
  if (dev !== "") o.so_bound_dev = dev;
  o.so_reuseport = bool(SO.REUSEPORT);
  o.so_broadcast = bool(SO.BROADCAST);
  o.so_keepalive = bool(SO.KEEPALIVE);
  o.so_oobinline = int(SO.OOBINLINE) !== 0 ? 1 : 0;
  if (lingerOn) o.so_linger = words[(tail + 36) >> 2]!;
  o.so_buf_lock = int(SO.BUF_LOCK);
  if (unix && bool(SO.PASSPIDFD)) o.so_passpidfd = true;
  if (unix && !bool(SO.PASSRIGHTS)) o.so_passrights = false;
  if (filters.length) o.so_filter = filters;
  return o;
}

/** The SOL_SOCKET int options every socket's entry has. */
const COMMON_OPTS: readonly number[] = [SO.MARK, SO.SNDBUF, SO.RCVBUF, SO.REUSEADDR, SO.PRIORITY, SO.RCVLOWAT, SO.DONTROUTE, SO.NO_CHECK, SO.REUSEPORT, SO.BROADCAST, SO.KEEPALIVE, SO.OOBINLINE, SO.BUF_LOCK, SO.LOCK_FILTER];
const INET_OPTS = [...COMMON_OPTS];
const NETLINK_OPTS = [...COMMON_OPTS, SO.PASSCRED, SO.PASSSEC];
const UNIX_OPTS = [...NETLINK_OPTS, SO.PASSPIDFD, SO.PASSRIGHTS];
/** A device name's room (IFNAMSIZ is 16; criu reads up to 64 bytes too). */
const DEV_SIZE = 64;

/**
 * Each list as one getsockoptsInto call: its int options (4 bytes each, where `at` says),
 * then from `tail` the send and receive timeouts (a timeval each), SO_LINGER and the device.
 */
interface Layout {
  spec: Int32Array;
  size: number;
  at: Map<number, number>;
  tail: number;
}

const LAYOUTS = new Map<readonly number[], Layout>(
  [INET_OPTS, NETLINK_OPTS, UNIX_OPTS].map((names) => {
    const tail = 4 * names.length;
    const rest = [
      [SO.SNDTIMEO, 16],
      [SO.RCVTIMEO, 16],
      [SO.LINGER, 8],
      [SO.BINDTODEVICE, DEV_SIZE],
    ] as const;
    const spec = Int32Array.from([...names.flatMap((n) => [SOL_SOCKET, n, 4]), ...rest.flatMap(([n, size]) => [SOL_SOCKET, n, size])]);
    return [names, { spec, size: tail + rest.reduce((sum, [, size]) => sum + size, 0), at: new Map(names.map((n, i) => [n, 4 * i])), tail }];
  }),
);

/** The spec of each option list met (most are constants: built once). */
const specs = new WeakMap<readonly (readonly number[])[], Int32Array>();

function specOf(opts: readonly (readonly number[])[], per: number): Int32Array {
  let spec = specs.get(opts);
  if (!spec) {
    spec = new Int32Array(per * opts.length);
    opts.forEach((o, i) => spec!.set(o, per * i));
    specs.set(opts, spec);
  }
  return spec;
}

/** Int options of any level set in one call, in order: (level, name, value). */
export function setsockoptInts(fd: number, opts: readonly (readonly [level: number, name: number, value: number])[]): void {
  if (opts.length === 0) return;
  const spec = new Int32Array(3 * opts.length);
  opts.forEach((o, i) => spec.set(o, 3 * i));
  bridge().setsockoptInts(fd, spec);
}

const one = new Int32Array(3);

/** One int option set (setsockopt with an int; no Buffer made for it). */
export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  one[0] = level;
  one[1] = name;
  one[2] = value | 0;
  bridge().setsockoptInts(fd, one);
}

/** Int options of any level, read in one call, in the order asked (a constant list's spec is built once). */
export function getsockoptInts(fd: number, opts: readonly (readonly [level: number, name: number])[]): Int32Array {
  const out = new Int32Array(opts.length);
  bridge().getsockoptInts(fd, specOf(opts, 2), out);
  return out;
}

/** An int option's value as setsockopt takes it. */
export function int32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v | 0, 0);
  return b;
}

function set(fd: number, name: number, label: string, value: Buffer): void {
  try {
    bridge().setsockopt(fd, SOL_SOCKET, name, value);
  } catch (e) {
    throw new Error(`setsockopt(${label}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** SO_SNDBUFFORCE/SO_RCVBUFFORCE (past net.core.*mem_max), SO_SNDBUF/SO_RCVBUF without CAP_NET_ADMIN. */
export function setBuffers(fd: number, snd: number, rcv: number): void {
  try {
    setsockoptInts(fd, [
      [SOL_SOCKET, SO.SNDBUFFORCE, snd],
      [SOL_SOCKET, SO.RCVBUFFORCE, rcv],
    ]);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") throw e;
    set(fd, SO.SNDBUF, "SO_SNDBUF", int32(snd));
    set(fd, SO.RCVBUF, "SO_RCVBUF", int32(rcv));
  }
}

/** Room for any queue to be sent through a socket without blocking (criu's restore_prepare_socket). */
export function widenBuffers(fd: number): void {
  setBuffers(fd, MAX_BUF, MAX_BUF);
}

function timeval(sec: bigint, usec: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigInt64LE(BigInt.asIntN(64, sec), 0);
  b.writeBigInt64LE(BigInt.asIntN(64, usec), 8);
  return b;
}

/**
 * Sets the options of an image entry, in criu's order (restore_socket_opts). The filter
 * comes last, as criu's: once attached it filters what arrives, so a socket's receive
 * queue must be refilled before this runs.
 */
export function restoreSockOpts(fd: number, o: SkOpts): void {
  setBuffers(fd, Math.floor(o.so_sndbuf / 2), Math.floor(o.so_rcvbuf / 2));
  applySets(fd, sockOptSets(o));
  if (o.so_filter?.length) attachFilter(fd, o.so_filter);
}

/** A setsockopt of a restore: an int option, or one of bytes named by `label` (SO_LINGER). */
export type SockSet = readonly [level: number, name: number, value: number] | readonly [level: number, name: number, value: Buffer, label: string];

/** The sets of one call after another: the ints in one crossing between the others. */
export function applySets(fd: number, sets: readonly SockSet[]): void {
  let ints: (readonly [number, number, number])[] = [];
  for (const o of sets) {
    if (typeof o[2] === "number") {
      ints.push(o as readonly [number, number, number]);
      continue;
    }
    setsockoptInts(fd, ints);
    ints = [];
    try {
      bridge().setsockopt(fd, o[0], o[1], o[2]);
    } catch (e) {
      throw new Error(`setsockopt(${o[3]!}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  }
  setsockoptInts(fd, ints);
}

/**
 * What restoreSockOpts sets between the buffers and the filter, in criu's order: the int
 * options, with linger among them; the timeouts and the device after.
 */
export function sockOptSets(o: SkOpts): SockSet[] {
  const sets: SockSet[] = [];
  const int = (name: number, v: number | undefined): void => void (v !== undefined && sets.push([SOL_SOCKET, name, v]));
  const on = (name: number, v: boolean | number | undefined): void => void (v && sets.push([SOL_SOCKET, name, 1]));
  // What a new socket has already is not set again (a syscall each, for each of a
  // server's thousand connections): priority 0, low-water mark 1, mark 0, no timeouts.
  // SO_BUF_LOCK is, as the buffer sizes just set lock them.
  const unless = (fresh: number, name: number, v: number | undefined): void => void (v !== undefined && v !== fresh && sets.push([SOL_SOCKET, name, v]));
  int(SO.BUF_LOCK, o.so_buf_lock);
  unless(0, SO.PRIORITY, o.so_priority);
  unless(1, SO.RCVLOWAT, o.so_rcvlowat);
  unless(0, SO.MARK, o.so_mark);
  on(SO.REUSEADDR, o.reuseaddr);
  on(SO.PASSCRED, o.so_passcred);
  on(SO.PASSSEC, o.so_passsec);
  on(SO.DONTROUTE, o.so_dontroute);
  on(SO.NO_CHECK, o.so_no_check);
  on(SO.BROADCAST, o.so_broadcast);
  on(SO.OOBINLINE, o.so_oobinline);
  if (o.so_linger !== undefined) {
    const l = Buffer.alloc(8);
    l.writeInt32LE(1, 0);
    l.writeInt32LE(o.so_linger | 0, 4);
    sets.push([SOL_SOCKET, SO.LINGER, l, "SO_LINGER"]);
  }
  on(SO.KEEPALIVE, o.so_keepalive);
  on(SO.PASSPIDFD, o.so_passpidfd);
  if (o.so_passrights === false) sets.push([SOL_SOCKET, SO.PASSRIGHTS, 0]);
  if (o.so_snd_tmo_sec || o.so_snd_tmo_usec) sets.push([SOL_SOCKET, SO.SNDTIMEO, timeval(o.so_snd_tmo_sec, o.so_snd_tmo_usec), "SO_SNDTIMEO"]);
  if (o.so_rcv_tmo_sec || o.so_rcv_tmo_usec) sets.push([SOL_SOCKET, SO.RCVTIMEO, timeval(o.so_rcv_tmo_sec, o.so_rcv_tmo_usec), "SO_RCVTIMEO"]);
  if (o.so_bound_dev) sets.push([SOL_SOCKET, SO.BINDTODEVICE, Buffer.from(`${o.so_bound_dev}\0`, "latin1"), "SO_BINDTODEVICE"]);
  return sets;
}
