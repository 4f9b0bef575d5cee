// Sockets: common socket options, inet, unix, packet and netlink sockets.
import { enumeration, message, opt, rep, req } from "./dsl.js";
import { fown_entry } from "./file-common.js";
import { tcp_opts_entry } from "./sk-queues.js";

export const sk_shutdown = enumeration("sk_shutdown", {
  NONE: 0,
  READ: 1,
  WRITE: 2,
  BOTH: 3,
});

export const sk_opts_entry = message("sk_opts_entry", {
  so_sndbuf: req(1, "uint32"),
  so_rcvbuf: req(2, "uint32"),
  so_snd_tmo_sec: req(3, "uint64"),
  so_snd_tmo_usec: req(4, "uint64"),
  so_rcv_tmo_sec: req(5, "uint64"),
  so_rcv_tmo_usec: req(6, "uint64"),
  reuseaddr: opt(7, "bool"),
  so_priority: opt(8, "uint32"),
  so_rcvlowat: opt(9, "uint32"),
  so_mark: opt(10, "uint32"),
  so_passcred: opt(11, "bool"),
  so_passsec: opt(12, "bool"),
  so_dontroute: opt(13, "bool"),
  so_no_check: opt(14, "bool"),
  so_bound_dev: opt(15, "string"),
  so_filter: rep(16, "fixed64"),
  so_reuseport: opt(17, "bool"),
  so_broadcast: opt(18, "bool"),
  so_keepalive: opt(19, "bool"),
  tcp_keepcnt: opt(20, "uint32"),
  tcp_keepidle: opt(21, "uint32"),
  tcp_keepintvl: opt(22, "uint32"),
  so_oobinline: opt(23, "uint32"),
  so_linger: opt(24, "uint32"),
  so_buf_lock: opt(25, "uint32"),
  so_passpidfd: opt(26, "bool"),
  so_passrights: opt(27, "bool"),
});

export const ip_opts_raw_entry = message("ip_opts_raw_entry", {
  hdrincl: opt(1, "bool"),
  nodefrag: opt(2, "bool"),
  checksum: opt(3, "bool"),
  icmpv_filter: rep(4, "uint32"),
});

export const ip_opts_entry = message("ip_opts_entry", {
  freebind: opt(1, "bool"),
  raw: opt(4, ip_opts_raw_entry),
  pktinfo: opt(5, "bool"),
  tos: opt(6, "uint32"),
  ttl: opt(7, "uint32"),
});

export const inet_sk_entry = message("inet_sk_entry", {
  id: req(1, "uint32"),
  ino: req(2, "uint32"),
  family: req(3, "uint32", { dict: "sk" }),
  type: req(4, "uint32", { dict: "sk" }),
  proto: req(5, "uint32", { dict: "sk" }),
  state: req(6, "uint32", { dict: "sk" }),
  src_port: req(7, "uint32"),
  dst_port: req(8, "uint32"),
  flags: req(9, "uint32", { hex: true }),
  backlog: req(10, "uint32"),
  src_addr: rep(11, "uint32", { ipadd: true }),
  dst_addr: rep(12, "uint32", { ipadd: true }),
  fown: req(13, fown_entry),
  opts: req(14, sk_opts_entry),
  v6only: opt(15, "bool"),
  ip_opts: opt(16, ip_opts_entry),
  ifname: opt(17, "string"),
  ns_id: opt(18, "uint32"),
  shutdown: opt(19, sk_shutdown),
  tcp_opts: opt(20, tcp_opts_entry),
});

export const file_perms_entry = message("file_perms_entry", {
  mode: req(1, "uint32"),
  uid: req(2, "uint32"),
  gid: req(3, "uint32"),
});

export const unix_sk_entry = message("unix_sk_entry", {
  id: req(1, "uint32"),
  ino: req(2, "uint32"),
  type: req(3, "uint32", { dict: "sk" }),
  state: req(4, "uint32", { dict: "sk" }),
  flags: req(5, "uint32", { hex: true }),
  uflags: req(6, "uint32", { hex: true }),
  backlog: req(7, "uint32"),
  peer: req(8, "uint32"),
  fown: req(9, fown_entry),
  opts: req(10, sk_opts_entry),
  name: req(11, "bytes", { conv: "unix_name" }),
  shutdown: opt(12, sk_shutdown),
  file_perms: opt(13, file_perms_entry),
  name_dir: opt(14, "string"),
  deleted: opt(15, "bool"),
  ns_id: opt(16, "uint32"),
  mnt_id: opt(17, "sint32"),
});

export const packet_mclist = message("packet_mclist", {
  index: req(1, "uint32"),
  type: req(2, "uint32"),
  addr: req(3, "bytes"),
});

export const packet_ring = message("packet_ring", {
  block_size: req(1, "uint32"),
  block_nr: req(2, "uint32"),
  frame_size: req(3, "uint32"),
  frame_nr: req(4, "uint32"),
  retire_tmo: req(5, "uint32"),
  sizeof_priv: req(6, "uint32"),
  features: req(7, "uint32"),
});

export const packet_sock_entry = message("packet_sock_entry", {
  id: req(1, "uint32"),
  type: req(2, "uint32"),
  protocol: req(3, "uint32"),
  flags: req(4, "uint32", { hex: true }),
  ifindex: req(5, "uint32"),
  fown: req(6, fown_entry),
  opts: req(7, sk_opts_entry),
  version: req(8, "uint32"),
  reserve: req(9, "uint32"),
  aux_data: req(10, "bool"),
  orig_dev: req(11, "bool"),
  vnet_hdr: req(12, "bool"),
  loss: req(13, "bool"),
  timestamp: req(14, "uint32"),
  copy_thresh: req(15, "uint32"),
  mclist: rep(16, packet_mclist),
  fanout: opt(17, "uint32"),
  rx_ring: opt(18, packet_ring),
  tx_ring: opt(19, packet_ring),
  ns_id: opt(20, "uint32"),
});

export const netlink_sk_entry = message("netlink_sk_entry", {
  id: req(1, "uint32"),
  ino: req(2, "uint32"),
  protocol: req(3, "uint32"),
  state: req(4, "uint32"),
  flags: req(6, "uint32", { hex: true }),
  portid: req(7, "uint32"),
  groups: rep(8, "uint32"),
  dst_portid: req(9, "uint32"),
  dst_group: req(10, "uint32"),
  fown: req(11, fown_entry),
  opts: req(12, sk_opts_entry),
  ns_id: opt(13, "uint32"),
});
