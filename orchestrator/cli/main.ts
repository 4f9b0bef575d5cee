#!/usr/bin/env node
// The tscriu command. Kept tiny: everything is in run.ts so tests can call it in-process.
import { run } from "./run.js";

process.exitCode = await run(process.argv.slice(2));
