#!/usr/bin/env bash
# Same-run A/B of rootlesskit builds on the small-message workloads, with the forwarder's CPU
# per unit of work and the TCP segments per crr connection on both legs.
#
#   sudo bash hack/bench-ab.sh ROUNDS SECS BIN_A BIN_B [BIN_C...]
#
# Rounds interleave the binaries. Each binary runs as the test user ($RK_TEST_USER, default
# rktest) with --net=slirp4netns --pidns --port-driver=builtin, nginx (1 worker, 512-byte page)
# and a sockperf server inside; per round it prints crr (wrk -c 32, Connection: close) req/s and
# launcher CPU µs per connection, host/namespace segments per connection, http (wrk -c 64,
# keep-alive) req/s and CPU µs per request, and sockperf 64-byte ping-pong latency. Needs root,
# wrk, nginx and sockperf (the side-by-side harness installs them).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench-ab.sh: run as root (it starts the builds as the test user)" >&2; exit 1; }
[ $# -ge 4 ] || { echo "usage: bench-ab.sh ROUNDS SECS BIN_A BIN_B [BIN...]" >&2; exit 2; }
R=$1 S=$2; shift 2
U=${RK_TEST_USER:-rktest}
for t in wrk nginx sockperf nsenter bc; do
  command -v $t >/dev/null || { echo "bench-ab.sh: $t missing (apt-get install wrk nginx-light sockperf util-linux bc)" >&2; exit 1; }
done
for b in "$@"; do [ -x "$b" ] || { echo "bench-ab.sh: $b is not an executable" >&2; exit 1; }; done
W=$(mktemp -d /tmp/rk-ab.XXXXXX); chmod 755 "$W"
mkdir -p "$W/www"; head -c 512 /dev/zero | tr '\0' x > "$W/www/index.html"
cat > "$W/nginx.conf" <<EOF
user root root;
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/t1; proxy_temp_path $W/t2; fastcgi_temp_path $W/t3;
  uwsgi_temp_path $W/t4; scgi_temp_path $W/t5;
  keepalive_requests 1000000;
  server { listen 8080; root $W/www; }
}
EOF
chown -R "$U" "$W"
HP=18380 SP=18381
KIT=
stop() {
  [ -n "$KIT" ] && kill "$KIT" 2>/dev/null && wait "$KIT" 2>/dev/null || true
  KIT=
}
trap 'stop; rm -rf "$W"' EXIT
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
as() { setpriv --reuid="$U" --regid="$(id -g "$U")" --init-groups "$@"; }
segs() { awk '/^Tcp:/{getline; print $12}' /proc/net/snmp; nsenter -t "$1" -n awk '/^Tcp:/{getline; print $12}' /proc/net/snmp; }
for r in $(seq "$R"); do
  for b in "$@"; do
    rm -rf "$W/state"
    setpriv --reuid="$U" --regid="$(id -g "$U")" --init-groups env HOME="$W" "$b" \
      --state-dir="$W/state" --net=slirp4netns --disable-host-loopback --pidns --port-driver=builtin \
      -p 127.0.0.1:$HP:8080/tcp -p 127.0.0.1:$SP:11111/tcp \
      sh -c "nginx -c $W/nginx.conf & sockperf sr --tcp -i 0.0.0.0 -p 11111 >/dev/null 2>&1 & wait" \
      >"$W/kit.log" 2>&1 &
    KIT=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$HP/" && break; sleep 0.1; done
    C=$(cat "$W/state/child_pid")
    s0=($(segs "$C")); c0=$(cpu $KIT)
    crr=$(as wrk -t 2 -c 32 -d "${S}s" -H 'Connection: close' "http://127.0.0.1:$HP/" | awk '/requests in/{print $1}')
    c1=$(cpu $KIT); s1=($(segs "$C"))
    http=$(as wrk -t 2 -c 64 -d "${S}s" "http://127.0.0.1:$HP/" | awk '/requests in/{print $1}')
    c2=$(cpu $KIT)
    rr=$(as sockperf pp --tcp -i 127.0.0.1 -p $SP -t "$S" -m 64 2>&1 | sed -n 's/.*avg-latency=\([0-9.]*\).*/\1/p')
    printf '%-24s round %s: crr %6.0f/s %5.1f us/conn segs host %.2f ns %.2f | http %7.0f/s %5.2f us/req | rr %s us\n' \
      "$(basename "$(dirname "$b")")/$(basename "$b")" "$r" \
      "$(echo "$crr/$S" | bc -l)" "$(echo "($c1-$c0)/$tck/$crr*1000000" | bc -l)" \
      "$(echo "(${s1[0]}-${s0[0]})/$crr" | bc -l)" "$(echo "(${s1[1]}-${s0[1]})/$crr" | bc -l)" \
      "$(echo "$http/$S" | bc -l)" "$(echo "($c2-$c1)/$tck/$http*1000000" | bc -l)" "${rr:-FAIL}"
    stop
  done
done
