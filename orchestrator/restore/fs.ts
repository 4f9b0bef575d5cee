// The task's root, cwd and umask (fs-PID.img): chroot into the dumped root when it is
// not ours, chdir to the dumped cwd (a removed one comes back as a ghost directory that
// is removed again), umask.

import { constants as fsc } from "node:fs";
import type { FsEntry } from "../../images/dir.js";
import type { FileSet, RegFile } from "./fileset.js";
import { NR, type Call, type Remote } from "./remote.js";

export interface FsPlan {
  cwd: RegFile;
  root: RegFile;
  umask: number | undefined;
}

/** Reads and checks cwd and root. No side effects. */
export async function planFs(fs: FsEntry, files: FileSet): Promise<FsPlan> {
  return { cwd: await files.reg(fs.cwd_id, "cwd"), root: await files.reg(fs.root_id, "root"), umask: fs.umask };
}

export function restoreFs(remote: Remote, plan: FsPlan, files: FileSet): void {
  const dirFd = (f: RegFile, what: string): number => remote.takeFd(files.open(f, fsc.O_RDONLY | fsc.O_DIRECTORY), what);
  if (plan.root.path !== "/") {
    const r = dirFd(plan.root, `root ${plan.root.path}`);
    remote.batch([
      { what: `fchdir to the root ${plan.root.path}`, nr: NR.fchdir, args: [r] },
      { what: `chroot(".") into ${plan.root.path}`, nr: NR.chroot, args: [remote.write(0, Buffer.from(".\0"))] },
      { what: "close", nr: NR.close, args: [r] },
    ]);
  }
  const c = dirFd(plan.cwd, `cwd ${plan.cwd.path}`);
  const calls: Call[] = [
    { what: `fchdir to ${plan.cwd.path}`, nr: NR.fchdir, args: [c] },
    { what: "close", nr: NR.close, args: [c] },
  ];
  if (plan.umask !== undefined) calls.push({ what: `umask(0${plan.umask.toString(8)})`, nr: NR.umask, args: [plan.umask] });
  remote.loop(calls);
}
