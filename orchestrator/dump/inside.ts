// State only the task itself can tell, read by running syscalls inside the stopped
// task (bridge remoteSyscall: `syscall; int3` borrowed over its first code bytes,
// everything put back after each call). The kernel writes the answers into one
// scratch page mapped in the task for the purpose and unmapped afterwards, so the
// task's own memory is never touched.

import { MAP, PROT, SYS } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { ProcTimer } from "./proc.js";

const SYS_X = {
  brk: 12,
  getitimer: 36,
  timer_gettime: 224,
  timer_getoverrun: 225,
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
const OFF = { act: 0, sas: 2048, itimer: 2112, int: 2240, its: 2304, thread: 2368 } as const;

/** Runs syscall nr in the task and throws on -errno, naming the call. */
function call(pid: number, what: string, nr: number, args: (number | bigint)[]): bigint {
  const r = bridge().remoteSyscall(pid, nr, args);
  if (r < 0n && r > -4096n) {
    const err = new Error(`${what} inside the task returned errno ${-r}`);
    throw Object.assign(err, { errno: Number(-r), syscall: what });
  }
  return r;
}

export class Scratch {
  private addr = 0n;
  constructor(private readonly pid: number) {}

  map(): bigint {
    this.addr = call(this.pid, "mmap(scratch page)", SYS.mmap, [0, PAGE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0]);
    return this.addr;
  }

  get base(): bigint {
    return this.addr;
  }

  read(off: number, len: number): Buffer {
    const buf = Buffer.alloc(len);
    const n = bridge().processVmReadv(this.pid, this.addr + BigInt(off), len, buf);
    if (n !== len) throw new Error(`short read of the scratch page at 0x${(this.addr + BigInt(off)).toString(16)}`);
    return buf;
  }

  /** Unmaps the page; safe to call twice and after a failed map. */
  unmap(): void {
    if (this.addr === 0n) return;
    const a = this.addr;
    this.addr = 0n;
    call(this.pid, "munmap(scratch page)", SYS.munmap, [a, PAGE]);
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
 * The membarrier registrations of the task's mm. MEMBARRIER_CMD_GET_REGISTRATIONS
 * (Linux 6.3) tells them at once; before it, an expedited barrier succeeds only when its
 * registration was made (EPERM otherwise, EINVAL where the kernel lacks the kind), which
 * is criu's fallback too.
 */
function membarrierRegistrations(pid: number): number {
  const r = bridge().remoteSyscall(pid, SYS_X.membarrier, [MEMBARRIER.GET_REGISTRATIONS, 0, 0]);
  if (r >= 0n) return Number(r);
  let mask = 0;
  for (const cmd of [MEMBARRIER.PRIVATE_EXPEDITED, MEMBARRIER.PRIVATE_EXPEDITED_SYNC_CORE, MEMBARRIER.PRIVATE_EXPEDITED_RSEQ]) {
    const e = bridge().remoteSyscall(pid, SYS_X.membarrier, [cmd, 0, 0]);
    if (e === 0n) mask |= cmd << 1;
    else if (e !== -1n && e !== -22n && e !== -38n) throw new Error(`membarrier(${cmd}) inside the task returned errno ${-e}`);
  }
  return mask;
}

/** A thread's own state, by syscalls run in that thread; answers go to the (shared) scratch page. */
function threadInside(tid: number, s: Scratch): ThreadInside {
  const at = s.base + BigInt(OFF.thread);
  call(tid, "sigaltstack", SYS.sigaltstack, [0, at]);
  call(tid, "prctl(PR_GET_PDEATHSIG)", SYS.prctl, [PR.GET_PDEATHSIG, at + 24n]);
  call(tid, "prctl(PR_GET_TID_ADDRESS)", SYS.prctl, [PR.GET_TID_ADDRESS, at + 32n]);
  const securebits = Number(call(tid, "prctl(PR_GET_SECUREBITS)", SYS.prctl, [PR.GET_SECUREBITS]));
  const b = s.read(OFF.thread, 40);
  return {
    altstack: { sp: b.readBigUInt64LE(0), flags: b.readInt32LE(8), size: b.readBigUInt64LE(16) },
    pdeathSig: b.readInt32LE(24),
    tidAddress: b.readBigUInt64LE(32),
    securebits,
  };
}

/**
 * Everything gathered through syscalls inside the task: the process-wide state through
 * the leader, each thread's own through that thread (`tids`, the leader first). The
 * scratch page is mapped here and unmapped on every path.
 */
export function collectInside(pid: number, timers: readonly ProcTimer[], tids: readonly number[] = [pid]): InsideState {
  const s = new Scratch(pid);
  try {
    const base = s.map();
    const sigactions: SigAction[] = [];
    for (let sig = 1; sig <= 64; sig++) {
      if (sig === 9 || sig === 19) {
        // SIGKILL and SIGSTOP cannot be queried (EINVAL) and are never changed.
        sigactions.push({ handler: 0n, flags: 0n, restorer: 0n, mask: 0n });
        continue;
      }
      const at = base + BigInt(OFF.act + (sig - 1) * 32);
      call(pid, `rt_sigaction(${sig})`, SYS.rt_sigaction, [sig, 0, at, 8]);
    }
    const acts = s.read(OFF.act, 64 * 32);
    for (let sig = 1; sig <= 64; sig++) {
      if (sig === 9 || sig === 19) continue;
      const o = (sig - 1) * 32;
      sigactions[sig - 1] = {
        handler: acts.readBigUInt64LE(o),
        flags: acts.readBigUInt64LE(o + 8),
        restorer: acts.readBigUInt64LE(o + 16),
        mask: acts.readBigUInt64LE(o + 24),
      };
    }
    for (let which = 0; which < 3; which++) call(pid, `getitimer(${which})`, SYS_X.getitimer, [which, base + BigInt(OFF.itimer + which * 32)]);
    const intAt = (i: number): bigint => base + BigInt(OFF.int + i * 8);
    call(pid, "prctl(PR_GET_CHILD_SUBREAPER)", SYS.prctl, [PR.GET_CHILD_SUBREAPER, intAt(1)]);
    const dumpable = Number(call(pid, "prctl(PR_GET_DUMPABLE)", SYS.prctl, [PR.GET_DUMPABLE]));
    const thp = Number(call(pid, "prctl(PR_GET_THP_DISABLE)", SYS.prctl, [PR.GET_THP_DISABLE]));
    const slack = call(pid, "prctl(PR_GET_TIMERSLACK)", SYS.prctl, [PR.GET_TIMERSLACK]);
    const brk = call(pid, "brk(0)", SYS_X.brk, [0]);
    const membarrierMask = membarrierRegistrations(pid);

    const posixTimers: PosixTimerState[] = [];
    for (const t of timers) {
      call(pid, `timer_gettime(${t.id})`, SYS_X.timer_gettime, [t.id, base + BigInt(OFF.its)]);
      const overrun = Number(call(pid, `timer_getoverrun(${t.id})`, SYS_X.timer_getoverrun, [t.id]));
      const its = s.read(OFF.its, 32);
      posixTimers.push({
        ...t,
        isec: its.readBigUInt64LE(0),
        insec: its.readBigUInt64LE(8),
        vsec: its.readBigUInt64LE(16),
        vnsec: its.readBigUInt64LE(24),
        overrun,
      });
    }

    const rest = s.read(OFF.itimer, OFF.its - OFF.itimer);
    const at = (o: number): number => o - OFF.itimer;
    const threads = new Map<number, ThreadInside>();
    for (const tid of tids) threads.set(tid, threadInside(tid, s));
    return {
      sigactions,
      itimers: { real: itimer(rest, at(OFF.itimer)), virt: itimer(rest, at(OFF.itimer) + 32), prof: itimer(rest, at(OFF.itimer) + 64) },
      posixTimers,
      threads,
      childSubreaper: rest.readInt32LE(at(OFF.int) + 8) !== 0,
      dumpable,
      thpDisabled: thp !== 0,
      timerslackNs: slack,
      brk,
      membarrierMask,
    };
  } finally {
    s.unmap();
  }
}
