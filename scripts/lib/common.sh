# shellcheck shell=bash
# Shared by scripts/test, scripts/test-arm64, scripts/demo and scripts/bench:
# install what is missing (Debian 12 packages only) and build.

CW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Everything the build and the tests need, by Debian package name.
CW_PACKAGES=(
	build-essential pkg-config meson ninja-build python3
	libsqlite3-dev libsodium-dev libcjson-dev libmodbus-dev libmicrohttpd-dev
	libcurl4-openssl-dev libpaho-mqtt-dev libpq-dev libssl-dev check libsystemd-dev
	socat curl jq sqlite3 procps
	postgresql postgresql-common openssl iproute2 coreutils mosquitto mosquitto-clients
	groff-base
	# node + npm: the web dashboard's build (web/dashboard, with the cloud);
	# Debian's npm only when node came without one (NodeSource's carries its own)
	nodejs $(command -v npm >/dev/null || echo npm)
)

# The arm64 cross build (scripts/test-arm64, scripts/package): the cross
# compiler, qemu to run what it builds, and the arm64 -dev packages through
# Debian multiarch. No libpq-dev:arm64: it is not Multi-Arch: same on Debian
# 12, so arm64 cross builds use -Dcloud=false (docs/ARCHITECTURE.md).
CW_ARM64_PACKAGES=(
	crossbuild-essential-arm64 qemu-user-static file
	libsqlite3-dev:arm64 libsodium-dev:arm64 libcjson-dev:arm64 libmodbus-dev:arm64
	libmicrohttpd-dev:arm64 libcurl4-openssl-dev:arm64 libpaho-mqtt-dev:arm64
	libssl-dev:arm64 check:arm64 libsystemd-dev:arm64 libsubunit-dev:arm64
)

cw_say() { printf '==> %s\n' "$*" >&2; }

cw_sudo() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# cw_apt_install PKG...: installs those of the packages that are missing.
cw_apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		return 0
	fi
	cw_say "installing: ${missing[*]}"
	cw_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	cw_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# cw_install_deps [PKG...]: CW_PACKAGES and the extra packages.
cw_install_deps() { cw_apt_install "${CW_PACKAGES[@]}" "$@"; }

# cw_install_arm64_deps [PKG...]: CW_ARM64_PACKAGES and the extra packages,
# after adding arm64 to dpkg's architectures if it is not there yet (the
# apt-get update of cw_apt_install then fetches the arm64 package lists).
cw_install_arm64_deps() {
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		cw_say "adding the arm64 architecture to dpkg (multiarch)"
		cw_sudo dpkg --add-architecture arm64
	fi
	cw_apt_install "${CW_ARM64_PACKAGES[@]}" "$@"
}

# cw_configure DIR [--cross-file FILE] [meson options...]: meson setup the
# first time, meson configure (the options only) afterwards.
cw_configure() {
	local dir=$1 setup=(); shift
	if [ "${1:-}" = --cross-file ]; then
		setup=("$1" "$2"); shift 2
	fi
	if [ ! -f "$CW_ROOT/$dir/build.ninja" ]; then
		cw_say "configuring $dir"
		meson setup "$CW_ROOT/$dir" "$CW_ROOT" "${setup[@]}" "$@" >/dev/null
	else
		meson configure "$CW_ROOT/$dir" "$@" >/dev/null
	fi
}

# cw_build DIR [meson options...]: configure once, then build.
cw_build() {
	cw_configure "$@"
	cw_say "building $1"
	ninja -C "$CW_ROOT/$1" >/dev/null
}
