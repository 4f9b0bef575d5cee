// A failed dump leaves the task exactly as it was: for an unsupported fd and for every
// fault TSCRIU_FAULT can inject (a failed process_vm_readv, a failed write, ENOSPC, a
// task that seems to exit, and each numbered step), the task runs on with the same
// code bytes and mappings, passes its own check, and the error names step and pid.
// Partial images are removed only when tscriu created the directory.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { dump } from "../orchestrator/dump/dump.js";
import { isDumpError } from "../orchestrator/dump/errors.js";
import { DUMP_STEPS, Faults } from "../orchestrator/dump/faults.js";
import { copyPages } from "../orchestrator/dump/memory.js";
import type { PageTransport } from "../orchestrator/dump/pagewriter.js";
import { PE_PRESENT } from "../images/pages.js";
import { freshDir, tempDir } from "./helpers/dump.js";
import { counterAdvances, firstExecMapping, procState, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

/** What a failed dump must leave untouched. */
function snapshot(w: Workload): { code: string; maps: string } {
  const at = firstExecMapping(w.pid);
  const buf = Buffer.alloc(64);
  bridge().readProcMem(w.pid, at, 64, buf);
  return { code: buf.toString("hex"), maps: readFileSync(`/proc/${w.pid}/maps`, "utf8") };
}

async function expectUnharmed(t: import("ava").ExecutionContext, w: Workload, before: { code: string; maps: string }): Promise<void> {
  await waitFor(`pid ${w.pid} to run on`, () => procState(w.pid) !== "t" && procState(w.pid) !== "T");
  t.deepEqual(snapshot(w), before, "same code bytes and mappings: nothing injected is left");
  t.is(readFileSync(`/proc/${w.pid}/status`, "utf8").match(/TracerPid:\s+(\d+)/)?.[1], "0", "detached");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
}

// The page-server step is a dump with --page-server's only (test/page-server.test.ts).
const FAULTS = ["vm-read", "write", "enospc", "task-exit", ...DUMP_STEPS.flatMap((s, i) => (s === "page-server" ? [] : [String(i + 1)]))];

for (const fault of FAULTS) {
  test(`TSCRIU_FAULT=${fault}: the dump fails, the task runs on unharmed`, async (t) => {
    const w = await startWorkload(t, "counter");
    const before = snapshot(w);
    const dir = freshDir(t);
    const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: dir, faults: fault }));
    t.true(isDumpError(err), String(err));
    if (isDumpError(err)) {
      t.is(err.pid, w.pid);
      t.regex(err.message, new RegExp(`dump: ${err.step} of pid ${w.pid} failed`));
    }
    t.false(existsSync(dir), "the images dir tscriu created is removed");
    await expectUnharmed(t, w, before);
  });
}

test("TSCRIU_FAULT=enospc-late: the disk fills during the dump (the first write of page data goes through, the next fail): the dump fails naming ENOSPC, the images dir goes, the task unharmed", async (t) => {
  // 64 MiB, written in several pieces; a task that keeps writing its memory and checks it
  const w = await startWorkload(t, "incr", ["64"]);
  const before = snapshot(w);
  const dir = freshDir(t);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: dir, faults: "enospc-late" }));
  t.like(err, { step: "memory", pid: w.pid });
  t.regex(err?.message ?? "", /ENOSPC \(fault injected by TSCRIU_FAULT=enospc-late\)/);
  t.false(existsSync(dir), "the images dir tscriu created is removed");
  await waitFor(`pid ${w.pid} to run on`, () => procState(w.pid) !== "t" && procState(w.pid) !== "T");
  t.deepEqual(snapshot(w), before, "same code bytes and mappings: nothing injected is left");
  t.regex(await w.check(), /^PASS/);
});

test("TSCRIU_FAULT=writeback: the writeback started while pages are written fails; the dump fails saying so when it closes the pages file (the final fsync would not see the error again), the task unharmed", async (t) => {
  // a default-mode dump starts the writeback every 64 MiB
  const w = await startWorkload(t, "incr", ["96"]);
  const before = snapshot(w);
  const dir = freshDir(t);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: dir, faults: "writeback" }));
  t.true(isDumpError(err), String(err));
  t.regex(err?.message ?? "", new RegExp(`pages-\\d+\\.img: the writeback of the pages written failed: fdatasync: EIO \\(fault injected by TSCRIU_FAULT=writeback\\)`));
  t.false(existsSync(dir), "the images dir tscriu created is removed");
  await waitFor(`pid ${w.pid} to run on`, () => procState(w.pid) !== "t" && procState(w.pid) !== "T");
  t.deepEqual(snapshot(w), before, "same code bytes and mappings: nothing injected is left");
  t.regex(await w.check(), /^PASS/);
});

test.serial("a page write that fails while an earlier one is still under way fails the copy with its error, not as an unhandled rejection", async (t) => {
  // (the CLI would die of it, before its cleanup; ava keeps a worker alive, so it is watched here)
  const unhandled: unknown[] = [];
  const watch = (e: unknown): void => void unhandled.push(e);
  process.on("unhandledRejection", watch);
  t.teardown(() => void process.off("unhandledRejection", watch));
  // copyPages (the streaming copy of a dump whose pages do not fit in memory) keeps
  // four writes under way: the second fails at once; the first ends only on a later turn
  // of the event loop than the fourth is asked for, while the copy waits on it
  const w = await startWorkload(t, "bigmem", ["64"]);
  const mem = w.addr("mem");
  const writes: number[] = [];
  let endFirst: (() => void) | undefined;
  const out: Pick<PageTransport, "write" | "run" | "close" | "abort"> = {
    write: (_buf, len) => {
      writes.push(len);
      if (writes.length === 1) return new Promise<void>((resolve) => (endFirst = resolve));
      if (writes.length === 2) return Promise.reject(Object.assign(new Error("write: ENOSPC (the test's)"), { code: "ENOSPC" }));
      if (writes.length === 4) setImmediate(endFirst!);
      return Promise.resolve();
    },
    run: () => undefined,
    close: () => Promise.resolve(),
    abort: () => Promise.resolve(),
  };
  const len = 64 << 20;
  const plan = { segments: [{ addr: mem, len, flags: PE_PRESENT, procMem: false }], scanned: len / 4096, pages: len / 4096, parentRanges: [], holes: 0 };
  await t.throwsAsync(copyPages(w.pid, plan, out as PageTransport, new Faults(undefined)), { message: /ENOSPC \(the test's\)/ });
  t.true(writes.length >= 4, `the copy went on past the failed write while the first was under way (${writes.length} writes)`);
  // (every write has settled once the copy failed: what went unhandled was reported by then)
  t.deepEqual(unhandled.map(String), []);
});

test("the failed step is named: a numbered step fails as that step", async (t) => {
  const w = await startWorkload(t, "counter");
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t), faults: "7" }));
  t.like(err, { step: "memory" });
});

test("an existing images dir keeps its partial images after a failure", async (t) => {
  const w = await startWorkload(t, "counter");
  const before = snapshot(w);
  const dir = tempDir(t);
  await t.throwsAsync(dump({ pid: w.pid, imagesDir: dir, faults: "images" }));
  t.true(existsSync(dir));
  t.true(readdirSync(dir).some((f) => f.startsWith("pages-")), "pages written before the failure are kept");
  await expectUnharmed(t, w, before);
});

test("unsupported fd: a clear error, the dump is aborted, the task resumes", async (t) => {
  const w = await startWorkload(t, "sockfd");
  const before = snapshot(w);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: freshDir(t) }));
  t.like(err, { step: "files", pid: w.pid });
  t.regex(err?.message ?? "", /unsupported fd 5: netlink socket .* queued/);
  await expectUnharmed(t, w, before);
});

test("init and tscriu itself are refused before anything is touched", async (t) => {
  const err = await t.throwsAsync(dump({ pid: 1, imagesDir: freshDir(t) }));
  t.like(err, { step: "check", pid: 1 });
  const err2 = await t.throwsAsync(dump({ pid: process.pid, imagesDir: freshDir(t) }));
  t.regex(err2?.message ?? "", /itself/);
});

test("an unknown fault name is an error", async (t) => {
  const w = await startWorkload(t, "counter");
  await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t), faults: "nope" }), { message: /unknown fault "nope"/ });
  await counterAdvances(w);
});

test("seccomp not suspendable (TSCRIU_FAULT=seccomp-suspend): a thread's filter failing an inside call fails the dump naming it, every thread keeps its filter", async (t) => {
  const w = await startWorkload(t, "seccomp-threads");
  const tids = w.info["tids"]!.split(",").map(Number);
  const before = snapshot(w);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: freshDir(t), faults: "seccomp-suspend" }));
  t.like(err, { step: "inside", pid: w.pid });
  t.regex(err?.message ?? "", /inside the task returned errno 123[45]; the task's seccomp filters apply to the calls tscriu runs inside it, as seccomp could not be suspended \(thread \d+: PTRACE_O_SUSPEND_SECCOMP refused with EPERM/);
  for (const tid of tids) t.regex(readFileSync(`/proc/${w.pid}/task/${tid}/status`, "utf8"), /^Seccomp:\t2$/m, `thread ${tid}`);
  // (no counter: its threads answering the check show it runs on)
  await waitFor(`pid ${w.pid} to run on`, () => procState(w.pid) !== "t" && procState(w.pid) !== "T");
  t.deepEqual(snapshot(w), before, "same code bytes and mappings: nothing injected is left");
  t.is(readFileSync(`/proc/${w.pid}/status`, "utf8").match(/TracerPid:\s+(\d+)/)?.[1], "0", "detached");
  t.is(await w.check(), "PASS seccomp-threads", "each thread's filter still acts");
});

test("seccomp not suspendable: a filter that fails none of the inside calls does not fail the dump", async (t) => {
  const w = await startWorkload(t, "r-seccomp");
  const dir = freshDir(t);
  await dump({ pid: w.pid, imagesDir: dir, faults: "seccomp-suspend", leaveRunning: true });
  t.true(existsSync(`${dir}/seccomp.img`));
  t.regex(await w.check(), /^PASS filters=1/);
});
