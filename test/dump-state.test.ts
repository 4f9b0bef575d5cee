// Each kind of state a dump saves, one workload each, read back from the images
// through the library API; every workload keeps running (-R) and passes its own check.
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { openImageDir } from "../images/dir.js";
import { readImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { critDecodeAll, critInstalled, tempDir } from "./helpers/dump.js";
import { RUNS_ON, startWorkload, waitFor } from "./helpers/workloads.js";

const PAGE = 4096;
const VMA = { FILE_PRIVATE: 1 << 6, FILE_SHARED: 1 << 7, ANON_PRIVATE: 1 << 9, MEMFD: 1 << 14 };

test("memory: private/shared anonymous, PROT_NONE, read-only, file private/shared, deleted file", async (t) => {
  const w = await startWorkload(t, "memkinds");
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  if (critInstalled(t)) t.deepEqual(critDecodeAll(dir).failed, []);
  const img = await openImageDir(dir);
  t.teardown(() => img.close());
  const mm = await img.mm(w.pid);
  const files = await img.files();
  const vmaAt = (key: string) => mm.vmas!.find((v) => v.start === BigInt(w.addr(key)))!;
  const pages = await img.pages(w.pid);

  const anon = w.addr("anon");
  const page5 = Buffer.from(await pages.read(anon + 5 * PAGE, 16));
  t.is(page5.readBigUInt64LE(8), 0xa5a5000000000000n | BigInt(5 * PAGE + 8), "patterned anonymous page");
  const runs = pages.pagemap.runs.filter((r) => r.vaddr >= BigInt(anon) && r.vaddr < BigInt(anon + 64 * PAGE));
  t.is(runs.reduce((s, r) => s + r.nrPages, 0), 16 + 12, "untouched pages are not dumped");
  t.is(vmaAt("guard").prot, 0, "PROT_NONE guard kept");
  t.false(pages.pagemap.runs.some((r) => r.vaddr === BigInt(w.addr("guard"))), "no pages for the never-touched guard");
  t.is(Buffer.from(await pages.read(w.addr("ro"), 4)).toString(), "RRRR");
  t.is(vmaAt("ro").prot, 1);

  const sh = vmaAt("shanon");
  t.is(sh.status & (VMA.FILE_SHARED | VMA.MEMFD), VMA.FILE_SHARED | VMA.MEMFD, "shared anonymous as memfd");
  const memfd = files.get(Number(sh.shmid))!;
  t.is(memfd.type, "MEMFD");
  const inode = (await readImage(join(dir, "memfd.img"))).entries[0]!;
  t.is(inode["name"], "/dev/zero");
  const shm = await (await import("../images/pages.js")).PageReader.open(dir, `pagemap-shmem-${String(inode["shmid"])}.img`);
  t.teardown(() => shm.close());
  const shbytes = Buffer.from(await shm.read(0, 4 * PAGE));
  t.true(shbytes.every((b, i) => b === (0x5a ^ (i & 0xff))), "shared anonymous contents");

  const fp = vmaAt("fpriv");
  t.is(fp.status & VMA.FILE_PRIVATE, VMA.FILE_PRIVATE);
  t.is(files.get(Number(fp.shmid))?.reg?.name, join(w.dir, "private.dat"));
  t.true(pages.pagemap.runs.some((r) => r.vaddr === BigInt(w.addr("fpriv") + PAGE)), "the copy-on-written page is dumped");
  t.false(pages.pagemap.runs.some((r) => r.vaddr === BigInt(w.addr("fpriv"))), "the page only read is not");
  t.is(Buffer.from(await pages.read(w.addr("fpriv") + PAGE, 3)).toString(), "PPP");
  const fs = vmaAt("fshared");
  t.is(fs.status & VMA.FILE_SHARED, VMA.FILE_SHARED);
  t.false(pages.pagemap.runs.some((r) => r.vaddr >= BigInt(w.addr("fshared")) && r.vaddr < BigInt(w.addr("fshared") + 4 * PAGE)));

  const del = vmaAt("fdel");
  const delFile = files.get(Number(del.shmid))!;
  t.is(delFile.reg?.name, join(w.dir, "deleted.dat"));
  const remap = (await readImage(join(dir, "remap-fpath.img"))).entries[0]!;
  t.is(remap["orig_id"], delFile.id);
  t.is(remap["remap_type"], "GHOST");
  const [head, ...chunks] = (await readImage(join(dir, `ghost-file-${Number(remap["remap_id"]).toString(16)}.img`))).entries;
  // Four pages: criu's chunked layout (ghost_chunk_entry + data), from 3 pages on.
  t.is(head!["chunks"], true);
  const first = chunks.find((c) => c["off"] === 0n || c["off"] === 0)!;
  t.is(Buffer.from(first.extra as Uint8Array).subarray(0, 4).toString(), "dddd", "the unlinked file's contents");
  t.is(Buffer.from(await pages.read(w.addr("fdel") + 3 * PAGE, 2)).toString(), "DD");

  t.truthy(mm.vmas!.find((v) => (v.status & (1 << 12)) !== 0), "[vvar] region");
  t.truthy(mm.vmas!.find((v) => (v.status & (1 << 3)) !== 0), "[vdso]");
  t.truthy(mm.vmas!.find((v) => (v.status & (1 << 5)) !== 0), "[heap]");
  t.truthy(mm.vmas!.find((v) => (v.flags & 0x100) !== 0), "the growsdown stack");
  t.regex(await w.check(), /^PASS/);
});

test("files: regular with flags and offsets, /dev/zero, pipe and FIFO data, dup, ghost", async (t) => {
  const w = await startWorkload(t, "fdkinds");
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  if (critInstalled(t)) t.deepEqual(critDecodeAll(dir).failed, []);
  const img = await openImageDir(dir);
  const fds = new Map((await img.fdinfo(w.pid)).map((f) => [f.fd, f]));
  const files = await img.files();
  const reg = (fd: number) => files.get(fds.get(fd)!.id)!;
  t.like(reg(10).reg, { name: join(w.dir, "rw.dat"), pos: 37n, flags: 0o100002, size: 100n });
  t.like(reg(11).reg, { name: join(w.dir, "append.log"), pos: 14n, flags: 0o102001 });
  t.is(reg(11).reg?.size, undefined, "no size check for append-only files");
  t.is(reg(12).reg?.name, "/dev/zero");
  t.is(fds.get(12)!.flags, 1, "FD_CLOEXEC");
  t.is(fds.get(17)!.id, fds.get(10)!.id, "a dup shares the entry");
  t.is(reg(13).type, "PIPE");
  t.is(reg(13).pipe?.pipe_id, reg(14).pipe?.pipe_id);
  t.is(reg(14).pipe?.flags, 1);
  // (the other pipe is the workload's own check pipe, empty)
  const pd = (await readImage(join(dir, "pipes-data.img"))).entries.filter((e) => e["pipe_id"] === reg(13).pipe?.pipe_id);
  t.is(pd.length, 1);
  t.is(Buffer.from(pd[0]!.extra as Uint8Array).toString(), "pipe data unread\n");
  t.is(reg(15).type, "FIFO");
  const fifoReg = files.get(reg(15).fifo!.regf_id!)!;
  t.like(fifoReg.reg, { name: join(w.dir, "fifo"), flags: 0o104000 });
  const fd = (await readImage(join(dir, "fifo-data.img"))).entries;
  t.is(Buffer.from(fd[0]!.extra as Uint8Array).toString(), "fifo data unread\n");
  t.is(reg(18).reg?.name, join(w.dir, "ghost.dat"));
  const ghost = (await readImage(join(dir, "ghost-file-1.img"))).entries[0]!;
  t.is(Buffer.from(ghost.extra as Uint8Array).toString(), "this file was unlinked while open\n");
  await img.close();
  t.regex(await w.check(), /^PASS/, "pipe and FIFO data were not consumed");
});

test("signals, timers, creds and task state", async (t) => {
  const w = await startWorkload(t, "sigstate");
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  if (critInstalled(t)) t.deepEqual(critDecodeAll(dir).failed, []);
  const img = await openImageDir(dir);
  t.teardown(() => img.close());
  const core = await img.core(w.pid);
  const tc = core.tc!;
  const th = core.thread_core!;
  const rtmin = Number(w.info["sigrtmin"]);
  const sa = (sig: number) => tc.sigactions![sig <= 8 ? sig - 1 : sig <= 18 ? sig - 2 : sig - 3]!;
  t.is(sa(1).sigaction, BigInt(w.addr("hup")));
  t.is(sa(1).flags & 0x08000000n, 0x08000000n, "SA_ONSTACK");
  t.is(sa(12).sigaction, BigInt(w.addr("usr2")));
  t.is(sa(12).mask, 1n << 14n, "SIGUSR2's mask holds SIGTERM");
  t.is(sa(13).sigaction, 1n, "SIGPIPE ignored");
  t.is(sa(rtmin + 1).sigaction, BigInt(w.addr("rt")));
  t.is(tc.blk_sigset, (1n << 1n) | (1n << 2n) | (1n << BigInt(rtmin + 1)));
  t.is(th.signals_p?.signals?.length, 1, "private pending SIGQUIT");
  t.is(Buffer.from(th.signals_p!.signals![0]!.siginfo).readInt32LE(0), 3);
  // The POSIX timer's signal (SIGRTMIN+1, blocked) joins the shared queue every 2 s once
  // it fires before the dump; the sigqueue'd SIGRTMIN+2 is there from the start. The
  // 1 s ITIMER_REAL's SIGALRM, handled as it comes, is pending too when it fires while the
  // task is frozen (a slow dump on a loaded machine): saved as it should be, not counted.
  const all = tc.signals_s?.signals ?? [];
  const shared = all.filter((s) => ![rtmin + 1, 14].includes(Buffer.from(s.siginfo).readInt32LE(0)));
  for (const s of all) {
    if (shared.includes(s)) continue;
    const code = Buffer.from(s.siginfo).readInt32LE(8);
    t.true(code === -2 || (Buffer.from(s.siginfo).readInt32LE(0) === 14 && code === 0x80), "the other shared signals are the timers' (SI_TIMER, SI_KERNEL)");
  }
  t.is(shared.length, 1);
  const si = Buffer.from(shared[0]!.siginfo);
  t.is(si.readInt32LE(0), rtmin + 2);
  t.is(si.readInt32LE(24), 1234, "si_value");
  t.is(th.sas?.ss_sp, BigInt(w.addr("altstack")));
  t.is(th.sas?.ss_size, 65536n);
  t.is(tc.timers!.real.isec, 1n);
  const posix = tc.timers!.posix!;
  t.is(posix.length, 1);
  t.like(posix[0], { clock_id: 1, si_signo: rtmin + 1, sival_ptr: 77n, isec: 2n });
  t.is(tc.comm, "sigstate-x");
  t.like(tc.rlimits!.rlimits![7], { cur: 512n, max: 1024n });
  t.is(th.creds?.no_new_privs, 1);
  t.is(th.pdeath_sig, 9);
  t.is((await img.fs(w.pid)).umask, 0o27);
  t.regex(await w.check(), /^PASS/);
});

test("registers: general purpose and AVX state where the task left them", async (t) => {
  const w = await startWorkload(t, "regs");
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  const img = await openImageDir(dir);
  t.teardown(() => img.close());
  const ti = (await img.core(w.pid)).thread_info!;
  t.is(ti.gpregs.r12, 0x1212121212121212n);
  t.is(ti.gpregs.r15, 0x1515151515151515n);
  const xmm = ti.fpregs.xmm_space!;
  const ymmh = ti.fpregs.xsave!.ymmh_space!;
  t.deepEqual(xmm.slice(0, 4), [0x11111111, 0x11111111, 0x22222222, 0x22222222], "xmm0 = low half of ymm0");
  t.deepEqual(ymmh.slice(0, 4), [0x33333333, 0x33333333, 0x44444444, 0x44444444], "upper half of ymm0");
  t.deepEqual(ymmh.slice(4, 8), [0x89abcdef, 0x01234567, 0x76543210, 0xfedcba98], "upper half of ymm1");
  t.true(ti.gpregs.bx > 0n, "rbx counted loop iterations");
  t.true(ti.gpregs.fs_base > 0n, "glibc's TLS base");
  const stat0 = readFileSync(`/proc/${w.pid}/stat`, "utf8");
  await waitFor("the loop to spin on after the dump", () => readFileSync(`/proc/${w.pid}/stat`, "utf8") !== stat0);
});

test("large memory: 40 MiB written by the task read back word by word, the pages file exactly as long as its pagemap says", async (t) => {
  const w = await startWorkload(t, "bigmem", ["40"]);
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  const img = await openImageDir(dir);
  t.teardown(() => img.close());
  const pages = await img.pages(w.pid);
  const present = pages.pagemap.runs.filter((r) => r.pageOffset >= 0).reduce((s, r) => s + r.nrPages, 0);
  t.is(statSync(pages.pagesFile).size, present * PAGE);
  const mem = BigInt(w.addr("mem"));
  const buf = await pages.read(mem, 40 << 20);
  let bad = -1;
  for (let i = 0; i < buf.length / 8 && bad < 0; i++) {
    const want = BigInt(Math.floor((i * 8) / PAGE)) ^ 0xb16b00b5000000n ^ BigInt(i);
    if (Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readBigUInt64LE(i * 8) !== want) bad = i;
  }
  t.is(bad, -1, "every word as the workload wrote it");
  t.regex(readFileSync(`/proc/${w.pid}/stat`, "utf8").split(") ")[1]!.slice(0, 1), RUNS_ON, "the task runs on (-R)");
});

test("sched: each thread's sched_policy is sched_getscheduler's answer, SCHED_RESET_ON_FORK included (as criu writes it), with priority and nice", async (t) => {
  const w = await startWorkload(t, "sched");
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  if (critInstalled(t)) t.deepEqual(critDecodeAll(dir).failed, []);
  const img = await openImageDir(dir);
  t.teardown(() => img.close());
  const got = [];
  for (const tid of String(w.info["tids"]).split(",").map(Number)) {
    const th = (await img.core(tid)).thread_core!;
    got.push([th.sched_policy, th.sched_prio, th.sched_nice]);
  }
  const RESET_ON_FORK = 0x40000000;
  // RR|RESET 7, FIFO 3, OTHER|RESET, OTHER, BATCH, IDLE; nice as set (IDLE's not compared)
  t.deepEqual(got.slice(0, 5), [
    [2 | RESET_ON_FORK, 7, 2],
    [1, 3, 0],
    [RESET_ON_FORK, undefined, 4],
    [0, undefined, 5],
    [3, undefined, 3],
  ]);
  t.is(got[5]![0], 5);
  t.is(got[5]![1], undefined);
  t.regex(await w.check(), /^PASS sched=6/);
});
