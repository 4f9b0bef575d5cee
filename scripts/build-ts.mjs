// Compiles the TypeScript sources to dist/ (the CLI runs compiled JavaScript for a
// fast start) and puts the committed wasm core beside its loader.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, chmodSync } from "node:fs";
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
