// A Unix98 pty pair made inside the tree (test/workloads/pty.c): the master, a slave and
// /dev/tty in a session leader whose terminal the pty is, a slave and /dev/tty in its
// child. Its
// termios, window size, owner, packet and lock modes, the data queued both ways (a
// partial line still partial) and the child's controlling terminal come back; the
// workload checks all of it itself. Images cross to criu and back.
import { existsSync, openSync, closeSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { readImage } from "../images/io.js";
import { dump } from "../orchestrator/dump/dump.js";
import { isDumpError } from "../orchestrator/dump/errors.js";
import { restore } from "../orchestrator/restore/restore.js";
import { isRestoreError } from "../orchestrator/restore/errors.js";
import { criuDumps, criuLogTail, haveRoot, restoredByCriu } from "./helpers/criu-root.js";
import { critDecodeAll, critInstalled, tempDir } from "./helpers/dump.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { goneOrZombie, startWorkload, waitFor, type Workload } from "./helpers/workloads.js";

function killChildAtEnd(t: ExecutionContext, w: Workload): void {
  t.teardown(() => {
    try {
      process.kill(Number(w.info["child"]), "SIGKILL");
    } catch {
      // gone
    }
  });
}

async function ptyPair(t: ExecutionContext, args: string[] = ["locked", "child-tty", "packet", "crlf", "partial"], opts: { static?: boolean } = {}): Promise<Workload> {
  const w = await startWorkload(t, "pty", args, opts);
  killChildAtEnd(t, w);
  t.is(await w.check(), `PASS pty=${w.info["pty"]}`, "before the dump");
  return w;
}

test.serial("pty: a pair made in the tree comes back at its index with its settings, queued data and controlling terminal", async (t) => {
  const w = await ptyPair(t);
  const dir = await dumpGone(t, w);
  await waitFor("the child to be gone after the dump", () => goneOrZombie(Number(w.info["child"])));
  const infos = (await readImage(join(dir, "tty-info.img"))).entries;
  const index = Number(w.info["pty"]);
  const master = infos.find((i) => i["id"] === index * 2 + 1);
  t.like(master, { type: "PTY", locked: true, packet_mode: true, sid: w.pid, pgrp: w.pid, pty: { index } }, "the master's info");
  const slave = infos.find((i) => i["id"] === index * 2);
  t.like(slave, { type: "PTY", uid: 1234, gid: 5678, sid: w.pid, pgrp: w.pid, winsize: { ws_row: 40, ws_col: 120 } }, "the slave's info");
  // criu's layout: glibc's c_cc bytes copied over the uint32 values (VINTR ^A, VQUIT, VERASE, VKILL)
  t.is((slave!["termios"] as { c_cc: number[] }).c_cc[0], 0x157f1c01);
  t.like(infos.find((i) => i["type"] === "CTTY"), { id: 2012, sid: w.pid }, "/dev/tty");
  const data = (await readImage(join(dir, "tty-data.img"))).entries.map((e) => [e["tty_id"], Buffer.from(e["data"] as Uint8Array).toString()]);
  t.deepEqual(new Map(data as [number, string][]), new Map([
    [index * 2 + 1, "from-slave\r\n"],
    [index * 2, "to-slave line 1\nto-slave partial"],
  ]));
  if (critInstalled(t)) t.deepEqual(critDecodeAll(dir).failed, []);
  await restoreTask(t, dir);
  killChildAtEnd(t, w);
  t.is(await w.check(), `PASS pty=${index}`, "after the restore");
});

test.serial("pty: dump -R puts the queued data back where it was; a second dump and restore", async (t) => {
  const w = await ptyPair(t);
  await dump({ pid: w.pid, imagesDir: tempDir(t), leaveRunning: true });
  t.is(await w.check(), `PASS pty=${w.info["pty"]}`, "after dump -R");
  const dir = await dumpGone(t, w);
  await restoreTask(t, dir);
  killChildAtEnd(t, w);
  t.is(await w.check(), `PASS pty=${w.info["pty"]}`, "after the restore");
});

test.serial("pty: an index taken on this host fails the restore, naming the pty and its index; nothing is left running", async (t) => {
  const w = await ptyPair(t);
  const dir = await dumpGone(t, w);
  const index = Number(w.info["pty"]);
  // Hold ptys until the dumped index is someone else's.
  const held: number[] = [];
  t.teardown(() => held.forEach((fd) => closeSync(fd)));
  while (!existsSync(`/dev/pts/${index}`) && held.length < 4096) held.push(openSync("/dev/ptmx", "r+"));
  const e = await t.throwsAsync(restore({ imagesDir: dir }));
  t.true(isRestoreError(e));
  t.regex(e.message, new RegExp(`pty ${index} \\(/dev/ptmx\\): index ${index} is in use on this host`));
  t.false(existsSync(`/proc/${w.pid}`), "the restore left nothing behind");
});

test.serial("pty: a slave whose master is outside the tree is refused without --shell-job, the task runs on", async (t) => {
  const w = await ptyPair(t);
  // The child alone: its slave's master is in its parent.
  const child = Number(w.info["child"]);
  const e = await t.throwsAsync(dump({ pid: child, imagesDir: tempDir(t), leaveRunning: true }));
  t.true(isDumpError(e));
  t.regex(e.message, /unsupported fd \d+: tty \/dev\/pts\/\d+ \(dump a shell job with --shell-job\)/);
  t.is(await w.check(), `PASS pty=${w.info["pty"]}`);
});

test.serial("criu restores tscriu's images: pty", async (t) => {
  if (!haveRoot(t)) return;
  const w = await ptyPair(t, [], { static: true });
  const dir = await dumpGone(t, w);
  await restoredByCriu(t, w.pid, dir, 60_000);
  killChildAtEnd(t, w);
  t.is(await w.check(30_000), `PASS pty=${w.info["pty"]}`);
});

test.serial("tscriu restores criu's images: pty", async (t) => {
  if (!haveRoot(t)) return;
  const c = await criuDumps(t, "pty", []);
  t.is(c.status, 0, `criu dump: ${c.stderr}\n${criuLogTail(c.images, "dump.log")}`);
  await restoreTask(t, c.images);
  t.regex(await c.check(), /^PASS pty=\d+$/);
});
