// memfds after a restore as a program uses them: a memfd holding a program, open
// read-write as memfd_create made it (and read-only through /proc, mapped shared and
// privately), is still executable with execveat(AT_EMPTY_PATH) -- the kernel refuses exec
// of an inode that a description opened writable through a path holds (ETXTBSY), so the
// restore must hand over memfd_create's own; seals come back, F_SEAL_FUTURE_WRITE after
// the writable shared mapping it lets write on. The workload checks itself; both ways
// with criu.
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

const F_SEAL_SEAL = 1;
const F_SEAL_SHRINK = 2;
const F_SEAL_GROW = 4;
const F_SEAL_WRITE = 8;
const F_SEAL_FUTURE_WRITE = 16;

test("memexec: a memfd holding a program execs after restore (the fd is memfd_create's, no writer through /proc); seals, modes and mappings come back", async (t) => {
  const w = await startWorkload(t, "memexec");
  t.is(await w.check(), "PASS memexec", "before the dump");
  const dir = await dumpGone(t, w);
  const inodes = (await readImage(join(dir, "memfd.img"))).entries;
  const seals = new Map(inodes.map((e) => [String(e["name"]), Number(e["seals"])]));
  t.is(seals.get("wl-sealed"), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE);
  t.is(seals.get("wl-frozen"), F_SEAL_WRITE | F_SEAL_SEAL);
  t.is(seals.get("wl-program"), F_SEAL_SEAL, "not sealable: memfd_create's F_SEAL_SEAL");
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS memexec", "after the restore");
  t.is(await w.check(), "PASS memexec", "and again (the exec'd child was reaped, the mapping writes on)");
});

test.serial("criu restores tscriu's images: memexec", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "memexec", [], { static: true });
  t.is(await w.check(), "PASS memexec");
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS memexec");
});

test.serial("tscriu restores criu's images: memexec", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "memexec", []);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  await restoreTask(t, c.images);
  t.is(await c.check(), "PASS memexec");
});
