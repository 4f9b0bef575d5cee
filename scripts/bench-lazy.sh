#!/usr/bin/env bash
# Local lazy restore of a big task, tscriu vs criu: time from starting
# `restore --lazy-pages` until the lazy-pages daemon exits (every page is in),
# plus the restore command's own wall time (what the task sees).
#
# usage: scripts/bench-lazy.sh [PAIRS] [MIB]        (run as root)
#   PAIRS   interleaved tscriu/criu pairs (default 3); the order alternates
#   MIB     size of the bigmem workload (default 1024)
# env:
#   CRIU=/work/criu-4.2/criu/criu   the criu binary to compare with
#   DUMP_WITH=tscriu|criu           who makes the images for criu's runs
#                                   (default tscriu: both tools restore tscriu's
#                                   images; tscriu's runs always use its own)
#   BENCH_DIR=DIR                   scratch directory (default: mktemp under /tmp)
#   KEEP=1                          keep the scratch directory (logs)
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TSCRIU=("$ROOT/dist/cli/tscriu.cjs")
CRIU=${CRIU:-/work/criu-4.2/criu/criu}
WORKLOAD=$ROOT/test/workloads/bin/static/bigmem
PAIRS=${1:-3}
MIB=${2:-1024}
DUMP_WITH=${DUMP_WITH:-tscriu}
export CRIU_FAULT=130 # only criu reads it

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/bench-lazy.XXXXXX)}
mkdir -p "$BENCH_DIR"

WPID=   # the workload as started (setsid), until reaped
DAEMON= # the current lazy-pages daemon, until reaped
TASK=   # the current workload / restored task

now_ns() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }

gone() { # wait until pid $1 no longer exists (its zombie reaped too)
	local i
	for ((i = 0; i < 600; i++)); do
		[ -e "/proc/$1" ] || return 0
		sleep 0.05
	done
	echo "pid $1 still there" >&2
	return 1
}

cleanup() {
	[ -n "$TASK" ] && kill -9 "$TASK" 2>/dev/null
	[ -n "$DAEMON" ] && kill -9 "$DAEMON" 2>/dev/null
	[ -n "$WPID" ] && kill -9 "$WPID" 2>/dev/null
	wait 2>/dev/null
	[ "${KEEP:-0}" = 1 ] || rm -rf "$BENCH_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start the workload, wait for "ready PID", dump it with $1; sets TASK
make_images() { # tool img state
	local tool=$1 img=$2 state=$3 i
	mkdir -p "$img" "$state"
	setsid "$WORKLOAD" "$state" "$MIB" >"$state/out" 2>&1 </dev/null &
	WPID=$!
	disown "$WPID" # no "Killed" notice when the dump kills it; bash still reaps it
	TASK=
	for ((i = 0; i < 1200; i++)); do
		TASK=$(awk '$1 == "ready" { print $2; exit }' "$state/out")
		[ -n "$TASK" ] && break
		sleep 0.05
	done
	[ -n "$TASK" ] || { echo "workload not ready: $(cat "$state/out")" >&2; return 1; }
	if [ "$tool" = criu ]; then
		"$CRIU" dump -t "$TASK" -D "$img" -o dump.log || { echo "criu dump failed, see $img/dump.log" >&2; return 1; }
	else
		"${TSCRIU[@]}" dump -t "$TASK" -D "$img" -o dump.log || { echo "tscriu dump failed, see $img/dump.log" >&2; return 1; }
	fi
	WPID=
	gone "$TASK"
}

# one lazy restore; sets R_ALL (until the daemon exits) and R_RST (restore command), in ms
run_one() { # tool n
	local tool=$1 n=$2 img=$BENCH_DIR/$1-$2/img state=$BENCH_DIR/$1-$2/state
	local dumper=tscriu t0 t1 t2 i
	[ "$tool" = criu ] && dumper=$DUMP_WITH
	make_images "$dumper" "$img" "$state" || return 1
	if [ "$tool" = criu ]; then
		"$CRIU" lazy-pages -D "$img" -o lazy.log -v4 &
	else
		"${TSCRIU[@]}" lazy-pages -D "$img" -o lazy.log -v4 &
	fi
	DAEMON=$!
	# the restore connects to the daemon's socket in the images directory
	for ((i = 0; i < 400; i++)); do
		[ -S "$img/lazy-pages.socket" ] && break
		sleep 0.025
	done
	[ -S "$img/lazy-pages.socket" ] || sleep 1
	t0=$(now_ns)
	if [ "$tool" = criu ]; then
		"$CRIU" restore -D "$img" -d --lazy-pages -o restore.log
	else
		"${TSCRIU[@]}" restore -D "$img" -d --lazy-pages -o restore.log
	fi
	local rc=$?
	t1=$(now_ns)
	if [ $rc -ne 0 ]; then
		echo "$tool restore failed ($rc), see $img/restore.log" >&2
		kill -9 "$DAEMON" 2>/dev/null
		wait "$DAEMON" 2>/dev/null
		DAEMON=
		return 1
	fi
	wait "$DAEMON"
	local drc=$?
	t2=$(now_ns)
	DAEMON=
	[ $drc -eq 0 ] || echo "$tool lazy-pages exited with $drc, see $img/lazy.log" >&2
	# the task must really be alive with all its memory, then it goes
	if ! [ -e "/proc/$TASK" ]; then
		echo "$tool: restored task $TASK is not running" >&2
		return 1
	fi
	echo "  $tool #$n: $(tail -n 1 "$img/lazy.log" | sed 's/^ *//' | cut -c1-120)" >&2
	kill -9 "$TASK" 2>/dev/null
	gone "$TASK"
	TASK=
	[ "${KEEP:-0}" = 1 ] || rm -rf "$img/pages-"*.img
	R_ALL=$(ms "$t0" "$t2")
	R_RST=$(ms "$t0" "$t1")
}

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -a TS_ALL TS_RST CR_ALL CR_RST
echo "lazy restore of a ${MIB} MiB task, $PAIRS interleaved pairs; criu images by $DUMP_WITH; scratch $BENCH_DIR" >&2
for ((p = 1; p <= PAIRS; p++)); do
	if ((p % 2)); then order="tscriu criu"; else order="criu tscriu"; fi
	for tool in $order; do
		run_one "$tool" "$p" || exit 1
		all=$R_ALL rst=$R_RST
		printf 'pair %d %-6s until last page %6d ms   restore command %6d ms\n' "$p" "$tool" "$all" "$rst"
		if [ "$tool" = tscriu ]; then TS_ALL+=("$all"); TS_RST+=("$rst"); else CR_ALL+=("$all"); CR_RST+=("$rst"); fi
	done
done

mt=$(median "${TS_ALL[@]}"); mc=$(median "${CR_ALL[@]}")
rt=$(median "${TS_RST[@]}"); rc=$(median "${CR_RST[@]}")
echo "median until last page: tscriu $mt ms, criu $mc ms, tscriu/criu $(awk -v a="$mt" -v b="$mc" 'BEGIN { printf "%.2f", a / b }')"
echo "median restore command: tscriu $rt ms, criu $rc ms, tscriu/criu $(awk -v a="$rt" -v b="$rc" 'BEGIN { printf "%.2f", a / b }')"
