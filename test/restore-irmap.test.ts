// criu's irmap (--force-irmap, --irmap-scan-path; orchestrator/fds/irmap.ts): an inotify watch
// and a fanotify inode mark on a procfs file (test/workloads/irmap.c), whose handle procfs
// does not decode, get their path in the images only by walking directories. tscriu dumps
// and restores them (they report opens afterwards), refuses them without --force-irmap or
// when the walk does not reach the file, leaving the task running, and criu 4.1.1 restores
// tscriu's images of them and tscriu criu's.
import { join } from "node:path";
import test from "ava";
import { dump } from "../orchestrator/dump/dump.js";
import { readImage } from "../images/io.js";
import { CLI } from "./helpers/cli.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { pycriu, pycriuInstalled } from "./helpers/pycriu.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

const IRMAP = { forceIrmap: true, irmapScanPaths: ["/proc/sys/kernel"] };
const WATCHED = "/proc/sys/kernel/ostype";

interface WatchEntries {
  ify?: { wd: { f_handle: { path?: string } }[] };
  ffy?: { mark?: { ie?: { f_handle: { path?: string } } }[] };
}

/** The paths of the inotify watches and fanotify inode marks in files.img. */
async function watchedPaths(dir: string): Promise<(string | undefined)[]> {
  const files = (await readImage(join(dir, "files.img"))).entries as WatchEntries[];
  return files.flatMap((f) => [...(f.ify?.wd.map((w) => w.f_handle.path) ?? []), ...(f.ffy?.mark ?? []).flatMap((m) => (m.ie ? [m.ie.f_handle.path] : []))]);
}

test.serial("irmap over criu's RPC: force_irmap and irmap_scan_paths (pycriu, swrk)", async (t) => {
  pycriuInstalled(t);
  const w = await startWorkload(t, "irmap", ["inotify"]);
  const dir = tempDir(t);
  const req = (opts: Record<string, unknown>): Record<string, unknown> => pycriu(`swrk:${CLI}`, ["req", "DUMP", JSON.stringify({ images_dir: `fd:${dir}`, pid: w.pid, leave_running: true, ...opts })]);
  const bare = req({});
  t.like(bare, { success: false, type: "DUMP" });
  t.regex(String(bare["cr_errmsg"]), /--force-irmap/);
  t.like(req({ force_irmap: true, irmap_scan_paths: IRMAP.irmapScanPaths }), { success: true, type: "DUMP" });
  t.deepEqual(await watchedPaths(dir), [WATCHED]);
  t.is(await w.check(), "PASS inotify");
});

for (const kind of ["inotify", "fanotify"]) {
  test.serial(`irmap ${kind}: a watch whose handle does not open is refused without --force-irmap, the task left running`, async (t) => {
    const w = await startWorkload(t, "irmap", [kind]);
    const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t) }));
    t.regex(err?.message ?? "", new RegExp(`anon_inode:\\[?${kind}.*--force-irmap`, "s"));
    t.is(await w.check(), `PASS ${kind}`);
  });

  test.serial(`irmap ${kind}: a watch found by walking --irmap-scan-path is restored on that path (dump -R, then dump)`, async (t) => {
    const w = await startWorkload(t, "irmap", [kind]);
    const running = tempDir(t);
    await dump({ pid: w.pid, imagesDir: running, leaveRunning: true, ...IRMAP });
    t.deepEqual(await watchedPaths(running), [WATCHED]);
    t.is(await w.check(), `PASS ${kind}`);
    const dir = await dumpGone(t, w, IRMAP);
    t.deepEqual(await watchedPaths(dir), [WATCHED]);
    await restoreTask(t, dir);
    t.is(await w.check(), `PASS ${kind}`);
  });

  test.serial(`irmap ${kind}: the walk finds nothing outside the places it is given`, async (t) => {
    const w = await startWorkload(t, "irmap", [kind]);
    const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t), forceIrmap: true, irmapScanPaths: ["/proc/sys/net/core"] }));
    t.regex(err?.message ?? "", /no place walked for it has it \(\/proc\/sys\/net\/core, criu's hints/);
    t.is(await w.check(), `PASS ${kind}`);
  });

  test.serial(`criu restores tscriu's images: irmap ${kind}`, async (t) => {
    if (!haveRoot(t)) return;
    const w = await startWorkload(t, "irmap", [kind], { static: true });
    const dir = await dumpGone(t, w, IRMAP);
    await restoredByCriu(t, w.pid, dir);
    t.is(await w.check(), `PASS ${kind}`);
  });

  test.serial(`tscriu restores criu's images: irmap ${kind}`, async (t) => {
    if (!haveRoot(t)) return;
    const c = await criuDumps(t, "irmap", [kind], `--force-irmap --irmap-scan-path ${IRMAP.irmapScanPaths[0]}`);
    t.is(c.status, 0, `criu dump failed: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
    t.deepEqual(await watchedPaths(c.images), [WATCHED]);
    await restoreTask(t, c.images);
    t.is(await c.check(), `PASS ${kind}`);
  });
}
