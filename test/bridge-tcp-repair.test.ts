// tcpRepairSaveMany, the bridge's read of a process's TCP connections in one crossing
// (tcp_repair.c): loopback connections made in this process, their records read back
// (state, queues, options), what fails named per connection, a fd that is not the socket
// asked for passed over, and every connection working again once out of repair mode.
import { fstatSync } from "node:fs";
import test from "ava";
import { AF_INET, F, SO, SOCK, SOL_SOCKET, SOL_TCP, TCP, TCP_STATE } from "../host-bridge/constants.js";
import { bridge } from "../host-bridge/load.js";

const b = bridge();
const SIGUSR1 = 10;

/** The words of a record before its options (tcp_repair.c's REC_OPTS), and where each part is. */
const REC = { ERR: 0, FD: 1, FILTER: 2, STATE: 3, INQ: 8, DATA: 18, OWNER: 21, OPTS: 26 } as const;
/** Two int options: SO_REUSEADDR and TCP_NODELAY. */
const SPEC = Int32Array.from([SOL_SOCKET, SO.REUSEADDR, 4, SOL_TCP, TCP.NODELAY, 4]);
const WORDS = REC.OPTS + 2;

const loopback = (port: number): Buffer => {
  const a = Buffer.alloc(16);
  a.writeUInt16LE(AF_INET, 0);
  a.writeUInt16BE(port, 2);
  a.set([127, 0, 0, 1], 4);
  return a;
};

/** The fds a test closed itself, which its teardown leaves alone (their numbers may be another's by then). */
const closed = new Set<number>();
const closeOnce = (fd: number): void => {
  if (!closed.delete(fd)) b.close(fd);
};

/** A listener and `n` connections to it: each client's and accepted end's fds, with data unread each way. */
function connections(t: { teardown(f: () => void): void }, n: number): { listener: number; pairs: { client: number; server: number }[] } {
  const listener = b.socket(AF_INET, SOCK.STREAM);
  t.teardown(() => b.close(listener));
  b.bindAddr(listener, loopback(0));
  b.listen(listener, n + 1);
  const pairs = Array.from({ length: n }, (_, i) => {
    const client = b.socket(AF_INET, SOCK.STREAM);
    b.connectAddr(client, b.sockName(listener));
    const server = b.accept(listener, 2000);
    t.teardown(() => (closeOnce(client), closeOnce(server)));
    b.sendFull(client, Buffer.from(`to server ${i}`));
    b.sendFull(server, Buffer.from(`to client number ${i}`));
    return { client, server };
  });
  return { listener, pairs };
}

const ino = (fd: number): number => Number(fstatSync(fd).ino);

function saveMany(fds: number[], inos: number[]): { out: Int32Array; data: Buffer; errors: (Error | undefined)[] } {
  const out = new Int32Array(fds.length * WORDS);
  const { data, errors } = b.tcpRepairSaveMany(process.pid, Int32Array.from(fds), Float64Array.from(inos), SPEC, out);
  return { out, data, errors };
}

/** Each copy the batch left in repair mode: out of it and closed. */
function release(out: Int32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const fd = out[i * WORDS + REC.FD]!;
    if (fd < 0) continue;
    b.setsockoptInts(fd, Int32Array.from([SOL_TCP, TCP.REPAIR, 0]));
    b.close(fd);
  }
}

/** The receive queue a record read. */
function inq(out: Int32Array, data: Buffer, i: number): string {
  const r = out.subarray(i * WORDS, (i + 1) * WORDS);
  return data.toString("latin1", r[REC.DATA], r[REC.DATA]! + r[REC.DATA + 1]!);
}

test("connections are read with their queues, options and owner; a listener fails by name, a fd that is not the socket asked for is passed over; the connections work on", (t) => {
  const { listener, pairs } = connections(t, 2);
  const [p] = pairs as [{ client: number; server: number }];
  b.setsockoptInts(p.client, Int32Array.from([SOL_TCP, TCP.NODELAY, 1]));
  b.fcntl(p.server, F.SETOWN, process.pid);
  b.fcntl(p.server, F.SETSIG, SIGUSR1);
  const fds = [p.server, p.client, listener, p.client];
  const { out, data, errors } = saveMany(fds, [ino(p.server), ino(p.client), ino(listener), ino(p.server)]);
  try {
    const rec = (i: number): Int32Array => out.subarray(i * WORDS, (i + 1) * WORDS);
    for (const i of [0, 1]) {
      t.is(errors[i], undefined);
      t.is(rec(i)[REC.ERR], 0);
      t.true(rec(i)[REC.FD]! >= 0, "a copy in repair mode");
      t.is(rec(i)[REC.STATE], TCP_STATE.ESTABLISHED);
      t.is(rec(i)[REC.FILTER], 0);
    }
    t.is(inq(out, data, 0), "to server 0");
    t.is(inq(out, data, 1), "to client number 0");
    t.is(rec(0)[REC.INQ], "to server 0".length);
    t.is(rec(1)[REC.OPTS + 1], 1, "the client's TCP_NODELAY");
    t.is(rec(0)[REC.OPTS + 1], 0, "the server's");
    t.deepEqual([...rec(0).subarray(REC.OWNER, REC.OWNER + 5)], [1, process.pid, SIGUSR1, 0, 0], "the server's owner (F_OWNER_PID), its signal");
    t.deepEqual([...rec(1).subarray(REC.OWNER, REC.OWNER + 5)], [0, 0, 0, 0, 0], "the client has none");
    // A listener cannot be put in repair mode: its copy is closed, the call named.
    t.regex(errors[2]?.message ?? "", /^setsockopt\(TCP_REPAIR, 1\): EPERM/);
    t.is((errors[2] as NodeJS.ErrnoException | undefined)?.code, "EPERM");
    t.is(rec(2)[REC.FD], -1);
    // The client's fd asked for as the server's socket: neither read nor failed.
    t.is(rec(3)[REC.ERR], -1);
    t.is(rec(3)[REC.FD], -1);
    t.is(errors[3], undefined);
  } finally {
    release(out, fds.length);
  }
  // Out of repair mode the connection carries data again, the unread bytes first.
  b.sendFull(p.client, Buffer.from("!"));
  const got = Buffer.alloc(12);
  t.is(b.recvFull(p.server, got, 2000), 12);
  t.is(got.toString(), "to server 0!");
});

test("a batch of many connections is split between two threads: each record has its own connection's queues", (t) => {
  const { pairs } = connections(t, 40);
  const fds = pairs.flatMap((p) => [p.server, p.client]);
  const { out, data, errors } = saveMany(fds, fds.map(ino));
  try {
    t.deepEqual(
      errors.filter((e) => e !== undefined),
      [],
    );
    pairs.forEach((_, i) => {
      t.is(inq(out, data, 2 * i), `to server ${i}`);
      t.is(inq(out, data, 2 * i + 1), `to client number ${i}`);
    });
  } finally {
    release(out, fds.length);
  }
});

test("bad arguments are refused before anything is read", (t) => {
  const { pairs } = connections(t, 1);
  const fd = pairs[0]!.server;
  const call = (inos: number[], spec: Int32Array, out: Int32Array): unknown => b.tcpRepairSaveMany(process.pid, Int32Array.from([fd]), Float64Array.from(inos), spec, out);
  t.throws(() => call([], SPEC, new Int32Array(WORDS)), { message: /inos must hold one inode per fd/ });
  t.throws(() => call([ino(fd)], Int32Array.from([SOL_SOCKET, SO.REUSEADDR, 3]), new Int32Array(WORDS)), { message: /multiple of 4/ });
  t.throws(() => call([ino(fd)], SPEC, new Int32Array(WORDS - 1)), { message: /out must hold a record of each connection/ });
  // Nothing was put in repair mode: the connection's queue is read as usual.
  const got = Buffer.alloc(11);
  t.is(b.recvFull(fd, got, 2000), 11);
  t.is(got.toString(), "to server 0");
});

/** tcpRestoreMany's record of a connection saved by tcpRepairSaveMany (its record `s`, queues in `data`): bound and connected as it was. */
function restoreRecord(s: Int32Array, data: Buffer, src: Buffer, dst: Buffer, parts: Buffer[], sets: [number, number]): Int32Array {
  let at = parts.reduce((n, p) => n + p.length, 0);
  const put = (b: Buffer): [number, number] => {
    parts.push(b);
    at += b.length;
    return [at - b.length, b.length];
  };
  const u = (w: number): number => s[w]!;
  const inq = data.subarray(u(REC.DATA), u(REC.DATA) + u(REC.DATA + 1));
  const outq = data.subarray(u(REC.DATA) + u(REC.DATA + 1), u(REC.DATA) + u(REC.DATA + 1) + u(REC.DATA + 2));
  const [inqSeq, outqSeq] = [u(REC.STATE + 13), u(REC.STATE + 14)];
  const wscale = u(REC.STATE + 2);
  const window = [u(REC.STATE + 8), u(REC.STATE + 9), u(REC.STATE + 10), u(REC.STATE + 11), u(REC.STATE + 12)];
  // opening, recvSeq, sendSeq, optMask, sndWscale, rcvWscale, mss, timestamp, unsent, window given, window
  const conn = [0, inqSeq - inq.length, outqSeq - outq.length, u(REC.STATE + 1), wscale & 15, wscale >> 4, u(REC.STATE + 6), u(REC.STATE + 7), 0, 1, ...window];
  return Int32Array.from([AF_INET, -1, ...conn, ...put(src), ...put(dst), ...put(Buffer.from(inq)), ...put(Buffer.from(outq)), ...sets]);
}

test("connections saved, closed in repair mode and made again in one crossing carry their unread data; an option that fails is named with its index", (t) => {
  const { pairs } = connections(t, 1);
  const p = pairs[0]!;
  const ends = [p.server, p.client];
  const addrs = ends.map((fd) => [b.sockName(fd), b.getsockopt(fd, SOL_SOCKET, SO.PEERNAME, 16)] as const);
  const { out, data, errors } = saveMany(ends, ends.map(ino));
  t.deepEqual(
    errors.filter((e) => e !== undefined),
    [],
  );
  // Closed in repair mode, the ends go without a word to each other; the copies too.
  for (const fd of ends) {
    b.close(fd);
    closed.add(fd);
  }
  for (let i = 0; i < 2; i++) b.close(out[i * WORDS + REC.FD]!);
  const parts: Buffer[] = [];
  // The server's end gets TCP_NODELAY back; the client's end an option the kernel refuses.
  const sets = Int32Array.from([SOL_TCP, TCP.NODELAY, 0, 1, SOL_SOCKET, 9999, 0, 1]);
  const records = [restoreRecord(out.subarray(0, WORDS), data, addrs[0]![0], addrs[0]![1], parts, [0, 1]), restoreRecord(out.subarray(WORDS), data, addrs[1]![0], addrs[1]![1], parts, [0, 2])];
  const made = new Int32Array(4);
  const failed = b.tcpRestoreMany(Int32Array.from(records.flatMap((r) => [...r])), sets, Buffer.concat(parts), made);
  const [server, client] = [made[0]!, made[2]!];
  t.teardown(() => (b.close(server), b.close(client)));
  t.is(failed[0], undefined);
  t.regex(failed[1]?.message ?? "", /^setsockopt\(level 1, name 9999\): ENOPROTOOPT/);
  t.deepEqual([made[1], made[3]], [-1, 1], "the client's second option failed");
  for (const fd of [server, client]) b.setsockoptInts(fd, Int32Array.from([SOL_TCP, TCP.REPAIR, 0]));
  t.is(b.getsockopt(server, SOL_TCP, TCP.NODELAY, 4).readInt32LE(0), 1, "TCP_NODELAY set");
  const got = Buffer.alloc(11);
  t.is(b.recvFull(server, got, 2000), 11);
  t.is(got.toString(), "to server 0");
  const back = Buffer.alloc(18);
  t.is(b.recvFull(client, back, 2000), 18);
  t.is(back.toString(), "to client number 0");
  // And the connection goes on.
  b.sendFull(client, Buffer.from("again"));
  const again = Buffer.alloc(5);
  t.is(b.recvFull(server, again, 2000), 5);
  t.is(again.toString(), "again");
  t.throws(() => b.tcpRestoreMany(Int32Array.from(records[0]!.map((w, i) => (i === 17 ? 1 << 20 : w))), sets, Buffer.concat(parts), new Int32Array(2)), { message: /out of its arrays' bounds/ });
});

test("setsockoptIntsMany sets each fd's options in order on two threads; an fd's first failure is named and stops its own only", (t) => {
  const fds = Array.from({ length: 20 }, () => b.socket(AF_INET, SOCK.STREAM));
  t.teardown(() => fds.forEach((fd) => b.close(fd)));
  const spec: number[] = [];
  const counts = fds.map((_, i) => {
    if (i === 3) {
      spec.push(SOL_SOCKET, 9999, 1, SOL_TCP, TCP.NODELAY, 1);
      return 2;
    }
    spec.push(SOL_TCP, TCP.NODELAY, 1, SOL_SOCKET, SO.KEEPALIVE, 1);
    return 2;
  });
  const errors = b.setsockoptIntsMany(Int32Array.from(fds), Int32Array.from(counts), Int32Array.from(spec));
  const opt = (fd: number, level: number, name: number): number => b.getsockopt(fd, level, name, 4).readInt32LE(0);
  fds.forEach((fd, i) => {
    if (i === 3) return;
    t.is(errors[i], undefined);
    t.is(opt(fd, SOL_TCP, TCP.NODELAY), 1);
    t.is(opt(fd, SOL_SOCKET, SO.KEEPALIVE), 1);
  });
  t.regex(errors[3]?.message ?? "", /^setsockopt\(level 1, name 9999\): ENOPROTOOPT/);
  t.is(opt(fds[3]!, SOL_TCP, TCP.NODELAY), 0, "the option after the failure is not set");
  t.throws(() => b.setsockoptIntsMany(Int32Array.from(fds), Int32Array.from(counts.map((c) => c + 1)), Int32Array.from(spec)), { message: /add up to more triples than spec holds/ });
  t.throws(() => b.setsockoptIntsMany(Int32Array.from(fds), Int32Array.from([1]), Int32Array.from(spec)), { message: /one count per fd/ });
});
