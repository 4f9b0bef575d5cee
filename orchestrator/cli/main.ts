#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS TSCRIU_NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
// The tscriu command. Kept tiny: everything is in run.ts so tests can call it in-process.
//
// The launcher line: Node reads the whole file NODE_EXTRA_CA_CERTS names before any script
// runs (~60 ms of each start where it is set), and tscriu has no use for it (its TLS takes
// criu's --tls-cacert). So env(1) starts Node without it and keeps its value in
// TSCRIU_NODE_EXTRA_CA_CERTS, which is put back below before anything is spawned: action
// scripts, a service's workers and the tools tscriu runs see the environment they were
// given. (`env -S` with ${VAR}: GNU coreutils 8.30, FreeBSD; busybox's env lacks it. Unset
// and empty read the same there, and mean the same to Node.)
//
// -V is answered before anything is loaded (criu prints the version whatever else the line
// says); every command exits as soon as it is done, without waiting for the event loop to
// drain (a restore's helper threads and handles used to keep the process ~0.1 s longer
// after the task was resumed). Writes to stdout/stderr are synchronous for files, pipes
// and terminals on Linux, so nothing written is lost.
const saved = process.env["TSCRIU_NODE_EXTRA_CA_CERTS"];
if (saved !== undefined) {
  delete process.env["TSCRIU_NODE_EXTRA_CA_CERTS"];
  if (saved !== "") process.env["NODE_EXTRA_CA_CERTS"] = saved;
}
const argv = process.argv.slice(2);
if (argv.includes("-V") || argv.includes("--version")) {
  const { VERSION } = await import("../version.js");
  process.stdout.write(`Version: ${VERSION}\n`);
} else {
  const { run } = await import("./run.js");
  const code = await run(argv);
  // swrk and service end on their own terms (a service never returns while it serves)
  process.exit(code);
}
