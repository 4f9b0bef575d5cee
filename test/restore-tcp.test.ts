// Established TCP connections (issue 9): dump --tcp-established puts each connection in
// repair mode behind the nftables network lock and writes tcp-stream-<inode>.img; restore
// --tcp-established brings it back with its sequence numbers, queues, options and window,
// then removes the lock. Checked with both ends in the task (data unread each way), and
// with a client outside the tree (tscriu's own socket) that keeps its connection: what it
// sent while the task was gone is answered after the restore, with no reset and no EOF.
// A failed dump leaves the connections working and the lock removed; -R too. Without a
// lock that works here, the dump is refused; --tcp-close (connections restored closed:
// EOF, POLLHUP, EPIPE, as criu leaves them); hostile tcp-stream images.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { bridge } from "../host-bridge/load.js";
import { AF_INET, SOL_SOCKET, SO } from "../host-bridge/constants.js";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { NetworkLock } from "../orchestrator/net/lock.js";
import { tempDir } from "./helpers/dump.js";
import { capturedLog } from "./helpers/log.js";
import { dropLockAtTeardown, dropSegments, lockTable, locksOf, tables } from "./helpers/nft.js";
import { dumpGone, restoreTask, status } from "./helpers/restore.js";
import { procState, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

type E = Record<string, unknown>;

async function entries(dir: string, file: string): Promise<E[]> {
  return (await readImage(join(dir, file))).entries;
}

/** A client outside the tree: what it has received, and whether it saw the connection end. */
interface Client {
  s: Socket;
  got: () => string;
  ended: () => string | undefined;
}

async function client(t: ExecutionContext, port: number): Promise<Client> {
  const s = connect({ port, host: "127.0.0.1" });
  let got = "";
  let ended: string | undefined;
  s.setEncoding("latin1");
  s.on("data", (d: string) => (got += d));
  s.on("error", (e) => (ended = `error ${e.message}`));
  s.on("end", () => (ended ??= "EOF"));
  s.on("close", () => (ended ??= "closed"));
  t.teardown(() => s.destroy());
  await new Promise<void>((resolve, reject) => {
    s.once("connect", resolve);
    s.once("error", reject);
  });
  // What the client sends while the server is gone is retransmitted with a backoff that
  // doubles up to 120 s: after a dump and restore slowed by a busy machine, the next try
  // could come well after the test's wait. TCP_RTO_MAX_MS (Linux 6.15) caps it at 1 s.
  const cap = Buffer.alloc(4);
  cap.writeInt32LE(1000, 0);
  bridge().setsockopt((s as unknown as { _handle: { fd: number } })._handle.fd, IPPROTO_TCP, TCP_RTO_MAX_MS, cap);
  return { s, got: () => got, ended: () => ended };
}

const IPPROTO_TCP = 6;
const TCP_RTO_MAX_MS = 44;

async function ask(c: Client, line: string): Promise<void> {
  const want = c.got() + line.toUpperCase();
  c.s.write(line);
  await waitFor(`the answer to ${JSON.stringify(line)}`, () => c.got() === want || (c.got().length > want.length && `more than asked: ${c.got()}`));
  if (c.got() !== want) throw new Error(`got ${JSON.stringify(c.got())}`);
}

async function echoServer(t: ExecutionContext): Promise<{ w: Workload; c: Client }> {
  const w = await startWorkload(t, "inetsk", ["echo"]);
  const c = await client(t, Number(w.info["p3"]));
  await ask(c, "hello\n");
  return { w, c };
}

/** An ioctl's count (SIOCINQ 0x541b, SIOCOUTQNSD 0x894b) of fd `fd` of `pid`, through a copy of it. */
function queued(pid: number, fd: number, request: number): number {
  const b = bridge();
  const pidfd = b.pidfdOpen(pid);
  try {
    const copy = b.pidfdGetfd(pidfd, fd);
    try {
      return b.ioctlInt(copy, request);
    } finally {
      b.close(copy);
    }
  } finally {
    b.close(pidfd);
  }
}

const LOCK = { tcpEstablished: true, networkLock: "nftables" as const };

test.serial("both ends in the task, data unread each way: dumped with their queues as criu writes them, locked until the restore, read back after it", async (t) => {
  const w = await startWorkload(t, "inetsk", ["established"]);
  const dir = await dumpGone(t, w, LOCK);
  const table = await lockTable(dir);
  t.true(tables().includes(table), "the connections stay locked while the task is gone");
  const streams = readdirSync(dir).filter((f) => f.startsWith("tcp-stream-"));
  t.is(streams.length, 2, "one tcp-stream image per connection end");
  const files = (await entries(dir, "files.img")).filter((f) => f["type"] === "INETSK").map((f) => f["isk"] as E);
  for (const s of streams) {
    const [e, ...rest] = await entries(dir, s);
    t.is(rest.length, 0);
    const isk = files.find((f) => `tcp-stream-${Number(f["ino"]).toString(16)}.img` === s)!;
    t.like(isk, { state: 1, proto: 6 }, "named after the inode of an established connection");
    // The fields criu 4.2 writes for an established loopback connection.
    t.deepEqual(Object.keys(e!).sort(), ["extra", "inq_len", "inq_seq", "max_window", "mss_clamp", "opt_mask", "outq_len", "outq_seq", "rcv_wnd", "rcv_wscale", "rcv_wup", "snd_wl1", "snd_wnd", "snd_wscale", "timestamp", "unsq_len"]);
    t.like(e, { inq_len: 25, outq_len: 0, unsq_len: 0 });
    const listener = files.find((f) => f["state"] === 10)!;
    const isClient = isk["dst_port"] === listener["src_port"];
    t.is(Buffer.from((e!["extra"] as { inq: Uint8Array }).inq).toString(), isClient ? "server to client, unread|" : "client to server, unread|");
    t.is(Number(e!["opt_mask"]) & 7, 7, "timestamps, SACK and window scaling, as loopback connections have them");
    t.true(((Number(e!["inq_seq"]) - Number(e!["snd_wl1"])) | 0) >= 0, "the window was last updated by a segment up to rcv_nxt");
  }
  const inv = (await entries(dir, "inventory.img"))[0]!;
  t.is(inv["network_lock_method"], 1, "criu's number for nftables");
  await restoreTask(t, dir, { tcpEstablished: true });
  t.false(tables().includes(table), "the restore removed the lock");
  t.is(await w.check(), "PASS established", "the unread data reads back, each way, and the connection carries more");
  t.is(await w.check(), "PASS established");
});

test.serial("a dump that kills the server locks its listener for the freeze: unlocked once the tree is gone (a client is then refused, not left waiting), its connections locked until the restore", async (t) => {
  const w = await startWorkload(t, "inetsk", ["established"]);
  const { log: logger, lines } = capturedLog();
  const dir = await dumpGone(t, w, { ...LOCK, log: logger });
  const table = await dropLockAtTeardown(t, dir);
  const files = (await entries(dir, "files.img")).filter((f) => f["type"] === "INETSK").map((f) => f["isk"] as E);
  const port = Number(files.find((f) => f["state"] === 10)!["src_port"]);
  const log = lines.join("");
  t.regex(log, new RegExp(`1 TCP listener locked: 127\\.0\\.0\\.1:${port}`));
  t.regex(log, /1 TCP listener unlocked \(the tree is gone\)/);
  t.true(log.indexOf("TCP listener locked") < log.indexOf("in repair mode"), "locked before the connections are read");
  t.true(tables().includes(table), "the connections stay locked");
  // no listener, and no lock left on its port: refused at once
  const client = connect({ port, host: "127.0.0.1" });
  const code = await new Promise<string>((resolve) => {
    client.once("connect", () => resolve("connected"));
    client.once("error", (e) => resolve((e as NodeJS.ErrnoException).code ?? "error"));
  });
  t.is(code, "ECONNREFUSED");
  await restoreTask(t, dir, { tcpEstablished: true });
  t.is(await w.check(), "PASS established");
});

test.serial("the listeners' lock: a SYN to a locked listener is dropped (its client waits and sends it again), and unlocking the listeners lets it through", async (t) => {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => void server.close());
  const port = (server.address() as { port: number }).port;
  const lock = new NetworkLock("nftables", `test-listen-${process.pid}`);
  t.teardown(() => lock.unlock());
  lock.lockAll([], [{ family: AF_INET, addr: Buffer.from([127, 0, 0, 1]), port }]);
  const client = connect({ port, host: "127.0.0.1" });
  t.teardown(() => client.destroy());
  let outcome = "pending";
  const done = new Promise<void>((resolve) => {
    client.once("connect", () => ((outcome = "connected"), resolve()));
    client.once("error", (e) => ((outcome = (e as NodeJS.ErrnoException).code ?? "error"), resolve()));
  });
  await new Promise((r) => setTimeout(r, 500));
  t.is(outcome, "pending", "its SYN dropped");
  lock.unlockListeners();
  await done;
  t.is(outcome, "connected", "the SYN sent again went through");
  t.true(tables().includes(`CRIU-test-listen-${process.pid}`.slice(0, 26)), "the table stays for the connections");
});

test.serial("a window last updated by a segment past the receive window (criu's dump after dropped segments): the restore takes it from the receive queue's end", async (t) => {
  // The kernel's snd_wl1 can lie past rcv_nxt, even past rcv_nxt + rcv_wnd (a segment of
  // the peer's dropped for memory or kept out of order, whose window was taken), which
  // TCP_REPAIR_WINDOW refuses.
  const w = await startWorkload(t, "inetsk", ["established"]);
  const dir = await dumpGone(t, w, LOCK);
  await dropLockAtTeardown(t, dir);
  for (const s of readdirSync(dir).filter((f) => f.startsWith("tcp-stream-"))) {
    const img = await readImage(join(dir, s));
    const e = img.entries[0]!;
    e["snd_wl1"] = (Number(e["inq_seq"]) + Number(e["rcv_wnd"]) + 327_415) >>> 0;
    rmSync(join(dir, s));
    await writeImage(join(dir, s), img);
  }
  await restoreTask(t, dir, { tcpEstablished: true });
  t.is(await w.check(), "PASS established", "the unread data reads back, each way, and the connection carries more");
});

test.serial("half-closed connections (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING), data unread each way: restored in their states; the FINs lost before the dump come after it", async (t) => {
  const w = await startWorkload(t, "inetsk", ["halfclosed"]);
  const port = (fd: number): number => Number(w.info[`p${fd}`]);
  // Accepted ends share the listener's port: a segment is told by both ports.
  const undrop = dropSegments(t, [
    [port(6), port(7)],
    [port(9), port(8)],
  ]);
  t.is(await w.check(60_000), "PASS halfclosed", "the workload closed its ends and saw each state");
  const dir = await dumpGone(t, w, LOCK);
  undrop();
  const files = (await entries(dir, "files.img")).filter((f) => f["type"] === "INETSK").map((f) => f["isk"] as E);
  const states = Object.fromEntries(files.map((f) => [`${String(f["src_port"])}-${String(f["dst_port"])}`, Number(f["state"])]));
  t.deepEqual(
    [4, 5, 6, 7, 8, 9, 10, 11].map((fd) => states[`${port(fd)}-${port(fd & 1 ? fd - 1 : fd + 1)}`]),
    [5, 8, 11, 4, 4, 9, 5, 8],
    "FIN_WAIT2, CLOSE_WAIT, CLOSING, FIN_WAIT1, FIN_WAIT1, LAST_ACK; over IPv6 FIN_WAIT2, CLOSE_WAIT",
  );
  // The FINs are in no queue: each holds the 6 bytes written before the close, or nothing
  // where the segments were dropped (kept unacknowledged in the sender's send queue).
  const queues: Record<number, [inq: number, outq: number]> = { 4: [6, 0], 5: [6, 0], 6: [6, 6], 7: [0, 6], 8: [0, 6], 9: [6, 6], 10: [6, 0], 11: [6, 0] };
  for (const [fd, [inq, outq]] of Object.entries(queues)) {
    const n = Number(fd);
    const f = files.find((x) => x["src_port"] === port(n) && x["dst_port"] === port(n & 1 ? n - 1 : n + 1))!;
    const [e] = await entries(dir, `tcp-stream-${Number(f["ino"]).toString(16)}.img`);
    t.like(e, { inq_len: inq, outq_len: outq }, `fd ${fd}'s queues`);
  }
  await restoreTask(t, dir, { tcpEstablished: true });
  t.is(await w.check(90_000), "PASS halfclosed", "every end reads its data, then EOF where the peer had closed");
});

test.serial("a connection still opening (SYN_SENT, its SYNs lost): restored opening; it completes after the restore and carries data", async (t) => {
  const w = await startWorkload(t, "inetsk", ["connecting"]);
  const undrop = dropSegments(t, [[0, Number(w.info["p3"])]]);
  t.is(await w.check(30_000), "PASS connecting", "the connect() is in progress");
  const dir = await dumpGone(t, w, LOCK);
  undrop();
  const isk = (await entries(dir, "files.img")).filter((f) => f["type"] === "INETSK").map((f) => f["isk"] as E);
  const opening = isk.find((f) => f["state"] === 2);
  t.truthy(opening, "dumped in SYN_SENT");
  t.true(existsSync(join(dir, `tcp-stream-${Number(opening!["ino"]).toString(16)}.img`)));
  await restoreTask(t, dir, { tcpEstablished: true });
  t.is(await w.check(60_000), "PASS connecting", "the connect completes, the listener accepts it, a byte goes each way");
});

test.serial("a client outside the tree keeps its connection: what it sent while the task was gone is answered after the restore, no reset, no EOF", async (t) => {
  const { w, c } = await echoServer(t);
  // Stopped, the server leaves what comes in unread: it is in the receive queue at the dump.
  process.kill(w.pid, "SIGSTOP");
  await waitFor("the server to stop", () => procState(w.pid) === "T");
  c.s.write("queued before the dump\n");
  await waitFor("the line to be in the server's queue", () => queued(w.pid, 4, 0x541b) > 0 || undefined);
  const dir = await dumpGone(t, w, LOCK);
  t.deepEqual(locksOf(Number(w.info["p3"])), [await lockTable(dir)], "its connection is in the dump's lock");
  // The task is gone, the connection locked: this goes nowhere until the restore (no reset).
  c.s.write("sent while it was gone\n");
  await new Promise((r) => setTimeout(r, 300));
  t.is(c.ended(), undefined, "the client saw nothing happen");
  await restoreTask(t, dir, { tcpEstablished: true });
  process.kill(w.pid, "SIGCONT");
  await waitFor("both answers", () => c.got() === "HELLO\nQUEUED BEFORE THE DUMP\nSENT WHILE IT WAS GONE\n" || undefined, 20_000);
  await ask(c, "and the next one\n");
  t.is(c.ended(), undefined, "no reset, no EOF");
  t.is(await w.check(), "PASS echo");
});

test.serial("--wp-snapshot without -R: the server runs while its pages are copied, its connection locked, then is killed; restored, the connection goes on", async (t) => {
  const { w, c } = await echoServer(t);
  const dir = await dumpGone(t, w, { ...LOCK, wpSnapshot: true });
  t.deepEqual(locksOf(Number(w.info["p3"])), [await lockTable(dir)], "its connection is still in the dump's lock");
  c.s.write("sent while it was gone\n");
  await new Promise((r) => setTimeout(r, 300));
  t.is(c.ended(), undefined, "the client saw nothing happen");
  await restoreTask(t, dir, { tcpEstablished: true });
  await waitFor("the answer", () => c.got() === "HELLO\nSENT WHILE IT WAS GONE\n" || undefined, 20_000);
  await ask(c, "and the next one\n");
  t.is(c.ended(), undefined, "no reset, no EOF");
  t.is(await w.check(), "PASS echo");
});

test.serial("a send queue full of what the client has not read (sent and not yet sent parts kept apart) is all delivered after the restore", async (t) => {
  const { w, c } = await echoServer(t);
  // A small receive window on the client, which stops reading: the server's echo fills its send queue.
  const fd = (c.s as unknown as { _handle: { fd: number } })._handle.fd;
  const small = Buffer.alloc(4);
  small.writeInt32LE(4096, 0);
  bridge().setsockopt(fd, SOL_SOCKET, SO.RCVBUF, small);
  c.s.pause();
  const line = "x".repeat(1023) + "\n";
  const total = 2048 * 1024;
  c.s.write(line.repeat(total / line.length));
  await waitFor("the server's send queue to hold data never sent", () => queued(w.pid, 4, 0x894b) > 0 || undefined);
  // The window is shut and all the server sent is acknowledged. Data sent and not yet
  // acknowledged comes from what the server sends next being lost: the client reads a
  // chunk (its window opens) while the server's segments to it are dropped.
  const undrop = dropSegments(t, [[Number(w.info["p3"]), c.s.localPort!]]);
  c.s.once("data", () => c.s.pause());
  c.s.resume();
  // SIOCOUTQ (0x5411) counts every byte not acknowledged, SIOCOUTQNSD (0x894b) those never sent.
  await waitFor("the server to have sent data that is lost", () => queued(w.pid, 4, 0x5411) > queued(w.pid, 4, 0x894b) || undefined);
  const dir = await dumpGone(t, w, LOCK);
  undrop();
  const stream = readdirSync(dir).find((f) => f.startsWith("tcp-stream-"))!;
  const [e] = await entries(dir, stream);
  t.true(Number(e!["unsq_len"]) > 0, "some of it was never sent");
  t.true(Number(e!["outq_len"]) > Number(e!["unsq_len"]), "and some sent, not yet acknowledged");
  await restoreTask(t, dir, { tcpEstablished: true });
  c.s.resume();
  await waitFor("the whole echo", () => c.got().length >= 6 + total || undefined, 30_000);
  t.is(c.got(), "HELLO\n" + line.toUpperCase().repeat(total / line.length), "every byte, in order");
  t.is(c.ended(), undefined);
});

test.serial("a failed dump (fault after the lock) leaves the connection working and the lock removed; so does -R", async (t) => {
  const { w, c } = await echoServer(t);
  const port = Number(w.info["p3"]);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(tempDir(t), "img"), ...LOCK, faults: "images" }));
  t.like(err, { step: "images" });
  t.deepEqual(locksOf(port), [], "no lock left behind");
  t.is(status(w.pid).get("TracerPid"), "0");
  await ask(c, "after the failed dump\n");

  const dir = join(tempDir(t), "img");
  await dump({ pid: w.pid, imagesDir: dir, ...LOCK, leaveRunning: true });
  t.deepEqual(locksOf(port), [], "-R: unlocked");
  await ask(c, "after dump -R\n");
  t.true(existsSync(join(dir, readdirSync(dir).find((f) => f.startsWith("tcp-stream-"))!)));
  t.is(c.ended(), undefined);
});

test.serial("a failed image write while a process's connections are read in their batch (fault: write) leaves every one of them working, none left in repair mode", async (t) => {
  const { w, c } = await echoServer(t);
  const port = Number(w.info["p3"]);
  const others = [await client(t, port), await client(t, port)];
  for (const o of others) await ask(o, "hello\n");
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(tempDir(t), "img"), ...LOCK, faults: "write" }));
  t.regex(err?.message ?? "", /write: EIO \(fault injected by TSCRIU_FAULT=write\)/);
  t.deepEqual(locksOf(port), [], "no lock left behind");
  t.is(status(w.pid).get("TracerPid"), "0");
  for (const [i, k] of [c, ...others].entries()) await ask(k, `after the failed dump ${i}\n`);
  for (const k of [c, ...others]) t.is(k.ended(), undefined);
});

test.serial("the images' writeback started once a server's fds are done (70 connections) fails (fault: writeback): the dump fails at its sync saying so, every connection works on, unlocked", async (t) => {
  const { w, c } = await echoServer(t);
  const port = Number(w.info["p3"]);
  const others = await Promise.all(Array.from({ length: 69 }, () => client(t, port)));
  await Promise.all(others.map((o) => ask(o, "hello\n")));
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(tempDir(t), "img"), ...LOCK, faults: "writeback" }));
  t.like(err, { step: "sync" });
  t.regex(err?.message ?? "", /the writeback of the images written so far failed: syncfs: EIO \(fault injected by TSCRIU_FAULT=writeback\)/);
  t.deepEqual(locksOf(port), [], "no lock left behind");
  t.is(status(w.pid).get("TracerPid"), "0");
  await Promise.all([c, ...others].map((k, i) => ask(k, `after the failed dump ${i}\n`)));
  for (const k of [c, ...others]) t.is(k.ended(), undefined);
});

test.serial("a connection's stream image that cannot be made (an immutable images dir) fails the dump naming it; the connection works on, unlocked", async (t) => {
  const { w, c } = await echoServer(t);
  const port = Number(w.info["p3"]);
  const dir = join(tempDir(t), "img");
  mkdirSync(dir);
  // root creates files anywhere but in an immutable directory (chattr is e2fsprogs')
  const attr = (flag: string): void => void execFileSync("chattr", [flag, dir]);
  attr("+i");
  t.teardown(() => attr("-i"));
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: dir, ...LOCK }));
  t.regex(err?.message ?? "", new RegExp(`${dir}/tcp-stream-[0-9a-f]+\\.img: cannot create image: EPERM`));
  t.deepEqual(locksOf(port), [], "no lock left behind");
  t.is(status(w.pid).get("TracerPid"), "0");
  await ask(c, "after the failed dump\n");
  t.is(c.ended(), undefined);
});

test.serial("without a lock that works here (criu's default, iptables) a connection is refused, the task untouched", async (t) => {
  const { w, c } = await echoServer(t);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(tempDir(t), "img"), tcpEstablished: true }));
  t.regex(err?.message ?? "", /the network lock by iptables \(criu's default\) needs iptables-restore, which this machine does not have: lock with --network-lock nftables/);
  t.is(status(w.pid).get("TracerPid"), "0");
  await ask(c, "still here\n");
});

test.serial("--tcp-close: a connection dumped without its state, restored closed; a restore without either option refuses it at plan", async (t) => {
  const { w } = await echoServer(t);
  const dir = await dumpGone(t, w, { tcpClose: true });
  t.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith("tcp-stream-")),
    [],
  );
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.true(isRestoreError(err));
  t.regex(err?.message ?? "", /fd 4: TCP socket \d+ \(127\.0\.0\.1:\d+\) is a TCP connection to 127\.0\.0\.1:\d+ \(ESTABLISHED\): restore it with --tcp-established, or closed with --tcp-close \(.*files\.img\)/);
  await restoreTask(t, dir, { tcpClose: true });
  // The server finds the connection closed and drops it; new clients are served.
  const c2 = await client(t, Number(w.info["p3"]));
  await ask(c2, "a new client\n");
  t.is(await w.check(), "PASS echo");
});

test.serial("--tcp-close at dump and restore: connections come back closed (recv EOF, POLLHUP, EPIPE), one closed before the dump with its peer kept and not bound over its port's TIME_WAIT", async (t) => {
  const w = await startWorkload(t, "tcpclosed", ["closed"]);
  t.regex(await w.check(), /^FAIL closed: fd 4 is in TCP state 1, not CLOSE/, "the established ends are not closed before the dump");
  const dir = await dumpGone(t, w, { tcpClose: true });
  const files = (await entries(dir, "files.img")).filter((f) => f["type"] === "INETSK").map((f) => f["isk"] as E);
  const client = files.find((f) => f["src_port"] === Number(w.info["p6"]))!;
  // As criu's gen_uncon_sk reads it (SO_PEERNAME): the peer of a connection gone to CLOSE.
  t.like(client, { state: 7, dst_port: Number(w.info["p3"]), shutdown: "READ" });
  t.is(files.filter((f) => f["state"] === 7 && f["dst_port"] !== 0).length, 2, "both ends of the closed connection keep their peer");
  await restoreTask(t, dir, { tcpClose: true });
  t.is(await w.check(), "PASS closed");
});

test.serial("--tcp-established at dump, --tcp-close at restore: the connections come back closed, their lock removed", async (t) => {
  const w = await startWorkload(t, "tcpclosed", ["open"]);
  const dir = await dumpGone(t, w, LOCK);
  const table = await dropLockAtTeardown(t, dir);
  t.is(readdirSync(dir).filter((f) => f.startsWith("tcp-stream-")).length, 2);
  await restoreTask(t, dir, { tcpClose: true });
  t.false(tables().includes(table), "the restore removed the lock");
  t.is(await w.check(), "PASS open");
});

test.serial("hostile tcp-stream images: queues that do not match their lengths, unsent data past the queue, a missing image: refused at plan naming the file", async (t) => {
  const w = await startWorkload(t, "inetsk", ["established"]);
  const dir = await dumpGone(t, w, LOCK);
  const table = await dropLockAtTeardown(t, dir);
  const stream = readdirSync(dir).find((f) => f.startsWith("tcp-stream-"))!;
  const cases: [string, (e: E) => void, RegExp][] = [
    ["a receive queue shorter than its length", (e) => void (e["inq_len"] = Number(e["inq_len"]) + 100), new RegExp(`${stream}`)],
    ["a receive queue longer than its length", (e) => void (e["inq_len"] = 3), new RegExp(`${stream}`)],
    ["more unsent data than the send queue holds", (e) => void (e["unsq_len"] = 9), /9 bytes are said to be unsent of a send queue of 0/],
    ["a window scale past 14", (e) => void (e["rcv_wscale"] = 15), /a window scale of 15, past TCP's 14/],
  ];
  for (const [what, mutate, re] of cases) {
    const copy = tempDir(t);
    for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
    const img = await readImage(join(copy, stream));
    mutate(img.entries[0]!);
    rmSync(join(copy, stream));
    await writeImage(join(copy, stream), img);
    const err = await t.throwsAsync(restore({ imagesDir: copy, tcpEstablished: true }), undefined, what);
    t.true(isRestoreError(err), `${what}: ${String(err)}`);
    t.like(err, { step: "plan" }, what);
    t.regex(err?.message ?? "", re, what);
    t.true((err?.message ?? "").includes(join(copy, stream)), `${what}: names the file`);
    t.false(existsSync(`/proc/${w.pid}`), `${what}: nothing was created`);
  }
  const copy = tempDir(t);
  for (const f of readdirSync(dir)) if (f !== stream) copyFileSync(join(dir, f), join(copy, f));
  const err = await t.throwsAsync(restore({ imagesDir: copy, tcpEstablished: true }));
  t.regex(err?.message ?? "", new RegExp(`its state \\(${stream}\\) is not in the images`));
  t.true(tables().includes(table), "a refused restore leaves the lock");
});
