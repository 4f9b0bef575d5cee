// The address space from mm-PID.img and the pages images: every VMA mapped at its address
// with its protection, flags and file backing, then the dumped pages written into it.
//
//   anonymous private (heap, stack, …)   mmap MAP_PRIVATE|MAP_ANONYMOUS (MAP_DROPPABLE|…: no pages;
//                                        MAP_HUGETLB with its page size bits: hugetlb memory)
//   private / shared file mappings       the file opened by tscriu, handed to the task,
//                                        mmap at the dumped offset
//   shared anonymous / memfd memory      one object per memfd.img entry (shmem.ts), each
//                                        VMA a mapping of it at its offset
//   [vdso] [vvar] [vsyscall]             the kernel's own, moved in place (vdso.ts); with
//                                        a vDSO proxy, [vdso] and [vvar] are private memory
//                                        (the dumped vDSO, an empty vvar)
//
// Pages: anonymous and private-file pages from pagemap-PID.img (copy-on-written pages of
// private file mappings are anonymous copies, written over the file's data); shared file
// mappings have their data in the file. Every VMA is mapped with MAP_FIXED_NOREPLACE, so
// an overlap is an error instead of a silent replacement.

import { closeSync, constants as fsc, openSync } from "node:fs";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import { F, MAP } from "../../host-bridge/constants.js";
import type { MmEntry } from "../../images/dir.js";
import type { ModuleLog } from "../log.js";
import { RestoreError } from "./errors.js";
import type { FdPlan } from "../fds/restore.js";
import type { FileSet, RegFile } from "./fileset.js";
import { PageResolver, type PageSeg } from "./pagesegs.js";
import { callWhat, NR, type Call, type Remote } from "./remote.js";
import { hugePageBytes, type ShmObject, type ShmTable } from "./shmem.js";
import { planVdso, type VdsoPlan } from "./vdso.js";
import type { CowVma } from "./cow.js";

export type Vma = NonNullable<MmEntry["vmas"]>[number];

import { VMA } from "../../images/vma-status.js";

export { VMA };

const MAP_HUGETLB = MAP.HUGETLB;
const MAP_LOCKED = 0x2000;
const MAP_NORESERVE = 0x4000;
const PROT_WRITE = 2;

export type VmaKind = "anon" | "file" | "shm" | "vdso" | "vvar" | "vsyscall" | "uprobes" | "socket";

export interface VmaPlan {
  vma: Vma;
  kind: VmaKind;
  shared: boolean;
  /** file mappings */
  file?: RegFile | undefined;
  /** open flags for the file */
  openFlags?: number | undefined;
  /** shared memory mappings (or private mappings of a memfd) */
  shm?: ShmObject | undefined;
}

export interface MemoryPlan {
  vmas: VmaPlan[];
  /** pages to write into the task (private memory) */
  segs: PageSeg[];
  pages: number;
  vdso: VdsoPlan;
  /** a lazy restore: the PE_LAZY pages (this many) are the lazy-pages daemon's */
  lazy: boolean;
  lazyPages: number;
  /** the VMAs that go through the premap area (cow.ts): mapped and filled there, not by mapVmas and fillMemory */
  cow: CowVma[];
}

const hex = (v: bigint): string => v.toString(16);
const range = (v: Vma): string => `${hex(v.start)}-${hex(v.end)}`;

/** The image's VMAs checked and classified, and where every page's data is. No side effects. */
export async function planMemory(pid: number, dir: string, mm: MmEntry, files: FileSet, shm: ShmTable, log: ModuleLog, lazy = false): Promise<MemoryPlan> {
  const vmas: VmaPlan[] = [];
  const unsupported = (v: Vma, what: string): RestoreError => new RestoreError("plan", pid, `VMA ${range(v)}: ${what} is not supported`, { address: v.start });
  let prevEnd = 0n;
  for (const v of [...(mm.vmas ?? [])].sort((a, b) => (a.start < b.start ? -1 : 1))) {
    if (v.start >= v.end || v.start % 4096n !== 0n || v.end % 4096n !== 0n) throw new RestoreError("plan", pid, `VMA ${range(v)} is empty or not page aligned`, { address: v.start });
    if (v.start < prevEnd) throw new RestoreError("plan", pid, `VMA ${range(v)} overlaps the one before it`, { address: v.start });
    prevEnd = v.end;
    const s = v.status;
    const shared = (v.flags & MAP.SHARED) !== 0;
    if (s & VMA.VSYSCALL) vmas.push({ vma: v, kind: "vsyscall", shared });
    else if (s & VMA.VVAR) vmas.push({ vma: v, kind: "vvar", shared });
    else if (s & VMA.VDSO) vmas.push({ vma: v, kind: "vdso", shared });
    else if (s & VMA.UPROBES) vmas.push({ vma: v, kind: "uprobes", shared });
    else if (s & VMA.SYSVIPC) throw unsupported(v, "System V shared memory");
    else if (s & VMA.SOCKET) {
      // criu's socket map: a packet socket's ring, mapped from the socket once it exists
      vmas.push({ vma: v, kind: "socket", shared });
    }
    else if (s & VMA.AIORING) throw unsupported(v, "an AIO ring");
    else if (s & VMA.SHSTK) throw unsupported(v, "a shadow stack");
    else if (s & VMA.UNSUPP || !(s & VMA.REGULAR)) throw unsupported(v, `status 0x${s.toString(16)}`);
    else if (v.flags & MAP_HUGETLB && !(s & (VMA.MEMFD | VMA.ANON_SHARED | VMA.ANON_PRIVATE))) throw unsupported(v, "a mapping of a file on a hugetlbfs mount");
    else if (s & VMA.MEMFD || s & VMA.ANON_SHARED) {
      const obj = await shm.forVma(v, pid);
      vmas.push({ vma: v, kind: "shm", shared, shm: obj });
    } else if (s & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)) {
      const f = await files.reg(Number(v.shmid), `the mapping ${range(v)}`);
      vmas.push({ vma: v, kind: "file", shared, file: f, openFlags: openFlags(v, shared) });
    } else if (s & VMA.ANON_PRIVATE) {
      vmas.push({ vma: v, kind: "anon", shared: false });
    } else {
      throw unsupported(v, `status 0x${s.toString(16)}`);
    }
  }
  const { segs: all, pages, lazy: lazyRuns } = await new PageResolver(dir, `pagemap-${pid}.img`, pid).resolve(lazy);
  // A lazy page the daemon cannot fill (its VMA is not registered) would read as zeros.
  // A run may go on across adjacent VMAs: each part must lie in one of them.
  for (const r of lazyRuns) {
    const end = r.vaddr + BigInt(r.pages) * 4096n;
    for (let at = r.vaddr; at < end; ) {
      const p = vmas.find((x) => x.vma.start <= at && at < x.vma.end);
      if (!p || !lazyVma(p)) throw new RestoreError("plan", pid, `the lazy page at 0x${hex(at)} is not in a private anonymous VMA a lazy restore can leave to its daemon`, { address: at, file: join(dir, `pagemap-${pid}.img`) });
      at = p.vma.end;
    }
  }
  const lazyPages = lazyRuns.reduce((n, r) => n + r.pages, 0);
  const vdso = planVdso(pid, vmas.map((p) => p.vma), all, log);
  if (vdso.mode === "proxy") {
    for (const p of vmas) if (p.kind === "vdso" || p.kind === "vvar") p.kind = "anon";
  }
  // Keep the pages that go into private memory; the rest is checked or skipped.
  const segs: PageSeg[] = [];
  let i = 0;
  for (const seg of all) {
    let at = seg.vaddr;
    const end = seg.vaddr + BigInt(seg.len);
    while (at < end) {
      while (i < vmas.length && vmas[i]!.vma.end <= at) i++;
      const p = vmas[i];
      if (!p || p.vma.start > at) throw new RestoreError("plan", pid, `the pagemap has data for 0x${hex(at)}, which is in no VMA`, { address: at, file: seg.file });
      // criu's restore refuses them too: a socket map's pages are the restored socket's ring
      if (p.kind === "socket") throw new RestoreError("plan", pid, `the pagemap has data for 0x${hex(at)}, in the packet ring mapping ${range(p.vma)}, which takes none`, { address: at, file: seg.file });
      const stop = p.vma.end < end ? p.vma.end : end;
      const keep = (p.kind === "anon" || p.kind === "file" || (p.kind === "shm" && !p.shared)) && !p.shared;
      if (keep) {
        const piece = { vaddr: at, len: Number(stop - at), file: seg.file, off: seg.off + Number(at - seg.vaddr) };
        const last = segs[segs.length - 1];
        if (last && last.file === piece.file && last.vaddr + BigInt(last.len) === piece.vaddr && last.off + last.len === piece.off) last.len += piece.len;
        else segs.push(piece);
      } else if (p.shared && p.kind !== "vdso") {
        log.warn(`pages for the shared mapping ${range(p.vma)} in the process pagemap are ignored (its data is in the file)`);
      }
      at = stop;
    }
  }
  return { vmas, segs, pages, vdso, lazy, lazyPages, cow: [] };
}

/**
 * Whether a lazy restore registers the VMA with the task's userfaultfd for its daemon:
 * criu's rule (private anonymous memory, not locked, not droppable, not the kernel's
 * vDSO/vvar/vsyscall, not hugetlb), as the dump marks its pages PE_LAZY.
 */
export function lazyVma(p: VmaPlan): boolean {
  const v = p.vma;
  return p.kind === "anon" && !p.shared && !(v.flags & (MAP_LOCKED | MAP_HUGETLB | MAP.DROPPABLE)) && !(v.status & (VMA.VDSO | VMA.VVAR | VMA.VSYSCALL));
}

/** How to open a mapped file: as the mapping's own fd was (fdflags), or as its protection needs. */
function openFlags(v: Vma, shared: boolean): number {
  if (v.fdflags !== undefined) return v.fdflags & 3;
  return shared && v.prot & PROT_WRITE ? fsc.O_RDWR : fsc.O_RDONLY;
}

/** mmap flags for the VMA at its address: its own flags, never replacing anything. */
export function mmapFlags(v: Vma, anon: boolean): number {
  let f = (v.flags & ~(MAP.FIXED | MAP.ANONYMOUS)) | MAP.FIXED_NOREPLACE;
  // MAP_DROPPABLE is a map type of its own: no MAP_PRIVATE with it
  if (f & MAP.DROPPABLE) f &= ~MAP.PRIVATE;
  if (anon) f |= MAP.ANONYMOUS;
  // (the page size bits of MAP_HUGETLB reach bit 31: as the unsigned flags they are)
  return f >>> 0;
}

/** The mmap of a private hugetlb VMA, as an error names it: the kernel reserves its huge pages there. */
function hugeWhat(v: Vma): string {
  const page = hugePageBytes(v.flags);
  const reserve = v.flags & MAP_NORESERVE ? "" : `, ${(v.end - v.start + page - 1n) / page} free huge pages reserved`;
  return `mmap of the hugetlb VMA ${range(v)} (${page >> 10n} kB pages${reserve})`;
}

/** madvise calls for the VMA's saved advice bits (criu stores 1 << MADV_x). */
export function madviseCalls(v: Vma): Call[] {
  const calls: Call[] = [];
  const bits = v.madv ?? 0n;
  for (let b = 0; b < 64; b++) {
    if (bits & (1n << BigInt(b))) calls.push({ what: `madvise(${range(v)}, ${b})`, nr: NR.madvise, args: [v.start, v.end - v.start, b] });
  }
  return calls;
}

/**
 * Maps every anonymous and file VMA (shared memory objects are shmem.ts's). File fds are
 * handed to the task, used by their mmaps, then closed there.
 */
export function mapVmas(remote: Remote, plan: MemoryPlan, files: FileSet, log: ModuleLog): void {
  const remoteFds = new Map<number, number>();
  const calls: Call[] = [];
  const premapped = new Set(plan.cow.map((c) => c.vma));
  for (const p of plan.vmas) {
    const v = p.vma;
    if (premapped.has(p)) continue;
    if (p.kind === "anon") {
      // A kernel before 6.11 takes MAP_DROPPABLE for an unknown map type: EINVAL.
      const what = v.flags & MAP.DROPPABLE ? `mmap of the droppable VMA ${range(v)} (MAP_DROPPABLE, Linux 6.11+)` : v.flags & MAP_HUGETLB ? hugeWhat(v) : `mmap of the anonymous VMA ${range(v)}`;
      calls.push({ what, nr: NR.mmap, args: [v.start, v.end - v.start, v.prot, mmapFlags(v, true), -1, 0] });
    } else if (p.kind === "socket") {
      // its place kept until the socket is made (mapSocketRings)
      calls.push({ what: `placeholder of the packet ring ${range(v)}`, nr: NR.mmap, args: [v.start, v.end - v.start, 0, MAP.PRIVATE | MAP.ANONYMOUS | MAP.FIXED_NOREPLACE | MAP_NORESERVE, -1, 0] });
      continue;
    } else if (p.kind === "file") {
      const local = files.open(p.file!, p.openFlags!);
      let fd = remoteFds.get(local);
      if (fd === undefined) {
        fd = remote.takeFd(local, p.file!.name);
        remoteFds.set(local, fd);
      }
      calls.push({ what: `mmap of ${p.file!.name} at ${range(v)}`, nr: NR.mmap, args: [v.start, v.end - v.start, v.prot, mmapFlags(v, false), fd, v.pgoff] });
    } else {
      continue;
    }
    calls.push(...madviseCalls(v));
  }
  const results = remote.loop(calls);
  calls.forEach((c, i) => {
    if (c.nr === NR.mmap && results[i] !== BigInt(c.args[0]!)) throw new RestoreError("vmas", remote.pid, `${callWhat(c)} landed at 0x${hex(results[i]!)}`, { address: BigInt(c.args[0]!) });
  });
  remote.loop([...remoteFds.values()].map((fd) => ({ what: `close(${fd})`, nr: NR.close, args: [fd] })));
  log.debug(`${calls.filter((c) => c.nr === NR.mmap).length} VMAs mapped`);
}

/**
 * With the task's fds in place: each packet ring is mapped from its socket (the fd the
 * task has of the file its VMA names) over the placeholder mapVmas left, as criu's
 * restorer maps a socket map.
 */
export function mapSocketRings(remote: Remote, plan: MemoryPlan, fds: FdPlan): void {
  const calls: Call[] = [];
  for (const p of plan.vmas) {
    if (p.kind !== "socket") continue;
    const v = p.vma;
    const fd = fds.fds.find((f) => f.id === Number(v.shmid))?.fd;
    if (fd === undefined) throw new RestoreError("vmas", remote.pid, `the packet ring ${range(v)} maps the socket of file id ${v.shmid}, which the task has no fd of`, { address: v.start });
    // MAP_PRIVATE as it was (criu's restorer maps it with the entry's flags): the ring's
    // pages again, copied only where the task writes them.
    const flags = (v.flags & ~(MAP.FIXED_NOREPLACE | MAP.ANONYMOUS | MAP.SHARED | MAP.PRIVATE)) | (p.shared ? MAP.SHARED : MAP.PRIVATE) | MAP.FIXED;
    calls.push({ what: `mmap of the packet ring ${range(v)} from fd ${fd}`, nr: NR.mmap, args: [v.start, v.end - v.start, v.prot, flags, fd, v.pgoff] }, ...madviseCalls(v));
  }
  if (calls.length === 0) return;
  const results = remote.loop(calls);
  calls.forEach((c, i) => {
    if (c.nr === NR.mmap && results[i] !== BigInt(c.args[0]!)) throw new RestoreError("vmas", remote.pid, `${callWhat(c)}: ${results[i]! < 0n && results[i]! > -4096n ? `errno ${-results[i]!}` : `landed at 0x${hex(results[i]!)}`}`, { address: BigInt(c.args[0]!) });
  });
}

/** madvise for shared-memory VMAs, after shmem.ts mapped them. */
export function adviseShm(remote: Remote, plan: MemoryPlan): void {
  remote.loop(plan.vmas.filter((p) => p.kind === "shm").flatMap((p) => madviseCalls(p.vma)));
}

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/** The segments cut at VMA boundaries, each with the VMA it lies in. */
function perVma(plan: MemoryPlan): { seg: PageSeg; vma: VmaPlan }[] {
  const out: { seg: PageSeg; vma: VmaPlan }[] = [];
  let i = 0;
  for (const s of plan.segs) {
    let at = s.vaddr;
    const end = s.vaddr + BigInt(s.len);
    while (at < end) {
      while (plan.vmas[i]!.vma.end <= at) i++;
      const p = plan.vmas[i]!;
      const stop = p.vma.end < end ? p.vma.end : end;
      out.push({ seg: { vaddr: at, len: Number(stop - at), file: s.file, off: s.off + Number(at - s.vaddr) }, vma: p });
      at = stop;
    }
  }
  return out;
}

/** UFFD_FEATURE_EVENT_FORK | _REMAP | _REMOVE | _UNMAP: what a lazy-pages daemon must hear of. */
export const LAZY_UFFD_FEATURES = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6);

/** Where a lazy restore's userfaultfds go: the lazy-pages daemon (lazy-handoff.ts). */
export interface LazyTaker {
  give(pid: number, uffd: number): void;
}

/**
 * Writes the dumped pages into the task. Anonymous VMAs (most of a task's memory) are
 * filled through a userfaultfd of the task (UFFDIO_COPY: no zeroing, no fault path);
 * the rest -- copy-on-written pages of file mappings, locked memory -- and everything when
 * the kernel refuses a userfaultfd goes through writeSegments. Returns the bytes written.
 *
 * A lazy restore (plan.lazy) keeps the lazy VMAs registered and hands the userfaultfd,
 * with the fork/mremap/munmap/madvise events on, to the lazy-pages daemon (`lazy`), which
 * fills the PE_LAZY pages the plan left out while the task runs.
 */
/**
 * TSCRIU_LAZY_HANDOFF=early (tests): hands the userfaultfd over in criu's order, before
 * the lazy VMAs are registered (criu's restorer registers them as it moves them into
 * place, after criu sent the fd): unregistered, given, registered again 300 ms later
 * through a duplicate. The daemon must not fill until the restore has finished.
 */
function giveEarly(uffd: number, lazyRanges: BigUint64Array, give: () => void): void {
  const b = bridge();
  b.uffdRegister(uffd, lazyRanges, false);
  const keep = b.fcntl(uffd, F.DUPFD_CLOEXEC, 0);
  try {
    give();
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
    b.uffdRegister(keep, lazyRanges, true, undefined, false);
  } finally {
    b.close(keep);
  }
}

export function fillMemory(remote: Remote, plan: MemoryPlan, threads: number, log: ModuleLog, progress?: FillProgress, fault?: () => void, lazy?: LazyTaker): number {
  const b = bridge();
  const premapped = new Set(plan.cow.map((c) => c.vma));
  const pieces = perVma(plan).filter((p) => !premapped.has(p.vma));
  // (UFFDIO_COPY into hugetlb memory takes whole huge pages only: that goes the other way)
  const viaUffd = pieces.filter((p) => p.vma.kind === "anon" && !(p.vma.vma.flags & (MAP_LOCKED | MAP_HUGETLB)));
  let rest = pieces.filter((p) => !viaUffd.includes(p)).map((p) => p.seg);
  let done = 0;
  const lazyVmas = plan.lazy ? plan.vmas.filter(lazyVma) : [];
  if (viaUffd.length || lazyVmas.length) {
    const rfd = remote.try(NR.userfaultfd, [O_CLOEXEC | O_NONBLOCK]);
    if (rfd < 0n && plan.lazy) throw new RestoreError("pages", remote.pid, `userfaultfd in the task failed (errno ${-rfd}): a lazy restore needs one`);
    if (rfd < 0n) {
      log.debug(`userfaultfd in the task: errno ${-rfd}; pages go through process_vm_writev`);
      rest = pieces.map((p) => p.seg);
    } else {
      const pidfd = b.pidfdOpen(remote.pid);
      let uffd: number;
      try {
        uffd = b.pidfdGetfd(pidfd, Number(rfd));
      } finally {
        b.close(pidfd);
      }
      remote.call("close (userfaultfd)", NR.close, [rfd]);
      let given = false;
      try {
        const vmas = [...new Set([...viaUffd.map((p) => p.vma), ...lazyVmas])];
        const rangesOf = (vs: readonly VmaPlan[]): BigUint64Array => new BigUint64Array(vs.flatMap((v) => [v.vma.start, v.vma.end - v.vma.start]));
        const ranges = rangesOf(vmas);
        // a lazy restore leaves the lazy VMAs registered for the daemon
        const unregister = plan.lazy ? rangesOf(vmas.filter((v) => !lazyVmas.includes(v))) : ranges;
        try {
          b.uffdRegister(uffd, ranges, true, plan.lazy ? LAZY_UFFD_FEATURES : 0);
        } catch (e) {
          if (plan.lazy) throw new RestoreError("pages", remote.pid, `the kernel's userfaultfd refuses what a lazy restore needs (missing pages and fork/mremap/munmap events): ${(e as Error).message}`, { cause: e });
          throw e;
        }
        try {
          done = copyStrides(viaUffd.map((p) => p.seg), (fd, words) => b.uffdCopy(uffd, fd, words, threads), progress, fault, 0);
        } finally {
          b.uffdRegister(uffd, unregister, false);
        }
        if (plan.lazy) {
          given = true;
          if (process.env["TSCRIU_LAZY_HANDOFF"] === "early") giveEarly(uffd, rangesOf(lazyVmas), () => lazy!.give(remote.pid, uffd));
          else lazy!.give(remote.pid, uffd);
          log.debug(`${lazyVmas.length} VMAs with ${plan.lazyPages} lazy pages handed to the lazy-pages daemon`);
        }
      } finally {
        if (!given) b.close(uffd);
      }
    }
  }
  return done + copyStrides(rest, (fd, words) => b.writePages(remote.pid, fd, words, threads).bytes, progress, fault, done);
}

export interface FillProgress {
  (bytesDone: number): void;
}

/** Bytes per writePages call: the progress bar moves between calls. */
const STRIDE = 64 << 20;

/**
 * Writes page segments into task `pid` (no ptrace-stop needed): several threads per call,
 * the pages file mapped and copied straight from the page cache, /proc/PID/mem for the
 * pages the task may not write. Returns the bytes written.
 */
export function writeSegments(pid: number, segs: readonly PageSeg[], threads: number, progress?: FillProgress, fault?: () => void): number {
  return copyStrides(segs, (fd, words) => bridge().writePages(pid, fd, words, threads).bytes, progress, fault, 0);
}

/** Runs `copy` over the segments, file by file, STRIDE bytes a call; progress counts on from `base`. */
function copyStrides(segs: readonly PageSeg[], copy: (fd: number, words: BigUint64Array) => number, progress: FillProgress | undefined, fault: (() => void) | undefined, base: number): number {
  const byFile = new Map<string, PageSeg[]>();
  for (const s of segs) {
    let l = byFile.get(s.file);
    if (!l) byFile.set(s.file, (l = []));
    // long runs in STRIDE pieces, so that progress moves
    for (let at = 0; at < s.len; at += STRIDE) l.push({ ...s, vaddr: s.vaddr + BigInt(at), off: s.off + at, len: Math.min(STRIDE, s.len - at) });
  }
  let done = 0;
  for (const [file, list] of byFile) {
    const fd = openSync(file, "r");
    try {
      let i = 0;
      while (i < list.length) {
        const batch: number[] = [];
        let bytes = 0;
        while (i < list.length && (bytes === 0 || bytes + list[i]!.len <= STRIDE)) {
          const s = list[i++]!;
          batch.push(Number(s.vaddr), s.off, s.len);
          bytes += s.len;
        }
        fault?.();
        const words = new BigUint64Array(batch.map((x) => BigInt(x)));
        try {
          copy(fd, words);
        } catch (e) {
          throw Object.assign(new Error(`writing pages from ${file}: ${(e as Error).message}`), { cause: e, file });
        }
        done += bytes;
        progress?.(base + done);
      }
    } finally {
      closeSync(fd);
    }
  }
  return done;
}
