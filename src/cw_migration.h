/* cw_migration.h - schema migrations compiled into the binary.
 * The arrays are generated at build time from schema/<part>/NNN_name.sql by
 * scripts/embed_sql.py, so a binary always carries the schema it expects. */
#ifndef CW_MIGRATION_H
#define CW_MIGRATION_H

struct cw_migration {
	int version;      /* NNN of the file name, 1..N without gaps */
	const char *name; /* file name, for logs */
	const char *sql;  /* whole file */
};

#endif
