// Unix sockets connected to a socket outside the dumped tree (criu's external unix
// sockets). criu's two ways to allow one, both at dump:
// - `--ext-unix-sk` (its legacy option): a datagram socket connected to a named socket
//   outside, e.g. syslog's /dev/log; the restore (given --ext-unix-sk too) connects a new
//   socket to that name again;
// - `--external unix[INO]` (or `--ext-unix-sk=INO,...`, the RPC's unix_sk_ino): the
//   socket of inode INO, of any type, named or not, is dumped as it is, and the restore
//   takes it from `--inherit-fd fd[N]:socket:[INO]` (a stream connection cannot be
//   connected again from this side alone).
// Either way the peer gets an entry of its own in files.img, criu's stand-in for a socket
// outside: USK_EXTERN, datagram, listening, its name, no fd holds it.

import { SK_STATE, SOCK } from "../../host-bridge/constants.js";
import type { UnixDiag } from "../../host-bridge/native.js";
import type { FileTable } from "../dump/filetable.js";
import { UnsupportedFd } from "./kind.js";

/** A unix socket name for messages: a path as it is, an abstract one with criu's "@". */
export function showUnixName(name: Uint8Array): string {
  const b = Buffer.from(name);
  if (b.length === 0) return "";
  if (b[0] === 0) return `@${b.toString("latin1", 1).replace(/\0/g, "@")}`;
  return b.toString("utf8").replace(/\0$/, "");
}

/** criu's unix_sk_entry.uflags bit of the stand-in for a socket outside the dump. */
export const USK_EXTERN = 1;

/** What the dump was told about unix sockets with a peer outside. */
export interface ExternalUnix {
  /** --ext-unix-sk given (with or without inodes) */
  extUnixSk: boolean;
  /** sockets named by inode: --external unix[INO], --ext-unix-sk=INO,... */
  inodes: ReadonlySet<number>;
}

export const NO_EXTERNAL_UNIX: ExternalUnix = { extUnixSk: false, inodes: new Set() };

/** An inode as criu's options write it: decimal, below 2^32. */
function inode(text: string, what: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 0xffff_ffff) throw new Error(`${what}: ${JSON.stringify(text)} is not a socket inode`);
  return Number(text);
}

/**
 * The dump's --ext-unix-sk value ("" when given bare, "INO,INO" with inodes; undefined when
 * not given) and its --external list; an external resource of another type is refused by
 * name, as tscriu does not do it.
 */
export function parseExternalUnix(extUnixSk: string | boolean | undefined, external: readonly string[] = [], inodes: readonly number[] = []): ExternalUnix {
  const out = new Set(inodes);
  if (typeof extUnixSk === "string") for (const part of extUnixSk.split(",").filter((p) => p !== "")) out.add(inode(part, "--ext-unix-sk"));
  for (const e of external) {
    const m = /^unix\[(.*)\]$/.exec(e);
    if (!m) throw new Error(`--external ${e}: tscriu takes only unix[INODE] (a unix socket whose peer is outside the tree); ${/^(\w+)\[/.exec(e)?.[1] ?? "this"} resources are not supported yet`);
    out.add(inode(m[1]!, `--external ${e}`));
  }
  return { extUnixSk: extUnixSk !== undefined && extUnixSk !== false, inodes: out };
}

/** A unix socket type for messages. */
export function unixTypeName(t: number): string {
  return t === SOCK.STREAM ? "stream" : t === SOCK.DGRAM ? "datagram" : t === SOCK.SEQPACKET ? "seqpacket" : `type ${t}`;
}

/** The outside peers met so far, for their stand-in entries. */
export class OutsidePeers {
  private readonly peers = new Map<number, Uint8Array>();

  constructor(private readonly allow: ExternalUnix) {}

  /**
   * Socket `ino` (sock_diag's `d`) of fd `fd` is connected to `peer`, which no task of
   * the tree holds (`p`: the peer as sock_diag shows it, when it is in tscriu's network
   * namespace). Returns normally when the options allow it, else refuses with criu's
   * reasons.
   */
  admit(fd: number, ino: number, d: UnixDiag, peer: number, p: UnixDiag | undefined): void {
    const sock = `unsupported fd ${fd}: unix ${unixTypeName(d.type)} socket ${ino} is connected to socket ${peer} outside the dumped tree`;
    if (!this.allow.inodes.has(ino)) {
      if (!this.allow.extUnixSk) throw new UnsupportedFd(`${sock}; --ext-unix-sk allows a datagram socket connected to a named one, --external unix[${ino}] this socket (restored from --inherit-fd)`);
      if (d.type !== SOCK.DGRAM) throw new UnsupportedFd(`${sock}: half of a ${unixTypeName(d.type)} connection cannot be dumped with --ext-unix-sk (criu's rule); --external unix[${ino}] dumps it to be restored from --inherit-fd`);
      const name = p?.name;
      if (!name || name.length === 0) throw new UnsupportedFd(`${sock}, which has no name to connect to again; --external unix[${ino}] dumps it to be restored from --inherit-fd`);
      if (name[0] !== 0 && name[0] !== 0x2f) throw new UnsupportedFd(`${sock}, bound to the relative name ${Buffer.from(name).toString("utf8")}: the directory it was bound in is unknown`);
    }
    this.peers.set(peer, p?.name ? new Uint8Array(p.name) : new Uint8Array(0));
  }

  has(peer: number): boolean {
    return this.peers.has(peer);
  }

  /** The stand-in entries, criu's way (fix_external_unix_sockets), each before the sockets connected to it. */
  entries(files: FileTable, each: (peer: number, entry: Record<string, unknown>) => void): void {
    for (const [ino, name] of this.peers) {
      const id = files.newId();
      const usk = {
        id,
        ino,
        type: SOCK.DGRAM,
        state: SK_STATE.LISTEN,
        flags: 0,
        uflags: USK_EXTERN,
        backlog: 0,
        peer: 0,
        fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 },
        opts: { so_sndbuf: 0, so_rcvbuf: 0, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n },
        name,
      };
      each(ino, { type: "UNIXSK", id, usk });
    }
  }
}

/** The name a restored socket connects to outside the tree, and the root a path name is resolved under (--root). */
export interface OutsideName {
  name: Buffer;
  base: string | undefined;
}

/**
 * On restore: socket `u` (`sock`, for messages) has criu's USK_EXTERN stand-in `p` for its
 * peer. Only a datagram socket connects to a name again, and only with --ext-unix-sk
 * (criu's rule); any other comes from --inherit-fd, which was looked for before the plan.
 */
export function outsidePeer(sock: string, u: { ino: number; type: number; peer: number }, p: { name: Uint8Array }, extUnixSk: boolean, root: string | undefined, fail: (msg: string) => Error): OutsideName {
  const peer = `${sock} is connected to socket ${u.peer} outside the dumped tree${p.name.length ? ` (${showUnixName(p.name)})` : ""}`;
  const inherit = `--inherit-fd fd[N]:socket:[${u.ino}]`;
  if (u.type !== SOCK.DGRAM) throw fail(`${peer}: a ${unixTypeName(u.type)} connection is restored only from ${inherit}`);
  if (p.name.length === 0) throw fail(`${peer}, which has no name to connect to: it is restored only from ${inherit}`);
  if (!extUnixSk) throw fail(`${peer}: --ext-unix-sk connects it again (or ${inherit} gives it)`);
  const name = Buffer.from(p.name);
  if (name[0] === 0) return { name, base: undefined };
  const text = showUnixName(name);
  if (!text.startsWith("/")) throw fail(`${peer}, bound to the relative name ${text}: the directory to resolve it from is unknown`);
  return { name, base: root && root !== "/" ? root : undefined };
}
