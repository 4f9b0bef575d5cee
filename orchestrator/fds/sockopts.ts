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

function getInt(fd: number, name: number): number {
  return bridge().getsockopt(fd, SOL_SOCKET, name, 4).readInt32LE(0);
}

function getTimeval(fd: number, name: number): [bigint, bigint] {
  const b = bridge().getsockopt(fd, SOL_SOCKET, name, 16);
  return [b.readBigInt64LE(0), b.readBigInt64LE(8)];
}

/** Whether a classic BPF filter is attached (SO_GET_FILTER gives back its length in blocks). */
export function hasSocketFilter(fd: number): boolean {
  return bridge().getsockopt(fd, SOL_SOCKET, SO.GET_FILTER, 8 * 4096).length > 0;
}

/**
 * The options of a socket, with the fields criu 4.2 writes for one: the timeouts,
 * priority, rcvlowat, buf_lock and the flags always; mark and linger only when set. A
 * unix socket's credentials options too (criu keeps them for unix and netlink sockets
 * only; since Linux 6.16 no other family has them). Two options criu 4.2 does not know
 * are written only when they differ from the default (SO_PASSPIDFD on, SO_PASSRIGHTS
 * off), so that a plain socket's entry is criu's.
 */
export function dumpSockOpts(fd: number, unix = true): SkOpts {
  const bool = (name: number): boolean => getInt(fd, name) !== 0;
  const [sndSec, sndUsec] = getTimeval(fd, SO.SNDTIMEO);
  const [rcvSec, rcvUsec] = getTimeval(fd, SO.RCVTIMEO);
  const mark = getInt(fd, SO.MARK);
  const linger = bridge().getsockopt(fd, SOL_SOCKET, SO.LINGER, 8);
  const dev = bridge().getsockopt(fd, SOL_SOCKET, SO.BINDTODEVICE, 64).toString("latin1").replace(/\0.*$/s, "");
  const passpidfd = unix && bool(SO.PASSPIDFD);
  const passrights = !unix || bool(SO.PASSRIGHTS);
  return {
    so_sndbuf: getInt(fd, SO.SNDBUF),
    so_rcvbuf: getInt(fd, SO.RCVBUF),
    so_snd_tmo_sec: sndSec,
    so_snd_tmo_usec: sndUsec,
    so_rcv_tmo_sec: rcvSec,
    so_rcv_tmo_usec: rcvUsec,
    reuseaddr: bool(SO.REUSEADDR),
    so_priority: getInt(fd, SO.PRIORITY),
    so_rcvlowat: getInt(fd, SO.RCVLOWAT),
    ...(mark !== 0 ? { so_mark: mark } : {}),
    ...(unix ? { so_passcred: bool(SO.PASSCRED), so_passsec: bool(SO.PASSSEC) } : {}),
    so_dontroute: bool(SO.DONTROUTE),
    so_no_check: bool(SO.NO_CHECK),
    ...(dev !== "" ? { so_bound_dev: dev } : {}),
    so_reuseport: bool(SO.REUSEPORT),
    so_broadcast: bool(SO.BROADCAST),
    so_keepalive: bool(SO.KEEPALIVE),
    so_oobinline: getInt(fd, SO.OOBINLINE) !== 0 ? 1 : 0,
    ...(linger.readInt32LE(0) !== 0 ? { so_linger: linger.readInt32LE(4) } : {}),
    so_buf_lock: getInt(fd, SO.BUF_LOCK),
    ...(passpidfd ? { so_passpidfd: true } : {}),
    ...(!passrights ? { so_passrights: false } : {}),
  };
}

function int32(v: number): Buffer {
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
    bridge().setsockopt(fd, SOL_SOCKET, SO.SNDBUFFORCE, int32(snd));
    bridge().setsockopt(fd, SOL_SOCKET, SO.RCVBUFFORCE, int32(rcv));
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

/** Sets the options of an image entry, in criu's order (restore_socket_opts). */
export function restoreSockOpts(fd: number, o: SkOpts): void {
  if (o.so_filter?.length) throw new Error("a socket filter (SO_ATTACH_FILTER) cannot be restored yet");
  setBuffers(fd, Math.floor(o.so_sndbuf / 2), Math.floor(o.so_rcvbuf / 2));
  if (o.so_buf_lock !== undefined) set(fd, SO.BUF_LOCK, "SO_BUF_LOCK", int32(o.so_buf_lock));
  if (o.so_priority !== undefined) set(fd, SO.PRIORITY, "SO_PRIORITY", int32(o.so_priority));
  if (o.so_rcvlowat !== undefined) set(fd, SO.RCVLOWAT, "SO_RCVLOWAT", int32(o.so_rcvlowat));
  if (o.so_mark !== undefined) set(fd, SO.MARK, "SO_MARK", int32(o.so_mark));
  const on = int32(1);
  if (o.reuseaddr) set(fd, SO.REUSEADDR, "SO_REUSEADDR", on);
  if (o.so_passcred) set(fd, SO.PASSCRED, "SO_PASSCRED", on);
  if (o.so_passsec) set(fd, SO.PASSSEC, "SO_PASSSEC", on);
  if (o.so_dontroute) set(fd, SO.DONTROUTE, "SO_DONTROUTE", on);
  if (o.so_no_check) set(fd, SO.NO_CHECK, "SO_NO_CHECK", on);
  if (o.so_broadcast) set(fd, SO.BROADCAST, "SO_BROADCAST", on);
  if (o.so_oobinline) set(fd, SO.OOBINLINE, "SO_OOBINLINE", on);
  if (o.so_linger !== undefined) {
    const l = Buffer.alloc(8);
    l.writeInt32LE(1, 0);
    l.writeInt32LE(o.so_linger | 0, 4);
    set(fd, SO.LINGER, "SO_LINGER", l);
  }
  if (o.so_keepalive) set(fd, SO.KEEPALIVE, "SO_KEEPALIVE", on);
  if (o.so_passpidfd) set(fd, SO.PASSPIDFD, "SO_PASSPIDFD", on);
  if (o.so_passrights === false) set(fd, SO.PASSRIGHTS, "SO_PASSRIGHTS", int32(0));
  set(fd, SO.SNDTIMEO, "SO_SNDTIMEO", timeval(o.so_snd_tmo_sec, o.so_snd_tmo_usec));
  set(fd, SO.RCVTIMEO, "SO_RCVTIMEO", timeval(o.so_rcv_tmo_sec, o.so_rcv_tmo_usec));
  if (o.so_bound_dev) set(fd, SO.BINDTODEVICE, "SO_BINDTODEVICE", Buffer.from(`${o.so_bound_dev}\0`, "latin1"));
}
