// cpuinfo comparison and --cpu-cap parsing in wasm, with criu's rules.
import test from "ava";
import {
  CPU_CAP_ALL,
  CPU_CAP_CPU,
  CPU_CAP_DEFAULT,
  CPU_CAP_FPU,
  CPU_CAP_IMAGE,
  CPU_CAP_INS,
  CPU_CAP_NONE,
  compareCpuinfo,
  cpuinfoCheckCaps,
  formatCpuCaps,
  parseCpuCaps,
  type CpuCaps,
} from "../wasm/index.js";

/** The cpuinfo.img entry criu 4.2 wrote on this machine kind (shared/fixtures/criu-4.2/cpuinfo). */
const EPYC: CpuCaps = {
  vendorId: 2,
  cpuFamily: 25,
  model: 1,
  stepping: 1,
  capabilityVer: 2,
  capability: [
    395049983, 802421759, 0, 34668544, 4294586883, 0, 4195315, 0, 0, 563873707, 15, 4195972, 0, 268435461, 4, 0, 0, 0, 16,
  ],
  modelId: "AMD EPYC",
  xfeaturesMask: 5n,
  xsaveSize: 832,
  xsaveSizeMax: 832,
};

/** EPYC with bit `bit` of word `word` set (or cleared). */
function withBit(base: CpuCaps, word: number, bit: number, on = true): CpuCaps {
  const capability = [...base.capability];
  const w = capability[word] ?? 0;
  capability[word] = (on ? w | (1 << bit) : w & ~(1 << bit)) >>> 0;
  return { ...base, capability };
}

test("identical cpuinfo passes every check and reports no difference", (t) => {
  const r = compareCpuinfo(EPYC, EPYC, CPU_CAP_ALL);
  t.true(r.ok);
  t.deepEqual(r.checked, { fpu: true, ins: true, cpu: true });
  t.deepEqual(r.failed, { fpu: false, ins: false, cpu: false });
  t.false(r.vendorDiffers);
  t.deepEqual(r.fpu, { missing: [], xfeaturesMissing: 0n, xsaveSize: null, xsaveSizeMax: null });
  t.deepEqual(r.ins.missing, []);
  t.deepEqual(r.cpu, { imageOnly: [], hostOnly: [] });
  t.deepEqual(r.messages, []);
});

test("an extra instruction bit in the image fails ins and cpu, not fpu", (t) => {
  const image = withBit(EPYC, 9, 16); // avx512f
  const r = compareCpuinfo(image, EPYC, CPU_CAP_ALL);
  t.false(r.ok);
  t.deepEqual(r.failed, { fpu: false, ins: true, cpu: true });
  t.deepEqual(r.ins.missing, [{ word: 9, bit: 16, feature: 9 * 32 + 16, name: "avx512f" }]);
  t.deepEqual(r.cpu.imageOnly, r.ins.missing);
  t.deepEqual(r.cpu.hostOnly, []);
  t.deepEqual(r.messages, [
    "image needs avx512f (word 9 bit 16); this CPU lacks it",
    "CPU capabilities do not match run time (image only: avx512f (word 9 bit 16))",
  ]);
  t.false(compareCpuinfo(image, EPYC).ok, "the default fpu,ins fails too");
  t.true(compareCpuinfo(image, EPYC, CPU_CAP_FPU).ok, "fpu alone passes");
});

test("the host may have more than the image for ins, not for cpu", (t) => {
  const host = withBit(EPYC, 9, 16);
  const r = compareCpuinfo(EPYC, host, CPU_CAP_ALL);
  t.deepEqual(r.failed, { fpu: false, ins: false, cpu: true });
  t.deepEqual(
    r.cpu.hostOnly.map((b) => b.name),
    ["avx512f"],
  );
  t.true(compareCpuinfo(EPYC, host, CPU_CAP_INS).ok);
});

test("bits outside criu's instruction mask only fail the strict cpu check (fma, dtherm)", (t) => {
  const noFmaHost = withBit(EPYC, 4, 12, false);
  const r = compareCpuinfo(EPYC, noFmaHost, CPU_CAP_ALL);
  t.deepEqual(r.failed, { fpu: false, ins: false, cpu: true });
  t.deepEqual(r.cpu.imageOnly, [{ word: 4, bit: 12, feature: 140, name: "fma" }]);
  const r2 = compareCpuinfo(withBit(EPYC, 14, 0), EPYC, CPU_CAP_ALL);
  t.deepEqual(r2.failed, { fpu: false, ins: false, cpu: true });
  t.is(r2.cpu.imageOnly[0]?.name, null, "word 14 has no name here");
  t.regex(r2.messages[0] ?? "", /image only: word 14 bit 0/);
});

test("a larger xsave size in the image fails fpu", (t) => {
  const image: CpuCaps = { ...EPYC, xsaveSize: 2696, xsaveSizeMax: 2696 };
  const r = compareCpuinfo(image, EPYC, CPU_CAP_ALL);
  t.deepEqual(r.failed, { fpu: true, ins: false, cpu: false });
  t.deepEqual(r.fpu.xsaveSize, { image: 2696, host: 832 });
  t.deepEqual(r.fpu.xsaveSizeMax, { image: 2696, host: 832 });
  t.deepEqual(r.messages, ["CPU xsave size mismatch (image 2696, host 832)", "CPU xsave max size mismatch (image 2696, host 832)"]);
  t.false(compareCpuinfo({ ...EPYC, xsaveSize: 512 }, EPYC, CPU_CAP_FPU).ok, "smaller is a mismatch too: sizes must be equal");
  t.true(compareCpuinfo(image, EPYC, CPU_CAP_INS | CPU_CAP_CPU).ok);
});

test("xfeatures the host lacks fail fpu; a subset passes", (t) => {
  const r = compareCpuinfo({ ...EPYC, xfeaturesMask: 0x7n }, EPYC, CPU_CAP_FPU);
  t.false(r.ok);
  t.is(r.fpu.xfeaturesMissing, 2n);
  t.deepEqual(r.messages, ["CPU xfeatures has unsupported bits (0x2)"]);
  t.true(compareCpuinfo({ ...EPYC, xfeaturesMask: 0x1n }, EPYC, CPU_CAP_FPU).ok);
});

test("fpu/fxsr/osxsave/xsaves in the image but not on the host fail fpu", (t) => {
  const host = withBit(withBit(EPYC, 4, 27, false), 10, 3, false); // no osxsave, no xsaves
  const r = compareCpuinfo(EPYC, host, CPU_CAP_FPU);
  t.deepEqual(r.failed, { fpu: true, ins: false, cpu: false });
  t.deepEqual(
    r.fpu.missing.map((b) => b.name),
    ["osxsave", "xsaves"],
  );
  t.deepEqual(r.messages, ["FPU feature required by image is not supported on host (fpu:0 fxsr:0 osxsave:1 xsaves:1)"]);
});

test("a different vendor is not refused by itself (criu does not compare vendors)", (t) => {
  const r = compareCpuinfo({ ...EPYC, vendorId: "INTEL" }, EPYC, CPU_CAP_ALL);
  t.true(r.ok);
  t.true(r.vendorDiffers);
  t.true(compareCpuinfo({ ...EPYC, vendorId: 1 }, { ...EPYC, vendorId: "AMD" }, "all").ok);
});

test("old images: version 1 takes words 12..18 and the xsave fields from the host", (t) => {
  const { xfeaturesMask: _x, xsaveSize: _s, xsaveSizeMax: _m, ...rest } = EPYC;
  const v1: CpuCaps = { ...rest, capabilityVer: 1, capability: EPYC.capability.slice(0, 12) };
  const r = compareCpuinfo(v1, EPYC, CPU_CAP_ALL);
  t.true(r.ok);
  t.deepEqual(r.fpu, { missing: [], xfeaturesMissing: 0n, xsaveSize: null, xsaveSizeMax: null });
  t.true(compareCpuinfo({ ...v1, xsaveSize: undefined }, EPYC, CPU_CAP_ALL).ok, "explicit undefined means absent");
});

test("caps none checks nothing; '^' removes a check", (t) => {
  const image = { ...withBit(EPYC, 9, 16), xsaveSize: 4096 };
  const none = compareCpuinfo(image, EPYC, CPU_CAP_NONE);
  t.true(none.ok);
  t.deepEqual(none.checked, { fpu: false, ins: false, cpu: false });
  t.deepEqual(none.failed, { fpu: false, ins: false, cpu: false });
  t.is(none.ins.missing.length, 1, "differences are reported even when not checked");
  t.deepEqual(none.messages, []);
  t.true(compareCpuinfo(withBit(EPYC, 9, 16), EPYC, "^ins").ok, "^ins leaves fpu only");
  t.false(compareCpuinfo(withBit(EPYC, 9, 16), EPYC, "^fpu").ok, "^fpu leaves ins");
  t.true(compareCpuinfo(image, EPYC, "none").ok);
});

test("parseCpuCaps follows criu's parser", (t) => {
  const IMG = CPU_CAP_IMAGE;
  const cases: [string | undefined, number][] = [
    [undefined, CPU_CAP_ALL | IMG], // --cpu-cap without a value
    ["", CPU_CAP_DEFAULT | IMG],
    ["fpu", CPU_CAP_DEFAULT | IMG], // ORed into the default fpu,ins
    ["ins", CPU_CAP_DEFAULT | IMG],
    ["cpu", CPU_CAP_ALL | IMG],
    ["all", CPU_CAP_ALL | IMG],
    ["none", CPU_CAP_NONE],
    ["^none", CPU_CAP_ALL | IMG],
    ["^fpu", CPU_CAP_INS | IMG],
    ["^ins", CPU_CAP_FPU | IMG],
    ["^fpu,cpu", CPU_CAP_INS | CPU_CAP_CPU | IMG], // ',' ends the inversion
    ["^fpuins", CPU_CAP_NONE], // items need no separator; '^' lasts until ','
    ["^^fpu", CPU_CAP_DEFAULT | IMG], // '^' toggles
    ["none,fpu", CPU_CAP_FPU | IMG],
    ["fpu,,ins", CPU_CAP_DEFAULT | IMG],
    ["^all", CPU_CAP_NONE],
  ];
  for (const [arg, want] of cases) t.is(parseCpuCaps(arg), want, `--cpu-cap=${String(arg)}`);
  t.is(parseCpuCaps("cpu", CPU_CAP_NONE), CPU_CAP_CPU | IMG, "starting from another value");
  t.is(parseCpuCaps("^fpu", parseCpuCaps("all")), CPU_CAP_CPU | CPU_CAP_INS | IMG, "a second --cpu-cap builds on the first");
});

test("cpuinfoCheckCaps turns none into all; formatCpuCaps names the bits", (t) => {
  t.is(cpuinfoCheckCaps(CPU_CAP_NONE), CPU_CAP_ALL);
  t.is(cpuinfoCheckCaps(CPU_CAP_FPU | CPU_CAP_IMAGE), CPU_CAP_FPU | CPU_CAP_IMAGE);
  t.is(formatCpuCaps(parseCpuCaps("")), "fpu,ins,image");
  t.is(formatCpuCaps(CPU_CAP_NONE), "none");
});

// One test per error path.

test("error: unknown --cpu-cap items, with their offset", (t) => {
  t.throws(() => parseCpuCaps("fpx"), { instanceOf: RangeError, message: /unknown --cpu-cap item "fpx" at offset 0 of "fpx"/ });
  t.throws(() => parseCpuCaps("fpu,bogus"), { instanceOf: RangeError, message: /item "bogus" at offset 4/ });
  t.throws(() => parseCpuCaps("fpuX"), { instanceOf: RangeError, message: /item "X" at offset 3/ });
  t.throws(() => parseCpuCaps("ü,fpu"), { instanceOf: RangeError, message: /item "ü,fpu" at offset 0/ });
  t.throws(() => parseCpuCaps("FPU"), { instanceOf: RangeError }, "items are lower case, as in criu");
});

test("error: parseCpuCaps arguments of the wrong type or size", (t) => {
  t.throws(() => parseCpuCaps(5 as unknown as string), { instanceOf: TypeError, message: /must be a string/ });
  t.throws(() => parseCpuCaps("fpu,".repeat(2000)), { instanceOf: RangeError, message: /8000 bytes; at most 4096/ });
  t.throws(() => parseCpuCaps("fpu", 16), { instanceOf: RangeError, message: /initial 16 has bits/ });
});

test("error: an image with an unknown vendor", (t) => {
  t.throws(() => compareCpuinfo({ ...EPYC, vendorId: 0 }, EPYC), {
    instanceOf: RangeError,
    message: "compareCpuinfo: image carries unknown vendor 0 (criu knows INTEL = 1 and AMD = 2)",
  });
  t.throws(() => compareCpuinfo(EPYC, { ...EPYC, vendorId: "UNKNOWN" }), { instanceOf: RangeError, message: /host carries unknown vendor 0/ });
  t.throws(() => compareCpuinfo({ ...EPYC, vendorId: "VIA" as "AMD" }, EPYC), { instanceOf: RangeError, message: /"VIA" is not INTEL, AMD or UNKNOWN/ });
});

test("error: an unknown capability version", (t) => {
  t.throws(() => compareCpuinfo({ ...EPYC, capabilityVer: 3 }, EPYC), {
    instanceOf: RangeError,
    message: "compareCpuinfo: image carries unknown capability version 3 (criu knows 1 and 2)",
  });
  t.throws(() => compareCpuinfo(EPYC, { ...EPYC, capabilityVer: 1, capability: EPYC.capability.slice(0, 12) }), {
    instanceOf: RangeError,
    message: /host capabilityVer is 1; the host must have all 19 words/,
  });
});

test("error: a word count that does not fit the capability version", (t) => {
  t.throws(() => compareCpuinfo({ ...EPYC, capability: EPYC.capability.slice(0, 12) }, EPYC), {
    instanceOf: RangeError,
    message: /image carries 12 capability words, not the count its capabilityVer requires/,
  });
  t.throws(() => compareCpuinfo({ ...EPYC, capability: new Array<number>(33).fill(0) }, EPYC), {
    instanceOf: RangeError,
    message: /image.capability has 33 words; at most 32/,
  });
});

test("error: malformed CpuCaps objects and caps masks", (t) => {
  const bad = (v: unknown) => v as CpuCaps;
  t.throws(() => compareCpuinfo(bad(null), EPYC), { instanceOf: TypeError, message: /image must be a CpuCaps object, got null/ });
  t.throws(() => compareCpuinfo(bad({ ...EPYC, capability: "x" }), EPYC), { instanceOf: TypeError, message: /capability must be an array/ });
  t.throws(() => compareCpuinfo(bad({ ...EPYC, cpuFamily: "25" }), EPYC), { instanceOf: TypeError, message: /image.cpuFamily must be a number/ });
  t.throws(() => compareCpuinfo(bad({ ...EPYC, xfeaturesMask: 5 }), EPYC), { instanceOf: TypeError, message: /xfeaturesMask must be a bigint/ });
  t.throws(() => compareCpuinfo({ ...EPYC, xfeaturesMask: -1n }, EPYC), { instanceOf: RangeError, message: /does not fit in 64 bits/ });
  t.throws(() => compareCpuinfo({ ...EPYC, capability: [2 ** 32, ...EPYC.capability.slice(1)] }, EPYC), {
    instanceOf: RangeError,
    message: /image.capability\[0\] 4294967296 is not a 32-bit unsigned integer/,
  });
  t.throws(() => compareCpuinfo(EPYC, EPYC, 16), { instanceOf: RangeError, message: /caps 16 has bits other than/ });
  t.throws(() => compareCpuinfo(EPYC, EPYC, "bogus"), { instanceOf: RangeError, message: /unknown --cpu-cap item/ });
});

test("capability words may come as a Uint32Array", (t) => {
  t.true(compareCpuinfo({ ...EPYC, capability: Uint32Array.from(EPYC.capability) }, EPYC, CPU_CAP_ALL).ok);
});
