// Per-task pieces that core-N.img embeds: rlimits, timers, credentials,
// signal actions, queued signals and the rseq area (criu's rlimit, timer, creds,
// sa, siginfo and rseq protos).
import { message, opt, rep, req } from "./dsl.js";

export const rlimit_entry = message("rlimit_entry", {
  cur: req(1, "uint64"),
  max: req(2, "uint64"),
});

export const itimer_entry = message("itimer_entry", {
  isec: req(1, "uint64"),
  iusec: req(2, "uint64"),
  vsec: req(3, "uint64"),
  vusec: req(4, "uint64"),
});

export const posix_timer_entry = message("posix_timer_entry", {
  it_id: req(1, "uint32"),
  clock_id: req(2, "uint32"),
  si_signo: req(3, "uint32"),
  it_sigev_notify: req(4, "uint32"),
  sival_ptr: req(5, "uint64"),
  overrun: req(6, "uint32"),
  isec: req(7, "uint64"),
  insec: req(8, "uint64"),
  vsec: req(9, "uint64"),
  vnsec: req(10, "uint64"),
  notify_thread_id: opt(11, "int32"),
});

export const task_timers_entry = message("task_timers_entry", {
  real: req(1, itimer_entry),
  virt: req(2, itimer_entry),
  prof: req(3, itimer_entry),
  posix: rep(4, posix_timer_entry),
});

export const creds_entry = message("creds_entry", {
  uid: req(1, "uint32"),
  gid: req(2, "uint32"),
  euid: req(3, "uint32"),
  egid: req(4, "uint32"),
  suid: req(5, "uint32"),
  sgid: req(6, "uint32"),
  fsuid: req(7, "uint32"),
  fsgid: req(8, "uint32"),
  cap_inh: rep(9, "uint32"),
  cap_prm: rep(10, "uint32"),
  cap_eff: rep(11, "uint32"),
  cap_bnd: rep(12, "uint32"),
  secbits: req(13, "uint32"),
  groups: rep(14, "uint32"),
  lsm_profile: opt(15, "string"),
  lsm_sockcreate: opt(16, "string"),
  apparmor_data: opt(17, "bytes"),
  no_new_privs: opt(18, "uint32"),
  cap_amb: rep(19, "uint32"),
});

export const sa_entry = message("sa_entry", {
  sigaction: req(1, "uint64", { hex: true }),
  flags: req(2, "uint64", { hex: true }),
  restorer: req(3, "uint64", { hex: true }),
  mask: req(4, "uint64", { hex: true }),
  compat_sigaction: opt(5, "bool"),
  mask_extended: opt(6, "uint64", { hex: true }),
});

export const siginfo_entry = message("siginfo_entry", {
  siginfo: req(1, "bytes"),
});

export const signal_queue_entry = message("signal_queue_entry", {
  signals: rep(1, siginfo_entry),
});

export const rseq_entry = message("rseq_entry", {
  rseq_abi_pointer: req(1, "uint64"),
  rseq_abi_size: req(2, "uint32"),
  signature: req(3, "uint32"),
  rseq_cs_pointer: opt(4, "uint64"),
});
