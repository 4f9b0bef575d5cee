// criu's restore statistics: kept in stats-restore (in the work dir) and printed by
// --display-stats in criu's words.

import { join } from "node:path";
import { imageTypeByName } from "../../images/codec.js";
import { writeImage } from "../../images/io.js";

export interface RestoreStats {
  /** pages compared with the parent's (criu's COW sharing between a tree's tasks): 0 here */
  pages_compared: bigint;
  pages_skipped_cow: bigint;
  /** microseconds to create the task (the stub with its PID) */
  forking_time: number;
  /** microseconds of the whole restore */
  restore_time: number;
  pages_restored: bigint;
}

export function emptyStats(): RestoreStats {
  return { pages_compared: 0n, pages_skipped_cow: 0n, forking_time: 0, restore_time: 0, pages_restored: 0n };
}

export async function writeStats(workDir: string, s: RestoreStats): Promise<string> {
  const file = join(workDir, "stats-restore");
  await writeImage(file, { type: imageTypeByName("STATS")!, entries: [{ restore: { ...s } }] }, { overwrite: true });
  return file;
}

const both = (n: bigint): string => `${n} (0x${n.toString(16)})`;

/** What criu --display-stats prints after a restore. */
export function formatStats(s: RestoreStats): string {
  return [
    "Displaying restore stats:",
    `Pages compared: ${both(s.pages_compared)}`,
    `Pages skipped COW: ${both(s.pages_skipped_cow)}`,
    `Pages restored: ${both(s.pages_restored)}`,
    `Restore time: ${s.restore_time} us`,
    `Forking time: ${s.forking_time} us`,
    "",
  ].join("\n");
}
