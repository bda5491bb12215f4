#!/usr/bin/env bash
# Rootless Docker end to end on OUR binaries: runs ../shared/e2e/docker-rootless.sh (Debian's
# docker.io through dockerd-rootless.sh, which execs the first `rootlesskit` on PATH) once per
# port driver, with our rootlesskit and rootlesskit-docker-proxy.
#
#   sudo bash hack/e2e-docker.sh [BIN_DIR]        (default BIN_DIR: target/release, then target/debug)
#
# Prints one "e2e docker <driver>: PASS|FAIL" line per driver and exits non-zero if any failed.
# Knobs: RK_SHARED_DIR (default: ../shared next to the checkout), RK_E2E_DRIVERS
# (default "builtin slirp4netns").
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
bin=${1:-}
if [ -z "$bin" ]; then
	for d in target/release target/debug; do
		[ -x "$d/rootlesskit" ] && bin=$d && break
	done
fi
[ -n "$bin" ] && [ -x "$bin/rootlesskit" ] || { echo "error: no built rootlesskit (cargo build --bins)" >&2; exit 2; }
bin=$(cd "$bin" && pwd)
shared=${RK_SHARED_DIR:-$top/../shared}
script=$shared/e2e/docker-rootless.sh
[ -r "$script" ] || { echo "error: $script not found (set RK_SHARED_DIR)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: run as root (the e2e script drops to its own user)" >&2; exit 2; }

# The e2e user must be able to read the binaries; copy them somewhere world-readable.
stage=$(mktemp -d /var/tmp/rk-e2e-bin.XXXXXX)
trap 'rm -rf "$stage"' EXIT
cp "$bin/rootlesskit" "$bin/rootlesskit-docker-proxy" "$bin/rootlessctl" "$stage/"
chmod 755 "$stage" "$stage"/*

rc=0
for driver in ${RK_E2E_DRIVERS:-builtin slirp4netns}; do
	log=/var/tmp/rk-e2e-$driver.log
	ROOTLESSKIT_BIN=$stage/rootlesskit ROOTLESSKIT_DOCKER_PROXY_BIN=$stage/rootlesskit-docker-proxy \
		E2E_PORT_DRIVER=$driver bash "$script" >"$log" 2>&1 </dev/null
	r=$?
	grep -E '^result:' "$log" | sed "s/^/  [$driver] /"
	if [ $r -eq 0 ] && tail -n1 "$log" | grep -q 'e2e: PASS'; then
		echo "e2e docker $driver: PASS"
	else
		echo "e2e docker $driver: FAIL (exit $r; last lines of $log follow)"
		tail -n 25 "$log" | sed 's/^/    /'
		rc=1
	fi
done
exit $rc
