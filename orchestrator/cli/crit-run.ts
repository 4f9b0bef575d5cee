// The work of crit's verbs (orchestrator/cli/crit.ts declares them): loaded only when
// one of them runs, so that dump, restore and the rest start without the JSON side of
// the codec.

import { readFile, writeFile } from "node:fs/promises";
import { closeSync, constants as fsc, openSync, writeSync } from "node:fs";
import { countEntries, encodeImage, iterateImage } from "../../images/codec.js";
import { fromCrit, writeCrit } from "../../images/crit-json.js";
import { openImageDir } from "../../images/dir.js";
import { ImageError } from "../../images/errors.js";
import { EXPLORERS, type ExploreWhat } from "../../images/explore.js";
import { JsonWriter, parseJson, stringifyJson } from "../../images/json.js";
import type { CliContext } from "./run.js";

export async function readInput(path: string | undefined): Promise<{ data: Buffer; name: string }> {
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
export async function printCrit(data: Uint8Array, name: string, out: string | undefined, opts: { pretty: boolean; nopl?: boolean }): Promise<void> {
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

export async function encode(ctx: CliContext, input: string | undefined, out: string | undefined, force: boolean): Promise<void> {
  const { data, name } = await readInput(input);
  let json;
  try {
    json = parseJson(data.toString("utf8"));
  } catch (e) {
    throw new ImageError(`not JSON (encode expects crit's JSON): ${(e as Error).message}`, { file: name });
  }
  await writeOutput(ctx, out, encodeImage(fromCrit(json, name)), force);
}

export async function info(ctx: CliContext, input: string): Promise<void> {
  const { data, name } = await readInput(input);
  const { type, count } = countEntries(data, name);
  await ctx.out(stringifyJson({ magic: type.name, count }, 4) + "\n");
}

export async function explore(ctx: CliContext, path: string, what: ExploreWhat): Promise<void> {
  const dir = await openImageDir(path);
  try {
    const lines = await EXPLORERS[what](dir);
    await ctx.out(lines.map((l) => l + "\n").join(""));
  } finally {
    await dir.close();
  }
}
