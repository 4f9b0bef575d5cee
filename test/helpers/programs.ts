// Programs nobody here wrote, started for a test: under the test reaper (never with
// child_process.spawn, whose children tscriu must not ptrace), in a directory of their own.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { bridge } from "../../host-bridge/load.js";
import { killAndReap, waitFor, type Workload } from "./workloads.js";

/** Starts a program under the test reaper (as startWorkload does for ours). */
export async function startProgram(t: ExecutionContext, argv: string[], ready: (dir: string) => boolean): Promise<Workload & { out: string }> {
  const dir = mkdtempSync(join(tmpdir(), "tscriu-real-"));
  let pid = 0;
  t.teardown(async () => {
    if (pid > 0) await killAndReap(pid);
    rmSync(dir, { recursive: true, force: true });
  });
  const out = join(dir, "stdout");
  pid = bridge().spawnDetached(argv, { cwd: dir, stdout: out, killWithParent: true });
  await waitFor(`${argv[0]} to be ready`, () => ready(dir));
  const counter = (): number => Number(readFileSync(join(dir, "count"), "utf8").trim() || "NaN");
  return { name: argv[0]!, pid, dir, out, info: {}, addr: () => 0, counter, results: () => [], check: async () => "" };
}

/** A TCP port on 127.0.0.1 that nothing listens on at the moment. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

const TCP_LISTEN = 10;

/**
 * Does a socket listen on the unix socket file `path`? The file is there from bind on,
 * and a client connecting between the server's bind and its listen gets ECONNREFUSED;
 * sock_diag names the listener by the bound file's inode.
 */
export function unixListening(path: string): boolean {
  let ino: number;
  try {
    ino = statSync(path).ino;
  } catch {
    return false;
  }
  return bridge()
    .unixDiag()
    .some((s) => s.vfsIno === ino && s.state === TCP_LISTEN);
}
