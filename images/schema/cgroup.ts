// cgroup.img: cgroup sets, controllers and their directory trees.
import { message, opt, rep, req } from "./dsl.js";
import { closeLoop } from "./recursive.js";

export const cgroup_perms = message("cgroup_perms", {
  mode: req(1, "uint32"),
  uid: req(2, "uint32"),
  gid: req(3, "uint32"),
});

export const cgroup_prop_entry = message("cgroup_prop_entry", {
  name: req(1, "string"),
  value: req(2, "string"),
  perms: opt(3, cgroup_perms),
});

// cgroup_dir_entry.children holds cgroup_dir_entry itself: a stand-in now, tied back below (recursive.ts).
const cgroup_dir_entry_self = message("cgroup_dir_entry", {});
export const cgroup_dir_entry = message("cgroup_dir_entry", {
  dir_name: req(1, "string"),
  children: rep(2, cgroup_dir_entry_self),
  properties: rep(3, cgroup_prop_entry),
  dir_perms: opt(4, cgroup_perms),
});
closeLoop(cgroup_dir_entry, "children");

export const cg_controller_entry = message("cg_controller_entry", {
  cnames: rep(1, "string"),
  dirs: rep(2, cgroup_dir_entry),
  is_threaded: opt(3, "bool"),
});

export const cg_member_entry = message("cg_member_entry", {
  name: req(1, "string"),
  path: req(2, "string"),
  cgns_prefix: opt(3, "uint32"),
});

export const cg_set_entry = message("cg_set_entry", {
  id: req(1, "uint32"),
  ctls: rep(2, cg_member_entry),
});

export const cgroup_entry = message("cgroup_entry", {
  sets: rep(1, cg_set_entry),
  controllers: rep(2, cg_controller_entry),
});
