// criu's option table (options.ts) put to work on a command line: the options a command
// parses, the groups its --help shows, the refusal of what tscriu does not do, and the
// verdict on an option of a config file.

import type { ConfigVerdict } from "./config.js";
import type { HelpGroup, HelpOption } from "./help.js";
import { CRIU_OPTIONS, type CriuCommand, type CriuOption, criuOption, notAnOptionOf, notSupportedYet, support } from "./options.js";
import type { OptionSpec } from "./parse.js";

/**
 * Options the CLI frame handles before the command line is parsed: -V (main.ts, run.ts),
 * --config and --no-default-config (config.ts); -h is read by the parser itself.
 */
const FRAME = new Set(["help", "version", "config", "no-default-config"]);

export const NOT_YET_GROUP = "criu options tscriu does not support yet (refused):";

/** criu's default log level: -v raises it from 2. */
const withDefault = (o: CriuOption): HelpOption => (o.name === "verbosity" ? { ...o, default: 2 } : o);

/**
 * Every criu option, whatever the command: each one parses with its value, and is then
 * refused by name where tscriu does not take it (see `refusals`) rather than reported as
 * unknown.
 */
export function criuOptionTable(): OptionSpec[] {
  return CRIU_OPTIONS.filter((o) => !FRAME.has(o.name)).map(withDefault);
}

/** criu's -v for crit's verbs too (normalizeVerbosity gives every form as --verbosity=N). */
export function verbosityOption(): HelpOption {
  return withDefault(criuOption("verbosity")!);
}

/** -h, --help, as the option table describes it. */
export function helpOption(): HelpOption {
  return criuOption("help")!;
}

/**
 * --help of criu's `commands`: the options tscriu implements there under "Options:",
 * those criu takes there that tscriu does not support yet in a group of their own (a
 * user coming from criu's manual sees where tscriu stands); those of other commands are
 * left out.
 */
export function criuHelpGroups(commands: readonly CriuCommand[]): HelpGroup[] {
  const implemented: HelpOption[] = [];
  const notYet: HelpOption[] = [];
  for (const o of CRIU_OPTIONS) {
    if (FRAME.has(o.name)) continue;
    const s = commands.map((c) => support(o, c));
    if (s.includes("implemented")) implemented.push(withDefault(o));
    else if (s.includes("not-yet")) notYet.push(o);
  }
  return [
    { title: "Options:", options: [...implemented, helpOption()] },
    { title: NOT_YET_GROUP, options: notYet },
  ];
}

/**
 * One message per criu option on the parsed command line that tscriu does not take for
 * `command`: not supported yet, or not an option of that command at all. A boolean
 * negated with criu's "no-" prefix asks for what tscriu does anyway, and passes.
 */
export function refusals(args: Readonly<Record<string, unknown>>, command: CriuCommand): string[] {
  const out: string[] = [];
  for (const o of CRIU_OPTIONS) {
    if (FRAME.has(o.name)) continue;
    const v = args[o.name];
    if (v === undefined || (o.kind === "boolean" && v === false)) continue;
    const s = support(o, command);
    if (s === "not-yet") out.push(notSupportedYet(o, command));
    else if (s === "not-taken") out.push(notAnOptionOf(o, command));
  }
  return out;
}

/**
 * The verdict on one option of a config file for `command` ("crit": one of crit's verbs;
 * undefined: no command on the line). Config files serve every command, as in
 * criu: an option of other commands is left out; one criu takes with this command and
 * tscriu does not support is refused; what is not criu's stays for the command line to
 * judge (crit's `pretty` is decode's, anything else is a usage error).
 */
export function judgeConfigOption(written: string, command: CriuCommand | "crit" | undefined): ConfigVerdict {
  const name = written.replace(/=.*$/s, "");
  let o = criuOption(name);
  let negated = false;
  if (!o && name.startsWith("no-")) {
    const plain = criuOption(name.slice(3));
    if (plain?.kind === "boolean") [o, negated] = [plain, true];
  }
  if (!o) return "keep";
  if (command === "crit") return o.name === "verbosity" ? "keep" : "skip";
  if (command === undefined) return "skip";
  const s = support(o, command);
  if (s === "not-taken") return "skip";
  if (s === "not-yet" && !negated) return { refuse: notSupportedYet(o, command) };
  return "keep";
}

/** An option's value as a command reads it: a string option's, undefined when not given. */
export const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
/** A number option's value, undefined when not given. */
export const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);
