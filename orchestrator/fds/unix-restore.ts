// Unix sockets on restore (UNIXSK entries, sk-queues.img; criu's sk-unix.c and
// sk-queue.c). Plan: each entry is checked (type, state, name, its peer in files.img and
// among the task's fds, its queue), then how it will be made is decided once every fd is
// planned: a pair of sockets connected to each other is one socketpair; a socket waiting
// to be accepted, or a datagram socket sending to a named one, connects to its peer; a
// connection whose peer is closed is a socketpair whose other end is closed again.
// Make: tscriu makes every socket of the task at once, in criu's order of kernel calls --
// socket/socketpair, bind (a stale socket file at the name removed first, only if it is a
// socket), listen, connect, the queued messages sent in order through the peer, then file
// flags, options and shutdown -- and each fd hands its socket to the task. One change to
// that order, for datagram sockets that are not a pair: the kernel lets only a socket's
// own peer send to it once it has one (unix_may_send), so such a socket gets its queue
// from a helper of tscriu's before any connect, and a socket is connected to before it
// connects to another.
//
// Names: a path name is bound exactly as it was (getsockname gives it back), resolved
// against the directory it was bound in (name_dir, for a relative name) or the root, both
// under --root. A socket bound to a removed file is bound, then its file removed again
// (criu's way); sockets connect to it through an O_PATH fd of the file, kept meanwhile.
//
// Files in flight (a message's SCM_RIGHTS, file ids of files.img): the planner plans those
// no task holds (FdPlanner.finish); a message is sent with tscriu's fds of them, the very
// descriptions the tasks get when they hold them too.

import { closeSync, chmodSync, existsSync, lchownSync, lstatSync, mkdirSync, openSync, renameSync, rmdirSync, statSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { AF_UNIX, F, O, SCM_MAX_FD, SCM_RIGHTS, SHUT, SK_STATE, SOCK } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { RestoreError } from "../restore/errors.js";
import { underRoot } from "../restore/fileset.js";
import type { FdRestorer, FdSource, PlanContext } from "./kind.js";
import { filterProblem, restoreSockOpts, widenBuffers } from "./sockopts.js";
import { showUnixName, type UnixSkEntry } from "./unix-dump.js";
import { outsidePeer, unixTypeName, USK_EXTERN, type OutsideName } from "./unix-external.js";

const UNIX_PATH_MAX = 108;
const SHUTDOWN: Record<string, number> = { NONE: 0, READ: 1, WRITE: 2, BOTH: 3 };
/** sk_shutdown → shutdown(2)'s how */
const HOW: Record<number, number> = { 1: SHUT.RD, 2: SHUT.WR, 3: SHUT.RDWR };

/** An entry's sk_shutdown as a number (the codec gives an enum's name). */
function shutdownOf(u: UnixSkEntry): number {
  const v = u.shutdown ?? 0;
  return typeof v === "number" ? v : (SHUTDOWN[v] ?? -1);
}

/** A queued message: its bytes and the file ids of the fds it passes (SCM_RIGHTS). */
interface Message {
  data: Uint8Array;
  rights: number[];
}

/** One socket of the plan, and what its making needs. */
interface Sk {
  id: number;
  u: UnixSkEntry;
  /** "fd N", for messages */
  what: string;
  name: Buffer;
  /** a path name: where its file is in tscriu's view, and the directory bind resolves it from */
  path: { file: string; base: string | undefined } | undefined;
  queue: Message[];
  /** decided when every fd is planned */
  how?: "pair" | "connect" | "closed-peer" | "alone" | "outside";
  peer?: Sk;
  /** the name of the socket outside the tree it connects to (--ext-unix-sk), and where a path name is */
  outside?: OutsideName;
  /** who sends its queue: its pair, or a helper socket of tscriu's closed once it is sent */
  sender?: Sk | "helper";
  fd?: number;
  helper?: number;
  /** an O_PATH fd of the file of a socket bound to a removed name, to connect to it */
  ghost?: number;
}

/** An accepted connection shares its listener's name, which bind cannot give it: it is left unnamed (criu's limit too). */
function bindsName(u: UnixSkEntry): boolean {
  return u.type === SOCK.DGRAM || u.state !== SK_STATE.ESTABLISHED;
}

export class UnixRestorer implements FdRestorer {
  private readonly sockets: Sk[] = [];
  private byIno: Map<number, UnixSkEntry> | undefined;
  private queues: Promise<Map<number, Message[]>> | undefined;
  private made = false;
  private readonly mine: number[] = [];

  constructor(private readonly ctx: PlanContext) {}

  private fail(msg: string, file = "files.img"): RestoreError {
    return new RestoreError("plan", this.ctx.pid, msg, { file: join(this.ctx.dir, file) });
  }

  /** Every UNIXSK entry of files.img by inode (peers are named by inode). */
  private entryByIno(ino: number): UnixSkEntry | undefined {
    if (!this.byIno) {
      this.byIno = new Map();
      for (const f of this.ctx.files.files.values()) if (f.usk) this.byIno.set(f.usk.ino, f.usk);
    }
    return this.byIno.get(ino);
  }

  /** sk-queues.img by the id of the socket whose receive queue each message is in, in order. */
  private async queueOf(id: number): Promise<Message[]> {
    this.queues ??= (async () => {
      const out = new Map<number, Message[]>();
      for (const p of (await this.ctx.optional("sk-queues.img")) ?? []) {
        const bytes = (p["extra"] as Uint8Array | undefined) ?? new Uint8Array(0);
        const idFor = Number(p["id_for"]);
        if (bytes.length !== Number(p["length"])) throw this.fail(`a message queued for file id ${idFor} holds ${bytes.length} bytes, its entry says ${String(p["length"])}`, "sk-queues.img");
        const scm = (p["scm"] as { type: number; rights: number[] }[] | undefined) ?? [];
        // The kernel hands all of a message's fds over as one SCM_RIGHTS (criu keeps one too).
        if (scm.length > 1) throw this.fail(`a message queued for file id ${idFor} has ${scm.length} control messages; the kernel gives one (SCM_RIGHTS)`, "sk-queues.img");
        const rights = scm[0]?.rights ?? [];
        if (scm.length && scm[0]!.type !== SCM_RIGHTS) throw this.fail(`a message queued for file id ${idFor} has a control message of type ${scm[0]!.type}; only SCM_RIGHTS (${SCM_RIGHTS}) passes files`, "sk-queues.img");
        if (rights.length > SCM_MAX_FD) throw this.fail(`a message queued for file id ${idFor} passes ${rights.length} files; the kernel passes at most ${SCM_MAX_FD} in one`, "sk-queues.img");
        const list = out.get(idFor) ?? [];
        list.push({ data: bytes, rights: [...rights] });
        out.set(idFor, list);
      }
      return out;
    })();
    return (await this.queues).get(id) ?? [];
  }

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const u = e.usk;
    if (!u) throw this.fail(`${what}: a UNIXSK entry without its socket fields`);
    const sock = `${what}: unix socket ${u.ino}`;
    if (u.type !== SOCK.STREAM && u.type !== SOCK.DGRAM && u.type !== SOCK.SEQPACKET) throw this.fail(`${sock} has type ${u.type}; only stream, datagram and seqpacket sockets exist`);
    if (u.state !== SK_STATE.LISTEN && u.state !== SK_STATE.ESTABLISHED && u.state !== SK_STATE.CLOSE) throw this.fail(`${sock} is in state ${u.state}, which criu does not dump`);
    if (u.uflags & USK_EXTERN) throw this.fail(`${sock} is criu's stand-in for a socket outside the dump, not a socket of the task`);
    if (u.uflags !== 0) throw this.fail(`${sock} has criu's flags 0x${u.uflags.toString(16)} (its service socket, a plugin's, an inherited one); restoring them is not supported`);
    const sh = shutdownOf(u);
    if (sh < 0 || sh > 3) throw this.fail(`${sock} has the shutdown state ${String(u.shutdown)}, which is none of NONE, READ, WRITE, BOTH`);
    const filter = filterProblem(u.opts);
    if (filter) throw this.fail(`${sock} ${filter}`);
    const name = Buffer.from(u.name);
    if (name.length > UNIX_PATH_MAX) throw this.fail(`${sock} has a name of ${name.length} bytes, more than sun_path's ${UNIX_PATH_MAX}`);
    if (u.deleted && (name.length === 0 || name[0] === 0)) throw this.fail(`${sock} is marked as bound to a removed file, but has no path name`);
    let outside: Sk["outside"];
    if (u.peer !== 0) {
      const p = this.entryByIno(u.peer);
      if (!p) throw this.fail(`${sock}'s peer (inode ${u.peer}) is not in files.img`);
      if (p.uflags & USK_EXTERN) outside = outsidePeer(sock, u, p, this.ctx.extUnixSk, this.ctx.files.root, (m) => this.fail(m));
    }
    let path: Sk["path"];
    if (name.length > 0 && name[0] !== 0) {
      const text = showUnixName(name);
      const root = this.ctx.files.root;
      if (text.startsWith("/")) {
        path = { file: underRoot(root, text), base: root && root !== "/" ? root : undefined };
      } else {
        if (u.name_dir === undefined) throw this.fail(`${sock} is bound to the relative name ${text} without the directory it was bound in (name_dir)`);
        const base = underRoot(root, u.name_dir);
        path = { file: join(base, text), base };
      }
    }
    // Checked now, not when the task exists: bind would fail there.
    if (path && bindsName(u) && !u.deleted && !existsSync(dirname(path.file))) throw this.fail(`${sock} is bound to ${path.file}, whose directory does not exist`);
    const sk: Sk = { id: e.id, u, what, name, path, queue: await this.queueOf(e.id), ...(outside ? { outside } : {}) };
    this.sockets.push(sk);
    const shown = showUnixName(name);
    return {
      describe: `socket:[${u.ino}]${shown ? ` ${shown}` : ""}`,
      fown: u.fown,
      open: () => {
        this.make();
        return sk.fd!;
      },
    };
  }

  /** Decides how each socket is made, now that every fd of the task is planned. No side effects. */
  async planned(): Promise<void> {
    const byIno = new Map(this.sockets.map((s) => [s.u.ino, s]));
    for (const s of this.sockets) {
      const sock = `${s.what}: unix ${unixTypeName(s.u.type)} socket ${s.u.ino}`;
      if (s.outside) {
        s.how = "outside";
        continue;
      }
      if (s.u.peer === 0) {
        if (s.u.state === SK_STATE.ESTABLISHED && s.u.type !== SOCK.DGRAM) {
          // criu dumps a connection without a peer only when its peer is closed (both ways shut down).
          if (shutdownOf(s.u) !== 3) throw this.fail(`${sock} is connected, but to no peer, and not shut down`);
          s.how = "closed-peer";
        } else {
          s.how = "alone";
        }
        continue;
      }
      const p = byIno.get(s.u.peer);
      if (!p) throw this.fail(`${sock} is connected to socket inode ${s.u.peer}, which no fd of the task holds`);
      if (p.u.type !== s.u.type) throw this.fail(`${sock} and its peer ${p.u.ino} are of different types`);
      s.peer = p;
      if (p !== s && p.u.peer === s.u.ino) {
        s.how = "pair";
      } else if (s.u.type === SOCK.DGRAM) {
        if (p.name.length === 0) throw this.fail(`${sock} sends to socket ${p.u.ino}, which has no name to connect to`);
        s.how = "connect";
      } else {
        if (p.u.state !== SK_STATE.LISTEN || p.name.length === 0) throw this.fail(`${sock} is connected to socket ${p.u.ino}, which is neither its pair nor a listener with a name`);
        if (s.queue.length) throw this.fail(`${sock} waits to be accepted, yet has data queued`, "sk-queues.img");
        s.how = "connect";
      }
    }
    for (const s of this.sockets) {
      if (!s.queue.length) continue;
      if (s.u.state === SK_STATE.LISTEN) throw this.fail(`${s.what}: unix socket ${s.u.ino} is listening, yet has data queued`, "sk-queues.img");
      // A datagram socket not in a pair gets its queue from a helper of tscriu's rather
      // than from a socket connected to it (criu's queuer): once it is connected itself,
      // only its own peer may send to it. (recvfrom then names no sender.)
      if (s.how === "pair") s.sender = s.peer!;
      else if (s.how === "closed-peer" || s.u.type === SOCK.DGRAM) s.sender = "helper";
      else throw this.fail(`${s.what}: unix socket ${s.u.ino} has data queued but no peer to send it`, "sk-queues.img");
    }
    const ids = new Set(this.sockets.map((s) => s.id));
    for (const id of (await this.queues)?.keys() ?? []) if (!ids.has(id)) throw this.fail(`messages are queued for file id ${id}, which is no unix socket of the task`, "sk-queues.img");
  }

  /** Makes every socket of the plan, once. */
  private make(): void {
    if (this.made) return;
    this.made = true;
    const b = bridge();
    const track = (fd: number): number => {
      this.mine.push(fd);
      return fd;
    };
    for (const s of this.sockets) {
      if (s.fd !== undefined) continue;
      this.step(s, "making", () => {
        if (s.how === "pair") {
          const [a, c] = b.socketpair(AF_UNIX, s.u.type);
          s.fd = track(a);
          s.peer!.fd = track(c);
        } else if (s.how === "closed-peer") {
          const [a, c] = b.socketpair(AF_UNIX, s.u.type);
          s.fd = track(a);
          s.helper = track(c);
        } else if (s.sender === "helper") {
          // A pair, then connect(AF_UNSPEC) takes its peer away; the other end still sends to it.
          const [a, c] = b.socketpair(AF_UNIX, s.u.type);
          s.fd = track(a);
          s.helper = track(c);
          b.unixDisconnect(a);
        } else {
          s.fd = track(b.socket(AF_UNIX, s.u.type));
        }
      });
    }
    // Nothing may block while tscriu builds them (a full backlog, a full queue): the file
    // flags are set at the end.
    for (const s of this.sockets) b.fcntl(s.fd!, F.SETFL, O.NONBLOCK);
    // Datagrams go in while the socket has no peer of its own (see planned()).
    for (const s of this.sockets) if (s.queue.length && s.u.type === SOCK.DGRAM && s.how !== "pair") this.fill(s);
    for (const s of this.sockets) if (s.path) this.removeStale(s);
    for (const s of this.sockets) this.bind(s);
    for (const s of this.sockets) if (s.u.state === SK_STATE.LISTEN) this.step(s, "listen", () => b.listen(s.fd!, s.u.backlog));
    // A socket is connected to only after those that send to it: once it has a peer of its
    // own, no other socket may connect to it (unix_may_send).
    const connecting = this.sockets.filter((s) => s.how === "connect");
    while (connecting.length) {
      const next = connecting.findIndex((s) => !connecting.some((o) => o !== s && o.peer === s));
      this.connect(connecting.splice(Math.max(next, 0), 1)[0]!);
    }
    for (const s of this.sockets) {
      const o = s.outside;
      if (o) this.step(s, `connect to ${showUnixName(o.name)} outside the tree`, () => b.unixConnect(s.fd!, o.name, o.base ?? null));
    }
    for (const s of this.sockets) if (s.queue.length && !(s.u.type === SOCK.DGRAM && s.how !== "pair")) this.fill(s);
    for (const s of this.sockets) {
      if (s.helper === undefined) continue;
      closeSync(s.helper);
      this.mine.splice(this.mine.indexOf(s.helper), 1);
      delete s.helper;
    }
    for (const s of this.sockets) {
      this.step(s, "fcntl(F_SETFL)", () => b.fcntl(s.fd!, F.SETFL, s.u.flags & ~3));
      // After every queue is refilled: a filter attached earlier would judge the refill.
      this.step(s, "options", () => restoreSockOpts(s.fd!, s.u.opts));
      const how = HOW[shutdownOf(s.u)];
      if (how !== undefined) this.step(s, "shutdown", () => b.shutdown(s.fd!, how));
    }
  }

  private step(s: Sk, what: string, run: () => void): void {
    try {
      run();
    } catch (e) {
      const shown = showUnixName(s.name);
      throw new Error(`${what} of unix socket ${s.u.ino}${shown ? ` (${shown})` : ""} for ${s.what}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** criu's unlink_sk: a socket file left at the name goes; any other file stays (and bind will say so). */
  private removeStale(s: Sk): void {
    const file = s.path!.file;
    try {
      if (!statSync(file).isSocket()) return;
      unlinkSync(file);
      this.ctx.log.debug(`removed the stale socket file ${file} of unix socket ${s.u.ino}`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.ctx.log.warn(`cannot remove the stale socket file ${file}: ${(e as Error).message}`);
    }
  }

  private bind(s: Sk): void {
    if (s.name.length === 0 || !bindsName(s.u)) return;
    if (s.u.deleted) {
      this.step(s, "bind to a removed name", () => this.bindRemoved(s));
      return;
    }
    this.step(s, "bind", () => {
      bridge().unixBind(s.fd!, s.name, s.path?.base ?? null);
      if (s.path) this.perms(s);
    });
  }

  private perms(s: Sk): void {
    const p = s.u.file_perms;
    if (!p) return;
    lchownSync(s.path!.file, p.uid, p.gid);
    chmodSync(s.path!.file, p.mode & 0o7777);
  }

  /**
   * criu's bind_on_deleted: make the missing directories, move aside whatever has the
   * name now, bind, keep an O_PATH fd of the socket's file, remove it, put back what was
   * there, remove the directories made.
   */
  private bindRemoved(s: Sk): void {
    const file = s.path!.file;
    const made: string[] = [];
    for (let d = dirname(file); !existsSync(d); d = dirname(d)) made.unshift(d);
    for (const d of made) mkdirSync(d, { mode: 0o755 });
    const parked = `${file}.tscriu-sk-ghost`;
    let moved = false;
    try {
      try {
        lstatSync(file);
        if (existsSync(parked)) throw new Error(`${file} is taken and ${parked} exists: no room to move it aside`);
        renameSync(file, parked);
        moved = true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
      bridge().unixBind(s.fd!, s.name, s.path!.base ?? null);
      try {
        this.perms(s);
        s.ghost = openSync(file, O.PATH | O.CLOEXEC);
        this.mine.push(s.ghost);
      } finally {
        unlinkSync(file);
      }
    } finally {
      if (moved) renameSync(parked, file);
      for (const d of made.reverse()) rmdirSync(d);
    }
  }

  private connect(s: Sk): void {
    const p = s.peer!;
    this.step(s, `connect to socket ${p.u.ino}`, () => {
      // A peer bound to a removed file is reached through the fd of that file.
      if (p.ghost !== undefined) bridge().unixConnect(s.fd!, Buffer.from(`/proc/self/fd/${p.ghost}\0`), null);
      else bridge().unixConnect(s.fd!, p.name, p.path?.base ?? null);
    });
  }

  /** Sends a socket's receive queue to it, message by message, from its sender (criu's restore_sk_queue). */
  private fill(s: Sk): void {
    const from = s.sender === "helper" ? s.helper! : s.sender!.fd!;
    this.step(s, `restoring ${s.queue.length} queued messages`, () => {
      widenBuffers(from);
      for (const m of s.queue) {
        // The files in flight: the descriptions the tasks get too, when they hold them.
        const fds = m.rights.map((id) => this.ctx.openFile(id));
        const n = bridge().send(from, m.data, null, fds);
        if (n !== m.data.length) throw new Error(`sendmsg took ${n} of ${m.data.length} bytes`);
      }
    });
  }

  inheritKeys(e: FileEntry): string[] {
    return e.usk ? [`socket:[${e.usk.ino}]`] : [];
  }

  close(): void {
    for (const fd of this.mine.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        // closed already
      }
    }
  }
}
