// Small files read ahead on the thread pool (the bridge's readFilesAsync) while the main
// thread does something else: a restore's tcp-stream images (one per connection) while it
// plans the rest, a dump's /proc/PID/fdinfo files while it reads the process's other state.
// A thousand opens, reads and closes on the main thread took ~30-35 ms here. A file read
// ahead is taken once by name; one that could not be (missing, too big, an error) is read
// as usual by whoever wants it, which gives its errors their usual words.

import { join } from "node:path";
import { bridge } from "../host-bridge/load.js";

/** A file past this is left to be read as usual (a connection's queues, an epoll's targets are rarely more). */
const EACH = 1 << 20;
/** Most bytes held read ahead for all of them. */
const TOTAL = 64 << 20;

export class ReadAhead {
  private readonly files: Promise<Map<string, Buffer>>;

  /** Starts reading the files `names` of `dir`. */
  constructor(dir: string, names: readonly string[]) {
    if (names.length === 0) {
      this.files = Promise.resolve(new Map<string, Buffer>());
      return;
    }
    // (the directory's path joined once: a thousand path.joins were ~7 ms of a restore)
    const prefix = join(dir, "/");
    const paths = Buffer.from(names.map((n) => `${prefix}${n}\0`).join(""));
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

  /** The bytes of `name` if they were read ahead (given once), else undefined. */
  async take(name: string): Promise<Buffer | undefined> {
    const got = await this.files;
    const b = got.get(name);
    got.delete(name);
    return b;
  }

  /** Every file read ahead, by name (waits for the read). */
  all(): Promise<ReadonlyMap<string, Buffer>> {
    return this.files;
  }
}
