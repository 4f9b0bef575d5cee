// scripts/zdtm-shim.sh, criu's zdtm harness driving tscriu: the options criu takes on a
// command where it does not use them are dropped there, the rest passed on as given.
// TSCRIU_BIN points the shim at echo, which shows what tscriu would have been given.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import test from "ava";
import { ROOT } from "./helpers/fixtures.js";

const SHIM = join(ROOT, "scripts/zdtm-shim.sh");

function given(...args: string[]): string {
  const r = spawnSync("bash", [SHIM, ...args], { encoding: "utf8", env: { ...process.env, TSCRIU_BIN: "/bin/echo" } });
  if (r.status !== 0) throw new Error(`zdtm-shim.sh ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

test("restore: --skip-in-flight and --link-remap (read by criu's dump only) are dropped, the rest kept in order", (t) => {
  t.is(given("restore", "-D", "img", "--skip-in-flight", "--tcp-established", "--link-remap", "-v4"), "restore -D img --tcp-established -v4");
});

test("dump: --skip-in-flight and --link-remap are kept; --pidfile is dropped; the lock is nftables unless given", (t) => {
  t.is(given("dump", "-t", "7", "--skip-in-flight", "--link-remap", "--pidfile", "p"), "dump -t 7 --skip-in-flight --link-remap --network-lock nftables");
  t.is(given("dump", "-t", "7", "--network-lock", "skip"), "dump -t 7 --network-lock skip");
});
