// Pieces shared by many file kinds: the F_SETOWN owner and file handles
// (fown, fh), plus the irmap cache that maps inodes to paths.
import { enumeration, message, opt, rep, req } from "./dsl.js";

export const fown_entry = message("fown_entry", {
  uid: req(1, "uint32"),
  euid: req(2, "uint32"),
  signum: req(3, "uint32"),
  pid_type: req(4, "uint32"),
  pid: req(5, "uint32"),
});

export const fh_entry_sizes = enumeration("fh_entry_sizes", {
  min_entries: 16,
});

export const fh_entry = message("fh_entry", {
  bytes: req(1, "uint32"),
  type: req(2, "uint32"),
  handle: rep(3, "uint64"),
  path: opt(4, "string"),
  mnt_id: opt(5, "uint32"),
});

export const irmap_cache_entry = message("irmap_cache_entry", {
  dev: req(1, "uint32", { dev: true, odev: true }),
  inode: req(2, "uint64"),
  path: req(3, "string"),
});
