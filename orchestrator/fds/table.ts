// The kinds of file tscriu dumps and restores, in the order the dump asks them (the
// first whose `matches` says yes takes an fd: memfds before regular files, terminals
// before other character devices). A file of no kind here is refused by name. The
// restore runs the kinds' in-task hooks in this order too: epoll last, once the timers
// its targets may be are armed.

import type { FdKind } from "./kind.js";
import { epollKind } from "./epoll.js";
import { eventfdKind } from "./eventfd.js";
import { fanotifyKind } from "./fanotify.js";
import { fifoKind } from "./fifo.js";
import { inetKind } from "./inet.js";
import { inotifyKind } from "./inotify.js";
import { memfdKind } from "./memfd.js";
import { netlinkKind } from "./netlink.js";
import { nsfsKind } from "./nsfs.js";
import { packetKind } from "./packet.js";
import { pidfdKind } from "./pidfd.js";
import { pipeKind } from "./pipe.js";
import { regularKind } from "./regular.js";
import { signalfdKind } from "./signalfd.js";
import { timerfdKind } from "./timerfd.js";
import { ttyKind } from "./tty.js";
import { unixKind } from "./unix.js";

export const FD_KINDS: readonly FdKind[] = [memfdKind, regularKind, ttyKind, pipeKind, fifoKind, unixKind, inetKind, netlinkKind, packetKind, eventfdKind, signalfdKind, timerfdKind, inotifyKind, fanotifyKind, pidfdKind, nsfsKind, epollKind];

/** The kind that restores files.img entries of `type`. */
export function kindOf(type: string): FdKind | undefined {
  return FD_KINDS.find((k) => k.type === type);
}
