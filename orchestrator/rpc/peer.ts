// Who may ask the service what. The service runs as root and would do what any client asks
// to any task, so every connection's peer (SO_PEERCRED, taken when it connected) is judged:
// root is served; another user only with CAP_CHECKPOINT_RESTORE (what criu's --unprivileged
// mode needs), and only for tasks it may ptrace itself — checked by opening each task's
// /proc/PID/mem with the client's own uid, groups and capabilities (ptrace's access rule),
// on a thread that takes them. Such a client gives its directories as fds it holds
// (images_dir_fd, work_dir_fd), never as paths root would write to, and may not restore:
// a restore as root would give the tasks whatever credentials and files the images name.
// `swrk` has no check: its client started it and it runs with the client's own rights.

import { readdirSync, readFileSync } from "node:fs";
import { bridge } from "../../host-bridge/load.js";
import type { CriuReq } from "./channel.js";
import { RpcError } from "./server.js";

const CAP_CHECKPOINT_RESTORE = 40;
const EPERM = 1;
const EACCES = 13;

export interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

interface PeerCreds extends Peer {
  groups: number[];
  caps: bigint;
}

/** SO_PEERCRED of a connected unix socket. */
export function peerOf(fd: number): Peer {
  const b = bridge().getsockopt(fd, 1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, 12);
  return { pid: b.readInt32LE(0), uid: b.readUInt32LE(4), gid: b.readUInt32LE(8) };
}

function readCreds(peer: Peer): PeerCreds {
  let status: string;
  try {
    status = readFileSync(`/proc/${peer.pid}/status`, "utf8");
  } catch (e) {
    throw new RpcError(`the client (pid ${peer.pid}) is gone: ${(e as Error).message}`, EPERM);
  }
  const line = (k: string): string => status.match(new RegExp(`^${k}:[ \\t]*(.*)$`, "m"))?.[1] ?? "";
  // the pid may have been reused since the client connected: its uid must still match
  const uids = line("Uid").split(/\s+/).map(Number);
  if (!uids.includes(peer.uid)) throw new RpcError(`the client (pid ${peer.pid}) is gone`, EPERM);
  return {
    ...peer,
    groups: line("Groups").split(/\s+/).filter(Boolean).map(Number),
    caps: BigInt(`0x${line("CapEff") || "0"}`),
  };
}

/** Every process of the tree under pid (itself first), read from /proc's children lists. */
function treeOf(pid: number): number[] {
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.shift()!;
    if (out.includes(p)) continue;
    out.push(p);
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // gone: the dump itself says so
    }
    for (const t of tids) {
      try {
        todo.push(...readFileSync(`/proc/${p}/task/${t}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number));
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return out;
}

export class PeerCheck {
  private readonly creds: PeerCreds | undefined;

  constructor(readonly peer: Peer) {
    if (peer.uid === 0) return;
    this.creds = readCreds(peer);
  }

  /** Refuses a request this client may not make (an RpcError naming why), before anything is done. */
  request(req: CriuReq): void {
    const c = this.creds;
    if (!c) return;
    const who = `uid ${c.uid} (pid ${c.pid})`;
    if ((c.caps & (1n << BigInt(CAP_CHECKPOINT_RESTORE))) === 0n) {
      throw new RpcError(`the service serves root; ${who} is not root and has not CAP_CHECKPOINT_RESTORE`, EPERM);
    }
    if (req.type === "RESTORE") throw new RpcError(`the service restores only for root: ${who} is not (a restore as root gives the tasks the credentials and files its images name)`, EPERM);
    const o = req.opts;
    if (o?.images_dir !== undefined) throw new RpcError(`${who} is not root: give the images directory as images_dir_fd, not as a path the service would write to as root`, EPERM);
    const names = req.type === "DUMP" ? treeOf(o?.pid ?? c.pid) : req.type === "WAIT_PID" && req.pid !== undefined ? [req.pid] : [];
    for (const p of names) {
      const err = bridge().openAs(`/proc/${p}/mem`, c);
      if (err === 2 /* ENOENT */) continue; // gone: the dump names it
      if (err !== 0) throw new RpcError(`${who} may not ptrace pid ${p} (opening its /proc/${p}/mem as the client: errno ${err})`, err === EACCES ? EACCES : EPERM);
    }
  }
}
