// readWhole (images/io.ts): a file's bytes whatever its size. Small files are read into a
// reused scratch buffer first, and only one that fills it is asked its size: each size
// around that buffer's, and past the point where files go through the thread pool, reads
// back exactly, and a buffer handed out is not overwritten by the next read.
import test from "ava";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readWhole } from "../images/io.js";

test("readWhole: every size reads back byte for byte, and what it gave stays as it was", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "read-whole-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sizes = [0, 1, 4095, 65535, 65536, 65537, 200_000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20];
  const got: Buffer[] = [];
  const want: Buffer[] = [];
  for (const size of sizes) {
    const data = randomBytes(size);
    const file = join(dir, `f${size}`);
    writeFileSync(file, data);
    want.push(data);
    got.push(await readWhole(file));
  }
  sizes.forEach((size, i) => t.true(got[i]!.equals(want[i]!), `${size} bytes`));
  await t.throwsAsync(readWhole(join(dir, "none")), { code: "ENOENT" });
});
