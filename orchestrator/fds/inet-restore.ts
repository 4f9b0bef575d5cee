// TCP and UDP sockets on restore (INETSK entries; criu's sk-inet.c). Plan checks each
// entry (family, type, protocol, state, address lengths, ports, shutdown, the device of a
// link-local address) with no side effects. Make: tscriu makes every socket of the
// restore at once, in criu's order of kernel calls -- socket, IPV6_V6ONLY, SO_REUSEADDR
// and SO_REUSEPORT on (several sockets may share a port while they are made, as they
// did in the task), bind (an IPv6 one with IP_FREEBIND on, as criu binds it: a fresh
// address may still be tentative), listen, connect (a UDP socket's peer), then file
// flags, IP options, socket options, TCP options and shutdown; once all are made,
// SO_REUSEADDR and SO_REUSEPORT are put back to what the task had. Established
// connections are made in one crossing into the bridge (makeConnections), the same calls
// in the same order for each.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { AF_INET, AF_INET6, F, ICMP_FILTER, IP, IPPROTO, IPPROTO_MAX, IPV6, O, SHUT, SO, SOCK, SOL_ICMPV6, SOL_IP, SOL_IPV6, SOL_RAW, SOL_SOCKET, SOL_TCP, TCP, TCP_STATE, TCPI_OPT } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { RestoreError } from "../restore/errors.js";
import { ADDR_WORDS, PROTO_NAME, showAddr, sockaddr, sockaddrSize, STATE_NAME, typeName, writeSockaddr, type InetSkEntry } from "./inet-common.js";
import type { FdRestorer, FdSource, PlanContext } from "./kind.js";
import { filterProblem, restoreSockOpts, setsockoptInt, setsockoptInts, sockOptSets, widenBuffers, type SockSet } from "./sockopts.js";
import { CONN_WORDS, leaveRepair, repairConnWords, REPAIRED_STATES, repairOn, restoreConnection, tcpStreamImage, type TcpStream, type TcpStreamEntry } from "../net/tcp-repair.js";

const SHUTDOWN: Record<string, number> = { NONE: 0, READ: 1, WRITE: 2, BOTH: 3 };
/** sk_shutdown → shutdown(2)'s how */
const HOW: Record<number, number> = { 1: SHUT.RD, 2: SHUT.WR, 3: SHUT.RDWR };

function shutdownOf(e: InetSkEntry): number {
  const v = e.shutdown ?? 0;
  return typeof v === "number" ? v : (SHUTDOWN[v] ?? -1);
}

function setInt(fd: number, level: number, name: number, label: string, v: number): void {
  try {
    setsockoptInt(fd, level, name, v);
  } catch (e) {
    throw new Error(`setsockopt(${label}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** A queue's bytes as a Buffer over the same memory (none: empty). */
function asBuffer(b: Uint8Array | undefined): Buffer {
  return b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : Buffer.alloc(0);
}

/** One socket of the plan. */
interface Sk {
  e: InetSkEntry;
  /** its address words, as many as its family has */
  src: number[];
  dst: number[];
  what: string;
  /** "TCP socket 1234 (0.0.0.0:8080)" (made for a message only: a server's thousand connections log none) */
  label(): string;
  /** the interface index a link-local address binds with (0: none) */
  scopeId: number;
  /** a connection restored closed (--tcp-close) */
  closed: boolean;
  /** a connection's state and queues (--tcp-established) */
  stream: TcpStream | undefined;
  fd?: number;
}

export class InetRestorer implements FdRestorer {
  private readonly sockets: Sk[] = [];
  private made = false;
  private readonly mine: number[] = [];

  constructor(private readonly ctx: PlanContext) {}

  /** tcp-stream-<inode>.img of a connection, checked: one entry whose queues are its data. */
  private async stream(e: InetSkEntry, conn: () => string): Promise<TcpStream> {
    const name = tcpStreamImage(e.ino);
    const bad = (why: string): RestoreError => new RestoreError("plan", this.ctx.pid, `${conn()}: ${why}`, { file: join(this.ctx.dir, name) });
    let list: Record<string, unknown>[] | undefined;
    try {
      list = await this.ctx.optional(name);
    } catch (err) {
      throw bad((err as Error).message);
    }
    if (!list) throw bad(`its state (${name}) is not in the images`);
    if (list.length !== 1) throw bad(`${name} holds ${list.length} entries, not one`);
    const { extra, ...entry } = list[0] as TcpStreamEntry & { extra?: { inq?: Uint8Array; outq?: Uint8Array } };
    // (the decoded queues are the image's own copies: Buffers over them, not copies again)
    const inq = asBuffer(extra?.inq);
    const outq = asBuffer(extra?.outq);
    if (inq.length !== entry.inq_len || outq.length !== entry.outq_len) throw bad(`its queues hold ${inq.length} and ${outq.length} bytes, the entry says ${entry.inq_len} and ${entry.outq_len}`);
    if (entry.unsq_len === undefined) throw bad("the length of its unsent data (unsq_len) is missing");
    if (entry.unsq_len > entry.outq_len) throw bad(`${entry.unsq_len} bytes are said to be unsent of a send queue of ${entry.outq_len}`);
    if (e.state === TCP_STATE.SYN_SENT && entry.inq_len + entry.outq_len > 0) throw bad(`it is still opening (SYN_SENT) but has ${entry.inq_len + entry.outq_len} bytes queued`);
    if (entry.opt_mask & TCPI_OPT.WSCALE && entry.rcv_wscale === undefined) throw bad("window scaling is on but rcv_wscale is missing");
    if (entry.opt_mask & TCPI_OPT.TIMESTAMPS && entry.timestamp === undefined) throw bad("timestamps are on but the timestamp is missing");
    if (entry.snd_wscale > 14 || (entry.rcv_wscale ?? 0) > 14) throw bad(`a window scale of ${Math.max(entry.snd_wscale, entry.rcv_wscale ?? 0)}, past TCP's 14`);
    if (entry.mss_clamp === 0 || entry.mss_clamp > 0xffff) throw bad(`the MSS ${entry.mss_clamp} is no MSS`);
    return { state: e.state, entry, inq, outq };
  }

  private fail(msg: string): RestoreError {
    return new RestoreError("plan", this.ctx.pid, msg, { file: join(this.ctx.dir, "files.img") });
  }

  async plan(f: FileEntry, what: string): Promise<FdSource> {
    const e = f.isk;
    if (!e) throw this.fail(`${what}: an INETSK entry without its socket fields`);
    const sock = `${what}: inet socket ${e.ino}`;
    if (e.family !== AF_INET && e.family !== AF_INET6) throw this.fail(`${sock} has the address family ${e.family}, which is neither AF_INET (2) nor AF_INET6 (10)`);
    const raw = e.type === SOCK.RAW;
    if (e.type !== SOCK.STREAM && e.type !== SOCK.DGRAM && !raw) throw this.fail(`${sock} has the type ${e.type}; only stream, datagram and raw sockets are restored`);
    const icmp = e.family === AF_INET6 ? IPPROTO.ICMPV6 : IPPROTO.ICMP;
    if (raw ? e.proto >= IPPROTO_MAX : e.type === SOCK.STREAM ? e.proto !== IPPROTO.TCP : e.proto !== IPPROTO.UDP && e.proto !== IPPROTO.UDPLITE && e.proto !== icmp) {
      throw this.fail(`${sock} is a ${typeName(e.type)} socket of protocol ${e.proto}; only TCP streams, UDP, UDP-Lite and ICMP datagrams and raw IP sockets are restored`);
    }
    const words = ADDR_WORDS[e.family]!;
    const src = e.src_addr ?? [];
    const dst = e.dst_addr ?? [];
    // criu's inet_validate_address: an IPv4 entry of criu 0.1 had 4 words, an IPv6 one has exactly 4.
    const lenOk = (n: number): boolean => (e.family === AF_INET ? n >= 1 : n === words);
    if (!lenOk(src.length) || !lenOk(dst.length)) {
      throw this.fail(`${sock}: its addresses have ${src.length} and ${dst.length} words, not the ${words} of an ${e.family === AF_INET ? "IPv4" : "IPv6"} address`);
    }
    if (e.src_port > 0xffff || e.dst_port > 0xffff) throw this.fail(`${sock} has the port ${Math.max(e.src_port, e.dst_port)}, past 65535`);
    const label = (): string => `${raw ? `raw (protocol ${e.proto})` : PROTO_NAME[e.proto]} socket ${e.ino} (${showAddr(e.family, src.slice(0, words), e.src_port)})`;
    const state = (): string => `${what}: ${label()}`;
    // --tcp-close: a connection comes back as a socket closed; --tcp-established: with its stream.
    let closed = false;
    let stream: TcpStream | undefined;
    if (e.proto === IPPROTO.TCP && !raw) {
      if (e.state === TCP_STATE.LISTEN) {
        if (e.src_port === 0) throw this.fail(`${state()} is listening without a port`);
      } else if (e.dst_port !== 0) {
        const conn = (): string => `${state()} is a TCP connection to ${showAddr(e.family, dst.slice(0, words), e.dst_port)} (${STATE_NAME[e.state] ?? e.state})`;
        if (this.ctx.tcp.close) {
          closed = true;
        } else if (!this.ctx.tcp.established) {
          throw this.fail(`${conn()}: restore it with --tcp-established, or closed with --tcp-close`);
        } else {
          if (e.state === TCP_STATE.CLOSE) throw this.fail(`${conn()}: tscriu restores a closed connection with --tcp-close only (criu's repair of its FINs is not done yet)`);
          if (!(REPAIRED_STATES & (1 << e.state))) throw this.fail(`${conn()}; only connections that are established or half-closed are restored`);
          stream = await this.stream(e, conn);
        }
      } else if (e.state !== TCP_STATE.CLOSE) {
        throw this.fail(`${state()} is in the state ${STATE_NAME[e.state] ?? e.state}, which criu does not dump for a socket without a peer`);
      }
    } else if (e.state === TCP_STATE.LISTEN) {
      throw this.fail(`${state()} is listening, which a datagram socket cannot`);
    }
    const sh = shutdownOf(e);
    if (sh < 0 || sh > 3) throw this.fail(`${state()} has the shutdown state ${String(e.shutdown)}, which is none of NONE, READ, WRITE, BOTH`);
    const filter = filterProblem(e.opts);
    if (filter) throw this.fail(`${state()} ${filter}`);
    let scopeId = 0;
    if (e.ifname !== undefined) {
      const file = `/sys/class/net/${e.ifname}/ifindex`;
      if (e.ifname.includes("/") || !existsSync(file)) throw this.fail(`${state()} is bound on the interface ${e.ifname}, which this host does not have`);
      scopeId = Number(readFileSync(file, "utf8").trim());
    }
    const sk: Sk = { e, src: src.slice(0, words), dst: dst.slice(0, words), what, label, scopeId, closed, stream };
    this.sockets.push(sk);
    return {
      get describe() {
        return `socket:[${e.ino}] ${label()}`;
      },
      fown: e.fown,
      open: () => {
        this.make();
        return sk.fd!;
      },
    };
  }

  /** Makes every socket of the plan, once. */
  private make(): void {
    if (this.made) return;
    this.made = true;
    const b = bridge();
    // A server's established connections are made in one crossing (makeConnections), the other sockets one by one.
    const many = this.sockets.filter(madeMany);
    if (many.length > 0) this.makeConnections(many);
    for (const s of this.sockets) {
      if (s.fd !== undefined) continue;
      const e = s.e;
      this.step(s, "socket", () => {
        s.fd = b.socket(e.family, e.type, e.proto);
        this.mine.push(s.fd);
      });
      const fd = s.fd!;
      // criu sets IPV6_V6ONLY only when on; set either way, a host whose
      // net.ipv6.bindv6only is 1 would turn a dual-stack listener into an IPv6-only one.
      // A raw socket has its protocol as its port from the start: IPV6_V6ONLY is EINVAL there (and means nothing).
      if (e.family === AF_INET6 && e.v6only !== undefined && e.type !== SOCK.RAW) this.step(s, "options", () => setInt(fd, SOL_IPV6, IPV6.V6ONLY, "IPV6_V6ONLY", e.v6only ? 1 : 0));
      this.step(s, "options", () =>
        setsockoptInts(fd, [
          [SOL_SOCKET, SO.REUSEADDR, 1],
          [SOL_SOCKET, SO.REUSEPORT, 1],
        ]),
      );
      const stream = s.stream;
      if (stream) {
        // criu's restore_one_tcp: nothing may block, then the connection in repair mode.
        this.step(s, () => `restoring the connection to ${showAddr(e.family, s.dst, e.dst_port)}`, () => {
          widenBuffers(fd);
          b.fcntl(fd, F.SETFL, b.fcntl(fd, F.GETFL) | O.NONBLOCK);
          repairOn(fd);
          restoreConnection(fd, sockaddr(e.family, e.src_port, s.src, s.scopeId), sockaddr(e.family, e.dst_port, s.dst), stream);
        });
      } else if (s.closed) {
        // criu's restore_one_tcp with --tcp-close: neither bound nor connected, both ways shut
        // (ENOTCONN, but the kernel marks it shut all the same): recv gives EOF, send EPIPE, poll POLLHUP.
        this.step(s, "shutdown", () => shutdownUnconnected(fd, SHUT.RDWR));
      } else {
        // A raw socket's "port" is its protocol, given by socket(): only an address is bound.
        if (e.type === SOCK.RAW) {
          if (s.src.some((w) => w !== 0)) this.step(s, "bind", () => b.bindAddr(fd, sockaddr(e.family, 0, s.src, s.scopeId)));
        } else if (e.src_port !== 0) this.step(s, "bind", () => this.bind(s));
        if (e.state === TCP_STATE.LISTEN) this.step(s, "listen", () => b.listen(fd, e.backlog));
        if (e.dst_port !== 0) this.step(s, () => `connect to ${showAddr(e.family, s.dst, e.dst_port)}`, () => b.connectAddr(fd, sockaddr(e.family, e.dst_port, s.dst)));
        // A raw socket's peer has no port (criu restores it unconnected; the address is kept).
        else if (e.type === SOCK.RAW && s.dst.some((w) => w !== 0)) this.step(s, () => `connect to ${showAddr(e.family, s.dst, 0)}`, () => b.connectAddr(fd, sockaddr(e.family, 0, s.dst)));
      }
      this.step(s, "fcntl(F_SETFL)", () => b.fcntl(fd, F.SETFL, e.flags & ~3));
      this.step(s, "IP options", () => restoreIpOpts(fd, e));
      this.step(s, "options", () => restoreSockOpts(fd, e.opts));
      if (e.proto === IPPROTO.TCP && e.type !== SOCK.RAW) this.step(s, "TCP options", () => restoreTcpOpts(fd, e));
      const how = HOW[shutdownOf(e)];
      if (how !== undefined) this.step(s, "shutdown", () => shutdownUnconnected(fd, how));
    }
    // Every socket is made: each gets back its own SO_REUSEADDR and SO_REUSEPORT (criu's
    // post_open_inet_sk); a connection's waits until it leaves repair mode (beforeResume).
    for (const s of this.sockets) {
      const o = s.e.opts;
      if (s.stream) continue;
      if (o.reuseaddr && o.so_reuseport) continue;
      this.step(s, "options", () => {
        if (!o.reuseaddr) setInt(s.fd!, SOL_SOCKET, SO.REUSEADDR, "SO_REUSEADDR", 0);
        if (!o.so_reuseport) setInt(s.fd!, SOL_SOCKET, SO.REUSEPORT, "SO_REUSEPORT", 0);
      });
    }
  }

  /**
   * Established connections made as make() makes each, in one crossing into native code
   * (tcpRestoreMany: on two threads; a server's thousand connections are thirty-odd calls
   * each): the socket made ready and in repair mode, the connection restored, then its
   * file flags, IP, socket and TCP options, in criu's order. A failure names the step of
   * make() it belongs to.
   */
  private makeConnections(list: readonly Sk[]): void {
    const conns = new Int32Array(list.length * RST.WORDS);
    const sets: number[] = [];
    // (indexed loops, no destructuring: this code runs cold, once per connection, where each
    // iterator V8's interpreter makes counts)
    /** each connection's options after the connection, in order, and where each step ends among them */
    const after: { sets: SockSet[]; ends: number[] }[] = [];
    let size = 0;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!.e;
      const stream = list[i]!.stream!;
      const mine: SockSet[] = [[SET_FL, 0, e.flags & ~3]];
      const ends = [1];
      pushAll(mine, ipOptSets(e));
      ends.push(mine.length);
      // (a connection is made by a process that may force its buffers: repair mode needs CAP_NET_ADMIN)
      mine.push([SOL_SOCKET, SO.SNDBUFFORCE, Math.floor(e.opts.so_sndbuf / 2)], [SOL_SOCKET, SO.RCVBUFFORCE, Math.floor(e.opts.so_rcvbuf / 2)]);
      pushAll(mine, sockOptSets(e.opts));
      ends.push(mine.length);
      pushAll(mine, tcpOptSets(e));
      ends.push(mine.length);
      after.push({ sets: mine, ends });
      // the call's data: the sockaddrs and queues, then the options' bytes
      size += 2 * sockaddrSize(e.family) + stream.inq.length + stream.outq.length;
      for (let k = 0; k < mine.length; k++) {
        const v = mine[k]![2];
        if (typeof v !== "number") size += v.length;
      }
    }
    const data = Buffer.allocUnsafe(size);
    let at = 0;
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      const e = s.e;
      const stream = s.stream!;
      const w = i * RST.WORDS;
      conns[w + RST.FAMILY] = e.family;
      conns[w + RST.V6ONLY] = e.family === AF_INET6 && e.v6only !== undefined ? Number(e.v6only) : -1;
      repairConnWords(stream, conns, w + RST.CONN);
      const len = sockaddrSize(e.family);
      writeSockaddr(data, at, e.family, e.src_port, s.src, s.scopeId);
      writeSockaddr(data, at + len, e.family, e.dst_port, s.dst);
      conns[w + RST.SRC] = at;
      conns[w + RST.SRC + 1] = len;
      conns[w + RST.DST] = at + len;
      conns[w + RST.DST + 1] = len;
      at += 2 * len;
      data.set(stream.inq, at);
      conns[w + RST.INQ] = at;
      conns[w + RST.INQ + 1] = stream.inq.length;
      at += stream.inq.length;
      data.set(stream.outq, at);
      conns[w + RST.OUTQ] = at;
      conns[w + RST.OUTQ + 1] = stream.outq.length;
      at += stream.outq.length;
      const mine = after[i]!.sets;
      conns[w + RST.SETS] = sets.length / 4;
      conns[w + RST.SETS + 1] = mine.length;
      for (let k = 0; k < mine.length; k++) {
        const o = mine[k]!;
        const v = o[2];
        if (typeof v === "number") {
          sets.push(o[0], o[1], 0, v);
        } else {
          sets.push(o[0], o[1], v.length, at);
          data.set(v, at);
          at += v.length;
        }
      }
    }
    const out = new Int32Array(2 * list.length);
    const errors = bridge().tcpRestoreMany(conns, Int32Array.from(sets), data, out);
    list.forEach((s, i) => {
      if (out[2 * i]! < 0) return;
      s.fd = out[2 * i]!;
      this.mine.push(s.fd);
    });
    list.forEach((s, i) => {
      const err = errors[i];
      if (!err) return;
      // the step of the option that failed (-1: the connection itself)
      const k = out[2 * i + 1]!;
      const step = after[i]!.ends.findIndex((end) => k < end);
      const what = k < 0 || step < 0 ? `restoring the connection to ${showAddr(s.e.family, s.dst, s.e.dst_port)}` : AFTER_STEPS[step]!;
      throw new Error(`${what} of ${s.label()} for ${s.what}: ${err.message}`, { cause: err });
    });
  }

  /** criu's inet_bind: an IPv6 address binds with IP_FREEBIND on (it may still be tentative), turned off again unless the task had it. */
  private bind(s: Sk): void {
    const e = s.e;
    const v6 = e.family === AF_INET6;
    if (v6) setInt(s.fd!, SOL_IP, IP.FREEBIND, "IP_FREEBIND", 1);
    bridge().bindAddr(s.fd!, sockaddr(e.family, e.src_port, s.src, s.scopeId));
    if (v6 && !e.ip_opts?.freebind) setInt(s.fd!, SOL_IP, IP.FREEBIND, "IP_FREEBIND", 0);
  }

  /** Runs one step of making socket s; `what` (or what it gives, made only on a failure) names it. */
  private step(s: Sk, what: string | (() => string), run: () => void): void {
    try {
      run();
    } catch (err) {
      throw new Error(`${typeof what === "string" ? what : what()} of ${s.label()} for ${s.what}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The connections leave repair mode, with their SO_REUSEADDR back (criu's rst_unlock_tcp_connections); restore.ts then removes the dump's lock. */
  beforeResume(): void {
    const conns = this.sockets.filter((s) => s.stream && s.fd !== undefined);
    const errors = leaveRepair(conns.map((s) => ({ fd: s.fd!, reuseaddr: s.e.opts.reuseaddr === true, reuseport: s.e.opts.so_reuseport === true })));
    conns.forEach((s, i) => {
      const err = errors[i];
      if (err) throw new Error(`leaving repair mode of ${s.label()} for ${s.what}: ${err.message}`, { cause: err });
    });
  }

  inheritKeys(f: FileEntry): string[] {
    return f.isk ? [`socket:[${f.isk.ino}]`] : [];
  }

  close(): void {
    for (const fd of this.mine.splice(0)) {
      try {
        bridge().close(fd);
      } catch {
        // closed already
      }
    }
  }
}

/** shutdown(2), where a socket that never connected answers ENOTCONN (criu lets it be). */
function shutdownUnconnected(fd: number, how: number): void {
  try {
    bridge().shutdown(fd, how);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOTCONN") throw err;
  }
}

/** criu's restore_ip_raw_opts: a raw socket's ICMP type filter, IP_NODEFRAG, IP_HDRINCL. */
function restoreRawOpts(fd: number, e: InetSkEntry): void {
  const r = e.ip_opts?.raw;
  if (!r || e.type !== SOCK.RAW) return;
  const v6 = e.family === AF_INET6;
  if (r.icmpv_filter?.length && e.proto === (v6 ? IPPROTO.ICMPV6 : IPPROTO.ICMP)) {
    const f = Buffer.alloc(4 * r.icmpv_filter.length);
    r.icmpv_filter.forEach((w, i) => f.writeUInt32LE(w >>> 0, 4 * i));
    bridge().setsockopt(fd, v6 ? SOL_ICMPV6 : SOL_RAW, ICMP_FILTER, f);
  }
  const set: [number, number, number][] = [];
  if (r.nodefrag !== undefined) set.push([SOL_IP, IP.NODEFRAG, r.nodefrag ? 1 : 0]);
  if (r.hdrincl !== undefined) set.push(v6 ? [SOL_IPV6, IPV6.HDRINCL, r.hdrincl ? 1 : 0] : [SOL_IP, IP.HDRINCL, r.hdrincl ? 1 : 0]);
  setsockoptInts(fd, set);
}

/** criu's restore_ip_opts: what the entry has. */
function restoreIpOpts(fd: number, e: InetSkEntry): void {
  if (!e.ip_opts) return;
  restoreRawOpts(fd, e);
  setsockoptInts(fd, ipOptSets(e));
}

/** The IP options of an entry (a raw socket's own ones apart). */
function ipOptSets(e: InetSkEntry): [number, number, number][] {
  const o = e.ip_opts;
  if (!o) return [];
  const set: [number, number, number][] = [];
  const flag = (level: number, name: number, v: boolean | undefined): void => void (v !== undefined && set.push([level, name, v ? 1 : 0]));
  if (e.family === AF_INET6) {
    flag(SOL_IPV6, IPV6.FREEBIND, o.freebind);
    flag(SOL_IPV6, IPV6.RECVPKTINFO, o.pktinfo);
  } else {
    flag(SOL_IP, IP.FREEBIND, o.freebind);
    flag(SOL_IP, IP.PKTINFO, o.pktinfo);
    if (o.tos !== undefined) set.push([SOL_IP, IP.TOS, o.tos]);
    if (o.ttl !== undefined) set.push([SOL_IP, IP.TTL, o.ttl]);
  }
  return set;
}

/** criu's restore_tcp_opts (and the older copies of the keepalive ones in sk_opts). */
function restoreTcpOpts(fd: number, e: InetSkEntry): void {
  setsockoptInts(fd, tcpOptSets(e));
}

function tcpOptSets(e: InetSkEntry): [number, number, number][] {
  const o = e.tcp_opts ?? {};
  const s = e.opts;
  const set: [number, number, number][] = [];
  const int = (name: number, v: number | boolean | undefined): void => void (v !== undefined && set.push([SOL_TCP, name, Number(v)]));
  int(TCP.NODELAY, o.nodelay);
  int(TCP.CORK, o.cork);
  int(TCP.KEEPCNT, o.keepcnt ?? s.tcp_keepcnt);
  int(TCP.KEEPIDLE, o.keepidle ?? s.tcp_keepidle);
  int(TCP.KEEPINTVL, o.keepintvl ?? s.tcp_keepintvl);
  return set;
}

/** The steps of make() a connection's options belong to, as makeConnections orders them. */
const AFTER_STEPS = ["fcntl(F_SETFL)", "IP options", "options", "TCP options"];

function pushAll<T>(to: T[], from: readonly T[]): void {
  for (let k = 0; k < from.length; k++) to.push(from[k]!);
}

/**
 * A record of tcpRestoreMany's conns, in words (tcp_repair.c's RST_*): the family,
 * IPV6_V6ONLY, the connection (repairConnWords), the offset and length in the call's data
 * of the src and dst sockaddrs and of each queue, the index and count of its options.
 */
const RST = { FAMILY: 0, V6ONLY: 1, CONN: 2, SRC: 2 + CONN_WORDS, DST: 4 + CONN_WORDS, INQ: 6 + CONN_WORDS, OUTQ: 8 + CONN_WORDS, SETS: 10 + CONN_WORDS, WORDS: 12 + CONN_WORDS } as const;
/** tcpRestoreMany's level for fcntl(F_SETFL) among the options. */
const SET_FL = -1;

/** A socket make() makes with the other established connections, in one crossing (makeConnections). */
function madeMany(s: Sk): boolean {
  const e = s.e;
  // (the others: half-closed or opening connections, whose FINs and SYN are put back after; a filter or a shutdown after the options)
  return s.stream?.state === TCP_STATE.ESTABLISHED && e.type === SOCK.STREAM && !e.opts.so_filter?.length && shutdownOf(e) === 0;
}
