// Shared memory objects: MAP_SHARED|MAP_ANONYMOUS regions and memfds, described by
// memfd.img entries (criu and tscriu dump shared anonymous memory "the memfd way", named
// "/dev/zero") or, in older images, by VMA_ANON_SHARED VMAs alone; their contents are in
// pagemap-shmem-<shmid>.img (addresses there are offsets in the object).
//
// A "/dev/zero" object is made as the kernel makes one: an anonymous shared mapping in the
// task (at a spot the kernel picks), filled there; its other mappings take the same object
// through /proc/PID/map_files, so /proc shows "/dev/zero (deleted)" as before. A memfd is
// made by tscriu (memfd_create with its name), filled with pwrite and handed over.
//
// hugetlb objects (memfd.img's hugetlb_flag, or MAP_HUGETLB in an old-style VMA's flags):
// "/anon_hugepage" is made as the kernel makes it, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB
// with the page size, in the task; a hugetlb memfd by memfd_create(MFD_HUGETLB) here.
// hugetlbfs has no write(): both are filled through a mapping in the task. The kernel
// takes their huge pages when they are mapped (a shared mapping reserves them): with too
// few free, that mmap fails ENOMEM, named with the VMA it is for.

import { closeSync, existsSync, readFileSync, fchmodSync, fchownSync, ftruncateSync, openSync, readSync, writeSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { HUGE_SHIFT, HUGE_SIZE_MASK, MAP, MFD, PROT } from "../../host-bridge/constants.js";
import type { FileEntry } from "../../images/dir.js";
import { readImage } from "../../images/io.js";
import type { ModuleLog } from "../log.js";
import { RestoreError } from "./errors.js";
import { writeSegments, type Vma } from "./memory.js";
import { PageResolver, type PageSeg } from "./pagesegs.js";
import { NR, type Call, type Remote } from "./remote.js";

/** open(2)'s O_CLOEXEC (node:fs constants leave it out; libuv adds it by itself). */
const O_CLOEXEC = 0o2000000;

const F_ADD_SEALS = 1033;
const F_SEAL_SEAL = 1;
/** F_SEAL_SEAL, SHRINK, GROW, WRITE, FUTURE_WRITE, EXEC */
const ALL_SEALS = 0x3f;
const MFD_CLOEXEC = MFD.CLOEXEC;
const MFD_ALLOW_SEALING = MFD.ALLOW_SEALING;

export interface ShmObject {
  key: string;
  /** "/dev/zero" ("/anon_hugepage") for shared anonymous (hugetlb) memory, else the memfd's name */
  name: string;
  /** shared anonymous memory, made by an mmap in a task */
  anonymous: boolean;
  /** a hugetlb object: MFD_HUGETLB and its page size bits, else 0 */
  hugetlb: number;
  size: bigint;
  seals: number;
  mode: number;
  uid: number;
  gid: number;
  shmid: number;
  segs: PageSeg[];
  pages: number;
  /** its mappings, each with the process it is in */
  vmas: { pid: number; vma: Vma }[];
  /** tscriu's fd of the object, once made */
  local: number;
  /**
   * True once a memfd's own open file description (memfd_create's) went to a task's fd.
   * Only that one lets the task execveat() the memfd: a description opened writable
   * through /proc/self/fd counts as a writer of the inode (i_writecount), and exec of an
   * inode with writers is ETXTBSY. memfd_create's does not count.
   */
  given: boolean;
}

const hex = (v: bigint): string => v.toString(16);

/** The huge page size of hugetlb flags (mmap's or memfd_create's); 0 asks for the default size. */
export function hugePageBytes(flags: number): bigint {
  const log2 = ((flags & HUGE_SIZE_MASK) >>> HUGE_SHIFT) & 0x3f;
  return log2 ? 1n << BigInt(log2) : defaultHugePage();
}

let defaultHuge: bigint | undefined;
function defaultHugePage(): bigint {
  if (defaultHuge === undefined) {
    const m = /^Hugepagesize:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "latin1"));
    defaultHuge = m ? BigInt(m[1]!) * 1024n : 2n << 20n;
  }
  return defaultHuge;
}

const roundUp = (v: bigint, to: bigint): bigint => ((v + to - 1n) / to) * to;

export class ShmTable {
  readonly objects = new Map<string, ShmObject>();
  private memfds = new Map<number, Record<string, unknown>>();

  private constructor(
    private readonly dir: string,
    private readonly files: Map<number, FileEntry>,
    private readonly pid: number,
  ) {}

  static async load(dir: string, files: Map<number, FileEntry>, pid: number): Promise<ShmTable> {
    const t = new ShmTable(dir, files, pid);
    if (existsSync(join(dir, "memfd.img"))) {
      for (const e of (await readImage(join(dir, "memfd.img"))).entries) t.memfds.set(Number(e["inode_id"]), e);
    }
    return t;
  }

  private async object(key: string, make: () => Omit<ShmObject, "segs" | "pages" | "vmas" | "local" | "key" | "given">): Promise<ShmObject> {
    let o = this.objects.get(key);
    if (o) return o;
    const base = make();
    const pagemap = `pagemap-shmem-${base.shmid}.img`;
    let segs: PageSeg[] = [];
    let pages = 0;
    if (existsSync(join(this.dir, pagemap))) ({ segs, pages } = await new PageResolver(this.dir, pagemap, this.pid).resolve());
    for (const s of segs) {
      if (s.vaddr + BigInt(s.len) > ((base.size + 4095n) & ~4095n)) {
        throw new RestoreError("plan", this.pid, `${pagemap} has data at offset 0x${hex(s.vaddr)}, past the object's ${base.size} bytes`, { file: join(this.dir, pagemap) });
      }
    }
    o = { ...base, key, segs, pages, vmas: [], local: -1, given: false };
    this.objects.set(key, o);
    return o;
  }

  /** The object behind a MEMFD files.img entry (a mapping's shmid or an fd's id). */
  async forMemfdFile(id: number, what: string): Promise<ShmObject> {
    const f = this.files.get(id);
    const inode = f?.memfd?.inode_id;
    if (inode === undefined) throw new RestoreError("plan", this.pid, `${what}: file id ${id} is not a MEMFD entry of files.img`, { file: join(this.dir, "files.img") });
    const e = this.memfds.get(inode);
    if (!e) throw new RestoreError("plan", this.pid, `${what}: memfd inode ${inode} is not in memfd.img`, { file: join(this.dir, "memfd.img") });
    const hugetlb = Number(e["hugetlb_flag"] ?? 0);
    if (hugetlb && (!(hugetlb & MFD.HUGETLB) || (hugetlb & ~(HUGE_SIZE_MASK | MFD.HUGETLB)) !== 0)) {
      throw new RestoreError("plan", this.pid, `${what}: memfd inode ${inode} has hugetlb_flag 0x${(hugetlb >>> 0).toString(16)} (MFD_HUGETLB and a page size expected)`, { file: join(this.dir, "memfd.img") });
    }
    // F_ADD_SEALS would refuse other bits (EINVAL) and the seals would be lost with a warning.
    const seals = Number(e["seals"] ?? F_SEAL_SEAL);
    if (seals & ~ALL_SEALS) throw new RestoreError("plan", this.pid, `${what}: memfd inode ${inode} has seals 0x${seals.toString(16)} (known: 0x${ALL_SEALS.toString(16)})`, { file: join(this.dir, "memfd.img") });
    const name = String(e["name"]);
    const size = BigInt(e["size"] as bigint | number);
    // hugetlbfs takes no other size (ftruncate EINVAL)
    if (hugetlb && size % hugePageBytes(hugetlb) !== 0n) throw new RestoreError("plan", this.pid, `${what}: the hugetlb memfd inode ${inode} has ${size} bytes, not a multiple of its ${hugePageBytes(hugetlb)}-byte pages`, { file: join(this.dir, "memfd.img") });
    return this.object(`memfd:${inode}`, () => ({
      name,
      anonymous: name === "/dev/zero" || (hugetlb !== 0 && name === "/anon_hugepage"),
      hugetlb: hugetlb >>> 0,
      size,
      seals: Number(e["seals"] ?? F_SEAL_SEAL),
      mode: Number(e["mode"] ?? 0o100666),
      uid: Number(e["uid"] ?? 0),
      gid: Number(e["gid"] ?? 0),
      shmid: Number(e["shmid"]),
    }));
  }

  /** The object a shared-memory VMA of process `pid` maps. */
  async forVma(v: Vma, pid: number): Promise<ShmObject> {
    const what = `the mapping ${hex(v.start)}-${hex(v.end)}`;
    let o: ShmObject;
    if (v.status & (1 << 14)) {
      o = await this.forMemfdFile(Number(v.shmid), what);
    } else {
      // old-style VMA_ANON_SHARED: the shmid names the object, its size is what is mapped
      const shmid = Number(v.shmid);
      const hugetlb = v.flags & MAP.HUGETLB ? (MFD.HUGETLB | (v.flags & HUGE_SIZE_MASK)) >>> 0 : 0;
      const name = hugetlb ? "/anon_hugepage" : "/dev/zero";
      o = await this.object(`anon:${shmid}`, () => ({ name, anonymous: true, hugetlb, size: 0n, seals: F_SEAL_SEAL, mode: 0o100666, uid: 0, gid: 0, shmid }));
      const need = v.pgoff + (v.end - v.start);
      if (need > o.size) o.size = need;
    }
    o.vmas.push({ pid, vma: v });
    return o;
  }

  /**
   * Makes and fills every object not made yet (in the task of `remote`, where shared
   * anonymous memory needs a task), then maps the objects' VMAs of that task. tscriu keeps
   * its fd of each object (memfd fds, and the other processes' mappings, are opened from
   * there). Returns the pages written.
   */
  restore(remote: Remote, threads: number): number {
    let pages = 0;
    for (const o of this.objects.values()) {
      // (shared anonymous memory is never empty; an empty memfd is made all the same)
      if (o.size === 0n && o.anonymous) continue;
      if (o.local < 0) {
        if (o.anonymous) this.makeAnonymous(remote, o, threads);
        else if (o.hugetlb) this.makeHugetlbMemfd(remote, o, threads);
        else this.makeMemfd(o);
        pages += o.pages;
      }
      const mine = o.vmas.filter((m) => m.pid === remote.pid).map((m) => m.vma);
      if (mine.length === 0) continue;
      const rfd = remote.takeFd(o.local, o.name);
      const calls: Call[] = mine.map((v) => ({
        what: `mmap of ${o.name}${o.hugetlb ? ` (hugetlb, ${hugePageBytes(o.hugetlb) >> 10n} kB pages)` : ""} at ${hex(v.start)}-${hex(v.end)}`,
        nr: NR.mmap,
        args: [v.start, v.end - v.start, v.prot, ((v.flags & ~(MAP.FIXED | MAP.ANONYMOUS)) | MAP.FIXED_NOREPLACE) >>> 0, rfd, v.pgoff],
      }));
      calls.push({ what: `close(${rfd})`, nr: NR.close, args: [rfd] });
      const res = remote.batch(calls);
      mine.forEach((v, i) => {
        if (res[i] !== v.start) throw new RestoreError("vmas", remote.pid, `mmap of ${o.name} landed at 0x${hex(res[i]!)}`, { address: v.start });
      });
    }
    return pages;
  }

  /** What the object is made for, in an error: its first mapping. */
  private forWhat(o: ShmObject): string {
    const m = o.vmas[0];
    return m ? ` for the VMA ${hex(m.vma.start)}-${hex(m.vma.end)} of pid ${m.pid}` : "";
  }

  private makeAnonymous(remote: Remote, o: ShmObject, threads: number): void {
    const huge = o.hugetlb ? (MAP.HUGETLB | (o.hugetlb & HUGE_SIZE_MASK)) >>> 0 : 0;
    const size = roundUp(o.size, huge ? hugePageBytes(huge) : 4096n);
    const kind = huge ? `hugetlb (${hugePageBytes(huge) >> 10n} kB pages)` : "anonymous";
    const at = remote.call(`mmap of a ${size}-byte shared ${kind} object${this.forWhat(o)}`, NR.mmap, [0, size, PROT.READ | PROT.WRITE, (MAP.SHARED | MAP.ANONYMOUS | huge) >>> 0, -1, 0]);
    this.fillMapped(remote, o, at, size, threads);
    o.local = openSync(`/proc/${remote.pid}/map_files/${hex(at)}-${hex(at + size)}`, fsc.O_RDWR | O_CLOEXEC);
    remote.call("munmap of the shared object's first mapping", NR.munmap, [at, size]);
  }

  /** Writes the object's pages into its mapping at `at` in the task; a failure names the object. */
  private fillMapped(remote: Remote, o: ShmObject, at: bigint, size: bigint, threads: number): void {
    try {
      writeSegments(remote.pid, o.segs.map((s) => ({ ...s, vaddr: at + s.vaddr })), threads);
    } catch (e) {
      remote.try(NR.munmap, [at, size]);
      throw new RestoreError("pages", remote.pid, `filling ${o.name}${this.forWhat(o)}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** A hugetlb memfd: made here, filled through a mapping in the task (hugetlbfs has no write()). */
  private makeHugetlbMemfd(remote: Remote, o: ShmObject, threads: number): void {
    const sealing = (o.seals & ~F_SEAL_SEAL) !== 0 || (o.seals & F_SEAL_SEAL) === 0;
    try {
      o.local = bridge().memfdCreate(o.name, (MFD_CLOEXEC | o.hugetlb | (sealing ? MFD_ALLOW_SEALING : 0)) >>> 0);
    } catch (e) {
      throw new RestoreError("shmem", remote.pid, `memfd_create(${o.name}, MFD_HUGETLB with ${hugePageBytes(o.hugetlb) >> 10n} kB pages)${this.forWhat(o)}: ${(e as Error).message}`, { cause: e });
    }
    ftruncateSync(o.local, Number(o.size));
    if (o.segs.length) {
      const rfd = remote.takeFd(o.local, o.name);
      try {
        const at = remote.call(`mmap of the hugetlb memfd ${o.name} (${o.size} bytes, ${hugePageBytes(o.hugetlb) >> 10n} kB pages) to fill it${this.forWhat(o)}`, NR.mmap, [0, o.size, PROT.READ | PROT.WRITE, MAP.SHARED, rfd, 0]);
        this.fillMapped(remote, o, at, o.size, threads);
        remote.call("munmap of the hugetlb memfd's filling mapping", NR.munmap, [at, o.size]);
      } finally {
        remote.try(NR.close, [rfd]);
      }
    }
    this.setOwner(o);
  }

  private makeMemfd(o: ShmObject): void {
    const sealing = (o.seals & ~F_SEAL_SEAL) !== 0 || (o.seals & F_SEAL_SEAL) === 0;
    o.local = bridge().memfdCreate(o.name, MFD_CLOEXEC | (sealing ? MFD_ALLOW_SEALING : 0));
    ftruncateSync(o.local, Number(o.size));
    const buf = Buffer.allocUnsafe(1 << 20);
    for (const s of o.segs) {
      const fd = openSync(s.file, "r");
      try {
        for (let done = 0; done < s.len; ) {
          const n = readSync(fd, buf, 0, Math.min(buf.length, s.len - done), s.off + done);
          if (n <= 0) throw new Error(`short read of ${s.file} at ${s.off + done}`);
          for (let w = 0; w < n; ) w += writeSync(o.local, buf, w, n - w, Number(s.vaddr) + done + w);
          done += n;
        }
      } finally {
        closeSync(fd);
      }
    }
    // Pages go in whole: the last one written grows a memfd whose size is not a page multiple.
    ftruncateSync(o.local, Number(o.size));
    // A sealable memfd that had no seals: F_SEAL_SEAL is all memfd_create sets by default.
    this.setOwner(o);
  }

  private setOwner(o: ShmObject): void {
    fchmodSync(o.local, o.mode & 0o7777);
    try {
      fchownSync(o.local, o.uid, o.gid);
    } catch {
      // keep our owner when the id does not exist here
    }
  }

  /**
   * Seals the memfds, once every process has its mappings and fds of them: F_SEAL_WRITE
   * and F_SEAL_FUTURE_WRITE refuse the writable shared mappings made after them, which
   * the original made before it sealed.
   */
  seal(log: ModuleLog): void {
    for (const o of this.objects.values()) {
      if (o.anonymous || o.local < 0 || !(o.seals & ~F_SEAL_SEAL)) continue;
      try {
        bridge().fcntl(o.local, F_ADD_SEALS, o.seals);
      } catch (e) {
        log.warn(`memfd ${o.name}: seals 0x${o.seals.toString(16)} not restored: ${(e as Error).message}`);
      }
    }
  }

  closeAll(): void {
    for (const o of this.objects.values()) {
      if (o.local >= 0) {
        try {
          closeSync(o.local);
        } catch {
          // closed already
        }
        o.local = -1;
      }
    }
  }
}
