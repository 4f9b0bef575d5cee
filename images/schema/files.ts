// files.img and fdinfo-N.img: every open file, tagged by kind, and the fd table.
import { enumeration, message, opt, req } from "./dsl.js";
import {
  bpfmap_file_entry,
  eventfd_file_entry,
  eventpoll_file_entry,
  pidfd_entry,
  signalfd_entry,
  timerfd_entry,
} from "./anon-files.js";
import { ext_file_entry, memfd_file_entry, reg_file_entry } from "./files-reg.js";
import { fanotify_file_entry, inotify_file_entry } from "./fsnotify.js";
import { tunfile_entry } from "./net.js";
import { ns_file_entry } from "./ns.js";
import { fifo_entry, pipe_entry } from "./pipes.js";
import { inet_sk_entry, netlink_sk_entry, packet_sock_entry, unix_sk_entry } from "./sockets.js";
import { tty_file_entry } from "./tty.js";

export const fd_types = enumeration("fd_types", {
  UND: 0,
  REG: 1,
  PIPE: 2,
  FIFO: 3,
  INETSK: 4,
  UNIXSK: 5,
  EVENTFD: 6,
  EVENTPOLL: 7,
  INOTIFY: 8,
  SIGNALFD: 9,
  PACKETSK: 10,
  TTY: 11,
  FANOTIFY: 12,
  NETLINKSK: 13,
  NS: 14,
  TUNF: 15,
  EXT: 16,
  TIMERFD: 17,
  MEMFD: 18,
  BPFMAP: 19,
  PIDFD: 20,
  CTL_TTY: 65534,
  AUTOFS_PIPE: 65535,
});

export const fdinfo_entry = message("fdinfo_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32"),
  type: req(3, fd_types),
  fd: req(4, "uint32"),
  xattr_security_selinux: opt(5, "string"),
});

export const file_entry = message("file_entry", {
  type: req(1, fd_types),
  id: req(2, "uint32"),
  reg: opt(3, reg_file_entry),
  isk: opt(4, inet_sk_entry),
  nsf: opt(5, ns_file_entry),
  psk: opt(6, packet_sock_entry),
  nlsk: opt(7, netlink_sk_entry),
  efd: opt(8, eventfd_file_entry),
  epfd: opt(9, eventpoll_file_entry),
  sgfd: opt(10, signalfd_entry),
  tunf: opt(11, tunfile_entry),
  tfd: opt(12, timerfd_entry),
  ify: opt(13, inotify_file_entry),
  ffy: opt(14, fanotify_file_entry),
  ext: opt(15, ext_file_entry),
  usk: opt(16, unix_sk_entry),
  fifo: opt(17, fifo_entry),
  pipe: opt(18, pipe_entry),
  tty: opt(19, tty_file_entry),
  memfd: opt(20, memfd_file_entry),
  bpf: opt(21, bpfmap_file_entry),
  pidfd: opt(22, pidfd_entry),
});
