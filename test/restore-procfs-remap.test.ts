// Files of gone processes' /proc directories (criu's PROCFS remap; zdtm's unhashed_proc
// and remap_dead_pid): a cwd and an fd in /proc/A and an fd of /proc/B/status, whose
// processes died before the dump. The dump writes one PROCFS entry per dead PID, as criu
// does; the restore makes a helper with each PID while the files are opened and reaps it,
// so the workload finds its directories unhashed again. Hostile images are refused at plan
// naming remap-fpath.img; a failed restore leaves no helper behind.
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage, writeImage } from "../images/io.js";
import { ProcfsRemaps } from "../orchestrator/dump/procfs-remap.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

type Entry = Record<string, unknown>;

async function entries(dir: string, file: string): Promise<Entry[]> {
  return (await readImage(join(dir, file))).entries;
}

/** files.img's REG names by id. */
async function regNames(dir: string): Promise<Map<number, string>> {
  return new Map((await entries(dir, "files.img")).filter((e) => e["reg"]).map((e) => [Number(e["id"]), String((e["reg"] as Entry)["name"])]));
}

/** The children of pid (its main thread's). */
function children(pid: number): string {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
}

async function dumped(t: ExecutionContext): Promise<{ w: Workload; dir: string; a: number; b: number }> {
  const w = await startWorkload(t, "unhashedproc");
  t.is(await w.check(), "PASS unhashedproc", "before the dump");
  const dir = await dumpGone(t, w);
  return { w, dir, a: Number(w.info["a"]), b: Number(w.info["b"]) };
}

test("a cwd and fds in gone processes' /proc directories: one PROCFS remap per dead PID as criu writes it, helpers with those PIDs at restore, gone again afterwards", async (t) => {
  const { w, dir, a, b } = await dumped(t);
  const names = await regNames(dir);
  const remaps = await entries(dir, "remap-fpath.img");
  t.deepEqual(
    remaps.map((r) => [r["remap_type"], r["remap_id"], names.get(Number(r["orig_id"]))]),
    [
      ["PROCFS", a, `/proc/${a}`],
      ["PROCFS", b, `/proc/${b}/status`],
    ],
    "one entry per dead PID, on the first file of it (fd 20; the cwd, met later, has none)",
  );
  t.is([...names.values()].filter((n) => n === `/proc/${a}`).length, 2, "the fd and the cwd, each named without ' (deleted)'");
  t.deepEqual((await entries(dir, "pstree.img")).map((e) => e["pid"]), [w.pid], "the helpers are no task of the images");

  await restoreTask(t, dir);
  t.is(await w.check(), "PASS unhashedproc", "after the restore");
  t.false(existsSync(`/proc/${a}`) || existsSync(`/proc/${b}`), "the helpers are gone");
  t.is(children(w.pid), "", "and reaped by the root");
});

test("a failed restore leaves no helper; the next one restores", async (t) => {
  const { w, dir, a, b } = await dumped(t);
  await t.throwsAsync(restore({ imagesDir: dir, faults: "restore:locks" }), { message: /fault injected/ });
  await waitFor("the helpers to be gone", () => !existsSync(`/proc/${a}`) && !existsSync(`/proc/${b}`));
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS unhashedproc");
});

/** A copy of the images with remap-fpath.img's first entry (and files.img's entries) changed; its restore must be refused at plan naming remap-fpath.img. */
async function refused(t: ExecutionContext, dir: string, what: string, change: (remap: Entry, files: Entry[]) => void, re: RegExp): Promise<void> {
  const copy = tempDir(t);
  for (const f of readdirSync(dir)) if (f !== "remap-fpath.img" && f !== "files.img" && statSync(join(dir, f)).isFile()) copyFileSync(join(dir, f), join(copy, f));
  const remap = await readImage(join(dir, "remap-fpath.img"));
  const files = await readImage(join(dir, "files.img"));
  const remaps = remap.entries.map((e) => structuredClone(e));
  const fileEntries = files.entries.map((e) => structuredClone(e));
  change(remaps[0]!, fileEntries);
  await writeImage(join(copy, "remap-fpath.img"), { type: remap.type, entries: remaps });
  await writeImage(join(copy, "files.img"), { type: files.type, entries: fileEntries });
  const err = await t.throwsAsync(restore({ imagesDir: copy }), undefined, what);
  t.true(isRestoreError(err), what);
  t.like(err, { step: "plan" }, what);
  t.regex(err?.message ?? "", re, what);
  t.true((err?.message ?? "").includes(join(copy, "remap-fpath.img")), `${what}: names remap-fpath.img`);
}

test("hostile PROCFS remaps are refused at plan naming remap-fpath.img: no PID, a PID of the tree, a file outside its directory, a PID in use", async (t) => {
  const { w, dir, a } = await dumped(t);
  /** renames the remap's file (and the cwd, of the same dead PID) into /proc/PID */
  const rename = (files: Entry[], pid: number): void => {
    for (const e of files) {
      const reg = e["reg"] as Entry | undefined;
      if (reg && String(reg["name"]) === `/proc/${a}`) reg["name"] = `/proc/${pid}`;
    }
  };
  await refused(t, dir, "PID 0", (r) => (r["remap_id"] = 0), /names PID 0, which is no PID/);
  await refused(t, dir, "a negative PID (as uint32)", (r) => (r["remap_id"] = 0xffffffff), /names PID 4294967295, which is no PID/);
  await refused(t, dir, "a file outside /proc/PID", (r) => (r["remap_id"] = a + 1), new RegExp(`is for /proc/${a}, which is not in /proc/${a + 1}`));
  await refused(
    t,
    dir,
    "the PID of a task of the tree",
    (r, files) => {
      r["remap_id"] = w.pid;
      rename(files, w.pid);
    },
    new RegExp(`PID ${w.pid} is a task of the images`),
  );
  await refused(
    t,
    dir,
    "a PID in use",
    (r, files) => {
      r["remap_id"] = process.pid;
      rename(files, process.pid);
    },
    new RegExp(`PID ${process.pid} .*it must be free to restore /proc/${process.pid}, a file of a process gone at dump time .*/remap-fpath.img`),
  );
});

test("dump: a file of a gone process whose PID a task of the tree has now is refused", (t) => {
  const remaps = new ProcfsRemaps(new Set([4242]));
  const st = statSync("/proc", { bigint: true });
  t.throws(() => remaps.classify(st, "/proc/4242 (deleted)"), { message: /\/proc\/4242 belongs to a process that is gone, whose PID 4242 a task of the dumped tree has now/ });
  t.deepEqual(remaps.classify(st, `/proc/${process.pid}/status`), { name: `/proc/${process.pid}/status`, deadPid: undefined }, "a live process's file is no remap");
  t.is(remaps.classify(statSync("/", { bigint: true }), "/proc/4242 (deleted)"), undefined, "a file off procfs is not procfs's");
});
