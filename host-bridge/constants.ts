// Kernel constants the bridge functions take or return (x86_64 Linux uapi values), so
// callers do not scatter magic numbers. Signals: use os.constants.signals.

/** PTRACE_O_* options for ptraceSeize / ptraceSetOptions. */
export const PTRACE_O = {
  TRACESYSGOOD: 0x1,
  TRACEFORK: 0x2,
  TRACEVFORK: 0x4,
  TRACECLONE: 0x8,
  TRACEEXEC: 0x10,
  TRACEVFORKDONE: 0x20,
  TRACEEXIT: 0x40,
  TRACESECCOMP: 0x80,
  EXITKILL: 0x100000,
  SUSPEND_SECCOMP: 0x200000,
} as const;

/** PTRACE_EVENT_* as WaitStatus.event reports them. */
export const PTRACE_EVENT = {
  FORK: 1,
  VFORK: 2,
  CLONE: 3,
  EXEC: 4,
  VFORK_DONE: 5,
  EXIT: 6,
  SECCOMP: 7,
  /** Interrupt (PTRACE_INTERRUPT) and group stops of a seized task. */
  STOP: 128,
} as const;

/** waitpid flags (__WALL is always added by the bridge). */
export const WAIT = {
  WNOHANG: 1,
  WUNTRACED: 2,
  WNOTHREAD: 0x20000000,
} as const;

/** x86_64 syscall numbers used through remoteSyscall. */
export const SYS = {
  read: 0,
  write: 1,
  close: 3,
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  rt_sigaction: 13,
  rt_sigprocmask: 14,
  mremap: 25,
  dup2: 33,
  nanosleep: 35,
  getpid: 39,
  fcntl: 72,
  prctl: 157,
  arch_prctl: 158,
  gettid: 186,
  clock_nanosleep: 230,
  restart_syscall: 219,
  set_robust_list: 273,
  sigaltstack: 131,
  rseq: 334,
  clone3: 435,
} as const;

/**
 * Kernel-internal restart codes seen in rax of a task stopped inside a syscall; criu's
 * dump-time fix-up turns them into what resuming would have done.
 */
export const ERESTART = {
  ERESTARTSYS: 512,
  ERESTARTNOINTR: 513,
  ERESTARTNOHAND: 514,
  ERESTART_RESTARTBLOCK: 516,
} as const;

/** fcntl commands with an int argument. */
export const F = {
  DUPFD_CLOEXEC: 1030,
  GETFD: 1,
  SETFD: 2,
  GETFL: 3,
  SETFL: 4,
  SETOWN: 8,
  SETSIG: 10,
  SETPIPE_SZ: 1031,
  GETPIPE_SZ: 1032,
  GET_SEALS: 1034,
} as const;

/** F_SETFD's flag. */
export const FD_CLOEXEC = 1;

/** splice/tee flags. */
export const SPLICE_F = {
  MOVE: 1,
  NONBLOCK: 2,
  MORE: 4,
  GIFT: 8,
} as const;

/** O_* flags (pipe2, open; node:fs constants leave O_PATH and O_CLOEXEC out). */
export const O = {
  NONBLOCK: 0o4000,
  DIRECTORY: 0o200000,
  PATH: 0o10000000,
  CLOEXEC: 0o2000000,
  DIRECT: 0o40000,
} as const;

/** pidfd_open(2) flags (f_flags bits of the pidfd: PIDFD_NONBLOCK is O_NONBLOCK, PIDFD_THREAD O_EXCL). */
export const PIDFD = {
  NONBLOCK: 0o4000,
  THREAD: 0o200,
} as const;

/** The clone flag of each kind of namespace, by its name in /proc/PID/ns (criu's ns_cflag). */
export const CLONE_NEW = {
  mnt: 0x00020000,
  cgroup: 0x02000000,
  uts: 0x04000000,
  ipc: 0x08000000,
  user: 0x10000000,
  pid: 0x20000000,
  net: 0x40000000,
  time: 0x00000080,
} as const;

export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;

/** The signals whose default action stops a task: SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU. */
export const STOP_SIGNALS: ReadonlySet<number> = new Set([19, 20, 21, 22]);

/** clock ids of clockGettime */
export const CLOCK = { REALTIME: 0, MONOTONIC: 1, BOOTTIME: 7 } as const;

/** Scheduling policies; sched_getscheduler ORs RESET_ON_FORK into the policy, and criu's sched_policy keeps it. */
export const SCHED = { OTHER: 0, FIFO: 1, RR: 2, BATCH: 3, IDLE: 5, DEADLINE: 6, RESET_ON_FORK: 0x40000000 } as const;

/** kcmp types */
export const KCMP = { FILE: 0, VM: 1, FILES: 2, FS: 3, SIGHAND: 4, EPOLL_TFD: 7 } as const;

export const MAP = {
  SHARED: 0x01,
  PRIVATE: 0x02,
  /** Linux 6.11+: private anonymous memory the kernel may empty under pressure ("dp" in VmFlags) */
  DROPPABLE: 0x08,
  FIXED: 0x10,
  ANONYMOUS: 0x20,
  FIXED_NOREPLACE: 0x100000,
  HUGETLB: 0x40000,
} as const;

/**
 * hugetlb's page size in mmap and memfd_create flags: log2(size) << 26 (the same bits in
 * both, MAP_HUGE_SHIFT = MFD_HUGE_SHIFT); criu keeps them in vma_entry.flags and in
 * memfd_inode_entry.hugetlb_flag (with MFD_HUGETLB).
 */
export const HUGE_SHIFT = 26;
export const HUGE_SIZE_MASK = 0x3f << HUGE_SHIFT;
/** the page sizes criu knows (hugetlb.c), as log2 of bytes: 16K .. 16G */
export const HUGE_SIZE_LOG2 = [14, 16, 19, 20, 21, 23, 24, 25, 28, 29, 30, 31, 34] as const;
export const MFD = { CLOEXEC: 1, ALLOW_SEALING: 2, HUGETLB: 4 } as const;

/** Sockets (asm-generic/socket.h, linux/net.h): the family, types and options tscriu uses. */
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
/** Netlink's socket options (linux/netlink.h): SOL_NETLINK level. */
export const SOL_NETLINK = 270;
export const NETLINK_OPT = {
  ADD_MEMBERSHIP: 1,
  DROP_MEMBERSHIP: 2,
  PKTINFO: 3,
  BROADCAST_ERROR: 4,
  NO_ENOBUFS: 5,
  LISTEN_ALL_NSID: 8,
  LIST_MEMBERSHIPS: 9,
  CAP_ACK: 10,
  EXT_ACK: 11,
  GET_STRICT_CHK: 12,
} as const;
export const AF_PACKET = 17;
/** Packet sockets' options (linux/if_packet.h): SOL_PACKET level. */
export const SOL_PACKET = 263;
export const PACKET_OPT = {
  ADD_MEMBERSHIP: 1,
  RX_RING: 5,
  COPY_THRESH: 7,
  AUXDATA: 8,
  ORIGDEV: 9,
  VERSION: 10,
  RESERVE: 12,
  TX_RING: 13,
  LOSS: 14,
  VNET_HDR: 15,
  TIMESTAMP: 17,
  FANOUT: 18,
  TX_HAS_OFF: 19,
  QDISC_BYPASS: 20,
  IGNORE_OUTGOING: 23,
  VNET_HDR_SZ: 24,
} as const;
export const SOCK = { STREAM: 1, DGRAM: 2, RAW: 3, SEQPACKET: 5, PACKET: 10 } as const;
/** IP protocol numbers (netinet/in.h) */
export const IPPROTO = { IP: 0, ICMP: 1, TCP: 6, UDP: 17, IPV6: 41, ICMPV6: 58, UDPLITE: 136, RAW: 255, MPTCP: 262 } as const;
/** One past the last protocol socket() takes (a raw socket may have any below it, MPTCP's number too). */
export const IPPROTO_MAX = 263;
/** Option levels and the IP, IPv6, TCP and UDP options tscriu keeps (linux/in.h, in6.h, tcp.h, udp.h). */
export const SOL_IP = 0;
export const SOL_IPV6 = 41;
export const SOL_TCP = 6;
export const SOL_UDP = 17;
export const IP = { TOS: 1, TTL: 2, HDRINCL: 3, PKTINFO: 8, FREEBIND: 15, NODEFRAG: 22 } as const;
export const IPV6 = { CHECKSUM: 7, RECVPKTINFO: 49, V6ONLY: 26, HDRINCL: 36, FREEBIND: 78 } as const;
/** A raw ICMP socket's filter of ICMP types: ICMP_FILTER at SOL_RAW, ICMPV6_FILTER at SOL_ICMPV6 (both 1). */
export const SOL_RAW = 255;
export const SOL_ICMPV6 = 58;
export const ICMP_FILTER = 1;
export const TCP = {
  NODELAY: 1,
  MAXSEG: 2,
  CORK: 3,
  KEEPIDLE: 4,
  KEEPINTVL: 5,
  KEEPCNT: 6,
  INFO: 11,
  REPAIR: 19,
  REPAIR_QUEUE: 20,
  QUEUE_SEQ: 21,
  REPAIR_OPTIONS: 22,
  TIMESTAMP: 24,
  REPAIR_WINDOW: 29,
} as const;
/** TCP_REPAIR_QUEUE's queues */
export const TCP_QUEUE = { NO: 0, RECV: 1, SEND: 2 } as const;
/** tcp_info's tcpi_options bits */
export const TCPI_OPT = { TIMESTAMPS: 1, SACK: 2, WSCALE: 4, ECN: 8 } as const;
export const UDP_CORK = 1;
/** TCP's states as sock_diag and TCP_INFO report them (net/tcp_states.h). */
export const TCP_STATE = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
} as const;
/** poll(2) events */
export const POLL = { IN: 0x1, OUT: 0x4, ERR: 0x8, HUP: 0x10, RDHUP: 0x2000 } as const;
export const SOL_SOCKET = 1;
/** The control message of a unix socket that passes fds (SOL_SOCKET level); criu's scm_entry.type. */
export const SCM_RIGHTS = 1;
/** The kernel's SCM_MAX_FD: the most fds one message passes. */
export const SCM_MAX_FD = 253;
export const SO = {
  REUSEADDR: 2,
  TYPE: 3,
  DONTROUTE: 5,
  BROADCAST: 6,
  SNDBUF: 7,
  RCVBUF: 8,
  KEEPALIVE: 9,
  OOBINLINE: 10,
  NO_CHECK: 11,
  PRIORITY: 12,
  LINGER: 13,
  REUSEPORT: 15,
  PASSCRED: 16,
  RCVLOWAT: 18,
  RCVTIMEO: 20,
  SNDTIMEO: 21,
  BINDTODEVICE: 25,
  /** SO_GET_FILTER and SO_ATTACH_FILTER share the number (get and set). */
  GET_FILTER: 26,
  ATTACH_FILTER: 26,
  PEERNAME: 28,
  SNDBUFFORCE: 32,
  RCVBUFFORCE: 33,
  PASSSEC: 34,
  MARK: 36,
  PROTOCOL: 38,
  DOMAIN: 39,
  PEEK_OFF: 42,
  LOCK_FILTER: 44,
  ATTACH_BPF: 50,
  BUF_LOCK: 72,
  PASSPIDFD: 76,
  PASSRIGHTS: 83,
} as const;
/** shutdown(2)'s how */
export const SHUT = { RD: 0, WR: 1, RDWR: 2 } as const;
/** The states sock_diag reports for a unix socket (the kernel reuses TCP's numbers). */
export const SK_STATE = { ESTABLISHED: 1, CLOSE: 7, LISTEN: 10 } as const;
/** eventfd(2) flags; EFD_SEMAPHORE is not an f_flags bit (the rest are O_NONBLOCK, O_CLOEXEC). */
export const EFD = { SEMAPHORE: 1 } as const;

/** timerfd_settime(2) flags and the ioctl that sets a timerfd's count of expirations. */
export const TFD = {
  TIMER_ABSTIME: 1,
  TIMER_CANCEL_ON_SET: 2,
  /** _IOW('T', 0, u64) */
  IOC_SET_TICKS: 0x40085400,
} as const;

/** epoll_ctl(2) operations and the flag bits of an item's events. */
export const EPOLL = {
  CTL_ADD: 1,
  CTL_MOD: 3,
  EXCLUSIVE: 1 << 28,
  WAKEUP: 1 << 29,
  ONESHOT: 1 << 30,
  ET: 2 ** 31,
} as const;

/** inotify: the events a watch may ask for and the watch flags fdinfo shows with them. */
export const IN = {
  ALL_EVENTS: 0xfff,
  EXCL_UNLINK: 0x04000000,
  ONESHOT: 0x80000000,
} as const;

/** Flags F_SETFL changes (the rest of f_flags are fixed at open). */
export const SETFL_MASK = 0o2000 | 0o20000 | 0o4000 | 0o40000 | 0o1000000; // O_APPEND O_ASYNC O_NONBLOCK O_DIRECT O_NOATIME
