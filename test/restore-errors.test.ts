// One negative test per refusal of the plan step: each error names the file or the kind,
// and nothing was created (the PID stays free).
import { appendFileSync, chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, truncateSync, statSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { readImage, writeImage } from "../images/io.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { dumpGone } from "./helpers/restore.js";
import { killAndReap, startWorkload, waitFor } from "./helpers/workloads.js";
import { tempDir } from "./helpers/dump.js";
import { dumpedVdso } from "./helpers/vdso.js";
import { bridge } from "../host-bridge/load.js";

async function refused(t: import("ava").ExecutionContext, dir: string, pid: number, re: RegExp): Promise<void> {
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.true(isRestoreError(err), String(err));
  t.like(err, { step: "plan" });
  t.regex(err.message, re);
  t.false(existsSync(`/proc/${pid}`), "nothing was created");
}

test("a missing mapped file is named", async (t) => {
  const w = await startWorkload(t, "memkinds");
  const dir = await dumpGone(t, w);
  unlinkSync(join(w.dir, "private.dat"));
  await refused(t, dir, w.pid, new RegExp(`cannot open ${w.dir}/private.dat \\(the mapping [0-9a-f]+-[0-9a-f]+\\): ENOENT`));
});

test("a file whose size changed since the dump is refused, as criu does", async (t) => {
  const w = await startWorkload(t, "memkinds");
  const dir = await dumpGone(t, w);
  appendFileSync(join(w.dir, "shared.dat"), "x");
  await refused(t, dir, w.pid, new RegExp(`file ${w.dir}/shared.dat has bad size 16385 \\(expect 16384\\)`));
});

test("a file whose mode changed since the dump is refused, as criu does; --skip-file-rwx-check lets other permission bits through, not another type or set-id bit", async (t) => {
  const w = await startWorkload(t, "memkinds");
  const dir = await dumpGone(t, w);
  const file = join(w.dir, "shared.dat");
  const mode = statSync(file).mode;
  chmodSync(file, (mode ^ 0o070) & 0o7777);
  const want = (mode & 0o177777).toString(8);
  const now = (mode ^ 0o070).toString(8);
  await refused(t, dir, w.pid, new RegExp(`file ${file} has bad mode 0${now} \\(expect 0${want}\\) \\(.*\\); --skip-file-rwx-check restores it with other permission bits`));
  chmodSync(file, ((mode ^ 0o070) | 0o4000) & 0o7777);
  const err = await t.throwsAsync(restore({ imagesDir: dir, skipFileRwxCheck: true }));
  t.regex(err?.message ?? "", new RegExp(`file ${file} has bad mode 0${((mode | 0o4000) & ~0o777).toString(8)} \\(expect 0${(mode & ~0o777).toString(8)}\\)`));
  t.false(existsSync(`/proc/${w.pid}`), "nothing was created");
  chmodSync(file, (mode ^ 0o070) & 0o7777);
  const r = await restore({ imagesDir: dir, skipFileRwxCheck: true, detached: true });
  t.teardown(() => killAndReap(r.pid));
  t.regex(await w.check(), /^PASS/);
});

test("a file whose ELF build-id changed since the dump is refused, as criu does; --file-validation filesize compares sizes only, and a dump with it records no build-id", async (t) => {
  type Reg = { name: string; build_id?: number[] };
  const regs = (e: Record<string, unknown>[]): Reg[] => e.map((f) => f["reg"] as Reg | undefined).filter((r): r is Reg => r !== undefined);
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const files = await readImage(join(dir, "files.img"));
  const ided = regs(files.entries).filter((r) => r.build_id?.length);
  t.true(ided.length > 0, "the dump recorded the ELF files' build-ids (criu's default, buildid)");
  // as if each of those files had been rebuilt to another binary of the same size
  for (const r of ided) r.build_id![0] = (r.build_id![0]! ^ 1) >>> 0;
  rmSync(join(dir, "files.img"));
  await writeImage(join(dir, "files.img"), files);
  await refused(t, dir, w.pid, /has another ELF build-id than at dump time \(.*\); --file-validation filesize checks its size only/);
  const r = await restore({ imagesDir: dir, fileValidation: "filesize", detached: true });
  t.regex(await w.check(), /^PASS/, "restored with the sizes compared only");
  await killAndReap(r.pid);
  const w2 = await startWorkload(t, "counter");
  const dir2 = await dumpGone(t, w2, { fileValidation: "filesize" });
  t.deepEqual(
    regs((await readImage(join(dir2, "files.img"))).entries).filter((x) => x.build_id?.length),
    [],
    "--file-validation filesize records no build-id",
  );
});

test("a truncated pages file is refused before anything is read into the task", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const pages = join(dir, "pages-1.img");
  truncateSync(pages, statSync(pages).size - 4096);
  await refused(t, dir, w.pid, /the pages file ends at \d+ bytes, but the pagemap wants data up to \d+/);
});

test("dumped [vdso] pages that are not a vDSO are refused, naming the address", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  const v = await dumpedVdso(dir, w.pid);
  v.bytes.fill(0);
  v.save();
  await refused(t, dir, w.pid, new RegExp(`the image's vDSO cannot be restored: the dumped \\[vdso\\] pages are not an ELF vDSO at 0x${v.start.toString(16)}`));
});

test("a PID still used as a process group id (its leader gone) is named at spawn, nothing left behind", async (t) => {
  const w = await startWorkload(t, "counter");
  const dumped = await dumpGone(t, w);
  // A session whose leader exits at once: its PID stays in use as pgid/sid of the sleep.
  const leader = bridge().spawnDetached(["bash", "-c", "sleep 30 & exit 0"], { killWithParent: true });
  await waitFor("the leader to be gone", () => !existsSync(`/proc/${leader}`));
  const sleeper = readdirSync("/proc").find((d) => /^\d+$/.test(d) && (() => {
    try {
      return readFileSync(`/proc/${d}/stat`, "utf8").split(") ")[1]!.split(" ")[2] === String(leader);
    } catch {
      return false;
    }
  })());
  t.truthy(sleeper);
  t.teardown(() => killAndReap(Number(sleeper)));
  // The images of pid `leader`: the counter's images renamed.
  const dir = tempDir(t);
  for (const f of readdirSync(dumped)) copyFileSync(join(dumped, f), join(dir, f.replace(`-${w.pid}.img`, `-${leader}.img`)));
  const ps = await readImage(join(dir, "pstree.img"));
  ps.entries[0] = { ...ps.entries[0], pid: leader, pgid: leader, sid: leader, threads: [leader] };
  rmSync(join(dir, "pstree.img"));
  await writeImage(join(dir, "pstree.img"), ps);
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.like(err, { step: "spawn", pid: leader });
  t.regex(err.message, new RegExp(`PID ${leader} is in use as the process group id of process ${sleeper} \\(sleep\\)`));
  t.true(existsSync(`/proc/${sleeper}`), "the holder is untouched");
});

test("hostile images: each is refused at plan, naming what is wrong, and nothing is created", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  type Entries = Record<string, unknown>[];
  type Vma = { start: bigint; end: bigint };
  // A TID no task has, below pid_max: the missing core image is what is wrong.
  const pidMax = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8"));
  let freeTid = pidMax - 1;
  while (existsSync(`/proc/${freeTid}`)) freeTid--;
  const vmas = (e: Entries): Vma[] => e[0]!["vmas"] as Vma[];
  const cases: [string, string, (e: Entries) => void, RegExp][] = [
    ["a run of 2^40 pages", `pagemap-${w.pid}.img`, (e) => void (e[1]!["nr_pages"] = 1n << 40n), /pagemap-\d+\.img: pagemap entries overlap or are unsorted at 0x[0-9a-f]+/],
    ["an unaligned run", `pagemap-${w.pid}.img`, (e) => void (e[1]!["vaddr"] = (e[1]!["vaddr"] as bigint) + 12n), /pagemap-\d+\.img: pagemap entry at 0x[0-9a-f]+c is not page aligned/],
    ["a run twice", `pagemap-${w.pid}.img`, (e) => void e.splice(2, 0, { ...e[1] }), /pagemap-\d+\.img: pagemap entries overlap or are unsorted/],
    ["a VMA ending before it starts", `mm-${w.pid}.img`, (e) => void ([vmas(e)[2]!.start, vmas(e)[2]!.end] = [vmas(e)[2]!.end, vmas(e)[2]!.start]), /VMA [0-9a-f]+-[0-9a-f]+ is empty or not page aligned/],
    ["an unaligned VMA", `mm-${w.pid}.img`, (e) => void (vmas(e)[2]!.start += 5n), /VMA [0-9a-f]+5-[0-9a-f]+ is empty or not page aligned/],
    ["a VMA twice", `mm-${w.pid}.img`, (e) => void vmas(e).splice(3, 0, { ...vmas(e)[2]! }), /VMA [0-9a-f]+-[0-9a-f]+ overlaps the one before it/],
    ["pid 0", "pstree.img", (e) => void (e[0]!["pid"] = 0), /bad pid 0 \(.*pstree\.img\)/],
    ["a pid above pid_max", "pstree.img", (e) => void (e[0]!["pid"] = 2 ** 31 - 1), /PID 2147483647 is above this system's pid_max/],
    ["a thread list without its leader first", "pstree.img", (e) => void (e[0]!["threads"] = [w.pid + 1, w.pid]), /thread list \(\d+, \d+\) does not start with the leader/],
    ["a thread twice", "pstree.img", (e) => void (e[0]!["threads"] = [w.pid, w.pid]), /thread list \(\d+, \d+\) has a bad or repeated TID/],
    ["a thread without its core image", "pstree.img", (e) => void (e[0]!["threads"] = [w.pid, freeTid]), new RegExp(`core-${freeTid}\\.img`)],
    ["an fd of a file that is not there", "fdinfo-2.img", (e) => void (e[0]!["id"] = 99999), /fd 0 refers to file id 99999, which files.img does not have/],
    ["63 sigactions", `core-${w.pid}.img`, (e) => void ((e[0]!["tc"] as { sigactions: unknown[] }).sigactions.push({ sigaction: 1n, flags: 0n, restorer: 0n, mask: 0n })), /63 sigactions in the core image \(at most 62\)/],
    ["no x86 thread_info", `core-${w.pid}.img`, (e) => void delete e[0]!["thread_info"], /the core image has no x86 thread_info/],
    ["image version 1", "inventory.img", (e) => void (e[0]!["img_version"] = 1), /image version 1 is not supported \(criu 4\.x writes 2\) \(.*inventory\.img\)/],
  ];
  for (const [what, file, mutate, re] of cases) {
    const copy = tempDir(t);
    for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
    const img = await readImage(join(copy, file));
    mutate(img.entries);
    rmSync(join(copy, file));
    await writeImage(join(copy, file), img);
    const err = await t.throwsAsync(restore({ imagesDir: copy }), undefined, what);
    t.true(isRestoreError(err), `${what}: ${String(err)}`);
    t.like(err, { step: "plan" }, what);
    t.regex(err?.message ?? "", re, what);
    t.false(existsSync(`/proc/${w.pid}`), `${what}: nothing was created`);
  }
});

// A missing optional image is no data; a damaged one is an error naming it, at plan.
test("a truncated pipes-data.img is refused at plan, naming the file and offset", async (t) => {
  const w = await startWorkload(t, "pipe");
  const dir = await dumpGone(t, w);
  const file = join(dir, "pipes-data.img");
  truncateSync(file, statSync(file).size - 3);
  await refused(t, dir, w.pid, /pipes-data\.img: offset \d+ .*/);
});

test("a damaged tty-info.img is refused at plan, naming the file", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  // a real tty-info image would do as well: any image cut short in an entry
  copyFileSync(join(dir, `core-${w.pid}.img`), join(dir, "tty-info.img"));
  truncateSync(join(dir, "tty-info.img"), statSync(join(dir, "tty-info.img")).size - 3);
  await refused(t, dir, w.pid, /tty-info\.img/);
});

test("a parent link that leads nowhere is refused at plan", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  // the pagemap must send a page to the parent for the chain to be followed
  const file = join(dir, `pagemap-${w.pid}.img`);
  const img = await readImage(file);
  const run = img.entries.find((e) => e["vaddr"] !== undefined)!;
  run["flags"] = 1; // PE_PARENT
  rmSync(file);
  await writeImage(file, img);
  symlinkSync(join(dir, "no-such-dump"), join(dir, "parent"));
  await refused(t, dir, w.pid, /the parent link of .* is broken: ENOENT/);
});

test("an FPU state using an xsave feature this CPU lacks is refused at plan, naming the feature", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = await dumpGone(t, w);
  // a feature this CPU does not have, whatever the CPU: AMX, then others, then a reserved bit
  const have = bridge().xgetbv(0);
  const bit = [18, 17, 7, 9, 62].find((b) => !(have & (1n << BigInt(b))))!;
  const file = join(dir, `core-${w.pid}.img`);
  const img = await readImage(file);
  const xsave = (img.entries[0]!["thread_info"] as { fpregs: { xsave: { xstate_bv: bigint } } }).fpregs.xsave;
  xsave.xstate_bv |= 1n << BigInt(bit);
  rmSync(file);
  await writeImage(file, img);
  await refused(t, dir, w.pid, new RegExp(`the FPU state uses xsave features this CPU does not have: .*\\(bit ${bit}\\)`));
});

test("a memfd with seals the kernel does not have is refused, naming memfd.img", async (t) => {
  const w = await startWorkload(t, "unlinked", ["memfd-priv"]);
  const dir = await dumpGone(t, w);
  const img = await readImage(join(dir, "memfd.img"));
  img.entries[0]!["seals"] = 0x41;
  rmSync(join(dir, "memfd.img"));
  await writeImage(join(dir, "memfd.img"), img);
  await refused(t, dir, w.pid, /memfd inode \d+ has seals 0x41 \(known: 0x3f\).*memfd\.img/);
});
