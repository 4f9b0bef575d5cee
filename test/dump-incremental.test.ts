// Incremental dumps without soft-dirty: pre-dump, --prev-images-dir chains, --track-mem,
// --auto-dedup, dedup, and dump -R letting the task go before its pages are written. The
// workload (test/workloads/incr.c) writes 1 % of its pages every 100 ms the whole time and
// checks on SIGUSR1 that every page holds the version its table says: a stale page taken
// from a parent, a page from after the freeze or a torn one fails it.
import { existsSync, mkdirSync, readFileSync, readlinkSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { dump } from "../orchestrator/dump/dump.js";
import { SmapsAhead } from "../orchestrator/dump/smaps-ahead.js";
import { firstRuns } from "../orchestrator/dump/wpsnap.js";
import { readImage } from "../images/io.js";
import { PE_PARENT, readPagemap } from "../images/pages.js";
import { tscriu } from "./helpers/cli.js";
import { capturedLog } from "./helpers/log.js";
import { haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { restoreTask, status } from "./helpers/restore.js";
import { goneOrZombie, killAndReap, procState, RUNS_ON, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

/** The writes counter of the workload's last check. */
async function checked(t: ExecutionContext, w: Workload): Promise<number> {
  const line = await w.check();
  t.regex(line, /^PASS pages=\d+ writes=\d+$/);
  return Number(/writes=(\d+)/.exec(line)?.[1] ?? NaN);
}

/** The task runs on and writes on. */
async function runsOn(t: ExecutionContext, w: Workload): Promise<void> {
  t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  t.is(status(w.pid).get("TracerPid"), "0");
  const first = await checked(t, w);
  for (let i = 0; i < 500; i++) {
    if ((await checked(t, w)) > first) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  t.fail(`${w.name} (pid ${w.pid}) wrote nothing in 5 s`);
}

const stat = (out: string, what: string): number => Number(new RegExp(`${what}: (\\d+)`).exec(out)?.[1] ?? NaN);

async function pagemapOf(dir: string, pid: number): Promise<{ parent: number; present: number }> {
  const pm = await readPagemap(dir, `pagemap-${pid}.img`);
  let parent = 0;
  let present = 0;
  for (const r of pm.runs) {
    if (r.flags & PE_PARENT) parent += r.nrPages;
    else present += r.nrPages;
  }
  return { parent, present };
}

test.serial("pre-dump, pre-dump, dump --track-mem: a task writing its memory all along restores with every page it last wrote", async (t) => {
  const w = await startWorkload(t, "incr", ["32"]);
  const base = tempDir(t, "tscriu-chain-");
  const d = (n: number): string => join(base, `d${n}`);
  const p1 = tscriu(["pre-dump", "-t", String(w.pid), "-D", d(1), "--display-stats"]);
  t.is(p1.code, 0, p1.stderr);
  t.true(stat(p1.stdout, "Memory pages written") >= 8192, p1.stdout);
  t.is(stat(p1.stdout, "Memory pages skipped from parent"), 0);
  await runsOn(t, w);
  const p2 = tscriu(["pre-dump", "-t", String(w.pid), "-D", d(2), "--prev-images-dir", "../d1", "--track-mem", "--display-stats"]);
  t.is(p2.code, 0, p2.stderr);
  t.is(readlinkSync(join(d(2), "parent")), "../d1");
  // the task wrote some pages between the passes (it checked itself in between), not all
  t.true(stat(p2.stdout, "Memory pages skipped from parent") > 4096, p2.stdout);
  t.true(stat(p2.stdout, "Memory pages written") > 0, p2.stdout);
  await runsOn(t, w);
  const r = tscriu(["dump", "-t", String(w.pid), "-D", d(3), "--prev-images-dir", "../d2", "--track-mem", "--display-stats"]);
  t.is(r.code, 0, r.stderr);
  t.true(stat(r.stdout, "Memory pages skipped from parent") > 4096, r.stdout);
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  const map = await pagemapOf(d(3), w.pid);
  t.true(map.parent > 4096 && map.present > 0, JSON.stringify(map));
  // A pre-dump's inventory, as criu writes it: the uptime (criu's pid-reuse check) and the mode.
  const inv = (await readImage(join(d(1), "inventory.img"))).entries[0]!;
  t.true(typeof inv["dump_uptime"] === "bigint" && inv["dump_uptime"] > 0n);
  t.is(inv["pre_dump_mode"], 1);
  t.deepEqual(readdirSync(d(1)).sort(), ["inventory.img", `pagemap-${w.pid}.img`, "pages-1.img", "stats-dump"]);

  // dedup of the chain first: the restore reads the same bytes.
  const dd = tscriu(["dedup", "-D", d(3)]);
  t.is(dd.code, 0, dd.stderr);
  await restoreTask(t, d(3));
  t.regex(await w.check(), /^PASS /);
});

test.serial("pre-dump leaves the task running and untouched", async (t) => {
  const w = await startWorkload(t, "incr", ["16"]);
  const work = tempDir(t, "tscriu-work-");
  const dir = join(tempDir(t, "tscriu-chain-"), "pre");
  const before = { status: status(w.pid), maps: readFileSync(`/proc/${w.pid}/maps`, "utf8"), fds: readdirSync(`/proc/${w.pid}/fd`).sort() };
  const r = tscriu(["pre-dump", "-t", String(w.pid), "-D", dir, "--pre-dump-mode", "read", "-W", work, "-v4", "-o", "pre.log"]);
  t.is(r.code, 0, r.stderr);
  const after = status(w.pid);
  for (const k of ["SigBlk", "SigIgn", "SigCgt", "SigPnd", "ShdPnd", "TracerPid", "Threads", "NoNewPrivs", "Seccomp"]) t.is(after.get(k), before.status.get(k), k);
  t.is(readFileSync(`/proc/${w.pid}/maps`, "utf8"), before.maps);
  t.deepEqual(readdirSync(`/proc/${w.pid}/fd`).sort(), before.fds);
  await runsOn(t, w);
  // -W takes the log and the stats; the mode is criu's number for "read".
  t.regex(readFileSync(join(work, "pre.log"), "utf8"), /Pre-dumping finished successfully \(task left running\)/);
  t.true(existsSync(join(work, "stats-dump")));
  t.is((await readImage(join(dir, "inventory.img"))).entries[0]!["pre_dump_mode"], 2);
  t.is(tscriu(["pre-dump", "-t", String(w.pid), "-D", join(dir, "x"), "--pre-dump-mode", "copy"]).stderr, 'tscriu pre-dump: --pre-dump-mode must be splice or read, not "copy"\n');
});

test.serial("--prev-images-dir that does not exist or holds no images is refused by name, the task untouched", async (t) => {
  const w = await startWorkload(t, "incr", ["8"]);
  const base = tempDir(t, "tscriu-chain-");
  mkdirSync(join(base, "empty"));
  for (const [prev, why] of [
    ["../nowhere", /--prev-images-dir \.\.\/nowhere \(.*\/nowhere\) does not exist: ENOENT/],
    ["../empty", /--prev-images-dir \.\.\/empty \(.*\/empty\) holds no images of a dump or pre-dump/],
  ] as const) {
    for (const cmd of ["pre-dump", "dump"]) {
      const r = tscriu([cmd, "-t", String(w.pid), "-D", join(base, "new"), "--prev-images-dir", prev]);
      t.is(r.code, 1);
      t.regex(r.stderr, why);
      t.false(existsSync(join(base, "new")), "nothing made");
    }
  }
  await runsOn(t, w);
});

test.serial("--auto-dedup punches the parent's replaced pages; dump -R lets the task go before writing, the chain restores", async (t) => {
  const w = await startWorkload(t, "incr", ["16"]);
  const base = tempDir(t, "tscriu-chain-");
  await dump({ pid: w.pid, imagesDir: join(base, "d1"), preDump: true });
  const pages1 = join(base, "d1/pages-1.img");
  const blocks = statSync(pages1).blocks;
  await runsOn(t, w);
  const r = await dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1", autoDedup: true, leaveRunning: true });
  t.true(r.stats.pages_skipped_parent > 0n && r.stats.pages_written > 0n);
  // every page d2 wrote itself is a hole in d1 now; the file keeps its size
  t.true(statSync(pages1).blocks < blocks, `${statSync(pages1).blocks} blocks, were ${blocks}`);
  await runsOn(t, w);
  await killAndReap(w.pid);
  await restoreTask(t, join(base, "d2"));
  t.regex(await w.check(), /^PASS /);
});

test.serial("a pass that fails in the middle of a chain: the task runs on, the earlier images still make a chain", async (t) => {
  const w = await startWorkload(t, "incr", ["16"]);
  const base = tempDir(t, "tscriu-chain-");
  await dump({ pid: w.pid, imagesDir: join(base, "d1"), preDump: true });
  for (const fault of ["enospc", "vm-read", "write"]) {
    await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1", preDump: true, faults: fault }), { message: /dump: .* of pid \d+ failed/ });
    t.false(existsSync(join(base, "d2")), `${fault}: the failed pass leaves nothing`);
    await runsOn(t, w);
  }
  await dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1" });
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  await restoreTask(t, join(base, "d2"));
  t.regex(await w.check(), /^PASS /);
});

test.serial("criu restores tscriu's chain: pre-dump, pre-dump, dump", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "incr", ["16"], { static: true });
  const base = tempDir(t, "tscriu-chain-");
  await dump({ pid: w.pid, imagesDir: join(base, "d1"), preDump: true });
  await runsOn(t, w);
  await dump({ pid: w.pid, imagesDir: join(base, "d2"), preDump: true, prevImagesDir: "../d1" });
  await runsOn(t, w);
  const r = await dump({ pid: w.pid, imagesDir: join(base, "d3"), prevImagesDir: "../d2" });
  t.true(r.stats.pages_skipped_parent > 0n);
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  await restoredByCriu(t, w.pid, join(base, "d3"));
  t.regex(await w.check(), /^PASS /);
});

test.serial("restore --auto-dedup punches the restored pages out of the chain's pages files once the task runs", async (t) => {
  const w = await startWorkload(t, "incr", ["16"]);
  const base = tempDir(t, "tscriu-chain-");
  await dump({ pid: w.pid, imagesDir: join(base, "d1"), preDump: true });
  await runsOn(t, w);
  await dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1" });
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  const blocks = (dir: string): number => statSync(join(base, dir, "pages-1.img")).blocks;
  const before = { d1: blocks("d1"), d2: blocks("d2") };
  const size1 = statSync(join(base, "d1", "pages-1.img")).size;
  const r = tscriu(["restore", "-D", join(base, "d2"), "-d", "--auto-dedup"]);
  t.is(r.code, 0, r.stderr);
  t.regex(await w.check(), /^PASS /);
  // 16 MiB is 32768 blocks of 512 bytes: what is left is d1's pages that d2 replaced
  t.true(blocks("d2") < before.d2 / 4 && blocks("d1") < before.d1 / 2, `${JSON.stringify(before)} -> d1 ${blocks("d1")}, d2 ${blocks("d2")}`);
  t.is(statSync(join(base, "d1", "pages-1.img")).size, size1, "the files keep their size");
});

test.serial("a damaged parent fails the dump naming its file; the task runs on, nothing is left", async (t) => {
  const w = await startWorkload(t, "incr", ["8"]);
  const base = tempDir(t, "tscriu-chain-");
  await dump({ pid: w.pid, imagesDir: join(base, "d1"), preDump: true });
  const pm = join(base, "d1", `pagemap-${w.pid}.img`);
  const good = readFileSync(pm);
  // a run claiming more pages than the pages file holds
  writeFileSync(pm, good.subarray(0, good.length - 3));
  for (const leaveRunning of [false, true]) {
    await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1", leaveRunning }), { message: new RegExp(`dump: parent of pid ${w.pid} failed: the parent chain cannot be read: .*pagemap-${w.pid}\\.img`) });
    t.false(existsSync(join(base, "d2")));
    await runsOn(t, w);
  }
  // A default dump (killed after) reads the chain's pagemaps before the freeze: it fails
  // without having frozen the task.
  const steps: string[] = [];
  await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1" }, (e) => void (e.type === "step" && steps.push(e.step))), { message: /the parent chain cannot be read/ });
  t.false(steps.includes("seize"), steps.join(", "));
  writeFileSync(join(base, "d1", "pages-1.img"), Buffer.alloc(4096));
  writeFileSync(pm, good);
  await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1" }), { message: /the parent chain cannot be read: the pages file ends at 4096 bytes, but the pagemap wants data up to \d+ .*pages-1\.img/ });
  await runsOn(t, w);
});

/** The tree workload (five processes); the four besides the root are killed when the test ends (kill(), sooner). */
async function startTree(t: ExecutionContext): Promise<{ w: Awaited<ReturnType<typeof startWorkload>>; others: number[]; kill: () => void }> {
  const w = await startWorkload(t, "tree");
  const others = ["a", "b", "g", "c"].map((k) => Number(w.info[k]));
  const kill = (): void => {
    for (const p of others) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone, maybe with its parent (each has a death signal)
      }
    }
  };
  t.teardown(kill);
  return { w, others, kill };
}

test.serial("a process tree through pre-dump and dump: a pagemap per process, each restored from the chain", async (t) => {
  const { w, others } = await startTree(t);
  t.is(await w.check(), "PASS tree=5");
  const base = tempDir(t, "tscriu-chain-");
  await dump({ pid: w.pid, imagesDir: join(base, "d1"), preDump: true });
  t.deepEqual(readdirSync(join(base, "d1")).filter((f) => f.startsWith("pagemap-")).length, 5);
  t.is(await w.check(), "PASS tree=5", "the tree runs on after the pre-dump");
  const r = await dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1" });
  t.true(r.stats.pages_skipped_parent > 0n);
  for (const p of others) await waitFor(`pid ${p} to be gone after the dump`, () => goneOrZombie(p));
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  await restoreTask(t, join(base, "d2"));
  t.is(await w.check(), "PASS tree=5");
});

/** No VMA of the task is registered with a userfaultfd any more (smaps' um/uw flags). */
function noUffd(t: ExecutionContext, pid: number): void {
  const flags = readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n").filter((l) => l.startsWith("VmFlags:") && / u[mw]\b/.test(l));
  t.deepEqual(flags, [], "no userfaultfd registration left");
}

test.serial("dump -R --wp-snapshot: the task runs on while its pages are copied; the images are those of the frozen instant", async (t) => {
  const w = await startWorkload(t, "incr", ["64", "5"]);
  const base = tempDir(t, "tscriu-wp-");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(base, "d"), "-R", "--wp-snapshot", "-v4", "-o", join(base, "dump.log")]);
  t.is(r.code, 0, r.stderr);
  t.regex(readFileSync(join(base, "dump.log"), "utf8"), /write-protect snapshot written in place with the task running, \d+ pages copied first, at its writes/);
  noUffd(t, w.pid);
  await runsOn(t, w);
  await killAndReap(w.pid);
  await restoreTask(t, join(base, "d"));
  t.regex(await w.check(), /^PASS /);
  const s = tscriu(["dump", "-t", "1", "-D", join(base, "x"), "--wp-snapshot", "-s"]);
  t.is(s.code, 1);
  t.regex(s.stderr, /--wp-snapshot with -s \(a tree that ran on while its pages were copied would be left stopped elsewhere than its images\) is not supported by tscriu/);
  t.false(existsSync(join(base, "x")));
});

test.serial("dump --wp-snapshot without -R: the task runs while its pages are copied, then is killed once its images are on disk; restored as at the freeze", async (t) => {
  const w = await startWorkload(t, "incr", ["64", "5"]);
  const base = tempDir(t, "tscriu-wp-");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(base, "d"), "--wp-snapshot", "-v4", "-o", join(base, "dump.log")]);
  t.is(r.code, 0, r.stderr);
  const log = readFileSync(join(base, "dump.log"), "utf8");
  t.regex(log, /task let go after \d+ us frozen .*; writing its pages/);
  t.regex(log, /write-protect snapshot written in place with the task running, \d+ pages copied first, at its writes/);
  t.regex(log, /Dumping finished successfully \(task killed\)/);
  await waitFor(`pid ${w.pid} to be gone`, () => goneOrZombie(w.pid));
  await restoreTask(t, join(base, "d"));
  t.regex(await w.check(), /^PASS /);
});

test.serial("dump --wp-snapshot without -R that fails before or after the task is let go: it is not killed, runs on unprotected", async (t) => {
  const w = await startWorkload(t, "incr", ["16", "5"]);
  const base = tempDir(t, "tscriu-wp-");
  for (const fault of ["inside", "enospc", "sync"]) {
    await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(base, "d"), wpSnapshot: true, faults: fault }), { message: /dump: .* of pid \d+ failed/ });
    t.false(existsSync(join(base, "d")), fault);
    noUffd(t, w.pid);
    await runsOn(t, w);
  }
});

test.serial("dump -R --wp-snapshot of a task with a MAP_DROPPABLE mapping (which userfaultfd refuses to register): the rest snapshotted, the task restores", async (t) => {
  const w = await startWorkload(t, "droppable");
  // MAP_DROPPABLE came with Linux 6.11 (CI's kernel has it)
  t.regex(w.info["droppable"] ?? "", /^0x[0-9a-f]+$/, "the kernel refused MAP_DROPPABLE");
  const base = tempDir(t, "tscriu-wp-");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(base, "d"), "-R", "--wp-snapshot", "-v4", "-o", join(base, "dump.log")]);
  t.is(r.code, 0, r.stderr);
  const log = readFileSync(join(base, "dump.log"), "utf8");
  // maps cannot tell a droppable VMA: the protection made from it is refused, and made
  // again from smaps' VMAs, without the droppable one
  t.regex(log, /the protectable VMAs of smaps are not those of maps: protected again/);
  t.notRegex(log, /\): its pages are copied while it is frozen/);
  t.regex(log, /write-protect snapshot written in place with the task running/);
  noUffd(t, w.pid);
  await killAndReap(w.pid);
  await restoreTask(t, join(base, "d"));
  t.is(await w.check(), "PASS droppable");
});

test.serial("dump -R --wp-snapshot of a task that writes faster than its pages are copied: every page as at the freeze", async (t) => {
  // 5 % of 256 MiB every 10 ms: many pages are written before they are copied; the
  // snapshot holds only 20 of them in memory here, the others are written at the fault
  const w = await startWorkload(t, "incr", ["256", "50"]);
  const base = tempDir(t, "tscriu-wp-");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(base, "d"), "-R", "--wp-snapshot", "-v4", "-o", join(base, "dump.log")], { env: { TSCRIU_WP_HOLD: "20" } });
  t.is(r.code, 0, r.stderr);
  const early = Number(/written in place with the task running, (\d+) pages copied first/.exec(readFileSync(join(base, "dump.log"), "utf8"))?.[1]);
  t.log(`${early} pages copied first, at the task's writes`);
  t.true(early > 20, "past what is held");
  noUffd(t, w.pid);
  await runsOn(t, w);
  await killAndReap(w.pid);
  await restoreTask(t, join(base, "d"));
  t.regex(await w.check(), /^PASS /);
});

test.serial("dump -R --wp-snapshot: the protection made ahead while the task runs; what it writes before the freeze is protected again at the freeze, every page as at the freeze", async (t) => {
  // 5 % of 256 MiB every 10 ms, and 500 ms between the protection made ahead and the
  // freeze: the task writes many of its pages in between (each unprotected at its fault)
  const w = await startWorkload(t, "incr", ["256", "50"]);
  const base = tempDir(t, "tscriu-wp-");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(base, "d"), "-R", "--wp-snapshot", "-v4", "-o", join(base, "dump.log")], { env: { TSCRIU_WP_AHEAD_MS: "500" } });
  t.is(r.code, 0, r.stderr);
  const log = readFileSync(join(base, "dump.log"), "utf8");
  t.regex(log, /write-protection made ahead for 1 of 1 processes; the tree stood still \d+ us for their userfaultfds/);
  const again = Number(/write-protection made ahead; (\d+) pages written or mapped since protected at the freeze/.exec(log)?.[1]);
  t.log(`${again} pages protected again at the freeze`);
  // 4,003 on a quiet machine, 966 in a loaded full run: each first write waits on a fault
  t.true(again > 100, "the pages written in between");
  // the dump waited for its first run after the protection (seen, unless a loaded machine
  // kept it off the CPU for the 100 ms the wait lasts; the wait's own test checks both)
  t.regex(log, /pid \d+ (ran \d+ us after its protection was made|did not run within 100 ms of its protection)/);
  noUffd(t, w.pid);
  await runsOn(t, w);
  await killAndReap(w.pid);
  await restoreTask(t, join(base, "d"));
  t.regex(await w.check(), /^PASS /);
});

/** The madv bits of the mm image's VMA at `start`. */
async function madvAt(dir: string, pid: number, start: number): Promise<bigint | undefined> {
  const mm = (await readImage(join(dir, `mm-${pid}.img`))).entries[0]!;
  const v = (mm["vmas"] as Record<string, unknown>[]).find((e) => e["start"] === BigInt(start));
  return v === undefined ? undefined : ((v["madv"] as bigint | undefined) ?? 0n);
}

const MADV_DONTFORK_BIT = 1n << 10n;

test.serial("dump -R --wp-snapshot of a task that changes no mapping: its smaps read ahead of the freeze is kept", async (t) => {
  const w = await startWorkload(t, "madvlate");
  const base = tempDir(t, "tscriu-wp-");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(base, "d"), "-R", "--wp-snapshot", "-v4", "-o", join(base, "dump.log")]);
  t.is(r.code, 0, r.stderr);
  // (tracefs's syscall tracepoints are on this machine kind: without them this fails, rather than passing with the read in the freeze)
  t.regex(readFileSync(join(base, "dump.log"), "utf8"), new RegExp(`pid ${w.pid}: smaps read ahead kept \\(no mapping call since\\)`));
  t.is(await madvAt(join(base, "d"), w.pid, w.addr("region")), 0n);
  await killAndReap(w.pid);
  await restoreTask(t, join(base, "d"));
  t.is(await w.check(), "PASS advised=0 dc=0");
});

test.serial("dump -R --wp-snapshot of a task that madvises between the smaps read ahead and the freeze: smaps is read again, the advice kept", async (t) => {
  const w = await startWorkload(t, "madvlate");
  const dir = tempDir(t, "tscriu-wp-");
  const { log, lines } = capturedLog();
  // 3 s between the protection made ahead (smaps read by then) and the freeze, for the advice
  process.env["TSCRIU_WP_AHEAD_MS"] = "3000";
  let done: Promise<unknown>;
  try {
    done = dump({ pid: w.pid, imagesDir: dir, leaveRunning: true, wpSnapshot: true, log });
    await waitFor("the protection made ahead", () => lines.some((l) => l.includes("write-protection made ahead for 1 of 1 processes")), 20_000);
  } finally {
    delete process.env["TSCRIU_WP_AHEAD_MS"];
  }
  process.kill(w.pid, "SIGUSR2");
  await waitFor("the task's advice", () => w.results().includes("advised"));
  t.false(lines.some((l) => l.includes(`Collecting pid ${w.pid}`)), "advised before the freeze");
  await done;
  t.regex(lines.join(""), new RegExp(`pid ${w.pid}: smaps read again in the freeze: [1-9]\\d* entries or exits of mapping calls since it was read ahead`));
  t.is(await madvAt(dir, w.pid, w.addr("region")), MADV_DONTFORK_BIT, "the VMA's MADV_DONTFORK, which maps does not show");
  await killAndReap(w.pid);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS advised=1 dc=1");
});

test.serial("smaps read ahead: a process gone before it is watched is left out, the others are watched and kept", async (t) => {
  const { log, lines } = capturedLog();
  const w = await startWorkload(t, "madvlate");
  const gone = 2 ** 22 + 1;
  const ahead = SmapsAhead.start([gone, w.pid], log.module("dump"));
  if (!ahead) return t.fail(lines.join(""));
  await ahead.settled();
  const kept = await ahead.atFreeze();
  await ahead.close();
  t.deepEqual([...kept.keys()], [w.pid], lines.join(""));
  t.regex(lines.join(""), new RegExp(`pid ${gone}: smaps is read in the freeze \\(gone`));
});

test.serial("the wait for a task's first run after its protection: seen for tasks that run, given up after the cap for a stopped one", async (t) => {
  const { log, lines } = capturedLog();
  const busy = await startWorkload(t, "incr", ["4", "5"]);
  const busy2 = await startWorkload(t, "incr", ["4", "5"]);
  // (in the order they were seen to run)
  t.deepEqual([...(await firstRuns([busy.pid, busy2.pid], 2000, log.module("dump")))].sort(), [busy.pid, busy2.pid].sort());
  const idle = await startWorkload(t, "incr", ["4", "5"]);
  process.kill(idle.pid, "SIGSTOP");
  // (the stop is taken when it next runs)
  await waitFor(`pid ${idle.pid} to stop`, () => procState(idle.pid) === "T");
  const t0 = Date.now();
  t.deepEqual(await firstRuns([idle.pid, 2 ** 22 + 1], 50, log.module("dump")), new Set(), "the stopped one and a pid that is not there did not run");
  t.true(Date.now() - t0 >= 50, "waited the cap");
  process.kill(idle.pid, "SIGCONT");
  t.regex(lines.join(""), new RegExp(`pid ${idle.pid} did not run within 50 ms of its protection`));
  for (const w of [busy, busy2, idle]) await killAndReap(w.pid);
});

test.serial("dump -R --wp-snapshot of a process tree: each process's snapshot written in place in turn, the tree runs on and restores", async (t) => {
  const { w, others, kill } = await startTree(t);
  t.is(await w.check(), "PASS tree=5");
  const base = tempDir(t, "tscriu-wp-");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(base, "d"), "-R", "--wp-snapshot", "-v4", "-o", join(base, "dump.log")]);
  t.is(r.code, 0, r.stderr);
  t.is(readFileSync(join(base, "dump.log"), "utf8").match(/write-protect snapshot written in place/g)?.length, 5);
  // running on, unprotected (a check now would change the file the images hold)
  for (const p of [w.pid, ...others]) {
    t.regex(readFileSync(`/proc/${p}/stat`, "utf8"), /^\d+ \(\S+\) [RS] /, `pid ${p} runs on`);
    noUffd(t, p);
  }
  kill();
  await killAndReap(w.pid);
  for (const p of others) await waitFor(`pid ${p} to be gone`, () => goneOrZombie(p));
  await restoreTask(t, join(base, "d"));
  t.is(await w.check(), "PASS tree=5");
});

test.serial("criu restores a dump -R --wp-snapshot written in place while the task wrote its pages", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "incr", ["64", "20"], { static: true });
  const base = tempDir(t, "tscriu-wp-");
  const r = await dump({ pid: w.pid, imagesDir: join(base, "d"), leaveRunning: true, wpSnapshot: true });
  t.true(r.stats.pages_written > 0n);
  await killAndReap(w.pid);
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  await restoredByCriu(t, w.pid, join(base, "d"));
  t.regex(await w.check(), /^PASS /);
});

test.serial("criu restores a dump --wp-snapshot without -R (the task killed once its images were on disk)", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "incr", ["64", "20"], { static: true });
  const base = tempDir(t, "tscriu-wp-");
  const r = await dump({ pid: w.pid, imagesDir: join(base, "d"), wpSnapshot: true });
  t.true(r.stats.pages_written > 0n);
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  await restoredByCriu(t, w.pid, join(base, "d"));
  t.regex(await w.check(), /^PASS /);
});

test.serial("dump -R --wp-snapshot that fails before or after the task is let go: write-protection removed, the task runs on", async (t) => {
  const w = await startWorkload(t, "incr", ["16", "5"]);
  const base = tempDir(t, "tscriu-wp-");
  // proc and inside: after the protection was made ahead, before it is completed at the freeze
  for (const fault of ["proc", "inside", "images", "enospc", "post-dump"]) {
    await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(base, "d"), leaveRunning: true, wpSnapshot: true, faults: fault }), { message: /dump: .* of pid \d+ failed/ });
    t.false(existsSync(join(base, "d")), fault);
    noUffd(t, w.pid);
    await runsOn(t, w);
  }
});

test.serial("dump -R --wp-snapshot of a task that gives memory back while it is copied: a clear failure or a true snapshot, never a page of later", async (t) => {
  const w = await startWorkload(t, "incr", ["128", "20", "discard"]);
  const base = tempDir(t, "tscriu-wp-");
  try {
    await dump({ pid: w.pid, imagesDir: join(base, "d"), leaveRunning: true, wpSnapshot: true });
  } catch (e) {
    // the usual outcome: the task discarded pages not copied yet
    t.regex((e as Error).message, /the task discarded memory at 0x[0-9a-f]+ \(munmap, MADV_DONTNEED or mremap\) before it was copied/);
    t.false(existsSync(join(base, "d")));
    noUffd(t, w.pid);
    await runsOn(t, w);
    return;
  }
  t.log("the copy finished before the task discarded a page not copied yet");
  noUffd(t, w.pid);
  await killAndReap(w.pid);
  await restoreTask(t, join(base, "d"));
  t.regex(await w.check(), /^PASS /);
});
