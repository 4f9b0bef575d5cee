// tscriu check [--extra | --experimental | --all | --feature NAME|list]: criu's verdicts
// and exit codes ("Looks good." 0; "Does not look good." or "Looks good but …" 1).
import type { Category } from "../check.js";
import type { CommandSpec } from "./run.js";

const GOOD = "Looks good.";
const BAD = "Does not look good.";
const MAYBE = "Looks good but some kernel features are missing\nwhich, depending on your process tree, may cause\ndump or restore failure.";

export function checkCommand(): CommandSpec {
  return {
    command: "check",
    describe: "check that this kernel has what dump and restore use",
    // --extra, --experimental, --all and --feature are rows of the option table.
    criu: ["check"],
    handler: async (args, ctx) => {
      const log = ctx.log.module("check");
      const { check, featureByName, featureList } = await import("../check.js");
      const name = args["feature"];
      if (name === "list") {
        await ctx.out(featureList());
        return 0;
      }
      const only = typeof name === "string" ? featureByName(name) : undefined;
      if (typeof name === "string" && !only) {
        ctx.err(`tscriu check: unknown feature ${name} (tscriu check --feature list names them)\n`);
        return 1;
      }
      const all = args["all"] === true;
      const categories: Category[] = [1, ...(all || args["extra"] === true ? [2 as const] : []), ...(all || args["experimental"] === true ? [3 as const] : [])];
      let r;
      try {
        r = await check(categories, log, only);
      } catch (e) {
        ctx.err(`tscriu: ${(e as Error).message}\n`);
        return 1;
      }
      if (only) {
        if (r.verdict !== 0) return 1;
        await ctx.out(`${only.name} is supported\n`);
        return 0;
      }
      if (r.verdict === 1) log.warn(BAD);
      else await ctx.out(`${r.verdict === 0 ? GOOD : MAYBE}\n`);
      return r.verdict === 0 ? 0 : 1;
    },
  };
}
