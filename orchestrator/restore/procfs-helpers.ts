// Helpers for the files of gone processes' /proc directories (remap-fpath.img's PROCFS
// entries: a cwd in /proc/PID of a child that died, an fd of /proc/PID/status). As criu
// (files-reg.c, collect_remap_dead_process): a helper process takes the dead PID, a child
// of the root in the root's session and group, so that /proc/PID is there while the tasks'
// files are opened; once every task has its files the helper exits and the root reaps it,
// and the kernel unhashes /proc/PID again under the files that hold it.

import { taskId } from "../../images/dir.js";
import type { DeadProcFile, FileSet } from "./fileset.js";
import type { HelperPlan, ProcPlan } from "./plan.js";
import type { RestoreError } from "./errors.js";

/**
 * The helpers the PROCFS remaps need, one per dead PID. A dead PID that the tree uses (a
 * task, a thread, a helper of a gone session or group leader) is refused naming
 * remap-fpath.img: the images cannot have both.
 */
export function procfsHelpers(files: FileSet, root: ProcPlan, treeIds: ReadonlySet<number>, sessionHelpers: readonly HelperPlan[], fail: (msg: string, file?: string, pid?: number) => RestoreError): { helper: HelperPlan; file: DeadProcFile }[] {
  const sid = taskId(root.pstree, "sid");
  const pgid = taskId(root.pstree, "pgid");
  return files.deadProcFiles().map((file) => {
    const { pid } = file;
    if (treeIds.has(pid)) throw fail(`${file.name} is of a process that was gone at dump time, but PID ${pid} is a task of the images`, "remap-fpath.img", pid);
    const other = sessionHelpers.find((h) => h.pid === pid);
    if (other) throw fail(`${file.name} is of a process that was gone at dump time, but PID ${pid} leads a ${other.helper} of the images as well`, "remap-fpath.img", pid);
    const helper: HelperPlan = { pid, ppid: root.pid, pstree: { pid, ppid: root.pid, pgid, sid, threads: [pid] }, session: "inherit", children: [], forker: root.pid, helper: "procfs", adopt: false };
    return { helper, file };
  });
}
