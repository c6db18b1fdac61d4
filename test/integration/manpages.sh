#!/usr/bin/env bash
# The manual pages (docs/man) against the programs: every long option that a
# program's --help prints, every cartwisectl command and every cartwise-cloud
# command appears in its page, and each page renders without a warning
# (groff -man -ww; lintian's groff-message check in the package test runs
# man --warnings on the installed pages too). A self-check first shows that
# a page missing an option or a command, or a roff mistake, is caught.
# Argument: "cloud" (cartwise-cloud built: check its page against it too) or
# "nocloud" (-Dcloud=false: its page is still rendered and linted).
set -euo pipefail

B=${CW_BUILD_DIR:?run through meson test}
S=${CW_SOURCE_DIR:?run through meson test}
MAN=$S/docs/man
WITH_CLOUD=${1:?cloud or nocloud}
command -v groff >/dev/null || { echo "FAIL: groff missing (scripts/test installs groff-base)"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/cwman.XXXXXX")
trap 'rm -rf "$T"' EXIT
FAILS=0
fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }

# rendered PAGE: plain text at man's usual 78 columns, without hyphenation
# (the pages say .nh too; an option is never split over two lines); each
# page is rendered once, with every groff warning (-ww: undefined macros,
# bad escapes, lines that cannot be broken) kept in $T/NAME.warn
rendered() {
	local base
	base=$T/$(basename "$1")
	[ -f "$base.txt" ] || groff -man -ww -Tascii -rHY=0 -P-cbou "$1" >"$base.txt" 2>"$base.warn"
	printf '%s\n' "$(<"$base.txt")"
}

# long_options: the --options of a help text on stdin, one per line
long_options() { grep -oE -- '(^|[^A-Za-z0-9-])--[a-z][a-z0-9-]*' | sed 's/^[^-]*//' | sort -u; }

# has_word TEXT WORD: WORD appears in TEXT, not as part of a longer option
# or word (bash's own regex: no process per option)
has_word() { [[ $1 =~ (^|[^A-Za-z0-9-])$2([^A-Za-z0-9-]|$) ]]; }

# section TEXT_FILE NAME: the lines of one top-level section of a rendered page
section() { awk -v s="$2" '/^[A-Z]/ { on = ($0 == s) ; next } on' "$1"; }

# check_options NAME PAGE_FILE HELP_FILE: prints the options missing from the page
check_options() {
	local text opt
	text=$(rendered "$2")
	while read -r opt; do
		has_word "$text" "$opt" || echo "$opt"
	done < <(long_options <"$3")
}

# check_commands NAME PAGE_FILE COMMAND...: prints the commands that are no
# entry (a line starting with the command) of the page's COMMANDS section
check_commands() {
	local page=$2 c cmds; shift 2
	rendered "$page" >"$T/page.txt"
	cmds=$'\n'$(section "$T/page.txt" COMMANDS)
	for c in "$@"; do
		# an adjusted line may widen the space in "admin create-user"
		[[ $cmds =~ $'\n'" "+${c// / +}( |$'\n') ]] || echo "$c"
	done
}

PAGES=("$MAN/cartwise-edge.8" "$MAN/cartwisectl.8" "$MAN/cartwise-simlock.1" "$MAN/cartwise-cloud.8")

# ---- the programs and what their --help lists (at once: a program under
# ASan takes a good fraction of a second to start on a loaded machine)
HELP_JOBS=()
"$B/src/edge/cartwise-edge" --help >"$T/edge.help" &
HELP_JOBS+=($!)
"$B/src/edge/cartwisectl" --help >"$T/ctl.help" &
HELP_JOBS+=($!)
"$B/src/simlock/cartwise-simlock" --help >"$T/simlock.help" &
HELP_JOBS+=($!)
CHECKS=(edge:cartwise-edge.8 ctl:cartwisectl.8 simlock:cartwise-simlock.1)
if [ "$WITH_CLOUD" = cloud ]; then
	"$B/src/cloud/cartwise-cloud" --help >"$T/cloud.help" &
	HELP_JOBS+=($!)
	CHECKS+=(cloud:cartwise-cloud.8)
fi
for j in "${HELP_JOBS[@]}"; do
	wait "$j" || fail "a program's --help failed (${CHECKS[*]})"
done
# cartwisectl's commands: the first word of each entry under "Commands:"
mapfile -t CTL_CMDS < <(awk '/^Commands:/ { on = 1; next } on && /^$/ { on = 0 }
	on && /^  [a-z]/ { print $1 }' "$T/ctl.help")
[ ${#CTL_CMDS[@]} -ge 9 ] || fail "cartwisectl --help lists only ${#CTL_CMDS[@]} commands: ${CTL_CMDS[*]}"

# ---- self-check: a page without an option, a command, or with a roff
# mistake is caught (so a pass below means something)
sed '/check\\-config/d' "$MAN/cartwise-edge.8" >"$T/broken-edge.8"
[ "$(check_options broken "$T/broken-edge.8" "$T/edge.help")" = --check-config ] ||
	fail "self-check: a page without --check-config was not caught"
awk 'prev == ".TP" && /^\.B pin\\-hash$/ { $0 = ".B pinhash" } { print; prev = $0 }' \
	"$MAN/cartwisectl.8" >"$T/broken-ctl.8"
[ "$(check_commands brokenctl "$T/broken-ctl.8" "${CTL_CMDS[@]}")" = pin-hash ] ||
	fail "self-check: a page without the pin-hash command was not caught"
printf '.TH X 1\n.SH NAME\nx \\- y\n.BOGUS\n\\fQz\n' >"$T/broken.1"
[ -n "$(groff -man -ww -z "$T/broken.1" 2>&1)" ] || fail "self-check: groff -ww saw no warning in a bad page"

# ---- every long option of each --help is in its page
for c in "${CHECKS[@]}"; do
	name=${c%%:*} page=${c#*:}
	missing=$(check_options "$name" "$MAN/$page" "$T/$name.help")
	n=$(long_options <"$T/$name.help" | wc -l)
	if [ -n "$missing" ]; then
		fail "$page lacks options of $name --help: ${missing//$'\n'/ }"
	elif [ "$n" -lt 2 ]; then
		fail "$name --help: only $n long options found (parse broken?)"
	else
		echo "-- $page: all $n long options of --help present"
	fi
done

# ---- commands
missing=$(check_commands ctl "$MAN/cartwisectl.8" "${CTL_CMDS[@]}")
if [ -n "$missing" ]; then
	fail "cartwisectl.8 has no COMMANDS entry for: ${missing//$'\n'/ }"
else
	echo "-- cartwisectl.8: all ${#CTL_CMDS[@]} commands present (${CTL_CMDS[*]})"
fi
if [ "$WITH_CLOUD" = cloud ]; then
	# the word after "cartwise-cloud [--config FILE] " in the usage lines
	# (two spaces or more start a description: "serve the API" is none);
	# "admin" is followed by its own command
	mapfile -t CLOUD_CMDS < <(grep -E '^(usage:)? *cartwise-cloud ' "$T/cloud.help" |
		sed -E 's/^(usage:)? *cartwise-cloud( +--config +FILE)?//' |
		awk '/^ [a-z]/ { print ($1 == "admin" ? $1 " " $2 : $1) }' | sort -u)
	[ ${#CLOUD_CMDS[@]} -ge 6 ] || fail "cartwise-cloud --help: only ${#CLOUD_CMDS[@]} commands found: ${CLOUD_CMDS[*]}"
	missing=$(check_commands cloud "$MAN/cartwise-cloud.8" "${CLOUD_CMDS[@]}")
	if [ -n "$missing" ]; then
		fail "cartwise-cloud.8 has no COMMANDS entry for: ${missing//$'\n'/ }"
	else
		echo "-- cartwise-cloud.8: all ${#CLOUD_CMDS[@]} commands present (${CLOUD_CMDS[*]})"
	fi
fi

# ---- the sections every page has, and no warning from groff or man
for page in "${PAGES[@]}"; do
	rendered "$page" >"$T/page.txt"
	for s in NAME SYNOPSIS DESCRIPTION OPTIONS FILES "EXIT STATUS" EXAMPLES "SEE ALSO"; do
		grep -qx "$s" "$T/page.txt" || fail "$(basename "$page"): no $s section"
	done
	w=$(<"$T/$(basename "$page").warn")
	[ -z "$w" ] || fail "$(basename "$page"): groff -man -ww warns: $w"
done

[ "$FAILS" -eq 0 ] || { echo "manpages: $FAILS failures"; exit 1; }
echo "manpages: ok (${#PAGES[@]} pages)"
