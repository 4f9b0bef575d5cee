// --shell-job: a task whose stdio is a terminal (a pty made by script(1)) dumps as
// TTY files with tty-info; without -j the dump refuses and the task runs on.
import test from "ava";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bridge } from "../host-bridge/load.js";
import { openImageDir } from "../images/dir.js";
import { readImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { isDumpError } from "../orchestrator/dump/errors.js";
import { critDecodeAll, critInstalled, tempDir } from "./helpers/dump.js";
import { buildWorkloads, killAndReap, waitFor, WORKLOAD_BIN } from "./helpers/workloads.js";

/** Starts the counter workload on a fresh pty (script -q -e -c …); returns its pid and state dir. */
async function counterOnPty(t: import("ava").ExecutionContext): Promise<{ pid: number; dir: string }> {
  buildWorkloads();
  const dir = mkdtempSync(join(tmpdir(), "tscriu-tty-"));
  const out = join(dir, "script.out");
  const script = bridge().spawnDetached(["/usr/bin/script", "-qfec", `exec ${join(WORKLOAD_BIN, "counter")} ${dir}`, "/dev/null"], {
    stdout: out,
    killWithParent: true,
  });
  let pid = 0;
  t.teardown(async () => {
    if (pid) await killAndReap(pid);
    await killAndReap(script);
    rmSync(dir, { recursive: true, force: true });
  });
  const line = await waitFor("the counter on a pty to print its ready line", () =>
    existsSync(out) ? readFileSync(out, "utf8").split(/\r?\n/).find((l) => l.startsWith("ready ")) : undefined,
  );
  pid = Number(line.split(" ")[1]);
  return { pid, dir };
}

const counterAdvances = (dir: string) => {
  const read = () => Number(readFileSync(join(dir, "counter"), "utf8"));
  const before = read();
  return waitFor("the counter to advance", () => read() > before);
};

test("a shell job on a pty: -j dumps its terminal as TTY files with tty-info", async (t) => {
  const { pid, dir: state } = await counterOnPty(t);
  t.regex(bridge().readlink(`/proc/${pid}/fd/0`), /^\/dev\/pts\/\d+$/);
  const dir = tempDir(t);
  await dump({ pid, imagesDir: dir, leaveRunning: true, shellJob: true });

  const img = await openImageDir(dir);
  t.teardown(() => img.close());
  const fds = await img.fdinfo(pid);
  t.deepEqual(
    fds.filter((f) => f.fd <= 2).map((f) => f.type),
    ["TTY", "TTY", "TTY"],
  );
  const files = await img.files();
  const tty = files.get(fds[0]!.id);
  t.is(tty?.type, "TTY");
  const info = (await readImage(join(dir, "tty-info.img"))).entries;
  t.is(info.length, 1);
  t.is(info[0]!["type"], "PTY");
  t.is(info[0]!["id"], (tty as unknown as { tty: { tty_info_id: number } }).tty.tty_info_id);
  if (critInstalled(t)) t.deepEqual(critDecodeAll(dir).failed, []);
  await counterAdvances(state);
});

test("without -j a terminal is refused with a hint, and the task runs on", async (t) => {
  const { pid, dir: state } = await counterOnPty(t);
  const dir = tempDir(t);
  const e = await t.throwsAsync(dump({ pid, imagesDir: dir, leaveRunning: true }));
  t.true(isDumpError(e));
  t.regex(e.message, /unsupported fd 0: tty \/dev\/pts\/\d+ \(dump a shell job with --shell-job\)/);
  t.is(bridge().readlink(`/proc/${pid}/fd/0`).startsWith("/dev/pts/"), true);
  await counterAdvances(state);
});
