// Live migration between two network namespaces (scripts/migrate-netns.sh): iterative
// pre-dumps to a page server in the destination namespace, a final dump over it, the
// restore there; the task (incr: writes 1 % of its pages every 100 ms) checks every page
// after it, and runs in the destination's network namespace.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import test from "ava";
import { ROOT } from "./helpers/fixtures.js";
import { buildWorkloads } from "./helpers/workloads.js";

test("a task that keeps writing its memory migrates to another network namespace over the page server, every page right", (t) => {
  buildWorkloads();
  const r = spawnSync("bash", [join(ROOT, "scripts/migrate-netns.sh"), "-m", "64", "-s", "512", "-n", "4"], { encoding: "utf8", timeout: 120_000 });
  t.log(r.stdout.trim());
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^pre-dump 1: +16\d{3} pages sent/m);
  t.regex(r.stdout, /^pre-dump 2: +\d+ pages sent, +\d+ from the parent/m);
  t.regex(r.stdout, /^dump +\d+: +\d+ pages sent, +[1-9]\d* from the parent/m);
  t.regex(r.stdout, /^migrated: PASS pages=16384 writes=\d+ \(pid \d+ runs in tsm\d+-dst\)$/m);
});
