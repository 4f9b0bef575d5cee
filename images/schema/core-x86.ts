// x86 registers and thread state, embedded in core_entry.thread_info.
import { enumeration, message, opt, rep, req } from "./dsl.js";

export const user_x86_regs_mode = enumeration("user_x86_regs_mode", {
  NATIVE: 1,
  COMPAT: 2,
});

export const user_x86_regs_entry = message("user_x86_regs_entry", {
  r15: req(1, "uint64"),
  r14: req(2, "uint64"),
  r13: req(3, "uint64"),
  r12: req(4, "uint64"),
  bp: req(5, "uint64"),
  bx: req(6, "uint64"),
  r11: req(7, "uint64"),
  r10: req(8, "uint64"),
  r9: req(9, "uint64"),
  r8: req(10, "uint64"),
  ax: req(11, "uint64"),
  cx: req(12, "uint64"),
  dx: req(13, "uint64"),
  si: req(14, "uint64"),
  di: req(15, "uint64"),
  orig_ax: req(16, "uint64"),
  ip: req(17, "uint64"),
  cs: req(18, "uint64"),
  flags: req(19, "uint64"),
  sp: req(20, "uint64"),
  ss: req(21, "uint64"),
  fs_base: req(22, "uint64"),
  gs_base: req(23, "uint64"),
  ds: req(24, "uint64"),
  es: req(25, "uint64"),
  fs: req(26, "uint64"),
  gs: req(27, "uint64"),
  mode: opt(28, user_x86_regs_mode),
});

export const user_x86_cet_entry = message("user_x86_cet_entry", {
  cet: req(1, "uint64", { hex: true }),
  ssp: req(2, "uint64", { hex: true }),
});

export const user_x86_xsave_entry = message("user_x86_xsave_entry", {
  xstate_bv: req(1, "uint64"),
  ymmh_space: rep(2, "uint32"),
  bndreg_state: rep(3, "uint64"),
  bndcsr_state: rep(4, "uint64"),
  opmask_reg: rep(5, "uint64"),
  zmm_upper: rep(6, "uint64"),
  hi16_zmm: rep(7, "uint64"),
  pkru: rep(8, "uint32"),
  cet: opt(9, user_x86_cet_entry),
  xtilecfg: rep(10, "uint64"),
});

export const user_x86_fpregs_entry = message("user_x86_fpregs_entry", {
  cwd: req(1, "uint32"),
  swd: req(2, "uint32"),
  twd: req(3, "uint32"),
  fop: req(4, "uint32"),
  rip: req(5, "uint64"),
  rdp: req(6, "uint64"),
  mxcsr: req(7, "uint32"),
  mxcsr_mask: req(8, "uint32"),
  st_space: rep(9, "uint32"),
  xmm_space: rep(10, "uint32"),
  padding: rep(11, "uint32"),
  xsave: opt(13, user_x86_xsave_entry),
});

export const user_desc_t = message("user_desc_t", {
  entry_number: req(1, "uint32"),
  base_addr: req(2, "uint32"),
  limit: req(3, "uint32"),
  seg_32bit: req(4, "bool"),
  contents_h: req(5, "bool"),
  contents_l: req(6, "bool"),
  read_exec_only: req(7, "bool"),
  limit_in_pages: req(8, "bool"),
  seg_not_present: req(9, "bool"),
  usable: req(10, "bool"),
});

export const thread_info_x86 = message("thread_info_x86", {
  clear_tid_addr: req(1, "uint64", { hex: true }),
  gpregs: req(2, user_x86_regs_entry, { hex: true }),
  fpregs: req(3, user_x86_fpregs_entry),
  tls: rep(4, user_desc_t),
});
