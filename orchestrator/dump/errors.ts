// The one error class of the dump family: every failure names the step that failed
// and the pid it was working on, and keeps the underlying error as `cause`.

export class DumpError extends Error {
  override readonly name = "DumpError";
  /** e.g. "freeze", "memory", "files" */
  readonly step: string;
  readonly pid: number;
  /** what went wrong while cleaning up after the failure, e.g. resuming the task */
  readonly notes: string[] = [];

  constructor(step: string, pid: number, message: string, options: { cause?: unknown } = {}) {
    super(`dump: ${step} of pid ${pid} failed: ${message}`, options.cause === undefined ? {} : { cause: options.cause });
    this.step = step;
    this.pid = pid;
  }
}

export function isDumpError(e: unknown): e is DumpError {
  return e instanceof DumpError;
}

/** Wraps anything thrown inside a step into a DumpError naming that step (a DumpError passes through). */
export function asDumpError(step: string, pid: number, e: unknown): DumpError {
  if (e instanceof DumpError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new DumpError(step, pid, msg, { cause: e });
}
