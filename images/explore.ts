// crit's "x" explorers: ps (the process tree), fds (open files, cwd, root), mems
// (the VMAs) and rss (dumped pages against VMAs), printed in crit's layout so
// scripts that parse crit's output keep working.

import { quopriEncode } from "./pretty.js";
import { type ImageDir, taskId, type PstreeEntry } from "./dir.js";
import { ImageError } from "./errors.js";
import { VMA } from "./vma-status.js";

const pad = (s: string | number, n: number): string => String(s).padStart(n);
const padR = (s: string, n: number): string => s.padEnd(n);
const hex = (v: bigint | number): string => BigInt(v).toString(16);
const hex8 = (v: bigint | number): string => hex(v).padStart(8, "0");

type Rec = Record<string, unknown>;

/** Looks files up by (type, id) as crit does: files.img first, then the old per-type images. */
class FileNames {
  private files: Map<number, Rec> | null | undefined;
  private readonly legacy = new Map<string, Map<number, Rec> | null>();
  private readonly cache = new Map<string, string>();

  constructor(private readonly dir: ImageDir) {}

  private async filesImg(): Promise<Map<number, Rec> | null> {
    if (this.files !== undefined) return this.files;
    try {
      const img = await this.dir.image("files.img");
      this.files = new Map(img.entries.map((e) => [e["id"] as number, e]));
    } catch {
      this.files = null;
    }
    return this.files;
  }

  private async legacyImg(name: string): Promise<Map<number, Rec> | null> {
    if (!this.legacy.has(name)) {
      try {
        const img = await this.dir.image(name);
        this.legacy.set(name, new Map(img.entries.map((e) => [e["id"] as number, e])));
      } catch {
        this.legacy.set(name, null);
      }
    }
    return this.legacy.get(name)!;
  }

  /** The entry of kind `field` (reg, pipe, usk) for id, or undefined. */
  private async find(field: string, legacyImage: string, id: number): Promise<Rec | undefined> {
    const files = await this.filesImg();
    if (files && files.size > 0) {
      const f = files.get(id);
      if (f) return f[field] as Rec | undefined;
    }
    return (await this.legacyImg(legacyImage))?.get(id);
  }

  async name(type: string, id: number): Promise<string> {
    const key = `${type}/${id}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    let s: string;
    if (type === "REG") {
      const rf = await this.find("reg", "reg-files.img", id);
      s = typeof rf?.["name"] === "string" && rf["name"] !== "" ? rf["name"] : "unknown path";
    } else if (type === "PIPE") {
      const p = await this.find("pipe", "pipes.img", id);
      s = p ? `pipe[${String(p["pipe_id"])}]` : "pipe[?]";
    } else if (type === "UNIXSK") {
      const u = await this.find("usk", "unixsk.img", id);
      if (!u) s = "unix[?]";
      else {
        const raw = u["name"];
        const name = raw instanceof Uint8Array && raw.length > 0 ? ` ${quopriEncode(raw)}` : "";
        s = `unix[${Number(u["ino"])} (${Number(u["peer"] ?? 0)})${name}]`;
      }
    } else {
      s = `${type}.${id}`;
    }
    this.cache.set(key, s);
    return s;
  }
}

export async function explorePs(dir: ImageDir): Promise<string[]> {
  const tree = await dir.pstree();
  interface Node {
    p: PstreeEntry;
    pid: number;
    comm: string;
    kids: Node[];
  }
  const nodes = new Map<number, Node>();
  for (const p of tree) {
    const pid = taskId(p, "pid");
    const core = (await dir.core(pid)) as Rec;
    const tc = core["tc"] as Rec | undefined;
    const comm = typeof tc?.["comm"] === "string" ? tc["comm"] : "";
    nodes.set(pid, { p, pid, comm, kids: [] });
  }
  const roots: Node[] = [];
  for (const n of nodes.values()) {
    const ppid = n.p.ppid;
    if (ppid === 0) roots.push(n);
    else {
      const parent = nodes.get(ppid);
      if (!parent) throw new ImageError(`pstree: parent ${ppid} of ${n.pid} is not in the tree`, { file: "pstree.img" });
      parent.kids.push(n);
    }
  }
  const out = [`${pad("PID", 7)}${pad("PGID", 7)}${pad("SID", 7)}   COMM`];
  const show = (n: Node, depth: number): void => {
    out.push(`${pad(n.pid, 7)}${pad(taskId(n.p, "pgid"), 7)}${pad(taskId(n.p, "sid"), 7)}   ${" ".repeat(4 * depth)}${n.comm}`);
    for (const k of n.kids) show(k, depth + 1);
  };
  // crit shows the one root; several roots (restore-sibling trees) are shown in order.
  for (const r of roots) show(r, 0);
  return out;
}

export async function exploreFds(dir: ImageDir): Promise<string[]> {
  const names = new FileNames(dir);
  const out: string[] = [];
  for (const { pid } of await dir.tasks()) {
    out.push(String(pid));
    for (const fd of await dir.fdinfo(pid)) {
      const f = fd as Rec;
      out.push(`\t${pad(String(f["fd"]), 7)}: ${await names.name(String(f["type"]), f["id"] as number)}`);
    }
    const fs = (await dir.fs(pid)) as Rec;
    out.push(`\t${pad("cwd", 7)}: ${await names.name("REG", fs["cwd_id"] as number)}`);
    out.push(`\t${pad("root", 7)}: ${await names.name("REG", fs["root_id"] as number)}`);
  }
  return out;
}

const MAP_GROWSDOWN = 0x100;

export async function exploreMems(dir: ImageDir): Promise<string[]> {
  const names = new FileNames(dir);
  const ids = new Map<string, number>();
  const vid = (shmid: unknown): string => {
    const k = String(shmid);
    let v = ids.get(k);
    if (v === undefined) ids.set(k, (v = ids.size + 1));
    return hex(v);
  };
  const out: string[] = [];
  for (const { pid } of await dir.tasks()) {
    const mm = (await dir.mm(pid)) as Rec;
    out.push(String(pid));
    out.push(`\t${padR("exe", 36)}    ${await names.name("REG", mm["exe_file_id"] as number)}`);
    for (const v of (mm["vmas"] as Rec[] | undefined) ?? []) {
      const st = v["status"] as number;
      let fn: string;
      if (st & VMA.SYSVIPC) fn = ` ips[${vid(v["shmid"])}]`;
      else if (st & VMA.ANON_SHARED) fn = ` shmem[${vid(v["shmid"])}]`;
      else if (st & VMA.SOCKET) fn = ` packet[${vid(v["shmid"])}]`;
      else if (st & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)) {
        fn = " " + (await names.name("REG", Number(v["shmid"])));
        const pgoff = v["pgoff"] as bigint;
        if (pgoff) fn += ` + 0x${hex(pgoff)}`;
        if (st & VMA.FILE_SHARED) fn += " (s)";
      } else if (st & VMA.STACK) fn = " [stack]";
      else if (st & VMA.VSYSCALL) fn = " [vsyscall]";
      else if (st & VMA.VDSO) fn = " [vdso]";
      else if ((v["flags"] as number) & MAP_GROWSDOWN) fn = " [stack?]";
      else fn = "";
      if (!(st & VMA.REGULAR)) fn += " *";
      const prot = v["prot"] as number;
      const p = (prot & 1 ? "r" : "-") + (prot & 2 ? "w" : "-") + (prot & 4 ? "x" : "-");
      out.push(`\t${padR(`${hex8(v["start"] as bigint)}-${hex8(v["end"] as bigint)}`, 36)}${p}${fn}`);
    }
  }
  return out;
}

export async function exploreRss(dir: ImageDir): Promise<string[]> {
  const names = new FileNames(dir);
  const out: string[] = [];
  for (const { pid } of await dir.tasks()) {
    const vmas = (((await dir.mm(pid)) as Rec)["vmas"] as Rec[] | undefined) ?? [];
    const pm = (await dir.pages(pid)).pagemap;
    out.push(String(pid));
    let vmi = 0;
    let pvmi = -1;
    for (const run of pm.runs) {
      const pstr = `\t${hex(run.vaddr)} / ${padR(String(run.nrPages), 8)}`;
      while (vmi < vmas.length && (vmas[vmi]!["end"] as bigint) <= run.vaddr) vmi++;
      const pme = run.vaddr + (BigInt(run.nrPages) << 12n);
      let vstr = "";
      while (vmi < vmas.length && (vmas[vmi]!["start"] as bigint) < pme) {
        const v = vmas[vmi]!;
        if (vmi === pvmi) vstr += " ~";
        else {
          const start = v["start"] as bigint;
          const end = v["end"] as bigint;
          vstr += ` ${hex8(start)} / ${padR(String((end - start) >> 12n), 8)}`;
          if ((v["status"] as number) & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)) {
            vstr += " " + (await names.name("REG", Number(v["shmid"])));
          }
          pvmi = vmi;
        }
        vstr += `\n\t${" ".repeat(23)}`;
        vmi++;
      }
      vmi = Math.max(vmi - 1, 0);
      out.push(`${padR(pstr, 24)}${vstr}`);
    }
  }
  return out;
}

export const EXPLORERS = { ps: explorePs, fds: exploreFds, mems: exploreMems, rss: exploreRss } as const;
export type ExploreWhat = keyof typeof EXPLORERS;
