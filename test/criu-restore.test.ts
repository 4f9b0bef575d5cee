// criu itself restores tscriu's images, and tscriu restores criu's. The workloads are
// built static: criu runs in a Debian trixie root of its own, with another libc
// (scripts/criu-root.sh). Each is dumped by tscriu, restored by criu with its PID (criu
// stays its parent, as without -d), and then passes its own self-check (regs: its
// registers are read back); and the other way round. CI creates the root; elsewhere
// the tests say how to and pass.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { criuVersion, haveRoot, restoredByCriu, runCriuShell } from "./helpers/criu-root.js";
import { dumpGone, regsAsLeft, restoreTask } from "./helpers/restore.js";
import { scratchDir } from "./helpers/tmp.js";
import { buildWorkloads, killAndReap, startWorkload, waitFor, waitTreeFree, WORKLOAD_BIN } from "./helpers/workloads.js";

const CASES: [name: string, args: string[], pass: RegExp][] = [
  ["counter", [], /^PASS count=\d+/],
  ["busy", [], /^PASS/],
  ["fdkinds", [], /^PASS/],
  ["memkinds", [], /^PASS/],
  ["pipe", [], /^PASS read=10000/],
  ["r-fpu", [], /^PASS/],
  ["r-seccomp", [], /^PASS filters=1/],
  ["r-vdso", [], /^PASS/],
  ["sched", [], /^PASS sched=6/],
  ["threadtimers", [], /^PASS thread=\d+ process=\d+/],
];

for (const [name, args, pass] of CASES) {
  test.serial(`criu restores tscriu's images: ${name}`, async (t) => {
    if (!haveRoot(t)) return;
    const w = await startWorkload(t, name, args, { static: true });
    const dir = await dumpGone(t, w);
    await restoredByCriu(t, w.pid, dir);
    t.regex(await w.check(), pass, `criu ${criuVersion()}`);
  });
}

// criu gives a task dumped inside nanosleep EINTR at once (its rule for a restart_block it
// cannot save; tscriu's restore sleeps on for the time left instead): the sleeper reports
// that wake-up as a FAIL line of its own, and then still answers its check.
test.serial("criu restores tscriu's images: sleeper (criu's EINTR, then the check)", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "sleeper", [], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir);
  const woken = await waitFor("the sleeper to report criu's EINTR", () => (w.results().length > 0 ? w.results() : undefined));
  t.deepEqual(woken, ["FAIL nanosleep returned -1 errno 4 without SIGUSR1"], `criu ${criuVersion()}`);
  t.regex(await w.check(), /^PASS/, `criu ${criuVersion()}`);
});

test.serial("criu restores tscriu's images: sigstate (handlers, masks, pending signals, timers, creds)", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "sigstate", [], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir);
  // its timers have to fire again before the check passes
  let line = "";
  for (const deadline = Date.now() + 10_000; !/^PASS/.test(line) && Date.now() < deadline; ) {
    line = await w.check();
    if (!/^PASS/.test(line)) await new Promise((r) => setTimeout(r, 200));
  }
  t.regex(line, /^PASS/, `criu ${criuVersion()}`);
});

test.serial("criu restores tscriu's images: regs (general registers and AVX halves in a loop without syscalls)", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "regs", [], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir);
  await regsAsLeft(t, w.pid);
});

// And the other way: criu (in its root) dumps a workload it started there, and tscriu,
// outside that mount namespace, restores it.
const FROM_CRIU: [name: string, pass: RegExp][] = [
  ["counter", /^PASS count=\d+/],
  ["fdkinds", /^PASS/],
  ["memkinds", /^PASS/],
  ["pipe", /^PASS read=10000/],
  ["r-vdso", /^PASS/],
  ["sched", /^PASS sched=6/],
  ["threadtimers", /^PASS thread=\d+ process=\d+/],
];

for (const [name, pass] of FROM_CRIU) {
  test.serial(`tscriu restores criu's images: ${name}`, async (t) => {
    if (!haveRoot(t)) return;
    buildWorkloads();
    const work = scratchDir(`tscriu-fromcriu-${name}-`);
    const [state, images, out] = [join(work, "state"), join(work, "images"), join(work, "out")];
    const bin = join(WORKLOAD_BIN, "static", name);
    // Inside the root: start the workload, wait for its ready line, then criu dump (kill).
    const script = [
      `mkdir -p ${state} ${images}`,
      `cd ${work}`,
      `setsid ${bin} ${state} >${out} 2>&1 </dev/null &`,
      `for i in $(seq 200); do grep -q '^ready ' ${out} 2>/dev/null && break; sleep 0.05; done`,
      `criu dump -t "$(awk '/^ready /{print $2}' ${out})" -D ${images} -v4 -o dump.log`,
    ].join("\n");
    const r = runCriuShell(script);
    const pid = Number(/^ready (\d+)/m.exec(existsSync(out) ? readFileSync(out, "utf8") : "")?.[1]);
    t.teardown(() => killAndReap(pid));
    t.is(r.status, 0, `criu dump: ${r.stderr}\n${existsSync(join(images, "dump.log")) ? readFileSync(join(images, "dump.log"), "utf8").split("\n").filter((l) => l.includes("Error")).join("\n") : ""}`);
    await waitTreeFree(images, [pid]);
    await restoreTask(t, images);
    const w = { pid, results: () => (existsSync(join(state, "result")) ? readFileSync(join(state, "result"), "utf8").split("\n").filter(Boolean) : []) };
    const before = w.results().length;
    process.kill(pid, "SIGUSR1");
    const lines = await waitFor(`${name} (pid ${pid}) to answer its self-check`, () => (w.results().length > before ? w.results() : undefined));
    t.regex(lines[before] ?? "", pass, `criu ${criuVersion()} dumped it`);
  });
}
