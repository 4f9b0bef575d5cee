// The mm fields of mm-PID.img through one prctl(PR_SET_MM, PR_SET_MM_MAP): code, data,
// brk, stack, argument and environment ranges, the saved auxv and the exe link. It works
// without CAP_SYS_RESOURCE, but the kernel refuses a new exe link (EBUSY) while the old
// one -- the stub's binary -- is still mapped, so this runs after the stub is gone.

import { constants as fsc } from "node:fs";
import type { MmEntry } from "../../images/dir.js";
import type { RegFile } from "./fileset.js";
import type { FileSet } from "./fileset.js";
import { NR, type Remote } from "./remote.js";

export const PR_SET_MM = 35;
const PR_SET_MM_MAP = 14;
const PR_SET_NAME = 15;
const PR_SET_THP_DISABLE = 41;
/** sizeof(struct prctl_mm_map) */
export const MM_MAP_SIZE = 104;
/** The kernel keeps AT_VECTOR_SIZE words of auxv (x86_64: 2 * (3 + 22 + 1)). */
const AT_VECTOR_SIZE = 52;

export function mmMapStruct(mm: MmEntry, auxvAt: bigint, auxvBytes: number, exeFd: number): Buffer {
  const b = Buffer.alloc(MM_MAP_SIZE);
  const fields = [
    mm.mm_start_code,
    mm.mm_end_code,
    mm.mm_start_data,
    mm.mm_end_data,
    mm.mm_start_brk,
    mm.mm_brk,
    mm.mm_start_stack,
    mm.mm_arg_start,
    mm.mm_arg_end,
    mm.mm_env_start,
    mm.mm_env_end,
    auxvAt,
  ];
  fields.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, v), i * 8));
  b.writeUInt32LE(auxvBytes, 96);
  b.writeUInt32LE(exeFd >>> 0, 100);
  return b;
}

/** The saved auxv as the kernel wants it: pairs ending in AT_NULL, at most AT_VECTOR_SIZE words. */
export function auxvBytes(words: readonly bigint[]): Buffer {
  const list = words.slice(0, Math.min(words.length & ~1, AT_VECTOR_SIZE - 2));
  list.push(0n, 0n);
  const b = Buffer.alloc(list.length * 8);
  list.forEach((w, i) => b.writeBigUInt64LE(BigInt.asUintN(64, w), i * 8));
  return b;
}

/** PR_SET_MM_MAP with the exe file handed over from tscriu; then the name and THP flag. */
export function restoreMm(remote: Remote, mm: MmEntry, exe: RegFile, files: FileSet, comm: string): void {
  const exeFd = remote.takeFd(files.open(exe, fsc.O_RDONLY), `the exe ${exe.name}`);
  const auxv = auxvBytes(mm.mm_saved_auxv ?? []);
  const auxvAt = remote.write(MM_MAP_SIZE, auxv);
  const mapAt = remote.write(0, mmMapStruct(mm, auxvAt, auxv.length, exeFd));
  const nameAt = remote.write(MM_MAP_SIZE + auxv.length, Buffer.from(`${comm.slice(0, 15)}\0`));
  const calls = [
    { what: "prctl(PR_SET_MM, PR_SET_MM_MAP)", nr: NR.prctl, args: [PR_SET_MM, PR_SET_MM_MAP, mapAt, MM_MAP_SIZE, 0] },
    { what: "close (exe fd)", nr: NR.close, args: [exeFd] },
    { what: `prctl(PR_SET_NAME, "${comm}")`, nr: NR.prctl, args: [PR_SET_NAME, nameAt, 0, 0, 0] },
  ];
  if (mm.thp_disabled) calls.push({ what: "prctl(PR_SET_THP_DISABLE)", nr: NR.prctl, args: [PR_SET_THP_DISABLE, 1, 0, 0, 0] });
  remote.loop(calls);
}

const NR_MEMBARRIER = 324;

/**
 * The membarrier registrations of the mm (criu's tc.membarrier_registration_mask: the
 * MEMBARRIER_CMD_REGISTER_* commands, one bit each), made again from inside the task.
 * Without them the task's next expedited barrier fails with EPERM.
 */
export function restoreMembarrier(remote: Remote, mask: number | undefined): void {
  if (!mask) return;
  const calls = [];
  for (let bit = 0; bit < 32; bit++) {
    const cmd = (1 << bit) >>> 0;
    if (mask & cmd) calls.push({ what: `membarrier(0x${cmd.toString(16)}) (registration of the dumped mm)`, nr: NR_MEMBARRIER, args: [cmd, 0, 0] });
  }
  remote.loop(calls);
}
