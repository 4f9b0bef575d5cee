// Shared memory objects: memfds and MAP_SHARED|MAP_ANONYMOUS regions. Both are inodes
// of the kernel's internal shmem mount (a shared anonymous region is the file
// "/dev/zero (deleted)" there), told apart from tmpfs files by that mount's device,
// which tscriu learns from a memfd of its own. criu dumps both "the memfd way": one
// memfd.img inode entry per object with its pages in pagemap-shmem-<ino>.img, one MEMFD
// files.img entry shared by the object's mappings (MAP_SHARED and MAP_PRIVATE alike: a
// private mapping keeps reading the object's pages it has not written), and one MEMFD
// entry per open file description of it.
//
// hugetlb objects the same way, as criu does when the kernel has MFD_HUGETLB: a memfd made
// with MFD_HUGETLB, and a shared MAP_HUGETLB region ("/anon_hugepage (deleted)"), both
// files of the kernel's internal hugetlbfs mount of their page size. Their inode entry
// carries the page size (hugetlb_flag); a private MAP_HUGETLB region is private anonymous
// memory (vmas.ts).

import { fstatSync, type BigIntStats } from "node:fs";
import { HUGE_SHIFT, HUGE_SIZE_LOG2, MFD } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import { NO_OWNER, type FileTable, type Fown } from "./filetable.js";

const F_GET_SEALS = 1034;
const MFD_CLOEXEC = MFD.CLOEXEC;

export interface ShmemObject {
  ino: bigint;
  inodeId: number;
  size: bigint;
  /** a path tscriu can open the object through (map_files or /proc/PID/fd) */
  readPath: string;
  /** the memfd's name, or "/dev/zero" ("/anon_hugepage") for shared anonymous (hugetlb) memory */
  name: string;
  /** a hugetlb object: MFD_HUGETLB and its page size bits (criu's hugetlb_flag), else 0 */
  hugetlbFlag: number;
  uid: number;
  gid: number;
  mode: number;
  seals: number;
  /** the MEMFD files.img entry its mappings share, made on the first mapping */
  mappingFileId: number | undefined;
}

let shmemDev: bigint | undefined;

/** The device of the kernel's shmem mount, where memfds and shared anonymous memory live. */
function internalShmemDev(): bigint {
  if (shmemDev === undefined) {
    const fd = bridge().memfdCreate("tscriu-probe", MFD_CLOEXEC);
    try {
      shmemDev = fstatSync(fd, { bigint: true }).dev;
    } finally {
      bridge().close(fd);
    }
  }
  return shmemDev;
}

let hugetlbDevs: Map<bigint, number> | undefined;

/**
 * The devices of the kernel's internal hugetlbfs mounts, one per huge page size, each with
 * its size bits (log2(size) << 26). criu maps a huge page of each size to stat it, which
 * needs a free one; an empty memfd made with MFD_HUGETLB lives on the same mount and
 * needs none. A size the kernel lacks is EINVAL, a kernel without hugetlb ENOENT/EINVAL.
 */
export function hugetlbDevices(): Map<bigint, number> {
  if (hugetlbDevs) return hugetlbDevs;
  const devs = new Map<bigint, number>();
  for (const log2 of HUGE_SIZE_LOG2) {
    const bits = log2 * 2 ** HUGE_SHIFT;
    let fd: number;
    try {
      fd = bridge().memfdCreate("tscriu-probe", (MFD_CLOEXEC | MFD.HUGETLB | bits) >>> 0);
    } catch (e) {
      if (isNativeError(e)) continue;
      throw e;
    }
    try {
      devs.set(fstatSync(fd, { bigint: true }).dev, bits);
    } finally {
      bridge().close(fd);
    }
  }
  hugetlbDevs = devs;
  return devs;
}

/** The size bits of the hugetlb object with stat `st`, or undefined when it is none. */
export function hugetlbBits(st: BigIntStats): number | undefined {
  return hugetlbDevices().get(st.dev);
}

export class ShmemTable {
  readonly objects = new Map<bigint, ShmemObject>();

  constructor(private readonly files: FileTable) {}

  /**
   * Whether `link` (the kernel's name for the file) with stat `st` is a memfd or shared
   * anonymous memory, hugetlb ones included.
   */
  static isShmem(link: string, st: BigIntStats): boolean {
    if (link.startsWith("/memfd:")) return st.dev === internalShmemDev() || hugetlbBits(st) !== undefined;
    if (link.startsWith("/dev/zero")) return st.dev === internalShmemDev();
    if (link.startsWith("/anon_hugepage")) return hugetlbBits(st) !== undefined;
    return false;
  }

  /** The object behind tscriu's `fd` of it, recorded on first sight. */
  object(fd: number, st: BigIntStats, link: string, readPath: string): ShmemObject {
    let obj = this.objects.get(st.ino);
    if (obj) return obj;
    let name = link.replace(/ \(deleted\)$/, "");
    if (name.startsWith("/memfd:")) name = name.slice("/memfd:".length);
    let seals = 0;
    try {
      seals = bridge().fcntl(fd, F_GET_SEALS);
    } catch {
      seals = 0;
    }
    obj = {
      ino: st.ino,
      inodeId: this.objects.size + 1,
      size: st.size,
      readPath,
      name,
      hugetlbFlag: st.dev === internalShmemDev() ? 0 : (MFD.HUGETLB | (hugetlbBits(st) ?? 0)) >>> 0,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mode: Number(st.mode),
      seals,
      mappingFileId: undefined,
    };
    this.objects.set(st.ino, obj);
    return obj;
  }

  /** The MEMFD entry the object's mappings share (a VMA's shmid). */
  mappingFile(obj: ShmemObject): number {
    if (obj.mappingFileId === undefined) obj.mappingFileId = this.entry(obj, 0, 0n, NO_OWNER);
    return obj.mappingFileId;
  }

  /** A MEMFD entry of its own for an open file description of the object. */
  fdFile(obj: ShmemObject, flags: number, pos: bigint, fown: Fown): number {
    return this.entry(obj, flags, pos, fown);
  }

  private entry(obj: ShmemObject, flags: number, pos: bigint, fown: Fown): number {
    const id = this.files.newId();
    this.files.add({ type: "MEMFD", id, memfd: { id, flags, pos, fown, inode_id: obj.inodeId } });
    return id;
  }

  /** memfd.img's entries. */
  inodeEntries(): Record<string, unknown>[] {
    return [...this.objects.values()].map((o) => ({ name: o.name, uid: o.uid, gid: o.gid, size: o.size, shmid: Number(o.ino), seals: o.seals, inode_id: BigInt(o.inodeId), ...(o.hugetlbFlag ? { hugetlb_flag: o.hugetlbFlag } : {}), mode: o.mode }));
  }
}
