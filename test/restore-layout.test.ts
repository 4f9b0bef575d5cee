// Image layouts tscriu's dump does not write (yet) but criu does, made by rewriting a
// tscriu dump: an incremental chain (the child's pagemap marks runs PE_PARENT and the
// pages are found through the `parent` link, as after criu pre-dump), and old pagemaps
// (no flags, no nr_pages: compat_nr_pages counts, PE_PRESENT implied). Lazy-only pages
// (criu --lazy-pages) are refused by name.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { imageTypeByName } from "../images/codec.js";
import { readImage } from "../images/io.js";
import { ImageWriter } from "../images/io.js";
import { parsePagemap, PE_LAZY, PE_PARENT, PE_PRESENT } from "../images/pages.js";
import { restore } from "../orchestrator/restore/restore.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

const PAGE = 4096;

function copyImages(from: string, to: string, skip: (f: string) => boolean = () => false): void {
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from)) if (!skip(f) && f !== "parent") copyFileSync(join(from, f), join(to, f));
}

/** Rewrites pagemap-PID.img (+ its pages file) of `dir`: `pick` says, per run, which flags it gets; PE_PRESENT runs keep their data. */
function rewritePagemap(src: string, dst: string, pid: number, pick: (i: number) => number, entry: (r: { vaddr: bigint; nrPages: number; flags: number }) => Record<string, unknown>): void {
  const name = `pagemap-${pid}.img`;
  const map = parsePagemap(readFileSync(join(src, name)), name);
  const pages = readFileSync(join(src, `pages-${map.pagesId}.img`));
  const w = new ImageWriter(imageTypeByName("PAGEMAP")!);
  w.add({ pages_id: map.pagesId });
  const data: Buffer[] = [];
  map.runs.forEach((r, i) => {
    const flags = pick(i);
    w.add(entry({ vaddr: r.vaddr, nrPages: r.nrPages, flags }));
    if (flags & PE_PRESENT) data.push(pages.subarray(r.pageOffset * PAGE, (r.pageOffset + r.nrPages) * PAGE));
  });
  writeFileSync(join(dst, name), w.bytes());
  writeFileSync(join(dst, `pages-${map.pagesId}.img`), Buffer.concat(data));
}

test("an incremental chain: every other run PE_PARENT, found through `parent`", async (t) => {
  const w = await startWorkload(t, "memkinds");
  const dumped = await dumpGone(t, w);
  const base = tempDir(t);
  const parent = join(base, "parent-dump");
  const child = join(base, "child-dump");
  copyImages(dumped, parent);
  copyImages(dumped, child, (f) => f.startsWith("pagemap-") || f.startsWith("pages-"));
  // shared memory pagemaps stay whole in the child
  for (const f of readdirSync(dumped)) if (f.startsWith("pagemap-shmem-")) copyFileSync(join(dumped, f), join(child, f));
  for (const f of readdirSync(dumped)) if (f.startsWith("pages-") && !readdirSync(child).includes(f)) copyFileSync(join(dumped, f), join(child, f));
  symlinkSync("../parent-dump", join(child, "parent"));
  rewritePagemap(dumped, child, w.pid, (i) => (i % 2 ? PE_PRESENT | PE_LAZY : PE_PARENT), (r) => ({ vaddr: r.vaddr, compat_nr_pages: 0, flags: r.flags, nr_pages: BigInt(r.nrPages) }));
  const map = parsePagemap(readFileSync(join(child, `pagemap-${w.pid}.img`)), "x");
  t.true(map.runs.some((r) => r.flags === PE_PARENT) && map.runs.some((r) => r.flags & PE_PRESENT));
  const r = await restoreTask(t, child);
  t.regex(await w.check(), /^PASS/, "pages from the parent dump and from the child are all in place");
  t.true(r.stats.pages_restored > 0n);
});

test("an old pagemap (no flags, no nr_pages) restores as PE_PRESENT", async (t) => {
  const w = await startWorkload(t, "counter");
  const dumped = await dumpGone(t, w);
  const dir = tempDir(t);
  copyImages(dumped, dir);
  rewritePagemap(dumped, dir, w.pid, () => PE_PRESENT, (r) => ({ vaddr: r.vaddr, compat_nr_pages: r.nrPages }));
  const e = (await readImage(join(dir, `pagemap-${w.pid}.img`))).entries[1]!;
  t.is(e["flags"], undefined);
  await restoreTask(t, dir);
  t.regex(await w.check(), /^PASS/);
});

test("lazy pages without data (a dump --lazy-pages) are refused without --lazy-pages, naming what restores them", async (t) => {
  const w = await startWorkload(t, "counter");
  const dumped = await dumpGone(t, w);
  const dir = tempDir(t);
  copyImages(dumped, dir);
  rewritePagemap(dumped, dir, w.pid, (i) => (i === 3 ? PE_LAZY : PE_PRESENT), (r) => ({ vaddr: r.vaddr, compat_nr_pages: 0, flags: r.flags, nr_pages: BigInt(r.nrPages) }));
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.regex(err.message, /restore: plan of pid \d+ failed: 0x[0-9a-f]+ is a lazy page \(PE_LAZY\) with no data in the images: restore it with --lazy-pages and a lazy-pages daemon/);
});
