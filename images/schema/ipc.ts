// SysV IPC namespace: variables, shared memory, message queues and semaphores.
import { message, opt, rep, req } from "./dsl.js";

export const ipc_desc_entry = message("ipc_desc_entry", {
  key: req(1, "uint32"),
  uid: req(2, "uint32"),
  gid: req(3, "uint32"),
  cuid: req(4, "uint32"),
  cgid: req(5, "uint32"),
  mode: req(6, "uint32"),
  id: req(7, "uint32"),
});

export const ipc_var_entry = message("ipc_var_entry", {
  sem_ctls: rep(1, "uint32"),
  msg_ctlmax: req(2, "uint32"),
  msg_ctlmnb: req(3, "uint32"),
  msg_ctlmni: req(4, "uint32"),
  auto_msgmni: req(5, "uint32"),
  shm_ctlmax: req(6, "uint64"),
  shm_ctlall: req(7, "uint64"),
  shm_ctlmni: req(8, "uint32"),
  shm_rmid_forced: req(9, "uint32"),
  mq_queues_max: req(10, "uint32"),
  mq_msg_max: req(11, "uint32"),
  mq_msgsize_max: req(12, "uint32"),
  mq_msg_default: opt(13, "uint32"),
  mq_msgsize_default: opt(14, "uint32"),
  msg_next_id: opt(15, "uint32"),
  sem_next_id: opt(16, "uint32"),
  shm_next_id: opt(17, "uint32"),
});

export const ipc_shm_entry = message("ipc_shm_entry", {
  desc: req(1, ipc_desc_entry),
  size: req(2, "uint64"),
  in_pagemaps: opt(3, "bool"),
  hugetlb_flag: opt(4, "uint32"),
});

export const ipc_sem_entry = message("ipc_sem_entry", {
  desc: req(1, ipc_desc_entry),
  nsems: req(2, "uint32"),
});

export const ipc_msg = message("ipc_msg", {
  mtype: req(1, "uint64"),
  msize: req(2, "uint32"),
});

export const ipc_msg_entry = message("ipc_msg_entry", {
  desc: req(1, ipc_desc_entry),
  qbytes: req(2, "uint32"),
  qnum: req(3, "uint32"),
});
