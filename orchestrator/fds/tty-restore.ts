// Terminals on restore: pty pairs and /dev/tty go to pty-restore.ts; a console, virtual
// terminal or serial line is opened by its path again; any other terminal is a shell job's, which comes back on tscriu's own terminal (as criu), given the dumped
// settings so that a program in raw mode stays in raw mode; without a terminal of
// tscriu's, the image's device path is opened.

import { constants as fsc, openSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { RestoreError } from "../restore/errors.js";
import { reopenFlags } from "../restore/fileset.js";
import type { Remote } from "../restore/remote.js";
import { closeFds, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";
import { PtyPairs, type TtyInfo } from "./pty-restore.js";
import { regInheritKeys } from "./regular.js";
import { ttyParams } from "./tty-facts.js";

const O_CLOEXEC = 0o2000000;

/** node:tty brings node:net with it (~5 ms of every dump and restore): loaded when a shell job is restored. */
function isatty(fd: number): boolean {
  return (createRequire(import.meta.url)("node:tty") as typeof import("node:tty")).isatty(fd);
}

/** The terminal a shell job gets: tscriu's own (as criu), else the image's device path. */
function shellTty(path: string, flags: number): number {
  for (const fd of [0, 1, 2]) if (isatty(fd)) return openSync(`/proc/self/fd/${fd}`, reopenFlags(flags) | O_CLOEXEC | fsc.O_NOCTTY);
  try {
    return openSync(path, reopenFlags(flags) | O_CLOEXEC | fsc.O_NOCTTY);
  } catch (e) {
    throw new Error(`--shell-job: tscriu has no terminal on fds 0-2 and ${path} cannot be opened (${(e as NodeJS.ErrnoException).code ?? ""})`);
  }
}

export class TtyRestorer implements FdRestorer {
  private infos: Promise<Map<number, TtyInfo>> | undefined;
  private pairs: Promise<PtyPairs> | undefined;
  private loaded: PtyPairs | undefined;
  private readonly mine: number[] = [];

  constructor(private readonly ctx: PlanContext) {}

  private allInfos(): Promise<Map<number, TtyInfo>> {
    this.infos ??= (async () => new Map(((await this.ctx.optional("tty-info.img")) ?? []).map((e) => [Number(e["id"]), e as unknown as TtyInfo])))();
    return this.infos;
  }

  private ptys(): Promise<PtyPairs> {
    this.pairs ??= (async () => (this.loaded = await PtyPairs.load(this.ctx, await this.allInfos())))();
    return this.pairs;
  }

  /** The REG entry naming the device: criu's regf_id, or the entry of the same id (tscriu's, older criu's). */
  private regFor(e: FileEntry): FileEntry | undefined {
    return this.ctx.entries(e.tty?.regf_id ?? e.id).find((x) => x.type === "REG");
  }

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const t = e.tty;
    if (!t) throw new RestoreError("plan", this.ctx.pid, `${what}: a TTY entry without its tty fields`, { file: join(this.ctx.dir, "files.img") });
    const info = (await this.allInfos()).get(t.tty_info_id);
    const reg = this.regFor(e);
    const name = reg?.reg?.name ?? "";
    if (info?.type === "PTY" && !info.pty) throw new RestoreError("plan", this.ctx.pid, `${what}: tty-info entry ${info.id} is a PTY without its index`, { file: join(this.ctx.dir, "tty-info.img") });
    if (info) {
      const ptys = await this.ptys();
      if (info.pty && ptys.isPaired(info)) return ptys.planEnd(e, reg, info);
      if (info.type === "CTTY" && ptys.hasCtty(this.ctx.pid)) return ptys.planCtty(e, info);
      // criu's open_simple_tty; with -j a VT or serial line is the job's terminal (criu's __tty_is_master)
      if (info.type === "CONSOLE" || (!this.ctx.shellJob && (info.type === "VT" || info.type === "SERIAL"))) return this.byPath(e, name || "/dev/console", info);
    }
    if (!this.ctx.shellJob) {
      if (!info) throw new RestoreError("plan", this.ctx.pid, `${what}: tty-info.img has no entry ${t.tty_info_id} for terminal ${name || "?"}`, { file: join(this.ctx.dir, "tty-info.img") });
      const why = info.pty ? `pty ${info.pty.index}'s slave without its master` : info.type === "CTTY" ? "/dev/tty of a session without a terminal among the restored ptys" : `a ${String(info.type)} terminal`;
      throw new RestoreError("plan", this.ctx.pid, `${what} is ${why} (${name || "no path"}): restore the shell job with --shell-job (-j)`);
    }
    const params = ttyParams(info);
    return {
      describe: name || "a terminal",
      fown: t.fown,
      open: () => {
        const fd = shellTty(name, t.flags);
        this.mine.push(fd);
        bridge().ttySetParams(fd, params);
        return fd;
      },
    };
  }

  /** A terminal opened by its path again, with its dumped settings. */
  private byPath(e: FileEntry, path: string, info: TtyInfo): FdSource {
    return {
      describe: path,
      fown: e.tty!.fown,
      open: () => {
        let fd: number;
        try {
          fd = openSync(path, reopenFlags(e.tty!.flags) | O_CLOEXEC | fsc.O_NOCTTY);
        } catch (err) {
          throw new RestoreError("files", this.ctx.pid, `the ${String(info.type)} terminal ${path} cannot be opened (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
        }
        this.mine.push(fd);
        bridge().ttySetParams(fd, ttyParams(info));
        return fd;
      },
    };
  }

  planned(): void {
    this.loaded?.check();
  }

  processMade(pid: number, remote: Remote): void {
    this.loaded?.processMade(pid, remote);
  }

  beforeFiles(tasks: ReadonlyMap<number, Remote>): void {
    this.loaded?.prepare(tasks);
  }

  async inheritKeys(e: FileEntry): Promise<string[]> {
    // criu's tty[rdev:dev] key, from tty-info.img
    const info = e.tty ? (await this.allInfos()).get(e.tty.tty_info_id) : undefined;
    const keys = info ? [`tty[${Number(info.rdev).toString(16)}:${Number(info.dev ?? 0).toString(16)}]`] : [];
    return [...keys, ...regInheritKeys(this.regFor(e))];
  }

  close(): void {
    closeFds(this.mine);
    this.loaded?.close();
  }
}
