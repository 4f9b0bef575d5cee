// TCP, UDP and UDP-Lite sockets over IPv4 and IPv6 (INETSK entries in files.img, criu's
// sk-inet.c): listeners with their backlog, sockets bound or connected (UDP), each with
// its address, options and shutdown state. inet-dump.ts writes them, inet-restore.ts
// makes them again. A listener shared by several processes (a server's master and its
// workers) is one entry, as every shared open file description is.

import type { FdKind } from "./kind.js";
import { InetDumper } from "./inet-dump.js";
import { InetRestorer } from "./inet-restore.js";

export type { InetSkEntry } from "./inet-common.js";

export const inetKind: FdKind = {
  type: "INETSK",
  describe: "TCP listeners and UDP/UDP-Lite sockets, IPv4 and IPv6, with their addresses, options and shutdown state",
  dumper: (ctx) => new InetDumper(ctx),
  restorer: (ctx) => new InetRestorer(ctx),
};
