// tscriu restore on the command line, with criu's options: -d with --pidfile, -o/-v4 and
// --display-stats; -W; without -d tscriu waits and exits with the task's status; action
// scripts in criu's order; -S; --inherit-fd; -r; --cpu-cap; the progress bar.
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readlinkSync, readSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { progressBar } from "../orchestrator/progress.js";
import { CLI, tscriu } from "./helpers/cli.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, filesUnderRoot } from "./helpers/restore.js";
import { counterAdvances, killAndReap, procPpid, procState, startWorkload, waitFor } from "./helpers/workloads.js";
import { scratchDir } from "./helpers/tmp.js";

const NO_CONF = { HOME: scratchDir("tscriu-home-"), CRIU_CONFIG_FILE: "" };
test.after.always(() => rmSync(NO_CONF.HOME, { recursive: true, force: true }));

test("restore -d --pidfile --display-stats -v4 -o: detached, pid file, stats on stdout, log in the images dir", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const pidfile = join(tempDir(t), "pid");
  const r = tscriu(["restore", "-D", dir, "-d", "--pidfile", pidfile, "--display-stats", "-v4", "-o", "restore.log"], { env: NO_CONF });
  t.teardown(() => killAndReap(w.pid));
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^Displaying restore stats:\nPages compared: 0 \(0x0\)\nPages skipped COW: 0 \(0x0\)\nPages restored: \d+ \(0x[0-9a-f]+\)\nRestore time: \d+ us\nForking time: \d+ us\n$/);
  t.is(readFileSync(pidfile, "utf8"), String(w.pid));
  t.regex(readFileSync(join(dir, "restore.log"), "utf8"), /\(\d+\.\d+\) \(restore\): step: registers/);
  t.is(readFileSync(`/proc/${procPpid(w.pid)}/comm`, "utf8").trim(), "tscriu-reaper", "the task outlives tscriu under its subreaper");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
  t.true(existsSync(join(dir, "stats-restore")));
});

test("-W: the log, stats-restore and a relative pid file go into the work dir, not the images dir", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const work = tempDir(t);
  const r = tscriu(["restore", "-D", dir, "-d", "-W", work, "-o", "r.log", "--pidfile", "pid", "-v4"], { env: NO_CONF });
  t.teardown(() => killAndReap(w.pid));
  t.is(r.code, 0, r.stderr);
  t.regex(readFileSync(join(work, "r.log"), "utf8"), /\(restore\): step: registers/);
  t.is(readFileSync(join(work, "pid"), "utf8"), String(w.pid));
  t.true(existsSync(join(work, "stats-restore")));
  for (const f of ["r.log", "pid", "stats-restore"]) t.false(existsSync(join(dir, f)), f);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("restore without -d: tscriu stays the parent and exits with the task's status", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const cli = spawn(process.execPath, [CLI, "restore", "-D", dir], { env: { ...process.env, ...NO_CONF }, stdio: "ignore" });
  const exited = new Promise<number | null>((res) => cli.on("exit", (code) => res(code)));
  t.teardown(() => killAndReap(w.pid));
  await waitFor("the task to be back", () => existsSync(`/proc/${w.pid}`) && procPpid(w.pid) === cli.pid, 20_000);
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
  process.kill(w.pid, "SIGKILL");
  t.is(await exited, 137, "128 + SIGKILL");

  // A task that ends by itself: its exit code comes through. It counts until told to
  // stop (a file), so that no timing decides whether it is still there to be dumped.
  const script = "i=0; while [ ! -e stop ]; do i=$((i+1)); echo $i > count; read -t 0.05 -u 3; done; exit 7";
  const bashDir = tempDir(t);
  const run = join(bashDir, "run");
  mkdirSync(run);
  spawnSync("mkfifo", [join(run, "tick")]);
  const { bridge } = await import("../host-bridge/load.js");
  const pid = bridge().spawnDetached(["bash", "-c", `exec 3<>tick; ${script}`], { cwd: run, killWithParent: true });
  t.teardown(() => killAndReap(pid));
  const count = (): number => (existsSync(join(run, "count")) ? Number(readFileSync(join(run, "count"), "utf8")) : 0);
  await waitFor("bash to count", () => count() > 3);
  const bdir = await dumpGone(t, { pid });
  const dumpedAt = count();
  const c = spawn(process.execPath, [CLI, "restore", "-D", bdir], { env: { ...process.env, ...NO_CONF }, stdio: "ignore" });
  const code = new Promise<number | null>((resolve) => c.on("exit", (n) => resolve(n)));
  await waitFor("the restored bash to count on", () => count() > dumpedAt + 2);
  writeFileSync(join(run, "stop"), "");
  t.is(await code, 7);
});

test("--action-script runs pre-restore, post-restore, pre-resume, post-resume with criu's environment", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const tmp = tempDir(t);
  const log = join(tmp, "actions");
  const script = join(tmp, "act.sh");
  writeFileSync(script, `#!/bin/sh\necho "$CRTOOLS_SCRIPT_ACTION ${"$"}{CRTOOLS_INIT_PID:-none} $CRTOOLS_IMAGE_DIR" >> ${log}\n`, { mode: 0o755 });
  const r = tscriu(["restore", "-D", dir, "-d", "--action-script", script], { env: NO_CONF });
  t.teardown(() => killAndReap(w.pid));
  t.is(r.code, 0, r.stderr);
  t.deepEqual(readFileSync(log, "utf8").trim().split("\n"), [`pre-restore none ${dir}`, `setup-namespaces ${w.pid} ${dir}`, `post-setup-namespaces ${w.pid} ${dir}`, `post-restore ${w.pid} ${dir}`, `pre-resume ${w.pid} ${dir}`, `post-resume ${w.pid} ${dir}`]);

  // A failing pre-restore script fails the restore before anything is made.
  const w2 = await startWorkload(t, "counter");
  const dir2 = await dumpGone(t, w2);
  const bad = join(tmp, "bad.sh");
  writeFileSync(bad, `#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = pre-restore ] && exit 3\nexit 0\n`, { mode: 0o755 });
  const r2 = tscriu(["restore", "-D", dir2, "-d", "--action-script", bad], { env: NO_CONF });
  t.is(r2.code, 1);
  t.regex(r2.stderr, new RegExp(`restore: pre-restore of pid ${w2.pid} failed: action script .*bad.sh \\(pre-restore\\) exited with 3`));
  t.false(existsSync(`/proc/${w2.pid}`));
});

test("-S needs -d; -S -d makes the task a child of tscriu's parent", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const r = tscriu(["restore", "-D", dir, "-S"], { env: NO_CONF });
  t.is(r.code, 1);
  t.regex(r.stderr, /-S\/--restore-sibling needs -d\/--restore-detached/);
  const ok = tscriu(["restore", "-D", dir, "-S", "-d"], { env: NO_CONF });
  t.teardown(() => killAndReap(w.pid));
  t.is(ok.code, 0, ok.stderr);
  t.is(procPpid(w.pid), process.pid, "tscriu's parent (this test process) is the parent");
  await counterAdvances(w);
});

test("--inherit-fd fd[N]:path gives the task tscriu's fd N in place of the file it had", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const other = join(tempDir(t), "other.log");
  const fd = openSync(other, "w");
  const key = join(w.dir, "stdout").slice(1);
  const r = spawnSync(process.execPath, [CLI, "restore", "-D", dir, "-d", "--inherit-fd", `fd[3]:${key}`], {
    env: { ...process.env, ...NO_CONF },
    stdio: ["ignore", "pipe", "pipe", fd],
    encoding: "utf8",
  });
  closeSync(fd);
  t.teardown(() => killAndReap(w.pid));
  t.is(r.status, 0, r.stderr);
  t.is(readlinkSync(`/proc/${w.pid}/fd/1`), other);
  t.is(readlinkSync(`/proc/${w.pid}/fd/2`), other, "both fds of that open file");
  t.is(readlinkSync(`/proc/${w.pid}/fd/0`), "/dev/null");
  await counterAdvances(w);
});

test("-r ROOT: files are opened under ROOT and the task is chrooted there", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const root = tempDir(t, "tscriu-root-");
  await filesUnderRoot(dir, root);
  const r = tscriu(["restore", "-D", dir, "-d", "-r", root], { env: NO_CONF });
  t.teardown(() => killAndReap(w.pid));
  t.is(r.code, 0, r.stderr);
  t.is(readlinkSync(`/proc/${w.pid}/root`), root);
  t.is(readlinkSync(`/proc/${w.pid}/cwd`), join(root, process.cwd()), "the cwd it had (the workloads inherit ours), under ROOT");
  await waitFor("the counter under ROOT to move", () => {
    try {
      return Number(readFileSync(join(root, w.dir, "counter"), "utf8")) > w.counter();
    } catch {
      return false;
    }
  });
  t.pass();
});

test("--cpu-cap: a dump with cpuinfo.img restores with --cpu-cap=all and with --cpu-cap", async (t) => {
  for (const cap of ["--cpu-cap=all", "--cpu-cap"]) {
    const w = await startWorkload(t, "counter");
    const dir = await dumpGone(t, w, { cpuCap: "all" });
    t.true(existsSync(join(dir, "cpuinfo.img")));
    const r = tscriu(["restore", "-D", dir, "-d", cap], { env: NO_CONF });
    t.teardown(() => killAndReap(w.pid));
    t.is(r.code, 0, r.stderr);
    await counterAdvances(w);
  }
});

test("the progress bar: drawn on a terminal for large restores only", (t) => {
  const out: string[] = [];
  const tty = { isTTY: true, columns: 80, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream;
  const bar = progressBar(() => tty, "restoring memory");
  bar({ type: "memory-start", bytes: 256 << 20 });
  bar({ type: "memory-progress", done: 128 << 20 });
  bar({ type: "memory-progress", done: 256 << 20 });
  bar({ type: "memory-done" });
  t.regex(out.join(""), /\rrestoring memory \[#+ *\] 128\/256 MiB.*\rrestoring memory \[#+\] 256\/256 MiB\n$/s);
  let asked = false;
  const bar2 = progressBar(() => {
    asked = true;
    return tty;
  }, "restoring memory");
  bar2({ type: "memory-start", bytes: 1 << 20 });
  bar2({ type: "memory-progress", done: 1 << 20 });
  bar2({ type: "memory-done" });
  t.false(asked, "a small restore never asks for the stream (process.stderr costs milliseconds to make)");
  // Nor a large one before its memory moves: the step events of a dump come while its task is frozen.
  bar2({ type: "memory-start", bytes: 256 << 20 });
  bar2({ type: "step" });
  t.false(asked, "no stream asked for at an event other than the memory's progress");
  bar2({ type: "memory-progress", done: 1 << 20 });
  t.true(asked);
  let asks = 0;
  const none = progressBar(() => void asks++, "restoring memory");
  none({ type: "memory-start", bytes: 256 << 20 });
  none({ type: "memory-progress", done: 1 << 20 });
  none({ type: "memory-progress", done: 256 << 20 });
  none({ type: "memory-done" });
  t.is(asks, 1, "no terminal: asked once, nothing drawn");
  const notty: string[] = [];
  const bar3 = progressBar(() => ({ isTTY: false, write: (s: string) => notty.push(s) }) as unknown as NodeJS.WriteStream, "restoring memory");
  bar3({ type: "memory-start", bytes: 256 << 20 });
  bar3({ type: "memory-progress", done: 256 << 20 });
  t.deepEqual(notty, []);
});

test("-s leaves the task stopped; a task dumped while stopped comes back stopped", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const r = tscriu(["restore", "-D", dir, "-d", "-s"], { env: NO_CONF });
  t.teardown(() => killAndReap(w.pid));
  t.is(r.code, 0, r.stderr);
  await waitFor("the task to sit stopped", () => procState(w.pid) === "T");
  process.kill(w.pid, "SIGCONT");
  await counterAdvances(w);
  await killAndReap(w.pid);

  const s = await startWorkload(t, "counter");
  process.kill(s.pid, "SIGSTOP");
  await waitFor("the workload to stop", () => procState(s.pid) === "T");
  const sdir = await dumpGone(t, s);
  t.is(tscriu(["restore", "-D", sdir, "-d"], { env: NO_CONF }).code, 0);
  t.teardown(() => killAndReap(s.pid));
  await waitFor("the task to come back stopped", () => procState(s.pid) === "T");
  process.kill(s.pid, "SIGCONT");
  await counterAdvances(s);
  t.regex(await s.check(), /^PASS/);
});

test("--inherit-fd fd[N]:pipe[ID]: a pipeline stage writes on into tscriu's pipe (as criu restores shell pipelines)", async (t) => {
  const { bridge } = await import("../host-bridge/load.js");
  const work = tempDir(t);
  const py = "import time\nn = 0\nwhile True:\n    n += 1\n    print(n, flush=True)\n    time.sleep(0.02)\n";
  const shell = bridge().spawnDetached(["bash", "-c", `python3 -u -c '${py}' | cat > out`], { cwd: work, killWithParent: true });
  t.teardown(() => killAndReap(shell));
  let python = 0;
  await waitFor("python3 in the pipeline", () => {
    for (const c of readFileSync(`/proc/${shell}/task/${shell}/children`, "utf8").trim().split(/\s+/)) {
      if (c && readFileSync(`/proc/${c}/comm`, "utf8").trim() === "python3") python = Number(c);
    }
    return python > 0 && existsSync(join(work, "out")) && readFileSync(join(work, "out"), "utf8").length > 10;
  });
  const pipeId = /pipe:\[(\d+)\]/.exec(readlinkSync(`/proc/${python}/fd/1`))![1]!;
  const dir = await dumpGone(t, { pid: python });
  const [r, w] = bridge().pipe2(0o2004000); // O_CLOEXEC | O_NONBLOCK
  const res = spawnSync(process.execPath, [CLI, "restore", "-D", dir, "-d", "-j", "--inherit-fd", `fd[3]:pipe[${pipeId}]`], {
    env: { ...process.env, ...NO_CONF },
    stdio: ["ignore", "pipe", "pipe", w],
    encoding: "utf8",
  });
  bridge().close(w);
  t.teardown(() => killAndReap(python));
  t.is(res.status, 0, res.stderr);
  t.regex(readlinkSync(`/proc/${python}/fd/1`), /^pipe:\[\d+\]$/);
  let got = "";
  const buf = Buffer.alloc(4096);
  await waitFor("numbers through our pipe", () => {
    try {
      const n = readSync(r, buf);
      got += buf.toString("utf8", 0, n);
    } catch {
      // EAGAIN: nothing yet
    }
    return got.split("\n").filter((l) => /^\d+$/.test(l)).length >= 3;
  });
  bridge().close(r);
  const nums = got.split("\n").filter((l) => /^\d+$/.test(l)).map(Number);
  t.true(nums.every((n, i) => i === 0 || n === nums[i - 1]! + 1), `counting on: ${nums.slice(0, 5).join(" ")}`);
});

test("restore -D of a missing directory, or of a file: named before any step, exit 1", (t) => {
  const dir = tempDir(t);
  const missing = join(dir, "none");
  const file = join(dir, "file");
  writeFileSync(file, "");
  for (const [d, code] of [
    [missing, "ENOENT"],
    [file, "ENOTDIR"],
  ] as const) {
    const r = tscriu(["restore", "-D", d]);
    t.is(r.code, 1, d);
    t.is(r.stderr, `Error (restore): restore: plan failed: cannot open the images directory: ${code} (${d})\n`, d);
  }
});
