// Helper of bench-decode.ts: decodes each listed image to crit's JSON text N times in one process.
import { readFileSync } from "node:fs";
import { decodeImage } from "../images/codec.js";
import { writeCrit } from "../images/crit-json.js";
import { JsonWriter } from "../images/json.js";

const files = readFileSync(process.argv[2]!, "utf8").split("\n").filter(Boolean);
const n = Number(process.argv[3] ?? 1);
let bytes = 0;
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  for (const f of files) {
    const w = new JsonWriter(undefined, (c) => (bytes += c.length));
    writeCrit(w, decodeImage(readFileSync(f), f, { loose64: true }));
    w.end();
  }
}
if (bytes === 0) throw new Error("nothing decoded");
console.log((performance.now() - t0) / 1000);
