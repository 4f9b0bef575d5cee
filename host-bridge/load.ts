// The one place that loads the native addon and gives it its type.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { NativeBridge, NativeError } from "./native.js";

export type {
  BatchReadResult,
  FdStat,
  NativeBridge,
  NativeError,
  PagemapScanOptions,
  RseqConfiguration,
  SpawnOptions,
  TtyInfo,
  WaitStatus,
} from "./native.js";

let cached: NativeBridge | undefined;

/** Candidate paths, from the source tree (tsx) and from dist/. */
function candidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const env = process.env.TSCRIU_BRIDGE;
  const list = [
    resolve(here, "build/Release/tscriu_bridge.node"),
    resolve(here, "../../host-bridge/build/Release/tscriu_bridge.node"),
  ];
  return env ? [env, ...list] : list;
}

/** Loads the addon once; the error names every path tried. */
export function bridge(): NativeBridge {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of candidates()) {
    try {
      cached = require(path) as NativeBridge;
      return cached;
    } catch (e) {
      tried.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  throw new Error(
    `the native host bridge is not built (run "npm run build"); tried:\n  ${tried.join("\n  ")}`,
  );
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).errno === "number" && typeof (e as NativeError).syscall === "string";
}

/**
 * A program built next to the addon (build/Release/NAME, from the source tree or from
 * dist/), or $ENV when set; the error names every path tried.
 */
export function helperProgram(name: "tscriu_stub" | "tscriu_tracker", env: string): string {
  const set = process.env[env];
  if (set) return set;
  const here = dirname(fileURLToPath(import.meta.url));
  const tried = [resolve(here, `build/Release/${name}`), resolve(here, `../../host-bridge/build/Release/${name}`)];
  for (const p of tried) if (existsSync(p)) return p;
  throw new Error(`${name} is not built (run "npm run build"); tried: ${tried.join(", ")}`);
}
