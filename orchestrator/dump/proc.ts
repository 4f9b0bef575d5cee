// Parsers of the /proc files a dump reads. Each takes the text (so tests can feed
// it) or reads the file itself; numbers that may pass 2^53 are bigints.

import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { bridge } from "../../host-bridge/load.js";
import { ReadAhead } from "../read-ahead.js";

export function procPath(pid: number, file: string): string {
  return `/proc/${pid}/${file}`;
}

export function readProc(pid: number, file: string): string {
  return readFileSync(procPath(pid, file), "utf8");
}

/**
 * Reads /proc/PID/<file> on libuv's thread pool, started before this returns: a file
 * whose making costs (smaps walks every page table: 6-9 ms for 1 GiB here) is made while
 * the caller does something else. The kernel makes it a page per read, each under its
 * own hold of the task's mmap lock: what changed meanwhile is the caller's to check.
 */
export async function readProcAhead(pid: number, file: string): Promise<string> {
  return (await bridge().readWholeAsync(procPath(pid, file))).toString("utf8");
}

/** The fields of /proc/PID/stat criu records (numbering as in proc(5)). */
export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** the controlling terminal's device (0: none) and its foreground group (-1: none) */
  ttyNr: number;
  tpgid: number;
  flags: number;
  nice: number;
  numThreads: number;
  startCode: bigint;
  endCode: bigint;
  startStack: bigint;
  rtPriority: number;
  policy: number;
  startData: bigint;
  endData: bigint;
  startBrk: bigint;
  argStart: bigint;
  argEnd: bigint;
  envStart: bigint;
  envEnd: bigint;
  exitCode: number;
}

export function parseStat(text: string): ProcStat {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) throw new Error(`unparsable stat: ${text.slice(0, 80)}`);
  // f[0] is field 3 (state); field n is f[n - 3].
  const f = text.slice(close + 2).trim().split(/\s+/);
  if (f.length < 50) throw new Error(`stat has ${f.length + 2} fields, want 52`);
  const n = (i: number): number => Number(f[i - 3]);
  const b = (i: number): bigint => BigInt(f[i - 3]!);
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: f[0]!,
    ppid: n(4),
    pgid: n(5),
    sid: n(6),
    ttyNr: n(7),
    tpgid: n(8),
    flags: n(9),
    nice: n(19),
    numThreads: n(20),
    startCode: b(26),
    endCode: b(27),
    startStack: b(28),
    rtPriority: n(40),
    policy: n(41),
    startData: b(45),
    endData: b(46),
    startBrk: b(47),
    argStart: b(48),
    argEnd: b(49),
    envStart: b(50),
    envEnd: b(51),
    exitCode: n(52),
  };
}

/** /proc/PID/status: the key -> value lines. */
export function parseStatus(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const c = line.indexOf(":");
    if (c > 0) m.set(line.slice(0, c), line.slice(c + 1).trim());
  }
  return m;
}

export interface ProcCreds {
  uids: number[];
  gids: number[];
  groups: number[];
  /** 64-bit capability sets as [low word, high word], criu's layout */
  capInh: number[];
  capPrm: number[];
  capEff: number[];
  capBnd: number[];
  capAmb: number[];
  noNewPrivs: number;
  seccomp: number;
  umask: number;
  sigBlk: bigint;
  sigPnd: bigint;
  shdPnd: bigint;
  threads: number;
  tracerPid: number;
  state: string;
}

function capWords(hex: string | undefined): number[] {
  const v = BigInt(`0x${hex ?? "0"}`);
  return [Number(v & 0xffffffffn), Number(v >> 32n)];
}

export function statusCreds(st: Map<string, string>): ProcCreds {
  const nums = (k: string): number[] => (st.get(k) ?? "").split(/\s+/).filter((x) => x !== "").map(Number);
  return {
    uids: nums("Uid"),
    gids: nums("Gid"),
    groups: nums("Groups"),
    capInh: capWords(st.get("CapInh")),
    capPrm: capWords(st.get("CapPrm")),
    capEff: capWords(st.get("CapEff")),
    capBnd: capWords(st.get("CapBnd")),
    capAmb: capWords(st.get("CapAmb")),
    noNewPrivs: Number(st.get("NoNewPrivs") ?? 0),
    seccomp: Number(st.get("Seccomp") ?? 0),
    umask: Number.parseInt(st.get("Umask") ?? "22", 8),
    sigBlk: BigInt(`0x${st.get("SigBlk") ?? "0"}`),
    sigPnd: BigInt(`0x${st.get("SigPnd") ?? "0"}`),
    shdPnd: BigInt(`0x${st.get("ShdPnd") ?? "0"}`),
    threads: Number(st.get("Threads") ?? 1),
    tracerPid: Number(st.get("TracerPid") ?? 0),
    state: (st.get("State") ?? "?")[0] ?? "?",
  };
}

export const RLIM_INFINITY = 0xffffffffffffffffn;

/** /proc/PID/limits in the kernel's RLIMIT_* order (16 rows); "unlimited" is RLIM_INFINITY. */
export function parseLimits(text: string): { cur: bigint; max: bigint }[] {
  const out: { cur: bigint; max: bigint }[] = [];
  for (const line of text.split("\n").slice(1)) {
    if (line.trim() === "") continue;
    // The name column is 26 characters wide, then soft and hard limits.
    const rest = line.slice(26).trim().split(/\s+/);
    const val = (s: string | undefined): bigint => (s === "unlimited" ? RLIM_INFINITY : BigInt(s ?? "0"));
    out.push({ cur: val(rest[0]), max: val(rest[1]) });
  }
  return out;
}

/** /proc/PID/auxv as 64-bit words, up to (not including) the AT_NULL pair, as criu saves it. */
export function parseAuxv(buf: Buffer): bigint[] {
  const out: bigint[] = [];
  for (let off = 0; off + 16 <= buf.length; off += 16) {
    const type = buf.readBigUInt64LE(off);
    if (type === 0n) break;
    out.push(type, buf.readBigUInt64LE(off + 8));
  }
  return out;
}

export interface ProcTimer {
  id: number;
  signal: number;
  sigevValue: bigint;
  /** SIGEV_SIGNAL = 0, SIGEV_NONE = 1, SIGEV_THREAD_ID = 4 */
  notify: number;
  notifyTid: number;
  clockId: number;
}

const NOTIFY: Record<string, number> = { signal: 0, none: 1, thread: 2 };

/** /proc/PID/timers: the POSIX timers of a process. */
export function parseTimers(text: string): ProcTimer[] {
  const out: ProcTimer[] = [];
  let cur: Partial<ProcTimer> = {};
  for (const line of text.split("\n")) {
    let m: RegExpExecArray | null;
    if ((m = /^ID: (-?\d+)/.exec(line))) {
      cur = { id: Number(m[1]), notifyTid: 0 };
      out.push(cur as ProcTimer);
    } else if ((m = /^signal: (\d+)\/([0-9a-fx]+)/.exec(line))) {
      cur.signal = Number(m[1]);
      cur.sigevValue = BigInt(m[2]!.startsWith("0x") ? m[2]! : `0x${m[2]!}`);
    } else if ((m = /^notify: (\w+)\/(\w+)\.(\d+)/.exec(line))) {
      let notify = NOTIFY[m[1]!] ?? 0;
      if (m[2] === "tid") notify |= 4; // SIGEV_THREAD_ID
      cur.notify = notify;
      cur.notifyTid = Number(m[3]);
    } else if ((m = /^ClockID: (\d+)/.exec(line))) {
      cur.clockId = Number(m[1]);
    }
  }
  return out.sort((a, b) => a.id - b.id);
}

/**
 * /proc/PID/fdinfo/N: pos, flags (octal), mnt_id and the type-specific lines. Keys may
 * repeat (an epoll's "tfd:" line per target, an inotify's "inotify wd:" per watch):
 * `lines` keeps every value of a key, in order.
 */
export interface FdInfo {
  pos: bigint;
  flags: number;
  mntId: number;
  lines: Map<string, string[]>;
}

/** The first value of a key of an fdinfo, or undefined. */
export function fdinfoValue(info: FdInfo, key: string): string | undefined {
  return info.lines.get(key)?.[0];
}

export function parseFdinfo(text: string): FdInfo {
  const lines = new Map<string, string[]>();
  // (scanned line by line, not split: this runs once per fd, cold)
  for (let at = 0; at < text.length; ) {
    let end = text.indexOf("\n", at);
    if (end < 0) end = text.length;
    const c = text.indexOf(":", at);
    if (c > at && c < end) {
      const key = text.slice(at, c);
      const value = text.slice(c + 1, end).trim();
      const all = lines.get(key);
      if (all) all.push(value);
      else lines.set(key, [value]);
    }
    at = end + 1;
  }
  const first = (k: string): string | undefined => lines.get(k)?.[0];
  return {
    pos: BigInt(first("pos") ?? "0"),
    flags: Number.parseInt(first("flags") ?? "0", 8),
    mntId: Number(first("mnt_id") ?? -1),
    lines,
  };
}

/** Open fd numbers of a task, sorted. */
export function listFds(pid: number): number[] {
  return readdirSync(procPath(pid, "fd"))
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * /proc/PID/fdinfo/N of every fd of a frozen process, read on libuv's thread pool while
 * the dump reads the rest of the process (read-ahead.ts): by fd number, as a name. An fd
 * missing from it is read as usual.
 */
export async function readFdinfoAhead(pid: number): Promise<ReadonlyMap<string, Buffer>> {
  return new ReadAhead(procPath(pid, "fdinfo"), listFds(pid).map(String)).all();
}

/** Thread ids and direct children of a process (from the leader's task entry). */
export function threadsAndChildren(pid: number): { threads: number[]; children: number[] } {
  const threads: number[] = [];
  let children: number[] = [];
  for (const tid of readdirSync(procPath(pid, "task")).map(Number)) {
    let text: string;
    try {
      text = readFileSync(procPath(pid, `task/${tid}/children`), "utf8").trim();
    } catch (e) {
      // A thread that ended since the directory was read: it is no thread any more.
      if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ESRCH") continue;
      throw e;
    }
    threads.push(tid);
    if (text !== "") children = children.concat(text.split(/\s+/).map(Number));
  }
  return { threads: threads.sort((a, b) => a - b), children };
}

/** The namespace inode of /proc/PID/ns/NAME ("net:[4026531840]" -> 4026531840). */
export function nsInode(pid: number | "self", name: string): number | undefined {
  try {
    const m = /\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/${name}`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
