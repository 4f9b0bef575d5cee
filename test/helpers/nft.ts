// nftables from the tests: the tables there are (a dump's network lock among them), the
// name of a dump's lock, and a table of the test's own that loses chosen TCP segments.
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { bridge } from "../../host-bridge/load.js";
import { readImage } from "../../images/io.js";

export const tables = (): string[] =>
  bridge()
    .nftRun("list tables")
    .split("\n")
    .filter((l) => l.startsWith("table "))
    .map((l) => l.split(" ")[2]!);

/**
 * The lock tables (criu's CRIU-<run id>) whose rules or elements name port `port`: the
 * locks of connections on it. Other test files run beside this one and lock their own
 * connections meanwhile: a test looks for its own lock, not for a change in the whole list.
 */
export const locksOf = (port: number): string[] =>
  tables().filter((n) => n.startsWith("CRIU-") && new RegExp(`(^|[^0-9])${port}([^0-9]|$)`).test(bridge().nftRun(`list table inet ${n}`)));

/** The nftables table of a dump's lock (criu's name: CRIU-<run id>, 26 characters at most). */
export async function lockTable(dir: string): Promise<string> {
  const inv = (await readImage(join(dir, "inventory.img"))).entries[0]!;
  return `CRIU-${String(inv["dump_criu_run_id"])}`.slice(0, 26);
}

/** Removes the lock table of the dump in `dir` at teardown if it is still there. */
export async function dropLockAtTeardown(t: ExecutionContext, dir: string): Promise<string> {
  const table = await lockTable(dir);
  t.teardown(() => {
    if (tables().includes(table)) bridge().nftRun(`delete table inet ${table}`);
  });
  return table;
}

/**
 * A table of the test's that drops every TCP segment sent from port `from` (0: any) to
 * port `to` of each pair (FINs and ACKs lost on the way); returns its removal, also run
 * at teardown.
 */
export function dropSegments(t: ExecutionContext, pairs: [from: number, to: number][]): () => void {
  const table = `tscriu_test_drop_${process.pid}`;
  bridge().nftRun(
    [
      `add table inet ${table}`,
      `add chain inet ${table} out { type filter hook output priority 0; policy accept; }`,
      ...pairs.map(([from, to]) => `add rule inet ${table} out ${from ? `tcp sport ${from} ` : ""}tcp dport ${to} drop`),
    ].join("\n"),
  );
  let gone = false;
  const remove = (): void => {
    if (gone) return;
    gone = true;
    bridge().nftRun(`delete table inet ${table}`);
  };
  t.teardown(remove);
  return remove;
}
