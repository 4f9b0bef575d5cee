// The command line: criu's commands and flags, crit's image verbs, criu's config
// files and exit codes (0 ok, 1 failure, usage errors included). A command line is
// parsed and judged first (parseCommandLine: no side effects), then run.

import { mkdirSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { applyConfig, ConfigError, type ConfigOption, type ConfigVerdict } from "./config.js";
import { fileSink, Logger, type LogLevel, normalizeVerbosity, stderrSink } from "../log.js";
import { critCommands } from "./crit.js";
import { toolCommands } from "./tools.js";
import { dumpCommand } from "./dump.js";
import { restoreCommand } from "./restore.js";
import { checkCommand } from "./check.js";
import { rpcCommands } from "./rpc.js";
import { pageServerCommand } from "./page-server.js";
import { lazyPagesCommand } from "./lazy-pages.js";
import { criuHelpGroups, criuOptionTable, helpOption, judgeConfigOption, refusals, verbosityOption } from "./args.js";
import { commandHelp, type HelpOption, type HelpPositional, topHelp } from "./help.js";
import { criuOption, type CriuCommand } from "./options.js";
import { type OptionSpec, parseLine } from "./parse.js";
import { VERSION } from "../version.js";

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

/** A word the command takes after its name (crit's `show <in>`); its value is a string unless kind says number. */
export interface Positional extends HelpPositional {
  kind?: "number";
}

export interface CommandSpec {
  /** the word that names it: "decode", "cpuinfo" */
  command: string;
  describe: string;
  /** the words after the name, all required */
  positionals?: readonly Positional[];
  /** options of its own, besides criu's (crit's -i, -o, --pretty …) */
  options?: readonly HelpOption[];
  /** none: a criu command tscriu has not built yet */
  handler?: Handler;
  /**
   * The criu command(s) this is, for the option table; one per value of its positional
   * where criu has one per value ("cpuinfo dump", "cpuinfo check"). None: crit's verbs,
   * which take -v and their own options only.
   */
  criu?: readonly CriuCommand[];
  /** the command creates -D when missing (dump): a relative log file may go there */
  makesImagesDir?: boolean;
}

/** criu commands that are part of the CLI but not built yet: a clear error, exit 1. */
const NOT_YET: [CriuCommand, string][] = [
  ["exec", "run a syscall in a task (deprecated in criu)"],
];

function notYet(name: CriuCommand, describe: string): CommandSpec {
  return { command: name, describe: `${describe} (not available yet)`, criu: [name] };
}

export function commandSpecs(): CommandSpec[] {
  return [...critCommands(), ...toolCommands(), dumpCommand(), dumpCommand("pre-dump"), restoreCommand(), checkCommand(), pageServerCommand(), lazyPagesCommand(), ...rpcCommands(), ...NOT_YET.map(([n, d]) => notYet(n, d))];
}

const EPILOG = "criu's config files apply (--config FILE adds one, --no-default-config skips the defaults); -V prints the version.";

/** The options a command parses: all of criu's for a criu command (refused by name later), else -v and its own. */
function optionTable(spec: CommandSpec): OptionSpec[] {
  return [...(spec.criu ? criuOptionTable() : [verbosityOption()]), ...(spec.options ?? [])];
}

const usageOf = (spec: CommandSpec): string => ["tscriu", spec.command, ...(spec.positionals ?? []).map((p) => `<${p.name}>`)].join(" ");

function helpOf(spec: CommandSpec): string {
  const groups = spec.criu ? criuHelpGroups(spec.criu) : [{ title: "Options:", options: [verbosityOption(), ...(spec.options ?? []), helpOption()] }];
  if (spec.criu && spec.options) groups[0] = { ...groups[0]!, options: [...spec.options, ...groups[0]!.options] };
  return commandHelp(usageOf(spec), spec.describe, spec.positionals ?? [], groups, EPILOG);
}

function topHelpOf(specs: readonly CommandSpec[]): string {
  return topHelp(
    specs.map((s) => [usageOf(s), s.describe] as const),
    [helpOption(), criuOption("version")!],
    `"tscriu <command> --help" shows a command's options. ${EPILOG}`,
  );
}

/**
 * The command a command line names: its first word that is not an option or an option's
 * value (read against every table, as the command is not known yet), and the criu
 * command it is ("cpuinfo" and the word after it), or "crit" for crit's verbs.
 */
function commandOf(argv: readonly string[], specs: readonly CommandSpec[]): { spec: CommandSpec; criu: CriuCommand | "crit" | undefined } | { word: string | undefined } {
  const { words } = parseLine(argv, [...criuOptionTable(), ...specs.flatMap((s) => s.options ?? [])]);
  const spec = specs.find((s) => s.command === words[0]);
  if (!spec) return { word: words[0] };
  if (!spec.criu) return { spec, criu: "crit" };
  return { spec, criu: spec.criu.length === 1 ? spec.criu[0] : spec.criu.find((c) => c === `${spec.command} ${words[1]}`) };
}

export type Parsed =
  | { kind: "run"; spec: CommandSpec & { handler: Handler }; args: Record<string, unknown> }
  /** answered without running a command: help, version, usage error, refusal */
  | { kind: "exit"; code: number; stdout: string; stderr: string };

const exit = (code: number, stdout: string, stderr: string): Parsed => ({ kind: "exit", code, stdout, stderr });
const usageError = (message: string): Parsed => exit(1, "", `tscriu: ${message}\nTry "tscriu --help".\n`);
const unknownArguments = (names: readonly string[]): string => `Unknown argument${names.length > 1 ? "s" : ""}: ${names.join(", ")}`;

/**
 * Reads config files, parses the command line and refuses what tscriu does not do, all
 * before anything is touched (the command implementations are not even imported yet).
 */
export function parseCommandLine(argvIn: readonly string[], env: NodeJS.ProcessEnv = process.env): Parsed {
  const specs = commandSpecs();
  const names = new Set(specs.map((s) => s.command));
  const cli = normalizeVerbosity(argvIn);
  // As criu: -V prints the version whatever else the line says.
  if (cli.includes("-V") || cli.includes("--version")) return exit(0, `Version: ${VERSION}\n`, "");
  const named = commandOf(cli, specs);
  const command = "spec" in named ? named.criu : undefined;
  const built = "spec" in named && named.spec.handler !== undefined && command !== undefined;
  // A command not built yet says so whatever its config files hold: their options pass to it.
  const judge = (o: ConfigOption): ConfigVerdict => (command === "crit" || command === undefined || built ? judgeConfigOption(o.name, command) : "keep");
  let argv: string[];
  try {
    argv = applyConfig(cli, env, (w) => names.has(w), judge);
  } catch (e) {
    if (e instanceof ConfigError) return exit(1, "", `tscriu: ${e.message}\n`);
    throw e;
  }
  if (!("spec" in named)) {
    if (argv.includes("--help") || argv.includes("-h")) return exit(0, topHelpOf(specs), "");
    return usageError(named.word === undefined ? "a command is needed" : unknownArguments([named.word]));
  }
  const spec = named.spec;
  const line = parseLine(argv, optionTable(spec));
  if (line.help) return exit(0, helpOf(spec), "");
  const wanted = spec.positionals ?? [];
  // words[0] is the command's name
  const given = line.words.slice(1);
  const extra = given.slice(wanted.length);
  // An unknown option may have taken a value, which would read as an extra word: name the options alone then.
  if (line.unknown.length > 0) return usageError(unknownArguments(line.unknown));
  if (extra.length > 0) return usageError(unknownArguments(extra));
  if (line.errors.length > 0) return usageError(line.errors.join("; "));
  if (given.length < wanted.length) return usageError(`${spec.command} needs <${wanted[given.length]!.name}> (${usageOf(spec)})`);
  const args = line.values;
  for (const [i, p] of wanted.entries()) {
    const word = given[i]!;
    if (p.choices && !p.choices.includes(word)) return usageError(`${spec.command}: <${p.name}> is one of ${p.choices.join(", ")}, not ${JSON.stringify(word)}`);
    if (p.kind === "number" && !/^\d+$/.test(word)) return usageError(`${spec.command}: <${p.name}> is a number, not ${JSON.stringify(word)}`);
    args[p.name] = p.kind === "number" ? Number(word) : word;
  }
  if (!spec.handler) return exit(1, "", `tscriu ${spec.command}: not implemented yet in tscriu ${VERSION} (see README: what works)\n`);
  if (command !== undefined && command !== "crit") {
    const refused = refusals(args, command);
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
