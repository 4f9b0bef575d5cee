// A logger whose lines the test reads: what a dump or restore said, at `level` and above.
import { Logger, LOG_DEBUG, type LogLevel } from "../../orchestrator/log.js";

export function capturedLog(level: LogLevel = LOG_DEBUG): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: new Logger(level, { write: (l) => void lines.push(l), close: () => undefined }), lines };
}
