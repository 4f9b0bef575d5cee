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

import { SHUT, SIOC, SOL_SOCKET, SO, SOL_TCP, TCP, TCP_QUEUE, TCP_STATE, TCPI_OPT, TCPOPT } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { tcp_stream_entry } from "../../images/schema/index.js";
import { STATE_NAME } from "../fds/inet-common.js";
import { injectSegment, TH } from "./tcp-segment.js";
import { getsockoptInts, setsockoptInt } from "../fds/sockopts.js";

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

/** One option list per SOL_TCP option read alone (getsockoptInts builds each one's spec once). */
const TCP_ONE = new Map<number, readonly (readonly [number, number])[]>();

function getU32(fd: number, name: number): number {
  let opts = TCP_ONE.get(name);
  if (!opts) TCP_ONE.set(name, (opts = [[SOL_TCP, name]]));
  return getsockoptInts(fd, opts)[0]! >>> 0;
}

export function repairOn(fd: number): void {
  setInt(fd, TCP.REPAIR, 1, "TCP_REPAIR");
}

/** Out of repair mode (the kernel then sends a window probe to resynchronise with the peer). */
export function repairOff(fd: number): void {
  setInt(fd, TCP.REPAIR, 0, "TCP_REPAIR");
}

/** The queue of a socket in repair mode: its sequence number and bytes (checked to be exactly `len`). */
function readQueue(fd: number, queue: number, len: number, what: string): { seq: number; bytes: Buffer } {
  setInt(fd, TCP.REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE");
  const seq = getU32(fd, TCP.QUEUE_SEQ);
  if (len === 0) return { seq, bytes: Buffer.alloc(0) };
  // One byte more than expected: a queue that grew would show.
  const bytes = bridge().recvPeek(fd, len + 1);
  if (bytes.length !== len) throw new Error(`the ${what} queue holds ${bytes.length} bytes, its size said ${len}`);
  return { seq, bytes };
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

/** libsoccr_save: the state of a connection already in repair mode. */
export function saveConnection(fd: number): TcpStream {
  const b = bridge();
  const info = b.getsockopt(fd, SOL_TCP, TCP.INFO, 8);
  const state = info[0]!;
  if (!(REPAIRED_STATES & (1 << state))) throw new Error(`the connection is in TCP state ${stateName(state)}, which tscriu does not dump`);
  const options = info[5]!;
  let outqLen = b.ioctlInt(fd, SIOC.OUTQ);
  let unsqLen = b.ioctlInt(fd, SIOC.OUTQNSD);
  // Our FIN counts in the send queue's sizes (not yet acknowledged, maybe not yet sent) but is no byte of it.
  if ((1 << state) & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN)) {
    if (outqLen > 0) outqLen--;
    if (unsqLen > 0) unsqLen--;
  }
  // SIOCINQ leaves the peer's FIN out already.
  const inqLen = b.ioctlInt(fd, SIOC.INQ);
  if (state === TCP_STATE.SYN_SENT && outqLen > 0) throw new Error(`the connection is still opening with ${outqLen} bytes queued to send with its SYN (TCP Fast Open), which tscriu does not dump`);
  const entry: TcpStreamEntry = {
    inq_len: inqLen,
    inq_seq: 0,
    outq_len: outqLen,
    outq_seq: 0,
    opt_mask: options,
    snd_wscale: 0,
    // in repair mode TCP_MAXSEG gives the clamp the peer announced
    mss_clamp: getU32(fd, TCP.MAXSEG),
    unsq_len: unsqLen,
  };
  if (options & TCPI_OPT.WSCALE) {
    entry.snd_wscale = info[6]! & 0x0f;
    entry.rcv_wscale = info[6]! >> 4;
  }
  if (options & TCPI_OPT.TIMESTAMPS) entry.timestamp = getU32(fd, TCP.TIMESTAMP);
  const w = b.getsockopt(fd, SOL_TCP, TCP.REPAIR_WINDOW, 20);
  Object.assign(entry, { snd_wl1: w.readUInt32LE(0), snd_wnd: w.readUInt32LE(4), max_window: w.readUInt32LE(8), rcv_wnd: w.readUInt32LE(12), rcv_wup: w.readUInt32LE(16) });
  const rq = readQueue(fd, TCP_QUEUE.RECV, inqLen, "receive");
  const sq = readQueue(fd, TCP_QUEUE.SEND, outqLen, "send");
  entry.inq_seq = rq.seq;
  entry.outq_seq = sq.seq;
  entry.snd_wl1 = windowUpdateSeq(entry, (1 << state) & RCVQ_FIN ? 1 : 0);
  return { state, entry, inq: rq.bytes, outq: sq.bytes };
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

/** Sends `data` in chunks the kernel takes (a repair-mode receive queue wants linear buffers: a large one may fail with ENOMEM). */
function sendAll(fd: number, data: Buffer, what: string): void {
  let max = data.length;
  let off = 0;
  while (off < data.length) {
    const chunk = data.subarray(off, off + Math.min(max, data.length - off));
    let n: number;
    try {
      n = bridge().send(fd, chunk);
    } catch (e) {
      if (max > 1024 && ["ENOMEM", "EAGAIN", "ENOBUFS"].includes((e as NodeJS.ErrnoException).code ?? "")) {
        max >>= 1;
        continue;
      }
      throw new Error(`restoring the ${what} queue (${off} of ${data.length} bytes done): ${(e as Error).message}`, { cause: e });
    }
    if (n <= 0) throw new Error(`restoring the ${what} queue: send took nothing at ${off} of ${data.length} bytes`);
    off += n;
  }
}

/**
 * libsoccr_restore for an established connection: `fd` is a new socket of the family, in
 * repair mode; src and dst its sockaddrs. Leaves it in repair mode (repairOff when the
 * task is about to run).
 */
export function restoreConnection(fd: number, src: Buffer, dst: Buffer, s: TcpStream): void {
  const b = bridge();
  const e = s.entry;
  const m = 1 << s.state;
  if (!(REPAIRED_STATES & m)) throw new Error(`a connection in TCP state ${stateName(s.state)} is not restored`);
  // The dumped sequence numbers are past the FINs; the queues end where each FIN begins.
  const inqSeq = (e.inq_seq - (m & RCVQ_FIN ? 1 : 0)) | 0;
  const outqSeq = (e.outq_seq - (m & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN) ? 1 : 0)) | 0;
  try {
    b.bindAddr(fd, src);
  } catch (err) {
    throw new Error(`bind: ${(err as Error).message}`, { cause: err });
  }
  setInt(fd, TCP.REPAIR_QUEUE, TCP_QUEUE.RECV, "TCP_REPAIR_QUEUE");
  setInt(fd, TCP.QUEUE_SEQ, (inqSeq - e.inq_len) | 0, "TCP_QUEUE_SEQ");
  setInt(fd, TCP.REPAIR_QUEUE, TCP_QUEUE.SEND, "TCP_REPAIR_QUEUE");
  const opening = s.state === TCP_STATE.SYN_SENT;
  // An opening connection's send queue starts at its SYN, one before the first byte.
  setInt(fd, TCP.QUEUE_SEQ, (outqSeq - e.outq_len - (opening ? 1 : 0)) | 0, "TCP_QUEUE_SEQ");
  // Opening: connected for real (the SYN goes out, from the sequence number just set).
  if (opening) repairOff(fd);
  try {
    b.connectAddr(fd, dst);
  } catch (err) {
    if (!opening || (err as NodeJS.ErrnoException).code !== "EINPROGRESS") throw new Error(`connect: ${(err as Error).message}`, { cause: err });
  }
  if (opening) {
    repairOn(fd);
    // Nothing was agreed with the peer yet: no options, no queues, no window.
    if (e.opt_mask & TCPI_OPT.TIMESTAMPS) setInt(fd, TCP.TIMESTAMP, e.timestamp ?? 0, "TCP_TIMESTAMP");
    const now = tcpState(fd);
    // The peer may have answered already (nothing locks it): then it is established.
    if (now !== TCP_STATE.SYN_SENT && now !== TCP_STATE.ESTABLISHED) throw new Error(`the opening connection is in TCP state ${stateName(now)} after its connect()`);
    return;
  }
  const opts: [number, number][] = [];
  if (e.opt_mask & TCPI_OPT.SACK) opts.push([TCPOPT.SACK_PERM, 0]);
  if (e.opt_mask & TCPI_OPT.WSCALE) opts.push([TCPOPT.WINDOW, e.snd_wscale + ((e.rcv_wscale ?? 0) << 16)]);
  if (e.opt_mask & TCPI_OPT.TIMESTAMPS) opts.push([TCPOPT.TIMESTAMP, 0]);
  opts.push([TCPOPT.MAXSEG, e.mss_clamp]);
  const raw = Buffer.alloc(8 * opts.length);
  opts.forEach(([code, val], i) => {
    raw.writeUInt32LE(code, 8 * i);
    raw.writeUInt32LE(val >>> 0, 8 * i + 4);
  });
  try {
    b.setsockopt(fd, SOL_TCP, TCP.REPAIR_OPTIONS, raw);
  } catch (err) {
    throw new Error(`setsockopt(TCP_REPAIR_OPTIONS): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  if (e.opt_mask & TCPI_OPT.TIMESTAMPS) setInt(fd, TCP.TIMESTAMP, e.timestamp ?? 0, "TCP_TIMESTAMP");
  if (s.inq.length) {
    setInt(fd, TCP.REPAIR_QUEUE, TCP_QUEUE.RECV, "TCP_REPAIR_QUEUE");
    sendAll(fd, s.inq, "receive");
  }
  const unsent = e.unsq_len ?? 0;
  const sent = s.outq.subarray(0, s.outq.length - unsent);
  if (sent.length) {
    setInt(fd, TCP.REPAIR_QUEUE, TCP_QUEUE.SEND, "TCP_REPAIR_QUEUE");
    sendAll(fd, sent, "send");
  }
  if (unsent) {
    // Never sent: it goes out as the task would have sent it.
    repairOff(fd);
    sendAll(fd, s.outq.subarray(s.outq.length - unsent), "unsent part of the send");
    repairOn(fd);
  }
  if (e.snd_wnd !== undefined) {
    const w = Buffer.alloc(20);
    // The window was advanced past the peer's FIN; it is before it until the FIN comes again.
    const fin = m & RCVQ_FIN ? 1 : 0;
    [windowUpdateSeq(e, fin), e.snd_wnd, e.max_window ?? 0, (e.rcv_wnd ?? 0) + fin, (e.rcv_wup ?? 0) - fin].forEach((v, i) => w.writeUInt32LE(v >>> 0, 4 * i));
    try {
      b.setsockopt(fd, SOL_TCP, TCP.REPAIR_WINDOW, w);
    } catch (err) {
      throw new Error(`setsockopt(TCP_REPAIR_WINDOW): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
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

/** Out of repair mode for good, with the task's SO_REUSEADDR back (repair mode changes it). */
export function leaveRepair(fd: number, reuseaddr: boolean): void {
  repairOff(fd);
  setsockoptInt(fd, SOL_SOCKET, SO.REUSEADDR, reuseaddr ? 1 : 0);
}
