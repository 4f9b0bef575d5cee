// The one table of image types: crit's name, the magic, the file names criu gives them,
// the entry message and how raw data follows entries. Magics are criu's magic.h, names
// and payload handling crit's (pycriu images.py), file names criu's image-desc.c.
//
// Not listed: raw images without a magic (pages-N.img, ifaddr/route/rule/iptables/nftables
// dumps, tmpfs tarballs, netns-ct/exp), the pre-v1.1 aliases of the PAGEMAP magic
// (pages-N.img, pages-shmem-N.img of old dumps), and KDAT (criu's kerndat cache, not an
// image). Two names that share one magic keep one row under crit's name: SHMEM_PAGEMAP
// is shown as PAGEMAP, PSIGNAL as SIGNAL.
import type { ImageType, Layout } from "./registry-types.js";
import type { MessageDef } from "./schema/dsl.js";
import * as s from "./schema/index.js";

const plain: Layout = { kind: "plain" };

function row(
  name: string,
  magic: number,
  files: readonly string[],
  entry: MessageDef,
  about: string,
  layout: Layout = plain,
): ImageType {
  const head = name === "INVENTORY" ? "none" : name === "STATS" || name === "IRMAP_CACHE" ? "service" : "common";
  return { name, magic, head, files, entry, layout, about };
}

export const IMAGE_TYPES: readonly ImageType[] = [
  row("INVENTORY", 0x58313116, ["inventory.img"], s.inventory_entry, "image version, root task ids, dump-wide flags"),
  row("PSTREE", 0x50273030, ["pstree.img"], s.pstree_entry, "process tree: pid, ppid, pgid, sid, threads"),
  row("FDINFO", 0x56213732, ["fdinfo-%d.img"], s.fdinfo_entry, "fd table of a task: fd number to files.img id"),
  row(
    "PAGEMAP",
    0x56084025,
    ["pagemap-%d.img", "pagemap-shmem-%d.img"],
    s.pagemap_entry,
    "memory map of dumped pages (of a process, or of a shmem/memfd object); data in pages-<pages_id>.img",
    { kind: "pagemap", head: s.pagemap_head },
  ),
  row("CORE", 0x55053847, ["core-%d.img"], s.core_entry, "one thread: registers, signals, task-wide state for the leader"),
  row("IDS", 0x54432030, ["ids-%d.img"], s.task_kobj_ids_entry, "ids of the kernel objects and namespaces of a task"),
  row("VMAS", 0x54123737, ["vmas-%d.img"], s.vma_entry, "VMAs of a task (old images; now inside mm-N.img)"),
  row("PIPES", 0x56513555, ["pipes.img"], s.pipe_entry, "pipe ends (old images; now inside files.img)"),
  row("PIPES_DATA", 0x56453709, ["pipes-data.img"], s.pipe_data_entry, "data queued in pipes", {
    kind: "blob",
    sizeFields: ["bytes"],
  }),
  row("FIFO", 0x58364939, ["fifo.img"], s.fifo_entry, "FIFO ends (old images; now inside files.img)"),
  row("FIFO_DATA", 0x59333054, ["fifo-data.img"], s.pipe_data_entry, "data queued in FIFOs", {
    kind: "blob",
    sizeFields: ["bytes"],
  }),
  row("SIGACT", 0x55344201, ["sigacts-%d.img"], s.sa_entry, "signal actions (old images; now in core tc.sigactions)"),
  row("UNIXSK", 0x54373943, ["unixsk.img"], s.unix_sk_entry, "unix sockets (old images; now inside files.img)"),
  row("INETSK", 0x56443851, ["inetsk.img"], s.inet_sk_entry, "inet sockets (old images; now inside files.img)"),
  row("PACKETSK", 0x60454618, ["packetsk.img"], s.packet_sock_entry, "packet sockets (old images; now inside files.img)"),
  row("ITIMERS", 0x57464056, ["itimers-%d.img"], s.itimer_entry, "interval timers (old images; now in core tc.timers)"),
  row(
    "POSIX_TIMERS",
    0x52603957,
    ["posix-timers-%d.img"],
    s.posix_timer_entry,
    "POSIX timers (old images; now in core tc.timers)",
  ),
  row("SK_QUEUES", 0x56264026, ["sk-queues.img"], s.sk_packet_entry, "packets queued on sockets", {
    kind: "blob",
    sizeFields: ["length"],
  }),
  row("UTSNS", 0x54473203, ["utsns-%d.img"], s.utsns_entry, "UTS namespace: host and domain name"),
  row("CREDS", 0x54023547, ["creds-%d.img"], s.creds_entry, "credentials (old images; now in core thread_core.creds)"),
  row("IPC_VAR", 0x53115007, ["ipcns-var-%d.img"], s.ipc_var_entry, "IPC namespace sysctls"),
  row("IPCNS_SHM", 0x46283044, ["ipcns-shm-%d.img"], s.ipc_shm_entry, "SysV shared memory segments", {
    kind: "ipc-shm",
  }),
  row("IPCNS_MSG", 0x55453737, ["ipcns-msg-%d.img"], s.ipc_msg_entry, "SysV message queues and their messages", {
    kind: "ipc-msg",
    msg: s.ipc_msg,
  }),
  row("IPCNS_SEM", 0x59573019, ["ipcns-sem-%d.img"], s.ipc_sem_entry, "SysV semaphore sets and their values", {
    kind: "ipc-sem",
  }),
  row("REG_FILES", 0x50363636, ["reg-files.img"], s.reg_file_entry, "regular files (old images; now inside files.img)"),
  row("EXT_FILES", 0x59255641, ["ext-files.img"], s.ext_file_entry, "files dumped by plugins (old images)"),
  row("FS", 0x51403912, ["fs-%d.img"], s.fs_entry, "cwd, root and umask of a task"),
  row("MM", 0x57492820, ["mm-%d.img"], s.mm_entry, "address space of a task: mm fields, VMAs, AIO rings"),
  row("REMAP_FPATH", 0x59133954, ["remap-fpath.img"], s.remap_file_path_entry, "files opened under another path"),
  row("GHOST_FILE", 0x52583605, ["ghost-file-%x.img"], s.ghost_file_entry, "contents of an unlinked open file", {
    kind: "ghost",
    chunk: s.ghost_chunk_entry,
  }),
  row("TCP_STREAM", 0x51465506, ["tcp-stream-%x.img"], s.tcp_stream_entry, "TCP connection state and queues", {
    kind: "tcp",
  }),
  row("EVENTFD_FILE", 0x44523722, ["eventfd.img"], s.eventfd_file_entry, "eventfds (old images; now inside files.img)"),
  row(
    "EVENTPOLL_FILE",
    0x45023858,
    ["eventpoll.img"],
    s.eventpoll_file_entry,
    "epoll files (old images; now inside files.img)",
  ),
  row("EVENTPOLL_TFD", 0x44433746, ["eventpoll-tfd.img"], s.eventpoll_tfd_entry, "epoll targets (old images)"),
  row("SIGNALFD", 0x57323820, ["signalfd.img"], s.signalfd_entry, "signalfds (old images; now inside files.img)"),
  row("INOTIFY_FILE", 0x48424431, ["inotify.img"], s.inotify_file_entry, "inotify files (old images)"),
  row("INOTIFY_WD", 0x54562009, ["inotify-wd.img"], s.inotify_wd_entry, "inotify watches (old images)"),
  row("MNTS", 0x55563928, ["mountpoints-%d.img"], s.mnt_entry, "mount points of a mount namespace"),
  row("NETDEV", 0x57373951, ["netdev-%d.img"], s.net_device_entry, "network devices of a net namespace"),
  row("NETNS", 0x55933752, ["netns-%d.img"], s.netns_entry, "net namespace sysctls and peer namespace ids"),
  row("TTY_FILES", 0x59433025, ["tty.img"], s.tty_file_entry, "tty files (old images; now inside files.img)"),
  row("TTY_INFO", 0x59453036, ["tty-info.img"], s.tty_info_entry, "terminals: type, termios, window size, session"),
  row("TTY_DATA", 0x59413026, ["tty-data.img"], s.tty_data_entry, "data queued in terminals"),
  row("FILE_LOCKS", 0x54323616, ["filelocks.img"], s.file_lock_entry, "POSIX, flock and OFD file locks"),
  row("RLIMIT", 0x57113925, ["rlimit-%d.img"], s.rlimit_entry, "resource limits (old images; now in core tc.rlimits)"),
  row("FANOTIFY_FILE", 0x55096122, ["fanotify.img"], s.fanotify_file_entry, "fanotify files (old images)"),
  row("FANOTIFY_MARK", 0x56506035, ["fanotify-mark.img"], s.fanotify_mark_entry, "fanotify marks (old images)"),
  row(
    "SIGNAL",
    0x59255647,
    ["signal-s-%d.img", "signal-p-%d.img"],
    s.siginfo_entry,
    "pending signals, shared and per-thread (old images; now in core; crit has no decoder for it)",
  ),
  row("NETLINK_SK", 0x58005614, ["netlinksk.img"], s.netlink_sk_entry, "netlink sockets (old images)"),
  row("NS_FILES", 0x61394011, ["ns-files.img"], s.ns_file_entry, "open namespace files (old images)"),
  row("TUNFILE", 0x57143751, ["tunfile.img"], s.tunfile_entry, "tun files (old images; now inside files.img)"),
  row("CGROUP", 0x59383330, ["cgroup.img"], s.cgroup_entry, "cgroup sets, controllers and directory trees"),
  row("TIMERFD", 0x50493712, ["timerfd.img"], s.timerfd_entry, "timerfds (old images; now inside files.img)"),
  row("CPUINFO", 0x61404013, ["cpuinfo.img"], s.cpuinfo_entry, "CPU features of the dumping host (--cpu-cap)"),
  row("USERNS", 0x55474906, ["userns-%d.img"], s.userns_entry, "uid/gid maps of a user namespace"),
  row("SECCOMP", 0x64413049, ["seccomp.img"], s.seccomp_entry, "seccomp filters of all tasks"),
  row(
    "BINFMT_MISC",
    0x67343323,
    ["binfmt-misc.img", "binfmt-misc-%d.img"],
    s.binfmt_misc_entry,
    "binfmt_misc handlers",
  ),
  row("AUTOFS", 0x49353943, ["autofs-%d.img"], s.autofs_entry, "autofs mount parameters"),
  row("FILES", 0x56303138, ["files.img"], s.file_entry, "every open file of the dump, tagged by kind"),
  row("MEMFD_INODE", 0x48453499, ["memfd.img"], s.memfd_inode_entry, "memfd and shared anonymous memory objects"),
  row("TIMENS", 0x43114433, ["timens-%d.img"], s.timens_entry, "time namespace offsets"),
  row("PIDNS", 0x61157326, ["pidns-%d.img"], s.pidns_entry, "pid namespaces (external key)"),
  row("BPFMAP_FILE", 0x57506142, ["bpfmap-file.img"], s.bpfmap_file_entry, "BPF map files"),
  row("BPFMAP_DATA", 0x64324033, ["bpfmap-data.img"], s.bpfmap_data_entry, "keys and values of BPF maps", {
    kind: "blob",
    sizeFields: ["keys_bytes", "values_bytes"],
  }),
  row("APPARMOR", 0x59423047, ["apparmor.img"], s.apparmor_entry, "AppArmor namespaces and policies"),
  row("CIPHER", 0x50034653, ["cipher.img"], s.cipher_entry, "encrypted key of an encrypted dump"),
  row("STATS", 0x57093306, ["stats-dump", "stats-restore"], s.stats_entry, "dump or restore statistics"),
  row("IRMAP_CACHE", 0x57004059, ["irmap-cache"], s.irmap_cache_entry, "inode to path cache of pre-dumps"),
];

const byMagic = new Map<number, ImageType>(IMAGE_TYPES.map((t) => [t.magic, t]));
const byName = new Map<string, ImageType>(IMAGE_TYPES.map((t) => [t.name, t]));

export function typeByMagic(magic: number): ImageType | undefined {
  return byMagic.get(magic >>> 0);
}

export function typeByName(name: string): ImageType | undefined {
  return byName.get(name);
}
