// tscriu lazy-pages: the daemon of a lazy restore (lazy-pages/daemon.ts), criu's command
// with criu's options: -D, -W, -d/--daemon, --status-fd, --pidfile, and --page-server
// with --address, --port and the TLS options to fetch the pages from a dump's page server.
import { resolve } from "node:path";
import { num, str } from "./args.js";
import { tlsOf } from "./dump.js";
import type { CommandSpec } from "./run.js";


export function lazyPagesCommand(): CommandSpec {
  return {
    command: "lazy-pages",
    describe: "fill a lazy restore's memory while its tasks run (restore --lazy-pages hands them over)",
    criu: ["lazy-pages"],
    handler: async (args, ctx) => {
      const dir = str(args["images-dir"]);
      if (dir === undefined) {
        ctx.err("tscriu lazy-pages: an images directory is needed: -D DIR\n");
        return 1;
      }
      const remote = args["page-server"] === true;
      const address = str(args["address"]);
      const port = num(args["port"]);
      if (!remote && (address !== undefined || port !== undefined)) {
        ctx.err("tscriu lazy-pages: --address and --port go with --page-server\n");
        return 1;
      }
      if (remote && (address === undefined || port === undefined || !Number.isInteger(port) || port <= 0 || port > 65535)) {
        ctx.err("tscriu lazy-pages: --page-server needs the dump's --address and --port (1-65535)\n");
        return 1;
      }
      const tls = tlsOf(args);
      if (typeof tls === "string") {
        ctx.err(`tscriu lazy-pages: ${tls}\n`);
        return 1;
      }
      if (tls && !remote) {
        ctx.err("tscriu lazy-pages: --tls goes with --page-server\n");
        return 1;
      }
      const log = ctx.log.module("lazy-pages");
      const { runLazyPages } = await import("../lazy-pages/daemon.js");
      const source = remote
        ? async () => {
            const { connectLazySource } = await import("../lazy-pages/remote.js");
            return connectLazySource({ address: address!, port: port!, tls }, log);
          }
        : undefined;
      return await runLazyPages(
        {
          imagesDir: dir,
          workDir: resolve(str(args["work-dir"]) ?? dir),
          daemon: args["daemon"] === true || args["restore-detached"] === true,
          statusFd: num(args["status-fd"]),
          pidfile: str(args["pidfile"]),
          source,
          argv: process.argv.slice(2),
        },
        log,
      );
    },
  };
}
