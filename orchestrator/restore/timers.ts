// Interval timers (setitimer) and POSIX timers (timer_create + timer_settime) of
// tc.timers, armed with the time that was left at dump and their intervals. A POSIX timer
// keeps its id (programs hold it as timer_t): since Linux 6.17 the kernel takes the wanted
// id from timer_create's third argument while PR_TIMER_CREATE_RESTORE_IDS is on. On older
// kernels ids come from a counter, and timers are created in order until each id matches.

import type { CoreEntry } from "../../images/dir.js";
import { RestoreError } from "./errors.js";
import { NR, type Call, type Remote } from "./remote.js";

const PR_TIMER_CREATE_RESTORE_IDS = 77;
const SIGEV_THREAD_ID = 4;
const SIGEVENT_SIZE = 64;

type Itimer = { isec: bigint; iusec: bigint; vsec: bigint; vusec: bigint };

export function restoreItimers(remote: Remote, core: CoreEntry): number {
  const t = core.tc?.timers;
  if (!t) return 0;
  const calls: Call[] = [];
  const list: [number, string, Itimer][] = [
    [0, "ITIMER_REAL", t.real],
    [1, "ITIMER_VIRTUAL", t.virt],
    [2, "ITIMER_PROF", t.prof],
  ];
  for (const [which, name, it] of list) {
    if (it.vsec === 0n && it.vusec === 0n) continue;
    const b = Buffer.alloc(32);
    b.writeBigInt64LE(it.isec, 0);
    b.writeBigInt64LE(it.iusec, 8);
    b.writeBigInt64LE(it.vsec, 16);
    b.writeBigInt64LE(it.vusec, 24);
    calls.push({ what: `setitimer(${name})`, nr: NR.setitimer, args: [which, remote.write(which * 32, b), 0] });
  }
  remote.loop(calls);
  return calls.length;
}

export function restorePosixTimers(remote: Remote, core: CoreEntry): number {
  const timers = [...(core.tc?.timers?.posix ?? [])].sort((a, b) => a.it_id - b.it_id);
  if (timers.length === 0) return 0;
  const exact = remote.try(NR.prctl, [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0]) === 0n;
  const extra: number[] = [];
  for (const t of timers) {
    const sev = Buffer.alloc(SIGEVENT_SIZE);
    sev.writeBigUInt64LE(t.sival_ptr, 0);
    sev.writeInt32LE(t.si_signo, 8);
    sev.writeInt32LE(t.it_sigev_notify, 12);
    if (t.it_sigev_notify & SIGEV_THREAD_ID) sev.writeInt32LE(t.notify_thread_id ?? remote.pid, 16);
    const sevAt = remote.write(0, sev);
    const idBuf = Buffer.alloc(4);
    idBuf.writeInt32LE(t.it_id, 0);
    const idAt = remote.write(SIGEVENT_SIZE, idBuf);
    for (let tries = 0; ; tries++) {
      remote.call(`timer_create(clock ${t.clock_id}) for timer ${t.it_id}`, NR.timer_create, [t.clock_id, sevAt, idAt]);
      const got = remote.read(SIGEVENT_SIZE, 4).readInt32LE(0);
      if (got === t.it_id) break;
      if (exact || got > t.it_id || tries > 1024) {
        throw new RestoreError("timers", remote.pid, `POSIX timer ${t.it_id} came back with id ${got}`);
      }
      // an older kernel: not the id yet; keep it allocated until ours comes, then drop it
      extra.push(got);
    }
    if (t.vsec !== 0n || t.vnsec !== 0n) {
      const its = Buffer.alloc(32);
      its.writeBigInt64LE(t.isec, 0);
      its.writeBigInt64LE(t.insec, 8);
      its.writeBigInt64LE(t.vsec, 16);
      its.writeBigInt64LE(t.vnsec, 24);
      remote.call(`timer_settime(${t.it_id})`, NR.timer_settime, [t.it_id, 0, remote.write(96, its), 0]);
    }
  }
  remote.batch(extra.map((id) => ({ what: `timer_delete(${id})`, nr: NR.timer_delete, args: [id] })));
  if (exact) remote.call("prctl(PR_TIMER_CREATE_RESTORE_IDS, off)", NR.prctl, [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0]);
  return timers.length;
}
