// criu's pidfd store (criu_opts.pidfd_store_sk): an RPC client doing pre-dump after
// pre-dump keeps a unix datagram socket of its own between the requests, and each pass
// leaves in it, as messages to itself, a pidfd of every process of the tree (SCM_RIGHTS,
// the pid as the payload). The next pass takes them all out again: a pid whose pidfd is
// missing or has exited (the pidfd reads ready) is a pid reused since the last pass.
// criu then dumps that process's memory whole. tscriu's own passes do not depend on it
// (pages are compared with the parent's, write tracking checks start times), so here the
// verdict is logged as criu's; the store is kept so that criu's clients work unchanged,
// with criu's refusals: a socket that is not a unix datagram one, and a pass with a parent
// that finds the store empty (another socket than the last pass's).

import { closeSync } from "node:fs";
import { AF_UNIX, SO, SOCK } from "../../host-bridge/constants.js";
import { bridge, isNativeError } from "../../host-bridge/load.js";
import type { ModuleLog } from "../log.js";

const SOL_SOCKET = 1;
const POLLIN = 1;
/** As criu: the store's buffers as large as the kernel allows (it doubles the value). */
const BUF = 0x3fff_ffff;

export class PidfdStore {
  /** the pidfds of the last pass, by pid */
  private readonly kept = new Map<number, number>();

  private constructor(
    private readonly sk: number,
    private readonly log: ModuleLog,
  ) {}

  /**
   * Takes fd `fd` of the client `client` (pidfd_getfd), checks it is a unix datagram
   * socket, and on its first use binds it to an abstract name and connects it to itself
   * (criu's name); then takes out what the last pass left. `parent`: this pass has one.
   */
  static open(client: number, fd: number, runId: string, parent: boolean, log: ModuleLog): PidfdStore {
    const b = bridge();
    const pidfd = b.pidfdOpen(client, 0);
    let sk: number;
    try {
      sk = b.pidfdGetfd(pidfd, fd);
    } catch (e) {
      throw new Error(`criu_opts.pidfd_store_sk ${fd}: cannot take it from the client (pid ${client}): ${(e as Error).message}`, { cause: e });
    } finally {
      closeSync(pidfd);
    }
    const store = new PidfdStore(sk, log);
    try {
      const out = new Int32Array(2);
      b.getsockoptInts(sk, Int32Array.of(SOL_SOCKET, SO.TYPE, SOL_SOCKET, SO.DOMAIN), out);
      if (out[1] !== AF_UNIX || out[0] !== SOCK.DGRAM) throw new Error(`criu_opts.pidfd_store_sk ${fd} must be a unix datagram socket (as criu's)`);
      // unnamed: only its family (2 bytes)
      if (b.sockName(sk).length <= 2) {
        b.setsockoptInts(sk, Int32Array.of(SOL_SOCKET, SO.SNDBUFFORCE, BUF, SOL_SOCKET, SO.RCVBUFFORCE, BUF));
        const name = Buffer.from(`\0X/criu-pidfd-store-${client}-${fd}-${runId}`);
        b.unixBind(sk, name);
        b.unixConnect(sk, name);
      }
      store.drain();
      if (store.kept.size === 0 && parent) throw new Error("no pidfds found in the pidfd store (criu_opts.pidfd_store_sk): the same socket as the previous pass's must be passed");
    } catch (e) {
      store.close();
      throw e;
    }
    return store;
  }

  /** Takes out every pidfd the last pass left. */
  private drain(): void {
    const b = bridge();
    for (;;) {
      let m: { data: Buffer; fd: number };
      try {
        m = b.recvFd(this.sk, 4, 0);
      } catch (e) {
        if (isNativeError(e) && (e.code === "ETIMEDOUT" || e.code === "EAGAIN")) return;
        throw new Error(`reading the pidfd store: ${(e as Error).message}`, { cause: e });
      }
      if (m.fd < 0 || m.data.length !== 4) {
        if (m.fd >= 0) closeSync(m.fd);
        throw new Error(`the pidfd store holds a message that is not a pid with its pidfd (${m.data.length} bytes, ${m.fd < 0 ? "no fd" : "an fd"})`);
      }
      const pid = m.data.readInt32LE(0);
      const old = this.kept.get(pid);
      if (old !== undefined) closeSync(old);
      this.kept.set(pid, m.fd);
    }
  }

  /** Whether the pidfd kept for `pid` is of a process that has exited. */
  private exited(pidfd: number): boolean {
    return (bridge().pollNow(pidfd, POLLIN) & POLLIN) !== 0;
  }

  /** Whether `pid` is not the process the last pass saw (criu's pidfd_store_check_pid_reuse); logged as criu does. */
  reused(pid: number): boolean {
    const pidfd = this.kept.get(pid);
    if (pidfd !== undefined && !this.exited(pidfd)) return false;
    this.log.warn(`Pid reuse detected for pid ${pid}`);
    return true;
  }

  /** Leaves a pidfd of `pid` for the next pass (criu's pidfd_store_add): the last pass's when it is still that process's. */
  add(pid: number): void {
    const b = bridge();
    const kept = this.kept.get(pid);
    const pidfd = kept !== undefined && !this.exited(kept) ? kept : b.pidfdOpen(pid, 0);
    try {
      const payload = Buffer.alloc(4);
      payload.writeInt32LE(pid);
      b.seqpacketSend(this.sk, payload, pidfd);
    } finally {
      if (pidfd !== kept) closeSync(pidfd);
    }
  }

  close(): void {
    for (const fd of this.kept.values()) closeSync(fd);
    this.kept.clear();
    closeSync(this.sk);
  }
}
