// Netlink sockets (issue 9): NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT and NETLINK_USERSOCK
// sockets (test/workloads/netlinksk.c) with their port ids, groups (past 32 too), peer
// and options come back, and each works: a link dump through the route socket, a message
// from the connected socket to its peer. criu restores tscriu's images and tscriu
// criu's (the workload keeps to 32 groups for criu, which refuses more). A socket with
// an option criu's entry cannot hold, or with messages queued, is refused by name and
// the task runs on; hostile entries are refused at plan naming files.img.
import { join } from "node:path";
import test from "ava";
import { readImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { tempDir } from "./helpers/dump.js";
import { dumpGone, refusedAtPlan, restoreTask, status, type FileFields } from "./helpers/restore.js";
import { startWorkload } from "./helpers/workloads.js";

type E = Record<string, unknown>;

async function netlinkEntries(dir: string): Promise<E[]> {
  return (await readImage(join(dir, "files.img"))).entries.filter((e) => e["type"] === "NETLINKSK").map((e) => e["nlsk"] as E);
}

test("netlink sockets come back with their port ids, groups past 32, peer and options, and work", async (t) => {
  const w = await startWorkload(t, "netlinksk", ["all"]);
  t.is(await w.check(), "PASS netlinksk");
  const dir = await dumpGone(t, w);
  const nl = await netlinkEntries(dir);
  t.is(nl.length, 6);
  const port = Number(w.info["port"]);
  const byPort = (p: number): E | undefined => nl.find((e) => e["portid"] === p);
  t.like(byPort(Number(w.info["autoport"])), { protocol: 0, groups: [1, 1], state: 7 }, "fd 3: groups 1 and 33");
  t.like(byPort(port), { protocol: 0, groups: undefined, state: 7 }, "fd 4: unconnected, as criu writes it (TCP_CLOSE)");
  t.like(byPort(port + 2), { protocol: 2, state: 1, dst_portid: port + 1, dst_group: 0 }, "fd 8: connected to fd 7");
  t.like(
    nl.find((e) => e["protocol"] === 15),
    { portid: 0, state: 0, ns_id: undefined },
    "fd 5: NETLINK_KOBJECT_UEVENT, never bound: in no sock_diag table, written as criu writes it",
  );
  await restoreTask(t, dir);
  t.is(await w.check(), "PASS netlinksk", "ports, groups, options, a link dump and a message between the two USERSOCK sockets");
});

test("a netlink socket with NETLINK_EXT_ACK on, or with a message queued, is refused by name; the task runs on", async (t) => {
  for (const [mode, re] of [
    ["extack", /unsupported fd 9: netlink socket socket:\[\d+\] has NETLINK_EXT_ACK on, which criu's image has no field for/],
    ["queued", /unsupported fd 7: netlink socket socket:\[\d+\] has messages queued to read/],
  ] as const) {
    const w = await startWorkload(t, "netlinksk", [mode]);
    const err = await t.throwsAsync(dump({ pid: w.pid, imagesDir: join(tempDir(t), "img") }));
    t.regex(err?.message ?? "", re, mode);
    t.is(status(w.pid).get("TracerPid"), "0", `${mode}: not traced`);
    if (mode === "extack") t.is(await w.check(), "PASS netlinksk", "the task works on");
  }
});

test("hostile netlink entries (a protocol past 31, an unknown state, a group of a connection past 32): refused at plan naming files.img", async (t) => {
  const w = await startWorkload(t, "netlinksk", ["all"]);
  const dir = await dumpGone(t, w);
  const cases: [string, (e: FileFields) => void, RegExp][] = [
    ["protocol 99", (e) => void (e["protocol"] = 99), /has the protocol 99; netlink protocols are 0\.\.31/],
    ["state 5", (e) => void (e["state"] = 5), /is in the state 5/],
    ["dst_group 40", (e) => void ((e["state"] = 1), (e["dst_group"] = 40)), /is connected to the group 40/],
  ];
  await refusedAtPlan(t, dir, "NETLINKSK", "nlsk", cases);

});

test.serial("criu restores tscriu's images of netlink sockets", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "netlinksk", ["upto32"], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  t.is(await w.check(30_000), "PASS netlinksk");
});

test.serial("tscriu restores criu's images of netlink sockets", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "netlinksk", ["upto32"]);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  if (c.status !== 0) return;
  await restoreTask(t, c.images);
  t.is(await c.check(), "PASS netlinksk");
});
