// Namespace files (nsfs, criu's zdtm proc-self): a task holding /proc/self/ns/KIND of every
// kind of namespace open (and ns/net with O_PATH) is dumped with NS entries as criu writes
// them (the namespace's id from ids-PID.img, its clone flag, the file's flags), and each
// comes back as a file of the namespace of that kind the restored task is in. A namespace
// file of a namespace no process of the tree is in is refused at dump, by name, as criu
// refuses it; an NS entry naming a namespace no process of the images is in, at plan.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { restore } from "../orchestrator/restore/restore.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

type Entry = Record<string, unknown>;

const PASS = "PASS nsfiles=10";
const CLONE_NEWNET = 0x40000000;
const O_PATH = 0o10000000;
const O_LARGEFILE = 0o100000;

async function nsEntries(dir: string): Promise<Entry[]> {
  return (await readImage(join(dir, "files.img"))).entries.filter((e) => e["type"] === "NS").map((e) => e["nsf"] as Entry);
}

test("nsfs: namespace files of every kind come back as files of the restored task's namespaces, O_PATH kept; dumped and restored twice", async (t) => {
  const w = await startWorkload(t, "nsfiles");
  t.is(await w.check(), PASS, "before the dump");
  const dir = await dumpGone(t, w);
  const ids = (await readImage(join(dir, `ids-${w.pid}.img`))).entries[0]!;
  const entries = await nsEntries(dir);
  t.is(entries.length, 10, "one NS entry per open file description");
  const net = entries.filter((e) => e["ns_cflag"] === CLONE_NEWNET);
  t.deepEqual(net.map((e) => e["ns_id"]), [ids["net_ns_id"], ids["net_ns_id"]], "the net namespace's id, as in ids-PID.img");
  t.deepEqual(net.map((e) => (e["flags"] as number) & ~O_LARGEFILE).sort(), [0, O_PATH], "the files' flags");
  await restoreTask(t, dir);
  t.is(await w.check(), PASS, "after the restore");
  const again = await dumpGone(t, w);
  await restoreTask(t, again);
  t.is(await w.check(), PASS, "dumped and restored again");
});

test("nsfs: a namespace file of a namespace no process of the tree is in is refused at dump by name; the task runs on untraced", async (t) => {
  const w = await startWorkload(t, "nsfiles", ["foreign"]);
  const fd = Number(w.info["fd"]);
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t) }));
  t.regex(err?.message ?? "", new RegExp(`unsupported fd ${fd}: uts:\\[\\d+\\], a uts namespace no process of the dumped tree is in`));
  t.is(/TracerPid:\s+(\d+)/.exec(readFileSync(`/proc/${w.pid}/status`, "utf8"))?.[1], "0");
  t.is(await w.check(), PASS);
});

test("nsfs: an NS entry of a namespace no process of the images is in, or of no kind of namespace, is refused at plan naming files.img; as dumped, it restores", async (t) => {
  const w = await startWorkload(t, "nsfiles");
  const dir = await dumpGone(t, w);
  const file = join(dir, "files.img");
  const img = await readImage(file);
  const nsf = img.entries.find((e) => e["type"] === "NS" && (e["nsf"] as Entry)["ns_cflag"] === CLONE_NEWNET)!["nsf"] as Entry;
  const was = { ...nsf };
  for (const [change, re] of [
    [{ ns_id: 99 }, /a file of net namespace 99, which no process of the images is in \(no ids-PID\.img has net_ns_id 99\)/],
    [{ ns_cflag: 0x1234 }, /a namespace file of clone flag 0x1234, which is no kind of namespace/],
  ] as const) {
    Object.assign(nsf, was, change);
    await writeImage(file, img, { overwrite: true });
    const err = await t.throwsAsync(restore({ imagesDir: dir }));
    t.regex(err?.message ?? "", re);
    t.regex(err?.message ?? "", /files\.img/);
  }
  Object.assign(nsf, was);
  await writeImage(file, img, { overwrite: true });
  await restoreTask(t, dir);
  t.is(await w.check(), PASS);
});

test.serial("criu restores tscriu's images: nsfiles", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "nsfiles", [], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), PASS);
});

test.serial("tscriu restores criu's images: nsfiles", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "nsfiles", []);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  t.is((await nsEntries(c.images)).length, 10, "criu wrote an NS entry for each");
  await restoreTask(t, c.images);
  t.is(await c.check(), PASS);
});

test.serial("criu refuses a namespace file of a namespace no process is in too: nsfiles foreign", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "nsfiles", ["foreign"]);
  t.not(c.status, 0, "criu's dump fails");
  t.regex(readFileSync(join(c.images, "dump.log"), "utf8"), /No NS ID with kid/);
});
