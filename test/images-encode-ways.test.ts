// A message type encodes the general way the first few times, then through an encoder
// made for it (images/encoder.ts), which gives up on anything but plain values: both ways
// must give the same bytes and the same errors. This file runs in a process of its own,
// and its first round is the first encoding of every type in it: the general way; the
// later rounds go through the made encoders.
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeImage, encodeImage, type ImageEntry } from "../images/codec.js";
import type { ImageType } from "../images/registry-types.js";
import { FIXTURES, imageFiles } from "./helpers/fixtures.js";

/** More encodings than any type takes the general way. */
const ROUNDS = 20;

/** Values of the wrong type, range or shape, and none at all. */
const BAD: unknown[] = [undefined, "x", -1, 2 ** 40, 1.5, 5n, -(2n ** 70n), true, [], [1, "x"], {}, null, new Uint8Array(3)];

/** The bytes, or the error's message: what a caller sees. */
function outcome(type: ImageType, entries: ImageEntry[]): unknown {
  try {
    return Buffer.from(encodeImage({ type, entries }));
  } catch (e) {
    return `error: ${(e as Error).message}`;
  }
}

/** `entry` with field `key` (of it, or of the nested message `inner`) set to v (deleted for undefined). */
function changed(entry: ImageEntry, key: string, v: unknown, inner?: string): ImageEntry {
  const copy: Record<string, unknown> = { ...entry };
  const target = inner ? (copy[inner] = { ...(copy[inner] as Record<string, unknown>) }) : copy;
  if (v === undefined) delete target[key];
  else target[key] = v;
  return copy;
}

test("fixtures, and entries with bad values, encode to the same bytes and errors the general way and by the made encoders", (t) => {
  const inputs: { name: string; type: ImageType; entries: ImageEntry[] }[] = [];
  for (const [fx, f] of imageFiles()) {
    let img;
    try {
      img = decodeImage(readFileSync(join(FIXTURES, fx, f)), f);
    } catch {
      continue; // the damaged fixtures
    }
    inputs.push({ name: `${fx}/${f}`, type: img.type, entries: img.entries });
    // The first entries with each field, and each field of their nested messages, made bad.
    img.entries.slice(0, 2).forEach((e, i) => {
      for (const [k, val] of Object.entries(e)) {
        if (k === "extra") continue;
        const inners = val !== null && typeof val === "object" && !Array.isArray(val) && !(val instanceof Uint8Array) ? Object.keys(val) : [];
        for (const bad of BAD) {
          inputs.push({ name: `${fx}/${f}[${i}].${k}=${String(bad)}`, type: img.type, entries: [changed(e, k, bad)] });
          for (const ik of inners) inputs.push({ name: `${fx}/${f}[${i}].${k}.${ik}=${String(bad)}`, type: img.type, entries: [changed(e, ik, bad, k)] });
        }
      }
      inputs.push({ name: `${fx}/${f}[${i}] with an unknown key`, type: img.type, entries: [{ ...e, no_such_field: 1 }] });
    });
  }
  const first = inputs.map((i) => outcome(i.type, i.entries));
  t.true(first.filter((o) => typeof o === "string").length > 500, "enough of them fail");
  t.true(first.filter((o) => typeof o !== "string").length > 200, "enough of them encode");
  for (let round = 1; round < ROUNDS; round++) {
    inputs.forEach((i, k) => t.deepEqual(outcome(i.type, i.entries), first[k], `${i.name}, round ${round}`));
  }
});
