// criu's irmap (--force-irmap, --irmap-scan-path; orchestrator/fds/irmap.ts): an inotify watch
// on a procfs file (test/workloads/irmap.c), whose handle procfs does not decode, gets its
// path in the images only by walking directories. tscriu dumps and restores it (the watch
// reports opens afterwards), refuses it without --force-irmap leaving the task running, and
// criu 4.1.1 restores tscriu's images of it and tscriu criu's.
import { join } from "node:path";
import test from "ava";
import { dump } from "../orchestrator/dump/dump.js";
import { readImage } from "../images/io.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

const IRMAP = { forceIrmap: true, irmapScanPaths: ["/proc/sys/kernel"] };

/** The paths of the inotify watches in files.img. */
async function watchedPaths(dir: string): Promise<(string | undefined)[]> {
  const files = (await readImage(join(dir, "files.img"))).entries as { ify?: { wd: { f_handle: { path?: string } }[] } }[];
  return files.flatMap((f) => f.ify?.wd.map((w) => w.f_handle.path) ?? []);
}

test.serial("irmap: a watch whose handle does not open is refused without --force-irmap, the task left running", async (t) => {
  const w = await startWorkload(t, "irmap");
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t) }));
  t.regex(err?.message ?? "", /anon_inode:inotify.*--force-irmap/s);
  t.is(await w.check(), "PASS irmap");
});

test.serial("irmap: a watch found by walking --irmap-scan-path is restored on that path (dump, then dump -R)", async (t) => {
  const w = await startWorkload(t, "irmap");
  const running = tempDir(t);
  await dump({ pid: w.pid, imagesDir: running, leaveRunning: true, ...IRMAP });
  t.deepEqual(await watchedPaths(running), ["/proc/sys/kernel/ostype"]);
  t.is(await w.check(), "PASS irmap");
  const dir = await dumpGone(t, w, IRMAP);
  t.deepEqual(await watchedPaths(dir), ["/proc/sys/kernel/ostype"]);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS irmap");
});

test.serial("irmap: the walk finds nothing outside the places it is given", async (t) => {
  const w = await startWorkload(t, "irmap");
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t), forceIrmap: true, irmapScanPaths: ["/proc/sys/net/core"] }));
  t.regex(err?.message ?? "", /no place walked for it has it \(\/proc\/sys\/net\/core, criu's hints/);
  t.is(await w.check(), "PASS irmap");
});

test.serial("criu restores tscriu's images: irmap", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "irmap", [], { static: true });
  const dir = await dumpGone(t, w, IRMAP);
  await restoredByCriu(t, w.pid, dir);
  t.is(await w.check(), "PASS irmap");
});

test.serial("tscriu restores criu's images: irmap", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "irmap", [], "--force-irmap --irmap-scan-path /proc/sys/kernel");
  t.is(c.status, 0, `criu dump failed: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  t.deepEqual(await watchedPaths(c.images), ["/proc/sys/kernel/ostype"]);
  await restoreTask(t, c.images);
  t.is(await c.check(), "PASS irmap");
});
