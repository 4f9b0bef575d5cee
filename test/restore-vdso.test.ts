// The vDSO proxy, on every machine: a dump made here is rewritten so that its vDSO is
// another kernel's (its code all int3, getcpu's entry point moved), and the restore must
// keep it as a proxy whose entry points jump to this kernel's vDSO, parked elsewhere and
// marked as criu marks it. The task (r-vdso, calling __vdso_clock_gettime in a loop)
// would trap on the first call that reached the dumped code. A second dump of the
// restored task must dump the task's own vDSO (the proxy) and leave the kernel's out,
// and restore again.
import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { openImageDir } from "../images/dir.js";
import { VMA } from "../images/vma-status.js";
import { readMaps } from "../orchestrator/restore/layout.js";
import { vdsoSymbols } from "../orchestrator/vdso/elf.js";
import { decodeMark } from "../orchestrator/vdso/mark.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { dumpedVdso, makeForeign, type DumpedVdso } from "./helpers/vdso.js";
import { tempDir } from "./helpers/dump.js";
import { dump } from "../orchestrator/dump/dump.js";
import { startWorkload, waitFor } from "./helpers/workloads.js";

function readMem(pid: number, addr: bigint, len: number): Buffer {
  const b = Buffer.alloc(len);
  const fd = openSync(`/proc/${pid}/mem`, "r");
  try {
    readSync(fd, b, 0, len, Number(addr));
  } finally {
    closeSync(fd);
  }
  return b;
}

test("a vDSO of another kernel comes back as a proxy to this kernel's, marked; dump and restore again", async (t) => {
  const w = await startWorkload(t, "r-vdso");
  // Images taken while the task is outside the vDSO (it calls it in a loop): resumed in
  // the middle of the poisoned code, it would trap there, proxy or not.
  let dir = "";
  let v: DumpedVdso | undefined;
  for (let i = 0; i < 50 && !v; i++) {
    dir = tempDir(t);
    await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
    const core = (await readImage(join(dir, `core-${w.pid}.img`))).entries[0]!["thread_info"] as { gpregs: { ip: bigint } };
    const got = await dumpedVdso(dir, w.pid);
    if (core.gpregs.ip < got.start || core.gpregs.ip >= got.start + BigInt(got.bytes.length)) v = got;
  }
  if (!v) throw new Error("every dump caught the task inside the vDSO");
  process.kill(w.pid, "SIGKILL");
  await waitFor(`pid ${w.pid} to be free`, () => !existsSync(`/proc/${w.pid}`));
  const moved = makeForeign(v.bytes);
  v.save();
  const r = await restoreTask(t, dir);
  t.regex(await w.check(), /^PASS calls=\d+/, "the task calls the vDSO through the proxy");

  // The proxy: at the old address, each function's entry jumps to this kernel's.
  const live = readMaps(r.pid).find((m) => m.name === "[vdso]")!;
  t.not(live.start, v.start, "this kernel's vDSO is parked elsewhere");
  const mine = readMem(process.pid, readMaps("self").find((m) => m.name === "[vdso]")!.start, Number(live.end - live.start));
  const here = vdsoSymbols(mine)!;
  const image = vdsoSymbols(v.bytes)!;
  const gettime = image.get("__vdso_clock_gettime")!;
  const jump = readMem(r.pid, v.start + gettime.offset, 12);
  t.deepEqual([jump[0], jump[1], jump[10], jump[11]], [0x48, 0xb8, 0xff, 0xe0], "movabs; jmp *%rax");
  t.is(jump.readBigUInt64LE(2), live.start + here.get("__vdso_clock_gettime")!.offset);
  for (const name of moved) t.is(readMem(r.pid, v.start + image.get(name)!.offset, 2).readUInt16LE(0), 0xb848, `${name} redirected at its moved entry`);
  const mark = decodeMark(readMem(r.pid, live.start, 40));
  t.is(mark?.origVdso, v.start, "criu's mark names the task's own vDSO");

  // Dump again: the proxy is the task's [vdso], the kernel's pair is left out.
  const again = await dumpGone(t, w);
  const img = await openImageDir(again);
  t.teardown(() => img.close());
  const vmas = (await img.mm(w.pid)).vmas!;
  t.deepEqual(vmas.filter((x) => x.status & VMA.VDSO).map((x) => x.start), [v.start]);
  t.is(vmas.filter((x) => x.status & VMA.VVAR).length, 1);
  t.false(vmas.some((x) => x.start === live.start), "the parked vDSO is not in the images");
  const v2 = await dumpedVdso(again, w.pid);
  t.is(v2.bytes.readBigUInt64LE(2 + Number(gettime.offset)), jump.readBigUInt64LE(2), "the proxy's bytes were dumped");
  await restoreTask(t, again);
  t.regex(await w.check(), /^PASS calls=\d+/, "restored again through a proxy");
});
