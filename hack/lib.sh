# shellcheck shell=bash
# Shared helpers for hack/test.sh and hack/demo.sh (sourced, not run).
#
# Everything here is idempotent: on a machine that already has the packages, the test
# user, its subid ranges and a usable /dev/net/tun, nothing is changed.

RK_TEST_USER=${RK_TEST_USER:-rktest}
# Debian packages the test suites and the demo need. "a|b": either satisfies it
# (the first is installed when none is).
RK_PACKAGES=(
	uidmap slirp4netns passt iproute2 iperf3 rootlesskit "busybox|busybox-static" curl socat
	netcat-openbsd procps psmisc util-linux bsdutils lxc dnsmasq-base hyperfine
	python3 gcc libc6-dev ca-certificates zsh fish bash-completion
)

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }

pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing_packages() {
	local p alt ok
	for p in "${RK_PACKAGES[@]}"; do
		ok=
		for alt in ${p//|/ }; do
			pkg_installed "$alt" && ok=1 && break
		done
		[ -n "$ok" ] || printf '%s\n' "${p%%|*}"
	done
}

# Root: install what is missing (apt-get update once; no apt at all if nothing is missing).
# Non-root: fail listing what is missing.
ensure_packages() {
	command -v dpkg-query >/dev/null || die "this script expects a Debian system (dpkg-query not found)"
	local missing
	mapfile -t missing < <(missing_packages)
	((${#missing[@]} == 0)) && return 0
	if ! is_root; then
		die "missing packages: ${missing[*]} — run this script once as root (it installs them), or: sudo apt-get install ${missing[*]}"
	fi
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q </dev/null || { sleep 10; apt-get update -q </dev/null; }
	apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null ||
		{ sleep 10; apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; }
}

ensure_cargo() {
	command -v cargo >/dev/null && return 0
	die "cargo not found: install a Rust toolchain (>= 1.80) first, e.g. 'apt-get install cargo' or rustup"
}

# Root only: the non-root test user with /etc/subuid + /etc/subgid ranges,
# /dev/net/tun usable by it, unprivileged user namespaces enabled.
ensure_test_user() {
	is_root || return 0
	local u=$RK_TEST_USER
	if ! id "$u" >/dev/null 2>&1; then
		log "creating user $u"
		useradd --create-home --shell /bin/bash "$u"
	fi
	local f flag
	for f in subuid subgid; do
		touch "/etc/$f"
		if ! grep -q "^$u:" "/etc/$f" && ! grep -q "^$(id -u "$u"):" "/etc/$f"; then
			flag=--add-${f}s
			local start=100000
			# first 65536-block above every range already listed
			start=$(awk -F: 'BEGIN{m=100000} NF>=3 && $2+$3>m {m=$2+$3} END{print m}' "/etc/$f")
			log "adding /etc/$f range $start-$((start + 65535)) for $u"
			usermod "$flag" "$start-$((start + 65535))" "$u"
		fi
	done
	if [ ! -c /dev/net/tun ]; then
		log "creating /dev/net/tun"
		mkdir -p /dev/net
		mknod /dev/net/tun c 10 200
	fi
	if [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
		chmod 0666 /dev/net/tun
	fi
	local s
	s=/proc/sys/kernel/unprivileged_userns_clone
	if [ -e $s ] && [ "$(cat $s)" = 0 ]; then echo 1 >$s; fi
	s=/proc/sys/kernel/apparmor_restrict_unprivileged_userns
	if [ -e $s ] && [ "$(cat $s)" != 0 ]; then echo 0 >$s; fi
	s=/proc/sys/user/max_user_namespaces
	if [ -e $s ] && [ "$(cat $s)" -lt 1024 ]; then echo 15000 >$s; fi
}

# Sets the array AS_TEST_USER to a command prefix that runs a command as the test user
# when root (setpriv + env exec in place, so "${AS_TEST_USER[@]}" cmd & gives cmd's PID
# in $!), and to nothing otherwise.
as_test_user_prefix() {
	AS_TEST_USER=()
	if is_root; then
		local home
		home=$(getent passwd "$RK_TEST_USER" | cut -d: -f6)
		AS_TEST_USER=(setpriv --reuid="$RK_TEST_USER" --regid="$RK_TEST_USER" --init-groups
			env HOME="$home" USER="$RK_TEST_USER" LOGNAME="$RK_TEST_USER")
	fi
}
