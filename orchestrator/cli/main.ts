#!/usr/bin/env node
// The tscriu command. Kept tiny: everything is in run.ts so tests can call it in-process.
// The bin (bin.ts) runs it bundled; `node dist/orchestrator/cli/main.js` runs it as is.
// No top-level await: the bundle is CommonJS.
//
// -V is answered before anything is loaded (criu prints the version whatever else the line
// says); every command exits as soon as it is done, without waiting for the event loop to
// drain (a restore's helper threads and handles used to keep the process ~0.1 s longer
// after the task was resumed). Writes to stdout/stderr are synchronous for files, pipes
// and terminals on Linux, so nothing written is lost.

async function main(argv: readonly string[]): Promise<void> {
  if (argv.includes("-V") || argv.includes("--version")) {
    const { VERSION } = await import("../version.js");
    process.stdout.write(`Version: ${VERSION}\n`);
    return;
  }
  const { run } = await import("./run.js");
  const code = await run(argv);
  // swrk and service end on their own terms (a service never returns while it serves)
  process.exit(code);
}

void main(process.argv.slice(2));
