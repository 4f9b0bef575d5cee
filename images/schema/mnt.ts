// Mount points, binfmt_misc entries and autofs mounts.
import { enumeration, message, opt, req } from "./dsl.js";

export const fstype = enumeration("fstype", {
  UNSUPPORTED: 0,
  PROC: 1,
  SYSFS: 2,
  DEVTMPFS: 3,
  BINFMT_MISC: 4,
  TMPFS: 5,
  DEVPTS: 6,
  SIMFS: 7,
  PSTORE: 8,
  SECURITYFS: 9,
  FUSECTL: 10,
  DEBUGFS: 11,
  CGROUP: 12,
  AUFS: 13,
  MQUEUE: 14,
  FUSE: 15,
  AUTO: 16,
  OVERLAYFS: 17,
  AUTOFS: 18,
  TRACEFS: 19,
  CGROUP2: 23,
});

export const mnt_entry = message("mnt_entry", {
  fstype: req(1, "uint32"),
  mnt_id: req(2, "uint32"),
  root_dev: req(3, "uint32", { dev: true }),
  parent_mnt_id: req(4, "uint32"),
  flags: req(5, "uint32", { hex: true }),
  root: req(6, "string"),
  mountpoint: req(7, "string"),
  source: req(8, "string"),
  options: req(9, "string"),
  shared_id: opt(10, "uint32"),
  master_id: opt(11, "uint32"),
  with_plugin: opt(12, "bool"),
  ext_mount: opt(13, "bool"),
  fsname: opt(14, "string"),
  internal_sharing: opt(15, "bool"),
  deleted: opt(16, "bool"),
  sb_flags: opt(17, "uint32", { hex: true }),
  ext_key: opt(18, "string"),
});

export const binfmt_misc_entry = message("binfmt_misc_entry", {
  name: req(1, "string"),
  enabled: req(2, "bool"),
  interpreter: req(3, "string"),
  flags: opt(4, "string"),
  extension: opt(5, "string"),
  magic: opt(6, "string"),
  mask: opt(7, "string"),
  offset: opt(8, "int32"),
});

export const autofs_entry = message("autofs_entry", {
  fd: req(1, "int32"),
  pgrp: req(2, "int32"),
  timeout: req(3, "int32"),
  minproto: req(4, "int32"),
  maxproto: req(5, "int32"),
  mode: req(6, "int32"),
  uid: opt(7, "int32"),
  gid: opt(8, "int32"),
  read_fd: opt(9, "int32"),
});
