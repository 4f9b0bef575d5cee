// Pipes (PIPE entries, criu's pipes.c): each end an entry naming the pipe by its inode
// (pipe_id); the bytes queued in the pipe go to pipes-data.img once per pipe, read
// without taking them out (tee from tscriu's copy; a write-only end is read through a
// new read end). On restore one pipe is made per pipe_id, filled, and each end handed
// out; a second open file description of one end is opened anew through /proc.
// The queued-data helpers are shared with FIFOs (fifo.ts).

import { closeSync, constants as fsc, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { F, O } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { peekPipe } from "../../host-bridge/pipe.js";
import type { FileEntry } from "../../images/dir.js";
import type { ModuleLog } from "../log.js";
import { procPath } from "../dump/proc.js";
import { RestoreError } from "../restore/errors.js";
import { closeFds, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

const O_CLOEXEC = 0o2000000;

/** The bytes queued in a pipe or FIFO, by inode, written once per pipe. */
export class QueuedData {
  private readonly byPipe = new Map<number, { data: Buffer; size: number }>();

  /** Records what fd `f` (one end) has queued, the first time its pipe is met. */
  take(f: FdFacts): void {
    const pipeId = Number(f.st.ino);
    if (this.byPipe.has(pipeId)) return;
    this.byPipe.set(pipeId, { data: peekEnd(f), size: bridge().fcntl(f.copy, F.GETPIPE_SZ) });
  }

  /** pipes-data.img / fifo-data.img. */
  image(name: string, type: string): ExtraImage[] {
    if (this.byPipe.size === 0) return [];
    const entries = [...this.byPipe].map(([pipeId, p]) => ({ pipe_id: pipeId, bytes: p.data.length, size: p.size, extra: new Uint8Array(p.data) }));
    return [{ name, type, entries }];
  }
}

/** A pipe's queued bytes, left in place. A write-only end is read through a new read end. */
function peekEnd(f: FdFacts): Buffer {
  if ((f.flags & 3) !== fsc.O_WRONLY) return peekPipe(f.copy);
  const rd = openSync(procPath(f.pid, `fd/${f.fd}`), fsc.O_RDONLY | fsc.O_NONBLOCK);
  try {
    return peekPipe(rd);
  } finally {
    closeSync(rd);
  }
}

export interface Queued {
  bytes: Uint8Array;
  size: number;
}

/** Reads and checks pipes-data.img or fifo-data.img: pipe_id → queued bytes. */
export async function readQueued(ctx: PlanContext, name: string): Promise<Map<number, Queued>> {
  const out = new Map<number, Queued>();
  for (const d of (await ctx.optional(name)) ?? []) {
    const bytes = (d["extra"] as Uint8Array | undefined) ?? new Uint8Array(0);
    if (bytes.length !== Number(d["bytes"])) throw new RestoreError("plan", ctx.pid, `pipe ${String(d["pipe_id"])}: ${bytes.length} bytes of data, the entry says ${String(d["bytes"])}`, { file: join(ctx.dir, name) });
    out.set(Number(d["pipe_id"]), { bytes, size: Number(d["size"] ?? 0) });
  }
  return out;
}

/** Grows the pipe to its dumped size when it can, then writes the queued bytes into it. */
export function fillPipe(w: number, d: Queued, what: string, log: ModuleLog): void {
  const b = bridge();
  if (d.size > b.fcntl(w, F.GETPIPE_SZ)) {
    try {
      b.fcntl(w, F.SETPIPE_SZ, d.size);
    } catch (e) {
      log.warn(`${what}: cannot grow to ${d.size} bytes (${(e as Error).message}); ${b.fcntl(w, F.GETPIPE_SZ)} kept`);
    }
  }
  if (d.bytes.length > b.fcntl(w, F.GETPIPE_SZ)) throw new Error(`${what}: ${d.bytes.length} queued bytes do not fit into the pipe`);
  for (let done = 0; done < d.bytes.length; ) done += writeSync(w, d.bytes, done, d.bytes.length - done);
}

class PipeDumper implements FdDumper {
  private readonly queued = new QueuedData();

  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return f.fmt === fsc.S_IFIFO && f.link.startsWith("pipe:");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const id = this.ctx.files.newId();
    this.ctx.files.add({ type: "PIPE", id, pipe: { id, pipe_id: Number(f.st.ino), flags: f.flags, fown: f.fown() } });
    this.queued.take(f);
    return { id, type: "PIPE" };
  }

  images(): ExtraImage[] {
    return this.queued.image("pipes-data.img", "PIPES_DATA");
  }
}

class PipeRestorer implements FdRestorer {
  private data: Promise<Map<number, Queued>> | undefined;
  private readonly pipes = new Map<number, { r: number; w: number; used: Set<number> }>();
  private readonly mine: number[] = [];

  constructor(private readonly ctx: PlanContext) {}

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const p = e.pipe;
    if (!p) throw new RestoreError("plan", this.ctx.pid, `${what}: a PIPE entry without its pipe fields`, { file: join(this.ctx.dir, "files.img") });
    this.data ??= readQueued(this.ctx, "pipes-data.img");
    const queued = (await this.data).get(p.pipe_id);
    return {
      describe: `pipe:[${p.pipe_id}]`,
      fown: p.fown,
      open: () => this.end(p.pipe_id, p.flags, queued),
    };
  }

  private end(pipeId: number, flags: number, queued: Queued | undefined): number {
    let p = this.pipes.get(pipeId);
    if (!p) {
      const [r, w] = bridge().pipe2(O.CLOEXEC);
      this.mine.push(r, w);
      p = { r, w, used: new Set() };
      this.pipes.set(pipeId, p);
      if (queued) fillPipe(w, queued, `pipe ${pipeId}`, this.ctx.log);
    }
    const end = (flags & 3) === fsc.O_WRONLY ? p.w : p.r;
    let fd = end;
    if (p.used.has(end)) {
      // A second open file description of the same end gets one of its own.
      fd = openSync(`/proc/self/fd/${end}`, (flags & 3) | O_CLOEXEC);
      this.mine.push(fd);
    }
    p.used.add(end);
    bridge().fcntl(fd, F.SETFL, flags & ~3);
    return fd;
  }

  inheritKeys(e: FileEntry): string[] {
    return e.pipe ? [`pipe:[${e.pipe.pipe_id}]`, `pipe[${e.pipe.pipe_id}]`] : [];
  }

  close(): void {
    closeFds(this.mine);
  }
}

export const pipeKind: FdKind = {
  type: "PIPE",
  describe: "pipes with their queued data",
  images: ["pipes-data.img"],
  dumper: (ctx) => new PipeDumper(ctx),
  restorer: (ctx) => new PipeRestorer(ctx),
};
