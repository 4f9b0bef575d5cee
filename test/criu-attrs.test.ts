// The attributes of issue 14, threads and trees (issue 15) between tscriu and criu 4.1.1 (in its Debian trixie root,
// scripts/criu-root.sh): criu restores tscriu's images of each workload, and tscriu
// restores criu's dumps of them; each workload then passes its own check. The criu
// plumbing follows test/criu-restore.test.ts (kept apart so that both files can change).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { criuLogTail, criuVersion, haveRoot, HOST_CRIU, restoredByCriu, runCriuShell } from "./helpers/criu-root.js";
import { dumpGone, restoreTask } from "./helpers/restore.js";
import { scratchDir } from "./helpers/tmp.js";
import { buildWorkloads, counterAdvances, killAndReap, startWorkload, waitFor, waitTreeFree, WORKLOAD_BIN } from "./helpers/workloads.js";


// Left out, criu's own limits: a pending SIGTRAP (criu dump refuses the task, and criu
// restore of tscriu's images loses it), and ten thousand mappings (criu 4.1.1 dump and
// restore both hang here waiting for the task's final sigreturn stop). Of the anonfds
// cases: eventfd (criu cuts counts above 2^32-1 and loses EFD_SEMAPHORE), timerfd-periodic
// (criu restores an expired periodic timer disarmed), timerfd-abs (criu re-arms an absolute
// timer from the restore's whole second, not on the task's clocks), epoll (criu's
// EPOLL_CTL_ADD arms a fired oneshot for errors and hangups again) and inotify (criu drops
// IN_EXCL_UNLINK from a watch's mask).
const CASES: [name: string, args: string[], pass: RegExp][] = [
  ["sigtrap", [], /^PASS traps=/],
  ["bigmaps", [], /^PASS$/],
  ["loginuid", ["3"], /^PASS loginuid=3$/],
  ["madvise", [], /^PASS regions=14 /],
  ["membarrier", [], /^PASS registered=0x/],
  ["droppable", [], /^PASS droppable$/],
  ...["memfd-priv", "shmem-priv", "mmap", "holes", "attrs", "dirs", "fifo", "devices"].map((c): [string, string[], RegExp] => ["unlinked", [c], new RegExp(`^PASS ${c}$`)]),
  // issue 15: threads and a process tree
  ["threads", ["4"], /^PASS threads=4$/],
  ["tree", [], /^PASS tree=5$/],
  ["daemon", [], /^PASS daemon=3$/],
  ["shared", ["files"], /^PASS shared$/],
  // issue 8: unix sockets
  ...["stream", "dgram", "seqpacket", "listen", "abstract", "shutdown", "opts", "deleted"].map((c): [string, string[], RegExp] => ["unixsk", [c], new RegExp(`^PASS ${c}$`)]),
  // issue 8: eventfd, signalfd, timerfd, epoll, inotify
  ...["signalfd", "timerfd-oneshot", "epoll-nested", "epoll-moved", "fixture", "fanotify"].map((c): [string, string[], RegExp] => ["anonfds", [c], new RegExp(`^PASS ${c}$`)]),
  // issue 9: TCP listeners (IPv4, IPv6, dual-stack, options), UDP and UDP-Lite, a listener shared with a worker
  ...["listen", "udp", "shared"].map((c): [string, string[], RegExp] => ["inetsk", [c], new RegExp(`^PASS ${c}$`)]),
];

/** What an older criu loses in its own dump (tscriu restores what the images hold). */
const CRIU_LOSES: Record<string, { versions: RegExp; result: RegExp; why: string }> = {
  madvise: { versions: /^4\.1(\.|$)/, result: /^FAIL wipeonfork: VmFlags , was wf,$/, why: "criu 4.1 does not dump MADV_WIPEONFORK (criu 4.2 does)" },
  droppable: { versions: /^4\.1(\.|$)/, result: /^FAIL droppable: VmFlags of 0x[0-9a-f]+ are .*, no dp$/, why: "criu 4.1 dumps a MAP_DROPPABLE mapping as a plain private one (criu 4.2 records MAP_DROPPABLE)" },
};

/** What criu's restore loses of a state, from its own dump as well (checked by hand with criu 4.1.1 and 4.2). */
const CRIU_RESTORE_LOSES: Record<string, { result: RegExp; why: string }> = {
  daemon: { result: /^FAIL D: ppid 1 pgid (\d+) sid \1, want \d+ \1 \1$/, why: "criu gives a daemon whose session leader is gone to init (ppid 1) instead of the child subreaper it was under" },
};

/**
 * What criu run in the trixie root (a chroot) restores differently from the host's criu:
 * a fanotify mount mark is put back by path from criu's root, so in the chroot it lands
 * on the chroot's mount, not on the host mount the task's files are on (TSCRIU_CRIU, a
 * host criu, passes).
 */
const IN_ROOT_LOSES: Record<string, { result: RegExp; why: string }> = {
  "anonfds fanotify": { result: /^FAIL fanotify: no event for outside \(the mount mark\)$/, why: "criu in the chroot re-adds the mount mark on the chroot's own mount" },
};

/** States criu itself cannot dump or restore (tscriu can: test/restore-unixsk.test.ts). */
const CRIU_CANNOT: Record<string, { step: "dump" | "restore"; error: RegExp; why: string; versions?: RegExp }> = {
  "unixsk abstract": { step: "restore", error: /Peer \d+ unresolved for \d+/, why: "criu 4.x cannot restore a datagram socket that has a sender connected to it and is itself connected to a third socket, not even from its own dump" },
  "unixsk opts": { step: "dump", error: /Control messages in queue, not supported/, why: "criu cannot dump a queue with SCM_CREDENTIALS messages (SO_PASSCRED)" },
  ...Object.fromEntries(
    ["listen", "udp", "shared"].map((c) => [
      `inetsk ${c}`,
      { step: "dump", versions: /^4\.1(\.|$)/, error: /Can't get 1:16 opt: Operation not supported/, why: "criu 4.1 reads SO_PASSCRED of every socket, which Linux 6.16 and later refuse for TCP and UDP (criu 4.2 reads it of unix and netlink sockets only)" },
    ]),
  ),
};

/** criu's own limit for a case, where it applies to the criu at hand. */
function cannot(title: string): (typeof CRIU_CANNOT)[string] | undefined {
  const limit = CRIU_CANNOT[title];
  return limit && (!limit.versions || limit.versions.test(criuVersion())) ? limit : undefined;
}

for (const [name, args, pass] of CASES) {
  const title = [name, ...args].join(" ");
  test.serial(`criu restores tscriu's images: ${title}`, async (t) => {
    if (!haveRoot(t)) return;
    const w = await startWorkload(t, name, args, { static: true });
    // criu gives the daemon's D (and its child E) to init: no teardown of the root reaches them.
    if (name === "daemon") {
      t.teardown(() => {
        for (const k of ["d", "e", "m"]) {
          try {
            process.kill(Number(w.info[k]), "SIGKILL");
          } catch {
            // gone
          }
        }
      });
    }
    const dir = await dumpGone(t, w);
    const limit = cannot(title);
    if (limit?.step === "restore") {
      // criu cannot restore even its own dump of this state: it must fail as it does there.
      const r = runCriuShell(`criu restore -D ${dir} -d -v4 -o restore.log`);
      t.not(r.status, 0);
      t.regex(criuLogTail(dir), limit.error, `criu's own limit: ${limit.why}`);
      t.log(`criu's own limit, not tscriu's: ${limit.why}`);
      return;
    }
    await restoredByCriu(t, w.pid, dir, 60_000);
    const result = await w.check(30_000);
    const lost = CRIU_RESTORE_LOSES[title];
    if (lost?.result.test(result)) {
      t.log(`criu's own loss, not tscriu's: ${lost.why}`);
      t.regex(result, lost.result, "everything else criu restores");
      return;
    }
    const root = IN_ROOT_LOSES[title];
    if (root && !HOST_CRIU && root.result.test(result)) {
      // everything checked before the mount mark passed
      t.regex(result, root.result);
      t.log(`the criu root's chroot, not tscriu: ${root.why}`);
      return;
    }
    t.regex(result, pass);
  });

  test.serial(`tscriu restores criu's images: ${title}`, async (t) => {
    if (!haveRoot(t)) return;
    buildWorkloads();
    const work = scratchDir(`tscriu-fromcriu-${name}-${args.join("-")}-`);
    const [state, images, out] = [join(work, "state"), join(work, "images"), join(work, "out")];
    const bin = join(WORKLOAD_BIN, "static", name);
    const script = [
      `mkdir -p ${state} ${images}`,
      `cd ${work}`,
      `setsid ${bin} ${state} ${args.join(" ")} >${out} 2>&1 </dev/null &`,
      `for i in $(seq 200); do grep -q '^ready ' ${out} 2>/dev/null && break; sleep 0.05; done`,
      `criu dump -t "$(awk '/^ready /{print $2}' ${out})" -D ${images} -v4 -o dump.log`,
    ].join("\n");
    const r = runCriuShell(script);
    const pid = Number(/^ready (\d+)/m.exec(existsSync(out) ? readFileSync(out, "utf8") : "")?.[1]);
    t.teardown(() => killAndReap(pid));
    const limit = cannot(title);
    if (limit?.step === "dump") {
      t.not(r.status, 0);
      t.regex(criuLogTail(images, "dump.log"), limit.error, `criu's own limit: ${limit.why}`);
      t.log(`criu's own limit, not tscriu's: ${limit.why}`);
      return;
    }
    t.is(r.status, 0, `criu dump: ${r.stderr}\n${criuLogTail(images, "dump.log")}`);
    await waitTreeFree(images, [pid]);
    await restoreTask(t, images);
    const results = (): string[] => (existsSync(join(state, "result")) ? readFileSync(join(state, "result"), "utf8").split("\n").filter(Boolean) : []);
    const before = results().length;
    process.kill(pid, "SIGUSR1");
    const lines = await waitFor(`${name} (pid ${pid}) to answer its self-check`, () => (results().length > before ? results() : undefined), 30_000);
    const lost = CRIU_LOSES[title];
    if (lost && lost.versions.test(criuVersion()) && lost.result.test(lines[before] ?? "")) {
      t.log(`criu ${criuVersion()}'s own loss, not tscriu's: ${lost.why}`);
      return;
    }
    t.regex(lines[before] ?? "", pass, "criu dumped it");
  });
}

test.serial("a task criu restored from tscriu's images (in a time namespace of its own), dumped by criu again, restores with tscriu", async (t) => {
  if (!haveRoot(t)) return;
  const w = await startWorkload(t, "counter", [], { static: true });
  const first = await dumpGone(t, w);
  // One criu session restores it and dumps it again (the task lives in that session's
  // mount namespace, which another criu run would not find its files in).
  const second = scratchDir("tscriu-criu-again-");
  const r = runCriuShell(
    [
      `criu restore -D ${first} -d -v4 -o restore.log || exit 1`,
      `for i in $(seq 100); do [ -s ${w.dir}/counter ] && break; sleep 0.05; done`,
      `criu dump -t ${w.pid} -D ${second} -v4 -o dump.log`,
    ].join("\n"),
  );
  t.is(r.status, 0, `criu restore + dump: ${r.stderr}\n${criuLogTail(first)}\n${criuLogTail(second, "dump.log")}`);
  t.true(readdirSync(second).some((f) => /^timens-[1-9]\d*\.img$/.test(f)), "criu names the task's own time namespace by its id");
  await waitFor(`pid ${w.pid} to be free after criu's dump`, () => !existsSync(`/proc/${w.pid}`));
  await restoreTask(t, second);
  await counterAdvances(w);
  t.regex(await w.check(30_000), /^PASS/, "restored by tscriu from criu's dump");
});
