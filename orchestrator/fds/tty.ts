// Terminals of a shell job (--shell-job, criu's tty.c): each tty fd is a TTY files.img
// entry plus a REG entry of the same id naming the device (criu restores the pair
// through it), and each terminal one tty-info.img entry with its termios, locked
// termios, window size and pty index. On restore the job comes back on tscriu's own
// terminal (as criu), which gets the dumped settings, so a program in raw mode stays in
// raw mode; without a terminal of tscriu's, the image's device path is opened.

import { constants as fsc, openSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import type { Termios, TtyParams } from "../../host-bridge/native.js";
import type { FileEntry } from "../../images/dir.js";
import { RestoreError } from "../restore/errors.js";
import { reopenFlags } from "../restore/fileset.js";
import { closeFds, regOf, UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";
import { regInheritKeys } from "./regular.js";

const O_CLOEXEC = 0o2000000;

/** node:tty brings node:net with it (~5 ms of every dump and restore): loaded when a shell job is restored. */
function isatty(fd: number): boolean {
  return (createRequire(import.meta.url)("node:tty") as typeof import("node:tty")).isatty(fd);
}

/** [major, minor] of glibc's dev_t. */
export function deviceNumbers(dev: bigint): [number, number] {
  return [Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)), Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn))];
}

export function isTtyMajor(maj: number): boolean {
  return maj === 4 || maj === 5 || (maj >= 136 && maj <= 143) || (maj >= 128 && maj <= 135);
}

function termiosEntry(t: Termios): Record<string, unknown> {
  return { c_iflag: t.iflag, c_oflag: t.oflag, c_cflag: t.cflag, c_lflag: t.lflag, c_line: t.line, c_ispeed: 0, c_ospeed: 0, c_cc: t.cc };
}

/** Which terminal this is: criu's TtyType and the index its id is made from. */
function driver(rdev: bigint, fd: number): { type: string; index: number; master: boolean } {
  const [maj, min] = deviceNumbers(rdev);
  if (maj >= 136 && maj <= 143) return { type: "PTY", index: (maj - 136) * 256 + min, master: false };
  if (maj === 5 && min === 2) return { type: "PTY", index: bridge().ttyInfo(fd).ptyIndex, master: true };
  if (maj >= 128 && maj <= 135) return { type: "PTY", index: (maj - 128) * 256 + min, master: true };
  if (maj === 5 && min === 1) return { type: "CONSOLE", index: 0, master: false };
  if (maj === 4 && min < 64) return { type: "VT", index: min, master: false };
  if (maj === 4) return { type: "SERIAL", index: min, master: false };
  throw new Error(`unsupported terminal ${maj}:${min}`);
}

class TtyDumper implements FdDumper {
  private readonly infos: Record<string, unknown>[] = [];
  private readonly seen = new Set<number>();

  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return f.fmt === fsc.S_IFCHR && isTtyMajor(deviceNumbers(f.st.rdev)[0]);
  }

  dump(f: FdFacts): { id: number; type: string } {
    if (!this.ctx.shellJob) throw new UnsupportedFd(`unsupported fd ${f.fd}: tty ${f.link} (dump a shell job with --shell-job)`);
    const files = this.ctx.files;
    const id = files.newId();
    const fown = f.fown();
    const d = driver(f.st.rdev, f.copy);
    const infoId = (d.index << 1) + (d.master ? 1 : 0);
    files.add({ type: "REG", id, reg: files.regEntry(id, f.copy, f.st, f.link, f.flags, 0n, fown, f.pid) });
    files.add({ type: "TTY", id, tty: { id, tty_info_id: infoId, flags: f.flags, fown } });
    if (!this.seen.has(infoId)) {
      this.seen.add(infoId);
      this.infos.push(this.info(f, d, infoId));
    }
    return { id, type: "TTY" };
  }

  private info(f: FdFacts, d: { type: string; index: number }, infoId: number): Record<string, unknown> {
    const t = bridge().ttyInfo(f.copy);
    const info: Record<string, unknown> = {
      id: infoId,
      type: d.type,
      locked: t.locked !== 0,
      exclusive: t.exclusive !== 0,
      packet_mode: t.packetMode !== 0,
      sid: Math.max(0, t.sid),
      pgrp: Math.max(0, t.pgrp),
      rdev: Number(f.st.rdev),
      termios: termiosEntry(t.termios),
      termios_locked: termiosEntry(t.lockedTermios),
      winsize: { ws_row: t.rows, ws_col: t.cols, ws_xpixel: t.xpixel, ws_ypixel: t.ypixel },
      dev: Number(f.st.dev),
    };
    if (d.type === "PTY") info["pty"] = { index: d.index };
    return info;
  }

  images(): ExtraImage[] {
    return this.infos.length ? [{ name: "tty-info.img", type: "TTY_INFO", entries: this.infos }] : [];
  }
}

type TermiosEntry = { c_iflag: number; c_oflag: number; c_cflag: number; c_lflag: number; c_line: number; c_cc: number[] };

function termios(e: TermiosEntry | undefined): Termios | undefined {
  return e && { iflag: e.c_iflag, oflag: e.c_oflag, cflag: e.c_cflag, lflag: e.c_lflag, line: e.c_line, cc: e.c_cc };
}

/** What of a tty-info.img entry goes back onto the terminal (each part is optional there). */
function ttyParams(info: Record<string, unknown> | undefined): TtyParams {
  if (!info) return {};
  const w = info["winsize"] as { ws_row: number; ws_col: number; ws_xpixel: number; ws_ypixel: number } | undefined;
  const t = termios(info["termios"] as TermiosEntry | undefined);
  const lt = termios(info["termios_locked"] as TermiosEntry | undefined);
  return {
    ...(lt ? { lockedTermios: lt } : {}),
    ...(t ? { termios: t } : {}),
    ...(w ? { winsize: { rows: w.ws_row, cols: w.ws_col, xpixel: w.ws_xpixel, ypixel: w.ws_ypixel } } : {}),
  };
}

/** The terminal a shell job gets: tscriu's own (as criu), else the image's device path. */
function shellTty(path: string, flags: number): number {
  for (const fd of [0, 1, 2]) if (isatty(fd)) return openSync(`/proc/self/fd/${fd}`, reopenFlags(flags) | O_CLOEXEC | fsc.O_NOCTTY);
  try {
    return openSync(path, reopenFlags(flags) | O_CLOEXEC | fsc.O_NOCTTY);
  } catch (e) {
    throw new Error(`--shell-job: tscriu has no terminal on fds 0-2 and ${path} cannot be opened (${(e as NodeJS.ErrnoException).code ?? ""})`);
  }
}

class TtyRestorer implements FdRestorer {
  private infos: Promise<Map<number, Record<string, unknown>>> | undefined;
  private readonly mine: number[] = [];

  constructor(private readonly ctx: PlanContext) {}

  private async info(id: number): Promise<Record<string, unknown> | undefined> {
    this.infos ??= (async () => new Map(((await this.ctx.optional("tty-info.img")) ?? []).map((e) => [Number(e["id"]), e])))();
    return (await this.infos).get(id);
  }

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const t = e.tty;
    if (!t) throw new RestoreError("plan", this.ctx.pid, `${what}: a TTY entry without its tty fields`, { file: join(this.ctx.dir, "files.img") });
    if (!this.ctx.shellJob) throw new RestoreError("plan", this.ctx.pid, `${what} is a terminal: restore the shell job with --shell-job (-j)`);
    const name = regOf(this.ctx, e.id)?.reg?.name ?? "";
    const params = ttyParams(await this.info(t.tty_info_id));
    return {
      describe: name || "a terminal",
      fown: t.fown,
      open: () => {
        const fd = shellTty(name, t.flags);
        this.mine.push(fd);
        bridge().ttySetParams(fd, params);
        return fd;
      },
    };
  }

  async inheritKeys(e: FileEntry): Promise<string[]> {
    // criu's tty[rdev:dev] key, from tty-info.img
    const info = e.tty ? await this.info(e.tty.tty_info_id) : undefined;
    const keys = info ? [`tty[${Number(info["rdev"]).toString(16)}:${Number(info["dev"] ?? 0).toString(16)}]`] : [];
    return [...keys, ...regInheritKeys(regOf(this.ctx, e.id))];
  }

  close(): void {
    closeFds(this.mine);
  }
}

export const ttyKind: FdKind = {
  type: "TTY",
  describe: "terminals of a shell job (--shell-job)",
  images: ["tty-info.img"],
  dumper: (ctx) => new TtyDumper(ctx),
  restorer: (ctx) => new TtyRestorer(ctx),
};
