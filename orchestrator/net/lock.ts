// The network lock (criu's --network-lock): from the moment a TCP connection is put in
// repair mode at dump until its restore takes it out again, no packet of it may reach
// the host's TCP stack or leave it -- a packet of the peer's meeting no socket (the task
// is gone) would be answered with a reset, and the peer would drop the connection.
//
// nftables, as criu does it (its table, chains, sets and rules, so that either tool's
// restore unlocks the other's dump): a table "inet CRIU-<dump_criu_run_id>" with input
// and output chains that accept criu's packet mark and drop every packet of the locked
// connections, kept in one set per family (address . port . address . port, both
// directions). The run id is the dump's (inventory.img), so the restore finds the table.
// A dump that kills the tree (with nftables) locks its TCP listeners too, for the freeze:
// every packet to a listener's port is dropped (its address too, where it is bound to
// one), from before the dump counts the connections waiting to be accepted until the tree
// is killed. A handshake that would end during the freeze, in the accept queue of a
// listener about to be closed with its task (which resets it then: its client thought it
// connected), is retried by its client instead, and finds the restored listener or none
// (refused, as by any server that is down). They are unlocked once the tree is gone: a
// port locked until a restore that happens on another host would stay dead here. criu
// locks connections only. The table's layout is criu's and these sets besides: either
// tool's restore removes the whole table.
// skip: no lock (the connections must be quiet, or their peers reset them). iptables,
// criu's default, needs iptables-restore; where it is missing the dump refuses and says
// which method works. The method goes into inventory.img as criu numbers it.

import { existsSync } from "node:fs";
import { AF_INET } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { ModuleLog } from "../log.js";

export type LockMethod = "iptables" | "nftables" | "skip";

/** criu's NETWORK_LOCK_METHOD numbers, as inventory.img keeps them. */
export const LOCK_METHOD_ID: Record<LockMethod, number> = { iptables: 0, nftables: 1, skip: 2 };

/** criu's SOCCR_MARK: packets tscriu or criu send themselves while locked pass. */
export const SOCCR_MARK = 0xc114;

export function lockMethodOf(id: number | undefined): LockMethod | undefined {
  return (Object.keys(LOCK_METHOD_ID) as LockMethod[]).find((m) => LOCK_METHOD_ID[m] === (id ?? 0));
}

/** --network-lock's value: criu's default when not given. */
export function parseLockMethod(v: string | undefined): LockMethod {
  if (v === undefined || v === "") return "iptables";
  if (v === "iptables" || v === "nftables" || v === "skip") return v;
  throw new Error(`--network-lock ${v}: the method is one of iptables, nftables, skip`);
}

function whereIs(tool: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) if (dir && existsSync(`${dir}/${tool}`)) return `${dir}/${tool}`;
  return undefined;
}

/** One connection, as the lock names it: the local end first. */
export interface LockedConn {
  family: number;
  /** address bytes (4 or 16) */
  src: Buffer;
  sport: number;
  dst: Buffer;
  dport: number;
}

/** A listening TCP socket, as the lock names it: its address (all zeros: any) and port. */
export interface LockedListener {
  family: number;
  /** address bytes (4 or 16) */
  addr: Buffer;
  port: number;
}

function ipText(family: number, b: Buffer): string {
  if (family === AF_INET) return [...b.subarray(0, 4)].join(".");
  return Array.from({ length: 8 }, (_, i) => b.readUInt16BE(2 * i).toString(16)).join(":");
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d): its packets are IPv4 ones. */
function mapped(b: Buffer): boolean {
  return b.length === 16 && b.readUInt32BE(0) === 0 && b.readUInt32BE(4) === 0 && b.readUInt32BE(8) === 0xffff;
}

export class NetworkLock {
  private tableMade = false;
  /** listeners locked by this run, until unlockListeners */
  private listenersLocked = 0;
  /** connections locked by this run (criu unlocks them all at once by deleting its table) */
  readonly locked: LockedConn[] = [];

  constructor(
    readonly method: LockMethod,
    /** the dump's dump_criu_run_id */
    readonly runId: string,
    private readonly log?: ModuleLog,
  ) {}

  /** criu writes the name into 32 bytes: "inet CRIU-" and the run id's first 21 characters. */
  get table(): string {
    return `inet CRIU-${this.runId}`.slice(0, 31);
  }

  /**
   * Whether this method can lock here, before anything is touched: the error a dump with
   * connections gives when it cannot.
   */
  check(): void {
    if (this.method === "iptables") {
      if (!whereIs("iptables-restore")) {
        throw new Error("the network lock by iptables (criu's default) needs iptables-restore, which this machine does not have: lock with --network-lock nftables, or --network-lock skip for connections whose peers stay quiet");
      }
      throw new Error("the network lock by iptables is not supported by tscriu yet: lock with --network-lock nftables");
    }
  }

  /** Locks one connection (both directions); the first one makes the table. */
  lock(c: LockedConn): void {
    this.lockAll([c]);
  }

  /**
   * Locks connections (both directions each) and listeners (what comes in to each) in one
   * nftables transaction; the first call makes the table.
   */
  lockAll(conns: readonly LockedConn[], listeners: readonly LockedListener[] = []): void {
    if (this.method === "skip" || conns.length + listeners.length === 0) return;
    this.check();
    const nft = bridge();
    if (!this.tableMade) {
      const t = this.table;
      nft.nftRun(
        [
          `create table ${t}`,
          `add chain ${t} output { type filter hook output priority 0; }`,
          `add rule ${t} output meta mark ${SOCCR_MARK} accept`,
          `add chain ${t} input { type filter hook input priority 0; }`,
          `add rule ${t} input meta mark ${SOCCR_MARK} accept`,
          `add set ${t} conns4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }`,
          `add rule ${t} output ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop`,
          `add rule ${t} input ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop`,
          `add set ${t} conns6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; }`,
          `add rule ${t} output ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop`,
          `add rule ${t} input ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop`,
          `add set ${t} lports { type inet_service; }`,
          `add rule ${t} input tcp dport @lports drop`,
          `add set ${t} listen4 { type ipv4_addr . inet_service; }`,
          `add rule ${t} input ip daddr . tcp dport @listen4 drop`,
          `add set ${t} listen6 { type ipv6_addr . inet_service; }`,
          `add rule ${t} input ip6 daddr . tcp dport @listen6 drop`,
        ].join("\n"),
      );
      this.tableMade = true;
      this.log?.info(`network locked with nftables (table ${t})`);
    }
    const elements: Record<string, string[]> = { conns4: [], conns6: [], lports: [], listen4: [], listen6: [] };
    for (const c of conns) {
      let { family, src, dst } = c;
      if (family !== AF_INET && mapped(dst)) {
        family = AF_INET;
        src = src.subarray(12);
        dst = dst.subarray(12);
      }
      const [s, d] = [ipText(family, src), ipText(family, dst)];
      elements[family === AF_INET ? "conns4" : "conns6"]!.push(`${d} . ${c.dport} . ${s} . ${c.sport}`, `${s} . ${c.sport} . ${d} . ${c.dport}`);
    }
    for (const l of listeners) {
      let { family, addr } = l;
      if (family !== AF_INET && mapped(addr)) {
        family = AF_INET;
        addr = addr.subarray(12);
      }
      // bound to any address (an IPv6 one takes IPv4 too, unless IPV6_V6ONLY: locked all the same)
      if (addr.every((x) => x === 0)) elements["lports"]!.push(String(l.port));
      else elements[family === AF_INET ? "listen4" : "listen6"]!.push(`${ipText(family, addr)} . ${l.port}`);
    }
    nft.nftRun(
      Object.entries(elements)
        .filter(([, list]) => list.length > 0)
        .map(([set, list]) => `add element ${this.table} ${set} { ${list.join(", ")} }`)
        .join("\n"),
    );
    this.locked.push(...conns);
    this.listenersLocked += listeners.length;
    if (listeners.length) this.log?.info(`${listeners.length} TCP listener${listeners.length === 1 ? "" : "s"} locked: ${listeners.map((l) => `${ipText(l.family, l.addr)}:${l.port}`).join(", ")}`);
  }

  /** Removes the listeners' part of the lock (their tree gone), the connections' kept for the restore. */
  unlockListeners(): void {
    if (!this.tableMade || this.listenersLocked === 0) return;
    const t = this.table;
    bridge().nftRun([`flush set ${t} lports`, `flush set ${t} listen4`, `flush set ${t} listen6`].join("\n"));
    this.log?.info(`${this.listenersLocked} TCP listener${this.listenersLocked === 1 ? "" : "s"} unlocked (the tree is gone)`);
    this.listenersLocked = 0;
  }

  /** Removes the lock of this run (criu's network_unlock); a lock already gone is no error. */
  unlock(): void {
    if (this.method !== "nftables") return;
    try {
      bridge().nftRun(`delete table ${this.table}`);
      this.log?.info(`network unlocked (table ${this.table} removed)`);
    } catch (e) {
      if (!/No such file or directory/.test((e as Error).message)) throw e;
    }
    this.tableMade = false;
    this.listenersLocked = 0;
  }
}
