// Regular files and what hangs off them: reg files, ghost (unlinked) files,
// remaps, memfds, flocks and external files.
import { enumeration, message, opt, rep, req } from "./dsl.js";
import { fown_entry } from "./file-common.js";

export const reg_file_entry = message("reg_file_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32", { flags: "rfile.flags" }),
  pos: req(3, "uint64"),
  fown: req(5, fown_entry),
  name: req(6, "string"),
  mnt_id: opt(7, "sint32"),
  size: opt(8, "uint64"),
  ext: opt(9, "bool"),
  mode: opt(10, "uint32"),
  build_id: rep(11, "uint32"),
  checksum: opt(12, "uint32"),
  checksum_config: opt(13, "uint32"),
  checksum_parameter: opt(14, "uint32"),
});

export const remap_type = enumeration("remap_type", {
  LINKED: 0,
  GHOST: 1,
  PROCFS: 2,
});

export const remap_file_path_entry = message("remap_file_path_entry", {
  orig_id: req(1, "uint32"),
  remap_id: req(2, "uint32"),
  remap_type: opt(3, remap_type),
});

export const timeval = message("timeval", {
  tv_sec: req(1, "uint64"),
  tv_usec: req(2, "uint64"),
});

export const ghost_file_entry = message("ghost_file_entry", {
  uid: req(1, "uint32"),
  gid: req(2, "uint32"),
  mode: req(3, "uint32"),
  dev: opt(4, "uint32", { dev: true }),
  ino: opt(5, "uint64"),
  rdev: opt(6, "uint32", { dev: true, odev: true }),
  atim: opt(7, timeval),
  mtim: opt(8, timeval),
  chunks: opt(9, "bool"),
  size: opt(10, "uint64"),
  symlnk_target: opt(11, "string"),
});

export const ghost_chunk_entry = message("ghost_chunk_entry", {
  len: req(1, "uint64"),
  off: req(2, "uint64"),
});

export const memfd_file_entry = message("memfd_file_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32", { flags: "rfile.flags" }),
  pos: req(3, "uint64"),
  fown: req(4, fown_entry),
  inode_id: req(5, "uint32"),
});

export const memfd_inode_entry = message("memfd_inode_entry", {
  name: req(1, "string"),
  uid: req(2, "uint32"),
  gid: req(3, "uint32"),
  size: req(4, "uint64"),
  shmid: req(5, "uint32"),
  seals: req(6, "uint32", { flags: "seals.flags" }),
  inode_id: req(7, "uint64"),
  hugetlb_flag: opt(8, "uint32"),
  mode: opt(9, "uint32"),
});

export const file_lock_entry = message("file_lock_entry", {
  flag: req(1, "uint32"),
  type: req(2, "uint32"),
  pid: req(3, "int32"),
  fd: req(4, "int32"),
  start: req(5, "int64"),
  len: req(6, "int64"),
});

export const ext_file_entry = message("ext_file_entry", {
  id: req(1, "uint32"),
  fown: req(5, fown_entry),
});
