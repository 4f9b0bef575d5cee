// inventory.img: the first file criu reads; image version and root ids.
import { enumeration, message, opt, rep, req } from "./dsl.js";
import { task_kobj_ids_entry } from "./core.js";

export const lsmtype = enumeration("lsmtype", {
  NO_LSM: 0,
  SELINUX: 1,
  APPARMOR: 2,
});

export const plugins_entry = message("plugins_entry", {
  plugins: rep(12, "string"),
});

export const inventory_entry = message("inventory_entry", {
  img_version: req(1, "uint32"),
  fdinfo_per_id: opt(2, "bool"),
  root_ids: opt(3, task_kobj_ids_entry),
  ns_per_id: opt(4, "bool"),
  root_cg_set: opt(5, "uint32"),
  lsmtype: opt(6, lsmtype),
  dump_uptime: opt(8, "uint64"),
  pre_dump_mode: opt(9, "uint32"),
  tcp_close: opt(10, "bool"),
  network_lock_method: opt(11, "uint32"),
  plugins_entry: opt(12, plugins_entry),
  dump_criu_run_id: opt(13, "string"),
  allow_uprobes: opt(14, "bool"),
});
