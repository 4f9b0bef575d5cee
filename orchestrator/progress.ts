// A progress bar on a terminal while the memory of a large dump or restore (over
// about 100 MiB) moves; nothing when the stream is not a tty (logs and pipes get no
// control characters).

import { createRequire } from "node:module";

/** The memory events dump() and restore() both report. */
export type MemoryEvent =
  | { type: "memory-start"; bytes: number }
  | { type: "memory-progress"; done: number }
  | { type: "memory-done" }
  | { type: string };

const THRESHOLD = 100 << 20;

/**
 * `what` names the work: "dumping memory", "restoring memory". `output` is asked for
 * the stream at the first progress of a memory large enough for a bar, and says
 * undefined for none: process.stderr is made on first use, which costs milliseconds
 * (node:net, for a pipe) that a dump must not spend while its task is frozen, so the CLI
 * asks isatty(2) first (terminalStderr).
 */
export function progressBar(output: () => NodeJS.WriteStream | undefined, what: string): (e: MemoryEvent) => void {
  let total = 0;
  let shown = false;
  let lastDraw = 0;
  let stream: NodeJS.WriteStream | undefined | null;
  return (e) => {
    if (e.type === "memory-start" && "bytes" in e) {
      total = e.bytes;
      return;
    }
    if (total < THRESHOLD || (e.type !== "memory-progress" && !shown)) return;
    if (stream === undefined) stream = output() ?? null;
    if (stream === null || !stream.isTTY) return;
    if (e.type === "memory-progress" && "done" in e) {
      const now = Date.now();
      if (now - lastDraw < 100 && e.done < total) return;
      lastDraw = now;
      const width = Math.max(10, Math.min(50, (stream.columns || 80) - 40));
      const fill = Math.round(Math.min(1, e.done / total) * width);
      stream.write(`\r${what} [${"#".repeat(fill)}${" ".repeat(width - fill)}] ${(e.done / 2 ** 20).toFixed(0)}/${(total / 2 ** 20).toFixed(0)} MiB`);
      shown = true;
    }
    if (e.type === "memory-done" && shown) {
      stream.write("\n");
      shown = false;
    }
  };
}

/**
 * process.stderr when fd 2 is a terminal; undefined otherwise, without making the stream.
 * node:tty (and the node:net it loads) is asked for here, not at start: a command that
 * shows no bar does not compile them (the launcher's V8 flags make Node compile its own
 * modules anew, ~5 ms for these two).
 */
export function terminalStderr(): NodeJS.WriteStream | undefined {
  const { isatty } = createRequire(import.meta.url)("node:tty") as typeof import("node:tty");
  return isatty(2) ? process.stderr : undefined;
}
