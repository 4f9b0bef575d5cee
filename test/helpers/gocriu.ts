// Debian's go-criu (golang-github-checkpoint-restore-go-criu-dev, with Debian's Go, both
// installed by .ci/run) as the RPC client of test/rpc-go.test.ts: test/go/gocriu is built
// once per test process, offline, in GOPATH mode against /usr/share/gocode, and makes one
// go-criu call per run, printing its answer as one JSON line.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./fixtures.js";
import { scratchDir } from "./tmp.js";

/** Debian's Go 1.19 (golang-go): the one that reads Debian's packaged Go sources. */
export const GO = "/usr/bin/go";
/** Where Debian's golang-*-dev packages put their sources. */
export const GOCODE = "/usr/share/gocode";
const GO_CRIU = join(GOCODE, "src/github.com/checkpoint-restore/go-criu/main.go");
const SOURCE = join(ROOT, "test/go/gocriu");

let built: string | undefined;

/**
 * Throws (fails the test) when Go or go-criu is missing (the RPC tests need the real client), then
 * builds test/go/gocriu once. GOPATH mode with the package copied under a GOPATH of its
 * own: its go.mod makes Go resolve go-criu's ".../v5" imports in Debian's tree, and with
 * GO111MODULE=off and GOPROXY=off nothing is looked for on the network.
 */
export function gocriuBuilt(): string {
  if (built !== undefined) return built;
  if (!existsSync(GO)) throw new Error(`Debian's Go is needed at ${GO} (apt-get install golang-go)`);
  if (!existsSync(GO_CRIU)) throw new Error(`Debian's go-criu is needed at ${GO_CRIU} (apt-get install golang-github-checkpoint-restore-go-criu-dev)`);
  const gopath = scratchDir("tscriu-gopath-");
  const pkg = join(gopath, "src/tscriu/gocriu");
  mkdirSync(pkg, { recursive: true });
  cpSync(SOURCE, pkg, { recursive: true });
  const bin = join(gopath, "gocriu");
  const r = spawnSync(GO, ["build", "-o", bin, "."], {
    cwd: pkg,
    env: { ...process.env, GO111MODULE: "off", GOPATH: `${gopath}:${GOCODE}`, GOPROXY: "off", GOFLAGS: "", CGO_ENABLED: "0" },
    encoding: "utf8",
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`go build of test/go/gocriu failed (${r.status ?? r.signal ?? r.error?.message}):\n${r.stderr}`);
  built = bin;
  return bin;
}

/** One go-criu call through the built program against the criu binary `criu`. */
export function gocriu(bin: string, criu: string, action: string, ...args: string[]): Record<string, unknown> {
  const r = spawnSync(bin, [criu, action, ...args], { encoding: "utf8", timeout: 90_000 });
  if (r.status !== 0) throw new Error(`gocriu ${action} ${args.join(" ")} exited with ${r.status ?? r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}
