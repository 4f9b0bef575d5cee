// tscriu restore: criu's restore command for one single-threaded task. Without -d tscriu
// stays the task's parent, waits for it and exits with its exit status (128 + N when a
// signal N ended it); with -d it leaves the task to a subreaper of its own and exits.

import { isAbsolute, join } from "node:path";
// The restore machinery is imported when the command runs: other commands start faster.
import type { RestoreEvent } from "../restore/restore.js";
import { listValue as list } from "./parse.js";
import { parseFileValidation, type FileValidation } from "../fds/file-validation.js";
import { parseCgroupMode, parseCgroupRoot, type CgroupMode, type CgroupRoot } from "../cgroup/options.js";
import type { CommandSpec } from "./run.js";

export function restoreCommand(): CommandSpec {
  return {
    command: "restore",
    describe: "restore a process from images",
    criu: ["restore"],
    handler: async (args, ctx) => {
      const dir = args["images-dir"];
      if (typeof dir !== "string" || dir === "") {
        ctx.err("tscriu restore: an images directory is needed: -D DIR\n");
        return 1;
      }
      const detached = args["restore-detached"] === true;
      const sibling = args["restore-sibling"] === true;
      if (sibling && !detached) {
        ctx.err("tscriu restore: -S/--restore-sibling needs -d/--restore-detached (the task would not be tscriu's child to wait for)\n");
        return 1;
      }
      const workDir = typeof args["work-dir"] === "string" ? args["work-dir"] : undefined;
      const log = ctx.log;
      const file = args["log-file"];
      const [{ bridge }, { isRestoreError }, { progressBar, terminalStderr }, { restore }, { formatStats }] = await Promise.all([
        import("../../host-bridge/load.js"),
        import("../restore/errors.js"),
        import("../progress.js"),
        import("../restore/restore.js"),
        import("../restore/stats.js"),
      ]);
      const cap = args["cpu-cap"];
      let fileValidation: FileValidation;
      let cgroupMode: CgroupMode;
      let cgroupRoots: CgroupRoot[];
      try {
        fileValidation = parseFileValidation(typeof args["file-validation"] === "string" ? args["file-validation"] : undefined);
        cgroupMode = parseCgroupMode(typeof args["manage-cgroups"] === "string" ? args["manage-cgroups"] : undefined);
        cgroupRoots = list(args["cgroup-root"]).map(parseCgroupRoot);
      } catch (e) {
        ctx.err(`tscriu restore: ${(e as Error).message}\n`);
        return 1;
      }
      let pid = 0;
      try {
        const bar = progressBar(terminalStderr, "restoring memory");
        const result = await restore(
          {
            imagesDir: dir,
            workDir,
            detached,
            sibling,
            shellJob: args["shell-job"] === true,
            fileLocks: args["file-locks"] === true,
            tcpEstablished: args["tcp-established"] === true,
            tcpClose: args["tcp-close"] === true,
            extUnixSk: args["ext-unix-sk"] !== undefined,
            skipFileRwxCheck: args["skip-file-rwx-check"] === true,
            fileValidation,
            leaveStopped: args["leave-stopped"] === true,
            // criu works in the work dir: a relative pid file lands there, like the log
            pidfile: typeof args["pidfile"] === "string" ? (isAbsolute(args["pidfile"]) ? args["pidfile"] : join(workDir ?? dir, args["pidfile"])) : undefined,
            root: typeof args["root"] === "string" ? args["root"] : undefined,
            inheritFds: list(args["inherit-fd"]),
            cpuCap: typeof cap === "string" ? (cap === "" ? null : cap) : undefined,
            autoDedup: args["auto-dedup"] === true,
            lazyPages: args["lazy-pages"] === true,
            cgroupMode,
            cgroupRoots,
            cgroupYard: typeof args["cgroup-yard"] === "string" ? args["cgroup-yard"] : undefined,
            actionScripts: list(args["action-script"]),
            log,
          },
          (e: RestoreEvent) => bar(e),
        );
        pid = result.pid;
        if (args["display-stats"] === true) await ctx.out(formatStats(result.stats));
      } catch (e) {
        if (isRestoreError(e)) {
          // restore() logged it; without a log file that went to stderr already.
          if ((typeof file === "string" && file !== "-") || log.level < 1) ctx.err(`tscriu: ${e.message}\n`);
          return 1;
        }
        throw e;
      }
      if (detached) return 0;
      // As criu: stay the task's parent until it ends, and end the same way.
      const st = bridge().waitpid(pid, 0);
      if (st?.signaled) return 128 + st.signal;
      return st?.code ?? 0;
    },
    // a relative -o log file goes into -W or -D (run.ts), which may have to be made
    makesImagesDir: true,
  };
}
