// Builds the test workloads: test/workloads/NAME.c -> test/workloads/bin/NAME with
// gcc -O2, and a static copy in bin/static/NAME (for test/criu-restore.test.ts, where
// criu runs in a root with another libc), only when the source (or the shared
// workload.h) is newer than the binary.
// Safe when several test processes run it at once: each compiles to its own temporary
// name and renames it into place, so a binary is never seen half-written.
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "test/workloads");
const bin = join(src, "bin");
const CFLAGS = ["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror"];

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

mkdirSync(join(bin, "static"), { recursive: true });
const headers = readdirSync(src).filter((f) => f.endsWith(".h"));
const headerTime = Math.max(0, ...headers.map((h) => mtime(join(src, h))));
let failed = 0;
let built = 0;
const variants = [
  { dir: bin, flags: [] },
  { dir: join(bin, "static"), flags: ["-static"] },
];
for (const file of readdirSync(src).filter((f) => f.endsWith(".c")).sort()) for (const v of variants) {
  const name = file.slice(0, -2);
  const out = join(v.dir, name);
  const srcTime = Math.max(mtime(join(src, file)), headerTime);
  if (mtime(out) >= srcTime) continue;
  const tmp = `${out}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const r = spawnSync("gcc", [...CFLAGS, ...v.flags, "-o", tmp, join(src, file)], { stdio: ["ignore", "inherit", "inherit"] });
  if (r.error || r.status !== 0) {
    console.error(`build-workloads: ${file}: ${r.error ? r.error.message : `gcc exited with ${r.status}`}`);
    rmSync(tmp, { force: true });
    failed++;
    continue;
  }
  renameSync(tmp, out);
  built++;
}
if (process.env.TSCRIU_VERBOSE) console.error(`build-workloads: ${built} built`);
process.exit(failed ? 1 : 0);
