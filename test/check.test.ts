// tscriu check: every feature probed for real on a throwaway stub; criu's verdicts and exit
// codes; --feature NAME and --feature list; a missing feature, made missing by dropping
// capabilities or by TSCRIU_FAULT=check:NAME; only root may check; no stub left behind.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import test from "ava";
import { bridge } from "../host-bridge/load.js";
import { FEATURES } from "../orchestrator/check.js";
import { CLI, tscriu } from "./helpers/cli.js";
import { scratchDir } from "./helpers/tmp.js";

const NO_CONF = { HOME: scratchDir("tscriu-home-"), CRIU_CONFIG_FILE: "" };
const MAYBE = "Looks good but some kernel features are missing\nwhich, depending on your process tree, may cause\ndump or restore failure.\n";

/** The stubs a check run says (-v4) it started that are still there as stubs. */
function strayStubs(stderr: string): number[] {
  const pids = [...stderr.matchAll(/\(check\): stub (\d+) started/g)].map((m) => Number(m[1]));
  return pids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "tscriu_stub";
    } catch {
      return false;
    }
  });
}

test.serial("check, check --extra, check --all: every feature is there on this machine", (t) => {
  for (const args of [[], ["--extra"], ["--all"], ["--experimental"]]) {
    const r = tscriu(["check", ...args], { env: NO_CONF });
    t.is(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    t.is(r.stdout, "Looks good.\n");
  }
  const v = tscriu(["check", "--all", "-v4"], { env: NO_CONF });
  for (const f of FEATURES) t.true(v.stderr.includes(`(check): checking ${f.name}: `), f.name);
  t.true(v.stderr.match(/stub \d+ started/g)!.length >= 3, "a probe stub, and two more for clone3_set_tid and timens");
  t.deepEqual(strayStubs(v.stderr), [], "no stub left running");
});

test.serial("--feature NAME checks that one; --feature list names them all in criu's layout", (t) => {
  for (const f of FEATURES) {
    const r = tscriu(["check", "--feature", f.name], { env: NO_CONF });
    t.is(r.code, 0, `${f.name}: ${r.stderr}`);
    t.is(r.stdout, `${f.name} is supported\n`);
  }
  const list = tscriu(["check", "--feature", "list"], { env: NO_CONF });
  t.is(list.code, 0);
  t.deepEqual(list.stdout.replace(/\n/g, " ").trim().split(/,\s*/), FEATURES.map((f) => f.name));
  for (const line of list.stdout.trimEnd().split("\n")) t.true(line.length <= 80, line);
  const bad = tscriu(["check", "--feature", "nope"], { env: NO_CONF });
  t.is(bad.code, 1);
  t.regex(bad.stderr, /unknown feature nope/);
});

test.serial("criu's feature names zdtm asks about: answered for tscriu, as zdtm asks them (-verbosity=0 is criu's -v with a value atoi reads as 0)", (t) => {
  for (const name of ["mnt_id", "ns_pid", "loginuid", "net_diag_raw", "fdinfo_lock", "kcmp_epoll", "seccomp_suspend", "timerfd", "tcp_half_closed", "network_lock_nftables", "ipv6_freebind", "mem_dirty_track", "memfd_hugetlb", "uffd-noncoop"]) {
    const r = tscriu(["check", "--no-default-config", "-verbosity=0", "--feature", name], { env: NO_CONF });
    t.is(r.code, 0, `${name}: ${r.stderr}`);
    t.is(r.stdout, `${name} is supported\n`);
  }
  for (const name of ["userns", "aio_remap"]) {
    const r = tscriu(["check", "--feature", name], { env: NO_CONF });
    t.is(r.code, 1, name);
    t.regex(r.stderr, new RegExp(`${name} is not supported: tscriu does not`));
  }
  t.false(tscriu(["check", "--feature", "list"], { env: NO_CONF }).stdout.includes("mnt_id"), "criu's names are not tscriu's list");
  // the nftables probe's table is gone again
  t.notRegex(bridge().nftRun("list tables"), /tscriu-check/);
  // only the "-verbosity=N" shape: a group of letters after -v stays an error (not -v0 with -R lost)
  const group = tscriu(["dump", "-vR", "-t", "1", "-D", "/nonexistent"], { env: NO_CONF });
  t.is(group.code, 1);
  t.regex(group.stderr, /--verbosity takes a number, not "R"/);
});

test.serial("a missing category 1 feature: 'Does not look good.', exit 1, and the check stops there", (t) => {
  // Without CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE, clone3 may not pick the PID.
  const r = spawnSync("setpriv", ["--bounding-set", "-sys_admin,-checkpoint_restore", process.execPath, CLI, "check", "--all", "-v4"], { env: { ...process.env, ...NO_CONF }, encoding: "utf8" });
  t.is(r.status, 1);
  t.is(r.stdout, "");
  t.regex(r.stderr, /Error \(check\): clone3_set_tid is not supported: restoreSpawn: clone3 \(set_tid \d+\): EPERM \(tscriu uses it for restoring a task with its PID/);
  t.regex(r.stderr, /Warn {2}\(check\): Does not look good\.\n$/);
  t.false(r.stderr.includes("checking timens"), "nothing after the first missing category 1 feature");
  t.deepEqual(strayStubs(r.stderr), []);
  const f = tscriu(["check", "-v4"], { env: { ...NO_CONF, TSCRIU_FAULT: "check:kcmp" } });
  t.is(f.code, 1);
  t.regex(f.stderr, /kcmp is not supported: fault injected by TSCRIU_FAULT=check:kcmp/);
  t.deepEqual(strayStubs(f.stderr), []);
});

test.serial("a missing category 2 feature: 'Looks good but …', exit 1; without --extra it is not checked", (t) => {
  const env = { ...NO_CONF, TSCRIU_FAULT: "check:uffd,check:memfd" };
  const r = tscriu(["check", "--extra"], { env });
  t.is(r.code, 1);
  t.is(r.stdout, MAYBE);
  t.regex(r.stderr, /uffd is not supported: fault injected/);
  t.regex(r.stderr, /memfd is not supported: fault injected/, "category 2 goes on after a missing feature");
  const plain = tscriu(["check"], { env });
  t.is(plain.code, 0);
  t.is(plain.stdout, "Looks good.\n");
  const one = tscriu(["check", "--feature", "uffd"], { env });
  t.is(one.code, 1);
  t.is(one.stdout, "");
});

test("only root may check", (t) => {
  // (a HOME that user may read: no config file there)
  const env = { ...process.env, ...NO_CONF, HOME: "/nonexistent" };
  const r = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, CLI, "check"], { env, encoding: "utf8" });
  t.is(r.status, 1);
  t.regex(r.stderr, /only root can check/);
});
