// Terminals: tty files, their shared info (termios, winsize) and queued data.
import { enumeration, message, opt, rep, req } from "./dsl.js";
import { fown_entry } from "./file-common.js";

export const TtyType = enumeration("TtyType", {
  UNKNOWN: 0,
  PTY: 1,
  CONSOLE: 2,
  VT: 3,
  CTTY: 4,
  EXT_TTY: 5,
  SERIAL: 6,
});

export const winsize_entry = message("winsize_entry", {
  ws_row: req(1, "uint32"),
  ws_col: req(2, "uint32"),
  ws_xpixel: req(3, "uint32"),
  ws_ypixel: req(4, "uint32"),
});

export const termios_entry = message("termios_entry", {
  c_iflag: req(1, "uint32"),
  c_oflag: req(2, "uint32"),
  c_cflag: req(3, "uint32"),
  c_lflag: req(4, "uint32"),
  c_line: req(5, "uint32"),
  c_ispeed: req(6, "uint32"),
  c_ospeed: req(7, "uint32"),
  c_cc: rep(8, "uint32"),
});

export const tty_pty_entry = message("tty_pty_entry", {
  index: req(1, "uint32"),
});

export const tty_info_entry = message("tty_info_entry", {
  id: req(1, "uint32"),
  type: req(2, TtyType),
  locked: req(3, "bool"),
  exclusive: req(4, "bool"),
  packet_mode: req(5, "bool"),
  sid: req(6, "uint32"),
  pgrp: req(7, "uint32"),
  rdev: req(8, "uint32"),
  termios: opt(9, termios_entry),
  termios_locked: opt(10, termios_entry),
  winsize: opt(11, winsize_entry),
  pty: opt(12, tty_pty_entry),
  dev: opt(13, "uint32"),
  uid: opt(14, "uint32"),
  gid: opt(15, "uint32"),
});

export const tty_file_entry = message("tty_file_entry", {
  id: req(1, "uint32"),
  tty_info_id: req(2, "uint32"),
  flags: req(3, "uint32", { hex: true }),
  fown: req(4, fown_entry),
  regf_id: opt(6, "uint32"),
});

export const tty_data_entry = message("tty_data_entry", {
  tty_id: req(1, "uint32"),
  data: req(2, "bytes"),
});
