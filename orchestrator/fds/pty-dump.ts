// Unix98 ptys made inside the dumped tree, dump side (criu's tty.c): which pty
// indexes have their master open in the tree, which session and foreground group a
// terminal is the controlling terminal of, and the data queued in both ends of each
// pair (tty-data.img, which criu 4.2 writes by default).

import { writeSync } from "node:fs";
import { F } from "../../host-bridge/constants.js";
import { bridge } from "../../host-bridge/load.js";
import { listFds, parseFdinfo, parseStat, procPath, readProc } from "../dump/proc.js";
import type { ModuleLog } from "../log.js";

/** criu reads at most 16 KiB from each end; a line discipline holds 4 KiB and its pty a little more. */
const QUEUE_MAX = 1 << 16;

/** The pty indexes whose master some process of the tree has open (ptmx's fdinfo names it: tty-index). */
export function mastersInTree(pids: readonly number[]): Set<number> {
  const b = bridge();
  const out = new Set<number>();
  for (const pid of pids) {
    for (const fd of listFds(pid)) {
      // (the tasks are frozen: their fd tables hold still)
      if (!b.readlink(procPath(pid, `fd/${fd}`)).endsWith("/ptmx")) continue;
      const index = parseFdinfo(readProc(pid, `fdinfo/${fd}`)).lines.get("tty-index")?.[0];
      if (index !== undefined) out.add(Number(index));
    }
  }
  return out;
}

/**
 * The session and foreground group a task's terminal of device `rdev` belongs to, as
 * criu's parasite asks them (TIOCGSID, TIOCGPGRP inside the task): only a task whose
 * controlling terminal it is gets an answer; from tscriu a slave always says ENOTTY.
 * /proc/PID/stat tells the same: its tty_nr, session and tpgid.
 */
export function sessionOf(pid: number, rdev: number): { sid: number; pgrp: number } {
  const st = parseStat(readProc(pid, "stat"));
  if (st.ttyNr === 0 || st.ttyNr !== rdev) return { sid: 0, pgrp: 0 };
  return { sid: st.sid, pgrp: Math.max(0, st.tpgid) };
}

interface QueueEnd {
  infoId: number;
  /** tscriu's own copy of the description, kept until the dump is over */
  fd: number;
  data?: Buffer;
}

/**
 * The data queued in the pairs whose both ends are in the tree: read last (criu's
 * tail), and put back into the same ends if the tasks go on ("resume", "stop").
 */
export class PtyQueues {
  private readonly pairs = new Map<number, { master?: QueueEnd; slave?: QueueEnd }>();

  constructor(private readonly log: ModuleLog) {}

  /** The first description met of each end of pty `index`. */
  note(index: number, master: boolean, infoId: number, copy: number): void {
    let p = this.pairs.get(index);
    if (!p) this.pairs.set(index, (p = {}));
    const side = master ? "master" : "slave";
    if (p[side]) return;
    p[side] = { infoId, fd: bridge().fcntl(copy, F.DUPFD_CLOEXEC, 0) };
  }

  /** tty-data.img's entries: what each end of each pair had to read. */
  entries(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const [index, p] of this.pairs) {
      if (!p.master || !p.slave) continue;
      for (const end of [p.master, p.slave]) {
        end.data = bridge().ttyDrain(end.fd, QUEUE_MAX);
        if (end.data.length) {
          this.log.debug(`pty ${index}: ${end.data.length} bytes queued on the ${end === p.master ? "master" : "slave"}`);
          out.push({ tty_id: end.infoId, data: end.data });
        }
      }
    }
    return out;
  }

  /** The dump is over: what was read goes back where it was unless the tasks are gone; then the copies are closed. */
  release(outcome: "resume" | "kill" | "stop"): void {
    let first: Error | undefined;
    for (const [index, p] of this.pairs) {
      for (const [end, peer] of [
        [p.master, p.slave],
        [p.slave, p.master],
      ] as const) {
        if (outcome === "kill" || !end?.data?.length || !peer) continue;
        try {
          // Without CAP_SYS_ADMIN, through the peer as criu (its output processing applies).
          if (!bridge().ttyInject(end.fd, end.data)) writeSync(peer.fd, end.data);
        } catch (e) {
          first ??= new Error(`pty ${index}: the data queued on its ${end === p.master ? "master" : "slave"} could not be put back: ${(e as Error).message}`);
        }
      }
    }
    for (const p of this.pairs.values()) for (const end of [p.master, p.slave]) if (end) bridge().close(end.fd);
    this.pairs.clear();
    if (first) throw first;
  }
}
