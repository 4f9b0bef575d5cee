// spawnDetached: the workload is not our child, runs in its own session under the
// tscriu_reaper subreaper, and is reaped the moment it dies.
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { bridge, isNativeError } from "../host-bridge/load.js";
import { buildWorkloads, killAndReap, procPpid, waitFor, WORKLOAD_BIN } from "./helpers/workloads.js";

const b = bridge();

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), "tscriu-spawn-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("the program runs under the reaper, in its own session, with the env and cwd given", async (t) => {
  buildWorkloads();
  const dir = tempDir(t);
  const out = join(dir, "out");
  const pid = b.spawnDetached([join(WORKLOAD_BIN, "sleeper"), dir], {
    env: ["TSCRIU_TEST_MARK=42", "PATH=/usr/bin:/bin"],
    cwd: dir,
    stdout: out,
    killWithParent: true,
  });
  t.teardown(() => killAndReap(pid));
  await waitFor("the ready line", () => readFileSync(out, "utf8").startsWith("ready "));

  const ppid = procPpid(pid);
  t.not(ppid, process.pid, "not a child of Node");
  t.regex(readlinkSync(`/proc/${ppid}/exe`), /tscriu_reaper$/);
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const [, , pgrp, session] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  t.is(Number(pgrp), pid, "its own process group");
  t.is(Number(session), pid, "its own session");
  t.deepEqual(readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean), ["TSCRIU_TEST_MARK=42", "PATH=/usr/bin:/bin"]);
  t.is(readlinkSync(`/proc/${pid}/cwd`), dir);
  t.is(readlinkSync(`/proc/${pid}/fd/0`), "/dev/null");
  t.is(readlinkSync(`/proc/${pid}/fd/1`), out);
  t.is(readlinkSync(`/proc/${pid}/fd/2`), out);
  t.deepEqual(readdirSync(`/proc/${pid}/fd`), ["0", "1", "2"], "no fd of Node leaks in");
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  t.regex(status, /^SigBlk:\s+0+$/m, "empty signal mask");
  t.regex(status, /^SigIgn:\s+0+$/m, "no ignored signals (Node ignores SIGPIPE)");
});

test("fds passed (options.fds) are the program's 4, 5, …, in order, and the reaper keeps no copy of them", async (t) => {
  const dir = tempDir(t);
  const [a, c] = b.socketpair(1, 1); // AF_UNIX, SOCK_STREAM
  t.teardown(() => (b.close(a), b.close(c)));
  const out = join(dir, "out");
  // fd 3 is the reaper's status pipe until the exec, closed on it
  const pid = b.spawnDetached(["sleep", "1000"], { killWithParent: true, fds: [c, a, c], stdout: out });
  t.teardown(() => killAndReap(pid));
  await waitFor("sleep to exec", () => readlinkSync(`/proc/${pid}/exe`).endsWith("/sleep"));
  const inode = (p: string): string => readlinkSync(p);
  t.deepEqual(readdirSync(`/proc/${pid}/fd`).map(Number).sort((x, y) => x - y), [0, 1, 2, 4, 5, 6]);
  t.is(inode(`/proc/${pid}/fd/4`), inode(`/proc/self/fd/${c}`));
  t.is(inode(`/proc/${pid}/fd/5`), inode(`/proc/self/fd/${a}`));
  t.is(inode(`/proc/${pid}/fd/6`), inode(`/proc/self/fd/${c}`));
  const reaper = procPpid(pid);
  const held = readdirSync(`/proc/${reaper}/fd`).map((fd) => readlinkSync(`/proc/${reaper}/fd/${fd}`));
  t.false(held.includes(inode(`/proc/self/fd/${a}`)) || held.includes(inode(`/proc/self/fd/${c}`)), held.join(", "));
  t.throws(() => b.spawnDetached(["true"], { fds: [1 << 20] }), { instanceOf: TypeError, message: /options\.fds must hold open fds/ });
  t.throws(() => b.spawnDetached(["true"], { fds: Array.from({ length: 65 }, () => 0) }), { instanceOf: TypeError, message: /at most 64/ });
});

test("a killed workload is reaped at once, not by pid 1 a second and a half later", async (t) => {
  const pid = b.spawnDetached(["sleep", "1000"], { killWithParent: true });
  t.teardown(() => killAndReap(pid));
  await waitFor("sleep to exec", () => readlinkSync(`/proc/${pid}/exe`).endsWith("/sleep"));
  const reaper = procPpid(pid);
  const t0 = Date.now();
  process.kill(pid, "SIGKILL");
  await waitFor("the pid to be freed", () => {
    try {
      readFileSync(`/proc/${pid}/stat`);
      return false;
    } catch {
      return true;
    }
  });
  t.true(Date.now() - t0 < 1000, `freed after ${Date.now() - t0} ms`);
  // With its only child gone the reaper exits too.
  await waitFor("the reaper to exit", () => {
    try {
      return readFileSync(`/proc/${reaper}/stat`, "utf8").includes(") Z") || false;
    } catch {
      return true;
    }
  });
});

test("failures name the step and the path: exec, chdir, stdout", (t) => {
  const dir = tempDir(t);
  const missing = join(dir, "missing");
  const exec = t.throws(() => b.spawnDetached([missing]));
  t.true(isNativeError(exec));
  t.like(exec, { code: "ENOENT", path: missing, syscall: "spawnDetached: execve" });
  t.like(t.throws(() => b.spawnDetached(["true"], { cwd: missing })), { code: "ENOENT", path: missing, syscall: "spawnDetached: chdir" });
  const out = join(missing, "out");
  t.like(t.throws(() => b.spawnDetached(["true"], { stdout: out })), { code: "ENOENT", path: out, syscall: "spawnDetached: open stdout" });
});

test("argument errors are TypeErrors", (t) => {
  t.throws(() => b.spawnDetached([]), { instanceOf: TypeError, code: "ERR_INVALID_ARG_TYPE" });
  t.throws(() => b.spawnDetached("true" as unknown as string[]), { instanceOf: TypeError });
  t.throws(() => b.spawnDetached(["true", 1 as unknown as string]), { instanceOf: TypeError });
  t.throws(() => b.spawnDetached(["true"], { env: [2 as unknown as string] }), { instanceOf: TypeError });
  t.throws(() => b.spawnDetached(["true"], { cwd: 5 as unknown as string }), { instanceOf: TypeError });
  t.throws(() => b.spawnDetached(["tr\0ue"]), { instanceOf: TypeError });
  t.throws(() => b.spawnDetached(["true"], { killWithParent: "yes" as unknown as boolean }), { instanceOf: TypeError });
});
