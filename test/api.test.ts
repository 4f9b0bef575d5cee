// The package as a library: `import … from "tscriu"` resolves to the built entry
// (dist/, made by `npm test` before ava) and offers the documented functions.
import test from "ava";
import { join } from "node:path";
import { FIXTURES } from "./helpers/fixtures.js";

type Api = typeof import("../orchestrator/api.js");

test("the package entry exports the image, wasm and tool functions", async (t) => {
  const api: Api = await import("tscriu");
  for (const name of [
    "openImageDir",
    "readImage",
    "readImageEntries",
    "writeImage",
    "decodeImage",
    "encodeImage",
    "toCrit",
    "fromCrit",
    "hashPages",
    "diffPages",
    "planDedup",
    "compareCpuinfo",
    "cpuinfoDump",
    "cpuinfoCheck",
    "dedup",
  ] as const) {
    t.is(typeof api[name], "function", name);
  }
  const dir = await api.openImageDir(join(FIXTURES, "threads"));
  const tasks = await dir.tasks();
  t.deepEqual(
    tasks.map((x) => x.pid),
    [15672],
  );
  const threads = tasks[0]!.entry.threads ?? [];
  t.is(threads.length, 5);
  const core = await dir.core(threads[3]!);
  t.is(core.thread_core?.comm, "worker-2");
  t.is(typeof core.thread_info?.gpregs.ip, "bigint");
  const mm = await dir.mm(15672);
  t.is(mm.vmas?.length, 39);
  t.is((await dir.files()).get(1)?.type, "REG");
  await dir.close();
  const h = api.hashPages(new Uint8Array(8192));
  t.is(h.hashes.length, 2);
  t.deepEqual([...h.zero], [1, 1]);
});
