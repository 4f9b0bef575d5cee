// A TCP connection through the kernel's repair mode (TCP_REPAIR, criu's libsoccr): on
// dump, the sequence numbers, queues, options and window of a socket in repair mode,
// written as tcp-stream-<inode>.img (a tcp_stream_entry, then the receive queue's bytes,
// then the send queue's); on restore, a new socket in repair mode is given the same
// addresses, sequence numbers, options, queues and window, and connected without a
// handshake. The send queue is two parts the kernel must tell apart: what was sent and
// not yet acknowledged (restored in repair mode, so that the peer's acknowledgment of it
// is understood, and retransmitted if it never comes) and what was never sent (sent
// again normally once repair mode is off for it).
//
// A half-closed connection (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING) is
// dumped and restored as criu's libsoccr does it: each FIN takes one sequence number but
// no byte of a queue, so the dump leaves it out of the queue lengths and the restore
// starts one sequence number before it. Our FIN is put back by shutdown() in repair
// mode, which marks it sent; the peer's FIN, and the peer's acknowledgment of ours, by
// the segment the peer sent (tcp-segment.ts). A connection still opening (SYN_SENT, a
// non-blocking connect() not yet answered) is connected again out of repair mode from
// the same first sequence number: its SYN goes again, as a retransmission would.

import { SHUT, SOL_SOCKET, SO, SOL_TCP, TCP, TCP_QUEUE, TCP_STATE, TCPI_OPT } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { TcpRepairConn } from "../../host-bridge/native.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { tcp_stream_entry } from "../../images/schema/index.js";
import { STATE_NAME } from "../fds/inet-common.js";
import { injectSegment, TH } from "./tcp-segment.js";
import { setsockoptInt } from "../fds/sockopts.js";

export type TcpStreamEntry = Entry<typeof tcp_stream_entry>;

/** What a dump keeps of one connection: the entry and its queues' bytes. */
export interface TcpStream {
  state: number;
  entry: TcpStreamEntry;
  inq: Buffer;
  outq: Buffer;
}

function setInt(fd: number, name: number, v: number, label: string): void {
  try {
    setsockoptInt(fd, SOL_TCP, name, v);
  } catch (e) {
    throw new Error(`setsockopt(${label}, ${v}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

export function repairOn(fd: number): void {
  setInt(fd, TCP.REPAIR, 1, "TCP_REPAIR");
}

const bit = (...states: number[]): number => states.reduce((m, st) => m | (1 << st), 0);
/** The states a connection is dumped in with --tcp-established (criu's). */
export const REPAIRED_STATES = bit(TCP_STATE.ESTABLISHED, TCP_STATE.FIN_WAIT1, TCP_STATE.FIN_WAIT2, TCP_STATE.CLOSE_WAIT, TCP_STATE.LAST_ACK, TCP_STATE.CLOSING, TCP_STATE.SYN_SENT);
/** Our FIN is in the send queue, put there before the peer's FIN arrives (criu's SNDQ_FIRST_FIN). */
const SNDQ_FIRST_FIN = bit(TCP_STATE.FIN_WAIT1, TCP_STATE.FIN_WAIT2, TCP_STATE.CLOSING);
/** Our FIN is in the send queue, put there after the peer's FIN (SNDQ_SECOND_FIN). */
const SNDQ_SECOND_FIN = bit(TCP_STATE.LAST_ACK);
/** The peer acknowledged our FIN. */
const SNDQ_FIN_ACKED = bit(TCP_STATE.FIN_WAIT2);
/** The peer's FIN is in the receive queue. */
const RCVQ_FIN = bit(TCP_STATE.CLOSE_WAIT, TCP_STATE.LAST_ACK, TCP_STATE.CLOSING);

export function stateName(state: number): string {
  return STATE_NAME[state] ?? `state ${state}`;
}

/** The image of a connection's state and queues (criu's name for it). */
export function tcpStreamImage(ino: number): string {
  return `tcp-stream-${ino.toString(16)}.img`;
}

/** Whether a file of an images directory is a connection's tcp-stream image. */
export const TCP_STREAM_IMAGE = /^tcp-stream-[0-9a-f]+\.img$/;

/**
 * What tcp_repair.c reads of a connection in repair mode (a record of tcpRepairSaveMany):
 * TCP_INFO's state, options and window scales; the queue sizes (SIOCOUTQ and SIOCOUTQNSD
 * count our FIN, SIOCINQ does not); the MSS clamp; the timestamp (0 without timestamps);
 * TCP_REPAIR_WINDOW's snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup; each queue's first
 * sequence number and bytes (peeked one past its size).
 */
export interface SavedConnection {
  state: number;
  options: number;
  sndWscale: number;
  rcvWscale: number;
  outq: number;
  unsent: number;
  inq: number;
  mss: number;
  timestamp: number;
  window: [number, number, number, number, number];
  inqSeq: number;
  outqSeq: number;
  inqData: Buffer;
  outqData: Buffer;
}

/** libsoccr_save: what a dump keeps of a connection read out in repair mode, checked. */
export function savedConnection(r: SavedConnection): TcpStream {
  const state = r.state;
  if (!(REPAIRED_STATES & (1 << state))) throw new Error(`the connection is in TCP state ${stateName(state)}, which tscriu does not dump`);
  const options = r.options;
  let outqLen = r.outq;
  let unsqLen = r.unsent;
  // Our FIN counts in the send queue's sizes (not yet acknowledged, maybe not yet sent) but is no byte of it.
  if ((1 << state) & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN)) {
    if (outqLen > 0) outqLen--;
    if (unsqLen > 0) unsqLen--;
  }
  // SIOCINQ leaves the peer's FIN out already.
  const inqLen = r.inq;
  if (state === TCP_STATE.SYN_SENT && outqLen > 0) throw new Error(`the connection is still opening with ${outqLen} bytes queued to send with its SYN (TCP Fast Open), which tscriu does not dump`);
  // A queue that grew since its size was read shows as one byte more (it is peeked one past).
  if (r.inqData.length !== inqLen) throw new Error(`the receive queue holds ${r.inqData.length} bytes, its size said ${inqLen}`);
  if (r.outqData.length !== outqLen) throw new Error(`the send queue holds ${r.outqData.length} bytes, its size said ${outqLen}`);
  const entry: TcpStreamEntry = {
    inq_len: inqLen,
    inq_seq: r.inqSeq,
    outq_len: outqLen,
    outq_seq: r.outqSeq,
    opt_mask: options,
    snd_wscale: 0,
    mss_clamp: r.mss,
    unsq_len: unsqLen,
  };
  if (options & TCPI_OPT.WSCALE) {
    entry.snd_wscale = r.sndWscale;
    entry.rcv_wscale = r.rcvWscale;
  }
  if (options & TCPI_OPT.TIMESTAMPS) entry.timestamp = r.timestamp;
  const w = r.window;
  entry.snd_wl1 = w[0];
  entry.snd_wnd = w[1];
  entry.max_window = w[2];
  entry.rcv_wnd = w[3];
  entry.rcv_wup = w[4];
  entry.snd_wl1 = windowUpdateSeq(entry, (1 << state) & RCVQ_FIN ? 1 : 0);
  return { state, entry, inq: r.inqData, outq: r.outqData };
}

/**
 * snd_wl1 as a dump writes it and a restore gives it back: the sequence number of the
 * peer's segment that last updated our send window. A segment past what came in order
 * (one of the out-of-order queue, which is not dumped, or one dropped while the receive
 * queue was full, whose acknowledgment and window were taken all the same) leaves it past
 * rcv_nxt. Restored so, it is refused when past rcv_nxt + rcv_wnd (TCP_REPAIR_WINDOW:
 * EINVAL, zdtm's socket-tcpbuf-local one restore in four here), and otherwise makes the
 * socket ignore the window of every segment the peer sends again from rcv_nxt: with both
 * windows closed, each end then waits for the other's (the same test hung now and then).
 * It is rcv_nxt instead, where the peer sends again what we did not keep. `fin`: the
 * peer's FIN follows the receive queue (the dumped inq_seq is past it).
 */
export function windowUpdateSeq(e: TcpStreamEntry, fin: number): number {
  const wl1 = e.snd_wl1 ?? 0;
  // after(wl1, inq_seq), in sequence-number arithmetic
  return ((e.inq_seq - wl1) | 0) < 0 ? (e.inq_seq - fin) >>> 0 : wl1;
}

/**
 * What tcp_repair.c is given to make a dumped connection (tcpRepairRestore,
 * tcpRestoreMany): where each queue starts, the options agreed with the peer, the window.
 */
export function repairConn(s: TcpStream): TcpRepairConn {
  const w = new Int32Array(CONN_WORDS);
  repairConnWords(s, w, 0);
  const u = (k: number): number => w[k]! >>> 0;
  return {
    opening: w[0] ? 1 : 0,
    recvSeq: u(1),
    sendSeq: u(2),
    optMask: u(3),
    sndWscale: u(4),
    rcvWscale: u(5),
    mss: u(6),
    timestamp: u(7),
    unsent: u(8),
    ...(w[9] ? { window: [u(10), u(11), u(12), u(13), u(14)] } : {}),
  };
}

/** The words of repairConn's fields, as tcpRestoreMany's records hold them. */
export const CONN_WORDS = 15;

/**
 * repairConn's fields written into `out` from `at` (a server's thousand connections: no
 * object made for each): opening, recvSeq, sendSeq, optMask, sndWscale, rcvWscale, mss,
 * timestamp, unsent, whether the window is given, the window (5).
 */
export function repairConnWords(s: TcpStream, out: Int32Array, at: number): void {
  const e = s.entry;
  const m = 1 << s.state;
  if (!(REPAIRED_STATES & m)) throw new Error(`a connection in TCP state ${stateName(s.state)} is not restored`);
  // The dumped sequence numbers are past the FINs; the queues end where each FIN begins.
  const inqSeq = (e.inq_seq - (m & RCVQ_FIN ? 1 : 0)) | 0;
  const outqSeq = (e.outq_seq - (m & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN) ? 1 : 0)) | 0;
  const opening = s.state === TCP_STATE.SYN_SENT;
  // The window was advanced past the peer's FIN; it is before it until the FIN comes again.
  const fin = m & RCVQ_FIN ? 1 : 0;
  out[at] = opening ? 1 : 0;
  out[at + 1] = inqSeq - e.inq_len;
  // An opening connection's send queue starts at its SYN, one before the first byte.
  out[at + 2] = outqSeq - e.outq_len - (opening ? 1 : 0);
  out[at + 3] = e.opt_mask;
  out[at + 4] = e.snd_wscale;
  out[at + 5] = e.rcv_wscale ?? 0;
  out[at + 6] = e.mss_clamp;
  out[at + 7] = e.timestamp ?? 0;
  out[at + 8] = e.unsq_len ?? 0;
  const win = e.snd_wnd !== undefined;
  out[at + 9] = win ? 1 : 0;
  out[at + 10] = win ? windowUpdateSeq(e, fin) : 0;
  out[at + 11] = win ? e.snd_wnd! : 0;
  out[at + 12] = win ? (e.max_window ?? 0) : 0;
  out[at + 13] = win ? (e.rcv_wnd ?? 0) + fin : 0;
  out[at + 14] = win ? (e.rcv_wup ?? 0) - fin : 0;
}

/**
 * libsoccr_restore: `fd` is a new socket of the family, made ready (buffers widened,
 * non-blocking, in repair mode); src and dst its sockaddrs. tcp_repair.c makes it the
 * connection in one call (bound, sequence numbers, connected without a handshake,
 * options, timestamp, queues, window); the FINs of a half-closed one are put back here.
 * Leaves it in repair mode (leaveRepair when the task is about to run).
 */
export function restoreConnection(fd: number, src: Buffer, dst: Buffer, s: TcpStream): void {
  const e = s.entry;
  const m = 1 << s.state;
  bridge().tcpRepairRestore(fd, src, dst, repairConn(s), s.inq, s.outq);
  // The dumped sequence numbers are past the FINs; the queues end where each FIN begins.
  const inqSeq = (e.inq_seq - (m & RCVQ_FIN ? 1 : 0)) | 0;
  const outqSeq = (e.outq_seq - (m & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN) ? 1 : 0)) | 0;
  const opening = s.state === TCP_STATE.SYN_SENT;
  if (opening) {
    const now = tcpState(fd);
    // The peer may have answered already (nothing locks it): then it is established.
    if (now !== TCP_STATE.SYN_SENT && now !== TCP_STATE.ESTABLISHED) throw new Error(`the opening connection is in TCP state ${stateName(now)} after its connect()`);
    return;
  }
  if (!(m & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN | RCVQ_FIN))) return;
  // What the peer sends: from its sequence number (where our receive queue ends) with what it acknowledged.
  const window = (e.snd_wnd ?? 0xffff) >>> (e.opt_mask & TCPI_OPT.WSCALE ? e.snd_wscale : 0);
  const peer = (flags: number, ack: number): void => injectSegment(src, dst, { seq: inqSeq, ack, flags, window });
  if (m & SNDQ_FIRST_FIN) finSent(fd);
  if (m & RCVQ_FIN) {
    peer(TH.FIN | TH.ACK, outqSeq - e.outq_len);
    // LAST_ACK goes through CLOSE_WAIT: our FIN must follow the peer's.
    awaitState(fd, m & SNDQ_SECOND_FIN ? TCP_STATE.CLOSE_WAIT : s.state, "the peer's FIN");
  }
  if (m & SNDQ_SECOND_FIN) finSent(fd);
  if (m & SNDQ_FIN_ACKED) {
    peer(TH.ACK, outqSeq + 1 - e.outq_len);
    awaitState(fd, s.state, "the peer's acknowledgment of our FIN");
  }
  const now = tcpState(fd);
  if (now !== s.state) throw new Error(`the connection came back in TCP state ${stateName(now)}, not ${stateName(s.state)}`);
}

function tcpState(fd: number): number {
  return bridge().getsockopt(fd, SOL_TCP, TCP.INFO, 1)[0]!;
}

/**
 * Our FIN, queued as sent (a socket in repair mode with the send queue selected marks what
 * it would transmit as transmitted): the peer has it, or it goes again at the next retransmission.
 */
function finSent(fd: number): void {
  setInt(fd, TCP.REPAIR_QUEUE, TCP_QUEUE.SEND, "TCP_REPAIR_QUEUE");
  try {
    bridge().shutdown(fd, SHUT.WR);
  } catch (err) {
    throw new Error(`shutdown(SHUT_WR) to put our FIN back: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  setInt(fd, TCP.REPAIR_QUEUE, TCP_QUEUE.NO, "TCP_REPAIR_QUEUE");
}

/**
 * Waits for an injected segment to have been taken: over loopback it is processed before
 * send() returns, unless the kernel left it to ksoftirqd. A second is plenty either way.
 */
function awaitState(fd: number, want: number, what: string): void {
  const until = Date.now() + 1000;
  let now = tcpState(fd);
  while (now !== want && Date.now() < until) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    now = tcpState(fd);
  }
  if (now !== want) throw new Error(`after ${what} was sent, the connection is in TCP state ${stateName(now)}, not ${stateName(want)} (a firewall dropping packets marked ${"0x"}c114?)`);
}

/**
 * Connections out of repair mode for good (the kernel then sends each a window probe to
 * resynchronise with the peer), each with the task's SO_REUSEADDR back (repair mode
 * changes it), and its SO_REUSEPORT off when a restore turned it on to make the socket:
 * one crossing for them all (setsockoptIntsMany, on two threads). Each one's error at
 * its index.
 */
export function leaveRepair(conns: readonly { fd: number; reuseaddr: boolean; reuseport?: boolean }[]): (Error | undefined)[] {
  const fds = new Int32Array(conns.length);
  const counts = new Int32Array(conns.length);
  const spec: number[] = [];
  for (let i = 0; i < conns.length; i++) {
    const c = conns[i]!;
    fds[i] = c.fd;
    spec.push(SOL_TCP, TCP.REPAIR, 0, SOL_SOCKET, SO.REUSEADDR, c.reuseaddr ? 1 : 0);
    counts[i] = 2;
    if (c.reuseport === false) {
      spec.push(SOL_SOCKET, SO.REUSEPORT, 0);
      counts[i] = 3;
    }
  }
  return bridge().setsockoptIntsMany(fds, counts, Int32Array.from(spec));
}
