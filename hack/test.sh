#!/usr/bin/env bash
# hack/test.sh — the project's test command (README; .ci/run execs it).
#
# As root (CI): installs missing Debian packages, creates the test user with subid
# ranges, makes /dev/net/tun usable, builds, stages binaries + test executables in a
# world-readable dir, then runs every test executable as the test user, and the tests
# named `*as_root*` in a second phase as root. As a normal user: builds and runs the
# user phase (root-phase tests are reported as skipped).
#
# Ends with one line "N passed, N failed[, N skipped]"; exits non-zero if anything failed.
#
# Environment knobs (all optional):
#   RK_STAGE_DIR     staging dir (default /var/tmp/rootlesskit-rs-test as root,
#                    ${TMPDIR:-/tmp}/rootlesskit-rs-test-$UID otherwise)
#   RK_TEST_USER     non-root user to run tests as when root (default rktest)
#   RK_TEST_EXES     extended regex: only run test executables whose name matches
#   RK_TEST_TIMEOUT  per-executable time limit in seconds (default 1500)
#   RK_TEST_THREADS  libtest --test-threads (default: libtest's own, = cores)
#   RK_BIN           run the suites against another rootlesskit (e.g. /usr/bin/rootlesskit)
# Extra arguments are passed to every test executable (e.g. a test-name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=hack/lib.sh
source hack/lib.sh

start=$(date +%s)
if is_root; then
	STAGE=${RK_STAGE_DIR:-/var/tmp/rootlesskit-rs-test}
else
	STAGE=${RK_STAGE_DIR:-${TMPDIR:-/tmp}/rootlesskit-rs-test-$(id -u)}
fi

# ---- prerequisites ------------------------------------------------------------------
ensure_packages
ensure_cargo
ensure_test_user

# ---- sources readable by the test user -----------------------------------------------
# Some tests read files of the source tree through CARGO_MANIFEST_DIR (generated docs,
# fixtures). When the checkout is not readable by the test user (e.g. a clone under
# /root), build from a world-readable copy instead, keeping the checkout's target dir.
SRC=$ROOT
if is_root && ! runuser -u "$RK_TEST_USER" -- test -r "$ROOT/Cargo.toml"; then
	src_stage=${RK_SRC_STAGE_DIR:-/var/tmp/rootlesskit-rs-src}
	log "checkout not readable by $RK_TEST_USER: building from a copy in $src_stage/repo"
	rm -rf "$src_stage/repo" "$src_stage/shared"
	mkdir -p "$src_stage/repo"
	# tar keeps mtimes, so cargo does not rebuild unchanged crates
	if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$ROOT" ls-files -co --exclude-standard -z |
			tar -C "$ROOT" --null --ignore-failed-read -T - -cf - | tar -C "$src_stage/repo" -xpf -
	else
		tar -C "$ROOT" --exclude=./target -cf - . | tar -C "$src_stage/repo" -xpf -
	fi
	[ -d "$ROOT/../shared" ] && cp -r "$ROOT/../shared" "$src_stage/shared"
	chmod -R a+rX "$src_stage"
	export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
	SRC=$src_stage/repo
fi
cd "$SRC"
TARGET=${CARGO_TARGET_DIR:-$SRC/target}

# ---- build ----------------------------------------------------------------------------
log "building (cargo build --workspace --bins; cargo test --workspace --no-run)"
json=$(mktemp)
trap 'rm -f "$json"' EXIT
# A build failure still ends with the summary line: bins failing = one failure and stop;
# a test target failing to compile = one failure, and the targets that did build still run.
build_failures=()
build_failed() {
	echo
	echo "failed:"
	echo "  build: $1 failed (see the compiler output above)"
	echo "time: $(($(date +%s) - start))s"
	echo "0 passed, 1 failed"
	exit 1
}
cargo build --workspace --bins || build_failed "cargo build --workspace --bins"
if ! cargo test --workspace --no-run --no-fail-fast --message-format=json >"$json"; then
	python3 -c 'import json, sys
for l in open(sys.argv[1]):
    try:
        m = json.loads(l)
    except ValueError:
        continue
    if m.get("reason") == "compiler-message" and m["message"].get("level") == "error":
        sys.stderr.write(m["message"].get("rendered") or "")' "$json"
	build_failures+=("build: cargo test --workspace --no-run failed to compile some test targets (errors above)")
fi

# "<name>\t<path>" for every test executable (unit tests of every crate + integration tests)
mapfile -t exes < <(python3 - "$json" <<'PY'
import json, sys
seen = set()
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if not m.get("profile", {}).get("test"):
        continue
    t = m["target"]
    url, _, frag = m["package_id"].partition("#")
    pkg = frag.split("@")[0] if "@" in frag else url.rstrip("/").split("/")[-1]
    kind = t["kind"][0]
    name = f"{pkg}::{t['name']}" if kind in ("test", "bench") else f"{pkg}::{kind}:{t['name']}"
    if m["executable"] in seen:
        continue
    seen.add(m["executable"])
    print(f"{name}\t{m['executable']}")
PY
)
((${#exes[@]} > 0)) || build_failed "cargo test --workspace --no-run (no test executable built)"

# ---- stage ----------------------------------------------------------------------------
log "staging into $STAGE"
rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/tests" "$STAGE/logs"
for b in rootlesskit rootlessctl rootlesskit-docker-proxy; do
	[ -x "$TARGET/debug/$b" ] || build_failed "$TARGET/debug/$b was not built; the build"
	cp "$TARGET/debug/$b" "$STAGE/bin/"
done
# Test-only helpers (tests/src/bin), looked up next to the binaries under test.
for b in rk-echo; do
	[ -x "$TARGET/debug/$b" ] || build_failed "$TARGET/debug/$b was not built; the build"
	cp "$TARGET/debug/$b" "$STAGE/bin/"
done
shared=""
if [ -d "$ROOT/../shared" ]; then
	cp -r "$ROOT/../shared" "$STAGE/shared"
	shared=$STAGE/shared
fi
declare -a names paths
for e in "${exes[@]}"; do
	name=${e%%$'\t'*}
	path=${e#*$'\t'}
	cp "$path" "$STAGE/tests/"
	names+=("$name")
	paths+=("$STAGE/tests/$(basename "$path")")
done
chmod -R a+rX "$STAGE"
chmod 0755 "$STAGE" "$STAGE/logs"

# ---- run ------------------------------------------------------------------------------
passed=0 failed=${#build_failures[@]} skipped=0
failures=("${build_failures[@]}")
# (root's TMPDIR / XDG_RUNTIME_DIR would not be usable by the test user)
envs=(
	-u XDG_RUNTIME_DIR
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	TMPDIR=/tmp
	RK_BIN_DIR="$STAGE/bin"
	RK_SHARED_DIR="$shared"
	RK_SRC_DIR="$SRC"
	CI="${CI:-}"
	RUST_BACKTRACE="${RUST_BACKTRACE:-0}"
)
[ -n "${RK_BIN:-}" ] && envs+=(RK_BIN="$RK_BIN")
threads=()
[ -n "${RK_TEST_THREADS:-}" ] && threads=(--test-threads="$RK_TEST_THREADS")
timeout_s=${RK_TEST_TIMEOUT:-1500}

# count_as_root EXE: number of tests whose name contains as_root
count_as_root() {
	"$1" --list as_root 2>/dev/null | grep -c ': test$' || true
}

# run_one NAME PHASE CMD...: runs a test executable, adds its counts to the totals.
run_one() {
	local name=$1 phase=$2
	shift 2
	local logf="$STAGE/logs/${name//[:\/]/_}.$phase.log"
	log "[$phase] $name"
	local rc=0
	(cd "$STAGE" && timeout --kill-after=30 "$timeout_s" "$@") 2>&1 | tee "$logf" || rc=${PIPESTATUS[0]}
	chmod a+r "$logf"
	local line p f i
	line=$(grep -E '^test result: ' "$logf" | tail -n1 || true)
	if [ -z "$line" ]; then
		failed=$((failed + 1))
		failures+=("$name [$phase]: no test result (exit $rc; timeout after ${timeout_s}s if 124) — see $logf")
		return
	fi
	p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")
	f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
	i=$(sed -E 's/.* ([0-9]+) ignored.*/\1/' <<<"$line")
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + i))
	if [ "$f" != 0 ] || [ "$rc" != 0 ]; then
		while read -r t; do failures+=("$name [$phase]: $t"); done < <(sed -nE 's/^test (.*) \.\.\. FAILED$/\1/p' "$logf")
		if [ "$f" = 0 ]; then
			failed=$((failed + 1))
			failures+=("$name [$phase]: exit $rc although no test failed — see $logf")
		fi
	fi
}

for idx in "${!paths[@]}"; do
	exe=${paths[$idx]}
	name=${names[$idx]}
	if [ -n "${RK_TEST_EXES:-}" ] && ! [[ $name =~ $RK_TEST_EXES ]]; then
		continue
	fi
	nroot=$(count_as_root "$exe")
	# The network self tests (`#[ignore]`: they change the test process's own namespaces) run
	# in a phase of their own below; `fake_vpnkit_peer` is not a test but the peer process that
	# tests/tests/network.rs starts from its own binary.
	not_here=(--skip as_root --skip ::selftest:: --skip fake_vpnkit_peer)
	nself=$("$exe" --list --ignored ::selftest:: 2>/dev/null | grep -c ': test$' || true)
	if is_root; then
		run_one "$name" user runuser -u "$RK_TEST_USER" -- env "${envs[@]}" \
			"$exe" "${not_here[@]}" "${threads[@]}" "$@"
		if [ "$nself" != 0 ]; then
			run_one "$name" selftest runuser -u "$RK_TEST_USER" -- env "${envs[@]}" RK_NET_SELFTEST=1 \
				"$exe" --ignored ::selftest:: --test-threads=1 "$@"
		fi
		if [ "$nroot" != 0 ]; then
			run_one "$name" root env "${envs[@]}" "$exe" as_root "${threads[@]}" "$@"
		fi
	else
		run_one "$name" user env "${envs[@]}" "$exe" "${not_here[@]}" "${threads[@]}" "$@"
		if [ "$nself" != 0 ]; then
			run_one "$name" selftest env "${envs[@]}" RK_NET_SELFTEST=1 \
				"$exe" --ignored ::selftest:: --test-threads=1 "$@"
		fi
		if [ "$nroot" != 0 ]; then
			log "[root] $name: $nroot as_root test(s) skipped (not running as root)"
			skipped=$((skipped + nroot))
		fi
	fi
done

# ---- main job, end to end -------------------------------------------------------------
# The README's main-job command, on a free port, counted as one test.
if [ -z "${RK_TEST_EXES:-}" ] && (($# == 0)); then
	demo_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	log "[demo] hack/demo.sh on 127.0.0.1:$demo_port"
	demo_log="$STAGE/logs/demo.log"
	if (cd "$ROOT" && RK_DEMO_PORT=$demo_port timeout --kill-after=30 900 bash hack/demo.sh) >"$demo_log" 2>&1; then
		passed=$((passed + 1))
		grep -v -E '^\s*(Compiling|Finished)' "$demo_log" | tail -n 8
	else
		failed=$((failed + 1))
		tail -n 40 "$demo_log"
		failures+=("hack/demo.sh (main job) — see $demo_log")
	fi
	chmod a+r "$demo_log"
fi

# ---- fuzzing: every cargo-fuzz target for a bounded time (RK_FUZZ_SECONDS, default 20) ----
if [ -z "${RK_TEST_EXES:-}" ] && (($# == 0)) && is_root && [ "${RK_SKIP_FUZZ:-0}" != 1 ]; then
	log "[fuzz] hack/fuzz.sh ${RK_FUZZ_SECONDS:-20}"
	fuzz_log="$STAGE/logs/fuzz.log"
	if (cd "$ROOT" && timeout --kill-after=30 1800 bash hack/fuzz.sh "${RK_FUZZ_SECONDS:-20}") >"$fuzz_log" 2>&1; then
		passed=$((passed + 1))
		tail -n 8 "$fuzz_log"
	else
		failed=$((failed + 1))
		tail -n 40 "$fuzz_log"
		failures+=("hack/fuzz.sh (fuzz targets) — see $fuzz_log")
	fi
	chmod a+r "$fuzz_log"
fi

# ---- static (musl) build: build, verify static linking, run --version and forward ports ----
if [ -z "${RK_TEST_EXES:-}" ] && (($# == 0)) && is_root && [ "${RK_SKIP_STATIC:-0}" != 1 ]; then
	log "[static] hack/static-build.sh"
	static_log="$STAGE/logs/static-build.log"
	if (cd "$ROOT" && timeout --kill-after=30 1500 sh hack/static-build.sh) >"$static_log" 2>&1; then
		passed=$((passed + 1))
		grep -E '^static-build:' "$static_log" | tail -n 6
	else
		failed=$((failed + 1))
		tail -n 40 "$static_log"
		failures+=("hack/static-build.sh (static binaries) — see $static_log")
	fi
	chmod a+r "$static_log"
fi

# ---- rootless Docker end to end (issue: API; ../shared/e2e/docker-rootless.sh) --------
# As root only (the shared script installs docker.io and drops to its own user); one test
# per port driver, on the release binaries hack/demo.sh just built (debug ones otherwise).
if [ -z "${RK_TEST_EXES:-}" ] && (($# == 0)) && is_root && [ "${RK_SKIP_E2E:-0}" != 1 ]; then
	e2e_bin=$ROOT/target/release
	[ -x "$e2e_bin/rootlesskit" ] || e2e_bin=$STAGE/bin
	for driver in builtin slirp4netns; do
		log "[e2e] docker-rootless.sh with --port-driver=$driver"
		e2e_log="$STAGE/logs/e2e-docker-$driver.log"
		if (cd "$ROOT" && RK_E2E_DRIVERS=$driver RK_SHARED_DIR=${shared:-$ROOT/../shared} timeout --kill-after=30 1200 bash hack/e2e-docker.sh "$e2e_bin") >"$e2e_log" 2>&1; then
			passed=$((passed + 1))
			cat "$e2e_log"
		else
			failed=$((failed + 1))
			tail -n 40 "$e2e_log"
			failures+=("hack/e2e-docker.sh $driver — see $e2e_log")
		fi
		chmod a+r "$e2e_log"
	done
fi

# ---- summary --------------------------------------------------------------------------
echo
if ((${#failures[@]})); then
	echo "failed:"
	printf '  %s\n' "${failures[@]}"
fi
echo "time: $(($(date +%s) - start))s; logs in $STAGE/logs"
summary="$passed passed, $failed failed"
((skipped > 0)) && summary+=", $skipped skipped"
echo "$summary"
((failed == 0))
