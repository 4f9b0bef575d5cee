// Terminals of a shell job (--shell-job): each tty fd is a TTY files.img entry plus a
// REG entry of the same id naming the device (criu restores the pair through it),
// and each terminal one tty-info.img entry with its termios, window size and pty index.

import type { BigIntStats } from "node:fs";
import { bridge } from "../../host-bridge/load.js";
import type { Termios } from "../../host-bridge/native.js";
import type { FileTable, Fown } from "./filetable.js";

export interface TtyState {
  infos: Record<string, unknown>[];
  seen: Set<number>;
}

export function newTtyState(): TtyState {
  return { infos: [], seen: new Set() };
}

function devParts(dev: bigint): [number, number] {
  return [Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)), Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn))];
}

function termiosEntry(t: Termios): Record<string, unknown> {
  return { c_iflag: t.iflag, c_oflag: t.oflag, c_cflag: t.cflag, c_lflag: t.lflag, c_line: t.line, c_ispeed: 0, c_ospeed: 0, c_cc: t.cc };
}

/** Which terminal this is: criu's TtyType and the index its id is made from. */
function driver(rdev: bigint, fd: number): { type: string; index: number; master: boolean } {
  const [maj, min] = devParts(rdev);
  if (maj >= 136 && maj <= 143) return { type: "PTY", index: (maj - 136) * 256 + min, master: false };
  if (maj === 5 && min === 2) return { type: "PTY", index: bridge().ttyInfo(fd).ptyIndex, master: true };
  if (maj >= 128 && maj <= 135) return { type: "PTY", index: (maj - 128) * 256 + min, master: true };
  if (maj === 5 && min === 1) return { type: "CONSOLE", index: 0, master: false };
  if (maj === 4 && min < 64) return { type: "VT", index: min, master: false };
  if (maj === 4) return { type: "SERIAL", index: min, master: false };
  throw new Error(`unsupported terminal ${maj}:${min}`);
}

export function ttyFile(
  state: TtyState,
  files: FileTable,
  id: number,
  fd: number,
  st: BigIntStats,
  link: string,
  flags: number,
  fown: Fown,
  pid: number,
): void {
  const d = driver(st.rdev, fd);
  const infoId = (d.index << 1) + (d.master ? 1 : 0);
  files.add({ type: "REG", id, reg: files.regEntry(id, fd, st, link, flags, 0n, fown, pid) });
  files.add({ type: "TTY", id, tty: { id, tty_info_id: infoId, flags, fown } });
  if (state.seen.has(infoId)) return;
  state.seen.add(infoId);
  const t = bridge().ttyInfo(fd);
  const info: Record<string, unknown> = {
    id: infoId,
    type: d.type,
    locked: t.locked !== 0,
    exclusive: t.exclusive !== 0,
    packet_mode: t.packetMode !== 0,
    sid: Math.max(0, t.sid),
    pgrp: Math.max(0, t.pgrp),
    rdev: Number(st.rdev),
    termios: termiosEntry(t.termios),
    termios_locked: termiosEntry(t.lockedTermios),
    winsize: { ws_row: t.rows, ws_col: t.cols, ws_xpixel: t.xpixel, ws_ypixel: t.ypixel },
    dev: Number(st.dev),
  };
  if (d.type === "PTY") info["pty"] = { index: d.index };
  state.infos.push(info);
}
