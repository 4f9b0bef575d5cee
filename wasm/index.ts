// The wasm core's TypeScript API: page hashing and diffing, pagemap range algebra,
// dedup planning and cpuinfo comparison. core.wasm is loaded lazily, once, on first use.
export { PAGE_SIZE, BATCH_PAGES } from "./loader.js";
export { xxh64, Xxh64, hashPages, pageBuffer, hashPageBuffer } from "./hash.js";
export type { PageHashes } from "./hash.js";
export { diffPages, diffAgainstHashes, diffPageBufferAgainstHashes } from "./diff.js";
export type { PageRun, HashDiff } from "./diff.js";
export { PE_PARENT, PE_LAZY, PE_PRESENT, mergeRuns, splitRuns, subtractRuns, intersectRuns, unionRuns, runEnd } from "./runs.js";
export type { PagemapRun, SplitRuns } from "./runs.js";
export { planDedup } from "./dedup.js";
export type { PunchRange } from "./dedup.js";
export {
  CPU_CAP_NONE,
  CPU_CAP_FPU,
  CPU_CAP_CPU,
  CPU_CAP_INS,
  CPU_CAP_IMAGE,
  CPU_CAP_ALL,
  CPU_CAP_DEFAULT,
  compareCpuinfo,
  parseCpuCaps,
  cpuinfoCheckCaps,
  formatCpuCaps,
} from "./cpu.js";
export type { CpuCaps, CpuVendorName, CpuFeatureBit, CpuSizeDiff, CpuCompareResult } from "./cpu.js";
export { featureName } from "./cpu-features.js";
