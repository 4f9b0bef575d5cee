// Network namespaces: devices (veth, tun, macvlan, sit), sysctls, netns ids.
import { enumeration, message, opt, rep, req } from "./dsl.js";

export const SysctlType = enumeration("SysctlType", {
  CTL_STR: 5,
  CTL_32: 6,
});

export const sysctl_entry = message("sysctl_entry", {
  type: req(1, SysctlType),
  iarg: opt(2, "int32"),
  sarg: opt(3, "string"),
});

export const tun_link_entry = message("tun_link_entry", {
  flags: req(1, "uint32", { hex: true }),
  owner: req(2, "int32"),
  group: req(3, "int32"),
  vnethdr: req(4, "uint32"),
  sndbuf: req(5, "uint32"),
});

export const tunfile_entry = message("tunfile_entry", {
  id: req(1, "uint32"),
  netdev: opt(2, "string"),
  detached: opt(3, "bool"),
  ns_id: opt(4, "uint32"),
});

export const macvlan_link_entry = message("macvlan_link_entry", {
  mode: req(1, "uint32"),
  flags: opt(2, "uint32"),
});

export const sit_entry = message("sit_entry", {
  link: opt(1, "uint32"),
  local: rep(2, "uint32", { ipadd: true }),
  remote: rep(3, "uint32", { ipadd: true }),
  ttl: opt(4, "uint32"),
  tos: opt(5, "uint32"),
  pmtudisc: opt(6, "bool"),
  proto: opt(7, "uint32"),
  flags: opt(8, "uint32"),
  encap_type: opt(9, "uint32"),
  encap_flags: opt(10, "uint32"),
  encap_sport: opt(11, "uint32"),
  encap_dport: opt(12, "uint32"),
  rd_prefixlen: opt(13, "uint32"),
  rd_prefix: rep(14, "uint32", { ipadd: true }),
  relay_prefixlen: opt(15, "uint32"),
  relay_prefix: rep(16, "uint32", { ipadd: true }),
});

export const nd_type = enumeration("nd_type", {
  LOOPBACK: 1,
  VETH: 2,
  TUN: 3,
  EXTLINK: 4,
  VENET: 5,
  BRIDGE: 6,
  MACVLAN: 7,
  SIT: 8,
});

export const net_device_entry = message("net_device_entry", {
  type: req(1, nd_type),
  ifindex: req(2, "uint32"),
  mtu: req(3, "uint32"),
  flags: req(4, "uint32", { hex: true }),
  name: req(5, "string"),
  tun: opt(6, tun_link_entry),
  address: opt(7, "bytes"),
  conf: rep(8, "int32"),
  conf4: rep(9, sysctl_entry),
  conf6: rep(10, sysctl_entry),
  macvlan: opt(11, macvlan_link_entry),
  peer_ifindex: opt(12, "uint32"),
  peer_nsid: opt(13, "uint32"),
  master: opt(14, "uint32"),
  sit: opt(15, sit_entry),
});

export const netns_id = message("netns_id", {
  target_ns_id: req(1, "uint32"),
  netnsid_value: req(2, "int32"),
});

export const netns_entry = message("netns_entry", {
  def_conf: rep(1, "int32"),
  all_conf: rep(2, "int32"),
  def_conf4: rep(3, sysctl_entry),
  all_conf4: rep(4, sysctl_entry),
  def_conf6: rep(5, sysctl_entry),
  all_conf6: rep(6, sysctl_entry),
  nsids: rep(7, netns_id),
  ext_key: opt(8, "string"),
  unix_conf: rep(9, sysctl_entry),
});
