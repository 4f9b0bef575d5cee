// Files in the /proc directory of a process that is gone (zdtm's unhashed_proc: a cwd in
// /proc/PID of a child that then died; remap_dead_pid: an fd of /proc/PID/mountinfo). The
// kernel unhashes a dead process's /proc/PID, so the directory itself reads
// "/proc/PID (deleted)", and a file in it keeps its name while /proc/PID is no longer
// there. Neither can be copied as a ghost or linked again: as criu (files-reg.c), the
// file keeps its name and remap-fpath.img gets a PROCFS entry whose remap_id is the dead
// PID. A restore makes a helper process with that PID, opens the file while the helper
// lives and ends it afterwards, which unhashes the directory again. criu writes one entry
// per dead PID (the first file of it the dump meets); the others need no entry, the
// helper is there for them too.

import { existsSync, statSync, type BigIntStats } from "node:fs";

const DELETED = " (deleted)";
/** /proc/PID and everything under it */
const PID_DIR = /^\/proc\/(\d+)(?:\/|$)/;

/** A file of procfs: its name as the images keep it, and the dead process it belongs to. */
export interface ProcfsFile {
  name: string;
  /** the PID of the gone process whose /proc directory holds the file */
  deadPid: number | undefined;
}

export class ProcfsRemaps {
  private procDev: bigint | undefined;
  private readonly seen = new Set<number>();

  /** `treeIds`: the PIDs and TIDs of the dumped tree */
  constructor(private readonly treeIds: ReadonlySet<number>) {}

  /**
   * What a file on tscriu's procfs (that of its PID namespace, the only one tscriu dumps
   * in: a PID in a name is one tscriu sees) is; undefined for a file elsewhere.
   */
  classify(st: BigIntStats, linkName: string): ProcfsFile | undefined {
    this.procDev ??= statSync("/proc", { bigint: true }).dev;
    if (st.dev !== this.procDev) return undefined;
    // procfs has no file named "x (deleted)": the suffix is always the kernel's.
    const unhashed = linkName.endsWith(DELETED);
    const name = unhashed ? linkName.slice(0, -DELETED.length) : linkName;
    const m = PID_DIR.exec(name);
    if (!m) return { name, deadPid: undefined };
    const pid = Number(m[1]);
    // A file under a dead process's directory keeps its name: /proc/PID itself is gone.
    const dead = unhashed || !existsSync(`/proc/${pid}`);
    if (!dead) return { name, deadPid: undefined };
    if (this.treeIds.has(pid)) {
      throw new Error(`${name} belongs to a process that is gone, whose PID ${pid} a task of the dumped tree has now: a restore cannot make both`);
    }
    return { name, deadPid: pid };
  }

  /** The remap-fpath.img entry for file `id` of dead process `pid`: one per PID, as criu writes. */
  remapOf(id: number, pid: number): Record<string, unknown> | undefined {
    if (this.seen.has(pid)) return undefined;
    this.seen.add(pid);
    return { orig_id: id, remap_id: pid, remap_type: "PROCFS" };
  }
}
