/**
 * The whole surface of the native host bridge (host-bridge/src/*.c).
 * Loaded and cast in exactly one place: host-bridge/load.ts.
 *
 * Errors thrown by these functions are `NativeError`s: an Error with `code`
 * ("ESRCH"), `errno` (positive), `syscall`, and `pid` or `path` when one is involved.
 * Argument errors are TypeErrors with code "ERR_INVALID_ARG_TYPE".
 */
export interface NativeBridge {
  /** fallocate(fd, PUNCH_HOLE|KEEP_SIZE, offset, length). */
  punchHole(fd: number, offset: number | bigint, length: number | bigint): void;
  /** lseek(fd, offset, SEEK_DATA); -1 when there is no data at or after offset. */
  seekData(fd: number, offset: number | bigint): number;
  /** lseek(fd, offset, SEEK_HOLE); -1 when offset is past the end. */
  seekHole(fd: number, offset: number | bigint): number;
  /** lseek(fd, offset, SEEK_SET): the new offset. */
  seekSet(fd: number, offset: number | bigint): number;
  /** mknod(path, mode, dev): a FIFO, device node or empty file; mode holds the type bits. */
  mknod(path: string, mode: number, dev: number | bigint): void;
  /** linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH): a new hard link to the inode fd is open on (needs CAP_DAC_READ_SEARCH). */
  linkFd(fd: number, path: string): void;
  /** CPUID(leaf, subleaf) as [eax, ebx, ecx, edx]. */
  cpuid(leaf: number, subleaf: number): [number, number, number, number];
  /** XGETBV(index), e.g. XCR0 for index 0. */
  xgetbv(index: number): bigint;

  // ---- ptrace control (src/ptrace.c) ----
  // Every ptrace call for a tracee must come from the thread that seized it:
  // call these synchronously from one JS thread (DESIGN.md).

  /** PTRACE_SEIZE with PTRACE_O_* options (default 0). The task keeps running. */
  ptraceSeize(pid: number, options?: number): void;
  /** PTRACE_SETOPTIONS. */
  ptraceSetOptions(pid: number, options: number): void;
  /** PTRACE_INTERRUPT: the task stops with PTRACE_EVENT_STOP; collect it with waitpid. */
  ptraceInterrupt(pid: number): void;
  /** PTRACE_CONT, delivering `signal` (default 0: none). */
  ptraceCont(pid: number, signal?: number): void;
  /** PTRACE_DETACH, delivering `signal` (default 0). The task must be in a ptrace-stop. */
  ptraceDetach(pid: number, signal?: number): void;
  /** The signal of the stop a seized tracee reports (PTRACE_GETSIGINFO si_signo): for one in a group-stop, the signal that stopped it. */
  ptraceStopSignal(pid: number): number;
  /** PTRACE_SYSCALL: resume until the next syscall entry/exit stop. */
  ptraceSyscall(pid: number, signal?: number): void;
  /** PTRACE_LISTEN: leave a group-stopped task stopped but let it report further events. */
  ptraceListen(pid: number, signal?: number): void;
  /** PTRACE_PEEKDATA: the 8 bytes at `addr` as an unsigned little-endian word. */
  ptracePeekData(pid: number, addr: number | bigint): bigint;
  /** PTRACE_POKEDATA: writes 8 bytes (negative numbers/bigints in two's complement). */
  ptracePokeData(pid: number, addr: number | bigint, word: number | bigint): void;
  /** PTRACE_GETEVENTMSG: the new pid after a fork/clone event, the exit status at PTRACE_EVENT_EXIT. */
  ptraceGetEventMsg(pid: number): number;
  /**
   * waitpid(pid, flags | __WALL), retried on EINTR. `pid` may be -1 (any) as in waitpid(2),
   * but that also reaps children that are not tracees. Without `timeoutMs` it blocks; with it,
   * it polls and returns null on timeout (a stop cannot be waited for through a pidfd). With
   * WNOHANG it returns null when nothing is pending. Throws ECHILD when `pid` is neither a
   * child nor a tracee of this thread.
   */
  waitpid(pid: number, flags?: number, timeoutMs?: number): WaitStatus | null;

  // ---- register sets and signal state of a stopped tracee (src/regset.c) ----

  /**
   * PTRACE_GETREGSET NT_PRSTATUS: `struct user_regs_struct` as the kernel lays it out —
   * 216 bytes for a 64-bit task (27 little-endian u64: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8
   * rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs), 68 for a
   * 32-bit one. Bytes rather than an object because the image writer and restore take the
   * layout verbatim; host-bridge/regs.ts decodes/encodes the named bigint view.
   */
  getRegs(pid: number): Buffer;
  /** PTRACE_SETREGSET NT_PRSTATUS with a 216-byte (or 68-byte compat) buffer. */
  setRegs(pid: number, regs: Uint8Array): void;
  /** PTRACE_GETREGSET NT_PRFPREG: the 512-byte fxsave area (user_fpregs_struct). */
  getFpregs(pid: number): Buffer;
  /** PTRACE_SETREGSET NT_PRFPREG with exactly 512 bytes. */
  setFpregs(pid: number, fpregs: Uint8Array): void;
  /**
   * PTRACE_GETREGSET NT_X86_XSTATE: the whole xsave area in the kernel's UABI format,
   * as long as the kernel fills it (requested size from CPUID leaf 0xd).
   */
  getXstate(pid: number): Buffer;
  /** PTRACE_SETREGSET NT_X86_XSTATE with a buffer as getXstate returns it. */
  setXstate(pid: number, xstate: Uint8Array): void;
  /** PTRACE_GETSIGMASK: the blocked-signal mask, bit (n-1) for signal n. */
  getSigmask(pid: number): bigint;
  /** PTRACE_SETSIGMASK. The kernel silently drops SIGKILL and SIGSTOP from the mask. */
  setSigmask(pid: number, mask: bigint | number): void;
  /**
   * PTRACE_PEEKSIGINFO: every queued siginfo_t (128 bytes each, in queue order) of the
   * thread's own queue, or of the process-wide queue with `shared` = true. Not consumed.
   */
  peekSiginfo(pid: number, shared?: boolean): Buffer[];
  /** PTRACE_GET_RSEQ_CONFIGURATION; rseqAbiPointer is 0n when no rseq area is registered. */
  getRseqConfiguration(pid: number): RseqConfiguration;

  // ---- a syscall inside a stopped tracee (src/remote.c) ----

  /**
   * Runs syscall `nr` with up to 6 `args` (rdi rsi rdx r10 r8 r9; negative numbers/bigints in
   * two's complement) inside the ptrace-stopped thread `pid`, and returns the raw rax as a
   * signed bigint (-errno on failure). Writes `syscall; int3` over the 8-byte word at
   * `scratchAddr` (default: the start of the first executable mapping in /proc/PID/maps that
   * is not [vdso]/[vsyscall]/[uprobes]), blocks every signal, runs the thread to the trap,
   * then puts back the word, the registers (orig_rax included) and the signal mask — on every
   * path, errors included. Afterwards the thread sits in a SIGTRAP signal-delivery-stop with
   * its own registers: resume it with signal 0. Requirements: every other thread of the
   * process is stopped (the code bytes are shared); the stop is not a signal-delivery-stop of
   * a signal the task should still get (resuming suppresses it) — use the PTRACE_EVENT_STOP
   * of ptraceInterrupt. With `timeoutMs`, a syscall still blocked after that long is
   * interrupted and ETIME is thrown (after putting everything back). Errors: ESRCH when the
   * thread is not stopped or died, EFAULT when the injected code faulted (message names the
   * signal), EIO when `scratchAddr` is not mapped.
   */
  remoteSyscall(
    pid: number,
    nr: number,
    args: ReadonlyArray<number | bigint>,
    scratchAddr?: number | bigint | null,
    timeoutMs?: number,
  ): bigint;

  /**
   * Runs the syscall loop whose code is at `code` (Remote.loop's: a table of `count` calls
   * at `table`, 8 words each {nr, six arguments, result}; it stops at the first error and
   * ends with an int3 whose address + 1 is `end`) in the ptrace-stopped thread `pid`: one
   * stop for all the calls instead of two per call. Registers and signal mask are saved and
   * put back, and the thread is left in a PTRACE_EVENT_STOP as after remoteSyscall. Only
   * SIGTRAP is unblocked while the loop runs; a task that ignores SIGTRAP or has one pending
   * is refused with ENOTSUP (the kernel would reset the handler, or the pending one would be
   * taken for the loop's). Returns how many calls ran (results are in the table). Errors:
   * ESRCH (died), EFAULT (a fault in the loop), ENOTSUP.
   */
  remoteLoop(pid: number, code: bigint, end: bigint, table: bigint, count: number): number;

  // ---- another task's memory (src/memory.c) ----

  /**
   * process_vm_readv of `length` bytes at `remoteAddr` into `into` at byte `offset` (default
   * 0). Returns the bytes read: fewer than `length` when a page part-way cannot be read;
   * throws (EFAULT, ESRCH, EPERM) only when not a single byte could be. Needs no ptrace-stop
   * and may run on any thread.
   */
  processVmReadv(pid: number, remoteAddr: number | bigint, length: number, into: Uint8Array | ArrayBuffer, offset?: number): number;
  /**
   * Many ranges in few syscalls (up to IOV_MAX = 1024 ranges each): `ranges` holds
   * (addr, length) pairs, read one after another into `into` from `offset`. Loops over
   * partial reads; stops at the first byte that cannot be read and says how far it got:
   * `bytes` copied in all, `complete` = ranges read in full (the next one is where it
   * stopped), `stoppedBy` = "EFAULT" when it stopped early. Throws ESRCH/EPERM.
   */
  processVmReadvBatch(pid: number, ranges: BigUint64Array, into: Uint8Array | ArrayBuffer, offset?: number): BatchReadResult;
  /**
   * process_vm_writev of `from` [offset, offset+length) to `remoteAddr`; returns the bytes
   * written. Fails with EFAULT on pages the task cannot write (read-only): use writeProcMem.
   */
  processVmWritev(pid: number, remoteAddr: number | bigint, from: Uint8Array | ArrayBuffer, offset?: number, length?: number): number;
  /**
   * pread on /proc/PID/mem: reaches PROT_NONE and other unreadable pages (the kernel uses
   * FOLL_FORCE). Returns the bytes read; throws (EIO for unmapped memory) only when none were.
   */
  readProcMem(pid: number, remoteAddr: number | bigint, length: number, into: Uint8Array | ArrayBuffer, offset?: number): number;
  /** pwrite on /proc/PID/mem: writes even into read-only and PROT_NONE private pages. */
  writeProcMem(pid: number, remoteAddr: number | bigint, from: Uint8Array | ArrayBuffer, offset?: number, length?: number): number;
  /**
   * A Buffer of `size` bytes (1..2^32) starting on a 4096-byte boundary (posix_memalign,
   * freed by the GC). Contents are uninitialised, as with Buffer.allocUnsafe.
   * process_vm_readv into an unaligned buffer measured 3x slower here.
   */
  allocAligned(size: number): Buffer;
  /**
   * A Buffer of `size` bytes (a multiple of 4096, up to 2^32) of fresh anonymous memory whose
   * pages are already allocated (MADV_POPULATE_WRITE), in transparent huge pages where
   * `huge` asks and the kernel gives them; unmapped by the GC. Zero-filled. Faulting pages
   * in one by one costs ~30x more on nested paging: this is the buffer to copy a frozen
   * task's memory into.
   */
  allocPopulated(size: number, huge: boolean): Buffer;
  /**
   * allocPopulated on libuv's thread pool (another CPU than the one copying pages): the
   * buffer, and the nanoseconds the populating took on its thread (not the wait for one).
   */
  allocPopulatedAsync(size: number, huge: boolean): Promise<{ buffer: Buffer; ns: number }>;

  // ---- this process's own fresh memory, faulted in ahead (src/prefault.c) ----

  /**
   * Starts a thread that faults in this process's fresh anonymous memory (V8's young
   * generation, mostly) ahead of its use, at once and every 10 ms for half a second: on
   * these VMs a page's first write costs ~11 us, the thread's work on it ~6 us on the
   * other CPU. Also has malloc serve blocks up to 4 MiB from its heap, grown 8 MiB ahead
   * and never trimmed, which the thread fills too: for a short-lived command's process.
   * Once per process; later calls do nothing. Memory reads as before.
   */
  prefaultStart(): void;
  /**
   * One such pass on the calling thread (tests): the mappings that had pages to fill, the
   * pages filled, and the regions whose read met a page no longer mapped. injectUnmapped
   * adds a region made unreadable between its filling and its read, as one V8 unmaps.
   */
  prefaultPass(injectUnmapped: boolean): { regions: number; pages: number; cut: number };

  // ---- present pages (src/pagemap.c; host-bridge/pagemap.ts wraps it) ----

  /**
   * The PAGEMAP_SCAN ioctl (Linux >= 6.7) on /proc/PID/pagemap over [start, end)
   * (page-aligned). Returns (start, end, categories) triples of page runs, adjacent runs with
   * equal categories merged. By default selects pages that are present or swapped
   * (categoryAnyofMask = PRESENT|SWAPPED) and reports PRESENT|SWAPPED|FILE|PFNZERO|HUGE
   * (PAGE_IS_* bits, see host-bridge/pagemap.ts). EINVAL on kernels without it.
   */
  pagemapScan(pid: number, start: number | bigint, end: number | bigint, options?: PagemapScanOptions): BigUint64Array;
  /**
   * The present or swapped pages of a VMA whose writes are tracked (userfaultfd async
   * write-protect), but the zero page, split in one pass. `parent`: the pages not written
   * since they were protected that lie in `covered` (sorted (start, end) pairs) and are
   * not in `pre`, as (start, length) pairs. `runs`: the pages to dump, (start, length, tag)
   * triples in address order; tag 0: read from the task (written, or not `covered`:
   * `holes` pages), tag j + 1: unwritten pages of run j of `pre` ((start, length) pairs
   * in address order: runs copied before the freeze), written from that copy. `from`: the
   * first run of `pre` that may meet the VMA; `next`: where the next VMA goes on.
   */
  pagemapSplit(
    pid: number,
    start: number | bigint,
    end: number | bigint,
    covered: BigUint64Array,
    pre: BigUint64Array,
    from: number,
  ): { runs: BigUint64Array; parent: BigUint64Array; scanned: number; holes: number; next: number };

  // ---- pidfds, pipes and fds (src/pidfd.c; host-bridge/pipe.ts wraps the peek) ----

  /** pidfd_open(pid, flags); the fd is O_CLOEXEC. */
  pidfdOpen(pid: number, flags?: number): number;
  /** pidfd_getfd: a copy (O_CLOEXEC) of the target's fd `targetFd`, same open file description. */
  pidfdGetfd(pidfd: number, targetFd: number): number;
  /** pidfd_send_signal(pidfd, signal, NULL, 0). */
  pidfdSendSignal(pidfd: number, signal: number): void;
  /** close(2). */
  close(fd: number): void;
  /** pipe2(flags), default O_CLOEXEC: [readEnd, writeEnd]. */
  pipe2(flags?: number): [number, number];
  /**
   * tee(fdIn, fdOut, length, flags): duplicates up to `length` bytes from pipe fdIn into pipe
   * fdOut without consuming them. Returns 0 (not EAGAIN) when SPLICE_F_NONBLOCK finds nothing.
   */
  tee(fdIn: number, fdOut: number, length: number, flags?: number): number;
  /** splice(2); offsets null for pipes. Returns 0 for EAGAIN under SPLICE_F_NONBLOCK. */
  splice(fdIn: number, offIn: number | bigint | null, fdOut: number, offOut: number | bigint | null, length: number, flags?: number): number;
  /** fcntl with an int argument or none (F_GETFL, F_GETPIPE_SZ, F_SETPIPE_SZ, F_GET_SEALS, ...). */
  fcntl(fd: number, cmd: number, arg?: number): number;
  /** ioctl(fd, FIONREAD): bytes queued in a pipe, socket, tty or inotify fd. */
  fionread(fd: number): number;
  /**
   * readlinkat(2): `path` from the working directory (e.g. /proc/PID/fd/N, which
   * fs.readlinkSync also does), or from `dirfd`; ("", an O_PATH fd of a symlink) reads that
   * symlink itself, even unlinked.
   */
  readlink(path: string, dirfd?: number): string;
  /** fstat(2), summarised. */
  fstat(fd: number): FdStat;

  // ---- anonymous-inode files (src/anonfd.c) ----

  /** eventfd(initval, flags) (EFD_SEMAPHORE = 1, EFD_NONBLOCK, EFD_CLOEXEC); a larger count is written afterwards. */
  eventfd(initval: number, flags: number): number;
  /** signalfd4(-1, mask, 8, flags): a new signalfd for the 64-bit mask (bit n-1 for signal n). */
  signalfd(mask: bigint | number, flags: number): number;
  /** timerfd_create(clockId, flags). */
  timerfdCreate(clockId: number, flags: number): number;
  /**
   * timerfd_gettime: nanoseconds to the next expiry (0: disarmed or expired) and the interval.
   * On a periodic timer that expired unread the kernel first moves it to its next period and
   * adds the periods missed to its tick count, as a read would.
   */
  timerfdGettime(fd: number): { valueNs: bigint; intervalNs: bigint };
  /** epoll_create1(flags). */
  epollCreate1(flags: number): number;
  /** inotify_init1(flags). */
  inotifyInit1(flags: number): number;
  /** inotify_add_watch(fd, path, mask): the watch descriptor. */
  inotifyAddWatch(fd: number, path: string, mask: number): number;
  /** fanotify_init(flags, eventFlags). */
  fanotifyInit(flags: number, eventFlags: number): number;
  /** fanotify_mark(fd, flags, mask, AT_FDCWD, path). */
  fanotifyMark(fd: number, flags: number, mask: number, path: string): void;
  /** inotify_rm_watch(fd, wd). */
  inotifyRmWatch(fd: number, wd: number): void;
  /** ioctl(INOTIFY_IOC_SETNEXTWD): the next watch gets descriptor `wd` if free (ENOTTY without CONFIG_CHECKPOINT_RESTORE). */
  inotifySetNextWd(fd: number, wd: number): void;
  /** open_by_handle_at(mountFd, {handle.length, type, handle}, flags); needs CAP_DAC_READ_SEARCH. */
  openByHandleAt(mountFd: number, type: number, handle: Uint8Array, flags: number): number;
  /**
   * A file system mounted detached (fsopen, fsconfig, fsmount), no mount table showing it:
   * `fstype` ("cgroup", "cgroup2", "tracefs"), `options` its comma-separated flags and
   * name=VALUE (a cgroup hierarchy's name as in /proc/PID/cgroup: "cpu,cpuacct",
   * "name=systemd", ""). Returns an fd of its root (close-on-exec), reached through
   * /proc/self/fd/N; the mount is gone once it is closed.
   */
  detachedMount(fstype: string, options: string): number;

  // ---- processes (src/spawn.c, src/reaper.c) ----

  /**
   * Starts argv[0] (PATH-searched) so that it is NOT a child of Node: the bridge
   * posix_spawn()s build/Release/tscriu_reaper (or $TSCRIU_REAPER), which forks once more
   * and exits; the surviving copy is a child subreaper (PR_SET_CHILD_SUBREAPER) that
   * forks+execs the program and reaps it (and orphans of its tree) the moment they die. The
   * program runs in its own session, stdin /dev/null, stdout and stderr to `options.stdout`
   * (truncated; default /dev/null), default signal dispositions, empty signal mask, the
   * environment `options.env` (default: this process's), in `options.cwd`. With
   * `killWithParent` the reaper SIGKILLs the whole tree when this Node process exits (for
   * tests). Returns the program's pid once it has exec'd; a failed chdir/open/exec throws
   * with that step in `syscall` and the path involved.
   */
  spawnDetached(argv: readonly string[], options?: SpawnOptions): number;

  // ---- what a dump needs beyond ptrace and memory (src/dumpsys.c) ----

  /** PTRACE_GET_THREAD_AREA: the 16-byte struct user_desc of GDT entry `index` (12..14 on x86_64). */
  getThreadArea(pid: number, index: number): Buffer;
  /** kcmp(2): 0 when both name the same kernel object, 1 or 2 for an order, 3 when unordered. KCMP_FILE = 0, KCMP_VM = 1, KCMP_FILES = 2, KCMP_FS = 3, KCMP_SIGHAND = 4. */
  kcmp(pid1: number, pid2: number, type: number, idx1: number, idx2: number): number;
  /**
   * kcmp(pid1, pid2, KCMP_EPOLL_TFD, fd, {efd, tfd, toff}): 0 when pid1's `fd` is the file pid2's
   * epoll `efd` watches as its toff-th target numbered `tfd`. Throws EBADF (no such fd) or ENOENT
   * (no such target).
   */
  kcmpEpollTfd(pid1: number, fd: number, pid2: number, efd: number, tfd: number, toff: number): number;
  /**
   * The owner of an open file description into `out` (5 ints): F_GETOWN_EX's type
   * (F_OWNER_TID = 0, F_OWNER_PID = 1, F_OWNER_PGRP = 2) and pid, F_GETSIG's signal,
   * F_GETOWNER_UIDS' uid and euid (the last two unsigned).
   */
  fdOwner(fd: number, out: Int32Array): void;
  /** get_robust_list(2) of thread `pid`. */
  getRobustList(pid: number): { head: bigint; len: number };
  /** clock_gettime(2) in nanoseconds (CLOCK_MONOTONIC = 1, CLOCK_BOOTTIME = 7). */
  clockGettime(clockId: number): bigint;
  /** PTRACE_SECCOMP_GET_FILTER: the BPF program (8-byte sock_filter each) of filter `index` (0 = the oldest), null past the last one. */
  seccompGetFilter(pid: number, index: number): Buffer | null;
  /** A terminal's termios, window size, pty index (-1 if none), session, foreground group and modes. */
  ttyInfo(fd: number): TtyInfo;
  /** Sets locked termios (TIOCSLCKTRMIOS), termios (TCSETS) and window size (TIOCSWINSZ), each when given, in that order. */
  ttySetParams(fd: number, params: TtyParams): void;
  /** Opens ptmx at `path` until the kernel gives pty index `index` (lower free ones held meanwhile); fd -1 when it is taken (`got` came instead). */
  ptmxOpen(path: string, flags: number, index: number): { fd: number; got: number };
  /** TIOCSPTLCK, TIOCPKT and TIOCEXCL/TIOCNXCL, each when given. */
  ttySetModes(fd: number, modes: { locked?: boolean; packetMode?: boolean; exclusive?: boolean }): void;
  /** The bytes queued for reading on a terminal (at most `max`; partial lines too, packet status bytes stripped); flags and termios as before. */
  ttyDrain(fd: number, max: number): Buffer;
  /** Puts bytes into a terminal's read queue with TIOCSTI, echo and input processing off meanwhile; false if TIOCSTI is refused. */
  ttyInject(fd: number, data: Uint8Array): boolean;

  // ---- sockets (src/unix.c, src/sockets.c) ----

  /** Every packet socket of tscriu's network namespace, as sock_diag (packet_diag) reports it. */
  packetDiag(): PacketDiag[];
  /** Every unix socket of tscriu's network namespace, as sock_diag (NETLINK_SOCK_DIAG) reports it. */
  unixDiag(): UnixDiag[];
  /**
   * The receive queue of a socket, message by message, left in place (MSG_PEEK walked by
   * SO_PEEK_OFF, which is put back). Datagrams come whole, a stream in chunks. `fds` are
   * the descriptors a message carries (SCM_RIGHTS), as tscriu's own close-on-exec fds of the
   * same open file descriptions: the caller closes them.
   */
  unixPeekQueue(fd: number): { data: Buffer; fds: number[] }[];
  /** ioctl(SIOCUNIXFILE): an O_PATH fd of the file a unix socket is bound to; ENOENT when there is none. */
  unixSocketFile(fd: number): number;
  /**
   * bind(2) to sun_path `name` as the kernel keeps it (abstract names start with a NUL, path
   * names end with theirs); address length 2 + name.length. A path name is resolved against
   * `base` when given: a relative one from it as cwd, an absolute one with it as root.
   */
  unixBind(fd: number, name: Uint8Array, base?: string | null): void;
  /** connect(2), the address as unixBind takes it. */
  unixConnect(fd: number, name: Uint8Array, base?: string | null): void;
  /** connect(AF_UNSPEC): a datagram socket loses its peer. */
  unixDisconnect(fd: number): void;
  /** socket(domain, type | SOCK_CLOEXEC, protocol). */
  socket(domain: number, type: number, protocol?: number): number;
  /** socketpair(domain, type | SOCK_CLOEXEC, 0). */
  socketpair(domain: number, type: number): [number, number];
  listen(fd: number, backlog: number): void;
  /** shutdown(fd, SHUT_RD = 0 | SHUT_WR = 1 | SHUT_RDWR = 2). */
  shutdown(fd: number, how: number): void;
  /** One sendmsg of the whole buffer (MSG_NOSIGNAL added), passing `fds` (SCM_RIGHTS, at most 253); the bytes the kernel took. */
  send(fd: number, data: Uint8Array, flags?: number | null, fds?: readonly number[] | null): number;
  /**
   * Fills `buf` from a stream socket; the bytes read, fewer only when the peer closed.
   * With `timeoutMs`, each wait for more data may last that long (ETIMEDOUT).
   */
  recvFull(fd: number, buf: Uint8Array, timeoutMs?: number | null): number;
  /** Sends all of `data` on a stream socket (MSG_NOSIGNAL). */
  sendFull(fd: number, data: Uint8Array): void;
  /**
   * `sendFull` on libuv's thread pool: resolves once all of `data` is sent (rejects with
   * the send's error). `data` must not change until then.
   */
  sendFullAsync(fd: number, data: Uint8Array): Promise<void>;
  /** getsockopt(2): the option's bytes, at most `size`. */
  getsockopt(fd: number, level: number, name: number, size: number): Buffer;
  /** setsockopt(2) with the option's bytes. */
  setsockopt(fd: number, level: number, name: number, value: Uint8Array): void;
  /**
   * The classic BPF filter attached to a socket (SO_GET_FILTER), as the kernel's struct
   * sock_filter array (8 bytes each); empty when none. Throws EACCES for an eBPF program
   * (SO_ATTACH_BPF), which has no classic form.
   */
  getSocketFilter(fd: number): Buffer;
  /** SO_ATTACH_FILTER with 1..4096 struct sock_filter instructions; EINVAL when the kernel's checker refuses them. */
  attachSocketFilter(fd: number, insns: Uint8Array): void;
  /**
   * Int options in one call: `spec` holds (level, name) pairs, `out[i]` gets the i-th
   * value. Throws at the first that fails, its syscall naming the level and name.
   */
  getsockoptInts(fd: number, spec: Int32Array, out: Int32Array): void;
  /** Options of any size in one call: `spec` holds (level, name, size) triples; each option's bytes go to the next `size` bytes of `out` (zeros after a shorter answer). */
  getsockoptsInto(fd: number, spec: Int32Array, out: Uint8Array): void;
  /** Int options set in order, `spec` holding (level, name, value) triples; throws at the first that fails. */
  setsockoptInts(fd: number, spec: Int32Array): void;
  /**
   * Int options of many fds in one crossing, on two threads: fd i's are counts[i] (level,
   * name, value) triples of spec, after those of the fds before it, set in order; an fd's
   * first failure stops its own. Each failed fd's error at its index (empty when none).
   */
  setsockoptIntsMany(fds: Int32Array, counts: Int32Array, spec: Int32Array): (Error | undefined)[];

  /**
   * The whole file at `path`, read to its end on libuv's thread pool, read after read
   * without the event loop between them (a /proc file comes a page per read): started
   * before this returns. Rejects naming the path (EFBIG past 256 MiB).
   */
  readWholeAsync(path: string): Promise<Buffer>;
  /**
   * New files written on libuv's thread pool, one after another: file i is made at the
   * i-th of the NUL-terminated `paths` (O_EXCL, mode 0600) and written with the next
   * `lens[i]` bytes of `data` (all copied before this returns). Resolves to the count
   * written; rejects at the first failure naming the syscall and the file, with `index`
   * the count written whole before it (the failed file is not left behind).
   */
  writeNewFiles(paths: Uint8Array, data: Uint8Array, lens: BigUint64Array): Promise<number>;
  /**
   * Small files read whole on libuv's thread pool, one after another: each of the
   * NUL-terminated `paths`, to its end (a /proc file's size says 0, and is not asked).
   * Resolves to their bytes one after another and each one's
   * length, or -errno (-EFBIG: a file past `each` bytes, or past `total` for them all, is
   * not read: the caller reads it itself). Rejects only when it runs out of memory.
   */
  readFilesAsync(paths: Uint8Array, each: number, total: number): Promise<{ data: Buffer; lens: BigInt64Array }>;
  /** syncfs(2): writes out the file system `fd` is on. */
  syncfs(fd: number): void;
  /** syncfs(2) on libuv's thread pool; `fd` must stay open until the promise settles. */
  syncfsAsync(fd: number): Promise<void>;

  // ---- TCP and UDP sockets (src/inet.c) ----

  /**
   * Every socket of `family` and `protocol` in tscriu's network namespace whose state's bit
   * is set in `states`, as sock_diag reports it: a record of 52 bytes each (src/inet.c
   * lays them out; orchestrator/fds/inet-diag.ts reads them).
   */
  inetDiag(family: number, protocol: number, states: number): Buffer;
  /** getsockname(2): the sockaddr's bytes. */
  sockName(fd: number): Buffer;
  /** getpeername(2): the sockaddr's bytes; null when the socket is not connected. */
  peerName(fd: number): Buffer | null;
  /** bind(2) to a sockaddr given as its bytes. */
  bindAddr(fd: number, addr: Uint8Array): void;
  /** connect(2) to a sockaddr given as its bytes. */
  connectAddr(fd: number, addr: Uint8Array): void;
  /** poll(2) of one fd without waiting: its revents (0 when nothing is ready). */
  pollNow(fd: number, events: number): number;
  /** An ioctl that fills an int (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD): the int. */
  ioctlInt(fd: number, request: number): number;
  /**
   * The connections at `fds` of process `pid` read as a dump reads each (tcp_repair.c), on
   * two threads, in one crossing: each fd's copy (pidfd_getfd; a copy whose inode is not
   * inos[i] is closed, its record's first word -1 and no error), its options by `spec`'s
   * (level, name, size) triples, its filter's length, its owner, then the copy put in
   * repair mode and read out (TCP_INFO, the queues' sizes, the MSS, the timestamp,
   * TCP_REPAIR_WINDOW, each queue's first sequence number and bytes, peeked one past its
   * size). Connection i's record is `out` from word i * (26 + the options' bytes / 4):
   * failed (-1) or not (0); the copy in repair mode (-1: none); the filter's instruction
   * count; state, options, window scales' byte, outq, unsent, inq, mss, timestamp, window
   * (5), inqSeq, outqSeq; the receive queue's offset in `data`, its length, the send
   * queue's; the owner as fdOwner reads it (5); the options. A copy in repair mode is kept
   * in its record also when its reading failed (errors[i]): the caller leaves repair mode
   * and closes it.
   */
  tcpRepairSaveMany(pid: number, fds: Int32Array, inos: Float64Array, spec: Int32Array, out: Int32Array): { data: Buffer; errors: (Error | undefined)[] };
  /**
   * A new TCP socket, made ready by the caller (buffers widened, non-blocking, in repair
   * mode), made the connection `conn` between the sockaddrs `src` and `dst` (criu's
   * libsoccr_restore; see tcp_repair.c for the order of calls). Sequence numbers are where
   * each queue starts; `unsent` is how many of outq's last bytes were never sent. An
   * opening connection (SYN_SENT) is connected out of repair mode and gets only its
   * timestamp. Left in repair mode.
   */
  tcpRepairRestore(fd: number, src: Uint8Array, dst: Uint8Array, conn: TcpRepairConn, inq: Uint8Array, outq: Uint8Array): void;
  /**
   * Established connections made as a restore makes each (tcp_repair.c), on two threads, in
   * one crossing. `conns` holds a record of 27 words for each: family; IPV6_V6ONLY (-1: not
   * set); opening, recvSeq, sendSeq, optMask, sndWscale, rcvWscale, mss, timestamp,
   * unsent, whether the window is given, the window (5) as TcpRepairConn has them; the
   * offset and length in `data` of its src and dst sockaddrs, its receive queue and send
   * queue; the index and count of its options in `sets`. `sets` holds 4 words for each
   * option set once the connection is made, in order: level, name, size (0: the value is
   * an int), the value or its bytes' offset in `data` (level -1: fcntl F_SETFL to the
   * value). Each is a new TCP socket, its port shared (SO_REUSEADDR and SO_REUSEPORT
   * on), its buffers forced wide, non-blocking and in repair mode, made the connection as
   * tcpRepairRestore makes one, then given its options; left in repair mode. out[2i] is
   * connection i's fd (-1: none; the caller closes it), out[2i + 1] the index among its
   * options of the one that failed (-1: none did). Returns each failed connection's error
   * at its index (empty when none failed).
   */
  tcpRestoreMany(conns: Int32Array, sets: Int32Array, data: Uint8Array, out: Int32Array): (Error | undefined)[];
  /**
   * nft commands in nft's syntax, run through libnftables (loaded on first use): what they
   * print. Throws code ENFT with nft's message when they fail, ENOENT without the library.
   */
  nftRun(commands: string): string;

  // ---- criu's RPC over SOCK_SEQPACKET (src/rpc.c) ----

  /**
   * The next packet whole (sized with MSG_PEEK|MSG_TRUNC), null at EOF. One longer than
   * `maxLen` is read and dropped, then an EMSGSIZE error with its `size` is thrown.
   * Blocks, or up to `timeoutMs` (ETIMEDOUT from poll).
   */
  seqpacketRecv(fd: number, maxLen: number, timeoutMs?: number | null): Buffer | null;
  /** One packet; `passFd` (>= 0) goes along with SCM_RIGHTS. */
  seqpacketSend(fd: number, data: Uint8Array, passFd?: number | null): number;
  /**
   * One recvmsg of at most `len` bytes (1..65536) that may carry one fd (SCM_RIGHTS, taken
   * CLOEXEC; -1 when none came); empty data at EOF. Blocks, or up to `timeoutMs`.
   */
  recvFd(fd: number, len: number, timeoutMs?: number | null): { data: Buffer; fd: number };
  /** accept4(fd, SOCK_CLOEXEC); blocks, or up to `timeoutMs` (ETIMEDOUT). */
  accept(fd: number, timeoutMs?: number | null): number;
  /** prctl(PR_SET_PDEATHSIG): `sig` when the parent exits (0: nothing); the parent's pid as it is now. */
  parentDeathSignal(sig: number): number;
  /**
   * Whether a process with these credentials (uid, gid and groups; `caps` its effective
   * capability mask) may open `path` for reading: 0, or the errno it would get. Opening
   * /proc/PID/mem follows ptrace's access rule. Run on a thread that takes those
   * credentials (raw syscalls: only that thread) and ends.
   */
  openAs(path: string, creds: { uid: number; gid: number; groups: readonly number[]; caps: bigint }): number;
}

/** A connection as tcpRepairRestore makes it, besides its addresses. */
export interface TcpRepairConn {
  /** 1: still opening (SYN_SENT) */
  opening: 0 | 1;
  /** the first sequence number of each queue */
  recvSeq: number;
  sendSeq: number;
  /** TCPI_OPT_* agreed with the peer, the window scales and the MSS clamp */
  optMask: number;
  sndWscale: number;
  rcvWscale: number;
  mss: number;
  timestamp: number;
  /** outq's last bytes that were never sent */
  unsent: number;
  /** snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup; not set when absent */
  window?: readonly number[];
}

/** A mapped ring of a packet socket (PACKET_RX_RING, PACKET_TX_RING), as packet_diag reports it. */
export interface PacketDiagRing {
  blockSize: number;
  blockNr: number;
  frameSize: number;
  frameNr: number;
  retireTmo: number;
  sizeofPriv: number;
  features: number;
}

/** One packet socket as sock_diag reports it (PACKET_DIAG_INFO's fields flattened). */
export interface PacketDiag {
  ino: number;
  type: number;
  /** the protocol, host byte order */
  num: number;
  ifindex?: number;
  version?: number;
  reserve?: number;
  copyThresh?: number;
  tstamp?: number;
  /** PDI_RUNNING 1, PDI_AUXDATA 2, PDI_ORIGDEV 4, PDI_VNETHDR 8, PDI_LOSS 16 */
  flags?: number;
  mclist: { index: number; type: number; addr: Buffer }[];
  /** id | (type and flags << 16), when in a fanout group */
  fanout?: number;
  rxRing?: PacketDiagRing;
  txRing?: PacketDiagRing;
}

/** One unix socket as sock_diag reports it. */
export interface UnixDiag {
  ino: number;
  /** SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5 */
  type: number;
  /** TCP_ESTABLISHED = 1, TCP_CLOSE = 7, TCP_LISTEN = 10 */
  state: number;
  /** the peer's inode; 0 for none (or a peer with no inode: an embryo, a closed one) */
  peer: number;
  /** sun_path as bound (a path name with its NUL, an abstract one with its leading NUL), null when unbound */
  name: Buffer | null;
  /** the bound file's device (the kernel's internal dev_t) and inode */
  vfsDev: number;
  vfsIno: number;
  /** a listener's connections not yet accepted: the inode of each one's client */
  icons: number[];
  /** bytes queued to read (a datagram socket: the first datagram's length); a listener's pending connections */
  rqlen: number;
  /** bytes sent and not yet read by the peer; a listener's backlog */
  wqlen: number;
  /** RCV_SHUTDOWN = 1, SEND_SHUTDOWN = 2 */
  shutdown: number;
}

export interface Termios {
  iflag: number;
  oflag: number;
  cflag: number;
  lflag: number;
  line: number;
  /** the kernel's NCCS (19) control characters */
  cc: number[];
}

export interface TtyInfo {
  termios: Termios;
  /** TIOCGLCKTRMIOS */
  lockedTermios: Termios;
  rows: number;
  cols: number;
  xpixel: number;
  ypixel: number;
  ptyIndex: number;
  sid: number;
  pgrp: number;
  exclusive: number;
  packetMode: number;
  locked: number;
}

export interface TtyParams {
  termios?: Termios;
  lockedTermios?: Termios;
  winsize?: { rows: number; cols: number; xpixel: number; ypixel: number };
}

/** A decoded waitpid status. Fields that do not apply are 0/false. */
export interface WaitStatus {
  pid: number;
  /** The raw status word. */
  status: number;
  exited: boolean;
  /** WEXITSTATUS when exited. */
  code: number;
  signaled: boolean;
  /** WTERMSIG when signaled. */
  signal: number;
  coreDumped: boolean;
  stopped: boolean;
  /** WSTOPSIG when stopped: SIGTRAP|0x80 for syscall stops under PTRACE_O_TRACESYSGOOD. */
  stopSig: number;
  /** PTRACE_EVENT_* (status >> 16) when stopped: 128 (PTRACE_EVENT_STOP) for interrupt and group stops. */
  event: number;
}

export interface RseqConfiguration {
  rseqAbiPointer: bigint;
  rseqAbiSize: number;
  signature: number;
  flags: number;
}

export interface BatchReadResult {
  bytes: number;
  complete: number;
  stoppedBy?: string;
}

/** struct pm_scan_arg fields (PAGE_IS_* category bits, PM_SCAN_* flags). */
export interface PagemapScanOptions {
  categoryMask?: number | undefined;
  categoryInverted?: number | undefined;
  categoryAnyofMask?: number | undefined;
  returnMask?: number | undefined;
  flags?: number | undefined;
  maxPages?: number | undefined;
}

export interface FdStat {
  type: "file" | "directory" | "fifo" | "socket" | "char" | "block" | "symlink" | "unknown";
  dev: bigint;
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: bigint;
  size: number;
}

export interface SpawnOptions {
  /** "NAME=value" strings. */
  env?: readonly string[] | undefined;
  cwd?: string | undefined;
  /** File for stdout and stderr, created/truncated. */
  stdout?: string | undefined;
  killWithParent?: boolean | undefined;
  /** Open fds of this process the program gets as fds 4, 5, … (at most 64; the reaper keeps no copy). */
  fds?: readonly number[] | undefined;
}

export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  pid?: number;
  path?: string;
}

// ---- restore (src/restore*.c, host-bridge/stub/stub.c) ----
// Declared as a second part of NativeBridge (interfaces merge), so that this block
// stays apart from the rest.

export interface NativeBridge {
  /**
   * Starts the restore stub (build/Release/tscriu_stub, a static program that blocks every
   * signal and pauses) as the task to be restored, with clone3 `set_tid` = `options.pid`
   * (EEXIST when that PID is in use, EINVAL above pid_max). The child resets every signal
   * disposition, sets up its session, enters a new time namespace whose CLOCK_MONOTONIC and
   * CLOCK_BOOTTIME continue from `options.timens` (the dump-time values), closes every fd and
   * execs the stub; this thread waits until it has. Modes: "child" (default) a child of this
   * process; "sibling" a child of this process's parent (CLONE_PARENT); "detached" a child of
   * a new child subreaper (the stub in "reap" mode: `reaper` in the result) that is not ours
   * and reaps the task the moment it dies. Errors name the failing step in `syscall`.
   */
  restoreSpawn(options: RestoreSpawnOptions): { pid: number; reaper: number };
  /**
   * Runs syscalls inside the ptrace-stopped stub `pid` from the trampoline at `trampoline`
   * (which must hold `syscall; int3`): `calls` holds 7 words per call (nr, six arguments).
   * Returns the raw results (-errno on failure), stopping after the first failing call unless
   * `keepGoing`. With `toSyscallExit` (needs PTRACE_O_TRACESYSGOOD) each call is run under
   * PTRACE_SYSCALL, no int3 is reached, and the task is left at the last syscall-exit stop. Nothing
   * of the task's state is saved or put back (the stub's state is disposable). EFAULT when the
   * task stopped anywhere but at the trampoline's trap, ESRCH when it died.
   */
  remoteSyscalls(
    pid: number,
    trampoline: number | bigint,
    calls: BigUint64Array | BigInt64Array,
    options?: { keepGoing?: boolean; toSyscallExit?: boolean },
  ): BigInt64Array;
  /**
   * Copies page data from the file `fd` (a pages-N.img) into task `pid`: `segments` holds
   * (remote address, file offset, length) triples. The file is mapped and process_vm_writev
   * copies from the mapping on `threads` threads (default 2, at most 8); ranges the task may
   * not write go through /proc/PID/mem. Needs no ptrace-stop.
   */
  writePages(pid: number, fd: number, segments: BigUint64Array, threads?: number): { bytes: number; procMemBytes: number };
  /** memfd_create(name, flags) (MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2). */
  memfdCreate(name: string, flags: number): number;
  /**
   * On a userfaultfd (taken from the task with pidfdGetfd): with `register`, the UFFDIO_API
   * handshake and UFFDIO_REGISTER (missing pages) of each (start, length) of `ranges`;
   * without, UFFDIO_UNREGISTER of each. `features` (UFFD_FEATURE_* bits) go with the handshake;
   * `handshake` false registers on a userfaultfd whose handshake was made already.
   */
  uffdRegister(fd: number, ranges: BigUint64Array, register: boolean, features?: bigint | number, handshake?: boolean): void;
  /**
   * UFFDIO_COPY of (address, file offset, length) page-aligned triples from the pages file
   * `pagesFd` (mapped) into the registered ranges, on `threads` threads (default 2). Returns
   * the bytes copied. The task must not run meanwhile.
   */
  uffdCopy(fd: number, pagesFd: number, segments: BigUint64Array, threads?: number): number;

  // ---- the lazy-pages daemon's engine (src/lazy.c) ----

  /**
   * Starts the engine: a thread serving the faults and events of every userfaultfd given
   * to it, and `threads` threads filling local pages in the background. Notes of 24 bytes
   * ({type u32, space u32, image u64, addr u64}, little-endian) go to `noteFd`: 1 a fault
   * on a page whose data is remote (image, its image address), 2 a fork (the new space,
   * addr = the parent space), 3 a space whose task is gone, 4 an error (addr = errno),
   * 5 nothing left to fill.
   */
  lazyStart(noteFd: number, threads: number): void;
  /**
   * The restore has finished (every VMA in place and registered): the fill threads start
   * copying in the background. Until then only faults are served: criu's restore hands a
   * task's userfaultfd over before its VMAs are registered.
   */
  lazyFill(): void;
  /**
   * A task's userfaultfd (the engine owns it from here on) and the pages it lacks:
   * (address, pages, pages-file fd or 2n**64n-1n when the data is remote, file offset)
   * quadruples in address order. Returns the space's id.
   */
  lazyAddSpace(uffd: number, image: number | bigint, views: BigUint64Array): number;
  /** Remote pages of task `image` at image address `imgAddr`, copied wherever still wanted; pages copied. */
  lazySupply(image: number | bigint, imgAddr: bigint, data: Uint8Array): number;
  /** The first run of remote pages of `image` still wanted at image address >= `from` (at most `max` pages). */
  lazyWanted(image: number | bigint, from: bigint, max: number): [bigint, number] | null;
  lazyStatus(): LazyStatus;
  /** Stops the threads, closes every userfaultfd (faults then get zero pages), unmaps the pages files. */
  lazyStop(): void;

  // ---- write-protect snapshot (src/uffd_wp.c) ----

  /**
   * On a userfaultfd of a frozen task (made in it, taken with pidfdGetfd): UFFDIO_API with
   * UFFD_FEATURE_PAGEFAULT_FLAG_WP (sync write-protect), then UFFDIO_REGISTER (MODE_WP) and
   * UFFDIO_WRITEPROTECT of each (start, length) of `ranges`, on libuv's thread pool
   * (resolves when done; rejects naming the ioctl and range). Unregister with
   * uffdRegister(fd, ranges, false), also after a failure.
   */
  uffdWriteProtect(fd: number, ranges: BigUint64Array): Promise<void>;
  /**
   * With the task running again: copies each (addr, length, buffer index, offset) quad of
   * `segments` (page-aligned, in address order) into buffers[index] at offset with
   * process_vm_readv, unprotecting each run once copied; a thread of its own serves the
   * task's write faults meanwhile, copying a faulting page first. Returns the bytes copied
   * and how many pages were copied first because the task wrote them (`early`). The
   * ranges stay registered: unregister them at once afterwards (a write to a protected
   * page outside the segments would wait until then).
   */
  uffdSnapshotCopy(fd: number, pid: number, segments: BigUint64Array, buffers: readonly Buffer[]): { bytes: number; early: number };
  /**
   * With the task running again: writes each (addr, length, file offset) triple of
   * `segments` (page-aligned, in address order) of its memory into the file `out` at that
   * offset, on threads of its own, reading one run while another is written and
   * unprotecting each run once read; a page the task writes first is copied first (held
   * in memory and written at the end, at most `hold` pages of them (16384 and at most
   * that by default): the others are written at once). Resolves to the bytes written and those pages
   * (`early`); rejects naming the syscall and address, or the address the task discarded
   * before it was copied. `out` must stay open until it settles.
   */
  uffdSnapshotStream(fd: number, pid: number, segments: BigUint64Array, out: number, hold?: number): Promise<{ bytes: number; early: number }>;
  /**
   * Armed ahead of the freeze, with the task running: on a userfaultfd of the task, the
   * handshake of uffdWriteProtect, a thread of its own that serves the task's write faults
   * by unprotecting the page (until uffdWpRearm or uffdWpDisarm), then UFFDIO_REGISTER
   * (MODE_WP) and UFFDIO_WRITEPROTECT of each (start, length) of `ranges`, on the thread
   * pool; a range the task unmapped meanwhile is passed over.
   */
  uffdWpArm(fd: number, ranges: BigUint64Array): Promise<void>;
  /**
   * A perf counter on each thread of `tids`, counting the syscalls numbered in `nrs` (1 to
   * 64 numbers, each 0 to 65535) through a raw_syscalls tracepoint (`tracepoint`: the id of
   * sys_enter or sys_exit in tracefs), inherited by the threads and processes each starts; `fds[i]` gets thread i's,
   * or -1 for a thread gone. Throws (having closed those opened) on any other failure.
   */
  syscallWatch(tids: Int32Array, nrs: Int32Array, tracepoint: number, fds: Int32Array): void;
  /** What the counters of `fds` (made by syscallWatch; -1 passed over) counted so far, summed. */
  syscallWatchCount(fds: Int32Array): number;
  /** The counters of `fds` (-1 passed over) closed on the thread pool (the last one's close takes tens of ms). */
  syscallWatchClose(fds: Int32Array): Promise<void>;
  /**
   * The task frozen, on an armed userfaultfd: the armed thread stopped (what it had pending
   * served), each (start, length) of `ranges` registered, and the present pages of them
   * that are not protected (PAGEMAP_SCAN: written since, or in a VMA mapped since)
   * protected. Resolves to how many pages that was; rejects naming the ioctl and range.
   */
  uffdWpRearm(fd: number, pid: number, ranges: BigUint64Array): Promise<number>;
  /** Stops the armed thread of `fd` (its pending faults served first); whether there was one. */
  uffdWpDisarm(fd: number): boolean;

  // ---- write tracking between incremental passes (src/uffd_track.c) ----

  /** On a userfaultfd of the task (taken with pidfdGetfd): UFFDIO_API with UFFD_FEATURE_WP_ASYNC (Linux >= 6.7). */
  uffdTrackStart(fd: number): void;
  /** UFFDIO_REGISTER (MODE_WP) of each (start, length) of `ranges`: an errno per range, 0 where it worked (EBUSY: another userfaultfd has it). */
  uffdTrackRegister(fd: number, ranges: BigUint64Array): Int32Array;
  /** UFFDIO_WRITEPROTECT of each (start, length) of `ranges`: protect (`on`) or unprotect. */
  uffdTrackProtect(fd: number, ranges: BigUint64Array, on: boolean): void;
}

export interface RestoreSpawnOptions {
  /** path of tscriu_stub */
  stub: string;
  /** the PID to take; 0 or absent: any */
  pid?: number;
  mode?: "child" | "sibling" | "detached";
  /** "setsid" (the task led its session), "setpgid" (its own group), "inherit" (ours; shell jobs) */
  session?: "inherit" | "setsid" | "setpgid";
  /** clocks at dump time (timens-0.img), in nanoseconds */
  timens?: { monotonicNs: bigint; boottimeNs: bigint };
}

/** What the lazy-pages engine has done (pages unless said otherwise). */
export interface LazyStatus {
  /** pages not filled yet, every space */
  left: number;
  spaces: number;
  /** faults served (events, not pages) */
  faults: number;
  faultPages: number;
  fillPages: number;
  zeroPages: number;
  /** where the first (up to four) zero pages went */
  zeroAt: (number | bigint)[];
  suppliedPages: number;
  /** fork, mremap, munmap and madvise events */
  events: number;
}
