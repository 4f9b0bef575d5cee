// tscriu swrk FD and tscriu service: criu's RPC (rpc/). swrk serves the SOCK_SEQPACKET
// socket its client (pycriu, go-criu, libcriu, runc) passed as FD and exits; service
// listens on a socket and serves each connection in a worker process of its own.
import { isAbsolute, join, resolve } from "node:path";
import type { CommandSpec } from "./run.js";

/** The -o file as run.ts opens it (relative to -W), for the service's workers to append to. */
function logPath(args: Record<string, unknown>): string | undefined {
  const file = args["log-file"];
  if (typeof file !== "string" || file === "-") return undefined;
  const base = args["work-dir"];
  return resolve(typeof base === "string" && !isAbsolute(file) ? join(base, file) : file);
}

export function rpcCommands(): CommandSpec[] {
  return [
    {
      command: "swrk",
      describe: "serve criu's RPC on an inherited SOCK_SEQPACKET socket (for pycriu, go-criu, libcriu)",
      positionals: [{ name: "fd", describe: "the socket's file descriptor", kind: "number" }],
      criu: ["swrk"],
      handler: async (args, ctx) => {
        const fd = args["fd"];
        if (typeof fd !== "number" || !Number.isInteger(fd) || fd < 0) {
          ctx.err("Usage: tscriu swrk <fd>\n");
          return 1;
        }
        const [{ serve }, { peerOf }] = await Promise.all([import("../rpc/server.js"), import("../rpc/peer.js")]);
        let peer;
        try {
          peer = peerOf(fd);
        } catch (e) {
          ctx.err(`tscriu swrk: fd ${fd} is not a connected unix socket: ${(e as Error).message}\n`);
          return 1;
        }
        return await serve(fd, { mode: "swrk", peer, log: ctx.log });
      },
    },
    {
      command: "service",
      describe: "serve criu's RPC on a unix socket (--address PATH), a worker process per connection",
      criu: ["service"],
      handler: async (args, ctx) => {
        const { runService } = await import("../rpc/service.js");
        return await runService(
          {
            address: typeof args["address"] === "string" ? args["address"] : undefined,
            // criu's -d is --restore-detached everywhere; for the service it means the daemon
            daemon: args["daemon"] === true || args["restore-detached"] === true,
            statusFd: typeof args["status-fd"] === "number" ? args["status-fd"] : undefined,
            pidfile: typeof args["pidfile"] === "string" ? args["pidfile"] : undefined,
            spares: typeof args["spare-workers"] === "number" ? args["spare-workers"] : undefined,
            logFile: logPath(args),
            argv: process.argv.slice(2),
          },
          ctx,
        );
      },
    },
  ];
}
