// This process's own fresh memory faulted in ahead (host-bridge/src/prefault.c): V8's young
// generation filled so that allocating in it no longer faults, a region unmapped between
// its filling and its read, and the passes' thread (one per process, ending on its own).
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import test from "ava";
import { bridge } from "../host-bridge/load.js";

const b = bridge();
const ADDON = fileURLToPath(new URL("../host-bridge/build/Release/tscriu_bridge.node", import.meta.url));

// A fresh Node with the launcher's young generation (16 MiB, committed at start) allocates
// 60,000 small objects, with a pass first or not, and counts its main thread's faults
// during the allocation only (the pass's own are counted before).
const CHILD = `
const b = require(process.argv[1]);
const { readFileSync } = require("node:fs");
const faults = () => Number(readFileSync("/proc/thread-self/stat", "utf8").split(") ")[1].split(" ")[7]);
const pass = process.argv[2] === "pass" ? b.prefaultPass(false) : null;
const before = faults();
let n = 0;
for (let i = 0; i < 60000; i++) n += { a: i, b: [i, i + 1], c: "x" + i }.b.length;
console.log(JSON.stringify({ pass, faults: faults() - before, n }));
`;

function allocate(mode: "pass" | "none"): { pass: { regions: number; pages: number; cut: number } | null; faults: number; n: number } {
  const out = execFileSync(process.execPath, ["--min-semi-space-size=16", "--max-semi-space-size=64", "-e", CHILD, ADDON, mode], { encoding: "utf8" });
  return JSON.parse(out) as ReturnType<typeof allocate>;
}

test("a pass fills V8's young generation: allocating in it then faults a fraction as often", (t) => {
  const without = allocate("none");
  const withPass = allocate("pass");
  t.is(without.n, 120000);
  t.is(withPass.n, 120000);
  t.truthy(withPass.pass);
  // 16 MiB of semi-space, 4,096 pages, nearly all of it not yet written
  t.true(withPass.pass!.pages >= 2048, `pages filled: ${withPass.pass!.pages}`);
  t.is(withPass.pass!.cut, 0);
  t.true(without.faults >= 500, `faults without a pass: ${without.faults}`);
  t.true(withPass.faults * 4 < without.faults, `faults: ${withPass.faults} with a pass, ${without.faults} without`);
});

test("a region unmapped between its filling and its read ends its read there; the process goes on", (t) => {
  const cut = b.prefaultPass(true);
  t.is(cut.cut, 1);
  t.true(cut.regions >= 1);
  // the handler is gone again and the next pass reads as usual
  const next = b.prefaultPass(false);
  t.is(next.cut, 0);
  const bytes = new Uint8Array(1 << 20).fill(7);
  t.is(bytes[bytes.length - 1], 7);
});

test("prefaultPass checks its argument", (t) => {
  t.throws(() => (b.prefaultPass as (x: unknown) => unknown)("yes"), { instanceOf: TypeError, message: /injectUnmapped must be a boolean/ });
});

const passThreads = (): number =>
  readdirSync("/proc/self/task").filter((tid) => {
    try {
      return readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim() === "tscriu-prefault";
    } catch {
      return false; // a thread that ended while listed
    }
  }).length;

test.serial("prefaultStart starts one thread per process, which ends after its passes", async (t) => {
  b.prefaultStart();
  b.prefaultStart();
  t.is(passThreads(), 1);
  // half a second of passes; then the thread is gone
  for (let i = 0; i < 500 && passThreads() > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.is(passThreads(), 0);
  b.prefaultStart();
  t.is(passThreads(), 0, "a later call starts nothing");
});
