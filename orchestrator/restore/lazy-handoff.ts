// The restore's side of criu's lazy-pages socket: `restore --lazy-pages` connects to the
// lazy-pages daemon listening on lazy-pages.socket in the work directory, and for every
// task of the tree, in the order it restores them, sends its pid (an int) and then its
// userfaultfd (one byte carrying SCM_RIGHTS); a zombie sends its pid negated and no fd.
// Once every task is ready, before they run, a u32 "restore finished" ends the handshake.
// The same bytes as criu's, so either tool's restore works with either tool's daemon.

import { bridge } from "../../host-bridge/load.js";
import { RestoreError } from "./errors.js";
import type { LazyTaker } from "./memory.js";

export const LAZY_SOCKET = "lazy-pages.socket";
/** "ReSTore Finished", criu's LAZY_PAGES_RESTORE_FINISHED */
export const RESTORE_FINISHED = 0x52535446;

const AF_UNIX = 1;
const SOCK_STREAM = 1;

export class LazyHandoff implements LazyTaker {
  private constructor(private fd: number) {}

  /** Connects to the daemon of `workDir`; a restore (of root `pid`) without one is refused before it starts. */
  static connect(workDir: string, pid: number): LazyHandoff {
    const b = bridge();
    const fd = b.socket(AF_UNIX, SOCK_STREAM);
    try {
      b.unixConnect(fd, Buffer.from(`${LAZY_SOCKET}\0`), workDir);
    } catch (e) {
      b.close(fd);
      throw new RestoreError("plan", pid, `no lazy-pages daemon listens on ${workDir}/${LAZY_SOCKET} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): start \`tscriu lazy-pages\` (or criu's) with the same images and work directory first`, { cause: e });
    }
    return new LazyHandoff(fd);
  }

  private int(v: number): Buffer {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return b;
  }

  /** Sends task `pid`'s userfaultfd and closes tscriu's copy of it. */
  give(pid: number, uffd: number): void {
    const b = bridge();
    try {
      b.sendFull(this.fd, this.int(pid));
      b.seqpacketSend(this.fd, Buffer.from([0]), uffd);
    } catch (e) {
      throw new RestoreError("pages", pid, `handing the userfaultfd to the lazy-pages daemon: ${(e as Error).message}`, { cause: e });
    } finally {
      b.close(uffd);
    }
  }

  /** A zombie of the tree: the daemon counts it and expects no fd. */
  zombie(pid: number): void {
    bridge().sendFull(this.fd, this.int(-pid));
  }

  /** Every task is ready: the daemon may finish once its pages are in. */
  finish(): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(RESTORE_FINISHED);
    bridge().sendFull(this.fd, b);
    this.close();
  }

  close(): void {
    if (this.fd < 0) return;
    bridge().close(this.fd);
    this.fd = -1;
  }
}
