// --help: the commands, or one command's words and options in groups, laid out in two
// columns and wrapped to the terminal (at most 110 columns; 100 when not a terminal).

export interface HelpOption {
  name: string;
  alias?: string | undefined;
  kind: "boolean" | "string" | "number" | "array";
  optionalValue?: true | undefined;
  default?: number | undefined;
  describe: string;
}

export interface HelpGroup {
  title: string;
  options: readonly HelpOption[];
}

export interface HelpPositional {
  name: string;
  describe: string;
  choices?: readonly string[] | undefined;
}

const INDENT = 2;
const GAP = 2;
/** A left column wider than this puts its text on the next line. */
const MAX_LEFT = 30;

export function helpWidth(): number {
  return Math.min(110, process.stdout.columns || 100);
}

/** Words of `text` in lines of at most `width` columns (a longer word stands alone). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines;
}

/** Rows of [left, text] in two columns, the text wrapped under itself. */
function columns(rows: readonly (readonly [string, string])[], width: number): string {
  const left = Math.min(MAX_LEFT, Math.max(...rows.map(([l]) => l.length)));
  const textWidth = Math.max(20, width - INDENT - left - GAP);
  const pad = " ".repeat(INDENT + left + GAP);
  let out = "";
  for (const [l, text] of rows) {
    const lines = wrap(text, textWidth);
    if (l.length > left) out += `${" ".repeat(INDENT)}${l}\n${lines.map((x) => pad + x).join("\n")}\n`;
    else out += `${" ".repeat(INDENT)}${l.padEnd(left + GAP)}${lines.join(`\n${pad}`)}\n`;
  }
  return out;
}

/** "-t, --tree N", "    --cpu-cap[=ARG]", "    --action-script ARG" */
function optionLeft(o: HelpOption): string {
  const short = o.alias !== undefined ? `-${o.alias}, ` : "    ";
  const value = o.kind === "boolean" ? "" : o.kind === "number" ? " N" : o.optionalValue ? "[=ARG]" : " ARG";
  return `${short}--${o.name}${value}`;
}

function optionText(o: HelpOption): string {
  return `${o.describe}${o.kind === "array" ? " (repeatable)" : ""}${o.default !== undefined ? ` (default: ${o.default})` : ""}`;
}

/** The help of one command: its usage line, what it does, its words, its option groups. */
export function commandHelp(usage: string, describe: string, positionals: readonly HelpPositional[], groups: readonly HelpGroup[], epilog: string, width = helpWidth()): string {
  let out = `${usage}\n\n${describe}\n`;
  if (positionals.length > 0) {
    const rows = positionals.map((p) => [`<${p.name}>`, p.choices ? `${p.describe}: ${p.choices.join(", ")}` : p.describe] as const);
    out += `\nPositionals:\n${columns(rows, width)}`;
  }
  for (const g of groups) {
    if (g.options.length === 0) continue;
    out += `\n${g.title}\n${columns(g.options.map((o) => [optionLeft(o), optionText(o)] as const), width)}`;
  }
  return `${out}\n${wrap(epilog, width).join("\n")}\n`;
}

/** The help of the whole command line: every command, then the options of the frame. */
export function topHelp(commands: readonly (readonly [string, string])[], frame: readonly HelpOption[], epilog: string, width = helpWidth()): string {
  return (
    `Usage: tscriu <command> [options]\n\nCommands:\n${columns(commands, width)}` +
    `\nOptions:\n${columns(frame.map((o) => [optionLeft(o), optionText(o)] as const), width)}` +
    `\n${wrap(epilog, width).join("\n")}\n`
  );
}
