// Compiles the TypeScript sources to dist/ (the library: one file per module, with their
// declarations) and puts the committed wasm core beside its loader; then bundles the CLI
// from that output into dist/cli/, the files package.json's "bin" runs.
//
// Why a bundle: Node 20's ESM loader resolves, opens and reads every module on its own
// (~0.6 ms each; a dump loads ~120), which made most of a small dump's start-up time.
// esbuild's code splitting keeps what a command does not need out of its load: the
// entry is small, each command's machinery is a chunk imported when the command runs.
// The bundle lives two levels below the package root like the modules it is made of, so
// that the paths they find their neighbours by still hold: ../../host-bridge/build for
// the addon and its helper programs, ./core.wasm (copied next to it), ./worker.js for a
// service's workers (the second entry point) and ../cli/main.js for RpcClient.swrk.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, chmodSync, rmSync } from "node:fs";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = require.resolve("typescript/bin/tsc");
} catch {
  // Installed as a dependency without dev tools: dist/ ships prebuilt.
  process.exit(0);
}
const r = spawnSync(process.execPath, [tsc, "-p", resolve(root, "tsconfig.build.json")], { stdio: "inherit" });
if (r.status !== 0) process.exit(r.status ?? 1);
mkdirSync(resolve(root, "dist/wasm"), { recursive: true });
copyFileSync(resolve(root, "wasm/core.wasm"), resolve(root, "dist/wasm/core.wasm"));
chmodSync(resolve(root, "dist/orchestrator/cli/main.js"), 0o755);

const { build } = await import("esbuild");
const cli = resolve(root, "dist/cli");
rmSync(cli, { recursive: true, force: true });
await build({
  entryPoints: { main: resolve(root, "dist/orchestrator/cli/main.js"), worker: resolve(root, "dist/orchestrator/rpc/worker.js") },
  outdir: cli,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  logLevel: "warning",
});
copyFileSync(resolve(root, "wasm/core.wasm"), resolve(cli, "core.wasm"));
chmodSync(resolve(cli, "main.js"), 0o755);
