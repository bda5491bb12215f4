#!/bin/sh
# Run every cargo-fuzz target of fuzz/ for a bounded time; fail on any crash, panic, leak or
# timeout. Installs cargo-fuzz and the nightly toolchain if missing.
#
#   hack/fuzz.sh [SECONDS]        (per target; default 20 = the CI budget, docs/reliability.md
#                                  documents 600 for a manual run)
#
# Environment: FUZZ_TARGETS="port_spec cli" (default: every target of `cargo fuzz list`),
# FUZZ_JOBS (parallel libFuzzer workers per target, default 1), FUZZ_RSS_MB (default 2048).
# The committed seeds in fuzz/corpus/<target> are only read; new inputs go to a temporary
# corpus (kept in fuzz/corpus-work/<target> so repeated runs build on each other; not committed).
# A crash leaves its reproducer in fuzz/artifacts/<target>/; replay it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-...
set -eu

SECONDS_PER_TARGET="${1:-20}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JOBS="${FUZZ_JOBS:-1}"
RSS="${FUZZ_RSS_MB:-2048}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
	rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
	cargo install cargo-fuzz
fi

cd "$ROOT/fuzz"
TARGETS="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"

# Build once, all targets (the sanitizer build of the launcher is the slow part).
cargo +nightly fuzz build --debug-assertions >/dev/null 2>&1 || cargo +nightly fuzz build --debug-assertions

PAR=""
if [ "$JOBS" -gt 1 ]; then PAR="-fork=$JOBS"; fi
failed=""
for t in $TARGETS; do
	mkdir -p "corpus-work/$t" "artifacts/$t"
	echo "== fuzz $t for ${SECONDS_PER_TARGET}s"
	log="artifacts/$t/last-run.log"
	if cargo +nightly fuzz run --debug-assertions "$t" "corpus-work/$t" "corpus/$t" -- \
		-max_total_time="$SECONDS_PER_TARGET" $PAR \
		-rss_limit_mb="$RSS" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
		grep -E '^stat::number_of_executed_units|^#[0-9]+ *DONE' "$log" | tail -2 || true
		echo "== $t: ok"
	else
		echo "== $t: FAILED (log: fuzz/$log)"
		grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written|artifact_prefix' "$log" | head -20 || true
		failed="$failed $t"
	fi
done

if [ -n "$failed" ]; then
	echo "fuzz: crashes in:$failed (reproducers under fuzz/artifacts/)"
	exit 1
fi
echo "fuzz: all targets ok ($SECONDS_PER_TARGET s each)"
