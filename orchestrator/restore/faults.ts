// Fault injection by environment variable, like criu's CRIU_FAULT: TSCRIU_FAULT is a
// comma-separated list; the entries "restore:STEP" make that step of a restore fail as
// it starts (the dump reads the other entries). Tests use it to check that a failure at
// any step leaves nothing running, frees the PID and leaves the images as they were.
//
//   restore:cgroups     the cgroups of cgroup.img made (cgroups.ts), before the plan opens
//                       the tasks' files (one may be in a cgroup)
//   restore:plan        reading and checking the images, before any task is created
//   restore:pre-restore the pre-restore action scripts
//   restore:spawn       starting the stub with the dumped PID
//   restore:seize       seizing the stub
//   restore:trampoline  mapping the trampoline page
//   restore:cgroup-move each process moved into its cgroups as soon as it is made
//   restore:premap      each process's memory that its children share (cow.ts, premap.ts),
//                       made before it forks them
//   restore:ttys        pty pairs made again, controlling terminals, /dev/tty (once)
//   restore:vdso        moving [vvar]/[vdso] onto the dumped addresses
//   restore:vmas        mapping every VMA
//   restore:pages       filling memory from the pages images
//   restore:files       file descriptors, cwd and root
//   restore:mm          PR_SET_MM_MAP (exe, brk, arguments, auxv), name, madvise
//   restore:locks       file locks (--file-locks), taken by the process that held them
//   restore:signals     sigactions, sigaltstack, pending signals
//   restore:threads     the audit login uid and rlimits, then the other threads made
//   restore:thread-files once every thread of the tree exists: the files that wait for a
//                       thread (a thread pidfd) put in place of their stand-ins (once)
//   restore:timers      itimers and POSIX timers (a timer may signal one of the threads)
//   restore:creds       per thread: altstack, seccomp, scheduling, credentials, task
//                       flags, pending signals
//   restore:cgroup-props threads with cgroups of their own moved, the cgroups' properties set
//   restore:post-restore the post-restore action scripts
//   restore:registers   rseq, robust list, TLS, registers, FPU state, signal mask
//   restore:pre-resume  the pre-resume action scripts (criu: must not fail; a fault here
//                       still aborts the restore, which is what the test wants to see)
//   restore:resume      detaching from the restored task
//
// A "restore:pages-write" fault makes the page copy itself fail part-way (EIO).
// "restore:STEP#N" fails the N-th time STEP starts: cgroup-move and premap, the steps from
// vdso to locks and from signals to creds run once per process of a tree, so #5 is the
// fifth process.

export const RESTORE_STEPS = [
  "cgroups",
  "plan",
  "pre-restore",
  "spawn",
  "seize",
  "trampoline",
  "cgroup-move",
  "premap",
  "ttys",
  "vdso",
  "vmas",
  "pages",
  "files",
  "mm",
  "locks",
  "signals",
  "threads",
  "thread-files",
  "timers",
  "creds",
  "cgroup-props",
  "post-restore",
  "registers",
  "pre-resume",
  "resume",
] as const;
export type RestoreStep = (typeof RESTORE_STEPS)[number];

const KNOWN = new Set<string>([...RESTORE_STEPS, "pages-write"]);

export class InjectedFault extends Error {
  override readonly name = "InjectedFault";
  readonly code = "EIO";
  readonly errno = 5;
  constructor(what: string) {
    super(`EIO (fault injected by TSCRIU_FAULT=restore:${what})`);
  }
}

export class RestoreFaults {
  /** step → on which entry it fails (1: the first; a step entered once per process counts processes) */
  private readonly set = new Map<string, number>();
  private readonly entered = new Map<string, number>();

  /**
   * Reads the "restore:" entries of a TSCRIU_FAULT value ("restore:STEP", or
   * "restore:STEP#N" for the N-th time the step starts: in a tree, the N-th process);
   * other entries belong to the dump.
   */
  constructor(spec: string | undefined) {
    for (const raw of (spec ?? "").split(",")) {
      const item = raw.trim();
      if (!item.startsWith("restore:")) continue;
      const m = /^([a-z-]+)(?:#(\d+))?$/.exec(item.slice("restore:".length));
      const name = m?.[1] ?? item;
      if (!m || !KNOWN.has(name) || (m[2] !== undefined && Number(m[2]) < 1)) {
        throw new Error(`TSCRIU_FAULT: unknown restore fault "${item.slice("restore:".length)}" (known: ${[...KNOWN].join(", ")}, each optionally #N)`);
      }
      this.set.set(name, Number(m[2] ?? 1));
    }
  }

  has(name: string): boolean {
    return this.set.has(name);
  }

  /** Throws when `step` is to fail this time. */
  step(step: RestoreStep): void {
    const at = this.set.get(step);
    if (at === undefined) return;
    const n = (this.entered.get(step) ?? 0) + 1;
    this.entered.set(step, n);
    if (n === at) throw new InjectedFault(at > 1 ? `${step}#${at}` : step);
  }
}
