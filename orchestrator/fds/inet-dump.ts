// TCP and UDP sockets on dump (INETSK entries in files.img, criu's sk-inet.c). The state,
// addresses, queue lengths and shutdown come from the kernel's sock_diag table, read once
// per family and protocol (the tree is frozen); a socket the table does not list (a TCP
// socket never bound, or bound and not listening; an unbound UDP socket) is closed, its
// addresses from getsockname/getpeername and a TCP socket's shutdown from poll, as criu
// does. Options from getsockopt: the socket's (sockopts.ts), IP or IPv6 ones (ip_opts),
// TCP ones (tcp_opts).
//
// A TCP connection, with --tcp-established, is locked (net/lock.ts), put in repair mode
// and read out into tcp-stream-<inode>.img (net/tcp-repair.ts); a process's connections
// are read in one crossing into the bridge as its fd walk begins (readConnections), their
// streams written at once and the rest kept until each fd is met. It stays so until the
// dump is over: killed, its socket goes without a word to the peer; left running (-R) or
// after a failure, it leaves repair mode and is unlocked before the task runs again.
//
// What is refused, with criu's hints: a connected TCP socket (--tcp-established), a
// listener with connections it has not accepted yet (--skip-in-flight leaves them out:
// their clients see the connection reset once the task is gone, as with criu), a corked
// UDP socket, raw sockets and other protocols (MPTCP). A UDP socket's queued datagrams
// are dropped, as criu drops them (the kernel gives no way to put a datagram back with
// its sender's address); the dump says so in the log.

import { readFileSync } from "node:fs";
import { AF_INET, AF_INET6, ICMP_FILTER, IP, IPPROTO, IPV6, POLL, SO, SOCK, SOL_ICMPV6, SOL_IP, SOL_IPV6, SOL_RAW, SOL_SOCKET, SOL_TCP, SOL_UDP, TCP, TCP_STATE, UDP_CORK } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { fdinfoValue, listFds, procPath, type FdInfo } from "../dump/proc.js";
import { NET_NS_ID } from "../dump/write.js";
import { fownOf, UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts } from "./kind.js";
import { DiagTable, type InetDiag } from "./inet-diag.js";
import { addrWords, CONNECTED_STATES, parseSockaddr, PROTO_NAME, showAddr, STATE_NAME, type InetSkEntry } from "./inet-common.js";
import { dumpFilter, dumpSockOpts, getsockoptInts, sockOptInt, sockOptsOf, sockOptsSpec, type SkOpts } from "./sockopts.js";
import type { LockedConn, LockedListener } from "../net/lock.js";
import { leaveRepair, REPAIRED_STATES, savedConnection, tcpStreamImage, type TcpStream } from "../net/tcp-repair.js";


/** The TCP states criu asks sock_diag for: listeners and connections (not closed or bound-only ones). */
const TCP_DIAG_STATES = [TCP_STATE.LISTEN, ...[TCP_STATE.ESTABLISHED, TCP_STATE.FIN_WAIT1, TCP_STATE.FIN_WAIT2, TCP_STATE.CLOSE_WAIT, TCP_STATE.LAST_ACK, TCP_STATE.CLOSING, TCP_STATE.SYN_SENT]].reduce((m, s) => m | (1 << s), 0);
const ALL_STATES = 0xffffffff;
/** struct tcp_info's tcpi_unacked: a listener's accept queue, as the kernel fills it in for one. */
const TCPI_UNACKED = 24;

function getInt(fd: number, level: number, name: number): number {
  return bridge().getsockopt(fd, level, name, 4).readInt32LE(0);
}

/** One socket as the dump sees it: sock_diag's view, or the one made up for a socket it does not list. */
type SkView = Omit<InetDiag, "ino"> & {
  /** listed by sock_diag (criu then writes the socket's network namespace) */
  listed: boolean;
};

export class InetDumper implements FdDumper {
  private readonly tables = new Map<string, DiagTable>();
  /** tscriu's copies of the connections it put in repair mode, and their SO_REUSEADDR */
  private readonly repaired: { fd: number; reuseaddr: boolean }[] = [];
  /** the connections locked so far, by inode */
  private readonly lockedInos = new Set<number>();
  /** the connections put in repair mode so far, by inode (a socket in several fds or processes is read once) */
  private readonly repairedInos = new Set<number>();
  /** connections read in a batch as their process's fd walk began, by inode, until their fd is met */
  private readonly ahead = new Map<number, Ahead>();
  /** lockTree ran */
  private treeLocked = false;

  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    const family = f.domain();
    return family === AF_INET || family === AF_INET6;
  }

  /** sock_diag's table of one family and protocol, read once. */
  private table(family: number, proto: number): DiagTable {
    const key = `${family}:${proto}`;
    let t = this.tables.get(key);
    if (!t) {
      try {
        t = DiagTable.read(family, proto, proto === IPPROTO.TCP ? TCP_DIAG_STATES : ALL_STATES);
      } catch (e) {
        // A kernel without UDP-Lite's diag module: its sockets are looked at one by one.
        if (proto !== IPPROTO.UDPLITE) throw e;
        t = new DiagTable(Buffer.alloc(0));
      }
      this.tables.set(key, t);
    }
    return t;
  }

  /** sock_diag's TCP table of `family`; undefined when it cannot be read. */
  private tcpTable(family: number): DiagTable | undefined {
    try {
      return this.table(family, IPPROTO.TCP);
    } catch {
      return undefined;
    }
  }

  /** sock_diag's entry of a TCP socket of `family` by inode; undefined when it lists none, or its table cannot be read. */
  private tcpListed(family: number, ino: number): InetDiag | undefined {
    return this.tcpTable(family)?.get(ino);
  }

  /** criu's gen_uncon_sk: a socket sock_diag does not list is closed; its addresses are its own. */
  private unlisted(f: FdFacts, proto: number, raw: boolean, refuse: (why: string) => UnsupportedFd): SkView {
    const b = bridge();
    const src = parseSockaddr(b.sockName(f.copy));
    const peer = peerOf(f.copy, f.domain());
    const dst = peer ? parseSockaddr(peer) : { port: 0, addr: Buffer.alloc(16) };
    let wqlen = 0;
    let shutdown = 0;
    // A raw socket of protocol TCP is no TCP socket: it has no TCP state (TCP_INFO: EOPNOTSUPP).
    if (proto === IPPROTO.TCP && !raw) {
      const info = b.getsockopt(f.copy, SOL_TCP, TCP.INFO, 8);
      if (info[0] !== TCP_STATE.CLOSE) throw refuse(`is in TCP state ${STATE_NAME[info[0]!] ?? info[0]}, which sock_diag does not list`);
      // criu keeps tcpi_backoff in the backlog field of such a socket.
      wqlen = info[4]!;
      // Only poll tells whether a socket that never connected was shut down.
      const ev = b.pollNow(f.copy, POLL.RDHUP | POLL.HUP);
      if (ev & POLL.HUP && ev & POLL.RDHUP) shutdown = 1;
    }
    return { state: TCP_STATE.CLOSE, sport: src.port, dport: dst.port, src: src.addr, dst: dst.addr, rqlen: 0, wqlen, shutdown, listed: false };
  }

  private readonly rawTables = new Map<number, Map<number, { state: number; dst: Buffer }>>();

  /**
   * A raw socket's peer: getpeername has none to give (a raw socket has no port), and
   * sock_diag does not list raw sockets here; /proc/net/raw{,6} has the state and the
   * remote address of each, by inode.
   */
  private rawPeer(family: number, ino: number, sk: SkView): void {
    let t = this.rawTables.get(family);
    if (!t) {
      t = new Map();
      const v6 = family === AF_INET6;
      const text = readFileSync(`/proc/net/${v6 ? "raw6" : "raw"}`, "utf8");
      for (const line of text.split("\n").slice(1)) {
        const col = line.trim().split(/\s+/);
        if (col.length < 10) continue;
        // An address as the kernel prints it: each 32-bit word in host order.
        const hex = col[2]!.split(":")[0]!;
        const dst = Buffer.alloc(16);
        for (let w = 0; w < hex.length / 8; w++) dst.writeUInt32LE(Number.parseInt(hex.slice(8 * w, 8 * w + 8), 16), 4 * w);
        t.set(Number(col[9]), { state: Number.parseInt(col[3]!, 16), dst });
      }
      this.rawTables.set(family, t);
    }
    const r = t.get(ino);
    if (!r) return;
    sk.state = r.state;
    sk.dst = r.dst;
  }

  /**
   * A process's TCP connections, with --tcp-established, read in one batch before its fds
   * are walked (readConnections), each taken when its fd is met. Which fds they are:
   * fdinfo's inode (Linux 5.14 on) listed in sock_diag's TCP table, in a state that is
   * dumped. Without fdinfo's inodes each connection is read as its fd is met.
   */
  begin(pid: number, fds: readonly { fd: number; info: FdInfo }[]): void {
    if (!this.ctx.tcp.established || this.ctx.tcp.close) return;
    const byFamily = new Map<number, Connection[]>();
    const seen = new Set<number>();
    // (indexed: this loop runs once per fd, cold)
    for (let i = 0; i < fds.length; i++) {
      const { fd, info } = fds[i]!;
      const ino = Number(fdinfoValue(info, "ino"));
      // (an inode met again, under another fd: read once)
      if (!Number.isSafeInteger(ino) || ino <= 0 || seen.has(ino) || this.repairedInos.has(ino) || this.ahead.has(ino)) continue;
      seen.add(ino);
      // (the state first: a record is made only for a connection)
      let family = AF_INET;
      let state = this.tcpTable(AF_INET)?.state(ino);
      if (state === undefined) {
        family = AF_INET6;
        state = this.tcpTable(AF_INET6)?.state(ino);
      }
      if (state === undefined || !(REPAIRED_STATES & (1 << state))) continue;
      const d = this.tcpListed(family, ino)!;
      let list = byFamily.get(family);
      if (!list) byFamily.set(family, (list = []));
      list.push({ fd, ino, diag: d, lock: { family, src: d.src, sport: d.sport, dst: d.dst, dport: d.dport } });
    }
    for (const [family, conns] of byFamily) this.readConnections(pid, family, conns);
  }

  /**
   * criu's tcp_repair_established and dump_tcp_conn_state, for many connections in one
   * crossing into native code (tcpRepairSaveMany: on two threads; a server's thousand
   * connections are fifty-odd calls each): they are locked, each with its options read,
   * then put in repair mode (through a copy of the socket kept until the dump is over) and
   * read out. Each stream is written at once (writeSoon); what else was read waits in
   * `ahead` for the connection's fd to be met, and a failure is thrown then, naming the fd.
   * `pid`'s fds (tscriu's own for a socket in flight).
   */
  private readConnections(pid: number, family: number, conns: readonly Connection[]): void {
    this.lockTree();
    for (const { ino, lock } of conns) if (!this.lockedInos.has(ino)) this.ctx.netLock.lock(lock);
    const layout = batchLayout(family);
    const out = new Int32Array(conns.length * layout.words);
    const { data, errors } = bridge().tcpRepairSaveMany(pid, Int32Array.from(conns, (c) => c.fd), Float64Array.from(conns, (c) => c.ino), layout.spec, out);
    const recs: Int32Array[] = [];
    const raws: Buffer[] = [];
    // Every copy the batch put in repair mode is kept first, before anything that may
    // throw (a stream's write): release() must take each out of it again.
    // (indexed: these loops run once per connection, cold)
    for (let i = 0; i < conns.length; i++) {
      const rec = out.subarray(i * layout.words, (i + 1) * layout.words);
      const raw = Buffer.from(rec.buffer, rec.byteOffset + 4 * REC.OPTS, layout.sockSize);
      recs.push(rec);
      raws.push(raw);
      if (rec[REC.FD]! >= 0) {
        this.repaired.push({ fd: rec[REC.FD]!, reuseaddr: sockOptInt(raw, "inet", SO.REUSEADDR) !== 0 });
        this.repairedInos.add(conns[i]!.ino);
      }
    }
    for (let i = 0; i < conns.length; i++) {
      const ino = conns[i]!.ino;
      const rec = recs[i]!;
      const raw = raws[i]!;
      // (neither read nor failed: the fd is not that socket; it is read when met)
      if (rec[REC.ERR] !== 0 && !errors[i]) continue;
      const pre: Ahead = { rec, raw, layout, error: errors[i], diag: conns[i]!.diag, stream: undefined };
      if (!pre.error) {
        try {
          pre.stream = streamOf(rec, data);
        } catch (e) {
          pre.error = e as Error;
        }
      }
      // Its stream goes to the disk now, while the fds are walked: a thousand creates
      // were the longest part of such a dump, and waited for the walk to start. (Its
      // queues go in the entry's "extra" itself: the entry is this stream's own, and a
      // copy of it with them cost a spread of its fields.)
      if (pre.stream) this.ctx.writeSoon({ name: tcpStreamImage(ino), type: "TCP_STREAM", entries: [Object.assign(pre.stream.entry, { extra: { inq: pre.stream.inq, outq: pre.stream.outq } })] });
      this.ahead.set(ino, pre);
    }
  }

  knownFamily(ino: number): number | undefined {
    return this.ahead.get(ino)?.layout.family;
  }

  dump(f: FdFacts): { id: number; type: string } {
    const b = bridge();
    const family = f.domain();
    const ino = Number(f.st.ino);
    // One in sock_diag's TCP table is a TCP stream socket (no call asks it: a server's thousand
    // connections). A table that cannot be read is no answer: asked below, and a TCP
    // socket then fails at its own table, naming it (not a UDP one, which needs none).
    const listedTcp = this.ahead.get(ino)?.diag ?? this.tcpListed(family, ino);
    const kind = listedTcp ? undefined : getsockoptInts(f.copy, KIND_OPTS);
    const proto = kind ? kind[0]! : IPPROTO.TCP;
    const type = kind ? kind[1]! : SOCK.STREAM;
    const v = family === AF_INET6 ? "IPv6" : "IPv4";
    const refuse = (why: string): UnsupportedFd => new UnsupportedFd(`unsupported fd ${f.fd}: ${v} ${PROTO_NAME[proto] ?? `protocol ${proto}`} socket ${f.link} ${why}`);
    // A raw socket may carry any protocol (criu's can_dump_ipproto).
    const raw = type === SOCK.RAW;
    if (!raw && proto === IPPROTO.MPTCP) throw refuse("is a multipath TCP socket, which criu does not dump either (Go programs: GODEBUG=multipathtcp=0 turns it off)");
    if (!raw && PROTO_NAME[proto] === undefined) throw refuse("has a protocol tscriu does not dump");
    if (!raw && type !== SOCK.STREAM && type !== SOCK.DGRAM) throw refuse(`is of type ${type}: only stream, datagram and raw sockets are dumped`);

    // sock_diag lists neither raw nor ping sockets here: they are read from the socket, as criu's gen_uncon_sk does.
    const d = listedTcp ?? (raw || ICMP_PROTOS.has(proto) ? undefined : this.table(family, proto).get(ino));
    const sk: SkView = d ? { ...d, listed: true } : this.unlisted(f, proto, raw, refuse);
    if (raw) this.rawPeer(family, ino, sk);
    // (the addresses as text: made for a message only, a server's connections log none by default)
    const local = (): string => showAddr(family, addrWords(sk.src, family), sk.sport);
    /** the socket's options (read early for a connection: its SO_REUSEADDR comes back after repair mode) */
    let opts: SkOpts | undefined;
    /** the connection as its process's batch read it (begin) */
    let pre: Ahead | undefined;

    if (raw || ICMP_PROTOS.has(proto)) {
      if (b.pollNow(f.copy, POLL.IN) & POLL.IN) this.ctx.log.warn(`fd ${f.fd} of pid ${f.pid}: the packets queued for ${raw ? "raw" : "ping"} socket ${local()} are dropped, as criu drops them`);
    } else if (type === SOCK.DGRAM) {
      if (getInt(f.copy, SOL_UDP, UDP_CORK) !== 0) throw refuse("is corked (UDP_CORK): what it holds back cannot be dumped (criu refuses it too)");
      if (sk.wqlen !== 0) this.ctx.log.warn(`fd ${f.fd} of pid ${f.pid}: the write queue of UDP socket ${local()} is not empty (${sk.wqlen} bytes); it is not kept`);
      if (sk.rqlen !== 0) this.ctx.log.warn(`fd ${f.fd} of pid ${f.pid}: the datagrams queued for UDP socket ${local()} (${sk.rqlen} bytes) are dropped, as criu drops them`);
    } else if (sk.state === TCP_STATE.LISTEN) {
      if (this.locksListeners()) {
        // Locked first, then its accept queue counted again: a handshake that ended since
        // sock_diag's table was read is counted, and none can end after it.
        this.lockTree();
        sk.rqlen = b.getsockopt(f.copy, SOL_TCP, TCP.INFO, 32).readUInt32LE(TCPI_UNACKED);
      }
      if (sk.rqlen !== 0) {
        if (!this.ctx.tcp.skipInFlight) throw refuse(`listening on ${local()} has ${sk.rqlen} connection${sk.rqlen === 1 ? "" : "s"} not yet accepted (in flight); criu's --skip-in-flight leaves them out`);
        this.ctx.log.info(`fd ${f.fd} of pid ${f.pid}: skipping ${sk.rqlen} connection(s) in flight on ${local()} (--skip-in-flight)`);
      }
    } else if (CONNECTED_STATES.has(sk.state)) {
      const conn = (): string => `(${local()} -> ${showAddr(family, addrWords(sk.dst, family), sk.dport)}, ${STATE_NAME[sk.state]})`;
      if (!this.ctx.tcp.established && !this.ctx.tcp.close) throw refuse(`is a connected TCP socket ${conn()}; consider using --tcp-established`);
      if (this.ctx.tcp.close) {
        // criu's --tcp-close: the connection is neither locked nor kept; a restore makes it closed.
        this.ctx.log.info(() => `fd ${f.fd} of pid ${f.pid}: TCP connection ${conn()} dumped without its state (--tcp-close)`);
      } else {
        if (!(REPAIRED_STATES & (1 << sk.state))) throw refuse(`is a TCP connection ${conn()} still opening; only connections that are established or half-closed are dumped`);
        if (!this.ahead.has(ino)) this.readConnections(process.pid, family, [{ fd: f.copy, ino, lock: { family, src: sk.src, sport: sk.sport, dst: sk.dst, dport: sk.dport } }]);
        pre = this.ahead.get(ino);
        this.ahead.delete(ino);
        if (!pre) throw new Error(`fd ${f.fd} of pid ${f.pid}: TCP connection ${conn()}: tscriu's copy of it is not socket:[${ino}]`);
        opts = this.take(f, conn, pre, refuse);
      }
    } else if (sk.state !== TCP_STATE.CLOSE) {
      throw refuse(`is in the unknown state ${sk.state}`);
    } else if (sk.dport !== 0 && !raw) {
      const conn = `(${local()} -> ${showAddr(family, addrWords(sk.dst, family), sk.dport)}, CLOSE)`;
      if (this.ctx.tcp.close) {
        // criu's --tcp-close: the end of a connection closed; a restore makes it so again (recv: EOF, send: EPIPE).
        this.ctx.log.info(`fd ${f.fd} of pid ${f.pid}: closed TCP connection ${conn} dumped without its state (--tcp-close)`);
      } else {
        // criu keeps such a socket through repair mode (its FINs sent again on restore), which
        // tscriu does not do yet: it is dumped as a socket that never connected, its address kept.
        this.ctx.log.info(`fd ${f.fd} of pid ${f.pid}: closed TCP connection ${conn} dumped as a socket that never connected (--tcp-close keeps it closed)`);
        sk.dport = 0;
        sk.dst = Buffer.alloc(16);
      }
    }

    const id = this.ctx.files.newId();
    const entry: InetSkEntry = {
      id,
      ino,
      family,
      type,
      proto,
      state: sk.state,
      src_port: sk.sport,
      dst_port: sk.dport,
      flags: f.flags,
      // criu keeps the write queue length here (a listener's: its backlog)
      backlog: sk.wqlen,
      src_addr: addrWords(sk.src, family),
      dst_addr: addrWords(sk.dst, family),
      fown: pre ? fownOf(pre.rec, REC.OWNER) : f.fown(),
      opts: opts ?? dumpSockOpts(f.copy, "inet", refuse),
      ip_opts: pre ? ipOptsOf(pre.rec, pre.layout.ipAt) : ipOptsOf(getsockoptInts(f.copy, family === AF_INET6 ? IP6_OPTS : IP4_OPTS), 0),
      tcp_opts: proto === IPPROTO.TCP && !raw ? (pre ? tcpOptsOf(pre.rec, pre.layout.tcpAt) : tcpOptsOf(getsockoptInts(f.copy, TCP_OPTS), 0)) : {},
    };
    if (sk.listed) entry.ns_id = NET_NS_ID;
    if (raw) entry.ip_opts!.raw = rawOpts(f.copy, family, proto);
    if (family === AF_INET6) {
      entry.v6only = (pre ? pre.rec[pre.layout.v6onlyAt]! : getInt(f.copy, SOL_IPV6, IPV6.V6ONLY)) !== 0;
      // A link-local address binds only with its interface (the scope id).
      if (sk.sport !== 0 && needsScopeId(sk.src)) {
        const dev = b.getsockopt(f.copy, SOL_SOCKET, SO.BINDTODEVICE, 64).toString("latin1").replace(/\0.*$/s, "");
        if (!dev) throw refuse(`is bound to the link-local address ${local()} without a device to say which link`);
        entry.ifname = dev;
      }
    }
    // criu writes the shutdown state only when there is one (criu 4.x restores NONE as an error).
    if (sk.shutdown > 0) entry.shutdown = sk.shutdown;
    this.ctx.files.add({ type: "INETSK", id, isk: entry });
    return { id, type: "INETSK" };
  }

  /** A connection read by readConnections (its stream written already): its options. */
  private take(f: FdFacts, conn: () => string, pre: Ahead, refuse: (why: string) => UnsupportedFd): SkOpts {
    const { rec, raw, error, stream } = pre;
    if (error || !stream) throw new Error(`fd ${f.fd} of pid ${f.pid}: TCP connection ${conn()}: ${error?.message ?? "not read"}`, { cause: error });
    const copy = rec[REC.FD]!;
    const filter = rec[REC.FILTER]!;
    const opts = sockOptsOf(raw, "inet", (locked) => (locked || filter > 0 ? dumpFilter(copy, locked, refuse) : []));
    this.ctx.log.info(() => `fd ${f.fd} of pid ${f.pid}: TCP connection ${conn()} in repair mode: ${stream.inq.length} bytes to read, ${stream.outq.length} to send (${stream.entry.unsq_len ?? 0} never sent)`);
    return opts;
  }

  /**
   * The tree's listeners are locked with its connections, until it is killed: a dump that
   * kills it, of TCP connections (--tcp-established), locked by nftables (net/lock.ts). Not
   * by a dump that lets it run on, which they would only keep from new clients for a while.
   */
  private locksListeners(): boolean {
    return this.ctx.tcp.lockListeners && this.ctx.tcp.established && this.ctx.netLock.method === "nftables";
  }

  /**
   * Locks every connection of the dumped tree at once, at the first one met (one nftables
   * transaction rather than one per connection: a server with a thousand clients), and
   * its listeners where it locks them: the tree is frozen, sock_diag's tables list them all.
   */
  private lockTree(): void {
    if (this.treeLocked) return;
    this.treeLocked = true;
    // --network-lock skip locks nothing: the tree's fds are not walked for it.
    if (this.ctx.netLock.method === "skip") return;
    const held = new Set<number>();
    for (const pid of this.ctx.pids) {
      for (const fd of listFds(pid)) {
        const m = /^socket:\[(\d+)\]$/.exec(bridge().readlink(procPath(pid, `fd/${fd}`)));
        if (m) held.add(Number(m[1]));
      }
    }
    const conns: LockedConn[] = [];
    const listeners: LockedListener[] = [];
    for (const family of [AF_INET, AF_INET6]) {
      for (const d of this.table(family, IPPROTO.TCP).values()) {
        if (!held.has(d.ino)) continue;
        if (d.state === TCP_STATE.LISTEN && this.locksListeners()) listeners.push({ family, addr: d.src, port: d.sport });
        if (!(REPAIRED_STATES & (1 << d.state)) || this.lockedInos.has(d.ino)) continue;
        conns.push({ family, src: d.src, sport: d.sport, dst: d.dst, dport: d.dport });
        this.lockedInos.add(d.ino);
      }
    }
    this.ctx.netLock.lockAll(conns, listeners);
  }

  images(): ExtraImage[] {
    return []; // the connections' streams are written as they are read (writeSoon)
  }

  release(outcome: "resume" | "kill" | "stop"): void {
    const repaired = this.repaired.splice(0);
    // Killed or stopped: repair mode stays on, so that the socket goes without a word to its peer.
    const errors = outcome === "resume" ? leaveRepair(repaired) : [];
    for (const r of repaired) bridge().close(r.fd);
    const first = errors.find((e) => e !== undefined);
    if (first !== undefined) throw first;
  }
}

/**
 * The peer of a socket sock_diag does not list, as criu's gen_uncon_sk reads it: by
 * SO_PEERNAME, which (unlike getpeername) still gives the peer of a TCP connection gone
 * to CLOSE (both FINs exchanged, or reset), so that such a socket is dumped as the
 * connection it was and not as a socket that never connected.
 */
function peerOf(fd: number, family: number): Buffer | undefined {
  try {
    // The size asked must be the address's exactly (more is EINVAL): sockaddr_in, sockaddr_in6.
    return bridge().getsockopt(fd, SOL_SOCKET, SO.PEERNAME, family === AF_INET6 ? 28 : 16);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOTCONN") return undefined;
    throw e;
  }
}

/** criu's dump_ip_opts: each one written only when set (IP_TTL reads as the default TTL when unset, so it always is). */
const KIND_OPTS = [
  [SOL_SOCKET, SO.PROTOCOL],
  [SOL_SOCKET, SO.TYPE],
] as const;
const IP4_OPTS = [
  [SOL_IP, IP.FREEBIND],
  [SOL_IP, IP.PKTINFO],
  [SOL_IP, IP.TOS],
  [SOL_IP, IP.TTL],
] as const;
const IP6_OPTS = [
  [SOL_IPV6, IPV6.FREEBIND],
  [SOL_IPV6, IPV6.RECVPKTINFO],
] as const;

/** The IP options of IP4_OPTS or IP6_OPTS, as read in that order (from ints[at]). */
function ipOptsOf(ints: ArrayLike<number>, at: number): NonNullable<InetSkEntry["ip_opts"]> {
  const o: NonNullable<InetSkEntry["ip_opts"]> = {};
  const freebind = ints[at];
  const pktinfo = ints[at + 1];
  const tos = ints[at + 2];
  const ttl = ints[at + 3];
  if (freebind) o.freebind = true;
  if (pktinfo) o.pktinfo = true;
  if (tos) o.tos = tos;
  if (ttl) o.ttl = ttl;
  return o;
}

/** ICMP datagram ("ping") sockets: what criu's can_dump_ipproto allows besides TCP and UDP. */
const ICMP_PROTOS: ReadonlySet<number> = new Set([IPPROTO.ICMP, IPPROTO.ICMPV6]);

/**
 * criu's dump_ip_raw_opts: IP_HDRINCL (IPV6_HDRINCL), IP_NODEFRAG (IPv4), each written only
 * when on, and an ICMP socket's type filter (ICMP_FILTER: one word; ICMPV6_FILTER: eight).
 */
function rawOpts(fd: number, family: number, proto: number): NonNullable<NonNullable<InetSkEntry["ip_opts"]>["raw"]> {
  const v6 = family === AF_INET6;
  const [hdrincl, nodefrag] = getsockoptInts(fd, v6 ? [[SOL_IPV6, IPV6.HDRINCL]] : [[SOL_IP, IP.HDRINCL], [SOL_IP, IP.NODEFRAG]]);
  const r: NonNullable<NonNullable<InetSkEntry["ip_opts"]>["raw"]> = {};
  if (hdrincl) r.hdrincl = true;
  if (nodefrag) r.nodefrag = true;
  if (proto === (v6 ? IPPROTO.ICMPV6 : IPPROTO.ICMP)) {
    const words = v6 ? 8 : 1;
    const f = bridge().getsockopt(fd, v6 ? SOL_ICMPV6 : SOL_RAW, ICMP_FILTER, 4 * words);
    r.icmpv_filter = Array.from({ length: words }, (_, i) => (4 * i + 4 <= f.length ? f.readUInt32LE(4 * i) : 0));
  }
  return r;
}

const TCP_OPTS = [TCP.NODELAY, TCP.CORK, TCP.KEEPCNT, TCP.KEEPIDLE, TCP.KEEPINTVL].map((n) => [SOL_TCP, n] as const);

/** criu's dump_tcp_opts (TCP_OPTS as read in that order, from ints[at]): each one written only when not zero. */
function tcpOptsOf(ints: ArrayLike<number>, at: number): NonNullable<InetSkEntry["tcp_opts"]> {
  const nodelay = ints[at];
  const cork = ints[at + 1];
  const cnt = ints[at + 2];
  const idle = ints[at + 3];
  const intvl = ints[at + 4];
  const o: NonNullable<InetSkEntry["tcp_opts"]> = {};
  if (nodelay) o.nodelay = true;
  if (cork) o.cork = true;
  if (cnt) o.keepcnt = cnt;
  if (idle) o.keepidle = idle;
  if (intvl) o.keepintvl = intvl;
  return o;
}

/** Link-local unicast and link- or node-local multicast addresses need a scope id (the kernel's __ipv6_addr_needs_scope_id). */
function needsScopeId(addr: Buffer): boolean {
  if (addr[0] === 0xff) return (addr[1]! & 0x0f) === 0x01 || (addr[1]! & 0x0f) === 0x02;
  return addr[0] === 0xfe && (addr[1]! & 0xc0) === 0x80;
}

/** A connection's stream from its record in a batch and the batch's queue bytes (checked: savedConnection). */
function streamOf(rec: Int32Array, data: Buffer): TcpStream {
  const u = (w: number): number => rec[w]! >>> 0;
  const at = u(REC.DATA);
  const inqEnd = at + u(REC.DATA + 1);
  return savedConnection({
    state: u(REC.SAVED),
    options: u(REC.SAVED + 1),
    sndWscale: u(REC.SAVED + 2) & 0x0f,
    rcvWscale: u(REC.SAVED + 2) >> 4,
    outq: u(REC.SAVED + 3),
    unsent: u(REC.SAVED + 4),
    inq: u(REC.SAVED + 5),
    mss: u(REC.SAVED + 6),
    timestamp: u(REC.SAVED + 7),
    window: [u(REC.SAVED + 8), u(REC.SAVED + 9), u(REC.SAVED + 10), u(REC.SAVED + 11), u(REC.SAVED + 12)],
    inqSeq: u(REC.SAVED + 13),
    outqSeq: u(REC.SAVED + 14),
    inqData: data.subarray(at, inqEnd),
    outqData: data.subarray(inqEnd, inqEnd + u(REC.DATA + 2)),
  });
}

/** The words of a connection's record in tcpRepairSaveMany's out (tcp_repair.c's REC_*). */
const REC = { ERR: 0, FD: 1, FILTER: 2, SAVED: 3, DATA: 18, OWNER: 21, OPTS: 26 } as const;

/** A batch's spec for one family: the socket options, then the IP ones, the TCP ones and (IPv6) IPV6_V6ONLY, each where its record holds it. */
interface BatchLayout {
  family: number;
  spec: Int32Array;
  /** a record's words */
  words: number;
  /** the socket options' bytes (sockOptsSpec) */
  sockSize: number;
  /** the words of the IP options, the TCP options, IPV6_V6ONLY */
  ipAt: number;
  tcpAt: number;
  v6onlyAt: number;
}

const layouts = new Map<number, BatchLayout>();

function batchLayout(family: number): BatchLayout {
  let l = layouts.get(family);
  if (!l) {
    const sock = sockOptsSpec("inet");
    const ip = family === AF_INET6 ? IP6_OPTS : IP4_OPTS;
    const ints = [...ip, ...TCP_OPTS, ...(family === AF_INET6 ? [[SOL_IPV6, IPV6.V6ONLY] as const] : [])];
    const ipAt = REC.OPTS + sock.size / 4;
    l = {
      family,
      spec: Int32Array.from([...sock.spec, ...ints.flatMap(([level, name]) => [level, name, 4])]),
      words: ipAt + ints.length,
      sockSize: sock.size,
      ipAt,
      tcpAt: ipAt + ip.length,
      v6onlyAt: ipAt + ip.length + TCP_OPTS.length,
    };
    layouts.set(family, l);
  }
  return l;
}

/** A connection to read: its fd (of the process read), its inode, what locks it. */
interface Connection {
  fd: number;
  ino: number;
  /** its record in sock_diag's table, where begin found it there */
  diag?: InetDiag;
  lock: LockedConn;
}

/** A connection of a batch, until its fd is met: its record, its socket options' bytes, its stream (written already) or its failure. */
interface Ahead {
  rec: Int32Array;
  raw: Buffer;
  layout: BatchLayout;
  stream: TcpStream | undefined;
  error: Error | undefined;
  /** its record in sock_diag's table (Connection.diag) */
  diag: InetDiag | undefined;
}
