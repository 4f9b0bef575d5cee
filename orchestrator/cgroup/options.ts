// --manage-cgroups, --cgroup-root and --cgroup-yard as criu reads them (its config.c), from
// the command line and from the RPC's criu_opts.

/** criu's restore modes (the dump knows only ignore: no cgroup walked) */
export type CgroupMode = "ignore" | "none" | "props" | "soft" | "full" | "strict";
export const CGROUP_MODES: readonly CgroupMode[] = ["ignore", "none", "props", "soft", "full", "strict"];

/** --cgroup-root [controller:]/newroot */
export interface CgroupRoot {
  controller?: string | undefined;
  root: string;
}

/** --manage-cgroups[=MODE]: no value is soft, criu's default too when the option is absent. */
export function parseCgroupMode(v: string | undefined): CgroupMode {
  if (v === undefined || v === "") return "soft";
  if ((CGROUP_MODES as readonly string[]).includes(v)) return v as CgroupMode;
  throw new Error(`--manage-cgroups ${v}: not a mode (${CGROUP_MODES.join(", ")})`);
}

export function parseCgroupRoot(v: string): CgroupRoot {
  const i = v.indexOf(":");
  const root = i < 0 ? v : v.slice(i + 1);
  if (!root.startsWith("/")) throw new Error(`--cgroup-root ${v}: the new root must be an absolute cgroup path ([controller:]/path)`);
  return i < 0 ? { root } : { controller: v.slice(0, i), root };
}

const RPC_MODES: Readonly<Record<string, CgroupMode | undefined>> = { IGNORE: "ignore", CG_NONE: "none", PROPS: "props", SOFT: "soft", FULL: "full", STRICT: "strict", DEFAULT: "soft" };
const RPC_MODE_NUMBERS: readonly (CgroupMode | undefined)[] = ["ignore", "none", "props", "soft", "full", "strict", "soft"];

/** criu_opts.manage_cgroups_mode (enum criu_cg_mode, by name or number); soft without it (manage_cgroups too). */
export function rpcCgroupMode(mode: string | number | undefined): CgroupMode {
  if (mode === undefined) return "soft";
  const m = typeof mode === "number" ? RPC_MODE_NUMBERS[mode] : RPC_MODES[mode];
  if (!m) throw new Error(`criu_opts.manage_cgroups_mode ${String(mode)}: not a criu_cg_mode`);
  return m;
}

export function rpcCgroupRoots(roots: readonly { ctrl?: string | undefined; path: string }[] | undefined): CgroupRoot[] {
  return (roots ?? []).map((r) => parseCgroupRoot(r.ctrl !== undefined && r.ctrl !== "" ? `${r.ctrl}:${r.path}` : r.path));
}
