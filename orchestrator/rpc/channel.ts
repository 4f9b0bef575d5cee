// One RPC connection: criu_req in, criu_resp out, one bare protobuf message per
// SOCK_SEQPACKET packet (criu's framing: no magic, no size; the packet is sized with
// MSG_PEEK|MSG_TRUNC before it is read). Calls block: a connection is served by one
// process (swrk, or a service worker) and nothing else runs meanwhile.

import { bridge } from "../../host-bridge/load.js";
import { decodeMessage, encodeMessage } from "../../images/message.js";
import type { Entry } from "../../images/schema/dsl.js";
import { criu_req, criu_resp } from "../../images/schema/rpc.js";

export type CriuReq = Entry<typeof criu_req>;
export type CriuResp = Entry<typeof criu_resp>;
export type ReqType = CriuReq["type"];

/**
 * The largest request read. criu's own requests are a few hundred bytes; a criu_opts with
 * long lists (external, inherit_fd…) stays far below. A bigger packet is read, dropped and
 * answered with an error.
 */
export const MAX_REQUEST = 1 << 20;

/** A request that cannot be read: answered with an error, then the connection ends. */
export class BadRequest extends Error {
  override readonly name = "BadRequest";
}

export class RpcChannel {
  constructor(readonly fd: number) {}

  /** The next request; undefined once the client has closed its end. */
  recv(timeoutMs?: number): CriuReq | undefined {
    let raw: Buffer | null;
    try {
      raw = bridge().seqpacketRecv(this.fd, MAX_REQUEST, timeoutMs ?? null);
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { size?: number };
      if (err.code === "EMSGSIZE") throw new BadRequest(`a request of ${err.size ?? "?"} bytes, more than the ${MAX_REQUEST} tscriu reads`);
      throw e;
    }
    if (raw === null) return undefined;
    let req: CriuReq;
    try {
      req = decodeMessage(criu_req, raw) as CriuReq;
    } catch (e) {
      // required fields (type, opts.images_dir_fd) are checked by the codec, as protobuf-c does
      throw new BadRequest(`a request of ${raw.length} bytes that is not a criu_req: ${(e as Error).message}`);
    }
    return req;
  }

  send(resp: CriuResp, passFd?: number): void {
    bridge().seqpacketSend(this.fd, encodeMessage(criu_resp, resp), passFd ?? null);
  }
}
