// dump of the counter workload: the images are complete (every file decodes with
// tscriu and with Debian's crit), hold what the task had (memory pattern at its
// address, the PROT_NONE page, the SIGUSR1 handler, fds 0-2, registers), and the
// task's final state is as asked: running (-R), stopped (-s) or killed (default).
import { existsSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { openImageDir } from "../images/dir.js";
import { readImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { critDecodeAll, critInstalled, critJson, freshDir, tempDir } from "./helpers/dump.js";
import { counterAdvances, patternBytes, patternWord, procState, startWorkload, waitFor } from "./helpers/workloads.js";

const EXPECTED = ["core", "fdinfo-2.img", "files.img", "fs", "ids", "inventory.img", "mm", "pagemap", "pages-1.img", "pstree.img", "seccomp.img", "stats-dump", "timens-0.img"];

test("dump -R: images decode with tscriu and crit, memory and state read back, the task runs on", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const res = await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  t.true(res.stats.pages_written > 0n);
  for (const name of EXPECTED) t.true(res.files.some((f) => f.includes(`/${name}`)), `${name} written`);

  if (critInstalled(t)) {
    const crit = critDecodeAll(dir);
    t.deepEqual(crit.failed, []);
    t.true(crit.decoded.length >= 12);
  }

  const img = await openImageDir(dir);
  t.teardown(() => img.close());
  const [task] = await img.tasks();
  t.is(task?.pid, w.pid);
  const pages = await img.pages(w.pid);
  const pattern = w.addr("pattern");
  t.deepEqual(Buffer.from(await pages.read(pattern, 8 * 4096)), patternBytes(0, 8 * 4096), "the pattern pages at their address");
  const secret = Buffer.from(await pages.read(w.addr("secret"), 16));
  t.is(secret.readBigUInt64LE(0), BigInt.asUintN(64, ~patternWord(0)), "the PROT_NONE page was read through /proc/PID/mem");

  const core = await img.core(w.pid);
  const tc = core.tc!;
  t.is(tc.comm, "counter");
  const usr1 = tc.sigactions![8]!; // signal 10 (SIGKILL is not in the list)
  t.is(usr1.sigaction, BigInt(w.addr("handler")), "SIGUSR1 handler");
  t.is(tc.sigactions!.length, 62);
  t.is(core.thread_info!.gpregs.cs, 0x33n);
  t.true(core.thread_info!.fpregs.xsave !== undefined);
  // Every run counts its pages twice: nr_pages for criu 4.2, compat_nr_pages for criu up to 4.1.
  const pagemap = (await readImage(join(dir, `pagemap-${w.pid}.img`))).entries.slice(1);
  t.true(pagemap.length > 3);
  for (const e of pagemap) t.is(BigInt(e["compat_nr_pages"] as number), e["nr_pages"] as bigint);
  const mm = await img.mm(w.pid);
  // the kernel may merge the region with an anonymous neighbour: the VMA that holds it
  const vma = mm.vmas!.find((v) => v.start <= BigInt(pattern) && BigInt(pattern) + 8n * 4096n <= v.end);
  t.truthy(vma, "the pattern VMA is in mm");
  const fds = await img.fdinfo(w.pid);
  const files = await img.files();
  // fds 0-2, and fd 3 only when the dump caught the workload writing its counter (it
  // holds counter.tmp open for a moment at every count).
  const extra = fds.filter((f) => f.fd > 2).map((f) => files.get(f.id)?.reg?.name);
  t.deepEqual(fds.filter((f) => f.fd <= 2).map((f) => f.fd), [0, 1, 2]);
  t.true(extra.length === 0 || (extra.length === 1 && extra[0] === join(w.dir, "counter.tmp")), `unexpected fds: ${extra.join(", ")}`);
  t.is(files.get(fds[0]!.id)?.reg?.name, "/dev/null");
  t.is(files.get(mm.exe_file_id)?.reg?.name, join(process.cwd(), "test/workloads/bin/counter"));

  // crit reads the same core
  if (critInstalled(t)) {
    const cj = critJson(join(dir, `core-${w.pid}.img`)).entries[0] as { tc: { comm: string } };
    t.is(cj.tc.comm, "counter");
  }

  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
});

test("dump without -R kills the task after the images are complete; -s leaves it stopped", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = freshDir(t);
  await dump({ pid: w.pid, imagesDir: dir });
  t.true(existsSync(join(dir, "inventory.img")));
  await waitFor("the dumped task to be gone", () => !existsSync(`/proc/${w.pid}`) || procState(w.pid) === "Z");
  if (critInstalled(t)) t.deepEqual(critDecodeAll(dir).failed, []);

  const w2 = await startWorkload(t, "counter");
  await dump({ pid: w2.pid, imagesDir: tempDir(t), leaveStopped: true });
  await waitFor("the task to sit in a stop", () => procState(w2.pid) === "T");
  const before = w2.counter();
  process.kill(w2.pid, "SIGCONT");
  await waitFor("the task to count on after SIGCONT", () => w2.counter() > before);
  t.regex(await w2.check(), /^PASS/);
});
