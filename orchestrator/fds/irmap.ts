// criu's irmap (irmap.c): a path for an inode known only by device and inode number, found by
// walking directories where watched files usually are. inotify and fanotify name a watched
// inode by its file handle; a handle that does not open (a filesystem that encodes handles but
// cannot decode them, as procfs; a device no mount of tscriu's shows) leaves only this way to
// give the watch a path the restore can watch again.
//
// The places walked are criu's: the --irmap-scan-path directories first (the user said where to
// look), then criu's hints. A hint is walked whole, without following symlinks; "/." is the
// root alone. Every inode seen is remembered, so a later lookup finds it without walking.

import { lstatSync, readdirSync } from "node:fs";

/** criu's hints (irmap.c), in its order; `alone`: the path itself, not what is under it. */
const HINTS: readonly { path: string; alone?: true }[] = [
  { path: "/etc" },
  { path: "/var/spool" },
  { path: "/var/log" },
  { path: "/usr/share/dbus-1/services" },
  { path: "/usr/share/dbus-1/system-services" },
  { path: "/var/lib/polkit-1/localauthority" },
  { path: "/usr/share/polkit-1/actions" },
  { path: "/lib/udev" },
  { path: "/.", alone: true },
];

/** The kernel's dev_t as fdinfo shows it (major << 20 | minor) of a stat's st_dev. */
function kernelDev(dev: bigint): number {
  const major = Number((dev >> 8n) & 0xfffn);
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & 0xfff00n));
  return ((major << 20) | minor) >>> 0;
}

function key(sdev: number, ino: bigint): string {
  return `${sdev}:${ino}`;
}

export interface IrmapOptions {
  /** --force-irmap: walk for the path of a watched inode whose handle does not open, on a device tscriu has a mount of */
  force: boolean;
  /** --irmap-scan-path: walked before the hints */
  scanPaths: readonly string[];
}

export class Irmap {
  /** every inode seen by a walk: its path */
  private readonly seen = new Map<string, string>();

  constructor(readonly opts: IrmapOptions) {}

  /** A path of inode `ino` of device `sdev` (kernel dev_t), or undefined when no place walked has it. */
  lookup(sdev: number, ino: bigint): string | undefined {
    const known = this.seen.get(key(sdev, ino));
    // a file seen earlier may have been removed or replaced since
    if (known !== undefined && this.is(known, sdev, ino)) return known;
    for (const root of [...this.opts.scanPaths.map((path) => ({ path, alone: false })), ...HINTS.map((h) => ({ path: h.path, alone: h.alone === true }))]) {
      const found = this.walk(root.path, root.alone, sdev, ino);
      if (found !== undefined) return found;
    }
    return undefined;
  }

  private is(path: string, sdev: number, ino: bigint): boolean {
    try {
      const st = lstatSync(path, { bigint: true });
      return st.ino === ino && kernelDev(st.dev) === sdev;
    } catch {
      return false;
    }
  }

  /** Depth first as criu: the path itself, then each entry under it. */
  private walk(path: string, alone: boolean, sdev: number, ino: bigint): string | undefined {
    let st;
    try {
      st = lstatSync(path, { bigint: true });
    } catch {
      // criu only warns about a place it cannot stat (a hint this system does not have)
      return undefined;
    }
    const dev = kernelDev(st.dev);
    this.seen.set(key(dev, st.ino), path);
    if (dev === sdev && st.ino === ino) return path;
    if (alone || !st.isDirectory()) return undefined;
    let names: string[];
    try {
      names = readdirSync(path);
    } catch {
      return undefined;
    }
    const base = path.endsWith("/") ? path : `${path}/`;
    for (const name of names) {
      const found = this.walk(base + name, false, sdev, ino);
      if (found !== undefined) return found;
    }
    return undefined;
  }
}
