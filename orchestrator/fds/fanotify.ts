// fanotify groups (FANOTIFY entries, criu's fsnotify.c): the group's init flags and
// event flags (fdinfo "fanotify flags:… event-flags:…") and one mark per "fanotify ino:"
// (an inode mark: the inode by its file handle, given a path on dump as inotify's watches
// are, watched.ts) or "fanotify mnt_id:" line (a mount mark: the mount's path, from the task's
// mountinfo), each with its mark flags, mask and ignored mask. Filesystem marks
// (FAN_MARK_FILESYSTEM), which criu 4.2 does not keep either, are refused by name.
//
// Restore: tscriu makes the group (fanotify_init with the dumped flags, the file's
// O_NONBLOCK) and adds every mark by path (fanotify_mark FAN_MARK_ADD, with
// FAN_MARK_MOUNT for a mount, and once more with FAN_MARK_IGNORED_MASK for an ignored
// mask). Events queued at dump are lost, as with criu; a permission event a task was
// waiting on is answered by the kernel when the group goes (allowed).

import { closeSync, readFileSync, statSync } from "node:fs";
import { F, FD_CLOEXEC, O } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { underRoot } from "../restore/fileset.js";
import { badEntry, field, isAnon, MadeFds, part } from "./anon.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";
import { WatchedInodes, watchTarget, type WatchTarget } from "./watched.js";

const FAN_NONBLOCK = 0x2;
const FAN_MARK_ADD = 0x1;
const FAN_MARK_MOUNT = 0x10;
const FAN_MARK_IGNORED_MASK = 0x20;
/** The mark flags a mark keeps: FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE. */
const KEPT_MFLAGS = 0x40 | 0x200 | 0x400;
const MARK_INODE = 1;
const MARK_MOUNT = 2;

const INODE_LINE = /^ino:([0-9a-f]+) sdev:([0-9a-f]+) mflags:([0-9a-f]+) mask:([0-9a-f]+) ignored_mask:([0-9a-f]+) fhandle-bytes:([0-9a-f]+) fhandle-type:([0-9a-f]+) f_handle:([0-9a-f]*)$/;
const MOUNT_LINE = /^mnt_id:([0-9a-f]+) mflags:([0-9a-f]+) mask:([0-9a-f]+) ignored_mask:([0-9a-f]+)$/;

/** The mount point of mount `id` in process `pid`'s mount table. */
function mountPoint(pid: number, id: number): string | undefined {
  for (const line of readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n")) {
    const f = line.split(" ");
    if (Number(f[0]) === id && f[4] !== undefined) return f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  }
  return undefined;
}

class FanotifyDumper implements FdDumper {
  private readonly inodes: WatchedInodes;

  constructor(private readonly ctx: DumpContext) {
    this.inodes = new WatchedInodes(ctx.files, ctx.irmap);
  }

  matches(f: FdFacts): boolean {
    return isAnon(f, "[fanotify]");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const head = field(f, f.info, "fanotify flags", /^([0-9a-f]+) event-flags:([0-9a-f]+)$/);
    const mark: Record<string, unknown>[] = [];
    for (const line of f.info.lines.get("fanotify ino") ?? []) {
      const m = INODE_LINE.exec(`ino:${line}`);
      if (!m) throw new Error(`fd ${f.fd} (${f.link}): fdinfo has "fanotify ino:${line}", which tscriu does not read`);
      const [ino, sdev, bytes, type] = [BigInt(`0x${m[1]}`), Number.parseInt(m[2]!, 16), Number.parseInt(m[6]!, 16), Number.parseInt(m[7]!, 16)];
      const handle = Buffer.from(m[8]!, "hex").subarray(0, bytes);
      mark.push({
        id: 0,
        type: "INODE",
        mflags: Number.parseInt(m[3]!, 16),
        mask: Number.parseInt(m[4]!, 16) >>> 0,
        ignored_mask: Number.parseInt(m[5]!, 16) >>> 0,
        s_dev: sdev,
        ie: { i_ino: ino, f_handle: this.inodes.entry(sdev, ino, type, handle, { pid: f.pid, fd: f.fd, what: `${f.link} inode mark` }) },
      });
    }
    for (const line of f.info.lines.get("fanotify mnt_id") ?? []) {
      const m = MOUNT_LINE.exec(`mnt_id:${line}`);
      if (!m) throw new Error(`fd ${f.fd} (${f.link}): fdinfo has "fanotify mnt_id:${line}", which tscriu does not read`);
      const mntId = Number.parseInt(m[1]!, 16);
      const path = mountPoint(f.pid, mntId);
      if (path === undefined) throw new UnsupportedFd(`unsupported fd ${f.fd}: ${f.link} marks mount ${mntId}, which is not in the task's mount table`);
      mark.push({ id: 0, type: "MOUNT", mflags: Number.parseInt(m[2]!, 16), mask: Number.parseInt(m[3]!, 16) >>> 0, ignored_mask: Number.parseInt(m[4]!, 16) >>> 0, s_dev: 0, me: { mnt_id: mntId, path } });
    }
    if (f.info.lines.has("fanotify sdev")) throw new UnsupportedFd(`unsupported fd ${f.fd}: ${f.link} has a filesystem mark (FAN_MARK_FILESYSTEM), which tscriu does not dump`);
    const id = this.ctx.files.newId();
    this.ctx.files.add({
      type: "FANOTIFY",
      id,
      ffy: { id, flags: f.flags, fown: f.fown(), faflags: Number.parseInt(head[1]!, 16), evflags: Number.parseInt(head[2]!, 16), mark },
    });
    return { id, type: "FANOTIFY" };
  }

  settle(): void {
    this.inodes.settle();
  }

  images(): ExtraImage[] {
    return [];
  }
}

/** A mark: on an inode (its target) or on the mount at a path. */
type Mark = { on: WatchTarget | string; flags: number; mask: number; ignored: number; what: string };

class FanotifyRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const ffy = part(this.ctx, e.ffy, "FANOTIFY", what);
    const marks: Mark[] = [];
    for (const [i, m] of (ffy.mark ?? []).entries()) {
      const name = `fanotify mark ${i}`;
      const type = m.type as unknown;
      if (m.mflags & ~KEPT_MFLAGS) throw badEntry(this.ctx, what, `${name}: mark flags 0x${m.mflags.toString(16)}`);
      if (m.mask === 0 && m.ignored_mask === 0) throw badEntry(this.ctx, what, `${name} asks for nothing (mask and ignored mask 0)`);
      const mark = { flags: FAN_MARK_ADD | (m.mflags & KEPT_MFLAGS), mask: m.mask >>> 0, ignored: m.ignored_mask >>> 0, what: name };
      if (type === "INODE" || type === MARK_INODE) {
        if (!m.ie) throw badEntry(this.ctx, what, `${name}: an inode mark without its inode`);
        marks.push({ ...mark, on: await watchTarget(this.ctx, m.s_dev, m.ie.i_ino, m.ie.f_handle, `${what}: ${name}`) });
      } else if (type === "MOUNT" || type === MARK_MOUNT) {
        if (m.me?.path === undefined) throw badEntry(this.ctx, what, `${name}: a mount mark without its mount's path`);
        const path = underRoot(this.ctx.files.root, m.me.path);
        try {
          statSync(path);
        } catch (err) {
          throw badEntry(this.ctx, what, `${name}: cannot find ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
        }
        marks.push({ ...mark, on: path, flags: mark.flags | FAN_MARK_MOUNT });
      } else {
        throw badEntry(this.ctx, what, `${name}: mark type ${String(type)} (1 inode, 2 mount)`);
      }
    }
    // The init flags as dumped (fdinfo shows them to the task): tscriu's own fd is made
    // close-on-exec afterwards, not by adding FAN_CLOEXEC to them (criu adds what the file's flags say).
    const init = ffy.faflags | (ffy.flags & O.NONBLOCK ? FAN_NONBLOCK : 0);
    return {
      describe: `fanotify (${marks.length} mark${marks.length === 1 ? "" : "s"})`,
      fown: ffy.fown,
      open: () => {
        const b = bridge();
        // Every inode first: a ghost made again here is no event for the group's other marks.
        const targets = marks.map((m) => (typeof m.on === "string" ? undefined : m.on.open()));
        try {
          const fd = b.fanotifyInit(init >>> 0, ffy.evflags >>> 0);
          b.fcntl(fd, F.SETFD, FD_CLOEXEC);
          this.made.add(fd, ffy.flags);
          for (const [i, m] of marks.entries()) {
            const t = targets[i];
            const path = t ? `/proc/self/fd/${t.fd}` : (m.on as string);
            if (m.mask) b.fanotifyMark(fd, m.flags, m.mask, path);
            if (m.ignored) b.fanotifyMark(fd, m.flags | FAN_MARK_IGNORED_MASK, m.ignored, path);
          }
          return fd;
        } finally {
          for (const t of targets) if (t?.owned) closeSync(t.fd);
        }
      },
    };
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

export const fanotifyKind: FdKind = {
  type: "FANOTIFY",
  describe: "fanotify groups with their inode and mount marks",
  dumper: (ctx) => new FanotifyDumper(ctx),
  restorer: (ctx) => new FanotifyRestorer(ctx),
};
