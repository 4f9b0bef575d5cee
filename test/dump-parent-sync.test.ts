// syncParentChain (dump/parent.ts): before a default dump's freeze, every file system of
// the parent chain is synced once, following `parent` links to the end of the chain; a
// chain that ends, breaks or loops stops it, never an error of its own (the pages'
// lookup reports a broken chain, naming the file).
import test, { type ExecutionContext } from "ava";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { syncParentChain } from "../orchestrator/dump/parent.js";

function chainDir(t: ExecutionContext): string {
  const base = mkdtempSync(join(tmpdir(), "tscriu-parent-sync-"));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  for (const d of ["d1", "d2", "d3"]) mkdirSync(join(base, d));
  symlinkSync("../d1", join(base, "d2", "parent"));
  symlinkSync("../d2", join(base, "d3", "parent"));
  return base;
}

test("a chain on one file system: synced once; without a parent: nothing", (t) => {
  const base = chainDir(t);
  t.is(syncParentChain(join(base, "d3")), 1);
  t.is(syncParentChain(join(base, "d1")), 0);
});

test("a chain across file systems: each synced once (/dev/shm is tmpfs)", (t) => {
  const base = chainDir(t);
  const shm = mkdtempSync("/dev/shm/tscriu-parent-sync-");
  t.teardown(() => rmSync(shm, { recursive: true, force: true }));
  symlinkSync(shm, join(base, "d1", "parent"));
  t.is(syncParentChain(join(base, "d3")), 2);
});

test("a broken link ends the chain; a loop is followed a bounded number of times", (t) => {
  const base = chainDir(t);
  symlinkSync(join(base, "gone"), join(base, "d1", "parent"));
  t.is(syncParentChain(join(base, "d3")), 1);
  rmSync(join(base, "d1", "parent"));
  symlinkSync("../d3", join(base, "d1", "parent"));
  t.is(syncParentChain(join(base, "d3")), 1);
});
