#!/bin/sh
# Build fully static (musl) release binaries and check them.
#
#   hack/static-build.sh [--no-check]
#
# 1. adds the x86_64-unknown-linux-musl target with rustup if missing (the project is pure
#    Rust: no C compiler for musl is needed; if a future dependency needs one, install
#    `musl-tools` and set CC_x86_64_unknown_linux_musl=musl-gcc);
# 2. cargo build --release --target x86_64-unknown-linux-musl (rootlesskit, rootlessctl,
#    rootlesskit-docker-proxy);
# 3. verifies each binary is static (`file` says "statically linked"/"static-pie linked",
#    `ldd` lists no shared library);
# 4. self-check (unless --no-check): runs the static `rootlesskit --version`, then forwards a
#    port with the static binaries as an unprivileged user (`rktest` when run as root, else the
#    current user): busybox httpd inside the namespace, curl on the host's 127.0.0.1, content
#    compared by SHA-256; once with --port-driver=slirp4netns and once with --port-driver=builtin,
#    plus `rootlessctl add-ports`/`list-ports`/`remove-ports` against the static API server.
#
# Environment: NO_BUILD=1 checks already-built binaries; RK_TEST_USER (default rktest).
# Output: $CARGO_TARGET_DIR (default target/)/x86_64-unknown-linux-musl/release/. See
# docs/static-build.md.
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET=x86_64-unknown-linux-musl
CARGO="${CARGO:-cargo}"
CHECK=1
[ "${1:-}" = "--no-check" ] && CHECK=0
BINS="rootlesskit rootlessctl rootlesskit-docker-proxy"

log() { echo "static-build: $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
	log "adding rustup target $TARGET"
	rustup target add "$TARGET"
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
	(cd "$ROOT" && "$CARGO" build --release --target "$TARGET" -p rootlesskit-launcher --bins)
fi
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release"

for b in $BINS; do
	f="$OUT/$b"
	[ -x "$f" ] || die "$f missing"
	desc=$(file -b "$f")
	case "$desc" in
	*"statically linked"* | *"static-pie linked"*) ;;
	*) die "$b is not static: $desc" ;;
	esac
	# glibc's ldd says "not a dynamic executable" (static) or "statically linked"
	# (static-pie); anything with "=>" is a shared library dependency.
	if ldd "$f" 2>&1 | grep -q '=>'; then
		die "$b: ldd lists dynamic dependencies: $(ldd "$f" 2>&1 | tr '\n' ' ')"
	fi
	log "$b: static ($(du -h "$f" | cut -f1), $desc)"
done

[ "$CHECK" = 1 ] || exit 0

# ---- self-check -----------------------------------------------------------------------
v=$("$OUT/rootlesskit" --version) || die "rootlesskit --version failed"
log "static: $v"

for t in busybox curl slirp4netns sha256sum; do
	command -v "$t" >/dev/null || die "self-check needs $t"
done
if [ "$(id -u)" = 0 ]; then
	RUNAS="runuser -u ${RK_TEST_USER:-rktest} --"
	OWNER=${RK_TEST_USER:-rktest}
else
	RUNAS=""
	OWNER=$(id -un)
fi
WORK=$(mktemp -d /tmp/rk-static-check.XXXXXX)
PID=""
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
mkdir -p "$WORK/www"
head -c 3000000 /dev/urandom >"$WORK/www/blob"
want=$(sha256sum <"$WORK/www/blob" | cut -d' ' -f1)
chown -R "$OWNER" "$WORK" 2>/dev/null || true
chmod -R a+rX "$WORK"

free_port() {
	# a port nobody listens on (best effort)
	while :; do
		p=$(( (($(od -An -N2 -tu2 /dev/urandom)) % 20000) + 30000 ))
		ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}

run_case() { # $1 = port driver
	driver=$1
	port=$(free_port)
	state="$WORK/state-$driver"
	$RUNAS "$OUT/rootlesskit" --state-dir="$state" --net=slirp4netns --disable-host-loopback \
		--port-driver="$driver" -p "127.0.0.1:$port:8080/tcp" -- \
		busybox httpd -f -p 8080 -h "$WORK/www" >"$WORK/rk-$driver.log" 2>&1 &
	PID=$!
	i=0
	until [ -S "$state/api.sock" ]; do
		i=$((i + 1))
		[ $i -gt 300 ] && { cat "$WORK/rk-$driver.log" >&2; die "$driver: not ready"; }
		kill -0 "$PID" 2>/dev/null || { cat "$WORK/rk-$driver.log" >&2; die "$driver: rootlesskit exited"; }
		sleep 0.1
	done
	got=""
	i=0
	while [ $i -lt 50 ]; do
		got=$(curl -sf --max-time 10 "http://127.0.0.1:$port/blob" | sha256sum | cut -d' ' -f1)
		[ "$got" = "$want" ] && break
		i=$((i + 1))
		sleep 0.1
	done
	[ "$got" = "$want" ] || { cat "$WORK/rk-$driver.log" >&2; die "$driver: forwarded content differs ($got != $want)"; }
	log "$driver port driver: 3 MB through 127.0.0.1:$port -> :8080, SHA-256 ok"
	# the static API server and the static rootlessctl
	port2=$(free_port)
	$RUNAS "$OUT/rootlessctl" --socket="$state/api.sock" add-ports "127.0.0.1:$port2:8080/tcp" >/dev/null ||
		die "$driver: rootlessctl add-ports failed"
	got=$(curl -sf --max-time 10 "http://127.0.0.1:$port2/blob" | sha256sum | cut -d' ' -f1)
	[ "$got" = "$want" ] || die "$driver: port added through the API does not forward"
	$RUNAS "$OUT/rootlessctl" --socket="$state/api.sock" list-ports | grep -q "$port2" ||
		die "$driver: list-ports does not show $port2"
	log "$driver: rootlessctl add-ports/list-ports ok"
	kill "$PID"
	wait "$PID" 2>/dev/null || true
	PID=""
}

run_case slirp4netns
run_case builtin
log "ok"
