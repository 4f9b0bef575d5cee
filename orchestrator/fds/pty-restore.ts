// Unix98 pty pairs on restore (criu's tty.c, host mode): each pair is made again at its
// dumped index by tscriu, which then hands its ends to the tasks like any file:
//   ptmx opened until devpts gives the index (an index in use on this host fails the
//   restore, naming it) → unlocked (TIOCSPTLCK 0) → the master's termios, window size
//   → each slave description opened, its owner, mode and termios set → the queued data
//   put back → packet mode → the controlling terminals: each session's leader takes a
//   slave and makes it its own (TIOCSCTTY) with the dumped foreground group (TIOCSPGRP)
//   as soon as it exists, before it forks (the others of the session inherit it), and
//   /dev/tty is opened inside a task of that session once all exist → the master locked
//   again if it was. A pair whose master was gone (its slaves hung up) gets a master for the
//   moment, closed once the slaves are open: they are hung up again.

import { closeSync, fchmodSync, fchownSync, fstatSync, openSync, writeSync } from "node:fs";
import { constants as fsc } from "node:fs";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { tty_info_entry } from "../../images/schema/tty.js";
import { RestoreError } from "../restore/errors.js";
import { reopenFlags } from "../restore/fileset.js";
import { NR, type Remote } from "../restore/remote.js";
import type { FdSource, PlanContext } from "./kind.js";
import { deviceNumbers, ttyParams } from "./tty-facts.js";

export type TtyInfo = Entry<typeof tty_info_entry>;

const O_CLOEXEC = 0o2000000;
const TIOCSCTTY = 0x540e;
const TIOCSPGRP = 0x5410;

interface End {
  id: number;
  flags: number;
  path: string;
  mode: number | undefined;
}

interface Pair {
  index: number;
  master?: End & { info: TtyInfo };
  slaves: End[];
  slaveInfo?: TtyInfo;
  /** tscriu's fds by file id, once made */
  fds: Map<number, number>;
  /** the master, kept to the end (the pair lives while an end is open) */
  masterFd: number | undefined;
}

/** A session whose controlling terminal is one of the pairs. */
interface Ctty {
  sid: number;
  pgrp: number;
  index: number;
}

/** A path of the image that names a pty's end (criu's fallbacks for images without one). */
function endOf(e: FileEntry, reg: FileEntry | undefined, fallback: string): End {
  return { id: e.id, flags: e.tty!.flags, path: reg?.reg?.name || fallback, mode: reg?.reg?.mode };
}

export class PtyPairs {
  private readonly pairs = new Map<number, Pair>();
  /** file id of each /dev/tty description -> the task that opens it */
  private readonly cttyHolders = new Map<number, { pid: number; flags: number; info: TtyInfo }>();
  private readonly cttyFds = new Map<number, number>();
  private made = false;

  private constructor(
    private readonly ctx: PlanContext,
    private readonly infos: Map<number, TtyInfo>,
    /** the pty indexes whose master the images hold */
    private readonly masters: Set<number>,
    private readonly data: Map<number, Buffer>,
    /** pid -> session */
    private readonly sids: Map<number, number>,
  ) {}

  static async load(ctx: PlanContext, infos: Map<number, TtyInfo>): Promise<PtyPairs> {
    const files = ((await ctx.optional("files.img")) ?? []) as FileEntry[];
    const masters = new Set<number>();
    for (const f of files) {
      const info = f.tty ? infos.get(f.tty.tty_info_id) : undefined;
      if (info?.pty && info.id & 1) masters.add(info.pty.index);
    }
    const data = new Map<number, Buffer>();
    for (const d of (await ctx.optional("tty-data.img")) ?? []) data.set(Number(d["tty_id"]), Buffer.from(d["data"] as Uint8Array));
    const sids = new Map<number, number>();
    for (const p of (await ctx.optional("pstree.img")) ?? []) {
      // a zombie (threads [0]) has no session to lead
      if ((p["threads"] as number[] | undefined)?.[0] !== 0) sids.set(Number(p["pid"]), Number(p["sid"]));
    }
    return new PtyPairs(ctx, infos, masters, data, sids);
  }

  /** Whether a pty end comes back as part of a pair: its master is in the images, or it was hung up. */
  isPaired(info: TtyInfo): boolean {
    return info.pty !== undefined && ((info.id & 1) === 1 || !info.termios || this.masters.has(info.pty.index));
  }

  /** Whether a /dev/tty of task `pid` comes back: its session's controlling terminal is one of the pairs. */
  hasCtty(pid: number): boolean {
    const sid = this.sids.get(pid);
    return sid !== undefined && this.cttys().some((c) => c.sid === sid);
  }

  /** One end of a pair, as an fd source. */
  planEnd(e: FileEntry, reg: FileEntry | undefined, info: TtyInfo): FdSource {
    const index = info.pty!.index;
    let p = this.pairs.get(index);
    if (!p) this.pairs.set(index, (p = { index, slaves: [], fds: new Map(), masterFd: undefined }));
    const master = (info.id & 1) === 1;
    if (master) p.master ??= { ...endOf(e, reg, "/dev/ptmx"), info };
    else {
      p.slaveInfo ??= info;
      if (!p.slaves.some((s) => s.id === e.id)) p.slaves.push(endOf(e, reg, `/dev/pts/${index}`));
    }
    const what = master ? `pty ${index} master` : `pty ${index} slave`;
    return {
      describe: `${what} (${reg?.reg?.name ?? "no path"})`,
      fown: e.tty!.fown,
      open: () => {
        this.makeAll();
        const fd = p.fds.get(e.id);
        if (fd === undefined) throw new RestoreError("files", this.ctx.pid, `${what}: file id ${e.id} was not opened`);
        return fd;
      },
    };
  }

  /** /dev/tty, opened inside task `pid` once its session has its terminal. */
  planCtty(e: FileEntry, info: TtyInfo): FdSource {
    if (!this.cttyHolders.has(e.id)) this.cttyHolders.set(e.id, { pid: this.ctx.pid, flags: e.tty!.flags, info });
    return {
      describe: "/dev/tty",
      fown: e.tty!.fown,
      open: () => {
        const fd = this.cttyFds.get(e.id);
        if (fd === undefined) throw new RestoreError("files", this.ctx.pid, `/dev/tty (file id ${e.id}) was not opened: its session's terminal was not set up`);
        return fd;
      },
    };
  }

  /** The sessions whose controlling terminal is one of the pairs and whose leader is among the tasks. */
  cttys(): Ctty[] {
    return this.allCttys().filter((c) => this.sids.get(c.sid) === c.sid);
  }

  /** The sessions whose controlling terminal is one of the pairs (a master's word over its slave's, as criu). */
  private allCttys(): Ctty[] {
    const out = new Map<number, Ctty>();
    for (const info of [...this.infos.values()].sort((a, b) => (b.id & 1) - (a.id & 1))) {
      if (!info.pty || !info.termios || info.sid === 0 || !this.isPaired(info) || out.has(info.sid)) continue;
      out.set(info.sid, { sid: info.sid, pgrp: info.pgrp, index: info.pty.index });
    }
    return [...out.values()];
  }

  /** criu's "No task found with sid": a session's terminal needs its leader among the tasks (with -j it stays tscriu's). */
  check(): void {
    for (const c of this.allCttys()) {
      if (this.sids.get(c.sid) === c.sid || this.ctx.shellJob) continue;
      throw new RestoreError("plan", this.ctx.pid, `pty ${c.index} is the controlling terminal of session ${c.sid}, whose leader is not among the restored tasks`, { file: join(this.ctx.dir, "tty-info.img") });
    }
  }

  /** A session leader just made takes its terminal (every pair is made on the first). */
  processMade(pid: number, r: Remote): void {
    const c = this.cttys().find((x) => x.sid === pid);
    if (!c) return;
    this.makeAll();
    this.giveCtty(r, c, "terminal");
  }

  /** The foreground groups, /dev/tty opened in the tasks (their sessions have their terminals), then the masters locked. */
  prepare(tasks: ReadonlyMap<number, Remote>): void {
    this.makeAll();
    for (const c of this.cttys()) {
      const r = tasks.get(c.sid);
      if (r && c.pgrp > 0 && c.pgrp !== c.sid) this.giveCtty(r, c, "group");
    }
    for (const [id, h] of this.cttyHolders) {
      const r = tasks.get(h.pid);
      if (!r) throw new RestoreError("ttys", h.pid, `/dev/tty: task ${h.pid} is not being restored`);
      const fd = openInTask(r, "/dev/tty", reopenFlags(h.flags));
      this.cttyFds.set(id, fd);
      bridge().ttySetParams(fd, ttyParams(h.info));
    }
    for (const p of this.pairs.values()) if (p.masterFd !== undefined && p.master?.info.locked) bridge().ttySetModes(p.masterFd, { locked: true });
  }

  /**
   * The leader makes a slave of the pair its session's terminal (TIOCSCTTY: the leader's
   * group is its foreground group then); or, once every group exists, gives the terminal
   * to the dumped foreground group (TIOCSPGRP).
   */
  private giveCtty(r: Remote, c: Ctty, what: "terminal" | "group"): void {
    const slave = this.openSlave(this.pairs.get(c.index)!, fsc.O_RDWR, `/dev/pts/${c.index}`);
    try {
      r.openPidfd(3);
      const fd = r.takeFd(slave, `pty ${c.index} slave`);
      if (what === "terminal") r.call(`ioctl(TIOCSCTTY) of pty ${c.index} in session ${c.sid}`, NR.ioctl, [fd, TIOCSCTTY, 1]);
      else {
        const pgrp = Buffer.alloc(4);
        pgrp.writeInt32LE(c.pgrp);
        r.call(`ioctl(TIOCSPGRP, ${c.pgrp}) of pty ${c.index}`, NR.ioctl, [fd, TIOCSPGRP, r.write(0, pgrp)]);
      }
      r.call("close", NR.close, [fd]);
      r.closePidfd();
    } finally {
      closeSync(slave);
    }
  }

  private makeAll(): void {
    if (this.made) return;
    this.made = true;
    for (const p of this.pairs.values()) this.make(p);
  }

  private make(p: Pair): void {
    const path = p.master?.path ?? "/dev/ptmx";
    const { fd: master, got } = bridge().ptmxOpen(path, reopenFlags(p.master?.flags ?? fsc.O_RDWR), p.index);
    if (master < 0) throw new RestoreError("ttys", this.ctx.pid, `pty ${p.index} (${path}): index ${p.index} is in use on this host (ptmx gave ${got}); it must be free to restore the pty`);
    p.masterFd = master;
    if (p.master) p.fds.set(p.master.id, master);
    bridge().ttySetModes(master, { locked: false });
    if (p.master) bridge().ttySetParams(master, ttyParams(p.master.info));
    for (const [i, s] of p.slaves.entries()) {
      const fd = this.openSlave(p, s.flags, s.path);
      p.fds.set(s.id, fd);
      if (i > 0 || !p.slaveInfo?.termios) continue;
      const info = p.slaveInfo;
      if (info.uid !== undefined && info.gid !== undefined) fchownSync(fd, info.uid, info.gid);
      if (s.mode !== undefined) fchmodSync(fd, s.mode & 0o7777);
      bridge().ttySetParams(fd, ttyParams(info));
      if (info.exclusive) bridge().ttySetModes(fd, { exclusive: true });
    }
    const slave = p.slaves[0] ? p.fds.get(p.slaves[0].id) : undefined;
    if (p.master && slave !== undefined) {
      this.putBack(p, master, slave, p.master.info.id);
      if (p.slaveInfo) this.putBack(p, slave, master, p.slaveInfo.id);
    }
    // Last: a termios change of the slave (IXON) is a packet-mode event for the master's reader.
    if (p.master?.info.packet_mode) bridge().ttySetModes(master, { packetMode: true });
    if (!p.master) {
      // the slaves of a gone master: hung up again as the master goes
      closeSync(master);
      p.masterFd = undefined;
    }
  }

  /** The data that was queued for reading on `fd` (tty-data.img), into its read queue again. */
  private putBack(p: Pair, fd: number, peer: number, infoId: number): void {
    const data = this.data.get(infoId);
    if (!data?.length) return;
    this.ctx.log.debug(`pty ${p.index}: ${data.length} queued bytes put back`);
    // Without CAP_SYS_ADMIN, through the peer as criu (its output processing applies).
    if (!bridge().ttyInject(fd, data)) writeSync(peer, data);
  }

  /** A new description of the pair's slave, checked to be that pty's (a path of another devpts would not be). */
  private openSlave(p: Pair, flags: number, path: string): number {
    let fd: number;
    try {
      fd = openSync(path, reopenFlags(flags) | fsc.O_NOCTTY | O_CLOEXEC);
    } catch (e) {
      throw new RestoreError("ttys", this.ctx.pid, `pty ${p.index}: its slave ${path} cannot be opened (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    const [maj, min] = deviceNumbers(fstatSync(fd, { bigint: true }).rdev);
    if (maj < 136 || maj > 143 || (maj - 136) * 256 + min !== p.index) {
      closeSync(fd);
      throw new RestoreError("ttys", this.ctx.pid, `pty ${p.index}: ${path} is device ${maj}:${min}, not the slave of the pty just made`);
    }
    return fd;
  }

  close(): void {
    for (const p of this.pairs.values()) {
      for (const fd of new Set([...p.fds.values(), ...(p.masterFd !== undefined ? [p.masterFd] : [])])) closeSync(fd);
      p.fds.clear();
      p.masterFd = undefined;
    }
    for (const fd of this.cttyFds.values()) closeSync(fd);
    this.cttyFds.clear();
  }
}

/** Opens `path` inside the task (its controlling terminal decides what /dev/tty is) and takes a copy of it. */
function openInTask(r: Remote, path: string, flags: number): number {
  const at = r.write(0, Buffer.from(`${path}\0`));
  const fd = Number(r.call(`open(${path}) in the task`, NR.open, [at, flags | O_CLOEXEC, 0]));
  const b = bridge();
  const pidfd = b.pidfdOpen(r.pid);
  try {
    return b.pidfdGetfd(pidfd, fd);
  } finally {
    b.close(pidfd);
    r.call("close", NR.close, [fd]);
  }
}
