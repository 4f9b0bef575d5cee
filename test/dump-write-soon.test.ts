// Images written on the thread pool while a dump goes on (ImageSet.writeSoon, the bridge's
// writeNewFiles): a connection's tcp-stream image as it is read. Each file new, written
// whole or not left behind; the first failure names its file, nothing after it is
// written, and the dump's list of what it wrote holds exactly what was made.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { readImage } from "../images/io.js";
import { Faults } from "../orchestrator/dump/faults.js";
import { ImageSet } from "../orchestrator/dump/write.js";
import { tempDir } from "./helpers/dump.js";

const nul = (paths: string[]): Buffer => Buffer.from(paths.map((p) => `${p}\0`).join(""));

test("writeNewFiles: each file made and written whole; at an existing one it stops, naming it, the files before it written", async (t) => {
  const dir = tempDir(t);
  const [a, b, c] = ["a", "b", "c"].map((n) => join(dir, n)) as [string, string, string];
  t.is(await bridge().writeNewFiles(nul([a, b]), Buffer.from("onetwo!"), BigUint64Array.of(3n, 4n)), 2);
  t.is(readFileSync(a, "latin1"), "one");
  t.is(readFileSync(b, "latin1"), "two!");
  const d = join(dir, "d");
  const err = await t.throwsAsync(bridge().writeNewFiles(nul([c, a, d]), Buffer.from("xyz"), BigUint64Array.of(1n, 1n, 1n)));
  t.like(err, { code: "EEXIST", syscall: "open", path: a, index: 1 });
  t.is(readFileSync(c, "latin1"), "x");
  t.is(readFileSync(a, "latin1"), "one", "the existing file is untouched");
  t.false(existsSync(d), "nothing after the failure");
  const err2 = await t.throwsAsync(bridge().writeNewFiles(nul([join(dir, "none", "e")]), Buffer.alloc(0), BigUint64Array.of(0n)));
  t.like(err2, { code: "ENOENT", index: 0 });
  // lengths that do not add up, or a path count that does not match, are refused at the call
  t.throws(() => bridge().writeNewFiles(nul([d]), Buffer.from("ab"), BigUint64Array.of(3n)), { message: /add up/ });
  t.throws(() => bridge().writeNewFiles(nul([d, c]), Buffer.from("ab"), BigUint64Array.of(2n)), { message: /one NUL-terminated path per length/ });
});

test("ImageSet.writeSoon: images written in batches (32 a job, several at once) while the caller goes on; an existing one fails the set naming it, the next writeSoon too; written lists what was made", async (t) => {
  const dir = tempDir(t);
  const set = new ImageSet(dir, new Faults(undefined));
  const entry = (i: number) => [{ inq_len: 0, inq_seq: i, outq_len: 0, outq_seq: i, opt_mask: 0, snd_wscale: 0, mss_clamp: 1460, unsq_len: 0 }];
  for (let i = 0; i < 40; i++) set.writeSoon(`tcp-stream-${i}.img`, "TCP_STREAM", entry(i));
  await set.flushSoon();
  t.is(set.written.length, 40);
  t.like((await readImage(join(dir, "tcp-stream-39.img"))).entries[0], { inq_seq: 39 });

  const other = tempDir(t);
  writeFileSync(join(other, "tcp-stream-5.img"), "mine");
  const failing = new ImageSet(other, new Faults(undefined));
  for (let i = 0; i < 3; i++) failing.writeSoon(`tcp-stream-${i}.img`, "TCP_STREAM", entry(i));
  await failing.flushSoon();
  // these go in one batch at the flush: the fourth and fifth are made, the sixth exists
  for (let i = 3; i < 10; i++) failing.writeSoon(`tcp-stream-${i}.img`, "TCP_STREAM", entry(i));
  const err = await t.throwsAsync(failing.flushSoon());
  t.is(err?.message, `${join(other, "tcp-stream-5.img")}: refusing to overwrite an existing image`);
  t.is(readFileSync(join(other, "tcp-stream-5.img"), "latin1"), "mine");
  t.deepEqual(
    failing.written.map((p) => p.slice(other.length + 1)).sort(),
    [0, 1, 2, 3, 4].map((i) => `tcp-stream-${i}.img`),
  );
  for (let i = 6; i < 10; i++) t.false(existsSync(join(other, `tcp-stream-${i}.img`)));
  t.throws(() => failing.writeSoon("tcp-stream-99.img", "TCP_STREAM", entry(99)), { message: /tcp-stream-5\.img: refusing to overwrite/ });
});

test("ImageSet.writeSoon: an image that cannot be encoded is refused naming its field and leaves nothing of itself in its batch; the images around it are written whole", async (t) => {
  const dir = tempDir(t);
  const set = new ImageSet(dir, new Faults(undefined));
  const entry = (i: number): Record<string, unknown>[] => [{ inq_len: 0, inq_seq: i, outq_len: 0, outq_seq: i, opt_mask: 0, snd_wscale: 0, mss_clamp: 1460, unsq_len: 0 }];
  set.writeSoon("tcp-stream-1.img", "TCP_STREAM", entry(1));
  // its fields come first, then the one that cannot be encoded: some of it was in the batch's buffer
  t.throws(() => set.writeSoon("tcp-stream-2.img", "TCP_STREAM", [{ ...entry(2)[0], mss_clamp: "wide" }]), { message: /mss_clamp/ });
  set.writeSoon("tcp-stream-3.img", "TCP_STREAM", entry(3));
  await set.flushSoon();
  t.deepEqual(set.written.map((p) => p.slice(dir.length + 1)).sort(), ["tcp-stream-1.img", "tcp-stream-3.img"]);
  t.false(existsSync(join(dir, "tcp-stream-2.img")));
  t.like((await readImage(join(dir, "tcp-stream-1.img"))).entries, [{ inq_seq: 1, mss_clamp: 1460 }]);
  t.like((await readImage(join(dir, "tcp-stream-3.img"))).entries, [{ inq_seq: 3, mss_clamp: 1460 }]);
});
