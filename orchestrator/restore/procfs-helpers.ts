// Helpers for the files of gone processes' /proc directories (remap-fpath.img's PROCFS
// entries: a cwd in /proc/PID of a child that died, an fd of /proc/PID/status). As criu
// (files-reg.c, collect_remap_dead_process): a helper process takes the dead PID, a child
// of the root in the root's session and group, so that /proc/PID is there while the tasks'
// files are opened; once every task has its files the helper exits and the root reaps it,
// and the kernel unhashes /proc/PID again under the files that hold it.

import type { DeadProcFile } from "./fileset.js";
import type { RestoreError } from "./errors.js";
import type { BuildStep } from "./pstree-plan.js";

/**
 * The files the helpers are for, one helper per dead PID. A dead PID that the tree uses (a
 * task, a thread, a helper of a gone session or group leader) is refused naming
 * remap-fpath.img: the images cannot have both.
 */
export function procfsHelpers(dead: readonly DeadProcFile[], treeIds: ReadonlySet<number>, build: readonly BuildStep[], fail: (msg: string, file?: string, pid?: number) => RestoreError): DeadProcFile[] {
  return dead.map((file) => {
    const { pid } = file;
    if (treeIds.has(pid)) throw fail(`${file.name} is of a process that was gone at dump time, but PID ${pid} is a task of the images`, "remap-fpath.img", pid);
    const other = build.find((s) => s.op === "fork" && s.pid === pid);
    if (other?.op === "fork") throw fail(`${file.name} is of a process that was gone at dump time, but PID ${pid} leads a ${other.kind} of the images as well`, "remap-fpath.img", pid);
    return file;
  });
}
