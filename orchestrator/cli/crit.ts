// crit's image verbs: decode, encode, show, info and x, with crit's JSON layout. The
// work is in crit-run.ts, imported when a verb runs: the CLI starts faster.

import type { ExploreWhat } from "../../images/explore.js";
import type { HelpOption } from "./help.js";
import type { CommandSpec } from "./run.js";

/** crit's -o: the output file (criu's commands use -o for the log). */
const OUT: HelpOption = { name: "out", alias: "o", kind: "string", describe: "output file (stdout by default)" };

export function critCommands(): CommandSpec[] {
  return [
    {
      command: "decode",
      describe: "convert an image from binary to JSON (crit decode)",
      options: [
        OUT,
        { name: "in", alias: "i", kind: "string", describe: "image to decode (stdin by default)" },
        { name: "pretty", kind: "boolean", describe: "indented, with hex addresses and flag names" },
      ],
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
      options: [
        OUT,
        { name: "in", alias: "i", kind: "string", describe: "JSON to encode (stdin by default)" },
        { name: "force", kind: "boolean", describe: "overwrite an existing output file" },
      ],
      handler: async (args, ctx) => {
        const { encode } = await import("./crit-run.js");
        await encode(ctx, args["in"] as string | undefined, args["out"] as string | undefined, args["force"] === true);
        return 0;
      },
    },
    {
      command: "show",
      describe: "show an image as indented JSON (crit show)",
      positionals: [{ name: "in", describe: "image file" }],
      options: [{ name: "nopl", kind: "boolean", describe: "do not show entry payload (raw data)" }],
      handler: async (args) => {
        const { printCrit, readInput } = await import("./crit-run.js");
        const { data, name } = await readInput(args["in"] as string);
        await printCrit(data, name, undefined, { pretty: true, nopl: args["nopl"] === true });
        return 0;
      },
    },
    {
      command: "info",
      describe: "show the type and entry count of an image (crit info)",
      positionals: [{ name: "in", describe: "image file" }],
      handler: async (args, ctx) => {
        const { info } = await import("./crit-run.js");
        await info(ctx, args["in"] as string);
        return 0;
      },
    },
    {
      command: "x",
      describe: "explore an image directory: ps, fds, mems, rss (crit x)",
      positionals: [
        { name: "dir", describe: "image directory" },
        { name: "what", describe: "what to show", choices: ["ps", "fds", "mems", "rss"] },
      ],
      handler: async (args, ctx) => {
        const { explore } = await import("./crit-run.js");
        await explore(ctx, args["dir"] as string, args["what"] as ExploreWhat);
        return 0;
      },
    },
  ];
}
