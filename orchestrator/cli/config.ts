// criu's configuration files: one option per line without the leading "--", its
// argument after whitespace, "#" starts a comment, an argument may be in double
// quotes with \" for a literal quote. Commands are not allowed in a config file.
// Files are applied in criu's order; the command line comes last and wins.
// A config file serves every command (criu's own example sets tcp-established, a dump
// and restore option): the caller judges each option for the command at hand, keeping
// it, leaving it out, or refusing it with the file and line.

import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** One option of a config file, where it was written, and its command-line tokens. */
export interface ConfigOption {
  file: string;
  line: number;
  /** the name as written, without dashes: "lazy-pages", "no-pretty", "t", "work-dir=/x" */
  name: string;
  /** "--opt" (or "-o"), then its argument when it has one */
  tokens: string[];
}

/** Turns the text of a config file into command-line tokens ("--opt", "arg"). */
export function parseConfigText(text: string, file: string): string[] {
  return parseConfigOptions(text, file).flatMap((o) => o.tokens);
}

/** The options of a config file, each with its line. */
export function parseConfigOptions(text: string, file: string): ConfigOption[] {
  const out: ConfigOption[] = [];
  text.split("\n").forEach((raw, i) => {
    const where = `${file}:${i + 1}`;
    const tokens: string[] = [];
    let k = 0;
    const line = raw.replace(/\r$/, "");
    while (k < line.length) {
      const c = line[k]!;
      if (c === " " || c === "\t") {
        k++;
        continue;
      }
      if (c === "#") break;
      if (c === '"') {
        let tok = "";
        k++;
        for (;;) {
          if (k >= line.length) throw new ConfigError(`${where}: unterminated quoted argument`);
          const d = line[k]!;
          if (d === "\\" && line[k + 1] === '"') {
            tok += '"';
            k += 2;
          } else if (d === '"') {
            k++;
            break;
          } else {
            tok += d;
            k++;
          }
        }
        tokens.push(tok);
        continue;
      }
      let tok = "";
      while (k < line.length && line[k] !== " " && line[k] !== "\t" && line[k] !== "#") tok += line[k++];
      tokens.push(tok);
    }
    if (tokens.length === 0) return;
    const [opt, ...args] = tokens;
    if (args.length > 1) throw new ConfigError(`${where}: one option per line, got ${JSON.stringify(tokens.join(" "))}`);
    const name = opt!.replace(/^--?/, "");
    if (!/^[a-zA-Z][a-zA-Z0-9-]*(=.*)?$/.test(name)) throw new ConfigError(`${where}: not an option: ${JSON.stringify(opt)}`);
    out.push({ file, line: i + 1, name, tokens: [name.length === 1 ? `-${name}` : `--${name}`, ...args] });
  });
  return out;
}

export function readConfigFile(file: string, mustExist: boolean): ConfigOption[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if (!mustExist && (e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfigOptions(text, file);
}

/** The default files, in criu's order: /etc/criu/default.conf, ~/.criu/default.conf, $CRIU_CONFIG_FILE. */
export function defaultConfigFiles(env: NodeJS.ProcessEnv = process.env): { file: string; mustExist: boolean }[] {
  const list = [
    { file: env["TSCRIU_SYSTEM_CONFIG"] ?? "/etc/criu/default.conf", mustExist: false },
    { file: join(env["HOME"] ?? homedir(), ".criu/default.conf"), mustExist: false },
  ];
  const extra = env["CRIU_CONFIG_FILE"];
  if (extra) list.push({ file: extra, mustExist: true });
  return list;
}

/**
 * What to do with an option of a config file: use it, leave it out (it is for other
 * commands), or refuse it (why; the file and line are put in front).
 */
export type ConfigVerdict = "keep" | "skip" | { refuse: string };
export type ConfigJudge = (option: ConfigOption) => ConfigVerdict;

/**
 * Expands config files into argv: defaults (unless --no-default-config), then each
 * --config FILE, then the command line itself. The command word stays first.
 */
export function applyConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  isCommand: (word: string) => boolean = (w) => !w.startsWith("-"),
  judge: ConfigJudge = () => "keep",
): string[] {
  const noDefault = argv.includes("--no-default-config");
  const fromFiles: string[] = [];
  const add = (options: ConfigOption[]): void => {
    for (const o of options) {
      const verdict = judge(o);
      if (verdict === "keep") fromFiles.push(...o.tokens);
      else if (verdict !== "skip") throw new ConfigError(`${o.file}:${o.line}: ${verdict.refuse}`);
    }
  };
  if (!noDefault) for (const { file, mustExist } of defaultConfigFiles(env)) add(readConfigFile(file, mustExist));
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--config") {
      const f = argv[i + 1];
      if (f === undefined) throw new ConfigError("--config needs a file name");
      add(readConfigFile(f, true));
      i++;
    } else if (a.startsWith("--config=")) {
      add(readConfigFile(a.slice("--config=".length), true));
    } else if (a !== "--no-default-config") {
      rest.push(a);
    }
  }
  // Config options go right after the command word (command options are only known
  // there) and before the command line's own, which win as the last occurrence.
  const at = rest.findIndex(isCommand);
  return at < 0 ? [...fromFiles, ...rest] : [...rest.slice(0, at + 1), ...fromFiles, ...rest.slice(at + 1)];
}
