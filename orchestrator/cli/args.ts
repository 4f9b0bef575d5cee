// criu's option table (options.ts) put to work on a command line: declared to yargs per
// command, judged in config files, and refused before a command runs when tscriu does
// not do what it asks.

import type { Argv, Options } from "yargs";
import type { ConfigVerdict } from "./config.js";
import { CRIU_OPTIONS, type CriuCommand, type CriuOption, criuOption, notAnOptionOf, notSupportedYet, support } from "./options.js";

/**
 * Options the CLI frame handles before yargs sees the command line: -V (run.ts),
 * --config and --no-default-config (config.ts); -h is yargs' own help.
 */
const FRAME = new Set(["help", "version", "config", "no-default-config"]);

export const NOT_YET_GROUP = "criu options tscriu does not support yet (refused):";

function yargsOption(o: CriuOption): Options {
  // yargs-parser takes a repeated number option whose new value is 1 for a counter and
  // adds it (--verbosity 4 from a config file, then -v1: 5); nargs: 1 makes it replace.
  const kind = o.kind === "array" ? { type: "string" as const, array: true } : o.kind === "number" ? { type: "number" as const, nargs: 1 } : { type: o.kind };
  return {
    ...kind,
    describe: o.describe,
    ...(o.alias !== undefined ? { alias: o.alias } : {}),
    ...(o.name === "verbosity" ? { default: 2 } : {}),
  };
}

/**
 * Declares every criu option to yargs, so that each one parses with its value whatever
 * the command (and is then refused by name, see `refusals`). --help shows the options
 * tscriu implements for `commands` under "Options:", those criu takes there that tscriu
 * does not support yet in a group of their own (a user coming from criu's manual sees
 * where tscriu stands), and hides those of other commands.
 */
export function declareCriuOptions(y: Argv, commands: readonly CriuCommand[]): Argv {
  const implemented: string[] = [];
  const notYet: string[] = [];
  for (const o of CRIU_OPTIONS) {
    if (FRAME.has(o.name)) continue;
    const s = commands.map((c) => support(o, c));
    const hidden = s.every((x) => x === "not-taken");
    y = y.option(o.name, { ...yargsOption(o), ...(hidden ? { hidden: true } : {}) });
    if (s.includes("implemented")) implemented.push(o.name);
    else if (!hidden) notYet.push(o.name);
  }
  // Named groups come before yargs' own "Options:" (which holds --help): name both.
  y = y.group(implemented, "Options:");
  if (notYet.length > 0) y = y.group(notYet, NOT_YET_GROUP);
  return y.epilog("criu's config files apply (--config FILE adds one, --no-default-config skips the defaults); -V prints the version.");
}

/** criu's -v for crit's verbs too (normalizeVerbosity gives every form as --verbosity=N). */
export function declareVerbosity(y: Argv): Argv {
  return y.option("verbosity", yargsOption(criuOption("verbosity")!));
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
 * tscriu does not support is refused; what is not criu's stays for yargs to judge (crit's
 * `pretty` is decode's, anything else is a usage error).
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
