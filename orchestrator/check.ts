// `tscriu check`: does this kernel (and this tscriu's privileges) give what dump and
// restore use? Each feature is probed for real on a throwaway stub process (the restore
// stub, started and seized the way a restore does it), not read off a version number.
//
// criu's categories: 1 is what every dump or restore needs (the first one missing ends
// the check: "Does not look good."); 2 is what only some tasks need or what tscriu can do
// without, slower (checked with --extra or --all); 3 is experimental (none yet).

import { closeSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AF_INET, AF_INET6, CLOCK, IPV6, KCMP, MFD, O, PTRACE_O, SHUT, SOCK, SOL_IPV6, SOL_TCP, TCP, TFD } from "../host-bridge/constants.js";
import { sockaddr } from "./fds/inet-common.js";
import { bridge, isNativeError } from "../host-bridge/load.js";
import { LAZY_UFFD_FEATURES } from "./restore/memory.js";
import { MM_MAP_SIZE, PR_SET_MM } from "./restore/mm.js";
import { isRestoreError } from "./restore/errors.js";
import { findGap, readMaps } from "./restore/layout.js";
import { NR, Remote, TRAMPOLINE_SIZE } from "./restore/remote.js";
import { restoreSeccomp } from "./restore/seccomp.js";
import { killCreated, seizeStub, spawnStub, type Spawned } from "./restore/spawn.js";
import type { RestoreSpawnOptions } from "../host-bridge/native.js";
import type { ModuleLog } from "./log.js";

export type Category = 1 | 2 | 3;

export interface Feature {
  name: string;
  category: Category;
  /** what tscriu uses it for */
  use: string;
  /** throws (with the reason) when the feature is missing */
  probe(p: Probe): Promise<void> | void;
}

const PR_SET_MM_MAP_SIZE = 15;
const CAP_SYS_ADMIN = 21;
const CAP_CHECKPOINT_RESTORE = 40;

/** The stub a check works on: spawned, seized and given a trampoline once, on first use. */
export class Probe {
  private stub: Spawned | undefined;
  private remoteArea: Remote | undefined;
  /** more stubs a probe started (clone3_set_tid, timens); killed at the end */
  private readonly extra: number[] = [];

  constructor(private readonly log: ModuleLog) {}

  get pid(): number {
    if (!this.stub) {
      this.stub = spawnStub({ mode: "child", session: "inherit" });
      this.log.debug(`stub ${this.stub.pid} started`);
      seizeStub(this.stub.pid);
    }
    return this.stub.pid;
  }

  /** Starts one more stub (not seized), killed with the rest at the end. */
  spawn(opts: Omit<RestoreSpawnOptions, "stub" | "mode" | "session">): number {
    const s = spawnStub({ mode: "child", session: "inherit", ...opts });
    this.log.debug(`stub ${s.pid} started`);
    this.extra.push(s.pid);
    return s.pid;
  }

  get remote(): Remote {
    if (!this.remoteArea) {
      const pid = this.pid;
      this.remoteArea = Remote.create(pid, findGap(readMaps(pid), TRAMPOLINE_SIZE));
      this.remoteArea.enter("check");
    }
    return this.remoteArea;
  }

  /** tscriu's fd `local` copied into the stub (pidfd_getfd run there) for `use`, and closed there after. */
  withFd(local: number, what: string, use: (fd: number, r: Remote) => void): void {
    const r = this.remote;
    r.openPidfd(100);
    const fd = r.takeFd(local, what);
    r.closePidfd();
    try {
      use(fd, r);
    } finally {
      r.call("close", NR.close, [fd]);
    }
  }

  async close(): Promise<void> {
    for (const pid of [...this.extra, ...(this.stub ? [this.stub.pid] : [])]) {
      const why = await killCreated([{ pid, tids: [] }]);
      if (why) this.log.warn(why);
    }
    this.extra.length = 0;
    this.stub = undefined;
    this.remoteArea = undefined;
  }
}

function capEff(): bigint {
  const m = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

function mapping(pid: number, name: string): { start: bigint; end: bigint } {
  const m = readMaps(pid).find((x) => x.name === name);
  if (!m) throw new Error(`the stub has no ${name} mapping`);
  return m;
}

/** Runs `use` on a userfaultfd made in the probe's stub (as a dump or restore makes one in a task), taken with pidfd_getfd. */
function withTaskUffd(p: Probe, use: (fd: number) => void): void {
  const r = p.remote;
  const fd = Number(r.call("userfaultfd", NR.userfaultfd, [O.CLOEXEC | O.NONBLOCK]));
  const b = bridge();
  const pidfd = b.pidfdOpen(p.pid);
  try {
    const mine = b.pidfdGetfd(pidfd, fd);
    try {
      use(mine);
    } finally {
      b.close(mine);
    }
  } finally {
    b.close(pidfd);
    r.call("close", NR.close, [fd]);
  }
}

/** Every feature, in the order criu's check would run them: category 1 first. */
export const FEATURES: readonly Feature[] = [
  {
    name: "ptrace",
    category: 1,
    use: "freezing a task: PTRACE_SEIZE, PTRACE_INTERRUPT, registers and the xsave area",
    probe: (p) => {
      const b = bridge();
      if (b.getRegs(p.pid).length !== 27 * 8) throw new Error("PTRACE_GETREGS gave a register set of another size");
      const x = b.getXstate(p.pid);
      if (x.length < 576) throw new Error(`the NT_X86_XSTATE regset is ${x.length} bytes (no xsave header)`);
    },
  },
  {
    name: "process_vm",
    category: 1,
    use: "reading and writing task memory (process_vm_readv/writev)",
    probe: (p) => {
      const b = bridge();
      const at = p.remote.data;
      const bytes = Buffer.from("tscriu-check");
      if (b.processVmWritev(p.pid, at, bytes) !== bytes.length) throw new Error("short process_vm_writev");
      const back = Buffer.alloc(bytes.length);
      if (b.processVmReadv(p.pid, at, back.length, back) !== back.length || !back.equals(bytes)) throw new Error("process_vm_readv did not read back what was written");
    },
  },
  {
    name: "pidfd_getfd",
    category: 1,
    use: "copying fds out of a task (dump) and into it (restore): pidfd_open, pidfd_getfd",
    probe: (p) => {
      const local = openSync("/dev/null", "r");
      try {
        p.withFd(local, "/dev/null", (fd) => {
          const seen = readlinkSync(`/proc/${p.pid}/fd/${fd}`);
          if (seen !== "/dev/null") throw new Error(`the copied fd is ${seen}, not /dev/null`);
          // and the dump's direction: tscriu takes the task's fd
          const b = bridge();
          const pidfd = b.pidfdOpen(p.pid);
          try {
            b.close(b.pidfdGetfd(pidfd, fd));
          } finally {
            b.close(pidfd);
          }
        });
      } finally {
        closeSync(local);
      }
    },
  },
  {
    name: "kcmp",
    category: 1,
    use: "telling shared open files apart (kcmp KCMP_FILE)",
    probe: (p) => {
      const b = bridge();
      const pidfd = b.pidfdOpen(p.pid);
      try {
        const local = openSync("/dev/null", "r");
        try {
          if (b.kcmp(process.pid, process.pid, KCMP.FILE, local, local) !== 0) throw new Error("kcmp calls one file two");
          if (b.kcmp(process.pid, process.pid, KCMP.FILE, local, pidfd) === 0) throw new Error("kcmp calls two files one");
        } finally {
          closeSync(local);
        }
      } finally {
        b.close(pidfd);
      }
    },
  },
  {
    name: "get_rseq_conf",
    category: 1,
    use: "the rseq registration of a task (PTRACE_GET_RSEQ_CONFIGURATION)",
    probe: (p) => {
      bridge().getRseqConfiguration(p.pid);
    },
  },
  {
    name: "clone3_set_tid",
    category: 1,
    use: "restoring a task with its PID (clone3 set_tid)",
    probe: async (p) => {
      // A PID just freed is not handed out again before the PID counter wraps.
      const first = p.spawn({});
      await p.close();
      const again = p.spawn({ pid: first });
      if (again !== first) throw new Error(`asked for pid ${first}, got ${again}`);
    },
  },
  {
    name: "timens",
    category: 1,
    use: "clocks that go on from the dump (a time namespace with offsets)",
    probe: (p) => {
      const b = bridge();
      const hour = 3600n * 1_000_000_000n;
      const pid = p.spawn({ timens: { monotonicNs: b.clockGettime(CLOCK.MONOTONIC) + hour, boottimeNs: b.clockGettime(CLOCK.BOOTTIME) + hour } });
      const offsets = readFileSync(`/proc/${pid}/timens_offsets`, "utf8");
      const m = /^monotonic\s+(-?\d+)\s/m.exec(offsets);
      if (!m) throw new Error(`/proc/${pid}/timens_offsets has no monotonic line`);
      const sec = Number(m[1]);
      if (sec < 3590 || sec > 3610) throw new Error(`the new time namespace's monotonic offset is ${sec} s, not about 3600 s`);
    },
  },
  {
    name: "mm_map",
    category: 1,
    use: "setting a restored task's mm fields (prctl PR_SET_MM_MAP)",
    probe: (p) => {
      const r = p.remote;
      r.call("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", NR.prctl, [PR_SET_MM, PR_SET_MM_MAP_SIZE, r.data, 0, 0]);
      const size = Buffer.alloc(4);
      bridge().processVmReadv(p.pid, r.data, 4, size);
      if (size.readUInt32LE(0) !== MM_MAP_SIZE) throw new Error(`the kernel's prctl_mm_map is ${size.readUInt32LE(0)} bytes, tscriu writes ${MM_MAP_SIZE}`);
      const caps = capEff();
      if (!((caps >> BigInt(CAP_CHECKPOINT_RESTORE)) & 1n) && !((caps >> BigInt(CAP_SYS_ADMIN)) & 1n)) throw new Error("PR_SET_MM_MAP needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN, which tscriu does not have");
    },
  },
  {
    name: "vdso_mremap",
    category: 1,
    use: "moving [vvar]/[vdso] onto the dumped addresses (mremap of special mappings)",
    probe: (p) => {
      const r = p.remote;
      const vdso = mapping(p.pid, "[vdso]");
      const size = vdso.end - vdso.start;
      const to = findGap([...readMaps(p.pid), { start: r.tramp, end: r.tramp + BigInt(TRAMPOLINE_SIZE) }], Number(size) + 4096) + 4096n;
      r.call("mremap of [vdso]", NR.mremap, [vdso.start, size, size, 3 /* MREMAP_MAYMOVE | MREMAP_FIXED */, to]);
      const moved = mapping(p.pid, "[vdso]");
      if (moved.start !== to) throw new Error(`[vdso] is at 0x${moved.start.toString(16)} after the mremap to 0x${to.toString(16)}`);
    },
  },
  {
    name: "seccomp_filters",
    category: 2,
    use: "tasks under seccomp filters: installing them suspended (PTRACE_O_SUSPEND_SECCOMP), reading them (PTRACE_SECCOMP_GET_FILTER)",
    probe: (p) => {
      // The stub gets an allow-everything filter the way a restore installs one; the
      // dump's reader must give the same program back.
      const allow = Buffer.alloc(8);
      allow.writeUInt16LE(0x06, 0); // BPF_RET | BPF_K
      allow.writeUInt32LE(0x7fff0000, 4); // SECCOMP_RET_ALLOW
      restoreSeccomp([{ remote: p.remote, plan: { mode: "filter", filters: [{ prog: allow, flags: 0 }] } }], 0);
      const back = bridge().seccompGetFilter(p.pid, 0);
      if (!back?.equals(allow)) throw new Error("PTRACE_SECCOMP_GET_FILTER did not give back the filter installed");
    },
  },
  {
    name: "pagemap_scan",
    category: 2,
    use: "finding present pages in one call per region (PAGEMAP_SCAN; else /proc/PID/pagemap, slower)",
    probe: (p) => {
      const stack = mapping(p.pid, "[stack]");
      bridge().pagemapScan(p.pid, stack.start, stack.end);
    },
  },
  {
    name: "uffd",
    category: 2,
    use: "filling anonymous memory with UFFDIO_COPY (else process_vm_writev, slower)",
    probe: (p) => {
      const r = p.remote;
      const fd = r.call("userfaultfd", NR.userfaultfd, [O.CLOEXEC | O.NONBLOCK]);
      r.call("close", NR.close, [fd]);
    },
  },
  {
    name: "uffd_wp_async",
    category: 2,
    use: "tracking writes between incremental dumps (userfaultfd UFFD_FEATURE_WP_ASYNC; else pages are compared with the parent)",
    probe: (p) => withTaskUffd(p, (fd) => bridge().uffdTrackStart(fd)),
  },
  {
    name: "memfd",
    category: 2,
    use: "restoring shared anonymous memory and memfds (memfd_create)",
    probe: () => {
      closeSync(bridge().memfdCreate("tscriu-check", 1 /* MFD_CLOEXEC */));
    },
  },
];

/**
 * criu's names of features that zdtm and scripts ask `check --feature` about (zdtm skips a
 * test whose feature is missing), answered for tscriu: the kernel facility tscriu relies on
 * for it, probed; or, for what tscriu does not do yet, missing with the reason. Not in
 * `--feature list` nor in the checks run without --feature: they are criu's words for
 * features of its own.
 */
const CRIU_FEATURES: readonly Feature[] = [
  {
    // criu's soft-dirty; zdtm runs no pre-dump (--pre) nor snapshot (--snaps) without it
    name: "mem_dirty_track",
    category: 2,
    use: "memory changes tracked between a pre-dump and the dump after it (tscriu's userfaultfd write tracking, as uffd_wp_async)",
    probe: (p) => featureByName("uffd_wp_async")!.probe(p),
  },
  {
    name: "mnt_id",
    category: 2,
    use: "each file's mount (fdinfo's mnt_id)",
    probe: () => {
      const fd = openSync("/dev/null", "r");
      try {
        if (!/^mnt_id:/m.test(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))) throw new Error("/proc/self/fdinfo has no mnt_id: line");
      } finally {
        closeSync(fd);
      }
    },
  },
  {
    name: "ns_pid",
    category: 2,
    use: "a task's pid in each pid namespace (NSpid in /proc/PID/status)",
    probe: () => {
      if (!/^NSpid:/m.test(readFileSync("/proc/self/status", "utf8"))) throw new Error("/proc/self/status has no NSpid line");
    },
  },
  {
    name: "loginuid",
    category: 2,
    use: "a task's audit login uid (/proc/PID/loginuid)",
    probe: () => void readFileSync("/proc/self/loginuid", "utf8"),
  },
  {
    name: "fdinfo_lock",
    category: 2,
    use: "--file-locks (each lock read from the lock: lines of the fd's fdinfo)",
    probe: (p) => {
      // A lock taken by the stub on a file of tscriu's: its fdinfo must show it.
      const dir = mkdtempSync(join(tmpdir(), "tscriu-check-"));
      const local = openSync(join(dir, "locked"), "w");
      try {
        p.withFd(local, "a file to lock", (fd, r) => {
          r.call("flock(LOCK_EX)", NR.flock, [fd, 2]);
          if (!/^lock:/m.test(readFileSync(`/proc/${p.pid}/fdinfo/${fd}`, "utf8"))) throw new Error("the fdinfo of a locked file has no lock: line");
        });
      } finally {
        closeSync(local);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: "kcmp_epoll",
    category: 2,
    use: "an epoll's targets told apart (kcmp KCMP_EPOLL_TFD)",
    probe: () => {
      const b = bridge();
      const ep = b.epollCreate1(0);
      // An epoll watching nothing: ENOENT says the kernel looked for the target (EINVAL: no KCMP_EPOLL_TFD).
      let found = true;
      try {
        b.kcmpEpollTfd(process.pid, ep, process.pid, ep, ep, 0);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
        found = false;
      } finally {
        b.close(ep);
      }
      if (found) throw new Error("kcmp found a target in an empty epoll");
    },
  },
  {
    name: "seccomp_suspend",
    category: 2,
    use: "calls run inside a task under a seccomp filter (PTRACE_O_SUSPEND_SECCOMP while it is seized)",
    probe: (p) => {
      const pid = p.spawn({});
      bridge().ptraceSeize(pid, PTRACE_O.SUSPEND_SECCOMP | PTRACE_O.EXITKILL);
    },
  },
  {
    name: "timerfd",
    category: 2,
    use: "a timerfd's expirations not read yet (TFD_IOC_SET_TICKS inside the task)",
    probe: (p) => {
      const local = bridge().timerfdCreate(CLOCK.MONOTONIC, 0);
      try {
        p.withFd(local, "a timerfd", (fd, r) => {
          const ticks = Buffer.alloc(8);
          ticks.writeBigUInt64LE(3n);
          r.call("ioctl(TFD_IOC_SET_TICKS)", NR.ioctl, [fd, TFD.IOC_SET_TICKS, r.write(32, ticks)]);
          if (!/^ticks:\s*3$/m.test(readFileSync(`/proc/${p.pid}/fdinfo/${fd}`, "utf8"))) throw new Error("the timerfd's fdinfo does not show the ticks set");
        });
      } finally {
        closeSync(local);
      }
    },
  },
  {
    name: "net_diag_raw",
    category: 2,
    use: "raw sockets (criu reads them from sock_diag; tscriu from /proc/net/raw and raw6, which this probes)",
    probe: () => {
      for (const f of ["/proc/net/raw", "/proc/net/raw6"]) readFileSync(f, "utf8");
    },
  },
  {
    name: "tcp_half_closed",
    category: 2,
    use: "--tcp-established with a connection shut down for writing (repair mode of a half-closed socket)",
    probe: () => {
      // As criu's kerndat: a loopback connection shut down for writing must take TCP_REPAIR.
      const b = bridge();
      const fds: number[] = [];
      try {
        const srv = b.socket(AF_INET, SOCK.STREAM, 0);
        fds.push(srv);
        b.bindAddr(srv, sockaddr(AF_INET, 0, [0x0100007f]));
        b.listen(srv, 1);
        const cli = b.socket(AF_INET, SOCK.STREAM, 0);
        fds.push(cli);
        b.connectAddr(cli, b.sockName(srv));
        b.shutdown(cli, SHUT.WR);
        const yes = Buffer.alloc(4);
        yes.writeInt32LE(1);
        b.setsockopt(cli, SOL_TCP, TCP.REPAIR, yes);
      } finally {
        for (const fd of fds) closeSync(fd);
      }
    },
  },
  {
    name: "ipv6_freebind",
    category: 2,
    use: "an IPv6 socket's IPV6_FREEBIND, dumped and set again",
    probe: () => {
      const b = bridge();
      const fd = b.socket(AF_INET6, SOCK.DGRAM, 0);
      try {
        const on = Buffer.alloc(4);
        on.writeInt32LE(1);
        b.setsockopt(fd, SOL_IPV6, IPV6.FREEBIND, on);
        if (b.getsockopt(fd, SOL_IPV6, IPV6.FREEBIND, 4).readInt32LE(0) !== 1) throw new Error("IPV6_FREEBIND does not read back as set");
      } finally {
        closeSync(fd);
      }
    },
  },
  {
    name: "network_lock_nftables",
    category: 2,
    use: "--network-lock nftables (a table with sets of concatenated address and port pairs)",
    probe: () => {
      // A table of its own, as the lock makes one, removed again (criu's kerndat makes one in
      // a network namespace of its own; this one's name is this process's).
      const t = `inet tscriu-check-${process.pid}`;
      const b = bridge();
      b.nftRun(`create table ${t}`);
      try {
        b.nftRun(`add set ${t} conns4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }`);
      } finally {
        b.nftRun(`delete table ${t}`);
      }
    },
  },
  {
    // criu's kerndat: memfd_create("", MFD_HUGETLB); zdtm's memfd02-hugetlb asks for it
    name: "memfd_hugetlb",
    category: 2,
    use: "hugetlb memfds and shared MAP_HUGETLB memory (memfd_create with MFD_HUGETLB)",
    probe: () => {
      closeSync(bridge().memfdCreate("tscriu-check", MFD.CLOEXEC | MFD.HUGETLB));
    },
  },
  {
    // criu's kerndat uffd_noncoop; zdtm's lazy-pages runs ask for it
    name: "uffd-noncoop",
    category: 2,
    use: "lazy restores whose tasks fork, mremap, munmap or give pages back (userfaultfd's fork, remap, remove and unmap events)",
    // the handshake a lazy restore makes (restore/memory.ts), no range registered
    probe: (p) => withTaskUffd(p, (fd) => bridge().uffdRegister(fd, new BigUint64Array(0), true, LAZY_UFFD_FEATURES)),
  },
  {
    name: "userns",
    category: 3,
    use: "user namespaces",
    probe: () => {
      throw new Error("tscriu does not dump or restore namespaces yet");
    },
  },
  {
    name: "aio_remap",
    category: 3,
    use: "AIO rings (io_setup)",
    probe: () => {
      throw new Error("tscriu does not dump AIO rings yet");
    },
  },
];

export function featureByName(name: string): Feature | undefined {
  return FEATURES.find((f) => f.name === name) ?? CRIU_FEATURES.find((f) => f.name === name);
}

/** criu's `--feature list` layout: names joined by ", ", lines of at most `width` columns. */
export function featureList(width = 80): string {
  const lines: string[] = [];
  let line = "";
  FEATURES.forEach((f, i) => {
    const item = f.name + (i < FEATURES.length - 1 ? "," : "");
    if (line && line.length + 1 + item.length > width) {
      lines.push(line);
      line = "";
    }
    line += (line ? " " : "") + item;
  });
  if (line) lines.push(line);
  return `${lines.join("\n")}\n`;
}

export interface CheckResult {
  /** 0: every feature checked is there; 1: a category 1 feature is missing; 2: only others are */
  verdict: 0 | 1 | 2;
  missing: { feature: Feature; why: string }[];
}

/** TSCRIU_FAULT=check:NAME[,check:NAME…] makes those probes fail (for tests of the verdicts). */
function injected(f: Feature): boolean {
  return (process.env["TSCRIU_FAULT"] ?? "").split(",").includes(`check:${f.name}`);
}

async function probeOne(f: Feature, p: Probe): Promise<string | undefined> {
  try {
    if (injected(f)) throw new Error(`fault injected by TSCRIU_FAULT=check:${f.name}`);
    await f.probe(p);
    return undefined;
  } catch (e) {
    // The restore machinery names its own step and pid; here only the cause matters.
    if (isRestoreError(e)) return e.message.replace(/^restore: \S+(?: of pid \d+)? failed: /, "");
    return isNativeError(e) ? `${e.syscall ?? ""}${e.syscall ? ": " : ""}${e.code ?? e.message}` : (e as Error).message;
  }
}

/** Runs the features of the given categories: category 1 stops at its first missing feature. */
export async function check(categories: readonly Category[], log: ModuleLog, only?: Feature): Promise<CheckResult> {
  if (process.getuid?.() !== 0) throw new Error("check: only root can check what dump and restore need (run as root)");
  const p = new Probe(log);
  const missing: CheckResult["missing"] = [];
  try {
    for (const f of only ? [only] : FEATURES.filter((x) => categories.includes(x.category))) {
      log.info(`checking ${f.name}: ${f.use}`);
      const why = await probeOne(f, p);
      if (why === undefined) continue;
      log.error(`${f.name} is not supported: ${why} (tscriu uses it for ${f.use})`);
      missing.push({ feature: f, why });
      if (f.category === 1 && !only) break;
      // a failed probe may have left the stub half-way: start the next one afresh
      await p.close();
    }
  } finally {
    await p.close();
  }
  const verdict = missing.length === 0 ? 0 : missing.some((m) => m.feature.category === 1) ? 1 : 2;
  return { verdict, missing };
}
