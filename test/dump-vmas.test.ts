// The smaps a dump reads ahead (dump/proc.ts readProcAhead) is used only when it lists
// exactly the VMAs of maps: one that lists another area (or a neighbour grown by it) is
// read again. A write-protect snapshot starts from the ranges of maps (wpsnap.ts).
import test from "ava";
import { haveRoot } from "./helpers/criu-root.js";
import { startWorkload } from "./helpers/workloads.js";
import { readProcAhead } from "../orchestrator/dump/proc.js";
import { FileTable } from "../orchestrator/dump/filetable.js";
import { planPages } from "../orchestrator/dump/memory.js";
import { ShmemTable } from "../orchestrator/dump/shmem.js";
import { collectVmas, parseSmaps, sameVmas } from "../orchestrator/dump/vmas.js";
import { protectableInMaps } from "../orchestrator/dump/wpsnap.js";

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

test("protectableInMaps: writable private memory of no file (unnamed, heap, stack, named anonymous), nothing else", (t) => {
  const maps = [
    "55d000000000-55d000001000 r--p 00000000 08:01 1234                       /usr/bin/x",
    "55d000001000-55d000002000 rw-p 00001000 08:01 1234                       /usr/bin/x",
    "55d000100000-55d000200000 rw-p 00000000 00:00 0                          [heap]",
    "7f0000000000-7f0040000000 rw-p 00000000 00:00 0 ",
    "7f0040000000-7f0040001000 ---p 00000000 00:00 0 ",
    "7f0040001000-7f0040002000 r--p 00000000 00:00 0 ",
    "7f0040002000-7f0040003000 rw-s 00000000 00:01 77                         /dev/zero (deleted)",
    "7f0040003000-7f0040004000 rw-p 00000000 00:00 0                          [anon:my arena]",
    "7f0040004000-7f0040005000 rw-s 00000000 00:01 78                         [anon_shmem:x]",
    "7f0040200000-7f0040400000 rw-p 00000000 00:0f 4096                       /anon_hugepage (deleted)",
    "7f0040400000-7f0040401000 rw-p 00000000 00:05 9                          /dev/mem",
    "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]",
    "7ffc00100000-7ffc00104000 r--p 00000000 00:00 0                          [vvar]",
    "7ffc00104000-7ffc00106000 r-xp 00000000 00:00 0                          [vdso]",
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
    "",
  ].join("\n");
  const hex = (r: { start: bigint; end: bigint }): string => `${r.start.toString(16)}-${r.end.toString(16)}`;
  t.deepEqual(protectableInMaps(maps).map(hex), ["55d000100000-55d000200000", "7f0000000000-7f0040000000", "7f0040003000-7f0040004000", "7ffc00000000-7ffc00021000"]);
  t.deepEqual(protectableInMaps(""), []);
});

test("parseSmaps: the Size, Rss and Swap of each VMA", (t) => {
  const vma = (head: string, size: number, rss: number, swap: number): string => `${head}\nSize:           ${size} kB\nKernelPageSize:        4 kB\nRss:            ${rss} kB\nSwap:           ${swap} kB\nVmFlags: rd wr mr mw me ac \n`;
  const text = [vma(A, 4, 4, 0), vma("7f0000010000-7f0000012000 rw-p 00000000 00:00 0 ", 8, 4, 0), vma("7f0000020000-7f0000022000 rw-p 00000000 00:00 0 ", 8, 4, 4)].join("");
  t.deepEqual(
    parseSmaps(text).map((v) => [v.sizeKb, v.rssKb, v.swapKb]),
    [
      [4, 4, 0],
      [8, 4, 0],
      [8, 4, 4],
    ],
  );
});

test("planPages: memory smaps finds all resident is one run, planned without a walk of its page table, as the walk plans it", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "bigmem", ["16"]);
  const mem = BigInt(w.info["mem"]!);
  const files = new FileTable({ ghostLimit: 0, linkRemap: false, preDump: false, treeIds: new Set([w.pid]) });
  const vmas = collectVmas(w.pid, files, new ShmemTable(files));
  const big = vmas.find((v) => v.start === mem);
  t.is(big?.allPresent, true, "the 16 MiB the workload wrote");
  const quick = planPages(w.pid, vmas);
  const walked = planPages(
    w.pid,
    vmas.map((v) => {
      const c = { ...v };
      delete c.allPresent;
      return c;
    }),
  );
  t.deepEqual(quick, walked);
  t.true(quick.segments.some((s) => BigInt(s.addr) === mem && s.len === 16 << 20));
});
