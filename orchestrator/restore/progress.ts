// A progress bar on a terminal while the memory of a large restore (over ~100 MiB) is
// written; nothing when the stream is not a tty (logs and pipes get no control characters).

import type { RestoreEvent } from "./restore.js";

const THRESHOLD = 100 << 20;

export function progressBar(stream: NodeJS.WriteStream): (e: RestoreEvent) => void {
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
      const fill = Math.round(Math.min(1, e.done / total) * width);
      stream.write(`\rrestoring memory [${"#".repeat(fill)}${" ".repeat(width - fill)}] ${(e.done / 2 ** 20).toFixed(0)}/${(total / 2 ** 20).toFixed(0)} MiB`);
      shown = true;
    }
    if (e.type === "memory-done" && shown) {
      stream.write("\n");
      shown = false;
    }
  };
}
