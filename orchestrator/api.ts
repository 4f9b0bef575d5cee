// The library API: `import { openImageDir, readImage, … } from "tscriu"`.
// Image functions need neither root nor the native addon.

export { ImageError, isImageError } from "../images/errors.js";
export {
  decodeImage,
  encodeImage,
  imageTypeByMagic,
  imageTypeByName,
  type Image,
  type ImageEntry,
  type Extra,
} from "../images/codec.js";
export { readImage, readImageEntries, writeImage, ImageWriter, type WriteOptions } from "../images/io.js";
export { toCrit, fromCrit } from "../images/crit-json.js";
export { parseJson, stringifyJson, type JsonValue } from "../images/json.js";
export {
  openImageDir,
  ImageDir,
  taskId,
  type CoreEntry,
  type MmEntry,
  type PstreeEntry,
  type InventoryEntry,
  type IdsEntry,
  type FsEntry,
  type FdinfoEntry,
  type FileEntry,
} from "../images/dir.js";
export { PageReader, parsePagemap, type Pagemap, type PageRun, PE_PARENT, PE_LAZY, PE_PRESENT, PAGE_SIZE } from "../images/pages.js";
export { IMAGE_TYPES } from "../images/registry.js";
export type { ImageType, Layout } from "../images/registry-types.js";
export type { Entry } from "../images/schema/dsl.js";
export * as schema from "../images/schema/index.js";
export { explorePs, exploreFds, exploreMems, exploreRss } from "../images/explore.js";
// The wasm core: page hashing/diffing, pagemap run algebra, dedup planning, cpu comparison.
export {
  xxh64,
  Xxh64,
  hashPages,
  diffPages,
  diffAgainstHashes,
  mergeRuns,
  splitRuns,
  subtractRuns,
  intersectRuns,
  unionRuns,
  planDedup,
  compareCpuinfo,
  parseCpuCaps,
  type PagemapRun,
  type PunchRange,
  type CpuCaps,
  type CpuCompareResult,
} from "../wasm/index.js";
export { cpuinfoDump, cpuinfoCheck, readCpuinfo, toCpuCaps } from "./cpuinfo/cpuinfo.js";
export { hostCpuinfo, type CpuinfoX86 } from "./cpuinfo/host.js";
export { dedup, imageChain, type DedupStats } from "./dedup.js";
export { dump, type DumpOptions, type DumpEvent, type DumpResult } from "./dump/dump.js";
export { DumpError, isDumpError } from "./dump/errors.js";
export type { DumpStats } from "./dump/stats.js";
export { restore, waitRestored, type RestoreOptions, type RestoreEvent, type RestoreResult, type ExitStatus } from "./restore/restore.js";
export { RestoreError, isRestoreError } from "./restore/errors.js";
export type { RestoreStats } from "./restore/stats.js";
// criu's RPC: a client for `tscriu swrk` / `service` (and criu's), and the server loop.
export { RpcClient, RpcRequestError, type NotifyHook } from "./rpc/client.js";
export { serve as serveRpc, type ServeOptions } from "./rpc/server.js";
