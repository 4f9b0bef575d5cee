// Private memory a parent shares copy-on-write with its child, and the child with its own
// child, is one page of both again after a restore (criu's premap): the workload
// (test/workloads/cowshare.c) checks every page's content in the three processes and, by
// the frame numbers of /proc/PID/pagemap, that the pages none of a pair wrote since the
// fork are the same frame, the others not mixed up (pages the child wrote, gave back,
// mapped again). From tscriu's images and from criu's, and criu restores tscriu's.
import { existsSync, readFileSync } from "node:fs";
import test, { type ExecutionContext } from "ava";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { killAtEnd, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

const PASS = "PASS cowshare";

async function cowshare(t: ExecutionContext, opts: { static?: boolean } = {}): Promise<{ w: Workload; kids: number[] }> {
  const w = await startWorkload(t, "cowshare", [], opts);
  const kids = [Number(w.info["c"]), Number(w.info["g"])];
  killAtEnd(t, kids);
  t.is(await w.check(), PASS, "before the dump");
  return { w, kids };
}

/** The restored root's child and grandchild, from /proc (criu's dump names neither). */
function descendants(pid: number): number[] {
  const kids = (p: number): number[] => readFileSync(`/proc/${p}/task/${p}/children`, "utf8").trim().split(" ").filter(Boolean).map(Number);
  const c = kids(pid);
  return [...c, ...c.flatMap(kids)];
}

test("cowshare: pages shared between parent, child and grandchild are shared again after the restore; written, given back and remapped pages are each process's own", async (t) => {
  const { w, kids } = await cowshare(t);
  const dir = await dumpGone(t, w);
  const r = await restoreTask(t, dir);
  killAtEnd(t, kids);
  t.is(await w.check(), PASS, "after the restore");
  // P-C: area classes 0 and 6, file pages 2-7; C-G: classes 0, 1, 2, 4, file pages 0-7, 2 remapped pages
  t.true(r.stats.pages_skipped_cow >= 64n, `pages left shared: ${r.stats.pages_skipped_cow}`);
  t.true(r.stats.pages_compared >= r.stats.pages_skipped_cow);
  // and once more: the restored tree dumps and restores as the original did
  const again = await dumpGone(t, w);
  await restoreTask(t, again);
  t.is(await w.check(), PASS, "after a second dump and restore");
});

test("cowshare: a restore failing at the child's premap kills the whole tree and names the step and the child; the images restore afterwards", async (t) => {
  const { w, kids } = await cowshare(t);
  const dir = await dumpGone(t, w);
  const err = await t.throwsAsync(restore({ imagesDir: dir, faults: "restore:premap#2" }));
  t.true(isRestoreError(err), String(err));
  t.like(err, { step: "premap", pid: kids[0] });
  for (const p of [w.pid, ...kids]) await waitFor(`PID ${p} to be free`, () => !existsSync(`/proc/${p}`));
  await restoreTask(t, dir);
  killAtEnd(t, kids);
  t.is(await w.check(), PASS, "the same images restore");
});

test.serial("tscriu restores criu's images: cowshare", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "cowshare", []);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  const r = await restoreTask(t, c.images);
  killAtEnd(t, descendants(r.pid));
  t.is(await c.check(), PASS);
  t.true(r.stats.pages_skipped_cow >= 64n, `pages left shared: ${r.stats.pages_skipped_cow}`);
});

test.serial("criu restores tscriu's images: cowshare", async (t) => {
  if (!haveRoot(t)) return;
  const { w } = await cowshare(t, { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), PASS);
});
