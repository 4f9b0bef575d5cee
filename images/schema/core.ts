// core-N.img: one core_entry per thread (task-wide state in tc for the leader),
// plus pstree.img and ids-N.img, which describe the process tree and its kernel objects.
import { enumeration, message, opt, rep, req } from "./dsl.js";
import {
  thread_info_aarch64,
  thread_info_arm,
  thread_info_loongarch64,
  thread_info_mips,
  thread_info_ppc64,
  thread_info_riscv64,
  thread_info_s390,
} from "./core-arch.js";
import { thread_info_x86 } from "./core-x86.js";
import { creds_entry, rlimit_entry, rseq_entry, sa_entry, signal_queue_entry, task_timers_entry } from "./task.js";

export const seccomp_mode = enumeration("seccomp_mode", {
  disabled: 0,
  strict: 1,
  filter: 2,
});

export const task_rlimits_entry = message("task_rlimits_entry", {
  rlimits: rep(1, rlimit_entry),
});

export const task_core_entry = message("task_core_entry", {
  task_state: req(1, "uint32", { dict: "gen" }),
  exit_code: req(2, "uint32"),
  personality: req(3, "uint32"),
  flags: req(4, "uint32"),
  blk_sigset: req(5, "uint64", { hex: true }),
  comm: req(6, "string"),
  timers: opt(7, task_timers_entry),
  rlimits: opt(8, task_rlimits_entry),
  cg_set: opt(9, "uint32"),
  signals_s: opt(10, signal_queue_entry),
  old_seccomp_mode: opt(11, seccomp_mode),
  old_seccomp_filter: opt(12, "uint32"),
  loginuid: opt(13, "uint32"),
  oom_score_adj: opt(14, "int32"),
  sigactions: rep(15, sa_entry),
  child_subreaper: opt(18, "bool"),
  blk_sigset_extended: opt(20, "uint64", { hex: true }),
  stop_signo: opt(21, "uint32"),
  membarrier_registration_mask: opt(22, "uint32", { hex: true }),
});

export const task_kobj_ids_entry = message("task_kobj_ids_entry", {
  vm_id: req(1, "uint32"),
  files_id: req(2, "uint32"),
  fs_id: req(3, "uint32"),
  sighand_id: req(4, "uint32"),
  pid_ns_id: opt(5, "uint32"),
  net_ns_id: opt(6, "uint32"),
  ipc_ns_id: opt(7, "uint32"),
  uts_ns_id: opt(8, "uint32"),
  mnt_ns_id: opt(9, "uint32"),
  user_ns_id: opt(10, "uint32"),
  cgroup_ns_id: opt(11, "uint32"),
  time_ns_id: opt(12, "uint32"),
});

export const thread_sas_entry = message("thread_sas_entry", {
  ss_sp: req(1, "uint64"),
  ss_size: req(2, "uint64"),
  ss_flags: req(3, "uint32"),
});

export const thread_core_entry = message("thread_core_entry", {
  futex_rla: req(1, "uint64"),
  futex_rla_len: req(2, "uint32"),
  sched_nice: opt(3, "sint32"),
  sched_policy: opt(4, "uint32"),
  sched_prio: opt(5, "uint32"),
  blk_sigset: opt(6, "uint64"),
  sas: opt(7, thread_sas_entry),
  pdeath_sig: opt(8, "uint32"),
  signals_p: opt(9, signal_queue_entry),
  creds: opt(10, creds_entry),
  seccomp_mode: opt(11, seccomp_mode),
  seccomp_filter: opt(12, "uint32"),
  comm: opt(13, "string"),
  blk_sigset_extended: opt(14, "uint64"),
  rseq_entry: opt(15, rseq_entry),
  cg_set: opt(16, "uint32"),
  timerslack_ns: opt(17, "uint64"),
});

export const core_entry_march = enumeration("core_entry.march", {
  UNKNOWN: 0,
  X86_64: 1,
  ARM: 2,
  AARCH64: 3,
  PPC64: 4,
  S390: 5,
  MIPS: 6,
  LOONGARCH64: 7,
  RISCV64: 8,
});

export const core_entry = message("core_entry", {
  mtype: req(1, core_entry_march),
  thread_info: opt(2, thread_info_x86),
  tc: opt(3, task_core_entry),
  ids: opt(4, task_kobj_ids_entry),
  thread_core: opt(5, thread_core_entry),
  ti_arm: opt(6, thread_info_arm),
  ti_aarch64: opt(8, thread_info_aarch64),
  ti_ppc64: opt(9, thread_info_ppc64),
  ti_s390: opt(10, thread_info_s390),
  ti_mips: opt(11, thread_info_mips),
  ti_loongarch64: opt(12, thread_info_loongarch64),
  ti_riscv64: opt(13, thread_info_riscv64),
});

export const pstree_entry = message("pstree_entry", {
  pid: req(1, "uint32"),
  ppid: req(2, "uint32"),
  pgid: req(3, "uint32"),
  sid: req(4, "uint32"),
  threads: rep(5, "uint32"),
});
