// Terminals (criu's tty.c): each tty fd is a TTY files.img entry plus a REG entry of the
// same id naming the device (criu opens it through that), and each terminal one
// tty-info.img entry with its termios, locked termios, window size, modes, session and
// foreground group, owner and pty index; tty-data.img holds the data queued in a pty.
//
// A Unix98 pty whose master is open in the tree (or whose slave was hung up when its
// master went) comes back as a pty pair at the same index (pty-restore.ts), and so does
// /dev/tty of a task whose controlling terminal is such a pty; a console, a virtual
// terminal or a serial line is opened by its path again. Any other terminal is a shell
// job's (--shell-job): it comes back on tscriu's own terminal (tty-restore.ts).

import { constants as fsc } from "node:fs";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import { readProc, parseStat } from "../dump/proc.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind } from "./kind.js";
import { mastersInTree, PtyQueues, sessionOf } from "./pty-dump.js";
import { deviceNumbers, isTtyMajor, termiosEntry, ttyDriver, ttyInfoId, type TtyDriver } from "./tty-facts.js";
import { TtyRestorer } from "./tty-restore.js";

export { deviceNumbers };

const SHELL_JOB_HINT = "dump a shell job with --shell-job";

/** A terminal hung up (a pty slave whose master was closed): its ioctls say EIO. */
function hungUp(fd: number): boolean {
  try {
    bridge().ttyInfo(fd);
    return false;
  } catch (e) {
    if (isNativeError(e) && e.code === "EIO") return true;
    throw e;
  }
}

class TtyDumper implements FdDumper {
  private readonly infos: Record<string, unknown>[] = [];
  private readonly seen = new Set<number>();
  private masters: Set<number> | undefined;
  private readonly queues: PtyQueues;

  constructor(private readonly ctx: DumpContext) {
    this.queues = new PtyQueues(ctx.log);
  }

  matches(f: FdFacts): boolean {
    return f.fmt === fsc.S_IFCHR && isTtyMajor(deviceNumbers(f.st.rdev)[0]);
  }

  /** Whether pty `index` comes back as a pair: its master is open in the tree. */
  private paired(index: number): boolean {
    this.masters ??= mastersInTree(this.ctx.pids);
    return this.masters.has(index);
  }

  dump(f: FdFacts): { id: number; type: string } {
    const d = ttyDriver(f.st.rdev, f.copy);
    const hung = !d.master && hungUp(f.copy);
    const ours = this.restorableHere(f, d, hung);
    if (!ours && !this.ctx.shellJob) throw new UnsupportedFd(`unsupported fd ${f.fd}: tty ${f.link} (${SHELL_JOB_HINT})`);
    const files = this.ctx.files;
    const id = files.newId();
    const fown = f.fown();
    const infoId = ttyInfoId(d);
    // devpts names a slave whose master is gone "(deleted)": the kernel makes it again with the pair (criu strips it too)
    const link = d.type === "PTY" ? f.link.replace(/ \(deleted\)$/, "") : f.link;
    files.add({ type: "REG", id, reg: files.regEntry(id, f.copy, f.st, link, f.flags, 0n, fown, f.pid) });
    files.add({ type: "TTY", id, tty: { id, tty_info_id: infoId, flags: f.flags, fown } });
    if (!this.seen.has(infoId)) {
      this.seen.add(infoId);
      const info = this.info(f, d, infoId, hung);
      if (ours && !this.ctx.shellJob) this.checkSession(f, info);
      this.infos.push(info);
      if (d.type === "PTY" && ours && !hung) this.queues.note(d.index, d.master, infoId, f.copy);
    }
    return { id, type: "TTY" };
  }

  /**
   * Whether the terminal comes back without --shell-job: a pty master, a slave whose
   * master is in the tree or gone (hung up), /dev/tty of a task whose controlling
   * terminal is such a pty, a console, virtual terminal or serial line.
   */
  private restorableHere(f: FdFacts, d: TtyDriver, hung: boolean): boolean {
    if (d.type === "PTY") return d.master || hung || this.paired(d.index);
    // criu opens a console, a virtual terminal or a serial line by its path again (with -j, a VT or a serial line is the job's terminal)
    if (d.type === "CONSOLE" || d.type === "VT" || d.type === "SERIAL") return !hung;
    if (d.type !== "CTTY" || hung) return false;
    const [maj, min] = deviceNumbers(BigInt(parseStat(readProc(f.pid, "stat")).ttyNr));
    return maj >= 136 && maj <= 143 && this.paired((maj - 136) * 256 + min);
  }

  /** criu's dump_verify_tty_sids: the session a terminal controls has its leader in the tree. */
  private checkSession(f: FdFacts, info: Record<string, unknown>): void {
    const sid = Number(info["sid"]);
    if (sid !== 0 && !this.ctx.pids.includes(sid)) {
      throw new UnsupportedFd(`unsupported fd ${f.fd}: tty ${f.link} is the controlling terminal of session ${sid}, whose leader is not in the dumped tree (${SHELL_JOB_HINT})`);
    }
  }

  private info(f: FdFacts, d: TtyDriver, infoId: number, hung: boolean): Record<string, unknown> {
    const base: Record<string, unknown> = {
      id: infoId,
      type: d.type,
      locked: false,
      exclusive: false,
      packet_mode: false,
      sid: 0,
      pgrp: 0,
      rdev: Number(f.st.rdev),
    };
    const tail: Record<string, unknown> = { dev: Number(f.st.dev), uid: Number(f.st.uid), gid: Number(f.st.gid) };
    if (d.type === "PTY") tail["pty"] = { index: d.index };
    // criu keeps only this of a hung-up terminal; its restore knows one by the missing termios
    if (hung) return { ...base, ...tail };
    const t = bridge().ttyInfo(f.copy);
    // From tscriu, TIOCGSID and TIOCGPGRP answer on a master only (for its slave).
    const own = d.master ? { sid: Math.max(0, t.sid), pgrp: Math.max(0, t.pgrp) } : sessionOf(f.pid, d.type === "CTTY" ? parseStat(readProc(f.pid, "stat")).ttyNr : Number(f.st.rdev));
    return {
      ...base,
      locked: t.locked !== 0,
      exclusive: t.exclusive !== 0,
      packet_mode: t.packetMode !== 0,
      ...own,
      termios: termiosEntry(t.termios),
      termios_locked: termiosEntry(t.lockedTermios),
      winsize: { ws_row: t.rows, ws_col: t.cols, ws_xpixel: t.xpixel, ws_ypixel: t.ypixel },
      ...tail,
    };
  }

  images(): ExtraImage[] {
    if (!this.infos.length) return [];
    const data = this.queues.entries();
    // Masters first: criu pairs the pty ends in tty-info.img's order, and two slaves that
    // come before their master are paired with each other (its restore then writes each
    // end's queued data the wrong way).
    const infos = [...this.infos].sort((a, b) => (Number(b["id"]) & 1) - (Number(a["id"]) & 1));
    return [{ name: "tty-info.img", type: "TTY_INFO", entries: infos }, ...(data.length ? [{ name: "tty-data.img", type: "TTY_DATA", entries: data }] : [])];
  }

  release(outcome: "resume" | "kill" | "stop"): void {
    this.queues.release(outcome);
  }
}

export const ttyKind: FdKind = {
  type: "TTY",
  describe: "terminals: pty pairs made in the tree, /dev/tty, a shell job's terminal (--shell-job)",
  images: ["tty-info.img", "tty-data.img"],
  dumper: (ctx) => new TtyDumper(ctx),
  restorer: (ctx) => new TtyRestorer(ctx),
};
