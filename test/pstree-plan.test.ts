// The tree plan (orchestrator/restore/pstree-plan.ts) against the kernel's rules: its
// steps, run by a model of fork/setsid/setpgid/exit (test/helpers/pstree-sim.ts), must give
// every process its parent, session and group, leave no helper behind, and what cannot be
// made must be refused by name. The trees: criu's session02, test/workloads/sessions.c's,
// a daemon's, gone and moved group leaders, and a few hundred random histories as criu's
// session03 makes them.
import test from "ava";
import { planTree, TreeError, type TreeTask } from "../orchestrator/restore/pstree-plan.js";
import { history, Kernel } from "./helpers/pstree-sim.js";

function made(t: { is: (a: unknown, b: unknown, m?: string) => void; deepEqual: (a: unknown, b: unknown, m?: string) => void }, tasks: TreeTask[]): number {
  const taken = new Set(tasks.map((x) => x.pid));
  let spare = 900_000;
  const steps = planTree(tasks, false, taken, () => spare++);
  const k = new Kernel(tasks[0]!.pid);
  k.run(steps);
  const got = new Map(k.tree(tasks[0]!.pid).map((x) => [x.pid, x]));
  t.deepEqual([...got.keys()].sort(), tasks.map((x) => x.pid).sort(), "the same processes, no helper left");
  for (const x of tasks) t.deepEqual(got.get(x.pid), x, `pid ${x.pid}`);
  return steps.filter((s) => s.op === "fork" && s.kind !== "task").length;
}

const task = (pid: number, ppid: number, sid: number, pgid = sid, zombie = false): TreeTask => ({ pid, ppid, sid, pgid, zombie, sharesFiles: false });

test("session02's tree: two sessions whose leaders are gone, each under two parents that made sessions of their own later", (t) => {
  // zdtm's session02 after its commands (pids of one run): 67 a child subreaper.
  const tasks = [task(66, 0, 66), task(67, 66, 67), task(68, 67, 68), task(70, 68, 69), task(77, 68, 74), task(72, 67, 72), task(73, 72, 69), task(75, 72, 74)];
  t.true(made(t, tasks) >= 2, "helpers for sessions 69 and 74");
});

test("a daemon: a session and a group whose leaders are gone; a group whose leader is in another branch", (t) => {
  made(t, [task(10, 0, 10), task(12, 10, 11), task(13, 12, 11), task(15, 10, 10, 14), task(16, 10, 10, 17), task(17, 16, 10, 17)]);
});

test("the tree of test/workloads/sessions.c: B's session under A and H, A and H made their sessions after their children, groups of gone Q and of M in another branch", (t) => {
  // P 10, A 11, B 12 (gone), C 13, K 14, N 15, H 16, J 17, M 18, R 19, Q 20 (gone)
  made(t, [task(10, 0, 10), task(11, 10, 11), task(13, 11, 12), task(14, 11, 10), task(15, 14, 10, 18), task(16, 10, 16), task(17, 16, 12), task(18, 10, 10, 18), task(19, 10, 10, 20)]);
});

test("a process that made a group and left it for another: it makes it first, its members join, then it leaves", (t) => {
  made(t, [task(10, 0, 10), task(11, 10, 10, 12), task(12, 10, 10, 12), task(13, 11, 10, 11)]);
});

test("a zombie and a live process in a group whose leader is gone; a zombie session leader whose member lives on", (t) => {
  made(t, [task(10, 0, 10), task(20, 10, 10, 19, true), task(21, 10, 10, 19), task(30, 10, 30, 30, true), task(31, 10, 30)]);
});

test("random histories of forks, CLONE_PARENT forks, setsids, deaths and subreapers (as criu's session03) are made again exactly", (t) => {
  let helpers = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const tasks = history(seed, 12 + (seed % 40));
    try {
      helpers += made(t, tasks);
    } catch (e) {
      t.fail(`seed ${seed}: ${(e as Error).message}\n${JSON.stringify(tasks)}`);
      return;
    }
  }
  t.true(helpers > 100, `helpers were needed (${helpers})`);
});

test("what no process can make is refused by name: a session whose leader's PID is another process's, a group of another session", (t) => {
  const taken = (tasks: TreeTask[]): Set<number> => new Set(tasks.map((x) => x.pid));
  const plan = (tasks: TreeTask[]): number | TreeError => {
    try {
      return planTree(tasks, false, taken(tasks), () => 900_000).length;
    } catch (e) {
      return e as TreeError;
    }
  };
  // 12 is in session 11, but pid 11 is a process of session 10: no one can make session 11.
  const e1 = plan([task(10, 0, 10), task(11, 10, 10), task(12, 10, 11)]);
  t.true(e1 instanceof TreeError);
  t.regex((e1 as TreeError).message, /pid 12 is in session 11/);
  const e2 = plan([task(10, 0, 10), task(11, 10, 11), task(12, 10, 10, 11)]);
  t.regex((e2 as TreeError).message, /pid 12 is in process group 11, which no process of its session 10 makes/);
  const e3 = plan([task(10, 0, 10), task(11, 10, 11, 10)]);
  t.regex((e3 as TreeError).message, /pid 11 leads session 11 but is in group 10/);
});

test("a chain of 20000 processes and one of 200 chains of 100 are planned (no recursion runs out of stack); a session no one makes at their bottom is refused", (t) => {
  for (const branch of [20000, 100]) {
    const tasks = [task(10, 0, 10)];
    for (let i = 1; i < 20000; i++) tasks.push(task(10 + i, i % branch === 0 ? 10 : 9 + i, 10));
    t.is(planTree(tasks, false, new Set(tasks.map((x) => x.pid)), () => 0).length, 19999, "a fork each");
    tasks.push(task(30010, 30009 - 10000, 11));
    const err = t.throws(() => planTree(tasks, false, new Set(tasks.map((x) => x.pid)), () => 0));
    t.regex(err.message, /pid 30010 is in session 11, but no process of that session can be made/);
  }
});
