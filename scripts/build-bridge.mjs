// Builds the native host bridge with node-gyp against Node's own headers.
// --nodedir matters: without it node-gyp tries to download headers, and this
// machine kind reaches no server but the package registries.
import { spawnSync } from "node:child_process";
import { resolve, dirname } from "node:path";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nodedir = resolve(process.execPath, "../..");
// npm tells lifecycle scripts where its bundled node-gyp is; run by hand, look
// for the copy bundled with npm next to this node.
const bundled = resolve(nodedir, "lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js");
const gyp = process.env.npm_config_node_gyp || (existsSync(bundled) ? bundled : undefined);
const [cmd, args] = gyp ? [process.execPath, [gyp]] : ["node-gyp", []];
const r = spawnSync(cmd, [...args, "rebuild", `--nodedir=${nodedir}`, "--directory", resolve(root, "host-bridge")], {
  stdio: "inherit",
});
if (r.error) {
  console.error(`build-bridge: cannot run node-gyp: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status ?? 1);
