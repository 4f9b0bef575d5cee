// Write tracking between incremental passes (orchestrator/dump/write-tracking.ts): a
// pre-dump (or dump -R --track-mem) leaves the task's anonymous memory write-protected
// through a userfaultfd held by tscriu_tracker; the next pass copies only the pages the
// kernel reports written, and takes the others from the parent without comparing them.
// The workload (test/workloads/incr.c) writes 1 % of its pages every 100 ms throughout
// and checks on SIGUSR1 that every page holds the version it last wrote: a page missed
// by the tracking is a stale page and fails it.
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { PE_PARENT, readPagemap } from "../images/pages.js";
import { tscriu, type CliResult } from "./helpers/cli.js";
import { haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { restoreTask } from "./helpers/restore.js";
import { goneOrZombie, killAndReap, RUNS_ON, procState, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

interface Chain {
  w: Workload;
  /** images dir of pass n */
  d: (n: number) => string;
  /** where the tracking state goes (one per test) */
  env: NodeJS.ProcessEnv;
  stateFile: string;
  run: (args: string[]) => CliResult;
}

async function chain(t: ExecutionContext, args: string[] = ["32"], opts: { static?: boolean } = {}): Promise<Chain> {
  const w = await startWorkload(t, "incr", args, opts);
  const base = tempDir(t, "tscriu-track-");
  const track = tempDir(t, "tscriu-trackstate-");
  const env = { TSCRIU_TRACK_DIR: track };
  return {
    w,
    d: (n) => join(base, `d${n}`),
    env,
    stateFile: join(track, `${w.pid}.json`),
    run: (a) => tscriu([...a, "--display-stats", "-v4"], { env }),
  };
}

const stat = (out: string, what: string): number => Number(new RegExp(`${what}: (\\d+)`).exec(out)?.[1] ?? NaN);

/** Whether any VMA of pid is registered for userfaultfd write-protect. */
const registered = (pid: number): boolean => /^VmFlags:.*\buw\b/m.test(readFileSync(`/proc/${pid}/smaps`, "utf8"));

/** The holder the state file names, alive and a tscriu_tracker. */
function holder(c: Chain): number {
  const state = JSON.parse(readFileSync(c.stateFile, "utf8")) as { holder: { pid: number }; armed: { dir: string } | null };
  const pid = state.holder.pid;
  if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "tscriu_tracker") throw new Error(`pid ${pid} is not the holder`);
  return pid;
}

/** The writes counter of a passing self-check. */
async function writes(t: ExecutionContext, w: Workload): Promise<number> {
  const line = await w.check();
  t.regex(line, /^PASS pages=\d+ writes=\d+$/);
  return Number(/writes=(\d+)/.exec(line)?.[1] ?? NaN);
}

/** The task runs, passes its check, and has written some more pages before the next pass. */
async function passes(t: ExecutionContext, w: Workload): Promise<void> {
  t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  const first = await writes(t, w);
  const deadline = Date.now() + 10_000;
  while ((await writes(t, w)) < first + 100) {
    if (Date.now() > deadline) return t.fail(`${w.name} (pid ${w.pid}) wrote fewer than 100 pages in 10 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test.serial("pre-dump, pre-dump, dump: the second and third passes copy only what the task wrote; --auto-dedup; restored by tscriu", async (t) => {
  const c = await chain(t);
  const p1 = c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]);
  t.is(p1.code, 0, p1.stderr);
  t.true(registered(c.w.pid), "the task's memory is tracked after a pre-dump");
  const h1 = holder(c);
  await passes(t, c.w);

  const p2 = c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1"]);
  t.is(p2.code, 0, p2.stderr);
  t.regex(p2.stderr, /write tracking of pid \d+ holds since the parent/);
  t.regex(p2.stderr, /pid \d+: [1-9]\d* VMAs with their writes tracked since the parent/);
  // a pre-dump lets the task go before writing: what it wrote was copied before the freeze
  t.regex(p2.stderr, /pid \d+: \d+ pages written since the parent copied before the freeze/);
  // written since: a few % of 8192 pages (under half even on a loaded machine); the rest
  // from the parent, neither copied nor compared
  t.true(stat(p2.stdout, "Memory pages skipped from parent") > 4096, p2.stdout);
  t.true(stat(p2.stdout, "Memory pages written") < 4096, p2.stdout);
  const h2 = holder(c);
  t.not(h2, h1);
  await waitFor(`the first holder ${h1} to go`, () => goneOrZombie(h1));
  await passes(t, c.w);

  const before = statSync(join(c.d(1), "pages-1.img")).blocks;
  const r = c.run(["dump", "-t", String(c.w.pid), "-D", c.d(3), "--prev-images-dir", "../d2", "--auto-dedup"]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /write tracking of pid \d+ holds since the parent/);
  t.true(stat(r.stdout, "Memory pages skipped from parent") > 4096, r.stdout);
  // --auto-dedup punched the pages written since out of the first pass's pages file
  t.true(statSync(join(c.d(1), "pages-1.img")).blocks < before);
  // a final dump ends the tracking: no holder, no state
  await waitFor(`the holder ${h2} to go`, () => goneOrZombie(h2));
  t.false(existsSync(c.stateFile));
  await waitFor(`pid ${c.w.pid} to be free`, () => !existsSync(`/proc/${c.w.pid}`));
  const pm = await readPagemap(c.d(3), `pagemap-${c.w.pid}.img`);
  t.true(pm.runs.some((x) => x.flags & PE_PARENT));
  await restoreTask(t, c.d(3));
  t.regex(await c.w.check(), /^PASS /);
});

test.serial("a tracked chain ending in dump -R --track-mem goes on; after dedup the last dump restores with criu 4.1.1", async (t) => {
  if (!haveRoot(t)) return;
  // static: criu's root has a libc of its own
  const c = await chain(t, ["32"], { static: true });
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]).code, 0);
  await passes(t, c.w);
  const r2 = c.run(["dump", "-R", "--track-mem", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1"]);
  t.is(r2.code, 0, r2.stderr);
  t.regex(r2.stderr, /holds since the parent/);
  t.true(registered(c.w.pid), "--track-mem keeps the tracking");
  t.truthy(holder(c));
  await passes(t, c.w);
  const r3 = c.run(["dump", "-t", String(c.w.pid), "-D", c.d(3), "--prev-images-dir", "../d2"]);
  t.is(r3.code, 0, r3.stderr);
  t.regex(r3.stderr, /holds since the parent/);
  t.true(stat(r3.stdout, "Memory pages skipped from parent") > 4096, r3.stdout);
  await waitFor(`pid ${c.w.pid} to be free`, () => !existsSync(`/proc/${c.w.pid}`));
  const dd = tscriu(["dedup", "-D", c.d(3)]);
  t.is(dd.code, 0, dd.stderr);
  await restoredByCriu(t, c.w.pid, c.d(3));
  t.regex(await c.w.check(), /^PASS /);
});

/**
 * A pre-dump, then dump -R on top of it with `env`, the task writing 2 % of its pages every
 * 10 ms all along (so it also writes pages while they are pre-copied); then the task is
 * killed, the dump restored, and the task checks every page.
 */
async function preCopiedChain(t: ExecutionContext, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const c = await chain(t, ["32", "20"]);
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]).code, 0);
  await passes(t, c.w);
  const r = tscriu(["dump", "-R", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1", "--display-stats", "-v4"], { env: { ...c.env, ...env } });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /holds since the parent/);
  await passes(t, c.w);
  await killAndReap(c.w.pid);
  await restoreTask(t, c.d(2));
  t.regex(await c.w.check(), /^PASS /);
  return r;
}

test.serial("dump -R after a pre-dump: pages written since the parent are copied before the freeze, those written during that copy while frozen; every page restores as last written", async (t) => {
  const r = await preCopiedChain(t);
  const pre = Number(/(\d+) pages written since the parent copied before the freeze/.exec(r.stderr)?.[1] ?? NaN);
  t.true(pre > 0, r.stderr);
  // the pre-copied pages are written from that copy, not taken from the parent
  t.true(stat(r.stdout, "Memory pages written") >= pre, r.stdout);
  t.true(stat(r.stdout, "Memory pages skipped from parent") > 0, r.stdout);
  // its smaps was read while it ran, and kept: it writes memory only (smaps-ahead.ts)
  t.regex(r.stderr, /pid \d+: smaps read ahead kept \(no mapping call since\)/);
});

test.serial("a pre-copy that fails after protecting pages again: that task's tracking is not trusted, every page is copied while frozen, the dump restores", async (t) => {
  const r = await preCopiedChain(t, { TSCRIU_FAULT: "pre-copy" });
  t.regex(r.stderr, /no pre-copy \(.*fault injected by TSCRIU_FAULT=pre-copy.*\): every page of it is copied while frozen/);
  // all 8192 pages of the workload's memory (the parent still serves bytes found equal elsewhere)
  t.true(stat(r.stdout, "Memory pages written") >= 8192, r.stdout);
});

test.serial("a pass that fails after protecting ends the tracking: the task runs on unprotected, the next pass compares pages and restores", async (t) => {
  const c = await chain(t);
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]).code, 0);
  const h1 = holder(c);
  await passes(t, c.w);
  // the images step comes after the memory was protected again
  const bad = tscriu(["pre-dump", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1", "-v4"], { env: { ...c.env, TSCRIU_FAULT: "images" } });
  t.is(bad.code, 1);
  t.regex(bad.stderr, /fault injected by TSCRIU_FAULT=images/);
  t.false(existsSync(c.d(2)));
  await waitFor(`the holder ${h1} to go`, () => goneOrZombie(h1));
  t.false(registered(c.w.pid), "no VMA is left registered");
  t.false(existsSync(c.stateFile));
  await passes(t, c.w);
  await passes(t, c.w);
  // The chain's earlier images stay a parent: found by comparing bytes now.
  const r = c.run(["dump", "-t", String(c.w.pid), "-D", c.d(3), "--prev-images-dir", "../d1"]);
  t.is(r.code, 0, r.stderr);
  t.notRegex(r.stderr, /holds since the parent/);
  t.true(stat(r.stdout, "Memory pages skipped from parent") > 0, r.stdout);
  await waitFor(`pid ${c.w.pid} to be free`, () => !existsSync(`/proc/${c.w.pid}`));
  await restoreTask(t, c.d(3));
  t.regex(await c.w.check(), /^PASS /);
});

test.serial("tracking set by another pass than the parent is not trusted: the dump compares bytes and restores", async (t) => {
  const c = await chain(t);
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]).code, 0);
  await passes(t, c.w);
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1"]).code, 0);
  await passes(t, c.w);
  // the parent named is d1, but the tracking was armed by d2: pages written between d1 and d2 are not reported any more
  const r = c.run(["dump", "-t", String(c.w.pid), "-D", c.d(3), "--prev-images-dir", "../d1"]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /write tracking of pid \d+ not used: it was set by the pass in .*d2, not by the parent .*d1/);
  await waitFor(`pid ${c.w.pid} to be free`, () => !existsSync(`/proc/${c.w.pid}`));
  await restoreTask(t, c.d(3));
  t.regex(await c.w.check(), /^PASS /);
});

test.serial("pages given back (MADV_DONTNEED) and written again between passes are seen as written", async (t) => {
  const c = await chain(t, ["16", "1", "discard"]);
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]).code, 0);
  await passes(t, c.w);
  const p2 = c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1"]);
  t.is(p2.code, 0, p2.stderr);
  t.regex(p2.stderr, /holds since the parent/);
  await passes(t, c.w);
  const r = c.run(["dump", "-t", String(c.w.pid), "-D", c.d(3), "--prev-images-dir", "../d2"]);
  t.is(r.code, 0, r.stderr);
  await waitFor(`pid ${c.w.pid} to be free`, () => !existsSync(`/proc/${c.w.pid}`));
  await restoreTask(t, c.d(3));
  t.regex(await c.w.check(), /^PASS /);
});

test.serial("a task that exits between passes takes its tracking with it: the holder exits, the next pass is refused by name", async (t) => {
  const c = await chain(t);
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]).code, 0);
  const h = holder(c);
  process.kill(c.w.pid, "SIGKILL");
  await waitFor(`the holder ${h} to go after its task`, () => goneOrZombie(h));
  const r = c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1"]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`${c.w.pid}`));
  t.false(existsSync(c.d(2)));
});

test.serial("a pass that died half-way (its state unarmed, a holder retired) is not trusted: its holders are killed, the next pass compares bytes", async (t) => {
  const c = await chain(t);
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]).code, 0);
  const h = holder(c);
  // What a pass killed while it changed the protection, or while it handed the fds to a
  // new holder, leaves behind.
  const state = JSON.parse(readFileSync(c.stateFile, "utf8")) as Record<string, unknown>;
  writeFileSync(c.stateFile, JSON.stringify({ ...state, armed: null, retired: [state["holder"]] }));
  await passes(t, c.w);
  const r = c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1"]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /write tracking of pid \d+ not used: its holder process is gone/);
  t.true(goneOrZombie(h), "the retired holder was killed");
  t.true(stat(r.stdout, "Memory pages skipped from parent") > 0, "compared with the parent instead");
  t.not(holder(c), h, "a new holder keeps this pass's tracking");
  await passes(t, c.w);
  const d = c.run(["dump", "-t", String(c.w.pid), "-D", c.d(3), "--prev-images-dir", "../d2"]);
  t.is(d.code, 0, d.stderr);
  t.regex(d.stderr, /holds since the parent/);
  await waitFor(`pid ${c.w.pid} to be free`, () => !existsSync(`/proc/${c.w.pid}`));
  await restoreTask(t, c.d(3));
  t.regex(await c.w.check(), /^PASS /);
});

test.serial("a state file tscriu did not write is named in a warning and ignored; the pass compares bytes", async (t) => {
  const c = await chain(t);
  t.is(c.run(["pre-dump", "-t", String(c.w.pid), "-D", c.d(1)]).code, 0);
  const h = holder(c);
  writeFileSync(c.stateFile, JSON.stringify({ root: c.w.pid, retired: 5, holder: "x" }));
  await passes(t, c.w);
  const r = c.run(["dump", "-t", String(c.w.pid), "-D", c.d(2), "--prev-images-dir", "../d1"]);
  t.is(r.code, 0, r.stderr);
  t.true(r.stderr.includes(`write tracking state ${c.stateFile} is not one tscriu wrote: ignored`), r.stderr);
  t.notRegex(r.stderr, /holds since the parent/);
  t.true(stat(r.stdout, "Memory pages skipped from parent") > 0, "compared with the parent instead");
  await waitFor(`pid ${c.w.pid} to be free`, () => !existsSync(`/proc/${c.w.pid}`));
  // its holder went with the task
  await waitFor(`the holder ${h} to go`, () => goneOrZombie(h));
  await restoreTask(t, c.d(2));
  t.regex(await c.w.check(), /^PASS /);
});
