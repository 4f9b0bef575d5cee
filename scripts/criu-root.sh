#!/usr/bin/env bash
# A Debian trixie root holding criu 4.x, so that the tests can check that criu itself
# restores tscriu's images (test/criu-restore.test.ts). Debian bookworm only has criu
# 3.17, which does not start on this kernel ("Unexpected rt vDSO area bounds"), and
# trixie's criu needs a newer glibc than bookworm's, hence a root of its own.
#
#   criu-root.sh create DIR            debootstrap trixie with criu into DIR (a no-op
#                                      when DIR/usr/sbin/criu is there already)
#   criu-root.sh run DIR REPO CMD...   run CMD with DIR as / in a new mount namespace,
#                                      with /proc, a minimal /dev, /tmp and REPO (at the
#                                      same path) from this system
#
# criu checks the mount tree of the namespace it runs in (a chroot confuses it), and
# cannot dump or restore files on a bind mount of the host's /dev, hence pivot_root and
# a /dev of its own with the usual character devices.
set -euo pipefail

usage() {
	echo "usage: $0 create DIR | run DIR REPO CMD..." >&2
	exit 2
}

[ $# -ge 2 ] || usage
verb=$1
dir=$(realpath -m "$2")

case "$verb" in
create)
	if [ -x "$dir/usr/sbin/criu" ]; then exit 0; fi
	command -v debootstrap >/dev/null || { echo "$0: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
	mkdir -p "$dir"
	tmp="$dir.tmp-$$"
	rm -rf "$tmp"
	if ! debootstrap --variant=minbase --include=criu trixie "$tmp" http://deb.debian.org/debian >"$tmp.log" 2>&1; then
		rm -rf "$tmp"
		echo "$0: debootstrap failed, see $tmp.log" >&2
		exit 1
	fi
	rm -rf "$dir" "$tmp.log"
	mv "$tmp" "$dir"
	;;
run)
	[ $# -ge 4 ] || usage
	exec unshare -m bash "$0" _inside "$dir" "$(realpath "$3")" "${@:4}"
	;;
_inside)
	repo=$3
	shift 3
	mount --make-rprivate /
	mount --bind "$dir" "$dir"
	mount -t proc proc "$dir/proc"
	mount -t tmpfs -o mode=755 tscriu-dev "$dir/dev"
	mknod -m 666 "$dir/dev/null" c 1 3
	mknod -m 666 "$dir/dev/zero" c 1 5
	mknod -m 666 "$dir/dev/full" c 1 7
	mknod -m 666 "$dir/dev/random" c 1 8
	mknod -m 666 "$dir/dev/urandom" c 1 9
	mknod -m 666 "$dir/dev/tty" c 5 0
	mkdir "$dir/dev/pts"
	mount -t devpts -o newinstance,ptmxmode=0666 devpts "$dir/dev/pts"
	ln -s pts/ptmx "$dir/dev/ptmx"
	mount --bind /tmp "$dir/tmp"
	mkdir -p "$dir$repo"
	mount --bind "$repo" "$dir$repo"
	cd "$dir"
	mkdir -p .old-root
	pivot_root . .old-root
	cd /
	umount -l /.old-root
	exec "$@"
	;;
*)
	usage
	;;
esac
