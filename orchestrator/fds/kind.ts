// What a kind of file is to tscriu: one module per kind (regular.ts, pipe.ts, fifo.ts,
// memfd.ts, tty.ts, …), each saying how its fds are recognised on dump and what they
// write, and how they are planned and opened again on restore. table.ts lists them;
// dump.ts and restore.ts are the two loops that use them and know no kind by name.
// Adding a kind is adding one module and one line to the table.

import { closeSync, type BigIntStats } from "node:fs";
import type { FileEntry } from "../../images/dir.js";
import type { FdInfo } from "../dump/proc.js";
import type { ExternalUnix } from "./unix-external.js";
import type { Irmap } from "./irmap.js";
import type { FileTable, Fown } from "../dump/filetable.js";
import type { ShmemTable } from "../dump/shmem.js";
import type { ModuleLog } from "../log.js";
import type { NetworkLock } from "../net/lock.js";
import type { FileSet } from "../restore/fileset.js";
import type { Remote } from "../restore/remote.js";
import type { ShmTable } from "../restore/shmem.js";

export type { Fown };

/** An fd's owner as the bridge's fdOwner reads it (type, pid, signal, uid, euid; from v[at]) in files.img's form. */
export function fownOf(v: ArrayLike<number>, at = 0): Fown {
  const pidType = v[at]!;
  const pid = v[at + 1]!;
  const signum = v[at + 2]!;
  const uid = v[at + 3]!;
  const euid = v[at + 4]!;
  // An fd without an owner keeps zeros, as criu writes them.
  if (pid === 0) return { uid: 0, euid: 0, signum, pid_type: 0, pid: 0 };
  return { uid: uid >>> 0, euid: euid >>> 0, signum, pid_type: pidType, pid };
}

/** Everything the dump knows of one fd of the task when it asks which kind it is. */
export interface FdFacts {
  pid: number;
  fd: number;
  /** tscriu's copy of the task's fd (pidfd_getfd): the same open file description */
  copy: number;
  st: BigIntStats;
  /** st.mode's file type bits (S_IFREG, S_IFIFO, …) */
  fmt: number;
  /** the kernel's name for it (/proc/PID/fd/N) */
  link: string;
  /** f_flags without O_CLOEXEC */
  flags: number;
  info: FdInfo;
  /**
   * A file in flight: `fd` is tscriu's own, received from a socket's queue (SCM_RIGHTS),
   * and `pid` tscriu's; no task need hold it under a number.
   */
  inFlight: boolean;
  /** the process whose fd numbers the file's own refer to (an epoll's targets): `pid`, or for a file in flight the one that holds the queue */
  holder: number;
  /** its owner (F_GETOWN_EX, F_GETSIG), as criu's fown_entry */
  fown(): Fown;
  /** a socket's address family (SO_DOMAIN), read once for the kinds that ask; -1 for any other file */
  domain(): number;
}

export interface DumpContext {
  /** every live process of the dumped tree (a unix socket's peer may be in any of them) */
  pids: readonly number[];
  /** the zombies of the dumped tree (a pidfd may refer to one) */
  zombies: readonly number[];
  /** every thread of the live processes of the tree, leaders included: TID -> its process (a thread pidfd refers to one) */
  threads: ReadonlyMap<number, number>;
  files: FileTable;
  shm: ShmemTable;
  /** paths of watched inodes whose handles do not open (--force-irmap, --irmap-scan-path) */
  irmap: Irmap;
  shellJob: boolean;
  /** what to do with TCP connections (--tcp-established, --tcp-close, --skip-in-flight) */
  /** `lockListeners`: the tree's TCP listeners are locked too (a dump that kills it, see net/lock.ts) */
  tcp: { established: boolean; close: boolean; skipInFlight: boolean; lockListeners: boolean };
  /** locks each TCP connection dumped with its state (--network-lock) */
  netLock: NetworkLock;
  log: ModuleLog;
  /** --file-locks: locks are dumped (otherwise a task holding one is refused) */
  fileLocks: boolean;
  /** which unix sockets may have a peer outside the tree (--ext-unix-sk, --external unix[INO]) */
  externalUnix: ExternalUnix;
  /**
   * This host's CLOCK_MONOTONIC and CLOCK_BOOTTIME when the task was frozen, in ns: the
   * moment timens-0.img's clocks are of (the task's clocks continue from there on restore).
   */
  frozenAt: { monotonic: bigint; boottime: bigint };
  /**
   * The files.img ids of fds received from a socket's queue (SCM_RIGHTS), dumped as files
   * of the dump (the entry of a task's fd of the same description, or a new one). Takes the
   * fds: they stay open until the dump is over.
   */
  inFlight(fds: readonly number[], holder: number): number[];
  /**
   * Writes an image of the kind's now, on the thread pool beside the rest of the dump (a
   * connection's tcp-stream image: one per connection); the dump waits for it before its
   * images are complete, and fails with its failure.
   */
  writeSoon(img: ExtraImage): void;
}

/** An image a kind writes besides its files.img entries (pipe data, tty info). */
export interface ExtraImage {
  name: string;
  type: string;
  entries: Record<string, unknown>[];
}

/** The dump side of a kind, one per dump. */
export interface FdDumper {
  /** Whether the fd is of this kind; the first kind of the table that says yes takes it. */
  matches(f: FdFacts): boolean;
  /**
   * A process's fd table is about to be walked, fd by fd (its fdinfo, in fd order): what
   * the kind reads of many fds at once, it may read now (a server's connections).
   */
  begin?(pid: number, fds: readonly { fd: number; info: FdInfo }[]): void;
  /**
   * The address family of the socket of inode `ino`, where the kind knows it already (a
   * connection its begin read, from sock_diag's table): FdFacts.domain then asks no
   * getsockopt (a server's thousand connections).
   */
  knownFamily?(ino: number): number | undefined;
  /** Adds the fd's files.img entries (and whatever it keeps for its own images); returns the entry's id and type. */
  dump(f: FdFacts): { id: number; type: string };
  /**
   * Every fd of the tree is dumped: what depends on the other files is completed (a watch
   * on an unlinked inode takes the ghost or link the inode got, whichever fd met it first).
   */
  settle?(): void;
  /** Its own images, written after files.img. */
  images(): ExtraImage[];
  /**
   * The dump is over: the tasks are about to run on ("resume": also after a failure) or
   * are gone or stopped for good ("kill", "stop"). What the kind changed in their files
   * for the dump (TCP repair mode) is undone for "resume".
   */
  release?(outcome: "resume" | "kill" | "stop"): void;
}

export interface PlanContext {
  pid: number;
  dir: string;
  files: FileSet;
  shm: ShmTable;
  shellJob: boolean;
  /** --tcp-established, --tcp-close */
  tcp: { established: boolean; close: boolean };
  /** --ext-unix-sk */
  extUnixSk: boolean;
  log: ModuleLog;
  /** every process of the images, zombies included */
  tree: ReadonlySet<number>;
  /** the threads of the images other than the leaders: TID -> its process (a thread pidfd may refer to one) */
  threads: ReadonlyMap<number, number>;
  /** the task's fd table (fdinfo-N.img): fd number -> file id and type */
  fds: ReadonlyMap<number, { id: number; type: string }>;
  /**
   * CLOCK_MONOTONIC and CLOCK_BOOTTIME as the task saw them when it was frozen
   * (timens-0.img); the restored task's clocks continue from them. Undefined without it.
   */
  clocks: { monotonicNs: bigint; boottimeNs: bigint } | undefined;
  /** every files.img entry with this id (a TTY and the REG naming its device share one) */
  entries(id: number): FileEntry[];
  /**
   * tscriu's fd of the description of file id `id`, for passing it in a socket's queue
   * (SCM_RIGHTS): the one a task gets when it holds it too, made on first use. Only once
   * every process is planned.
   */
  openFile(id: number): number;
  /** an optional image's entries, read once (undefined when the file does not exist) */
  optional(name: string): Promise<Record<string, unknown>[] | undefined>;
}

/** One open file description to make on restore, planned and checked before anything exists. */
export interface FdSource {
  /** what it is, for messages ("/etc/passwd", "pipe:[1234]") */
  describe: string;
  /** tscriu's fd of it; called once (the result is shared by every fd of the task that has it) */
  open(): number;
  /** the offset to set once the task holds it */
  pos?: bigint;
  fown?: Fown | undefined;
  /**
   * What only the task can do, run inside it once every fd of the task is installed; `fd` is
   * the task's number of this description. A timer is armed on the task's clocks (its time
   * namespace), an epoll's targets are added under the task's fd numbers. The hooks run in
   * the table's order of kinds (epoll last), each after those of `after`.
   */
  afterInstall?: (remote: Remote, fd: number) => void;
  /** file ids whose afterInstall must run before this one's (an epoll watching an epoll) */
  after?: readonly number[];
  /**
   * Opened only once every other fd of the task is installed: a file of a task's /proc
   * directory, whose open looks at the task as it is then (/proc/PID/fdinfo/N is there only
   * while the task has fd N).
   */
  late?: boolean;
  /**
   * The description cannot be made before the threads of the tree exist (a thread pidfd of
   * a thread other than a leader: pidfd_open of a TID that is not there yet is ESRCH), and
   * the fds are installed before the threads are made (a thread is cloned with its
   * process's fd table already filled). open() then gives a stand-in, installed at the
   * task's numbers as any fd; once every thread of every process exists, this makes the
   * real description, and it replaces the stand-in at each of those numbers (dup3 inside
   * each task that holds it). Called once.
   */
  afterThreads?: () => number;
}

/** The restore side of a kind, one per restore. */
export interface FdRestorer {
  /** Reads and checks entry `e` (no side effects). `what` names the fd for messages. */
  plan(e: FileEntry, what: string): Promise<FdSource>;
  /** Called once every fd of the task is planned, for checks across entries (a unix socket's peer among the task's fds). No side effects. */
  planned?(): void | Promise<void>;
  /**
   * Process `pid` was just made (its session and group set), before it forks any other:
   * a session leader takes its controlling terminal, which the processes it forks inherit.
   */
  processMade?(pid: number, remote: Remote): void;
  /**
   * Once every process exists and before any fd is installed: what needs several tasks
   * at once (/dev/tty is opened by a task of its session). Open file descriptions made
   * here are open()'s results later.
   */
  beforeFiles?(tasks: ReadonlyMap<number, Remote>): void;
  /** The names --inherit-fd fd[N]:NAME gives a file of this kind (criu's resource keys). */
  inheritKeys(e: FileEntry): string[] | Promise<string[]>;
  /** Closes every fd it made (the task has its copies by then). */
  close(): void;
  /** Every task is about to run: the last changes to what it made (TCP connections leave repair mode, the network is unlocked). */
  beforeResume?(): void;
}

export interface FdKind {
  /** the files.img entry type it restores ("REG", "PIPE", …) */
  type: string;
  /** a few words for messages and the README */
  describe: string;
  /** images of its own that a restore reads (and checks at plan whenever they exist) */
  images?: readonly string[];
  dumper?: (ctx: DumpContext) => FdDumper;
  restorer: (ctx: PlanContext) => FdRestorer;
}

/** Closes tscriu's fds in `list` (emptying it); one closed already is no error. */
export function closeFds(list: number[]): void {
  for (const fd of list.splice(0)) {
    try {
      closeSync(fd);
    } catch {
      // closed already
    }
  }
}

/** A file the dump does not keep: the task is left as it was and the message names the fd. */
export class UnsupportedFd extends Error {}

/** The REG entry of the same id (ttys and FIFOs keep their path there). */
export function regOf(ctx: PlanContext, id: number): FileEntry | undefined {
  return ctx.entries(id).find((x) => x.type === "REG");
}
