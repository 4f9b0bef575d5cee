// The premap area of cow.ts at restore: one range free in the stub's layout, in every
// process's image layout and away from the trampoline, found once (every process is forked
// from the root's stub, so all see the same layout). A process that was just made -- a
// stub still, before it forks anything -- maps the slots it is the first of its chain to
// have and fills them with its pages, and fixes the slots it inherited: its own pages
// where they differ from its parent's, the parent's pages it had not dropped. A child
// forked after that finds every slot as its parent holds it, sharing its pages. Once the
// stub's own mappings are gone (the vdso step keeps the slots), each slot is moved onto
// its VMA's address and given the VMA's protection and advice.

import { PROT } from "../../host-bridge/constants.js";
import type { CowVma } from "./cow.js";
import { RestoreError } from "./errors.js";
import type { FileSet } from "./fileset.js";
import type { Mapping } from "./layout.js";
import type { ModuleLog } from "../log.js";
import { fillMemory, madviseCalls, mmapFlags, writeSegments, type MemoryPlan, type VmaPlan } from "./memory.js";
import type { PageSeg } from "./pagesegs.js";
import { callWhat, NR, type Call, type Remote } from "./remote.js";

const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;
const MADV_DONTNEED = 4;

const hex = (v: bigint): string => v.toString(16);
const len = (c: CowVma): bigint => c.vma.vma.end - c.vma.vma.start;

/** Where a slot is in the task. */
export function slotAt(base: bigint, c: CowVma): bigint {
  return base + c.slot;
}

/** The slots of the process: the vdso step leaves them mapped. */
export function slotRanges(base: bigint, memory: MemoryPlan): { start: bigint; end: bigint }[] {
  return memory.cow.map((c) => ({ start: slotAt(base, c), end: slotAt(base, c) + len(c) }));
}

/** Whether a mapping of the stub lies in one of the process's slots. */
export function inSlot(m: Mapping, slots: readonly { start: bigint; end: bigint }[]): boolean {
  return slots.some((s) => s.start <= m.start && m.end <= s.end);
}

/**
 * Makes the process's slots what its children must inherit: maps its own ones (files
 * handed over through a pidfd of tscriu at fd `fdAbove` or higher, closed again before
 * anything is forked), drops and writes pages. Returns the bytes written.
 */
export function premap(remote: Remote, memory: MemoryPlan, base: bigint, files: FileSet, fdAbove: number, threads: number, log: ModuleLog): number {
  const cow = memory.cow;
  if (cow.length === 0) return 0;
  const calls: Call[] = [];
  const taken: number[] = [];
  const own = cow.filter((c) => !c.inherited);
  if (own.some((c) => c.vma.kind === "file")) remote.openPidfd(fdAbove);
  try {
    const remoteFds = new Map<number, number>();
    for (const c of own) {
      const v = c.vma.vma;
      const at = slotAt(base, c);
      // writable while it is filled: the VMA's own protection once it is in place
      const prot = PROT.READ | PROT.WRITE;
      if (c.vma.kind === "anon") {
        calls.push({ what: `mmap of the slot 0x${hex(at)} of the anonymous VMA ${hex(v.start)}-${hex(v.end)}`, nr: NR.mmap, args: [at, len(c), prot, mmapFlags(v, true), -1, 0] });
      } else {
        const file = c.vma.file!;
        const local = files.open(file, c.vma.openFlags!);
        let fd = remoteFds.get(local);
        if (fd === undefined) {
          fd = remote.takeFd(local, file.name);
          remoteFds.set(local, fd);
          taken.push(fd);
        }
        calls.push({ what: `mmap of ${file.name} into the slot 0x${hex(at)} of ${hex(v.start)}-${hex(v.end)}`, nr: NR.mmap, args: [at, len(c), prot, mmapFlags(v, false), fd, v.pgoff] });
      }
    }
    for (const c of cow) {
      const delta = slotAt(base, c) - c.vma.vma.start;
      for (const d of c.drop) calls.push({ what: `madvise(MADV_DONTNEED) of the parent's pages at 0x${hex(d.start)} in the slot 0x${hex(slotAt(base, c))}`, nr: NR.madvise, args: [d.start + delta, d.len, MADV_DONTNEED] });
    }
    const results = remote.loop(calls);
    calls.forEach((c, i) => {
      if (c.nr === NR.mmap && results[i] !== BigInt(c.args[0]!)) throw new RestoreError("premap", remote.pid, `${callWhat(c)} landed at 0x${hex(results[i]!)}`, { address: BigInt(c.args[0]!) });
    });
  } finally {
    if (taken.length) remote.loop(taken.map((fd) => ({ what: `close(${fd})`, nr: NR.close, args: [fd] })));
    remote.closePidfd();
  }
  const segsOf = (list: readonly CowVma[]): PageSeg[] =>
    list.flatMap((c) => {
      const delta = slotAt(base, c) - c.vma.vma.start;
      return c.write.map((s) => ({ ...s, vaddr: s.vaddr + delta }));
    });
  // The slots of its own are fresh memory, filled as the VMAs of the pages step are (a
  // userfaultfd where the kernel gives one); in an inherited slot a page may be the parent's
  // still: process_vm_writev copies it for this process alone.
  const slotVma = (c: CowVma): VmaPlan => ({ ...c.vma, vma: { ...c.vma.vma, start: slotAt(base, c), end: slotAt(base, c) + len(c) } });
  const fresh: MemoryPlan = { ...memory, vmas: own.map(slotVma), segs: segsOf(own), lazy: false, lazyPages: 0, cow: [] };
  return fillMemory(remote, fresh, threads, log) + writeSegments(remote.pid, segsOf(cow.filter((c) => c.inherited)), threads);
}

/** With the stub's mappings gone: every slot moved onto its VMA, with the VMA's protection and advice. */
export function moveSlots(remote: Remote, memory: MemoryPlan, base: bigint): void {
  const calls: Call[] = [];
  for (const c of memory.cow) {
    const v = c.vma.vma;
    calls.push(
      { what: `mremap of the slot 0x${hex(slotAt(base, c))} onto ${hex(v.start)}-${hex(v.end)}`, nr: NR.mremap, args: [slotAt(base, c), len(c), len(c), MREMAP_MAYMOVE | MREMAP_FIXED, v.start] },
      { what: `mprotect(${hex(v.start)}-${hex(v.end)}, ${v.prot})`, nr: NR.mprotect, args: [v.start, len(c), v.prot] },
      ...madviseCalls(v),
    );
  }
  const results = remote.loop(calls);
  calls.forEach((c, i) => {
    if (c.nr === NR.mremap && results[i] !== BigInt(c.args[4]!)) throw new RestoreError("vmas", remote.pid, `${callWhat(c)} landed at 0x${hex(results[i]!)}`, { address: BigInt(c.args[4]!) });
  });
}
