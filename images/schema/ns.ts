// Namespaces: ns files, user/uts/pid/time namespace images.
import { message, opt, rep, req } from "./dsl.js";

export const ns_file_entry = message("ns_file_entry", {
  id: req(1, "uint32"),
  ns_id: req(2, "uint32"),
  ns_cflag: req(3, "uint32"),
  flags: req(4, "uint32"),
});

export const uid_gid_extent = message("uid_gid_extent", {
  first: req(1, "uint32"),
  lower_first: req(2, "uint32"),
  count: req(3, "uint32"),
});

export const userns_entry = message("userns_entry", {
  uid_map: rep(1, uid_gid_extent),
  gid_map: rep(2, uid_gid_extent),
});

export const utsns_entry = message("utsns_entry", {
  nodename: req(1, "string"),
  domainname: req(2, "string"),
});

export const pidns_entry = message("pidns_entry", {
  ext_key: opt(1, "string"),
});

export const timespec = message("timespec", {
  tv_sec: req(1, "uint64"),
  tv_nsec: req(2, "uint64"),
});

export const timens_entry = message("timens_entry", {
  monotonic: req(1, timespec),
  boottime: req(2, timespec),
});
