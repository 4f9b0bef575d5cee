// What inet-dump.ts and inet-restore.ts share: criu's layout of an address in an INETSK
// entry (the address's bytes in network order, four to a uint32 as the machine reads them:
// one word for IPv4, four for IPv6; ports in host order), sockaddrs, names for messages.

import { AF_INET, AF_INET6, IPPROTO, SOCK, TCP_STATE } from "../../host-bridge/constants.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { inet_sk_entry } from "../../images/schema/index.js";

export type InetSkEntry = Entry<typeof inet_sk_entry>;

/** The address words of an entry: criu's PB_ALEN_INET and PB_ALEN_INET6. */
export const ADDR_WORDS: Record<number, number> = { [AF_INET]: 1, [AF_INET6]: 4 };

/** An address's bytes (4 or 16) as the entry's uint32 words. */
export function addrWords(bytes: Buffer, family: number): number[] {
  const n = ADDR_WORDS[family]!;
  return Array.from({ length: n }, (_, i) => bytes.readUInt32LE(4 * i));
}

/** The entry's words back into the address's bytes. */
export function addrBytes(words: readonly number[]): Buffer {
  const b = Buffer.alloc(4 * words.length);
  words.forEach((w, i) => b.writeUInt32LE(w >>> 0, 4 * i));
  return b;
}

/**
 * A numeric address ("10.0.0.1", "::1", "::ffff:10.0.0.1") as the words of criu's inet
 * entries (what sockaddr() takes), or undefined when it is not one.
 */
export function addrWordsOf(text: string): number[] | undefined {
  const v4 = (s: string): number[] | undefined => {
    const parts = s.split(".");
    if (parts.length !== 4 || !parts.every((x) => /^\d{1,3}$/.test(x) && Number(x) < 256)) return undefined;
    return parts.map(Number);
  };
  const four = v4(text);
  if (four) return [Buffer.from(four).readUInt32LE(0)];
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string | undefined): number[] | undefined => {
    if (!s) return [];
    const out: number[] = [];
    const items = s.split(":");
    for (const [i, g] of items.entries()) {
      const tail = i === items.length - 1 ? v4(g) : undefined;
      if (tail) out.push((tail[0]! << 8) | tail[1]!, (tail[2]! << 8) | tail[3]!);
      else if (/^[0-9a-fA-F]{1,4}$/.test(g)) out.push(Number.parseInt(g, 16));
      else return undefined;
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  if (!head || !tail) return undefined;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return undefined;
  const all = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  const bytes = Buffer.alloc(16);
  all.forEach((g, i) => bytes.writeUInt16BE(g, 2 * i));
  return [0, 4, 8, 12].map((o) => bytes.readUInt32LE(o));
}

/** A sockaddr_in or sockaddr_in6 as bind and connect take it. */
export function sockaddr(family: number, port: number, words: readonly number[], scopeId = 0): Buffer {
  const b = Buffer.alloc(sockaddrSize(family));
  writeSockaddr(b, 0, family, port, words, scopeId);
  return b;
}

/** The bytes of a family's sockaddr (sockaddr_in, sockaddr_in6). */
export function sockaddrSize(family: number): number {
  return family === AF_INET ? 16 : 28;
}

/** sockaddr() written into `b` at `at` (its sockaddrSize bytes, zeroed here). */
export function writeSockaddr(b: Buffer, at: number, family: number, port: number, words: readonly number[], scopeId = 0): void {
  b.fill(0, at, at + sockaddrSize(family));
  b.writeUInt16LE(family === AF_INET ? AF_INET : AF_INET6, at);
  b.writeUInt16BE(port, at + 2);
  if (family === AF_INET) {
    b.writeUInt32LE((words[0] ?? 0) >>> 0, at + 4);
    return;
  }
  for (let i = 0; i < 4; i++) b.writeUInt32LE((words[i] ?? 0) >>> 0, at + 8 + 4 * i);
  b.writeUInt32LE(scopeId, at + 24);
}

/** A sockaddr's family, port and address bytes (getsockname, getpeername). */
export function parseSockaddr(b: Buffer): { family: number; port: number; addr: Buffer } {
  const family = b.readUInt16LE(0);
  if (family === AF_INET && b.length >= 8) return { family, port: b.readUInt16BE(2), addr: Buffer.concat([b.subarray(4, 8), Buffer.alloc(12)]) };
  if (family === AF_INET6 && b.length >= 24) return { family, port: b.readUInt16BE(2), addr: Buffer.from(b.subarray(8, 24)) };
  throw new Error(`a socket address of family ${family} (${b.length} bytes) where an IPv4 or IPv6 one was expected`);
}

/** "127.0.0.1:8080", "[::1]:8080" for messages. */
export function showAddr(family: number, words: readonly number[], port: number): string {
  if (family === AF_INET) {
    // the word holds the address's bytes in memory order (little-endian here)
    const w = (words[0] ?? 0) >>> 0;
    return `${w & 0xff}.${(w >>> 8) & 0xff}.${(w >>> 16) & 0xff}.${w >>> 24}:${port}`;
  }
  const b = addrBytes(words);
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(2 * i).toString(16));
  // The longest run of zero groups becomes "::", as inet_ntop writes it.
  let best = [-1, 0];
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > best[1]! && j - i > 1) best = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const text = best[0]! < 0 ? groups.join(":") : `${groups.slice(0, best[0]).join(":")}::${groups.slice(best[0]! + best[1]!).join(":")}`;
  return `[${text}]:${port}`;
}

export const PROTO_NAME: Record<number, string> = { [IPPROTO.TCP]: "TCP", [IPPROTO.UDP]: "UDP", [IPPROTO.UDPLITE]: "UDP-Lite", [IPPROTO.ICMP]: "ICMP", [IPPROTO.ICMPV6]: "ICMPv6" };

/** TCP states that are a connection (criu's list of states it dumps with --tcp-established). */
export const CONNECTED_STATES: ReadonlySet<number> = new Set([
  TCP_STATE.ESTABLISHED,
  TCP_STATE.FIN_WAIT2,
  TCP_STATE.FIN_WAIT1,
  TCP_STATE.CLOSE_WAIT,
  TCP_STATE.LAST_ACK,
  TCP_STATE.CLOSING,
  TCP_STATE.SYN_SENT,
]);

export const STATE_NAME: Record<number, string> = Object.fromEntries(Object.entries(TCP_STATE).map(([k, v]) => [v, k]));

export function typeName(type: number): string {
  return type === SOCK.STREAM ? "stream" : type === SOCK.DGRAM ? "datagram" : type === SOCK.RAW ? "raw" : `type ${type}`;
}
