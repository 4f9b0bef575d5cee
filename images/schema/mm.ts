// mm-N.img: the address space of a process, with its VMAs and AIO rings.
import { message, opt, rep, req } from "./dsl.js";

export const vma_entry = message("vma_entry", {
  start: req(1, "uint64", { hex: true }),
  end: req(2, "uint64", { hex: true }),
  pgoff: req(3, "uint64"),
  shmid: req(4, "uint64"),
  prot: req(5, "uint32", { flags: "mmap.prot" }),
  flags: req(6, "uint32", { flags: "mmap.flags" }),
  status: req(7, "uint32", { flags: "mmap.status" }),
  fd: req(8, "sint64"),
  madv: opt(9, "uint64", { hex: true }),
  fdflags: opt(10, "uint32", { hex: true }),
});

export const aio_ring_entry = message("aio_ring_entry", {
  id: req(1, "uint64"),
  nr_req: req(2, "uint32"),
  ring_len: req(3, "uint32"),
});

export const mm_entry = message("mm_entry", {
  mm_start_code: req(1, "uint64", { hex: true }),
  mm_end_code: req(2, "uint64", { hex: true }),
  mm_start_data: req(3, "uint64", { hex: true }),
  mm_end_data: req(4, "uint64", { hex: true }),
  mm_start_stack: req(5, "uint64", { hex: true }),
  mm_start_brk: req(6, "uint64", { hex: true }),
  mm_brk: req(7, "uint64", { hex: true }),
  mm_arg_start: req(8, "uint64", { hex: true }),
  mm_arg_end: req(9, "uint64", { hex: true }),
  mm_env_start: req(10, "uint64", { hex: true }),
  mm_env_end: req(11, "uint64", { hex: true }),
  exe_file_id: req(12, "uint32"),
  mm_saved_auxv: rep(13, "uint64"),
  vmas: rep(14, vma_entry),
  dumpable: opt(15, "int32"),
  aios: rep(16, aio_ring_entry),
  thp_disabled: opt(17, "bool"),
});
