// Offline operator tools that work on images alone: cpuinfo dump/check, dedup.
import type { CommandSpec } from "./run.js";

export function toolCommands(): CommandSpec[] {
  return [];
}
