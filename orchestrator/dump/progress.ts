// A progress bar on a terminal for dumps of more than about 100 MiB; nothing when the
// output is not a tty (logs and pipes get no control characters).

import type { DumpEvent } from "./dump.js";

const THRESHOLD = 100 << 20;

export function progressBar(stream: NodeJS.WriteStream): (e: DumpEvent) => void {
  let total = 0;
  let shown = false;
  let lastDraw = 0;
  return (e) => {
    if (!stream.isTTY) return;
    if (e.type === "memory-start") {
      total = e.bytes;
      return;
    }
    if (e.type === "memory-progress" && total >= THRESHOLD) {
      const now = Date.now();
      if (now - lastDraw < 100 && e.done < total) return;
      lastDraw = now;
      const width = Math.max(10, Math.min(50, (stream.columns || 80) - 40));
      const frac = total ? Math.min(1, e.done / total) : 1;
      const fill = Math.round(frac * width);
      stream.write(`\rdumping memory [${"#".repeat(fill)}${" ".repeat(width - fill)}] ${(e.done / 2 ** 20).toFixed(0)}/${(total / 2 ** 20).toFixed(0)} MiB`);
      shown = true;
    }
    if (e.type === "memory-done" && shown) {
      stream.write("\n");
      shown = false;
    }
  };
}
