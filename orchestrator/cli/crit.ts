// crit's image verbs: decode, encode, show, info and x, with crit's JSON layout. The
// work is in crit-run.ts, imported when a verb runs: the CLI starts faster.

import type { ExploreWhat } from "../../images/explore.js";
import type { Argv } from "yargs";
import type { CommandSpec } from "./run.js";

/** crit's -o: the output file (criu's commands use -o for the log). */
const out = (y: Argv): Argv => y.option("out", { alias: "o", type: "string", describe: "output file (stdout by default)" });

export function critCommands(): CommandSpec[] {
  return [
    {
      command: "decode",
      describe: "convert an image from binary to JSON (crit decode)",
      builder: (y) =>
        out(y)
          .option("in", { alias: "i", type: "string", describe: "image to decode (stdin by default)" })
          .option("pretty", { type: "boolean", describe: "indented, with hex addresses and flag names" }),
      handler: async (args) => {
        const { printCrit, readInput } = await import("./crit-run.js");
        const { data, name } = await readInput(args["in"] as string | undefined);
        await printCrit(data, name, args["out"] as string | undefined, { pretty: args["pretty"] === true });
        return 0;
      },
    },
    {
      command: "encode",
      describe: "convert an image from JSON to binary (crit encode)",
      builder: (y) =>
        out(y)
          .option("in", { alias: "i", type: "string", describe: "JSON to encode (stdin by default)" })
          .option("force", { type: "boolean", describe: "overwrite an existing output file" }),
      handler: async (args, ctx) => {
        const { encode } = await import("./crit-run.js");
        await encode(ctx, args["in"] as string | undefined, args["out"] as string | undefined, args["force"] === true);
        return 0;
      },
    },
    {
      command: "show <in>",
      describe: "show an image as indented JSON (crit show)",
      builder: (y) =>
        y
          .positional("in", { type: "string", describe: "image file" })
          .option("nopl", { type: "boolean", describe: "do not show entry payload (raw data)" }),
      handler: async (args) => {
        const { printCrit, readInput } = await import("./crit-run.js");
        const { data, name } = await readInput(args["in"] as string);
        await printCrit(data, name, undefined, { pretty: true, nopl: args["nopl"] === true });
        return 0;
      },
    },
    {
      command: "info <in>",
      describe: "show the type and entry count of an image (crit info)",
      builder: (y) => y.positional("in", { type: "string", describe: "image file" }),
      handler: async (args, ctx) => {
        const { info } = await import("./crit-run.js");
        await info(ctx, args["in"] as string);
        return 0;
      },
    },
    {
      command: "x <dir> <what>",
      describe: "explore an image directory: ps, fds, mems, rss (crit x)",
      builder: (y) =>
        y
          .positional("dir", { type: "string", describe: "image directory" })
          .positional("what", { choices: ["ps", "fds", "mems", "rss"] as const, describe: "what to show" }),
      handler: async (args, ctx) => {
        const { explore } = await import("./crit-run.js");
        await explore(ctx, args["dir"] as string, args["what"] as ExploreWhat);
        return 0;
      },
    },
  ];
}
