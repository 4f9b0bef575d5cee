// criu's options, one row each: the name, the one-letter alias, the kind of value, the
// commands criu takes it with, and the commands tscriu implements it for. The CLI
// (the parsed options, --help, the refusal of what tscriu does not do yet), the config
// file reader and the RPC's criu_opts check all read this one table.
//
// `takes` follows criu(8): the common options go with every command, the others with
// the command whose section lists them. Where criu honours an option the manual does not
// list there, or an option of criu 4.x the manual predates, the row says so in a comment.
// `tscriu` lists a command only when the option changes what tscriu does there and a test
// checks that effect (test/cli-options.test.ts maps each pair to its test).

export const CRIU_COMMANDS = [
  "dump",
  "pre-dump",
  "restore",
  "check",
  "page-server",
  "lazy-pages",
  "service",
  "swrk",
  "dedup",
  "cpuinfo dump",
  "cpuinfo check",
  "exec",
] as const;
export type CriuCommand = (typeof CRIU_COMMANDS)[number];

/** The criu commands tscriu runs; the others say "not implemented yet" whatever the options. */
export const BUILT_COMMANDS: readonly CriuCommand[] = ["dump", "pre-dump", "restore", "check", "page-server", "lazy-pages", "dedup", "cpuinfo dump", "cpuinfo check", "swrk", "service"];

export type OptionKind = "boolean" | "string" | "number" | "array";

export interface CriuOption {
  /** the long name, without "--" */
  name: string;
  /** the one-letter alias, without "-" */
  alias?: string;
  kind: OptionKind;
  /** the value may be left out (`--cpu-cap`, `--manage-cgroups`): it reads as "" then */
  optionalValue?: true;
  describe: string;
  /** the commands criu takes it with */
  takes: readonly CriuCommand[];
  /** the commands tscriu implements it for (a subset of `takes`) */
  tscriu: readonly CriuCommand[];
  /** the field of criu's RPC criu_opts that asks for it (rpc/opts.ts judges them by this row) */
  rpc?: string;
}

const ALL = CRIU_COMMANDS;
const BUILT = BUILT_COMMANDS;
/** Where a page server's address goes: the page server itself and its clients. */
const PAGE_SERVER_PEERS: readonly CriuCommand[] = ["page-server", "dump", "pre-dump", "lazy-pages"];

export const CRIU_OPTIONS: readonly CriuOption[] = [
  // Common options: criu(8) applies them to every command.
  { name: "verbosity", rpc: "log_level", alias: "v", kind: "number", describe: "log level 0..4 (-v0 … -v4; -v, -vv … raise it by one each)", takes: ALL, tscriu: BUILT },
  { name: "config", rpc: "config_file", kind: "string", describe: "read options from this config file too", takes: ALL, tscriu: BUILT },
  { name: "no-default-config", kind: "boolean", describe: "skip /etc/criu/default.conf and ~/.criu/default.conf", takes: ALL, tscriu: BUILT },
  { name: "pidfile", kind: "string", describe: "write the pid of the restored root task (or of a daemon) to this file", takes: ALL, tscriu: ["restore", "service", "page-server", "lazy-pages"] },
  { name: "log-file", rpc: "log_file", alias: "o", kind: "string", describe: "log to this file (a relative name goes into -W, else -D)", takes: ALL, tscriu: BUILT },
  { name: "display-stats", rpc: "display_stats", kind: "boolean", describe: "print the statistics of the dump or restore at the end", takes: ALL, tscriu: ["dump", "pre-dump", "restore"] },
  { name: "images-dir", rpc: "images_dir", alias: "D", kind: "string", describe: "the directory of image files", takes: ALL, tscriu: ["dump", "pre-dump", "restore", "page-server", "lazy-pages", "dedup", "cpuinfo dump", "cpuinfo check"] },
  { name: "stream", kind: "boolean", describe: "read or write the images through criu-image-streamer", takes: ALL, tscriu: [] },
  { name: "prev-images-dir", rpc: "parent_img", kind: "string", describe: "the previous dump's directory (relative to -D), for an incremental dump", takes: ALL, tscriu: ["dump", "pre-dump", "page-server"] },
  { name: "work-dir", rpc: "work_dir_fd", alias: "W", kind: "string", describe: "where logs, pid files and statistics go (default: -D)", takes: ALL, tscriu: BUILT },
  { name: "close", kind: "number", describe: "close this file descriptor before anything else", takes: ALL, tscriu: [] },
  { name: "libdir", alias: "L", kind: "string", describe: "the plugins directory", takes: ALL, tscriu: [] },
  { name: "enable-fs", rpc: "enable_fs", kind: "string", describe: "file systems (comma-separated, or all) whose mounts are detected automatically", takes: ALL, tscriu: [] },
  { name: "action-script", kind: "array", describe: "run this script at each stage; $CRTOOLS_SCRIPT_ACTION names the stage", takes: ALL, tscriu: ["dump", "restore"] },
  { name: "version", alias: "V", kind: "boolean", describe: "print the version and exit", takes: ALL, tscriu: ALL },
  { name: "help", alias: "h", kind: "boolean", describe: "print help and exit", takes: ALL, tscriu: ALL },

  // pre-dump. criu's dump takes --track-mem too (the first dump of an iterative migration).
  // tscriu tracks writes with userfaultfd (write-tracking.ts) where the kernel allows it,
  // and compares pages with the parent's where it does not: any dump can be a parent.
  { name: "track-mem", rpc: "track_mem", kind: "boolean", describe: "track the task's writes after this dump, for the next one (with -R; pre-dump always does)", takes: ["pre-dump", "dump"], tscriu: ["pre-dump", "dump"] },
  // tscriu always reads with process_vm_readv (criu's "read"); the mode is recorded in the inventory.
  { name: "pre-dump-mode", rpc: "pre_dump_mode", kind: "string", describe: "how pre-dump reads memory: splice or read (tscriu reads either way)", takes: ["pre-dump"], tscriu: ["pre-dump"] },

  // dump. criu's exec takes -t as well (the task to run the syscall in).
  { name: "tree", rpc: "pid", alias: "t", kind: "number", describe: "pid of the root of the process tree", takes: ["dump", "pre-dump", "exec"], tscriu: ["dump", "pre-dump"] },
  { name: "leave-running", rpc: "leave_running", alias: "R", kind: "boolean", describe: "let the tasks run on after the dump", takes: ["dump"], tscriu: ["dump"] },
  { name: "leave-stopped", rpc: "leave_stopped", alias: "s", kind: "boolean", describe: "leave the tasks stopped after the dump or restore", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "external", rpc: "external", kind: "array", describe: "an external resource: type[id]:value (mnt, dev, file, tty, unix, net, pid, veth, macvlan; tscriu: unix[INODE] at dump)", takes: ["dump", "restore"], tscriu: ["dump"] },
  { name: "freeze-cgroup", rpc: "freeze_cgroup", kind: "string", describe: "freeze the tasks through this freezer cgroup", takes: ["dump"], tscriu: ["dump"] },
  { name: "manage-cgroups", rpc: "manage_cgroups_mode", kind: "string", optionalValue: true, describe: "dump or restore the tasks' cgroups (restore mode: none, props, soft, full, strict, ignore)", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "cgroup-props", rpc: "cgroup_props", kind: "string", describe: "controllers and properties to dump, as YAML", takes: ["dump"], tscriu: [] },
  { name: "cgroup-props-file", rpc: "cgroup_props_file", kind: "string", describe: "the same, read from a file", takes: ["dump"], tscriu: [] },
  { name: "cgroup-dump-controller", rpc: "cgroup_dump_controller", kind: "array", describe: "dump only this controller", takes: ["dump"], tscriu: [] },
  { name: "cgroup-yard", rpc: "cgroup_yard", kind: "string", describe: "a directory of cgroup mounts made beforehand", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "cgroup-root", rpc: "cg_root", kind: "array", describe: "[controller:]/newroot: another root for a controller", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "tcp-established", rpc: "tcp_established", kind: "boolean", describe: "dump or restore established TCP connections", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "tcp-close", rpc: "tcp_close", kind: "boolean", describe: "leave established TCP connections out (dump), restore them closed (restore)", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "skip-in-flight", rpc: "tcp_skip_in_flight", kind: "boolean", describe: "leave out TCP connections not yet established", takes: ["dump"], tscriu: ["dump"] },
  { name: "evasive-devices", rpc: "evasive_devices", kind: "boolean", describe: "use any path to a device file when the original one is gone", takes: ["dump"], tscriu: [] },
  // criu's lazy-pages daemon fetches from a remote page server with --page-server too.
  { name: "page-server", rpc: "ps", kind: "boolean", describe: "send pages to (or fetch them from) a page server at --address:--port", takes: ["dump", "pre-dump", "lazy-pages"], tscriu: ["dump", "pre-dump", "lazy-pages"] },
  { name: "force-irmap", rpc: "force_irmap", kind: "boolean", describe: "find the path of a watched inode whose file handle does not open by walking directories (criu's irmap)", takes: ["dump"], tscriu: ["dump"] },
  // criu's pre-dump fills its irmap cache with them; tscriu's pre-dump walks nothing
  { name: "irmap-scan-path", rpc: "irmap_scan_paths", kind: "array", describe: "a directory walked first for the path of a watched inode (--force-irmap)", takes: ["dump", "pre-dump"], tscriu: ["dump"] },
  // criu's page server punches its parent's pages with --auto-dedup too (the manual lists it for dump and restore).
  { name: "auto-dedup", rpc: "auto_dedup", kind: "boolean", describe: "punch the parent's pages this dump replaces (dump, page-server); punch each page once restored (restore)", takes: ["dump", "restore", "page-server"], tscriu: ["dump", "restore", "page-server"] },
  { name: "file-locks", rpc: "file_locks", alias: "l", kind: "boolean", describe: "dump or restore file locks", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "link-remap", rpc: "link_remap", kind: "boolean", describe: "give an unlinked file that has other hard links a temporary link (link_remap.N) next to its old name for the restore", takes: ["dump"], tscriu: ["dump"] },
  // criu freezes with it for pre-dump too (zdtm gives it to both)
  { name: "timeout", rpc: "timeout", kind: "number", describe: "seconds to wait for the tasks to freeze (default 10)", takes: ["dump", "pre-dump"], tscriu: ["dump", "pre-dump"] },
  { name: "ghost-limit", rpc: "ghost_limit", kind: "string", describe: "most data of one deleted file to carry in the images (K, M, G suffixes; default 1M; holes not counted)", takes: ["dump"], tscriu: ["dump"] },
  // criu 4.x: copy only the data of a sparse ghost file (FIEMAP). tscriu always copies only
  // the data (SEEK_DATA/SEEK_HOLE) and counts only the data against --ghost-limit.
  { name: "ghost-fiemap", kind: "boolean", describe: "copy only the data of sparse deleted files (tscriu always does)", takes: ["dump", "pre-dump"], tscriu: ["dump"] },
  { name: "shell-job", rpc: "shell_job", alias: "j", kind: "boolean", describe: "a shell job: a tty, and the session and group of tscriu itself on restore", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  // criu's cpuinfo check reads --cpu-cap too.
  { name: "cpu-cap", rpc: "cpu_cap", kind: "string", optionalValue: true, describe: "CPU capabilities to write or check: fpu, cpu, ins, all, none, ^item", takes: ["dump", "restore", "cpuinfo check"], tscriu: ["dump", "restore", "cpuinfo check"] },
  // dump --lazy-pages listens on --address/--port (or --ps-socket) for the daemon once the dump is done;
  // page-server --lazy-pages serves the lazy pages of the dump in -D to the daemon.
  { name: "lazy-pages", rpc: "lazy_pages", kind: "boolean", describe: "leave memory to a lazy-pages daemon (post-copy migration)", takes: ["dump", "restore", "page-server"], tscriu: ["dump", "restore", "page-server"] },
  { name: "file-validation", kind: "string", describe: "how to check that a file is the one dumped: filesize, or buildid (also its ELF build-id; the default)", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "network-lock", rpc: "network_lock", kind: "string", optionalValue: true, describe: "how to lock the network between dump and restore: iptables, nftables or skip", takes: ["dump"], tscriu: ["dump"] },

  // restore
  { name: "inherit-fd", rpc: "inherit_fd", kind: "array", describe: "fd[N]:resource: give the task tscriu's fd N in place of resource", takes: ["restore"], tscriu: ["restore"] },
  // criu reads -d as one getopt letter: detached for restore, the daemon for service and page-server.
  { name: "restore-detached", alias: "d", kind: "boolean", describe: "leave the restored tasks once they run (service, page-server, lazy-pages: run in the background)", takes: ["restore", "service", "page-server", "lazy-pages"], tscriu: ["restore", "service", "page-server", "lazy-pages"] },
  { name: "restore-sibling", rpc: "rst_sibling", alias: "S", kind: "boolean", describe: "restore the root task as a sibling of tscriu (with -d)", takes: ["restore"], tscriu: ["restore"] },
  { name: "log-pid", kind: "boolean", describe: "one log file per pid", takes: ["restore"], tscriu: [] },
  { name: "root", rpc: "root", alias: "r", kind: "string", describe: "the root directory to restore into", takes: ["restore"], tscriu: ["restore"] },
  { name: "join-ns", rpc: "join_ns", alias: "J", kind: "array", describe: "NS:{PID|NS_FILE}[,extra]: restore into an existing namespace", takes: ["restore"], tscriu: [] },
  { name: "veth-pair", rpc: "veths", kind: "array", describe: "IN=OUT: outside name of a veth device", takes: ["restore"], tscriu: [] },
  { name: "lsm-profile", rpc: "lsm_profile", kind: "string", describe: "type:name: the AppArmor or SELinux profile to restore with", takes: ["restore"], tscriu: [] },
  { name: "lsm-mount-context", rpc: "lsm_mount_context", kind: "string", describe: "a new SELinux context= for mounts that had one", takes: ["restore"], tscriu: [] },
  { name: "skip-file-rwx-check", rpc: "skip_file_rwx_check", kind: "boolean", describe: "restore files whose permission bits changed since the dump", takes: ["restore"], tscriu: ["restore"] },
  { name: "weak-sysctls", rpc: "weak_sysctls", kind: "boolean", describe: "skip the sysctls this kernel lacks", takes: ["restore"], tscriu: [] },

  // check
  { name: "extra", kind: "boolean", describe: "check the features only some tasks need too (category 2)", takes: ["check"], tscriu: ["check"] },
  { name: "experimental", kind: "boolean", describe: "check experimental features too (category 3)", takes: ["check"], tscriu: ["check"] },
  { name: "all", kind: "boolean", describe: "check categories 1, 2 and 3", takes: ["check"], tscriu: ["check"] },
  { name: "feature", kind: "string", describe: "check this one feature; `list` names them", takes: ["check"], tscriu: ["check"] },

  // page-server; its address, port and TLS options serve its clients (dump, pre-dump, lazy-pages) too.
  // criu's service takes --address (its socket's path), -d and --status-fd as well; criu's
  // dump --lazy-pages writes --status-fd's byte when it listens for the lazy-pages daemon.
  { name: "daemon", kind: "boolean", describe: "run in the background", takes: ["page-server", "service", "lazy-pages"], tscriu: ["service", "page-server", "lazy-pages"] },
  { name: "status-fd", rpc: "status_fd", kind: "number", describe: "write \\0 to this fd once ready", takes: ["page-server", "service", "dump", "lazy-pages"], tscriu: ["service", "page-server", "dump", "lazy-pages"] },
  { name: "address", kind: "string", describe: "the page server's address (the service's socket path)", takes: [...PAGE_SERVER_PEERS, "service"], tscriu: ["service", "page-server", "dump", "pre-dump", "lazy-pages"] },
  { name: "spare-workers", kind: "number", describe: "workers the service keeps started and warmed up for the next clients (1-4, default 2; tscriu's own)", takes: ["service"], tscriu: ["service"] },
  { name: "port", kind: "number", describe: "the page server's port", takes: PAGE_SERVER_PEERS, tscriu: ["page-server", "dump", "pre-dump", "lazy-pages"] },
  // criu's dump talks to its page server over --ps-socket too (the manual lists it for page-server).
  { name: "ps-socket", kind: "number", describe: "an fd already connected to the page server's peer", takes: ["page-server", "dump", "pre-dump"], tscriu: ["page-server", "dump", "pre-dump"] },
  { name: "tls", rpc: "tls", kind: "boolean", describe: "talk to the page server over TLS", takes: PAGE_SERVER_PEERS, tscriu: ["page-server", "dump", "pre-dump", "lazy-pages"] },
  { name: "tls-cacert", rpc: "tls_cacert", kind: "string", describe: "the CA certificate (PEM) to verify the peer with", takes: PAGE_SERVER_PEERS, tscriu: ["page-server", "dump", "pre-dump", "lazy-pages"] },
  { name: "tls-cacrl", rpc: "tls_cacrl", kind: "string", describe: "the certificate revocation list (PEM)", takes: PAGE_SERVER_PEERS, tscriu: ["page-server", "dump", "pre-dump", "lazy-pages"] },
  { name: "tls-cert", rpc: "tls_cert", kind: "string", describe: "the certificate (PEM) to present", takes: PAGE_SERVER_PEERS, tscriu: ["page-server", "dump", "pre-dump", "lazy-pages"] },
  { name: "tls-key", rpc: "tls_key", kind: "string", describe: "the private key (PEM) of --tls-cert", takes: PAGE_SERVER_PEERS, tscriu: ["page-server", "dump", "pre-dump", "lazy-pages"] },
  { name: "tls-no-cn-verify", rpc: "tls_no_cn_verify", kind: "boolean", describe: "do not check that the peer's certificate names the page server's address", takes: PAGE_SERVER_PEERS, tscriu: ["page-server", "dump", "pre-dump", "lazy-pages"] },

  // criu 4.x options that the criu(8) page of 3.17 does not list.
  { name: "ext-unix-sk", rpc: "ext_unix_sk", alias: "x", kind: "string", optionalValue: true, describe: "[=INODE,...] allow datagram unix sockets connected to named sockets outside the tree (and the sockets of these inodes, of any kind)", takes: ["dump", "restore"], tscriu: ["dump", "restore"] },
  { name: "skip-mnt", rpc: "skip_mnt", kind: "array", describe: "leave this mount point out of the dump", takes: ["dump"], tscriu: [] },
  { name: "ext-mount-map", rpc: "ext_mnt", alias: "M", kind: "array", describe: "KEY:VALUE for an external mount (older form of --external mnt[])", takes: ["dump", "restore"], tscriu: [] },
  { name: "empty-ns", rpc: "empty_ns", kind: "string", describe: "dump a namespace empty and let an action script fill it (net)", takes: ["dump", "restore"], tscriu: [] },
  { name: "unprivileged", rpc: "unprivileged", kind: "boolean", describe: "work with CAP_CHECKPOINT_RESTORE instead of root", takes: ["dump", "restore", "check"], tscriu: [] },
  { name: "mntns-compat-mode", rpc: "mntns_compat_mode", kind: "boolean", describe: "restore mount namespaces the old way", takes: ["restore"], tscriu: [] },

  // tscriu's own: criu has no such option (orchestrator/dump/wpsnap.ts).
  { name: "wp-snapshot", kind: "boolean", describe: "write-protect the task's anonymous memory and copy it while the task runs, then kill it once its images are on disk (with -R: it runs on) (tscriu's own)", takes: ["dump"], tscriu: ["dump"] },
];

const byName = new Map<string, CriuOption>();
for (const o of CRIU_OPTIONS) {
  byName.set(o.name, o);
  if (o.alias !== undefined) byName.set(o.alias, o);
}

const byRpc = new Map<string, CriuOption>();
for (const o of CRIU_OPTIONS) if (o.rpc !== undefined) byRpc.set(o.rpc, o);

/** The row whose criu_opts field is `field` ("leave_running"). */
export function criuOptionByRpc(field: string): CriuOption | undefined {
  return byRpc.get(field);
}

/** The row of a long name or a one-letter alias ("lazy-pages", "t"). */
export function criuOption(name: string): CriuOption | undefined {
  return byName.get(name);
}

/**
 * What tscriu does with an option given to a command: runs with it, refuses it as not
 * supported yet (criu takes it there), or refuses it as not an option of that command.
 */
export type Support = "implemented" | "not-yet" | "not-taken";

export function support(o: CriuOption, command: CriuCommand): Support {
  if (o.tscriu.includes(command)) return "implemented";
  return o.takes.includes(command) ? "not-yet" : "not-taken";
}

/** The refusal of an option tscriu does not implement for a command criu takes it with. */
export function notSupportedYet(o: CriuOption, command: CriuCommand): string {
  return `--${o.name} is not supported yet by tscriu ${command}`;
}

/** The refusal of a criu option that belongs to other commands. */
export function notAnOptionOf(o: CriuOption, command: CriuCommand): string {
  return `--${o.name} is not an option of tscriu ${command} (criu takes it with ${o.takes.join(", ")})`;
}
