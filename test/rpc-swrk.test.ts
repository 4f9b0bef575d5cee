// criu's RPC through `tscriu swrk FD`, driven by Debian's pycriu (python3-pycriu, from the
// criu package CI installs) exactly as a Python client drives criu: VERSION, FEATURE_CHECK,
// CHECK, then dump and restore of workloads (one task, a tree, threads) that each pass their
// own check after the restore; what tscriu cannot do yet is refused by name.
import { existsSync, mkdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { RpcClient } from "../orchestrator/rpc/client.js";
import { CLI } from "./helpers/cli.js";
import { tempDir } from "./helpers/dump.js";
import { pycriu as drive, pycriuInstalled } from "./helpers/pycriu.js";
import { killAndReap, startWorkload, waitFor } from "./helpers/workloads.js";

const SWRK = `swrk:${CLI}`;
const pycriu = (how: string, ...args: string[]): Record<string, unknown> => drive(how, args);

test("swrk: pycriu's VERSION, FEATURE_CHECK and CHECK", (t) => {
  pycriuInstalled(t);
  t.deepEqual(pycriu(SWRK, "version"), { success: true, major: 4, minor: 2, name: "tscriu 0.1.0 (criu 4.2 compatible)" });
  // pre-dumps work on any kernel (no soft-dirty needed)
  t.deepEqual(pycriu(SWRK, "features"), { success: true, mem_track: true, lazy_pages: true, pidfd_store: true });
  t.deepEqual(pycriu(SWRK, "check"), { success: true });
});

/** Dumps w through pycriu, waits for its PID to be free, restores it through pycriu. */
async function dumpRestore(t: ExecutionContext, pid: number): Promise<string> {
  const dir = tempDir(t);
  t.deepEqual(pycriu(SWRK, "dump", String(pid), dir), { success: true, restored: false });
  t.true(existsSync(join(dir, `core-${pid}.img`)) && existsSync(join(dir, "dump.log")), "images and the log file named by the request");
  await waitFor(`pid ${pid} to be free after the dump`, () => !existsSync(`/proc/${pid}`));
  const r = pycriu(SWRK, "restore", dir);
  if (r["success"] === true) t.teardown(() => killAndReap(pid));
  t.deepEqual(r, { success: true, pid }, readFileSync(join(dir, "restore.log"), "utf8").slice(-2000));
  return dir;
}

test("swrk: pycriu dumps and restores a task, which passes its own check", async (t) => {
  pycriuInstalled(t);
  const w = await startWorkload(t, "counter");
  await dumpRestore(t, w.pid);
  t.regex(await w.check(), /^PASS/);
});

test("swrk: pycriu dumps and restores a process tree and a process with threads", async (t) => {
  pycriuInstalled(t);
  const tree = await startWorkload(t, "tree");
  t.is(await tree.check(), "PASS tree=5", "before the dump");
  await dumpRestore(t, tree.pid);
  t.is(await tree.check(), "PASS tree=5", "after the restore");
  const th = await startWorkload(t, "threads", ["3"]);
  await dumpRestore(t, th.pid);
  t.is(await th.check(), "PASS threads=3", "after the restore");
});

test("swrk: criu's pidfd store (pidfd_store_sk): two pre-dumps and a dump keep the tree's pidfds in the client's socket between passes; a pass with a parent and another socket is refused", async (t) => {
  pycriuInstalled(t);
  const w = await startWorkload(t, "tree");
  const work = tempDir(t);
  const dirs = ["p1", "p2", "full"].map((d) => join(work, d));
  for (const d of dirs) mkdirSync(d);
  const r = pycriu(SWRK, "pidfd_store", String(w.pid), ...dirs);
  t.like(r, { success: true }, readFileSync(join(dirs[2]!, "dump.log"), "utf8").slice(-1500));
  // bound on first use to criu's abstract name: the client pid, its fd and the run's id
  t.regex(String(r["store"]), /^\0X\/criu-pidfd-store-\d+-\d+-[0-9a-f-]+$/);
  for (const d of dirs.slice(1)) t.notRegex(readFileSync(join(d, "dump.log"), "utf8"), /Pid reuse detected/, d);
  await waitFor(`pid ${w.pid} to be free after the dump`, () => !existsSync(`/proc/${w.pid}`));
  const restored = pycriu(SWRK, "restore", dirs[2]!);
  if (restored["success"] === true) t.teardown(() => killAndReap(w.pid));
  t.like(restored, { success: true, pid: w.pid });
  t.is(await w.check(), "PASS tree=5");

  // a new socket (the store of nobody's last pass) for a pass with a parent
  const [first, other] = [join(work, "first"), join(work, "other")];
  mkdirSync(first);
  mkdirSync(other);
  const bad = pycriu(SWRK, "pidfd_store", "each", String(w.pid), first, other);
  t.like(bad, { success: false });
  t.regex(readFileSync(join(other, "dump.log"), "utf8"), /no pidfds found in the pidfd store \(criu_opts\.pidfd_store_sk\): the same socket as the previous pass's must be passed/);
  t.is(await w.check(), "PASS tree=5", "untouched");
});

test("swrk: pycriu's pre_dump, then dump with parent_img: the task runs on after the pre-dump, the chain restores", async (t) => {
  pycriuInstalled(t);
  const w = await startWorkload(t, "counter");
  const work = tempDir(t);
  const [pre, full] = [join(work, "pre"), join(work, "full")];
  mkdirSync(pre);
  mkdirSync(full);
  t.deepEqual(pycriu(SWRK, "pre_dump", String(w.pid), pre), { success: true, restored: false });
  t.regex(await w.check(), /^PASS/, "running on after the pre-dump");
  t.deepEqual(pycriu(SWRK, "dump", String(w.pid), full, "parent=../pre"), { success: true, restored: false });
  t.is(readlinkSync(join(full, "parent")), "../pre", "criu's parent link");
  await waitFor(`pid ${w.pid} to be free after the dump`, () => !existsSync(`/proc/${w.pid}`));
  const r = pycriu(SWRK, "restore", full);
  if (r["success"] === true) t.teardown(() => killAndReap(w.pid));
  t.deepEqual(r, { success: true, pid: w.pid });
  t.regex(await w.check(), /^PASS/, "restored from the chain");
});

test("swrk: dump with leave_running leaves the task running", async (t) => {
  pycriuInstalled(t);
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  t.deepEqual(pycriu(SWRK, "dump", String(w.pid), dir, "leave_running"), { success: true, restored: false });
  t.regex(await w.check(), /^PASS/);
});

test("swrk: requests and options tscriu cannot do yet are refused by name, a missing task is ESRCH", async (t) => {
  pycriuInstalled(t);
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const refused = (type: string, opts: Record<string, unknown>): Record<string, unknown> => pycriu(SWRK, "req", type, JSON.stringify(opts));
  t.like(refused("PAGE_SERVER", { images_dir: `fd:${dir}`, ps: { fd: 0 } }), { success: false, type: "PAGE_SERVER", cr_errmsg: "criu_opts.ps.fd is not supported yet by tscriu page-server over the RPC (give the address and port)" });
  t.like(refused("PAGE_SERVER", { images_dir: `fd:${dir}`, lazy_pages: true, parent_img: "../p" }), { success: false, type: "PAGE_SERVER", cr_errmsg: "criu_opts.parent_img is for receiving a dump, not for lazy_pages (serving one)" });
  // a lazy page server needs a dump to serve: an empty dir is named with its missing pstree.img
  const empty = refused("PAGE_SERVER", { images_dir: `fd:${dir}`, lazy_pages: true, log_file: "ps.log" });
  t.like(empty, { success: false, type: "PAGE_SERVER" });
  t.regex(String(empty["cr_errmsg"]), /the page server exited with 1 before it listened: .*pstree\.img: cannot read image: ENOENT/);
  t.like(refused("DUMP", { images_dir: `fd:${dir}`, pid: w.pid, evasive_devices: true, skip_mnt: ["/mnt"] }), {
    success: false,
    type: "DUMP",
    cr_errno: 56,
    cr_errmsg: "criu_opts.evasive_devices (--evasive-devices) is not supported yet by tscriu dump; criu_opts.skip_mnt (--skip-mnt) is not supported yet by tscriu dump",
  });
  t.like(refused("DUMP", { images_dir: `fd:${dir}`, pid: w.pid, exec_cmd: ["true"] }), { success: false, cr_errmsg: "criu_opts.exec_cmd (a command to exec once the restore is done) is not an option of dump" });
  t.like(refused("RESTORE", { images_dir: `fd:${dir}`, orphan_pts_master: true }), { success: false, cr_errmsg: "criu_opts.orphan_pts_master (the master of an orphan pty sent to the client) is not supported yet by tscriu restore" });
  t.like(refused("DUMP", { images_dir_fd: -1, pid: w.pid }), { success: false, cr_errmsg: "neither images_dir_fd nor images_dir was given" });
  // false asks for nothing: passes
  const gone = refused("DUMP", { images_dir: `fd:${dir}`, pid: 0x3ffffff, tcp_established: false });
  t.like(gone, { success: false, type: "DUMP", cr_errno: 3 });
  t.regex(String(gone["cr_errmsg"]), /no such process/);
  t.regex(await w.check(), /^PASS/, "the task was not touched");
});

test("swrk: NOTIFY sends each action stage to the client (the Node client), and a stage the client fails fails the dump", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const stages: string[] = [];
  const note = (s: string, pid: number | undefined): void => void stages.push(pid === undefined ? s : `${s} ${pid}`);
  // a client that fails pre-dump: nothing is done to the task
  const failing = RpcClient.swrk(CLI);
  await t.throwsAsync(
    failing.dump({ images_dir: dir, pid: w.pid }, (s) => {
      if (s === "pre-dump") throw new Error("no");
    }),
    { message: "DUMP failed: dump: pre-dump of pid " + w.pid + " failed: the RPC client reported the pre-dump notification failed" },
  );
  t.is(await failing.close(), 1);
  t.regex(await w.check(), /^PASS/, "the task was not touched");
  const c = RpcClient.swrk(CLI);
  await c.dump({ images_dir: dir, pid: w.pid, log_file: "dump.log" }, note);
  t.is(await c.close(), 0);
  t.deepEqual(stages, ["pre-dump", "post-dump"]);
  await waitFor(`pid ${w.pid} to be free after the dump`, () => !existsSync(`/proc/${w.pid}`));
  stages.length = 0;
  const r = RpcClient.swrk(CLI);
  const pid = await r.restore({ images_dir: dir, log_file: "restore.log" }, note);
  t.teardown(() => killAndReap(pid));
  t.is(await r.close(), 0);
  t.is(pid, w.pid);
  // as criu: the pid goes with setup-namespaces and post-restore only
  t.deepEqual(stages, ["pre-restore", `setup-namespaces ${pid}`, "post-setup-namespaces", `post-restore ${pid}`, "pre-resume", "post-resume"]);
  t.regex(await w.check(), /^PASS/);
});

test("swrk: CPUINFO_DUMP and CPUINFO_CHECK on one connection (keep_open), WAIT_PID, VERSION from the Node client", async (t) => {
  const dir = tempDir(t);
  const c = RpcClient.swrk(CLI);
  t.like(await c.version(), { major_number: 4, minor_number: 2, name: "tscriu 0.1.0 (criu 4.2 compatible)" });
  t.like(await c.request({ type: "CPUINFO_DUMP", keep_open: true, opts: { images_dir_fd: -1, images_dir: dir } }), { type: "CPUINFO_DUMP", success: true });
  t.true(existsSync(join(dir, "cpuinfo.img")));
  t.like(await c.request({ type: "CPUINFO_CHECK", keep_open: true, opts: { images_dir_fd: -1, images_dir: dir } }), { type: "CPUINFO_CHECK", success: true });
  // the last request without keep_open ends the connection: tscriu swrk exits
  t.like(await c.request({ type: "WAIT_PID", pid: 1 }), { type: "WAIT_PID", success: false, cr_errno: 10 });
  t.is(await c.close(), 1);
  // a request that may not keep the connection says so
  const d = RpcClient.swrk(CLI);
  t.like(await d.request({ type: "CHECK", keep_open: true }), { success: false, cr_errno: 56, cr_errmsg: "keep_open is not allowed with CHECK (as in criu: only VERSION, FEATURE_CHECK, CPUINFO_DUMP/CHECK and the page server keep the connection)" });
  await d.close();
});
