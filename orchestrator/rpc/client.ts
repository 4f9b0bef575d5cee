// A client of criu's RPC in Node: the same requests pycriu and go-criu send, to `tscriu
// swrk` (started here on a socketpair) or to a `service` socket. Typed requests and
// answers (criu_req / criu_resp from images/schema/rpc.ts); the action-script stages come
// to `onNotify`, whose answer (resolve: success, throw: failure) goes back to the server.
// Waiting polls the socket, so the event loop stays free while the server works.

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { bridge } from "../../host-bridge/load.js";
import { decodeMessage, encodeMessage } from "../../images/message.js";
import { criu_req, criu_resp } from "../../images/schema/rpc.js";
import type { CriuReq, CriuResp } from "./channel.js";
import type { CriuOpts } from "./opts.js";

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;

export type NotifyHook = (script: string, pid: number | undefined) => void | Promise<void>;

/** A failed request: criu's cr_errno and cr_errmsg. */
export class RpcRequestError extends Error {
  override readonly name = "RpcRequestError";
  constructor(
    readonly type: string,
    readonly crErrno: number | undefined,
    readonly crErrmsg: string | undefined,
  ) {
    super(`${type} failed: ${crErrmsg ?? "no message"}${crErrno ? ` (errno ${crErrno})` : ""}`);
  }
}

export class RpcClient {
  private constructor(
    private readonly fd: number,
    private readonly child?: { exited: Promise<number | null> },
  ) {}

  /** Starts `tscriu swrk` (this package's CLI, or `cli`) on a socketpair. */
  static swrk(cli: string = fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "../cli/main.ts" : "../cli/main.js", import.meta.url))): RpcClient {
    const [mine, theirs] = bridge().socketpair(AF_UNIX, SOCK_SEQPACKET);
    const p = spawn(process.execPath, [...process.execArgv, cli, "swrk", "3"], { stdio: ["ignore", "ignore", "inherit", theirs] });
    bridge().close(theirs);
    const exited = new Promise<number | null>((resolve) => p.on("exit", (code) => resolve(code)));
    return new RpcClient(mine, { exited });
  }

  /** Connects to a `tscriu service` (or `criu service`) socket. */
  static connect(path: string): RpcClient {
    const fd = bridge().socket(AF_UNIX, SOCK_SEQPACKET);
    try {
      bridge().unixConnect(fd, Buffer.from(`${path}\0`));
    } catch (e) {
      bridge().close(fd);
      throw e;
    }
    return new RpcClient(fd);
  }

  private async recv(): Promise<CriuResp> {
    for (;;) {
      try {
        const raw = bridge().seqpacketRecv(this.fd, 1 << 20, 0);
        if (raw === null) throw new Error("the RPC server closed the connection");
        return decodeMessage(criu_resp, raw) as CriuResp;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ETIMEDOUT") throw e;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Sends one request and returns its answer; NOTIFY messages on the way go to onNotify. */
  async request(req: CriuReq, onNotify?: NotifyHook): Promise<CriuResp> {
    bridge().seqpacketSend(this.fd, encodeMessage(criu_req, req));
    for (;;) {
      const resp = await this.recv();
      if (resp.type !== "NOTIFY" || resp.notify === undefined) return resp;
      let ok = true;
      try {
        await onNotify?.(resp.notify.script ?? "", resp.notify.pid);
      } catch {
        ok = false;
      }
      bridge().seqpacketSend(this.fd, encodeMessage(criu_req, { type: "NOTIFY", notify_success: ok }));
    }
  }

  private async must(req: CriuReq, onNotify?: NotifyHook): Promise<CriuResp> {
    const r = await this.request(req, onNotify);
    if (!r.success) throw new RpcRequestError(String(r.type), r.cr_errno, r.cr_errmsg);
    return r;
  }

  async version(): Promise<NonNullable<CriuResp["version"]>> {
    return (await this.must({ type: "VERSION", keep_open: true })).version!;
  }

  async check(opts: Partial<CriuOpts> = {}): Promise<void> {
    await this.must({ type: "CHECK", opts: { images_dir_fd: -1, ...opts } });
  }

  /** DUMP; with onNotify the server sends the action stages (notify_scripts). */
  async dump(opts: Partial<CriuOpts>, onNotify?: NotifyHook): Promise<void> {
    await this.must({ type: "DUMP", opts: { images_dir_fd: -1, ...opts, ...(onNotify ? { notify_scripts: true } : {}) } }, onNotify);
  }

  /** RESTORE; resolves to the restored root's pid. */
  async restore(opts: Partial<CriuOpts>, onNotify?: NotifyHook): Promise<number> {
    const r = await this.must({ type: "RESTORE", opts: { images_dir_fd: -1, ...opts, ...(onNotify ? { notify_scripts: true } : {}) } }, onNotify);
    return r.restore!.pid;
  }

  /** Closes the connection; a swrk child is waited for (its exit code). */
  async close(): Promise<number | null> {
    bridge().close(this.fd);
    return this.child ? await this.child.exited : null;
  }
}
