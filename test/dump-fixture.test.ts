// Our images against criu 4.2's of a similar program (the counter fixture): image by
// image, the same set of fields is filled in, and the values that do not depend on
// the process (versions, flags, sizes of register areas) are the same.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { decodeImage } from "../images/codec.js";
import { dump } from "../orchestrator/dump/dump.js";
import { tempDir } from "./helpers/dump.js";
import { startWorkload } from "./helpers/workloads.js";

const FIXTURE = join(process.cwd(), "test/fixtures/criu-4.2/counter");

/** Every field path of a decoded value ("tc.timers.real.isec", "vmas[].status"). */
function paths(v: unknown, prefix = "", out = new Set<string>()): Set<string> {
  if (Array.isArray(v)) {
    for (const x of v) paths(x, `${prefix}[]`, out);
  } else if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
    for (const [k, x] of Object.entries(v)) {
      out.add(`${prefix}${prefix ? "." : ""}${k}`);
      paths(x, `${prefix}${prefix ? "." : ""}${k}`, out);
    }
  }
  return out;
}

function load(dir: string, name: string): Record<string, unknown>[] {
  return decodeImage(readFileSync(join(dir, name)), name).entries;
}

function kind(name: string): string {
  return name.replace(/-\d+\.img$/, "").replace(/\.img$/, "");
}

test("the counter dump fills the fields criu 4.2 fills, image by image", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  const ours = new Map(readdirSync(dir).filter((f) => !f.startsWith("pages-")).map((f) => [kind(f), f]));
  const theirs = new Map(readdirSync(FIXTURE).filter((f) => !f.startsWith("pages-") && f !== "crit" && f !== "fixture-info.txt").map((f) => [kind(f), f]));
  t.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort(), "the same image files");
  for (const [k, f] of theirs) {
    const a = load(dir, ours.get(k)!);
    const b = load(FIXTURE, f);
    const pa = new Set<string>();
    const pb = new Set<string>();
    a.forEach((e) => paths(e, "", pa));
    b.forEach((e) => paths(e, "", pb));
    // Which xsave components a dump holds is the CPU's (AVX-512, CET, AMX…), not the
    // dumper's: the fixture's CPU is not this one. Compare the rest.
    const cpuBound = (p: string): boolean => /^thread_info\.fpregs\.xsave\./.test(p) && !/^thread_info\.fpregs\.xsave\.(xstate_bv|ymmh_space)$/.test(p);
    t.deepEqual([...pa].filter((p) => !cpuBound(p)).sort(), [...pb].filter((p) => !cpuBound(p)).sort(), `fields of ${k}`);
  }
  const inv = load(dir, "inventory.img")[0]!;
  const finv = load(FIXTURE, "inventory.img")[0]!;
  for (const key of ["img_version", "fdinfo_per_id", "ns_per_id", "root_cg_set", "lsmtype", "network_lock_method"]) t.deepEqual(inv[key], finv[key], key);
  const core = load(dir, `core-${w.pid}.img`)[0] as { thread_info: { fpregs: Record<string, unknown[]> & { xsave: Record<string, unknown[]> } } };
  const fcore = load(FIXTURE, "core-15232.img")[0] as typeof core;
  for (const key of ["st_space", "xmm_space"]) t.is(core.thread_info.fpregs[key]!.length, fcore.thread_info.fpregs[key]!.length);
  t.is(core.thread_info.fpregs.xsave["ymmh_space"]!.length, fcore.thread_info.fpregs.xsave["ymmh_space"]!.length);
});

test("a threaded dump fills the fields criu 4.2 fills: pstree, the leader's core and the other threads' cores", async (t) => {
  const fixture = join(process.cwd(), "test/fixtures/criu-4.2/threads");
  const w = await startWorkload(t, "threads", ["4"]);
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  const cpuBound = (p: string): boolean => /^thread_info\.fpregs\.xsave\./.test(p) && !/^thread_info\.fpregs\.xsave\.(xstate_bv|ymmh_space)$/.test(p);
  const fieldsOf = (d: string, files: string[]): string[] => {
    const out = new Set<string>();
    for (const f of files) load(d, f).forEach((e) => paths(e, "", out));
    return [...out].filter((p) => !cpuBound(p)).sort();
  };
  const cores = (d: string, leader: number): { leader: string[]; others: string[] } => {
    const all = readdirSync(d).filter((f) => /^core-\d+\.img$/.test(f));
    return { leader: [`core-${leader}.img`], others: all.filter((f) => f !== `core-${leader}.img`) };
  };
  const ours = cores(dir, w.pid);
  const theirs = cores(fixture, 15672);
  t.is(ours.others.length, 4);
  t.is(theirs.others.length, 4);
  t.deepEqual(fieldsOf(dir, ours.leader), fieldsOf(fixture, theirs.leader), "the leader's core");
  t.deepEqual(fieldsOf(dir, ours.others), fieldsOf(fixture, theirs.others), "the other threads' cores");
  t.deepEqual(fieldsOf(dir, ["pstree.img"]), fieldsOf(fixture, ["pstree.img"]), "pstree");
});

test("a tree dump lays out pstree, ids, fs and fdinfo as criu 4.2 does", async (t) => {
  const fixture = join(process.cwd(), "test/fixtures/criu-4.2/tree");
  const w = await startWorkload(t, "tree");
  t.teardown(() => {
    for (const k of ["a", "b", "g", "c"]) {
      try {
        process.kill(Number(w.info[k]), "SIGKILL");
      } catch {
        // gone
      }
    }
  });
  const dir = tempDir(t);
  await dump({ pid: w.pid, imagesDir: dir, leaveRunning: true });
  const fieldsOf = (d: string, re: RegExp): string[] => {
    const out = new Set<string>();
    for (const f of readdirSync(d).filter((x) => re.test(x))) load(d, f).forEach((e) => paths(e, "", out));
    return [...out].sort();
  };
  for (const re of [/^pstree\.img$/, /^ids-\d+\.img$/, /^fs-\d+\.img$/, /^fdinfo-\d+\.img$/]) t.deepEqual(fieldsOf(dir, re), fieldsOf(fixture, re), String(re));
  // One fdinfo per fd table, named by its files_id; every process's ids point at one.
  const ids = readdirSync(dir).filter((f) => /^ids-\d+\.img$/.test(f)).map((f) => load(dir, f)[0]!);
  t.is(ids.length, 5);
  for (const i of ids) t.true(readdirSync(dir).includes(`fdinfo-${String(i["files_id"])}.img`));
  t.deepEqual(ids.map((i) => i["vm_id"]).sort(), [2, 3, 4, 5, 6], "criu's numbering: the dumper holds 1, the processes 2 on");
});
