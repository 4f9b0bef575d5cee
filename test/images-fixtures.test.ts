// The codec against criu 4.2's own images and crit's own output for them.
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeImage, encodeImage, iterateImage } from "../images/codec.js";
import { fromCrit, toCrit, writeCrit } from "../images/crit-json.js";
import { openImageDir } from "../images/dir.js";
import { EXPLORERS, type ExploreWhat } from "../images/explore.js";
import { readImageEntries } from "../images/io.js";
import { JsonWriter, parseJson, stringifyJson } from "../images/json.js";
import { FIXTURES, fixtureDirs, imageFiles } from "./helpers/fixtures.js";

const critJson = (fx: string, f: string, pretty: boolean) =>
  parseJson(readFileSync(join(FIXTURES, fx, "crit", `${f}${pretty ? ".pretty" : ""}.json`), "utf8"));

for (const [fx, f] of imageFiles()) {
  const path = join(FIXTURES, fx, f);

  test(`decode ${fx}/${f} equals crit decode`, (t) => {
    const img = decodeImage(readFileSync(path), path);
    // Through our own JSON text, so numbers compare exactly as crit wrote them.
    t.deepEqual(parseJson(stringifyJson(toCrit(img, false))), critJson(fx, f, false));
  });

  test(`decode --pretty ${fx}/${f} equals crit decode --pretty`, (t) => {
    const img = decodeImage(readFileSync(path), path);
    t.deepEqual(parseJson(stringifyJson(toCrit(img, true), 4)), critJson(fx, f, true));
  });

  test(`decode's text of ${fx}/${f} is crit's text, byte for byte (plain and pretty)`, (t) => {
    for (const pretty of [false, true]) {
      const w = new JsonWriter(pretty ? 4 : undefined);
      writeCrit(w, iterateImage(readFileSync(path), path, { loose64: true }), pretty);
      t.is(w.text(), readFileSync(join(FIXTURES, fx, "crit", `${f}${pretty ? ".pretty" : ""}.json`), "utf8"), pretty ? "pretty" : "plain");
    }
  });

  test(`encode(decode(${fx}/${f})) is byte-identical`, (t) => {
    const bytes = readFileSync(path);
    t.true(Buffer.from(encodeImage(decodeImage(bytes, path))).equals(bytes));
  });

  test(`encode of crit's JSON of ${fx}/${f} (plain and pretty) is byte-identical`, (t) => {
    const bytes = readFileSync(path);
    for (const pretty of [false, true]) {
      t.true(Buffer.from(encodeImage(fromCrit(critJson(fx, f, pretty)))).equals(bytes), pretty ? "pretty" : "plain");
    }
  });

  test(`streaming reader of ${fx}/${f} gives the same entries`, async (t) => {
    const whole = decodeImage(readFileSync(path), path);
    const streamed = [];
    for await (const e of readImageEntries(path)) streamed.push(e);
    t.deepEqual(streamed, whole.entries);
  });
}

for (const fx of fixtureDirs()) {
  if (fx === "cpuinfo") continue; // no process tree
  for (const what of ["ps", "fds", "mems", "rss"] as ExploreWhat[]) {
    test(`x ${fx} ${what} matches crit x`, async (t) => {
      const dir = await openImageDir(join(FIXTURES, fx));
      const mine = (await EXPLORERS[what](dir)).join("\n");
      await dir.close();
      const norm = (s: string) =>
        s
          .split("\n")
          .map((l) => l.trimEnd())
          .join("\n")
          .trim();
      t.is(norm(mine), norm(readFileSync(join(FIXTURES, fx, "crit", `x-${what}.txt`), "utf8")));
    });
  }
}

test("page reader returns the memory fixture's known pattern", async (t) => {
  const dir = await openImageDir(join(FIXTURES, "memory"));
  t.teardown(() => dir.close());
  const pages = await dir.pages(15335);
  // u64 at offset o of the 8 MiB region at 0x200000000 is 0xA5A5000000000000 | o,
  // written on pages 0..63 and every 32nd page after.
  for (const pageNo of [0, 1, 17, 63, 64, 96, 2016]) {
    const base = 0x200000000n + BigInt(pageNo * 4096);
    const buf = await pages.read(base, 4096);
    const dv = new DataView(buf.buffer);
    for (let o = 0; o < 4096; o += 8) {
      const want = 0xa5a5000000000000n | BigInt(pageNo * 4096 + o);
      if (dv.getBigUint64(o, true) !== want) return t.fail(`page ${pageNo} offset ${o}`);
    }
  }
  // A read across two runs (page 64 is the last of the first run, 96 a single page).
  const across = await pages.read(0x200000000n + 64n * 4096n + 4088n, 8);
  t.is(new DataView(across.buffer).getBigUint64(0, true), 0xa5a5000000000000n | BigInt(64 * 4096 + 4088));
  // Read-only region of 'R' and the dumped page of the private file map, all 'P'.
  t.true((await pages.read(0x204000000n, 16384)).every((b) => b === 0x52));
  t.true((await pages.read(0x202001000n, 4096)).every((b) => b === 0x50));
  // Untouched pages were not dumped: a clear error, not zeros.
  await t.throwsAsync(pages.read(0x200000000n + 65n * 4096n, 8), { message: /not in the dump/ });
});
