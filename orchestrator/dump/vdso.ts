// A task restored through a vDSO proxy (by criu or tscriu) maps two vDSOs: its own at the
// old address, as anonymous memory, and the kernel's [vdso], marked by the restore (see
// vdso/mark.ts). What the task uses is its own, so that pair is dumped as its [vdso] and
// [vvar], and the kernel's pair is left out, as criu does: a restore maps a kernel vDSO of
// its own anyway, and builds a proxy again only if that one differs.

import { bridge } from "../../host-bridge/load.js";
import type { ModuleLog } from "../log.js";
import { decodeMark, NO_ADDR, VDSO_MARK_SIZE } from "../vdso/mark.js";
import { VMA, type Vma } from "./vmas.js";

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/**
 * Finds criu's mark at the start of the task's [vdso] and, when it is there, gives the
 * old vDSO and vvar their status back and drops the kernel's pair from `vmas`.
 */
export function unproxyVdso(pid: number, vmas: Vma[], log: ModuleLog): void {
  const rt = vmas.find((v) => v.status & VMA.VDSO && v.name === "[vdso]");
  if (!rt) return;
  const head = Buffer.alloc(VDSO_MARK_SIZE);
  if (bridge().processVmReadv(pid, rt.start, head.length, head) !== head.length) throw new Error(`short read of the [vdso] at ${hex(rt.start)}`);
  let mark;
  try {
    mark = decodeMark(head);
  } catch (e) {
    throw new Error(`the [vdso] at ${hex(rt.start)} has a damaged vDSO mark: ${(e as Error).message}`);
  }
  if (!mark) return;
  log.info(`[vdso] at ${hex(rt.start)} is a restore's parked vDSO; the task's own is at ${hex(mark.origVdso)}`);
  const drop = new Set<Vma>([rt]);
  for (const v of vmas) {
    if (v.start === mark.origVdso) v.status |= VMA.REGULAR | VMA.VDSO;
    else if (mark.origVvar !== NO_ADDR && v.start === mark.origVvar) v.status |= VMA.REGULAR | VMA.VVAR;
    // The kernel's vvar: at the mark's address, or (older marks) the one named so.
    else if (v.status & VMA.VVAR && v.name === "[vvar]" && (mark.rtVvar === NO_ADDR || v.start === mark.rtVvar)) drop.add(v);
  }
  if (!vmas.some((v) => v.start === mark.origVdso)) log.warn(`the vDSO mark names ${hex(mark.origVdso)}, where the task maps nothing: the images hold no vDSO`);
  for (let i = vmas.length - 1; i >= 0; i--) if (drop.has(vmas[i]!)) vmas.splice(i, 1);
}
