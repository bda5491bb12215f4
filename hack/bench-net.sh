#!/usr/bin/env bash
# Child -> host TCP throughput per network driver (RootlessKit's hack/benchmark-iperf3-net.sh
# shape): iperf3 server on the host, client inside `rootlesskit --net=DRIVER` to the gateway
# (10.0.2.2, which the driver maps to the host's loopback). Ours and the Go reference run
# interleaved in the same run.
#
#   sudo bash hack/bench-net.sh [SECONDS] [ROUNDS]      (as root: runs the kits as rktest)
#
# Knobs: RK_OURS (default target/release/rootlesskit), RK_REF (default /usr/bin/rootlesskit),
# RK_BENCH_USER (default rktest), RK_NET_DRIVERS (default "slirp4netns pasta"), RK_MTU (65520).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
ours=$(readlink -f "${RK_OURS:-target/release/rootlesskit}")
ref=${RK_REF:-/usr/bin/rootlesskit}
user=${RK_BENCH_USER:-rktest}
mtu=${RK_MTU:-65520}
port=$((20000 + RANDOM % 20000))
run_as() { if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi; }

iperf3 -s -p "$port" -D --logfile /dev/null
trap 'pkill -f "iperf3 -s -p $port" || true' EXIT
sleep 0.3

# Does KIT support --net=DRIVER? (1.1.0 has no pasta)
supports() { "$1" --help 2>/dev/null | grep -q -- "$2"; }

declare -A sum
for r in $(seq 1 "$rounds"); do
	for d in ${RK_NET_DRIVERS:-slirp4netns pasta}; do
		for kit in ours ref; do
			bin=$ours; [ $kit = ref ] && bin=$ref
			supports "$bin" "$d" || continue
			out=$(cd /tmp && run_as "$bin" --net="$d" --mtu="$mtu" iperf3 -c 10.0.2.2 -p "$port" -t "$secs" -J 2>/dev/null) || { echo "round $r $d $kit: failed" >&2; continue; }
			g=$(python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' <<<"$out")
			echo "round $r: $d $kit $g Gbit/s" >&2
			sum[$d.$kit]="${sum[$d.$kit]:-} $g"
		done
	done
done
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{a[NR]=$1} END{if(NR==0){print "-"} else if(NR%2){print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
echo
echo "| driver (MTU $mtu, child -> host, iperf3 ${secs}s x $rounds, median) | ours | Go reference 1.1.0 |"
echo "|---|---|---|"
for d in ${RK_NET_DRIVERS:-slirp4netns pasta}; do
	o=$(median <<<"${sum[$d.ours]:-}"); f=$(median <<<"${sum[$d.ref]:-}")
	[ "$f" = - ] && f="n/a (no --net=$d in 1.1.0)"
	echo "| $d | $o Gbit/s | $f ${f:+$( [ "$f" != "${f#n/a}" ] || echo Gbit/s)} |"
done
