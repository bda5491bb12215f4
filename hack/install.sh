#!/bin/sh
# Install rootlesskit-rs: binaries, man pages and shell completions.
#
#   hack/install.sh [PREFIX]      (default PREFIX: /usr/local)
#
# Environment: DESTDIR (staging root for packagers), CARGO (default: cargo),
# PROFILE (release|debug, default: release), NO_BUILD=1 (install already-built binaries).
set -eu

PREFIX="${1:-/usr/local}"
DESTDIR="${DESTDIR:-}"
CARGO="${CARGO:-cargo}"
PROFILE="${PROFILE:-release}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BINS="rootlesskit rootlessctl rootlesskit-docker-proxy"

if [ "${NO_BUILD:-0}" != 1 ]; then
	if [ "$PROFILE" = release ]; then
		(cd "$ROOT" && "$CARGO" build --release -p rootlesskit-launcher --bins)
	else
		(cd "$ROOT" && "$CARGO" build -p rootlesskit-launcher --bins)
	fi
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"

install -d "$DESTDIR$PREFIX/bin" \
	"$DESTDIR$PREFIX/share/man/man1" \
	"$DESTDIR$PREFIX/share/bash-completion/completions" \
	"$DESTDIR$PREFIX/share/zsh/site-functions" \
	"$DESTDIR$PREFIX/share/fish/vendor_completions.d"
for b in $BINS; do
	install -m 0755 "$TARGET_DIR/$b" "$DESTDIR$PREFIX/bin/$b"
done
for m in "$ROOT"/docs/man/*.1; do
	install -m 0644 "$m" "$DESTDIR$PREFIX/share/man/man1/"
done
install -m 0644 "$ROOT/completions/bash/rootlesskit" "$DESTDIR$PREFIX/share/bash-completion/completions/rootlesskit"
install -m 0644 "$ROOT/completions/zsh/_rootlesskit" "$DESTDIR$PREFIX/share/zsh/site-functions/_rootlesskit"
install -m 0644 "$ROOT/completions/fish/rootlesskit.fish" "$DESTDIR$PREFIX/share/fish/vendor_completions.d/rootlesskit.fish"
install -m 0644 "$ROOT/completions/bash/rootlessctl" "$DESTDIR$PREFIX/share/bash-completion/completions/rootlessctl"
install -m 0644 "$ROOT/completions/zsh/_rootlessctl" "$DESTDIR$PREFIX/share/zsh/site-functions/_rootlessctl"
install -m 0644 "$ROOT/completions/fish/rootlessctl.fish" "$DESTDIR$PREFIX/share/fish/vendor_completions.d/rootlessctl.fish"
echo "installed rootlesskit-rs into $DESTDIR$PREFIX"
