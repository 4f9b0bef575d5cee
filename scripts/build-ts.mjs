// Compiles the TypeScript sources to dist/ (the library: one file per module, with their
// declarations) and puts the committed wasm core beside its loader; then bundles the CLI
// from that output into dist/cli/, where package.json's "bin" points.
//
// Why a bundle: Node 20's ESM loader resolves, opens, reads and compiles every module on
// its own, ~120 of them for a dump, which made most of a small dump's start-up after
// Node's own; one CommonJS file can also run from a V8 code cache, which Node 20 has no
// way to give ES modules. dist/cli/ holds:
//   tscriu.cjs   the bin (orchestrator/cli/bin.ts): launcher line, then runs main.cjs
//   main.cjs     the CLI, orchestrator/cli/main.ts and all it imports, one CommonJS file
//                (each module initialised when first imported, as before), ASCII only,
//                written with main.cache: edit neither by hand (V8 knows a cache's
//                source by its length only)
//   main.cache   V8's code cache of main.cjs (scripts/cli-cache.mjs, bin.ts)
//   worker.js    a service's worker (orchestrator/rpc/worker.ts), one ES module
//   main.js      the bin again, as an ES module, for what starts the CLI by its path
//   core.wasm    the wasm core
// The bundled modules find their neighbours by paths relative to their own (import.meta.url,
// here the bundle's): ../../host-bridge/build for the addon and its helper programs,
// ./core.wasm, ./worker.js for the service, ../cli/main.js for the page server an RPC
// request starts (page-server/spawn.ts). dist/cli/ is two levels below the package root
// like the modules themselves, so those still hold.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, chmodSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
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
const from = (p) => resolve(root, "dist", p);
rmSync(cli, { recursive: true, force: true });
const common = { bundle: true, platform: "node", target: "node20", logLevel: "warning" };
const bundle = await build({
  ...common,
  entryPoints: [from("orchestrator/cli/main.js")],
  outfile: join(cli, "main.cjs"),
  write: false,
  format: "cjs",
  // ASCII: bin.ts reads it as latin1, a one-byte string (see below for comments)
  charset: "ascii",
  banner: { js: 'const __tscriuUrl = require("node:url").pathToFileURL(__filename).href;' },
  define: { "import.meta.url": "__tscriuUrl" },
});
// bin.ts runs it, as a function body: main.ts's own launcher line goes. With charset
// "ascii" esbuild escapes what code holds; what is left beyond ASCII is in comments.
const code = bundle.outputFiles[0].text.replace(/^#!.*\n/, "").replace(/[^\x00-\x7f]/g, "?");
// vm.Script has no loader for import(): every one must have been bundled.
if (/\bimport\(/.test(code)) throw new Error("dist/cli/main.cjs: an import() was left unbundled");
mkdirSync(cli, { recursive: true });
writeFileSync(join(cli, "main.cjs"), code);
await build({ ...common, entryPoints: [from("orchestrator/rpc/worker.js")], outfile: join(cli, "worker.js"), format: "esm" });
await build({
  ...common,
  entryPoints: [from("orchestrator/cli/bin.js")],
  outfile: join(cli, "tscriu.cjs"),
  format: "cjs",
  banner: { js: 'const __tscriuUrl = require("node:url").pathToFileURL(__filename).href;' },
  define: { "import.meta.url": "__tscriuUrl" },
});
writeFileSync(join(cli, "main.js"), 'import "./tscriu.cjs";\n');
copyFileSync(resolve(root, "wasm/core.wasm"), join(cli, "core.wasm"));
chmodSync(join(cli, "tscriu.cjs"), 0o755);

// The code cache of main.cjs (after the bundle, which it is a cache of).
const c = spawnSync(process.execPath, [resolve(root, "scripts/cli-cache.mjs")], { stdio: "inherit" });
if (c.status !== 0) process.exit(c.status ?? 1);
