#!/bin/bash
# criu's zdtm test harness (criu's source tree, test/zdtm.py) driving tscriu: zdtm.py runs
# this file as its criu (`--criu-bin scripts/zdtm-shim.sh`), and it runs tscriu's bin with
# zdtm's arguments, except those that criu accepts where it does not use them: two that
# zdtm passes to every dump, `--pidfile FILE` (criu writes a pidfile on restore and for daemons
# only) and `--pre-dump-mode MODE` (read by pre-dump only); `--link-remap` and
# `--skip-in-flight`, which zdtm gives a test's restore as well as its dump (criu reads
# them at dump only: in-flight connections are a listener's, left out of the images), as are
# `--force-irmap` and `--irmap-scan-path DIR`; and a test's own dump options that zdtm gives
# its pre-dumps too, where criu takes them without using them (`--tcp-established`: a pre-dump
# takes memory only; the irmap options, which fill only criu's irmap cache at pre-dump). tscriu refuses an option on a
# command where it does nothing, so they are dropped here. A dump also gets
# `--network-lock nftables` unless zdtm gives a method: criu's default lock is iptables,
# which these machines do not have.
#
# Use, from criu's test directory (zdtm imports pycriu: build it first with `make lib` in
# criu's tree; zdtm wants Debian's python3, which has protobuf):
#   python3 zdtm.py run -t zdtm/static/NAME -f h --criu-bin /path/to/tscriu/scripts/zdtm-shim.sh \
#     --crit-bin /path/to/criu/crit/crit -k always
# Only the host flavour (-f h) makes sense today: tscriu does not restore namespaces yet.
here=$(dirname "$(readlink -f "$0")")
bin=${TSCRIU_BIN:-$here/../dist/cli/tscriu.cjs}
if [ "$1" = dump ] || [ "$1" = pre-dump ]; then
	cmd=$1
	shift
	args=()
	lock=
	while [ $# -gt 0 ]; do
		case "$1" in
		--pidfile) shift 2 ;;
		--pre-dump-mode) [ "$cmd" = pre-dump ] && args+=("$1" "$2"); shift 2 ;;
		--tcp-established | --force-irmap) [ "$cmd" = dump ] && args+=("$1"); shift ;;
		--irmap-scan-path) [ "$cmd" = dump ] && args+=("$1" "$2"); shift 2 ;;
		--network-lock) lock=1; args+=("$1" "$2"); shift 2 ;;
		*) args+=("$1"); shift ;;
		esac
	done
	[ -n "$lock" ] || [ "$cmd" != dump ] || args+=(--network-lock nftables)
	exec "$bin" "$cmd" "${args[@]}"
fi
if [ "$1" = restore ]; then
	args=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--link-remap | --skip-in-flight | --force-irmap) shift ;;
		--irmap-scan-path) shift 2 ;;
		*) args+=("$1"); shift ;;
		esac
	done
	exec "$bin" "${args[@]}"
fi
exec "$bin" "$@"
