// tscriu page-server: receives a dump's pages over TCP (page-server/serve.ts), criu's
// command with criu's options: -D, --address, --port, --ps-socket, -d/--daemon,
// --status-fd, --pidfile, --prev-images-dir, --auto-dedup, --tls and its files; with
// --lazy-pages it serves the lazy pages of the dump in -D to a lazy-pages daemon instead.
import { num, str } from "./args.js";
import { tlsOf } from "./dump.js";
import type { CommandSpec } from "./run.js";


export function pageServerCommand(): CommandSpec {
  return {
    command: "page-server",
    describe: "receive a dump's pages over TCP (dump --page-server sends them); with --lazy-pages, serve a dump's lazy pages to a lazy-pages daemon",
    criu: ["page-server"],
    handler: async (args, ctx) => {
      const dir = str(args["images-dir"]);
      if (dir === undefined) {
        ctx.err("tscriu page-server: an images directory is needed: -D DIR\n");
        return 1;
      }
      const port = num(args["port"]);
      if (port !== undefined && (!Number.isInteger(port) || port <= 0 || port > 65535)) {
        ctx.err(`tscriu page-server: --port must be 1-65535, not ${String(args["port"])}\n`);
        return 1;
      }
      const psSocket = num(args["ps-socket"]);
      const daemon = args["daemon"] === true || args["restore-detached"] === true;
      if (psSocket !== undefined && psSocket <= 2 && daemon) {
        // as criu: the daemon's standard fds are closed
        ctx.err("tscriu page-server: --ps-socket cannot be a standard fd (0-2) with --daemon\n");
        return 1;
      }
      const lazyPages = args["lazy-pages"] === true;
      if (lazyPages) {
        // the served dump is read, not written: nothing for a parent or a dedup to do
        const wrong = ["prev-images-dir", "auto-dedup"].filter((k) => args[k] !== undefined && args[k] !== false);
        if (wrong.length) {
          ctx.err(`tscriu page-server: --${wrong.join(" and --")} ${wrong.length > 1 ? "are" : "is"} for receiving a dump, not for --lazy-pages (serving one)\n`);
          return 1;
        }
      }
      const tls = tlsOf(args);
      if (typeof tls === "string") {
        ctx.err(`tscriu page-server: ${tls}\n`);
        return 1;
      }
      const { runPageServer } = await import("../page-server/serve.js");
      return await runPageServer(
        {
          imagesDir: dir,
          address: str(args["address"]),
          port,
          psSocket,
          prevImagesDir: str(args["prev-images-dir"]),
          autoDedup: args["auto-dedup"] === true,
          tls,
          lazyPages,
          daemon,
          statusFd: num(args["status-fd"]),
          pidfile: str(args["pidfile"]),
          argv: process.argv.slice(2),
        },
        ctx.log.module("page-server"),
      );
    },
    makesImagesDir: true,
  };
}
