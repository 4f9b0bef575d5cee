// criu's `dedup`: in an incremental chain (each images dir links its predecessor
// as `parent`), pages that a newer dump holds itself are dead weight in every
// older pages file. Punch them out with fallocate(PUNCH_HOLE | KEEP_SIZE): the
// files keep their size and every offset stays valid, so the chain still decodes
// and reads the same bytes. The plan comes from the wasm core (planDedup).

import { open, readdir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { bridge } from "../host-bridge/load.js";
import { imagesDirProblem } from "../images/dir.js";
import { ImageError } from "../images/errors.js";
import { PAGE_SIZE, readPagemap, type Pagemap } from "../images/pages.js";
import { planDedup, type PagemapRun, type PunchRange } from "../wasm/index.js";
import type { ModuleLog } from "./log.js";

/** Longest chain we follow; longer means a `parent` loop. */
const MAX_CHAIN = 64;

export interface DedupStats {
  /** pagemaps in the newest dir that were planned */
  pagemaps: number;
  /** punched ranges (after merging adjacent ones) */
  ranges: number;
  /** bytes punched out of older pages files */
  bytes: number;
  /** pages files touched */
  files: number;
}

/** The chain: dir, then its parent, grandparent… (real paths). */
export async function imageChain(dir: string): Promise<string[]> {
  const noDir = imagesDirProblem(dir);
  if (noDir !== undefined) throw new ImageError(`cannot open the images directory: ${noDir}`, { file: dir });
  const chain = [await realpath(dir)];
  for (;;) {
    const last = chain[chain.length - 1]!;
    let parent: string;
    try {
      parent = await realpath(join(last, "parent"));
    } catch {
      return chain;
    }
    if (chain.includes(parent) || chain.length >= MAX_CHAIN) {
      throw new ImageError(`parent chain loops or is longer than ${MAX_CHAIN}`, { file: join(last, "parent") });
    }
    chain.push(parent);
  }
}

function toRuns(pm: Pagemap): PagemapRun[] {
  return pm.runs.map((r) => ({ vaddr: r.vaddr, nrPages: BigInt(r.nrPages), flags: r.flags }));
}

interface PunchJob {
  file: string;
  ranges: PunchRange[];
}

/**
 * Plans every punch of the chain first and checks it against the files (sizes,
 * existence), so that bad input changes nothing; then punches.
 */
export async function dedup(dir: string, log?: ModuleLog): Promise<DedupStats> {
  const chain = await imageChain(dir);
  const names = (await readdir(chain[0]!)).filter((f) => /^pagemap-(shmem-)?\d+\.img$/.test(f)).sort();
  const jobs = new Map<string, PunchRange[]>();
  for (const name of names) {
    const layers: Pagemap[] = [];
    for (const d of chain) {
      try {
        await stat(join(d, name));
      } catch {
        break; // criu stops where an ancestor has no such pagemap
      }
      layers.push(await readPagemap(d, name));
    }
    if (layers.length < 2) continue;
    const plan = planDedup(layers.map(toRuns));
    plan.forEach((ranges, j) => {
      if (j === 0 || ranges.length === 0) return;
      const file = join(chain[j]!, `pages-${layers[j]!.pagesId}.img`);
      jobs.set(file, [...(jobs.get(file) ?? []), ...ranges]);
    });
    log?.debug(`planned ${name} over ${layers.length} dumps`);
  }

  const list: PunchJob[] = [];
  for (const [file, ranges] of jobs) {
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (e) {
      throw new ImageError(`pages file missing: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { file });
    }
    ranges.sort((a, b) => a.offset - b.offset);
    for (const r of ranges) {
      if (r.offset % PAGE_SIZE || r.length % PAGE_SIZE || r.offset + r.length > size) {
        throw new ImageError(`dedup range ${r.offset}+${r.length} does not fit this pages file of ${size} bytes (pagemap and pages disagree)`, {
          file,
          offset: r.offset,
        });
      }
    }
    list.push({ file, ranges });
  }

  const stats: DedupStats = { pagemaps: names.length, ranges: 0, bytes: 0, files: list.length };
  const native = bridge();
  for (const job of list) {
    const fh = await open(job.file, "r+");
    try {
      for (const r of job.ranges) {
        native.punchHole(fh.fd, r.offset, r.length);
        stats.ranges++;
        stats.bytes += r.length;
      }
    } catch (e) {
      throw new ImageError(`cannot punch a hole: ${(e as Error).message}`, { file: job.file });
    } finally {
      await fh.close();
    }
    log?.info(`punched ${job.ranges.length} ranges in ${job.file}`);
  }
  return stats;
}
