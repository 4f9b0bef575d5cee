// Syscalls run inside the task being rebuilt. The stub is seized and stopped; tscriu maps
// one trampoline area at an address free in both the stub's and the image's layout, puts
// `syscall; int3` at its start and keeps the rest as a data area that syscall arguments
// point into (structures are written there with process_vm_writev). Every later syscall of
// the restore runs from there (bridge remoteSyscalls), so the stub's own mappings can go.

import { constants as osConstants } from "node:os";
import { MAP, PROT, SYS } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { regOffset } from "../../host-bridge/regs.js";
import { RestoreError } from "./errors.js";

/** Size of the trampoline area: one page of code + data, three of data. */
export const TRAMPOLINE_SIZE = 4 * 4096;
/** The data area starts here (the code is 3 bytes at offset 0). */
export const DATA_OFFSET = 64;
const CODE = Buffer.from([0x0f, 0x05, 0xcc]); // syscall; int3

/**
 * Many syscalls for one stop (Remote.loop): x86-64 code that runs a table of calls at rbx,
 * r12 of them, each 8 words {nr, six arguments, result}, stores each result and stops at
 * the first error, then traps (int3). In the trampoline's last 64 bytes.
 *
 *   loop: test r12,r12; jz done; mov rax,[rbx]; mov rdi,[rbx+8]; mov rsi,[rbx+16];
 *         mov rdx,[rbx+24]; mov r10,[rbx+32]; mov r8,[rbx+40]; mov r9,[rbx+48]; syscall;
 *         mov [rbx+56],rax; cmp rax,-4095; jae done; add rbx,64; dec r12; jmp loop
 *   done: int3
 */
export const LOOP_CODE = Buffer.from("4d85e47432488b03488b7b08488b7310488b53184c8b53204c8b43284c8b4b300f0548894338483d01f0ffff73094883c34049ffccebc9cc", "hex");
/** Offset of the loop's code in the trampoline. */
const LOOP_AT = TRAMPOLINE_SIZE - 64;
/** Offset of its table in the data area: the half below it is left to the callers' structures. */
export const LOOP_TABLE = 8192;
/** Calls per loop: the table fills the data area from LOOP_TABLE up to the code. */
export const LOOP_MAX = Math.floor((LOOP_AT - DATA_OFFSET - LOOP_TABLE) / 64);
const SIGTRAP = 5;
const PTRACE_EVENT_STOP = 128;

/** x86_64 syscall numbers the restore uses beyond host-bridge/constants.ts. */
export const NR = {
  ...SYS,
  open: 2,
  lseek: 8,
  flock: 73,
  ioctl: 16,
  madvise: 28,
  dup3: 292,
  getitimer: 36,
  setitimer: 38,
  fchdir: 81,
  chroot: 161,
  umask: 95,
  setrlimit: 160,
  prlimit64: 302,
  setresuid: 117,
  setresgid: 119,
  setfsuid: 122,
  setfsgid: 123,
  setgroups: 116,
  capset: 126,
  personality: 135,
  set_thread_area: 205,
  set_tid_address: 218,
  timer_create: 222,
  timer_settime: 223,
  timer_delete: 226,
  clock_gettime: 228,
  epoll_wait: 232,
  epoll_ctl: 233,
  timerfd_settime: 286,
  rt_sigqueueinfo: 129,
  rt_tgsigqueueinfo: 297,
  sched_setscheduler: 144,
  pidfd_open: 434,
  pidfd_getfd: 438,
  close_range: 436,
  seccomp: 317,
  userfaultfd: 323,
} as const;

export interface Call {
  /**
   * what the call does, for error messages ("mmap of 7f..-7f.."); or what makes it, when
   * one is needed (a server's thousand fds install with four calls each, none of which fails)
   */
  what: string | (() => string);
  nr: number;
  args: readonly (number | bigint)[];
}

/** What a call does, for an error message. */
export function callWhat(c: Call): string {
  return typeof c.what === "string" ? c.what : c.what();
}

const ERRNO_NAMES = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

/** "EEXIST" for 17: the names of node's own errno table. */
function errnoName(e: number): string {
  return ERRNO_NAMES.get(e) ?? `errno ${e}`;
}

export class Remote {
  private step = "trampoline";
  /**
   * Run every call to its syscall-exit stop rather than into the int3. Set once the task's
   * sigactions are installed: a trap taken while SIGTRAP is blocked (the stub blocks
   * everything) resets the SIGTRAP handler to SIG_DFL and swallows a pending SIGTRAP. It
   * costs one more stop per call, so the bulk of the rebuild (mmaps) keeps the int3.
   */
  private exitStops = false;

  /**
   * From now on every call runs to its syscall-exit stop. The int3 traps so far have
   * unblocked SIGTRAP in the stub's mask (the kernel does that for a trap that arrives
   * blocked), so the stub blocks everything again first: a SIGTRAP queued as pending
   * must not be delivered while the rebuild goes on.
   */
  useExitStops(): void {
    bridge().setSigmask(this.pid, ~0n);
    this.exitStops = true;
  }

  constructor(
    readonly pid: number,
    /** the trampoline's address */
    readonly tramp: bigint,
  ) {}

  /** The step named in errors from now on. */
  enter(step: string): void {
    this.step = step;
  }

  get data(): bigint {
    return this.tramp + BigInt(DATA_OFFSET);
  }

  /**
   * Maps the trampoline in the stopped stub (borrowing the stub's own code for that one
   * call) and writes the code into it.
   */
  static create(pid: number, tramp: bigint): Remote {
    const b = bridge();
    const r = b.remoteSyscall(pid, SYS.mmap, [tramp, TRAMPOLINE_SIZE, PROT.READ | PROT.WRITE | PROT.EXEC, MAP.PRIVATE | MAP.ANONYMOUS | MAP.FIXED_NOREPLACE, -1, 0]);
    if (r !== tramp) {
      throw new RestoreError("trampoline", pid, `mmap of the trampoline returned ${r < 0n && r > -4096n ? errnoName(Number(-r)) : `0x${r.toString(16)}`}`, { address: tramp });
    }
    if (b.processVmWritev(pid, tramp, CODE) !== CODE.length) throw new RestoreError("trampoline", pid, "short write of the trampoline code", { address: tramp });
    return new Remote(pid, tramp);
  }

  /** Runs calls in order; throws naming the first that fails. Returns every result. */
  batch(calls: readonly Call[]): bigint[] {
    if (calls.length === 0) return [];
    const words = new BigUint64Array(calls.length * 7);
    calls.forEach((c, i) => {
      words[i * 7] = BigInt(c.nr);
      c.args.forEach((a, j) => {
        words[i * 7 + 1 + j] = BigInt.asUintN(64, BigInt(a));
      });
    });
    let res: BigInt64Array;
    try {
      res = bridge().remoteSyscalls(this.pid, this.tramp, words, { toSyscallExit: this.exitStops });
    } catch (e) {
      throw new RestoreError(this.step, this.pid, (e as Error).message, { cause: e });
    }
    const last = res.length - 1;
    const r = res[last]!;
    if (r < 0n && r > -4096n) {
      const c = calls[last]!;
      throw Object.assign(new RestoreError(this.step, this.pid, `${callWhat(c)}: ${errnoName(Number(-r))}`), { errno: Number(-r) });
    }
    return Array.from(res);
  }

  private loopReady = false;

  /**
   * Runs calls in order as batch() does, but for one ptrace stop per LOOP_MAX calls instead
   * of one (or two) per call: the loop code in the trampoline runs them from a table in the
   * data area (offsets LOOP_TABLE and up, so structures the calls point to must lie below).
   * Not for calls that make SIGTRAP ignored or pending (the loop ends in a trap).
   */
  loop(calls: readonly Call[]): bigint[] {
    const out = this.loopUntilError(calls);
    if (out.length < calls.length || (calls.length > 0 && isErr(out[out.length - 1]!))) {
      const r = out[out.length - 1]!;
      throw Object.assign(new RestoreError(this.step, this.pid, `${callWhat(calls[out.length - 1]!)}: ${errnoName(Number(-r))}`), { errno: Number(-r) });
    }
    return out;
  }

  /**
   * Runs calls in order as loop() does, but stops at the first that fails without
   * throwing: the results of those that ran, the last one the failure's -errno when one
   * failed (a caller handling some errors goes on from there).
   */
  loopUntilError(calls: readonly Call[]): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < calls.length; i += LOOP_MAX) {
      const chunk = calls.slice(i, i + LOOP_MAX);
      let res: bigint[] | undefined;
      if (!this.exitStops) res = this.loopOnce(chunk);
      else res = this.loopTrapping(chunk);
      if (res === undefined) {
        // one call at a time
        res = [];
        for (const c of chunk) {
          const r = this.try(c.nr, c.args);
          res.push(r);
          if (isErr(r)) break;
        }
      }
      out.push(...res);
      if (res.length < chunk.length || isErr(res[res.length - 1]!)) break;
    }
    return out;
  }

  /** Writes the loop's code (once) and a table of `calls`; returns the code's and the table's addresses. */
  private loopTable(calls: readonly Call[]): { codeAt: bigint; tableAt: bigint } {
    const codeAt = this.tramp + BigInt(LOOP_AT);
    if (!this.loopReady) {
      if (bridge().processVmWritev(this.pid, codeAt, LOOP_CODE) !== LOOP_CODE.length) throw new RestoreError(this.step, this.pid, "short write of the syscall loop's code");
      this.loopReady = true;
    }
    const table = Buffer.alloc(calls.length * 64);
    calls.forEach((c, i) => {
      table.writeBigUInt64LE(BigInt(c.nr), i * 64);
      c.args.forEach((a, j) => table.writeBigUInt64LE(BigInt.asUintN(64, BigInt(a)), i * 64 + 8 + j * 8));
    });
    return { codeAt, tableAt: this.write(LOOP_TABLE, table) };
  }

  /** The results of the calls that ran from the table: `ran` of them, and the one that failed. */
  private loopResults(calls: readonly Call[], ran: number): bigint[] {
    const back = this.read(LOOP_TABLE, calls.length * 64);
    return calls.slice(0, Math.min(calls.length, ran + 1)).map((_, i) => back.readBigInt64LE(i * 64 + 56));
  }

  /**
   * Once the task's signal handlers are in (useExitStops), the loop's int3 is taken with
   * only SIGTRAP unblocked (bridge remoteLoop, as the dump runs its calls), which keeps the
   * task's SIGTRAP handler: refused where the image ignores SIGTRAP or has one pending
   * (undefined: then one call at a time).
   */
  private loopTrapping(calls: readonly Call[]): bigint[] | undefined {
    const { codeAt, tableAt } = this.loopTable(calls);
    let ran: number;
    try {
      ran = bridge().remoteLoop(this.pid, codeAt, codeAt + BigInt(LOOP_CODE.length), tableAt, calls.length);
    } catch (e) {
      if (["ENOTSUP", "EOPNOTSUPP"].includes((e as NodeJS.ErrnoException).code ?? "")) return undefined;
      throw new RestoreError(this.step, this.pid, (e as Error).message, { cause: e });
    }
    return this.loopResults(calls, ran);
  }

  private loopOnce(calls: readonly Call[]): bigint[] {
    if (calls.length === 0) return [];
    const b = bridge();
    const fail = (msg: string, e?: unknown): RestoreError => new RestoreError(this.step, this.pid, msg, e === undefined ? {} : { cause: e });
    const { codeAt, tableAt } = this.loopTable(calls);
    let regs: Buffer;
    try {
      regs = b.getRegs(this.pid);
      regs.writeBigUInt64LE(codeAt, regOffset("rip"));
      regs.writeBigUInt64LE(tableAt, regOffset("rbx"));
      regs.writeBigUInt64LE(BigInt(calls.length), regOffset("r12"));
      // The kernel's syscall-restart logic must not fire on resume.
      regs.writeBigUInt64LE(2n ** 64n - 1n, regOffset("orig_rax"));
      b.setRegs(this.pid, regs);
      b.ptraceCont(this.pid, 0);
      for (;;) {
        const st = b.waitpid(this.pid, 0);
        if (!st || !st.stopped) throw fail(`the task ended while running ${calls.length} calls (${callWhat(calls[0]!)}, …)`);
        if (st.event === PTRACE_EVENT_STOP) {
          b.ptraceCont(this.pid, 0);
          continue;
        }
        if (st.stopSig !== SIGTRAP) throw fail(`the syscall loop stopped with signal ${st.stopSig} (${callWhat(calls[0]!)}, …)`);
        break;
      }
      regs = b.getRegs(this.pid);
    } catch (e) {
      if (e instanceof RestoreError) throw e;
      throw fail((e as Error).message, e);
    }
    const rip = regs.readBigUInt64LE(regOffset("rip"));
    if (rip !== codeAt + BigInt(LOOP_CODE.length)) throw fail(`the syscall loop trapped at 0x${rip.toString(16)}, not at its end`);
    const left = Number(regs.readBigUInt64LE(regOffset("r12")));
    return this.loopResults(calls, calls.length - left);
  }

  /** One syscall; throws on failure. */
  call(what: string, nr: number, args: readonly (number | bigint)[] = []): bigint {
    return this.batch([{ what, nr, args }])[0]!;
  }

  /** One syscall; returns -errno instead of throwing. */
  try(nr: number, args: readonly (number | bigint)[] = []): bigint {
    const words = new BigUint64Array(7);
    words[0] = BigInt(nr);
    args.forEach((a, j) => {
      words[1 + j] = BigInt.asUintN(64, BigInt(a));
    });
    try {
      return bridge().remoteSyscalls(this.pid, this.tramp, words, { toSyscallExit: this.exitStops })[0]!;
    } catch (e) {
      throw new RestoreError(this.step, this.pid, (e as Error).message, { cause: e });
    }
  }

  /** Runs one syscall to its syscall-exit stop (the last call of a restore). */
  toExit(what: string, nr: number, args: readonly (number | bigint)[]): bigint {
    const words = new BigUint64Array(7);
    words[0] = BigInt(nr);
    args.forEach((a, j) => {
      words[1 + j] = BigInt.asUintN(64, BigInt(a));
    });
    let r: bigint;
    try {
      r = bridge().remoteSyscalls(this.pid, this.tramp, words, { toSyscallExit: true })[0]!;
    } catch (e) {
      throw new RestoreError(this.step, this.pid, `${what}: ${(e as Error).message}`, { cause: e });
    }
    if (r < 0n && r > -4096n) throw new RestoreError(this.step, this.pid, `${what}: ${errnoName(Number(-r))}`);
    return r;
  }

  private pidfd = -1;

  /**
   * Opens, inside the task, a pidfd of this tscriu process, kept at fd `above` or higher
   * (out of the way of the fds to restore). Through it the task takes copies of tscriu's
   * open files with pidfd_getfd: tscriu opens files, makes pipes and memfds itself and
   * hands them over, and the task sees the same open file descriptions.
   */
  openPidfd(above: number): void {
    const fd = this.call(`pidfd_open(${process.pid}) (tscriu itself)`, NR.pidfd_open, [process.pid, 0]);
    const high = this.call(`fcntl(F_DUPFD_CLOEXEC, ${above})`, NR.fcntl, [fd, 1030, above]);
    this.call("close", NR.close, [fd]);
    this.pidfd = Number(high);
  }

  /** The number of the pidfd (it must be closed before the end of the restore). */
  get pidfdNumber(): number {
    return this.pidfd;
  }

  /** Copies tscriu's fd `local` into the task; returns its number there (the lowest free, close-on-exec). */
  takeFd(local: number, what: string): number {
    if (this.pidfd < 0) throw new Error("takeFd before openPidfd");
    return Number(this.call(`pidfd_getfd of ${what}`, NR.pidfd_getfd, [this.pidfd, local, 0]));
  }

  closePidfd(): void {
    if (this.pidfd < 0) return;
    this.call("close(pidfd)", NR.close, [this.pidfd]);
    this.pidfd = -1;
  }

  /** Writes bytes into the data area at `offset`; returns their address in the task. */
  write(offset: number, bytes: Uint8Array): bigint {
    if (offset < 0 || DATA_OFFSET + offset + bytes.length > TRAMPOLINE_SIZE) throw new RangeError(`trampoline data area overflow (${offset}+${bytes.length})`);
    const at = this.data + BigInt(offset);
    if (bytes.length === 0) return at;
    const n = bridge().processVmWritev(this.pid, at, bytes);
    if (n !== bytes.length) throw new RestoreError(this.step, this.pid, "short write into the trampoline data area", { address: at });
    return at;
  }

  /** Reads bytes back from the data area. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    const at = this.data + BigInt(offset);
    if (bridge().processVmReadv(this.pid, at, length, out) !== length) throw new RestoreError(this.step, this.pid, "short read of the trampoline data area", { address: at });
    return out;
  }
}

export { errnoName };

/** A syscall's result that is an error (-4095..-1). */
function isErr(r: bigint): boolean {
  return r < 0n && r > -4096n;
}
