// The pre-copy of an incremental pass: with the task still running, the pages it wrote
// since the parent pass are write-protected again and copied out, so that the freeze only
// has to copy what it writes after that (pages written while the task ran are most of
// what the freeze of a chain's last pass used to copy: 60 MB of a task writing 1 % of
// 1 GiB per 100 ms, 30 ms of its 56 ms frozen here).
//
// The order is what makes it safe: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports the
// written pages and protects them again in one walk, and only then are they read. A page
// the task writes after that is written (unprotected) again when the freeze looks, and the
// freeze copies it; a page it does not write still holds what was read. So of the pages the
// freeze finds unwritten and in the parent, those pre-copied are written from the copy
// (planPages), the others as PE_PARENT. A pre-copy that fails half-way has protected pages
// whose data is not held: the pass then trusts none of that task's tracking
// (WriteTracking.noParent), and every page of it is copied while frozen.

import { bridge } from "../../host-bridge/load.js";
import { PAGE_IS, PM_SCAN } from "../../host-bridge/pagemap.js";
import { toU64Array, u64At, u64Halves } from "../../host-bridge/u64.js";
import type { Faults } from "./faults.js";
import { readBatch } from "./memory.js";

/** Where a pre-copied page's data is: address `a` at `buf[a - at]`. */
export interface PreData {
  buf: Buffer;
  at: number;
}

/** The pages of one task copied before the freeze, in address order. */
export interface PreCopy {
  /** (start, length) of each run, in bytes */
  runs: number[];
  /** the same as a BigUint64Array (for pagemapSplit, built before the freeze) */
  pairs: BigUint64Array;
  /** the buffer that holds each run's data (the one populated ahead, or one made for what it could not take) */
  bufs: Buffer[];
  /** where each run starts in its buffer */
  offs: number[];
  bytes: number;
}

/**
 * Protects again and reports the pages written in `ranges` ((start, length) pairs of VMAs
 * registered on this pass's userfaultfd for asynchronous write-protect), as (start,
 * length) runs in address order.
 */
export function rearmWritten(pid: number, ranges: readonly number[]): number[] {
  const runs: number[] = [];
  for (let i = 0; i < ranges.length; i += 2) {
    const start = ranges[i]!;
    const found = bridge().pagemapScan(pid, start, start + ranges[i + 1]!, {
      categoryMask: PAGE_IS.WRITTEN,
      categoryAnyofMask: PAGE_IS.PRESENT | PAGE_IS.SWAPPED,
      returnMask: PAGE_IS.WRITTEN,
      // PM_SCAN_CHECK_WPASYNC: a VMA that is not registered for asynchronous write-protect
      // (unregistered meanwhile) fails the scan rather than be skipped unprotected
      flags: PM_SCAN.WP_MATCHING | PM_SCAN.CHECK_WPASYNC,
    });
    const h = u64Halves(found);
    for (let j = 0; j < found.length; j += 3) {
      const s = u64At(h, j);
      const e = u64At(h, j + 1);
      const last = runs.length - 2;
      if (last >= 0 && runs[last]! + runs[last + 1]! === s) runs[last + 1]! += e - s;
      else runs.push(s, e - s);
    }
  }
  return runs;
}

/**
 * Copies `runs` out of the running task into `ready` (a buffer populated before the runs
 * were known; see WriteTracking.prepare) and, for what does not fit there, into one more
 * buffer populated now.
 */
export function copyRuns(pid: number, runs: readonly number[], faults: Faults, ready?: Buffer): PreCopy {
  const bufs: Buffer[] = [];
  const offs: number[] = [];
  let bytes = 0;
  let fits = 0; // runs[0, fits) fit in `ready`, with inReady bytes
  let inReady = 0;
  for (let i = 0; i < runs.length; i += 2) {
    const len = runs[i + 1]!;
    if (ready && fits === i && bytes + len <= ready.length) {
      fits = i + 2;
      inReady = bytes + len;
    }
    bytes += len;
  }
  const more = bytes > inReady ? bridge().allocPopulated(bytes - inReady, false) : undefined;
  let at = 0;
  for (let i = 0; i < runs.length; i += 2) {
    if (i === fits) at = 0;
    bufs.push(i < fits ? ready! : more!);
    offs.push(at);
    at += runs[i + 1]!;
  }
  // batches of at most 1024 runs (readBatch's ranges go to one process_vm_readv each), each into one buffer
  for (let i = 0; i < runs.length; ) {
    const end = Math.min(runs.length, i + 2048, i < fits ? fits : runs.length);
    faults.vmRead();
    readBatch(pid, runs.slice(i, end), bufs[i / 2]!, offs[i / 2]!);
    i = end;
  }
  return { runs: [...runs], pairs: toU64Array(runs), bufs, offs, bytes };
}
