// crit's image verbs: decode, encode, show, info and x, with crit's JSON layout.

import { readFile, writeFile } from "node:fs/promises";
import { closeSync, constants as fsc, openSync, writeSync } from "node:fs";
import { countEntries, encodeImage, iterateImage } from "../../images/codec.js";
import { fromCrit, writeCrit } from "../../images/crit-json.js";
import { openImageDir } from "../../images/dir.js";
import { ImageError } from "../../images/errors.js";
import { EXPLORERS, type ExploreWhat } from "../../images/explore.js";
import { JsonWriter, parseJson, stringifyJson } from "../../images/json.js";
import type { CliContext, CommandSpec } from "./run.js";

async function readInput(path: string | undefined): Promise<{ data: Buffer; name: string }> {
  if (path !== undefined && path !== "-") {
    try {
      return { data: await readFile(path), name: path };
    } catch (e) {
      throw new ImageError(`cannot read input: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: path });
    }
  }
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return { data: Buffer.concat(chunks), name: "<stdin>" };
}

async function writeOutput(ctx: CliContext, path: string | undefined, data: string | Uint8Array, force: boolean): Promise<void> {
  if (path === undefined || path === "-") return ctx.out(data);
  try {
    // An image is never overwritten silently (JSON output may be, as with crit).
    const flag = force || typeof data === "string" ? "w" : fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL;
    await writeFile(path, data, { flag });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new ImageError("output exists; refusing to overwrite an image (use --force)", { file: path });
    throw new ImageError(`cannot write output: ${code ?? (e as Error).message}`, { file: path });
  }
}

/** Opens a JSON output file (replaced if it exists, as crit does). */
function openOutput(path: string): number {
  try {
    return openSync(path, "w", 0o644);
  } catch (e) {
    throw new ImageError(`cannot write output: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: path });
  }
}

/** Writes a whole chunk synchronously; a non-blocking pipe may take it in parts. */
function writeAll(fd: number, chunk: Uint8Array): void {
  let off = 0;
  while (off < chunk.length) {
    try {
      off += writeSync(fd, chunk, off, chunk.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

/**
 * Decodes an image to crit's JSON on a file or stdout, entry by entry (a large
 * image is never held decoded as a whole); stdout gets a final newline, as crit's.
 */
async function printCrit(data: Uint8Array, name: string, out: string | undefined, opts: { pretty: boolean; nopl?: boolean }): Promise<void> {
  const img = iterateImage(data, name, { loose64: true });
  const toStdout = out === undefined || out === "-";
  const fd = toStdout ? 1 : openOutput(out);
  try {
    const w = new JsonWriter(opts.pretty ? 4 : undefined, (chunk) => writeAll(fd, chunk));
    writeCrit(w, img, opts.pretty, { nopl: opts.nopl === true });
    if (toStdout) w.raw("\n");
    w.end();
  } finally {
    if (!toStdout) closeSync(fd);
  }
}

export function critCommands(): CommandSpec[] {
  return [
    {
      command: "decode",
      describe: "convert an image from binary to JSON (crit decode)",
      builder: (y) =>
        y
          .option("in", { alias: "i", type: "string", describe: "image to decode (stdin by default)" })
          .option("pretty", { type: "boolean", describe: "indented, with hex addresses and flag names" }),
      handler: async (args) => {
        const { data, name } = await readInput(args["in"] as string | undefined);
        await printCrit(data, name, args["out"] as string | undefined, { pretty: args["pretty"] === true });
        return 0;
      },
    },
    {
      command: "encode",
      describe: "convert an image from JSON to binary (crit encode)",
      builder: (y) =>
        y
          .option("in", { alias: "i", type: "string", describe: "JSON to encode (stdin by default)" })
          .option("force", { type: "boolean", describe: "overwrite an existing output file" }),
      handler: async (args, ctx) => {
        const { data, name } = await readInput(args["in"] as string | undefined);
        let json;
        try {
          json = parseJson(data.toString("utf8"));
        } catch (e) {
          throw new ImageError(`not JSON (encode expects crit's JSON): ${(e as Error).message}`, { file: name });
        }
        const bytes = encodeImage(fromCrit(json, name));
        await writeOutput(ctx, args["out"] as string | undefined, bytes, args["force"] === true);
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
        const { data, name } = await readInput(args["in"] as string);
        const { type, count } = countEntries(data, name);
        await ctx.out(stringifyJson({ magic: type.name, count }, 4) + "\n");
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
        const dir = await openImageDir(args["dir"] as string);
        try {
          const lines = await EXPLORERS[args["what"] as ExploreWhat](dir);
          await ctx.out(lines.map((l) => l + "\n").join(""));
        } finally {
          await dir.close();
        }
        return 0;
      },
    },
  ];
}
