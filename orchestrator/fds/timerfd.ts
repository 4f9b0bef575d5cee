// timerfds (TIMERFD entries, criu's timerfd.c): clock, settime flags, interval, the time
// left to the next expiry and the expirations not read yet (ticks), from fdinfo.
//
// Dump: a periodic timer that expired unread shows ticks 1 and no time left, whatever
// the number of periods since: the kernel counts the missed periods and moves the timer
// on only when it is read or asked (timerfd_gettime). tscriu asks through its own copy
// first (as a read by the task would, the count and the timer change; nothing is
// consumed), then reads the fdinfo. criu 4.2 skips that and restores such a timer
// disarmed, with one expiration. A timer on CLOCK_MONOTONIC or CLOCK_BOOTTIME is then
// written as it was at the freeze, the moment whose clocks timens-0.img keeps: the
// restored task's clocks go on from there, and so must its timers.
//
// Restore: the timer is made by tscriu and armed inside the task once installed
// (afterInstall: remote clock_gettime, timerfd_settime, then TFD_IOC_SET_TICKS, which
// settime would reset). The task lives in a time namespace whose CLOCK_MONOTONIC and
// CLOCK_BOOTTIME continue from their values at dump (timens-0.img), so on those clocks a
// timer's deadline is the dump-time clock plus the time that was left, and that deadline
// is what tscriu arms: an absolute timer (TFD_TIMER_ABSTIME) with it -- only a settime
// made by the task itself has it translated from the task's clocks to the host's -- and a
// relative one with what is left of it at the task's now, so that the restore's own time
// is not added. Periods that fall inside the restore are counted as expirations. On
// CLOCK_REALTIME (no namespace; the images hold no wall-clock time of the dump) the time
// left counts from the restore, as criu does.

import { CLOCK, O, TFD } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import type { FileEntry } from "../../images/dir.js";
import { NR, type Call, type Remote } from "../restore/remote.js";
import { badEntry, field, isAnon, MadeFds, part, rereadFdinfo } from "./anon.js";
import { UnsupportedFd, type DumpContext, type ExtraImage, type FdDumper, type FdFacts, type FdKind, type FdRestorer, type FdSource, type PlanContext } from "./kind.js";

const NS = 1_000_000_000n;
const CLOCKS = new Map<number, string>([
  [CLOCK.REALTIME, "CLOCK_REALTIME"],
  [CLOCK.MONOTONIC, "CLOCK_MONOTONIC"],
  [CLOCK.BOOTTIME, "CLOCK_BOOTTIME"],
]);
/** An expired periodic timer is asked this many times before its fdinfo is taken as it is. */
const TRIES = 4;

interface TimerState {
  clockid: number;
  ticks: bigint;
  settime_flags: number;
  vsec: bigint;
  vnsec: bigint;
  isec: bigint;
  insec: bigint;
}

function readTimer(f: FdFacts): TimerState {
  const info = rereadFdinfo(f);
  const num = /^(\d+)$/;
  const pair = /^\((\d+), (\d+)\)$/;
  const value = field(f, info, "it_value", pair);
  const interval = field(f, info, "it_interval", pair);
  return {
    clockid: Number(field(f, info, "clockid", num)[1]),
    ticks: BigInt(field(f, info, "ticks", num)[1]!),
    settime_flags: Number.parseInt(field(f, info, "settime flags", /^([0-7]+)$/)[1]!, 8),
    vsec: BigInt(value[1]!),
    vnsec: BigInt(value[2]!),
    isec: BigInt(interval[1]!),
    insec: BigInt(interval[2]!),
  };
}

/**
 * The timer as it was when the task was frozen, `since` ns before its fdinfo was read on
 * a clock the task's time namespace holds still from the freeze: its next expiry is
 * further away by `since`, and periods that ended meanwhile (counted in ticks, unread:
 * the task was frozen) are taken back.
 */
function atFreeze(t: TimerState, since: bigint): void {
  const left = t.vsec * NS + t.vnsec;
  if (left === 0n || since <= 0n) return;
  const interval = t.isec * NS + t.insec;
  let back = left + since;
  if (interval > 0n) {
    const ended = (back - 1n) / interval < t.ticks ? (back - 1n) / interval : t.ticks;
    t.ticks -= ended;
    back -= ended * interval;
  }
  t.vsec = back / NS;
  t.vnsec = back % NS;
}

class TimerfdDumper implements FdDumper {
  constructor(private readonly ctx: DumpContext) {}

  matches(f: FdFacts): boolean {
    return isAnon(f, "[timerfd]");
  }

  dump(f: FdFacts): { id: number; type: string } {
    const b = bridge();
    let t: TimerState;
    let read: bigint;
    for (let i = 0; ; i++) {
      // Moves an expired periodic timer to its next period, its missed periods counted.
      b.timerfdGettime(f.copy);
      read = b.clockGettime(CLOCK.MONOTONIC);
      t = readTimer(f);
      const expired = t.vsec === 0n && t.vnsec === 0n && (t.isec !== 0n || t.insec !== 0n);
      if (!expired) break;
      if (i === TRIES) {
        // Its period is shorter than it takes to look: the next expiry is now.
        t.vnsec = 1n;
        break;
      }
    }
    if (!CLOCKS.has(t.clockid)) throw new UnsupportedFd(`unsupported fd ${f.fd}: ${f.link} on clock ${t.clockid} (criu's images keep timers of CLOCK_REALTIME, CLOCK_MONOTONIC and CLOCK_BOOTTIME)`);
    // CLOCK_MONOTONIC and CLOCK_BOOTTIME run at the same rate: the time since the freeze is the same on both.
    if (t.clockid !== CLOCK.REALTIME) atFreeze(t, read - this.ctx.frozenAt.monotonic);
    const id = this.ctx.files.newId();
    this.ctx.files.add({ type: "TIMERFD", id, tfd: { id, flags: f.flags, fown: f.fown(), ...t } });
    return { id, type: "TIMERFD" };
  }

  images(): ExtraImage[] {
    return [];
  }
}

/** The clock `clockid` as the task sees it, in ns (clock_gettime run inside it). */
function taskNow(remote: Remote, clockid: number): bigint {
  remote.call(`clock_gettime(${CLOCKS.get(clockid)})`, NR.clock_gettime, [clockid, remote.write(0, Buffer.alloc(16))]);
  const ts = remote.read(0, 16);
  return ts.readBigInt64LE(0) * NS + ts.readBigInt64LE(8);
}

class TimerfdRestorer implements FdRestorer {
  private readonly made = new MadeFds();

  constructor(private readonly ctx: PlanContext) {}

  plan(e: FileEntry, what: string): Promise<FdSource> {
    const t = part(this.ctx, e.tfd, "TIMERFD", what);
    const clock = CLOCKS.get(t.clockid);
    if (!clock) throw badEntry(this.ctx, what, `a timerfd on clock ${t.clockid} (REALTIME, MONOTONIC or BOOTTIME)`);
    // time_t is signed: a second count of 2^63 or more is a negative time.
    if (t.vsec >= 1n << 63n || t.vnsec >= NS) throw badEntry(this.ctx, what, `a timerfd with a negative or malformed time left (${BigInt.asIntN(64, t.vsec)} s ${t.vnsec} ns)`);
    if (t.isec >= 1n << 63n || t.insec >= NS) throw badEntry(this.ctx, what, `a timerfd with a negative or malformed interval (${BigInt.asIntN(64, t.isec)} s ${t.insec} ns)`);
    if (t.settime_flags & ~(TFD.TIMER_ABSTIME | TFD.TIMER_CANCEL_ON_SET)) throw badEntry(this.ctx, what, `a timerfd with settime flags 0x${t.settime_flags.toString(16)}`);
    const left = t.vsec * NS + t.vnsec;
    const interval = t.isec * NS + t.insec;
    const abs = (t.settime_flags & TFD.TIMER_ABSTIME) !== 0;
    const describe = `timerfd (${clock}, ${left} ns left${interval ? `, every ${interval} ns` : ""}${abs ? ", absolute" : ""})`;
    return Promise.resolve({
      describe,
      fown: t.fown,
      open: () => this.made.add(bridge().timerfdCreate(t.clockid, O.CLOEXEC), t.flags),
      afterInstall: (remote: Remote, fd: number) => this.arm(remote, fd, t.clockid, t.settime_flags, left, interval, t.ticks),
    });
  }

  private arm(remote: Remote, fd: number, clockid: number, flags: number, left: bigint, interval: bigint, ticks: bigint): void {
    const dumped = clockid === CLOCK.MONOTONIC ? this.ctx.clocks?.monotonicNs : clockid === CLOCK.BOOTTIME ? this.ctx.clocks?.boottimeNs : undefined;
    let value = left;
    if (left > 0n && flags & TFD.TIMER_ABSTIME) {
      value = (dumped ?? taskNow(remote, clockid)) + left;
    } else if (left > 0n && dumped !== undefined) {
      value = dumped + left - taskNow(remote, clockid);
      if (value <= 0n) {
        // The deadline passed while the task was being restored, on its own clock.
        const missed = interval > 0n ? -value / interval + 1n : 1n;
        ticks += missed;
        value = interval > 0n ? value + missed * interval : 0n;
      }
    }
    const calls: Call[] = [];
    if (value > 0n || flags !== 0) {
      const its = Buffer.alloc(32);
      its.writeBigInt64LE(interval / NS, 0);
      its.writeBigInt64LE(interval % NS, 8);
      its.writeBigInt64LE(value / NS, 16);
      its.writeBigInt64LE(value % NS, 24);
      calls.push({ what: `timerfd_settime of fd ${fd}`, nr: NR.timerfd_settime, args: [fd, flags, remote.write(0, its), 0] });
    }
    if (ticks > 0n) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(ticks);
      calls.push({ what: `ioctl(TFD_IOC_SET_TICKS, ${ticks}) of fd ${fd}`, nr: NR.ioctl, args: [fd, TFD.IOC_SET_TICKS, remote.write(32, b)] });
    }
    remote.batch(calls);
  }

  inheritKeys(): string[] {
    return [];
  }

  close(): void {
    this.made.closeAll();
  }
}

export const timerfdKind: FdKind = {
  type: "TIMERFD",
  describe: "timerfds, armed on the task's clocks, with the expirations not read yet",
  dumper: (ctx) => new TimerfdDumper(ctx),
  restorer: (ctx) => new TimerfdRestorer(ctx),
};
