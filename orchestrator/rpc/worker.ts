// A worker of `tscriu service` (service.ts): loads what requests need, blocks in accept(2)
// on the listening socket (fd 3), says so on its pipe (fd 4) so the service starts the next
// one, checks its client (peer.ts) and serves it (server.ts), then exits.

import { closeSync, readdirSync, writeSync } from "node:fs";
import { setPriority } from "node:os";
import { bridge } from "../../host-bridge/load.js";
import { fileSink, Logger, type LogLevel, stderrSink } from "../log.js";
import { type Peer, PeerCheck, peerOf } from "./peer.js";
import { LISTEN_FD, REPORT_FD, spareNiced } from "./service.js";
import { serve } from "./server.js";
import { RpcChannel } from "./channel.js";
import { warmUp } from "./warmup.js";

// Loaded before the connection comes, so that a request does not wait for them.
await Promise.all([import("../dump/dump.js"), import("../restore/restore.js"), import("../dump/stats.js"), import("../restore/stats.js")]);

const logFile = process.env["TSCRIU_RPC_LOG"];
const log = new Logger(Math.max(0, Math.min(4, Number(process.env["TSCRIU_RPC_LEVEL"] ?? 2))) as LogLevel, logFile !== undefined ? fileSink(logFile) : stderrSink());
// and run a few times, so that the first request does not run cold code; a client that
// connects meanwhile ends the warm-up
const POLLIN = 1;
await warmUp(log.module("service"), () => bridge().pollNow(LISTEN_FD, POLLIN) !== 0);
const conn = bridge().accept(LISTEN_FD);
// The spare's low priority (service.ts) ends: each thread has its own.
if (spareNiced()) {
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      setPriority(Number(tid), 0);
    } catch (e) {
      log.module("service").warn(`thread ${tid} keeps the spare's priority: ${(e as Error).message}`);
    }
  }
}
writeSync(REPORT_FD, "accepted\n");
closeSync(REPORT_FD);
closeSync(LISTEN_FD);

let code = 1;
let peer: Peer | undefined;
try {
  peer = peerOf(conn);
  const access = new PeerCheck(peer);
  code = await serve(conn, { mode: "service", peer, access, log });
} catch (e) {
  // the client could not even be judged: answer its first request with why
  const msg = (e as Error).message;
  log.module("service").error(`client pid ${peer?.pid ?? "?"}: ${msg}`);
  try {
    const ch = new RpcChannel(conn);
    const req = ch.recv(5000);
    ch.send({ type: req?.type ?? "EMPTY", success: false, cr_errno: 1, cr_errmsg: msg });
  } catch {
    // the client is gone
  }
}
process.exit(code);
