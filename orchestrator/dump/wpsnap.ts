// The write-protect snapshot of `dump -R --wp-snapshot` (criu has none): while the task is
// frozen, its writable private anonymous memory is write-protected through a userfaultfd
// made inside it; the task is let go at once, and its pages are copied while it runs. A
// page it writes before it was copied waits in the fault until a thread of tscriu has
// copied it (host-bridge/src/uffd_wp.c), so the copy is the memory of the frozen instant.
// The task stands still for the protection (page tables, not data), not for the copy.
// Into a local pages file the protected pages are written in place by threads of the
// bridge (stream), so no memory of their size is populated for them (fresh memory is
// what costs here) and reading overlaps writing; for the page server they are copied
// into tscriu's buffers first (copy) and sent after, in order.
//
// Limits: only writable private anonymous VMAs (heap, stacks, anonymous mappings) are
// protected; the other pages that a dump takes (copy-on-written pages of private file
// mappings, read-only anonymous memory, the vDSO, shared memory) are copied while the
// task is frozen, as without the snapshot. A task that uses userfaultfd itself on those
// VMAs, or a kernel without write-protect faults, falls back to copying while frozen.
// Only with -R: a task that runs on while its pages are copied must not be killed after
// (what it did meanwhile would be lost) or left stopped (-s).

import { MAP } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { ModuleLog } from "../log.js";
import type { Captured } from "./capture.js";
import { anonWritableLine, VMA, type Vma } from "./vmas.js";

const NR_USERFAULTFD = 323;
const NR_CLOSE = 3;
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const MAP_PRIVATE = 0x2;
const MAP_ANON = 0x20;
const PROT_WRITE = 2;

/**
 * The VMAs a snapshot protects (and write tracking follows): writable, private, anonymous,
 * none of the kernel's special ones, not hugetlb (criu never leaves hugetlb pages to a
 * parent dump, and write-protect faults there want huge-page-sized copies).
 */
export function protectable(v: Vma): boolean {
  return (
    (v.status & VMA.ANON_PRIVATE) !== 0 &&
    (v.flags & MAP.HUGETLB) === 0 &&
    (v.status & (VMA.VDSO | VMA.VVAR | VMA.VSYSCALL)) === 0 &&
    (v.flags & (MAP_PRIVATE | MAP_ANON)) === (MAP_PRIVATE | MAP_ANON) &&
    (v.prot & PROT_WRITE) !== 0
  );
}

/**
 * The ranges protectable() picks, read off /proc/PID/maps of the frozen task, which walks
 * no page table where smaps walks them all (anonWritableLine: writable private memory of
 * no file). maps cannot tell every VMA protectable() leaves out (MAP_DROPPABLE): the dump
 * checks these ranges against smaps' VMAs once read.
 */
export function protectableInMaps(maps: string): { start: bigint; end: bigint }[] {
  const out: { start: bigint; end: bigint }[] = [];
  for (const line of maps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (m && anonWritableLine(m[3]!, m[4]!, m[5]!)) out.push({ start: BigInt(`0x${m[1]!}`), end: BigInt(`0x${m[2]!}`) });
  }
  return out;
}

/**
 * A userfaultfd of the frozen task's address space, made inside it (a userfaultfd serves
 * the memory of whoever made it), taken here with pidfd_getfd and closed in the task
 * again: the task's fd table is as it was. A string says why there is none.
 */
export function takeUserfaultfd(pid: number, log: ModuleLog): number | string {
  const b = bridge();
  const rfd = b.remoteSyscall(pid, NR_USERFAULTFD, [O_CLOEXEC | O_NONBLOCK]);
  if (rfd < 0n) return `userfaultfd inside the task returned errno ${-rfd}`;
  const pidfd = b.pidfdOpen(pid);
  try {
    return b.pidfdGetfd(pidfd, Number(rfd));
  } finally {
    b.close(pidfd);
    const r = b.remoteSyscall(pid, NR_CLOSE, [rfd]);
    if (r < 0n) log.warn(`pid ${pid}: close(${rfd}) of the userfaultfd inside the task returned errno ${-r}`);
  }
}

/** One task's protected memory, from the freeze until the copy is done. */
export class WpSnapshot {
  private done = false;

  private constructor(
    readonly pid: number,
    private readonly uffd: number,
    private readonly ranges: BigUint64Array,
  ) {}

  /**
   * Makes a userfaultfd in the frozen task and takes it (here, at once: ptrace), then
   * protects the ranges `vmas` on the thread pool, in two halves at once past 64 MiB (the
   * page tables of 1 GiB took 12-40 ms on these VMs, which the dump spends on the rest of
   * the task meanwhile); undefined (and the
   * task as it was) when the kernel or the task does not allow it (`refused` tells the
   * log what follows).
   */
  static async protect(pid: number, vmas: readonly { start: bigint; end: bigint }[], log: ModuleLog, refused = "its pages are copied while it is frozen"): Promise<WpSnapshot | undefined> {
    const b = bridge();
    if (vmas.length === 0) return undefined;
    const uffd = takeUserfaultfd(pid, log);
    if (typeof uffd === "string") {
      log.info(`pid ${pid}: ${uffd}: its pages are copied while it is frozen`);
      return undefined;
    }
    const ranges = new BigUint64Array(vmas.flatMap((v) => [v.start, v.end - v.start]));
    try {
      await b.uffdWriteProtect(uffd, ranges);
    } catch (e) {
      log.info(`pid ${pid}: write-protect refused (${(e as Error).message}): ${refused}`);
      try {
        b.uffdRegister(uffd, ranges, false);
      } catch {
        // some were never registered
      }
      b.close(uffd);
      return undefined;
    }
    return new WpSnapshot(pid, uffd, ranges);
  }

  /**
   * Writes the reserved runs of a capture in place in the pages file `out` while the task
   * runs (`holes`: (addr, length, file offset) triples, PageSink.add's); resolves to the
   * pages copied early (the task wrote them first). Ends the protection either way.
   */
  async stream(holes: readonly bigint[], out: number): Promise<number> {
    try {
      if (holes.length === 0) return 0;
      // TSCRIU_WP_HOLD: fewer pages written first held in memory (tests of the path past it)
      const hold = process.env["TSCRIU_WP_HOLD"];
      return (await bridge().uffdSnapshotStream(this.uffd, this.pid, new BigUint64Array(holes), out, hold === undefined ? undefined : Number(hold))).early;
    } finally {
      this.end();
    }
  }

  /** Copies the reserved runs of `c` while the task runs; returns pages copied early (the task wrote them). */
  copy(c: Captured, reserved: ReadonlySet<number>): number {
    const bufs: Buffer[] = [];
    const index = new Map<Buffer, number>();
    const quads: bigint[] = [];
    c.runs.forEach((r, i) => {
      if (!reserved.has(i)) return;
      let bi = index.get(r.buf);
      if (bi === undefined) index.set(r.buf, (bi = bufs.push(r.buf) - 1));
      quads.push(BigInt(r.vaddr), BigInt(r.pages * 4096), BigInt(bi), BigInt(r.off));
    });
    try {
      const early = bridge().uffdSnapshotCopy(this.uffd, this.pid, new BigUint64Array(quads), bufs).early;
      for (const i of [...reserved]) c.reserved.delete(i);
      return early;
    } finally {
      this.end();
    }
  }

  /**
   * Unregisters (every page unprotected, every waiting write let go) and closes, once.
   * Returns what went wrong (a task that exited meanwhile has nothing left to unregister).
   */
  end(): string | undefined {
    if (this.done) return undefined;
    this.done = true;
    try {
      bridge().uffdRegister(this.uffd, this.ranges, false);
      return undefined;
    } catch (e) {
      return (e as Error).message;
    } finally {
      bridge().close(this.uffd);
    }
  }

  /** Whether [addr, addr + len) lies inside the protected ranges. */
  covers(addr: number, len: number): boolean {
    for (let i = 0; i < this.ranges.length; i += 2) {
      const start = Number(this.ranges[i]!);
      if (addr >= start && addr + len <= start + Number(this.ranges[i + 1]!)) return true;
    }
    return false;
  }
}
