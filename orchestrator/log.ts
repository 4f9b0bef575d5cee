// Logging like criu's: levels -v0 (nothing) … -v4 (debug), default 2 (errors and
// warnings), a prefix per module, and timestamps from -v3 on. Messages go to stderr
// or to the -o/--log-file file.

import { appendFileSync, openSync, closeSync } from "node:fs";

export type LogLevel = 0 | 1 | 2 | 3 | 4;
export const LOG_ERROR = 1;
export const LOG_WARN = 2;
export const LOG_INFO = 3;
export const LOG_DEBUG = 4;

export interface LogSink {
  write(line: string): void;
  close(): void;
}

export function stderrSink(): LogSink {
  return { write: (l) => process.stderr.write(l), close: () => undefined };
}

/** Appends synchronously, so a crash still leaves every line written before it. */
export function fileSink(path: string): LogSink {
  const fd = openSync(path, "a", 0o644);
  return { write: (l) => appendFileSync(fd, l), close: () => closeSync(fd) };
}

export class Logger {
  private readonly t0 = process.hrtime.bigint();

  constructor(
    readonly level: LogLevel,
    private readonly sink: LogSink,
  ) {}

  private emit(lvl: number, prefix: string, msg: string): void {
    if (lvl > this.level) return;
    let line = "";
    if (this.level >= LOG_INFO) {
      const us = Number((process.hrtime.bigint() - this.t0) / 1000n);
      line += `(${(us / 1e6).toFixed(6).padStart(9, "0")}) `;
    }
    if (lvl === LOG_ERROR) line += "Error ";
    else if (lvl === LOG_WARN) line += "Warn  ";
    line += prefix ? `(${prefix}): ${msg}\n` : `${msg}\n`;
    this.sink.write(line);
  }

  /** A logger for one module: every line carries its prefix. */
  module(prefix: string): ModuleLog {
    return new ModuleLog(this, prefix);
  }

  log(lvl: number, prefix: string, msg: string): void {
    this.emit(lvl, prefix, msg);
  }

  close(): void {
    this.sink.close();
  }
}

export class ModuleLog {
  constructor(
    private readonly root: Logger,
    readonly prefix: string,
  ) {}
  error(msg: string): void {
    this.root.log(LOG_ERROR, this.prefix, msg);
  }
  warn(msg: string): void {
    this.root.log(LOG_WARN, this.prefix, msg);
  }
  /** `msg`, or what it makes: made only when the level is logged (a line per connection of a server). */
  info(msg: string | (() => string)): void {
    if (this.root.level >= LOG_INFO) this.root.log(LOG_INFO, this.prefix, typeof msg === "string" ? msg : msg());
  }
  debug(msg: string | (() => string)): void {
    if (this.root.level >= LOG_DEBUG) this.root.log(LOG_DEBUG, this.prefix, typeof msg === "string" ? msg : msg());
  }
}

/**
 * criu's verbosity syntax, turned into --verbosity=N before option parsing:
 * "-v" adds one to the default 2, "-vvv" adds three, "-v4" sets 4.
 */
export function normalizeVerbosity(argv: readonly string[]): string[] {
  let level: number | undefined;
  const out: string[] = [];
  for (const a of argv) {
    let m: RegExpExecArray | null;
    if ((m = /^-v(\d+)$/.exec(a))) level = Number(m[1]);
    else if ((m = /^-(v+)$/.exec(a))) level = (level ?? 2) + m[1]!.length;
    // "-verbosity=0" (zdtm's probes write it so) is -v with the value "erbosity=0" to criu's
    // getopt ("v::"), which atoi reads as 0. Only that shape, with its "=", is read so: a
    // group of letters such as "-vR" is still an error here, not a silent -v0 without -R.
    else if ((m = /^-v([^v\d][^=]*=.*)$/.exec(a))) level = Number(/^\s*[+-]?\d+/.exec(m[1]!)?.[0] ?? 0);
    else if ((m = /^--verbosity=(\d+)$/.exec(a))) level = Number(m[1]);
    else if (a === "--verbosity") level = (level ?? 2) + 1;
    else {
      out.push(a);
      continue;
    }
  }
  if (level !== undefined) out.push(`--verbosity=${Math.min(4, level)}`);
  return out;
}
