// The attributes of issue 14 between tscriu and criu 4.1.1 (in its Debian trixie root,
// scripts/criu-root.sh): criu restores tscriu's images of each workload, and tscriu
// restores criu's dumps of them; each workload then passes its own check. The criu
// plumbing follows test/criu-restore.test.ts (kept apart so that both files can change).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { ROOT } from "./helpers/fixtures.js";
import { CRIU_ROOT, criuLogTail, haveRoot, restoredByCriu, SCRIPT } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { scratchDir } from "./helpers/tmp.js";
import { buildWorkloads, killAndReap, startWorkload, waitFor, WORKLOAD_BIN } from "./helpers/workloads.js";


// Left out, criu's own limits: a pending SIGTRAP (criu dump refuses the task, and criu
// restore of tscriu's images loses it), and ten thousand mappings (criu 4.1.1 dump and
// restore both hang here waiting for the task's final sigreturn stop). Of the anonfds
// cases: eventfd (criu cuts counts above 2^32-1 and loses EFD_SEMAPHORE), timerfd-periodic
// (criu restores an expired periodic timer disarmed), timerfd-abs (criu re-arms an absolute
// timer from the restore's whole second, not on the task's clocks), epoll (criu's
// EPOLL_CTL_ADD arms a fired oneshot for errors and hangups again) and inotify (criu drops
// IN_EXCL_UNLINK from a watch's mask).
const CASES: [name: string, args: string[], pass: RegExp][] = [
  ["sigtrap", [], /^PASS traps=/],
  ["bigmaps", [], /^PASS$/],
  ["loginuid", ["3"], /^PASS loginuid=3$/],
  ["madvise", [], /^PASS regions=14 /],
  ["membarrier", [], /^PASS registered=0x/],
  ...["memfd-priv", "shmem-priv", "mmap", "holes", "attrs", "dirs", "fifo", "devices"].map((c): [string, string[], RegExp] => ["unlinked", [c], new RegExp(`^PASS ${c}$`)]),
  ...["signalfd", "timerfd-oneshot", "epoll-nested", "epoll-moved", "fixture"].map((c): [string, string[], RegExp] => ["anonfds", [c], new RegExp(`^PASS ${c}$`)]),
];

for (const [name, args, pass] of CASES) {
  const title = [name, ...args].join(" ");
  test.serial(`criu restores tscriu's images: ${title}`, async (t) => {
    if (!haveRoot(t)) return;
    const w = await startWorkload(t, name, args, { static: true });
    const dir = await dumpGone(t, w);
    await restoredByCriu(t, w.pid, dir, 60_000);
    t.regex(await w.check(30_000), pass);
  });

  test.serial(`tscriu restores criu's images: ${title}`, async (t) => {
    if (!haveRoot(t)) return;
    buildWorkloads();
    const work = scratchDir(`tscriu-fromcriu-${name}-${args.join("-")}-`);
    const [state, images, out] = [join(work, "state"), join(work, "images"), join(work, "out")];
    const bin = join(WORKLOAD_BIN, "static", name);
    const script = [
      `mkdir -p ${state} ${images}`,
      `cd ${work}`,
      `setsid ${bin} ${state} ${args.join(" ")} >${out} 2>&1 </dev/null &`,
      `for i in $(seq 200); do grep -q '^ready ' ${out} 2>/dev/null && break; sleep 0.05; done`,
      `criu dump -t "$(awk '/^ready /{print $2}' ${out})" -D ${images} -v4 -o dump.log`,
    ].join("\n");
    const r = spawnSync("bash", [SCRIPT, "run", CRIU_ROOT, ROOT, "bash", "-c", script], { encoding: "utf8" });
    const pid = Number(/^ready (\d+)/m.exec(existsSync(out) ? readFileSync(out, "utf8") : "")?.[1]);
    t.teardown(() => killAndReap(pid));
    t.is(r.status, 0, `criu dump: ${r.stderr}\n${criuLogTail(images, "dump.log")}`);
    await waitFor(`pid ${pid} to be free after criu's dump`, () => !existsSync(`/proc/${pid}`));
    await restoreTask(t, images);
    const results = (): string[] => (existsSync(join(state, "result")) ? readFileSync(join(state, "result"), "utf8").split("\n").filter(Boolean) : []);
    const before = results().length;
    process.kill(pid, "SIGUSR1");
    const lines = await waitFor(`${name} (pid ${pid}) to answer its self-check`, () => (results().length > before ? results() : undefined), 30_000);
    t.regex(lines[before] ?? "", pass, "criu dumped it");
  });
}
