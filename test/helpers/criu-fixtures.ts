// Staging criu 4.2's fixture images for a real restore on this machine (the fixture
// README's recipe): the workload binary rebuilt byte for byte at the path the images name
// (criu and tscriu check size and ELF build-id; gcc 12.2 -O2 -g0 gives the same binary
// here), its run directory with the files it had open or mapped, of the sizes recorded,
// and a copy of the images (a restore writes stats-restore into its images dir).
import { spawnSync } from "node:child_process";
import { closeSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { readImage } from "../../images/io.js";
import { elfBuildId } from "../../orchestrator/dump/filetable.js";
import { pidHolder } from "../../orchestrator/restore/pids.js";
import { FIXTURES, ROOT } from "./fixtures.js";
import { waitFor } from "./workloads.js";

export const FX_WORK = "/tmp/fixtures-work";
const SRC = join(ROOT, "test/fixtures/src");

function buildId(path: string): string | undefined {
  const fd = openSync(path, "r");
  try {
    return elfBuildId(fd)?.join(",");
  } finally {
    closeSync(fd);
  }
}

/** The REG entries of a fixture's files.img: name -> { size, buildId }. */
async function regFiles(fixture: string): Promise<Map<string, { size: bigint | undefined; buildId: string | undefined }>> {
  const m = new Map<string, { size: bigint | undefined; buildId: string | undefined }>();
  for (const e of (await readImage(join(FIXTURES, fixture, "files.img"))).entries) {
    const r = e["reg"] as { name: string; size?: bigint; build_id?: number[] } | undefined;
    if (r) m.set(r.name, { size: r.size, buildId: r.build_id?.length ? r.build_id.join(",") : undefined });
  }
  return m;
}

/** Builds /tmp/fixtures-work/bin/NAME as make-all.sh did; throws when the build-id is not the image's. */
export function buildFixtureBinary(name: string, wantBuildId: string | undefined): string {
  const out = join(FX_WORK, "bin", name);
  if (existsSync(out) && buildId(out) === wantBuildId) return out;
  mkdirSync(join(FX_WORK, "bin"), { recursive: true });
  const work = mkdtempSync(join(tmpdir(), "tscriu-fxbuild-"));
  try {
    mkdirSync(join(work, "src"));
    for (const f of readdirSync(SRC)) if (f.endsWith(".c") || f.endsWith(".h")) copyFileSync(join(SRC, f), join(work, "src", f));
    const tmp = `${out}.tmp-${process.pid}`;
    const r = spawnSync("gcc", ["-O2", "-g0", "-o", tmp, `src/${name}.c`, "-lpthread"], { cwd: work, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`gcc ${name}: ${r.stderr}`);
    spawnSync("mv", ["-f", tmp, out]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const got = buildId(out);
  if (got !== wantBuildId) throw new Error(`${out}: build-id ${got} is not the image's ${wantBuildId}: this gcc/glibc does not rebuild the fixture binary byte for byte`);
  return out;
}

export interface Staged {
  /** a copy of the fixture's images */
  images: string;
  /** the run dir (the task's cwd) */
  run: string;
  pid: number;
}

/**
 * Stages fixture `fixture` (workload `name`): binary, run dir with its files, images copy.
 * `contents` gives files of the run dir their bytes; other files the images name there get
 * their recorded size. Returns undefined (with a log line) when the fixture's PID is held
 * by a process that does not let go within 10 s -- the environment, not the restore.
 */
export async function stageFixture(t: ExecutionContext, fixture: string, name: string, contents: Record<string, Buffer> = {}): Promise<Staged | undefined> {
  const pid = (await readImage(join(FIXTURES, fixture, "pstree.img"))).entries[0]!["pid"] as number;
  const regs = await regFiles(fixture);
  buildFixtureBinary(name, regs.get(join(FX_WORK, "bin", name))?.buildId);
  const run = join(FX_WORK, "run", fixture === "counter-cpucap" ? "counter-cpucap" : name);
  rmSync(run, { recursive: true, force: true });
  mkdirSync(run, { recursive: true });
  t.teardown(() => rmSync(run, { recursive: true, force: true }));
  for (const [path, info] of regs) {
    if (!path.startsWith(`${run}/`)) continue;
    const file = path.slice(run.length + 1);
    const data = contents[file] ?? Buffer.alloc(Number(info.size ?? 0n), " ");
    writeFileSync(path, data);
  }
  const images = mkdtempSync(join(tmpdir(), `tscriu-fx-${fixture}-`));
  t.teardown(() => rmSync(images, { recursive: true, force: true }));
  cpSync(join(FIXTURES, fixture), images, { recursive: true, filter: (src) => !src.includes("/crit") });
  try {
    await waitFor(`fixture PID ${pid} to be free`, () => pidHolder(pid) === undefined, 10_000);
  } catch {
    t.log(`not restored: ${pidHolder(pid) ?? "?"} (the fixture needs that PID)`);
    return undefined;
  }
  return { images, run, pid };
}

/** The run dir's counter file, or undefined. */
export function readRunFile(s: Staged, file: string): string | undefined {
  try {
    return readFileSync(join(s.run, file), "utf8");
  } catch {
    return undefined;
  }
}
