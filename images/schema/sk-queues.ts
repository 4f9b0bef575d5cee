// Socket payloads saved beside the sockets: queued packets (sk-queues.img)
// and TCP stream state (tcp-stream-N.img), plus per-socket TCP options.
import { message, opt, rep, req } from "./dsl.js";
import { pidfs_attr_entry } from "./anon-files.js";

export const tcp_opts_entry = message("tcp_opts_entry", {
  cork: opt(1, "bool"),
  nodelay: opt(2, "bool"),
  keepcnt: opt(3, "uint32"),
  keepidle: opt(4, "uint32"),
  keepintvl: opt(5, "uint32"),
});

export const tcp_stream_entry = message("tcp_stream_entry", {
  inq_len: req(1, "uint32"),
  inq_seq: req(2, "uint32"),
  outq_len: req(3, "uint32"),
  outq_seq: req(4, "uint32"),
  opt_mask: req(5, "uint32", { hex: true }),
  snd_wscale: req(6, "uint32"),
  mss_clamp: req(7, "uint32"),
  rcv_wscale: opt(8, "uint32"),
  timestamp: opt(9, "uint32"),
  cork: opt(10, "bool"),
  nodelay: opt(11, "bool"),
  unsq_len: opt(12, "uint32"),
  snd_wl1: opt(13, "uint32"),
  snd_wnd: opt(14, "uint32"),
  max_window: opt(15, "uint32"),
  rcv_wnd: opt(16, "uint32"),
  rcv_wup: opt(17, "uint32"),
});

export const scm_entry = message("scm_entry", {
  type: req(1, "uint32"),
  rights: rep(2, "uint32"),
});

export const sk_ucred_entry = message("sk_ucred_entry", {
  uid: req(1, "uint32"),
  gid: req(2, "uint32"),
  pid: req(3, "uint32"),
});

export const sk_packet_entry = message("sk_packet_entry", {
  id_for: req(1, "uint32"),
  length: req(2, "uint32"),
  scm: rep(4, scm_entry),
  ucred: opt(128, sk_ucred_entry),
  dead_pid: opt(129, pidfs_attr_entry),
});
