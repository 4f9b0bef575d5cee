// Fault injection by environment variable, like criu's CRIU_FAULT: TSCRIU_FAULT is a
// comma-separated list; the entries "restore:STEP" make that step of a restore fail as
// it starts (the dump reads the other entries). Tests use it to check that a failure at
// any step leaves nothing running, frees the PID and leaves the images as they were.
//
//   restore:plan        reading and checking the images, before anything is created
//   restore:pre-restore the pre-restore action scripts
//   restore:spawn       starting the stub with the dumped PID
//   restore:seize       seizing the stub
//   restore:trampoline  mapping the trampoline page
//   restore:vdso        moving [vvar]/[vdso] onto the dumped addresses
//   restore:vmas        mapping every VMA
//   restore:pages       filling memory from the pages images
//   restore:files       file descriptors, cwd and root
//   restore:mm          PR_SET_MM_MAP (exe, brk, arguments, auxv), name, madvise
//   restore:signals     sigactions, sigaltstack, pending signals
//   restore:timers      itimers and POSIX timers
//   restore:threads     the audit login uid and rlimits, then the other threads made
//   restore:creds       per thread: altstack, seccomp, scheduling, credentials, task
//                       flags, pending signals
//   restore:post-restore the post-restore action scripts
//   restore:registers   rseq, robust list, TLS, registers, FPU state, signal mask
//   restore:pre-resume  the pre-resume action scripts (criu: must not fail; a fault here
//                       still aborts the restore, which is what the test wants to see)
//   restore:resume      detaching from the restored task
//
// A "restore:pages-write" fault makes the page copy itself fail part-way (EIO).

export const RESTORE_STEPS = [
  "plan",
  "pre-restore",
  "spawn",
  "seize",
  "trampoline",
  "vdso",
  "vmas",
  "pages",
  "files",
  "mm",
  "signals",
  "timers",
  "threads",
  "creds",
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
  private readonly set = new Set<string>();

  /** Reads the "restore:" entries of a TSCRIU_FAULT value; other entries belong to the dump. */
  constructor(spec: string | undefined) {
    for (const raw of (spec ?? "").split(",")) {
      const item = raw.trim();
      if (!item.startsWith("restore:")) continue;
      const name = item.slice("restore:".length);
      if (!KNOWN.has(name)) throw new Error(`TSCRIU_FAULT: unknown restore fault "${name}" (known: ${[...KNOWN].join(", ")})`);
      this.set.add(name);
    }
  }

  has(name: string): boolean {
    return this.set.has(name);
  }

  /** Throws when `step` is to fail. */
  step(step: RestoreStep): void {
    if (this.set.has(step)) throw new InjectedFault(step);
  }
}
