// The command line: crit's verbs, criu's option frame, config files, exit codes.
import test from "ava";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseJson } from "../images/json.js";
import { parseConfigText, applyConfig } from "../orchestrator/cli/config.js";
import { normalizeVerbosity } from "../orchestrator/log.js";
import { VERSION } from "../orchestrator/version.js";
import { CLI, tscriu } from "./helpers/cli.js";
import { FIXTURES, ROOT } from "./helpers/fixtures.js";
import { scratchDir } from "./helpers/tmp.js";

const NO_CONF = { HOME: scratchDir("tscriu-home-"), CRIU_CONFIG_FILE: "" };
const fx = (p: string) => join(FIXTURES, p);
const tmp = () => scratchDir("tscriu-cli-");

test("decode to stdout equals crit's JSON", (t) => {
  const r = tscriu(["decode", "-i", fx("fds/files.img")], { env: NO_CONF });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(parseJson(r.stdout), parseJson(readFileSync(fx("fds/crit/files.img.json"), "utf8")));
});

test("decode --pretty -o FILE equals crit's pretty JSON, and reads stdin", (t) => {
  const out = join(tmp(), "mm.json");
  const r = tscriu(["decode", "--pretty", "-o", out], { input: readFileSync(fx("memory/mm-15335.img")), env: NO_CONF });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(parseJson(readFileSync(out, "utf8")), parseJson(readFileSync(fx("memory/crit/mm-15335.img.pretty.json"), "utf8")));
});

test("encode turns crit's JSON back into the same bytes and never overwrites silently", (t) => {
  const d = tmp();
  const out = join(d, "core.img");
  const r = tscriu(["encode", "-i", fx("signals/crit/core-15913.img.pretty.json"), "-o", out], { env: NO_CONF });
  t.is(r.code, 0, r.stderr);
  t.true(readFileSync(out).equals(readFileSync(fx("signals/core-15913.img"))));
  const again = tscriu(["encode", "-i", fx("signals/crit/core-15913.img.json"), "-o", out], { env: NO_CONF });
  t.is(again.code, 1);
  t.regex(again.stderr, /refusing to overwrite/);
  t.is(tscriu(["encode", "--force", "-i", fx("signals/crit/core-15913.img.json"), "-o", out], { env: NO_CONF }).code, 0);
});

test("show, show --nopl and info", (t) => {
  const show = tscriu(["show", fx("fds/pipes-data.img")], { env: NO_CONF });
  t.is(show.code, 0);
  t.deepEqual(parseJson(show.stdout), parseJson(readFileSync(fx("fds/crit/pipes-data.img.pretty.json"), "utf8")));
  const nopl = tscriu(["show", "--nopl", fx("fds/pipes-data.img")], { env: NO_CONF });
  t.regex(nopl.stdout, /"extra": "\.\.\. <17B>"/);
  const info = tscriu(["info", fx("memory/pagemap-15335.img")], { env: NO_CONF });
  t.deepEqual(parseJson(info.stdout), { magic: "PAGEMAP", count: 77 });
});

test("x DIR ps|fds|mems|rss print crit's text", (t) => {
  for (const what of ["ps", "fds", "mems", "rss"]) {
    const r = tscriu(["x", fx("tree"), what], { env: NO_CONF });
    t.is(r.code, 0, r.stderr);
    const norm = (s: string) => s.split("\n").map((l) => l.trimEnd()).join("\n").trim();
    t.is(norm(r.stdout), norm(readFileSync(fx(`tree/crit/x-${what}.txt`), "utf8")), what);
  }
});

test("bad image input: exit 1 and a message naming the file and offset", (t) => {
  const d = tmp();
  const bad = join(d, "core-1.img");
  const buf = readFileSync(fx("counter/core-15232.img"));
  writeFileSync(bad, buf.subarray(0, 100));
  const r = tscriu(["decode", "-i", bad], { env: NO_CONF });
  t.is(r.code, 1);
  t.regex(r.stderr, /core-1\.img: offset \d+ \(0x[0-9a-f]+\): entry 0 claims \d+ bytes but only 88 are left/);
  t.is(r.stdout, "");
  const raw = tscriu(["decode", "-i", fx("counter/pages-1.img")], { env: NO_CONF });
  t.is(raw.code, 1);
  t.regex(raw.stderr, /unknown image magic/);
  const json = tscriu(["encode", "-o", join(d, "x.img")], { input: '{"magic": "PSTREE", "entries": [{"ppid": 0}]}', env: NO_CONF });
  t.is(json.code, 1);
  t.regex(json.stderr, /entries\[0\]\.pid: required field is missing/);
  t.false(existsSync(join(d, "x.img")));
});

test("usage errors exit 1; -V and -h exit 0", (t) => {
  const u = tscriu(["decode", "--no-such-option", "-i", fx("counter/pstree.img")], { env: NO_CONF });
  t.is(u.code, 1);
  t.regex(u.stderr, /Unknown argument/);
  t.is(u.stdout, "", "the command does not run after a usage error");
  t.is(tscriu([], { env: NO_CONF }).code, 1);
  const v = tscriu(["-V"], { env: NO_CONF });
  t.is(v.code, 0);
  t.is(v.stdout.trim(), `Version: ${VERSION}`);
  const h = tscriu(["-h"], { env: NO_CONF });
  t.is(h.code, 0);
  t.regex(h.stdout, /decode/);
});

test("commands not built yet say so and exit 1", (t) => {
  const r = tscriu(["exec", "-t", "1"], { env: NO_CONF });
  t.is(r.code, 1);
  t.regex(r.stderr, /exec: not implemented yet/);
});

test("the bin runs the same without its code cache and with one that is not its own, and writes one when asked; the build's is taken", (t) => {
  // A copy of the bundle's directory: decode needs neither the addon nor the package around it.
  const bin = join(tmp(), "cli", "tscriu.cjs");
  cpSync(dirname(CLI), dirname(bin), { recursive: true });
  const cache = join(dirname(bin), "main.cache");
  t.true(existsSync(cache), "the build wrote a code cache");
  const decode = (env: NodeJS.ProcessEnv = {}) => spawnSync(bin, ["decode", "-i", fx("counter/pstree.img")], { env: { ...process.env, ...NO_CONF, ...env }, encoding: "utf8" });
  const expected = decode();
  t.is(expected.status, 0, expected.stderr);
  t.deepEqual(parseJson(expected.stdout), parseJson(readFileSync(fx("counter/crit/pstree.img.json"), "utf8")));
  // made by the build with the launcher line's Node flags, which V8 checks
  t.is(decode({ TSCRIU_CODE_CACHE: "report" }).stderr, "code cache: taken\n", "the build's cache is taken through the launcher");
  writeFileSync(cache, Buffer.alloc(4096, 0x5a));
  t.is(decode({ TSCRIU_CODE_CACHE: "report" }).stderr, "code cache: rejected\n");
  t.deepEqual([decode().stdout, decode().stderr], [expected.stdout, ""], "a cache V8 refuses");
  rmSync(cache);
  t.deepEqual([decode().stdout, decode().stderr], [expected.stdout, ""], "no cache");
  t.is(decode({ TSCRIU_CODE_CACHE: "report" }).stderr, "code cache: none\n");
  t.is(decode({ TSCRIU_WRITE_CODE_CACHE: "1" }).stdout, expected.stdout);
  t.true(statSync(cache).size > 10_000, "TSCRIU_WRITE_CODE_CACHE=1 wrote one");
  t.deepEqual([decode().stdout, decode().stderr], [expected.stdout, ""], "the cache it wrote");
  t.is(decode({ TSCRIU_CODE_CACHE: "report" }).stderr, "code cache: taken\n");
});

test("the version matches package.json", (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
  t.is(pkg.version, VERSION);
});

test("config syntax: one option per line, comments, quotes", (t) => {
  const text = 'tcp-established\nwork-dir "/home/u/criu/my \\"work\\" directory"\n#comment\nno-restore-sibling # another\n\n  log-file /tmp/x.log  \n';
  t.deepEqual(parseConfigText(text, "c.conf"), [
    "--tcp-established",
    "--work-dir",
    '/home/u/criu/my "work" directory',
    "--no-restore-sibling",
    "--log-file",
    "/tmp/x.log",
  ]);
  t.throws(() => parseConfigText('work-dir "open', "c.conf"), { message: /c\.conf:1: unterminated quoted argument/ });
  t.throws(() => parseConfigText("a b c", "c.conf"), { message: /c\.conf:1: one option per line/ });
});

test("config files apply in criu's order and the command line wins", (t) => {
  const home = tmp();
  mkdirSync(join(home, ".criu"));
  writeFileSync(join(home, ".criu/default.conf"), "pretty\n");
  const env = { HOME: home, CRIU_CONFIG_FILE: "", TSCRIU_SYSTEM_CONFIG: join(home, "none") };
  const pretty = tscriu(["decode", "-i", fx("counter/pstree.img")], { env });
  t.is(pretty.code, 0, pretty.stderr);
  t.true(pretty.stdout.startsWith("{\n    "), "default config applied");
  const plain = tscriu(["decode", "--no-default-config", "-i", fx("counter/pstree.img")], { env });
  t.true(plain.stdout.startsWith('{"magic"'), "--no-default-config skips it");
  const conf = join(home, "extra.conf");
  writeFileSync(conf, "no-pretty\n");
  t.true(tscriu(["decode", "--config", conf, "-i", fx("counter/pstree.img")], { env }).stdout.startsWith('{"magic"'), "--config after defaults");
  t.deepEqual(applyConfig(["decode", "--verbosity=4"], { HOME: home, TSCRIU_SYSTEM_CONFIG: join(home, "none") }), ["decode", "--pretty", "--verbosity=4"]);
  const missing = tscriu(["decode", "--config", join(home, "nope.conf")], { env });
  t.is(missing.code, 1);
  t.regex(missing.stderr, /cannot read config file .*nope\.conf: ENOENT/);
});

test("criu's verbosity syntax", (t) => {
  t.deepEqual(normalizeVerbosity(["dump", "-v4"]), ["dump", "--verbosity=4"]);
  t.deepEqual(normalizeVerbosity(["-vvv", "x"]), ["x", "--verbosity=4"]);
  t.deepEqual(normalizeVerbosity(["-v0"]), ["--verbosity=0"]);
  t.deepEqual(normalizeVerbosity(["-v"]), ["--verbosity=3"]);
  t.deepEqual(normalizeVerbosity(["decode"]), ["decode"]);
});
