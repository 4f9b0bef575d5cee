// inotify and fanotify files with their watches and marks.
import { enumeration, message, opt, rep, req } from "./dsl.js";
import { fh_entry, fown_entry } from "./file-common.js";

export const mark_type = enumeration("mark_type", {
  INODE: 1,
  MOUNT: 2,
});

export const inotify_wd_entry = message("inotify_wd_entry", {
  id: req(1, "uint32"),
  i_ino: req(2, "uint64"),
  mask: req(3, "uint32", { hex: true }),
  ignored_mask: req(4, "uint32", { hex: true }),
  s_dev: req(5, "uint32", { dev: true }),
  wd: req(6, "uint32"),
  f_handle: req(7, fh_entry),
});

export const inotify_file_entry = message("inotify_file_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32", { hex: true }),
  fown: req(4, fown_entry),
  wd: rep(5, inotify_wd_entry),
});

export const fanotify_inode_mark_entry = message("fanotify_inode_mark_entry", {
  i_ino: req(1, "uint64"),
  f_handle: req(2, fh_entry),
});

export const fanotify_mount_mark_entry = message("fanotify_mount_mark_entry", {
  mnt_id: req(1, "uint32"),
  path: opt(2, "string"),
});

export const fanotify_mark_entry = message("fanotify_mark_entry", {
  id: req(1, "uint32"),
  type: req(2, mark_type),
  mflags: req(3, "uint32", { hex: true }),
  mask: req(4, "uint32", { hex: true }),
  ignored_mask: req(5, "uint32", { hex: true }),
  s_dev: req(6, "uint32", { dev: true }),
  ie: opt(7, fanotify_inode_mark_entry),
  me: opt(8, fanotify_mount_mark_entry),
});

export const fanotify_file_entry = message("fanotify_file_entry", {
  id: req(1, "uint32"),
  flags: req(2, "uint32", { hex: true }),
  fown: req(3, fown_entry),
  faflags: req(4, "uint32", { hex: true }),
  evflags: req(5, "uint32", { hex: true }),
  mark: rep(6, fanotify_mark_entry),
});
