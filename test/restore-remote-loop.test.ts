// Remote.loop: many syscalls for one ptrace stop, run by the trampoline's syscall loop in a
// restore stub. Results come back in order, as batch() gives them; the first failing call
// stops the loop and is named with its errno; more calls than one table holds run in
// several loops; once the task's handlers are in (useExitStops) it runs as batch().
import test from "ava";
import { NR, LOOP_MAX, Remote, TRAMPOLINE_SIZE } from "../orchestrator/restore/remote.js";
import { findGap, readMaps } from "../orchestrator/restore/layout.js";
import { killCreated, seizeStub, spawnStub } from "../orchestrator/restore/spawn.js";

const GETPID = 39;
const GETPPID = 110;

async function stub(t: import("ava").ExecutionContext): Promise<Remote> {
  const s = spawnStub({ mode: "child" });
  t.teardown(() => killCreated([{ pid: s.pid, tids: [] }]));
  seizeStub(s.pid);
  return Remote.create(s.pid, findGap(readMaps(s.pid), TRAMPOLINE_SIZE));
}

test("loop: results in order, for more calls than one table holds", async (t) => {
  const r = await stub(t);
  const n = LOOP_MAX * 2 + 7;
  const calls = Array.from({ length: n }, (_, i) => (i % 2 ? { what: "getppid", nr: GETPPID, args: [] } : { what: "getpid", nr: GETPID, args: [] }));
  const res = r.loop(calls);
  t.is(res.length, n);
  const ppid = r.call("getppid", GETPPID);
  t.true(res.every((v, i) => v === (i % 2 ? ppid : BigInt(r.pid))), "each call's own result");
  t.is(r.call("getpid after the loops", GETPID), BigInt(r.pid), "the trampoline still works");
});

test("loop: the first failing call stops it and is named with its errno", async (t) => {
  const r = await stub(t);
  const calls = [
    { what: "getpid", nr: GETPID, args: [] },
    { what: "close(fd 4000) that is not open", nr: NR.close, args: [4000] },
    { what: "getpid after the failure", nr: GETPID, args: [] },
  ];
  const err = t.throws(() => r.loop(calls));
  t.regex(err?.message ?? "", /close\(fd 4000\) that is not open: EBADF/);
  t.is(r.call("getpid", GETPID), BigInt(r.pid), "the stub goes on");
});

test("loop: after useExitStops it runs as batch does", async (t) => {
  const r = await stub(t);
  r.useExitStops();
  t.deepEqual(r.loop([{ what: "getpid", nr: GETPID, args: [] }]), [BigInt(r.pid)]);
});
