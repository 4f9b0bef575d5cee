// A message type decodes through its table the first few times, then through a decoder
// generated for it (images/message.ts): both ways must give the same entries and the same
// errors. This file runs in a process of its own, and its first round is the first
// decoding of every type in it: by the table; the later rounds are by generated decoders.
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeImage } from "../images/codec.js";
import { FIXTURES, imageFiles } from "./helpers/fixtures.js";

/** More decodings than any type takes by its table. */
const ROUNDS = 40;

/** The entries, or the error's message: what a caller sees. */
function outcome(buf: Uint8Array, name: string): unknown {
  try {
    return decodeImage(buf, name).entries;
  } catch (e) {
    return `error: ${(e as Error).message}`;
  }
}

test("fixtures and damaged fixtures decode to the same entries and errors by the table and by the generated decoder", (t) => {
  const inputs: { name: string; buf: Uint8Array }[] = [];
  for (const [fx, f] of imageFiles()) {
    const src = readFileSync(join(FIXTURES, fx, f));
    inputs.push({ name: `${fx}/${f}`, buf: src });
    // A byte changed here and there: unknown fields, wrong wire types, lengths past the
    // end, missing required fields.
    for (let at = 8; at < Math.min(src.length, 120); at += 13) {
      for (const v of [0x00, 0x0a, 0x7f, 0xff]) {
        const buf = new Uint8Array(src);
        buf[at] = v;
        inputs.push({ name: `${fx}/${f}@${at}=${v}`, buf });
      }
    }
  }
  const first = inputs.map((i) => outcome(i.buf, "x.img"));
  t.true(first.filter((o) => typeof o === "string").length > 100, "enough of them fail");
  for (let round = 1; round < ROUNDS; round++) {
    inputs.forEach((i, k) => t.deepEqual(outcome(i.buf, "x.img"), first[k], `${i.name}, round ${round}`));
  }
});
