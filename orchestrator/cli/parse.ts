// A command line read against a table of options, the way criu's getopt_long reads its
// own: options and words in any order, "--name value" or "--name=value", "-t PID" or
// "-tPID", one-letter booleans grouped ("-Rj"), "--no-NAME" for a boolean, a repeated
// option's last value winning, an array option collecting one value per occurrence, and
// "--" ending the options. It only reads: what a command makes of the result (and which
// options it refuses) is decided by its caller (run.ts, args.ts).

export interface OptionSpec {
  /** the long name, without "--" */
  name: string;
  /** the one-letter alias, without "-" */
  alias?: string | undefined;
  kind: "boolean" | "string" | "number" | "array";
  /** the value may be left out: "--cpu-cap" reads as "" */
  optionalValue?: true | undefined;
  /** the value when the option is not given */
  default?: number | undefined;
}

export interface ParsedLine {
  /** values by long name: true or false, a string, a number, or a string[] for arrays */
  values: Record<string, unknown>;
  /** the words that are neither options nor their values, in order (the command first) */
  words: string[];
  /** options the table does not have, as written without their dashes */
  unknown: string[];
  /** values that do not fit their option ("--tree takes a number, not \"x\"") */
  errors: string[];
  /** -h or --help was given */
  help: boolean;
}

/** criu's options take whole numbers (pids, fds, seconds, a port, a level). */
const INTEGER = /^[+-]?\d+$/;

/** Reads `tokens` against `table`; never throws, every problem is in the result. */
export function parseLine(tokens: readonly string[], table: readonly OptionSpec[]): ParsedLine {
  const byLong = new Map<string, OptionSpec>();
  const byShort = new Map<string, OptionSpec>();
  for (const o of table) {
    byLong.set(o.name, o);
    if (o.alias !== undefined) byShort.set(o.alias, o);
  }
  const out: ParsedLine = { values: {}, words: [], unknown: [], errors: [], help: false };
  for (const o of table) if (o.default !== undefined) out.values[o.name] = o.default;

  const set = (o: OptionSpec, raw: string): void => {
    if (o.kind === "array") {
      const prev = out.values[o.name];
      out.values[o.name] = Array.isArray(prev) ? [...(prev as string[]), raw] : [raw];
    } else if (o.kind === "number") {
      if (INTEGER.test(raw)) out.values[o.name] = Number(raw);
      else out.errors.push(`--${o.name} takes a number, not ${JSON.stringify(raw)}`);
    } else {
      out.values[o.name] = raw;
    }
  };

  let i = 0;
  /** The value of an option that takes one, from the next token (undefined: there is none). */
  const following = (o: OptionSpec): string | undefined => {
    const next = tokens[i + 1];
    // A value that may be left out is not taken from an option that follows.
    if (next === undefined || (o.optionalValue && next.startsWith("-"))) return o.optionalValue ? "" : undefined;
    i++;
    return next;
  };

  for (; i < tokens.length; i++) {
    const tok = tokens[i]!;
    if (tok === "--") {
      out.words.push(...tokens.slice(i + 1));
      break;
    }
    if (tok.startsWith("--")) {
      const eq = tok.indexOf("=");
      const name = eq < 0 ? tok.slice(2) : tok.slice(2, eq);
      const inline = eq < 0 ? undefined : tok.slice(eq + 1);
      if (name === "help") {
        out.help = true;
        continue;
      }
      const o = byLong.get(name);
      if (!o && name.startsWith("no-") && byLong.get(name.slice(3))?.kind === "boolean" && inline === undefined) {
        out.values[name.slice(3)] = false;
        continue;
      }
      if (!o) {
        out.unknown.push(name);
        continue;
      }
      if (o.kind === "boolean") {
        // criu's getopt refuses a value here; "=true" and "=false" are read as meant.
        if (inline === undefined || inline === "true" || inline === "false") out.values[o.name] = inline !== "false";
        else out.errors.push(`--${o.name} takes no value`);
        continue;
      }
      const value = inline ?? following(o);
      if (value === undefined) out.errors.push(`--${o.name} needs a value`);
      else set(o, value);
      continue;
    }
    if (tok.startsWith("-") && tok.length > 1) {
      // One-letter options, grouped: booleans take none, the first one that takes a value
      // takes the rest of the group, else the next token.
      for (let k = 1; k < tok.length; k++) {
        const letter = tok[k]!;
        if (letter === "h") {
          out.help = true;
          continue;
        }
        const o = byShort.get(letter);
        if (!o) {
          out.unknown.push(letter);
          continue;
        }
        if (o.kind === "boolean") {
          out.values[o.name] = true;
          continue;
        }
        const rest = tok.slice(k + 1);
        const value = rest !== "" ? rest : following(o);
        if (value === undefined) out.errors.push(`-${letter} (--${o.name}) needs a value`);
        else set(o, value);
        break;
      }
      continue;
    }
    out.words.push(tok);
  }
  return out;
}

/** An array option's values (one given in a config file may be a single string). */
export function listValue(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : typeof v === "string" ? [v] : [];
}
