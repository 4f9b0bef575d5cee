// Netlink sockets (NETLINK_SK entries in files.img, criu's sk-netlink.c): the protocol,
// the port id the socket is bound to, the multicast groups it listens to, the peer it is
// connected to, and its socket options.
//
// Read from tscriu's copy of the socket: getsockname gives the port id, getpeername the
// peer, NETLINK_LIST_MEMBERSHIPS every group (criu's sock_diag view stops at 32: a socket
// in a group past 32 is kept here, and written as criu's repeated word list, which criu
// refuses by name at restore). A socket connected to the kernel (port 0, no group) cannot
// be told from one never connected, and needs not be: both send to the kernel. As criu,
// a socket with messages queued to read is refused (they cannot be put back), and so is
// one with a netlink option criu's entry has no field for (NETLINK_EXT_ACK, …), rather
// than lose it. On restore the port id is asked for again; when another socket holds it
// now, the kernel picks one, with a warning (criu's rule: programs rarely care).

import { AF_NETLINK, NETLINK_OPT, POLL, SO, SOCK, SOL_NETLINK, SOL_SOCKET } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { netlink_sk_entry } from "../../images/schema/index.js";
import { NET_NS_ID } from "../dump/write.js";
import { badEntry, MadeFds, part, stepsOf } from "./anon.js";
import type { DumpContext, ExtraImage, FdDumper, FdFacts, FdKind, FdRestorer, FdSource, PlanContext } from "./kind.js";
import { UnsupportedFd } from "./kind.js";
import { dumpSockOpts, filterProblem, getsockoptInts, restoreSockOpts } from "./sockopts.js";

type NetlinkSkEntry = Entry<typeof netlink_sk_entry>;

/** sock_diag's state of a netlink socket is its sk_state: TCP_ESTABLISHED once connected, TCP_CLOSE (7) else, as criu writes it. */
const NETLINK_CONNECTED = 1;
const NETLINK_UNCONNECTED = 7;
/** The kernel's MAX_LINKS: netlink protocols are 0..31. */
const MAX_PROTOCOL = 31;
/** Group words kept at most (1024 groups; the kernel's largest family has a few dozen). */
const MAX_GROUP_WORDS = 32;

/** The options whose state criu's entry cannot hold: a socket with one on is refused. */
const UNKEPT = [
  ["NETLINK_PKTINFO", NETLINK_OPT.PKTINFO],
  ["NETLINK_BROADCAST_ERROR", NETLINK_OPT.BROADCAST_ERROR],
  ["NETLINK_NO_ENOBUFS", NETLINK_OPT.NO_ENOBUFS],
  ["NETLINK_LISTEN_ALL_NSID", NETLINK_OPT.LISTEN_ALL_NSID],
  ["NETLINK_CAP_ACK", NETLINK_OPT.CAP_ACK],
  ["NETLINK_EXT_ACK", NETLINK_OPT.EXT_ACK],
  ["NETLINK_GET_STRICT_CHK", NETLINK_OPT.GET_STRICT_CHK],
] as const;

/** A sockaddr_nl: family, port id, groups mask. */
function sockaddrNl(portid: number, groups: number): Buffer {
  const sa = Buffer.alloc(12);
  sa.writeUInt16LE(AF_NETLINK, 0);
  sa.writeUInt32LE(portid >>> 0, 4);
  sa.writeUInt32LE(groups >>> 0, 8);
  return sa;
}

class NetlinkDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return f.domain() === AF_NETLINK;
  }

  dump(f: FdFacts): { id: number; type: string } {
    const b = bridge();
    const refuse = (why: string): UnsupportedFd => new UnsupportedFd(`unsupported fd ${f.fd}: netlink socket ${f.link} ${why}`);
    const [protocol = 0, ...flags] = getsockoptInts(f.copy, [[SOL_SOCKET, SO.PROTOCOL], ...UNKEPT.map(([, o]) => [SOL_NETLINK, o] as const)]);
    const on = UNKEPT.filter((_, i) => flags[i] !== 0).map(([name]) => name);
    if (on.length) throw refuse(`has ${on.join(", ")} on, which criu's image has no field for (it would be lost)`);
    if (b.pollNow(f.copy, POLL.IN) & POLL.IN) throw refuse("has messages queued to read, which cannot be put back (criu refuses it too)");
    const name = b.sockName(f.copy);
    const portid = name.readUInt32LE(4);
    const peer = b.peerName(f.copy);
    const dstPortid = peer ? peer.readUInt32LE(4) : 0;
    const dstMask = peer ? peer.readUInt32LE(8) : 0;
    if (dstMask & (dstMask - 1)) throw refuse(`is connected to the group mask 0x${dstMask.toString(16)}, which is no single group`);
    const dstGroup = dstMask ? 31 - Math.clz32(dstMask) + 1 : 0;
    const words = b.getsockopt(f.copy, SOL_NETLINK, NETLINK_OPT.LIST_MEMBERSHIPS, 4 * MAX_GROUP_WORDS);
    const groups: number[] = [];
    for (let i = 0; i + 4 <= words.length; i += 4) groups.push(words.readUInt32LE(i));
    while (groups.length && groups[groups.length - 1] === 0) groups.pop();
    const id = this.ctx.files.newId();
    // A socket never bound is in no table of sock_diag's: criu writes it with state 0 and
    // no namespace, as here.
    const listed = portid !== 0;
    const entry: NetlinkSkEntry = {
      id,
      ino: Number(f.st.ino),
      protocol,
      state: !listed ? 0 : dstPortid !== 0 || dstGroup !== 0 ? NETLINK_CONNECTED : NETLINK_UNCONNECTED,
      flags: f.flags,
      portid,
      groups,
      dst_portid: dstPortid,
      dst_group: dstGroup,
      fown: f.fown(),
      opts: dumpSockOpts(f.copy, "netlink", refuse),
      ...(listed ? { ns_id: NET_NS_ID } : {}),
    };
    this.ctx.files.add({ type: "NETLINKSK", id, nlsk: entry });
    return { id, type: "NETLINKSK" };
  }

  images(): ExtraImage[] {
    return [];
  }
}

class NetlinkRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  plan(e: FileEntry, what: string): Promise<FdSource> {
    const nl = part(this.ctx, e.nlsk, "NETLINKSK", what);
    const bad = (msg: string): Error => badEntry(this.ctx, what, `netlink socket ${nl.ino} ${msg}`);
    if (nl.protocol > MAX_PROTOCOL) throw bad(`has the protocol ${nl.protocol}; netlink protocols are 0..${MAX_PROTOCOL}`);
    // 0 too: an image of another writer may put netlink's own NETLINK_UNCONNECTED there.
    if (nl.state !== NETLINK_UNCONNECTED && nl.state !== 0 && nl.state !== NETLINK_CONNECTED) throw bad(`is in the state ${nl.state}, neither unconnected (7) nor connected (1)`);
    const groups = nl.groups ?? [];
    if (groups.length > MAX_GROUP_WORDS) throw bad(`lists ${groups.length} words of groups, more than the ${MAX_GROUP_WORDS * 32} groups tscriu takes`);
    if (nl.dst_group > 32) throw bad(`is connected to the group ${nl.dst_group}; a connection names a group up to 32`);
    const filter = filterProblem(nl.opts);
    if (filter) throw bad(filter);
    return Promise.resolve({
      describe: `netlink socket ${nl.ino} (protocol ${nl.protocol}, port ${nl.portid})`,
      fown: nl.fown,
      open: () => this.make(nl, what),
    });
  }

  private make(nl: NetlinkSkEntry, what: string): number {
    const b = bridge();
    const step = stepsOf(`netlink socket ${nl.ino}`, what);
    const fd = this.made.add(
      step("socket", () => b.socket(AF_NETLINK, SOCK.RAW, nl.protocol)),
      nl.flags,
    );
    const groups = nl.groups ?? [];
    if (nl.portid !== 0 || groups.length) {
      step("bind", () => {
        try {
          b.bindAddr(fd, sockaddrNl(nl.portid, groups[0] ?? 0));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
          b.bindAddr(fd, sockaddrNl(0, groups[0] ?? 0));
          this.ctx.log.warn(`${what}: netlink port ${nl.portid} is taken; netlink socket ${nl.ino} has port ${b.sockName(fd).readUInt32LE(4)} now`);
        }
      });
    }
    // Groups past 32 are joined one by one (a bind's mask has 32 bits).
    groups.slice(1).forEach((word, w) => {
      for (let bit = 0; bit < 32; bit++) {
        if (!(word & (1 << bit))) continue;
        const group = Buffer.alloc(4);
        group.writeUInt32LE(32 * (w + 1) + bit + 1, 0);
        step(`NETLINK_ADD_MEMBERSHIP(${32 * (w + 1) + bit + 1})`, () => b.setsockopt(fd, SOL_NETLINK, NETLINK_OPT.ADD_MEMBERSHIP, group));
      }
    });
    if (nl.state === NETLINK_CONNECTED) {
      step("connect", () => b.connectAddr(fd, sockaddrNl(nl.dst_portid, nl.dst_group ? 1 << (nl.dst_group - 1) : 0)));
    }
    step("options", () => restoreSockOpts(fd, nl.opts));
    return fd;
  }

  inheritKeys(e: FileEntry): string[] {
    return e.nlsk ? [`socket:[${e.nlsk.ino}]`] : [];
  }

  close(): void {
    this.made.closeAll();
  }
}

export const netlinkKind: FdKind = {
  type: "NETLINKSK",
  describe: "netlink sockets: protocol, port id, multicast groups (past 32 too), peer and options",
  dumper: (ctx) => new NetlinkDumper(ctx),
  restorer: (ctx) => new NetlinkRestorer(ctx),
};
