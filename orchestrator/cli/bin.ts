#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS TSCRIU_NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node --max-semi-space-size=64 --min-semi-space-size=16 --interrupt-budget=1081344
// The tscriu command as package.json's "bin" names it: dist/cli/tscriu.cjs, which starts
// the CLI (main.ts) bundled into one file, dist/cli/main.cjs (scripts/build-ts.mjs). Both
// are CommonJS: an ES module as the main script costs Node ~6 ms more to start.
//
// The launcher line: Node reads the whole file NODE_EXTRA_CA_CERTS names before any script
// runs (~60 ms of each start where it is set), and tscriu has no use for it (its TLS takes
// criu's --tls-cacert). So env(1) starts Node without it and keeps its value in
// TSCRIU_NODE_EXTRA_CA_CERTS, which is put back first thing: action scripts, a service's
// workers and the tools tscriu runs see the environment they were given. (`env -S` with
// ${VAR}: GNU coreutils 8.30, FreeBSD; busybox's env lacks it. Unset and empty read the
// same there, and mean the same to Node.)
//
// Node's flags there give V8 a young generation of 16 MiB from the start (up to 64): a
// dump allocates tens of MiB of short-lived objects (a page plan's runs, a thousand
// sockets' entries), and with V8's default (1 MiB growing to 16) five or six scavenges
// ran while the tasks were frozen in a final incremental dump; one with these (~3 MiB more
// RSS for a small dump). 32 MiB took 5 % off a CLI restore of 1,000 TCP connections, and
// more with the prefault thread below, but small commands were slower (a service's
// workers have 32, emptied after their warm-up: rpc/service.ts). And 16 times V8's
// interrupt budget (67584): a command is short-lived, most of its code runs a few hundred
// or thousand times (once per fd, per image, per connection), and TurboFan's compilations
// of it on V8's background threads cost more CPU than they saved (a dump of a server with
// a thousand connections: ~90 ms of ~350); only code that keeps running (pages, large
// images) is optimised. A service's workers, spawned with its execArgv, get these flags
// too, but for the young generation's size.
//
// The bundle runs from V8's code cache of it, main.cache, which scripts/cli-cache.mjs
// writes at build and install time by running a few commands with
// TSCRIU_WRITE_CODE_CACHE=1: compiling the bundle's code was the largest part of a small
// dump's start-up after Node's own. Where the cache is missing, or was made by another
// Node or with other V8 flags (V8 checks both: cli-cache.mjs runs the bin with the
// launcher line's flags), the code compiles as usual. TSCRIU_CODE_CACHE=report says on
// stderr whether V8 took the cache. -V is answered before the bundle is read.

import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";
import { VERSION } from "../version.js";
import { bridge } from "../../host-bridge/load.js";

const saved = process.env["TSCRIU_NODE_EXTRA_CA_CERTS"];
if (saved !== undefined) {
  delete process.env["TSCRIU_NODE_EXTRA_CA_CERTS"];
  if (saved !== "") process.env["NODE_EXTRA_CA_CERTS"] = saved;
}

const argv = process.argv.slice(2);
if (argv.includes("-V") || argv.includes("--version")) {
  process.stdout.write(`Version: ${VERSION}\n`);
  process.exit(0);
}

// A dump's, a detached restore's and swrk's process has its fresh memory (V8's young generation)
// faulted in ahead by a thread of the host bridge's on the other CPU (src/prefault.c),
// started before the bundle is read: the bundle's own set-up allocates there too. A dump
// and a restore of 1,000 connections 370 -> 346 and 276 -> 259 ms from here, against the
// start of the command's handler; a small dump 183 -> 168 ms (medians of 8 and 10
// interleaved pairs). A word of the line that merely equals a command's name costs a load
// of the addon, which every other command is spared (crit's verbs need none). A restore
// without -d is left out: it stays the task's parent until the task ends, as criu's does,
// and would keep what the thread filled all that time (18.6 MB more resident here).
const detachedRestore = argv.includes("restore") && (argv.includes("-d") || argv.includes("--restore-detached"));
if (argv.includes("dump") || argv.includes("pre-dump") || detachedRestore || argv.includes("swrk")) {
  try {
    bridge().prefaultStart();
  } catch {
    // no addon: the command itself says so
  }
}

const file = fileURLToPath(new URL("./main.cjs", import.meta.url));
const cacheFile = fileURLToPath(new URL("./main.cache", import.meta.url));
let cachedData: Buffer | undefined;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // No cache (or none readable): V8 compiles the source, which is all a cache saves.
}
// The bundle is ASCII (esbuild's charset "ascii"): read as latin1 it becomes a one-byte
// string without UTF-8 decoding. The wrapper is CommonJS's, on the first line so that
// line numbers in stack traces are the file's.
const source = readFileSync(file, "latin1");
const script = new Script(`(function (exports, require, module, __filename, __dirname) {"use strict";${source}\n})`, {
  filename: file,
  ...(cachedData !== undefined ? { cachedData } : {}),
});
if (process.env["TSCRIU_CODE_CACHE"] === "report") process.stderr.write(`code cache: ${cachedData === undefined ? "none" : script.cachedDataRejected === true ? "rejected" : "taken"}\n`);
if (process.env["TSCRIU_WRITE_CODE_CACHE"] === "1") {
  // Everything compiled by the time the command exits: what was in the cache and what
  // ran. Renamed into place, so that no run reads half a cache.
  process.on("exit", () => {
    writeFileSync(`${cacheFile}.${process.pid}`, script.createCachedData());
    renameSync(`${cacheFile}.${process.pid}`, cacheFile);
  });
}
type CommonJsWrapper = (exports: object, require: NodeJS.Require, module: { exports: object }, filename: string, dirname: string) => void;
const module = { exports: {} };
(script.runInThisContext() as CommonJsWrapper)(module.exports, createRequire(file), module, file, dirname(file));
