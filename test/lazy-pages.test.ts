// Lazy (post-copy) restores: `restore --lazy-pages` hands each task's userfaultfd to the
// lazy-pages daemon (orchestrator/lazy-pages/) over criu's socket, and the tasks run
// while their memory comes in. The workloads check every word of their memory on
// SIGUSR1, sent as soon as the restore returns, while pages are still missing: incr.c
// writes and gives back pages (MADV_DONTNEED) all along, lazyfork.c moves a region with
// mremap, forks a child that reads everything, and gives a MiB back. tscriu's daemon and
// restore against criu 4.1.1's (CI's root), both ways; a failed restore and a missing
// daemon.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, truncateSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { PAGE_SIZE } from "../images/pages.js";
import { PageFetcher } from "../orchestrator/page-server/fetch.js";
import { restore } from "../orchestrator/restore/restore.js";
import { CLI } from "./helpers/cli.js";
import { criuDumps, criuShell, haveRoot, runCriuShell } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { digest, dumpGone, restoreTask } from "./helpers/restore.js";
import { freePort, unixListening } from "./helpers/programs.js";
import { pki } from "./helpers/pki.js";
import { pycriu, pycriuInstalled } from "./helpers/pycriu.js";
import { bigmemWord, procState, RUNS_ON, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

interface Daemon {
  /** resolves when the daemon exits: its code and what it logged */
  done: Promise<{ code: number | null; log: string }>;
  /** what it logged so far */
  log(): string;
}

/** A lazy-pages daemon for `dir` (tscriu's or criu's; `extra`: more options, --page-server…), once its socket is there. */
async function lazyDaemon(t: ExecutionContext, dir: string, how: "tscriu" | "criu" = "tscriu", workDir?: string, extra: string[] = []): Promise<Daemon> {
  const log = join(tempDir(t, "tscriu-lazylog-"), "lazy.log");
  const c =
    how === "tscriu"
      ? spawn(process.execPath, [CLI, "lazy-pages", "-D", dir, "-v4", "-o", log, ...(workDir ? ["-W", workDir] : []), ...extra], { stdio: ["ignore", "ignore", "pipe"] })
      : (() => {
          const sh = criuShell(`exec criu lazy-pages -D ${dir} -v4 -o ${log} ${extra.join(" ")}`);
          return spawn(sh.cmd, sh.args, { stdio: ["ignore", "ignore", "pipe"], env: sh.env });
        })();
  // what it says before its log is open (a usage error, a crash) is in the failure
  let stderr = "";
  c.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  t.teardown(() => {
    c.kill("SIGKILL");
  });
  const read = (): string => (existsSync(log) ? readFileSync(log, "utf8") : "");
  const done = new Promise<{ code: number | null; log: string }>((resolve) => c.on("exit", (code) => resolve({ code, log: read() })));
  await waitFor(`the ${how} lazy-pages daemon to listen`, () => {
    if (c.exitCode !== null) throw new Error(`the daemon exited with ${c.exitCode}: ${read()}${stderr}`);
    return unixListening(join(workDir ?? dir, "lazy-pages.socket"));
  });
  return { done, log: read };
}

/** The daemon's end: exit 0, every page in. */
async function allIn(t: ExecutionContext, d: Daemon, how: "tscriu" | "criu" = "tscriu"): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("the lazy-pages daemon did not finish in 60 s")), 60_000)));
  const r = await Promise.race([d.done, late]).finally(() => clearTimeout(timer));
  t.is(r.code, 0, r.log.split("\n").slice(-5).join("\n"));
  if (how === "tscriu") t.regex(r.log, /all lazy pages in: \d+ pages/);
  else t.regex(r.log, /UFFD transferred pages: \((\d+)\/\1\)/);
}

/** Checks at once (pages still missing), then after the daemon is done. */
async function passesTwice(t: ExecutionContext, w: Pick<Workload, "pid" | "check"> & { results?: () => string[] }, d: Daemon, how: "tscriu" | "criu" = "tscriu"): Promise<void> {
  // what the daemon did last, and what the task wrote: a task that does not answer waits
  // on a fault, one that died or failed its check wrote why (lazyfork reports fatal signals)
  const context = (): string => `the ${how} daemon's log ends:\n${d.log().split("\n").slice(-25).join("\n")}\ntask state: ${procState(w.pid) ?? "gone"}\nits results: ${w.results?.().join("\n") ?? ""}`;
  const first = await w.check(30_000).catch((e: Error) => {
    throw new Error(`${e.message}; ${context()}`, { cause: e });
  });
  t.regex(first, /^PASS /, context());
  await allIn(t, d, how);
  t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  t.regex(await w.check(30_000), /^PASS /);
}

test.serial("restore --lazy-pages: 256 MiB written and given back (MADV_DONTNEED) all along comes in page by page, every page right", async (t) => {
  const w = await startWorkload(t, "incr", ["256", "1", "discard"]);
  const dir = await dumpGone(t, w);
  const d = await lazyDaemon(t, dir);
  const r = await restoreTask(t, dir, { lazyPages: true });
  t.is(r.pid, w.pid);
  await passesTwice(t, w, d);
  const log = (await d.done).log;
  t.regex(log, /the restore finished; the tasks run/);
  // the task gave pages back while they were missing: the daemon heard of it
  t.regex(log, /[1-9]\d* fork\/mremap\/munmap events/);
});

test.serial("a restore that hands the userfaultfd over before its VMAs are registered (criu's order): the daemon fills once the restore has finished, every page right", async (t) => {
  const w = await startWorkload(t, "lazyfork", ["64"]);
  const dir = await dumpGone(t, w);
  const d = await lazyDaemon(t, dir);
  // 300 ms between the handover and the registration (restore/memory.ts giveEarly): a
  // daemon filling at once would find the ranges unregistered and lose their pages
  process.env["TSCRIU_LAZY_HANDOFF"] = "early";
  try {
    await restoreTask(t, dir, { lazyPages: true });
  } finally {
    delete process.env["TSCRIU_LAZY_HANDOFF"];
  }
  // (a daemon that filled at once loses pages: the task reads zeros where its data was,
  // and fails its check or dies; zero pages as such are no sign, the task may touch
  // memory the images never held)
  await passesTwice(t, w, d);
});

test.serial("restore --lazy-pages: 1 GiB; a region moved by mremap, a forked child reading all of it, a MiB given back, while pages are missing", async (t) => {
  const w = await startWorkload(t, "lazyfork", ["1024"]);
  const dir = await dumpGone(t, w);
  const d = await lazyDaemon(t, dir);
  await restoreTask(t, dir, { lazyPages: true });
  await passesTwice(t, w, d);
  t.regex((await d.done).log, /forked/);
});

test.serial("restore --lazy-pages: a tree with zombies and a threaded task, each process with its own userfaultfd; -W: the socket in the work dir", async (t) => {
  for (const name of ["tree", "threads"]) {
    const w = await startWorkload(t, name);
    const dir = await dumpGone(t, w);
    const work = tempDir(t, "tscriu-lazywork-");
    const d = await lazyDaemon(t, dir, "tscriu", work);
    await restoreTask(t, dir, { lazyPages: true, workDir: work });
    await passesTwice(t, w, d);
    if (name === "tree") t.regex((await d.done).log, /is a zombie/);
  }
});

test.serial("restore --lazy-pages without a daemon is refused before anything is made; a restore failing after the handoff kills the tree and the daemon says so", async (t) => {
  const w = await startWorkload(t, "incr", ["16"]);
  const dir = await dumpGone(t, w);
  const before = digest(dir);
  const e = await t.throwsAsync(restore({ imagesDir: dir, lazyPages: true }));
  t.regex(e.message, /no lazy-pages daemon listens on .*lazy-pages\.socket/);
  t.false(existsSync(`/proc/${w.pid}`));
  t.deepEqual(digest(dir), before);

  const d = await lazyDaemon(t, dir);
  const e2 = await t.throwsAsync(restore({ imagesDir: dir, lazyPages: true, faults: "restore:registers" }));
  t.regex(e2.message, /registers/);
  const r = await d.done;
  t.is(r.code, 1);
  t.regex(r.log, /the restore closed the lazy-pages socket before it finished/);
  await waitFor(`pid ${w.pid} to be gone`, () => !existsSync(`/proc/${w.pid}`));
});

test.serial("lazy restores across tools: criu 4.1.1's daemon fills tscriu's restore, tscriu's daemon fills criu 4.1.1's; criu's images restored lazily by tscriu", async (t) => {
  if (!haveRoot(t)) return;
  // criu's dump (its PE_LAZY|PE_PRESENT runs), restored lazily by tscriu's restore and daemon
  {
    const c = await criuDumps(t, "lazyfork", ["64"]);
    t.is(c.status, 0, c.stderr);
    const d = await lazyDaemon(t, c.images);
    await restoreTask(t, c.images, { lazyPages: true });
    await passesTwice(t, c, d);
  }
  // criu's daemon serving tscriu's restore
  {
    const w = await startWorkload(t, "lazyfork", ["128"], { static: true });
    const dir = await dumpGone(t, w);
    const d = await lazyDaemon(t, dir, "criu");
    await restoreTask(t, dir, { lazyPages: true });
    await passesTwice(t, w, d, "criu");
  }
  // tscriu's daemon serving criu's restore (of tscriu's images)
  {
    const w = await startWorkload(t, "lazyfork", ["128"], { static: true });
    const dir = await dumpGone(t, w);
    const d = await lazyDaemon(t, dir);
    const r = runCriuShell(`criu restore -D ${dir} -d --lazy-pages -v4 -o restore.log`);
    t.is(r.status, 0, existsSync(join(dir, "restore.log")) ? readFileSync(join(dir, "restore.log"), "utf8").split("\n").slice(-5).join("\n") : r.stderr);
    t.teardown(() => {
      try {
        process.kill(w.pid, "SIGKILL");
      } catch {
        // gone
      }
    });
    await passesTwice(t, w, d);
  }
});

/** `dump --lazy-pages` serving on a port the kernel picks; resolves its port and end. */
async function lazyDump(t: ExecutionContext, pid: number, dir: string, extra: string[] = []): Promise<{ port: number; proc: ReturnType<typeof spawn>; done: Promise<{ code: number | null; log: string }> }> {
  const log = join(dir, "dump.log");
  const port = await freePort();
  const proc = spawn(process.execPath, [CLI, "dump", "-t", String(pid), "-D", dir, "-v4", "-o", log, "--lazy-pages", "--address", "127.0.0.1", "--port", String(port), ...extra], { stdio: "ignore" });
  t.teardown(() => {
    proc.kill("SIGKILL");
  });
  const read = (): string => (existsSync(log) ? readFileSync(log, "utf8") : "");
  const done = new Promise<{ code: number | null; log: string }>((resolve) => proc.on("exit", (code) => resolve({ code, log: read() })));
  await waitFor("the lazy dump to serve", () => {
    if (proc.exitCode !== null) throw new Error(`the dump exited with ${proc.exitCode}: ${read()}`);
    return /serving \d+ lazy pages/.test(read());
  }, 30_000);
  await waitFor(`pid ${pid} to be free after the dump`, () => !existsSync(`/proc/${pid}`));
  return { port, proc, done };
}

test.serial("post-copy: dump --lazy-pages serves, lazy-pages --page-server fetches (faults first), restore --lazy-pages runs the task at once; 256 MiB with fork, mremap and MADV_DONTNEED", async (t) => {
  const w = await startWorkload(t, "lazyfork", ["256"]);
  const dir = tempDir(t);
  const d = await lazyDump(t, w.pid, dir);
  const daemon = await lazyDaemon(t, dir, "tscriu", undefined, ["--page-server", "--address", "127.0.0.1", "--port", String(d.port)]);
  await restoreTask(t, dir, { lazyPages: true });
  await passesTwice(t, w, daemon);
  t.regex((await daemon.done).log, /[1-9]\d* from the page server/);
  const dumped = await d.done;
  t.is(dumped.code, 0, dumped.log.split("\n").slice(-3).join("\n"));
});

test.serial("post-copy: a page server lost in the middle kills the restored task and the daemon says why", async (t) => {
  const w = await startWorkload(t, "bigmem", ["1024"]);
  const dir = tempDir(t);
  const d = await lazyDump(t, w.pid, dir);
  const daemon = await lazyDaemon(t, dir, "tscriu", undefined, ["--page-server", "--address", "127.0.0.1", "--port", String(d.port)]);
  const r = await restore({ imagesDir: dir, lazyPages: true, detached: true });
  t.is(r.pid, w.pid);
  d.proc.kill("SIGKILL");
  const end = await daemon.done;
  t.is(end.code, 1);
  t.regex(end.log, /the page server.*; the restored tree is killed/);
  await waitFor(`pid ${w.pid} to be gone`, () => !existsSync(`/proc/${w.pid}`) || procState(w.pid) === "Z");
});

test.serial("post-copy over TLS with the daemon in the background: lazy-pages -d --pidfile --status-fd --tls (a CA made here)", async (t) => {
  const ca = pki(tempDir(t, "tscriu-pki-"));
  const tls = (who: string): string[] => ca.cert(who);
  const w = await startWorkload(t, "incr", ["64"]);
  const dir = tempDir(t);
  const d = await lazyDump(t, w.pid, dir, tls("server"));
  const work = tempDir(t, "tscriu-lazywork-");
  const pidfile = join(work, "lazy.pid");
  // -d: the foreground starts the daemon, writes --pidfile and exits 0; the daemon writes
  // --status-fd's byte once it listens
  const fg = spawn(process.execPath, [CLI, "lazy-pages", "-D", dir, "-W", work, "-d", "--pidfile", pidfile, "--status-fd", "3", "-v4", "-o", "lazy.log", "--page-server", "--address", "127.0.0.1", "--port", String(d.port), ...tls("client")], { stdio: ["ignore", "ignore", "pipe", "pipe"] });
  const ready = new Promise<Buffer>((resolve) => {
    const got: Buffer[] = [];
    fg.stdio[3]!.on("data", (b: Buffer) => got.push(b));
    fg.stdio[3]!.on("end", () => resolve(Buffer.concat(got)));
  });
  const code = await new Promise<number | null>((resolve) => fg.on("exit", resolve));
  t.is(code, 0);
  t.deepEqual(await ready, Buffer.from([0]));
  const daemonPid = Number(readFileSync(pidfile, "utf8"));
  t.teardown(() => {
    try {
      process.kill(daemonPid, "SIGKILL");
    } catch {
      // gone
    }
  });
  t.true(existsSync(`/proc/${daemonPid}`));
  await restoreTask(t, dir, { lazyPages: true, workDir: work });
  t.regex(await w.check(30_000), /^PASS /);
  await waitFor("the daemon to finish", () => !existsSync(`/proc/${daemonPid}`), 60_000);
  const log = readFileSync(join(work, "lazy.log"), "utf8");
  t.regex(log, /; TLS, the server's certificate verified/);
  t.regex(log, /all lazy pages in: \d+ pages/);
  t.regex(await w.check(30_000), /^PASS /);
  const dumped = await d.done;
  t.is(dumped.code, 0, dumped.log.split("\n").slice(-3).join("\n"));
});

/** `tscriu page-server --lazy-pages` serving the dump in `dir` on a port the kernel picks, once it listens. */
async function lazyPageServer(t: ExecutionContext, dir: string, extra: string[] = []): Promise<{ port: number; done: Promise<{ code: number | null; log: string }> }> {
  const log = join(tempDir(t, "tscriu-pslog-"), "ps.log");
  const port = await freePort();
  const proc = spawn(process.execPath, [CLI, "page-server", "--lazy-pages", "-D", dir, "-v4", "-o", log, "--address", "127.0.0.1", "--port", String(port), ...extra], { stdio: "ignore" });
  t.teardown(() => {
    proc.kill("SIGKILL");
  });
  const read = (): string => (existsSync(log) ? readFileSync(log, "utf8") : "");
  const done = new Promise<{ code: number | null; log: string }>((resolve) => proc.on("exit", (code) => resolve({ code, log: read() })));
  await waitFor("the lazy page server to listen", () => {
    if (proc.exitCode !== null) throw new Error(`the page server exited with ${proc.exitCode}: ${read()}`);
    return /serving \d+ lazy pages of pid/.test(read());
  });
  return { port, done };
}

test.serial("page-server --lazy-pages: a dump on disk served to tscriu's lazy-pages daemon, then to criu 4.1.1's; the task runs on at once, every page right", async (t) => {
  const w = await startWorkload(t, "lazyfork", ["256"], { static: true });
  for (const how of ["tscriu", "criu"] as const) {
    if (how === "criu" && !haveRoot(t)) return;
    const dir = await dumpGone(t, w);
    const ps = await lazyPageServer(t, dir);
    const d = await lazyDaemon(t, dir, how, undefined, ["--page-server", "--address", "127.0.0.1", "--port", String(ps.port)]);
    await restoreTask(t, dir, { lazyPages: true });
    await passesTwice(t, w, d, how);
    if (how === "tscriu") t.regex((await d.done).log, /[1-9]\d* from the page server/);
    const served = await ps.done;
    t.is(served.code, 0, served.log.split("\n").slice(-3).join("\n"));
    t.regex(served.log, /lazy pages: session with 127\.0\.0\.1:\d+ over: [1-9]\d* pages sent/);
  }
});

test.serial("page-server --lazy-pages refuses images without the lazy pages' data and --auto-dedup; a GET for a page not held or a pages file cut short ends the session naming peer, file and offset", async (t) => {
  const w = await startWorkload(t, "bigmem", ["16"]);
  const mem = BigInt(w.addr("mem"));
  // a dump --lazy-pages leaves no data in the images: refused before listening
  {
    const dir = tempDir(t);
    const d = await lazyDump(t, w.pid, dir);
    const r = spawnSync(process.execPath, [CLI, "page-server", "--lazy-pages", "-D", dir, "--port", String(await freePort())], { encoding: "utf8" });
    t.is(r.status, 1);
    t.regex(r.stderr, new RegExp(`pagemap-${w.pid}\\.img: the lazy pages at 0x[0-9a-f]+ have no data in these images`));
    // the dump still serves its daemon: it restores from there
    const daemon = await lazyDaemon(t, dir, "tscriu", undefined, ["--page-server", "--address", "127.0.0.1", "--port", String(d.port)]);
    await restoreTask(t, dir, { lazyPages: true });
    await allIn(t, daemon);
    t.is((await d.done).code, 0);
  }
  const dir = await dumpGone(t, w);
  const r = spawnSync(process.execPath, [CLI, "page-server", "--lazy-pages", "--auto-dedup", "-D", dir, "--port", String(await freePort())], { encoding: "utf8" });
  t.is(r.status, 1);
  t.regex(r.stderr, /--auto-dedup is for receiving a dump, not for --lazy-pages/);
  // a page no lazy run holds
  let ps = await lazyPageServer(t, dir);
  let f = await PageFetcher.connect({ address: "127.0.0.1", port: ps.port });
  await t.throwsAsync(f.get(w.pid, 0x1000n, 1), { message: /closed the connection with 1 requests unanswered/ });
  let end = await ps.done;
  t.is(end.code, 1);
  t.regex(end.log, new RegExp(`lazy pages: 127\\.0\\.0\\.1:\\d+, PS_IOV_GET: pid ${w.pid}, 0x1000, 1 pages: pid ${w.pid} holds no lazy page at 0x1000`));
  // the pages file cut short once the server has read the pagemap
  ps = await lazyPageServer(t, dir);
  f = await PageFetcher.connect({ address: "127.0.0.1", port: ps.port });
  const first = await f.get(w.pid, mem, 1);
  t.is(first.nrPages, 1);
  t.is(first.data.readBigUInt64LE(8), bigmemWord(1));
  const pages = readdirSync(dir).filter((n) => /^pages-\d+\.img$/.test(n));
  t.is(pages.length, 1);
  truncateSync(join(dir, pages[0]!), 8192);
  await t.throwsAsync(f.get(w.pid, mem + BigInt(4 * PAGE_SIZE), 1024));
  end = await ps.done;
  t.is(end.code, 1);
  t.regex(end.log, new RegExp(`PS_IOV_GET: pid ${w.pid}, 0x[0-9a-f]+: \\S*/${pages[0]!.replace(".", "\\.")}: \\d+ of \\d+ bytes read at offset \\d+ \\(the file was cut short`));
});

test.serial("RPC: pycriu's PAGE_SERVER with lazy_pages serves a dump on disk; the lazy-pages daemon fetches from it, the task runs on", async (t) => {
  pycriuInstalled(t);
  const w = await startWorkload(t, "incr", ["32"]);
  const dir = await dumpGone(t, w);
  const ps = pycriu(`swrk:${CLI}`, ["req", "PAGE_SERVER", JSON.stringify({ images_dir: `fd:${dir}`, lazy_pages: true, log_file: "ps.log", log_level: 4, ps: { address: "127.0.0.1", port: 0 } })]);
  t.like(ps, { success: true, type: "PAGE_SERVER" });
  const { pid, port } = ps["ps"] as { pid: number; port: number };
  t.teardown(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  });
  const d = await lazyDaemon(t, dir, "tscriu", undefined, ["--page-server", "--address", "127.0.0.1", "--port", String(port)]);
  await restoreTask(t, dir, { lazyPages: true });
  await passesTwice(t, w, d);
  await waitFor(`the page server ${pid} to exit`, () => !existsSync(`/proc/${pid}`) || procState(pid) === "Z");
  t.regex(readFileSync(join(dir, "ps.log"), "utf8"), /lazy pages: session with 127\.0\.0\.1:\d+ over: [1-9]\d* pages sent/);
});
