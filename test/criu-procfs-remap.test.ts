// PROCFS remaps between tscriu and criu 4.1.1 (in its Debian trixie root,
// scripts/criu-root.sh): criu restores tscriu's images of test/workloads/unhashedproc.c (a
// cwd and fds in gone children's /proc directories) and tscriu restores criu's; the
// workload passes its own check either way. criu's remap-fpath.img has the shape tscriu
// writes: one PROCFS entry per dead PID, on a file in that PID's directory, named without
// " (deleted)".
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

/** remap-fpath.img as [type, the file's name with the dead PID as PID], in order. */
async function remapShape(dir: string): Promise<string[][]> {
  const files = new Map((await readImage(join(dir, "files.img"))).entries.map((e) => [Number(e["id"]), String((e["reg"] as Record<string, unknown> | undefined)?.["name"])]));
  return (await readImage(join(dir, "remap-fpath.img"))).entries.map((r) => [String(r["remap_type"]), (files.get(Number(r["orig_id"])) ?? "?").replace(`/proc/${String(r["remap_id"])}`, "/proc/PID")]);
}

const SHAPE = [
  ["PROCFS", "/proc/PID"],
  ["PROCFS", "/proc/PID/status"],
];

test.serial("criu restores tscriu's images: unhashedproc", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "unhashedproc", [], { static: true });
  t.is(await w.check(), "PASS unhashedproc", "before the dump");
  const dir = await dumpGone(t, w);
  t.deepEqual(await remapShape(dir), SHAPE);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS unhashedproc");
});

test.serial("tscriu restores criu's images: unhashedproc", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "unhashedproc", []);
  t.is(c.status, 0, `criu dump failed: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  t.deepEqual(await remapShape(c.images), SHAPE, "criu's remaps are those tscriu writes");
  await restoreTask(t, c.images);
  t.is(await c.check(), "PASS unhashedproc");
});
