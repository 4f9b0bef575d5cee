// `npm run bench`: every benchmark script in turn. Each prints its own figures.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const only = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const benches = ["bench-decode.ts", "bench-wasm.ts", "bench-dedup.ts", "bench-dump.ts", "bench-snapshot-work.ts", "bench-pageserver.ts", "bench-incr.ts", "bench-restore.ts", "bench-tree.ts", "bench-fds.ts", "bench-tcp.ts", "bench-startup.ts", "bench-lazy.sh"].filter(
  (b) => existsSync(join(here, b)) && (only.length === 0 || only.some((o) => b.includes(o))),
);
spawnSync(process.execPath, [join(root, "scripts/build-ts.mjs")], { stdio: "inherit" });
let failed = 0;
for (const b of benches) {
  console.log(`\n== ${b}`);
  const r = b.endsWith(".sh") ? spawnSync("bash", [join(here, b)], { stdio: "inherit", cwd: root }) : spawnSync(process.execPath, ["--import=tsx", join(here, b)], { stdio: "inherit", cwd: root });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
