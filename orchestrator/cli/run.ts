// The command line: criu's commands and flags, crit's image verbs, criu's config
// files and exit codes (0 ok, 1 failure, usage errors included). A command line is
// parsed and judged first (parseCommandLine: no side effects), then run.

import { mkdirSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { createRequire } from "node:module";
import type { Argv } from "yargs";
import { applyConfig, ConfigError, type ConfigOption, type ConfigVerdict } from "./config.js";
import { fileSink, Logger, type LogLevel, normalizeVerbosity, stderrSink } from "../log.js";
import { critCommands } from "./crit.js";
import { toolCommands } from "./tools.js";
import { dumpCommand } from "./dump.js";
import { restoreCommand } from "./restore.js";
import { checkCommand } from "./check.js";
import { rpcCommands } from "./rpc.js";
import { pageServerCommand } from "./page-server.js";
import { declareCriuOptions, declareVerbosity, judgeConfigOption, refusals } from "./args.js";
import type { CriuCommand } from "./options.js";
import { VERSION } from "../version.js";

// yargs' CommonJS build loads in half the time of its ESM entry (~0.1 s less per run here).
const yargs = createRequire(import.meta.url)("yargs") as (args: readonly string[]) => Argv;

/** Where the CLI writes: the process's stdout and stderr, or a test's buffers. */
export interface CliIo {
  /** write to standard output, resolved once flushed */
  out(text: string | Uint8Array): Promise<void>;
  err(text: string): void;
}

export interface CliContext extends CliIo {
  log: Logger;
}

export type Handler = (args: Record<string, unknown>, ctx: CliContext) => Promise<number>;

export interface CommandSpec {
  command: string;
  describe: string;
  builder: (y: Argv) => Argv;
  /** none: a criu command tscriu has not built yet */
  handler?: Handler;
  /**
   * The criu command(s) this is, for the option table; one per value of its positional
   * where criu has one per value ("cpuinfo dump", "cpuinfo check"). None: crit's verbs.
   */
  criu?: readonly CriuCommand[];
  /** the command creates -D when missing (dump): a relative log file may go there */
  makesImagesDir?: boolean;
}

/** criu commands that are part of the CLI but not built yet: a clear error, exit 1. */
const NOT_YET: [CriuCommand, string][] = [
  ["lazy-pages", "serve lazy pages to a restored tree"],
  ["exec", "run a syscall in a task (deprecated in criu)"],
];

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

function notYet(name: CriuCommand, describe: string): CommandSpec {
  return { command: name, describe: `${describe} (not available yet)`, builder: (y) => y, criu: [name] };
}

export function commandSpecs(): CommandSpec[] {
  return [...critCommands(), ...toolCommands(), dumpCommand(), dumpCommand("pre-dump"), restoreCommand(), checkCommand(), pageServerCommand(), ...rpcCommands(), ...NOT_YET.map(([n, d]) => notYet(n, d))];
}

/** The criu command a command line names, before parsing (for its config files); "crit" for crit's verbs. */
function commandOf(argv: readonly string[], specs: readonly CommandSpec[]): CriuCommand | "crit" | undefined {
  for (let i = 0; i < argv.length; i++) {
    const spec = specs.find((s) => s.command.split(" ")[0] === argv[i]);
    if (!spec) continue;
    if (!spec.criu) return "crit";
    if (spec.criu.length === 1) return spec.criu[0];
    const rest = argv.slice(i + 1);
    return spec.criu.find((c) => rest.includes(c.split(" ")[1]!));
  }
  return undefined;
}

/** The criu command of a parsed command line: its positional picks one where there are several. */
function criuCommand(spec: CommandSpec, args: Record<string, unknown>): CriuCommand | undefined {
  if (!spec.criu || spec.criu.length === 1) return spec.criu?.[0];
  return spec.criu.find((c) => c === `${spec.command.split(" ")[0]!} ${String(args["action"])}`);
}

export type Parsed =
  | { kind: "run"; spec: CommandSpec & { handler: Handler }; args: Record<string, unknown> }
  /** answered without running a command: help, version, usage error, refusal */
  | { kind: "exit"; code: number; stdout: string; stderr: string };

const exit = (code: number, stdout: string, stderr: string): Parsed => ({ kind: "exit", code, stdout, stderr });

/**
 * Reads config files, parses the command line and refuses what tscriu does not do, all
 * before anything is touched (the command implementations are not even imported yet).
 */
export function parseCommandLine(argvIn: readonly string[], env: NodeJS.ProcessEnv = process.env): Parsed {
  const specs = commandSpecs();
  const names = new Set(specs.map((s) => s.command.split(" ")[0]!));
  const cli = normalizeVerbosity(argvIn);
  // As criu: -V prints the version whatever else the line says.
  if (cli.includes("-V") || cli.includes("--version")) return exit(0, `Version: ${VERSION}\n`, "");
  const command = commandOf(cli, specs);
  const built = specs.some((s) => s.handler && command !== undefined && command !== "crit" && s.criu?.includes(command));
  // A command not built yet says so whatever its config files hold: their options pass to it.
  const judge = (o: ConfigOption): ConfigVerdict => (command === "crit" || command === undefined || built ? judgeConfigOption(o.name, command) : "keep");
  let argv: string[];
  try {
    argv = applyConfig(cli, env, (w) => names.has(w), judge);
  } catch (e) {
    if (e instanceof ConfigError) return exit(1, "", `tscriu: ${e.message}\n`);
    throw e;
  }
  let y = yargs(argv)
    .scriptName("tscriu")
    .usage("Usage: tscriu <command> [options]")
    .version(false)
    .help("help")
    .alias("h", "help")
    .strict()
    .demandCommand(1, "a command is needed")
    .parserConfiguration({ "duplicate-arguments-array": false })
    .wrap(Math.min(110, process.stdout.columns || 100));
  skipHelpCache(y);
  for (const s of specs) {
    y = y.command(s.command, s.describe, (b) => s.builder(s.criu ? declareCriuOptions(b, s.criu) : declareVerbosity(b)));
  }
  // With a callback yargs prints nothing and never exits: help and errors come back here.
  let result: { err: Error | undefined; args: Record<string, unknown>; output: string } | undefined;
  void y.parse(argv, {}, (err, args, output) => {
    result = { err: err ?? undefined, args, output };
  });
  if (!result) throw new Error("yargs did not call back");
  const { err, args, output } = result;
  if (err) return exit(1, "", `tscriu: ${err.message}\nTry "tscriu --help".\n`);
  if (output !== "") return exit(0, `${output}\n`, "");
  const spec = specs.find((s) => s.command.split(" ")[0] === String((args["_"] as unknown[])[0]))!;
  const criu = criuCommand(spec, args);
  if (!spec.handler) return exit(1, "", `tscriu ${spec.command}: not implemented yet in tscriu ${VERSION} (see README: what works)\n`);
  if (criu !== undefined) {
    const refused = refusals(args, criu);
    if (refused.length > 0) return exit(1, "", refused.map((m) => `tscriu: ${m}\n`).join(""));
  }
  return { kind: "run", spec: { ...spec, handler: spec.handler }, args };
}

const processIo: CliIo = {
  out: (text) =>
    new Promise((resolve, reject) => {
      process.stdout.write(text, (e) => (e ? reject(e) : resolve()));
    }),
  err: (text) => void process.stderr.write(text),
};

function context(args: Record<string, unknown>, spec: CommandSpec, io: CliIo): CliContext {
  const level = Math.max(0, Math.min(4, Number(args["verbosity"] ?? 2))) as LogLevel;
  const file = args["log-file"];
  let sink = stderrSink();
  if (typeof file === "string" && file !== "-") {
    // As criu: a relative log file goes into the work dir (-W), else the images dir (-D).
    const base = (args["work-dir"] ?? args["images-dir"]) as string | undefined;
    if (base !== undefined && !isAbsolute(file) && spec.makesImagesDir) mkdirSync(base, { recursive: true });
    sink = fileSink(base !== undefined && !isAbsolute(file) ? join(base, file) : file);
  }
  return { log: new Logger(level, sink), ...io };
}

/** Runs the CLI on argv (without "node" and the script); resolves to the exit code. */
export async function run(argv: readonly string[], opts: { io?: CliIo; env?: NodeJS.ProcessEnv } = {}): Promise<number> {
  const io = opts.io ?? processIo;
  const parsed = parseCommandLine(argv, opts.env);
  if (parsed.kind === "exit") {
    if (parsed.stdout !== "") await io.out(parsed.stdout);
    if (parsed.stderr !== "") io.err(parsed.stderr);
    return parsed.code;
  }
  let ctx: CliContext | undefined;
  try {
    ctx = context(parsed.args, parsed.spec, io);
    return await parsed.spec.handler(parsed.args, ctx);
  } catch (e) {
    const err = e as Error;
    io.err(`tscriu: ${err.message}\n`);
    if ((opts.env ?? process.env)["TSCRIU_DEBUG"]) io.err(`${err.stack ?? ""}\n`);
    return 1;
  } finally {
    ctx?.log.close();
  }
}
