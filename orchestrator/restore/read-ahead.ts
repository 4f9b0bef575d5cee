// Small images of a restore read ahead on the thread pool (the bridge's readFilesAsync)
// while the main thread plans the rest: a server's connections each have a tcp-stream
// image, and a thousand opens, reads and closes on the main thread took ~35 ms here. A
// file read ahead is taken once by name; one that could not be (missing, too big, an
// error) is read as usual by whoever wants it, which gives its errors their usual words.

import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";

/** A file past this is left to be read as usual (a connection's queues are rarely more). */
const EACH = 1 << 20;
/** Most bytes held read ahead for all of them. */
const TOTAL = 64 << 20;

export class ReadAhead {
  private readonly files: Promise<Map<string, Buffer>>;

  private constructor(dir: string, names: readonly string[]) {
    const paths = Buffer.from(names.map((n) => `${join(dir, n)}\0`).join(""));
    this.files = bridge()
      .readFilesAsync(paths, EACH, TOTAL)
      .then(
        ({ data, lens }) => {
          const got = new Map<string, Buffer>();
          let off = 0;
          names.forEach((n, i) => {
            const len = Number(lens[i]);
            if (len < 0) return;
            got.set(n, data.subarray(off, off + len));
            off += len;
          });
          return got;
        },
        // out of memory on the way: every file is read as usual
        () => new Map<string, Buffer>(),
      );
  }

  /** The files of `dir` that `wanted` picks, read ahead; undefined when there is none. */
  static start(dir: string, names: readonly string[], wanted: (name: string) => boolean): ReadAhead | undefined {
    const picked = names.filter(wanted);
    return picked.length ? new ReadAhead(dir, picked) : undefined;
  }

  /** The bytes of `name` if they were read ahead (given once), else undefined. */
  async take(name: string): Promise<Buffer | undefined> {
    const got = await this.files;
    const b = got.get(name);
    got.delete(name);
    return b;
  }
}
