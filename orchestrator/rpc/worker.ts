// A worker of `tscriu service` (service.ts): loads what requests need and warms its code up,
// says on its pipe (fd 4) that it is ready and blocks in accept(2) on the listening socket
// (fd 3), says that it took a connection (the service starts the next spare), checks its
// client (peer.ts) and serves it (server.ts), then exits.

import { closeSync, writeSync } from "node:fs";
import { constants } from "node:os";
import { POLL } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { fileSink, Logger, type LogLevel, stderrSink } from "../log.js";
import { type Peer, PeerCheck, peerOf } from "./peer.js";
import { LISTEN_FD, renice, REPORT, REPORT_FD, SERVICE_PID_ENV, SPARE_NICE_BACK_ENV } from "./service.js";
import { serve } from "./server.js";
import { RpcChannel } from "./channel.js";
import { warmUp } from "./warmup.js";

// A spare ends with its service, killed or not, as a stop ends it (SIGTERM, below): it
// would wait in accept on a socket nobody serves any more. Its parent gone before this
// call, it ends now.
const SIGTERM = constants.signals.SIGTERM;
const service = process.env[SERVICE_PID_ENV];
const niceBack = process.env[SPARE_NICE_BACK_ENV];
delete process.env[SERVICE_PID_ENV];
delete process.env[SPARE_NICE_BACK_ENV];
if (service !== undefined && bridge().parentDeathSignal(SIGTERM) !== Number(service)) process.exit(0);

// Loaded before the connection comes, so that a request does not wait for them.
await Promise.all([import("../dump/dump.js"), import("../restore/restore.js"), import("../dump/stats.js"), import("../restore/stats.js")]);

const logFile = process.env["TSCRIU_RPC_LOG"];
const log = new Logger(Math.max(0, Math.min(4, Number(process.env["TSCRIU_RPC_LEVEL"] ?? 2))) as LogLevel, logFile !== undefined ? fileSink(logFile) : stderrSink());
// and run a few times, so that the first request does not run cold code; the service ends
// the warm-up when a client waits and no other spare is ready (a line on the pipe, never
// read: it stays readable). The service stops its spares with SIGTERM: during the warm-up
// that ends the step under way, which removes what it made; past it, the default action
// ends the spare at once.
let stopped = false;
const onStop = (): void => void (stopped = true);
process.on("SIGTERM", onStop);
await warmUp(log.module("service"), () => stopped || bridge().pollNow(REPORT_FD, POLL.IN) !== 0);
process.off("SIGTERM", onStop);
if (stopped) process.exit(0);
// The warm-up's garbage goes before a request comes (service.ts, WORKER_V8_FLAGS).
(globalThis as { gc?: () => void }).gc?.();
writeSync(REPORT_FD, REPORT.ready);
// The other spares wait in accept too: one takes the connection, and where the listening
// socket is non-blocking (one inherited) the others find none and wait again.
let conn: number;
for (;;) {
  try {
    conn = bridge().accept(LISTEN_FD);
    break;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
  }
}
// A worker serves its client to the end, whatever becomes of the service.
if (service !== undefined) bridge().parentDeathSignal(0);
// The spare's low priority (service.ts) ends: each thread has its own.
if (niceBack !== undefined) renice(process.pid, Number(niceBack), (msg) => log.module("service").warn(msg));
writeSync(REPORT_FD, REPORT.accepted);
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
