// The spare of a dump whose task runs on (-R): memory populated on the thread pool while
// the frozen task's pages stream out, which takes the rest of them once it can hold it
// (capture.ts, memory.ts' copyPages). TSCRIU_CAPTURE=always: the spare grows however
// slowly memory comes on the machine that runs this.
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { CapturePool, capturePages } from "../orchestrator/dump/capture.js";
import { Faults } from "../orchestrator/dump/faults.js";
import { copyPages } from "../orchestrator/dump/memory.js";
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
