// Reading and writing a workload's memory (process_vm_readv/writev, /proc/PID/mem) and
// finding its present pages (PAGEMAP_SCAN against the /proc/PID/pagemap reader), and
// the page fills of restore (writePages) with their argument checks.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { bridge } from "../host-bridge/load.js";
import { PAGE_IS, pagemapScan, presentPages, readPagemap } from "../host-bridge/pagemap.js";
import { maps, patternBytes, seizeAndStop, startWorkload } from "./helpers/workloads.js";

const b = bridge();
const PAGE = 4096;

test("processVmReadv reads the known pattern, into plain and aligned buffers at an offset", async (t) => {
  const w = await startWorkload(t, "counter");
  const pattern = w.addr("pattern");
  const len = Number(w.info.pages) * PAGE;
  t.is(len, 8 * PAGE);

  const plain = Buffer.alloc(len);
  t.is(b.processVmReadv(w.pid, pattern, len, plain), len);
  t.deepEqual(plain, patternBytes(0, len));

  const aligned = b.allocAligned(len + PAGE);
  t.is(aligned.length, len + PAGE);
  t.is(aligned.byteOffset, 0);
  t.is(b.processVmReadv(w.pid, BigInt(pattern + 100), 5000, aligned, PAGE), 5000);
  t.deepEqual(aligned.subarray(PAGE, PAGE + 5000), patternBytes(100, 5000));

  // Into a view of an ArrayBuffer (as wasm memory would be).
  const ab = new ArrayBuffer(64);
  t.is(b.processVmReadv(w.pid, pattern, 64, ab), 64);
  t.deepEqual(Buffer.from(ab), patternBytes(0, 64));
});

test("a read running into the PROT_NONE page is short; /proc/PID/mem reads that page", async (t) => {
  const w = await startWorkload(t, "counter");
  const secret = w.addr("secret");
  const buf = Buffer.alloc(2 * PAGE);
  t.is(b.processVmReadv(w.pid, secret - PAGE, 2 * PAGE, buf), PAGE, "stops where PROT_NONE begins");
  t.deepEqual(buf.subarray(0, PAGE), patternBytes(7 * PAGE, PAGE));
  t.throws(() => b.processVmReadv(w.pid, secret, PAGE, buf), { code: "EFAULT" });

  const mem = Buffer.alloc(PAGE);
  t.is(b.readProcMem(w.pid, secret, PAGE, mem), PAGE);
  const want = patternBytes(0, PAGE);
  for (let i = 0; i < PAGE; i += 8) {
    t.is(mem.readBigUInt64LE(i), BigInt.asUintN(64, ~want.readBigUInt64LE(i)), `secret word ${i / 8} is the inverted pattern`);
  }
});

test("processVmReadvBatch packs many ranges and stops at the first unreadable byte", async (t) => {
  const w = await startWorkload(t, "counter");
  const pattern = w.addr("pattern");
  // Every other 512-byte piece of the pattern, 32 ranges in one call.
  const pairs: bigint[] = [];
  const expect: Buffer[] = [];
  for (let off = 0; off < 8 * PAGE; off += 1024) {
    pairs.push(BigInt(pattern + off), 512n);
    expect.push(patternBytes(off, 512));
  }
  const into = b.allocAligned(32 * 512);
  t.deepEqual(b.processVmReadvBatch(w.pid, new BigUint64Array(pairs), into), { bytes: 32 * 512, complete: 32 });
  t.deepEqual(into, Buffer.concat(expect));

  // More ranges than IOV_MAX (1024) per syscall, including empty ones.
  const many: bigint[] = [];
  for (let i = 0; i < 3000; i++) many.push(BigInt(pattern + (i % 4096) * 8), i % 7 === 0 ? 0n : 8n);
  const total = many.reduce((s, v, i) => (i % 2 ? s + Number(v) : s), 0);
  const big = Buffer.alloc(total + 3);
  const r = b.processVmReadvBatch(w.pid, new BigUint64Array(many), big, 3);
  t.deepEqual(r, { bytes: total, complete: 3000 });
  let at = 3;
  for (let i = 0; i < 3000; i++) {
    if (i % 7 === 0) continue;
    t.true(big.subarray(at, at + 8).equals(patternBytes((i % 4096) * 8, 8)), `range ${i}`);
    at += 8;
  }

  // The third range crosses into the PROT_NONE page: 2 complete + 100 bytes of the third.
  const secret = w.addr("secret");
  const stop = new BigUint64Array([BigInt(pattern), 16n, BigInt(pattern + 64), 16n, BigInt(secret - 100), 200n, BigInt(pattern), 8n]);
  t.deepEqual(b.processVmReadvBatch(w.pid, stop, Buffer.alloc(240)), { bytes: 132, complete: 2, stoppedBy: "EFAULT" });
});

test("processVmWritev fills the inbox; writeProcMem writes the PROT_NONE page; the workload agrees", async (t) => {
  const w = await startWorkload(t, "counter");
  const inbox = w.addr("inbox");
  const msg = Buffer.from("hello-from-tscriu\0");
  t.is(b.processVmWritev(w.pid, inbox, msg), msg.length);
  // A window of the source buffer: offset 6, length 4 ("from") over the start of the inbox.
  t.is(b.processVmWritev(w.pid, inbox, msg, 6, 4), 4);
  t.regex(await w.check(), /^PASS count=\d+ inbox=fromo-from-tscriu$/);

  const secret = w.addr("secret");
  const saved = Buffer.alloc(16);
  t.is(b.readProcMem(w.pid, secret, 16, saved), 16);
  t.throws(() => b.processVmWritev(w.pid, secret, Buffer.alloc(16)), { code: "EFAULT" });
  t.is(b.writeProcMem(w.pid, secret, Buffer.alloc(16, 0xab)), 16);
  const seen = Buffer.alloc(16);
  b.readProcMem(w.pid, secret, 16, seen);
  t.deepEqual(seen, Buffer.alloc(16, 0xab));
  t.regex(await w.check(), /^FAIL secret page changed$/, "the workload notices");
  t.is(b.writeProcMem(w.pid, secret, saved), 16);
  t.regex(await w.check(), /^PASS/);
});

test("pagemapScan agrees with the /proc/PID/pagemap reader on every VMA", async (t) => {
  const w = await startWorkload(t, "counter");
  seizeAndStop(t, w.pid); // nothing faults pages in while we compare
  const cmp = PAGE_IS.PRESENT | PAGE_IS.SWAPPED | PAGE_IS.FILE;
  let regions = 0;
  for (const vma of maps(w.pid)) {
    if (vma.name === "[vsyscall]") continue;
    const scan = pagemapScan(w.pid, vma.start, vma.end, { returnMask: cmp });
    const fallback = readPagemap(w.pid, vma.start, vma.end, { returnMask: cmp });
    t.deepEqual(scan, fallback, `${vma.start.toString(16)}-${vma.end.toString(16)} ${vma.name}`);
    regions += scan.length;
  }
  t.true(regions > 5);

  // The pattern pages and the (written, then PROT_NONE) secret page are present
  // anonymous memory; the inbox page was never touched.
  const pattern = w.addr("pattern");
  t.deepEqual(presentPages(w.pid, pattern, pattern + 10 * PAGE), [
    { start: pattern, end: pattern + 9 * PAGE, categories: PAGE_IS.PRESENT },
  ]);
  // A range larger than one ioctl's 512-entry vector, across the whole address space.
  const all = b.pagemapScan(w.pid, 0, 0x7fff_ffff_f000, { returnMask: PAGE_IS.PRESENT });
  t.true(all.length >= 6 && all.length % 3 === 0);
  b.ptraceDetach(w.pid, 0);
});

test("allocAligned buffers are independent and usable as any Buffer", (t) => {
  const a = b.allocAligned(PAGE);
  const c = b.allocAligned(3);
  a.fill(1);
  c.fill(2);
  t.is(a.length, PAGE);
  t.is(c.length, 3);
  t.true(a.every((x) => x === 1));
  t.deepEqual([...c], [2, 2, 2]);
  t.true(a.buffer instanceof ArrayBuffer);
});

/** A pages file in a temp dir holding `data`; returns its open fd (closed at teardown). */
function pagesFile(t: ExecutionContext, data: Buffer): number {
  const dir = mkdtempSync(join(tmpdir(), "tscriu-fill-"));
  const path = join(dir, "pages-1.img");
  writeFileSync(path, data);
  const fd = openSync(path, "r");
  t.teardown(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return fd;
}

test("writePages: runs from the pages file land in the task on several threads, the read-only rest through /proc/PID/mem", async (t) => {
  const w = await startWorkload(t, "counter");
  const inbox = w.addr("inbox");
  const secret = w.addr("secret");
  const saved = Buffer.alloc(PAGE);
  t.is(b.readProcMem(w.pid, secret, PAGE, saved), PAGE);
  // File: the secret page's own bytes, then a message for the inbox.
  const msg = Buffer.from("filled-by-writePages\0");
  const fd = pagesFile(t, Buffer.concat([saved, Buffer.alloc(100), msg]));
  const segs = new BigUint64Array([BigInt(secret), 0n, BigInt(PAGE), BigInt(inbox), BigInt(PAGE + 100), BigInt(msg.length)]);
  for (const threads of [1, 2, 8]) {
    const r = b.writePages(w.pid, fd, segs, threads);
    t.deepEqual(r, { bytes: PAGE + msg.length, procMemBytes: PAGE }, `${threads} threads`);
    t.regex(await w.check(), /^PASS count=\d+ inbox=filled-by-writePages$/);
  }
  t.deepEqual(b.writePages(w.pid, fd, new BigUint64Array(0)), { bytes: 0, procMemBytes: 0 });
});

test("page fills refuse bad segments before touching anything, and a pages file shorter than they say", async (t) => {
  const w = await startWorkload(t, "counter");
  const inbox = BigInt(w.addr("inbox"));
  const fd = pagesFile(t, Buffer.alloc(PAGE, 0x5a));
  const bad: [string, BigUint64Array, RegExp][] = [
    ["not triples", new BigUint64Array([inbox, 0n]), /segments must hold \(address, offset, length\) triples/],
    ["empty", new BigUint64Array([inbox, 0n, 0n]), /a segment is empty or overflows/],
    ["overflowing", new BigUint64Array([inbox, 2n ** 64n - 8n, 16n]), /a segment is empty or overflows/],
  ];
  for (const [what, segs, message] of bad) {
    t.throws(() => b.writePages(w.pid, fd, segs), { instanceOf: TypeError, message }, `writePages: ${what}`);
    t.throws(() => b.uffdCopy(fd, fd, segs), { instanceOf: TypeError, message }, `uffdCopy: ${what}`);
  }
  t.throws(() => b.uffdCopy(fd, fd, new BigUint64Array([inbox + 8n, 0n, BigInt(PAGE)])), { instanceOf: TypeError, message: /segments must be whole pages/ });
  const short = new BigUint64Array([inbox, 0n, 16n, inbox + 16n, BigInt(PAGE), 8n]);
  t.throws(() => b.writePages(w.pid, fd, short), { code: "EIO", message: /writePages: the pages file ends at 4096, data is wanted up to 4104/ });
  t.throws(() => b.uffdCopy(fd, fd, new BigUint64Array([inbox, BigInt(PAGE), BigInt(PAGE)])), { code: "EIO", message: /uffdCopy: the pages file ends at 4096, data is wanted up to 8192/ });
  t.regex(await w.check(), /^PASS count=\d+ inbox=$/, "the task's memory is as it was");
});

test("allocPopulated: zero-filled whole pages a task's memory reads into, in small or huge pages; sizes that are not whole pages are refused", async (t) => {
  const w = await startWorkload(t, "counter");
  const pattern = w.addr("pattern");
  for (const huge of [false, true]) {
    const size = huge ? 2 << 20 : 3 * PAGE;
    const buf = b.allocPopulated(size, huge);
    t.is(buf.length, size);
    t.is(buf.byteOffset, 0);
    t.true(buf.every((x) => x === 0));
    t.is(b.processVmReadv(w.pid, pattern, PAGE, buf, PAGE), PAGE);
    t.deepEqual(buf.subarray(PAGE, 2 * PAGE), patternBytes(0, PAGE));
  }
  for (const size of [0, 100, PAGE + 1, 2 ** 32 + PAGE]) t.throws(() => b.allocPopulated(size, false), { code: "ERR_INVALID_ARG_TYPE", message: /allocPopulated: size must be a multiple of 4096/ });
  t.throws(() => b.allocPopulated(PAGE, 1 as unknown as boolean), { code: "ERR_INVALID_ARG_TYPE", message: /allocPopulated: huge must be a boolean/ });
});
