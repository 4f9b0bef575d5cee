// Small images read ahead on the thread pool during a restore's plan (restore/read-ahead.ts,
// the bridge's readFilesAsync): each file's bytes, or why it was not read, in which case
// the restore reads it itself and its errors are the usual ones.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { ReadAhead } from "../orchestrator/restore/read-ahead.js";
import { tempDir } from "./helpers/dump.js";

const nul = (paths: string[]): Buffer => Buffer.from(paths.map((p) => `${p}\0`).join(""));

test("readFilesAsync: each file's bytes in order; a missing one, one past `each` and those past `total` say why instead", async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "a"), "alpha");
  writeFileSync(join(dir, "b"), "");
  writeFileSync(join(dir, "big"), Buffer.alloc(100, 1));
  writeFileSync(join(dir, "c"), "gamma!");
  writeFileSync(join(dir, "d"), "delta");
  const names = ["a", "none", "b", "big", "c", "d"];
  const { data, lens } = await bridge().readFilesAsync(nul(names.map((n) => join(dir, n))), 64, 15);
  const ENOENT = 2n;
  const EFBIG = 27n;
  // "a" (5) and "c" (6) fit in 15 bytes; "d" would make 16
  t.deepEqual([...lens], [5n, -ENOENT, 0n, -EFBIG, 6n, -EFBIG]);
  t.is(data.toString("latin1"), "alphagamma!");
  // a /proc file says its size is 0: it is read to its end all the same
  const proc = await bridge().readFilesAsync(nul(["/proc/self/status"]), 1 << 20, 1 << 20);
  t.true(proc.lens[0]! > 0n);
  t.regex(proc.data.toString("latin1"), /^Name:/);
  const none = await bridge().readFilesAsync(Buffer.alloc(0), 64, 64);
  t.is(none.lens.length, 0);
  t.throws(() => bridge().readFilesAsync(Buffer.from("no-nul"), 1, 1), { message: /end with a NUL/ });
});

test("ReadAhead: the files picked, each given once by name; one not read ahead is undefined (read as usual)", async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "tcp-stream-1.img"), "one");
  writeFileSync(join(dir, "tcp-stream-2.img"), "two");
  writeFileSync(join(dir, "core-1.img"), "core");
  const ahead = ReadAhead.start(dir, ["tcp-stream-1.img", "tcp-stream-2.img", "core-1.img", "tcp-stream-3.img"], (n) => n.startsWith("tcp-stream-"))!;
  t.is((await ahead.take("tcp-stream-2.img"))?.toString(), "two");
  t.is(await ahead.take("tcp-stream-2.img"), undefined, "given once");
  t.is((await ahead.take("tcp-stream-1.img"))?.toString(), "one");
  t.is(await ahead.take("core-1.img"), undefined, "not picked");
  t.is(await ahead.take("tcp-stream-3.img"), undefined, "missing: read as usual");
  t.is(ReadAhead.start(dir, ["core-1.img"], (n) => n.startsWith("tcp-stream-")), undefined);
});
