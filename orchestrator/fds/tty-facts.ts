// What dump and restore both know of terminals: device numbers, criu's tty drivers and
// the ids it gives their tty-info.img entries, and termios as images hold them.

import { bridge } from "../../host-bridge/load.js";
import type { Termios, TtyParams } from "../../host-bridge/native.js";

/** [major, minor] of glibc's dev_t. */
export function deviceNumbers(dev: bigint): [number, number] {
  return [Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)), Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn))];
}

export function isTtyMajor(maj: number): boolean {
  return maj === 4 || maj === 5 || (maj >= 136 && maj <= 143) || (maj >= 128 && maj <= 135);
}

/** criu's index of /dev/tty (its CTTY driver): tty-info id 2012. */
const CTTY_INDEX = 1006;

export interface TtyDriver {
  /** criu's TtyType */
  type: "PTY" | "CONSOLE" | "VT" | "SERIAL" | "CTTY";
  index: number;
  /** a pty master: its info id is odd */
  master: boolean;
}

/** Which terminal device `rdev` is (`fd` tells a ptmx master's index). */
export function ttyDriver(rdev: bigint, fd: number): TtyDriver {
  const [maj, min] = deviceNumbers(rdev);
  if (maj >= 136 && maj <= 143) return { type: "PTY", index: (maj - 136) * 256 + min, master: false };
  if (maj === 5 && min === 2) return { type: "PTY", index: bridge().ttyInfo(fd).ptyIndex, master: true };
  if (maj >= 128 && maj <= 135) return { type: "PTY", index: (maj - 128) * 256 + min, master: true };
  if (maj === 5 && min === 1) return { type: "CONSOLE", index: 0, master: false };
  if (maj === 5 && min === 0) return { type: "CTTY", index: CTTY_INDEX, master: false };
  if (maj === 4 && min < 64) return { type: "VT", index: min, master: false };
  if (maj === 4) return { type: "SERIAL", index: min, master: false };
  throw new Error(`unsupported terminal ${maj}:${min}`);
}

/** criu's tty_gen_id: a pty's master and slave get neighbouring ids. */
export function ttyInfoId(d: TtyDriver): number {
  return (d.index << 1) + (d.master ? 1 : 0);
}

/** criu's TERMIOS_NCC: the values of termios_entry.c_cc (its check wants at least that many). */
const TERMIOS_NCC = 19;

/**
 * criu copies glibc's 32 bytes of c_cc over its uint32 array (termios_copy's memcpy)
 * and back: 4 control characters a value, little-endian, in the first 8 of the 19
 * values (criu leaves the others uninitialised; tscriu writes 0).
 */
function packCc(cc: readonly number[]): number[] {
  const bytes = Buffer.alloc(TERMIOS_NCC * 4);
  cc.slice(0, 32).forEach((c, i) => bytes.writeUInt8(c & 0xff, i));
  return Array.from({ length: TERMIOS_NCC }, (_, i) => (i < 8 ? bytes.readUInt32LE(i * 4) : 0));
}

/**
 * The control characters of a termios_entry. tscriu's images before it followed criu
 * held one character a value: none of their first 8 is past 255, while criu's first
 * packs VINTR, VQUIT, VERASE and VKILL (VQUIT alone makes it one).
 */
function unpackCc(values: readonly number[]): number[] {
  if (!values.slice(0, 8).some((v) => v > 0xff)) return values.slice(0, TERMIOS_NCC);
  const bytes = Buffer.alloc(32);
  values.slice(0, 8).forEach((v, i) => bytes.writeUInt32LE(v >>> 0, i * 4));
  return [...bytes.subarray(0, TERMIOS_NCC)];
}

export function termiosEntry(t: Termios): Record<string, unknown> {
  return { c_iflag: t.iflag, c_oflag: t.oflag, c_cflag: t.cflag, c_lflag: t.lflag, c_line: t.line, c_ispeed: 0, c_ospeed: 0, c_cc: packCc(t.cc) };
}

type TermiosEntry = { c_iflag: number; c_oflag: number; c_cflag: number; c_lflag: number; c_line: number; c_cc: number[] };

function termios(e: TermiosEntry | undefined): Termios | undefined {
  return e && { iflag: e.c_iflag, oflag: e.c_oflag, cflag: e.c_cflag, lflag: e.c_lflag, line: e.c_line, cc: unpackCc(e.c_cc) };
}

/** What of a tty-info.img entry goes back onto the terminal (each part is optional there). */
export function ttyParams(info: Record<string, unknown> | undefined): TtyParams {
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
