// The command-line reader (orchestrator/cli/parse.ts) on criu's getopt_long forms, and
// parseCommandLine's answers to what does not fit: unknown options, values of the wrong
// kind, missing or extra words. Pure: nothing runs.
import test from "ava";
import { join } from "node:path";
import { parseLine, type OptionSpec } from "../orchestrator/cli/parse.js";
import { parseCommandLine } from "../orchestrator/cli/run.js";
import { scratchDir } from "./helpers/tmp.js";

const HOME = scratchDir("tscriu-home-");
const NO_CONF = { HOME, CRIU_CONFIG_FILE: "", TSCRIU_SYSTEM_CONFIG: join(HOME, "none") };

const TABLE: OptionSpec[] = [
  { name: "tree", alias: "t", kind: "number" },
  { name: "images-dir", alias: "D", kind: "string" },
  { name: "leave-running", alias: "R", kind: "boolean" },
  { name: "shell-job", alias: "j", kind: "boolean" },
  { name: "action-script", kind: "array" },
  { name: "cpu-cap", kind: "string", optionalValue: true },
  { name: "verbosity", alias: "v", kind: "number", default: 2 },
];

test("getopt_long's forms: grouped letters, attached values, --name=value, options after words, -- ends them", (t) => {
  const r = parseLine(["dump", "-Rjt42", "-D/img", "--action-script=a", "x", "--action-script", "b", "--", "-R"], TABLE);
  t.deepEqual(r, {
    values: { verbosity: 2, "leave-running": true, "shell-job": true, tree: 42, "images-dir": "/img", "action-script": ["a", "b"] },
    words: ["dump", "x", "-R"],
    unknown: [],
    errors: [],
    help: false,
  });
  // a value that starts with a dash is still the value (criu's -o - logs to stderr)
  t.is(parseLine(["-D", "-"], TABLE).values["images-dir"], "-");
  t.true(parseLine(["restore", "-Rh"], TABLE).help);
  t.true(parseLine(["--help"], TABLE).help);
});

test("booleans: --no-NAME, =true and =false; a repeated option's last value wins", (t) => {
  t.deepEqual(parseLine(["-R", "--no-leave-running", "-t", "1", "--tree=2"], TABLE).values, { verbosity: 2, "leave-running": false, tree: 2 });
  t.deepEqual(parseLine(["--leave-running=false", "--shell-job=true"], TABLE).values, { verbosity: 2, "leave-running": false, "shell-job": true });
  t.deepEqual(parseLine(["--leave-running=yes"], TABLE).errors, ["--leave-running takes no value"]);
  // no- only negates a boolean
  t.deepEqual(parseLine(["--no-tree"], TABLE).unknown, ["no-tree"]);
});

test("a value that may be left out reads as \"\" and is not taken from the next option", (t) => {
  t.deepEqual(parseLine(["--cpu-cap", "-R"], TABLE).values, { verbosity: 2, "cpu-cap": "", "leave-running": true });
  t.is(parseLine(["--cpu-cap"], TABLE).values["cpu-cap"], "");
  t.is(parseLine(["--cpu-cap=fpu"], TABLE).values["cpu-cap"], "fpu");
  t.is(parseLine(["--cpu-cap", "ins"], TABLE).values["cpu-cap"], "ins");
});

test("what does not fit is reported, never thrown", (t) => {
  const r = parseLine(["--tree", "abc", "-D", "--bogus", "-Z", "-t"], TABLE);
  // -D takes --bogus as its value, as getopt does
  t.deepEqual(r.values, { verbosity: 2, "images-dir": "--bogus" });
  t.deepEqual(r.unknown, ["Z"]);
  t.deepEqual(r.errors, ['--tree takes a number, not "abc"', "-t (--tree) needs a value"]);
});

test("usage errors name what is wrong; help wins over them", (t) => {
  const err = (argv: string[]): string => {
    const p = parseCommandLine(argv, NO_CONF);
    return p.kind === "exit" && p.code === 1 ? p.stderr : `not a usage error: ${JSON.stringify(p.kind === "exit" ? p : p.args)}`;
  };
  const tryHelp = 'Try "tscriu --help".\n';
  t.is(err([]), `tscriu: a command is needed\n${tryHelp}`);
  t.is(err(["frobnicate"]), `tscriu: Unknown argument: frobnicate\n${tryHelp}`);
  t.is(err(["dump", "-t", "1", "--bogus", "--also", "x"]), `tscriu: Unknown arguments: bogus, also\n${tryHelp}`);
  t.is(err(["dump", "-t", "1", "extra"]), `tscriu: Unknown argument: extra\n${tryHelp}`);
  t.is(err(["dump", "-t", "one"]), `tscriu: --tree takes a number, not "one"\n${tryHelp}`);
  t.is(err(["show"]), `tscriu: show needs <in> (tscriu show <in>)\n${tryHelp}`);
  t.is(err(["x", "/d", "everything"]), `tscriu: x: <what> is one of ps, fds, mems, rss, not "everything"\n${tryHelp}`);
  t.is(err(["swrk", "three"]), `tscriu: swrk: <fd> is a number, not "three"\n${tryHelp}`);
  const help = parseCommandLine(["dump", "--bogus", "-t", "one", "--help"], NO_CONF);
  t.true(help.kind === "exit" && help.code === 0 && help.stdout.startsWith("tscriu dump\n"));
});

test("words and options in any order; every -v form counts as criu counts it", (t) => {
  const args = (argv: string[]): Record<string, unknown> => {
    const p = parseCommandLine(argv, NO_CONF);
    return p.kind === "run" ? p.args : { error: p.stderr };
  };
  t.like(args(["-D", "/img", "restore", "-d"]), { "images-dir": "/img", "restore-detached": true, verbosity: 2 });
  t.like(args(["-v4", "cpuinfo", "-D", "/img", "check"]), { action: "check", "images-dir": "/img", verbosity: 4 });
  t.like(args(["dump", "-t", "1", "-vv"]), { verbosity: 4 });
  t.like(args(["dump", "-t", "1", "-v", "-v0"]), { verbosity: 0 });
  t.like(args(["swrk", "3"]), { fd: 3 });
  t.like(args(["show", "--nopl", "a.img"]), { in: "a.img", nopl: true });
  t.like(args(["dump", "-t", "1", "--action-script", "a", "--action-script", "b"]), { "action-script": ["a", "b"] });
});
