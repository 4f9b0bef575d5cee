// Fd tables shared (CLONE_FILES) by more than a parent and its child, as criu's zdtm
// fdt_shared has them: the root shares its table with two children and one of them with a
// grandchild, beside a child that holds a copy of its own. One fdinfo image holds the
// table; the restore forks each sharer with CLONE_FILES from its parent, which holds the
// table too. A table shared with a sibling and not with the parent (CLONE_PARENT) has no
// process to be forked from with it: refused at dump, as criu refuses it, and refused at
// restore in images that say so.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage, writeImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { restore } from "../orchestrator/restore/restore.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

function children(w: Workload): number[] {
  return ["a", "s", "g", "b"].filter((k) => w.info[k] !== undefined).map((k) => Number(w.info[k]));
}

async function filesIds(dir: string, pids: number[]): Promise<number[]> {
  return Promise.all(pids.map(async (p) => (await readImage(join(dir, `ids-${p}.img`))).entries[0]!["files_id"] as number));
}

async function allGone(pids: number[]): Promise<void> {
  for (const p of pids) await waitFor(`pid ${p} to go with the tree`, () => !existsSync(`/proc/${p}`));
}

async function line(t: ExecutionContext, opts: { static?: boolean } = {}): Promise<Workload> {
  const w = await startWorkload(t, "fdtable", ["line"], opts);
  t.is(await w.check(), "PASS fdtable line", "before the dump");
  return w;
}

test("fdtable: a table shared by the root, two children and a grandchild is one fdinfo image and one table again after the restore; the child with a copy keeps its own", async (t) => {
  const w = await line(t);
  const [a, s, g, b] = children(w) as [number, number, number, number];
  const dir = await dumpGone(t, w);
  const ids = await filesIds(dir, [w.pid, a, s, g, b]);
  t.deepEqual(ids.slice(1, 4), [ids[0], ids[0], ids[0]], "A, S and G hold the root's files_id");
  t.not(ids[4], ids[0], "B has a table of its own");
  t.deepEqual(readdirSync(dir).filter((f) => f.startsWith("fdinfo-")).sort(), [`fdinfo-${ids[0]}.img`, `fdinfo-${ids[4]}.img`].sort(), "one fdinfo image per table");
  await allGone([a, s, g, b]);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS fdtable line", "after the restore");
  for (const [p, ppid] of [[a, w.pid], [s, w.pid], [g, a], [b, a]] as const) t.regex(readFileSync(`/proc/${p}/stat`, "utf8"), new RegExp(`^${p} \\(\\S+\\) \\S ${ppid} `), `pid ${p}'s parent is ${ppid}`);
  const again = await dumpGone(t, w);
  await allGone([a, s, g, b]);
  await restoreTask(t, again);
  t.is(await w.check(), "PASS fdtable line", "dumped and restored again");
});

test("fdtable: a table shared with a sibling (CLONE_PARENT) and not with the parent is refused at dump, naming both; every process runs on untraced", async (t) => {
  const w = await startWorkload(t, "fdtable", ["sibling"]);
  const [a, s] = children(w) as [number, number];
  t.is(await w.check(), "PASS fdtable sibling", "before the dump");
  const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: tempDir(t) }));
  t.regex(err?.message ?? "", new RegExp(`pid ${s} shares an fd table \\(CLONE_FILES\\) with pid ${a} but not with its parent ${w.pid}`));
  for (const p of [w.pid, a, s]) t.is(/TracerPid:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1], "0", `pid ${p} not traced`);
  t.is(await w.check(), "PASS fdtable sibling", "after the refused dump");
});

test("fdtable: images where a process shares a table its parent does not hold are refused at plan, naming the ids image; as dumped, they restore", async (t) => {
  const w = await line(t);
  const [a, s, g, b] = children(w) as [number, number, number, number];
  const dir = await dumpGone(t, w);
  await allGone([a, s, g, b]);
  // A given B's table (a table of its own, as if it had unshared): G then holds the root's
  // table, which its parent A does not.
  const file = join(dir, `ids-${a}.img`);
  const img = await readImage(file);
  const was = img.entries[0]!["files_id"];
  img.entries[0]!["files_id"] = (await filesIds(dir, [b]))[0];
  await writeImage(file, img, { overwrite: true });
  const err = await t.throwsAsync(restore({ imagesDir: dir }));
  t.regex(err?.message ?? "", new RegExp(`pid ${g} shares its fd table \\(files_id ${String(was)}\\) with pid ${w.pid} but not with its parent ${a}.*ids-${g}\\.img`));
  for (const p of [w.pid, a, s, g, b]) t.false(existsSync(`/proc/${p}`), `nothing left with pid ${p}`);
  img.entries[0]!["files_id"] = was;
  await writeImage(file, img, { overwrite: true });
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS fdtable line");
});

test.serial("criu restores tscriu's images: fdtable line", async (t) => {
  if (!haveRoot(t)) return;
  const w = await line(t, { static: true });
  const dir = await dumpGone(t, w);
  await allGone(children(w));
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS fdtable line");
});

test.serial("tscriu restores criu's images: fdtable line", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "fdtable", ["line"]);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  await restoreTask(t, c.images);
  t.is(await c.check(), "PASS fdtable line");
});

test.serial("criu refuses the sibling's table too: fdtable sibling", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "fdtable", ["sibling"]);
  t.not(c.status, 0, "criu's dump fails");
  t.regex(readFileSync(join(c.images, "dump.log"), "utf8"), /Can't make FILES id/);
});
