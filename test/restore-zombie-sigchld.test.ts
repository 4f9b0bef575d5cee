// A parent of zombies gets back exactly the SIGCHLDs it had (test/workloads/zombiesig.c):
// making a zombie at restore queues a SIGCHLD in its parent (the stub blocks every
// signal, and a traced task queues even ignored ones), which the restored task must not
// see: its handler would run for no child, a SIGCHLD it had consumed would be pending
// again, and the one pending in the images (from another child) would be dropped behind
// it. criu's restore leaves none of its own either; both ways with criu 4.1.1.
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

const SIGCHLD = 17;

/** The signals pending for the whole process in the root's core image. */
async function sharedPending(dir: string, pid: number): Promise<number[]> {
  const tc = (await readImage(join(dir, `core-${pid}.img`))).entries[0]!["tc"] as { signals_s?: { signals?: { siginfo: Uint8Array }[] } };
  return (tc.signals_s?.signals ?? []).map((s) => Buffer.from(s.siginfo).readInt32LE(0));
}

const CASES: [name: string, what: string, pending: number[]][] = [
  ["handled", "two zombies whose SIGCHLDs the handler got: it runs no more", []],
  ["threads", "the same with two more threads: no thread's handler runs", []],
  ["pending", "SIGCHLD blocked, pending from a reaped child, a zombie's merged into it: that one pending, from the reaped child, once", [SIGCHLD]],
  ["consumed", "SIGCHLD blocked, the zombie's taken with sigwaitinfo: none pending", []],
  ["default", "the same at SIG_DFL: none pending", []],
  ["group", "a zombie forked with CLONE_PARENT into a group whose leader is gone: its parent's handler runs no more", []],
  ["subreaper", "a child subreaper's zombies handed to it from gone group and session leaders: its handler runs no more", []],
];

for (const [name, what, pending] of CASES) {
  test(`zombiesig ${name}: ${what}`, async (t) => {
    const w = await startWorkload(t, "zombiesig", [name]);
    t.is(await w.check(), `PASS ${name}`, "before the dump");
    const dir = await dumpGone(t, w);
    t.deepEqual(await sharedPending(dir, w.pid), pending, "the dump's pending signals");
    await restoreTask(t, dir);
    t.is(await w.check(), `PASS ${name}`, "after the restore");
  });
}

for (const [name] of CASES) {
  test.serial(`criu restores tscriu's images: zombiesig ${name}`, async (t) => {
    if (!haveRoot(t)) return;
    // criu 4.2 (its own dump of the case too) waits forever restoring the zombie in
    // a session whose leader is gone: it forks it under a session helper and counts on the
    // helper's exit handing it to the root, but the root becomes a child subreaper only at
    // the end of its restorer (pie/restorer.c: restore_child_subreaper after wait_zombies),
    // so the orphan goes outside the tree (init reaps it) and the root's wait_zombies
    // waits for a child it never gets (ECHILD, futex_wait_while_eq on nr_in_progress).
    if (name === "subreaper") {
      t.pass("criu's restore hangs: the session helper's zombie goes to init, not to the root");
      return;
    }
    const w = await startWorkload(t, "zombiesig", [name], { static: true });
    const dir = await dumpGone(t, w);
    await restoredByCriu(t, w.pid, dir, 60_000);
    t.is(await w.check(30_000), `PASS ${name}`);
  });

  test.serial(`tscriu restores criu's images: zombiesig ${name}`, async (t) => {
    if (!haveRoot(t)) return;
    const c = await criuDumps(t, "zombiesig", [name]);
    t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
    await restoreTask(t, c.images);
    t.is(await c.check(), `PASS ${name}`);
  });
}
