// The kernel's table of TCP, UDP and UDP-Lite sockets as sock_diag reports it (bridge
// inetDiag): one Buffer of fixed-size records, read here. A socket's record is made into
// an object only when the dump asks for that socket: a server's table lists its clients'
// ends too, thousands of sockets the dump never looks at.

import { bridge } from "../../host-bridge/load.js";

/** One socket as sock_diag reports it. */
export interface InetDiag {
  ino: number;
  /** TCP's state numbers (a UDP socket: ESTABLISHED when connected, else CLOSE) */
  state: number;
  /** ports in host order */
  sport: number;
  dport: number;
  /** the kernel's 16 address bytes (an IPv4 address in the first four) */
  src: Buffer;
  dst: Buffer;
  /** a listener: connections waiting to be accepted; a connection: bytes not yet read */
  rqlen: number;
  /** a listener: its backlog; a connection: bytes not yet acknowledged */
  wqlen: number;
  /** RCV_SHUTDOWN = 1 | SEND_SHUTDOWN = 2; -1 when the kernel does not say */
  shutdown: number;
}

/** The size of a record (host-bridge/src/inet.c lays it out). */
const RECORD = 52;

/** sock_diag's records of some sockets, by inode. */
export class DiagTable {
  /** each socket's record, by inode */
  private readonly at = new Map<number, number>();

  constructor(private readonly raw: Buffer) {
    for (let off = 0; off + RECORD <= raw.length; off += RECORD) this.at.set(raw.readUInt32LE(off), off);
  }

  /** The sockets of one family and protocol whose states are in the mask `states`. */
  static read(family: number, proto: number, states: number): DiagTable {
    return new DiagTable(bridge().inetDiag(family, proto, states));
  }

  /** The socket of inode `ino`, if the table lists it. */
  get(ino: number): InetDiag | undefined {
    const off = this.at.get(ino);
    return off === undefined ? undefined : this.record(off);
  }

  /** The state of the socket of inode `ino`, if the table lists it (no record made). */
  state(ino: number): number | undefined {
    const off = this.at.get(ino);
    return off === undefined ? undefined : this.raw[off + 4];
  }

  /** Every socket the table lists. */
  *values(): IterableIterator<InetDiag> {
    for (const off of this.at.values()) yield this.record(off);
  }

  private record(off: number): InetDiag {
    const r = this.raw;
    return {
      ino: r.readUInt32LE(off),
      state: r[off + 4]!,
      shutdown: r.readInt8(off + 5),
      sport: r.readUInt16LE(off + 8),
      dport: r.readUInt16LE(off + 10),
      rqlen: r.readUInt32LE(off + 12),
      wqlen: r.readUInt32LE(off + 16),
      // copies: the dump keeps them (images, the network lock) past the table
      src: Buffer.from(r.subarray(off + 20, off + 36)),
      dst: Buffer.from(r.subarray(off + 36, off + 52)),
    };
  }
}
