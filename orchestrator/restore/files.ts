// The fd table (fdinfo-N.img + files.img), cwd, root and umask (fs-PID.img). tscriu makes
// each open file description itself -- opens regular files, directories and devices,
// makes pipes and fills them, opens FIFOs, reopens memfds, takes --inherit-fd and the
// shell job's terminal from its own fds -- and the task takes a copy of each through
// pidfd_getfd, then dup3s it to its number. Offsets are set in the task (the description
// is shared). Supported kinds: REG (files, directories, character devices), PIPE, FIFO,
// MEMFD, TTY (with --shell-job); any other is refused before anything is created.

import { closeSync, constants as fsc, fstatSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isatty } from "node:tty";
import { F, O } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { Termios, TtyParams } from "../../host-bridge/native.js";
import type { FdinfoEntry, FileEntry, FsEntry } from "../../images/dir.js";
import { readImage, readOptionalImage } from "../../images/io.js";
import type { ModuleLog } from "../log.js";
import { RestoreError } from "./errors.js";
import { reopenFlags, type FileSet, type RegFile } from "./fileset.js";
import { NR, type Call, type Remote } from "./remote.js";
import type { ShmObject, ShmTable } from "./shmem.js";

const SEEK_SET = 0;
const F_SETOWN_EX = 15;
const F_SETSIG = 10;
const O_CLOEXEC = 0o2000000;

type Fown = { uid: number; euid: number; signum: number; pid_type: number; pid: number };

export type FdSource =
  | { kind: "reg"; file: RegFile; fown: Fown | undefined }
  | { kind: "pipe"; pipeId: number; flags: number; fown: Fown | undefined }
  | { kind: "fifo"; pipeId: number; file: RegFile }
  | { kind: "memfd"; obj: ShmObject; flags: number; pos: bigint; fown: Fown | undefined }
  | { kind: "tty"; path: string; flags: number; fown: Fown | undefined; params: TtyParams }
  | { kind: "inherit"; local: number; what: string };

export interface FdPlan {
  fds: { fd: number; id: number; cloexec: boolean }[];
  sources: Map<number, FdSource>;
  /** queued bytes of pipes and FIFOs by pipe id */
  data: Map<number, { bytes: Uint8Array; size: number }>;
  cwd: RegFile;
  root: RegFile;
  umask: number | undefined;
  maxFd: number;
}

export interface FdOptions {
  shellJob: boolean;
  /** --inherit-fd fd[N]:resource */
  inheritFds: readonly string[];
}

/** --inherit-fd fd[N]:resource as criu writes it. */
export function parseInheritFd(arg: string): { fd: number; key: string } {
  const m = /^fd\[(\d+)\]:(.+)$/.exec(arg);
  if (!m) throw new Error(`--inherit-fd ${arg}: expected fd[N]:resource`);
  return { fd: Number(m[1]), key: m[2]! };
}

/** The keys a file answers to in --inherit-fd (criu's resource names). */
function inheritKeys(f: FileEntry, reg: FileEntry | undefined, tty: Map<number, Record<string, unknown>>): string[] {
  if (f.pipe) return [`pipe:[${f.pipe.pipe_id}]`, `pipe[${f.pipe.pipe_id}]`];
  if (f.tty) {
    const info = tty.get(f.tty.tty_info_id);
    const keys = info ? [`tty[${Number(info["rdev"]).toString(16)}:${Number(info["dev"] ?? 0).toString(16)}]`] : [];
    if (reg?.reg) keys.push(reg.reg.name, reg.reg.name.replace(/^\//, ""));
    return keys;
  }
  const name = f.reg?.name ?? reg?.reg?.name;
  return name ? [name, name.replace(/^\//, "")] : [];
}

/** Reads and checks the fd table, cwd and root. No side effects. */
export async function planFds(
  pid: number,
  dir: string,
  fdinfo: readonly FdinfoEntry[],
  fs: FsEntry,
  files: FileSet,
  shm: ShmTable,
  opts: FdOptions,
): Promise<FdPlan> {
  // files.img may hold two entries with one id (a TTY and the REG naming its device).
  const all = (await readImage(join(dir, "files.img"))).entries as FileEntry[];
  const regById = new Map<number, FileEntry>();
  for (const f of all) if (f.type === "REG") regById.set(f.id, f);
  const tty = new Map<number, Record<string, unknown>>();
  const ttyImg = join(dir, "tty-info.img");
  for (const e of (await readOptionalImage(ttyImg))?.entries ?? []) tty.set(Number(e["id"]), e);
  const inherit = opts.inheritFds.map(parseInheritFd);
  for (const i of inherit) {
    try {
      fstatSync(i.fd);
    } catch {
      throw new RestoreError("plan", pid, `--inherit-fd fd[${i.fd}]:${i.key}: tscriu has no fd ${i.fd}`);
    }
  }
  const plan: FdPlan = { fds: [], sources: new Map(), data: new Map(), cwd: await files.reg(fs.cwd_id, "cwd"), root: await files.reg(fs.root_id, "root"), umask: fs.umask, maxFd: -1 };
  for (const e of [...fdinfo].sort((a, b) => a.fd - b.fd)) {
    plan.fds.push({ fd: e.fd, id: e.id, cloexec: (e.flags & 1) !== 0 });
    plan.maxFd = Math.max(plan.maxFd, e.fd);
    if (plan.sources.has(e.id)) continue;
    const what = `fd ${e.fd}`;
    const f = all.filter((x) => x.id === e.id).find((x) => x.type === e.type) ?? files.files.get(e.id);
    if (!f) throw new RestoreError("plan", pid, `${what} refers to file id ${e.id}, which files.img does not have`, { file: join(dir, "files.img") });
    const inh = inherit.find((i) => inheritKeys(f, regById.get(e.id), tty).includes(i.key));
    if (inh) {
      plan.sources.set(e.id, { kind: "inherit", local: inh.fd, what: `--inherit-fd fd[${inh.fd}]:${inh.key}` });
      continue;
    }
    switch (e.type) {
      case "REG":
        plan.sources.set(e.id, { kind: "reg", file: await files.reg(e.id, what), fown: f.reg?.fown });
        break;
      case "PIPE":
        plan.sources.set(e.id, { kind: "pipe", pipeId: f.pipe!.pipe_id, flags: f.pipe!.flags, fown: f.pipe!.fown });
        break;
      case "FIFO":
        plan.sources.set(e.id, { kind: "fifo", pipeId: f.fifo!.pipe_id, file: await files.reg(f.fifo!.regf_id ?? e.id, `${what} (FIFO)`) });
        break;
      case "MEMFD":
        plan.sources.set(e.id, { kind: "memfd", obj: await shm.forMemfdFile(e.id, what), flags: f.memfd!.flags, pos: f.memfd!.pos, fown: f.memfd!.fown });
        break;
      case "TTY": {
        if (!opts.shellJob) throw new RestoreError("plan", pid, `${what} is a terminal: restore the shell job with --shell-job (-j)`);
        const name = regById.get(e.id)?.reg?.name ?? "";
        plan.sources.set(e.id, { kind: "tty", path: name, flags: f.tty!.flags, fown: f.tty!.fown, params: ttyParams(tty.get(f.tty!.tty_info_id)) });
        break;
      }
      default:
        throw new RestoreError("plan", pid, `${what}: restoring ${String(e.type)} files is not supported`, { file: join(dir, "files.img") });
    }
  }
  for (const name of ["pipes-data.img", "fifo-data.img"]) {
    for (const d of (await readOptionalImage(join(dir, name)))?.entries ?? []) {
      const bytes = (d["extra"] as Uint8Array | undefined) ?? new Uint8Array(0);
      if (bytes.length !== Number(d["bytes"])) throw new RestoreError("plan", pid, `pipe ${String(d["pipe_id"])}: ${bytes.length} bytes of data, the entry says ${String(d["bytes"])}`, { file: join(dir, name) });
      plan.data.set(Number(d["pipe_id"]), { bytes, size: Number(d["size"] ?? 0) });
    }
  }
  return plan;
}

type TermiosEntry = { c_iflag: number; c_oflag: number; c_cflag: number; c_lflag: number; c_line: number; c_cc: number[] };

function termios(e: TermiosEntry | undefined): Termios | undefined {
  return e && { iflag: e.c_iflag, oflag: e.c_oflag, cflag: e.c_cflag, lflag: e.c_lflag, line: e.c_line, cc: e.c_cc };
}

/** What of a tty-info.img entry goes back onto the terminal (each part is optional there). */
function ttyParams(info: Record<string, unknown> | undefined): TtyParams {
  if (!info) return {};
  const w = info["winsize"] as { ws_row: number; ws_col: number; ws_xpixel: number; ws_ypixel: number } | undefined;
  const t = termios(info["termios"] as TermiosEntry | undefined);
  const lt = termios(info["termios_locked"] as TermiosEntry | undefined);
  return {
    ...(lt ? { lockedTermios: lt } : {}),
    ...(t ? { termios: t } : {}),
    ...(w ? { winsize: { rows: w.ws_row, cols: w.ws_col, xpixel: w.ws_xpixel, ypixel: w.ws_ypixel } } : {}),
  };
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

/** Local open file descriptions, one per files.img id; they are closed by the caller's cleanup. */
export class FdMaker {
  private readonly pipes = new Map<number, { r: number; w: number; used: Set<number> }>();
  private readonly fifoHelpers = new Map<number, number>();
  readonly locals = new Map<number, number>();
  private readonly mine: number[] = [];

  constructor(
    private readonly plan: FdPlan,
    private readonly files: FileSet,
    private readonly log: ModuleLog,
  ) {}

  private own(fd: number): number {
    this.mine.push(fd);
    return fd;
  }

  private pipe(pipeId: number): { r: number; w: number; used: Set<number> } {
    let p = this.pipes.get(pipeId);
    if (p) return p;
    const [r, w] = bridge().pipe2(O.CLOEXEC);
    p = { r: this.own(r), w: this.own(w), used: new Set() };
    this.pipes.set(pipeId, p);
    const d = this.plan.data.get(pipeId);
    if (d) this.fill(w, d, `pipe ${pipeId}`);
    return p;
  }

  private fill(w: number, d: { bytes: Uint8Array; size: number }, what: string): void {
    const b = bridge();
    if (d.size > b.fcntl(w, F.GETPIPE_SZ)) {
      try {
        b.fcntl(w, F.SETPIPE_SZ, d.size);
      } catch (e) {
        this.log.warn(`${what}: cannot grow to ${d.size} bytes (${(e as Error).message}); ${b.fcntl(w, F.GETPIPE_SZ)} kept`);
      }
    }
    if (d.bytes.length > b.fcntl(w, F.GETPIPE_SZ)) throw new Error(`${what}: ${d.bytes.length} queued bytes do not fit into the pipe`);
    for (let done = 0; done < d.bytes.length; ) done += writeSync(w, d.bytes, done, d.bytes.length - done);
  }

  /** tscriu's fd of file `id` (made on first use). */
  make(id: number): number {
    const known = this.locals.get(id);
    if (known !== undefined) return known;
    const src = this.plan.sources.get(id)!;
    let fd: number;
    switch (src.kind) {
      case "reg":
        fd = this.files.openFresh(src.file, reopenFlags(src.file.flags));
        break;
      case "pipe": {
        const p = this.pipe(src.pipeId);
        const end = (src.flags & 3) === fsc.O_WRONLY ? p.w : p.r;
        // A second description of the same end (reopened through /proc) gets its own fd.
        fd = p.used.has(end) ? this.own(openSync(`/proc/self/fd/${end}`, (src.flags & 3) | O_CLOEXEC)) : end;
        p.used.add(end);
        bridge().fcntl(fd, F.SETFL, src.flags & ~3);
        break;
      }
      case "fifo": {
        // A reader and writer of our own first, so that neither open blocks and the data
        // has somewhere to wait until the task holds its ends.
        let helper = this.fifoHelpers.get(src.pipeId);
        if (helper === undefined) {
          helper = this.own(this.files.openFresh(src.file, fsc.O_RDWR | fsc.O_NONBLOCK));
          this.fifoHelpers.set(src.pipeId, helper);
          const d = this.plan.data.get(src.pipeId);
          if (d) this.fill(helper, d, `FIFO ${src.file.name}`);
        }
        fd = this.files.openFresh(src.file, reopenFlags(src.file.flags) | fsc.O_NONBLOCK);
        bridge().fcntl(fd, F.SETFL, reopenFlags(src.file.flags) & ~3);
        break;
      }
      case "memfd":
        fd = this.own(openSync(`/proc/self/fd/${src.obj.local}`, reopenFlags(src.flags) | O_CLOEXEC));
        break;
      case "tty":
        fd = this.own(shellTty(src.path, src.flags));
        // As criu: the terminal the job comes back on gets the dumped settings (a
        // program in raw mode stays in raw mode).
        bridge().ttySetParams(fd, src.params);
        break;
      case "inherit":
        fd = src.local;
        break;
    }
    this.locals.set(id, fd);
    return fd;
  }

  /** Closes the pipes, FIFO helpers and descriptions made here (the task has its copies). */
  closeAll(): void {
    for (const fd of this.mine.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        // closed already
      }
    }
  }
}

/** Installs every fd in the task at its number, then offsets and owners. */
export function restoreFds(remote: Remote, plan: FdPlan, maker: FdMaker): void {
  const first = new Map<number, number>();
  for (const { fd, id, cloexec } of plan.fds) {
    const src = plan.sources.get(id)!;
    const local = maker.make(id);
    const what = `fd ${fd} (${src.kind === "reg" || src.kind === "fifo" ? src.file.name : src.kind === "inherit" ? src.what : src.kind})`;
    const got = first.has(id) ? first.get(id)! : remote.takeFd(local, what);
    const calls: Call[] = [];
    if (got !== fd) {
      calls.push({ what: `dup3 of ${what}`, nr: NR.dup3, args: [got, fd, cloexec ? O_CLOEXEC : 0] });
      if (!first.has(id)) calls.push({ what: `close(${got})`, nr: NR.close, args: [got] });
    } else if (!cloexec) {
      calls.push({ what: `fcntl(F_SETFD) of ${what}`, nr: NR.fcntl, args: [fd, F.SETFD, 0] });
    }
    if (!first.has(id)) {
      first.set(id, fd);
      calls.push(...settle(fd, src, remote, what));
    }
    remote.batch(calls);
  }
}

/** Offset and owner of a freshly installed description. */
function settle(fd: number, src: FdSource, remote: Remote, what: string): Call[] {
  const calls: Call[] = [];
  const pos = src.kind === "reg" || src.kind === "fifo" ? src.file.pos : src.kind === "memfd" ? src.pos : 0n;
  if (pos > 0n && src.kind !== "fifo") calls.push({ what: `lseek of ${what} to ${pos}`, nr: NR.lseek, args: [fd, pos, SEEK_SET] });
  const fown = src.kind === "reg" || src.kind === "pipe" || src.kind === "memfd" || src.kind === "tty" ? src.fown : undefined;
  if (fown && fown.pid !== 0) {
    const owner = Buffer.alloc(8);
    owner.writeInt32LE(fown.pid_type === 2 ? 2 : fown.pid_type === 1 ? 1 : 0, 0);
    owner.writeInt32LE(fown.pid, 4);
    calls.push({ what: `fcntl(F_SETOWN_EX) of ${what}`, nr: NR.fcntl, args: [fd, F_SETOWN_EX, remote.write(0, owner)] });
  }
  if (fown && fown.signum !== 0) calls.push({ what: `fcntl(F_SETSIG) of ${what}`, nr: NR.fcntl, args: [fd, F_SETSIG, fown.signum] });
  return calls;
}

/** chroot into the dumped root (when it is not ours), chdir to the dumped cwd, umask. */
export function restoreFs(remote: Remote, plan: FdPlan, files: FileSet): void {
  const dirFd = (f: RegFile, what: string): number => remote.takeFd(files.open(f, fsc.O_RDONLY | fsc.O_DIRECTORY), what);
  if (plan.root.path !== "/") {
    const r = dirFd(plan.root, `root ${plan.root.path}`);
    remote.batch([
      { what: `fchdir to the root ${plan.root.path}`, nr: NR.fchdir, args: [r] },
      { what: `chroot(".") into ${plan.root.path}`, nr: NR.chroot, args: [remote.write(0, Buffer.from(".\0"))] },
      { what: "close", nr: NR.close, args: [r] },
    ]);
  }
  const c = dirFd(plan.cwd, `cwd ${plan.cwd.path}`);
  const calls: Call[] = [
    { what: `fchdir to ${plan.cwd.path}`, nr: NR.fchdir, args: [c] },
    { what: "close", nr: NR.close, args: [c] },
  ];
  if (plan.umask !== undefined) calls.push({ what: `umask(0${plan.umask.toString(8)})`, nr: NR.umask, args: [plan.umask] });
  remote.batch(calls);
}
