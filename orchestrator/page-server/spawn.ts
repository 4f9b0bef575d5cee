// A page server started for an RPC client (PAGE_SERVER, PAGE_SERVER_CHLD): `tscriu
// page-server` in a process of its own, detached, that tells on an inherited pipe its pid
// and the port it listens on (an RPC client may leave the port to it), then serves one
// session and exits as the command does.

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { TlsOptions } from "./channel.js";

/** the env variable that names the fd the page server writes "PID PORT" to once it listens */
export const INFO_FD_ENV = "TSCRIU_PAGE_SERVER_INFO_FD";
const INFO_FD = 3;
const READY_MS = 10_000;

export interface StartOptions {
  imagesDir: string;
  address?: string | undefined;
  port?: number | undefined;
  prevImagesDir?: string | undefined;
  autoDedup: boolean;
  /** serve the lazy pages of the dump in imagesDir (page-server --lazy-pages) */
  lazyPages: boolean;
  tls?: TlsOptions | undefined;
  /** its log file; stderr (the RPC's) when undefined */
  logFile: string | undefined;
  level: number;
}

function cliMain(): { file: string; execArgv: string[] } {
  const ts = import.meta.url.endsWith(".ts");
  return { file: fileURLToPath(new URL(ts ? "../cli/main.ts" : "../cli/main.js", import.meta.url)), execArgv: process.execArgv };
}

export async function startPageServer(o: StartOptions): Promise<{ pid: number; port: number }> {
  const cli = cliMain();
  const args = ["page-server", "-D", o.imagesDir, `-v${o.level}`];
  if (o.address !== undefined) args.push("--address", o.address);
  if (o.port !== undefined) args.push("--port", String(o.port));
  if (o.prevImagesDir !== undefined) args.push("--prev-images-dir", o.prevImagesDir);
  if (o.autoDedup) args.push("--auto-dedup");
  if (o.lazyPages) args.push("--lazy-pages");
  if (o.tls) {
    args.push("--tls");
    for (const [k, v] of [["cacert", o.tls.cacert], ["cacrl", o.tls.cacrl], ["cert", o.tls.cert], ["key", o.tls.key]] as const) if (v !== undefined) args.push(`--tls-${k}`, v);
    if (o.tls.noCnVerify) args.push("--tls-no-cn-verify");
  }
  if (o.logFile !== undefined) args.push("-o", o.logFile);
  const child = spawn(process.execPath, [...cli.execArgv, cli.file, ...args], {
    detached: true,
    stdio: ["ignore", "ignore", o.logFile === undefined ? "inherit" : "ignore", "pipe"],
    env: { ...process.env, [INFO_FD_ENV]: String(INFO_FD) },
  });
  child.unref();
  const info = child.stdio[INFO_FD] as NodeJS.ReadableStream;
  const why = (): string => {
    try {
      return o.logFile !== undefined ? readFileSync(o.logFile, "utf8").trim().split("\n").slice(-3).join(" / ") : "";
    } catch {
      return "";
    }
  };
  return await new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the page server (pid ${child.pid}) did not listen within ${READY_MS} ms ${why()}`));
    }, READY_MS);
    info.on("data", (b: Buffer) => {
      text += b.toString();
      const m = /^(\d+) (\d+)\n/.exec(text);
      if (!m) return;
      clearTimeout(timer);
      (info as unknown as { destroy(): void }).destroy();
      resolve({ pid: Number(m[1]), port: Number(m[2]) });
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the page server exited with ${code} before it listened: ${why()}`));
    });
  });
}
