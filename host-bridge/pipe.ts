// Reading what sits in a pipe without taking it out: tee() the pipe into a fresh pipe and
// read that. The target's own later read still gets every byte.
import { readSync } from "node:fs";
import { F, O, SPLICE_F } from "./constants.js";
import { bridge } from "./load.js";

/**
 * The bytes queued in the pipe `fd`, left in place. `fd` must be open for reading (tee needs
 * that): a pidfdGetfd copy of the target's read end, or for a task holding only the write
 * end, /proc/PID/fd/N opened O_RDONLY|O_NONBLOCK (a new reader of the same pipe). The fresh
 * pipe is sized like the source; that fails (EPERM) only for a source grown past
 * fs.pipe-max-size by a task with CAP_SYS_RESOURCE, which we lack.
 */
export function peekPipe(fd: number): Buffer {
  const b = bridge();
  const queued = b.fionread(fd);
  if (queued === 0) return Buffer.alloc(0);
  const [r, w] = b.pipe2(O.CLOEXEC);
  try {
    const size = b.fcntl(fd, F.GETPIPE_SZ);
    if (b.fcntl(w, F.GETPIPE_SZ) < size) b.fcntl(w, F.SETPIPE_SZ, size);
    // One tee copies all of it: the destination is empty and as large as the source.
    const n = b.tee(fd, w, queued, SPLICE_F.NONBLOCK);
    const out = Buffer.alloc(n);
    for (let got = 0; got < n; ) {
      got += readSync(r, out, got, n - got, null);
    }
    return out;
  } finally {
    b.close(r);
    b.close(w);
  }
}
