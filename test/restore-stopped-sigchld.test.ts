// A stopped child's parent gets back exactly the SIGCHLDs it had (test/workloads/stopsig.c):
// the restore stops the child again, and a stop tells the parent with a SIGCHLD
// (CLD_STOPPED), which the restored parent must not see: it knew of the stop already (its
// handler ran, or the signal is pending from the dump). The stop stays there for
// waitpid(WUNTRACED), as at the dump -- also where the parent had taken it: no image says
// it did (criu gives it back too). Both ways with criu 4.1.1.
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage } from "../images/io.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { procState, startWorkload, waitFor } from "./helpers/workloads.js";

const CASES: [name: string, what: string][] = [
  ["consumed", "the handler got the stop and waitpid took it: the handler runs no more"],
  ["waiting", "the handler got the stop, not waited for: it runs no more, the stop is there to wait for"],
  ["nocldstop", "SA_NOCLDSTOP: no SIGCHLD, the stop is there to wait for"],
  ["pending", "SIGCHLD blocked: its CLD_STOPPED pending, once"],
];

/** What the check says: "consumed" tells whether the stop it took can be waited for again. */
const pass = (name: string, restored: boolean): string => (name !== "consumed" ? `PASS ${name}` : `PASS consumed wait=${restored ? "stopped" : "none"}`);

/** Kills the child at teardown: the workload's own teardown kills only the root. */
function killAtEnd(t: ExecutionContext, pid: number): void {
  t.teardown(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  });
}

for (const [name, what] of CASES) {
  test(`stopsig ${name}: ${what}`, async (t) => {
    const w = await startWorkload(t, "stopsig", [name]);
    killAtEnd(t, Number(w.info["child"]));
    t.is(await w.check(), pass(name, false), "before the dump");
    const dir = await dumpGone(t, w);
    await restoreTask(t, dir);
    killAtEnd(t, Number(w.info["child"]));
    t.is(await w.check(), pass(name, true), "after the restore");
  });

  test.serial(`criu restores tscriu's images: stopsig ${name}`, async (t) => {
    if (!haveRoot(t)) return;
    // criu (4.1.1, 4.2) stops the child with a kill() just before its detach (cr-restore.c,
    // finalize_restore): a parent whose handler took the stop already gets it once more.
    if (name === "consumed" || name === "waiting") {
      t.pass("criu tells the parent of the stop again");
      return;
    }
    const w = await startWorkload(t, "stopsig", [name], { static: true });
    killAtEnd(t, Number(w.info["child"]));
    const dir = await dumpGone(t, w);
    await restoredByCriu(t, w.pid, dir, 60_000);
    const child = Number(w.info["child"]);
    killAtEnd(t, child);
    // criu returns once it has detached, before the child has taken its stop signal
    await waitFor("the child to be stopped", () => procState(child) === "T");
    t.is(await w.check(30_000), pass(name, true));
  });

  test.serial(`tscriu restores criu's images: stopsig ${name}`, async (t) => {
    if (!haveRoot(t)) return;
    const c = await criuDumps(t, "stopsig", [name]);
    t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
    killAtEnd(t, Number((await readImage(join(c.images, "pstree.img"))).entries[1]!["pid"]));
    await restoreTask(t, c.images);
    t.is(await c.check(), pass(name, true));
  });
}
