// The page server (orchestrator/page-server/): dump --page-server sends the pages to a
// page-server over TCP in criu's protocol, the other images stay in the dump's dir. Both
// sides against each other and against criu 4.1.1 (CI's root), pre-dump chains over it,
// the daemon's options, a fault in the dump, and hostile peers. The workload
// (test/workloads/incr.c) writes 1 % of its pages every 100 ms and checks every page on
// SIGUSR1: a page lost or stale on the way fails it.
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { bridge } from "../host-bridge/load.js";
import { PE_PARENT, readPagemap } from "../images/pages.js";
import { encodeDst, encodeHeader, PS_IOV, type Layout } from "../orchestrator/page-server/wire.js";
import { CLI, tscriu } from "./helpers/cli.js";
import { criuDumps, criuShell, criuVersion, haveRoot } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { freePort, unixListening } from "./helpers/programs.js";
import { crls, pki } from "./helpers/pki.js";
import { pycriu, pycriuInstalled } from "./helpers/pycriu.js";
import { dump } from "../orchestrator/dump/dump.js";
import { restore } from "../orchestrator/restore/restore.js";
import { restoreTask } from "./helpers/restore.js";
import { goneOrZombie, killAndReap, procState, RUNS_ON, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

interface Server {
  port: number;
  /** what it logged so far */
  log: () => Promise<string>;
  /** resolves when the server exits: its code and what it logged */
  done: Promise<{ code: number | null; log: string }>;
}

/**
 * A page server (`argv` runs it: tscriu's by default) on a port it picks itself, found in
 * its log ("page server on … port N" for tscriu, "Using N port" for criu).
 */
async function pageServer(t: ExecutionContext, dir: string, extra: string[] = [], how: "tscriu" | "criu" = "tscriu"): Promise<Server> {
  const log = join(tempDir(t, "tscriu-pslog-"), "ps.log");
  const c =
    how === "tscriu"
      ? spawn(process.execPath, [CLI, "page-server", "-D", dir, "-v4", "-o", log, ...extra], { stdio: "ignore" })
      : (() => {
          const sh = criuShell(`exec criu page-server -D ${dir} -v4 -o ${log} ${extra.join(" ")}`);
          return spawn(sh.cmd, sh.args, { stdio: "ignore", env: sh.env });
        })();
  t.teardown(() => {
    c.kill("SIGKILL");
  });
  const done = new Promise<{ code: number | null; log: string }>((resolve) => c.on("exit", (code) => resolve({ code, log: existsSync(log) ? readFileSync(log, "utf8") : "" })));
  const port = await waitFor(`the ${how} page server to listen`, () => {
    if (c.exitCode !== null) throw new Error(`the page server exited with ${c.exitCode}: ${existsSync(log) ? readFileSync(log, "utf8") : ""}`);
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    const m = /page server on \S+ port (\d+)/.exec(text) ?? /Using (\d+) port/.exec(text);
    return m ? Number(m[1]) : undefined;
  });
  return { port, done, log: () => Promise.resolve(existsSync(log) ? readFileSync(log, "utf8") : "") };
}

/** The dump's images and the server's in one dir, as a user copies them for a restore. */
function merge(from: string, into: string): void {
  for (const f of readdirSync(from)) if (f.endsWith(".img") && !existsSync(join(into, f))) copyFileSync(join(from, f), join(into, f));
}

/** The writes counter of a passing self-check, after the task wrote some more. */
async function passes(t: ExecutionContext, w: Workload): Promise<void> {
  t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  const writes = async (): Promise<number> => {
    const line = await w.check();
    t.regex(line, /^PASS /);
    return Number(/writes=(\d+)/.exec(line)?.[1]);
  };
  const first = await writes();
  const deadline = Date.now() + 10_000;
  while ((await writes()) < first + 50) {
    if (Date.now() > deadline) return t.fail(`${w.name} (pid ${w.pid}) wrote fewer than 50 pages in 10 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const stat = (out: string, what: string): number => Number(new RegExp(`${what}: (\\d+)`).exec(out)?.[1] ?? NaN);

test("dump -R --page-server: the pages go to tscriu's page server, the rest stays; restored from both, every page right", async (t) => {
  const w = await startWorkload(t, "incr", ["16"]);
  const [local, remote] = [tempDir(t), tempDir(t)];
  const ps = await pageServer(t, remote, ["--address", "127.0.0.1"]);
  t.regex((await ps.log()), /page server on 127\.0\.0\.1 port/);
  const r = tscriu(["dump", "-R", "-t", String(w.pid), "-D", local, "--page-server", "--address", "127.0.0.1", "--port", String(ps.port), "-v4", "--display-stats"]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /24-byte headers/);
  const s = await ps.done;
  t.is(s.code, 0, s.log);
  t.regex(s.log, /session with 127\.0\.0\.1:\d+ over: 1 pagemaps, \d+ pages written/);
  t.false(readdirSync(local).some((f) => /^(pagemap|pages)-/.test(f)), "no pages in the dump's own dir");
  t.deepEqual(readdirSync(remote).sort(), [`pagemap-${w.pid}.img`, "pages-65537.img"]);
  t.true(stat(r.stdout, "Memory pages written") >= 4096, r.stdout);
  t.regex(await w.check(), /^PASS /);
  await killAndReap(w.pid);
  merge(local, remote);
  await restoreTask(t, remote);
  t.regex(await w.check(), /^PASS /);
});

test("dump --wp-snapshot --page-server without -R: the pages copied while the task runs, then sent; the task killed after; restored from both, every page right", async (t) => {
  const w = await startWorkload(t, "incr", ["16", "5"]);
  const [local, remote] = [tempDir(t), tempDir(t)];
  const ps = await pageServer(t, remote, ["--address", "127.0.0.1"]);
  const r = tscriu(["dump", "--wp-snapshot", "-t", String(w.pid), "-D", local, "--page-server", "--address", "127.0.0.1", "--port", String(ps.port), "-v4"]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /write-protect snapshot copied with the task running/);
  t.regex(r.stderr, /Dumping finished successfully \(task killed\)/);
  t.is((await ps.done).code, 0);
  await waitFor(`pid ${w.pid} to be gone`, () => goneOrZombie(w.pid));
  merge(local, remote);
  await restoreTask(t, remote);
  t.regex(await w.check(), /^PASS /);
});

test.serial("pre-dump, pre-dump, dump over page servers: later passes send what was written; the server's --auto-dedup; restored", async (t) => {
  const w = await startWorkload(t, "incr", ["32"]);
  const base = tempDir(t, "tscriu-pschain-");
  const env = { TSCRIU_TRACK_DIR: tempDir(t, "tscriu-trackstate-") };
  const d = (side: "src" | "dst", n: number): string => join(base, `${side}${n}`);
  const pass = async (n: number, cmd: string, extra: string[] = []): Promise<string> => {
    const ps = await pageServer(t, d("dst", n), n > 1 ? ["--prev-images-dir", `../dst${n - 1}`, ...(n === 3 ? ["--auto-dedup"] : [])] : []);
    const prev = n > 1 ? ["--prev-images-dir", `../src${n - 1}`] : [];
    const r = tscriu([cmd, "-t", String(w.pid), "-D", d("src", n), ...prev, "--page-server", "--address", "127.0.0.1", "--port", String(ps.port), "--display-stats", "-v4", ...extra], { env });
    t.is(r.code, 0, r.stderr);
    const s = await ps.done;
    t.is(s.code, 0, s.log);
    return r.stdout;
  };
  await pass(1, "pre-dump");
  await passes(t, w);
  const out2 = await pass(2, "pre-dump");
  // written since: a few % of 8192 pages; the rest PE_PARENT on the server
  t.true(stat(out2, "Memory pages skipped from parent") > 4096, out2);
  t.true(stat(out2, "Memory pages written") < 4096, out2);
  await passes(t, w);
  const blocks = (): number => Number(spawnSync("stat", ["-c", "%b", join(d("dst", 1), "pages-65537.img")], { encoding: "utf8" }).stdout);
  const before = blocks();
  const out3 = await pass(3, "dump");
  t.true(stat(out3, "Memory pages skipped from parent") > 4096, out3);
  t.true(blocks() < before, "the server's --auto-dedup punched the first pass's pages");
  const pm = await readPagemap(d("dst", 3), `pagemap-${w.pid}.img`);
  t.true(pm.runs.some((x) => x.flags & PE_PARENT));
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  merge(d("src", 3), d("dst", 3));
  await restoreTask(t, d("dst", 3));
  t.regex(await w.check(), /^PASS /);
});

test.serial("criu 4.1.1 both ways: tscriu's dump into criu's page server, criu's dump into tscriu's; each restored, every page right", async (t) => {
  if (!haveRoot(t)) return;
  // tscriu → criu
  const w = await startWorkload(t, "incr", ["16"], { static: true });
  const [local, remote] = [tempDir(t), tempDir(t)];
  const ps = await pageServer(t, remote, [], "criu");
  const r = tscriu(["dump", "-t", String(w.pid), "-D", local, "--page-server", "--address", "127.0.0.1", "--port", String(ps.port), "-v4"]);
  t.is(r.code, 0, r.stderr);
  const layout: Layout = /^4\.1(\.|$)/.test(criuVersion()) ? 24 : 32;
  t.regex(r.stderr, new RegExp(`${layout}-byte headers`));
  t.is((await ps.done).code, 0);
  merge(local, remote);
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  await restoreTask(t, remote);
  t.regex(await w.check(), /^PASS /);

  // criu → tscriu
  const into = tempDir(t);
  const ps2 = await pageServer(t, into);
  const c = await criuDumps(t, "incr", ["16"], `--page-server --address 127.0.0.1 --port ${ps2.port}`);
  t.is(c.status, 0, c.stderr);
  const s = await ps2.done;
  t.is(s.code, 0, s.log);
  t.regex(s.log, new RegExp(`speaks ${layout}-byte headers`));
  merge(c.images, into);
  await restoreTask(t, into);
  t.regex(await c.check(), /^PASS /);
});

test("a dump that fails after its pages are sent (fault at page-server): the task runs on, the server keeps nothing", async (t) => {
  const w = await startWorkload(t, "incr", ["8"]);
  const [local, remote] = [tempDir(t), tempDir(t)];
  writeFileSync(join(remote, "kept.img"), "an earlier file");
  const ps = await pageServer(t, remote);
  const r = tscriu(["dump", "-t", String(w.pid), "-D", local, "--page-server", "--port", String(ps.port)], { env: { TSCRIU_FAULT: "page-server" } });
  t.is(r.code, 1);
  t.regex(r.stderr, /page-server of pid \d+ failed/);
  const s = await ps.done;
  t.is(s.code, 1);
  // the connection ends inside the last run (still gathered to be sent) or after it
  t.regex(s.log, /the connection closed (without PS_IOV_CLOSE|after \d+ of the \d+ bytes)/);
  t.deepEqual(readdirSync(remote), ["kept.img"], "the session's files are gone, the earlier one stays");
  t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  t.regex(await w.check(), /^PASS /);
});

test("page-server -d/--daemon --pidfile, --status-fd with -W, --ps-socket for pre-dump and dump; --page-server without a port is refused", async (t) => {
  const w = await startWorkload(t, "incr", ["8"]);
  // the first daemon picks its port (logged by the command before it returns), the second is given one
  const daemonAt = (flag: string, port?: number): { dir: string; pid: number; port: number } => {
    const dir = tempDir(t);
    const pidfile = join(tempDir(t), "ps.pid");
    const log = join(tempDir(t), "ps.log");
    const d = tscriu(["page-server", "-D", dir, ...(port !== undefined ? ["--port", String(port)] : []), flag, "--pidfile", pidfile, "-v3", "-o", log]);
    t.is(d.code, 0, d.stderr);
    const listens = Number(/page server on \S+ port (\d+)/.exec(readFileSync(log, "utf8"))?.[1]);
    if (port !== undefined) t.is(listens, port);
    const pid = Number(readFileSync(pidfile, "utf8"));
    t.teardown(() => {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    });
    t.regex(procState(pid) ?? "gone", /^[RS]/, `${flag}: the daemon runs`);
    return { dir, pid, port: listens };
  };
  // -d: the command returns at once, the daemon serves one dump and exits
  const d = daemonAt("-d");
  t.is(tscriu(["dump", "-R", "-t", String(w.pid), "-D", tempDir(t), "--page-server", "--port", String(d.port)]).code, 0);
  await waitFor(`the daemon ${d.pid} to exit`, () => !existsSync(`/proc/${d.pid}`) || procState(d.pid) === "Z");
  t.true(existsSync(join(d.dir, `pagemap-${w.pid}.img`)));
  // --daemon: the same, listening before the command returned
  const d2 = daemonAt("--daemon", await freePort());
  await new Promise<void>((resolve, reject) => {
    const s = connect(d2.port, "127.0.0.1", () => s.destroy());
    s.on("error", reject);
    s.on("close", () => resolve());
  });
  await waitFor(`the daemon ${d2.pid} to end its session`, () => !existsSync(`/proc/${d2.pid}`) || procState(d2.pid) === "Z");

  // --status-fd: \0 once listening; -W takes the log
  const work = tempDir(t);
  const c = spawn(process.execPath, [CLI, "page-server", "-D", tempDir(t), "--status-fd", "3", "-v4", "-W", work, "-o", "ps.log"], { stdio: ["ignore", "ignore", "pipe", "pipe"] });
  t.teardown(() => c.kill("SIGKILL"));
  const status = await new Promise<Buffer>((resolve) => c.stdio[3]!.once("data", (b: Buffer) => resolve(b)));
  t.deepEqual([...status], [0]);
  t.regex(readFileSync(join(work, "ps.log"), "utf8"), /page server on 0\.0\.0\.0 port \d+/);
  c.kill("SIGKILL");

  // --ps-socket on both sides: a socketpair carries the session
  for (const cmd of [["pre-dump"], ["dump", "-R"]]) {
    const [a, b] = bridge().socketpair(1, 1);
    const pdir = tempDir(t);
    const server = spawn(process.execPath, [CLI, "page-server", "-D", pdir, "--ps-socket", "3"], { stdio: ["ignore", "ignore", "pipe", a] });
    t.teardown(() => server.kill("SIGKILL"));
    const dumped = spawnSync(process.execPath, [CLI, ...cmd, "-t", String(w.pid), "-D", tempDir(t), "--page-server", "--ps-socket", "3"], { stdio: ["ignore", "pipe", "pipe", b], encoding: "utf8" });
    t.is(dumped.status, 0, dumped.stderr);
    bridge().close(a);
    bridge().close(b);
    const code = await new Promise<number | null>((resolve) => (server.exitCode !== null ? resolve(server.exitCode) : server.on("exit", resolve)));
    t.is(code, 0, cmd[0]);
    t.true(existsSync(join(pdir, `pagemap-${w.pid}.img`)), cmd[0]);
  }

  const refused = tscriu(["dump", "-t", String(w.pid), "-D", tempDir(t), "--page-server"]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /--page-server needs the server's --port/);
  const stray = tscriu(["dump", "-t", String(w.pid), "-D", tempDir(t), "--port", "27"]);
  t.regex(stray.stderr, /--port is for --page-server, which is not given/);
  const dedupHere = tscriu(["dump", "-t", String(w.pid), "-D", tempDir(t), "--page-server", "--port", "27", "--auto-dedup"]);
  t.is(dedupHere.code, 1);
  t.regex(dedupHere.stderr, /--auto-dedup with --page-server: the parent's pages are on the page server; give --auto-dedup to the page server instead/);
  t.regex(await w.check(), /^PASS /);
});

/** Sends `bytes` to a fresh tscriu page server, closes; the server's exit code and log. */
async function hostile(t: ExecutionContext, bytes: Buffer, keep?: string): Promise<{ code: number | null; log: string; dir: string }> {
  const dir = tempDir(t);
  if (keep !== undefined) writeFileSync(join(dir, keep), "earlier");
  const ps = await pageServer(t, dir);
  await new Promise<void>((resolve) => {
    const s = connect(ps.port, "127.0.0.1", () => s.end(bytes));
    // a server that stops with bytes unread resets the connection
    s.on("error", () => undefined);
    s.on("data", () => undefined);
    s.on("close", () => resolve());
  });
  return { ...(await ps.done), dir };
}

const hdr = (cmd: number, nrPages: bigint, vaddr: bigint, dstId = encodeDst("pid", 4242), flags = 0, layout: Layout = 24): Buffer => encodeHeader(layout, { cmd, flags, nrPages, vaddr, dstId });

test("hostile peers: a huge run, an unknown command, an unknown pagemap type, a run out of order, a close mid-page: an error naming peer and command, earlier images kept", async (t) => {
  const open = hdr(PS_IOV.OPEN, 0n, 0n);
  const cases: [string, Buffer, RegExp][] = [
    // criu 4.2's 32-byte headers carry a 64-bit page count
    ["a run of 2^50 pages (32-byte headers)", Buffer.concat([hdr(PS_IOV.OPEN, 0n, 0n, undefined, 0, 32), hdr(PS_IOV.ADD_F, 1n << 50n, 0x10000n, undefined, 4, 32)]), /PS_IOV_ADD_F: \d+ pages at 0x10000 are no range of an address space/],
    ["a run of 2^40 pages, then the connection closes", Buffer.concat([hdr(PS_IOV.OPEN, 0n, 0n, undefined, 0, 32), hdr(PS_IOV.ADD_F, 1n << 40n, 0x10000n, undefined, 4, 32)]), /PS_IOV_ADD_F: the connection closed after 0 of the \d+ bytes/],
    ["a run of 2^31 pages with 8 KiB of data", Buffer.concat([open, hdr(PS_IOV.ADD_F, 1n << 31n, 0x10000n, undefined, 4), Buffer.alloc(8192)]), /PS_IOV_ADD_F: the connection closed after 8192 of the \d+ bytes/],
    ["an unknown command", Buffer.concat([open, hdr(0x99, 0n, 0n)]), /127\.0\.0\.1:\d+, command 0x99: not a command of criu's page-server protocol/],
    ["a dst_id of type 9", hdr(PS_IOV.OPEN2, 0n, 0n, 0x1209n), /PS_IOV_OPEN2: dst_id 0x1209 names no pagemap type/],
    ["runs out of order", Buffer.concat([open, hdr(PS_IOV.ADD_F, 1n, 0x20000n, undefined, 4), Buffer.alloc(4096), hdr(PS_IOV.ADD_F, 1n, 0x10000n, undefined, 4), Buffer.alloc(4096)]), /comes after one that ends at 0x21000/],
    ["a PE_PARENT run without a parent", Buffer.concat([open, hdr(PS_IOV.ADD_F, 1n, 0x20000n, undefined, 1)]), /a PE_PARENT run, but there are no parent images/],
    ["flags PRESENT|PARENT", Buffer.concat([open, hdr(PS_IOV.ADD_F, 1n, 0x20000n, undefined, 5)]), /pagemap flags 0x5 are not a combination criu writes/],
    ["half a header", hdr(PS_IOV.OPEN2, 0n, 0n).subarray(0, 10), /the connection closed after 10 bytes of a header/],
    ["lazy pages asked for", Buffer.concat([open, hdr(PS_IOV.GET, 1n, 0x1000n)]), /PS_IOV_GET: asks for lazy pages/],
  ];
  for (const [what, bytes, re] of cases) {
    const r = await hostile(t, bytes, "earlier.img");
    t.is(r.code, 1, what);
    t.regex(r.log, re, what);
    t.deepEqual(readdirSync(r.dir), ["earlier.img"], `${what}: only what was there before`);
  }
});

test("RPC: pycriu's PAGE_SERVER starts one (its pid and port in the answer), a DUMP with criu_opts.ps sends to it; restored", async (t) => {
  pycriuInstalled(t);
  const w = await startWorkload(t, "incr", ["8"]);
  const [local, remote] = [tempDir(t), tempDir(t)];
  const swrk = `swrk:${CLI}`;
  const ps = pycriu(swrk, ["req", "PAGE_SERVER", JSON.stringify({ images_dir: `fd:${remote}`, log_file: "ps.log", log_level: 4 })]);
  t.like(ps, { success: true, type: "PAGE_SERVER" });
  const { pid, port } = ps["ps"] as { pid: number; port: number };
  t.true(port > 0 && pid > 0, JSON.stringify(ps));
  t.teardown(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  });
  const d = pycriu(swrk, ["req", "DUMP", JSON.stringify({ images_dir: `fd:${local}`, pid: w.pid, leave_running: true, log_file: "dump.log", log_level: 4, ps: { address: "127.0.0.1", port } })]);
  t.like(d, { success: true, type: "DUMP" }, readFileSync(join(local, "dump.log"), "utf8"));
  await waitFor(`the page server ${pid} to exit`, () => !existsSync(`/proc/${pid}`) || procState(pid) === "Z");
  t.regex(readFileSync(join(remote, "ps.log"), "utf8"), /session with 127\.0\.0\.1:\d+ over: 1 pagemaps/);
  t.false(readdirSync(local).some((f) => /^pages-/.test(f)));
  await killAndReap(w.pid);
  merge(local, remote);
  await restoreTask(t, remote);
  t.regex(await w.check(), /^PASS /);
});

test.serial("--tls-cacrl: the page server refuses a dump whose certificate the list revokes; dump, pre-dump and the lazy-pages daemon a page server whose certificate it revokes; a list without them changes nothing", async (t) => {
  const dir = tempDir(t, "tscriu-pki-");
  const p = pki(dir);
  const w = await startWorkload(t, "incr", ["8"]);
  // the client's certificate revoked: the page server refuses it
  const c = crls(dir, "client");
  for (const [crl, ok] of [[c.empty, true], [c.revoked, false]] as const) {
    const ps = await pageServer(t, tempDir(t), ["--address", "127.0.0.1", ...p.cert("server"), "--tls-cacrl", crl]);
    const r = tscriu(["dump", "-R", "-t", String(w.pid), "-D", tempDir(t), "--page-server", "--address", "127.0.0.1", "--port", String(ps.port), ...p.cert("client")]);
    const s = await ps.done;
    t.is(r.code, ok ? 0 : 1, r.stderr);
    t.is(s.code, ok ? 0 : 1, s.log);
    // node's TLS server reports the client's certificate check as the handshake failing
    if (!ok) t.regex(s.log, /Error \(page-server\): TLS handshake: /);
  }
  // the server's certificate revoked: the dump refuses the page server
  const dir2 = tempDir(t, "tscriu-pki2-");
  const p2 = pki(dir2);
  const c2 = crls(dir2, "server");
  for (const cmd of ["dump", "pre-dump"]) {
    const ps = await pageServer(t, tempDir(t), ["--address", "127.0.0.1", ...p2.cert("server")]);
    const r = tscriu([cmd, ...(cmd === "dump" ? ["-R"] : []), "-t", String(w.pid), "-D", tempDir(t), "--page-server", "--address", "127.0.0.1", "--port", String(ps.port), ...p2.cert("client"), "--tls-cacrl", c2.revoked]);
    t.is(r.code, 1, cmd);
    t.regex(r.stderr, /TLS.*revoked/i, cmd);
    t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  }
  t.regex(await w.check(), /^PASS /);
  // the lazy-pages daemon refuses a page server --lazy-pages whose certificate is revoked:
  // the restore it serves is killed, and the daemon says why
  const images = tempDir(t);
  await dump({ pid: w.pid, imagesDir: images });
  await waitFor(`pid ${w.pid} to be free after the dump`, () => !existsSync(`/proc/${w.pid}`));
  const lazy = await pageServer(t, images, ["--lazy-pages", "--address", "127.0.0.1", ...p2.cert("server")]);
  const log = join(tempDir(t, "tscriu-lazylog-"), "lazy.log");
  const daemon = spawn(process.execPath, [CLI, "lazy-pages", "-D", images, "-o", log, "--page-server", "--address", "127.0.0.1", "--port", String(lazy.port), ...p2.cert("client"), "--tls-cacrl", c2.revoked], { stdio: "ignore" });
  t.teardown(() => {
    daemon.kill("SIGKILL");
  });
  const ended = new Promise<number | null>((resolve) => daemon.on("exit", resolve));
  await waitFor("the lazy-pages daemon to listen", () => unixListening(join(images, "lazy-pages.socket")));
  const restored = await restore({ imagesDir: images, lazyPages: true, detached: true }).catch((e: Error) => e);
  t.teardown(() => (restored instanceof Error ? undefined : killAndReap(restored.pid)));
  t.is(await ended, 1);
  t.regex(readFileSync(log, "utf8"), /the page server: .*revoked.*; the restored tree is killed/i);
  await waitFor(`pid ${w.pid} to be gone`, () => !existsSync(`/proc/${w.pid}`) || procState(w.pid) === "Z");
});

test.serial("--tls: tscriu to tscriu (dump and pre-dump), and with criu 4.1.1 both ways (a CA made here); a certificate of another CA or for another address is refused", async (t) => {
  const p = pki(tempDir(t, "tscriu-pki-"));
  const w = await startWorkload(t, "incr", ["8"], { static: true });
  const [local, remote] = [tempDir(t), tempDir(t)];
  const ps = await pageServer(t, remote, ["--address", "127.0.0.1", ...p.cert("server")]);
  const r = tscriu(["dump", "-R", "-t", String(w.pid), "-D", local, "--page-server", "--address", "127.0.0.1", "--port", String(ps.port), "-v4", ...p.cert("client")]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /TLS session set up, its certificate verified/);
  const s = await ps.done;
  t.is(s.code, 0, s.log);
  t.regex(s.log, /TLS session with 127\.0\.0\.1:\d+ set up/);

  // a pre-dump over TLS too
  const ps1 = await pageServer(t, tempDir(t), ["--address", "127.0.0.1", ...p.cert("server")]);
  const pre = tscriu(["pre-dump", "-t", String(w.pid), "-D", tempDir(t), "--page-server", "--address", "127.0.0.1", "--port", String(ps1.port), ...p.cert("client"), "--tls-no-cn-verify"], { env: { TSCRIU_TRACK_DIR: tempDir(t) } });
  t.is(pre.code, 0, pre.stderr);
  t.is((await ps1.done).code, 0);

  // a client certificate from another CA
  const other = pki(tempDir(t, "tscriu-pki2-"));
  const ps2 = await pageServer(t, tempDir(t), ["--address", "127.0.0.1", ...p.cert("server")]);
  const bad = tscriu(["dump", "-R", "-t", String(w.pid), "-D", tempDir(t), "--page-server", "--address", "127.0.0.1", "--port", String(ps2.port), "--tls", "--tls-cacert", p.ca, ...other.cert("client").slice(3)]);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /TLS/);
  const s2 = await ps2.done;
  t.is(s2.code, 1);
  t.regex(s2.log, /Error \(page-server\): TLS handshake: /);
  // a server certificate for another address: refused, unless --tls-no-cn-verify
  const elsewhere = pki(tempDir(t, "tscriu-pki3-"), "10.9.9.9");
  for (const [extra, ok] of [[[], false], [["--tls-no-cn-verify"], true]] as const) {
    const ps3 = await pageServer(t, tempDir(t), ["--address", "127.0.0.1", ...elsewhere.cert("server"), ...extra]);
    const d = tscriu(["dump", "-R", "-t", String(w.pid), "-D", tempDir(t), "--page-server", "--address", "127.0.0.1", "--port", String(ps3.port), ...elsewhere.cert("client"), ...extra]);
    t.is(d.code, ok ? 0 : 1, d.stderr);
    // each side checks the other's certificate against the page server's address, as criu:
    // whichever looks first says so, and the other sees the connection go
    const log = (await ps3.done).log;
    if (!ok) t.regex(`${d.stderr}\n${log}`, /TLS: the peer's certificate does not name 127\.0\.0\.1 \(--tls-no-cn-verify skips this check\)/);
  }
  t.regex(await w.check(), /^PASS /);

  if (!haveRoot(t)) return;
  const v41 = /^4\.1(\.|$)/.test(criuVersion());
  // tscriu → criu over TLS (no probe there: the layout is said)
  const into = tempDir(t);
  const cps = await pageServer(t, into, ["--address", "127.0.0.1", ...p.cert("server")], "criu");
  const kept = tempDir(t);
  const d = tscriu(["dump", "-t", String(w.pid), "-D", kept, "--page-server", "--address", "127.0.0.1", "--port", String(cps.port), ...p.cert("client")], { env: { TSCRIU_PAGE_SERVER_HEADERS: v41 ? "24" : "32" } });
  t.is(d.code, 0, d.stderr);
  t.is((await cps.done).code, 0);
  merge(kept, into);
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  await restoreTask(t, into);
  t.regex(await w.check(), /^PASS /);
  // criu → tscriu over TLS
  const into2 = tempDir(t);
  const ps4 = await pageServer(t, into2, ["--address", "127.0.0.1", ...p.cert("server")]);
  const c = await criuDumps(t, "incr", ["8"], `--page-server --address 127.0.0.1 --port ${ps4.port} ${p.cert("client").join(" ")}`);
  t.is(c.status, 0, c.stderr);
  const s4 = await ps4.done;
  t.is(s4.code, 0, s4.log);
  merge(c.images, into2);
  await restoreTask(t, into2);
  t.regex(await c.check(), /^PASS /);
});
