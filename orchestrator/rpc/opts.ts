// criu_opts judged field by field, before a request runs: every field a client set is
// either honoured or refused with a message naming it, never ignored. A field that is
// one of criu's command-line options is judged by that option's row (cli/options.ts);
// the few that exist only in the RPC are judged here.

import { existsSync } from "node:fs";
import type { Entry } from "../../images/schema/dsl.js";
import type { criu_opts } from "../../images/schema/rpc.js";
import { criuOptionByRpc, support, type CriuCommand } from "../cli/options.js";

export type CriuOpts = Entry<typeof criu_opts>;

/** How tscriu runs the RPC: `swrk` (the client's own child) or a standalone `service`. */
export type RpcMode = "swrk" | "service";

interface RpcOnlyField {
  /** the criu commands it means something for */
  takes: readonly CriuCommand[];
  /** the commands tscriu honours it for */
  tscriu: readonly CriuCommand[];
  /** what it is, for the refusal */
  what: string;
}

const IMAGE_COMMANDS: readonly CriuCommand[] = ["dump", "pre-dump", "restore", "page-server", "cpuinfo dump", "cpuinfo check"];

/** criu_opts fields that no command-line option stands for. */
const RPC_ONLY: Readonly<Record<string, RpcOnlyField>> = {
  images_dir_fd: { takes: [...IMAGE_COMMANDS, "check"], tscriu: ["dump", "pre-dump", "restore", "page-server", "cpuinfo dump", "cpuinfo check", "check"], what: "the images directory as an fd of the client" },
  notify_scripts: { takes: ["dump", "pre-dump", "restore"], tscriu: ["dump", "pre-dump", "restore"], what: "the action-script stages sent to the client (NOTIFY)" },
  log_to_stderr: { takes: [...IMAGE_COMMANDS, "check"], tscriu: ["dump", "pre-dump", "restore", "page-server", "check", "cpuinfo dump", "cpuinfo check"], what: "log to stderr instead of a file" },
  exec_cmd: { takes: ["restore"], tscriu: [], what: "a command to exec once the restore is done" },
  manage_cgroups: { takes: ["dump", "restore"], tscriu: ["dump", "restore"], what: "--manage-cgroups (soft)" },
  auto_ext_mnt: { takes: ["dump", "restore"], tscriu: [], what: "external mounts found automatically" },
  ext_sharing: { takes: ["dump", "restore"], tscriu: [], what: "external mount sharing" },
  ext_masters: { takes: ["dump", "restore"], tscriu: [], what: "external mount masters" },
  unix_sk_ino: { takes: ["dump"], tscriu: ["dump"], what: "external unix sockets by inode" },
  // at dump too: criu then lets a pty slave's master be outside the tree (runc sends it with every DUMP)
  orphan_pts_master: { takes: ["dump", "restore"], tscriu: [], what: "the master of an orphan pty sent to the client" },
  pidfd_store_sk: { takes: ["dump", "pre-dump"], tscriu: ["dump", "pre-dump"], what: "a pidfd store socket" },
};

/** A field that asks for nothing: unset, false, or an empty list. */
function unset(v: unknown): boolean {
  return v === undefined || v === false || (Array.isArray(v) && v.length === 0);
}

/**
 * The refusals of `opts` for `command`, one message per field, each naming the field (and
 * the command-line option it stands for). Empty: every field set is honoured.
 */
export function refuseOpts(opts: CriuOpts, command: CriuCommand, mode: RpcMode): string[] {
  const out: string[] = [];
  for (const [field, value] of Object.entries(opts)) {
    if (unset(value)) continue;
    // images_dir_fd is required by the schema and -1 means "not given".
    if (field === "images_dir_fd" && value === -1) continue;
    // criu's default log level is 2 whatever the command.
    if (field === "log_level") continue;
    if ((field === "rst_sibling" || field === "inherit_fd") && mode === "service") {
      out.push(`criu_opts.${field} is not allowed in a standalone service (swrk only, as in criu)`);
      continue;
    }
    if (field === "config_file") {
      const refused = judgeConfigFile(opts.config_file ?? "", command);
      if (refused !== undefined) out.push(refused);
      continue;
    }
    // ps names the page server a dump sends to (--page-server) and, in PAGE_SERVER,
    // where the server listens (--address, --port)
    if (field === "ps" && command === "page-server") continue;
    const row = criuOptionByRpc(field);
    if (row) {
      const s = support(row, command);
      if (s === "not-yet") out.push(`criu_opts.${field} (--${row.name}) is not supported yet by tscriu ${command}`);
      else if (s === "not-taken") out.push(`criu_opts.${field} (--${row.name}) is not an option of ${command} (criu takes it with ${row.takes.join(", ")})`);
      continue;
    }
    const only = RPC_ONLY[field];
    if (!only) {
      out.push(`criu_opts.${field} is unknown to tscriu`);
      continue;
    }
    if (only.tscriu.includes(command)) continue;
    out.push(only.takes.includes(command) ? `criu_opts.${field} (${only.what}) is not supported yet by tscriu ${command}` : `criu_opts.${field} (${only.what}) is not an option of ${command}`);
  }
  return out;
}

/**
 * criu_opts.config_file: criu reads that file over the request's settings, and skips it
 * when it does not exist (runc names /etc/criu/runc.conf in every request; few machines
 * have one). tscriu does the same with a missing file; one that exists it does not read
 * over the RPC yet, so it is refused rather than ignored.
 */
function judgeConfigFile(path: string, command: CriuCommand): string | undefined {
  if (!existsSync(path)) return undefined;
  return `criu_opts.config_file ${JSON.stringify(path)} (--config) is not supported yet by tscriu ${command} over the RPC: the file exists and its options would override the request's`;
}

/**
 * criu_opts.cpu_cap (criu's CPU_CAP_* bits) as the --cpu-cap text the CLI takes: each of
 * fpu, cpu and ins named or negated, so that the bits mean exactly what they say.
 */
export function cpuCapText(mask: number): string {
  if ((mask & 7) === 0) return "none";
  return ["fpu", "cpu", "ins"].map((n, i) => (mask & (1 << i) ? n : `^${n}`)).join(",");
}
