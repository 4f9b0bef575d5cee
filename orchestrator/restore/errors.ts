// The one error class of the restore family: every failure names the step that failed,
// the pid being restored and, when one is involved, the address or the image file.

export interface RestoreErrorDetails {
  /** a virtual address of the restored task (shown in hex) */
  address?: bigint | number | undefined;
  /** an image file or a file the images refer to */
  file?: string | undefined;
  cause?: unknown;
}

export class RestoreError extends Error {
  override readonly name = "RestoreError";
  /** e.g. "plan", "vmas", "files" (faults.ts lists them) */
  readonly step: string;
  readonly pid: number;
  readonly address: bigint | undefined;
  readonly file: string | undefined;

  constructor(step: string, pid: number, message: string, details: RestoreErrorDetails = {}) {
    const where = [
      details.address !== undefined ? `at 0x${BigInt(details.address).toString(16)}` : "",
      details.file !== undefined && !message.includes(details.file) ? `(${details.file})` : "",
    ]
      .filter((s) => s !== "")
      .join(" ");
    super(`restore: ${step}${pid > 0 ? ` of pid ${pid}` : ""} failed: ${message}${where ? ` ${where}` : ""}`, details.cause === undefined ? {} : { cause: details.cause });
    this.step = step;
    this.pid = pid;
    this.address = details.address === undefined ? undefined : BigInt(details.address);
    this.file = details.file;
  }
}

export function isRestoreError(e: unknown): e is RestoreError {
  return e instanceof RestoreError;
}

/** Wraps anything thrown inside a step into a RestoreError naming that step (a RestoreError passes through). */
export function asRestoreError(step: string, pid: number, e: unknown): RestoreError {
  if (e instanceof RestoreError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const file = (e as { file?: unknown }).file;
  return new RestoreError(step, pid, msg, { cause: e, file: typeof file === "string" && !msg.includes(file) ? file : undefined });
}
