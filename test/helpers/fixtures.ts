// Where the criu 4.2 golden fixtures live, and the list of their image files.
import { readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURES = join(ROOT, "test/fixtures/criu-4.2");

export function fixtureDirs(): string[] {
  return readdirSync(FIXTURES).sort();
}

/** Every image file crit decodes (all but the raw pages-*.img), as [fixture, file]. */
export function imageFiles(): [string, string][] {
  const out: [string, string][] = [];
  for (const fx of fixtureDirs()) {
    for (const f of readdirSync(join(FIXTURES, fx)).sort()) {
      if (f.startsWith("pages-")) continue;
      if (f.endsWith(".img") || f.startsWith("stats-")) out.push([fx, f]);
    }
  }
  return out;
}

/** A small seeded PRNG (mulberry32) for bounded, repeatable fuzzing. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
