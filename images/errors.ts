// One error class for everything that reads or writes images. It names the file
// and the byte offset where the input went wrong, so a user can look there.

export class ImageError extends Error {
  override readonly name = "ImageError";
  /** the image file (path or name), when known */
  readonly file: string | undefined;
  /** byte offset in the file where the problem is, when known */
  readonly offset: number | undefined;

  constructor(message: string, where: { file?: string | undefined; offset?: number | undefined } = {}) {
    const parts: string[] = [];
    if (where.file !== undefined) parts.push(where.file);
    if (where.offset !== undefined) parts.push(`offset ${where.offset} (0x${where.offset.toString(16)})`);
    super(parts.length ? `${parts.join(": ")}: ${message}` : message);
    this.file = where.file;
    this.offset = where.offset;
  }
}

export function isImageError(e: unknown): e is ImageError {
  return e instanceof ImageError;
}

/** A decoding problem inside one message; the framing layer adds file and offset. */
export class WireError extends Error {
  override readonly name = "WireError";
  /** offset inside the message bytes */
  readonly at: number;
  constructor(message: string, at: number) {
    super(message);
    this.at = at;
  }
}
