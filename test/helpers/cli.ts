// Runs the compiled tscriu CLI (dist/, built by `npm test` before ava) in a child process.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "./fixtures.js";

export const CLI = join(ROOT, "dist/orchestrator/cli/main.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function tscriu(args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: opts.input,
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    maxBuffer: 256 << 20,
    encoding: "utf8",
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
