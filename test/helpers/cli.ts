// Runs the compiled tscriu CLI (dist/, built by `npm test` before ava) in a child process,
// as an operator does: the file package.json's "bin" names, executed through its launcher
// line (tests that need Node's own flags run `node CLI` instead).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./fixtures.js";

export const CLI = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tscriu: string } }).bin.tscriu);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function tscriu(args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string } = {}): CliResult {
  const r = spawnSync(CLI, args, {
    input: opts.input,
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    maxBuffer: 256 << 20,
    encoding: "utf8",
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
