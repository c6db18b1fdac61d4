# shellcheck shell=bash
# PSQL: PostgreSQL's psql itself, not Debian's /usr/bin/psql (pg_wrapper, a
# Perl program that picks the cluster's version and then runs this one:
# ~0.1 s of CPU per call, four times psql's own). The version is the one
# pg_virtualenv sets (PGVERSION); without it, the wrapper.
# Sourced by test/cloud/lib.sh and test/integration/lib.sh.
# shellcheck disable=SC2034  # used by the sourcing scripts
PSQL=psql
if [ -n "${PGVERSION:-}" ] && [ -x "/usr/lib/postgresql/$PGVERSION/bin/psql" ]; then
	PSQL=/usr/lib/postgresql/$PGVERSION/bin/psql
fi
