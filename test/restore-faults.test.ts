// A failed restore leaves nothing behind: for a fault injected at each step
// (TSCRIU_FAULT=restore:<step>, here through the option of the same meaning) the error
// names that step and the pid, the task that was being built is gone and its PID free,
// a detached restore's subreaper exits, the recreated unlinked file is removed, the
// images are byte for byte what they were -- and the same images then restore fine.
import { existsSync, readdirSync } from "node:fs";
import test from "ava";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { RESTORE_STEPS } from "../orchestrator/restore/faults.js";
import { restore } from "../orchestrator/restore/restore.js";
import { tscriu } from "./helpers/cli.js";
import { digest, dumpGone, restoreTask } from "./helpers/restore.js";
import { procState, startWorkload, waitFor } from "./helpers/workloads.js";

const FAULTS = [...RESTORE_STEPS, "pages-write"];

for (const fault of FAULTS) {
  test.serial(`restore:${fault}: the restore fails at that step and leaves nothing behind`, async (t) => {
    const w = await startWorkload(t, "memkinds");
    const dir = await dumpGone(t, w);
    const images = digest(dir);
    const files = readdirSync(w.dir).sort();
    const detached = RESTORE_STEPS.indexOf(fault as (typeof RESTORE_STEPS)[number]) % 2 === 1;
    let reaper = 0;
    const err = await t.throwsAsync(
      restore({ imagesDir: dir, faults: `restore:${fault}`, detached }, (e) => {
        if (e.type === "spawned") reaper = e.reaper;
      }),
    );
    t.true(isRestoreError(err), String(err));
    t.like(err, { step: fault === "pages-write" ? "pages" : fault, pid: fault === "plan" ? 0 : w.pid });
    t.regex(err.message, /fault injected by TSCRIU_FAULT=restore:/);
    t.false(existsSync(`/proc/${w.pid}`), "the task being built is gone and its PID free");
    if (reaper) await waitFor(`the subreaper ${reaper} to exit`, () => (procState(reaper) ?? "Z") === "Z");
    t.deepEqual(digest(dir), images, "the images are unchanged");
    t.deepEqual(readdirSync(w.dir).sort(), files, "no recreated unlinked file is left in the task's directory");
    await restoreTask(t, dir);
    t.regex(await w.check(), /^PASS/, "the same images restore after the failure");
  });
}

test.serial("tscriu restore with TSCRIU_FAULT: exit 1, the step named on stderr", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const r = tscriu(["restore", "-D", dir, "-d"], { env: { TSCRIU_FAULT: "restore:vmas" } });
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`restore: vmas of pid ${w.pid} failed: .*fault injected`));
  t.false(existsSync(`/proc/${w.pid}`));
});
