// The command line: criu's commands and flags, crit's image verbs, criu's config
// files and exit codes (0 ok, 1 failure, usage errors included).

import { mkdirSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { createRequire } from "node:module";
import type { Argv } from "yargs";
import { applyConfig, ConfigError } from "./config.js";
import { fileSink, Logger, type LogLevel, normalizeVerbosity, stderrSink } from "../log.js";
import { critCommands } from "./crit.js";
import { toolCommands } from "./tools.js";
import { dumpCommand } from "./dump.js";
import { restoreCommand } from "./restore.js";
import { checkCommand } from "./check.js";
import { VERSION } from "../version.js";

// yargs' CommonJS build loads in half the time of its ESM entry (~0.1 s less per run here).
const yargs = createRequire(import.meta.url)("yargs") as (args: readonly string[]) => Argv;

export interface CliContext {
  log: Logger;
  /** write to standard output, resolved once flushed */
  out(text: string | Uint8Array): Promise<void>;
  err(text: string): void;
}

export type Handler = (args: Record<string, unknown>, ctx: CliContext) => Promise<number>;

export interface CommandSpec {
  command: string;
  describe: string;
  builder: (y: Argv) => Argv;
  handler: Handler;
  /** the command creates -D when missing (dump): a relative log file may go there */
  makesImagesDir?: boolean;
}

/** A command line yargs refuses (unknown option, missing argument): exit 1 with usage. */
class UsageError extends Error {
  override readonly name = "UsageError";
}

/** criu commands that are part of the CLI but not built yet: a clear error, exit 1. */
const NOT_YET: [string, string][] = [
  ["pre-dump", "pre-dump memory of a process tree"],
  ["page-server", "serve pages over the network"],
  ["lazy-pages", "serve lazy pages to a restored tree"],
  ["service", "RPC daemon"],
  ["swrk", "RPC over an inherited socket"],
  ["exec", "run a syscall in a task (deprecated in criu)"],
];

/** Options criu accepts with every command; defined once so config files parse. */
function globalOptions(y: Argv, crit: boolean): Argv {
  let g = y
    .option("verbosity", { type: "number", describe: "log level 0..4 (also -v, -vv…, -v4)", default: 2 })
    .option("log-file", { type: "string", describe: "write log messages to a file", ...(crit ? {} : { alias: "o" }) })
    .option("config", { type: "string", describe: "read options from a config file" })
    .option("images-dir", { alias: "D", type: "string", describe: "directory of image files" })
    .option("work-dir", { alias: "W", type: "string", describe: "directory for logs, pidfiles and stats" })
    .option("display-stats", { type: "boolean", describe: "print statistics at the end" })
    .option("pidfile", { type: "string", describe: "write the root task / service pid to a file" })
    .option("prev-images-dir", { type: "string", describe: "parent image directory (incremental dumps)" })
    .option("tree", { alias: "t", type: "number", describe: "pid of the root of the tree to dump" })
    .option("leave-running", { alias: "R", type: "boolean", describe: "leave tasks running after dump" })
    .option("leave-stopped", { alias: "s", type: "boolean", describe: "leave tasks stopped after dump" })
    .option("shell-job", { alias: "j", type: "boolean", describe: "allow a shell job (a tty)" })
    .option("restore-detached", { alias: "d", type: "boolean", describe: "detach after restore" })
    .option("restore-sibling", { alias: "S", type: "boolean", describe: "restore as a sibling of tscriu" })
    .option("track-mem", { type: "boolean", describe: "track memory changes for incremental dumps" })
    .option("auto-dedup", { type: "boolean", describe: "punch parent pages replaced by this dump" })
    .option("cpu-cap", { type: "string", describe: "cpu capabilities to check: fpu,cpu,ins,all,none,^item" })
    .option("tcp-established", { type: "boolean", describe: "dump/restore established TCP connections" })
    .option("action-script", { type: "string", array: true, describe: "script run at each action" })
    .option("timeout", { type: "number", describe: "seconds to wait for the tree to freeze" })
    .option("ghost-limit", { type: "string", describe: "largest ghost file to dump" })
    .option("inherit-fd", { type: "string", array: true, describe: "fd[N]:resource for restore" })
    .option("root", { alias: "r", type: "string", describe: "root directory for restore" })
    .option("freeze-cgroup", { type: "string", describe: "freeze through this cgroup" })
    .option("address", { type: "string", describe: "page server address" })
    .option("port", { type: "number", describe: "page server port" })
    .option("page-server", { type: "boolean", describe: "send pages to a page server" })
    .option("lazy-pages", { type: "boolean", describe: "restore memory lazily" })
    .option("daemon", { type: "boolean", describe: "run as a daemon" });
  if (crit) g = g.option("out", { alias: "o", type: "string", describe: "output file (stdout by default)" });
  return g;
}

/**
 * yargs renders the whole help text (cliui) after every command handler starts, only to
 * cache it for a later failure message; tscriu prints its own ("Try tscriu --help"). That
 * rendering was ~30 ms of every run, so the cache is switched off (an internal of yargs
 * 17: where it is missing, nothing changes).
 */
function skipHelpCache(y: Argv): void {
  const usage = (y as unknown as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } }).getInternalMethods?.().getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === "function") usage.cacheHelpMessage = () => undefined;
}

function writeOut(text: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (e) => (e ? reject(e) : resolve()));
  });
}

function notYet(name: string, describe: string): CommandSpec {
  return {
    command: name,
    describe: `${describe} (not available yet)`,
    builder: (y) => y,
    handler: async (_args, ctx) => {
      ctx.err(`tscriu ${name}: not implemented yet in tscriu ${VERSION} (see README: what works)\n`);
      return 1;
    },
  };
}

const CRIT_VERBS = new Set(["decode", "encode"]);

/** Runs the CLI on argv (without "node" and the script); resolves to the exit code. */
export async function run(argvIn: readonly string[]): Promise<number> {
  const specs: CommandSpec[] = [...critCommands(), ...toolCommands(), dumpCommand(), restoreCommand(), checkCommand(), ...NOT_YET.map(([n, d]) => notYet(n, d))];
  const names = new Set(specs.map((s) => s.command.split(" ")[0]!));
  let argv: string[];
  try {
    argv = applyConfig(normalizeVerbosity(argvIn), process.env, (w) => names.has(w));
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`tscriu: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  if (argv.length > 0 && argv.every((a) => a === "-V" || a === "--version" || a.startsWith("--verbosity="))) {
    process.stdout.write(`Version: ${VERSION}\n`);
    return 0;
  }
  // crit's decode/encode use -o for their output; criu's commands use it for the log.
  const critVerb = CRIT_VERBS.has(argvIn[0] ?? "");
  let code = 0;
  let logger: Logger | undefined;
  const ctxFor = (args: Record<string, unknown>, spec: CommandSpec): CliContext => {
    const level = Math.max(0, Math.min(4, Number(args["verbosity"] ?? 2))) as LogLevel;
    const file = args["log-file"];
    let sink = stderrSink();
    if (typeof file === "string" && file !== "-") {
      // As criu: a relative log file goes into the work dir (-W), else the images dir (-D).
      const base = (args["work-dir"] ?? args["images-dir"]) as string | undefined;
      if (base !== undefined && !isAbsolute(file) && spec.makesImagesDir) mkdirSync(base, { recursive: true });
      sink = fileSink(base !== undefined && !isAbsolute(file) ? join(base, file) : file);
    }
    logger = new Logger(level, sink);
    return { log: logger, out: writeOut, err: (t) => process.stderr.write(t) };
  };
  let y = globalOptions(yargs(argv), critVerb)
    .scriptName("tscriu")
    .usage("Usage: tscriu <command> [options]")
    .version(false)
    .help("help")
    .alias("h", "help")
    .strict()
    .demandCommand(1, "a command is needed")
    .parserConfiguration({ "duplicate-arguments-array": false })
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      // Throwing stops yargs from running the command after a usage error.
      throw err ?? new UsageError(msg);
    });
  skipHelpCache(y);
  for (const s of specs) {
    y = y.command(
      s.command,
      s.describe,
      (b) => s.builder(b),
      async (args) => {
        const ctx = ctxFor(args, s);
        code = await s.handler(args, ctx);
      },
    );
  }
  try {
    await y.parseAsync();
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`tscriu: ${err.message}\n`);
    if (e instanceof UsageError) process.stderr.write('Try "tscriu --help".\n');
    if (process.env["TSCRIU_DEBUG"]) process.stderr.write(`${err.stack ?? ""}\n`);
    code = 1;
  } finally {
    logger?.close();
  }
  return code;
}
