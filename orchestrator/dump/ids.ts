// The ids of the kernel objects processes may share (criu's ids-PID.img): the address
// space, the fd table, the fs struct (cwd, root, umask) and the signal handlers. Two
// processes that share one (CLONE_VM, CLONE_FILES, CLONE_FS, CLONE_SIGHAND) get the same
// id, found with kcmp against every process seen before; a new object gets the next
// number of its kind. As criu: the dumper itself holds 1 of each (the inventory's
// root_ids), the dumped processes start at 2.

import { KCMP } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";

export interface TaskIds {
  vm_id: number;
  files_id: number;
  fs_id: number;
  sighand_id: number;
}

const KINDS = [
  ["vm_id", KCMP.VM],
  ["files_id", KCMP.FILES],
  ["fs_id", KCMP.FS],
  ["sighand_id", KCMP.SIGHAND],
] as const;

export class SharedIds {
  private readonly byPid = new Map<number, TaskIds>();
  private readonly next = { vm_id: 2, files_id: 2, fs_id: 2, sighand_id: 2 };

  /** The ids of `pid`, compared with the processes in `earlier` (already given theirs). */
  of(pid: number, earlier: readonly number[]): TaskIds {
    const ids = { vm_id: 0, files_id: 0, fs_id: 0, sighand_id: 0 };
    for (const [key, type] of KINDS) {
      const same = earlier.find((q) => bridge().kcmp(q, pid, type, 0, 0) === 0);
      ids[key] = same !== undefined ? this.byPid.get(same)![key] : this.next[key]++;
    }
    this.byPid.set(pid, ids);
    return ids;
  }
}
