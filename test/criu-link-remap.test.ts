// --link-remap between tscriu and criu 4.1.1 (in its Debian trixie root, scripts/criu-root.sh):
// criu restores tscriu's images of test/workloads/linkremap.c and removes the links tscriu
// made; tscriu restores criu's dumps of it (criu's links, criu's watch entries) and removes
// criu's links. Each workload then passes its own check, but for what criu itself loses.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

const links = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith("link_remap."));

/**
 * What criu's restore loses (its restore.log shows the order): criu opens an unlinked file
 * under its old name, linked to the ghost it made for a moment, and removes the ghost's own
 * name last; that name is then the inode's last link and goes from a dentry no open file
 * holds, so the kernel drops the inode's watches with it (IN_IGNORED). tscriu opens every
 * file of a ghost through the ghost's own node, whose removal leaves its watches alone.
 */
const CRIU_RESTORE_LOSES: Record<string, { result: RegExp; wd: number; why: string }> = {
  inotify: { result: /^FAIL inotify: no IN_MODIFY on watch 2 for a write to the unlinked g$/, wd: 2, why: "criu drops an inotify watch on a ghost file when it removes the ghost's name" },
};

/** The watch descriptors of the task's inotify instance, from its fdinfo. */
function watches(pid: number): number[] {
  const fd = readdirSync(`/proc/${pid}/fd`).find((n) => readlinkSync(`/proc/${pid}/fd/${n}`) === "anon_inode:inotify");
  const info = fd === undefined ? "" : readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
  return [...info.matchAll(/^inotify wd:([0-9a-f]+) /gm)].map((m) => Number.parseInt(m[1]!, 16));
}

for (const name of ["files", "inotify"]) {
  test.serial(`criu restores tscriu's images: linkremap ${name}`, async (t) => {
    if (!haveRoot(t)) return;
    const w = await startWorkload(t, "linkremap", [name], { static: true });
    const dir = await dumpGone(t, w, { linkRemap: true });
    t.true(links(w.dir).length > 0, "tscriu made the links");
    await restoredByCriu(t, w.pid, dir, 60_000);
    t.deepEqual(links(w.dir), [], "criu removed the links");
    const lost = CRIU_RESTORE_LOSES[name];
    const result = await w.check(30_000);
    if (lost?.result.test(result)) {
      t.false(watches(w.pid).includes(lost.wd), `watch ${lost.wd} is gone from the instance`);
      t.log(`criu's own loss, not tscriu's: ${lost.why}`);
      return;
    }
    t.is(result, `PASS ${name}`);
  });

  test.serial(`tscriu restores criu's images: linkremap ${name}`, async (t) => {
    if (!haveRoot(t)) return;
    const c = await criuDumps(t, "linkremap", [name], "--link-remap");
    t.is(c.status, 0, `criu dump failed: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
    const state = join(c.images, "..", "state");
    t.true(links(state).length > 0, "criu made the links");
    await restoreTask(t, c.images);
    t.is(await c.check(), `PASS ${name}`);
    t.deepEqual(links(state), [], "tscriu removed criu's links");
  });
}
