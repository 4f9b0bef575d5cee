// criu's RPC through `tscriu swrk FD`, driven by the Go clients of criu Debian ships (both
// installed by .ci/run; a missing one fails the test): go-criu 5.3 with Go 1.19
// (test/go/gocriu, built here offline against Debian's packaged sources) checks the
// version and features, dumps and restores workloads that pass their own check after the
// restore, and gets each notify stage; runc 1.1 (`runc --criu tscriu checkpoint`) gets past
// its version and feature checks and is refused by name, in the log it names, for what
// tscriu cannot do yet for a container.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { bridge } from "../host-bridge/load.js";
import { CLI } from "./helpers/cli.js";
import { tempDir } from "./helpers/dump.js";
import { gocriu as run, gocriuBuilt } from "./helpers/gocriu.js";
import { buildWorkloads, killAndReap, RUNS_ON, procState, startWorkload, waitFor, WORKLOAD_BIN } from "./helpers/workloads.js";

/** go-criu runs `PATH swrk FD`: the CLI itself (a node shebang, made executable by the build). */
const gocriu = (action: string, ...args: string[]): Record<string, unknown> => run(gocriuBuilt(), CLI, action, ...args);

/** The messages of a tscriu log, without their timestamps. */
function logLines(path: string): string[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => l.replace(/^\(\d+\.\d+\) /, ""));
}

test("go-criu: GetCriuVersion is criu 4.2, IsCriuAtLeast(3.0) as runc asks, FeatureCheck", (t) => {
  // criu 4.2 = 40200: go-criu adds one to the minor number when a gitid comes (a git build)
  t.deepEqual(gocriu("version"), { success: true, version: 40200, at_least_3_0: true });
  // FeatureCheck succeeds; the answer itself read as runc reads it (go-criu 5.3 hands back the request)
  t.deepEqual(gocriu("features"), { success: true, mem_track: true, lazy_pages: true, pidfd_store: true });
});

/** Dumps pid through go-criu, waits for its PID to be free, restores it through go-criu. */
async function dumpRestore(t: ExecutionContext, pid: number, dir: string, ...dumpArgs: string[]): Promise<void> {
  t.deepEqual(gocriu("dump", String(pid), dir, ...dumpArgs), { success: true, notify: ["pre-dump", "post-dump"] });
  t.true(existsSync(join(dir, `core-${pid}.img`)) && existsSync(join(dir, "dump.log")), "images and the log file named by the request");
  await waitFor(`pid ${pid} to be free after the dump`, () => !existsSync(`/proc/${pid}`));
  const r = gocriu("restore", dir);
  if (r["success"] === true) t.teardown(() => killAndReap(pid));
  // go-criu 5.3 passes on the stages it knows (not pre-resume); the pid comes with post-restore
  t.deepEqual(r, { success: true, pid, notify: ["pre-restore", `setup-namespaces ${pid}`, "post-setup-namespaces", `post-restore ${pid}`, "post-resume"] }, readFileSync(join(dir, "restore.log"), "utf8").slice(-2000));
}

test("go-criu dumps and restores a task and a process tree, which pass their own checks", async (t) => {
  const w = await startWorkload(t, "counter");
  await dumpRestore(t, w.pid, tempDir(t));
  t.regex(await w.check(), /^PASS/);
  const tree = await startWorkload(t, "tree");
  t.is(await tree.check(), "PASS tree=5", "before the dump");
  await dumpRestore(t, tree.pid, tempDir(t));
  t.is(await tree.check(), "PASS tree=5", "after the restore");
});

test("go-criu: PreDump, then Dump with ParentImg and TrackMem; the chain restores", async (t) => {
  const w = await startWorkload(t, "counter");
  const work = tempDir(t);
  const [pre, full] = [join(work, "pre"), join(work, "full")];
  mkdirSync(pre);
  mkdirSync(full);
  t.deepEqual(gocriu("pre_dump", String(w.pid), pre), { success: true, notify: ["pre-dump", "post-dump"] });
  t.true(existsSync(join(pre, "pre-dump.log")));
  t.regex(await w.check(), /^PASS/, "running on after the pre-dump");
  await dumpRestore(t, w.pid, full, "parent=../pre");
  t.is(readlinkSync(join(full, "parent")), "../pre", "criu's parent link");
  t.regex(await w.check(), /^PASS/, "restored from the chain");
});

test("go-criu: Dump with LeaveRunning leaves the task running", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  t.deepEqual(gocriu("dump", String(w.pid), dir, "leave_running"), { success: true, notify: ["pre-dump", "post-dump"] });
  t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  t.regex(await w.check(), /^PASS/);
});

test("go-criu: a notify callback that fails ends the dump (go-criu closes the connection) and leaves the task as it was", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  t.deepEqual(gocriu("dump", String(w.pid), dir, "fail=pre-dump"), { success: false, error: "gocriu fails pre-dump on purpose", notify: ["pre-dump"] });
  t.regex(readFileSync(join(dir, "dump.log"), "utf8"), new RegExp(`Error \\(dump\\): dump: pre-dump of pid ${w.pid} failed: the RPC client closed the connection at the pre-dump notification`));
  t.false(existsSync(join(dir, `core-${w.pid}.img`)), "no images");
  t.regex(procState(w.pid) ?? "gone", RUNS_ON, "neither stopped nor traced");
  t.regex(await w.check(), /^PASS/);
});

test("go-criu: options tscriu cannot do yet are refused by name, in the answer and in the request's log", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const refusals = [
    "criu_opts.auto_ext_mnt (external mounts found automatically) is not supported yet by tscriu dump",
    "criu_opts.ext_sharing (external mount sharing) is not supported yet by tscriu dump",
  ];
  // a config_file that does not exist is skipped, as criu skips it
  t.deepEqual(gocriu("refused", String(w.pid), dir, join(dir, "no-such.conf")), { success: false, error: `operation failed (msg:${refusals.join("; ")} err:56)` });
  t.deepEqual(logLines(join(dir, "refused.log")), refusals.map((r) => `Error (rpc): DUMP: ${r}`));
  // one that exists would override the request: tscriu does not read it over the RPC yet
  const conf = join(dir, "runc.conf");
  writeFileSync(conf, "tcp-established\n");
  const withConf = [...refusals, `criu_opts.config_file ${JSON.stringify(conf)} (--config) is not supported yet by tscriu dump over the RPC: the file exists and its options would override the request's`];
  t.deepEqual(gocriu("refused", String(w.pid), dir, conf), { success: false, error: `operation failed (msg:${withConf.join("; ")} err:56)` });
  t.regex(await w.check(), /^PASS/, "the task was not touched");
});

// ---- runc ----

const RUNC = "/usr/sbin/runc";

interface Container {
  id: string;
  bundle: string;
  /** runc's --root: its state, private to the test */
  state: string;
  /** the container's init, as the host sees it */
  pid: number;
  /** runc with this container's --root, synchronously: status, stdout, stderr */
  runc(...args: string[]): { status: number | null; stdout: string; stderr: string };
  /** SIGUSR1 to the counter workload inside; its self-check's line */
  check(): Promise<string>;
}

/**
 * A runc container running test/workloads' static counter: a bundle whose rootfs holds
 * only the program and its state directory, `runc spec` with a plain (no terminal)
 * process and a writable root. `runc run -d` is started through the bridge's
 * spawnDetached, so the container's init ends up under the bridge's reaper (which reaps it
 * and kills it if this process dies); `runc delete -f` at teardown.
 */
async function startContainer(t: ExecutionContext): Promise<Container> {
  if (!existsSync(RUNC)) throw new Error(`Debian's runc is needed at ${RUNC} (apt-get install runc)`);
  buildWorkloads();
  const bundle = tempDir(t, "tscriu-runc-");
  const rootfs = join(bundle, "rootfs");
  const stateDir = join(rootfs, "state");
  mkdirSync(stateDir, { recursive: true });
  copyFileSync(join(WORKLOAD_BIN, "static/counter"), join(rootfs, "counter"));
  const state = join(bundle, "runc-state");
  const id = `tscriu-go-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const runc = (...args: string[]): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(RUNC, ["--root", state, ...args], { cwd: bundle, encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"] });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const spec = runc("spec");
  if (spec.status !== 0) throw new Error(`runc spec failed: ${spec.stderr}`);
  const config = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8")) as { process: { terminal: boolean; args: string[] }; root: { readonly: boolean } };
  config.process.terminal = false;
  config.process.args = ["/counter", "/state"];
  config.root.readonly = false;
  writeFileSync(join(bundle, "config.json"), JSON.stringify(config, null, 1));
  const out = join(bundle, "run.out");
  t.teardown(() => {
    runc("delete", "-f", id);
  });
  bridge().spawnDetached([RUNC, "--root", state, "run", "-d", "--bundle", bundle, id], { stdout: out, cwd: bundle, killWithParent: true });
  await waitFor(`the container ${id} to print its ready line (${out})`, () => existsSync(out) && /^ready 1 /m.test(readFileSync(out, "utf8")), 30_000);
  const st = JSON.parse(runc("state", id).stdout) as { status: string; pid: number };
  t.is(st.status, "running");
  const results = (): string[] => (existsSync(join(stateDir, "result")) ? readFileSync(join(stateDir, "result"), "utf8").split("\n").filter((l) => l !== "") : []);
  return {
    id,
    bundle,
    state,
    pid: st.pid,
    runc,
    async check() {
      const before = results().length;
      process.kill(st.pid, "SIGUSR1");
      const lines = await waitFor(`the container's counter (pid ${st.pid}) to answer its self-check`, () => (results().length > before ? results() : undefined));
      return lines[before] ?? "";
    },
  };
}

// runc 1.1 asks VERSION (through go-criu's GetCriuVersion, criu 3.0 at least), then sends
// DUMP with what a container needs; criu 4.2 would go on, tscriu refuses by name what it
// cannot do yet. runc shows no cr_errmsg, only the errno and the log file's path: the
// refusals are in that file. Past them the dump itself would stop at the container's
// namespaces (pid, mount, net...: a later issue).
test("runc checkpoint: past the version check (criu 4.2), DUMP refused by name in the log runc names; the container runs on", async (t) => {
  const c = await startContainer(t);
  t.regex(await c.check(), /^PASS/, "the container's workload, before");
  const img = join(c.bundle, "img");
  const work = join(c.bundle, "work");
  const r = c.runc("--debug", "--criu", CLI, "checkpoint", "--image-path", img, "--work-path", work, c.id);
  t.is(r.status, 1, r.stderr);
  t.true(r.stderr.includes(`msg="Using CRIU 40200 at: ${CLI}"`), "runc read criu 4.2 from VERSION");
  t.true(r.stderr.includes(`msg="Using CRIU in DUMP mode"`), "and sent DUMP");
  t.true(r.stderr.includes(`msg="criu failed: type DUMP errno 56\\nlog file: ${join(work, "dump.log")}"`), r.stderr.slice(-1000));
  t.deepEqual(logLines(join(work, "dump.log")), [
    "Error (rpc): DUMP: criu_opts.root (--root) is not an option of dump (criu takes it with restore)",
    "Error (rpc): DUMP: criu_opts.ext_mnt (--ext-mount-map) is not supported yet by tscriu dump",
    "Error (rpc): DUMP: criu_opts.empty_ns (--empty-ns) is not supported yet by tscriu dump",
    "Error (rpc): DUMP: criu_opts.orphan_pts_master (the master of an orphan pty sent to the client) is not supported yet by tscriu dump",
  ]);
  t.like(JSON.parse(c.runc("state", c.id).stdout) as unknown, { status: "running" }, "runc's destroy after a failed checkpoint finds it still running");
  t.regex(await c.check(), /^PASS/, "the container's workload, untouched");

  // --pre-dump: FEATURE_CHECK first (mem_track, answered true), then PRE_DUMP, refused the same way
  const preWork = join(c.bundle, "pre-work");
  const p = c.runc("--debug", "--criu", CLI, "checkpoint", "--pre-dump", "--image-path", join(c.bundle, "pre"), "--work-path", preWork, c.id);
  t.is(p.status, 1, p.stderr);
  // Go's protobuf text format may put two spaces where one is (on purpose, so that nobody parses it)
  t.regex(p.stderr, /msg="Feature check says: type:FEATURE_CHECK\s+success:true\s+features:\{mem_track:true\s+lazy_pages:false\s+pidfd_store:false\}"/, p.stderr.slice(-2000));
  t.true(p.stderr.includes(`msg="criu failed: type PRE_DUMP errno 56\\nlog file: ${join(preWork, "dump.log")}"`), p.stderr.slice(-1000));
  t.deepEqual(logLines(join(preWork, "dump.log")), [
    "Error (rpc): PRE_DUMP: criu_opts.root (--root) is not an option of pre-dump (criu takes it with restore)",
    "Error (rpc): PRE_DUMP: criu_opts.manage_cgroups (--manage-cgroups (soft)) is not an option of pre-dump",
    "Error (rpc): PRE_DUMP: criu_opts.empty_ns (--empty-ns) is not an option of pre-dump (criu takes it with dump, restore)",
    "Error (rpc): PRE_DUMP: criu_opts.freeze_cgroup (--freeze-cgroup) is not an option of pre-dump (criu takes it with dump)",
    "Error (rpc): PRE_DUMP: criu_opts.orphan_pts_master (the master of an orphan pty sent to the client) is not an option of pre-dump",
  ]);
  t.regex(await c.check(), /^PASS/, "the container's workload, untouched by the pre-dump");
});
