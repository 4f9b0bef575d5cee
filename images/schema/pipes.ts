// Pipes and FIFOs, and the queued data criu saves for them.
import { message, opt, req } from "./dsl.js";
import { fown_entry } from "./file-common.js";

export const pipe_entry = message("pipe_entry", {
  id: req(1, "uint32"),
  pipe_id: req(2, "uint32"),
  flags: req(3, "uint32", { hex: true }),
  fown: req(4, fown_entry),
});

export const fifo_entry = message("fifo_entry", {
  id: req(1, "uint32"),
  pipe_id: req(2, "uint32"),
  regf_id: opt(3, "uint32"),
});

export const pipe_data_entry = message("pipe_data_entry", {
  pipe_id: req(1, "uint32"),
  bytes: req(2, "uint32"),
  size: opt(3, "uint32"),
});
