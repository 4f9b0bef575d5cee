// The shape of one row of the image registry (registry.ts). One table declares every
// image file: crit's name for it, its magics, the file names it lives under, the
// message of its entries, and how raw data follows them.
import type { MessageDef } from "./schema/dsl.js";

/** What precedes the type magic: criu v1.1 images put IMG_COMMON_MAGIC (or
 * IMG_SERVICE_MAGIC for stats and irmap-cache) first; inventory.img has only its own. */
export type Head = "common" | "service" | "none";

/** How the entries of a file are laid out after the magics. */
export type Layout =
  /** size + message, to EOF */
  | { readonly kind: "plain" }
  /** the first entry is `head`, the rest are the type's entry message */
  | { readonly kind: "pagemap"; readonly head: MessageDef }
  /** each entry is followed by raw bytes, as many as the named field(s) of the entry say (summed) */
  | { readonly kind: "blob"; readonly sizeFields: readonly string[] }
  /** tcp-stream: raw inq (inq_len bytes) then outq (outq_len bytes); crit shows {inq, outq} */
  | { readonly kind: "tcp" }
  /** ghost-file: ghost_file_entry, then either raw data to EOF or, with chunks, ghost_chunk_entry + len bytes each */
  | { readonly kind: "ghost"; readonly chunk: MessageDef }
  /** ipc sem set: nsems u16 values, padded to 8 bytes; crit shows them as a list of numbers */
  | { readonly kind: "ipc-sem" }
  /** ipc shm: `size` bytes padded to 4 */
  | { readonly kind: "ipc-shm" }
  /** ipc msg queue: qnum × (size + ipc_msg + msize bytes padded to 8) */
  | { readonly kind: "ipc-msg"; readonly msg: MessageDef };

export interface ImageType {
  /** crit's name: the "magic" value of the JSON ("PAGEMAP") */
  readonly name: string;
  /** the type magic (second 32-bit word of the file, first for inventory) */
  readonly magic: number;
  readonly head: Head;
  /** the file names criu gives this type, as patterns: "pagemap-%d.img" ("%d" a number, "%x" hex, "%s" any) */
  readonly files: readonly string[];
  /** message of each entry */
  readonly entry: MessageDef;
  readonly layout: Layout;
  /** one line for the docs */
  readonly about: string;
}
