// tscriu dump: criu's dump command for a single-threaded task.

// The dump machinery is imported when the command runs: other commands start faster.
import type { DumpEvent } from "../dump/dump.js";
import type { TlsOptions } from "../page-server/channel.js";
import { listValue } from "./parse.js";
import { parseFileValidation } from "../fds/file-validation.js";
import { parseCgroupMode, parseCgroupRoot, type CgroupRoot } from "../cgroup/options.js";
import type { CommandSpec } from "./run.js";

/** criu's size syntax: a number with an optional K, M or G suffix. */
export function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (!m) throw new Error(`bad size "${text}" (a number with an optional K, M or G suffix)`);
  const mult = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 }[m[2]!.toUpperCase() as "" | "K" | "M" | "G"];
  return Number(m[1]) * mult;
}

const TLS_OPTIONS = ["tls", "tls-cacert", "tls-cacrl", "tls-cert", "tls-key", "tls-no-cn-verify"] as const;

/** criu's --tls and its files, or a message when a file is given without --tls (it would do nothing). */
export function tlsOf(args: Record<string, unknown>): TlsOptions | string | undefined {
  const str = (k: string): string | undefined => (typeof args[k] === "string" ? (args[k]) : undefined);
  if (args["tls"] !== true) {
    const given = TLS_OPTIONS.filter((o) => o !== "tls" && args[o] !== undefined && args[o] !== false);
    return given.length ? `${given.map((o) => `--${o}`).join(", ")} ${given.length > 1 ? "are" : "is"} for --tls, which is not given` : undefined;
  }
  return { cacert: str("tls-cacert"), cacrl: str("tls-cacrl"), cert: str("tls-cert"), key: str("tls-key"), noCnVerify: args["tls-no-cn-verify"] === true };
}

/** --page-server with its --address, --port or --ps-socket; a message when they do not go together. */
function pageServerOf(args: Record<string, unknown>): { address?: string; port?: number; psSocket?: number } | string | undefined {
  const address = typeof args["address"] === "string" ? args["address"] : undefined;
  const port = typeof args["port"] === "number" ? args["port"] : undefined;
  const psSocket = typeof args["ps-socket"] === "number" ? args["ps-socket"] : undefined;
  if (args["page-server"] !== true) {
    const given = [address !== undefined && "--address", port !== undefined && "--port", psSocket !== undefined && "--ps-socket", ...TLS_OPTIONS.filter((o) => args[o] !== undefined && args[o] !== false).map((o) => `--${o}`)].filter(Boolean);
    return given.length ? `${given.join(", ")} ${given.length > 1 ? "are" : "is"} for --page-server, which is not given` : undefined;
  }
  if (psSocket === undefined && (port === undefined || !Number.isInteger(port) || port <= 0 || port > 65535)) return "--page-server needs the server's --port (1-65535) or --ps-socket";
  const tls = tlsOf(args);
  if (typeof tls === "string") return tls;
  return { ...(address !== undefined ? { address } : {}), ...(port !== undefined ? { port } : {}), ...(psSocket !== undefined ? { psSocket } : {}), ...(tls ? { tls } : {}) };
}

/**
 * --lazy-pages with where to listen for the lazy-pages daemon (--address, --port: criu's
 * default 0 lets the kernel pick, --ps-socket) and --tls; a message when they do not go together.
 */
function lazyPagesOf(args: Record<string, unknown>): { address?: string; port?: number; psSocket?: number; tls?: TlsOptions } | string | undefined {
  if (args["lazy-pages"] !== true) return typeof args["status-fd"] === "number" ? "--status-fd is for --lazy-pages (its byte says the lazy pages can be fetched), which is not given" : undefined;
  if (args["page-server"] === true) {
    return "--lazy-pages with --page-server is not supported yet by tscriu (criu sends the other pages to the page server, then listens for the lazy-pages daemon on the same --address and --port)";
  }
  const address = typeof args["address"] === "string" ? args["address"] : undefined;
  const port = typeof args["port"] === "number" ? args["port"] : undefined;
  const psSocket = typeof args["ps-socket"] === "number" ? args["ps-socket"] : undefined;
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) return `--port ${port}: 0-65535 (0: the kernel picks one)`;
  const tls = tlsOf(args);
  if (typeof tls === "string") return tls;
  return { ...(address !== undefined ? { address } : {}), ...(port !== undefined ? { port } : {}), ...(psSocket !== undefined ? { psSocket } : {}), ...(tls ? { tls } : {}) };
}

/** dump, and pre-dump (memory only, the task left running: the start of an incremental chain). */
export function dumpCommand(command: "dump" | "pre-dump" = "dump"): CommandSpec {
  const preDump = command === "pre-dump";
  return {
    command,
    describe: preDump ? "pre-dump the memory of a process tree, leaving it running (the start of an incremental chain)" : "checkpoint a running process into images",
    criu: [command],
    handler: async (args, ctx) => {
      const pid = args["tree"];
      const dir = args["images-dir"];
      if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) {
        ctx.err(`tscriu ${command}: a task is needed: -t PID\n`);
        return 1;
      }
      if (typeof dir !== "string") {
        ctx.err(`tscriu ${command}: an images directory is needed: -D DIR\n`);
        return 1;
      }
      const mode = args["pre-dump-mode"];
      if (mode !== undefined && mode !== "splice" && mode !== "read") {
        ctx.err(`tscriu ${command}: --pre-dump-mode must be splice or read, not "${typeof mode === "string" ? mode : JSON.stringify(mode)}"\n`);
        return 1;
      }
      const prev = args["prev-images-dir"];
      const { parseExternalUnix } = await import("../fds/unix-external.js");
      let externalUnix;
      try {
        externalUnix = parseExternalUnix(args["ext-unix-sk"] as string | undefined, listValue(args["external"]));
      } catch (e) {
        ctx.err(`tscriu ${command}: ${(e as Error).message}\n`);
        return 1;
      }
      if (args["leave-running"] === true && args["leave-stopped"] === true) {
        ctx.err("tscriu dump: --leave-running and --leave-stopped exclude each other\n");
        return 1;
      }
      const lazyPages = preDump ? undefined : lazyPagesOf(args);
      if (typeof lazyPages === "string") {
        ctx.err(`tscriu ${command}: ${lazyPages}\n`);
        return 1;
      }
      const pageServer = lazyPages ? undefined : pageServerOf(args);
      if (typeof pageServer === "string") {
        ctx.err(`tscriu ${command}: ${pageServer}\n`);
        return 1;
      }
      const workDir = typeof args["work-dir"] === "string" ? args["work-dir"] : undefined;
      const log = ctx.log;
      const file = args["log-file"];
      const [{ dump }, { isDumpError }, { progressBar, terminalStderr }, { formatStats }, { parseLockMethod }] = await Promise.all([
        import("../dump/dump.js"),
        import("../dump/errors.js"),
        import("../progress.js"),
        import("../dump/stats.js"),
        import("../net/lock.js"),
      ]);
      let networkLock;
      let fileValidation;
      let cgroupsIgnore: boolean;
      let cgroupRoots: CgroupRoot[];
      try {
        networkLock = parseLockMethod(typeof args["network-lock"] === "string" ? args["network-lock"] : undefined);
        fileValidation = parseFileValidation(typeof args["file-validation"] === "string" ? args["file-validation"] : undefined);
        cgroupsIgnore = parseCgroupMode(typeof args["manage-cgroups"] === "string" ? args["manage-cgroups"] : undefined) === "ignore";
        cgroupRoots = listValue(args["cgroup-root"]).map(parseCgroupRoot);
      } catch (e) {
        ctx.err(`tscriu dump: ${(e as Error).message}\n`);
        return 1;
      }
      try {
        const ghost = args["ghost-limit"];
        const bar = progressBar(terminalStderr, preDump ? "pre-dumping memory" : "dumping memory");
        const result = await dump(
          {
            pid,
            imagesDir: dir,
            workDir,
            leaveRunning: args["leave-running"] === true,
            leaveStopped: args["leave-stopped"] === true,
            shellJob: args["shell-job"] === true,
            skipInFlight: args["skip-in-flight"] === true,
            fileLocks: args["file-locks"] === true,
            externalUnix,
            tcpEstablished: args["tcp-established"] === true,
            tcpClose: args["tcp-close"] === true,
            networkLock,
            timeoutSec: typeof args["timeout"] === "number" ? args["timeout"] : undefined,
            freezeCgroup: typeof args["freeze-cgroup"] === "string" ? args["freeze-cgroup"] : undefined,
            cgroupsIgnore,
            cgroupRoots,
            cgroupYard: typeof args["cgroup-yard"] === "string" ? args["cgroup-yard"] : undefined,
            ghostLimit: typeof ghost === "string" ? parseSize(ghost) : undefined,
            linkRemap: args["link-remap"] === true,
            fileValidation,
            forceIrmap: args["force-irmap"] === true,
            irmapScanPaths: Array.isArray(args["irmap-scan-path"]) ? (args["irmap-scan-path"] as string[]) : [],
            cpuCap: typeof args["cpu-cap"] === "string" ? args["cpu-cap"] : undefined,
            actionScripts: Array.isArray(args["action-script"]) ? (args["action-script"] as string[]) : [],
            preDump,
            prevImagesDir: typeof prev === "string" ? prev : undefined,
            autoDedup: args["auto-dedup"] === true,
            wpSnapshot: args["wp-snapshot"] === true,
            trackMem: args["track-mem"] === true,
            preDumpMode: mode,
            pageServer,
            lazyPages,
            statusFd: typeof args["status-fd"] === "number" ? args["status-fd"] : undefined,
            log,
          },
          (e: DumpEvent) => {
            if (e.type === "lazy-pages") ctx.err(`tscriu dump: serving ${e.pages} lazy pages on ${e.where} until the lazy-pages daemon closes\n`);
            else bar(e);
          },
        );
        if (args["display-stats"] === true) await ctx.out(formatStats(result.stats));
        return 0;
      } catch (e) {
        if (isDumpError(e)) {
          // dump() logged it; without a log file that went to stderr already.
          if ((typeof file === "string" && file !== "-") || log.level < 1) ctx.err(`tscriu: ${e.message}\n`);
          return 1;
        }
        throw e;
      }
    },
    makesImagesDir: true,
  };
}
