// tscriu dump from the command line: criu's options (-R, -o, -v4, -W, --display-stats,
// --action-script, --ghost-limit, --timeout), exit codes, and no progress bar when stderr
// is not a terminal (and a bar when it is one, for large dumps).
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { spawnSync } from "node:child_process";
import { CLI, tscriu } from "./helpers/cli.js";
import { tempDir } from "./helpers/dump.js";
import { counterAdvances, procState, RUNS_ON, startWorkload, vforkWaiting, waitFor } from "./helpers/workloads.js";
import { scratchDir } from "./helpers/tmp.js";

const NO_CONF = { HOME: scratchDir("tscriu-home-"), CRIU_CONFIG_FILE: "" };

test("dump -R --display-stats -v4 -o LOG: stats on stdout, the log and stats-dump in the images dir", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const r = tscriu(["dump", "-t", String(w.pid), "-D", dir, "-R", "--display-stats", "-v4", "-o", "dump.log"], { env: NO_CONF });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^Displaying dump stats:\nFreezing time: \d+ us\nFrozen time: \d+ us\nMemory dump time: \d+ us\nMemory write time: \d+ us\nMemory pages scanned: \d+ \(0x[0-9a-f]+\)\nMemory pages skipped from parent: 0 \(0x0\)\nMemory pages written: \d+/);
  t.false(r.stderr.includes("\r"), "no progress bar when stderr is not a terminal");
  t.true(existsSync(join(dir, "stats-dump")));
  t.regex(readFileSync(join(dir, "dump.log"), "utf8"), /\(\d+\.\d{6}\) \(dump\): Dumping finished successfully/);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("-W puts log and stats in the work dir; action scripts see pre-dump and post-dump", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const work = tempDir(t);
  const seen = join(work, "actions");
  const script = join(work, "script.sh");
  writeFileSync(script, `#!/bin/sh\necho "$CRTOOLS_SCRIPT_ACTION $CRTOOLS_INIT_PID" >> ${seen}\necho "\${NODE_EXTRA_CA_CERTS-unset}" > ${seen}.ca\n`);
  chmodSync(script, 0o755);
  // The launcher starts Node without NODE_EXTRA_CA_CERTS (Node would warn that it cannot
  // read this file) and hands it on to what tscriu runs.
  const ca = join(work, "no-such-ca.pem");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", dir, "-W", work, "-o", "d.log", "--action-script", script], { env: { ...NO_CONF, NODE_EXTRA_CA_CERTS: ca } });
  t.is(r.code, 0, r.stderr);
  t.notRegex(r.stderr, /extra certs/);
  t.is(readFileSync(`${seen}.ca`, "utf8"), `${ca}\n`);
  t.true(existsSync(join(work, "stats-dump")));
  t.true(existsSync(join(work, "d.log")));
  t.false(existsSync(join(dir, "stats-dump")));
  t.is(readFileSync(seen, "utf8"), `pre-dump ${w.pid}\npost-dump ${w.pid}\n`);
});

test("a failing action script fails the dump and the task runs on", async (t) => {
  const w = await startWorkload(t, "counter");
  const work = tempDir(t);
  const script = join(work, "fail.sh");
  writeFileSync(script, `#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = post-dump ] && exit 3\nexit 0\n`);
  chmodSync(script, 0o755);
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(work, "img"), "--action-script", script], { env: NO_CONF });
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`post-dump of pid ${w.pid} failed: action script .* exited with 3`));
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("errors exit 1 and name step and pid; --ghost-limit is enforced", async (t) => {
  const w = await startWorkload(t, "sockfd");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", join(tempDir(t), "x")], { env: NO_CONF });
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`dump: files of pid ${w.pid} failed: unsupported fd 5: netlink socket .* queued`));
  const f = await startWorkload(t, "fdkinds");
  const g = tscriu(["dump", "-t", String(f.pid), "-D", join(tempDir(t), "y"), "--ghost-limit", "16"], { env: NO_CONF });
  t.is(g.code, 1);
  t.regex(g.stderr, /ghost\.dat holds \d+ bytes of data, more than --ghost-limit 16/);
  t.regex(await f.check(), /^PASS/);
  t.is(tscriu(["dump", "-D", "/tmp"], { env: NO_CONF }).code, 1);
});

test("a pid that does not exist: exit 1, the error on stderr, no directory made", (t) => {
  const dir = join(tempDir(t), "never");
  const r = tscriu(["dump", "-t", "4194303", "-D", dir], { env: NO_CONF });
  t.is(r.code, 1);
  t.regex(r.stderr, /dump: check of pid 4194303 failed: no such process/);
  t.false(existsSync(dir));
});

test("a directory that already holds images is refused before the task is touched; the old images stay as they were", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  t.is(tscriu(["dump", "-t", String(w.pid), "-D", dir, "-R"], { env: NO_CONF }).code, 0);
  const before = readdirSync(dir).map((n) => [n, readFileSync(join(dir, n))] as const);
  const again = tscriu(["dump", "-t", String(w.pid), "-D", dir, "-R"], { env: NO_CONF });
  t.is(again.code, 1);
  t.regex(again.stderr, new RegExp(`dump: images of pid ${w.pid} failed: ${dir} already holds images \\(core-${w.pid}\\.img, fdinfo-2\\.img, files\\.img, … \\(\\d+ files\\)\\); tscriu does not overwrite them`));
  for (const [n, bytes] of before) t.deepEqual(readFileSync(join(dir, n)), bytes, n);
  t.is(readdirSync(dir).length, before.length);
  t.is(readFileSync(`/proc/${w.pid}/status`, "utf8").match(/^TracerPid:\s+(\d+)/m)?.[1], "0");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("on a terminal, a dump of over 100 MiB draws a progress bar on stderr and ends it with a newline", async (t) => {
  const w = await startWorkload(t, "bigmem", ["128"]);
  const dir = join(tempDir(t), "img");
  const work = tempDir(t);
  const typescript = join(work, "typescript");
  // script(1) gives tscriu a pty as stdin/stdout/stderr and copies what it writes there.
  const r = spawnSync("script", ["-qfec", `exec ${process.execPath} ${CLI} dump -t ${w.pid} -D ${dir} -R`, typescript], {
    env: { ...process.env, ...NO_CONF },
    encoding: "utf8",
  });
  t.is(r.status, 0, r.stderr);
  const seen = readFileSync(typescript, "utf8");
  t.regex(seen, /\rdumping memory \[#+ *\] \d+\/128 MiB/);
  t.regex(seen, /\rdumping memory \[#+\] 128\/128 MiB\r?\n/, "the last draw is full and ends the line");
  t.regex(procState(w.pid) ?? "gone", RUNS_ON, "-R: the task runs on");
});

// A task waiting for its vfork to complete does not stop for ptrace until the child
// exits: the one way here to make a freeze outlast --timeout. (A task in a frozen cgroup
// is refused before the seize: test/dump-freeze-cgroup.test.ts.)
test("--timeout N: a task that cannot stop fails the dump after N s (not criu's default 10) and runs on untouched; a pre-dump too", async (t) => {
  // The child sleeps a minute (however slow a busy machine makes the dump); killed after.
  const w = await startWorkload(t, "vforker", ["60"]);
  const child = await vforkWaiting(w);
  t.teardown(() => {
    try {
      process.kill(child, "SIGKILL");
    } catch {
      // gone
    }
  });
  for (const cmd of ["dump", "pre-dump"]) {
    const dir = join(tempDir(t), "img");
    const t0 = Date.now();
    const r = tscriu([cmd, "-t", String(w.pid), "-D", dir, "--timeout", "1"], { env: NO_CONF });
    const took = Date.now() - t0;
    t.is(r.code, 1, cmd);
    t.regex(r.stderr, new RegExp(`dump: seize of pid ${w.pid} failed: the task did not stop within 1000 ms \\(--timeout\\)`));
    t.true(took < 9000, `${cmd} gave up after ${took} ms`);
    t.is(readFileSync(`/proc/${w.pid}/status`, "utf8").match(/^TracerPid:\s+(\d+)/m)?.[1], "0");
  }
  process.kill(child, "SIGKILL");
  await waitFor("the vfork to complete", () => readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim() === "", 10_000);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});
