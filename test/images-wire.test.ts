// The protobuf writer's length-delimited values written in place (WireWriter.beginLen /
// endLen): a nested message or packed list is encoded where it goes and its length put
// before it after, moved on when the length needs more than one byte. Checked against
// the reader at every length where the varint grows, and through a real message.
import test from "ava";
import { decodeMessage, encodeMessage, EncodeError } from "../images/message.js";
import { mm_entry } from "../images/schema/index.js";
import { WireReader, WireWriter } from "../images/wire.js";

test("beginLen/endLen: lengths 0 to 2^21 (1 to 4 bytes of varint) read back with what follows", (t) => {
  for (const len of [0, 1, 127, 128, 300, 16383, 16384, 2097151, 2097152]) {
    const w = new WireWriter(16);
    w.uint32(0xabc);
    const at = w.beginLen();
    const body = new Uint8Array(len).map((_, i) => (i * 7) & 0xff);
    w.raw(body);
    w.endLen(at);
    w.uint32(42);
    const out = w.finish();
    const r = new WireReader(out, 0, out.length);
    t.is(r.uint32(), 0xabc, `${len}`);
    t.true(Buffer.from(r.bytes()).equals(Buffer.from(body)), `${len}`);
    t.is(r.uint32(), 42, `${len}`);
  }
});

test("a message with nested messages past 127 bytes encodes as it decodes; a bad value names its field", (t) => {
  const vmas = Array.from({ length: 40 }, (_, i) => ({ start: BigInt(i) << 20n, end: (BigInt(i) << 20n) + 4096n, pgoff: 0n, shmid: 0n, prot: 3, flags: 0x22, status: 0x43, fd: -1 }));
  const mm = { mm_start_code: 0x1000n, mm_end_code: 0x2000n, mm_start_data: 0n, mm_end_data: 0n, mm_start_stack: 0n, mm_start_brk: 0n, mm_brk: 0n, mm_arg_start: 0n, mm_arg_end: 0n, mm_env_start: 0n, mm_env_end: 0n, exe_file_id: 7, mm_saved_auxv: Array.from({ length: 60 }, (_, i) => BigInt(i) * 0x1_0000_0001n), vmas };
  const bytes = encodeMessage(mm_entry, mm);
  const back = decodeMessage(mm_entry, bytes) as typeof mm;
  t.deepEqual(back.vmas.map((v) => v.start), vmas.map((v) => v.start));
  t.deepEqual(back.mm_saved_auxv, mm.mm_saved_auxv);
  t.deepEqual(encodeMessage(mm_entry, back), bytes);
  const err = t.throws(() => encodeMessage(mm_entry, { ...mm, vmas: [...vmas.slice(0, 3), { ...vmas[3]!, prot: "rw" }] }), { instanceOf: EncodeError });
  t.is(err?.message, 'mm_entry.vmas[3].prot: expected an integer in [0, 4294967295], got string "rw"');
});
