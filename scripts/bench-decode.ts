// Benchmark: decoding images with tscriu against Debian's crit (python), on the
// criu 4.2 fixtures and on a synthetic pagemap of 1,000,000 entries.
// Run: node --import=tsx scripts/bench-decode.ts [--runs N]
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { imageTypeByName } from "../images/codec.js";
import { ImageWriter } from "../images/io.js";
import { fmt, interleaved, selfTimed, timeCommand, TSCRIU } from "./bench-util.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cli = TSCRIU;
const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 5;
const crit = existsSync("/usr/bin/crit") ? "/usr/bin/crit" : undefined;
if (!existsSync(cli)) throw new Error("build first: npm run build");

const work = mkdtempSync(join(tmpdir(), "tscriu-bench-decode-"));
try {
  // 1,000,000 pagemap entries: alternating present and parent runs, 64-bit addresses.
  const w = new ImageWriter(imageTypeByName("PAGEMAP")!);
  w.add({ pages_id: 1 });
  for (let i = 0; i < 1_000_000; i++) {
    w.add({ vaddr: 0x7f0000000000n + BigInt(i) * 0x3000n, compat_nr_pages: 2, flags: i % 2 ? 1 : 6, nr_pages: 2n });
  }
  const big = join(work, "pagemap-1.img");
  writeFileSync(big, w.bytes());

  const fixtures = join(root, "test/fixtures/criu-4.2");
  const files: string[] = [];
  for (const fx of readdirSync(fixtures)) {
    for (const f of readdirSync(join(fixtures, fx))) if (f.endsWith(".img") && !f.startsWith("pages-")) files.push(join(fixtures, fx, f));
  }
  // Debian's crit (3.17) predates some 4.x image types; bench only what it can read.
  const critOk = crit ? files.filter((f) => { try { timeCommand("/usr/bin/python3", [crit, "decode", "-i", f, "-o", "/dev/null"]); return true; } catch { return false; } }) : [];

  const all = (cmd: string, pre: string[], list: string[]) => () => list.reduce((s, f) => s + timeCommand(cmd, [...pre, "decode", "-i", f, "-o", "/dev/null"]), 0);
  console.log(`decode benchmark, median of ${runs} interleaved runs`);
  const fx = interleaved(
    { tscriu: all(cli, [], critOk.length ? critOk : files), ...(crit ? { crit: all("/usr/bin/python3", [crit], critOk) } : {}) },
    runs,
  );
  console.log(`  ${critOk.length || files.length} fixture files, one process each: tscriu ${fmt(fx["tscriu"]!)}${crit ? `, crit ${fmt(fx["crit"]!)}, ratio ${(fx["crit"]! / fx["tscriu"]!).toFixed(1)}x` : " (no /usr/bin/crit: apt-get install criu)"}`);
  // In one process each, without start-up costs: decode + JSON text of every fixture file, 20 times.
  const listFile = join(work, "files.txt");
  writeFileSync(listFile, (critOk.length ? critOk : files).join("\n"));
  const inproc = interleaved(
    {
      tscriu: () => selfTimed(process.execPath, ["--import=tsx", join(root, "scripts/bench-decode-inproc.ts"), listFile, "20"]),
      ...(crit
        ? {
            crit: () =>
              selfTimed("/usr/bin/python3", [
                "-c",
                "import sys,json,time,pycriu\nfs=open(sys.argv[1]).read().split('\\n')\nt=time.perf_counter()\nfor _ in range(20):\n  for f in fs:\n    json.dumps(pycriu.images.load(open(f,'rb')))\nprint(time.perf_counter()-t)",
                listFile,
              ]),
          }
        : {}),
    },
    runs,
  );
  console.log(`  same files x20 in one process: tscriu ${fmt(inproc["tscriu"]!)}${crit ? `, crit ${fmt(inproc["crit"]!)}, ratio ${(inproc["crit"]! / inproc["tscriu"]!).toFixed(1)}x` : ""}`);
  const one = (cmd: string, pre: string[], extra: string[]) => () => timeCommand(cmd, [...pre, "decode", ...extra, "-i", big, "-o", "/dev/null"]);
  for (const pretty of [false, true]) {
    const flag = pretty ? ["--pretty"] : [];
    const r = interleaved({ tscriu: one(cli, [], flag), ...(crit ? { crit: one("/usr/bin/python3", [crit], flag) } : {}) }, runs);
    console.log(`  1,000,000-entry pagemap${pretty ? " --pretty" : ""}: tscriu ${fmt(r["tscriu"]!)}${crit ? `, crit ${fmt(r["crit"]!)}, ratio ${(r["crit"]! / r["tscriu"]!).toFixed(1)}x` : ""}`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
