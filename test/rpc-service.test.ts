// `tscriu service`: criu's RPC on a unix socket, a worker process per connection. Debian's
// pycriu dumps and restores through it; the socket is 0600 and each client is judged by
// SO_PEERCRED (a non-root one refused, root clients served meanwhile); bad input on a
// connection is answered with an error and the service goes on serving the others.
import { spawn } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { bridge } from "../host-bridge/load.js";
import { decodeMessage, encodeMessage } from "../images/message.js";
import { criu_req, criu_resp } from "../images/schema/rpc.js";
import { CLI, tscriu } from "./helpers/cli.js";
import { tempDir } from "./helpers/dump.js";
import { pycriu, pycriuInstalled } from "./helpers/pycriu.js";
import { killAndReap, procState, startWorkload, waitFor } from "./helpers/workloads.js";

interface Service {
  dir: string;
  sock: string;
  pid: number;
}

/** Starts `tscriu service -d` and waits for the \0 on its status fd; stopped at teardown. */
async function startService(t: ExecutionContext, extra: string[] = [], inDir?: string, env: NodeJS.ProcessEnv = process.env, nice = 0): Promise<Service> {
  const dir = inDir ?? tempDir(t, "tscriu-svc-");
  chmodSync(dir, 0o755);
  const sock = join(dir, "criu.sock");
  const pidfile = join(dir, "service.pid");
  const argv = [process.execPath, CLI, "service", "-d", "--address", sock, "--status-fd", "3", "--pidfile", pidfile, ...extra];
  const [cmd, ...args] = nice ? ["nice", "-n", String(nice), ...argv] : argv;
  const child = spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe", "pipe"], env });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  const ready = await new Promise<Buffer>((resolve, reject) => {
    let got = Buffer.alloc(0);
    child.stdio[3]!.on("data", (b: Buffer) => (got = Buffer.concat([got, b])));
    child.stdio[3]!.on("end", () => resolve(got));
    child.stdio[3]!.on("error", reject);
  });
  t.deepEqual([...ready], [0], `the status fd gets one \\0 once the service is ready (${stderr})`);
  const pid = Number(readFileSync(pidfile, "utf8"));
  t.teardown(async () => {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // stopped by the test
    }
    await waitFor(`service ${pid} to end`, () => (procState(pid) ?? "Z") === "Z");
  });
  return { dir, sock, pid };
}

/** One raw packet to the service, its answer decoded (a client that speaks bytes, not pycriu). */
function rawRequest(sock: string, packet: Uint8Array, sndbuf?: number): Record<string, unknown> {
  const b = bridge();
  const fd = b.socket(1, 5);
  try {
    b.unixConnect(fd, Buffer.from(`${sock}\0`));
    if (sndbuf !== undefined) {
      const v = Buffer.alloc(4);
      v.writeInt32LE(sndbuf);
      b.setsockopt(fd, 1, 32 /* SO_SNDBUFFORCE */, v);
    }
    b.seqpacketSend(fd, packet);
    const answer = b.seqpacketRecv(fd, 1 << 20, 60_000);
    if (answer === null) throw new Error("the service closed the connection without an answer");
    return decodeMessage(criu_resp, answer);
  } finally {
    b.close(fd);
  }
}

const version = (sock: string): unknown => pycriu(`sk:${sock}`, ["version"])["success"];

test("service -d --address --status-fd --pidfile: pycriu dumps and restores through the socket", async (t) => {
  pycriuInstalled(t);
  const s = await startService(t);
  t.is(statSync(s.sock).mode & 0o777, 0o600, "the socket is 0600");
  t.is(procState(s.pid) !== undefined, true, "the daemon runs");
  t.deepEqual(pycriu(`sk:${s.sock}`, ["version"]), { success: true, major: 4, minor: 2, name: "tscriu 0.1.0 (criu 4.2 compatible)" });
  t.deepEqual(pycriu(`sk:${s.sock}`, ["check"]), { success: true });
  const w = await startWorkload(t, "counter");
  const images = tempDir(t);
  t.deepEqual(pycriu(`sk:${s.sock}`, ["dump", String(w.pid), images]), { success: true, restored: false });
  await waitFor(`pid ${w.pid} to be free after the dump`, () => !existsSync(`/proc/${w.pid}`));
  const r = pycriu(`sk:${s.sock}`, ["restore", images]);
  if (r["success"] === true) t.teardown(() => killAndReap(w.pid));
  t.deepEqual(r, { success: true, pid: w.pid });
  t.regex(await w.check(), /^PASS/);
  // rst_sibling would make the task a child of the service's worker, not the client's
  t.like(pycriu(`sk:${s.sock}`, ["req", "RESTORE", JSON.stringify({ images_dir: `fd:${images}`, rst_sibling: true })]), {
    success: false,
    cr_errmsg: "criu_opts.rst_sibling is not allowed in a standalone service (swrk only, as in criu)",
  });
});

test("service --address refuses a path that is not an old socket, and replaces an old one", async (t) => {
  const dir = tempDir(t, "tscriu-svc-");
  const file = join(dir, "precious");
  writeFileSync(file, "keep me\n");
  const r = tscriu(["service", "--address", file]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`cannot listen on ${file}: ${file} exists and is not a socket; tscriu replaces only an old service socket`));
  t.is(readFileSync(file, "utf8"), "keep me\n");
  const s = await startService(t);
  process.kill(s.pid, "SIGTERM");
  await waitFor(`service ${s.pid} to end`, () => (procState(s.pid) ?? "Z") === "Z");
  t.true(statSync(s.sock).isSocket(), "the old socket stays");
  const again = await startService(t, [], s.dir);
  t.is(version(again.sock), true, "a new service replaces the old socket");
});

test("swrk and service log to -o in -W at -v", async (t) => {
  pycriuInstalled(t);
  const work = tempDir(t);
  chmodSync(work, 0o755);
  const wrapper = join(work, "tscriu-v4");
  writeFileSync(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@" -v4 -o swrk.log -W "${work}"\n`, { mode: 0o755 });
  t.is(pycriu(`swrk:${wrapper}`, ["version"])["success"], true);
  t.regex(readFileSync(join(work, "swrk.log"), "utf8"), /^\(\d+\.\d+\) \(rpc\): VERSION from pid \d+ \(uid 0\)$/m);
  const s = await startService(t, ["-v4", "-o", "service.log", "-W", work]);
  t.is(version(s.sock), true);
  const log = readFileSync(join(work, "service.log"), "utf8");
  t.regex(log, /\(service\): The service socket is bound to /);
  t.regex(log, /\(rpc\): VERSION from pid \d+ \(uid 0\)/);
});

test("a non-root client is refused while root clients keep being served", async (t) => {
  pycriuInstalled(t);
  const s = await startService(t);
  const nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"];
  // The socket is 0600: another user cannot even connect.
  t.deepEqual(pycriu(`sk:${s.sock}`, ["version"], nobody), { success: false, error: "VERSION failed with internal error: [Errno 13] Permission denied" });
  // An administrator who opens the socket up still has the service judge each client.
  chmodSync(s.sock, 0o666);
  const held = bridge().socket(1, 5);
  t.teardown(() => bridge().close(held));
  bridge().unixConnect(held, Buffer.from(`${s.sock}\0`)); // a root client that stays connected, silent
  t.like(pycriu(`sk:${s.sock}`, ["req", "VERSION"], nobody), { success: false, cr_errno: 1 });
  t.regex(String(pycriu(`sk:${s.sock}`, ["req", "VERSION"], nobody)["cr_errmsg"]), /^the service serves root; uid 65534 \(pid \d+\) is not root and has not CAP_CHECKPOINT_RESTORE$/);
  t.is(version(s.sock), true, "root is served meanwhile");
  // With CAP_CHECKPOINT_RESTORE (criu's --unprivileged): served, but only for what it may ptrace itself.
  const capped = [...nobody, "--inh-caps", "+checkpoint_restore", "--ambient-caps", "+checkpoint_restore"];
  t.is(pycriu(`sk:${s.sock}`, ["req", "VERSION"], capped)["success"], true);
  const w = await startWorkload(t, "counter");
  const images = tempDir(t);
  chmodSync(images, 0o777);
  const refused = pycriu(`sk:${s.sock}`, ["req", "DUMP", JSON.stringify({ images_dir: `fd:${images}`, pid: w.pid })], capped);
  t.like(refused, { success: false, cr_errno: 13 });
  t.regex(String(refused["cr_errmsg"]), new RegExp(`^uid 65534 \\(pid \\d+\\) may not ptrace pid ${w.pid} \\(opening its /proc/${w.pid}/mem as the client: errno 13\\)$`));
  // images_dir (a path) is newer than Debian's pycriu: the request goes as bytes
  const byPath = Buffer.from(encodeMessage(criu_req, { type: "DUMP", opts: { images_dir_fd: -1, images_dir: images, pid: w.pid } })).toString("hex");
  t.regex(String(pycriu(`sk:${s.sock}`, ["raw", byPath], capped)["cr_errmsg"]), /give the images directory as images_dir_fd/);
  t.regex(String(pycriu(`sk:${s.sock}`, ["req", "RESTORE", JSON.stringify({ images_dir: `fd:${images}` })], capped)["cr_errmsg"]), /^the service restores only for root/);
  t.regex(await w.check(), /^PASS/, "the task was not touched");
  t.is(version(s.sock), true, "root is still served");
});

test("bad input: a truncated message, an unknown type, a huge field, no images_dir_fd: an error each, the service serves on", async (t) => {
  pycriuInstalled(t);
  const s = await startService(t);
  const dump = encodeMessage(criu_req, { type: "DUMP", opts: { images_dir_fd: -1, images_dir: "/tmp/x", pid: 1234 } });
  const truncated = rawRequest(s.sock, dump.subarray(0, dump.length - 3));
  t.like(truncated, { type: "EMPTY", success: false, cr_errno: 56 });
  t.regex(String(truncated["cr_errmsg"]), /^a request of \d+ bytes that is not a criu_req: /);
  t.like(rawRequest(s.sock, Uint8Array.from([0x08, 99])), { type: "EMPTY", success: false, cr_errmsg: "unknown request type 99" });
  // a length that claims 2 GiB inside a small packet, then a packet bigger than tscriu reads
  const claim = rawRequest(s.sock, Uint8Array.from([0x08, 0x01, 0x12, 0x80, 0x80, 0x80, 0x80, 0x08]));
  t.like(claim, { type: "EMPTY", success: false });
  t.regex(String(claim["cr_errmsg"]), /not a criu_req/);
  const huge = encodeMessage(criu_req, { type: "DUMP", opts: { images_dir_fd: -1, images_dir: "x".repeat(3 << 20) } });
  t.like(rawRequest(s.sock, huge, 8 << 20), { type: "EMPTY", success: false, cr_errmsg: `a request of ${huge.length} bytes, more than the 1048576 tscriu reads` });
  // criu_req{type: DUMP, opts{pid: 5}}: images_dir_fd is a required field of criu_opts
  const noFd = rawRequest(s.sock, Uint8Array.from([0x08, 0x01, 0x12, 0x02, 0x10, 0x05]));
  t.like(noFd, { type: "EMPTY", success: false });
  t.regex(String(noFd["cr_errmsg"]), /images_dir_fd \(1\) is missing/);
  t.like(rawRequest(s.sock, Uint8Array.from([0x08, 0x06])), { success: false, cr_errmsg: "a NOTIFY request outside a notification (a client answers NOTIFY only when tscriu sends one)" });
  t.is(version(s.sock), true, "the service serves on");
});

/** The nice value of each thread of `pid` (/proc/PID/task/TID/stat, field 19). */
function nices(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "latin1");
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
    });
  } catch {
    return []; // gone
  }
}

function childrenOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => readFileSync(`/proc/${pid}/task/${tid}/children`, "latin1").split(" ").filter((p) => p !== "").map(Number));
}

test("the spare worker waits at the lowest priority; the worker that takes a client serves it at the service's own, every thread", async (t) => {
  // a service started niced (nice -n 5) runs its workers at nice 5, not 0
  const s = await startService(t, [], undefined, process.env, 5);
  t.is(nices(s.pid)[0], 5);
  // (the service sets it right after the spare's exec)
  const spare = await waitFor("the spare worker at nice 19", () => childrenOf(s.pid).find((p) => nices(p)[0] === 19));
  const b = bridge();
  const fd = b.socket(1, 5);
  try {
    b.unixConnect(fd, Buffer.from(`${s.sock}\0`));
    // keep_open: the worker serves this client until it closes the connection (after a
    // request without it the worker ends at once, and may be gone before the look below)
    b.seqpacketSend(fd, encodeMessage(criu_req, { type: "VERSION", keep_open: true }));
    const answer = b.seqpacketRecv(fd, 1 << 20, 60_000);
    t.like(answer && decodeMessage(criu_resp, answer), { success: true });
    t.true(existsSync(`/proc/${spare}`));
    t.deepEqual(
      nices(spare).filter((n) => n !== 5),
      [],
      "every thread of the worker serving a client is back at the service's nice 5",
    );
    await waitFor("the next spare, started at once, at nice 19", () => childrenOf(s.pid).find((p) => p !== spare && nices(p)[0] === 19));
  } finally {
    b.close(fd);
  }
});

// serial: it must catch the spare's warm-up (under a second), which a test beside it
// blocking this process's event loop (pycriu through spawnSync) would hide
test.serial("a service stopped while its spare warms up: the spare ends its step and removes what it made (its task, its images), then the service ends", async (t) => {
  const tmp = tempDir(t, "tscriu-svc-tmp-");
  const log = join(tempDir(t), "service.log");
  const s = await startService(t, ["-v4", "-o", log], undefined, { ...process.env, TMPDIR: tmp });
  // its warm-up makes its images under TMPDIR
  const spare = await waitFor("the spare's warm-up", () => readdirSync(tmp).some((f) => f.startsWith("tscriu-warmup-")) && childrenOf(s.pid)[0]);
  process.kill(s.pid, "SIGTERM");
  await waitFor(`service ${s.pid} to end`, () => (procState(s.pid) ?? "Z") === "Z");
  t.deepEqual(readdirSync(tmp), [], "the warm-up's images are removed");
  t.regex(readFileSync(log, "utf8"), new RegExp(`worker ${spare} exited with 0$`, "m"), "the spare ended by itself, not killed");
});

test.serial("a service killed (SIGKILL) takes its spare with it: the spare ends as a stop would end it, nothing left in TMPDIR", async (t) => {
  const tmp = tempDir(t, "tscriu-svc-tmp-");
  const s = await startService(t, [], undefined, { ...process.env, TMPDIR: tmp });
  const spare = await waitFor("the spare", () => childrenOf(s.pid)[0]);
  process.kill(s.pid, "SIGKILL");
  await waitFor(`spare ${spare} to end with its service`, () => (procState(spare) ?? "Z") === "Z");
  // the spare, if it was warming up, removed its images before it ended
  t.deepEqual(readdirSync(tmp), []);
});

/** Lines of a service's log that match `re`, their first group each. */
function logged(log: string, re: RegExp): string[] {
  return [...readFileSync(log, "utf8").matchAll(new RegExp(re.source, "gm"))].map((m) => m[1]!);
}

test("--spare-workers 2: a client's second request right after its first meets a second spare, ready and warmed up", async (t) => {
  const log = join(tempDir(t), "service.log");
  const s = await startService(t, ["-v4", "-o", log, "--spare-workers", "2"]);
  // (each warms up at nice 19, one after the other: slow on a busy machine)
  const ready = await waitFor(
    "two spares ready",
    () => {
      const r = logged(log, /spare (\d+) is ready$/);
      return r.length === 2 && r;
    },
    90_000,
  );
  const packet = encodeMessage(criu_req, { type: "VERSION" });
  t.like(rawRequest(s.sock, packet), { success: true });
  t.like(rawRequest(s.sock, packet), { success: true });
  const took = await waitFor("both workers to say so", () => {
    const w = logged(log, /worker (\d+) took a connection$/);
    return w.length === 2 && w;
  });
  t.deepEqual([...took].sort(), [...ready].sort(), "each request taken by a spare that was ready");
  t.deepEqual(logged(log, /spare (\d+) ends its warm-up/), [], "no spare was hurried");
  t.true(logged(log, /warm-up: (\d+) rounds/).filter((n) => n === "6").length >= 2, "both spares warmed up all their rounds");
  // the third spare starts once a spare has taken its client
  await waitFor("a third spare ready", () => logged(log, /spare (\d+) is ready$/).length === 3, 90_000);
});

// serial: as the test above, it must come while the spare warms up
test.serial("--spare-workers 1: a client that comes while the only spare warms up hurries it: it ends its warm-up and answers", async (t) => {
  const log = join(tempDir(t), "service.log");
  const s = await startService(t, ["-v4", "-o", log, "--spare-workers", "1"]);
  t.like(rawRequest(s.sock, encodeMessage(criu_req, { type: "VERSION" })), { success: true });
  const [hurried] = logged(log, /spare (\d+) ends its warm-up/);
  t.truthy(hurried, `the spare was hurried: ${readFileSync(log, "utf8")}`);
  // (the service logs it when the worker says so on its pipe: maybe after the client has its answer)
  const took = await waitFor("the worker to say it took the connection", () => {
    const w = logged(log, /worker (\d+) took a connection$/);
    return w.length > 0 && w;
  });
  t.deepEqual(took, [hurried]);
  t.true(logged(log, /warm-up: (\d+) rounds/).every((n) => Number(n) < 6), "its warm-up was cut short");
});

test("--spare-workers out of 1-4 is refused by name, no socket made", (t) => {
  const dir = tempDir(t);
  for (const [n, re] of [
    ["0", /--spare-workers 0: a number of workers from 1 to 4/],
    ["5", /--spare-workers 5: a number of workers from 1 to 4/],
    ["1.5", /--spare-workers takes a number, not "1\.5"/],
  ] as const) {
    const r = tscriu(["service", "--address", join(dir, "s.sock"), "--spare-workers", n]);
    t.is(r.code, 1, n);
    t.regex(r.stderr, re, n);
    t.false(existsSync(join(dir, "s.sock")), `${n}: no socket`);
  }
});
