// hugetlb memory (test/workloads/hugetlb.c: private and shared MAP_HUGETLB mappings and a
// MFD_HUGETLB memfd, 2 MiB pages) through a dump and a restore, with criu's image layout:
// the private mapping is private anonymous memory with MAP_HUGETLB and the page size bits
// in its flags, its pages in the task's pagemap; the shared one and the memfd are memfd.img
// objects with hugetlb_flag, their pages in pagemap-shmem. Both ways with criu.
//
// The tests set vm.nr_hugepages to what they need (they run as root) and put the old value
// back at the end; a kernel without hugetlb fails them, saying so. They run serially: the
// pool of huge pages is the machine's.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage } from "../images/io.js";
import { VMA } from "../images/vma-status.js";
import { dump } from "../orchestrator/dump/dump.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { criuDumps, criuLogTail, criuVersion, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, dumpRunningThenRestore, refusedAtPlanOf, restoreTask } from "./helpers/restore.js";
import { killAndReap, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

const NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages";
const MAP_SHARED = 0x1;
const MAP_PRIVATE = 0x2;
const MAP_ANONYMOUS = 0x20;
const MAP_HUGETLB = 0x40000;
/** log2(2 MiB) << MAP_HUGE_SHIFT */
const MAP_HUGE_2MB = 21 * 2 ** 26;
const MFD_HUGETLB = 4;
/** huge pages of 2 MiB a workload holds: two per mapping */
const PER_WORKLOAD = 6;

function meminfo(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(readFileSync("/proc/meminfo", "latin1"));
  return m ? Number(m[1]) : Number.NaN;
}

/**
 * Sets vm.nr_hugepages so that `free` 2 MiB pages are free beyond those in use now; the old
 * value comes back when the test ends. Fails the test when the kernel has no hugetlb.
 */
function hugePages(t: ExecutionContext, free: number): void {
  if (!existsSync(NR_HUGEPAGES)) throw new Error(`this kernel has no hugetlb (${NR_HUGEPAGES} is missing): hugetlb memory cannot be tested`);
  if (meminfo("Hugepagesize") !== 2048) throw new Error(`the default huge page size here is ${meminfo("Hugepagesize")} kB; the test sets the pool of 2048 kB pages through ${NR_HUGEPAGES}`);
  const old = readFileSync(NR_HUGEPAGES, "latin1").trim();
  t.teardown(() => writeFileSync(NR_HUGEPAGES, old));
  setPool(meminfo("HugePages_Total") - meminfo("HugePages_Free") + free);
}

/** Asks for `n` huge pages in all; fails when the kernel cannot find the memory for them. */
function setPool(n: number): void {
  writeFileSync(NR_HUGEPAGES, String(n));
  const got = meminfo("HugePages_Total");
  if (got < n) throw new Error(`asked the kernel for ${n} huge pages of 2048 kB (${NR_HUGEPAGES}); it has ${got}`);
}

async function hugetlbWorkload(t: ExecutionContext, opts: { static?: boolean } = {}): Promise<Workload> {
  const w = await startWorkload(t, "hugetlb", [], opts);
  if (w.info["hugetlb"] === "unavailable") throw new Error(`the workload got no huge page (${w.info["what"]}: errno ${w.info["errno"]}) although the pool was set`);
  t.is(await w.check(), "PASS hugetlb", "before the dump");
  return w;
}

type Entry = Record<string, unknown>;

/** The images of the three mappings and the two memfd objects, as criu writes them. */
async function checkImages(t: ExecutionContext, dir: string, pid: number, w: Workload): Promise<void> {
  const mm = (await readImage(join(dir, `mm-${pid}.img`))).entries[0]!;
  const vmas = mm["vmas"] as Entry[];
  const at = (key: string): Entry => {
    const v = vmas.find((x) => Number(x["start"]) === w.addr(key));
    if (!v) throw new Error(`no VMA at ${key}`);
    return v;
  };
  const huge = MAP_HUGETLB | MAP_HUGE_2MB;
  const priv = at("private");
  t.is(Number(priv["flags"]), (MAP_PRIVATE | MAP_ANONYMOUS | huge) >>> 0, "private: MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB");
  t.is(Number(priv["status"]), VMA.REGULAR | VMA.ANON_PRIVATE);
  for (const key of ["shared", "memfd"]) {
    const v = at(key);
    t.is(Number(v["flags"]), (MAP_SHARED | huge) >>> 0, `${key}: MAP_SHARED|MAP_HUGETLB|MAP_HUGE_2MB`);
    t.is(Number(v["status"]), VMA.REGULAR | VMA.MEMFD | VMA.FILE_SHARED);
  }
  const inodes = (await readImage(join(dir, "memfd.img"))).entries;
  const byName = new Map(inodes.map((e) => [String(e["name"]), e]));
  for (const name of ["/anon_hugepage", "wl-huge"]) {
    const e = byName.get(name);
    t.truthy(e, `memfd.img has ${name}`);
    t.is(Number(e?.["hugetlb_flag"]), (MFD_HUGETLB | MAP_HUGE_2MB) >>> 0, `${name}: hugetlb_flag MFD_HUGETLB|MFD_HUGE_2MB`);
    t.is(Number(e?.["size"]), 4 << 20);
    t.true(existsSync(join(dir, `pagemap-shmem-${Number(e?.["shmid"])}.img`)), `${name}: its pages`);
  }
  // the private mapping's pages are the task's, and never left to a parent
  const pm = (await readImage(join(dir, `pagemap-${pid}.img`))).entries.slice(1);
  const mine = pm.filter((e) => Number(e["vaddr"]) >= w.addr("private") && Number(e["vaddr"]) < w.addr("private") + (4 << 20));
  // (criu writes compat_nr_pages where the count fits)
  t.is(mine.reduce((n, e) => n + Number(e["nr_pages"] ?? e["compat_nr_pages"]), 0), 1024, "the private mapping's 1024 pages");
  t.true(mine.every((e) => (Number(e["flags"]) & 1) === 0), "no PE_PARENT");
}

/** Damaged hugetlb entries of memfd.img (in copies of `dir`): refused at plan, naming memfd.img. */
async function refusedHostile(t: ExecutionContext, dir: string): Promise<void> {
  const cases: [string, (e: Entry) => void, RegExp][] = [
    ["a page size without MFD_HUGETLB", (e) => (e["hugetlb_flag"] = MAP_HUGE_2MB), /has hugetlb_flag 0x54000000 \(MFD_HUGETLB and a page size expected\)/],
    ["unknown bits", (e) => (e["hugetlb_flag"] = (MFD_HUGETLB | MAP_HUGE_2MB | 0x10) >>> 0), /has hugetlb_flag 0x54000014/],
    ["a size that is no multiple of the page", (e) => (e["size"] = (4n << 20n) + 4096n), /has 4198400 bytes, not a multiple of its 2097152-byte pages/],
  ];
  await refusedAtPlanOf(t, dir, "memfd.img", (entries) => entries.find((e) => e["name"] === "wl-huge")!, cases);
}

test.serial("hugetlb: private and shared MAP_HUGETLB and a MFD_HUGETLB memfd come back with their pages, still hugetlb and shared", async (t) => {
  hugePages(t, 2 * PER_WORKLOAD);
  const w = await hugetlbWorkload(t);
  const dir = await dumpGone(t, w);
  await checkImages(t, dir, w.pid, w);
  await refusedHostile(t, dir);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS hugetlb", "after the restore");
  t.is(await w.check(), "PASS hugetlb", "and again");
});

test.serial("hugetlb: dump -R leaves the task running as it was; its images restore", async (t) => {
  hugePages(t, 2 * PER_WORKLOAD);
  await dumpRunningThenRestore(t, await hugetlbWorkload(t), "PASS hugetlb");
});

test.serial("hugetlb: with no free huge page the restore fails at the private VMA's mmap, named, and kills what it made", async (t) => {
  hugePages(t, 2 * PER_WORKLOAD);
  const w = await hugetlbWorkload(t);
  const dir = await dumpGone(t, w);
  // every huge page in use: none to reserve
  setPool(meminfo("HugePages_Total") - meminfo("HugePages_Free"));
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.true(isRestoreError(err), String(err));
  t.like(err, { step: "vmas", pid: w.pid });
  t.regex(err?.message ?? "", new RegExp(`mmap of the hugetlb VMA ${w.addr("private").toString(16)}-${(w.addr("private") + (4 << 20)).toString(16)} \\(2048 kB pages, 2 free huge pages reserved\\): ENOMEM`));
  t.regex(err?.message ?? "", new RegExp(`pid ${w.pid}`));
  t.false(existsSync(`/proc/${w.pid}`) && !/^State:\s+[ZX]/m.test(readFileSync(`/proc/${w.pid}/status`, "latin1")), "the task made is gone");
  // with pages again, the same images restore
  setPool(meminfo("HugePages_Total") + PER_WORKLOAD);
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS hugetlb", "after the restore");
});

test.serial("criu restores tscriu's images: hugetlb", async (t) => {
  if (!haveRoot(t)) return;
  hugePages(t, 2 * PER_WORKLOAD);
  const w = await hugetlbWorkload(t, { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS hugetlb", `criu ${criuVersion()}`);
});

test.serial("tscriu restores criu's images: hugetlb (criu's layout as tscriu writes it)", async (t) => {
  if (!haveRoot(t)) return;
  hugePages(t, 2 * PER_WORKLOAD);
  const c = await criuDumps(t, "hugetlb", []);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  const ready = /^ready \d+ (.*)$/m.exec(readFileSync(join(c.images, "..", "out"), "utf8"))?.[1] ?? "";
  const info = Object.fromEntries(ready.split(" ").map((p) => p.split("=") as [string, string]));
  await checkImages(t, c.images, c.pid, { addr: (k: string) => Number.parseInt(info[k]!.slice(2), 16) } as Workload);
  await restoreTask(t, c.images);
  t.is(await c.check(), "PASS hugetlb");
});

/** The hugetlb pages of a dump's pagemap that are left to the parent (PE_PARENT): none may be. */
async function hugeInParent(dir: string, pid: number, w: Workload): Promise<number> {
  const pm = (await readImage(join(dir, `pagemap-${pid}.img`))).entries.slice(1);
  const lo = w.addr("private");
  return pm.filter((e) => Number(e["vaddr"]) >= lo && Number(e["vaddr"]) < lo + (4 << 20) && Number(e["flags"]) & 1).length;
}

test.serial("hugetlb: a pre-dump leaves hugetlb memory to the dump, which takes it whole (no PE_PARENT); tscriu and criu restore the chain", async (t) => {
  hugePages(t, 2 * PER_WORKLOAD);
  for (const by of ["tscriu", "criu"] as const) {
    if (by === "criu" && !haveRoot(t)) return;
    const w = await hugetlbWorkload(t, { static: by === "criu" });
    const base = tempDir(t, "tscriu-chain-");
    await dump({ pid: w.pid, imagesDir: join(base, "d1"), preDump: true });
    const pre = (await readImage(join(base, "d1", `pagemap-${w.pid}.img`))).entries.slice(1);
    t.false(pre.some((e) => Number(e["vaddr"]) >= w.addr("private") && Number(e["vaddr"]) < w.addr("private") + (4 << 20)), `${by}: the pre-dump has no hugetlb page`);
    t.is(await w.check(), "PASS hugetlb", `${by}: after the pre-dump`);
    await dump({ pid: w.pid, imagesDir: join(base, "d2"), prevImagesDir: "../d1" });
    t.is(await hugeInParent(join(base, "d2"), w.pid, w), 0, `${by}: no hugetlb page left to the parent`);
    await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
    if (by === "tscriu") await restoreTask(t, join(base, "d2"));
    else await restoredByCriu(t, w.pid, join(base, "d2"), 60_000);
    t.is(await w.check(30_000), "PASS hugetlb", `${by} restored the chain`);
    await killAndReap(w.pid);
  }
});
