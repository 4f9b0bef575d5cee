// Benchmark of `tscriu restore` on a task with 256 MiB and 1 GiB of written anonymous
// memory: wall time of the CLI as an operator runs it (`tscriu restore -d -D DIR`), the
// library's time with one and two page-writing threads, medians of interleaved runs, next
// to the raw limit of this VM -- writePages alone into a fresh mapping of an idle process
// (the first-touch page faults plus the copy) -- and criu 4.2's median measured here.
// Run: node --import=tsx scripts/bench-restore.ts [runs]
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bridge } from "../host-bridge/load.js";
import { MAP, PROT } from "../host-bridge/constants.js";
import { parsePagemap, PE_PRESENT } from "../images/pages.js";
import { dump } from "../orchestrator/dump/dump.js";
import { findGap, readMaps } from "../orchestrator/restore/layout.js";
import { NR, Remote, TRAMPOLINE_SIZE } from "../orchestrator/restore/remote.js";
import { restore } from "../orchestrator/restore/restore.js";
import { killCreated, seizeStub, spawnStub } from "../orchestrator/restore/spawn.js";
import { fmt, median, TSCRIU } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = TSCRIU;
const BIN = join(root, "test/workloads/bin/bigmem");
const runs = Number(process.argv[2] ?? 5);
const CRIU_1G = 1.15;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const secs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 4000 && existsSync(`/proc/${pid}`); i++) await sleep(2);
  if (existsSync(`/proc/${pid}`)) throw new Error(`pid ${pid} is still there`);
}

/** The dump's pages file must hold every PE_PRESENT page of its pagemap (else the figures mean nothing). */
function checkPages(dir: string, pid: number): void {
  const name = `pagemap-${pid}.img`;
  const map = parsePagemap(readFileSync(join(dir, name)), name);
  const file = join(dir, `pages-${map.pagesId}.img`);
  const want = map.runs.filter((r) => r.flags & PE_PRESENT).reduce((s, r) => s + r.nrPages * 4096, 0);
  const size = statSync(file).size;
  if (size !== want) throw new Error(`${file} holds ${size} bytes, its pagemap says ${want}`);
}

async function makeImages(mib: number): Promise<{ dir: string; work: string; pid: number; mem: bigint }> {
  const work = mkdtempSync(join(tmpdir(), "bench-restore-w-"));
  const dir = mkdtempSync(join(tmpdir(), "bench-restore-i-"));
  const out = join(work, "stdout");
  const pid = bridge().spawnDetached([BIN, work, String(mib)], { stdout: out, killWithParent: true });
  let ready = "";
  for (let i = 0; i < 6000 && !(ready = existsSync(out) ? readFileSync(out, "utf8") : "").startsWith("ready"); i++) await sleep(5);
  const mem = BigInt(/mem=(0x[0-9a-f]+)/.exec(ready)![1]!);
  await dump({ pid, imagesDir: dir, leaveRunning: true });
  checkPages(dir, pid);
  process.kill(pid, "SIGKILL");
  await waitGone(pid);
  return { dir, work, pid, mem };
}

/** The first word of every 64th page as bigmem wrote it. */
function verify(pid: number, mem: bigint, mib: number): void {
  const buf = Buffer.alloc(8);
  for (let page = 0; page < (mib << 20) / 4096; page += 64) {
    bridge().processVmReadv(pid, mem + BigInt(page * 4096), 8, buf);
    const i = (page * 4096) / 8;
    const want = BigInt(page) ^ 0xb16b00b5000000n ^ BigInt(i);
    if (buf.readBigUInt64LE(0) !== want) throw new Error(`restored memory differs at page ${page}`);
  }
}

async function cliRun(dir: string, pid: number, mem: bigint, mib: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(CLI, ["restore", "-D", dir, "-d"], { encoding: "utf8" });
  const wall = secs(t0);
  if (r.status !== 0) throw new Error(`restore failed: ${r.stderr}`);
  verify(pid, mem, mib);
  process.kill(pid, "SIGKILL");
  await waitGone(pid);
  return wall;
}

async function libRun(dir: string, pid: number, mem: bigint, mib: number, threads: number): Promise<{ wall: number; memory: number }> {
  let m0 = 0n;
  let memory = 0;
  const t0 = process.hrtime.bigint();
  await restore({ imagesDir: dir, detached: true, pageThreads: threads }, (e) => {
    if (e.type === "memory-start") m0 = process.hrtime.bigint();
    if (e.type === "memory-done") memory = secs(m0);
  });
  const wall = secs(t0);
  verify(pid, mem, mib);
  process.kill(pid, "SIGKILL");
  await waitGone(pid);
  return { wall, memory };
}

/**
 * The raw limits: the same pages copied into a fresh anonymous mapping of an idle stub,
 * with process_vm_writev (the task's first-touch page faults) or UFFDIO_COPY through the
 * stub's userfaultfd (what restore does for anonymous memory).
 */
async function rawRun(dir: string, pid: number, mib: number, threads: number, how: "pvw" | "uffd"): Promise<number> {
  const name = `pagemap-${pid}.img`;
  const map = parsePagemap(readFileSync(join(dir, name)), name);
  const s = spawnStub({ pid: 0, mode: "child", session: "inherit" });
  try {
    seizeStub(s.pid);
    const maps = readMaps(s.pid);
    const remote = Remote.create(s.pid, findGap(maps, TRAMPOLINE_SIZE));
    const len = BigInt(mib << 20);
    const at = findGap([...maps, { start: remote.tramp, end: remote.tramp + BigInt(TRAMPOLINE_SIZE) }], Number(len));
    remote.call("mmap", NR.mmap, [at, len, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.FIXED_NOREPLACE, -1, 0]);
    const big = map.runs.reduce((a, r) => (r.nrPages > a.nrPages ? r : a));
    const segs = new BigUint64Array([at, BigInt(big.pageOffset * 4096), BigInt(Math.min(big.nrPages * 4096, mib << 20))]);
    const fd = openSync(join(dir, `pages-${map.pagesId}.img`), "r");
    try {
      if (how === "pvw") {
        const t0 = process.hrtime.bigint();
        bridge().writePages(s.pid, fd, segs, threads);
        return secs(t0);
      }
      const b = bridge();
      const rfd = remote.call("userfaultfd", NR.userfaultfd, [0o2004000]);
      const pidfd = b.pidfdOpen(s.pid);
      const uffd = b.pidfdGetfd(pidfd, Number(rfd));
      b.close(pidfd);
      try {
        const t0 = process.hrtime.bigint();
        b.uffdRegister(uffd, new BigUint64Array([at, len]), true);
        b.uffdCopy(uffd, fd, segs, threads);
        b.uffdRegister(uffd, new BigUint64Array([at, len]), false);
        return secs(t0);
      } finally {
        b.close(uffd);
      }
    } finally {
      closeSync(fd);
    }
  } finally {
    await killCreated([{ pid: s.pid, tids: [] }]);
  }
}

if (!existsSync(CLI)) throw new Error("build the CLI first: node scripts/build-ts.mjs");
console.log(`tscriu restore benchmark: medians of ${runs} interleaved runs; criu 4.2 measured here: ${CRIU_1G} s for 1 GiB`);
for (const mib of [256, 1024]) {
  const img = await makeImages(mib);
  try {
    const t: Record<string, number[]> = { cli: [], lib1: [], lib2: [], mem1: [], mem2: [], raw1: [], raw2: [], uffd2: [] };
    for (let i = 0; i < runs; i++) {
      t["cli"]!.push(await cliRun(img.dir, img.pid, img.mem, mib));
      const a = await libRun(img.dir, img.pid, img.mem, mib, 1);
      t["lib1"]!.push(a.wall);
      t["mem1"]!.push(a.memory);
      const b = await libRun(img.dir, img.pid, img.mem, mib, 2);
      t["lib2"]!.push(b.wall);
      t["mem2"]!.push(b.memory);
      t["raw1"]!.push(await rawRun(img.dir, img.pid, mib, 1, "pvw"));
      t["raw2"]!.push(await rawRun(img.dir, img.pid, mib, 2, "pvw"));
      t["uffd2"]!.push(await rawRun(img.dir, img.pid, mib, 2, "uffd"));
    }
    const m = (k: string): number => median(t[k]!);
    const gib = mib / 1024;
    console.log(
      `${String(mib).padStart(5)} MiB  tscriu restore -d (CLI) ${fmt(m("cli")).padStart(9)}   library: 1 thread ${fmt(m("lib1")).padStart(9)} (memory ${fmt(m("mem1"))}), 2 threads ${fmt(m("lib2")).padStart(9)} (memory ${fmt(m("mem2"))})`,
    );
    console.log(
      `${" ".repeat(11)}raw: first-touch faults (process_vm_writev into a fresh mapping) 1 thread ${fmt(m("raw1"))} = ${(m("raw1") / gib).toFixed(2)} s/GiB, 2 threads ${(m("raw2") / gib).toFixed(2)} s/GiB; UFFDIO_COPY 2 threads ${fmt(m("uffd2"))} = ${(m("uffd2") / gib).toFixed(2)} s/GiB` +
        (mib === 1024 ? `;  criu 4.2: ${CRIU_1G} s -> tscriu CLI is ${(CRIU_1G / m("cli")).toFixed(2)}x` : ""),
    );
  } finally {
    rmSync(img.dir, { recursive: true, force: true });
    rmSync(img.work, { recursive: true, force: true });
  }
}
