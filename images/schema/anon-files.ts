// Anonymous-inode files: eventfd, epoll, signalfd, timerfd, bpf maps, pidfds.
import { message, opt, rep, req } from "./dsl.js";
import { fown_entry } from "./file-common.js";

export const eventfd_file_entry = message("eventfd_file_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32"),
  fown: req(3, fown_entry),
  counter: req(4, "uint64"),
});

export const eventpoll_tfd_entry = message("eventpoll_tfd_entry", {
  id: req(1, "uint32"),
  tfd: req(2, "uint32"),
  events: req(3, "uint32"),
  data: req(4, "uint64"),
  dev: opt(5, "uint32"),
  inode: opt(6, "uint64"),
  pos: opt(7, "uint64"),
});

export const eventpoll_file_entry = message("eventpoll_file_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32"),
  fown: req(3, fown_entry),
  tfd: rep(4, eventpoll_tfd_entry),
});

export const signalfd_entry = message("signalfd_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32", { hex: true }),
  fown: req(3, fown_entry),
  sigmask: req(4, "uint64", { hex: true }),
});

export const timerfd_entry = message("timerfd_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32", { hex: true }),
  fown: req(3, fown_entry),
  clockid: req(4, "uint32"),
  ticks: req(5, "uint64"),
  settime_flags: req(6, "uint32", { hex: true }),
  vsec: req(7, "uint64"),
  vnsec: req(8, "uint64"),
  isec: req(9, "uint64"),
  insec: req(10, "uint64"),
});

export const bpfmap_file_entry = message("bpfmap_file_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32", { flags: "rfile.flags" }),
  pos: req(3, "uint64"),
  fown: req(4, fown_entry),
  map_type: req(5, "uint32"),
  key_size: req(6, "uint32"),
  value_size: req(7, "uint32"),
  map_id: req(8, "uint32"),
  max_entries: req(9, "uint32"),
  map_flags: req(10, "uint32"),
  memlock: req(11, "uint64"),
  frozen: req(12, "bool"),
  map_name: req(13, "string"),
  ifindex: req(14, "uint32"),
  mnt_id: opt(15, "sint32"),
  map_extra: opt(16, "uint64"),
});

export const bpfmap_data_entry = message("bpfmap_data_entry", {
  map_id: req(1, "uint32"),
  keys_bytes: req(2, "uint32"),
  values_bytes: req(3, "uint32"),
  count: req(4, "uint32"),
});

export const pidfs_attr_entry = message("pidfs_attr_entry", {
  exit_code: opt(1, "sint32"),
  ino: opt(2, "uint64"),
  dump_pid: opt(3, "uint32"),
});

export const pidfd_entry = message("pidfd_entry", {
  id: req(1, "uint32"),
  ino: req(2, "uint64"),
  flags: req(3, "uint32"),
  nspid: req(4, "int32"),
  fown: req(5, fown_entry),
  attr: opt(6, pidfs_attr_entry),
});
