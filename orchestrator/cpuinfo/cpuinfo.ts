// criu's `cpuinfo dump` and `cpuinfo check`: write this CPU's capabilities to
// cpuinfo.img, or compare an image's with this CPU under --cpu-cap rules. The
// comparison itself is in the wasm core (wasm/cpu.ts); dump and restore --cpu-cap
// use the same functions.

import { join } from "node:path";
import { imageTypeByName } from "../../images/codec.js";
import { ImageError } from "../../images/errors.js";
import { readImage, writeImage } from "../../images/io.js";
import { compareCpuinfo, CPU_CAP_DEFAULT, cpuinfoCheckCaps, parseCpuCaps, type CpuCaps, type CpuCompareResult } from "../../wasm/index.js";
import { type CpuinfoX86, hostCpuinfo } from "./host.js";

export const CPUINFO_IMG = "cpuinfo.img";

/** The wasm core's view of a cpuinfo_x86_entry. */
export function toCpuCaps(e: CpuinfoX86): CpuCaps {
  return {
    vendorId: typeof e.vendor_id === "string" ? e.vendor_id : e.vendor_id,
    cpuFamily: e.cpu_family,
    model: e.model,
    stepping: e.stepping,
    capabilityVer: e.capability_ver,
    capability: e.capability ?? [],
    xfeaturesMask: e.xfeatures_mask,
    xsaveSize: e.xsave_size,
    xsaveSizeMax: e.xsave_size_max,
    modelId: e.model_id,
  };
}

/** Writes DIR/cpuinfo.img for this CPU. Refuses to replace an existing one. */
export async function cpuinfoDump(dir: string, opts: { overwrite?: boolean } = {}): Promise<CpuinfoX86> {
  const entry = hostCpuinfo();
  await writeImage(join(dir, CPUINFO_IMG), { type: imageTypeByName("CPUINFO")!, entries: [{ x86_entry: [entry] }] }, {
    overwrite: opts.overwrite === true,
    sync: true,
  });
  return entry;
}

/** Reads the x86 entry of DIR/cpuinfo.img. */
export async function readCpuinfo(dir: string): Promise<CpuinfoX86> {
  const file = join(dir, CPUINFO_IMG);
  const img = await readImage(file);
  if (img.type.name !== "CPUINFO") throw new ImageError(`not a cpuinfo image (magic ${img.type.name})`, { file });
  const x86 = (img.entries[0]?.["x86_entry"] as CpuinfoX86[] | undefined)?.[0];
  if (!x86) throw new ImageError("no x86 entry in the cpuinfo image (made on another architecture?)", { file });
  return x86;
}

/**
 * Compares DIR/cpuinfo.img with this CPU. `cpuCap` is the --cpu-cap argument as
 * criu reads it: items change criu's default fpu,ins ("fpu" alone still checks
 * ins; "^ins" leaves fpu; "none" turns into every check for cpuinfo check);
 * null is the option without a value (every check); undefined, no option.
 */
export async function cpuinfoCheck(dir: string, cpuCap?: string | null): Promise<CpuCompareResult> {
  const image = await readCpuinfo(dir);
  const caps = cpuinfoCheckCaps(cpuCap === undefined ? CPU_CAP_DEFAULT : parseCpuCaps(cpuCap ?? undefined, CPU_CAP_DEFAULT));
  return compareCpuinfo(toCpuCaps(image), toCpuCaps(hostCpuinfo()), caps);
}
