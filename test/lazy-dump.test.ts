// dump --lazy-pages (orchestrator/page-server/lazy-serve.ts) and the client a lazy-pages
// daemon fetches with (orchestrator/page-server/fetch.ts): the lazy VMAs' pages stay out
// of the images as PE_LAZY entries, are held by the dump once the task is gone, and are
// served in criu's protocol until the daemon closes. The workload (test/workloads/bigmem.c)
// fills its memory with a pattern of each word's index, so every fetched byte is checked.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage } from "../images/io.js";
import { findRun, PageReader, PE_LAZY, PE_PRESENT, readPagemap, type PageRun } from "../images/pages.js";
import { PageFetcher } from "../orchestrator/page-server/fetch.js";
import { decodeHeader, encodeHeader, PS_IOV, type Layout } from "../orchestrator/page-server/wire.js";
import { CLI, tscriu } from "./helpers/cli.js";
import { criuLogTail, criuShell, haveRoot } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { pki } from "./helpers/pki.js";
import { bigmemWord, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

const PAGE = 4096;

interface LazyDump {
  dir: string;
  port: number;
  /** resolves when the dump exits: its code, stdout and log */
  done: Promise<{ code: number | null; stdout: string; log: string }>;
}

/** `tscriu dump --lazy-pages` of w on a port the kernel picks, once it is ready to serve. */
async function lazyDump(t: ExecutionContext, w: Workload, extra: string[] = []): Promise<LazyDump> {
  const dir = tempDir(t, "tscriu-lazy-");
  const log = join(dir, "dump.log");
  const c = spawn(CLI, ["dump", "-t", String(w.pid), "-D", dir, "--lazy-pages", "--address", "127.0.0.1", "--port", "0", "-v4", "-o", log, "--display-stats", ...extra], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  t.teardown(() => {
    c.kill("SIGKILL");
  });
  const done = new Promise<{ code: number | null; stdout: string; log: string }>((resolve) => c.on("exit", (code) => resolve({ code, stdout, log: existsSync(log) ? readFileSync(log, "utf8") : stderr })));
  const port = await waitFor(
    "the lazy dump to serve",
    () => {
      if (c.exitCode !== null) throw new Error(`the dump exited with ${c.exitCode}: ${stderr} ${existsSync(log) ? readFileSync(log, "utf8") : ""}`);
      const m = /serving \d+ lazy pages on 127\.0\.0\.1 port (\d+)/.exec(stderr);
      return m ? Number(m[1]) : undefined;
    },
    30_000,
  );
  return { dir, port, done };
}

test.serial("dump --lazy-pages: lazy runs are PE_LAZY without data; every lazy page fetched equals the task's memory at the freeze; the dump exits 0 after the close", async (t) => {
  const w = await startWorkload(t, "bigmem", ["64"]);
  const mem = BigInt(w.addr("mem"));
  const len = 64n << 20n;
  // the same state dumped the ordinary way, for the pages outside the pattern
  const plain = tempDir(t);
  const p = tscriu(["dump", "-R", "-t", String(w.pid), "-D", plain]);
  t.is(p.code, 0, p.stderr);
  const d = await lazyDump(t, w);
  // the task was killed before the pages were served: they come from the dump's memory
  await waitFor(`pid ${w.pid} to be gone`, () => !existsSync(`/proc/${w.pid}`));
  const pm = await readPagemap(d.dir, `pagemap-${w.pid}.img`);
  const lazy = pm.runs.filter((r) => r.flags & PE_LAZY);
  t.true(lazy.length > 0);
  t.true(lazy.every((r) => r.flags === PE_LAZY), "lazy runs have no PE_PRESENT");
  t.true(pm.runs.every((r) => r.flags === PE_LAZY || r.flags === PE_PRESENT));
  const present = pm.runs.filter((r) => r.flags & PE_PRESENT).reduce((n, r) => n + r.nrPages, 0);
  t.is(statSync(join(d.dir, `pages-${pm.pagesId}.img`)).size, present * PAGE, "the pages image holds the non-lazy pages only");
  const region = lazy.find((r) => r.vaddr <= mem && mem + len <= r.vaddr + BigInt(r.nrPages * PAGE));
  t.truthy(region, "the 64 MiB region is one lazy run");
  // the page under the stack pointer is not lazy (criu's is_stack, as meant), in both dumps
  for (const dir of [d.dir, plain]) {
    const core = (await readImage(join(dir, `core-${w.pid}.img`))).entries[0] as { thread_info: { gpregs: { sp: bigint } } };
    const spPage = core.thread_info.gpregs.sp & ~BigInt(PAGE - 1);
    const runs = (await readPagemap(dir, `pagemap-${w.pid}.img`)).runs;
    t.is(runs.find((r) => r.vaddr <= spPage && spPage < r.vaddr + BigInt(r.nrPages * PAGE))?.flags, PE_PRESENT, `the stack pointer's page in ${dir}`);
  }

  const f = await PageFetcher.connect({ address: "127.0.0.1", port: d.port });
  const fetched = new Map<bigint, Buffer>();
  // many in flight, 256 pages a request; a short answer is asked again from where it stopped
  const want = async (r: PageRun): Promise<void> => {
    let at = r.vaddr;
    const end = r.vaddr + BigInt(r.nrPages * PAGE);
    while (at < end) {
      const asks: Promise<{ vaddr: bigint; nrPages: number; data: Buffer }>[] = [];
      for (let a = at; a < end && asks.length < 64; a += 256n * BigInt(PAGE)) asks.push(f.get(w.pid, a, Math.min(256, Number((end - a) / BigInt(PAGE)))));
      const got = await Promise.all(asks);
      let next = at;
      for (const g of got) {
        t.is(g.data.length, g.nrPages * PAGE);
        if (g.vaddr !== next) break;
        fetched.set(g.vaddr, g.data);
        next = g.vaddr + BigInt(g.nrPages * PAGE);
      }
      at = next;
    }
  };
  for (const r of lazy) await want(r);
  t.is([...fetched.values()].reduce((n, b) => n + b.length, 0), lazy.reduce((n, r) => n + r.nrPages, 0) * PAGE, "every lazy page fetched once");
  // the pattern region, word by word
  let bad = 0;
  for (const [va, b] of fetched) {
    for (let off = 0; off < b.length; off += PAGE) {
      const a = va + BigInt(off);
      if (a < mem || a >= mem + len) continue;
      const first = Number((a - mem) / 8n);
      for (let k = 0; k < PAGE; k += 512) if (b.readBigUInt64LE(off + k) !== bigmemWord(first + k / 8)) bad++;
    }
  }
  t.is(bad, 0, "the 64 MiB region as written");
  // the others (heap, stack, libc's data…) as the plain dump of the same sleeping task
  // holds them; but the page it did not have yet, and the page of its rseq area, where the
  // kernel writes the CPU the task runs on whenever it moves
  const reader = await PageReader.open(plain, `pagemap-${w.pid}.img`);
  t.teardown(() => reader.close());
  const core = (await readImage(join(d.dir, `core-${w.pid}.img`))).entries[0] as { thread_core: { rseq_entry?: { rseq_abi_pointer: bigint } } };
  const rseqPage = (core.thread_core.rseq_entry?.rseq_abi_pointer ?? 0n) & ~BigInt(PAGE - 1);
  let other = 0;
  for (const [va, b] of fetched) {
    for (let off = 0; off < b.length; off += PAGE) {
      const a = va + BigInt(off);
      if ((a >= mem && a < mem + len) || a === rseqPage || !((findRun(reader.pagemap.runs, a)?.flags ?? 0) & PE_PRESENT)) continue;
      other++;
      t.deepEqual(Buffer.from(await reader.read(a, PAGE)), b.subarray(off, off + PAGE), `the lazy page at 0x${a.toString(16)}`);
    }
  }
  t.true(other > 0);
  // partial answers: a request past the end of a lazy run gets the run's tail only
  const tail = await f.get(w.pid, region!.vaddr + BigInt((region!.nrPages - 2) * PAGE), 10);
  t.is(tail.nrPages, 2);
  await f.close();
  t.is(await f.lost, undefined);
  const r = await d.done;
  t.is(r.code, 0, r.log);
  t.regex(r.log, /lazy pages: session with 127\.0\.0\.1:\d+ over/);
  const lazyPages = lazy.reduce((n, x) => n + x.nrPages, 0);
  t.regex(r.stdout, new RegExp(`Lazy memory pages: ${lazyPages} `));
});

test.serial("dump --lazy-pages: a GET for a page not held, a lost connection and hostile headers end the session with an error naming the peer; no crash", async (t) => {
  const w = await startWorkload(t, "bigmem", ["4"]);
  const mem = BigInt(w.addr("mem"));
  // each session ends the dump: -R keeps the task for the next one
  const session = async (): Promise<LazyDump> => lazyDump(t, w, ["-R"]);

  // a page no lazy run holds: the fetcher's request fails, the dump fails naming pid and address
  let d = await session();
  let f = await PageFetcher.connect({ address: "127.0.0.1", port: d.port, layout: 32 });
  await t.throwsAsync(f.get(w.pid, 0x1000n, 1), { message: /closed the connection with 1 requests unanswered/ });
  let r = await d.done;
  t.is(r.code, 1);
  t.regex(r.log, new RegExp(`lazy pages: 127\\.0\\.0\\.1:\\d+, PS_IOV_GET: pid ${w.pid}, 0x1000, 1 pages: pid ${w.pid} holds no lazy page at 0x1000`));

  // the daemon goes away without PS_IOV_CLOSE
  d = await session();
  f = await PageFetcher.connect({ address: "127.0.0.1", port: d.port });
  t.is((await f.get(w.pid, mem, 1)).nrPages, 1);
  f.destroy();
  t.regex((await f.lost)!.message, /dropped/);
  r = await d.done;
  t.is(r.code, 1);
  t.regex(r.log, /the connection closed without PS_IOV_CLOSE after 1 answers \(1 of \d+ lazy pages sent\)/);

  // raw headers: a pid not dumped, an unknown command, half a header, 0 pages; a huge count is answered with the run
  const raw = async (bytes: Buffer, answer = 0): Promise<{ code: number | null; log: string; got: Buffer }> => {
    const s = await session();
    const sock = connect(s.port, "127.0.0.1");
    const chunks: Buffer[] = [];
    sock.on("data", (b: Buffer) => chunks.push(b));
    sock.on("error", () => undefined);
    sock.write(bytes);
    if (answer) await waitFor("the answer", () => Buffer.concat(chunks).length >= answer || undefined);
    sock.end();
    const res = await s.done;
    sock.destroy();
    return { ...res, got: Buffer.concat(chunks) };
  };
  const get = (layout: Layout, pid: number, vaddr: bigint, n: bigint): Buffer => encodeHeader(layout, { cmd: PS_IOV.GET, flags: 0, nrPages: n, vaddr, dstId: BigInt(pid) });
  for (const [what, bytes, re] of [
    ["a pid not dumped", get(32, 1, mem, 1n), /PS_IOV_GET: pid 1, 0x[0-9a-f]+: pid 1 is not a task of this dump/],
    ["an unknown command", encodeHeader(24, { cmd: 0x77, flags: 0, nrPages: 1n, vaddr: mem, dstId: BigInt(w.pid) }), /command 0x77: not a command a lazy-pages server answers/],
    ["half a header", get(24, w.pid, mem, 1n).subarray(0, 12), /the connection closed after 12 bytes of a header/],
    ["0 pages", get(24, w.pid, mem, 0n), /0 pages asked/],
  ] as const) {
    const x = await raw(bytes);
    t.is(x.code, 1, what);
    t.regex(x.log, re, what);
  }
  // 2^40 pages asked at the region's start: answered with the 4 MiB run, then the close
  const huge = Buffer.concat([get(32, w.pid, mem, 1n << 40n), encodeHeader(32, { cmd: PS_IOV.CLOSE, flags: 0, nrPages: 0n, vaddr: 0n, dstId: 0n })]);
  const x = await raw(huge, 32 + (4 << 20) + 4);
  t.is(x.code, 0, x.log);
  const h = decodeHeader(32, x.got);
  t.like(h, { cmd: PS_IOV.ADD_F, flags: PE_PRESENT, vaddr: mem, dstId: BigInt(w.pid) });
  t.true(h.nrPages >= 1024n && h.nrPages < 1n << 20n, `${h.nrPages} pages`);
});

test.serial("dump --lazy-pages --tls: fetched over TLS with a CA made here; --status-fd's byte comes when it listens", async (t) => {
  const w = await startWorkload(t, "bigmem", ["4"]);
  const mem = BigInt(w.addr("mem"));
  const ca = pki(tempDir(t, "tscriu-pki-"));
  const d = await lazyDump(t, w, ["-R", ...ca.cert("server")]);
  const f = await PageFetcher.connect({ address: "127.0.0.1", port: d.port, tls: { cacert: ca.ca, ...ca.files("client") } });
  t.is(f.layout, 32);
  const asks = Array.from({ length: 16 }, (_, i) => f.get(w.pid, mem + BigInt(i * 64 * PAGE), 64));
  for (const [i, g] of (await Promise.all(asks)).entries()) {
    t.is(g.nrPages, 64);
    t.is(g.data.readBigUInt64LE(8), bigmemWord(i * 64 * 512 + 1));
    t.is(g.data.readBigUInt64LE(g.data.length - 8), bigmemWord((i + 1) * 64 * 512 - 1));
  }
  await f.close();
  const r = await d.done;
  t.is(r.code, 0, r.log);
  t.regex(r.log, /TLS session with 127\.0\.0\.1:\d+ set up/);

  // --status-fd: a pipe's write end as fd 3 of the dump; its byte arrives once the dump is done
  const log = join(tempDir(t), "dump.log");
  const c = spawn(CLI, ["dump", "-R", "-t", String(w.pid), "-D", tempDir(t), "--lazy-pages", "--address", "127.0.0.1", "--port", "0", "--status-fd", "3", "-v4", "-o", log], { stdio: ["ignore", "ignore", "pipe", "pipe"] });
  t.teardown(() => void c.kill("SIGKILL"));
  const ready = await new Promise<Buffer>((resolve, reject) => {
    c.stdio[3]!.once("data", resolve);
    c.once("exit", (code) => reject(new Error(`the dump exited with ${code} before its ready byte: ${existsSync(log) ? readFileSync(log, "utf8") : ""}`)));
  });
  t.deepEqual([...ready], [0]);
  const port = Number(/lazy pages will be served on 127\.0\.0\.1 port (\d+)/.exec(readFileSync(log, "utf8"))?.[1]);
  const f2 = await PageFetcher.connect({ address: "127.0.0.1", port });
  t.is(f2.layout, 24, "the probe: tscriu's server reads the layout it is spoken to in");
  t.is((await f2.get(w.pid, mem, 1)).nrPages, 1);
  await f2.close();
  t.is(await new Promise((resolve) => c.on("exit", resolve)), 0);
});

test("dump --lazy-pages refuses what it does not combine with, by name, before touching the task", (t) => {
  const dir = tempDir(t);
  const r = tscriu(["dump", "-t", String(process.pid), "-D", dir, "--lazy-pages", "--page-server", "--port", "1234"]);
  t.is(r.code, 1);
  t.regex(r.stderr, /--lazy-pages with --page-server is not supported yet by tscriu/);
  const s = tscriu(["dump", "-t", String(process.pid), "-D", dir, "--status-fd", "3"]);
  t.is(s.code, 1);
  t.regex(s.stderr, /--status-fd is for --lazy-pages/);
});

test.serial("criu 4.1.1's lazy-pages daemon and restore --lazy-pages restore tscriu's dump --lazy-pages: the task passes its own check and runs on", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "incr", ["16"], { static: true });
  const d = await lazyDump(t, w);
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  const sh = criuShell(
    [
      `criu lazy-pages --page-server --address 127.0.0.1 --port ${d.port} -D ${d.dir} -v4 -o lazy-pages.log &`,
      `for i in $(seq 100); do [ -S ${d.dir}/lazy-pages.socket ] && break; sleep 0.05; done`,
      `criu restore --lazy-pages -D ${d.dir} -v4 -o restore.log -d || exit 1`,
      "wait",
    ].join("\n"),
  );
  const c = spawnSync(sh.cmd, sh.args, { encoding: "utf8", env: sh.env, timeout: 60_000 });
  t.is(c.status, 0, `${c.stderr}\n${criuLogTail(d.dir)}\n${criuLogTail(d.dir, "lazy-pages.log")}`);
  t.regex(await w.check(), /^PASS /);
  const r = await d.done;
  t.is(r.code, 0, r.log);
  t.regex(r.log, /lazy pages: 127\.0\.0\.1:\d+ speaks 24-byte headers/);
  t.regex(r.log, /session with 127\.0\.0\.1:\d+ over: \d+ pages sent/);
  const writes = async (): Promise<number> => Number(/writes=(\d+)/.exec(await w.check())?.[1]);
  const first = await writes();
  const deadline = Date.now() + 10_000;
  while ((await writes()) <= first) {
    if (Date.now() > deadline) return t.fail(`the restored task (pid ${w.pid}) wrote nothing in 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
});
