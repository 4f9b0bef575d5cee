// Files and memory whose names are gone (issue 14's silent losses): private mappings of
// memfds and shared anonymous memory, unlinked files mapped and open at once, sparse
// unlinked files, unlinked files' mode, owner, times and offset, removed directories
// (the cwd and an open one), an unlinked FIFO with data, unlinked device nodes, a binary
// replaced while its program ran. Each
// workload checks itself before the dump and after the restore; the images are checked
// for what criu writes (one ghost per inode, chunks that leave holes out), and the
// names made for the restore are gone afterwards.
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, readlinkSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage } from "../images/io.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { tempDir } from "./helpers/dump.js";
import { startProgram } from "./helpers/programs.js";
import { startWorkload, waitFor, WORKLOAD_BIN, type Workload } from "./helpers/workloads.js";

/** The state directory's entries (result and stdout aside): a restore must leave none behind. */
function leftovers(w: Workload): string[] {
  return readdirSync(w.dir).filter((f) => f !== "result" && f !== "stdout" && f !== "ro-dir");
}

async function roundTrip(t: ExecutionContext, name: string): Promise<{ w: Workload; dir: string }> {
  const w = await startWorkload(t, "unlinked", [name]);
  t.is(await w.check(), `PASS ${name}`, "before the dump");
  t.deepEqual(leftovers(w), [], "the workload's names are gone before the dump");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(await w.check(), `PASS ${name}`, "after the restore");
  t.deepEqual(leftovers(w), [], "no name made for the restore is left");
  return { w, dir };
}

async function entries(dir: string, file: string): Promise<Record<string, unknown>[]> {
  return (await readImage(join(dir, file))).entries;
}

for (const name of ["memfd-priv", "shmem-priv"]) {
  test(`${name}: a private mapping keeps its written page and sees the object's others; the fd and the shared mapping share the object`, async (t) => {
    const { dir } = await roundTrip(t, name);
    const memfds = await entries(dir, "memfd.img");
    t.is(memfds.length, 1, "one object");
    const files = await entries(dir, "files.img");
    t.is(files.filter((f) => f["type"] === "MEMFD").length, 2, "one MEMFD entry for the mappings, one for the fd");
    t.false(files.some((f) => f["type"] === "REG" && String((f["reg"] as Record<string, unknown>)["name"]).startsWith("/memfd:")), "no ghost of it");
    const mm = (await entries(dir, `mm-${readdirSync(dir).find((f) => f.startsWith("core-"))!.slice(5, -4)}.img`))[0]!;
    const vmas = (mm["vmas"] as Record<string, unknown>[]).filter((v) => Number(v["status"]) & (1 << 14));
    t.is(vmas.length, 2, "both mappings are memfd VMAs");
  });
}

test("mmap: an unlinked file mapped privately, shared, through two names and open in an fd is one inode after restore", async (t) => {
  const { dir } = await roundTrip(t, "mmap");
  const ghosts = readdirSync(dir).filter((f) => f.startsWith("ghost-file-"));
  t.deepEqual(ghosts, ["ghost-file-1.img"], "one ghost for the inode");
  const remaps = await entries(dir, "remap-fpath.img");
  t.true(remaps.length >= 2 && remaps.every((r) => Number(r["remap_id"]) === 1), "every entry of the inode points at it");
});

test("holes: sparse unlinked files keep their data, size and holes; the ghost images hold only the data", async (t) => {
  const { dir } = await roundTrip(t, "holes");
  let total = 0;
  for (const f of readdirSync(dir).filter((x) => x.startsWith("ghost-file-"))) total += statSync(join(dir, f)).size;
  t.true(total < 64 * 1024, `the ghost images take ${total} bytes for 6 pages of data and 64 MiB of holes`);
  const heads = await Promise.all(readdirSync(dir).filter((x) => x.startsWith("ghost-file-")).map(async (f) => (await entries(dir, f))[0]!));
  t.is(heads.filter((h) => h["chunks"] === true).length, 2, "the two files of 3 pages or more are chunked");
});

test("holes: --ghost-limit counts data, not apparent size", async (t) => {
  const w = await startWorkload(t, "unlinked", ["holes"]);
  const err = await t.throwsAsync(dumpGone(t, w, { ghostLimit: 4096 }));
  t.regex(err?.message ?? "", /unlinked file .*holes-\w+ holds \d+ bytes of data, more than --ghost-limit 4096/);
  t.is(await w.check(), "PASS holes", "the task runs on after the refusal");
});

test("attrs: unlinked files keep mode (o+x, set-user-ID), owner, mtime and offset; odd names, O_TMPFILE", async (t) => {
  await roundTrip(t, "attrs");
});

test("dirs: a removed cwd and a removed open directory come back removed, with their modes", async (t) => {
  await roundTrip(t, "dirs");
});

test("fifo: an unlinked FIFO comes back with its queued bytes", async (t) => {
  await roundTrip(t, "fifo");
});

test("devices: unlinked /dev/null and /dev/zero nodes come back as those devices", async (t) => {
  const { dir } = await roundTrip(t, "devices");
  const heads = await Promise.all(readdirSync(dir).filter((x) => x.startsWith("ghost-file-")).map(async (f) => (await entries(dir, f))[0]!));
  t.deepEqual(heads.map((h) => Number(h["rdev"])).sort(), [0x103, 0x105], "criu's rdev: glibc's st_rdev");
});

test("exe: a program whose binary was replaced while it ran (a package upgrade) comes back running the old binary", async (t) => {
  // The workload runs from a copy, which is then replaced by another program.
  const bin = join(tempDir(t, "tscriu-exe-"), "counter");
  copyFileSync(join(WORKLOAD_BIN, "counter"), bin);
  chmodSync(bin, 0o755);
  const state = tempDir(t, "tscriu-exe-state-");
  const w = await startProgram(t, [bin, state], () => existsSync(join(state, "counter")));
  const count = (): number => Number(readFileSync(join(state, "counter"), "utf8").trim());
  unlinkSync(bin);
  copyFileSync(join(WORKLOAD_BIN, "sleeper"), bin);
  const dir = await dumpGone(t, w);
  t.is((await entries(dir, "remap-fpath.img")).length, 1, "the old binary is a ghost file");
  await restoreTask(t, dir);
  t.regex(readlinkSync(`/proc/${w.pid}/exe`), / \(deleted\)$/, "its exe is the old, unlinked binary");
  const before = count();
  await waitFor("the restored counter to count on", () => count() > before);
  t.is(readFileSync(bin).equals(readFileSync(join(WORKLOAD_BIN, "sleeper"))), true, "the new binary is untouched");
});
