// Writes dist/cli/main.cache, V8's code cache of the bundled CLI (see orchestrator/cli/bin.ts),
// by running commands that load the dump, restore and crit machinery and stop early: no
// root needed, nothing touched (a pid that cannot exist, an empty images dir, an empty
// image). Each run starts from the cache the one before wrote, and adds what it compiled.
// A cache holds to the Node that wrote it (V8 refuses another's, and the code then
// compiles as usual): build-ts.mjs runs this after bundling, the package's install script
// again where it is installed (`npm rebuild tscriu` after a Node upgrade).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
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
// As root, real dumps and a restore of a process of its own (a `sleep` in a session of
// its own, not a child of this script) add the code of every step: the code a dump runs
// with its task frozen is then compiled already, not on first use (a 1 GiB snapshot's
// freeze was 3-4 ms shorter with it). TSCRIU_CACHE_NO_DUMP=1 leaves it out.
if (process.getuid?.() === 0 && process.env["TSCRIU_CACHE_NO_DUMP"] !== "1") warmWithDumps();
rmSync(scratch, { recursive: true, force: true });

function warmWithDumps() {
  const mark = `${60 + (process.pid % 1000) / 1000}`;
  spawnSync("/bin/sh", ["-c", `setsid sleep ${mark} </dev/null >/dev/null 2>&1 &`], { stdio: "ignore" });
  const ours = () => {
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (readFileSync(`/proc/${d}/cmdline`, "utf8") === `sleep\0${mark}\0`) return Number(d);
      } catch {
        // gone meanwhile
      }
    }
    return undefined;
  };
  // (sh returns before the sleep has started)
  let pid;
  for (let i = 0; i < 200 && (pid = ours()) === undefined; i++) spawnSync("/bin/sleep", ["0.01"]);
  if (pid === undefined) return;
  const run = (...argv) => spawnSync(process.execPath, [...launcherFlags, bin, ...argv], { env, stdio: "ignore", timeout: 30_000 });
  try {
    run("dump", "-t", String(pid), "-D", join(scratch, "wp"), "-R", "--wp-snapshot");
    run("pre-dump", "-t", String(pid), "-D", join(scratch, "pre"));
    run("dump", "-t", String(pid), "-D", join(scratch, "kill"), "--prev-images-dir", "../pre", "--track-mem");
    run("restore", "-D", join(scratch, "kill"), "-d");
  } finally {
    // the sleep, or the one restored with its pid
    const left = ours();
    try {
      if (left !== undefined) process.kill(left, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}
if (!existsSync(cache)) console.warn("cli-cache: no code cache was written (dist/cli/main.cache): the CLI starts slower");
