// criu's dump statistics: kept in stats-dump (in the work dir) and printed by
// --display-stats in criu's words.

export interface DumpStats {
  freezing_time: number;
  frozen_time: number;
  memdump_time: number;
  memwrite_time: number;
  pages_scanned: bigint;
  pages_skipped_parent: bigint;
  pages_written: bigint;
  pages_lazy: bigint;
  page_pipes: bigint;
  page_pipe_bufs: bigint;
  shpages_scanned: bigint;
  shpages_skipped_parent: bigint;
  shpages_written: bigint;
}

export function emptyStats(): DumpStats {
  return {
    freezing_time: 0,
    frozen_time: 0,
    memdump_time: 0,
    memwrite_time: 0,
    pages_scanned: 0n,
    pages_skipped_parent: 0n,
    pages_written: 0n,
    pages_lazy: 0n,
    page_pipes: 0n,
    page_pipe_bufs: 0n,
    shpages_scanned: 0n,
    shpages_skipped_parent: 0n,
    shpages_written: 0n,
  };
}

export function statsEntry(s: DumpStats): Record<string, unknown> {
  return { dump: { ...s, irmap_resolve: 0 } };
}

const both = (n: bigint): string => `${n} (0x${n.toString(16)})`;

/** What criu --display-stats prints after a dump. */
export function formatStats(s: DumpStats): string {
  return [
    "Displaying dump stats:",
    `Freezing time: ${s.freezing_time} us`,
    `Frozen time: ${s.frozen_time} us`,
    `Memory dump time: ${s.memdump_time} us`,
    `Memory write time: ${s.memwrite_time} us`,
    `Memory pages scanned: ${both(s.pages_scanned)}`,
    `Memory pages skipped from parent: ${both(s.pages_skipped_parent)}`,
    `Memory pages written: ${both(s.pages_written)}`,
    `Lazy memory pages: ${both(s.pages_lazy)}`,
    "",
  ].join("\n");
}
