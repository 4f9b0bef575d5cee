// State only the task itself can tell, read by running syscalls inside the stopped
// task: all of a thread's calls at once through the syscall loop of Remote.loop, in a
// scratch area mapped in the task for the purpose (bridge remoteLoop), or one at a time
// (bridge remoteSyscall: `syscall; int3` borrowed over its first code bytes); registers
// and mask are put back either way. The kernel writes the answers into the scratch area,
// unmapped afterwards, so the task's own memory is never touched.

import { MAP, PROT, SYS } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { LOOP_CODE } from "../restore/remote.js";
import type { ProcTimer } from "./proc.js";

const SYS_X = {
  brk: 12,
  getitimer: 36,
  timer_gettime: 224,
  timer_getoverrun: 225,
  sched_getscheduler: 145,
  membarrier: 324,
} as const;

/** membarrier(2) commands: each MEMBARRIER_CMD_REGISTER_x is MEMBARRIER_CMD_x << 1. */
const MEMBARRIER = {
  PRIVATE_EXPEDITED: 1 << 3,
  PRIVATE_EXPEDITED_SYNC_CORE: 1 << 5,
  PRIVATE_EXPEDITED_RSEQ: 1 << 7,
  GET_REGISTRATIONS: 1 << 9,
} as const;

const PR = {
  GET_PDEATHSIG: 2,
  GET_DUMPABLE: 3,
  GET_TIMERSLACK: 30,
  GET_SECUREBITS: 27,
  GET_CHILD_SUBREAPER: 37,
  GET_TID_ADDRESS: 40,
  GET_THP_DISABLE: 42,
} as const;

export interface SigAction {
  handler: bigint;
  flags: bigint;
  restorer: bigint;
  mask: bigint;
}

export interface Itimer {
  isec: bigint;
  iusec: bigint;
  vsec: bigint;
  vusec: bigint;
}

export interface PosixTimerState extends ProcTimer {
  isec: bigint;
  insec: bigint;
  vsec: bigint;
  vnsec: bigint;
  overrun: number;
}

/** What each thread holds of its own (read by a syscall run in that thread). */
export interface ThreadInside {
  altstack: { sp: bigint; size: bigint; flags: number };
  tidAddress: bigint;
  pdeathSig: number;
  securebits: number;
  /** sched_getscheduler's answer: the policy with SCHED_RESET_ON_FORK, which /proc/PID/stat leaves out */
  schedPolicy: number;
}

export interface InsideState {
  /** index i is signal i + 1, for signals 1..64 */
  sigactions: SigAction[];
  itimers: { real: Itimer; virt: Itimer; prof: Itimer };
  posixTimers: PosixTimerState[];
  /** per thread, by tid (the leader's too) */
  threads: Map<number, ThreadInside>;
  dumpable: number;
  childSubreaper: boolean;
  thpDisabled: boolean;
  timerslackNs: bigint;
  brk: bigint;
  /** the MEMBARRIER_CMD_REGISTER_* commands the mm was registered with (criu's tc.membarrier_registration_mask) */
  membarrierMask: number;
}

const PAGE = 4096;
/** Where the answers go in the scratch area; the POSIX timers' from TIMERS on, 32 bytes each. */
const OFF = { act: 0, sas: 2048, itimer: 2112, int: 2240, thread: 2368, timers: 4096 } as const;
/** One call of the loop's table: {nr, six arguments, result}. */
const ENTRY = 64;

interface Call {
  what: string;
  nr: number;
  args: readonly (number | bigint)[];
  /** the last call only: its -errno is returned rather than thrown */
  mayFail?: boolean;
}

/** Runs syscall nr in the task and throws on -errno, naming the call. */
function call(pid: number, what: string, nr: number, args: readonly (number | bigint)[]): bigint {
  const r = bridge().remoteSyscall(pid, nr, [...args]);
  if (r < 0n && r > -4096n) {
    const err = new Error(`${what} inside the task returned errno ${-r}`);
    throw Object.assign(err, { errno: Number(-r), syscall: what });
  }
  return r;
}

/**
 * The scratch area mapped in the task for the answers of the calls and, where the task
 * lets it be executable, Remote.loop's code and table: then all of a thread's calls run
 * for one ptrace stop (a tree of 50 processes took 13 ms a process with two stops a call).
 * Otherwise (a task that ignores SIGTRAP, or denies writable code) one call at a time.
 */
export class Scratch {
  private addr = 0n;
  private size = 0;
  private tableAt = 0;
  private looping = false;
  constructor(private readonly pid: number) {}

  /**
   * Maps `answers` bytes of answers and room for a loop of `calls` calls; `shared`: as
   * shared memory, a VMA the kernel never merges with a neighbour (one that stays mapped
   * while /proc lists the task's VMAs is then left out of the lists by its range).
   */
  map(answers: number, calls: number, shared = false): bigint {
    this.tableAt = Math.ceil(answers / PAGE) * PAGE;
    const size = Math.ceil((this.tableAt + calls * ENTRY + LOOP_CODE.length) / PAGE) * PAGE;
    const flags = (shared ? MAP.SHARED : MAP.PRIVATE) | MAP.ANONYMOUS;
    const r = bridge().remoteSyscall(this.pid, SYS.mmap, [0, size, PROT.READ | PROT.WRITE | PROT.EXEC, flags, -1, 0]);
    if (r >= 0n || r <= -4096n) {
      this.addr = r;
      this.size = size;
      this.looping = bridge().processVmWritev(this.pid, this.codeAt, LOOP_CODE) === LOOP_CODE.length;
    } else {
      // Writable code denied (memory-deny-write-execute): answers only.
      this.addr = call(this.pid, "mmap(scratch area)", SYS.mmap, [0, this.tableAt, PROT.READ | PROT.WRITE, flags, -1, 0]);
      this.size = this.tableAt;
    }
    return this.addr;
  }

  private get codeAt(): bigint {
    return this.addr + BigInt(this.size - LOOP_CODE.length);
  }

  get base(): bigint {
    return this.addr;
  }

  /** [start, end) of the area (0n, 0n when none is mapped). */
  get range(): { start: bigint; end: bigint } {
    return { start: this.addr, end: this.addr === 0n ? 0n : this.addr + BigInt(this.size) };
  }

  /** Runs `calls` in thread `tid` in order; throws at the first that fails, naming it. Returns their results. */
  run(tid: number, calls: readonly Call[]): bigint[] {
    if (this.looping) {
      const res = this.loop(tid, calls);
      if (res) return res;
    }
    return calls.map((c) => (c.mayFail ? bridge().remoteSyscall(tid, c.nr, [...c.args]) : call(tid, c.what, c.nr, c.args)));
  }

  /** The calls through the loop; undefined when the task refuses it (then one by one). */
  private loop(tid: number, calls: readonly Call[]): bigint[] | undefined {
    const b = bridge();
    const table = Buffer.alloc(calls.length * ENTRY);
    calls.forEach((c, i) => {
      table.writeBigUInt64LE(BigInt(c.nr), i * ENTRY);
      c.args.forEach((a, j) => table.writeBigUInt64LE(BigInt.asUintN(64, BigInt(a)), i * ENTRY + 8 + j * 8));
    });
    const at = this.addr + BigInt(this.tableAt);
    if (b.processVmWritev(this.pid, at, table) !== table.length) throw new Error(`short write of the syscall table at 0x${at.toString(16)}`);
    let ran: number;
    try {
      ran = b.remoteLoop(tid, this.codeAt, this.codeAt + BigInt(LOOP_CODE.length), at, calls.length);
    } catch (e) {
      // ENOTSUP, which Node names EOPNOTSUPP (the same number on Linux)
      if (!["ENOTSUP", "EOPNOTSUPP"].includes((e as NodeJS.ErrnoException).code ?? "")) throw e;
      this.looping = false;
      return undefined;
    }
    const back = this.read(this.tableAt, calls.length * ENTRY);
    const res = calls.map((_, i) => back.readBigInt64LE(i * ENTRY + 56));
    if (ran < calls.length && !(ran === calls.length - 1 && calls[ran]!.mayFail)) {
      const r = res[ran]!;
      throw Object.assign(new Error(`${calls[ran]!.what} inside the task returned errno ${-r}`), { errno: Number(-r), syscall: calls[ran]!.what });
    }
    return res;
  }

  read(off: number, len: number): Buffer {
    const buf = Buffer.alloc(len);
    const n = bridge().processVmReadv(this.pid, this.addr + BigInt(off), len, buf);
    if (n !== len) throw new Error(`short read of the scratch area at 0x${(this.addr + BigInt(off)).toString(16)}`);
    return buf;
  }

  /** Unmaps the area; safe to call twice and after a failed map. */
  unmap(): void {
    if (this.addr === 0n) return;
    const a = this.addr;
    this.addr = 0n;
    call(this.pid, "munmap(scratch area)", SYS.munmap, [a, this.size]);
  }
}

function itimer(b: Buffer, off: number): Itimer {
  return {
    isec: b.readBigUInt64LE(off),
    iusec: b.readBigUInt64LE(off + 8),
    vsec: b.readBigUInt64LE(off + 16),
    vusec: b.readBigUInt64LE(off + 24),
  };
}

/**
 * The membarrier registrations of the task's mm, from what MEMBARRIER_CMD_GET_REGISTRATIONS
 * returned (`r`). It tells them at once (Linux 6.3); before it, an expedited barrier succeeds only when its
 * registration was made (EPERM otherwise, EINVAL where the kernel lacks the kind), which
 * is criu's fallback too.
 */
function membarrierRegistrations(pid: number, r: bigint): number {
  if (r >= 0n) return Number(r);
  let mask = 0;
  for (const cmd of [MEMBARRIER.PRIVATE_EXPEDITED, MEMBARRIER.PRIVATE_EXPEDITED_SYNC_CORE, MEMBARRIER.PRIVATE_EXPEDITED_RSEQ]) {
    const e = bridge().remoteSyscall(pid, SYS_X.membarrier, [cmd, 0, 0]);
    if (e === 0n) mask |= cmd << 1;
    else if (e !== -1n && e !== -22n && e !== -38n) throw new Error(`membarrier(${cmd}) inside the task returned errno ${-e}`);
  }
  return mask;
}

/** The calls that tell a thread's own state, run in that thread; answers go to the (shared) scratch area. */
function threadCalls(s: Scratch): Call[] {
  const at = s.base + BigInt(OFF.thread);
  return [
    { what: "sigaltstack", nr: SYS.sigaltstack, args: [0, at] },
    { what: "prctl(PR_GET_PDEATHSIG)", nr: SYS.prctl, args: [PR.GET_PDEATHSIG, at + 24n] },
    { what: "prctl(PR_GET_TID_ADDRESS)", nr: SYS.prctl, args: [PR.GET_TID_ADDRESS, at + 32n] },
    { what: "prctl(PR_GET_SECUREBITS)", nr: SYS.prctl, args: [PR.GET_SECUREBITS] },
    { what: "sched_getscheduler(0)", nr: SYS_X.sched_getscheduler, args: [0] },
  ];
}

/** A thread's state from the results of threadCalls (in order) and the scratch area they wrote. */
function threadAnswers(s: Scratch, res: readonly bigint[]): ThreadInside {
  const b = s.read(OFF.thread, 40);
  return {
    altstack: { sp: b.readBigUInt64LE(0), flags: b.readInt32LE(8), size: b.readBigUInt64LE(16) },
    pdeathSig: b.readInt32LE(24),
    tidAddress: b.readBigUInt64LE(32),
    securebits: Number(res[3]),
    schedPolicy: Number(res[4]),
  };
}

/**
 * The scratch area collectInside needs for a task with `timers`, mapped shared (Scratch.map)
 * so that the dump can read the task's VMAs while it is mapped: smaps walks every page table
 * and holds the task's mmap lock meanwhile, which the area's mmap would wait for.
 */
export function mapInsideScratch(pid: number, timers: readonly ProcTimer[]): Scratch {
  const s = new Scratch(pid);
  s.map(...insideSizes(timers), true);
  return s;
}

function insideSizes(timers: readonly ProcTimer[]): [answers: number, calls: number] {
  return [OFF.timers + 32 * timers.length, 64 + 3 + 5 + 2 * timers.length + 5 + 1];
}

/**
 * Everything gathered through syscalls inside the task: the process-wide state through
 * the leader, each thread's own through that thread (`tids`, the leader first). In
 * `scratch`, an area mapInsideScratch made, which the caller unmaps; without it an area
 * is mapped here and unmapped on every path.
 */
export function collectInside(pid: number, timers: readonly ProcTimer[], tids: readonly number[] = [pid], scratch?: Scratch): InsideState {
  const s = scratch ?? new Scratch(pid);
  try {
    const calls: Call[] = [];
    const base = scratch ? scratch.base : s.map(...insideSizes(timers));
    for (let sig = 1; sig <= 64; sig++) {
      // SIGKILL and SIGSTOP cannot be queried (EINVAL) and are never changed.
      if (sig === 9 || sig === 19) continue;
      calls.push({ what: `rt_sigaction(${sig})`, nr: SYS.rt_sigaction, args: [sig, 0, base + BigInt(OFF.act + (sig - 1) * 32), 8] });
    }
    for (let which = 0; which < 3; which++) calls.push({ what: `getitimer(${which})`, nr: SYS_X.getitimer, args: [which, base + BigInt(OFF.itimer + which * 32)] });
    const intAt = (i: number): bigint => base + BigInt(OFF.int + i * 8);
    const first = calls.length;
    calls.push(
      { what: "prctl(PR_GET_CHILD_SUBREAPER)", nr: SYS.prctl, args: [PR.GET_CHILD_SUBREAPER, intAt(1)] },
      { what: "prctl(PR_GET_DUMPABLE)", nr: SYS.prctl, args: [PR.GET_DUMPABLE] },
      { what: "prctl(PR_GET_THP_DISABLE)", nr: SYS.prctl, args: [PR.GET_THP_DISABLE] },
      { what: "prctl(PR_GET_TIMERSLACK)", nr: SYS.prctl, args: [PR.GET_TIMERSLACK] },
      { what: "brk(0)", nr: SYS_X.brk, args: [0] },
    );
    const timersAt = calls.length;
    timers.forEach((t, i) => {
      calls.push({ what: `timer_gettime(${t.id})`, nr: SYS_X.timer_gettime, args: [t.id, base + BigInt(OFF.timers + 32 * i)] });
      calls.push({ what: `timer_getoverrun(${t.id})`, nr: SYS_X.timer_getoverrun, args: [t.id] });
    });
    // The leader's own state in the same run (the other threads' each in its own, below).
    const leaderAt = calls.length;
    calls.push(...threadCalls(s));
    // Last, as it may fail (kernels before 6.3).
    calls.push({ what: "membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)", nr: SYS_X.membarrier, args: [MEMBARRIER.GET_REGISTRATIONS, 0, 0], mayFail: true });
    const res = s.run(pid, calls);
    const leader = threadAnswers(s, res.slice(leaderAt, leaderAt + 5));
    const [, dumpable, thp, slack, brk] = res.slice(first, first + 5) as [bigint, bigint, bigint, bigint, bigint];
    const membarrierMask = membarrierRegistrations(pid, res[res.length - 1]!);

    const acts = s.read(OFF.act, 64 * 32);
    const sigactions: SigAction[] = [];
    for (let sig = 1; sig <= 64; sig++) {
      const o = (sig - 1) * 32;
      const skip = sig === 9 || sig === 19;
      sigactions.push({
        handler: skip ? 0n : acts.readBigUInt64LE(o),
        flags: skip ? 0n : acts.readBigUInt64LE(o + 8),
        restorer: skip ? 0n : acts.readBigUInt64LE(o + 16),
        mask: skip ? 0n : acts.readBigUInt64LE(o + 24),
      });
    }
    const its = timers.length ? s.read(OFF.timers, 32 * timers.length) : Buffer.alloc(0);
    const posixTimers: PosixTimerState[] = timers.map((t, i) => ({
      ...t,
      isec: its.readBigUInt64LE(32 * i),
      insec: its.readBigUInt64LE(32 * i + 8),
      vsec: its.readBigUInt64LE(32 * i + 16),
      vnsec: its.readBigUInt64LE(32 * i + 24),
      overrun: Number(res[timersAt + 2 * i + 1]),
    }));

    const rest = s.read(OFF.itimer, OFF.thread - OFF.itimer);
    const at = (o: number): number => o - OFF.itimer;
    const threads = new Map<number, ThreadInside>();
    threads.set(pid, leader);
    for (const tid of tids) if (tid !== pid) threads.set(tid, threadAnswers(s, s.run(tid, threadCalls(s))));
    return {
      sigactions,
      itimers: { real: itimer(rest, at(OFF.itimer)), virt: itimer(rest, at(OFF.itimer) + 32), prof: itimer(rest, at(OFF.itimer) + 64) },
      posixTimers,
      threads,
      childSubreaper: rest.readInt32LE(at(OFF.int) + 8) !== 0,
      dumpable: Number(dumpable),
      thpDisabled: thp !== 0n,
      timerslackNs: slack,
      brk,
      membarrierMask,
    };
  } finally {
    if (!scratch) s.unmap();
  }
}
