// cpuinfo dump/check against criu 4.2's cpuinfo.img and modified copies of it.
import test from "ava";
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, writeImage } from "../images/io.js";
import { cpuinfoCheck, readCpuinfo } from "../orchestrator/cpuinfo/cpuinfo.js";
import { hostCpuinfo, type CpuinfoX86 } from "../orchestrator/cpuinfo/host.js";
import { tscriu } from "./helpers/cli.js";
import { FIXTURES } from "./helpers/fixtures.js";
import { scratchDir } from "./helpers/tmp.js";

const FIXTURE_DIR = join(FIXTURES, "cpuinfo");
const tmp = () => scratchDir("tscriu-cpu-");
const ENV = { HOME: tmp(), CRIU_CONFIG_FILE: "" };

async function fixture(): Promise<CpuinfoX86> {
  return readCpuinfo(FIXTURE_DIR);
}

/** Is this the CPU the fixture was made on (the same model; microcode may differ)? */
async function sameCpuAsFixture(): Promise<boolean> {
  const f = await fixture();
  const h = hostCpuinfo();
  return f.vendor_id === h.vendor_id && f.cpu_family === h.cpu_family && f.model === h.model && f.model_id === h.model_id;
}

/** A copy of the fixture image changed by `edit`, in a fresh directory. */
async function modified(edit: (e: CpuinfoX86) => void): Promise<string> {
  const dir = tmp();
  const img = await readImage(join(FIXTURE_DIR, "cpuinfo.img"));
  edit((img.entries[0]!["x86_entry"] as CpuinfoX86[])[0]!);
  await writeImage(join(dir, "cpuinfo.img"), img);
  return dir;
}

/** A capability bit of criu's instruction mask that this CPU lacks (avx512f, sha_ni, …). */
function missingInsBit(): { word: number; bit: number; name: string } {
  const cap = hostCpuinfo().capability ?? [];
  const candidates = [
    { word: 9, bit: 16, name: "avx512f" },
    { word: 9, bit: 29, name: "sha_ni" },
    { word: 11, bit: 1, name: "avx512vbmi" },
    { word: 6, bit: 11, name: "xop" },
  ];
  const c = candidates.find(({ word, bit }) => ((cap[word]! >>> bit) & 1) === 0);
  if (!c) throw new Error("this CPU has every candidate bit");
  return c;
}

test("cpuinfo dump writes criu's cpuinfo.img (byte-identical to criu 4.2's on the same CPU)", async (t) => {
  const dir = tmp();
  const r = tscriu(["cpuinfo", "dump", "-D", dir], { env: ENV });
  t.is(r.code, 0, r.stderr);
  const mine = await readCpuinfo(dir);
  t.is(mine.capability_ver, 2);
  t.is(mine.capability?.length, 19);
  t.true(mine.vendor_id === "AMD" || mine.vendor_id === "INTEL");
  if (await sameCpuAsFixture()) {
    t.deepEqual(mine, await fixture());
    t.true(readFileSync(join(dir, "cpuinfo.img")).equals(readFileSync(join(FIXTURE_DIR, "cpuinfo.img"))));
  } else {
    t.log("not the fixture's CPU: compared the structure only");
  }
  const again = tscriu(["cpuinfo", "dump", "-D", dir], { env: ENV });
  t.is(again.code, 1);
  t.regex(again.stderr, /refusing to overwrite an existing image/);
});

test("cpuinfo check passes for this CPU's own dump and for the fixture on its CPU", async (t) => {
  const dir = tmp();
  t.is(tscriu(["cpuinfo", "dump", "-D", dir], { env: ENV }).code, 0);
  for (const cap of [[], ["--cpu-cap=all"], ["--cpu-cap=cpu"]]) {
    const r = tscriu(["cpuinfo", "check", "-D", dir, ...cap], { env: ENV });
    t.is(r.code, 0, `${cap.join(" ")}: ${r.stderr}`);
  }
  if (await sameCpuAsFixture()) t.is(tscriu(["cpuinfo", "check", "-D", FIXTURE_DIR, "--cpu-cap=all"], { env: ENV }).code, 0);
});

test("an extra instruction bit fails ins and cpu, not fpu, with a readable message", async (t) => {
  const own = hostCpuinfo();
  const miss = missingInsBit();
  const dir = await modified((e) => {
    Object.assign(e, { ...own, capability: [...(own.capability ?? [])] });
    e.capability![miss.word] = (e.capability![miss.word]! | (1 << miss.bit)) >>> 0;
  });
  const ins = tscriu(["cpuinfo", "check", "-D", dir, "--cpu-cap=ins"], { env: ENV });
  t.is(ins.code, 1);
  t.true(ins.stderr.includes(`image needs ${miss.name} (word ${miss.word} bit ${miss.bit}); this CPU lacks it`), ins.stderr);
  const cpu = tscriu(["cpuinfo", "check", "-D", dir, "--cpu-cap=none,cpu"], { env: ENV });
  t.is(cpu.code, 1);
  t.regex(cpu.stderr, new RegExp(`image only: ${miss.name}`));
  // criu's "fpu" keeps its default "ins"; "^ins" takes it away.
  t.is(tscriu(["cpuinfo", "check", "-D", dir, "--cpu-cap=fpu,^ins"], { env: ENV }).code, 0);
  const r = await cpuinfoCheck(dir, "fpu,^ins");
  t.true(r.ok);
  t.deepEqual(r.checked, { fpu: true, ins: false, cpu: false });
});

test("a larger xsave size fails fpu only", async (t) => {
  const own = hostCpuinfo();
  const dir = await modified((e) => {
    Object.assign(e, { ...own, capability: [...(own.capability ?? [])] });
    e.xsave_size = (own.xsave_size ?? 0) + 64;
  });
  const fpu = tscriu(["cpuinfo", "check", "-D", dir, "--cpu-cap=none,fpu"], { env: ENV });
  t.is(fpu.code, 1);
  t.regex(fpu.stderr, new RegExp(`xsave size mismatch \\(image ${(own.xsave_size ?? 0) + 64}, host ${own.xsave_size}\\)`));
  t.is(tscriu(["cpuinfo", "check", "-D", dir, "--cpu-cap=none,ins"], { env: ENV }).code, 0);
  t.is(tscriu(["cpuinfo", "check", "-D", dir, "--cpu-cap=none,cpu"], { env: ENV }).code, 0);
});

test("another vendor passes as criu says (only warned), an unknown vendor is refused", async (t) => {
  const own = hostCpuinfo();
  const other = own.vendor_id === "AMD" ? "INTEL" : "AMD";
  const dir = await modified((e) => Object.assign(e, { ...own, capability: [...(own.capability ?? [])], vendor_id: other }));
  const r = tscriu(["cpuinfo", "check", "-D", dir, "--cpu-cap=all", "-v2"], { env: ENV });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /another CPU vendor/);
  const unknown = await modified((e) => Object.assign(e, { ...own, capability: [...(own.capability ?? [])], vendor_id: "UNKNOWN" }));
  const u = tscriu(["cpuinfo", "check", "-D", unknown], { env: ENV });
  t.is(u.code, 1);
  t.regex(u.stderr, /vendor/i);
});

test("cpuinfo check on a missing or broken image names the file", (t) => {
  const dir = tmp();
  const r = tscriu(["cpuinfo", "check", "-D", dir], { env: ENV });
  t.is(r.code, 1);
  t.regex(r.stderr, /cpuinfo\.img: cannot read image: ENOENT/);
  copyFileSync(join(FIXTURES, "counter/pstree.img"), join(dir, "cpuinfo.img"));
  const w = tscriu(["cpuinfo", "check", "-D", dir], { env: ENV });
  t.is(w.code, 1);
  t.regex(w.stderr, /cpuinfo\.img: not a cpuinfo image \(magic PSTREE\)/);
  const bad = tscriu(["cpuinfo", "check", "-D", FIXTURE_DIR, "--cpu-cap=bogus"], { env: ENV });
  t.is(bad.code, 1);
  t.regex(bad.stderr, /unknown --cpu-cap item "bogus"/);
});
