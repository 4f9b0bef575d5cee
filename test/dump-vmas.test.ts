// The smaps a dump reads ahead (dump/proc.ts readProcAhead) is used only when it lists
// exactly the VMAs of maps read after the syscalls inside the task: one read while the
// scratch area was mapped (or merged into a neighbour) is read again.
import test from "ava";
import { readProcAhead } from "../orchestrator/dump/proc.js";
import { parseSmaps, sameVmas, withoutVma } from "../orchestrator/dump/vmas.js";

const smaps = (heads: string[]): string => heads.map((h) => `${h}\nSize:                  4 kB\nVmFlags: rd wr mr mw me ac \n`).join("");
const A = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ";
const B = "7f0000002000-7f0000003000 r--p 00001000 08:01 1234                       /usr/lib/x.so";
const SCRATCH = "7f0000001000-7f0000002000 rwxp 00000000 00:00 0 ";

test("smaps read while nothing else was mapped is taken; one with the scratch area, or the area merged into a neighbour, is not", (t) => {
  const maps = `${A}\n${B}\n`;
  t.true(sameVmas(smaps([A, B]), maps));
  t.false(sameVmas(smaps([A, SCRATCH, B]), maps), "an extra VMA");
  t.false(sameVmas(smaps(["7f0000000000-7f0000002000 rw-p 00000000 00:00 0 ", B]), maps), "a neighbour grown by the area");
  t.false(sameVmas(smaps([A]), maps), "one missing");
  t.true(sameVmas(withoutVma(smaps([A, SCRATCH, B]), 0x7f0000001000n, 0x7f0000002000n), maps), "the scratch area taken out");
  t.is(withoutVma(smaps([A, B]), 0x7f0000001000n, 0x7f0000002000n), smaps([A, B]), "nothing to take out");
});

test("readProcAhead reads a whole smaps (many pages of it) on the thread pool; a file that is not there is an error naming it", async (t) => {
  const text = await readProcAhead(process.pid, "smaps");
  t.true(text.length > 64 << 10, `${text.length} bytes`);
  const vmas = parseSmaps(text);
  t.true(vmas.length > 10);
  t.true(vmas.some((v) => v.name === "[stack]"));
  t.true(text.endsWith("\n"));
  await t.throwsAsync(readProcAhead(2 ** 22 + 12345, "smaps"), { code: "ENOENT", message: /open .*\/proc\/4206649\/smaps/ });
});
