// --link-remap (criu's files-reg.c): files whose name was removed while other hard links
// keep them are linked back as link_remap.N at dump, next to the old name (in the nearest
// directory left when that is gone too), opened through that link on restore, which then
// removes it. The link is a change to the file system: it stays only while images need it
// (tasks killed or left stopped), and goes when the dump fails or the tasks run on (-R);
// a failed restore leaves it for the next one. Watches on such inodes come back on them.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { isDumpError } from "../orchestrator/dump/errors.js";
import { readImage } from "../images/io.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { tempDir } from "./helpers/dump.js";
import { restore } from "../orchestrator/restore/restore.js";
import { startWorkload, type Workload } from "./helpers/workloads.js";

/** The link remaps in the workload's directory. */
function links(w: Workload): string[] {
  return readdirSync(w.dir).filter((f) => f.startsWith("link_remap."));
}

/** What the state directory holds besides the workload's own files (result, stdout, keep). */
function leftovers(w: Workload): string[] {
  return readdirSync(w.dir).filter((f) => !["result", "stdout", "keep"].includes(f));
}

async function entries(dir: string, file: string): Promise<Record<string, unknown>[]> {
  return (await readImage(join(dir, file))).entries;
}

test("linked: an unlinked file with another hard link, open and mapped, comes back as the same inode through a link made at dump; without --link-remap the dump is refused", async (t) => {
  const w = await startWorkload(t, "linkremap", ["files"]);
  t.is(await w.check(), "PASS files", "before the dump");
  const refused = await t.throwsAsync(dumpGone(t, w));
  t.true(isDumpError(refused));
  t.regex(refused?.message ?? "", /\/a was unlinked but has 1 other link: such a file is dumped with --link-remap/);
  t.deepEqual(leftovers(w), [], "nothing made");
  t.is(await w.check(), "PASS files", "the task runs on after the refusal");

  const dir = await dumpGone(t, w, { linkRemap: true });
  // a (in the directory it was in) and b (whose directory is gone: one level up)
  t.is(links(w).length, 2, "one link per inode, both in the state directory");
  const remaps = await entries(dir, "remap-fpath.img");
  t.true(remaps.every((r) => r["remap_type"] === "LINKED"));
  t.is(new Set(remaps.map((r) => r["remap_id"])).size, 2, "the fds and the mapping of a share its link");
  const files = await entries(dir, "files.img");
  for (const r of remaps) {
    const reg = files.find((f) => f["id"] === r["remap_id"])?.["reg"] as Record<string, unknown> | undefined;
    t.regex(String(reg?.["name"]), new RegExp(`^${w.dir}/link_remap\\.${String(r["remap_id"])}$`), "criu's name for the link");
  }
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS files", "after the restore");
  t.deepEqual(leftovers(w), [], "the links are gone");
});

test("linked: -R and a failed dump leave no link; a failed restore keeps it for the next, which removes it", async (t) => {
  const w = await startWorkload(t, "linkremap", ["files"]);
  const images = tempDir(t);
  await (await import("../orchestrator/dump/dump.js")).dump({ pid: w.pid, imagesDir: images, linkRemap: true, leaveRunning: true });
  t.true(existsSync(join(images, "remap-fpath.img")));
  t.deepEqual(leftovers(w), [], "-R: the tasks run on, the links are gone");
  t.is(await w.check(), "PASS files");

  const failed = await t.throwsAsync(dumpGone(t, w, { linkRemap: true, faults: "memory" }));
  t.regex(failed?.message ?? "", /fault injected/);
  t.deepEqual(leftovers(w), [], "a failed dump removes its links");
  t.is(await w.check(), "PASS files");

  const dir = await dumpGone(t, w, { linkRemap: true });
  t.is(links(w).length, 2);
  await t.throwsAsync(restore({ imagesDir: dir, faults: "restore:resume" }), { message: /fault injected/ });
  t.is(links(w).length, 2, "a failed restore leaves the links");
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS files");
  t.deepEqual(leftovers(w), []);
});

test("inotify: watches on an unlinked file (a ghost) and on one linked back come back on those inodes, with their descriptors", async (t) => {
  const w = await startWorkload(t, "linkremap", ["inotify"]);
  // No check before the dump: it looks keep/l up, which would make that the name the
  // kernel gives the inode's handle (its newest dentry) instead of "l (deleted)".
  const dir = await dumpGone(t, w, { linkRemap: true });
  const ify = (await entries(dir, "files.img")).find((f) => f["type"] === "INOTIFY")?.["ify"] as { wd: { wd: number; f_handle: { path?: string } }[] };
  const paths = new Map(ify.wd.map((x) => [x.wd, x.f_handle.path]));
  t.is(paths.get(1), w.dir);
  t.is(paths.get(2), undefined, "the ghost's watch has its handle only (criu finds the ghost by device and inode)");
  t.regex(paths.get(3) ?? "", /\/link_remap\.\d+$/, "the linked file's watch names its link");
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS inotify", "after the restore");
  t.deepEqual(leftovers(w), [], "the ghost and the link are gone");
});

test("outside: a watch on an unlinked inode that only a process outside the tree holds fails the dump, naming the watch; the task runs on", async (t) => {
  const w = await startWorkload(t, "linkremap", ["outside"]);
  t.is(await w.check(), "PASS outside");
  const err = await t.throwsAsync(dumpGone(t, w, { linkRemap: true }));
  t.true(isDumpError(err));
  t.regex(err?.message ?? "", /pid \d+: fd \d+: anon_inode:inotify watch 1 is on the unlinked inode 0x[0-9a-f]+ of device \d+:\d+, which no task of the dump holds open/);
  t.is(await w.check(), "PASS outside", "the task runs on, its watch kept");
  t.deepEqual(leftovers(w), [], "nothing made");
});
