// --freeze-cgroup: the tasks are stopped by the cgroup freezer first (cgroup v1's
// freezer.state or v2's cgroup.freeze), so that none of them can fork, clone or exit while
// they are seized. As criu does: freeze the cgroup, seize and interrupt every thread in it
// and in its sub-cgroups, thaw it (the threads then fall into their ptrace stops), dump;
// at the end a cgroup that was frozen before the dump is frozen again before the threads
// are let go, and threads of the cgroup outside the dumped tree are detached as they were.

import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bridge, isNativeError } from "../../host-bridge/load.js";

type FreezerState = "THAWED" | "FREEZING" | "FROZEN";

const POLL_MS = 100;

export class CgroupFreezer {
  /** the state before the dump touched it */
  readonly origin: FreezerState;

  private constructor(
    readonly path: string,
    readonly v2: boolean,
  ) {
    const s = this.state();
    this.origin = s === "FREEZING" ? "FROZEN" : s;
  }

  /** The freezer of `path`, or an error message naming what is wrong with it. */
  static open(path: string): CgroupFreezer | string {
    let isDir = false;
    try {
      isDir = statSync(path).isDirectory();
    } catch (e) {
      return `--freeze-cgroup ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such cgroup" : (e as Error).message}`;
    }
    if (!isDir) return `--freeze-cgroup ${path}: not a directory`;
    if (existsSync(join(path, "cgroup.freeze"))) return new CgroupFreezer(path, true);
    if (existsSync(join(path, "freezer.state"))) return new CgroupFreezer(path, false);
    return `--freeze-cgroup ${path}: neither a cgroup v2 directory (cgroup.freeze) nor a cgroup v1 freezer (freezer.state)`;
  }

  state(): FreezerState {
    if (!this.v2) {
      const s = readFileSync(join(this.path, "freezer.state"), "utf8").trim();
      if (s !== "THAWED" && s !== "FREEZING" && s !== "FROZEN") throw new Error(`${this.path}/freezer.state holds "${s}"`);
      return s;
    }
    const want = readFileSync(join(this.path, "cgroup.freeze"), "utf8").trim() === "1";
    const frozen = /^frozen 1$/m.test(readFileSync(join(this.path, "cgroup.events"), "utf8"));
    return frozen ? "FROZEN" : want ? "FREEZING" : "THAWED";
  }

  private write(s: "THAWED" | "FROZEN"): void {
    if (this.v2) writeFileSync(join(this.path, "cgroup.freeze"), s === "FROZEN" ? "1" : "0");
    else writeFileSync(join(this.path, "freezer.state"), s);
  }

  /** Freezes the cgroup and waits until every task in it is frozen, or throws at the deadline. */
  freeze(deadline: number, timeoutMs: number): void {
    if (this.state() === "FROZEN") return;
    this.write("FROZEN");
    for (;;) {
      if (this.state() === "FROZEN") return;
      if (Date.now() >= deadline) {
        this.thawIfWasThawed();
        throw new Error(`the cgroup ${this.path} did not freeze within ${timeoutMs} ms (--timeout)`);
      }
      // cgroup v1 may stay FREEZING while a task sleeps where it cannot be frozen: ask again.
      if (!this.v2) this.write("FROZEN");
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, POLL_MS);
    }
  }

  thaw(): void {
    this.write("THAWED");
  }

  /** Puts the cgroup back as it was before the dump: frozen again if it was. */
  restoreOrigin(): void {
    if (this.origin === "FROZEN") this.write("FROZEN");
  }

  /** On a failure before the dump was under way: thaw only what the dump froze. */
  thawIfWasThawed(): void {
    if (this.origin === "THAWED") this.write("THAWED");
  }

  /** Every thread in the cgroup and its descendants. */
  threads(): number[] {
    const out: number[] = [];
    const walk = (dir: string): void => {
      const list = readFileSync(join(dir, this.v2 ? "cgroup.threads" : "tasks"), "utf8");
      for (const line of list.split("\n")) if (line.trim() !== "") out.push(Number(line));
      for (const d of readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) walk(join(dir, d.name));
    };
    walk(this.path);
    return out;
  }
}

/**
 * Seizes and interrupts every thread of the frozen cgroup (a thread gone meanwhile is
 * skipped, a kernel thread cannot be seized and is skipped too), adding each to `seized`
 * at once (seccomp is suspended once each has stopped, freeze.ts).
 */
export function seizeFrozen(freezer: CgroupFreezer, seized: number[]): void {
  const b = bridge();
  for (const tid of freezer.threads()) {
    if (tid === process.pid) continue;
    try {
      b.ptraceSeize(tid, 0);
      b.ptraceInterrupt(tid);
      seized.push(tid);
    } catch (e) {
      if (isNativeError(e) && (e.code === "ESRCH" || e.code === "EPERM")) continue;
      throw e;
    }
  }
}

/** Where cgroup v2 and the v1 freezer hierarchy are mounted here (from /proc/self/mounts). */
function freezerMounts(): { v2?: string; v1?: string } {
  const out: { v2?: string; v1?: string } = {};
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const [, dir, type, opts] = line.split(" ");
    if (type === "cgroup2") out.v2 ??= dir!.replace(/\\040/g, " ");
    else if (type === "cgroup" && opts!.split(",").includes("freezer")) out.v1 ??= dir!.replace(/\\040/g, " ");
  }
  return out;
}

/**
 * The frozen cgroup the process is in, if it is in one: a frozen task does not run the
 * code a dump runs inside it, so its dump would wait for it forever.
 */
export function frozenCgroupOf(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, "utf8");
  } catch {
    return undefined;
  }
  const mounts = freezerMounts();
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    try {
      if (m[1] === "0" && m[2] === "" && mounts.v2) {
        const dir = join(mounts.v2, m[3]!);
        if (/^frozen 1$/m.test(readFileSync(join(dir, "cgroup.events"), "utf8"))) return dir;
      } else if (m[2]!.split(",").includes("freezer") && mounts.v1) {
        const dir = join(mounts.v1, m[3]!);
        if (readFileSync(join(dir, "freezer.state"), "utf8").trim() !== "THAWED") return dir;
      }
    } catch {
      // a cgroup removed meanwhile, or a hierarchy this process does not see: not frozen
    }
  }
  return undefined;
}
