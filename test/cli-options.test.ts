// criu's option table (orchestrator/cli/options.ts) against the command line: every criu
// command with every option criu takes there. What tscriu implements parses, and EFFECT
// names the test that checks what it does; what tscriu does not do is refused by name,
// exit 1, before anything is touched: for dump, a running task stays untraced and the
// images dir empty. Config files refuse the same way, naming file and line. The table runs
// in-process (run(), parseCommandLine()): a refusal never loads the dump machinery, so
// hundreds of them take a second.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { BUILT_COMMANDS, CRIU_COMMANDS, CRIU_OPTIONS, type CriuCommand, type CriuOption, notAnOptionOf, support } from "../orchestrator/cli/options.js";
import { type CliIo, commandSpecs, parseCommandLine, run } from "../orchestrator/cli/run.js";
import { VERSION } from "../orchestrator/version.js";
import { tscriu } from "./helpers/cli.js";
import { tempDir } from "./helpers/dump.js";
import { ROOT } from "./helpers/fixtures.js";
import { scratchDir } from "./helpers/tmp.js";
import { counterAdvances, procState, RUNS_ON, startWorkload, type Workload } from "./helpers/workloads.js";

const HOME = scratchDir("tscriu-home-");
const NO_CONF = { HOME, CRIU_CONFIG_FILE: "", TSCRIU_SYSTEM_CONFIG: join(HOME, "none") };
/** The value given to --config: a file that sets -v3, so its effect shows in the parsed options. */
const CONF = join(HOME, "v3.conf");
writeFileSync(CONF, "verbosity 3\n");

/**
 * Where each (command, option) tscriu implements has its effect checked: "file: title".
 * The table test fails when an implemented pair has no entry or the title is not there.
 */
const THIS = "cli-options.test.ts: every criu command with every option criu takes there";
const FRAME_TEST = "cli-options.test.ts: -v, -o and -W work for check, cpuinfo and dedup as for dump";
const CONFIG_TEST = "cli-options.test.ts: --config, CRIU_CONFIG_FILE, ~/.criu/default.conf and --no-default-config set options for every built command";
const DUMP_STATS = "dump-cli.test.ts: dump -R --display-stats -v4 -o LOG";
const DUMP_W = "dump-cli.test.ts: -W puts log and stats in the work dir; action scripts see pre-dump and post-dump";
const RESTORE_STATS = "restore-cli.test.ts: restore -d --pidfile --display-stats -v4 -o";
const RESTORE_W = "restore-cli.test.ts: -W: the log, stats-restore and a relative pid file go into the work dir";
const CHECK = "check.test.ts: check, check --extra, check --all: every feature is there on this machine";
const CPUINFO_CHECK = "cpuinfo.test.ts: an extra instruction bit fails ins and cpu, not fpu";
const CHAIN = "dump-incremental.test.ts: pre-dump, pre-dump, dump --track-mem: a task writing its memory all along restores with every page it last wrote";
const PRE_UNTOUCHED = "dump-incremental.test.ts: pre-dump leaves the task running and untouched";
const RPC_LOG = "rpc-service.test.ts: swrk and service log to -o in -W at -v";
const SERVICE = "rpc-service.test.ts: service -d --address --status-fd --pidfile: pycriu dumps and restores through the socket";
const PS = "page-server.test.ts: dump -R --page-server: the pages go to tscriu's page server, the rest stays; restored from both, every page right";
const PS_CHAIN = "page-server.test.ts: pre-dump, pre-dump, dump over page servers: later passes send what was written; the server's --auto-dedup; restored";
const PS_OPTS = "page-server.test.ts: page-server -d/--daemon --pidfile, --status-fd with -W, --ps-socket for pre-dump and dump; --page-server without a port is refused";
const PS_TLS = "page-server.test.ts: --tls: tscriu to tscriu (dump and pre-dump), and with criu 4.1.1 both ways (a CA made here); a certificate of another CA or for another address is refused";
const LAZY = "lazy-pages.test.ts: restore --lazy-pages: 256 MiB written and given back (MADV_DONTNEED) all along comes in page by page, every page right";
const LAZY_W = "lazy-pages.test.ts: restore --lazy-pages: a tree with zombies and a threaded task, each process with its own userfaultfd; -W: the socket in the work dir";
const LAZY_REMOTE = "lazy-pages.test.ts: post-copy: dump --lazy-pages serves, lazy-pages --page-server fetches (faults first), restore --lazy-pages runs the task at once; 256 MiB with fork, mremap and MADV_DONTNEED";
const LAZY_OPTS = "lazy-pages.test.ts: post-copy over TLS with the daemon in the background: lazy-pages -d --pidfile --status-fd --tls (a CA made here)";
const PS_CRL = "page-server.test.ts: --tls-cacrl: the page server refuses a dump whose certificate the list revokes; dump, pre-dump and the lazy-pages daemon a page server whose certificate it revokes; a list without them changes nothing";
const EFFECT: Record<string, string> = {
  "page-server --tls-cacrl": PS_CRL,
  "dump --tls-cacrl": PS_CRL,
  "pre-dump --tls-cacrl": PS_CRL,
  "lazy-pages --tls-cacrl": PS_CRL,
  "page-server --lazy-pages": "lazy-pages.test.ts: page-server --lazy-pages: a dump on disk served to tscriu's lazy-pages daemon, then to criu 4.1.1's; the task runs on at once, every page right",
  ...Object.fromEntries(["daemon", "restore-detached", "status-fd", "pidfile", "tls", "tls-cacert", "tls-cert", "tls-key", "tls-no-cn-verify"].map((o) => [`lazy-pages --${o}`, LAZY_OPTS])),
  ...Object.fromEntries(["verbosity", "log-file", "images-dir"].map((o) => [`lazy-pages --${o}`, LAZY])),
  "restore --lazy-pages": LAZY,
  "lazy-pages --work-dir": LAZY_W,
  ...Object.fromEntries(["page-server", "address", "port"].map((o) => [`lazy-pages --${o}`, LAZY_REMOTE])),
  ...Object.fromEntries(["verbosity", "log-file", "images-dir", "address"].map((o) => [`page-server --${o}`, PS])),
  ...Object.fromEntries(["port", "ps-socket", "daemon", "restore-detached", "status-fd", "pidfile", "work-dir"].map((o) => [`page-server --${o}`, PS_OPTS])),
  ...Object.fromEntries(["prev-images-dir", "auto-dedup"].map((o) => [`page-server --${o}`, PS_CHAIN])),
  ...Object.fromEntries(["page-server", "address", "port"].map((o) => [`dump --${o}`, PS])),
  ...Object.fromEntries(["page-server", "address", "port"].map((o) => [`pre-dump --${o}`, PS_CHAIN])),
  ...Object.fromEntries(["page-server", "dump", "pre-dump"].flatMap((c) => ["tls", "tls-cacert", "tls-cert", "tls-key", "tls-no-cn-verify"].map((o) => [`${c} --${o}`, PS_TLS]))),
  "dump --ps-socket": PS_OPTS,
  "dump --lazy-pages": "lazy-dump.test.ts: dump --lazy-pages: lazy runs are PE_LAZY without data; every lazy page fetched equals the task's memory at the freeze; the dump exits 0 after the close",
  "dump --status-fd": "lazy-dump.test.ts: dump --lazy-pages --tls: fetched over TLS with a CA made here; --status-fd's byte comes when it listens",
  "pre-dump --ps-socket": PS_OPTS,
  ...Object.fromEntries(["swrk", "service"].flatMap((c) => ["verbosity", "log-file", "work-dir"].map((o) => [`${c} --${o}`, RPC_LOG]))),
  ...Object.fromEntries(["address", "daemon", "restore-detached", "status-fd", "pidfile"].map((o) => [`service --${o}`, SERVICE])),
  "service --spare-workers": "rpc-service.test.ts: --spare-workers 2: a client's second request right after its first meets a second spare, ready and warmed up",
  ...Object.fromEntries(CRIU_COMMANDS.flatMap((c) => [[`${c} --help`, THIS], [`${c} --version`, THIS]])),
  ...Object.fromEntries(BUILT_COMMANDS.flatMap((c) => [[`${c} --config`, CONFIG_TEST], [`${c} --no-default-config`, CONFIG_TEST]])),
  ...Object.fromEntries(["check", "dedup", "cpuinfo dump", "cpuinfo check"].flatMap((c) => ["verbosity", "log-file", "work-dir"].map((o) => [`${c} --${o}`, FRAME_TEST]))),
  "check --verbosity": CHECK,
  "dump --verbosity": DUMP_STATS,
  "dump --log-file": DUMP_STATS,
  "dump --display-stats": DUMP_STATS,
  "dump --images-dir": DUMP_STATS,
  "dump --work-dir": DUMP_W,
  "dump --action-script": DUMP_W,
  "dump --tree": DUMP_STATS,
  "dump --leave-running": DUMP_STATS,
  "dump --leave-stopped": "dump-untouched.test.ts: dump -s leaves the task stopped with its signal state, registers and maps",
  "dump --timeout": "dump-cli.test.ts: --timeout N: a task that cannot stop fails the dump after N s",
  "pre-dump --timeout": "dump-cli.test.ts: --timeout N: a task that cannot stop fails the dump after N s",
  "dump --freeze-cgroup": "dump-freeze-cgroup.test.ts: dump -R --freeze-cgroup leaves the tree and a bystander of the cgroup running untraced",
  "dump --manage-cgroups": "cgroups-options.test.ts: dump --cgroup-root pids:/PARENT walks the pids hierarchy from there; dump --manage-cgroups=ignore names the sets only",
  "restore --manage-cgroups": "cgroups.test.ts: soft (the default): a missing cgroup is made with its properties, an existing one is left as it is",
  "dump --cgroup-root": "cgroups-options.test.ts: dump --cgroup-root pids:/PARENT walks the pids hierarchy from there",
  "restore --cgroup-root": "cgroups-options.test.ts: --cgroup-root pids:/NEW puts the pids cgroup under another name, with its property",
  "dump --cgroup-yard": "cgroups-options.test.ts: --cgroup-yard: dump and restore reach the hierarchies through a directory of mounts named as criu names them",
  "restore --cgroup-yard": "cgroups-options.test.ts: --cgroup-yard: dump and restore reach the hierarchies through a directory of mounts named as criu names them",
  "dump --ghost-limit": "dump-cli.test.ts: errors exit 1 and name step and pid; --ghost-limit is enforced",
  "dump --force-irmap": "restore-irmap.test.ts: a watch found by walking --irmap-scan-path is restored on that path",
  "dump --irmap-scan-path": "restore-irmap.test.ts: the walk finds nothing outside the places it is given",
  "dump --link-remap": "restore-link-remap.test.ts: linked: an unlinked file with another hard link, open and mapped, comes back as the same inode through a link made at dump; without --link-remap the dump is refused",
  "dump --ghost-fiemap": "restore-unlinked.test.ts: holes: --ghost-limit counts data, not apparent size",
  "dump --shell-job": "dump-tty.test.ts: a shell job on a pty: -j dumps its terminal as TTY files with tty-info",
  "dump --skip-in-flight": "restore-inetsk.test.ts: a listener with a connection not yet accepted is refused with criu's hint, the task untouched; --skip-in-flight leaves the connection out",
  "dump --ext-unix-sk": "restore-unixext.test.ts: --ext-unix-sk: a datagram socket connected to a named socket outside (as /dev/log) is dumped with criu's stand-in for its peer and connected to it again",
  "restore --ext-unix-sk": "restore-unixext.test.ts: --ext-unix-sk: a datagram socket connected to a named socket outside (as /dev/log) is dumped with criu's stand-in for its peer and connected to it again",
  "dump --external": "restore-unixext.test.ts: --external unix[INO]: a stream connection to a service outside is dumped, --ext-unix-sk alone refuses it",
  "dump --file-validation": "restore-errors.test.ts: a file whose ELF build-id changed since the dump is refused, as criu does; --file-validation filesize compares sizes only, and a dump with it records no build-id",
  "restore --file-validation": "restore-errors.test.ts: a file whose ELF build-id changed since the dump is refused, as criu does; --file-validation filesize compares sizes only",
  "restore --skip-file-rwx-check": "restore-errors.test.ts: a file whose mode changed since the dump is refused, as criu does; --skip-file-rwx-check lets other permission bits through",
  "dump --file-locks": "restore-locks.test.ts: without --file-locks a task holding a lock is refused, naming the fd and the option, and runs on",
  "restore --file-locks": "restore-locks.test.ts: locks: POSIX ranges, OFD ranges, an exclusive and a shared flock come back with --file-locks",
  "dump --tcp-established": "restore-tcp.test.ts: a client outside the tree keeps its connection: what it sent while the task was gone is answered after the restore, no reset, no EOF",
  "restore --tcp-established": "restore-tcp.test.ts: both ends in the task, data unread each way: dumped with their queues as criu writes them, locked until the restore, read back after it",
  "dump --tcp-close": "restore-tcp.test.ts: --tcp-close: a connection dumped without its state, restored closed; a restore without either option refuses it at plan",
  "restore --tcp-close": "restore-tcp.test.ts: --tcp-close: a connection dumped without its state, restored closed; a restore without either option refuses it at plan",
  "dump --network-lock": "restore-tcp.test.ts: a failed dump (fault after the lock) leaves the connection working and the lock removed; so does -R",
  "dump --cpu-cap": "restore-cli.test.ts: --cpu-cap: a dump with cpuinfo.img restores with --cpu-cap=all and with --cpu-cap",
  "restore --verbosity": RESTORE_STATS,
  "restore --log-file": RESTORE_STATS,
  "restore --pidfile": RESTORE_STATS,
  "restore --display-stats": RESTORE_STATS,
  "restore --images-dir": RESTORE_STATS,
  "restore --restore-detached": RESTORE_STATS,
  "restore --work-dir": RESTORE_W,
  "restore --action-script": "restore-cli.test.ts: --action-script runs pre-restore, post-restore, pre-resume, post-resume",
  "restore --leave-stopped": "restore-cli.test.ts: -s leaves the task stopped",
  "restore --restore-sibling": "restore-cli.test.ts: -S needs -d; -S -d makes the task a child of tscriu's parent",
  "restore --root": "restore-cli.test.ts: -r ROOT: files are opened under ROOT and the task is chrooted there",
  "restore --inherit-fd": "restore-cli.test.ts: --inherit-fd fd[N]:path gives the task tscriu's fd N",
  "restore --shell-job": "restore-real.test.ts: bash on a terminal: a shell job (-j) restored by `tscriu restore -j`",
  "restore --cpu-cap": "restore-cli.test.ts: --cpu-cap: a dump with cpuinfo.img restores with --cpu-cap=all and with --cpu-cap",
  "check --extra": CHECK,
  "check --all": CHECK,
  "check --experimental": CHECK,
  "check --feature": "check.test.ts: --feature NAME checks that one; --feature list names them all",
  "dedup --images-dir": "dedup.test.ts: dedup punches the newest dump's fresh pages out of every ancestor",
  "cpuinfo dump --images-dir": "cpuinfo.test.ts: cpuinfo dump writes criu's cpuinfo.img",
  "cpuinfo check --images-dir": CPUINFO_CHECK,
  "cpuinfo check --cpu-cap": CPUINFO_CHECK,
  "pre-dump --tree": CHAIN,
  "pre-dump --images-dir": CHAIN,
  "pre-dump --display-stats": CHAIN,
  "pre-dump --prev-images-dir": CHAIN,
  "pre-dump --track-mem": CHAIN,
  "dump --prev-images-dir": CHAIN,
  "dump --track-mem": CHAIN,
  "pre-dump --verbosity": PRE_UNTOUCHED,
  "pre-dump --log-file": PRE_UNTOUCHED,
  "pre-dump --work-dir": PRE_UNTOUCHED,
  "pre-dump --pre-dump-mode": PRE_UNTOUCHED,
  "restore --auto-dedup": "dump-incremental.test.ts: restore --auto-dedup punches the restored pages out of the chain's pages files once the task runs",
  "dump --wp-snapshot": "dump-incremental.test.ts: dump -R --wp-snapshot: the task runs on while its pages are copied; the images are those of the frozen instant",
  "dump --auto-dedup": "dump-incremental.test.ts: --auto-dedup punches the parent's replaced pages; dump -R lets the task go before writing, the chain restores",
};

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** run() in this process, with stdout and stderr caught. */
async function cli(argv: string[], env: NodeJS.ProcessEnv = NO_CONF): Promise<Ran> {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    out: async (text) => void (stdout += typeof text === "string" ? text : Buffer.from(text).toString()),
    err: (text) => void (stderr += text),
  };
  const code = await run(argv, { io, env });
  return { code, stdout, stderr };
}

/** The words of a command line that would run the command for real: dump a live task, restore from DIR. */
function base(command: CriuCommand, pid: number, dir: string): string[] {
  const words = command.split(" ");
  if (command === "dump" || command === "pre-dump") return [...words, "-t", String(pid), "-D", dir];
  if (command === "restore" || command === "dedup" || command.startsWith("cpuinfo")) return [...words, "-D", dir];
  if (command === "swrk") return [...words, "3"];
  return words;
}

/** The option as a user types it, by long name or alias, with a value of its kind. */
function given(o: CriuOption, form: "long" | "alias", pid: number, dir: string): string[] {
  if (o.name === "verbosity") return [form === "long" ? "--verbosity=4" : "-v4"];
  const flag = form === "long" ? `--${o.name}` : `-${o.alias!}`;
  if (o.kind === "boolean") return [flag];
  const value = { tree: String(pid), "images-dir": dir, config: CONF }[o.name] ?? (o.kind === "number" ? "7" : "x");
  return [flag, value];
}

const notYetMessage = (c: CriuCommand): string => `tscriu ${c}: not implemented yet in tscriu ${VERSION} (see README: what works)\n`;

/** The task is as it was: running, traced by nobody, counting on, its memory intact. */
async function untouched(t: ExecutionContext, w: Workload, dir: string): Promise<void> {
  t.regex(procState(w.pid) ?? "gone", RUNS_ON);
  t.is(readFileSync(`/proc/${w.pid}/status`, "utf8").match(/^TracerPid:\s+(\d+)/m)?.[1], "0");
  t.deepEqual(readdirSync(dir), [], "the images dir stays empty");
  await counterAdvances(w);
  t.regex(await w.check(), /^PASS/);
}

test("the table: names and aliases are unique, tscriu implements only what criu takes, built commands have handlers", (t) => {
  const names = CRIU_OPTIONS.flatMap((o) => [o.name, ...(o.alias !== undefined ? [o.alias] : [])]);
  t.deepEqual(names.filter((n, i) => names.indexOf(n) !== i), []);
  for (const o of CRIU_OPTIONS) {
    t.true(o.takes.length > 0, o.name);
    for (const c of o.tscriu) t.true(o.takes.includes(c), `${o.name}: tscriu implements it for ${c}, which criu does not take it with`);
  }
  const handled = new Set(commandSpecs().flatMap((s) => (s.handler ? (s.criu ?? []) : [])));
  t.deepEqual([...handled].sort(), [...BUILT_COMMANDS].sort());
  const named = new Set(commandSpecs().flatMap((s) => s.criu ?? []));
  t.deepEqual([...named].sort(), [...CRIU_COMMANDS].sort(), "every criu command is on the command line");
});

test("every criu command with every option criu takes there", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const counts = { implemented: 0, refused: 0, notBuilt: 0, notTaken: 0 };
  for (const command of CRIU_COMMANDS) {
    const built = BUILT_COMMANDS.includes(command);
    const line0 = base(command, w.pid, dir);
    for (const o of CRIU_OPTIONS) {
      const s = support(o, command);
      for (const form of o.alias !== undefined ? (["long", "alias"] as const) : (["long"] as const)) {
        const argv = [...line0, ...given(o, form, w.pid, dir)];
        const what = argv.join(" ");
        if (s === "not-taken") {
          // Another command's option: refused by name as well (only built commands judge options).
          if (!built) continue;
          const r = await cli(argv);
          t.deepEqual([r.code, r.stderr, r.stdout], [1, `tscriu: ${notAnOptionOf(o, command)}\n`, ""], what);
          counts.notTaken++;
        } else if (s === "implemented" && (o.name === "help" || o.name === "version")) {
          const r = await cli(argv);
          t.is(r.code, 0, what);
          t.is(r.stderr, "", what);
          if (o.name === "help") t.true(r.stdout.startsWith(`tscriu ${command.split(" ")[0]!}`), what);
          else t.is(r.stdout, `Version: ${VERSION}\n`, what);
          counts.implemented++;
        } else if (s === "implemented") {
          const p = parseCommandLine(argv, NO_CONF);
          t.is(p.kind, "run", `${what}: ${p.kind === "exit" ? p.stderr : ""}`);
          if (p.kind !== "run") continue;
          if (o.name === "config") t.is(p.args["verbosity"], 3, `${what}: the config file sets -v3`);
          else if (o.name !== "no-default-config") t.not(p.args[o.name], undefined, what);
          counts.implemented++;
        } else {
          const r = await cli(argv);
          const expected = built ? `tscriu: --${o.name} is not supported yet by tscriu ${command}\n` : notYetMessage(command);
          t.deepEqual([r.code, r.stderr, r.stdout], [1, expected, ""], what);
          if (built) counts.refused++;
          else counts.notBuilt++;
        }
      }
    }
  }
  t.log(counts);
  t.true(counts.refused > 0 && counts.implemented > 50, "both kinds were tried");
  await untouched(t, w, dir);
});

test("every option tscriu implements names the test that checks its effect", (t) => {
  const sources = new Map<string, string>();
  for (const o of CRIU_OPTIONS) {
    for (const c of o.tscriu) {
      const key = `${c} --${o.name}`;
      const where = EFFECT[key];
      if (!t.truthy(where, `${key}: which test checks its effect?`)) continue;
      const [file, title] = where.split(/: (.*)/s) as [string, string];
      const path = join(ROOT, "test", file);
      if (!sources.has(path)) sources.set(path, existsSync(path) ? readFileSync(path, "utf8") : "");
      t.true(sources.get(path)!.includes(title), `${key}: no test "${title}" in test/${file}`);
    }
  }
  for (const key of Object.keys(EFFECT)) {
    const [command, name] = key.split(" --") as [CriuCommand, string];
    t.is(support(CRIU_OPTIONS.find((o) => o.name === name)!, command), "implemented", `EFFECT names ${key}, which the table does not implement`);
  }
});

test("an option that is not criu's stays a usage error", async (t) => {
  for (const argv of [["dump", "--no-such-option"], ["dump", "--pretty"], ["restore", "-D", "/tmp", "--out", "x"], ["decode", "--tree", "1"]]) {
    const r = await cli(argv);
    t.is(r.code, 1, argv.join(" "));
    t.regex(r.stderr, /^tscriu: Unknown arguments?: /, argv.join(" "));
    t.is(r.stdout, "");
  }
});

test("a short alias is refused by its long name; several refusals are all named; criu's no- prefix passes; a repeated option's last value wins", async (t) => {
  const r = await cli(["restore", "-D", "/tmp", "-M", "a:b", "-J", "net:1", "--log-pid"]);
  t.is(r.code, 1);
  // in the table's order
  t.is(r.stderr, ["--log-pid", "--join-ns", "--ext-mount-map"].map((n) => `tscriu: ${n} is not supported yet by tscriu restore\n`).join(""));
  const p = parseCommandLine(["dump", "-t", "1", "-D", "/tmp", "--no-lazy-pages", "--no-restore-detached", "--timeout", "5", "--timeout", "1"], NO_CONF);
  t.is(p.kind, "run", p.kind === "exit" ? p.stderr : "");
  // (yargs-parser, the parser before, added a repeated number option's later 1 to it: 6 here)
  if (p.kind === "run") t.is(p.args["timeout"], 1);
});

test("a config file's unsupported option is refused naming file and line, before the task is touched", async (t) => {
  const w = await startWorkload(t, "counter");
  const dir = tempDir(t);
  const home = tempDir(t);
  const env = { HOME: home, CRIU_CONFIG_FILE: "", TSCRIU_SYSTEM_CONFIG: join(home, "none") };
  const conf = join(home, "x.conf");
  writeFileSync(conf, "# mine\nleave-running\nevasive-devices\n");
  const dump = ["dump", "-t", String(w.pid), "-D", dir];
  const r = await cli([...dump, "--config", conf], env);
  t.deepEqual([r.code, r.stderr, r.stdout], [1, `tscriu: ${conf}:3: --evasive-devices is not supported yet by tscriu dump\n`, ""]);
  const short = join(home, "short.conf");
  writeFileSync(short, "R\nM a:b\n");
  t.is((await cli([...dump, "--config", short], env)).stderr, `tscriu: ${short}:2: --ext-mount-map is not supported yet by tscriu dump\n`);
  const viaEnv = await cli(dump, { ...env, CRIU_CONFIG_FILE: conf });
  t.is(viaEnv.stderr, `tscriu: ${conf}:3: --evasive-devices is not supported yet by tscriu dump\n`);
  mkdirSync(join(home, ".criu"));
  const def = join(home, ".criu/default.conf");
  writeFileSync(def, 'work-dir "/tmp"\nevasive-devices\n');
  const viaDefault = await cli(dump, env);
  t.deepEqual([viaDefault.code, viaDefault.stderr], [1, `tscriu: ${def}:2: --evasive-devices is not supported yet by tscriu dump\n`]);
  await untouched(t, w, dir);
});

test("a config file serves every command: options of other commands are left out, crit's verbs keep their own", (t) => {
  const home = tempDir(t);
  const env = { HOME: home, CRIU_CONFIG_FILE: "", TSCRIU_SYSTEM_CONFIG: join(home, "none") };
  mkdirSync(join(home, ".criu"));
  // criu's own example: tcp-established is for dump and restore, not for check.
  writeFileSync(join(home, ".criu/default.conf"), "tcp-established\nrestore-detached\ntree 1\nno-lazy-pages\n");
  const c = parseCommandLine(["check"], env);
  t.is(c.kind, "run", c.kind === "exit" ? c.stderr : "");
  if (c.kind === "run") t.deepEqual([c.args["tcp-established"], c.args["tree"]], [undefined, undefined]);
  writeFileSync(join(home, ".criu/default.conf"), "restore-detached\ntree 1\nno-lazy-pages\nverbosity 4\npretty\n");
  const decode = parseCommandLine(["decode"], env);
  t.is(decode.kind, "run", decode.kind === "exit" ? decode.stderr : "");
  if (decode.kind === "run") t.deepEqual([decode.args["pretty"], decode.args["verbosity"], decode.args["tree"]], [true, 4, undefined]);
  writeFileSync(join(home, ".criu/default.conf"), "restore-detached\nno-lazy-pages\nleave-running\n");
  const dump = parseCommandLine(["dump", "-t", "1"], env);
  t.is(dump.kind, "run", dump.kind === "exit" ? dump.stderr : "");
  if (dump.kind === "run") t.deepEqual([dump.args["restore-detached"], dump.args["lazy-pages"], dump.args["leave-running"]], [undefined, false, true]);
  const restore = parseCommandLine(["restore", "-D", "/tmp"], env);
  t.is(restore.kind, "run", restore.kind === "exit" ? restore.stderr : "");
  if (restore.kind === "run") t.deepEqual([restore.args["restore-detached"], restore.args["leave-running"]], [true, undefined]);
  // What is not criu's is judged by the command: crit's `pretty` is decode's, and unknown to check.
  writeFileSync(join(home, ".criu/default.conf"), "pretty\n");
  const unknown = parseCommandLine(["check"], env);
  t.deepEqual(unknown.kind === "exit" ? [unknown.code, unknown.stderr] : [], [1, 'tscriu: Unknown argument: pretty\nTry "tscriu --help".\n']);
});

test("--config, CRIU_CONFIG_FILE, ~/.criu/default.conf and --no-default-config set options for every built command", (t) => {
  const home = tempDir(t);
  const env = { HOME: home, CRIU_CONFIG_FILE: "", TSCRIU_SYSTEM_CONFIG: join(home, "none") };
  mkdirSync(join(home, ".criu"));
  writeFileSync(join(home, ".criu/default.conf"), "verbosity 4\n");
  const extra = join(home, "env.conf");
  writeFileSync(extra, "verbosity 1\n");
  const verbosity = (argv: string[], e: NodeJS.ProcessEnv): unknown => {
    const p = parseCommandLine(argv, e);
    return p.kind === "run" ? p.args["verbosity"] : p.stderr;
  };
  for (const command of BUILT_COMMANDS) {
    const words = command === "swrk" ? ["swrk", "3"] : command.split(" ");
    t.is(verbosity(words, env), 4, `${command}: ~/.criu/default.conf`);
    t.is(verbosity([...words, "--no-default-config"], env), 2, `${command}: --no-default-config`);
    t.is(verbosity([...words, "--config", CONF], env), 3, `${command}: --config after the defaults`);
    t.is(verbosity(words, { ...env, CRIU_CONFIG_FILE: extra }), 1, `${command}: CRIU_CONFIG_FILE after ~/.criu/default.conf`);
    t.is(verbosity([...words, "--config", CONF, "-v0"], env), 0, `${command}: the command line wins`);
  }
});

test("-v, -o and -W work for check, cpuinfo and dedup as for dump", (t) => {
  const dir = tempDir(t);
  t.is(tscriu(["cpuinfo", "dump", "-D", dir], { env: NO_CONF }).code, 0);
  // cpuinfo dump does not overwrite an image: a new -D for each run
  const fresh = (): string => tempDir(t);
  for (const [argv, line] of [
    [() => ["cpuinfo", "dump", "-D", fresh()], /\(cpuinfo\): wrote .*cpuinfo\.img/],
    [() => ["cpuinfo", "check", "-D", dir], /\(cpuinfo\): .*cpuinfo\.img is compatible with this CPU/],
    [() => ["dedup", "-D", dir], /\(dedup\): dedup: 0 bytes in 0 ranges/],
    [() => ["check", "--feature", "ptrace"], /\(check\): checking ptrace: /],
  ] as const) {
    const what = argv().slice(0, 2).join(" ");
    const work = tempDir(t);
    const r = tscriu([...argv(), "-W", work, "-o", "x.log", "-v4"], { env: NO_CONF });
    t.is(r.code, 0, `${what}: ${r.stderr}`);
    t.regex(readFileSync(join(work, "x.log"), "utf8"), line, what);
    t.false(existsSync(join(dir, "x.log")), `${what}: -W wins over -D`);
    const quiet = tscriu([...argv(), "-W", work, "-o", "q.log", "-v2"], { env: NO_CONF });
    t.is(quiet.code, 0, `${what}: ${quiet.stderr}`);
    t.notRegex(readFileSync(join(work, "q.log"), "utf8"), line, `${what}: -v2 leaves information out`);
  }
});

test("--help lists what tscriu implements for the command, then what it refuses; other commands' options are hidden", async (t) => {
  const dump = await cli(["dump", "--help"]);
  t.is(dump.code, 0);
  const [options, refused] = dump.stdout.split("criu options tscriu does not support yet (refused):") as [string, string];
  t.regex(options, /-t, --tree/);
  t.regex(options, /--ghost-limit/);
  t.regex(refused, /--evasive-devices/);
  t.regex(options, /-x, --ext-unix-sk/);
  t.regex(options, /--lazy-pages/);
  t.regex(options, /--tls-cacrl/);
  t.regex(options, /--link-remap/);
  t.regex(options, /--page-server/);
  t.regex(options, /--prev-images-dir/);
  t.notRegex(dump.stdout, /--restore-detached|--extra\b/);
  const restore = await cli(["restore", "--help"]);
  t.regex(restore.stdout.split("(refused)")[0]!, /-d, --restore-detached/);
  t.notRegex(restore.stdout, /--tree|--ghost-limit/);
  const top = await cli(["--help"]);
  t.regex(top.stdout, /tscriu lazy-pages +fill a lazy restore's memory while its tasks run/);
  t.regex(top.stdout, /tscriu exec +run a syscall in a task \(deprecated in criu\) \(not available yet\)/);
  t.regex(top.stdout, /tscriu page-server +receive a dump's pages over TCP/);
  t.regex(top.stdout, /tscriu pre-dump +pre-dump the memory of a process tree, leaving it running/);
});
