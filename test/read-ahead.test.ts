// Small files read ahead on the thread pool (orchestrator/read-ahead.ts, the bridge's
// readFilesAsync): a restore's tcp-stream images, a dump's fdinfo files. Each file's bytes,
// or why it was not read, in which case its reader reads it itself and its errors are the
// usual ones.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { listFds, readFdinfoAhead, readProc } from "../orchestrator/dump/proc.js";
import { ReadAhead } from "../orchestrator/read-ahead.js";
import { tempDir } from "./helpers/dump.js";
import { procState, startWorkload, waitFor } from "./helpers/workloads.js";

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

test("ReadAhead: the files named, each given once by name; one not read ahead is undefined (read as usual)", async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "tcp-stream-1.img"), "one");
  writeFileSync(join(dir, "tcp-stream-2.img"), "two");
  writeFileSync(join(dir, "core-1.img"), "core");
  const ahead = new ReadAhead(dir, ["tcp-stream-1.img", "tcp-stream-2.img", "tcp-stream-3.img"]);
  t.deepEqual([...(await ahead.all()).keys()].sort(), ["tcp-stream-1.img", "tcp-stream-2.img"]);
  t.is((await ahead.take("tcp-stream-2.img"))?.toString(), "two");
  t.is(await ahead.take("tcp-stream-2.img"), undefined, "given once");
  t.is((await ahead.take("tcp-stream-1.img"))?.toString(), "one");
  t.is(await ahead.take("core-1.img"), undefined, "not named");
  t.is(await ahead.take("tcp-stream-3.img"), undefined, "missing: read as usual");
  t.is((await new ReadAhead(dir, []).all()).size, 0);
});

test("readFdinfoAhead: every fd of a stopped process, each text as /proc gives it", async (t) => {
  const w = await startWorkload(t, "anonfds", ["epoll"]);
  process.kill(w.pid, "SIGSTOP");
  t.teardown(() => process.kill(w.pid, "SIGCONT"));
  await waitFor("the workload stopped", () => procState(w.pid) === "T");
  const ahead = await readFdinfoAhead(w.pid);
  const fds = listFds(w.pid);
  t.true(fds.length > 3);
  t.deepEqual([...ahead.keys()], fds.map(String));
  for (const fd of fds) t.is(ahead.get(String(fd))?.toString("utf8"), readProc(w.pid, `fdinfo/${fd}`), `fd ${fd}`);
});
