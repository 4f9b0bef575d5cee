// criu's --file-validation: how a regular file found at restore is judged to be the one
// dumped. Its size is always compared (criu skips it for append-only logs, which grow);
// with buildid, criu's default, the dump also records an ELF file's GNU build-id and the
// restore compares it (dump/filetable.ts, restore/fileset.ts).

/**
 * How a regular file is found to be the one dumped (criu's --file-validation): by its size
 * alone, or also by the ELF build-id recorded at dump (criu's default).
 */
export type FileValidation = "filesize" | "buildid";

/** --file-validation's value, checked as criu does. */
export function parseFileValidation(v: string | undefined): FileValidation {
  if (v === undefined || v === "buildid") return "buildid";
  if (v === "filesize") return "filesize";
  throw new Error(`unknown file validation method ${JSON.stringify(v)} (--file-validation takes filesize or buildid)`);
}

