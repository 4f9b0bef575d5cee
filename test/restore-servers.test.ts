// Servers nobody here wrote, through dump and restore with their listening sockets:
// redis-server (five threads) answers the keys set before the dump, memcached with four
// worker threads (ten in all) too, nginx (a master and two workers running as www-data)
// serves its page from the same processes, and node's HTTP server counts on from where
// it was, python3's http.server too. Clients connect
// before the dump and again after the restore; none is connected while the dump runs,
// but for redis with a client that keeps its connection through dump and restore
// (--tcp-established): its next command on the same connection is answered. Debian's
// redis-server, memcached and nginx-light must be installed (.ci/run installs them), and
// Debian's python3 (/usr/bin/python3). tcpdump (installed by .ci/run too) captures on lo
// through a mapped packet ring before the dump and after the restore.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { bridge } from "../host-bridge/load.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { dump } from "../orchestrator/dump/dump.js";
import { freePort, startProgram } from "./helpers/programs.js";
import { killAndReap, waitFor } from "./helpers/workloads.js";

/** Where a program is, or a failure naming the Debian package that has it. */
function need(t: ExecutionContext, program: string, pkg: string): string | undefined {
  for (const dir of ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]) if (existsSync(join(dir, program))) return join(dir, program);
  t.fail(`${program} is not installed (Debian package ${pkg}; .ci/run installs it)`);
  return undefined;
}

/**
 * Sends `request` on a new TCP connection to 127.0.0.1:port and returns all it gets until
 * `done` says so; then hangs up and waits for the server to close its end, so that no
 * connection of the server is left for a dump to find.
 */
async function ask(port: number, request: string, done: (reply: string) => boolean): Promise<string> {
  return await new Promise((resolve, reject) => {
    const sock = connect(port, "127.0.0.1");
    let reply = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no full answer from port ${port} within 10 s (got ${JSON.stringify(reply)})`));
    }, 10_000);
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on("data", (d) => {
      reply += d.toString("utf8");
      if (done(reply)) sock.end();
    });
    sock.on("close", () => {
      clearTimeout(timer);
      if (done(reply)) resolve(reply);
      else reject(new Error(`port ${port} hung up after ${JSON.stringify(reply)}`));
    });
    sock.write(request);
  });
}

/** Waits until the server on `port` accepts connections. */
async function listening(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await new Promise<void>((resolve, reject) => {
        const s = connect(port, "127.0.0.1", () => {
          s.destroy();
          resolve();
        });
        s.on("error", reject);
      });
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after 10 s: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/**
 * Waits until the server on `port` holds no connection (ESTABLISHED or CLOSE_WAIT on its
 * side: the states a socket still open in the server can be in), only its listener.
 */
async function quiet(port: number): Promise<void> {
  const open = (): boolean =>
    ["/proc/net/tcp", "/proc/net/tcp6"].some((f) =>
      readFileSync(f, "utf8")
        .split("\n")
        .slice(1)
        .some((line) => {
          const [, local, , state] = line.trim().split(/\s+/);
          return local !== undefined && Number.parseInt(local.split(":")[1]!, 16) === port && (state === "01" || state === "08");
        }),
    );
  await waitFor(`the server on port ${port} to close its connections`, () => !open());
}

const threadsOf = (pid: number): number => readdirSync(`/proc/${pid}/task`).length;

/** An HTTP/1.0 GET: the server closes the connection after its answer. */
async function get(port: number): Promise<string> {
  return await new Promise((resolve, reject) => {
    const sock = connect(port, "127.0.0.1");
    let reply = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from port ${port} within 10 s`));
    }, 10_000);
    sock.on("data", (d) => (reply += d.toString("utf8")));
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on("end", () => {
      clearTimeout(timer);
      resolve(reply);
    });
    sock.write("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
  });
}

/** redis-server on a free port, no persistence; undefined (the test failed by need()) where it is missing. */
async function startRedis(t: ExecutionContext): Promise<{ w: Awaited<ReturnType<typeof startProgram>>; port: number; redis: (cmd: string) => Promise<string> } | undefined> {
  const bin = need(t, "redis-server", "redis-server");
  if (!bin) return undefined;
  const port = await freePort();
  const w = await startProgram(t, [bin, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"], () => true);
  await listening(port);
  return { w, port, redis: (cmd) => ask(port, `${cmd}\r\n`, (r) => r.endsWith("\r\n")) };
}

/** node's HTTP server answering its hit count and the ticks of a 5 ms timer (which also runs `tick`). */
async function startNodeCounter(t: ExecutionContext, setup = "", tick = ""): Promise<{ w: Awaited<ReturnType<typeof startProgram>>; port: number; body: () => Promise<{ hits: number; ticks: number }> }> {
  const port = await freePort();
  const js = [
    "const http = require('http');",
    "let hits = 0, ticks = 0;",
    setup,
    `setInterval(() => { ticks++; ${tick} }, 5);`,
    `http.createServer((req, res) => { hits++; res.end(JSON.stringify({ hits, ticks })); }).listen(${port}, '127.0.0.1');`,
  ].join("\n");
  const w = await startProgram(t, [process.execPath, "-e", js], () => true);
  await listening(port);
  return { w, port, body: async () => JSON.parse((await get(port)).split("\r\n\r\n")[1]!) as { hits: number; ticks: number } };
}

test("redis-server: the keys set before the dump are there after the restore, and it takes new ones", async (t) => {
  const server = await startRedis(t);
  if (!server) return;
  const { w, port, redis } = server;
  t.is(await redis("SET greeting hello"), "+OK\r\n");
  t.is(await redis("RPUSH list a b c"), ":3\r\n");
  const threads = threadsOf(w.pid);
  t.true(threads >= 4, `redis-server has its background threads (${threads})`);
  await quiet(port);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(threadsOf(w.pid), threads, "every thread back");
  t.is(await redis("GET greeting"), "$5\r\nhello\r\n");
  t.is(await redis("LLEN list"), ":3\r\n");
  t.is(await redis("SET after restored"), "+OK\r\n");
  t.is(await redis("GET after"), "$8\r\nrestored\r\n");
  t.regex(await ask(port, "INFO server\r\n", (r) => r.includes("process_id")), new RegExp(`process_id:${w.pid}\\r\\n`));
});

test("memcached -t 4: the items stored before the dump are there after the restore; its ten threads are back", async (t) => {
  const bin = need(t, "memcached", "memcached");
  if (!bin) return;
  const port = await freePort();
  const w = await startProgram(t, [bin, "-p", String(port), "-U", "0", "-l", "127.0.0.1", "-t", "4", "-u", "root"], () => true);
  await listening(port);
  const mc = (cmd: string, end: string): Promise<string> => ask(port, cmd, (r) => r.endsWith(end));
  t.is(await mc("set before 0 0 5\r\nhello\r\n", "\r\n"), "STORED\r\n");
  const threads = threadsOf(w.pid);
  t.true(threads >= 8, `memcached has its worker and helper threads (${threads})`);
  await quiet(port);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(threadsOf(w.pid), threads);
  t.is(await mc("get before\r\n", "END\r\n"), "VALUE before 0 5\r\nhello\r\nEND\r\n");
  t.is(await mc("set after 0 0 8\r\nrestored\r\n", "\r\n"), "STORED\r\n");
  t.is(await mc("get after\r\n", "END\r\n"), "VALUE after 0 8\r\nrestored\r\nEND\r\n");
  // Every worker thread takes connections: several at once all get answers.
  const many = await Promise.all(Array.from({ length: 8 }, () => mc("get before\r\n", "END\r\n")));
  t.deepEqual(new Set(many), new Set(["VALUE before 0 5\r\nhello\r\nEND\r\n"]));
});

test("nginx: a master and two workers running as www-data serve the page after the restore, as the same processes", async (t) => {
  const bin = need(t, "nginx", "nginx-light");
  if (!bin) return;
  const port = await freePort();
  const root = tempDir(t, "tscriu-nginx-");
  chmodSync(root, 0o755);
  mkdirSync(join(root, "html"));
  writeFileSync(join(root, "html/index.html"), "hello from nginx\n");
  const conf = join(root, "nginx.conf");
  writeFileSync(
    conf,
    [
      "daemon off;",
      "master_process on;",
      "worker_processes 2;",
      "user www-data;",
      `pid ${root}/nginx.pid;`,
      `error_log ${root}/error.log;`,
      "events { worker_connections 64; }",
      "http {",
      `  access_log ${root}/access.log;`,
      ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((k) => `  ${k}_temp_path ${root}/${k};`),
      `  server { listen 127.0.0.1:${port}; root ${root}/html; }`,
      "}",
    ].join("\n"),
  );
  const w = await startProgram(t, [bin, "-p", root, "-c", conf], () => true);
  await listening(port);
  const workers = (): number[] => readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number).sort((a, b) => a - b);
  const uid = (pid: number): string | undefined => /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  // A worker is forked as root and drops to www-data a moment later.
  const kids = await waitFor("nginx's two workers, running as www-data", () => (workers().length === 2 && workers().every((k) => uid(k) !== "0") ? workers() : undefined));
  t.teardown(() => {
    for (const k of kids) {
      try {
        process.kill(k, "SIGKILL");
      } catch {
        // gone
      }
    }
  });
  const wwwData = uid(kids[0]!);
  t.regex(await get(port), /^HTTP\/1\.1 200 OK[\s\S]*hello from nginx\n$/);
  await quiet(port);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.deepEqual(workers(), kids, "the same two workers, children of the master");
  for (const k of kids) t.is(uid(k), wwwData, `worker ${k} still runs as www-data`);
  for (let i = 0; i < 6; i++) t.regex(await get(port), /^HTTP\/1\.1 200 OK[\s\S]*hello from nginx\n$/, `request ${i + 1} after the restore`);
  t.regex(readFileSync(join(root, "access.log"), "utf8"), /"GET \/ HTTP\/1\.0" 200/, "the workers still log to their access log");
});

test("node: an HTTP server with a timer counts on after the restore; its libuv threads are back", async (t) => {
  const { w, port, body } = await startNodeCounter(t);
  const first = await body();
  t.is(first.hits, 1);
  const threads = threadsOf(w.pid);
  await quiet(port);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(threadsOf(w.pid), threads);
  const second = await body();
  t.is(second.hits, 2, "the hit count went on from the dump");
  t.true(second.ticks >= first.ticks);
  // Asked again until the timer has ticked (up to 10 s: a busy machine may not run it soon).
  let ticks = second.ticks;
  for (const deadline = Date.now() + 10_000; ticks <= second.ticks && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 50));
    ticks = (await body()).ticks;
  }
  t.true(ticks > second.ticks, "the timer ticks on after the restore");
});


/**
 * dump -R --wp-snapshot of a running server: it serves on while its pages are copied; then
 * it is killed, and the restore has the state of the freeze, not what came after.
 */
async function snapshotThenKill(t: ExecutionContext, pid: number, after: () => Promise<void>): Promise<string> {
  const dir = tempDir(t);
  const r = await dump({ pid, imagesDir: dir, leaveRunning: true, wpSnapshot: true });
  t.true(r.stats.frozen_time > 0);
  await after();
  await killAndReap(pid);
  await waitFor(`pid ${pid} to be free after it was killed`, () => !existsSync(`/proc/${pid}`));
  return dir;
}

test("redis-server and dump -R --wp-snapshot: it serves on while its pages are copied; the restore has the keys of the freeze", async (t) => {
  const server = await startRedis(t);
  if (!server) return;
  const { w, port, redis } = server;
  t.is(await redis("SET greeting hello"), "+OK\r\n");
  // a few MiB of values: pages for the snapshot to copy
  for (let i = 0; i < 64; i++) t.is(await redis(`SET big${i} ${String(i % 10).repeat(64 << 10)}`), "+OK\r\n");
  await quiet(port);
  const dir = await snapshotThenKill(t, w.pid, async () => {
    t.is(await redis("SET later written-after-the-freeze"), "+OK\r\n", "the original serves on");
    await quiet(port);
  });
  await restoreTask(t, dir);
  t.is(await redis("GET greeting"), "$5\r\nhello\r\n");
  t.is(await redis("STRLEN big63"), `:${64 << 10}\r\n`);
  t.is(await redis("GET later"), "$-1\r\n", "nothing from after the freeze");
});

test("node and dump -R --wp-snapshot: a timer writing every 5 ms through the copy; the restore counts on from the freeze", async (t) => {
  // the timer also writes a page of garbage every tick, kept for a while
  const { w, port, body } = await startNodeCounter(t, "const junk = [];", "junk.push(Buffer.alloc(4096, ticks & 255)); if (junk.length > 4096) junk.shift();");
  t.is((await body()).hits, 1);
  const threads = threadsOf(w.pid);
  await quiet(port);
  const dir = await snapshotThenKill(t, w.pid, async () => {
    t.is((await body()).hits, 2, "the original serves on");
    await quiet(port);
  });
  await restoreTask(t, dir);
  t.is(threadsOf(w.pid), threads);
  const again = await body();
  t.is(again.hits, 2, "the hit count goes on from the freeze, not from after it");
  t.true(again.ticks > 0);
});

test("redis-server with a client connected through dump and restore (--tcp-established): the same connection carries the next commands; what the client sent while the server was gone is answered", async (t) => {
  const server = await startRedis(t);
  if (!server) return;
  const { w, port } = server;
  const sock = connect(port, "127.0.0.1");
  t.teardown(() => sock.destroy());
  let got = "";
  let ended: string | undefined;
  sock.on("data", (d) => (got += d.toString("latin1")));
  sock.on("error", (e) => (ended = `error ${e.message}`));
  sock.on("end", () => (ended ??= "EOF"));
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  // What the client sends while the server is gone is retransmitted with a backoff that
  // doubles up to 120 s; TCP_RTO_MAX_MS (Linux 6.15) caps it at 1 s, so that a dump and
  // restore slowed by a busy machine is not followed by a long silence.
  const cap = Buffer.alloc(4);
  cap.writeInt32LE(1000, 0);
  bridge().setsockopt((sock as unknown as { _handle: { fd: number } })._handle.fd, 6 /* IPPROTO_TCP */, 44 /* TCP_RTO_MAX_MS */, cap);
  const command = async (cmd: string, want: string): Promise<void> => {
    const before = got;
    sock.write(`${cmd}\r\n`);
    await waitFor(`redis to answer ${cmd}`, () => ended ?? got === before + want);
    t.is(got, before + want, cmd);
  };
  await command("SET kept 1", "+OK\r\n");
  const dir = await dumpGone(t, w, { tcpEstablished: true, networkLock: "nftables" });
  // Sent while the server is gone: kept by the client's TCP until the restore.
  const before = got;
  sock.write("INCR kept\r\n");
  await restoreTask(t, dir, { tcpEstablished: true });
  await waitFor("the answer to what was sent during the dump", () => ended ?? got === before + ":2\r\n", 60_000);
  t.is(got, before + ":2\r\n");
  await command("GET kept", "$1\r\n2\r\n");
  t.is(ended, undefined, "the client saw no reset and no EOF");
});

/** Debian's python3 (the one on PATH may be another build). */
function python(t: ExecutionContext): string | undefined {
  if (existsSync("/usr/bin/python3")) return "/usr/bin/python3";
  t.fail("/usr/bin/python3 is not installed (Debian package python3)");
  return undefined;
}

test("python3 -m http.server: serves its directory after the restore", async (t) => {
  const py = python(t);
  if (!py) return;
  const port = await freePort();
  const root = tempDir(t, "tscriu-httproot-");
  writeFileSync(join(root, "hello.txt"), "served by python\n");
  const w = await startProgram(t, [py, "-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", root], () => true);
  await listening(port);
  const fetch = async (): Promise<string> => (await ask(port, "GET /hello.txt HTTP/1.0\r\n\r\n", (r) => r.includes("served by python\n"))).split("\r\n\r\n")[1]!;
  t.is(await fetch(), "served by python\n");
  await quiet(port);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(await fetch(), "served by python\n");
  writeFileSync(join(root, "hello.txt"), "served by python\nand after the restore\n");
  t.is(await fetch(), "served by python\nand after the restore\n");
});

/** The UDP payloads of the packets in a pcap file (classic format, Ethernet or loopback link, IPv4). */
function pcapPayloads(file: string): string[] {
  const b = readFileSync(file);
  const out: string[] = [];
  for (let at = 24; at + 16 <= b.length; ) {
    const caplen = b.readUInt32LE(at + 8);
    const pkt = b.subarray(at + 16, at + 16 + caplen);
    at += 16 + caplen;
    // Ethernet header (14), IPv4 header (IHL words), UDP header (8)
    if (pkt.length < 14 + 20 + 8 || pkt.readUInt16BE(12) !== 0x0800) continue;
    const ihl = (pkt[14]! & 0x0f) * 4;
    out.push(pkt.subarray(14 + ihl + 8).toString("latin1"));
  }
  return out;
}

test("tcpdump: capturing on lo through its mapped TPACKET_V3 ring, it writes what arrives after the restore to the same file", async (t) => {
  const tcpdump = need(t, "tcpdump", "tcpdump");
  if (!tcpdump) return;
  const port = await freePort();
  const cap = join(tempDir(t, "tscriu-pcap-"), "lo.pcap");
  // -U: each packet written at once; -Z root: no change of user (the file stays its own);
  // -p: lo not made promiscuous (that change is told to every netlink socket in the link
  // group, and another test's would have a message queued at its dump)
  const w = await startProgram(t, [tcpdump, "-i", "lo", "-n", "-p", "-U", "-Z", "root", "-w", cap, "udp", "port", String(port)], () => existsSync(cap));
  const sock = createSocket("udp4");
  t.teardown(() => sock.close());
  const send = async (text: string): Promise<void> => await new Promise((resolve, reject) => sock.send(text, port, "127.0.0.1", (e) => (e ? reject(e) : resolve())));
  const seen = (text: string): boolean => pcapPayloads(cap).includes(text);
  // Sent again until tcpdump has written it (its capture may start a moment after the file).
  const captured = async (text: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!seen(text)) {
      if (Date.now() > deadline) throw new Error(`tcpdump wrote no packet "${text}" in 10 s`);
      await send(text);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await captured("before the dump");
  t.true(readFileSync(`/proc/${w.pid}/maps`, "utf8").includes("socket:["), "its ring is mapped");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  await captured("after the restore");
  t.true(seen("before the dump"), "the packets written before are still in the file");
});
