// Hostile filelocks.img for the locks and leases tests.
import { copyFileSync, existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { readImage, writeImage } from "../../images/io.js";
import { isRestoreError } from "../../orchestrator/restore/errors.js";
import { restore } from "../../orchestrator/restore/restore.js";
import { tempDir } from "./dump.js";

type Entry = Record<string, unknown>;

/** A copy of `dir` whose filelocks.img `mutate` changed: refused at plan naming it, nothing of `pid` created. */
export async function hostileLocks(t: ExecutionContext, pid: number, dir: string, what: string, mutate: (e: Entry[]) => void, re: RegExp): Promise<void> {
  const copy = tempDir(t);
  for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(copy, f));
  const img = await readImage(join(copy, "filelocks.img"));
  mutate(img.entries);
  rmSync(join(copy, "filelocks.img"));
  await writeImage(join(copy, "filelocks.img"), img);
  const err = await t.throwsAsync(restore({ imagesDir: copy, fileLocks: true }), undefined, what);
  t.true(isRestoreError(err), `${what}: ${String(err)}`);
  t.like(err, { step: "plan" }, what);
  t.regex(err?.message ?? "", re, what);
  t.regex(err?.message ?? "", /filelocks\.img/, `${what}: names the file`);
  t.false(existsSync(`/proc/${pid}`), `${what}: nothing was created`);
}
