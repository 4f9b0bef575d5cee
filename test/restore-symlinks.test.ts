// O_PATH|O_NOFOLLOW fds of symlinks (test/workloads/symlinks.c): a kept one, an unlinked
// one (a ghost symlink, criu's GhostFileEntry symlnk_target) and a dangling one. tscriu
// dumps and restores them, dump -R leaves the task as it was, criu 4.1.1 restores
// tscriu's images and tscriu restores criu's; a ghost symlink without a target is refused.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, refusedAtPlanOf, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

const leftovers = (dir: string): string[] => readdirSync(dir).filter((f) => f !== "result" && f !== "stdout");

test("tscriu: kept, unlinked and dangling symlinks held by O_PATH fds come back as the same symlinks", async (t) => {
  const w = await startWorkload(t, "symlinks");
  t.is(await w.check(), "PASS symlinks", "before the dump");
  const dir = await dumpGone(t, w);
  const ghosts = readdirSync(dir).filter((f) => f.startsWith("ghost-file-"));
  t.is(ghosts.length, 1, "one ghost: the unlinked symlink");
  const head = (await readImage(join(dir, ghosts[0]!))).entries[0]!;
  t.is(head["symlnk_target"], "target-of-an-unlinked-symlink");
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS symlinks", "after the restore");
  t.deepEqual(leftovers(w.dir).sort(), ["dangling", "kept"], "the ghost's name is gone again");
});

test("tscriu: dump -R leaves the task with its symlink fds", async (t) => {
  const w = await startWorkload(t, "symlinks");
  await dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true });
  t.is(await w.check(), "PASS symlinks");
  t.deepEqual(leftovers(w.dir).sort(), ["dangling", "kept"]);
});

test("a ghost symlink without a target, or with an empty one, is refused at plan naming the image", async (t) => {
  const w = await startWorkload(t, "symlinks");
  const dir = await dumpGone(t, w);
  const ghost = readdirSync(dir).find((f) => f.startsWith("ghost-file-"))!;
  await refusedAtPlanOf(t, dir, ghost, (entries) => entries[0]!, [
    ["no target", (e) => delete e["symlnk_target"], /a ghost symlink without its target \(symlnk_target\)/],
    ["an empty target", (e) => (e["symlnk_target"] = ""), /a ghost symlink without its target \(symlnk_target\)/],
  ]);
});

test.serial("criu restores tscriu's images of symlinks", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "symlinks", [], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS symlinks");
  t.deepEqual(leftovers(w.dir).sort(), ["dangling", "kept"]);
});

test.serial("tscriu restores criu's images of symlinks", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "symlinks", []);
  t.is(c.status, 0, `criu dump failed: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  await restoreTask(t, c.images);
  t.is(await c.check(), "PASS symlinks");
  t.deepEqual(leftovers(join(c.images, "..", "state")).sort(), ["dangling", "kept"]);
});
