// A service spare's warm-up (orchestrator/rpc/warmup.ts), run here in the test's process:
// every round dumps and restores its throwaway task, from the second on with loopback
// TCP connections (--tcp-established); nothing goes wrong on the way (a failure would
// only be logged, and cost the warmth silently), and a client waiting cuts it short.
import test from "ava";
import { capturedLog } from "./helpers/log.js";
import { warmUp } from "../orchestrator/rpc/warmup.js";


test.serial("warm-up: six rounds, five of them with 16 loopback TCP connections dumped and restored, nothing failing", async (t) => {
  const { log, lines } = capturedLog();
  await warmUp(log.module("service"));
  const said = lines.filter((l) => l.includes("warm-up:"));
  t.is(said.length, 1, said.join(""));
  t.regex(said[0]!, /warm-up: 6 rounds in \d+ ms \(5 with 16 loopback TCP connections\)/);
});

test.serial("warm-up: a client waiting from the start stops it before its first round", async (t) => {
  const { log, lines } = capturedLog();
  await warmUp(log.module("service"), () => true);
  t.regex(lines.join(""), /warm-up: 0 rounds in \d+ ms \(0 with 16 loopback TCP connections\)/);
});
