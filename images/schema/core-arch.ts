// Thread state of the other architectures criu supports (arm, aarch64, ppc64,
// s390, mips, loongarch64, riscv64), embedded in core_entry.ti_*.
import { message, opt, rep, req } from "./dsl.js";

export const user_arm_regs_entry = message("user_arm_regs_entry", {
  r0: req(1, "uint32"),
  r1: req(2, "uint32"),
  r2: req(3, "uint32"),
  r3: req(4, "uint32"),
  r4: req(5, "uint32"),
  r5: req(6, "uint32"),
  r6: req(7, "uint32"),
  r7: req(8, "uint32"),
  r8: req(9, "uint32"),
  r9: req(10, "uint32"),
  r10: req(11, "uint32"),
  fp: req(12, "uint32"),
  ip: req(13, "uint32"),
  sp: req(14, "uint32"),
  lr: req(15, "uint32"),
  pc: req(16, "uint32"),
  cpsr: req(17, "uint32"),
  orig_r0: req(18, "uint32"),
});

export const user_arm_vfpstate_entry = message("user_arm_vfpstate_entry", {
  vfp_regs: rep(1, "uint64"),
  fpscr: req(2, "uint32"),
  fpexc: req(3, "uint32"),
  fpinst: req(4, "uint32"),
  fpinst2: req(5, "uint32"),
});

export const thread_info_arm = message("thread_info_arm", {
  clear_tid_addr: req(1, "uint64", { hex: true }),
  tls: req(2, "uint32"),
  gpregs: req(3, user_arm_regs_entry, { hex: true }),
  fpstate: req(4, user_arm_vfpstate_entry),
});

export const user_aarch64_regs_entry = message("user_aarch64_regs_entry", {
  regs: rep(1, "uint64"),
  sp: req(2, "uint64"),
  pc: req(3, "uint64"),
  pstate: req(4, "uint64"),
});

export const user_aarch64_fpsimd_context_entry = message("user_aarch64_fpsimd_context_entry", {
  vregs: rep(1, "uint64"),
  fpsr: req(2, "uint32"),
  fpcr: req(3, "uint32"),
});

export const pac_address_keys = message("pac_address_keys", {
  apiakey_lo: req(1, "uint64"),
  apiakey_hi: req(2, "uint64"),
  apibkey_lo: req(3, "uint64"),
  apibkey_hi: req(4, "uint64"),
  apdakey_lo: req(5, "uint64"),
  apdakey_hi: req(6, "uint64"),
  apdbkey_lo: req(7, "uint64"),
  apdbkey_hi: req(8, "uint64"),
});

export const pac_generic_keys = message("pac_generic_keys", {
  apgakey_lo: req(1, "uint64"),
  apgakey_hi: req(2, "uint64"),
});

export const pac_keys = message("pac_keys", {
  pac_enabled_key: req(5, "uint64"),
  pac_address_keys: req(6, pac_address_keys),
  pac_generic_keys: req(7, pac_generic_keys),
});

export const thread_info_aarch64 = message("thread_info_aarch64", {
  clear_tid_addr: req(1, "uint64", { hex: true }),
  tls: req(2, "uint64"),
  gpregs: req(3, user_aarch64_regs_entry, { hex: true }),
  fpsimd: req(4, user_aarch64_fpsimd_context_entry),
  pac_keys: opt(5, pac_keys),
});

export const user_ppc64_regs_entry = message("user_ppc64_regs_entry", {
  gpr: rep(1, "uint64"),
  nip: req(2, "uint64"),
  msr: req(3, "uint64"),
  orig_gpr3: req(4, "uint64"),
  ctr: req(5, "uint64"),
  link: req(6, "uint64"),
  xer: req(7, "uint64"),
  ccr: req(8, "uint64"),
  trap: req(9, "uint64"),
  texasr: opt(10, "uint64"),
  tfhar: opt(11, "uint64"),
  tfiar: opt(12, "uint64"),
});

export const user_ppc64_fpstate_entry = message("user_ppc64_fpstate_entry", {
  fpregs: rep(1, "uint64"),
});

export const user_ppc64_vrstate_entry = message("user_ppc64_vrstate_entry", {
  vrregs: rep(1, "uint64"),
  vrsave: req(2, "uint32"),
});

export const user_ppc64_vsxstate_entry = message("user_ppc64_vsxstate_entry", {
  vsxregs: rep(1, "uint64"),
});

export const user_ppc64_tm_regs_entry = message("user_ppc64_tm_regs_entry", {
  gpregs: req(1, user_ppc64_regs_entry),
  fpstate: opt(2, user_ppc64_fpstate_entry),
  vrstate: opt(3, user_ppc64_vrstate_entry),
  vsxstate: opt(4, user_ppc64_vsxstate_entry),
});

export const thread_info_ppc64 = message("thread_info_ppc64", {
  clear_tid_addr: req(1, "uint64", { hex: true }),
  gpregs: req(2, user_ppc64_regs_entry, { hex: true }),
  fpstate: opt(3, user_ppc64_fpstate_entry),
  vrstate: opt(4, user_ppc64_vrstate_entry),
  vsxstate: opt(5, user_ppc64_vsxstate_entry),
  tmstate: opt(6, user_ppc64_tm_regs_entry),
});

export const user_s390_regs_entry = message("user_s390_regs_entry", {
  psw_mask: req(1, "uint64"),
  psw_addr: req(2, "uint64"),
  gprs: rep(3, "uint64"),
  acrs: rep(4, "uint32"),
  orig_gpr2: req(5, "uint64"),
  system_call: req(6, "uint32"),
});

export const user_s390_vxrs_low_entry = message("user_s390_vxrs_low_entry", {
  regs: rep(1, "uint64"),
});

export const user_s390_vxrs_high_entry = message("user_s390_vxrs_high_entry", {
  regs: rep(1, "uint64"),
});

export const user_s390_fpregs_entry = message("user_s390_fpregs_entry", {
  fpc: req(1, "uint32"),
  fprs: rep(2, "uint64"),
});

export const user_s390_gs_cb_entry = message("user_s390_gs_cb_entry", {
  regs: rep(1, "uint64"),
});

export const user_s390_ri_entry = message("user_s390_ri_entry", {
  ri_on: req(1, "uint32"),
  regs: rep(2, "uint64"),
});

export const thread_info_s390 = message("thread_info_s390", {
  clear_tid_addr: req(1, "uint64", { hex: true }),
  gpregs: req(2, user_s390_regs_entry, { hex: true }),
  fpregs: req(3, user_s390_fpregs_entry, { hex: true }),
  vxrs_low: opt(4, user_s390_vxrs_low_entry, { hex: true }),
  vxrs_high: opt(5, user_s390_vxrs_high_entry, { hex: true }),
  gs_cb: opt(6, user_s390_gs_cb_entry, { hex: true }),
  gs_bc: opt(7, user_s390_gs_cb_entry, { hex: true }),
  ri_cb: opt(8, user_s390_ri_entry, { hex: true }),
});

export const user_mips_regs_entry = message("user_mips_regs_entry", {
  r0: req(1, "uint64"),
  r1: req(2, "uint64"),
  r2: req(3, "uint64"),
  r3: req(4, "uint64"),
  r4: req(5, "uint64"),
  r5: req(6, "uint64"),
  r6: req(7, "uint64"),
  r7: req(8, "uint64"),
  r8: req(9, "uint64"),
  r9: req(10, "uint64"),
  r10: req(11, "uint64"),
  r11: req(12, "uint64"),
  r12: req(13, "uint64"),
  r13: req(14, "uint64"),
  r14: req(15, "uint64"),
  r15: req(16, "uint64"),
  r16: req(17, "uint64"),
  r17: req(18, "uint64"),
  r18: req(19, "uint64"),
  r19: req(20, "uint64"),
  r20: req(21, "uint64"),
  r21: req(22, "uint64"),
  r22: req(23, "uint64"),
  r23: req(24, "uint64"),
  r24: req(25, "uint64"),
  r25: req(26, "uint64"),
  r26: req(27, "uint64"),
  r27: req(28, "uint64"),
  r28: req(29, "uint64"),
  r29: req(30, "uint64"),
  r30: req(31, "uint64"),
  r31: req(32, "uint64"),
  lo: req(33, "uint64"),
  hi: req(34, "uint64"),
  cp0_epc: req(35, "uint64"),
  cp0_badvaddr: req(36, "uint64"),
  cp0_status: req(37, "uint64"),
  cp0_cause: req(38, "uint64"),
});

export const user_mips_fpregs_entry = message("user_mips_fpregs_entry", {
  r0: req(1, "uint64"),
  r1: req(2, "uint64"),
  r2: req(3, "uint64"),
  r3: req(4, "uint64"),
  r4: req(5, "uint64"),
  r5: req(6, "uint64"),
  r6: req(7, "uint64"),
  r7: req(8, "uint64"),
  r8: req(9, "uint64"),
  r9: req(10, "uint64"),
  r10: req(11, "uint64"),
  r11: req(12, "uint64"),
  r12: req(13, "uint64"),
  r13: req(14, "uint64"),
  r14: req(15, "uint64"),
  r15: req(16, "uint64"),
  r16: req(17, "uint64"),
  r17: req(18, "uint64"),
  r18: req(19, "uint64"),
  r19: req(20, "uint64"),
  r20: req(21, "uint64"),
  r21: req(22, "uint64"),
  r22: req(23, "uint64"),
  r23: req(24, "uint64"),
  r24: req(25, "uint64"),
  r25: req(26, "uint64"),
  r26: req(27, "uint64"),
  r27: req(28, "uint64"),
  r28: req(29, "uint64"),
  r29: req(30, "uint64"),
  r30: req(31, "uint64"),
  r31: req(32, "uint64"),
  lo: req(33, "uint64"),
  hi: req(34, "uint64"),
  fpu_fcr31: req(35, "uint32"),
  fpu_id: req(36, "uint32"),
});

export const thread_info_mips = message("thread_info_mips", {
  clear_tid_addr: req(1, "uint64", { hex: true }),
  tls: req(2, "uint64"),
  gpregs: req(3, user_mips_regs_entry, { hex: true }),
  fpregs: req(4, user_mips_fpregs_entry, { hex: true }),
});

export const user_loongarch64_gpregs_entry = message("user_loongarch64_gpregs_entry", {
  regs: rep(1, "uint64"),
  pc: req(2, "uint64"),
});

export const user_loongarch64_fpregs_entry = message("user_loongarch64_fpregs_entry", {
  regs: rep(1, "uint64"),
  fcc: req(2, "uint64"),
  fcsr: req(3, "uint32"),
});

export const thread_info_loongarch64 = message("thread_info_loongarch64", {
  clear_tid_addr: req(1, "uint64", { hex: true }),
  tls: req(2, "uint64"),
  gpregs: req(3, user_loongarch64_gpregs_entry, { hex: true }),
  fpregs: req(4, user_loongarch64_fpregs_entry, { hex: true }),
});

export const user_riscv64_regs_entry = message("user_riscv64_regs_entry", {
  pc: req(1, "uint64"),
  ra: req(2, "uint64"),
  sp: req(3, "uint64"),
  gp: req(4, "uint64"),
  tp: req(5, "uint64"),
  t0: req(6, "uint64"),
  t1: req(7, "uint64"),
  t2: req(8, "uint64"),
  s0: req(9, "uint64"),
  s1: req(10, "uint64"),
  a0: req(11, "uint64"),
  a1: req(12, "uint64"),
  a2: req(13, "uint64"),
  a3: req(14, "uint64"),
  a4: req(15, "uint64"),
  a5: req(16, "uint64"),
  a6: req(17, "uint64"),
  a7: req(18, "uint64"),
  s2: req(19, "uint64"),
  s3: req(20, "uint64"),
  s4: req(21, "uint64"),
  s5: req(22, "uint64"),
  s6: req(23, "uint64"),
  s7: req(24, "uint64"),
  s8: req(25, "uint64"),
  s9: req(26, "uint64"),
  s10: req(27, "uint64"),
  s11: req(28, "uint64"),
  t3: req(29, "uint64"),
  t4: req(30, "uint64"),
  t5: req(31, "uint64"),
  t6: req(32, "uint64"),
});

export const user_riscv64_d_ext_entry = message("user_riscv64_d_ext_entry", {
  f: rep(1, "uint64"),
  fcsr: req(2, "uint32"),
});

export const thread_info_riscv64 = message("thread_info_riscv64", {
  clear_tid_addr: req(1, "uint64", { hex: true }),
  tls: req(2, "uint64"),
  gpregs: req(3, user_riscv64_regs_entry, { hex: true }),
  fpsimd: req(4, user_riscv64_d_ext_entry),
});
