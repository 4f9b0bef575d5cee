// Images that stand alone: fs, stats, cpuinfo, seccomp, apparmor, cipher.
import { enumeration, message, opt, rep, req } from "./dsl.js";
import { closeLoop } from "./recursive.js";

export const fs_entry = message("fs_entry", {
  cwd_id: req(1, "uint32"),
  root_id: req(2, "uint32"),
  umask: opt(3, "uint32"),
});

export const dump_stats_entry = message("dump_stats_entry", {
  freezing_time: req(1, "uint32"),
  frozen_time: req(2, "uint32"),
  memdump_time: req(3, "uint32"),
  memwrite_time: req(4, "uint32"),
  pages_scanned: req(5, "uint64"),
  pages_skipped_parent: req(6, "uint64"),
  pages_written: req(7, "uint64"),
  irmap_resolve: opt(8, "uint32"),
  pages_lazy: req(9, "uint64"),
  page_pipes: opt(10, "uint64"),
  page_pipe_bufs: opt(11, "uint64"),
  shpages_scanned: opt(12, "uint64"),
  shpages_skipped_parent: opt(13, "uint64"),
  shpages_written: opt(14, "uint64"),
});

export const restore_stats_entry = message("restore_stats_entry", {
  pages_compared: req(1, "uint64"),
  pages_skipped_cow: req(2, "uint64"),
  forking_time: req(3, "uint32"),
  restore_time: req(4, "uint32"),
  pages_restored: opt(5, "uint64"),
});

export const stats_entry = message("stats_entry", {
  dump: opt(1, dump_stats_entry),
  restore: opt(2, restore_stats_entry),
});

export const cpuinfo_x86_entry_vendor = enumeration("cpuinfo_x86_entry.vendor", {
  UNKNOWN: 0,
  INTEL: 1,
  AMD: 2,
});

export const cpuinfo_x86_entry = message("cpuinfo_x86_entry", {
  vendor_id: req(1, cpuinfo_x86_entry_vendor),
  cpu_family: req(2, "uint32"),
  model: req(3, "uint32"),
  stepping: req(4, "uint32"),
  capability_ver: req(5, "uint32"),
  capability: rep(6, "uint32"),
  model_id: opt(7, "string"),
  xfeatures_mask: opt(8, "uint64"),
  xsave_size: opt(9, "uint32"),
  xsave_size_max: opt(10, "uint32"),
});

export const cpuinfo_ppc64_entry_endianness = enumeration("cpuinfo_ppc64_entry.endianness", {
  BIGENDIAN: 0,
  LITTLEENDIAN: 1,
});

export const cpuinfo_ppc64_entry = message("cpuinfo_ppc64_entry", {
  endian: req(1, cpuinfo_ppc64_entry_endianness),
  hwcap: rep(2, "uint64"),
});

export const cpuinfo_s390_entry = message("cpuinfo_s390_entry", {
  hwcap: rep(2, "uint64"),
});

export const cpuinfo_entry = message("cpuinfo_entry", {
  x86_entry: rep(1, cpuinfo_x86_entry),
  ppc64_entry: rep(2, cpuinfo_ppc64_entry),
  s390_entry: rep(3, cpuinfo_s390_entry),
});

export const seccomp_filter = message("seccomp_filter", {
  filter: req(1, "bytes"),
  prev: opt(2, "uint32"),
  flags: opt(3, "uint32"),
});

export const seccomp_entry = message("seccomp_entry", {
  seccomp_filters: rep(1, seccomp_filter),
});

export const aa_policy = message("aa_policy", {
  name: req(1, "string"),
  blob: req(2, "bytes"),
});

// aa_namespace.namespaces holds aa_namespace itself: a stand-in now, tied back below (recursive.ts).
const aa_namespace_self = message("aa_namespace", {});
export const aa_namespace = message("aa_namespace", {
  name: req(1, "string"),
  policies: rep(2, aa_policy),
  namespaces: rep(3, aa_namespace_self),
});
closeLoop(aa_namespace, "namespaces");

export const apparmor_entry = message("apparmor_entry", {
  namespaces: rep(1, aa_namespace),
});

export const cipher_entry = message("cipher_entry", {
  token: req(1, "bytes"),
});
