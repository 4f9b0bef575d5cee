#!/usr/bin/env bash
# Builds wasm/core.wasm from the freestanding C in core-c/ with Debian's
# emscripten (emcc -O3 -sSTANDALONE_WASM --no-entry; no JS glue, no libc I/O).
#
#   bash scripts/build-wasm.sh           rebuild wasm/core.wasm
#   bash scripts/build-wasm.sh --check   build to a temp file and compare with the
#                                        committed wasm/core.wasm; exit 1 if they differ
#
# The output is byte-reproducible: sources are compiled from inside core-c/ in a
# fixed order, with no debug info and no paths in the module. Do not set
# EM_CACHE: Debian's cache is frozen and already holds what this needs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/wasm/core.wasm"
mode=build
case "${1:-}" in
--check) mode=check ;;
"") ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

if ! command -v emcc >/dev/null 2>&1; then
	echo "build-wasm: emcc not found; install Debian's emscripten (apt-get install emscripten)" >&2
	exit 1
fi

# 4 MiB + 64 KiB of exchange buffer, 64 KiB of stack, a little static data:
# 5 MiB of memory, fixed (no growth), nothing imported.
flags=(
	-O3
	-msimd128
	-std=c11
	-Wall -Wextra -Werror
	-sSTANDALONE_WASM
	--no-entry
	-sFILESYSTEM=0
	-sALLOW_MEMORY_GROWTH=0
	-sINITIAL_MEMORY=5MB
	-sTOTAL_STACK=64KB
	-sSUPPORT_ERRNO=0
)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$root/core-c"
mapfile -t sources < <(LC_ALL=C ls -- *.c)
emcc "${flags[@]}" "${sources[@]}" -o "$tmp/core.wasm"

if [[ $mode == check ]]; then
	if [[ ! -f $out ]]; then
		echo "build-wasm --check: $out is missing; run: bash scripts/build-wasm.sh" >&2
		exit 1
	fi
	if ! cmp -s "$tmp/core.wasm" "$out"; then
		echo "build-wasm --check: wasm/core.wasm differs from a fresh build of core-c/" >&2
		echo "  committed: $(wc -c <"$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1)" >&2
		echo "  rebuilt:   $(wc -c <"$tmp/core.wasm") bytes, sha256 $(sha256sum "$tmp/core.wasm" | cut -d' ' -f1)" >&2
		echo "  toolchain: $(emcc --version | head -n1)" >&2
		echo "  rebuild with: bash scripts/build-wasm.sh, and commit wasm/core.wasm" >&2
		exit 1
	fi
	echo "build-wasm --check: wasm/core.wasm is up to date ($(wc -c <"$out") bytes)"
	exit 0
fi

mkdir -p "$(dirname "$out")"
cp "$tmp/core.wasm" "$out"
echo "build-wasm: wrote wasm/core.wasm ($(wc -c <"$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))"
