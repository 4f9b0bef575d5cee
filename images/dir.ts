// An image directory as a whole: the process tree and, per task, its core, mm,
// pagemap, ids, fs and file descriptors, plus a page reader. This is what
// `openImageDir` in the library API returns.

import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { decodeImage, type Image } from "./codec.js";
import { ImageError } from "./errors.js";
import { readWhole } from "./io.js";
import { PageReader } from "./pages.js";
import type { Entry } from "./schema/dsl.js";
import type {
  core_entry,
  fdinfo_entry,
  file_entry,
  fs_entry,
  inventory_entry,
  mm_entry,
  pstree_entry,
  task_kobj_ids_entry,
} from "./schema/index.js";

export type InventoryEntry = Entry<typeof inventory_entry>;
export type PstreeEntry = Entry<typeof pstree_entry>;
export type CoreEntry = Entry<typeof core_entry>;
export type MmEntry = Entry<typeof mm_entry>;
export type IdsEntry = Entry<typeof task_kobj_ids_entry>;
export type FsEntry = Entry<typeof fs_entry>;
export type FdinfoEntry = Entry<typeof fdinfo_entry>;
export type FileEntry = Entry<typeof file_entry>;

/**
 * Why `dir` cannot be read as an images directory: the errno code of looking at it
 * (ENOENT...), ENOTDIR for a file that is not one; undefined when it is a directory.
 */
export function imagesDirProblem(dir: string): string | undefined {
  try {
    return statSync(dir).isDirectory() ? undefined : "ENOTDIR";
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
}

/** crit's get_task_id: pid, or the first of ns_pid for images with pid namespaces. */
export function taskId(p: PstreeEntry, key: "pid" | "pgid" | "sid"): number {
  const v = (p as Record<string, unknown>)[key];
  if (typeof v === "number") return v;
  const ns = (p as Record<string, unknown>)[`ns_${key}`];
  if (Array.isArray(ns) && typeof ns[0] === "number") return ns[0];
  return 0;
}

export class ImageDir {
  private readonly cache = new Map<string, Promise<Image>>();
  private readers = new Map<number, Promise<PageReader>>();

  constructor(readonly dir: string) {}

  /** Decodes one file of the directory (cached). */
  image(name: string): Promise<Image> {
    let p = this.cache.get(name);
    if (!p) {
      const file = join(this.dir, name);
      p = readWhole(file).then(
        (buf) => decodeImage(buf, file),
        (e: NodeJS.ErrnoException) => {
          throw new ImageError(`cannot read image: ${e.code ?? e.message}`, { file });
        },
      );
      this.cache.set(name, p);
    }
    return p;
  }

  // A directory listing is one getdents: read at once, not through the thread pool.
  async has(name: string): Promise<boolean> {
    return readdirSync(this.dir).includes(name);
  }

  private async single<T>(name: string): Promise<T> {
    const img = await this.image(name);
    const e = img.entries[0];
    if (!e) throw new ImageError("image has no entries", { file: join(this.dir, name) });
    return e as T;
  }

  async inventory(): Promise<InventoryEntry> {
    return this.single<InventoryEntry>("inventory.img");
  }

  async pstree(): Promise<PstreeEntry[]> {
    return (await this.image("pstree.img")).entries as PstreeEntry[];
  }

  /** Every task (process) of the tree, with its pid. */
  async tasks(): Promise<{ pid: number; entry: PstreeEntry }[]> {
    return (await this.pstree()).map((entry) => ({ pid: taskId(entry, "pid"), entry }));
  }

  core(tid: number): Promise<CoreEntry> {
    return this.single<CoreEntry>(`core-${tid}.img`);
  }

  mm(pid: number): Promise<MmEntry> {
    return this.single<MmEntry>(`mm-${pid}.img`);
  }

  ids(pid: number): Promise<IdsEntry> {
    return this.single<IdsEntry>(`ids-${pid}.img`);
  }

  fs(pid: number): Promise<FsEntry> {
    return this.single<FsEntry>(`fs-${pid}.img`);
  }

  /** The fd table of a task (fdinfo-<files_id>.img). */
  async fdinfo(pid: number): Promise<FdinfoEntry[]> {
    const ids = await this.ids(pid);
    const id = (ids as Record<string, unknown>)["files_id"];
    return (await this.image(`fdinfo-${String(id)}.img`)).entries as FdinfoEntry[];
  }

  /** files.img by id. */
  async files(): Promise<Map<number, FileEntry>> {
    const img = await this.image("files.img");
    return new Map((img.entries as FileEntry[]).map((f) => [f.id, f]));
  }

  /** The page reader of a task (pagemap-<pid>.img + pages, following `parent`). */
  pages(pid: number): Promise<PageReader> {
    let r = this.readers.get(pid);
    if (!r) {
      r = PageReader.open(this.dir, `pagemap-${pid}.img`);
      this.readers.set(pid, r);
    }
    return r;
  }

  async close(): Promise<void> {
    const rs = [...this.readers.values()];
    this.readers = new Map();
    for (const r of rs) await (await r.catch(() => undefined))?.close();
  }
}

export async function openImageDir(dir: string): Promise<ImageDir> {
  try {
    readdirSync(dir);
  } catch (e) {
    throw new ImageError(`cannot open image directory: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: dir });
  }
  return new ImageDir(dir);
}
