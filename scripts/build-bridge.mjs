// Builds the native host bridge with node-gyp against Node's own headers.
// --nodedir matters: without it node-gyp tries to download headers, and this
// machine kind reaches no server but the package registries.
import { spawnSync } from "node:child_process";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nodedir = resolve(process.execPath, "../..");
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp
  ? [process.execPath, [gyp]]
  : ["node-gyp", []];
const r = spawnSync(cmd, [...args, "rebuild", `--nodedir=${nodedir}`, "--directory", resolve(root, "host-bridge")], {
  stdio: "inherit",
});
if (r.error) {
  console.error(`build-bridge: cannot run node-gyp: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status ?? 1);
