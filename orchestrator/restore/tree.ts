// The processes of the tree: the root is the stub tscriu spawns; every other process is
// forked by its parent (clone3 with set_tid = its PID and SIGCHLD as its exit signal,
// from the clone snippet of threads.ts) while all of them are still stubs, so that each
// starts with the stub's mappings and the trampoline at the same address. A forked child
// parks in pause() until tscriu seizes it, then makes or joins its session and process
// group (plan.ts decided how).

import { NR, Remote } from "./remote.js";
import type { ProcPlan } from "./plan.js";
import { cloneFrom, seizeMade, type MadeThread } from "./threads.js";
import type { ParkedVdso } from "./vdso.js";

const SIGCHLD = 17;
const NR_SETSID = 112;
const NR_SETPGID = 109;

/** A process of the restore as it is being made. */
export interface Task {
  plan: ProcPlan;
  remote: Remote;
  /** its other threads, each as soon as it exists */
  threads: MadeThread[];
  /** where the kernel's vDSO was parked (a vDSO proxy) */
  parked?: ParkedVdso | undefined;
}

/**
 * Forks process `pid` from its parent's stub, seizes it and puts it into its session and
 * group. `made` hears of the child as soon as it exists, so that a failure after the fork
 * still kills it.
 */
export function forkChild(parent: Remote, pid: number, session: ProcPlan["session"], made: (r: Remote) => void): Remote {
  cloneFrom(parent, 0, SIGCHLD, pid, "process");
  const r = new Remote(pid, parent.tramp);
  made(r);
  seizeMade(pid, pid, "spawn", "process");
  r.enter("spawn");
  if (session === "setsid") r.call("setsid", NR_SETSID, []);
  else if (session === "setpgid") r.call("setpgid(0, 0)", NR_SETPGID, [0, 0]);
  else if (typeof session === "object") r.call(`setpgid(0, ${session.join})`, NR_SETPGID, [0, session.join]);
  return r;
}

export { NR };
