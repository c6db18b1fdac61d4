# shellcheck shell=bash
# Shared by scripts/test, scripts/demo and scripts/bench: install what is
# missing (Debian 12 packages only) and build.

CW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Everything the build and the tests need, by Debian package name.
CW_PACKAGES=(
	build-essential pkg-config meson ninja-build python3
	libsqlite3-dev libsodium-dev libcjson-dev libmodbus-dev libmicrohttpd-dev
	libcurl4-openssl-dev libpaho-mqtt-dev libpq-dev libssl-dev check
	socat curl jq sqlite3 procps
	postgresql postgresql-common openssl iproute2 coreutils mosquitto mosquitto-clients
	groff-base
)

cw_say() { printf '==> %s\n' "$*" >&2; }

cw_sudo() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

cw_install_deps() {
	local missing=() p
	for p in "${CW_PACKAGES[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		return 0
	fi
	cw_say "installing: ${missing[*]}"
	cw_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	cw_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# cw_build DIR [meson options...]: configure once, then build.
cw_build() {
	local dir=$1; shift
	if [ ! -f "$CW_ROOT/$dir/build.ninja" ]; then
		cw_say "configuring $dir"
		meson setup "$CW_ROOT/$dir" "$CW_ROOT" "$@" >/dev/null
	else
		meson configure "$CW_ROOT/$dir" "$@" >/dev/null
	fi
	cw_say "building $dir"
	ninja -C "$CW_ROOT/$dir" >/dev/null
}
