// Writes dist/cli/main.cache, V8's code cache of the bundled CLI (see orchestrator/cli/bin.ts),
// by running commands that load the dump, restore and crit machinery and stop early: no
// root needed, nothing touched (a pid that cannot exist, an empty images dir, an empty
// image). Each run starts from the cache the one before wrote, and adds what it compiled.
// A cache holds to the Node that wrote it (V8 refuses another's, and the code then
// compiles as usual): build-ts.mjs runs this after bundling, the package's install script
// again where it is installed (`npm rebuild tscriu` after a Node upgrade).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const cli = resolve(dirname(fileURLToPath(import.meta.url)), "../dist/cli");
const bin = join(cli, "tscriu.cjs");
// A fresh clone's install runs before the build has made dist/.
if (!existsSync(bin)) process.exit(0);
// V8 takes a cache made with the same flags only: those the launcher line gives Node.
const launcher = readFileSync(bin, "utf8").split("\n", 1)[0];
const launcherFlags = launcher.split(/\s+/).slice(launcher.split(/\s+/).indexOf("node") + 1);
const cache = join(cli, "main.cache");
rmSync(cache, { force: true });
const scratch = mkdtempSync(join(tmpdir(), "tscriu-cache-"));
const env = { ...process.env, TSCRIU_WRITE_CODE_CACHE: "1", HOME: scratch, CRIU_CONFIG_FILE: "", TSCRIU_SYSTEM_CONFIG: join(scratch, "none") };
for (const argv of [
  ["dump", "-t", "4194304", "-D", join(scratch, "d")],
  ["restore", "-D", scratch],
  ["decode", "-i", "/dev/null"],
  ["check", "--feature", "list"],
]) {
  spawnSync(process.execPath, [...launcherFlags, bin, ...argv], { env, stdio: "ignore" });
}
rmSync(scratch, { recursive: true, force: true });
if (!existsSync(cache)) console.warn("cli-cache: no code cache was written (dist/cli/main.cache): the CLI starts slower");
