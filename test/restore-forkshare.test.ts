// Open file descriptions that several processes of the tree hold, inherited across fork
// (test/workloads/forkshare.c: the shapes of criu's zdtm transition tests unix_sock and
// epoll): a unix connection whose server end a later child holds too, a socketpair held
// whole by two processes, an epoll shared with a child that closed its copy of the
// epoll's target. Each is planned and made once for the whole tree: a second plan of
// the server end made a second socketpair and connected the client to it (the data of
// the queue went to the wrong socket, and the client's writes hit a closed peer); the
// child's plan refused the epoll whose target it does not hold, though the process that
// made it does. Through tscriu, and through criu both ways.
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage } from "../images/io.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { killAtEnd, startWorkload, type Workload } from "./helpers/workloads.js";

type E = Record<string, unknown>;

async function forkshare(t: ExecutionContext, args: string[] = [], opts: { static?: boolean } = {}): Promise<Workload> {
  const w = await startWorkload(t, "forkshare", args, opts);
  // (they die with their parent too: PR_SET_PDEATHSIG)
  killAtEnd(t, [Number(w.info["c1"]), Number(w.info["c2"])]);
  t.is(await w.check(), "PASS forkshare", "before the dump");
  return w;
}

async function fdinfo(dir: string, pid: number): Promise<E[]> {
  const ids = (await readImage(join(dir, `ids-${pid}.img`))).entries[0]!;
  return (await readImage(join(dir, `fdinfo-${String(ids["files_id"])}.img`))).entries;
}

test("a unix connection whose server end a later child holds, a socketpair two processes hold, an epoll shared with a child that closed its target: each made once, the queues where they were", async (t) => {
  const w = await forkshare(t);
  const [c1, c2] = [Number(w.info["c1"]), Number(w.info["c2"])];
  const dir = await dumpGone(t, w);
  // What the test is about: the images really hold the sharing.
  const [p, k1, k2] = await Promise.all([w.pid, c1, c2].map((pid) => fdinfo(dir, pid)));
  const ids = (fds: E[], type: string): Set<unknown> => new Set(fds.filter((f) => f["type"] === type).map((f) => f["id"]));
  const shared = [...ids(p!, "UNIXSK")].filter((id) => ids(k2!, "UNIXSK").has(id));
  t.true(shared.length >= 1, "C2 holds a socket of P's (the server end of C1's connection)");
  const epoll = [...ids(p!, "EVENTPOLL")];
  t.is(epoll.length, 1);
  t.true(ids(k1!, "EVENTPOLL").has(epoll[0]), "C1 holds P's epoll");
  const files = (await readImage(join(dir, "files.img"))).entries;
  const ep = files.find((f) => f["id"] === epoll[0])!["epfd"] as { tfd: { tfd: number }[] };
  const target = ep.tfd[0]!.tfd;
  t.true(p!.some((f) => f["fd"] === target), "the epoll's target is an fd of P");
  t.false(k1!.some((f) => f["fd"] === target), "and not of C1");
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS forkshare", "after the restore");
  t.is(await w.check(), "PASS forkshare", "and again");
});

test("the same with the epoll's target held by every process: the sockets alone (a second plan of a shared socket broke its connection)", async (t) => {
  const w = await forkshare(t, ["keep-target"]);
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS forkshare", "after the restore");
  t.is(await w.check(), "PASS forkshare", "and again");
});

test.serial("criu restores tscriu's images of forkshare", async (t) => {
  if (!haveRoot(t)) return;
  const w = await forkshare(t, [], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir);
  t.is(await w.check(), "PASS forkshare");
});

test.serial("tscriu restores criu's images of forkshare", async (t) => {
  if (!haveRoot(t)) return;
  const d = await criuDumps(t, "forkshare", []);
  t.is(d.status, 0, `criu dump: ${d.stderr}\n${criuLogTail(d.images, "dump.log")}`);
  await restoreTask(t, d.images);
  t.is(await d.check(), "PASS forkshare");
  t.is(await d.check(), "PASS forkshare", "and again");
});
