// Unix sockets connected to sockets outside the dumped tree (fds/unix-external.ts): the
// unixext workload's server (not dumped) stands for syslog's /dev/log (a named datagram
// socket) and for a stream service; its clients are dumped. --ext-unix-sk at dump and at
// restore connects a datagram socket to its named peer again; --external unix[INO] dumps
// any such socket, which the restore takes from --inherit-fd; without them the dump and
// the restore refuse, naming the options. criu 4.1.1 restores tscriu's images of it and
// the other way round.
import { closeSync, readFileSync, readlinkSync, existsSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { AF_UNIX, SOCK } from "../host-bridge/constants.js";
import { bridge } from "../host-bridge/load.js";
import { readImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { parseExternalUnix } from "../orchestrator/fds/unix-external.js";
import { restore } from "../orchestrator/restore/restore.js";
import { CLI } from "./helpers/cli.js";
import { criuDumps, criuLogTail, criuVersion, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { pycriu, pycriuInstalled } from "./helpers/pycriu.js";
import { digest, dumpGone, restoreTask, status } from "./helpers/restore.js";
import { procState, RUNS_ON, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";
import { spawnSync } from "node:child_process";

/** The server outside the tree, in a directory of its own. */
async function server(t: ExecutionContext, opts: { static?: boolean } = {}): Promise<string> {
  const dir = tempDir(t, "tscriu-unixext-srv-");
  await startWorkload(t, "unixext", ["server", dir], opts);
  return dir;
}

/** The datagrams the server received, one line each. */
const got = (dir: string): string[] => (existsSync(join(dir, "got")) ? readFileSync(join(dir, "got"), "utf8").split("\n").filter(Boolean) : []);

/** The client's check passes and its datagram reached the server. */
async function sendsToServer(t: ExecutionContext, w: Pick<Workload, "pid" | "check">, srv: string, what: string): Promise<void> {
  const before = got(srv).length;
  t.is(await w.check(), "PASS dgram", what);
  const lines = await waitFor(`the server to get the datagram (${what})`, () => (got(srv).length > before ? got(srv) : undefined));
  t.regex(lines[before]!, new RegExp(`^check ${w.pid} \\d+$`), what);
}

const sockIno = (pid: number, fd: number): number => Number(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1]);

test.serial("--ext-unix-sk: a datagram socket connected to a named socket outside (as /dev/log) is dumped with criu's stand-in for its peer and connected to it again; without the option dump and restore refuse by name", async (t) => {
  const srv = await server(t);
  const w = await startWorkload(t, "unixext", ["dgram", srv]);
  await sendsToServer(t, w, srv, "before the dump");
  const ino = sockIno(w.pid, 10);

  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(tempDir(t), "img") }));
  t.like(err, { step: "files", pid: w.pid });
  t.regex(err?.message ?? "", new RegExp(`unsupported fd 10: unix datagram socket ${ino} is connected to socket \\d+ outside the dumped tree; --ext-unix-sk allows`));
  t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  t.is(status(w.pid).get("TracerPid"), "0", "not traced");
  await sendsToServer(t, w, srv, "after the refused dump");

  const dir = await dumpGone(t, w, { externalUnix: parseExternalUnix("") });
  const usk = (await readImage(join(dir, "files.img"))).entries.filter((f) => f["type"] === "UNIXSK").map((f) => f["usk"] as Record<string, unknown>);
  const mine = usk.find((u) => u["ino"] === ino)!;
  const standIn = usk.find((u) => u["ino"] === mine["peer"])!;
  t.like(standIn, { type: SOCK.DGRAM, state: 10, uflags: 1, peer: 0, flags: 0 });
  t.is(Buffer.from(standIn["name"] as Uint8Array).toString(), `${join(srv, "log.sock")}\0`, "as bound, with its NUL");
  t.true(usk.indexOf(standIn) < usk.indexOf(mine), "criu's order: the stand-in first");

  const before = digest(dir);
  const refused = await t.throwsAsync(restore({ imagesDir: dir }));
  t.like(refused, { step: "plan" });
  t.regex(refused?.message ?? "", new RegExp(`fd 10: unix socket ${ino} is connected to socket \\d+ outside the dumped tree \\(${join(srv, "log.sock")}\\): --ext-unix-sk connects it again \\(or --inherit-fd fd\\[N\\]:socket:\\[${ino}\\] gives it\\)`));
  t.deepEqual(digest(dir), before);
  t.false(existsSync(`/proc/${w.pid}`));

  await restoreTask(t, dir, { extUnixSk: true });
  await sendsToServer(t, w, srv, "after the restore");
});

test.serial("--ext-unix-sk with dump -R: the task runs on connected as it was; the CLI's -x and --ext-unix-sk", async (t) => {
  const srv = await server(t);
  const w = await startWorkload(t, "unixext", ["dgram", srv]);
  const dir = join(tempDir(t), "img");
  const r = spawnSync(process.execPath, [CLI, "dump", "-t", String(w.pid), "-D", dir, "-R", "-x"], { encoding: "utf8" });
  t.is(r.status, 0, r.stderr);
  t.is(status(w.pid).get("TracerPid"), "0");
  await sendsToServer(t, w, srv, "after dump -R");
  const refused = spawnSync(process.execPath, [CLI, "dump", "-t", String(w.pid), "-D", join(tempDir(t), "img"), "--external", "mnt[/x]:y"], { encoding: "utf8" });
  t.is(refused.status, 1);
  t.regex(refused.stderr, /--external mnt\[\/x\]:y: tscriu takes only unix\[INODE\] \(a unix socket whose peer is outside the tree\); mnt resources are not supported yet/);
  const bad = spawnSync(process.execPath, [CLI, "dump", "-t", String(w.pid), "-D", join(tempDir(t), "img"), "--ext-unix-sk=12,x"], { encoding: "utf8" });
  t.is(bad.status, 1);
  t.regex(bad.stderr, /--ext-unix-sk: "x" is not a socket inode/);
  await sendsToServer(t, w, srv, "after the refusals");
});

test.serial("--external unix[INO]: a stream connection to a service outside is dumped, --ext-unix-sk alone refuses it; the restore takes it from --inherit-fd and refuses without", async (t) => {
  const srv = await server(t);
  const w = await startWorkload(t, "unixext", ["stream", srv]);
  t.is(await w.check(), "PASS stream");
  const ino = sockIno(w.pid, 11);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(tempDir(t), "img"), externalUnix: parseExternalUnix("") }));
  t.regex(err?.message ?? "", new RegExp(`unsupported fd 11: unix stream socket ${ino} is connected to socket \\d+ outside the dumped tree: half of a stream connection cannot be dumped with --ext-unix-sk \\(criu's rule\\); --external unix\\[${ino}\\] dumps it`));
  t.is(await w.check(), "PASS stream", "untouched by the refused dump");

  const dir = await dumpGone(t, w, { externalUnix: parseExternalUnix(undefined, [`unix[${ino}]`]) });
  const refused = await t.throwsAsync(restore({ imagesDir: dir, extUnixSk: true }));
  t.regex(refused?.message ?? "", new RegExp(`fd 11: unix socket ${ino} is connected to socket \\d+ outside the dumped tree \\(${join(srv, "echo.sock")}\\): a stream connection is restored only from --inherit-fd fd\\[N\\]:socket:\\[${ino}\\]`));

  // a new connection to the service, made here, stands in for the one dumped
  const b = bridge();
  const fd = b.socket(AF_UNIX, SOCK.STREAM);
  t.teardown(() => closeSync(fd));
  b.unixConnect(fd, Buffer.from(`${join(srv, "echo.sock")}\0`), null);
  await restoreTask(t, dir, { inheritFds: [`fd[${fd}]:socket:[${ino}]`] });
  t.is(await w.check(), "PASS stream");
});

test.serial("criu restores tscriu's --ext-unix-sk images, and tscriu criu's", async (t) => {
  if (!haveRoot(t)) return;
  const srv = await server(t, { static: true });
  {
    const w = await startWorkload(t, "unixext", ["dgram", srv], { static: true });
    const dir = await dumpGone(t, w, { externalUnix: parseExternalUnix("") });
    await restoredByCriu(t, w.pid, dir, 20_000, "--ext-unix-sk");
    await sendsToServer(t, w, srv, `restored by criu ${criuVersion()}`);
  }
  {
    const c = await criuDumps(t, "unixext", ["dgram", srv], "--ext-unix-sk");
    t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
    await restoreTask(t, c.images, { extUnixSk: true });
    await sendsToServer(t, c, srv, `dumped by criu ${criuVersion()}`);
  }
});

test.serial("RPC (pycriu): DUMP with unix_sk_ino or ext_unix_sk, RESTORE with ext_unix_sk; RESTORE without it is refused", async (t) => {
  pycriuInstalled(t);
  const srv = await server(t);
  const w = await startWorkload(t, "unixext", ["dgram", srv]);
  const swrk = `swrk:${CLI}`;
  for (const opts of [{ unix_sk_ino: [{ inode: sockIno(w.pid, 10) }] }, { ext_unix_sk: true }]) {
    const dir = tempDir(t);
    const what = JSON.stringify(opts);
    t.like(pycriu(swrk, ["req", "DUMP", JSON.stringify({ images_dir: `fd:${dir}`, pid: w.pid, log_file: "dump.log", ...opts })]), { success: true }, what);
    await waitFor(`pid ${w.pid} to be gone after the dump`, () => !existsSync(`/proc/${w.pid}`));
    const refused = pycriu(swrk, ["req", "RESTORE", JSON.stringify({ images_dir: `fd:${dir}`, log_file: "restore.log" })]);
    t.like(refused, { success: false }, what);
    t.regex(String(refused["cr_errmsg"]), /--ext-unix-sk connects it again/, what);
    t.like(pycriu(swrk, ["req", "RESTORE", JSON.stringify({ images_dir: `fd:${dir}`, log_file: "restore.log", ext_unix_sk: true })]), { success: true }, what);
    await sendsToServer(t, w, srv, `restored over the RPC after ${what}`);
  }
});
