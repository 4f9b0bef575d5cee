// Task-wide settings of core-PID.img: rlimits, personality, credentials and capabilities,
// and the prctl flags that a change of credentials resets (parent-death signal, dumpable),
// so those come after. The credentials go in criu's order: groups, then with
// SECURE_NO_SETUID_FIXUP the uids and gids without losing capabilities on the way, the
// securebits, the bounding set, the capability sets, the ambient set, no_new_privs.
// Some values are set from tscriu's side through /proc and setpriority.

import { readFileSync, writeFileSync } from "node:fs";
import { setPriority } from "node:os";
import { SCHED } from "../../host-bridge/constants.js";
import type { CoreEntry, MmEntry } from "../../images/dir.js";
import type { ModuleLog } from "../log.js";
import { RestoreError } from "./errors.js";
import { errnoName, NR, type Call, type Remote } from "./remote.js";

const PR = {
  SET_PDEATHSIG: 1,
  SET_DUMPABLE: 4,
  SET_TIMERSLACK: 29,
  SET_SECUREBITS: 28,
  CAPBSET_DROP: 24,
  SET_CHILD_SUBREAPER: 36,
  SET_NO_NEW_PRIVS: 38,
  CAP_AMBIENT: 47,
} as const;
const CAP_AMBIENT_RAISE = 2;
const CAP_AMBIENT_CLEAR_ALL = 4;
const SECURE_NO_SETUID_FIXUP = 1 << 2;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
const RLIM_NAMES = ["CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"];

let lastCap: number | undefined;

/** The kernel's highest capability number, read once (a sysctl read took half a millisecond, for every thread). */
function capLast(): number {
  if (lastCap !== undefined) return lastCap;
  try {
    lastCap = Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8").trim());
  } catch {
    lastCap = 40;
  }
  return lastCap;
}

/** The 64-bit capability set of criu's two-word layout. */
const caps = (words: readonly number[] | undefined): bigint => BigInt(words?.[0] ?? 0) | (BigInt(words?.[1] ?? 0) << 32n);

function capNames(set: bigint): string {
  const out: number[] = [];
  for (let i = 0; i < 64; i++) if (set & (1n << BigInt(i))) out.push(i);
  return out.join(", ");
}

let permitted: bigint | undefined;

/** Our own permitted set (read once): capabilities we cannot hand out are left out, with a warning. */
function ourPermitted(): bigint {
  if (permitted !== undefined) return permitted;
  const m = /^CapPrm:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
  return (permitted = m ? BigInt(`0x${m[1]}`) : ~0n);
}

/**
 * Every rlimit; a hard limit above ours needs CAP_SYS_RESOURCE (which root lacks on these
 * machines): then the hard limit stays ours and the soft one is capped to it, with a warning.
 */
export function restoreRlimits(remote: Remote, core: CoreEntry, log: ModuleLog): void {
  const list = (core.tc?.rlimits?.rlimits ?? []).slice(0, RLIM_NAMES.length);
  if (list.length === 0) return;
  // every limit in the data area, set in one stop of the task; a hard limit above the
  // present one needs CAP_SYS_RESOURCE: that one is raised as far as it goes, then on
  const wanted = Buffer.alloc(list.length * 16);
  list.forEach((r, i) => {
    wanted.writeBigUInt64LE(r.cur, i * 16);
    wanted.writeBigUInt64LE(r.max, i * 16 + 8);
  });
  const at = remote.write(0, wanted);
  const scratch = BigInt(list.length * 16);
  for (let i = 0; i < list.length; ) {
    const calls = list.slice(i).map((_, k) => ({ what: `prlimit64(RLIMIT_${RLIM_NAMES[i + k]})`, nr: NR.prlimit64, args: [0, i + k, at + BigInt((i + k) * 16), 0] }));
    const res = remote.loopUntilError(calls);
    const failed = res.length - 1;
    if (res[failed]! >= 0n) return;
    const n = i + failed;
    const r = list[n]!;
    remote.call(`prlimit64(RLIMIT_${RLIM_NAMES[n]}) (read)`, NR.prlimit64, [0, n, 0, at + scratch]);
    const cur = remote.read(Number(scratch), 16);
    const hard = cur.readBigUInt64LE(8);
    const soft = r.cur < hard ? r.cur : hard;
    cur.writeBigUInt64LE(soft, 0);
    remote.call(`prlimit64(RLIMIT_${RLIM_NAMES[n]})`, NR.prlimit64, [0, n, remote.write(Number(scratch), cur), 0]);
    log.warn(`RLIMIT_${RLIM_NAMES[n]}: hard limit ${r.max} needs CAP_SYS_RESOURCE; kept ${hard}, soft ${soft} (wanted ${r.cur})`);
    i = n + 1;
  }
}

export function restoreCreds(remote: Remote, core: CoreEntry, log: ModuleLog): void {
  const c = core.thread_core?.creds;
  const calls: Call[] = [];
  if (core.tc) calls.push({ what: `personality(0x${core.tc.personality.toString(16)})`, nr: NR.personality, args: [core.tc.personality] });
  if (!c) {
    remote.loop(calls);
    return;
  }
  const groups = Buffer.alloc(Math.max(4, (c.groups ?? []).length * 4));
  (c.groups ?? []).forEach((g, i) => groups.writeUInt32LE(g, i * 4));
  const groupsAt = remote.write(0, groups);
  let prm = caps(c.cap_prm);
  let eff = caps(c.cap_eff);
  let inh = caps(c.cap_inh);
  const have = ourPermitted();
  if (prm & ~have) {
    log.warn(`capabilities ${capNames(prm & ~have)} of the image are not ours to give; the task gets the others`);
    prm &= have;
    eff &= prm;
    inh &= have;
  }
  const data = Buffer.alloc(8 + 24);
  data.writeUInt32LE(LINUX_CAPABILITY_VERSION_3, 0);
  data.writeInt32LE(0, 4);
  const word = (v: bigint, i: number): number => Number((v >> BigInt(32 * i)) & 0xffffffffn);
  for (let i = 0; i < 2; i++) {
    data.writeUInt32LE(word(eff, i), 8 + i * 12);
    data.writeUInt32LE(word(prm, i), 12 + i * 12);
    data.writeUInt32LE(word(inh, i), 16 + i * 12);
  }
  const capAt = remote.write(groups.length, data);
  calls.push(
    { what: `setgroups(${(c.groups ?? []).join(",")})`, nr: NR.setgroups, args: [(c.groups ?? []).length, groupsAt] },
    { what: "prctl(PR_SET_SECUREBITS, SECURE_NO_SETUID_FIXUP)", nr: NR.prctl, args: [PR.SET_SECUREBITS, SECURE_NO_SETUID_FIXUP, 0, 0, 0] },
    { what: `setresgid(${c.gid}, ${c.egid}, ${c.sgid})`, nr: NR.setresgid, args: [c.gid, c.egid, c.sgid] },
    { what: `setresuid(${c.uid}, ${c.euid}, ${c.suid})`, nr: NR.setresuid, args: [c.uid, c.euid, c.suid] },
    { what: `setfsgid(${c.fsgid})`, nr: NR.setfsgid, args: [c.fsgid] },
    { what: `setfsuid(${c.fsuid})`, nr: NR.setfsuid, args: [c.fsuid] },
    { what: `prctl(PR_SET_SECUREBITS, 0x${c.secbits.toString(16)})`, nr: NR.prctl, args: [PR.SET_SECUREBITS, c.secbits, 0, 0, 0] },
  );
  // setfsuid/setfsgid return the previous id, never -errno: a "failure" there is a big number.
  const bnd = c.cap_bnd ? caps(c.cap_bnd) : ~0n;
  for (let cap = 0; cap <= capLast(); cap++) {
    if (!(bnd & (1n << BigInt(cap)))) calls.push({ what: `prctl(PR_CAPBSET_DROP, ${cap})`, nr: NR.prctl, args: [PR.CAPBSET_DROP, cap, 0, 0, 0] });
  }
  calls.push({ what: `capset(eff ${eff.toString(16)}, prm ${prm.toString(16)}, inh ${inh.toString(16)})`, nr: NR.capset, args: [capAt, capAt + 8n] });
  const amb = caps(c.cap_amb) & prm & inh;
  calls.push({ what: "prctl(PR_CAP_AMBIENT, CLEAR_ALL)", nr: NR.prctl, args: [PR.CAP_AMBIENT, CAP_AMBIENT_CLEAR_ALL, 0, 0, 0] });
  for (let cap = 0; cap < 64; cap++) {
    if (amb & (1n << BigInt(cap))) calls.push({ what: `prctl(PR_CAP_AMBIENT_RAISE, ${cap})`, nr: NR.prctl, args: [PR.CAP_AMBIENT, CAP_AMBIENT_RAISE, cap, 0, 0] });
  }
  if (c.no_new_privs) calls.push({ what: "prctl(PR_SET_NO_NEW_PRIVS)", nr: NR.prctl, args: [PR.SET_NO_NEW_PRIVS, 1, 0, 0, 0] });
  remote.loop(calls);
}

/** The flags a change of credentials resets, set after it. */
export function restoreTaskFlags(remote: Remote, core: CoreEntry, mm: MmEntry): void {
  const th = core.thread_core;
  const calls: Call[] = [];
  if (th?.pdeath_sig) calls.push({ what: `prctl(PR_SET_PDEATHSIG, ${th.pdeath_sig})`, nr: NR.prctl, args: [PR.SET_PDEATHSIG, th.pdeath_sig, 0, 0, 0] });
  if (mm.dumpable !== undefined) calls.push({ what: `prctl(PR_SET_DUMPABLE, ${mm.dumpable})`, nr: NR.prctl, args: [PR.SET_DUMPABLE, mm.dumpable, 0, 0, 0] });
  if (core.tc?.child_subreaper) calls.push({ what: "prctl(PR_SET_CHILD_SUBREAPER)", nr: NR.prctl, args: [PR.SET_CHILD_SUBREAPER, 1, 0, 0, 0] });
  if (th?.timerslack_ns !== undefined) calls.push({ what: `prctl(PR_SET_TIMERSLACK, ${th.timerslack_ns})`, nr: NR.prctl, args: [PR.SET_TIMERSLACK, th.timerslack_ns, 0, 0, 0] });
  remote.loop(calls);
}

/**
 * The scheduling policy, while the task still has CAP_SYS_NICE (before the credentials).
 * sched_policy is what sched_getscheduler told at dump (criu's and tscriu's images alike),
 * SCHED_RESET_ON_FORK included, and sched_setscheduler takes it back as it is. The nice
 * value is set from outside afterwards (restoreFromOutside); the legacy call keeps it.
 */
export function restoreSched(remote: Remote, core: CoreEntry): void {
  const th = core.thread_core;
  if (th?.sched_policy === undefined || th.sched_policy === SCHED.OTHER) return;
  const param = Buffer.alloc(4);
  param.writeInt32LE(th.sched_prio ?? 0, 0);
  const flag = th.sched_policy & SCHED.RESET_ON_FORK ? "|SCHED_RESET_ON_FORK" : "";
  const what = `sched_setscheduler(policy ${th.sched_policy & ~SCHED.RESET_ON_FORK}${flag}, priority ${th.sched_prio ?? 0})`;
  remote.call(what, NR.sched_setscheduler, [0, th.sched_policy, remote.write(0, param)]);
}

const AUDIT_UID_UNSET = 4294967295;

/**
 * The audit login uid, written by the task itself: the kernel lets a task set only its own
 * (/proc/PID/loginuid of another task is EPERM even for root), and only with
 * CAP_AUDIT_CONTROL, so this runs before the credentials are dropped. The stub inherited
 * tscriu's own value; it is changed only where the image's differs. As in criu, a dumped
 * uid that cannot be set fails the restore (it is what the audit trail trusts); an unset one
 * that cannot be unset again is a warning.
 */
export function restoreLoginuid(remote: Remote, core: CoreEntry, log: ModuleLog): void {
  const want = core.tc?.loginuid;
  if (want === undefined) return;
  let have: number;
  try {
    have = Number(readFileSync(`/proc/${remote.pid}/loginuid`, "utf8").trim());
  } catch (e) {
    log.warn(`loginuid ${want} not restored: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return;
  }
  if (have === want) return;
  const path = remote.write(0, Buffer.from("/proc/self/loginuid\0"));
  const text = Buffer.from(String(want));
  const at = remote.write(64, text);
  const fd = remote.try(NR.open, [path, 1 /* O_WRONLY */, 0]);
  const r = fd < 0n ? fd : remote.try(NR.write, [fd, at, text.length]);
  if (fd >= 0n) remote.call("close(/proc/self/loginuid)", NR.close, [fd]);
  if (r >= 0n) return;
  const why = `writing ${want} to /proc/self/loginuid (was ${have}) failed: ${errnoName(Number(-r))}${-r === 1n ? " (needs CAP_AUDIT_CONTROL, and the audit rule loginuid_immutable forbids any change once set)" : ""}`;
  if (want === AUDIT_UID_UNSET) log.warn(why);
  else throw new RestoreError("creds", remote.pid, why);
}

/** Values set from outside: oom_score_adj, nice. Failures are warnings, as in criu. */
export function restoreFromOutside(pid: number, core: CoreEntry, log: ModuleLog): void {
  const tc = core.tc;
  const write = (file: string, value: string): void => {
    try {
      if (readFileSync(`/proc/${pid}/${file}`, "utf8").trim() !== value) writeFileSync(`/proc/${pid}/${file}`, value);
    } catch (e) {
      log.warn(`${file} ${value} not restored: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  if (tc?.oom_score_adj !== undefined) write("oom_score_adj", String(tc.oom_score_adj));
  const nice = core.thread_core?.sched_nice;
  if (nice !== undefined && nice !== 0) {
    try {
      setPriority(pid, nice);
    } catch (e) {
      log.warn(`nice ${nice} not restored: ${(e as Error).message}`);
    }
  }
}
