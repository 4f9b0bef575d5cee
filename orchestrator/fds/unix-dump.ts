// Unix sockets on dump (UNIXSK entries in files.img, criu's sk-unix.c): what /proc does
// not tell comes from the kernel's sock_diag table (type, state, peer, name, the
// connections a listener has not accepted yet, queue lengths, shutdown); options from
// getsockopt; the bound file (mode, owner, whether it was removed, the directory of a
// relative name) from SIOCUNIXFILE; the receive queue from a peek that leaves it in place
// (sk-queues.img, one entry per message, in order). The fds a message carries (SCM_RIGHTS)
// come with the peek as tscriu's own and are dumped as files of the dump (criu's
// dump_my_file): the message lists their ids. A socket in flight is dumped like one a task
// holds, its own queue too; one met again in its own queue (directly or through sockets
// in flight there: a loop, which the kernel's garbage collector keeps) is the entry being
// written, as criu gives a file its id before it dumps it. A peer no task holds may be in
// flight, met later; one that is not is outside the tree, allowed only as the options say
// (unix-external.ts).

import { closeSync, fstatSync } from "node:fs";
import { posix } from "node:path";
import { AF_UNIX, SCM_RIGHTS, SK_STATE, SOCK } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { UnixDiag } from "../../host-bridge/native.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { sk_packet_entry, unix_sk_entry } from "../../images/schema/index.js";
import { listFds, procPath } from "../dump/proc.js";
import { NET_NS_ID } from "../dump/write.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts } from "./kind.js";
import { dumpSockOpts } from "./sockopts.js";
import { OutsidePeers, showUnixName } from "./unix-external.js";

export { showUnixName };

export type UnixSkEntry = Entry<typeof unix_sk_entry>;
type SkPacket = Entry<typeof sk_packet_entry> & { extra: Uint8Array };

/** sk_shutdown BOTH: the kernel's RCV_SHUTDOWN | SEND_SHUTDOWN, as sock_diag reports them. */
const SHUTDOWN_BOTH = 3;


/** Where a path-bound socket's file is: its mode and owner, removed or not, and its directory. */
interface BoundFile {
  mode: number;
  uid: number;
  gid: number;
  path: string;
  deleted: boolean;
}

function boundFile(copy: number): BoundFile {
  const f = bridge().unixSocketFile(copy);
  try {
    const st = fstatSync(f);
    const link = bridge().readlink(`/proc/self/fd/${f}`);
    const deleted = link.endsWith(" (deleted)");
    return { mode: st.mode, uid: st.uid, gid: st.gid, path: deleted ? link.slice(0, -" (deleted)".length) : link, deleted };
  } finally {
    closeSync(f);
  }
}

export class UnixDumper implements FdDumper {
  private diag: Map<number, UnixDiag> | undefined;
  private held: Set<number> | undefined;
  /** client inode → the listener it waits on (sock_diag's icons) */
  private readonly pendingOn = new Map<number, UnixDiag>();
  private readonly packets: SkPacket[] = [];
  /** inodes done (their entry may still wait for its peer's) */
  private readonly done = new Set<number>();
  /** entries held back until their peer's is written, by the peer's inode (criu's order) */
  private readonly waiting = new Map<number, Record<string, unknown>[]>();
  private readonly outside: OutsidePeers;
  /** sockets whose queue is being read, and their ids (met in flight there: a loop) */
  private readonly peeking = new Map<number, number>();
  /** sockets connected to a peer no task holds, which must be in flight or allowed outside (settle) */
  private readonly unheld: { fd: number; ino: number; d: UnixDiag; peer: number; p: UnixDiag | undefined }[] = [];

  constructor(private readonly ctx: DumpContext) {
    this.outside = new OutsidePeers(ctx.externalUnix);
  }

  /** sock_diag's table, read once: the task is frozen, its sockets do not change. */
  private table(): Map<number, UnixDiag> {
    if (!this.diag) {
      this.diag = new Map(bridge().unixDiag().map((d) => [d.ino, d]));
      for (const d of this.diag.values()) for (const icon of d.icons) this.pendingOn.set(icon, d);
    }
    return this.diag;
  }

  /** The socket inodes the dumped processes hold in their fd tables. */
  private heldByTask(): Set<number> {
    if (!this.held) {
      this.held = new Set();
      for (const pid of this.ctx.pids) {
        for (const fd of listFds(pid)) {
          const m = /^socket:\[(\d+)\]$/.exec(bridge().readlink(procPath(pid, `fd/${fd}`)));
          if (m) this.held.add(Number(m[1]));
        }
      }
    }
    return this.held;
  }

  matches(f: FdFacts): boolean {
    return f.domain() === AF_UNIX;
  }

  dump(f: FdFacts): { id: number; type: string } {
    const ino = Number(f.st.ino);
    const which = f.inFlight ? "file in flight" : `fd ${f.fd}`;
    const refuse = (why: string): UnsupportedFd => new UnsupportedFd(`unsupported ${which}: unix socket ${f.link} ${why}`);
    const outside = (peer: number): UnsupportedFd => new UnsupportedFd(`unsupported ${which}: unix socket ${f.link} waits to be accepted by socket ${peer}, which is outside the dumped tree`);
    const looped = this.peeking.get(ino);
    if (looped !== undefined) return { id: looped, type: "UNIXSK" };
    const d = this.table().get(ino);
    if (!d) throw refuse("is not in sock_diag's table of tscriu's network namespace");
    if (d.type !== SOCK.STREAM && d.type !== SOCK.DGRAM && d.type !== SOCK.SEQPACKET) throw refuse(`of type ${d.type}: only stream, datagram and seqpacket sockets are dumped`);
    if (d.state !== SK_STATE.LISTEN && d.state !== SK_STATE.ESTABLISHED && d.state !== SK_STATE.CLOSE) throw refuse(`in state ${d.state}`);

    const name = d.name ?? Buffer.alloc(0);
    const named: Partial<UnixSkEntry> = {};
    if (name.length > 0 && name[0] !== 0) {
      const file = boundFile(f.copy);
      named.file_perms = { mode: file.mode, uid: file.uid, gid: file.gid };
      if (file.deleted) named.deleted = true;
      const text = showUnixName(name);
      if (!text.startsWith("/")) {
        // A relative name: the directory it was bound in is the bound file's path less the name.
        const rel = posix.normalize(text);
        if (rel.startsWith("../") || !file.path.endsWith(`/${rel}`)) throw refuse(`is bound to the relative name ${text}, but its file is ${file.path}: the directory it was bound in is unknown`);
        named.name_dir = file.path.slice(0, -(rel.length + 1)) || "/";
      }
    }

    let peer = d.peer;
    if (peer !== 0) {
      const p = this.table().get(peer);
      // A peer no task holds may be in flight, met later: settle() looks.
      if (!p || !this.heldByTask().has(peer)) this.unheld.push({ fd: f.fd, ino, d, peer, p });
      else if (p.peer !== ino && !p.name) throw refuse(`is connected to socket inode ${peer}, which is neither connected back to it nor bound to a name`);
    } else if (d.state === SK_STATE.ESTABLISHED && d.type !== SOCK.DGRAM) {
      // No peer inode: a connection the listener has not accepted yet (the peer is the
      // kernel's embryo socket), or one whose peer is closed (both ends shut down).
      const listener = this.pendingOn.get(ino);
      if (!listener) {
        if (d.shutdown !== SHUTDOWN_BOTH) throw refuse("is connected, but to no socket sock_diag knows");
      } else {
        if (listener.state !== SK_STATE.LISTEN) throw refuse(`waits to be accepted by socket inode ${listener.ino}, which is not listening`);
        if (!this.heldByTask().has(listener.ino)) throw outside(listener.ino);
        // What it wrote sits in the embryo's queue, which no fd can read.
        if (d.wqlen !== 0) throw refuse(`waits to be accepted and has ${d.wqlen} bytes written into the connection; they cannot be read back`);
        peer = listener.ino;
      }
    } else if (d.state === SK_STATE.LISTEN && d.icons.includes(0)) {
      throw refuse("has a connection not yet accepted whose client is closed; what it wrote cannot be read back");
    }

    const id = this.ctx.files.newId();
    if (d.state !== SK_STATE.LISTEN && (d.rqlen > 0 || d.type === SOCK.DGRAM)) this.dumpQueue(f, ino, id, refuse);

    const usk: UnixSkEntry = {
      id,
      ino,
      type: d.type,
      state: d.state,
      flags: f.flags,
      uflags: 0,
      // criu keeps the write queue length here (a listener's: its backlog)
      backlog: d.wqlen,
      peer,
      fown: f.fown(),
      opts: dumpSockOpts(f.copy, "unix", refuse),
      name: new Uint8Array(name),
      ...(d.shutdown !== 0 ? { shutdown: d.shutdown } : {}),
      ...named,
      ns_id: NET_NS_ID,
    };
    const entry = { type: "UNIXSK", id, usk };
    // criu writes an entry whose peer is not dumped yet after the peer's (it may have to
    // change it): the same order here keeps files.img as criu lays it out.
    if (d.peer !== 0 && !this.done.has(d.peer)) {
      const list = this.waiting.get(d.peer) ?? [];
      list.push(entry);
      this.waiting.set(d.peer, list);
    } else {
      this.ctx.files.add(entry);
    }
    this.done.add(ino);
    for (const e of this.waiting.get(ino) ?? []) this.ctx.files.add(e);
    this.waiting.delete(ino);
    return { id, type: "UNIXSK" };
  }

  /** The socket's receive queue, message by message, with the files in flight in it. */
  private dumpQueue(f: FdFacts, ino: number, id: number, refuse: (why: string) => UnsupportedFd): void {
    const queue = bridge().unixPeekQueue(f.copy);
    const all = queue.flatMap((m) => m.fds);
    this.peeking.set(ino, id);
    try {
      // The dump closes every fd the peek gave from here on, whatever fails.
      const rights = all.length ? this.ctx.inFlight(all, f.holder) : [];
      let at = 0;
      for (const m of queue) {
        const scm = m.fds.length ? [{ type: SCM_RIGHTS, rights: rights.slice(at, (at += m.fds.length)) }] : [];
        this.packets.push({ id_for: id, length: m.data.length, ...(scm.length ? { scm } : {}), extra: new Uint8Array(m.data) });
      }
    } catch (e) {
      if (e instanceof UnsupportedFd && all.length) throw refuse(`has files in flight (SCM_RIGHTS) in its receive queue, and one cannot be dumped: ${e.message}`);
      throw e;
    } finally {
      this.peeking.delete(ino);
    }
  }

  settle(): void {
    // A peer no task holds and no queue had is outside the tree.
    for (const u of this.unheld) if (!this.done.has(u.peer)) this.outside.admit(u.fd, u.ino, u.d, u.peer, u.p);
    // The sockets connected to a peer outside waited for its stand-in entry.
    this.outside.entries(this.ctx.files, (peer, entry) => {
      this.ctx.files.add(entry);
      for (const e of this.waiting.get(peer) ?? []) this.ctx.files.add(e);
      this.waiting.delete(peer);
    });
    // Every other peer is a socket of the tree (held or in flight), so nothing should wait by now.
    for (const list of this.waiting.values()) for (const e of list) this.ctx.files.add(e);
    this.waiting.clear();
  }

  images(): ExtraImage[] {
    return this.packets.length ? [{ name: "sk-queues.img", type: "SK_QUEUES", entries: this.packets }] : [];
  }
}
