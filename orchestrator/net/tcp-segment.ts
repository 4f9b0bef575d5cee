// A TCP segment that the peer of a restored connection would have sent, injected through
// a raw socket. A half-closed connection cannot be rebuilt from inside: repair mode puts
// data in the receive queue, but not the peer's FIN, and it can mark our own FIN sent,
// but not acknowledged. Both are made by the segment the peer once sent (FIN, or the
// ACK of our FIN), addressed from the peer to the restored socket, which the kernel then
// processes like any other. It carries criu's packet mark, so that the network lock of
// the dump (which drops everything else of the connection until the restore is done)
// lets it through.

import { AF_INET, AF_INET6, IPPROTO, SOCK, SOL_SOCKET, SO } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { SOCCR_MARK } from "./lock.js";

export const TH = { FIN: 0x01, ACK: 0x10 } as const;

interface Endpoint {
  family: number;
  /** 4 bytes (IPv4, also an IPv4-mapped IPv6 address) or 16 */
  addr: Buffer;
  port: number;
  scopeId: number;
}

/** A sockaddr_in or sockaddr_in6 as bytes; an IPv4-mapped IPv6 address as the IPv4 one it is (criu sends those as IPv4 too). */
function endpoint(sa: Buffer): Endpoint {
  const family = sa.readUInt16LE(0);
  const port = sa.readUInt16BE(2);
  if (family === AF_INET) return { family, addr: Buffer.from(sa.subarray(4, 8)), port, scopeId: 0 };
  if (family !== AF_INET6) throw new Error(`address family ${family} is neither AF_INET nor AF_INET6`);
  const a = sa.subarray(8, 24);
  const mapped = a.subarray(0, 10).every((x) => x === 0) && a[10] === 0xff && a[11] === 0xff;
  if (mapped) return { family: AF_INET, addr: Buffer.from(a.subarray(12, 16)), port, scopeId: 0 };
  return { family, addr: Buffer.from(a), port, scopeId: sa.length >= 28 ? sa.readUInt32LE(24) : 0 };
}

/** The Internet checksum (RFC 1071) of the concatenation of `parts`, each of even length but the last. */
function checksum(parts: Buffer[]): number {
  let sum = 0;
  for (const p of parts) {
    for (let i = 0; i + 1 < p.length; i += 2) sum += p.readUInt16BE(i);
    if (p.length & 1) sum += p[p.length - 1]! << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface Segment {
  seq: number;
  ack: number;
  flags: number;
  /** the window field as sent (already scaled down) */
  window: number;
}

/** The IP packet of `seg` from `from` to `to`. */
function packet(from: Endpoint, to: Endpoint, seg: Segment): Buffer {
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(from.port, 0);
  tcp.writeUInt16BE(to.port, 2);
  tcp.writeUInt32BE(seg.seq >>> 0, 4);
  tcp.writeUInt32BE(seg.ack >>> 0, 8);
  tcp[12] = 5 << 4;
  tcp[13] = seg.flags;
  tcp.writeUInt16BE(Math.min(seg.window, 0xffff), 14);
  const pseudo =
    from.family === AF_INET
      ? Buffer.concat([from.addr, to.addr, Buffer.from([0, IPPROTO.TCP, 0, tcp.length])])
      : Buffer.concat([from.addr, to.addr, Buffer.from([0, 0, 0, tcp.length, 0, 0, 0, IPPROTO.TCP])]);
  tcp.writeUInt16BE(checksum([pseudo, tcp]), 16);
  if (from.family === AF_INET) {
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(ip.length + tcp.length, 2);
    ip[8] = 64;
    ip[9] = IPPROTO.TCP;
    from.addr.copy(ip, 12);
    to.addr.copy(ip, 16);
    ip.writeUInt16BE(checksum([ip]), 10);
    return Buffer.concat([ip, tcp]);
  }
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(tcp.length, 4);
  ip[6] = IPPROTO.TCP;
  ip[7] = 64;
  from.addr.copy(ip, 8);
  to.addr.copy(ip, 24);
  return Buffer.concat([ip, tcp]);
}

/** The sockaddr a raw socket is connected to: the destination's address, port 0 (a raw socket has none). */
function rawDestination(to: Endpoint): Buffer {
  if (to.family === AF_INET) {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    to.addr.copy(sa, 4);
    return sa;
  }
  const sa = Buffer.alloc(28);
  sa.writeUInt16LE(AF_INET6, 0);
  to.addr.copy(sa, 8);
  sa.writeUInt32LE(to.scopeId, 24);
  return sa;
}

/**
 * Sends `seg` from `peer` (the connection's remote sockaddr) to `local` (the restored
 * socket's own), through a raw socket with criu's mark.
 */
export function injectSegment(local: Buffer, peer: Buffer, seg: Segment): void {
  const to = endpoint(local);
  const from = endpoint(peer);
  if (from.family !== to.family) throw new Error(`the connection joins an ${from.family === AF_INET ? "IPv4" : "IPv6"} and an ${to.family === AF_INET ? "IPv4" : "IPv6"} address`);
  const b = bridge();
  // IPPROTO_RAW: the packet carries its own IP header (IP_HDRINCL, implied for both families).
  const fd = b.socket(to.family, SOCK.RAW, IPPROTO.RAW);
  try {
    const mark = Buffer.alloc(4);
    mark.writeUInt32LE(SOCCR_MARK, 0);
    b.setsockopt(fd, SOL_SOCKET, SO.MARK, mark);
    b.connectAddr(fd, rawDestination(to));
    const p = packet(from, to, seg);
    const n = b.send(fd, p);
    if (n !== p.length) throw new Error(`the raw socket took ${n} of the segment's ${p.length} bytes`);
  } finally {
    b.close(fd);
  }
}
