// pagemap-N.img and pagemap-shmem-N.img: a pagemap_head, then pagemap_entry runs.
import { message, opt, req } from "./dsl.js";

export const pagemap_head = message("pagemap_head", {
  pages_id: req(1, "uint32"),
});

export const pagemap_entry = message("pagemap_entry", {
  vaddr: req(1, "uint64", { hex: true }),
  compat_nr_pages: req(2, "uint32"),
  in_parent: opt(3, "bool"),
  flags: opt(4, "uint32", { flags: "pmap.flags" }),
  nr_pages: opt(5, "uint64"),
});
