// Debian's pycriu (python3-pycriu, from the criu package CI installs) as the RPC client
// of the tests: test/helpers/pycriu-drive.py makes one call per run and prints its answer.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { ROOT } from "./fixtures.js";

/** Debian's python with its pycriu (a pyenv python3 on PATH has none). */
export const PYTHON = "/usr/bin/python3";
export const DRIVE = join(ROOT, "test/helpers/pycriu-drive.py");

/** Fails the test when pycriu is missing: the RPC tests need a real client. */
export function pycriuInstalled(t: ExecutionContext): void {
  const r = spawnSync(PYTHON, ["-c", "import pycriu"], { encoding: "utf8" });
  if (r.status !== 0) t.fail(`Debian's pycriu is needed (apt-get install criu python3-protobuf): ${r.stderr || r.error?.message}`);
}

/** One pycriu call; `how` is swrk:BINARY or sk:SOCKET; `wrap` runs it under setpriv or the like. */
export function pycriu(how: string, args: string[], wrap: string[] = []): Record<string, unknown> {
  const argv = [...wrap, PYTHON, DRIVE, how, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 90_000 });
  if (r.status !== 0) throw new Error(`pycriu-drive.py ${args.join(" ")} exited with ${r.status ?? r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}
