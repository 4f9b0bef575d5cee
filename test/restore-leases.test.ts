// File leases (fcntl F_SETLEASE) in filelocks.img as criu writes them: {flag FL_LEASE,
// type F_RDLCK/F_WRLCK}, a lease being broken with LEASE_BREAKING (4) over the type it is
// broken to. The leases workload checks itself: F_GETLEASE of each fd, and another open
// breaking its read and write leases with the lease signal for that fd. tscriu restores
// them, a dump that leaves the task running leaves them as they were, criu restores
// tscriu's images and tscriu criu's, and hostile lease entries are refused at plan.
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { hostileLocks } from "./helpers/filelocks.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

type Entry = Record<string, unknown>;

const FL_LEASE = 8;
/** read, write, and a write lease being broken to unlock (F_UNLCK 2 | LEASE_BREAKING 4) */
const TYPES = [0, 1, 6];

async function leases(dir: string): Promise<Entry[]> {
  return (await readImage(join(dir, "filelocks.img"))).entries;
}

function types(entries: Entry[]): number[] {
  return entries.filter((e) => e["flag"] === FL_LEASE).map((e) => Number(e["type"])).sort((a, b) => a - b);
}

test("leases: a read, a write and a breaking lease come back with --file-locks", async (t) => {
  const w = await startWorkload(t, "leases");
  t.is(await w.check(), "PASS leases", "before the dump");
  const dir = await dumpGone(t, w, { fileLocks: true });
  const all = await leases(dir);
  t.deepEqual(types(all), TYPES);
  t.true(all.every((e) => e["pid"] === w.pid && e["start"] === 0n && e["len"] === 0n));
  await restoreTask(t, dir, { fileLocks: true });
  t.is(await w.check(), "PASS leases", "after the restore");
  t.is(await w.check(), "PASS leases", "and again");
});

test("a dump that leaves the task running leaves its leases as they were; without --file-locks it is refused", async (t) => {
  const w = await startWorkload(t, "leases");
  const refused = tempDir(t);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: refused }));
  t.regex(err?.message ?? "", /fd \d+ \(.*\/(rd|wr|br)\) of pid \d+ holds a .*lease.*; dump file locks with --file-locks/);
  t.is(await w.check(), "PASS leases", "after the refused dump");
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, fileLocks: true, leaveRunning: true });
  t.deepEqual(types(await leases(dir)), TYPES);
  t.is(await w.check(), "PASS leases", "after dump -R");
});

test("hostile lease entries are refused at plan, naming filelocks.img, nothing created", async (t) => {
  const w = await startWorkload(t, "leases");
  const dir = await dumpGone(t, w, { fileLocks: true });
  const cases: [string, (e: Entry[]) => void, RegExp][] = [
    ["a lease on a non-regular fd", (e) => void (e[0]!["fd"] = 100), /lock \d: a lease on fd 100, which is not a regular file/],
    ["a bad type", (e) => void (e[0]!["type"] = 3), /lock \d: a lease of type 3/],
    ["breaking to write", (e) => void (e[0]!["type"] = 5), /lock \d: a lease of type 5/],
  ];
  for (const [what, mutate, re] of cases) await hostileLocks(t, w.pid, dir, what, mutate, re);
});

test.serial("criu restores tscriu's leases", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "leases", [], { static: true });
  const dir = await dumpGone(t, w, { fileLocks: true });
  await restoredByCriu(t, w.pid, dir, 60_000, "--file-locks");
  // criu (4.1.1) lets the task have the signal of the break its restore makes, with its own
  // images too: the first check sees it, on the breaking lease's fd; the leases are right.
  t.regex(await w.check(30_000), /^(PASS leases|FAIL leases: 1 lease signals came unasked \(fd \d+\))$/);
  t.is(await w.check(30_000), "PASS leases", "the leases criu took from tscriu's images");
});

test.serial("tscriu restores criu's leases", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "leases", [], "--file-locks");
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  t.deepEqual(types(await leases(c.images)), TYPES, "criu wrote the same three leases");
  await restoreTask(t, c.images, { fileLocks: true });
  t.is(await c.check(), "PASS leases");
});
