#!/usr/bin/env bash
# hack/demo.sh — the main job, end to end:
#
#   rootlesskit --net=slirp4netns --copy-up=/etc --disable-host-loopback \
#     --port-driver=builtin -p 127.0.0.1:8080:80/tcp busybox httpd -f -p 80 -h DIR
#
# run as a non-root user (as $RK_TEST_USER, default rktest, when started as root), then
# `curl http://127.0.0.1:8080/` from the host prints the page, rootlesskit is stopped with
# SIGTERM and the script checks it left no process and no state dir behind.
#
# Knobs: RK_DEMO_PORT (default 8080), RK_BIN (default: release build of this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

port=${RK_DEMO_PORT:-8080}

ensure_packages
ensure_test_user

if [ -n "${RK_BIN:-}" ]; then
	rk=$RK_BIN
else
	ensure_cargo
	log "building release binaries (cargo build --release --bins)"
	cargo build --release --bins
	rk=target/release/rootlesskit
fi

# A world-readable scratch dir (the checkout may sit under an unreadable /root).
work=$(mktemp -d /tmp/rootlesskit-rs-demo.XXXXXX)
chmod 0755 "$work"
cleanup() {
	[ -n "${rkpid:-}" ] && kill -KILL "$rkpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cp "$rk" "$work/rootlesskit"
mkdir "$work/www"
cat >"$work/www/index.html" <<EOF
<h1>Hello from rootlesskit-rs</h1>
<p>served by busybox httpd as uid 0 inside a user namespace, through slirp4netns and the builtin port driver</p>
EOF
chmod -R a+rX "$work"
if is_root; then chown "$RK_TEST_USER:" "$work"; fi

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	die "127.0.0.1:$port is already in use; pick another port with RK_DEMO_PORT=NNNN"
fi

state=$work/state
log "starting rootlesskit as $(is_root && echo "$RK_TEST_USER" || id -un); publishing 127.0.0.1:$port -> :80"
as_test_user_prefix
"${AS_TEST_USER[@]}" "$work/rootlesskit" --state-dir="$state" \
	--net=slirp4netns --copy-up=/etc --disable-host-loopback \
	--port-driver=builtin -p "127.0.0.1:$port:80/tcp" \
	busybox httpd -f -p 80 -h "$work/www" \
	>"$work/rootlesskit.log" 2>&1 </dev/null &
rkpid=$!

# Ready = api.sock exists (written after the port is published); never a fixed sleep.
for _ in $(seq 300); do
	[ -S "$state/api.sock" ] && break
	kill -0 "$rkpid" 2>/dev/null || {
		cat "$work/rootlesskit.log" >&2
		die "rootlesskit exited before becoming ready"
	}
	sleep 0.1
done
[ -S "$state/api.sock" ] || {
	cat "$work/rootlesskit.log" >&2
	die "rootlesskit not ready after 30s"
}

log "curl http://127.0.0.1:$port/"
# httpd may need a moment after the port is published; retry refused connections briefly.
if ! curl -fsS --max-time 10 --retry 20 --retry-delay 0 --retry-max-time 10 --retry-connrefused \
	"http://127.0.0.1:$port/"; then
	cat "$work/rootlesskit.log" >&2
	die "curl failed"
fi

log "stopping rootlesskit (SIGTERM)"
kill -TERM "$rkpid"
rc=0
wait "$rkpid" || rc=$?
rkpid=
# httpd dies of the forwarded SIGTERM, so rootlesskit reports 255 (like the reference).
[ "$rc" = 255 ] || [ "$rc" = 0 ] || {
	cat "$work/rootlesskit.log" >&2
	die "rootlesskit exited with $rc"
}
[ ! -e "$state" ] || die "state dir $state left behind"
if pgrep -f -- "$work/" >/dev/null; then
	pgrep -af -- "$work/" >&2
	die "processes left behind"
fi
log "done: page served, rootlesskit exited ($rc), nothing left behind"
