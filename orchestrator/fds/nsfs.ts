// Namespace files (nsfs: an open /proc/PID/ns/net and its kin; NS entries, criu's
// namespaces.c): the kernel names such an fd "net:[4026531840]", the kind of namespace and
// its inode. criu keeps which namespace it is by the namespace's id in the images (the
// net_ns_id, pid_ns_id… of the ids-PID.img of the processes in it), its clone flag and the
// file's flags.
//
// Only a namespace some process of the dumped tree is in has an id, and only such a one can
// be opened again: the restore opens /proc/PID/ns/KIND of the first process of the images
// in that namespace (criu's open_ns_fd). Any other namespace file is refused by name (criu
// cannot restore one either). tscriu restores every process in its own namespaces but the
// time one, so a net, pid, user… file is of tscriu's namespace again, and a time namespace
// file is of the restored processes' new time namespace.

import { constants as fsc, openSync } from "node:fs";
import { CLONE_NEW, O } from "../../host-bridge/constants.js";
import type { FileEntry } from "../../images/dir.js";
import { NAMESPACES } from "../dump/write.js";
import { nsInode } from "../dump/proc.js";
import { badEntry, MadeFds, part } from "./anon.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

type NsKind = (typeof NAMESPACES)[number][0];

/** "net:[4026531840]": the kind and the inode of the namespace. */
const LINK = /^([a-z]+):\[(\d+)\]$/;

/** The flags an open of /proc/PID/ns/KIND takes; the others are set afterwards (MadeFds), or meaningless here. */
const OPEN_FLAGS = 3 | O.PATH; // O_ACCMODE | O_PATH

function nsKind(name: string): NsKind | undefined {
  return NAMESPACES.find(([n]) => n === name)?.[0];
}

/** The key of kind `kind` in ids-PID.img (net_ns_id …) and the id every process of the tree has there (write.ts's numbering). */
function idsSlot(kind: NsKind): { key: string; id: number } {
  const i = NAMESPACES.findIndex(([n]) => n === kind);
  return { key: NAMESPACES[i]![1], id: i + 1 };
}

class NsfsDumper implements FdDumper {
  /** kind -> inode of that namespace of a process of the tree -> its id */
  private readonly known = new Map<NsKind, Map<number, number>>();

  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    const m = LINK.exec(f.link);
    return f.fmt === fsc.S_IFREG && m !== null && nsKind(m[1]!) !== undefined && BigInt(m[2]!) === f.st.ino;
  }

  dump(f: FdFacts): { id: number; type: string } {
    const m = LINK.exec(f.link)!;
    const kind = nsKind(m[1]!)!;
    const nsId = this.idOf(kind, Number(m[2]));
    if (nsId === undefined) throw new UnsupportedFd(`unsupported fd ${f.fd}: ${f.link}, a ${kind} namespace no process of the dumped tree is in (a restore opens only the namespaces of the tree's processes)`);
    const id = this.ctx.files.newId();
    this.ctx.files.add({ type: "NS", id, nsf: { id, ns_id: nsId, ns_cflag: CLONE_NEW[kind], flags: f.flags } });
    return { id, type: "NS" };
  }

  private idOf(kind: NsKind, inode: number): number | undefined {
    let byInode = this.known.get(kind);
    if (!byInode) {
      // Every process of the tree is in tscriu's namespaces, the time one aside (write.ts
      // refuses any other), so each kind has one id for all of them.
      const { id } = idsSlot(kind);
      byInode = new Map();
      for (const pid of this.ctx.pids) {
        const ino = nsInode(pid, kind);
        if (ino !== undefined) byInode.set(ino, id);
      }
      this.known.set(kind, byInode);
    }
    return byInode.get(inode);
  }

  images(): ExtraImage[] {
    return [];
  }
}

class NsfsRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  async plan(e: FileEntry, what: string): Promise<FdSource> {
    const n = part(this.ctx, e.nsf, "NS", what);
    const kind = (Object.keys(CLONE_NEW) as NsKind[]).find((k) => CLONE_NEW[k] === n.ns_cflag);
    if (kind === undefined) throw badEntry(this.ctx, what, `a namespace file of clone flag 0x${n.ns_cflag.toString(16)}, which is no kind of namespace`);
    const pid = await this.holder(kind, n.ns_id);
    if (pid === undefined) throw badEntry(this.ctx, what, `a file of ${kind} namespace ${n.ns_id}, which no process of the images is in (no ids-PID.img has ${idsSlot(kind).key} ${n.ns_id})`);
    const path = `/proc/${pid}/ns/${kind}`;
    return {
      describe: `${kind} namespace ${n.ns_id} (of pid ${pid})`,
      open: () => this.made.add(openSync(path, (n.flags & OPEN_FLAGS) | O.CLOEXEC), n.flags),
    };
  }

  /** The first process of the images (pstree order) in `kind` namespace `nsId`: it is there by the time fds are made. */
  private async holder(kind: NsKind, nsId: number): Promise<number | undefined> {
    const { key } = idsSlot(kind);
    for (const pid of this.ctx.tree) {
      const ids = (await this.ctx.optional(`ids-${pid}.img`))?.[0];
      if (ids !== undefined && ids[key] === nsId) return pid;
    }
    return undefined;
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

export const nsfsKind: FdKind = {
  type: "NS",
  describe: "namespace files (/proc/PID/ns/*) of the namespaces of the tree's processes",
  dumper: (ctx) => new NsfsDumper(ctx),
  restorer: (ctx) => new NsfsRestorer(ctx),
};
