// Offline operator tools that work on images alone: cpuinfo dump/check, dedup.
// Implementations are imported when a command runs: the CLI starts faster.
import type { CommandSpec } from "./run.js";

function imagesDir(args: Record<string, unknown>): string {
  const d = args["images-dir"];
  return typeof d === "string" && d !== "" ? d : ".";
}

export function toolCommands(): CommandSpec[] {
  return [
    {
      command: "cpuinfo",
      describe: "dump this CPU's capabilities to cpuinfo.img, or check an image against this CPU",
      positionals: [{ name: "action", describe: "dump or check", choices: ["dump", "check"] }],
      criu: ["cpuinfo dump", "cpuinfo check"],
      handler: async (args, ctx) => {
        const log = ctx.log.module("cpuinfo");
        const dir = imagesDir(args);
        const { cpuinfoCheck, cpuinfoDump } = await import("../cpuinfo/cpuinfo.js");
        const { formatCpuCaps } = await import("../../wasm/index.js");
        if (args["action"] === "dump") {
          const e = await cpuinfoDump(dir);
          log.info(`wrote ${dir}/cpuinfo.img: ${String(e.vendor_id)} family ${e.cpu_family} model ${e.model} "${e.model_id ?? ""}"`);
          return 0;
        }
        // "--cpu-cap" with no value comes as "" from the option parser: every check.
        const arg = args["cpu-cap"] as string | undefined;
        const r = await cpuinfoCheck(dir, arg === "" ? null : arg);
        if (r.vendorDiffers) log.warn("the image was made on another CPU vendor (criu does not refuse that by itself)");
        const checked = formatCpuCaps((r.checked.fpu ? 1 : 0) | (r.checked.cpu ? 2 : 0) | (r.checked.ins ? 4 : 0));
        if (r.ok) {
          log.info(`${dir}/cpuinfo.img is compatible with this CPU (checked: ${checked})`);
          return 0;
        }
        for (const m of r.messages) log.error(m);
        log.error(`${dir}/cpuinfo.img is not compatible with this CPU (checked: ${checked})`);
        return 1;
      },
    },
    {
      command: "dedup",
      describe: "punch pages that newer dumps hold out of the parent chain's pages files",
      criu: ["dedup"],
      handler: async (args, ctx) => {
        const log = ctx.log.module("dedup");
        const { dedup } = await import("../dedup.js");
        const s = await dedup(imagesDir(args), log);
        log.info(`dedup: ${s.bytes} bytes in ${s.ranges} ranges punched from ${s.files} pages files (${s.pagemaps} pagemaps)`);
        return 0;
      },
    },
  ];
}
