// Programs nobody here wrote survive dump + restore and keep working: a python3 loop
// writing a file, python3 with four worker threads, coreutils sleep (which then exits on time with status 0, reaped by us
// as its parent), a bash loop, and a bash loop on a terminal restored as a shell job.
import { closeSync, constants, existsSync, openSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { CLI } from "./helpers/cli.js";
import { join } from "node:path";
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import type { TtyInfo } from "../host-bridge/native.js";
import { waitRestored } from "../orchestrator/restore/restore.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startProgram } from "./helpers/programs.js";
import { killAndReap, waitFor } from "./helpers/workloads.js";

const readCount = (dir: string): number => {
  try {
    return Number(readFileSync(join(dir, "count"), "utf8").trim());
  } catch {
    return Number.NaN;
  }
};

async function countsOn(dir: string): Promise<void> {
  let first = Number.NaN;
  await waitFor("the count to be written", () => !Number.isNaN((first = readCount(dir))));
  await waitFor(`the count to go on from ${first}`, () => readCount(dir) >= first + 3);
}

test("python3: a loop writing a file counts on", async (t) => {
  const py = "import time\nn = 0\nwhile True:\n    n += 1\n    with open('count.tmp', 'w') as f:\n        f.write(str(n))\n    import os\n    os.replace('count.tmp', 'count')\n    time.sleep(0.02)\n";
  const w = await startProgram(t, ["python3", "-c", py], (d) => readCount(d) > 5);
  const dir = await dumpGone(t, w);
  const at = readCount(w.dir);
  await restoreTask(t, dir);
  await countsOn(w.dir);
  t.true(readCount(w.dir) > at);
  t.is(readFileSync(`/proc/${w.pid}/comm`, "utf8").trim(), "python3");
});

test("python3 with worker threads: every thread counts on after the restore", async (t) => {
  // Four threads each count into a file of their own (under the GIL, with time.sleep),
  // the main thread joins them; count = the sum once all of them have started.
  const py = [
    "import os, threading, time",
    "counts = [0, 0, 0, 0]",
    "def work(i):",
    "    while True:",
    "        counts[i] += 1",
    "        with open(f'w{i}.tmp', 'w') as f: f.write(str(counts[i]))",
    "        os.replace(f'w{i}.tmp', f'w{i}')",
    "        time.sleep(0.01)",
    "ts = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(4)]",
    "for th in ts: th.start()",
    "while True:",
    "    with open('count.tmp', 'w') as f: f.write(str(min(counts)))",
    "    os.replace('count.tmp', 'count')",
    "    time.sleep(0.02)",
  ].join("\n");
  const w = await startProgram(t, ["python3", "-c", py], (d) => readCount(d) > 5);
  t.is(readdirSync(`/proc/${w.pid}/task`).length, 5, "the main thread and four workers");
  const dir = await dumpGone(t, w);
  const worker = (i: number): number => Number(readFileSync(join(w.dir, `w${i}`), "utf8") || "NaN");
  const at = [0, 1, 2, 3].map(worker);
  await restoreTask(t, dir);
  t.is(readdirSync(`/proc/${w.pid}/task`).length, 5);
  await countsOn(w.dir);
  await waitFor("every worker to count on", () => [0, 1, 2, 3].every((i) => worker(i) > at[i]! + 2));
  t.pass();
});

test("a shell pipeline (bash | python3 producer | cat > file): the three processes and the pipe between them come back, the file keeps growing", async (t) => {
  const producer = "import itertools, time\nfor i in itertools.count():\n    print(i, flush=True)\n    time.sleep(0.01)";
  const w = await startProgram(t, ["bash", "-c", `python3 -u -c '${producer}' | cat > out; echo done > count`], (d) => existsSync(join(d, "out")) && readFileSync(join(d, "out"), "utf8").split("\n").length > 20);
  const kids = (): number[] => readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  const [py, cat] = kids();
  t.truthy(py && cat, "bash has its two children");
  t.teardown(() => {
    for (const p of [py!, cat!]) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone
      }
    }
  });
  t.is(readlinkSync(`/proc/${py}/fd/1`), readlinkSync(`/proc/${cat}/fd/0`), "python3 writes into the pipe cat reads");
  const dir = await dumpGone(t, w);
  const lines = (): number => readFileSync(join(w.dir, "out"), "utf8").split("\n").length;
  const at = lines();
  await restoreTask(t, dir);
  t.deepEqual(kids().sort(), [py!, cat!].sort(), "bash's children are back with their PIDs");
  await waitFor("the file to keep growing", () => lines() > at + 20);
  // The numbers go on without a gap or a repeat: nothing in the pipe was lost or doubled.
  const nums = readFileSync(join(w.dir, "out"), "utf8").trim().split("\n").map(Number);
  t.true(nums.every((n, i) => n === i), "0, 1, 2, … in order");
});

test("sleep 2: dumped part-way, restored as our child, sleeps the rest and exits 0", async (t) => {
  const w = await startProgram(t, ["sleep", "2"], () => true);
  await waitFor("sleep to be in nanosleep", () => /^State:\s+S/m.test(readFileSync(`/proc/${w.pid}/status`, "utf8")));
  const started = Date.now();
  await waitFor("0.5 s to pass", () => Date.now() - started >= 500, 5000);
  const dir = await dumpGone(t, w);
  const r = await restoreTask(t, dir);
  const t0 = Date.now();
  t.deepEqual(await waitRestored(r.pid, 10), { code: 0, signal: 0 }, "exit status 0");
  const slept = Date.now() - t0;
  // At most the 1.5 s left at dump time (not the 2 s again), and not 0.
  t.true(slept > 50 && slept < 1800, `slept ${slept} ms more: the time that was left`);
});

test("bash: a builtin-only loop counts on", async (t) => {
  // Builtins only (a dump refuses a task with children): read -t on a FIFO is the sleep.
  const loop = "mkfifo tick; exec 3<>tick; i=0; while :; do i=$((i+1)); echo $i > count; read -t 0.02 -u 3; done";
  const w = await startProgram(t, ["bash", "-c", loop], (d) => readCount(d) > 5);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  await countsOn(w.dir);
  t.is(readFileSync(`/proc/${w.pid}/comm`, "utf8").trim(), "bash");
});

test("bash on a terminal: a shell job (-j) restored by `tscriu restore -j` on another terminal writes on to that one, with its terminal settings", async (t) => {
  // script(1) runs bash on a new pty and copies what bash writes there into ./typescript.
  // It runs the command with $SHELL -c; `exec` keeps that shell (dash forks) from staying
  // on as bash's parent. stty runs (and ends) before the loop: settings to come back.
  const loop = "stty -echo rows 33 cols 111; mkfifo tick; exec 3<>tick; i=0; while :; do i=$((i+1)); echo $i > count; echo tick-$i; read -t 0.05 -u 3; done";
  const w = await startProgram(t, ["script", "-qfec", `exec bash -c '${loop}'`, "typescript"], (d) => readCount(d) > 3);
  const bash = Number(readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim().split(/\s+/)[0]);
  t.regex(readlinkSync(`/proc/${bash}/fd/1`), /^\/dev\/pts\/\d+$/);
  const dumped = terminalOf(bash);
  t.like(dumped, { rows: 33, cols: 111 });
  t.is(dumped.termios.lflag & ECHO, 0);
  const dir = await dumpGone(t, { ...w, pid: bash }, { shellJob: true });
  // As with criu: the shell job gets the terminal of the tscriu that restores it (the
  // first one is gone with its script). tscriu stays its parent and waits (no -d).
  const again = await startProgram(t, ["script", "-qfec", `exec ${process.execPath} ${CLI} restore -j -D ${dir}`, "typescript2"], () => existsSync(`/proc/${bash}`));
  t.teardown(() => killAndReap(bash));
  await waitFor("bash to write on to the new terminal", () => /tick-\d+/.test(readFileSync(join(again.dir, "typescript2"), "utf8")));
  t.regex(readlinkSync(`/proc/${bash}/fd/1`), /^\/dev\/pts\/\d+$/);
  t.is(readFileSync(`/proc/${bash}/comm`, "utf8").trim(), "bash");
  // The new terminal (script's, 0x0 and echoing when it began) now has the dumped settings.
  const now = terminalOf(bash);
  t.deepEqual({ rows: now.rows, cols: now.cols, termios: now.termios }, { rows: 33, cols: 111, termios: dumped.termios });
  await countsOn(w.dir);
});

const ECHO = 0o10;

/** The settings of the terminal on a task's fd 1. */
function terminalOf(pid: number): TtyInfo {
  const fd = openSync(`/proc/${pid}/fd/1`, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
  try {
    return bridge().ttyInfo(fd);
  } finally {
    closeSync(fd);
  }
}
