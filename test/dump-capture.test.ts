// The spare of a dump whose task runs on (-R): memory populated on the thread pool while
// the frozen task's pages stream out, which takes the rest of them once it can hold it
// (capture.ts, memory.ts' copyPages). TSCRIU_CAPTURE=always: the spare grows however
// slowly memory comes on the machine that runs this.
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { CapturePool, capturePages, withPreCopied, type Captured } from "../orchestrator/dump/capture.js";
import { Faults } from "../orchestrator/dump/faults.js";
import { copyPages, withLateSegments } from "../orchestrator/dump/memory.js";
import { copyRuns } from "../orchestrator/dump/precopy.js";
import type { PageTransport } from "../orchestrator/dump/pagewriter.js";
import { PE_PRESENT } from "../images/pages.js";
import { startWorkload } from "./helpers/workloads.js";

process.env["TSCRIU_CAPTURE"] = "always";

test("allocPopulatedAsync: zero-filled pages populated on the thread pool, timed there; bad sizes refused at the call", async (t) => {
  const b = bridge();
  for (const huge of [false, true]) {
    const { buffer, ns } = await b.allocPopulatedAsync(4 << 20, huge);
    t.is(buffer.length, 4 << 20);
    t.true(buffer.every((x) => x === 0));
    t.true(ns > 0);
  }
  t.throws(() => b.allocPopulatedAsync(100, false), { message: /allocPopulatedAsync: size must be a multiple of 4096/ });
});

test("copyPages with a spare: the spare grows while writes are waited for, then takes the pages not streamed; streamed and spared together are the task's memory", async (t) => {
  const w = await startWorkload(t, "bigmem", ["48"]);
  const mem = w.addr("mem");
  const len = 48 << 20;
  const spare = CapturePool.spare(1 << 30)!;
  const streamed: Buffer[] = [];
  // each write ends once the spare has grown since it began (or holds what is left):
  // the copy goes only as fast as the spare grows beside it
  const out: Pick<PageTransport, "write" | "run" | "close" | "abort"> = {
    write: (buf, n) => {
      streamed.push(Buffer.from(buf.subarray(0, n)));
      const room = spare.room;
      const left = len - streamed.reduce((s, x) => s + x.length, 0);
      return new Promise<void>((resolve) => {
        const poll = (): void => void (spare.room > room || spare.room >= left ? resolve() : setImmediate(poll));
        poll();
      });
    },
    run: () => undefined,
    close: () => Promise.resolve(),
    abort: () => Promise.resolve(),
  };
  const plan = { segments: [{ addr: mem, len, flags: PE_PRESENT, procMem: false }], scanned: len / 4096, pages: len / 4096, parentRanges: [], holes: 0 };
  const faults = new Faults(undefined);
  const r = await copyPages(w.pid, plan, out as PageTransport, faults, undefined, spare);
  const sent = streamed.reduce((s, x) => s + x.length, 0);
  t.truthy(r.rest, "the spare took the rest");
  t.true(sent > 0 && sent < len, `some pages streamed (${sent} bytes), not all`);
  t.is(sent + r.rest!.pages * 4096, len);
  t.true(spare.room >= r.rest!.pages * 4096);
  const held = capturePages(w.pid, r.rest!, spare, faults);
  const copy = Buffer.concat([...streamed, ...held.runs.map((run) => run.buf.subarray(run.off, run.off + run.pages * 4096))]);
  const truth = Buffer.alloc(len);
  t.is(bridge().processVmReadv(w.pid, mem, len, truth), len);
  t.true(copy.equals(truth), "the pages streamed and those the spare holds are the task's, in order");
  spare.drop();
});

test("copyRuns: runs go into the memory populated for them while they fit, in order, and the rest into memory of their own; each run reads back as the task's", async (t) => {
  const w = await startWorkload(t, "bigmem", ["4"]);
  const mem = w.addr("mem");
  const P = 4096;
  const truth = Buffer.alloc(4 << 20);
  t.is(bridge().processVmReadv(w.pid, mem, truth.length, truth), truth.length);
  // 3 + 2 pages fit in 6; the next 4 do not, nor does the 1 after them (runs stay in order)
  const runs = [mem, 3 * P, mem + 10 * P, 2 * P, mem + 20 * P, 4 * P, mem + 40 * P, P];
  const ready = bridge().allocPopulated(6 * P, false);
  const pre = copyRuns(w.pid, runs, new Faults(undefined), ready);
  t.is(pre.bytes, 10 * P);
  t.deepEqual(
    pre.bufs.map((b) => b === ready),
    [true, true, false, false],
  );
  t.deepEqual(pre.offs, [0, 3 * P, 0, 4 * P]);
  for (let j = 0; j < 4; j++) {
    const off = runs[2 * j]! - mem;
    const len = runs[2 * j + 1]!;
    t.true(pre.bufs[j]!.subarray(pre.offs[j], pre.offs[j]! + len).equals(truth.subarray(off, off + len)), `run ${j}`);
  }
  // without memory populated ahead, or with none of it needed
  const own = copyRuns(w.pid, runs.slice(0, 2), new Faults(undefined));
  t.true(own.bufs[0]!.subarray(0, 3 * P).equals(truth.subarray(0, 3 * P)));
  t.is(copyRuns(w.pid, [], new Faults(undefined), ready).bufs.length, 0);
});

test("pages copied before the freeze, left out of a plan's segments (late): put back among them in address order, or among a capture's runs once the task is let go (reserved runs keep their marks)", (t) => {
  const P = 4096;
  // two runs copied before the freeze: [10P, 12P) and [20P, 21P), packed in buf
  const buf = Buffer.alloc(3 * P);
  const pre = { runs: [10 * P, 2 * P, 20 * P, P], pairs: new BigUint64Array([10n * 4096n, 2n * 4096n, 20n * 4096n, 4096n]), bufs: [buf, buf], offs: [0, 2 * P], bytes: 3 * P };
  // pagemapSplit's runs of a VMA: read now (tag 0) at 5P and 15P; pre-copied pieces (tags 1, 2)
  const runs = new BigUint64Array([5n * 4096n, 4096n, 0n, 11n * 4096n, 4096n, 1n, 15n * 4096n, 4096n, 0n, 20n * 4096n, 4096n, 2n]);
  const plan = {
    segments: [
      { addr: 5 * P, len: P, flags: PE_PRESENT, procMem: false, fresh: true },
      { addr: 15 * P, len: P, flags: PE_PRESENT, procMem: false, fresh: true },
    ],
    scanned: 4,
    pages: 4,
    parentRanges: [],
    holes: 0,
    late: [{ runs, flags: PE_PRESENT, pre }],
  };
  const whole = withLateSegments(plan);
  t.is(whole.late, undefined);
  t.deepEqual(
    whole.segments.map((s) => [s.addr / P, s.len / P, s.pre ? s.addr - s.pre.at : -1]),
    [
      [5, 1, -1],
      [11, 1, P],
      [15, 1, -1],
      [20, 1, 2 * P],
    ],
    "in address order, each piece pointing at its place in the copy",
  );
  const own = Buffer.alloc(2 * P);
  const c: Captured = {
    pid: 1,
    runs: [
      { vaddr: 5 * P, pages: 1, flags: PE_PRESENT, fresh: true, buf: own, off: 0 },
      { vaddr: 15 * P, pages: 1, flags: PE_PRESENT, fresh: true, buf: own, off: P },
    ],
    pages: 4,
    scanned: 4,
    reserved: new Set([1]),
    late: plan.late,
  };
  withPreCopied(c);
  t.deepEqual(
    c.runs.map((r) => [r.vaddr / P, r.buf === buf ? "pre" : "own", r.off]),
    [
      [5, "own", 0],
      [11, "pre", P],
      [15, "own", P],
      [20, "pre", 2 * P],
    ],
  );
  t.deepEqual([...c.reserved], [2], "the reserved run is still marked at its new index");
  t.is(c.late, undefined);
});
