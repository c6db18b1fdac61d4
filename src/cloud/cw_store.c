/* cw_store.c - the store's operations, written once over the backend
 * interface of cw_store_int.h (see cw_store.h for the contract).
 *
 * Parameter numbers given in the comments are the ?N / $N of the statement
 * texts in cw_store_sqlite.c and cw_store_pg.c, and the column order of each
 * reader is the *_COLS list of both files. */
#include "cw_store.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"
#include "cw_log.h"
#include "cw_store_int.h"

struct cw_store {
	const struct cw_store_backend *be;
	void *impl;
	enum cw_backend kind;
};

#define P_TEXT(v) ((struct cw_param){.t = CW_P_TEXT, .s = (v)})
#define P_OPT(v) ((struct cw_param){.t = ((v) && *(v)) ? CW_P_TEXT : CW_P_NULL, .s = (v)})
#define P_INT(v) ((struct cw_param){.t = CW_P_INT, .i = (int64_t)(v)})
#define P_BOOL(v) ((struct cw_param){.t = CW_P_BOOL, .i = (v) ? 1 : 0})
#define P_REAL(v) ((struct cw_param){.t = CW_P_REAL, .d = (v)})
#define P_NULL ((struct cw_param){.t = CW_P_NULL})
#define NP(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *const role_names[] = {
	[CW_ROLE_PLATFORM_ADMIN] = "platform-admin",
	[CW_ROLE_CHAIN_ADMIN] = "chain-admin",
	[CW_ROLE_BRANCH_MANAGER] = "branch-manager",
};

const char *cw_role_name(enum cw_role r)
{
	if ((int)r < 0 || (size_t)r >= sizeof(role_names) / sizeof(role_names[0]))
		return "unknown";
	return role_names[r];
}

int cw_role_parse(const char *s, enum cw_role *out)
{
	for (size_t i = 0; s && i < sizeof(role_names) / sizeof(role_names[0]); i++) {
		if (strcmp(s, role_names[i]) == 0) {
			*out = (enum cw_role)i;
			return CW_OK;
		}
	}
	return CW_ERR_INVAL;
}

/* Ids are canonical lower-case UUIDs everywhere: PostgreSQL prints uuid in
 * lower case and SQLite compares text, so anything else can never match. */
static bool id_ok(const char *id)
{
	if (!cw_uuid_valid(id))
		return false;
	for (const char *p = id; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			return false;
	return true;
}

/* ---- reading columns ---- */

static int col_str(const char *v, char *dst, size_t cap)
{
	size_t n = v ? strlen(v) : 0;

	if (n >= cap)
		return CW_ERR_TOOBIG;
	memcpy(dst, v ? v : "", n);
	dst[n] = '\0';
	return CW_OK;
}

static int64_t col_int(const char *v)
{
	return v ? strtoll(v, NULL, 10) : 0;
}

static bool col_bool(const char *v)
{
	return v && (strcmp(v, "1") == 0 || strcmp(v, "t") == 0 || strcmp(v, "true") == 0);
}

typedef int (*reader_fn)(int ncols, const char *const *c, void *out);

static int read_chain(int ncols, const char *const *c, void *out)
{
	struct cw_chain *x = out;
	int rc;

	if (ncols != 6)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[0], x->id, sizeof(x->id))) || (rc = col_str(c[1], x->name, sizeof(x->name))) ||
	    (rc = col_str(c[2], x->slug, sizeof(x->slug))))
		return rc;
	x->active = col_bool(c[3]);
	x->created_ms = col_int(c[4]);
	x->updated_ms = col_int(c[5]);
	return CW_OK;
}

static int read_branch(int ncols, const char *const *c, void *out)
{
	struct cw_branch *x = out;
	int rc;

	if (ncols != 11)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[0], x->id, sizeof(x->id))) ||
	    (rc = col_str(c[1], x->chain_id, sizeof(x->chain_id))) ||
	    (rc = col_str(c[2], x->code, sizeof(x->code))) ||
	    (rc = col_str(c[3], x->name, sizeof(x->name))) ||
	    (rc = col_str(c[4], x->address, sizeof(x->address))) ||
	    (rc = col_str(c[5], x->city, sizeof(x->city))))
		return rc;
	x->has_location = c[6] && c[7];
	x->latitude = c[6] ? strtod(c[6], NULL) : 0;
	x->longitude = c[7] ? strtod(c[7], NULL) : 0;
	x->active = col_bool(c[8]);
	x->created_ms = col_int(c[9]);
	x->updated_ms = col_int(c[10]);
	return CW_OK;
}

static int read_user(int ncols, const char *const *c, void *out)
{
	struct cw_user *x = out;
	int rc;

	if (ncols != 7)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[0], x->id, sizeof(x->id))) ||
	    (rc = col_str(c[1], x->email, sizeof(x->email))) ||
	    (rc = col_str(c[2], x->password_hash, sizeof(x->password_hash))) ||
	    (rc = col_str(c[4], x->chain_id, sizeof(x->chain_id))))
		return rc;
	if (cw_role_parse(c[3], &x->role) != CW_OK)
		return CW_ERR_INTERNAL;
	x->active = col_bool(c[5]);
	x->created_ms = col_int(c[6]);
	return CW_OK;
}

static int read_device(int ncols, const char *const *c, void *out)
{
	struct cw_device *x = out;
	int rc;

	if (ncols != 12)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[0], x->id, sizeof(x->id))) ||
	    (rc = col_str(c[1], x->branch_id, sizeof(x->branch_id))) ||
	    (rc = col_str(c[2], x->chain_id, sizeof(x->chain_id))) ||
	    (rc = col_str(c[3], x->device_name, sizeof(x->device_name))) ||
	    (rc = col_str(c[4], x->mac_address, sizeof(x->mac_address))) ||
	    (rc = col_str(c[5], x->serial_number, sizeof(x->serial_number))) ||
	    (rc = col_str(c[6], x->status, sizeof(x->status))) ||
	    (rc = col_str(c[8], x->firmware_version, sizeof(x->firmware_version))) ||
	    (rc = col_str(c[9], x->health, sizeof(x->health))))
		return rc;
	x->last_heartbeat_ms = col_int(c[7]);
	x->created_ms = col_int(c[10]);
	x->updated_ms = col_int(c[11]);
	return CW_OK;
}

static int read_command(int ncols, const char *const *c, void *out)
{
	struct cw_command *x = out;
	int rc;

	if (ncols != 11)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[0], x->id, sizeof(x->id))) ||
	    (rc = col_str(c[1], x->device_id, sizeof(x->device_id))) ||
	    (rc = col_str(c[2], x->branch_id, sizeof(x->branch_id))) ||
	    (rc = col_str(c[3], x->chain_id, sizeof(x->chain_id))) ||
	    (rc = col_str(c[4], x->action, sizeof(x->action))) ||
	    (rc = col_str(c[5], x->args, sizeof(x->args))) ||
	    (rc = col_str(c[6], x->state, sizeof(x->state))) ||
	    (rc = col_str(c[7], x->created_by, sizeof(x->created_by))) ||
	    (rc = col_str(c[10], x->result, sizeof(x->result))))
		return rc;
	x->created_ms = col_int(c[8]);
	x->expires_ms = col_int(c[9]);
	return CW_OK;
}

/* Collects rows into an array of elem-sized records; rows past cap are
 * only counted (that is how a list knows there is a next page). */
struct rows {
	reader_fn read;
	void *out;
	size_t elem;
	int cap, n;
};

static int rows_cb(void *ctx, int ncols, const char *const *cols)
{
	struct rows *r = ctx;
	int rc = CW_OK;

	if (r->n < r->cap)
		rc = r->read(ncols, cols, (char *)r->out + (size_t)r->n * r->elem);
	r->n++;
	return rc;
}

/* First column of the first row as text (ids from RETURNING, counts). */
struct first {
	char v[CW_UUID_STRLEN];
	bool found;
};

static int first_cb(void *ctx, int ncols, const char *const *cols)
{
	struct first *f = ctx;

	if (f->found || ncols < 1)
		return CW_OK;
	f->found = true;
	return col_str(cols[0], f->v, sizeof(f->v));
}

/* A row of counters. */
struct counts {
	int64_t v[8];
	int n;
};

static int counts_cb(void *ctx, int ncols, const char *const *cols)
{
	struct counts *c = ctx;

	for (int i = 0; i < ncols && i < 8; i++)
		c->v[i] = col_int(cols[i]);
	c->n = ncols;
	return CW_OK;
}

/* ---- plumbing ---- */

/* One statement on a connection of its own. The backend says whether the
 * statement only reads (SQLite: sqlite3_stmt_readonly of its text), never
 * the caller: a read goes to a read connection, anything else to the
 * writer. A read after a write that returned sees it (the write committed
 * before its connection was given back). */
static int run(struct cw_store *s, enum cw_sql id, const struct cw_param *p, int np, cw_row_fn fn,
	       void *ctx, int64_t *changes)
{
	enum cw_conn_use use = s->be->stmt_reads_only && s->be->stmt_reads_only(s->impl, id)
				       ? CW_CONN_READ
				       : CW_CONN_WRITE;
	void *conn = NULL;
	int rc = s->be->conn_get(s->impl, use, &conn);

	if (rc != CW_OK)
		return rc;
	rc = s->be->exec(conn, id, p, np, fn, ctx, changes);
	s->be->conn_put(s->impl, conn);
	return rc;
}

static int get_one(struct cw_store *s, enum cw_sql id, const char *key, reader_fn read,
		   void *out, size_t elem)
{
	struct cw_param p[] = {P_TEXT(key)};
	struct rows r = {.read = read, .out = out, .elem = elem, .cap = 1};
	int rc = run(s, id, p, NP(p), rows_cb, &r, NULL);

	if (rc == CW_OK && r.n == 0)
		rc = CW_ERR_NOTFOUND;
	return rc;
}

static int list(struct cw_store *s, enum cw_sql id, struct cw_param *p, int np, int limit_idx,
		const struct cw_page *page, reader_fn read, void *out, size_t elem, int *n,
		bool *more)
{
	struct rows r = {.read = read, .out = out, .elem = elem};
	int rc;

	*n = 0;
	*more = false;
	if (!page || page->limit < 1 || page->limit > CW_PAGE_MAX)
		return CW_ERR_INVAL;
	if (page->after && *page->after && !id_ok(page->after))
		return CW_ERR_INVAL;
	r.cap = page->limit;
	p[limit_idx] = P_INT(page->limit + 1); /* one more: is there a next page? */
	rc = run(s, id, p, np, rows_cb, &r, NULL);
	if (rc != CW_OK)
		return rc;
	*more = r.n > page->limit;
	*n = *more ? page->limit : r.n;
	return CW_OK;
}

/* A transaction on a connection held until tx_end: a write transaction
 * (CW_CONN_WRITE: SQLite's BEGIN IMMEDIATE on the writer) or one that only
 * reads (CW_CONN_READ: one snapshot for all its statements, on a reader;
 * a statement that would write fails there). */
static int tx_begin(struct cw_store *s, enum cw_conn_use use, void **conn)
{
	int rc = s->be->conn_get(s->impl, use, conn);

	if (rc != CW_OK)
		return rc;
	rc = s->be->exec(*conn, use == CW_CONN_READ ? CW_SQL_BEGIN_READ : CW_SQL_BEGIN, NULL, 0,
			 NULL, NULL, NULL);
	if (rc != CW_OK) {
		s->be->conn_put(s->impl, *conn);
		*conn = NULL;
	}
	return rc;
}

/* Commits when rc is CW_OK, else rolls back; gives the connection back. */
static int tx_end(struct cw_store *s, void *conn, int rc)
{
	if (rc == CW_OK)
		rc = s->be->exec(conn, CW_SQL_COMMIT, NULL, 0, NULL, NULL, NULL);
	if (rc != CW_OK)
		s->be->exec(conn, CW_SQL_ROLLBACK, NULL, 0, NULL, NULL, NULL);
	s->be->conn_put(s->impl, conn);
	return rc;
}

/* ---- lifecycle ---- */

int cw_store_new(const struct cw_store_config *cfg, struct cw_store **out)
{
	struct cw_store *s;
	int rc;

	*out = NULL;
	if (!cfg)
		return CW_ERR_INVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	s->kind = cfg->backend;
	switch (cfg->backend) {
	case CW_BACKEND_SQLITE:
		s->be = &cw_store_sqlite_backend;
		break;
	case CW_BACKEND_POSTGRES:
		s->be = &cw_store_pg_backend;
		break;
	default:
		free(s);
		return CW_ERR_CONFIG;
	}
	rc = s->be->open(cfg, &s->impl);
	if (rc != CW_OK) {
		free(s);
		return rc;
	}
	*out = s;
	return CW_OK;
}

void cw_store_free(struct cw_store *s)
{
	if (!s)
		return;
	cw_store_unlisten(s);
	s->be->close(s->impl);
	free(s);
}

enum cw_backend cw_store_backend(const struct cw_store *s)
{
	return s->kind;
}

int cw_store_migrate(struct cw_store *s, int *version)
{
	return s->be->migrate(s->impl, version);
}

int cw_store_latest_version(const struct cw_store *s)
{
	return s->be->latest_version();
}

int cw_store_ping(struct cw_store *s)
{
	struct first f = {.found = false};
	int rc = run(s, CW_SQL_PING, NULL, 0, first_cb, &f, NULL);

	if (rc == CW_OK && !f.found)
		rc = CW_ERR_DB;
	return rc == CW_OK ? CW_OK : CW_ERR_OFFLINE;
}

/* ---- staff ---- */

int cw_store_user_create(struct cw_store *s, const struct cw_user *u, int64_t now_ms)
{
	/* 1 id, 2 email, 3 hash, 4 role, 5 chain_id, 6 active, 7 now */
	struct cw_param p[] = {P_TEXT(u->id),		 P_TEXT(u->email),
			       P_TEXT(u->password_hash), P_TEXT(cw_role_name(u->role)),
			       P_OPT(u->chain_id),	 P_BOOL(u->active),
			       P_INT(now_ms)};

	if (!id_ok(u->id) || (u->chain_id[0] && !id_ok(u->chain_id)))
		return CW_ERR_INVAL;
	return run(s, CW_SQL_USER_INSERT, p, NP(p), NULL, NULL, NULL);
}

int cw_store_user_get(struct cw_store *s, const char *id, struct cw_user *out)
{
	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	return get_one(s, CW_SQL_USER_GET, id, read_user, out, sizeof(*out));
}

int cw_store_user_get_by_email(struct cw_store *s, const char *email, struct cw_user *out)
{
	if (!email || !*email)
		return CW_ERR_NOTFOUND;
	return get_one(s, CW_SQL_USER_GET_BY_EMAIL, email, read_user, out, sizeof(*out));
}

int cw_store_user_manages(struct cw_store *s, const char *user_id, const char *branch_id, bool *yes)
{
	struct cw_param p[] = {P_TEXT(user_id), P_TEXT(branch_id)};
	struct first f = {.found = false};
	int rc;

	*yes = false;
	if (!id_ok(user_id) || !id_ok(branch_id))
		return CW_OK;
	rc = run(s, CW_SQL_USER_MANAGES, p, NP(p), first_cb, &f, NULL);
	*yes = rc == CW_OK && f.found;
	return rc;
}

int cw_store_user_add_branch(struct cw_store *s, const char *user_id, const char *branch_id)
{
	struct cw_param p[] = {P_TEXT(user_id), P_TEXT(branch_id)};
	int64_t changes = 0;
	bool yes = false;
	int rc;

	if (!id_ok(user_id) || !id_ok(branch_id))
		return CW_ERR_INVAL;
	rc = run(s, CW_SQL_USER_BRANCH_INSERT, p, NP(p), NULL, NULL, &changes);
	if (rc != CW_OK || changes == 1)
		return rc;
	/* nothing inserted: already there (fine), or not a manager of that chain */
	rc = cw_store_user_manages(s, user_id, branch_id, &yes);
	if (rc == CW_OK && !yes)
		rc = CW_ERR_INVAL;
	return rc;
}

/* ---- chains ---- */

int cw_store_chain_create(struct cw_store *s, const struct cw_chain *c, int64_t now_ms)
{
	/* 1 id, 2 name, 3 slug, 4 active, 5 now */
	struct cw_param p[] = {P_TEXT(c->id), P_TEXT(c->name), P_TEXT(c->slug), P_BOOL(c->active),
			       P_INT(now_ms)};

	if (!id_ok(c->id))
		return CW_ERR_INVAL;
	return run(s, CW_SQL_CHAIN_INSERT, p, NP(p), NULL, NULL, NULL);
}

int cw_store_chain_get(struct cw_store *s, const char *id, struct cw_chain *out)
{
	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	return get_one(s, CW_SQL_CHAIN_GET, id, read_chain, out, sizeof(*out));
}

int cw_store_chain_update(struct cw_store *s, const struct cw_chain *c, int64_t now_ms)
{
	struct cw_param p[] = {P_TEXT(c->id), P_TEXT(c->name), P_TEXT(c->slug), P_BOOL(c->active),
			       P_INT(now_ms)};
	int64_t changes = 0;
	int rc;

	if (!id_ok(c->id))
		return CW_ERR_NOTFOUND;
	rc = run(s, CW_SQL_CHAIN_UPDATE, p, NP(p), NULL, NULL, &changes);
	if (rc == CW_OK && changes == 0)
		rc = CW_ERR_NOTFOUND;
	return rc;
}

int cw_store_chain_delete(struct cw_store *s, const char *id)
{
	struct cw_param p[] = {P_TEXT(id)};
	int64_t changes = 0;
	int rc;

	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	rc = run(s, CW_SQL_CHAIN_DELETE, p, NP(p), NULL, NULL, &changes);
	if (rc == CW_OK && changes == 0)
		rc = CW_ERR_NOTFOUND;
	return rc;
}

int cw_store_chain_list(struct cw_store *s, const struct cw_scope *scope,
			const struct cw_page *page, struct cw_chain *out, int *n, bool *more)
{
	/* 1 after, 2 chain filter, 3 limit */
	struct cw_param p[] = {P_OPT(page ? page->after : NULL),
			       P_OPT(scope ? scope->chain_id : NULL), P_NULL};

	if (scope && scope->manager_id && !(scope->chain_id && *scope->chain_id))
		return CW_ERR_INVAL; /* a manager's scope always names its chain */
	return list(s, CW_SQL_CHAIN_LIST, p, NP(p), 2, page, read_chain, out, sizeof(*out), n,
		    more);
}

/* ---- branches ---- */

int cw_store_branch_create(struct cw_store *s, const struct cw_branch *b, int64_t now_ms)
{
	/* 1 id, 2 chain, 3 code, 4 name, 5 address, 6 city, 7 lat, 8 lon, 9 active, 10 now */
	struct cw_param p[] = {P_TEXT(b->id),
			       P_TEXT(b->chain_id),
			       P_TEXT(b->code),
			       P_TEXT(b->name),
			       P_OPT(b->address),
			       P_OPT(b->city),
			       b->has_location ? P_REAL(b->latitude) : P_NULL,
			       b->has_location ? P_REAL(b->longitude) : P_NULL,
			       P_BOOL(b->active),
			       P_INT(now_ms)};

	if (!id_ok(b->id) || !id_ok(b->chain_id))
		return CW_ERR_INVAL;
	return run(s, CW_SQL_BRANCH_INSERT, p, NP(p), NULL, NULL, NULL);
}

int cw_store_branch_get(struct cw_store *s, const char *id, struct cw_branch *out)
{
	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	return get_one(s, CW_SQL_BRANCH_GET, id, read_branch, out, sizeof(*out));
}

int cw_store_branch_list(struct cw_store *s, const struct cw_scope *scope,
			 const struct cw_page *page, struct cw_branch *out, int *n, bool *more)
{
	/* 1 after, 2 chain filter, 3 manager filter, 4 limit */
	struct cw_param p[] = {P_OPT(page ? page->after : NULL),
			       P_OPT(scope ? scope->chain_id : NULL),
			       P_OPT(scope ? scope->manager_id : NULL), P_NULL};

	if (scope && scope->chain_id && *scope->chain_id && !id_ok(scope->chain_id)) {
		*n = 0;
		*more = false;
		return CW_OK; /* no branch belongs to a chain that cannot exist */
	}
	if (scope && scope->manager_id && !id_ok(scope->manager_id))
		return CW_ERR_INVAL;
	return list(s, CW_SQL_BRANCH_LIST, p, NP(p), 3, page, read_branch, out, sizeof(*out), n,
		    more);
}

int cw_store_branch_stats(struct cw_store *s, const char *branch_id, int64_t since_ms,
			  int64_t online_after_ms, struct cw_branch_stats *out)
{
	struct cw_param p1[] = {P_TEXT(branch_id)};
	struct cw_param p2[] = {P_TEXT(branch_id), P_INT(since_ms)};
	struct cw_param p3[] = {P_TEXT(branch_id), P_INT(online_after_ms)};
	struct counts c1 = {.n = 0}, c2 = {.n = 0}, c3 = {.n = 0};
	void *conn = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!id_ok(branch_id))
		return CW_ERR_NOTFOUND;
	rc = tx_begin(s, CW_CONN_READ, &conn);
	if (rc != CW_OK)
		return rc;
	if ((rc = s->be->exec(conn, CW_SQL_BRANCH_STATS_CARTS, p1, NP(p1), counts_cb, &c1, NULL)) ||
	    (rc = s->be->exec(conn, CW_SQL_BRANCH_STATS_RENTALS, p2, NP(p2), counts_cb, &c2, NULL)) ||
	    (rc = s->be->exec(conn, CW_SQL_BRANCH_STATS_DEVICES, p3, NP(p3), counts_cb, &c3, NULL)))
		goto out;
	if (c1.n != 5 || c2.n != 3 || c3.n != 2) {
		rc = CW_ERR_INTERNAL;
		goto out;
	}
	out->carts_total = c1.v[0];
	out->carts_available = c1.v[1];
	out->carts_rented = c1.v[2];
	out->carts_maintenance = c1.v[3];
	out->carts_fault = c1.v[4];
	out->rentals_open = c2.v[0];
	out->rentals_overdue = c2.v[1];
	out->rentals_since = c2.v[2];
	out->devices_total = c3.v[0];
	out->devices_online = c3.v[1];
out:
	return tx_end(s, conn, rc);
}

/* ---- enrollment and devices ---- */

int cw_store_enrollment_create(struct cw_store *s, const struct cw_enrollment *e)
{
	/* 1 id, 2 branch, 3 hash, 4 created_by, 5 created, 6 expires, 7 uses */
	struct cw_param p[] = {P_TEXT(e->id),	     P_TEXT(e->branch_id), P_TEXT(e->code_hash),
			       P_OPT(e->created_by), P_INT(e->created_ms), P_INT(e->expires_ms),
			       P_INT(e->uses_left)};

	if (!id_ok(e->id) || !id_ok(e->branch_id) || (e->created_by[0] && !id_ok(e->created_by)) ||
	    strlen(e->code_hash) != 64 || e->uses_left < 1)
		return CW_ERR_INVAL;
	return run(s, CW_SQL_ENROLL_INSERT, p, NP(p), NULL, NULL, NULL);
}

int cw_store_device_register(struct cw_store *s, const struct cw_register_req *r,
			     struct cw_device *out)
{
	struct first branch = {.found = false}, dev = {.found = false};
	struct rows got = {.read = read_device, .out = out, .elem = sizeof(*out), .cap = 1};
	void *conn = NULL;
	int rc;

	if (!r->branch_code || !r->code_hash || !r->mac_address || !r->device_name ||
	    !id_ok(r->new_device_id) || !id_ok(r->token_jti))
		return CW_ERR_INVAL;
	rc = tx_begin(s, CW_CONN_WRITE, &conn);
	if (rc != CW_OK)
		return rc;
	{
		/* 1 hash, 2 branch code, 3 now: one use, atomically, or nothing */
		struct cw_param p[] = {P_TEXT(r->code_hash), P_TEXT(r->branch_code),
				       P_INT(r->now_ms)};
		rc = s->be->exec(conn, CW_SQL_ENROLL_CONSUME, p, NP(p), first_cb, &branch, NULL);
		if (rc == CW_OK && !branch.found)
			rc = CW_ERR_AUTH;
		if (rc != CW_OK)
			goto out;
	}
	{
		/* 1 id, 2 branch, 3 name, 4 mac, 5 serial, 6 now */
		struct cw_param p[] = {P_TEXT(r->new_device_id), P_TEXT(branch.v),
				       P_TEXT(r->device_name),	 P_TEXT(r->mac_address),
				       P_OPT(r->serial_number),	 P_INT(r->now_ms)};
		rc = s->be->exec(conn, CW_SQL_DEVICE_UPSERT, p, NP(p), first_cb, &dev, NULL);
		if (rc == CW_OK && !dev.found)
			rc = CW_ERR_CONFLICT; /* that MAC is registered in another branch */
		if (rc != CW_OK)
			goto out;
	}
	{
		struct cw_param pr[] = {P_TEXT(dev.v), P_INT(r->now_ms)};
		struct cw_param pt[] = {P_TEXT(r->token_jti), P_TEXT(dev.v), P_INT(r->now_ms),
					P_INT(r->token_expires_ms)};
		struct cw_param pg[] = {P_TEXT(dev.v)};
		if ((rc = s->be->exec(conn, CW_SQL_TOKENS_REVOKE, pr, NP(pr), NULL, NULL, NULL)) ||
		    (rc = s->be->exec(conn, CW_SQL_TOKEN_INSERT, pt, NP(pt), NULL, NULL, NULL)) ||
		    (rc = s->be->exec(conn, CW_SQL_DEVICE_GET, pg, NP(pg), rows_cb, &got, NULL)))
			goto out;
		if (got.n != 1)
			rc = CW_ERR_INTERNAL;
	}
out:
	return tx_end(s, conn, rc);
}

int cw_store_device_get(struct cw_store *s, const char *id, struct cw_device *out)
{
	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	return get_one(s, CW_SQL_DEVICE_GET, id, read_device, out, sizeof(*out));
}

int cw_store_device_heartbeat(struct cw_store *s, const char *id, const struct cw_heartbeat *h,
			      char branch_out[CW_UUID_STRLEN])
{
	/* 1 id, 2 status, 3 firmware, 4 health, 5 now */
	struct cw_param p[] = {P_TEXT(id), P_TEXT(h->status), P_OPT(h->firmware), P_OPT(h->health),
			       P_INT(h->now_ms)};
	struct first f = {.found = false};
	int rc;

	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	if (!h->status || (h->health && strlen(h->health) > CW_JSON_IN_MAX))
		return CW_ERR_INVAL;
	/* RETURNING branch_id: the live streams of that branch hear of it */
	rc = run(s, CW_SQL_DEVICE_HEARTBEAT, p, NP(p), first_cb, &f, NULL);
	if (rc == CW_OK && !f.found)
		rc = CW_ERR_NOTFOUND;
	if (rc == CW_OK && branch_out)
		memcpy(branch_out, f.v, CW_UUID_STRLEN);
	return rc;
}

int cw_store_device_token_check(struct cw_store *s, const char *jti, const char *device_id)
{
	struct cw_param p[] = {P_TEXT(jti), P_TEXT(device_id)};
	struct first f = {.found = false};
	int rc;

	if (!id_ok(jti) || !id_ok(device_id))
		return CW_ERR_AUTH;
	rc = run(s, CW_SQL_TOKEN_CHECK, p, NP(p), first_cb, &f, NULL);
	if (rc == CW_OK && !f.found)
		rc = CW_ERR_AUTH;
	return rc;
}

int cw_store_device_token_rotate(struct cw_store *s, const char *device_id, const char *old_jti,
				 const char *new_jti, int64_t now_ms, int64_t expires_ms)
{
	/* 1 jti, 2 device, 3 now: check-and-revoke in one statement */
	struct cw_param po[] = {P_TEXT(old_jti), P_TEXT(device_id), P_INT(now_ms)};
	struct cw_param pr[] = {P_TEXT(device_id), P_INT(now_ms)};
	struct cw_param pt[] = {P_TEXT(new_jti), P_TEXT(device_id), P_INT(now_ms), P_INT(expires_ms)};
	int64_t changes = 0;
	void *conn = NULL;
	int rc;

	if (!id_ok(device_id) || !id_ok(old_jti) || !id_ok(new_jti))
		return CW_ERR_AUTH;
	rc = tx_begin(s, CW_CONN_WRITE, &conn);
	if (rc != CW_OK)
		return rc;
	rc = s->be->exec(conn, CW_SQL_TOKEN_REVOKE_ONE, po, NP(po), NULL, NULL, &changes);
	if (rc == CW_OK && changes != 1)
		rc = CW_ERR_AUTH;
	if (rc == CW_OK)
		rc = s->be->exec(conn, CW_SQL_TOKENS_REVOKE, pr, NP(pr), NULL, NULL, NULL);
	if (rc == CW_OK)
		rc = s->be->exec(conn, CW_SQL_TOKEN_INSERT, pt, NP(pt), NULL, NULL, NULL);
	return tx_end(s, conn, rc);
}

int cw_store_device_tokens_revoke(struct cw_store *s, const char *device_id, int64_t now_ms)
{
	struct cw_param p[] = {P_TEXT(device_id), P_INT(now_ms)};

	if (!id_ok(device_id))
		return CW_ERR_NOTFOUND;
	return run(s, CW_SQL_TOKENS_REVOKE, p, NP(p), NULL, NULL, NULL);
}

/* ---- commands ---- */

int cw_store_command_create(struct cw_store *s, const struct cw_command *c)
{
	/* 1 id, 2 device, 3 action, 4 args, 5 created_by, 6 created, 7 expires */
	struct cw_param p[] = {P_TEXT(c->id),	   P_TEXT(c->device_id),   P_TEXT(c->action),
			       P_TEXT(c->args[0] ? c->args : "{}"), P_OPT(c->created_by),
			       P_INT(c->created_ms), P_INT(c->expires_ms)};
	int64_t changes = 0;
	int rc;

	if (!id_ok(c->id) || !id_ok(c->device_id) || (c->created_by[0] && !id_ok(c->created_by)) ||
	    strlen(c->args) > CW_JSON_IN_MAX)
		return CW_ERR_INVAL;
	rc = run(s, CW_SQL_COMMAND_INSERT, p, NP(p), NULL, NULL, &changes);
	if (rc == CW_OK && changes == 0)
		rc = CW_ERR_NOTFOUND; /* no such device */
	return rc;
}

int cw_store_command_get(struct cw_store *s, const char *id, struct cw_command *out)
{
	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	return get_one(s, CW_SQL_COMMAND_GET, id, read_command, out, sizeof(*out));
}

int cw_store_commands_for_device(struct cw_store *s, const char *device_id, int64_t now_ms,
				 struct cw_command *out, int cap, int *n)
{
	struct cw_param pe[] = {P_TEXT(device_id), P_INT(now_ms)};
	struct cw_param pl[] = {P_TEXT(device_id), P_INT(now_ms), P_INT(cap)};
	struct rows got = {.read = read_command, .out = out, .elem = sizeof(*out), .cap = cap};
	void *conn = NULL;
	int rc;

	*n = 0;
	if (!id_ok(device_id))
		return CW_ERR_NOTFOUND;
	if (cap < 1)
		return CW_ERR_INVAL;
	/* Almost every heartbeat finds nothing: one indexed read (a reader on
	 * SQLite) instead of a write transaction of four statements. Only when
	 * a command is open does the transaction below expire, hand out and
	 * mark. A command created after this read waits for the next heartbeat,
	 * as it would after the transaction's snapshot. */
	{
		struct cw_param pa[] = {P_TEXT(device_id)};
		struct first f = {.found = false};
		rc = run(s, CW_SQL_COMMANDS_ANY_OPEN, pa, NP(pa), first_cb, &f, NULL);
		if (rc != CW_OK || !f.found)
			return rc;
	}
	rc = tx_begin(s, CW_CONN_WRITE, &conn);
	if (rc != CW_OK)
		return rc;
	if ((rc = s->be->exec(conn, CW_SQL_COMMANDS_EXPIRE, pe, NP(pe), NULL, NULL, NULL)) ||
	    (rc = s->be->exec(conn, CW_SQL_COMMANDS_FOR_DEVICE, pl, NP(pl), rows_cb, &got, NULL)))
		goto out;
	*n = got.n < cap ? got.n : cap;
	if (*n > 0) {
		/* 1 device, 2 now, 3 last id handed out */
		struct cw_param pm[] = {P_TEXT(device_id), P_INT(now_ms), P_TEXT(out[*n - 1].id)};
		rc = s->be->exec(conn, CW_SQL_COMMANDS_MARK_DELIVERED, pm, NP(pm), NULL, NULL, NULL);
		for (int i = 0; i < *n && rc == CW_OK; i++)
			if (strcmp(out[i].state, "pending") == 0)
				memcpy(out[i].state, "delivered", sizeof("delivered"));
	}
out:
	if (rc != CW_OK)
		*n = 0;
	return tx_end(s, conn, rc);
}

/* ---- for /metrics ---- */

int cw_store_devices_online(struct cw_store *s, int64_t after_ms, int64_t *n)
{
	struct cw_param p[] = {P_INT(after_ms)};
	struct counts c = {.n = 0};
	int rc = run(s, CW_SQL_DEVICES_ONLINE, p, NP(p), counts_cb, &c, NULL);

	*n = rc == CW_OK && c.n == 1 ? c.v[0] : 0;
	return rc;
}

int cw_store_device_health(struct cw_store *s, const char *id, const char *health, int64_t now_ms)
{
	/* 1 device, 2 health, 3 now */
	struct cw_param p[] = {P_TEXT(id), P_TEXT(health), P_INT(now_ms)};
	int64_t changes = 0;
	int rc;

	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	if (!health || strlen(health) > CW_JSON_IN_MAX)
		return CW_ERR_INVAL;
	rc = run(s, CW_SQL_SYNC_DEVICE_HEALTH, p, NP(p), NULL, NULL, &changes);
	if (rc == CW_OK && changes == 0)
		rc = CW_ERR_NOTFOUND;
	return rc;
}

struct device_ids {
	cw_device_id_fn fn;
	void *ctx;
};

static int device_id_cb(void *ctx, int ncols, const char *const *cols)
{
	struct device_ids *d = ctx;

	return ncols >= 1 && cols[0] ? d->fn(d->ctx, cols[0]) : CW_ERR_DB;
}

int cw_store_devices_mqtt(struct cw_store *s, int64_t now_ms, cw_device_id_fn fn, void *ctx)
{
	struct cw_param p[] = {P_INT(now_ms)};
	struct device_ids d = {.fn = fn, .ctx = ctx};

	return run(s, CW_SQL_DEVICES_MQTT, p, NP(p), device_id_cb, &d, NULL);
}

void cw_store_pool_stats(struct cw_store *s, int *total, int *in_use)
{
	s->be->pool_stats(s->impl, total, in_use);
}

int cw_store_notify(struct cw_store *s, const char *payload)
{
	if (strlen(payload) > CW_STORE_NOTIFY_MAX)
		return CW_ERR_TOOBIG;
	return s->be->notify ? s->be->notify(s->impl, payload) : CW_OK;
}

int cw_store_listen(struct cw_store *s, cw_store_notify_fn fn, void *ctx)
{
	return s->be->listen ? s->be->listen(s->impl, fn, ctx) : CW_OK;
}

void cw_store_unlisten(struct cw_store *s)
{
	if (s->be->unlisten)
		s->be->unlisten(s->impl);
}

/* ---- carts, rentals, telemetry ---- */

/* Free text of unbounded columns (notes): cut at the buffer, never inside a
 * UTF-8 sequence. */
static void col_str_cut(const char *v, char *dst, size_t cap)
{
	size_t n = v ? strlen(v) : 0;

	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((unsigned char)v[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, v ? v : "", n);
	dst[n] = '\0';
}

static int read_cart(int ncols, const char *const *c, void *out)
{
	struct cw_cart *x = out;
	int rc;

	if (ncols != 15)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[0], x->id, sizeof(x->id))) ||
	    (rc = col_str(c[1], x->branch_id, sizeof(x->branch_id))) ||
	    (rc = col_str(c[2], x->chain_id, sizeof(x->chain_id))) ||
	    (rc = col_str(c[3], x->device_id, sizeof(x->device_id))) ||
	    (rc = col_str(c[4], x->controller_id, sizeof(x->controller_id))) ||
	    (rc = col_str(c[7], x->status, sizeof(x->status))))
		return rc;
	x->cart_number = col_int(c[5]);
	x->locker_id = col_int(c[6]);
	x->is_locked = col_bool(c[8]);
	x->last_used_ms = col_int(c[9]);
	col_str_cut(c[10], x->maintenance_notes, sizeof(x->maintenance_notes));
	x->updated_ms = col_int(c[11]);
	/* its controller (LEFT JOIN: NULL when none) */
	x->bus_index = c[12] ? col_int(c[12]) : -1;
	x->board = c[13] ? col_int(c[13]) : -1;
	x->board_online = !c[14] ? -1 : strcmp(c[14], "online") == 0 ? 1
				     : strcmp(c[14], "offline") == 0 ? 0 : -1;
	return CW_OK;
}

static int read_rental(int ncols, const char *const *c, void *out)
{
	struct cw_rental *x = out;
	int rc;

	if (ncols != 14)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[0], x->id, sizeof(x->id))) ||
	    (rc = col_str(c[1], x->cart_id, sizeof(x->cart_id))) ||
	    (rc = col_str(c[2], x->branch_id, sizeof(x->branch_id))) ||
	    (rc = col_str(c[3], x->device_id, sizeof(x->device_id))) ||
	    (rc = col_str(c[5], x->user_phone, sizeof(x->user_phone))) ||
	    (rc = col_str(c[10], x->status, sizeof(x->status))))
		return rc;
	x->cart_number = col_int(c[4]);
	x->start_ms = col_int(c[6]);
	x->expected_return_ms = col_int(c[7]);
	x->actual_return_ms = col_int(c[8]);
	x->clock_trusted = col_bool(c[9]);
	x->duration_minutes = c[11] ? col_int(c[11]) : -1;
	col_str_cut(c[12], x->notes, sizeof(x->notes));
	x->created_ms = col_int(c[13]);
	return CW_OK;
}

static int read_telemetry(int ncols, const char *const *c, void *out)
{
	struct cw_telemetry *x = out;
	int rc;

	if (ncols != 10)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[1], x->device_id, sizeof(x->device_id))) ||
	    (rc = col_str(c[2], x->branch_id, sizeof(x->branch_id))) ||
	    (rc = col_str(c[3], x->chain_id, sizeof(x->chain_id))) ||
	    (rc = col_str(c[5], x->event_type, sizeof(x->event_type))))
		return rc;
	x->id = col_int(c[0]);
	x->seq = c[4] ? col_int(c[4]) : -1;
	/* a JSON document cannot be cut: too large is reported as absent */
	x->event_data_cut = col_str(c[6], x->event_data, sizeof(x->event_data)) != CW_OK;
	if (x->event_data_cut)
		x->event_data[0] = '\0';
	x->ts_ms = col_int(c[7]);
	x->clock_trusted = col_bool(c[8]);
	x->received_ms = col_int(c[9]);
	return CW_OK;
}

static bool range_ok(int64_t from_ms, int64_t to_ms)
{
	return from_ms >= CW_TIME_MIN_MS && to_ms <= CW_TIME_MAX_MS && from_ms <= to_ms;
}

int cw_store_cart_list(struct cw_store *s, const char *branch_id, const char *status,
		       const struct cw_page *page, struct cw_cart *out, int *n, bool *more)
{
	/* 1 branch, 2 status, 3 after, 4 limit */
	struct cw_param p[] = {P_TEXT(branch_id), P_OPT(status), P_OPT(page ? page->after : NULL),
			       P_NULL};

	*n = 0;
	*more = false;
	if (!id_ok(branch_id))
		return CW_OK;
	return list(s, CW_SQL_CART_LIST, p, NP(p), 3, page, read_cart, out, sizeof(*out), n, more);
}

int cw_store_cart_get(struct cw_store *s, const char *id, struct cw_cart *out)
{
	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	return get_one(s, CW_SQL_CART_GET, id, read_cart, out, sizeof(*out));
}

int cw_store_rentals_active(struct cw_store *s, const char *branch_id, const struct cw_page *page,
			    struct cw_rental *out, int *n, bool *more)
{
	/* 1 branch, 2 after, 3 limit */
	struct cw_param p[] = {P_TEXT(branch_id), P_OPT(page ? page->after : NULL), P_NULL};

	*n = 0;
	*more = false;
	if (!id_ok(branch_id))
		return CW_OK;
	return list(s, CW_SQL_RENTALS_ACTIVE, p, NP(p), 2, page, read_rental, out, sizeof(*out), n,
		    more);
}

int cw_store_rentals_history(struct cw_store *s, const char *branch_id,
			     const struct cw_rental_filter *f, const struct cw_page *page,
			     struct cw_rental *out, int *n, bool *more)
{
	/* 1 branch, 2 from, 3 to, 4 phone, 5 status, 6 after, 7 limit */
	struct cw_param p[] = {P_TEXT(branch_id), P_INT(f->from_ms), P_INT(f->to_ms),
			       P_OPT(f->phone),	  P_OPT(f->status), P_OPT(page ? page->after : NULL),
			       P_NULL};

	*n = 0;
	*more = false;
	if (!range_ok(f->from_ms, f->to_ms))
		return CW_ERR_INVAL;
	if (!id_ok(branch_id))
		return CW_OK;
	return list(s, CW_SQL_RENTALS_HISTORY, p, NP(p), 6, page, read_rental, out, sizeof(*out),
		    n, more);
}

struct days {
	struct cw_rental_day *out;
	int cap, n;
};

static int days_cb(void *ctx, int ncols, const char *const *cols)
{
	struct days *d = ctx;

	if (ncols != 5)
		return CW_ERR_INTERNAL;
	if (d->n < d->cap) {
		struct cw_rental_day *x = &d->out[d->n];
		x->day = col_int(cols[0]);
		x->started = col_int(cols[1]);
		x->late = col_int(cols[2]);
		x->finished = col_int(cols[3]);
		x->avg_duration_ms = cols[4] ? (int64_t)strtod(cols[4], NULL) : 0;
	}
	d->n++;
	return CW_OK;
}

int cw_store_rental_stats(struct cw_store *s, const char *branch_id, int64_t from_ms,
			  int64_t to_ms, int64_t now_ms, struct cw_rental_stats *out,
			  struct cw_rental_day *days, int cap, int *ndays)
{
	/* 1 branch, 2 from, 3 to, 4 now */
	struct cw_param p[] = {P_TEXT(branch_id), P_INT(from_ms), P_INT(to_ms), P_INT(now_ms)};
	struct counts c = {.n = 0};
	struct days d = {.out = days, .cap = cap};
	void *conn = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	*ndays = 0;
	if (!range_ok(from_ms, to_ms) || cap < 0)
		return CW_ERR_INVAL;
	if (!id_ok(branch_id))
		return CW_OK;
	/* one transaction: the totals and the days see the same rows */
	rc = tx_begin(s, CW_CONN_READ, &conn);
	if (rc != CW_OK)
		return rc;
	if ((rc = s->be->exec(conn, CW_SQL_RENTAL_STATS, p, NP(p), counts_cb, &c, NULL)) ||
	    (rc = s->be->exec(conn, CW_SQL_RENTAL_STATS_DAYS, p, NP(p), days_cb, &d, NULL)))
		goto out;
	if (c.n != 8) {
		rc = CW_ERR_INTERNAL;
		goto out;
	}
	out->total = c.v[0];
	out->active = c.v[1];
	out->overdue = c.v[2];
	out->returned = c.v[3];
	out->returned_late = c.v[4];
	out->cancelled = c.v[5];
	out->finished = c.v[6];
	out->avg_duration_ms = c.v[7];
	if (d.n > cap)
		rc = CW_ERR_TOOBIG;
	else
		*ndays = d.n;
out:
	return tx_end(s, conn, rc);
}

int cw_store_telemetry_list(struct cw_store *s, const struct cw_telemetry_query *q,
			    struct cw_telemetry *out, int *n, bool *more)
{
	/* 1 key id, 2 from, 3 to, 4 event type, 5 after id, 6 limit, 7 manager (chain only) */
	struct cw_param p[] = {P_TEXT(q->id),	    P_INT(q->from_ms),
			       P_INT(q->to_ms),	    P_OPT(q->event_type),
			       q->after_id > 0 ? P_INT(q->after_id) : P_NULL,
			       P_INT(q->limit + 1), P_OPT(q->manager_id)};
	struct rows r = {.read = read_telemetry, .out = out, .elem = sizeof(*out), .cap = q->limit};
	enum cw_sql id;
	int np = NP(p) - 1, rc;

	*n = 0;
	*more = false;
	if (q->limit < 1 || q->limit > CW_PAGE_MAX || !range_ok(q->from_ms, q->to_ms) ||
	    q->after_id < 0 || (q->manager_id && !id_ok(q->manager_id)))
		return CW_ERR_INVAL;
	if (!id_ok(q->id))
		return CW_OK;
	switch (q->key) {
	case CW_TELEMETRY_DEVICE:
		id = CW_SQL_TELEMETRY_DEVICE;
		break;
	case CW_TELEMETRY_BRANCH:
		id = CW_SQL_TELEMETRY_BRANCH;
		break;
	case CW_TELEMETRY_CHAIN:
		id = CW_SQL_TELEMETRY_CHAIN;
		np = NP(p);
		break;
	default:
		return CW_ERR_INVAL;
	}
	/* the variant of cw_store_int.h: + 1 with a type, + 2 with a cursor */
	id = (enum cw_sql)(id + (q->event_type ? 1 : 0) + (q->after_id > 0 ? 2 : 0));
	rc = run(s, id, p, np, rows_cb, &r, NULL);
	if (rc != CW_OK)
		return rc;
	*more = r.n > q->limit;
	*n = *more ? q->limit : r.n;
	return CW_OK;
}

struct event_counts {
	cw_event_count_fn fn;
	void *ctx;
};

static int event_counts_cb(void *ctx, int ncols, const char *const *cols)
{
	struct event_counts *e = ctx;

	if (ncols != 3 || !cols[0] || !cols[1] || !cols[2])
		return CW_ERR_INTERNAL;
	return e->fn(e->ctx, col_int(cols[0]), cols[1], col_int(cols[2]));
}

#define DAY_MS 86400000LL

int cw_store_chain_event_counts(struct cw_store *s, const char *chain_id, const char *manager_id,
				int64_t from_ms, int64_t to_ms, cw_event_count_fn fn, void *ctx)
{
	struct event_counts e = {.fn = fn, .ctx = ctx};
	/* the whole UTC days inside [from, to): [lo, hi); times are >= 0 */
	int64_t lo = from_ms / DAY_MS + (from_ms % DAY_MS != 0), hi = to_ms / DAY_MS;
	int64_t head_to = to_ms, tail_from = to_ms;

	if (!fn || !range_ok(from_ms, to_ms) || (manager_id && !id_ok(manager_id)))
		return CW_ERR_INVAL;
	if (!id_ok(chain_id))
		return CW_OK;
	if (lo < hi) {
		head_to = lo * DAY_MS;
		tail_from = hi * DAY_MS;
	} else {
		lo = hi = 0; /* no whole day: all from telemetry */
	}
	{
		/* 1 chain, 2..3 first partial day, 4..5 last partial day, 6..7 whole
		 * days [lo, hi), 8 manager (the _MANAGER statement only) */
		struct cw_param p[] = {P_TEXT(chain_id), P_INT(from_ms),   P_INT(head_to),
				       P_INT(tail_from), P_INT(to_ms),	   P_INT(lo),
				       P_INT(hi),	 P_OPT(manager_id)};
		/* two statements, not "(?8 IS NULL OR ...)": see cw_store_pg.c */
		if (manager_id)
			return run(s, CW_SQL_CHAIN_EVENT_COUNTS_MANAGER, p, NP(p), event_counts_cb,
				   &e, NULL);
		return run(s, CW_SQL_CHAIN_EVENT_COUNTS, p, NP(p) - 1, event_counts_cb, &e, NULL);
	}
}

/* ---- staff user management ---- */

/* "id,id,..." (sorted by the SQL) into a cw_user_branches */
static int split_branches(const char *v, struct cw_user_branches *out)
{
	out->n = 0;
	while (v && *v) {
		const char *end = strchr(v, ',');
		size_t len = end ? (size_t)(end - v) : strlen(v);
		if (out->n >= CW_USER_BRANCHES_MAX || len >= CW_UUID_STRLEN)
			return CW_ERR_TOOBIG;
		memcpy(out->ids[out->n], v, len);
		out->ids[out->n][len] = '\0';
		out->n++;
		v = end ? end + 1 : NULL;
	}
	return CW_OK;
}

static int read_user_row(int ncols, const char *const *c, void *out)
{
	struct cw_user_row *x = out;
	int rc;

	if (ncols != 8)
		return CW_ERR_INTERNAL;
	rc = read_user(7, c, &x->user);
	if (rc == CW_OK)
		rc = split_branches(c[7], &x->branches);
	return rc;
}

int cw_store_user_list(struct cw_store *s, const struct cw_scope *scope,
		       const struct cw_page *page, struct cw_user_row *out, int *n, bool *more)
{
	/* 1 after, 2 chain filter, 3 limit */
	struct cw_param p[] = {P_OPT(page ? page->after : NULL),
			       P_OPT(scope ? scope->chain_id : NULL), P_NULL};

	*n = 0;
	*more = false;
	if (scope && scope->chain_id && *scope->chain_id && !id_ok(scope->chain_id))
		return CW_OK;
	return list(s, CW_SQL_USER_LIST, p, NP(p), 2, page, read_user_row, out, sizeof(*out), n,
		    more);
}

static int branch_cb(void *ctx, int ncols, const char *const *cols)
{
	struct cw_user_branches *b = ctx;

	if (ncols != 1 || b->n >= CW_USER_BRANCHES_MAX)
		return CW_ERR_TOOBIG;
	return col_str(cols[0], b->ids[b->n++], CW_UUID_STRLEN);
}

int cw_store_user_branches(struct cw_store *s, const char *user_id, struct cw_user_branches *out)
{
	struct cw_param p[] = {P_TEXT(user_id)};

	out->n = 0;
	if (!id_ok(user_id))
		return CW_ERR_NOTFOUND;
	return run(s, CW_SQL_USER_BRANCHES_GET, p, NP(p), branch_cb, out, NULL);
}

int cw_store_user_save(struct cw_store *s, const struct cw_user *u,
		       const struct cw_user_branches *br, bool create, int64_t now_ms)
{
	/* 1 id, 2 email, 3 hash, 4 role, 5 chain_id, 6 active, 7 now (both statements) */
	struct cw_param p[] = {P_TEXT(u->id),		 P_TEXT(u->email),
			       P_TEXT(u->password_hash), P_TEXT(cw_role_name(u->role)),
			       P_OPT(u->chain_id),	 P_BOOL(u->active),
			       P_INT(now_ms)};
	struct cw_param pu[] = {P_TEXT(u->id)};
	int64_t changes = 0;
	void *conn = NULL;
	int rc;

	if (!id_ok(u->id) || (u->chain_id[0] && !id_ok(u->chain_id)) ||
	    (br && (br->n < 0 || br->n > CW_USER_BRANCHES_MAX)))
		return CW_ERR_INVAL;
	if (br && br->n > 0 && u->role != CW_ROLE_BRANCH_MANAGER)
		return CW_ERR_INVAL;
	for (int i = 0; br && i < br->n; i++)
		if (!id_ok(br->ids[i]))
			return CW_ERR_INVAL;
	rc = tx_begin(s, CW_CONN_WRITE, &conn);
	if (rc != CW_OK)
		return rc;
	rc = s->be->exec(conn, create ? CW_SQL_USER_INSERT : CW_SQL_USER_UPDATE, p, NP(p), NULL,
			 NULL, &changes);
	if (rc == CW_OK && changes != 1)
		rc = CW_ERR_NOTFOUND;
	if (rc == CW_OK && br)
		rc = s->be->exec(conn, CW_SQL_USER_BRANCHES_CLEAR, pu, NP(pu), NULL, NULL, NULL);
	for (int i = 0; rc == CW_OK && br && i < br->n; i++) {
		/* inserts nothing unless the user is a manager of the branch's chain */
		struct cw_param pb[] = {P_TEXT(u->id), P_TEXT(br->ids[i])};
		changes = 0;
		rc = s->be->exec(conn, CW_SQL_USER_BRANCH_INSERT, pb, NP(pb), NULL, NULL, &changes);
		if (rc == CW_OK && changes != 1)
			rc = CW_ERR_INVAL;
	}
	return tx_end(s, conn, rc);
}

/* ---- failed staff logins ---- */

static bool login_key_ok(const char *key)
{
	size_t n = 0;

	for (; key && key[n]; n++)
		if (!((key[n] >= '0' && key[n] <= '9') || (key[n] >= 'a' && key[n] <= 'f')))
			return false;
	return n == 64;
}

static int login_cb(void *ctx, int ncols, const char *const *cols)
{
	struct cw_login_failures *f = ctx;

	if (ncols != 2)
		return CW_ERR_INTERNAL;
	f->failures = (int)col_int(cols[0]);
	f->window_start_ms = col_int(cols[1]);
	return CW_OK;
}

int cw_store_login_failures_get(struct cw_store *s, const char *key, int64_t now_ms,
				int64_t window_ms, struct cw_login_failures *out)
{
	/* 1 key, 2 oldest live window start */
	struct cw_param p[] = {P_TEXT(key), P_INT(now_ms - window_ms)};

	*out = (struct cw_login_failures){0};
	if (!login_key_ok(key) || window_ms < 1)
		return CW_ERR_INVAL;
	return run(s, CW_SQL_LOGIN_FAILURES_GET, p, NP(p), login_cb, out, NULL);
}

int cw_store_login_failure_add(struct cw_store *s, const char *key, int64_t now_ms,
			       int64_t window_ms, struct cw_login_failures *out)
{
	/* 1 key, 2 now, 3 oldest live window start */
	struct cw_param p[] = {P_TEXT(key), P_INT(now_ms), P_INT(now_ms - window_ms)};
	/* 1 oldest live window start, 2 batch */
	struct cw_param pp[] = {P_INT(now_ms - window_ms), P_INT(CW_LOGIN_PRUNE_BATCH)};
	struct cw_login_failures f = {0};
	int rc;

	if (out)
		*out = f;
	if (!login_key_ok(key) || window_ms < 1)
		return CW_ERR_INVAL;
	rc = run(s, CW_SQL_LOGIN_FAILURE_ADD, p, NP(p), login_cb, &f, NULL);
	if (rc != CW_OK)
		return rc;
	if (f.failures < 1)
		return CW_ERR_INTERNAL; /* RETURNING gave no row */
	if (out)
		*out = f;
	/* Housekeeping only: the failure is counted already, so an error here
	 * is logged, not returned (the next failure prunes again). */
	rc = run(s, CW_SQL_LOGIN_FAILURES_PRUNE, pp, NP(pp), NULL, NULL, NULL);
	if (rc != CW_OK)
		cw_warn("store.login_prune", "msg=\"%s\"", cw_strerror(rc));
	return CW_OK;
}

int cw_store_login_failures_clear(struct cw_store *s, const char *key)
{
	struct cw_param p[] = {P_TEXT(key)};

	if (!login_key_ok(key))
		return CW_ERR_INVAL;
	return run(s, CW_SQL_LOGIN_FAILURES_CLEAR, p, NP(p), NULL, NULL, NULL);
}

/* ---- edge -> cloud sync (issue 4) ---- */

/* The controllers row of a lock board: its id is derived from (device, bus,
 * board) - a UUIDv8 (RFC 9562 "custom") of BLAKE2b-128 over the three - so
 * every batch naming the board upserts the same row without a lookup. */
static void controller_id(const char *device_id, int64_t bus, int64_t board,
			  char out[CW_UUID_STRLEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char h[16];
	char in[CW_UUID_STRLEN + 48];
	int n = snprintf(in, sizeof(in), "cartwise-controller:%s:%lld:%lld", device_id,
			 (long long)bus, (long long)board);
	char *o = out;

	crypto_generichash(h, sizeof(h), (const unsigned char *)in, (size_t)n, NULL, 0);
	h[6] = (unsigned char)((h[6] & 0x0f) | 0x80); /* version 8 */
	h[8] = (unsigned char)((h[8] & 0x3f) | 0x80); /* variant 10 */
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[h[i] >> 4];
		*o++ = hex[h[i] & 15];
	}
	*o = '\0';
}

static int hw_cb(void *ctx, int ncols, const char *const *cols)
{
	int64_t *hw = ctx;

	if (ncols != 1)
		return CW_ERR_INTERNAL;
	*hw = col_int(cols[0]);
	return CW_OK;
}

static const char *const sync_refused_cart =
	"cart belongs to another branch or another device";
static const char *const sync_refused_number =
	"cart_number is taken by another cart of this branch";
static const char *const sync_refused_rental_cart =
	"rental.cart_id is not a cart of this device (send its cart first)";
static const char *const sync_refused_rental = "rental belongs to another device";

/* One entry, inside the batch's transaction. */
static int sync_one(struct cw_store *s, void *conn, const struct cw_device *d,
		    const struct cw_sync_item *x, int64_t now_ms, struct cw_sync_result *res)
{
	int64_t changes = 0;
	int rc;

	switch (x->op) {
	case CW_SYNC_CART: {
		char ctl[CW_UUID_STRLEN];
		controller_id(d->id, x->bus, x->board, ctl);
		/* 1 id, 2 device, 3 bus, 4 board, 5 status, 6 now */
		struct cw_param pc[] = {P_TEXT(ctl), P_TEXT(d->id), P_INT(x->bus), P_INT(x->board),
					P_TEXT(x->board_online ? "online" : "offline"),
					P_INT(now_ms)};
		/* 1 id, 2 branch, 3 number, 4 locker, 5 controller, 6 status,
		 * 7 locked, 8 last used, 9 notes, 10 updated, 11 device */
		struct cw_param pk[] = {P_TEXT(x->id),	     P_TEXT(d->branch_id),
					P_INT(x->cart_number), P_INT(x->locker_id),
					P_TEXT(ctl),	     P_TEXT(x->status),
					P_BOOL(x->is_locked),
					x->last_used_ms > 0 ? P_INT(x->last_used_ms) : P_NULL,
					P_OPT(x->notes),     P_INT(x->updated_ms),
					P_TEXT(d->id)};
		rc = s->be->exec(conn, CW_SQL_SYNC_CONTROLLER_UPSERT, pc, NP(pc), NULL, NULL, NULL);
		if (rc != CW_OK)
			return rc;
		rc = s->be->exec(conn, CW_SQL_SYNC_CART_UPSERT, pk, NP(pk), NULL, NULL, &changes);
		if (rc == CW_ERR_CONFLICT) {
			res->why = sync_refused_number;
			return CW_ERR_INVAL;
		}
		if (rc == CW_OK && changes != 1) {
			res->why = sync_refused_cart;
			return CW_ERR_INVAL;
		}
		return rc;
	}
	case CW_SYNC_RENTAL: {
		/* 1 id, 2 cart, 3 branch, 4 device, 5 phone, 6 start, 7 expected,
		 * 8 actual, 9 trusted, 10 status, 11 duration, 12 notes, 13 now,
		 * 14 updated */
		struct cw_param p[] = {P_TEXT(x->id),
				       P_TEXT(x->cart_id),
				       P_TEXT(d->branch_id),
				       P_TEXT(d->id),
				       P_TEXT(x->phone),
				       P_INT(x->start_ms),
				       P_INT(x->expected_ms),
				       x->actual_ms > 0 ? P_INT(x->actual_ms) : P_NULL,
				       P_BOOL(x->clock_trusted),
				       P_TEXT(x->status),
				       x->duration_min >= 0 ? P_INT(x->duration_min) : P_NULL,
				       P_OPT(x->notes),
				       P_INT(now_ms),
				       P_INT(x->updated_ms)};
		struct cw_param pm[] = {P_TEXT(x->cart_id), P_TEXT(d->branch_id), P_TEXT(d->id)};
		struct first f = {.found = false};
		rc = s->be->exec(conn, CW_SQL_SYNC_RENTAL_UPSERT, p, NP(p), NULL, NULL, &changes);
		if (rc != CW_OK || changes == 1)
			return rc;
		/* nothing written: say which of the two ownership checks failed */
		rc = s->be->exec(conn, CW_SQL_SYNC_CART_MINE, pm, NP(pm), first_cb, &f, NULL);
		if (rc == CW_OK) {
			res->why = f.found ? sync_refused_rental : sync_refused_rental_cart;
			rc = CW_ERR_INVAL;
		}
		return rc;
	}
	case CW_SYNC_HEALTH:
	case CW_SYNC_TELEMETRY: {
		/* 1 device, 2 branch, 3 chain, 4 seq, 5 type, 6 data, 7 ts, 8 trusted, 9 now */
		struct cw_param p[] = {P_TEXT(d->id),	     P_TEXT(d->branch_id), P_TEXT(d->chain_id),
				       P_INT(x->seq),	     P_TEXT(x->event_type), P_OPT(x->data),
				       P_INT(x->ts_ms),	     P_BOOL(x->clock_trusted),
				       P_INT(now_ms)};
		rc = s->be->exec(conn, CW_SQL_SYNC_TELEMETRY_INSERT, p, NP(p), NULL, NULL, NULL);
		if (rc == CW_OK && x->op == CW_SYNC_HEALTH) {
			/* 1 device, 2 health, 3 now */
			struct cw_param ph[] = {P_TEXT(d->id), P_TEXT(x->data), P_INT(now_ms)};
			rc = s->be->exec(conn, CW_SQL_SYNC_DEVICE_HEALTH, ph, NP(ph), NULL, NULL,
					 NULL);
		}
		return rc;
	}
	case CW_SYNC_COMMAND_RESULT: {
		/* 1 id, 2 device, 3 state, 4 result, 5 finished */
		struct cw_param p[] = {P_TEXT(x->id), P_TEXT(d->id), P_TEXT(x->status),
				       P_OPT(x->data), P_INT(x->ts_ms)};
		rc = s->be->exec(conn, CW_SQL_SYNC_COMMAND_RESULT, p, NP(p), NULL, NULL, &changes);
		if (rc == CW_OK && changes == 0) {
			/* unknown, another device's, or already finished: the
			 * device cannot change what it does not own */
			res->ignored++;
			cw_info("sync.command_ignored", "device=%s command=%s seq=%lld", d->id, x->id,
				(long long)x->seq);
		}
		return rc;
	}
	}
	return CW_ERR_INTERNAL;
}

int cw_store_sync_apply(struct cw_store *s, const char *device_id, const struct cw_sync_item *it,
			int n, int64_t now_ms, struct cw_sync_result *res)
{
	struct cw_param pd[] = {P_TEXT(device_id)};
	struct cw_param pl[] = {P_TEXT(device_id), P_INT(now_ms)};
	struct rows got;
	struct cw_device *d;
	int64_t hw = -1;
	void *conn = NULL;
	int rc;

	memset(res, 0, sizeof(*res));
	res->bad = -1;
	if (!id_ok(device_id))
		return CW_ERR_NOTFOUND;
	if (n < 0)
		return CW_ERR_INVAL;
	for (int i = 1; i < n; i++)
		if (it[i].seq != it[i - 1].seq + 1)
			return CW_ERR_INVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return CW_ERR_NOMEM;
	got = (struct rows){.read = read_device, .out = d, .elem = sizeof(*d), .cap = 1};
	rc = tx_begin(s, CW_CONN_WRITE, &conn);
	if (rc != CW_OK)
		goto done;
	/* the device row first (tenancy), then the high-water row, locked until
	 * the commit: PostgreSQL's upsert takes the row lock, so a second batch
	 * of the same device waits here and then sees the new mark; SQLite's
	 * BEGIN IMMEDIATE already holds the database's write lock */
	if ((rc = s->be->exec(conn, CW_SQL_DEVICE_GET, pd, NP(pd), rows_cb, &got, NULL)))
		goto out;
	if (got.n != 1) {
		rc = CW_ERR_NOTFOUND;
		goto out;
	}
	memcpy(res->branch_id, d->branch_id, sizeof(res->branch_id));
	if ((rc = s->be->exec(conn, CW_SQL_SYNC_HW_LOCK, pl, NP(pl), hw_cb, &hw, NULL)))
		goto out;
	if (hw < 0) {
		rc = CW_ERR_INTERNAL;
		goto out;
	}
	res->high_water = hw;
	if (n > 0 && it[0].seq > hw + 1) {
		res->gap = true;
		rc = CW_ERR_CONFLICT;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		if (it[i].seq <= hw) {
			res->skipped++;
			continue;
		}
		rc = sync_one(s, conn, d, &it[i], now_ms, res);
		if (rc != CW_OK) {
			if (rc == CW_ERR_INVAL || rc == CW_ERR_CONFLICT) {
				res->bad = i;
				if (!res->why)
					res->why = "a value is out of its allowed range";
				rc = CW_ERR_INVAL;
			}
			goto out;
		}
		res->applied++;
	}
	if (n > 0 && it[n - 1].seq > hw) {
		/* 1 device, 2 high water, 3 now */
		struct cw_param ps[] = {P_TEXT(device_id), P_INT(it[n - 1].seq), P_INT(now_ms)};
		rc = s->be->exec(conn, CW_SQL_SYNC_HW_SET, ps, NP(ps), NULL, NULL, NULL);
		if (rc == CW_OK)
			res->high_water = it[n - 1].seq;
	}
out:
	rc = tx_end(s, conn, rc);
	if (rc != CW_OK && !res->gap) {
		res->applied = res->skipped = 0;
		res->high_water = hw < 0 ? 0 : hw;
	}
done:
	free(d);
	return rc;
}

int cw_store_sync_high_water(struct cw_store *s, const char *device_id, int64_t *out)
{
	struct cw_param p[] = {P_TEXT(device_id)};

	*out = 0;
	if (!id_ok(device_id))
		return CW_ERR_NOTFOUND;
	return run(s, CW_SQL_SYNC_HW_GET, p, NP(p), hw_cb, out, NULL);
}

int cw_store_sync_reset(struct cw_store *s, const char *device_id, int64_t high_water,
			int64_t now_ms, int64_t *previous, int64_t *detached)
{
	struct cw_param pl[] = {P_TEXT(device_id), P_INT(now_ms)};
	struct cw_param pd[] = {P_TEXT(device_id), P_INT(high_water)};
	/* 1 device, 2 high water, 3 now */
	struct cw_param ps[] = {P_TEXT(device_id), P_INT(high_water), P_INT(now_ms)};
	struct cw_param pg[] = {P_TEXT(device_id)};
	struct rows got;
	struct cw_device *d;
	int64_t hw = -1;
	void *conn = NULL;
	int rc;

	*previous = 0;
	*detached = 0;
	if (!id_ok(device_id))
		return CW_ERR_NOTFOUND;
	if (high_water < 0)
		return CW_ERR_INVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return CW_ERR_NOMEM;
	got = (struct rows){.read = read_device, .out = d, .elem = sizeof(*d), .cap = 1};
	rc = tx_begin(s, CW_CONN_WRITE, &conn);
	if (rc != CW_OK)
		goto done;
	/* as a batch: the device, then its mark locked until the commit */
	if ((rc = s->be->exec(conn, CW_SQL_DEVICE_GET, pg, NP(pg), rows_cb, &got, NULL)))
		goto out;
	if (got.n != 1) {
		rc = CW_ERR_NOTFOUND;
		goto out;
	}
	if ((rc = s->be->exec(conn, CW_SQL_SYNC_HW_LOCK, pl, NP(pl), hw_cb, &hw, NULL)))
		goto out;
	if (hw < 0) {
		rc = CW_ERR_INTERNAL;
		goto out;
	}
	*previous = hw;
	if (high_water > hw) {
		rc = CW_ERR_INVAL;
		goto out;
	}
	rc = s->be->exec(conn, CW_SQL_SYNC_TELEMETRY_DETACH, pd, NP(pd), NULL, NULL, detached);
	if (rc == CW_OK)
		rc = s->be->exec(conn, CW_SQL_SYNC_HW_SET, ps, NP(ps), NULL, NULL, NULL);
out:
	rc = tx_end(s, conn, rc);
	if (rc != CW_OK)
		*detached = 0;
done:
	free(d);
	return rc;
}

/* ---- versioned device configuration ---- */

int cw_store_device_config_put(struct cw_store *s, const char *device_id, const char *body,
			       const char *created_by, int64_t now_ms, int64_t *version)
{
	/* 1 device, 2 body, 3 created by, 4 now */
	struct cw_param p[] = {P_TEXT(device_id), P_TEXT(body), P_OPT(created_by), P_INT(now_ms)};
	struct cw_device d;
	int rc;

	*version = 0;
	if (!id_ok(device_id))
		return CW_ERR_NOTFOUND;
	if (!body || strlen(body) > CW_DEVICE_CONFIG_MAX || (created_by && !id_ok(created_by)))
		return CW_ERR_INVAL;
	rc = cw_store_device_get(s, device_id, &d);
	if (rc != CW_OK)
		return rc;
	return run(s, CW_SQL_DEVICE_CONFIG_INSERT, p, NP(p), hw_cb, version, NULL);
}

struct config_row {
	int64_t version;
	char *body;
	bool want_body;
};

static int config_cb(void *ctx, int ncols, const char *const *cols)
{
	struct config_row *r = ctx;

	if (ncols != 2)
		return CW_ERR_INTERNAL;
	r->version = col_int(cols[0]);
	if (r->want_body && cols[1]) {
		r->body = strdup(cols[1]);
		if (!r->body)
			return CW_ERR_NOMEM;
	}
	return CW_OK;
}

int cw_store_device_config_get(struct cw_store *s, const char *device_id, int64_t *version,
			       char **body)
{
	struct cw_param p[] = {P_TEXT(device_id)};
	struct config_row r = {.want_body = body != NULL};
	int rc;

	*version = 0;
	if (body)
		*body = NULL;
	if (!id_ok(device_id))
		return CW_ERR_NOTFOUND;
	rc = run(s, CW_SQL_DEVICE_CONFIG_GET, p, NP(p), config_cb, &r, NULL);
	if (rc != CW_OK) {
		free(r.body);
		return rc;
	}
	*version = r.version;
	if (body)
		*body = r.body;
	return CW_OK;
}

int cw_store_device_config_version(struct cw_store *s, const char *device_id, int64_t *version)
{
	struct cw_param p[] = {P_TEXT(device_id)};

	*version = 0;
	if (!id_ok(device_id))
		return CW_ERR_NOTFOUND;
	return run(s, CW_SQL_DEVICE_CONFIG_VERSION, p, NP(p), hw_cb, version, NULL);
}

/* ---- dashboards (issue 7) ---- */

int cw_store_device_list(struct cw_store *s, const struct cw_scope *scope, const char *branch_id,
			 const struct cw_page *page, struct cw_device *out, int *n, bool *more)
{
	*n = 0;
	*more = false;
	if (scope && scope->manager_id && !id_ok(scope->manager_id))
		return CW_ERR_INVAL;
	if (branch_id) {
		/* 1 branch, 2 after, 3 limit */
		struct cw_param p[] = {P_TEXT(branch_id), P_OPT(page ? page->after : NULL), P_NULL};
		if (!id_ok(branch_id))
			return CW_OK;
		return list(s, CW_SQL_DEVICE_LIST_BRANCH, p, NP(p), 2, page, read_device, out,
			    sizeof(*out), n, more);
	}
	{
		/* 1 after, 2 chain filter, 3 manager filter, 4 limit */
		struct cw_param p[] = {P_OPT(page ? page->after : NULL),
				       P_OPT(scope ? scope->chain_id : NULL),
				       P_OPT(scope ? scope->manager_id : NULL), P_NULL};
		if (scope && scope->chain_id && *scope->chain_id && !id_ok(scope->chain_id))
			return CW_OK; /* no device belongs to a chain that cannot exist */
		return list(s, CW_SQL_DEVICE_LIST, p, NP(p), 3, page, read_device, out,
			    sizeof(*out), n, more);
	}
}

int cw_store_branch_update(struct cw_store *s, const struct cw_branch *b, int64_t now_ms)
{
	/* 1 id, 2 code, 3 name, 4 address, 5 city, 6 lat, 7 lon, 8 active, 9 now */
	struct cw_param p[] = {P_TEXT(b->id),
			       P_TEXT(b->code),
			       P_TEXT(b->name),
			       P_OPT(b->address),
			       P_OPT(b->city),
			       b->has_location ? P_REAL(b->latitude) : P_NULL,
			       b->has_location ? P_REAL(b->longitude) : P_NULL,
			       P_BOOL(b->active),
			       P_INT(now_ms)};
	int64_t changes = 0;
	int rc;

	if (!id_ok(b->id))
		return CW_ERR_NOTFOUND;
	rc = run(s, CW_SQL_BRANCH_UPDATE, p, NP(p), NULL, NULL, &changes);
	if (rc == CW_OK && changes == 0)
		rc = CW_ERR_NOTFOUND;
	return rc;
}

static int read_enrollment(int ncols, const char *const *c, void *out)
{
	struct cw_enrollment_row *x = out;
	int rc;

	if (ncols != 7)
		return CW_ERR_INTERNAL;
	memset(x, 0, sizeof(*x));
	if ((rc = col_str(c[0], x->e.id, sizeof(x->e.id))) ||
	    (rc = col_str(c[1], x->e.branch_id, sizeof(x->e.branch_id))) ||
	    (rc = col_str(c[2], x->chain_id, sizeof(x->chain_id))) ||
	    (rc = col_str(c[3], x->e.created_by, sizeof(x->e.created_by))))
		return rc;
	x->e.created_ms = col_int(c[4]);
	x->e.expires_ms = col_int(c[5]);
	x->e.uses_left = (int)col_int(c[6]);
	return CW_OK;
}

int cw_store_enrollment_list(struct cw_store *s, const char *branch_id, const struct cw_page *page,
			     struct cw_enrollment_row *out, int *n, bool *more)
{
	/* 1 branch, 2 after, 3 limit */
	struct cw_param p[] = {P_TEXT(branch_id), P_OPT(page ? page->after : NULL), P_NULL};

	*n = 0;
	*more = false;
	if (!id_ok(branch_id))
		return CW_OK;
	return list(s, CW_SQL_ENROLL_LIST, p, NP(p), 2, page, read_enrollment, out, sizeof(*out),
		    n, more);
}

int cw_store_enrollment_get(struct cw_store *s, const char *id, struct cw_enrollment_row *out)
{
	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	return get_one(s, CW_SQL_ENROLL_GET, id, read_enrollment, out, sizeof(*out));
}

int cw_store_enrollment_revoke(struct cw_store *s, const char *id)
{
	struct cw_param p[] = {P_TEXT(id)};
	int64_t changes = 0;
	int rc;

	if (!id_ok(id))
		return CW_ERR_NOTFOUND;
	rc = run(s, CW_SQL_ENROLL_REVOKE, p, NP(p), NULL, NULL, &changes);
	if (rc == CW_OK && changes == 0)
		rc = CW_ERR_NOTFOUND;
	return rc;
}

struct branch_compare {
	cw_branch_compare_fn fn;
	void *ctx;
};

static int branch_compare_cb(void *ctx, int ncols, const char *const *c)
{
	struct branch_compare *bc = ctx;
	struct cw_branch_compare x;
	int rc;

	if (ncols != 14)
		return CW_ERR_INTERNAL;
	memset(&x, 0, sizeof(x));
	if ((rc = col_str(c[0], x.branch_id, sizeof(x.branch_id))) ||
	    (rc = col_str(c[1], x.code, sizeof(x.code))) ||
	    (rc = col_str(c[2], x.name, sizeof(x.name))))
		return rc;
	x.active = col_bool(c[3]);
	x.rentals = col_int(c[4]);
	x.open = col_int(c[5]);
	x.overdue = col_int(c[6]);
	x.returned_late = col_int(c[7]);
	x.cancelled = col_int(c[8]);
	x.finished = col_int(c[9]);
	x.avg_duration_ms = col_int(c[10]);
	x.carts = col_int(c[11]);
	x.devices = col_int(c[12]);
	x.devices_online = col_int(c[13]);
	return bc->fn(bc->ctx, &x);
}

int cw_store_chain_branch_compare(struct cw_store *s, const char *chain_id, const char *manager_id,
				  int64_t from_ms, int64_t to_ms, int64_t now_ms,
				  int64_t online_after_ms, cw_branch_compare_fn fn, void *ctx)
{
	/* 1 chain, 2 from, 3 to, 4 now, 5 online after, 6 manager (the
	 * _MANAGER statement only) */
	struct cw_param p[] = {P_TEXT(chain_id), P_INT(from_ms),	  P_INT(to_ms),
			       P_INT(now_ms),	 P_INT(online_after_ms), P_OPT(manager_id)};
	struct branch_compare bc = {.fn = fn, .ctx = ctx};

	if (!fn || !range_ok(from_ms, to_ms) || (manager_id && !id_ok(manager_id)))
		return CW_ERR_INVAL;
	if (!id_ok(chain_id))
		return CW_OK;
	/* two statements, not "(?6 IS NULL OR ...)": see cw_store_pg.c */
	if (manager_id)
		return run(s, CW_SQL_BRANCH_COMPARE_MANAGER, p, NP(p), branch_compare_cb, &bc,
			   NULL);
	return run(s, CW_SQL_BRANCH_COMPARE, p, NP(p) - 1, branch_compare_cb, &bc, NULL);
}

/* ---- branch analytics (issue 7: the branch dashboard) ---- */

struct hours {
	struct cw_rental_hour *out;
	int cap, n;
};

static int hours_cb(void *ctx, int ncols, const char *const *cols)
{
	struct hours *h = ctx;

	if (ncols != 2)
		return CW_ERR_INTERNAL;
	if (h->n < h->cap) {
		h->out[h->n].hour = col_int(cols[0]);
		h->out[h->n].started = col_int(cols[1]);
	}
	h->n++;
	return CW_OK;
}

int cw_store_rental_analytics(struct cw_store *s, const char *branch_id, int64_t from_ms,
			      int64_t to_ms, int64_t now_ms, struct cw_rental_analytics *out,
			      struct cw_rental_hour *hours, int cap, int *nhours)
{
	static const int64_t edges_min[CW_DURATION_BUCKETS] = CW_DURATION_EDGES_MIN;
	/* the range up to now: no rental is out after now yet */
	int64_t end_ms = to_ms < now_ms ? to_ms : now_ms;
	struct hours h = {.out = hours, .cap = cap};
	struct counts dur = {.n = 0}, rented = {.n = 0}, carts = {.n = 0};
	void *conn = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	*nhours = 0;
	if (!range_ok(from_ms, to_ms) || cap < 0)
		return CW_ERR_INVAL;
	if (end_ms < from_ms)
		end_ms = from_ms;
	out->range_ms = end_ms - from_ms;
	if (!id_ok(branch_id))
		return CW_OK;
	{
		/* hours: 1 branch, 2 from, 3 to; durations: and 4..8 the bucket
		 * edges after the first (ms); rented time: 1 branch, 2 from,
		 * 3 end of the range (min(to, now)), 4 now; carts: 1 branch */
		struct cw_param p[] = {P_TEXT(branch_id),
				       P_INT(from_ms),
				       P_INT(to_ms),
				       P_INT(edges_min[1] * 60000),
				       P_INT(edges_min[2] * 60000),
				       P_INT(edges_min[3] * 60000),
				       P_INT(edges_min[4] * 60000),
				       P_INT(edges_min[5] * 60000)};
		struct cw_param pr[] = {P_TEXT(branch_id), P_INT(from_ms), P_INT(end_ms),
					P_INT(now_ms)};
		_Static_assert(CW_DURATION_BUCKETS == 6, "CW_SQL_RENTAL_DURATIONS has six counts");

		/* one snapshot: the hours, durations and rented time see the same rows */
		rc = tx_begin(s, CW_CONN_READ, &conn);
		if (rc != CW_OK)
			return rc;
		if ((rc = s->be->exec(conn, CW_SQL_RENTAL_STATS_HOURS, p, 3, hours_cb, &h, NULL)) ||
		    (rc = s->be->exec(conn, CW_SQL_RENTAL_DURATIONS, p, NP(p), counts_cb, &dur,
				      NULL)) ||
		    (rc = s->be->exec(conn, CW_SQL_RENTAL_RENTED_MS, pr, NP(pr), counts_cb, &rented,
				      NULL)) ||
		    (rc = s->be->exec(conn, CW_SQL_BRANCH_CARTS_IN_USE, p, 1, counts_cb, &carts,
				      NULL)))
			goto out;
	}
	if (dur.n != CW_DURATION_BUCKETS || rented.n != 1 || carts.n != 1) {
		rc = CW_ERR_INTERNAL;
		goto out;
	}
	memcpy(out->durations, dur.v, sizeof(out->durations));
	out->rented_ms = rented.v[0];
	out->carts = carts.v[0];
	if (h.n > cap)
		rc = CW_ERR_TOOBIG;
	else
		*nhours = h.n;
out:
	return tx_end(s, conn, rc);
}

static int read_cart_faults(int ncols, const char *const *c, void *out)
{
	struct cw_cart_faults *x = out;
	int rc;

	if (ncols != 4)
		return CW_ERR_INTERNAL;
	if ((rc = col_str(c[0], x->cart_id, sizeof(x->cart_id))))
		return rc;
	x->cart_number = col_int(c[1]);
	x->lock_fault = col_int(c[2]);
	x->lock_offline = col_int(c[3]);
	return CW_OK;
}

int cw_store_branch_faults(struct cw_store *s, const char *branch_id, int64_t from_ms,
			   int64_t to_ms, struct cw_cart_faults *out, int cap, int *n)
{
	/* 1 branch, 2 from, 3 to, 4 limit */
	struct cw_param p[] = {P_TEXT(branch_id), P_INT(from_ms), P_INT(to_ms), P_INT(cap)};
	struct rows r = {.read = read_cart_faults, .out = out, .elem = sizeof(*out), .cap = cap};
	int rc;

	*n = 0;
	if (!range_ok(from_ms, to_ms) || cap < 1)
		return CW_ERR_INVAL;
	if (!id_ok(branch_id))
		return CW_OK;
	rc = run(s, CW_SQL_BRANCH_FAULTS, p, NP(p), rows_cb, &r, NULL);
	if (rc == CW_OK)
		*n = r.n < cap ? r.n : cap;
	return rc;
}
