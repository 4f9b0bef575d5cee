// File locks (filelocks.img, criu's file-lock.c): flock(2) locks, POSIX record locks
// (fcntl F_SETLK) and OFD locks (F_OFD_SETLK), shared or exclusive, on byte ranges.
//
// Dump: the kernel lists the locks an fd holds in its fdinfo, one "lock:" line each
// ("1: POSIX  ADVISORY  WRITE 4242 fe:00:1234 10 29"), as criu reads them since Linux
// 4.1: a POSIX lock on the fd its owner set it through (the owner is the process), a
// flock or OFD lock on every fd of its open file description (the owner is the
// description). So a flock or OFD lock is written once for its description, on the first
// fd of the tree met that holds it, and a POSIX lock once per process (a dup'd fd shows
// it again), as criu writes them: {flag FL_*, type F_RDLCK/F_WRLCK, pid, fd, start, len
// (0: to the end of the file)}. Without --file-locks a task holding a lock is refused,
// naming the fd, as criu refuses it. The old mandatory (MSNFS) flocks are refused by name.
//
// Leases (fcntl F_SETLEASE) belong to the open file description, as flocks do, and
// fdinfo shows one only on the fds of that description ("LEASE  ACTIVE    READ ..."), so
// two descriptions of a file each keep their own. An unbroken lease is {flag FL_LEASE,
// type F_RDLCK/F_WRLCK}; a lease being broken ("BREAKING", its type the one it is being
// broken to: READ or UNLCK) carries criu's LEASE_BREAKING bit in the type. criu restores
// a breaking lease by taking the full lease the fd allows, then opening the file again
// without blocking for the access that breaks it to the target type; tscriu does the same,
// through /proc/self/fd so the task's own file is opened whatever its path.
//
// Restore (--file-locks): each lock is taken again by the process that held it, inside
// it, once its fds and mm are in place (a POSIX lock belongs to the process that sets it;
// flock and OFD locks to the description, so any holder would do, the one in the entry
// does it). Locks held at dump did not conflict, so they are taken without waiting
// (F_SETLK, not criu's F_SETLKW): a conflict means something outside the restore holds
// the file now, and the restore fails naming the lock instead of hanging. criu ignores
// filelocks.img without --file-locks; tscriu does too, with a warning.

import { join } from "node:path";
import type { FdinfoEntry, FileEntry } from "../../images/dir.js";
import type { Entry } from "../../images/schema/dsl.js";
import type { file_lock_entry } from "../../images/schema/index.js";
import type { ModuleLog } from "../log.js";
import { RestoreError } from "../restore/errors.js";
import { errnoName, NR, type Call, type Remote } from "../restore/remote.js";
import type { ExtraImage } from "./kind.js";

export type FileLockEntry = Entry<typeof file_lock_entry>;

/** criu's FL_* kinds (the entry's `flag`) */
export const FL = { POSIX: 1, FLOCK: 2, OFD: 4, LEASE: 8 } as const;
const F_RDLCK = 0;
const F_WRLCK = 1;
const F_UNLCK = 2;
/** criu's bit in a lease's type: the lease is being broken to the type in the low bits */
export const LEASE_BREAKING = 4;
const F_SETLEASE = 1024;
const F_SETLK = 6;
const F_OFD_SETLK = 37;
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_WRONLY = 1;
/** struct flock on x86_64: short type, short whence, 4 bytes padding, off_t start, off_t len, pid_t pid */
const FLOCK_SIZE = 32;

const KINDS: Record<string, number> = { POSIX: FL.POSIX, FLOCK: FL.FLOCK, OFDLCK: FL.OFD, LEASE: FL.LEASE };
const LINE = /^\d+:\s*(\S+)\s+(\S+)\s+(\S+)\s+(-?\d+)\s+[0-9a-f]+:[0-9a-f]+:\d+\s+(\d+)\s+(\d+|EOF)\s*$/;

/** A lock as fdinfo shows it. */
interface FdinfoLock {
  flag: number;
  /** F_RDLCK, F_WRLCK, or for a lease being broken its target type with LEASE_BREAKING */
  type: number;
  start: bigint;
  /** the last byte, or undefined for "EOF" */
  end: bigint | undefined;
}

function kindName(flag: number): string {
  return flag === FL.POSIX ? "POSIX" : flag === FL.FLOCK ? "flock" : flag === FL.OFD ? "OFD" : flag === FL.LEASE ? "lease" : `kind ${flag}`;
}

function range(start: bigint, len: bigint): string {
  return len === 0n ? `bytes ${start} to the end` : `bytes ${start}-${start + len - 1n}`;
}

function leaseName(type: number): string {
  const to = type & ~LEASE_BREAKING;
  const name = to === F_WRLCK ? "write" : to === F_RDLCK ? "read" : to === F_UNLCK ? "unlock" : `type ${to}`;
  return type & LEASE_BREAKING ? `lease being broken (to ${name})` : `${name} lease`;
}

/** "a POSIX write lock on bytes 10-29", "a read lease" */
export function describeLock(e: Pick<FileLockEntry, "flag" | "type" | "start" | "len">): string {
  if (e.flag === FL.LEASE) return leaseName(e.type);
  const what = `${kindName(e.flag)} ${e.type === F_WRLCK ? "write" : "read"} lock`;
  return e.flag === FL.FLOCK ? what : `${what} on ${range(e.start, e.len)}`;
}

/** One fdinfo "lock:" value, or an error naming what tscriu cannot keep. */
function parseLock(line: string, what: string): FdinfoLock {
  const m = LINE.exec(line);
  if (!m) throw new Error(`${what}: fdinfo has "lock: ${line}", which tscriu does not read`);
  const [, kind, advisory, type] = m as unknown as [string, string, string, string];
  const flag = KINDS[kind];
  if (flag === FL.LEASE) {
    // A breaker is a task blocked in open(2) on the lease, not a lease; the dump stopped it.
    if (advisory !== "ACTIVE" && advisory !== "BREAKING") throw new Error(`${what} has a lease line tscriu does not dump ("${line}")`);
    const to = type === "WRITE" ? F_WRLCK : type === "READ" ? F_RDLCK : type === "UNLCK" ? F_UNLCK : undefined;
    if (to === undefined || (advisory === "ACTIVE" && to === F_UNLCK)) throw new Error(`${what} holds a lease of type ${type}, which tscriu does not dump`);
    return { flag, type: advisory === "BREAKING" ? to | LEASE_BREAKING : to, start: 0n, end: undefined };
  }
  if (flag === undefined || advisory !== "ADVISORY") throw new Error(`${what} holds a lock tscriu does not dump ("${line}")`);
  if (type !== "READ" && type !== "WRITE") throw new Error(`${what} holds a ${kind} lock of type ${type}, which tscriu does not dump`);
  return { flag, type: type === "WRITE" ? F_WRLCK : F_RDLCK, start: BigInt(m[5]!), end: m[6] === "EOF" ? undefined : BigInt(m[6]!) };
}

/** The locks of the dumped tree, gathered fd by fd. */
export class LockDump {
  readonly entries: FileLockEntry[] = [];

  constructor(private readonly enabled: boolean) {}

  /**
   * The "lock:" lines of fd `fd` of `pid`. `firstInTree`: no fd met before holds this open
   * file description; `firstInProcess`: no fd of this process does.
   */
  note(pid: number, fd: number, link: string, lines: readonly string[], firstInTree: boolean, firstInProcess: boolean): void {
    const what = `fd ${fd} (${link}) of pid ${pid}`;
    for (const line of lines) {
      const l = parseLock(line, what);
      const keep = l.flag === FL.POSIX ? firstInProcess : firstInTree;
      if (!keep) continue;
      const e: FileLockEntry = { flag: l.flag, type: l.type, pid, fd, start: l.start, len: l.end === undefined ? 0n : l.end + 1n - l.start };
      if (!this.enabled) throw new Error(`${what} holds a ${describeLock(e)}; dump file locks with --file-locks`);
      this.entries.push(e);
    }
  }

  images(): ExtraImage[] {
    return this.entries.length ? [{ name: "filelocks.img", type: "FILE_LOCKS", entries: this.entries }] : [];
  }
}

/** What a process of the images is to the lock plan: its fds and what they are. */
export interface LockTask {
  pid: number;
  fdinfo: readonly FdinfoEntry[];
}

/**
 * Reads and checks filelocks.img against the processes of the images (no side effects):
 * each lock's process, fd, kind, type and range; a POSIX or OFD lock on a regular file
 * open for the access it needs. Returns the locks of each process, in the image's order.
 */
export function planLocks(
  dir: string,
  entries: readonly FileLockEntry[] | undefined,
  enabled: boolean,
  tasks: readonly LockTask[],
  file: (id: number) => FileEntry | undefined,
  log: ModuleLog,
): Map<number, FileLockEntry[]> {
  const out = new Map<number, FileLockEntry[]>();
  if (!entries || entries.length === 0) return out;
  if (!enabled) {
    log.warn(`filelocks.img holds ${entries.length} lock${entries.length === 1 ? "" : "s"}; they are not taken again without --file-locks`);
    return out;
  }
  const img = join(dir, "filelocks.img");
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  entries.forEach((e, i) => {
    const fail = (msg: string): RestoreError => new RestoreError("plan", e.pid > 0 ? e.pid : 0, `lock ${i}: ${msg}`, { file: img });
    const task = byPid.get(e.pid);
    if (!task) throw fail(`pid ${e.pid} is not a live process of the images`);
    const fde = task.fdinfo.find((x) => x.fd === e.fd);
    if (!fde) throw fail(`fd ${e.fd} is not an fd of pid ${e.pid}`);
    const f = file(fde.id);
    if (e.flag === FL.LEASE) checkLease(e, f, fail);
    else checkLock(e, f, fail);
    let list = out.get(e.pid);
    if (!list) out.set(e.pid, (list = []));
    list.push(e);
  });
  return out;
}

/** A lease is on a regular file; a breaking one breaks to read or unlock, an unbroken one is read or write. */
function checkLease(e: FileLockEntry, f: FileEntry | undefined, fail: (msg: string) => RestoreError): void {
  if (!f?.reg) throw fail(`a lease on fd ${e.fd}, which is not a regular file (file type ${f ? String(f.type) : "missing"})`);
  const to = e.type & ~LEASE_BREAKING;
  const ok = e.type & LEASE_BREAKING ? to === F_RDLCK || to === F_UNLCK : to === F_RDLCK || to === F_WRLCK;
  if (!ok || e.type > (LEASE_BREAKING | F_UNLCK)) throw fail(`a lease of type ${e.type} (0 read, 1 write; with ${LEASE_BREAKING}, being broken to 0 read or 2 unlock)`);
  const acc = f.reg.flags & O_ACCMODE;
  if (!(e.type & LEASE_BREAKING) && e.type === F_WRLCK && acc === O_RDONLY) throw fail(`a write lease through fd ${e.fd}, which is open read-only (${f.reg.name})`);
  if (e.type === F_RDLCK && acc !== O_RDONLY) throw fail(`a read lease through fd ${e.fd}, which is open for writing (${f.reg.name})`);
}

function checkLock(e: FileLockEntry, f: FileEntry | undefined, fail: (msg: string) => RestoreError): void {
  if (e.flag !== FL.POSIX && e.flag !== FL.FLOCK && e.flag !== FL.OFD) throw fail(`unknown lock kind ${e.flag}`);
  if (e.type !== F_RDLCK && e.type !== F_WRLCK) throw fail(`a ${kindName(e.flag)} lock of type ${e.type} (0 read, 1 write)`);
  if (e.start < 0n || e.len < 0n || e.start + e.len > 0x7fffffffffffffffn) throw fail(`a lock on bytes ${e.start}+${e.len}`);
  if (e.flag !== FL.FLOCK && f?.reg) {
    const acc = f.reg.flags & O_ACCMODE;
    if (e.type === F_WRLCK ? acc === O_RDONLY : acc === O_WRONLY) throw fail(`a ${describeLock(e)} through fd ${e.fd}, which is open ${acc === O_RDONLY ? "read" : "write"}-only (${f.reg.name})`);
  }
}

/** Takes the process's locks and leases again, inside it. */
export function restoreLocks(remote: Remote, locks: readonly FileLockEntry[]): void {
  const plain = locks.filter((e) => e.flag !== FL.LEASE);
  for (const e of locks) if (e.flag === FL.LEASE) restoreLease(remote, e);
  for (let i = 0; i < plain.length; i += 64) {
    const chunk = plain.slice(i, i + 64);
    const area = Buffer.alloc(chunk.length * FLOCK_SIZE);
    chunk.forEach((e, j) => {
      area.writeInt16LE(e.type, j * FLOCK_SIZE);
      area.writeBigInt64LE(e.start, j * FLOCK_SIZE + 8);
      area.writeBigInt64LE(e.len, j * FLOCK_SIZE + 16);
    });
    const at = remote.write(0, area);
    const calls: Call[] = chunk.map((e, j) => {
      const what = `${describeLock(e)} on fd ${e.fd}`;
      if (e.flag === FL.FLOCK) return { what: `flock of a ${what}`, nr: NR.flock, args: [e.fd, (e.type === F_WRLCK ? LOCK_EX : LOCK_SH) | LOCK_NB] };
      return { what: `fcntl(${e.flag === FL.OFD ? "F_OFD_SETLK" : "F_SETLK"}) of a ${what}`, nr: NR.fcntl, args: [e.fd, e.flag === FL.OFD ? F_OFD_SETLK : F_SETLK, at + BigInt(j * FLOCK_SIZE)] };
    });
    remote.batch(calls);
  }
}

const O_NONBLOCK = 0o4000;
const F_GETFL = 3;
const F_SETOWN_EX = 15;
const F_GETOWN_EX = 16;
const EWOULDBLOCK = 11;

/**
 * One lease, on fd `e.fd`. F_SETLEASE makes the caller the owner of the description (the
 * kernel's lease_setup), and a break signals that owner: the owner the fd was restored
 * with is read first and put back last, and a breaking lease is broken with no owner, so
 * that no task gets a signal the dumped one had already had. A breaking lease: the full
 * lease the fd allows, then an open of the file that breaks it to its target (for write to
 * unlock, for read to read), without blocking: EWOULDBLOCK says it is now being broken.
 */
function restoreLease(remote: Remote, e: FileLockEntry): void {
  const what = `${describeLock(e)} on fd ${e.fd}`;
  // the owner read back, no owner, the path
  const at = remote.write(0, Buffer.concat([Buffer.alloc(16), Buffer.from(`/proc/self/fd/${e.fd}\0`)]));
  remote.call(`fcntl(F_GETOWN_EX) of fd ${e.fd}`, NR.fcntl, [e.fd, F_GETOWN_EX, at]);
  if (!(e.type & LEASE_BREAKING)) {
    remote.call(`fcntl(F_SETLEASE) of a ${what}`, NR.fcntl, [e.fd, F_SETLEASE, e.type]);
  } else {
    const acc = Number(remote.call(`fcntl(F_GETFL) of fd ${e.fd}`, NR.fcntl, [e.fd, F_GETFL])) & O_ACCMODE;
    remote.call(`fcntl(F_SETLEASE) before breaking a ${what}`, NR.fcntl, [e.fd, F_SETLEASE, acc === O_RDONLY ? F_RDLCK : F_WRLCK]);
    remote.call(`fcntl(F_SETOWN_EX) to no owner for a ${what}`, NR.fcntl, [e.fd, F_SETOWN_EX, at + 8n]);
    const to = e.type & ~LEASE_BREAKING;
    const r = remote.try(NR.open, [at + 16n, (to === F_UNLCK ? O_WRONLY : O_RDONLY) | O_NONBLOCK]);
    if (r >= 0n) {
      remote.call(`close of the breaker of a ${what}`, NR.close, [r]);
      throw new Error(`opening fd ${e.fd}'s file again did not break its lease: nothing to restore a ${what} with`);
    }
    if (r !== BigInt(-EWOULDBLOCK)) throw new Error(`breaking a ${what}: open of /proc/self/fd/${e.fd} failed with ${errnoName(Number(-r))}`);
  }
  remote.call(`fcntl(F_SETOWN_EX) back after a ${what}`, NR.fcntl, [e.fd, F_SETOWN_EX, at]);
}
