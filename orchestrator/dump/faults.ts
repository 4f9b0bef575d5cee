// Fault injection by environment variable, like criu's CRIU_FAULT: TSCRIU_FAULT is a
// comma-separated list of faults to force during a dump, so tests can check that a
// failure at any point leaves the task as it was.
//
//   vm-read     process_vm_readv of task memory fails (EFAULT) while pages are read
//   write       writing an image file fails (EIO)
//   enospc      writing page data fails with ENOSPC (disk full)
//   enospc-late the same from the second write of page data on (the disk fills during
//               the dump: a write fails while the one before it is still under way)
//   writeback   the writeback started while page data is still written (a default-mode
//               dump's fdatasync every 64 MiB), or the images' started once the fds are
//               done (a syncfs, where they are many), fails with EIO
//   task-exit   the task seems to exit in the middle of the memory dump (ESRCH)
//   seccomp-suspend  the kernel refuses PTRACE_O_SUSPEND_SECCOMP (EPERM, as without
//               CAP_SYS_ADMIN): the task's seccomp filters judge the calls run inside it
//   thread-missed  the reads of a task's thread list leave out its highest new thread
//               until one finds no other, as the kernel's read of /proc/PID/task may
//               when threads end meanwhile: the last read seems to find nothing new
//   STEP or N   the dump step of that name or number fails when it starts:
//                 1 seize, 2 proc, 3 inside, 4 registers, 5 vmas, 6 files,
//                 7 memory, 8 images, 9 sync, 10 post-dump, 11 page-server
//                 (the close of a --page-server session, after every page is sent)
//
// Faults are injected errors, never real damage: "task-exit" does not kill the task.

export const DUMP_STEPS = ["seize", "proc", "inside", "registers", "vmas", "files", "memory", "images", "sync", "post-dump", "page-server"] as const;
export type DumpStep = (typeof DUMP_STEPS)[number];

const KNOWN = new Set<string>(["vm-read", "pre-copy", "write", "enospc", "enospc-late", "writeback", "task-exit", "seccomp-suspend", "thread-missed", ...DUMP_STEPS]);

export class InjectedFault extends Error {
  override readonly name = "InjectedFault";
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  constructor(what: string, code: string, errno: number, syscall: string) {
    super(`${syscall}: ${code} (fault injected by TSCRIU_FAULT=${what})`);
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
  }
}

export class Faults {
  private readonly set: Set<string>;
  /** writes of page data so far */
  private pageWrites = 0;

  constructor(spec: string | undefined) {
    this.set = new Set();
    for (const raw of (spec ?? "").split(",")) {
      const name = raw.trim();
      // "restore:STEP" entries belong to the restore (orchestrator/restore/faults.ts).
      if (name === "" || name.startsWith("restore:")) continue;
      const n = Number(name);
      const step = Number.isInteger(n) && n >= 1 && n <= DUMP_STEPS.length ? DUMP_STEPS[n - 1]! : name;
      if (!KNOWN.has(step)) throw new Error(`TSCRIU_FAULT: unknown fault "${name}" (known: ${[...KNOWN].join(", ")} or 1..${DUMP_STEPS.length})`);
      this.set.add(step);
    }
  }

  has(name: string): boolean {
    return this.set.has(name);
  }

  /** Throws when step `name` is to fail. */
  step(name: DumpStep): void {
    if (this.set.has(name)) throw new InjectedFault(name, "EIO", 5, `step ${DUMP_STEPS.indexOf(name) + 1} (${name})`);
  }

  vmRead(): void {
    if (this.set.has("vm-read")) throw new InjectedFault("vm-read", "EFAULT", 14, "process_vm_readv");
  }

  /** After an incremental pass's pre-copy protected pages again, before they are read (precopy.ts). */
  preCopy(): void {
    if (this.set.has("pre-copy")) throw new InjectedFault("pre-copy", "EFAULT", 14, "pre-copy");
  }

  /** An early writeback (of page data, of the images written so far): an injected failure, or the real call's. */
  writeback(sync: () => Promise<void>, syscall = "fdatasync"): Promise<void> {
    return this.set.has("writeback") ? Promise.reject(new InjectedFault("writeback", "EIO", 5, syscall)) : sync();
  }

  taskExit(): void {
    if (this.set.has("task-exit")) throw new InjectedFault("task-exit", "ESRCH", 3, "process_vm_readv (task exited)");
  }

  write(pagesWrite: boolean): void {
    if (this.set.has("write")) throw new InjectedFault("write", "EIO", 5, "write");
    if (!pagesWrite) return;
    this.pageWrites++;
    if (this.set.has("enospc")) throw new InjectedFault("enospc", "ENOSPC", 28, "write");
    if (this.pageWrites > 1 && this.set.has("enospc-late")) throw new InjectedFault("enospc-late", "ENOSPC", 28, "write");
  }
}
