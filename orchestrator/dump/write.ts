import { closeSync, openSync, readFileSync, readlinkSync, readSync } from "node:fs";
// Writing the image files of a dump through the images/ codec (each new: an existing file is
// refused), optionally fsynced, and remembered so a failed dump can remove them.

import { open } from "node:fs/promises";
import { join } from "node:path";
import { imageTypeByName, type ImageEntry } from "../../images/codec.js";
import { ImageWriter, newImageError } from "../../images/io.js";
import { WireWriter } from "../../images/wire.js";
import type { Faults } from "./faults.js";
import { nsInode } from "./proc.js";
import { bridge } from "../../host-bridge/load.js";

/**
 * Images of writeSoon handed to the thread pool together: a batch is a job of its own,
 * started as soon as it is full (the main thread, busy with the next connections, does not
 * come back to the event loop to start the next), several running at once.
 */
const SOON_BATCH = 32;
/** A batch's first buffer: a tcp-stream image is a few hundred bytes (grown when needed). */
const SOON_BYTES = SOON_BATCH * 512;

/** The number of image files from which a dump syncs their file system rather than each file. */
const SYNCFS_FROM = 64;
/**
 * Below this much dirty or writeback data in the whole system, one syncfs costs little
 * more than the dump's own data; above it, it would wait for other processes' writes.
 */
const SYNCFS_DIRTY = 8 << 20;

/** Dirty plus Writeback of /proc/meminfo, in bytes (Infinity when it cannot be read). */
function dirtyBytes(): number {
  let text: string;
  try {
    text = readFileSync("/proc/meminfo", "latin1");
  } catch {
    return Infinity;
  }
  let kib = 0;
  for (const m of text.matchAll(/^(?:Dirty|Writeback):\s+(\d+) kB$/gm)) kib += Number(m[1]);
  return kib * 1024;
}

export class ImageSet {
  readonly written: string[] = [];
  /** images of writeSoon not handed to the thread pool yet: their paths and lengths, their bytes one after another in `soon` */
  private queued: { path: string; length: number }[] = [];
  private soon = new WireWriter(SOON_BYTES);
  /** the batches of them being written on the thread pool */
  private readonly writing = new Set<Promise<void>>();
  /** the first failure of a batch, thrown by flushSoon */
  private soonFailed: Error | undefined;
  /** the syncfs startWriteback started */
  private writeback: Promise<void> | undefined;

  /** the directory's path with a slash after it, which a file name completes (no path.join per image) */
  private readonly prefix: string;

  constructor(
    readonly dir: string,
    private readonly faults: Faults,
  ) {
    this.prefix = join(dir, "/");
  }

  /**
   * Everything written on disk, and the directory. One syncfs of the images' file system
   * where that is cheap: when the dump wrote many files (a server's tcp-stream images, one
   * per connection), or when little else in the system waits to be written (a small dump:
   * a fsync of each of its twenty-odd files costs ~4 ms here, the syncfs ~0.5 ms).
   * Otherwise every file is fsynced at once, then the directory: parallel fsyncs share
   * the file system's journal commits, one after another each would wait for its own.
   */
  async syncAll(): Promise<void> {
    // (a failure of the early writeback is not seen again by a later syncfs: thrown here)
    if (this.writeback) {
      await this.writeback.catch((e: unknown) => {
        throw new Error(`${this.dir}: the writeback of the images written so far failed: ${(e as Error).message}`, { cause: e });
      });
    }
    if (this.written.length > SYNCFS_FROM || dirtyBytes() <= SYNCFS_DIRTY) {
      const fd = openSync(this.dir, "r");
      try {
        bridge().syncfs(fd);
      } finally {
        closeSync(fd);
      }
      return;
    }
    await Promise.all(
      [...this.written, this.dir].map(async (path) => {
        const fh = await open(path, "r");
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }),
    );
  }

  /**
   * Where many images were written already (a server's tcp-stream images, once the fds are
   * done), their file system's writeback starts now on the thread pool (a syncfs) while the
   * dump goes on with the memory; syncAll waits for it, and then syncs what came after.
   */
  startWriteback(): void {
    if (this.writeback || this.written.length <= SYNCFS_FROM) return;
    const fd = openSync(this.dir, "r");
    this.writeback = this.faults.writeback(() => bridge().syncfsAsync(fd), "syncfs").finally(() => closeSync(fd));
    // (awaited by syncAll; a dump that fails first does not wait for it)
    this.writeback.catch(() => undefined);
  }

  /**
   * An image written on the thread pool while the dump goes on (a connection's tcp-stream
   * image, met one after another while the tasks are frozen: a thousand creates are
   * 30-300 ms here, which the main thread spends on the next connections meanwhile).
   * Encoded now, written in batches, each file new (an existing one is an error);
   * flushSoon waits for them all and throws the first failure, and so does a writeSoon
   * after it is known (nothing more is written). `name`: a file name, without a slash.
   */
  writeSoon(name: string, type: string, entries: readonly ImageEntry[]): void {
    const at = this.soon.pos;
    let length: number;
    try {
      length = this.writer(type, entries, this.soon).bytes().length;
      if (this.soonFailed) throw this.soonFailed;
    } catch (e) {
      // (what was encoded of it goes: the batch holds whole images only)
      this.soon.pos = at;
      throw e;
    }
    this.queued.push({ path: this.prefix + name, length });
    if (this.queued.length >= SOON_BATCH) this.startBatch();
  }

  private startBatch(): void {
    const batch = this.queued.splice(0);
    if (batch.length === 0) return;
    const paths = Buffer.from(batch.map((b) => `${b.path}\0`).join(""));
    const bytes = this.soon.finish();
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.soon = new WireWriter(SOON_BYTES);
    const lens = BigUint64Array.from(batch, (b) => BigInt(b.length));
    const job: Promise<void> = bridge()
      .writeNewFiles(paths, data, lens)
      .then(
        () => void this.written.push(...batch.map((b) => b.path)),
        (e: unknown) => {
          const err = e as NodeJS.ErrnoException & { index?: number };
          const done = err.index ?? 0;
          this.written.push(...batch.slice(0, done).map((b) => b.path));
          this.soonFailed ??= newImageError(err, batch[done]?.path ?? this.dir, err.syscall === "open" ? "create" : "write");
        },
      )
      .finally(() => void this.writing.delete(job));
    this.writing.add(job);
  }

  /** Every image of writeSoon written (or failed): throws the first failure. */
  async flushSoon(): Promise<void> {
    if (!this.soonFailed) this.startBatch();
    else {
      this.queued.length = 0;
      this.soon.pos = 0;
    }
    await Promise.all(this.writing);
    if (this.soonFailed) throw this.soonFailed;
  }

  /** An image of `type` with `entries`, encoded (a write fault injected here); `into`: see ImageWriter. */
  private writer(type: string, entries: readonly ImageEntry[], into?: WireWriter): ImageWriter {
    const t = imageTypeByName(type);
    if (!t) throw new Error(`no image type ${type}`);
    const w = new ImageWriter(t, into);
    for (const e of entries) w.add(e);
    this.faults.write(false);
    return w;
  }

  /** writes one image file; an existing file is an error (only stats-dump is replaced, as criu does) */
  async write(name: string, type: string, entries: readonly ImageEntry[], dir = this.dir): Promise<void> {
    const w = this.writer(type, entries);
    const path = join(dir, name);
    await w.save(path, { overwrite: name === "stats-dump" });
    this.written.push(path);
  }
}

/** Namespaces in criu's numbering order (the ids of inventory.root_ids). */
export const NAMESPACES = [
  ["pid", "pid_ns_id"],
  ["net", "net_ns_id"],
  ["ipc", "ipc_ns_id"],
  ["uts", "uts_ns_id"],
  ["time", "time_ns_id"],
  ["mnt", "mnt_ns_id"],
  ["user", "user_ns_id"],
  ["cgroup", "cgroup_ns_id"],
] as const;

/** criu's id of tscriu's network namespace, which a dumped task shares (write.ts refuses any other). */
export const NET_NS_ID = NAMESPACES.findIndex(([ns]) => ns === "net") + 1;

/**
 * The namespace ids for a task that shares every namespace with tscriu (criu numbers
 * its own namespaces 1..8); a task in other namespaces would need them dumped too.
 */
export function namespaceIds(pid: number): Record<string, number> {
  const ids: Record<string, number> = {};
  NAMESPACES.forEach(([ns, key], i) => {
    const mine = nsInode("self", ns);
    const theirs = nsInode(pid, ns);
    // A task in its own time namespace (every restored task: criu and tscriu restore
    // into one) is fine: timens-0.img records its clocks as it sees them.
    if (mine !== theirs && ns !== "time") {
      throw new Error(`the task is in another ${ns} namespace (${theirs} vs ${mine}); dumping namespaces is not supported yet`);
    }
    ids[key] = i + 1;
  });
  return ids;
}

/**
 * A random UUID (version 4), criu's dump_criu_run_id, which also names the network lock.
 * Read from /dev/urandom: loading node:crypto for its randomUUID cost ~6 ms of every dump.
 */
export function newRunId(): string {
  const b = Buffer.alloc(16);
  const fd = openSync("/dev/urandom", "r");
  try {
    if (readSync(fd, b, 0, 16, null) !== 16) throw new Error("/dev/urandom: short read");
  } finally {
    closeSync(fd);
  }
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function inventoryEntry(nsIds: Record<string, number>, runId: string, networkLockMethod: number): ImageEntry {
  return {
    img_version: 2,
    fdinfo_per_id: true,
    root_ids: { vm_id: 1, files_id: 1, fs_id: 1, sighand_id: 1, ...nsIds },
    ns_per_id: true,
    root_cg_set: 1,
    lsmtype: "NO_LSM",
    network_lock_method: networkLockMethod,
    plugins_entry: {},
    dump_criu_run_id: runId,
  };
}

/** The offsets of a time namespace, from /proc/`who`/timens_offsets (none where the kernel has no time namespaces). */
function timensOffsets(who: string): { monotonic: bigint; boottime: bigint } {
  const off = { monotonic: 0n, boottime: 0n };
  let text = "";
  try {
    text = readFileSync(`/proc/${who}/timens_offsets`, "utf8");
  } catch {
    // kernels without time namespaces: no offsets
  }
  for (const line of text.split("\n")) {
    const m = /^(monotonic|boottime)\s+(-?\d+)\s+(\d+)/.exec(line);
    if (m) off[m[1] as "monotonic" | "boottime"] = BigInt(m[2]!) * 1_000_000_000n + BigInt(m[3]!);
  }
  return off;
}

/**
 * CLOCK_MONOTONIC and CLOCK_BOOTTIME as the task sees them, from ours (`now`): ours as they
 * are when it is in our time namespace; otherwise ours less our namespace's offsets, plus
 * its namespace's (/proc/PID/timens_offsets; zero in the root namespace). tscriu may run
 * in a time namespace itself: zdtm runs criu and its tests in one of +110 days, where
 * adding the task's offsets to our clock counted them twice.
 */
export function taskClocks(pid: number, now: { monotonic: bigint; boottime: bigint }): { monotonic: bigint; boottime: bigint } {
  const ns = (who: string): string | undefined => {
    try {
      return readlinkSync(`/proc/${who}/ns/time`);
    } catch {
      return undefined;
    }
  };
  const theirs = ns(String(pid));
  if (theirs !== undefined && theirs === ns("self")) return now;
  // (our timens_offsets are those of the namespace our children get: ours, as tscriu never
  // leaves one pending)
  const ours = timensOffsets("self");
  const task = timensOffsets(String(pid));
  return { monotonic: now.monotonic - ours.monotonic + task.monotonic, boottime: now.boottime - ours.boottime + task.boottime };
}
