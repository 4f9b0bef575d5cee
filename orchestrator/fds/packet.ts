// Packet sockets (PACKETSK entries in files.img, criu's sk-packet.c): the type (SOCK_RAW,
// SOCK_DGRAM, the old SOCK_PACKET), the protocol, the interface it is bound to, its
// PACKET_* options, its multicast and promiscuous memberships, its fanout group, and its
// socket options.
//
// Read from sock_diag (packet_diag: the only place the memberships and the fanout group
// show) and getsockopt. As criu, frames queued to read are dropped (with a warning): a
// capture socket loses what arrived while the tree was frozen, as it would lose frames on
// a busy link. A mapped ring (PACKET_RX_RING/PACKET_TX_RING) keeps its geometry here; the
// task's mapping of it, shared or private, is a VMA naming this socket (criu's socket map),
// mapped again from the restored socket (restore/memory.ts); the frames in it are dropped
// as the queue's are, and so are the pages a task wrote in a private mapping of it (criu
// keeps no page of a socket map). Refused by name rather than lost: an option criu's entry has no field for
// (PACKET_QDISC_BYPASS, PACKET_TX_HAS_OFF, PACKET_IGNORE_OUTGOING).

import { readdirSync, readFileSync } from "node:fs";
import { AF_PACKET, PACKET_OPT, POLL, SOCK, SOL_PACKET } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { PacketDiag, PacketDiagRing } from "../../host-bridge/native.js";
import type { FileEntry } from "../../images/dir.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { packet_ring, packet_sock_entry } from "../../images/schema/index.js";
import { NET_NS_ID } from "../dump/write.js";
import { badEntry, MadeFds, part, stepsOf } from "./anon.js";
import type { DumpContext, ExtraImage, FdDumper, FdFacts, FdKind, FdRestorer, FdSource, PlanContext } from "./kind.js";
import { UnsupportedFd } from "./kind.js";
import { dumpSockOpts, filterProblem, getsockoptInts, int32, restoreSockOpts } from "./sockopts.js";

type PacketSkEntry = Entry<typeof packet_sock_entry>;
type PacketRing = Entry<typeof packet_ring>;

/** packet_diag_info's pdi_flags. */
const PDI = { AUXDATA: 2, ORIGDEV: 4, VNETHDR: 8, LOSS: 16 } as const;
/** TPACKET_V1..V3 */
const MAX_VERSION = 2;
/** The largest ring taken from an image (the kernel allocates it in tscriu). */
const MAX_RING = 2 ** 32;
/** MAX_ADDR_LEN: the longest hardware address a membership holds. */
const MAX_ADDR = 32;

/** The options whose state criu's entry cannot hold: a socket with one on is refused. */
const UNKEPT = [
  ["PACKET_QDISC_BYPASS", PACKET_OPT.QDISC_BYPASS],
  ["PACKET_TX_HAS_OFF", PACKET_OPT.TX_HAS_OFF],
  ["PACKET_IGNORE_OUTGOING", PACKET_OPT.IGNORE_OUTGOING],
] as const;

const typeName = (t: number): string => (t === SOCK.RAW ? "raw" : t === SOCK.DGRAM ? "datagram" : t === SOCK.PACKET ? "SOCK_PACKET" : `type ${t}`);

/** The name of interface `index` (SOCK_PACKET binds by name), or undefined. */
function ifName(index: number): string | undefined {
  for (const name of readdirSync("/sys/class/net")) {
    try {
      if (Number(readFileSync(`/sys/class/net/${name}/ifindex`, "latin1").trim()) === index) return name;
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

function ringEntry(r: PacketDiagRing): PacketRing {
  return { block_size: r.blockSize, block_nr: r.blockNr, frame_size: r.frameSize, frame_nr: r.frameNr, retire_tmo: r.retireTmo, sizeof_priv: r.sizeofPriv, features: r.features };
}

class PacketDumper implements FdDumper {
  private diag: Map<number, PacketDiag> | undefined;

  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return f.domain() === AF_PACKET;
  }

  dump(f: FdFacts): { id: number; type: string } {
    const refuse = (why: string): UnsupportedFd => new UnsupportedFd(`unsupported fd ${f.fd}: packet socket ${f.link} ${why}`);
    this.diag ??= new Map(bridge().packetDiag().map((d) => [d.ino, d]));
    const d = this.diag.get(Number(f.st.ino));
    if (!d) throw refuse("is not in sock_diag's table of this network namespace");
    // The old SOCK_PACKET interface has no SOL_PACKET options at all.
    const on = d.type === SOCK.PACKET ? [] : getsockoptInts(
      f.copy,
      UNKEPT.map(([, o]) => [SOL_PACKET, o] as const),
    );
    const set = UNKEPT.filter((_, i) => (on[i] ?? 0) !== 0).map(([name]) => name);
    if (set.length) throw refuse(`has ${set.join(", ")} on, which criu's image has no field for (it would be lost)`);
    if (bridge().pollNow(f.copy, POLL.IN) & POLL.IN) this.ctx.log.warn(`fd ${f.fd} of pid ${f.pid}: the frames queued for packet socket ${f.link} are dropped, as criu drops them`);
    const flags = d.flags ?? 0;
    const id = this.ctx.files.newId();
    const entry: PacketSkEntry = {
      id,
      type: d.type,
      // as socket() takes it: network byte order
      protocol: ((d.num & 0xff) << 8) | (d.num >> 8),
      flags: f.flags,
      ifindex: d.ifindex ?? 0,
      fown: f.fown(),
      opts: dumpSockOpts(f.copy, "packet", refuse),
      version: d.version ?? 0,
      reserve: d.reserve ?? 0,
      aux_data: (flags & PDI.AUXDATA) !== 0,
      orig_dev: (flags & PDI.ORIGDEV) !== 0,
      vnet_hdr: (flags & PDI.VNETHDR) !== 0,
      loss: (flags & PDI.LOSS) !== 0,
      timestamp: d.tstamp ?? 0,
      copy_thresh: d.copyThresh ?? 0,
      mclist: d.mclist.map((m) => ({ index: m.index, type: m.type, addr: new Uint8Array(m.addr) })),
      ...(d.fanout !== undefined ? { fanout: d.fanout } : {}),
      ...(d.rxRing ? { rx_ring: ringEntry(d.rxRing) } : {}),
      ...(d.txRing ? { tx_ring: ringEntry(d.txRing) } : {}),
      ns_id: NET_NS_ID,
    };
    this.ctx.files.add({ type: "PACKETSK", id, psk: entry });
    this.ctx.files.sockets.set(BigInt(f.st.ino), id);
    return { id, type: "PACKETSK" };
  }

  images(): ExtraImage[] {
    return [];
  }
}

/** A sockaddr_ll for bind: the interface only (protocol 0 keeps the socket's own). */
function sockaddrLl(ifindex: number): Buffer {
  const sa = Buffer.alloc(20);
  sa.writeUInt16LE(AF_PACKET, 0);
  sa.writeInt32LE(ifindex, 4);
  return sa;
}

/** A packet_mreq (or criu's packet_mreq_max, for an address longer than 8 bytes). */
function packetMreq(index: number, type: number, addr: Uint8Array): Buffer {
  const m = Buffer.alloc(addr.length > 8 ? 8 + MAX_ADDR : 16);
  m.writeInt32LE(index, 0);
  m.writeUInt16LE(type, 4);
  m.writeUInt16LE(addr.length, 6);
  m.set(addr, 8);
  return m;
}

/** A struct tpacket_req3 (the kernel takes it for every PACKET_VERSION). */
function tpacketReq3(r: PacketRing): Buffer {
  const b = Buffer.alloc(28);
  [r.block_size, r.block_nr, r.frame_size, r.frame_nr, r.retire_tmo, r.sizeof_priv, r.features].forEach((v, i) => b.writeUInt32LE(v >>> 0, 4 * i));
  return b;
}


class PacketRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  plan(e: FileEntry, what: string): Promise<FdSource> {
    const p = part(this.ctx, e.psk, "PACKETSK", what);
    const bad = (msg: string): Error => badEntry(this.ctx, what, `packet socket ${p.id} ${msg}`);
    if (p.type !== SOCK.RAW && p.type !== SOCK.DGRAM && p.type !== SOCK.PACKET) throw bad(`has the type ${p.type}; packet sockets are raw (3), datagram (2) or SOCK_PACKET (10)`);
    if (p.protocol > 0xffff) throw bad(`has the protocol 0x${p.protocol.toString(16)}, more than 16 bits`);
    if (p.version > MAX_VERSION) throw bad(`has PACKET_VERSION ${p.version}; TPACKET_V1..V3 are 0..${MAX_VERSION}`);
    for (const m of p.mclist ?? []) if (m.addr.length > MAX_ADDR) throw bad(`has a membership with a ${m.addr.length}-byte address, more than ${MAX_ADDR}`);
    for (const [name, r] of [["PACKET_RX_RING", p.rx_ring], ["PACKET_TX_RING", p.tx_ring]] as const) {
      if (r && r.block_size * r.block_nr > MAX_RING) throw bad(`has a ${name} of ${r.block_nr} blocks of ${r.block_size} bytes, more than ${MAX_RING} bytes`);
    }
    const filter = filterProblem(p.opts);
    if (filter) throw bad(filter);
    return Promise.resolve({
      describe: `packet socket ${p.id} (${typeName(p.type)}, protocol 0x${p.protocol.toString(16)}, ifindex ${p.ifindex})`,
      fown: p.fown,
      open: () => this.make(p, what),
    });
  }

  private make(p: PacketSkEntry, what: string): number {
    const b = bridge();
    const step = stepsOf(`packet socket ${p.id}`, what);
    const fd = this.made.add(
      step("socket", () => b.socket(AF_PACKET, p.type, p.protocol)),
      p.flags,
    );
    if (p.type === SOCK.PACKET) {
      // The old interface binds by name, and to nothing else.
      if (p.ifindex > 0) {
        const name = step("the interface's name", () => ifName(p.ifindex) ?? (() => { throw new Error(`no interface has the index ${p.ifindex}`); })());
        const sa = Buffer.alloc(16);
        sa.writeUInt16LE(AF_PACKET, 0);
        sa.write(name.slice(0, 13), 2, "latin1");
        step(`bind to ${name}`, () => b.bindAddr(fd, sa));
      }
      step("options", () => restoreSockOpts(fd, p.opts));
      return fd;
    }
    step("bind", () => b.bindAddr(fd, sockaddrLl(p.ifindex)));
    const set = (name: string, opt: number, value: Buffer): void => step(name, () => b.setsockopt(fd, SOL_PACKET, opt, value));
    set("PACKET_VERSION", PACKET_OPT.VERSION, int32(p.version));
    set("PACKET_RESERVE", PACKET_OPT.RESERVE, int32(p.reserve));
    set("PACKET_TIMESTAMP", PACKET_OPT.TIMESTAMP, int32(p.timestamp));
    set("PACKET_COPY_THRESH", PACKET_OPT.COPY_THRESH, int32(p.copy_thresh));
    if (p.aux_data) set("PACKET_AUXDATA", PACKET_OPT.AUXDATA, int32(1));
    if (p.orig_dev) set("PACKET_ORIGDEV", PACKET_OPT.ORIGDEV, int32(1));
    if (p.vnet_hdr) set("PACKET_VNET_HDR", PACKET_OPT.VNET_HDR, int32(1));
    if (p.loss) set("PACKET_LOSS", PACKET_OPT.LOSS, int32(1));
    for (const m of p.mclist ?? []) set(`PACKET_ADD_MEMBERSHIP (ifindex ${m.index}, type ${m.type})`, PACKET_OPT.ADD_MEMBERSHIP, packetMreq(m.index, m.type, m.addr));
    // The rings before the fanout group, as criu; the task maps them again (restore/memory.ts).
    if (p.rx_ring) set("PACKET_RX_RING", PACKET_OPT.RX_RING, tpacketReq3(p.rx_ring));
    if (p.tx_ring) set("PACKET_TX_RING", PACKET_OPT.TX_RING, tpacketReq3(p.tx_ring));
    if (p.fanout !== undefined) set(`PACKET_FANOUT 0x${p.fanout.toString(16)}`, PACKET_OPT.FANOUT, int32(p.fanout));
    step("options", () => restoreSockOpts(fd, p.opts));
    return fd;
  }

  inheritKeys(): string[] {
    // criu's entry has no inode number: nothing names it for --inherit-fd
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

export const packetKind: FdKind = {
  type: "PACKETSK",
  describe: "packet sockets: type, protocol, interface, PACKET_* options, memberships and fanout group",
  dumper: (ctx) => new PacketDumper(ctx),
  restorer: (ctx) => new PacketRestorer(ctx),
};
