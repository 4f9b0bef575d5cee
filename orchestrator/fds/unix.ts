// Unix sockets (criu's sk-unix.c): stream, datagram and seqpacket; pairs, sockets bound
// to a path (also a removed one) or an abstract name, listeners with connections not yet
// accepted, connections to a listener or a named datagram socket of the task, queued
// messages (sk-queues.img), shutdown state and options. unix-dump.ts writes them,
// unix-restore.ts makes them again; a peer outside the tree only as unix-external.ts allows.

import type { FdKind } from "./kind.js";
import { UnixDumper } from "./unix-dump.js";
import { UnixRestorer } from "./unix-restore.js";

export const unixKind: FdKind = {
  type: "UNIXSK",
  describe: "unix sockets with their peers, names, queued messages, shutdown state and options",
  images: ["sk-queues.img"],
  dumper: (ctx) => new UnixDumper(ctx),
  restorer: (ctx) => new UnixRestorer(ctx),
};
