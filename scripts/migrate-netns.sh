#!/usr/bin/env bash
# Live migration between two network namespaces of this machine, as between two hosts:
# "src" and "dst", joined by a veth pair, each with an address of its own. A task in src
# (test/workloads/incr: MIB of memory, 1 % of it written every 100 ms, every page checked
# on SIGUSR1) is pre-dumped again and again to a page server in dst until the pages it
# wrote since the last pass are few, then dumped (and killed) over the page server; its
# other images are copied to dst (scp between real hosts) and it is restored there, in
# dst's network namespace. The script reports the passes, the bytes sent, the time the
# task stood still and the whole time, then asks the restored task to check its memory.
#
#   scripts/migrate-netns.sh [-m MIB] [-s STOP_PAGES] [-n MAX_PASSES] [-k] [-w DIR]
#     -m  the task's memory in MiB (default 256)
#     -s  stop pre-dumping once a pass sends fewer pages than this (default 2048), or
#         when it sends no fewer than nine tenths of the pass before (the task writes
#         as fast as the passes go: more passes would not shorten the final one)
#     -n  at most this many pre-dumps (default 8)
#     -k  keep the namespaces and the work dir (default: removed at exit)
#     -w  the work dir (default: a new one under /tmp)
# Needs root, iproute2 and a built tree (npm ci). Prints "migrated: PASS ..." at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLI="$ROOT/dist/orchestrator/cli/main.js"
TASK="$ROOT/test/workloads/bin/incr"
MIB=256
STOP=2048
MAX=8
KEEP=0
WORK=""
while getopts "m:s:n:kw:" o; do
	case $o in
	m) MIB=$OPTARG ;;
	s) STOP=$OPTARG ;;
	n) MAX=$OPTARG ;;
	k) KEEP=1 ;;
	w) WORK=$OPTARG ;;
	*) sed -n '12,18p' "$0" >&2; exit 2 ;;
	esac
done
[ -x "$TASK" ] && [ -f "$CLI" ] || { echo "build first: npm ci (missing $TASK or $CLI)" >&2; exit 2; }
command -v ip >/dev/null || { echo "iproute2's ip is needed" >&2; exit 2; }

TAG="tsm$$"
SRC="$TAG-src" DST="$TAG-dst"
SRC_IP=10.213.0.1 DST_IP=10.213.0.2
WORK=${WORK:-$(mktemp -d /tmp/tscriu-migrate-XXXXXX)}
mkdir -p "$WORK/task"
PID=""
cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
	pkill -f "page-server -D $WORK/" 2>/dev/null || true
	if [ "$KEEP" = 0 ]; then
		ip netns del "$SRC" 2>/dev/null || true
		ip netns del "$DST" 2>/dev/null || true
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# Two "hosts" and the wire between them.
ip netns add "$SRC"
ip netns add "$DST"
ip link add "$TAG-s" type veth peer name "$TAG-d"
ip link set "$TAG-s" netns "$SRC"
ip link set "$TAG-d" netns "$DST"
ip -n "$SRC" addr add "$SRC_IP/24" dev "$TAG-s"
ip -n "$DST" addr add "$DST_IP/24" dev "$TAG-d"
for ns in "$SRC" "$DST"; do ip -n "$ns" link set lo up; done
ip -n "$SRC" link set "$TAG-s" up
ip -n "$DST" link set "$TAG-d" up

# nsenter, not ip netns exec: that one also gives each command a mount namespace of its
# own, and a task in another mount namespace than its dumper is not dumped yet.
in_src() { nsenter --net="/run/netns/$SRC" "$@"; }
in_dst() { nsenter --net="/run/netns/$DST" "$@"; }
now() { date +%s.%N; }
stat_of() { awk -v k="$1" -F': ' '$1 == k { print $2 + 0 }' "$2"; }

# The task, started in src.
# (setsid -f: not a job of this shell, which would write "Killed" into its output)
in_src setsid -f "$TASK" "$WORK/task" "$MIB" >"$WORK/task/out" 2>&1 </dev/null
for _ in $(seq 200); do grep -q '^ready ' "$WORK/task/out" 2>/dev/null && break; sleep 0.05; done
PID=$(awk '/^ready /{print $2}' "$WORK/task/out")
[ -n "$PID" ] || { echo "the task did not start: $(cat "$WORK/task/out")" >&2; exit 1; }
echo "task $PID in $SRC with $MIB MiB; the page server listens in $DST at $DST_IP"

PORT=$((20000 + $$ % 20000))
T0=$(now)
SENT=0
# pass N KIND: a page server in dst for this pass (its parent the previous pass), then
# KIND (pre-dump or dump) in src with its pages sent there.
pass() {
	local n=$1 kind=$2 prev=$(($1 - 1))
	local sparent=() dparent=()
	if [ "$n" -gt 1 ]; then
		sparent=(--prev-images-dir "../src$prev")
		dparent=(--prev-images-dir "../dst$prev")
	fi
	in_dst node "$CLI" page-server -D "$WORK/dst$n" --address "$DST_IP" --port "$PORT" "${dparent[@]}" -o "$WORK/ps$n.log" -v4 &
	local server=$!
	for _ in $(seq 200); do grep -q "page server on" "$WORK/ps$n.log" 2>/dev/null && break; sleep 0.02; done
	in_src node "$CLI" "$kind" -t "$PID" -D "$WORK/src$n" "${sparent[@]}" --page-server --address "$DST_IP" --port "$PORT" \
		--display-stats -v4 -o "$WORK/$kind$n.log" >"$WORK/stats$n"
	wait "$server" || { echo "the page server of pass $n failed: $(tail -2 "$WORK/ps$n.log")" >&2; exit 1; }
	local written frozen
	written=$(stat_of "Memory pages written" "$WORK/stats$n")
	frozen=$(stat_of "Frozen time" "$WORK/stats$n")
	SENT=$((SENT + written * 4096))
	printf '%-8s %d: %6d pages sent, %6d from the parent, frozen %d ms\n' "$kind" "$n" "$written" \
		"$(stat_of "Memory pages skipped from parent" "$WORK/stats$n")" $((frozen / 1000))
	LAST_WRITTEN=$written
	LAST_FROZEN=$frozen
	PORT=$((PORT + 1))
}

n=1
pass $n pre-dump
PREV_WRITTEN=$((LAST_WRITTEN * 2))
while [ "$LAST_WRITTEN" -ge "$STOP" ] && [ $((LAST_WRITTEN * 10)) -lt $((PREV_WRITTEN * 9)) ] && [ "$n" -lt "$MAX" ]; do
	PREV_WRITTEN=$LAST_WRITTEN
	n=$((n + 1))
	pass $n pre-dump
done
n=$((n + 1))
pass $n dump
T1=$(now)

# The other images go to the destination (scp between real hosts); then restore there.
cp "$WORK/src$n"/*.img "$WORK/dst$n/"
# On one machine the task's pid is free only once its parent reaped it; a real
# destination host has it free already, so the wait is not counted.
for _ in $(seq 400); do [ -e "/proc/$PID" ] || break; sleep 0.025; done
RESTORE0=$(now)
in_dst node "$CLI" restore -D "$WORK/dst$n" -d -o "$WORK/restore.log" -v4
T2=$(now)
[ "$(readlink "/proc/$PID/ns/net")" = "$(in_dst readlink /proc/self/ns/net)" ] || { echo "pid $PID is not in $DST's network namespace" >&2; exit 1; }
lines() { if [ -f "$WORK/task/result" ]; then wc -l <"$WORK/task/result"; else echo 0; fi; }
before=$(lines)
kill -USR1 "$PID"
for _ in $(seq 600); do [ "$(lines)" -gt "$before" ] && break; sleep 0.05; done
CHECK=$(tail -1 "$WORK/task/result")
printf 'passes: %d pre-dumps and a dump; sent %d MiB of pages\n' $((n - 1)) $((SENT >> 20))
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
TOTAL=$(awk -v a="$T0" -v b="$T1" -v c="$RESTORE0" -v d="$T2" 'BEGIN { printf "%.2f", (b - a) + (d - c) }')
printf 'frozen %d ms (the final dump); dump passes %s s, restore %s s, total %s s\n' $((LAST_FROZEN / 1000)) \
	"$(secs "$T0" "$T1")" "$(secs "$RESTORE0" "$T2")" "$TOTAL"
awk -v f="$LAST_FROZEN" -v a="$RESTORE0" -v b="$T2" 'BEGIN { printf "downtime %.2f s (frozen in the final dump, then restored)\n", f / 1e6 + (b - a) }'
case $CHECK in
PASS*) echo "migrated: $CHECK (pid $PID runs in $DST)" ;;
*) echo "migrated, but the task's check failed: $CHECK" >&2; exit 1 ;;
esac
