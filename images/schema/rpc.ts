// criu's RPC messages (criu's images/rpc.proto): the requests and responses of `swrk` and
// `service`. Not an image format: they travel one per SOCK_SEQPACKET packet, bare (no
// magic, no size), but they are protobuf like the images and share their codec.
import { enumeration, message, opt, rep, req } from "./dsl.js";

export const criu_page_server_info = message("criu_page_server_info", {
  address: opt(1, "string"),
  port: opt(2, "int32"),
  pid: opt(3, "int32"),
  fd: opt(4, "int32"),
});

export const criu_veth_pair = message("criu_veth_pair", { if_in: req(1, "string"), if_out: req(2, "string") });
export const ext_mount_map = message("ext_mount_map", { key: req(1, "string"), val: req(2, "string") });
export const join_namespace = message("join_namespace", { ns: req(1, "string"), ns_file: req(2, "string"), extra_opt: opt(3, "string") });
export const inherit_fd = message("inherit_fd", { key: req(1, "string"), fd: req(2, "int32") });
export const cgroup_root = message("cgroup_root", { ctrl: opt(1, "string"), path: req(2, "string") });
export const unix_sk = message("unix_sk", { inode: req(1, "uint32") });

export const criu_cg_mode = enumeration("criu_cg_mode", { IGNORE: 0, CG_NONE: 1, PROPS: 2, SOFT: 3, FULL: 4, STRICT: 5, DEFAULT: 6 });
export const criu_network_lock_method = enumeration("criu_network_lock_method", { IPTABLES: 1, NFTABLES: 2, SKIP: 3 });
export const criu_pre_dump_mode = enumeration("criu_pre_dump_mode", { SPLICE: 1, VM_READ: 2 });

export const criu_opts = message("criu_opts", {
  images_dir_fd: req(1, "int32"),
  images_dir: opt(68, "string"),
  pid: opt(2, "int32"),
  leave_running: opt(3, "bool"),
  ext_unix_sk: opt(4, "bool"),
  tcp_established: opt(5, "bool"),
  evasive_devices: opt(6, "bool"),
  shell_job: opt(7, "bool"),
  file_locks: opt(8, "bool"),
  log_level: opt(9, "int32"),
  log_file: opt(10, "string"),
  ps: opt(11, criu_page_server_info),
  notify_scripts: opt(12, "bool"),
  root: opt(13, "string"),
  parent_img: opt(14, "string"),
  track_mem: opt(15, "bool"),
  auto_dedup: opt(16, "bool"),
  work_dir_fd: opt(17, "int32"),
  link_remap: opt(18, "bool"),
  veths: rep(19, criu_veth_pair),
  cpu_cap: opt(20, "uint32"),
  force_irmap: opt(21, "bool"),
  exec_cmd: rep(22, "string"),
  ext_mnt: rep(23, ext_mount_map),
  manage_cgroups: opt(24, "bool"),
  cg_root: rep(25, cgroup_root),
  rst_sibling: opt(26, "bool"),
  inherit_fd: rep(27, inherit_fd),
  auto_ext_mnt: opt(28, "bool"),
  ext_sharing: opt(29, "bool"),
  ext_masters: opt(30, "bool"),
  skip_mnt: rep(31, "string"),
  enable_fs: rep(32, "string"),
  unix_sk_ino: rep(33, unix_sk),
  manage_cgroups_mode: opt(34, criu_cg_mode),
  ghost_limit: opt(35, "uint32"),
  irmap_scan_paths: rep(36, "string"),
  external: rep(37, "string"),
  empty_ns: opt(38, "uint32"),
  join_ns: rep(39, join_namespace),
  cgroup_props: opt(41, "string"),
  cgroup_props_file: opt(42, "string"),
  cgroup_dump_controller: rep(43, "string"),
  freeze_cgroup: opt(44, "string"),
  timeout: opt(45, "uint32"),
  tcp_skip_in_flight: opt(46, "bool"),
  weak_sysctls: opt(47, "bool"),
  lazy_pages: opt(48, "bool"),
  status_fd: opt(49, "int32"),
  orphan_pts_master: opt(50, "bool"),
  config_file: opt(51, "string"),
  tcp_close: opt(52, "bool"),
  lsm_profile: opt(53, "string"),
  tls_cacert: opt(54, "string"),
  tls_cacrl: opt(55, "string"),
  tls_cert: opt(56, "string"),
  tls_key: opt(57, "string"),
  tls: opt(58, "bool"),
  tls_no_cn_verify: opt(59, "bool"),
  cgroup_yard: opt(60, "string"),
  pre_dump_mode: opt(61, criu_pre_dump_mode),
  pidfd_store_sk: opt(62, "int32"),
  lsm_mount_context: opt(63, "string"),
  network_lock: opt(64, criu_network_lock_method),
  mntns_compat_mode: opt(65, "bool"),
  skip_file_rwx_check: opt(66, "bool"),
  unprivileged: opt(67, "bool"),
  leave_stopped: opt(69, "bool"),
  display_stats: opt(70, "bool"),
  log_to_stderr: opt(71, "bool"),
});

export const criu_dump_resp = message("criu_dump_resp", { restored: opt(1, "bool") });
export const criu_restore_resp = message("criu_restore_resp", { pid: req(1, "int32") });
export const criu_notify = message("criu_notify", { script: opt(1, "string"), pid: opt(2, "int32") });

export const criu_req_type = enumeration("criu_req_type", {
  EMPTY: 0,
  DUMP: 1,
  RESTORE: 2,
  CHECK: 3,
  PRE_DUMP: 4,
  PAGE_SERVER: 5,
  NOTIFY: 6,
  CPUINFO_DUMP: 7,
  CPUINFO_CHECK: 8,
  FEATURE_CHECK: 9,
  VERSION: 10,
  WAIT_PID: 11,
  PAGE_SERVER_CHLD: 12,
  SINGLE_PRE_DUMP: 13,
});

export const criu_features = message("criu_features", {
  mem_track: opt(1, "bool"),
  lazy_pages: opt(2, "bool"),
  pidfd_store: opt(3, "bool"),
});

export const criu_req = message("criu_req", {
  type: req(1, criu_req_type),
  opts: opt(2, criu_opts),
  notify_success: opt(3, "bool"),
  keep_open: opt(4, "bool"),
  features: opt(5, criu_features),
  pid: opt(6, "uint32"),
});

export const criu_version = message("criu_version", {
  major_number: req(1, "int32"),
  minor_number: req(2, "int32"),
  gitid: opt(3, "string"),
  sublevel: opt(4, "int32"),
  extra: opt(5, "int32"),
  name: opt(6, "string"),
});

export const criu_resp = message("criu_resp", {
  type: req(1, criu_req_type),
  success: req(2, "bool"),
  dump: opt(3, criu_dump_resp),
  restore: opt(4, criu_restore_resp),
  notify: opt(5, criu_notify),
  ps: opt(6, criu_page_server_info),
  cr_errno: opt(7, "int32"),
  features: opt(8, criu_features),
  cr_errmsg: opt(9, "string"),
  version: opt(10, criu_version),
  status: opt(11, "int32"),
});
