/* Tests of the cloud store (src/cloud/cw_store*.c), run on one backend per
 * process: `test_store sqlite` or `test_store postgres`. The PostgreSQL run
 * needs the standard PG* variables (run the suite under pg_virtualenv) and
 * creates, then drops, a database of its own; without PG* it exits 77. */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_store.h"
#include "cw_store_int.h"
#include "cw_uuid.h"

#define SKIP 77
#define NOW 1790000000000LL

static enum cw_backend backend;
static char tmpdir[256];
static char dbname[64];       /* PostgreSQL database of this run */
static char conninfo[128];

/* ---- fixtures ---- */

/* Runs "<pre><quoted name><post>" as a maintenance command. */
static int pg_admin(const char *pre, const char *name, const char *post)
{
	char sql[256];
	PGconn *c = PQconnectdb("");
	PGresult *r;
	int ok;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	/* name is made of [a-z0-9_] by this file, quoted anyway */
	{
		char *q = PQescapeIdentifier(c, name, strlen(name));
		snprintf(sql, sizeof(sql), "%s%s%s", pre, q, post);
		PQfreemem(q);
	}
	r = PQexec(c, sql);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return ok ? 0 : -1;
}

/* A fresh database (PostgreSQL) or file (SQLite) named after tag. */
static void fresh_config(const char *tag, struct cw_store_config *cfg, char *buf, size_t cap)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = backend;
	cfg->pool_size = 4;
	cfg->acquire_timeout_ms = 2000;
	if (backend == CW_BACKEND_SQLITE) {
		snprintf(buf, cap, "%s/%s.db", tmpdir, tag);
		cfg->path = buf;
	} else {
		char name[128];
		snprintf(name, sizeof(name), "%s_%s", dbname, tag);
		ck_assert_int_eq(pg_admin("CREATE DATABASE ", name, ""), 0);
		snprintf(buf, cap, "dbname=%s", name);
		cfg->conninfo = buf;
	}
}

static struct cw_store *open_store(void)
{
	struct cw_store_config cfg = {.backend = backend, .pool_size = 4, .acquire_timeout_ms = 2000};
	char path[512];
	struct cw_store *s = NULL;

	if (backend == CW_BACKEND_SQLITE) {
		snprintf(path, sizeof(path), "%s/cloud.db", tmpdir);
		cfg.path = path;
	} else {
		cfg.conninfo = conninfo;
	}
	ck_assert_int_eq(cw_store_new(&cfg, &s), CW_OK);
	ck_assert_int_eq(cw_store_migrate(s, NULL), CW_OK);
	return s;
}

static void new_id(char *out)
{
	cw_uuid_v7(out);
}

static void make_chain(struct cw_store *s, struct cw_chain *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	new_id(c->id);
	snprintf(c->name, sizeof(c->name), "%s", name);
	/* slugs are unique: derive one from the id */
	snprintf(c->slug, sizeof(c->slug), "chain-%.12s", c->id + 24);
	c->active = true;
	ck_assert_int_eq(cw_store_chain_create(s, c, NOW), CW_OK);
}

static void make_branch(struct cw_store *s, struct cw_branch *b, const char *chain_id,
			const char *code)
{
	memset(b, 0, sizeof(*b));
	new_id(b->id);
	snprintf(b->chain_id, sizeof(b->chain_id), "%s", chain_id);
	snprintf(b->code, sizeof(b->code), "%s", code);
	snprintf(b->name, sizeof(b->name), "Branch %s", code);
	b->active = true;
	ck_assert_int_eq(cw_store_branch_create(s, b, NOW), CW_OK);
}

static void make_user(struct cw_store *s, struct cw_user *u, enum cw_role role,
		      const char *chain_id)
{
	memset(u, 0, sizeof(*u));
	new_id(u->id);
	snprintf(u->email, sizeof(u->email), "u-%.12s@example.com", u->id + 24);
	snprintf(u->password_hash, sizeof(u->password_hash), "$argon2id$v=19$fake");
	u->role = role;
	snprintf(u->chain_id, sizeof(u->chain_id), "%s", chain_id ? chain_id : "");
	u->active = true;
	ck_assert_int_eq(cw_store_user_create(s, u, NOW), CW_OK);
}

static void make_code(struct cw_store *s, const char *branch_id, const char *hash, int uses,
		      int64_t expires_ms)
{
	struct cw_enrollment e = {.uses_left = uses, .created_ms = NOW, .expires_ms = expires_ms};

	new_id(e.id);
	snprintf(e.branch_id, sizeof(e.branch_id), "%s", branch_id);
	snprintf(e.code_hash, sizeof(e.code_hash), "%s", hash);
	ck_assert_int_eq(cw_store_enrollment_create(s, &e), CW_OK);
}

/* A 64-hex-character fake hash that differs per call. */
static void fake_hash(char out[65])
{
	unsigned char b[32];

	randombytes_buf(b, sizeof(b));
	sodium_bin2hex(out, 65, b, sizeof(b));
}

static void fake_mac(char out[18])
{
	unsigned char b[6];

	randombytes_buf(b, sizeof(b));
	snprintf(out, 18, "%02X:%02X:%02X:%02X:%02X:%02X", b[0], b[1], b[2], b[3], b[4], b[5]);
}

static int reg(struct cw_store *s, const char *branch_code, const char *hash, const char *mac,
	       int64_t now, struct cw_device *out, char *jti)
{
	char dev_id[CW_UUID_STRLEN];
	struct cw_register_req r = {.branch_code = branch_code,
				    .code_hash = hash,
				    .mac_address = mac,
				    .serial_number = "RPI-1",
				    .device_name = "rpi",
				    .new_device_id = dev_id,
				    .token_jti = jti,
				    .now_ms = now,
				    .token_expires_ms = now + 86400000LL};

	new_id(dev_id);
	new_id(jti);
	return cw_store_device_register(s, &r, out);
}

static void no_errors_logged(void)
{
	ck_assert_uint_eq(cw_log_error_count(), 0);
}

/* ---- tests ---- */

START_TEST(migrate_is_idempotent)
{
	struct cw_store *s = open_store();
	int v = -1;

	ck_assert_int_eq(cw_store_migrate(s, &v), CW_OK);
	ck_assert_int_eq(v, cw_store_latest_version(s));
	ck_assert_int_ge(v, 1);
	ck_assert_int_eq(cw_store_migrate(s, &v), CW_OK);
	ck_assert_int_eq(v, cw_store_latest_version(s));
	ck_assert_int_eq(cw_store_ping(s), CW_OK);
	ck_assert_int_eq(cw_store_backend(s), backend);
	cw_store_free(s);
	cw_store_free(NULL);
	no_errors_logged();
}
END_TEST

struct racer {
	struct cw_store_config cfg;
	int rc, version;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	struct cw_store *s = NULL;

	r->rc = cw_store_new(&r->cfg, &s);
	if (r->rc == CW_OK)
		r->rc = cw_store_migrate(s, &r->version);
	cw_store_free(s);
	return NULL;
}

START_TEST(concurrent_migrations_do_not_race)
{
	/* several instances starting at once against one fresh database */
	struct racer r[6];
	pthread_t th[6];
	char buf[512];
	struct cw_store_config cfg;

	fresh_config("race", &cfg, buf, sizeof(buf));
	for (int i = 0; i < 6; i++) {
		r[i].cfg = cfg;
		r[i].rc = -100;
		pthread_create(&th[i], NULL, race, &r[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(r[i].rc, CW_OK);
		ck_assert_int_ge(r[i].version, 1);
	}
	no_errors_logged();
}
END_TEST

START_TEST(chains_crud_and_pages)
{
	struct cw_store *s = open_store();
	struct cw_chain c, got, dup, page[3];
	struct cw_page pg = {.limit = 2};
	struct cw_scope all = {NULL, NULL};
	char seen[64][CW_UUID_STRLEN];
	int n = 0, total = 0;
	bool more = true;
	char after[CW_UUID_STRLEN] = "";

	/* quotes, SQL metacharacters and Hebrew survive as data */
	make_chain(s, &c, "Rami Levi 'שיווק השקמה'\"; DROP TABLE chains; --");
	ck_assert_int_eq(cw_store_chain_get(s, c.id, &got), CW_OK);
	ck_assert_str_eq(got.name, c.name);
	ck_assert_str_eq(got.slug, c.slug);
	ck_assert(got.active);
	ck_assert_int_eq(got.created_ms, NOW);
	/* duplicate slug */
	dup = c;
	new_id(dup.id);
	ck_assert_int_eq(cw_store_chain_create(s, &dup, NOW), CW_ERR_CONFLICT);
	/* update */
	snprintf(c.name, sizeof(c.name), "Renamed");
	c.active = false;
	ck_assert_int_eq(cw_store_chain_update(s, &c, NOW + 5), CW_OK);
	ck_assert_int_eq(cw_store_chain_get(s, c.id, &got), CW_OK);
	ck_assert_str_eq(got.name, "Renamed");
	ck_assert(!got.active);
	ck_assert_int_eq(got.updated_ms, NOW + 5);
	ck_assert_int_eq(got.created_ms, NOW);
	new_id(dup.id);
	ck_assert_int_eq(cw_store_chain_update(s, &dup, NOW), CW_ERR_NOTFOUND);
	/* a CHECK refuses an empty name */
	new_id(dup.id);
	dup.name[0] = '\0';
	snprintf(dup.slug, sizeof(dup.slug), "x-%.12s", dup.id + 24);
	ck_assert_int_eq(cw_store_chain_create(s, &dup, NOW), CW_ERR_INVAL);

	/* pages of 2 walk every chain exactly once, in id order */
	for (int i = 0; i < 4; i++)
		make_chain(s, &dup, "paged");
	while (more) {
		pg.after = after;
		ck_assert_int_eq(cw_store_chain_list(s, &all, &pg, page, &n, &more), CW_OK);
		ck_assert_int_le(n, 2);
		for (int i = 0; i < n; i++) {
			ck_assert_int_lt(total, 64);
			if (total)
				ck_assert_int_gt(strcmp(page[i].id, seen[total - 1]), 0);
			memcpy(seen[total++], page[i].id, CW_UUID_STRLEN);
		}
		if (n)
			memcpy(after, page[n - 1].id, CW_UUID_STRLEN);
		else
			ck_assert(!more);
	}
	ck_assert_int_ge(total, 5);
	/* a chain admin's scope lists its chain only */
	{
		struct cw_scope one = {c.id, NULL};
		pg.after = NULL;
		pg.limit = 3;
		ck_assert_int_eq(cw_store_chain_list(s, &one, &pg, page, &n, &more), CW_OK);
		ck_assert_int_eq(n, 1);
		ck_assert_str_eq(page[0].id, c.id);
		ck_assert(!more);
	}
	/* bad pages */
	pg.limit = 0;
	ck_assert_int_eq(cw_store_chain_list(s, &all, &pg, page, &n, &more), CW_ERR_INVAL);
	pg.limit = CW_PAGE_MAX + 1;
	ck_assert_int_eq(cw_store_chain_list(s, &all, &pg, page, &n, &more), CW_ERR_INVAL);
	pg.limit = 2;
	pg.after = "' OR 1=1 --";
	ck_assert_int_eq(cw_store_chain_list(s, &all, &pg, page, &n, &more), CW_ERR_INVAL);

	/* delete: refused while a branch refers to it, then done, then gone */
	{
		struct cw_branch b;
		make_chain(s, &dup, "to delete");
		make_branch(s, &b, dup.id, "B1");
		ck_assert_int_eq(cw_store_chain_delete(s, dup.id), CW_ERR_CONFLICT);
		make_chain(s, &dup, "to delete 2");
		ck_assert_int_eq(cw_store_chain_delete(s, dup.id), CW_OK);
		ck_assert_int_eq(cw_store_chain_delete(s, dup.id), CW_ERR_NOTFOUND);
		ck_assert_int_eq(cw_store_chain_get(s, dup.id, &got), CW_ERR_NOTFOUND);
	}
	/* ids that are not canonical lower-case UUIDs never match anything */
	ck_assert_int_eq(cw_store_chain_get(s, "x' OR '1'='1", &got), CW_ERR_NOTFOUND);
	{
		char upper[CW_UUID_STRLEN];
		memcpy(upper, c.id, sizeof(upper));
		for (char *p = upper; *p; p++)
			if (*p >= 'a' && *p <= 'f')
				*p = (char)(*p - 'a' + 'A');
		ck_assert_int_eq(cw_store_chain_get(s, upper, &got), CW_ERR_NOTFOUND);
	}
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(branches_scoped_lists)
{
	struct cw_store *s = open_store();
	struct cw_chain a, b;
	struct cw_branch a1, a2, b1, got, page[8];
	struct cw_user mgr;
	struct cw_page pg = {.limit = 8};
	int n;
	bool more, yes;

	make_chain(s, &a, "A");
	make_chain(s, &b, "B");
	make_branch(s, &a1, a.id, "BRANCH-001");
	make_branch(s, &a2, a.id, "BRANCH-002");
	/* the same code in another chain is fine; twice in one chain is not */
	make_branch(s, &b1, b.id, "BRANCH-001");
	got = a1;
	new_id(got.id);
	ck_assert_int_eq(cw_store_branch_create(s, &got, NOW), CW_ERR_CONFLICT);
	/* a branch of a chain that does not exist */
	new_id(got.id);
	new_id(got.chain_id);
	snprintf(got.code, sizeof(got.code), "X");
	ck_assert_int_eq(cw_store_branch_create(s, &got, NOW), CW_ERR_CONFLICT);
	/* location and optional fields round-trip */
	memset(&got, 0, sizeof(got));
	new_id(got.id);
	snprintf(got.chain_id, sizeof(got.chain_id), "%s", a.id);
	snprintf(got.code, sizeof(got.code), "GEO");
	snprintf(got.name, sizeof(got.name), "סניף ירושלים");
	snprintf(got.address, sizeof(got.address), "Jaffa St 1; '--");
	snprintf(got.city, sizeof(got.city), "Jerusalem");
	got.has_location = true;
	got.latitude = 31.7683;
	got.longitude = 35.2137;
	got.active = true;
	ck_assert_int_eq(cw_store_branch_create(s, &got, NOW), CW_OK);
	{
		struct cw_branch back;
		ck_assert_int_eq(cw_store_branch_get(s, got.id, &back), CW_OK);
		ck_assert_str_eq(back.name, got.name);
		ck_assert_str_eq(back.address, got.address);
		ck_assert_str_eq(back.city, "Jerusalem");
		ck_assert(back.has_location);
		ck_assert_double_eq_tol(back.latitude, 31.7683, 1e-6);
		ck_assert_double_eq_tol(back.longitude, 35.2137, 1e-6);
		ck_assert_int_eq(cw_store_branch_get(s, a1.id, &back), CW_OK);
		ck_assert(!back.has_location);
		ck_assert_str_eq(back.address, "");
		ck_assert_str_eq(back.chain_id, a.id);
		/* latitude out of range is refused by the schema */
		new_id(got.id);
		snprintf(got.code, sizeof(got.code), "GEO2");
		got.latitude = 91;
		ck_assert_int_eq(cw_store_branch_create(s, &got, NOW), CW_ERR_INVAL);
	}

	/* chain scope: chain A's three branches, never B's */
	{
		struct cw_scope sa = {a.id, NULL};
		ck_assert_int_eq(cw_store_branch_list(s, &sa, &pg, page, &n, &more), CW_OK);
		ck_assert_int_eq(n, 3);
		for (int i = 0; i < n; i++)
			ck_assert_str_eq(page[i].chain_id, a.id);
	}
	/* manager scope: only the managed branch */
	make_user(s, &mgr, CW_ROLE_BRANCH_MANAGER, a.id);
	ck_assert_int_eq(cw_store_user_add_branch(s, mgr.id, a2.id), CW_OK);
	ck_assert_int_eq(cw_store_user_add_branch(s, mgr.id, a2.id), CW_OK); /* idempotent */
	ck_assert_int_eq(cw_store_user_add_branch(s, mgr.id, b1.id), CW_ERR_INVAL);
	{
		struct cw_scope sm = {a.id, mgr.id};
		ck_assert_int_eq(cw_store_branch_list(s, &sm, &pg, page, &n, &more), CW_OK);
		ck_assert_int_eq(n, 1);
		ck_assert_str_eq(page[0].id, a2.id);
		ck_assert(!more);
	}
	ck_assert_int_eq(cw_store_user_manages(s, mgr.id, a2.id, &yes), CW_OK);
	ck_assert(yes);
	ck_assert_int_eq(cw_store_user_manages(s, mgr.id, a1.id, &yes), CW_OK);
	ck_assert(!yes);
	ck_assert_int_eq(cw_store_user_manages(s, mgr.id, "nonsense", &yes), CW_OK);
	ck_assert(!yes);
	/* a chain scope that names no real chain lists nothing */
	{
		struct cw_scope bogus = {"'; DROP TABLE branches; --", NULL};
		ck_assert_int_eq(cw_store_branch_list(s, &bogus, &pg, page, &n, &more), CW_OK);
		ck_assert_int_eq(n, 0);
	}
	/* pagination with a filter */
	{
		struct cw_scope sa = {a.id, NULL};
		struct cw_page p2 = {.limit = 2};
		ck_assert_int_eq(cw_store_branch_list(s, &sa, &p2, page, &n, &more), CW_OK);
		ck_assert_int_eq(n, 2);
		ck_assert(more);
		p2.after = page[1].id;
		ck_assert_int_eq(cw_store_branch_list(s, &sa, &p2, page, &n, &more), CW_OK);
		ck_assert_int_eq(n, 1);
		ck_assert(!more);
	}
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(users)
{
	struct cw_store *s = open_store();
	struct cw_chain a;
	struct cw_user u, got, bad;

	make_chain(s, &a, "A");
	make_user(s, &u, CW_ROLE_PLATFORM_ADMIN, NULL);
	ck_assert_int_eq(cw_store_user_get_by_email(s, u.email, &got), CW_OK);
	ck_assert_str_eq(got.id, u.id);
	ck_assert_str_eq(got.password_hash, u.password_hash);
	ck_assert_int_eq(got.role, CW_ROLE_PLATFORM_ADMIN);
	ck_assert_str_eq(got.chain_id, "");
	ck_assert(got.active);
	ck_assert_int_eq(cw_store_user_get(s, u.id, &got), CW_OK);
	ck_assert_str_eq(got.email, u.email);
	ck_assert_int_eq(cw_store_user_get_by_email(s, "nobody@example.com", &got),
			 CW_ERR_NOTFOUND);
	ck_assert_int_eq(cw_store_user_get_by_email(s, "' OR 1=1 --", &got), CW_ERR_NOTFOUND);
	/* duplicate email */
	bad = u;
	new_id(bad.id);
	ck_assert_int_eq(cw_store_user_create(s, &bad, NOW), CW_ERR_CONFLICT);
	/* upper-case email refused: emails are stored lower case */
	new_id(bad.id);
	snprintf(bad.email, sizeof(bad.email), "Upper@Example.com");
	ck_assert_int_eq(cw_store_user_create(s, &bad, NOW), CW_ERR_INVAL);
	/* role and chain must agree */
	snprintf(bad.email, sizeof(bad.email), "x-%.12s@example.com", bad.id + 24);
	bad.role = CW_ROLE_CHAIN_ADMIN;
	bad.chain_id[0] = '\0';
	ck_assert_int_eq(cw_store_user_create(s, &bad, NOW), CW_ERR_INVAL);
	bad.role = CW_ROLE_PLATFORM_ADMIN;
	snprintf(bad.chain_id, sizeof(bad.chain_id), "%s", a.id);
	ck_assert_int_eq(cw_store_user_create(s, &bad, NOW), CW_ERR_INVAL);
	/* a chain admin cannot be given branches */
	{
		struct cw_branch b;
		make_user(s, &bad, CW_ROLE_CHAIN_ADMIN, a.id);
		make_branch(s, &b, a.id, "B");
		ck_assert_int_eq(cw_store_user_add_branch(s, bad.id, b.id), CW_ERR_INVAL);
	}
	/* role names */
	{
		enum cw_role r;
		ck_assert_int_eq(cw_role_parse("chain-admin", &r), CW_OK);
		ck_assert_int_eq(r, CW_ROLE_CHAIN_ADMIN);
		ck_assert_int_eq(cw_role_parse("root", &r), CW_ERR_INVAL);
		ck_assert_int_eq(cw_role_parse(NULL, &r), CW_ERR_INVAL);
		ck_assert_str_eq(cw_role_name(CW_ROLE_BRANCH_MANAGER), "branch-manager");
	}
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(device_registration)
{
	struct cw_store *s = open_store();
	struct cw_chain a, b;
	struct cw_branch a1, b1;
	struct cw_device d, d2;
	char h1[65], h2[65], h3[65], h4[65], mac[18], mac2[18];
	char jti[CW_UUID_STRLEN], jti2[CW_UUID_STRLEN];

	make_chain(s, &a, "A");
	make_chain(s, &b, "B");
	make_branch(s, &a1, a.id, "BR-A1");
	make_branch(s, &b1, b.id, "BR-B1");
	fake_hash(h1);
	fake_hash(h2);
	fake_hash(h3);
	fake_hash(h4);
	fake_mac(mac);
	fake_mac(mac2);
	make_code(s, a1.id, h1, 2, NOW + 3600000);
	make_code(s, a1.id, h2, 1, NOW - 1);     /* expired */
	make_code(s, b1.id, h3, 5, NOW + 3600000);

	ck_assert_int_eq(reg(s, "BR-A1", h1, mac, NOW, &d, jti), CW_OK);
	ck_assert_str_eq(d.branch_id, a1.id);
	ck_assert_str_eq(d.chain_id, a.id);
	ck_assert_str_eq(d.mac_address, mac);
	ck_assert_str_eq(d.status, "offline");
	ck_assert_int_eq(d.last_heartbeat_ms, 0);
	ck_assert_int_eq(cw_store_device_token_check(s, jti, d.id), CW_OK);
	ck_assert_int_eq(cw_store_device_token_check(s, jti, b1.id), CW_ERR_AUTH);

	/* refusals of the code itself: AUTH, nothing consumed */
	ck_assert_int_eq(reg(s, "BR-A1", h2, mac2, NOW, &d2, jti2), CW_ERR_AUTH); /* expired */
	ck_assert_int_eq(reg(s, "BR-B1", h1, mac2, NOW, &d2, jti2), CW_ERR_AUTH); /* other branch */
	ck_assert_int_eq(reg(s, "BR-A1", h4, mac2, NOW, &d2, jti2), CW_ERR_AUTH); /* unknown */
	ck_assert_int_eq(reg(s, "' OR 1=1 --", h1, mac2, NOW, &d2, jti2), CW_ERR_AUTH);
	ck_assert_int_eq(cw_store_device_token_check(s, jti2, d.id), CW_ERR_AUTH);

	/* the same MAC in another chain's branch: conflict, and that use is
	 * rolled back (the code still enrols 5 more devices... we check one) */
	ck_assert_int_eq(reg(s, "BR-B1", h3, mac, NOW, &d2, jti2), CW_ERR_CONFLICT);

	/* re-registration of the same MAC in its branch: same device, old
	 * token revoked, new one valid; it uses the code's second use */
	ck_assert_int_eq(reg(s, "BR-A1", h1, mac, NOW + 10, &d2, jti2), CW_OK);
	ck_assert_str_eq(d2.id, d.id);
	ck_assert_int_eq(cw_store_device_token_check(s, jti, d.id), CW_ERR_AUTH);
	ck_assert_int_eq(cw_store_device_token_check(s, jti2, d.id), CW_OK);
	/* rotation: the live token for a new one, once */
	{
		char nj[CW_UUID_STRLEN], nj2[CW_UUID_STRLEN];
		new_id(nj);
		new_id(nj2);
		ck_assert_int_eq(cw_store_device_token_rotate(s, d.id, jti2, nj, NOW, NOW + 1000), CW_OK);
		ck_assert_int_eq(cw_store_device_token_check(s, jti2, d.id), CW_ERR_AUTH);
		ck_assert_int_eq(cw_store_device_token_check(s, nj, d.id), CW_OK);
		/* the same old token again (a replay, or the loser of a race) */
		ck_assert_int_eq(cw_store_device_token_rotate(s, d.id, jti2, nj2, NOW, NOW + 1000),
				 CW_ERR_AUTH);
		ck_assert_int_eq(cw_store_device_token_check(s, nj2, d.id), CW_ERR_AUTH);
		/* a live token presented for another device */
		ck_assert_int_eq(cw_store_device_token_rotate(s, a1.id, nj, nj2, NOW, NOW + 1000),
				 CW_ERR_AUTH);
		ck_assert_int_eq(cw_store_device_token_check(s, nj, d.id), CW_OK);
	}
	/* the code is used up now */
	ck_assert_int_eq(reg(s, "BR-A1", h1, mac2, NOW, &d2, jti2), CW_ERR_AUTH);
	/* h3 still has its uses: the conflict above consumed none */
	for (int i = 0; i < 5; i++) {
		char m[18];
		fake_mac(m);
		ck_assert_int_eq(reg(s, "BR-B1", h3, m, NOW, &d2, jti2), CW_OK);
		ck_assert_str_eq(d2.chain_id, b.id);
	}
	ck_assert_int_eq(reg(s, "BR-B1", h3, mac2, NOW, &d2, jti2), CW_ERR_AUTH);

	/* revoking every token of a device */
	ck_assert_int_eq(cw_store_device_tokens_revoke(s, d2.id, NOW), CW_OK);
	ck_assert_int_eq(cw_store_device_token_check(s, jti2, d2.id), CW_ERR_AUTH);
	ck_assert_int_eq(cw_store_device_token_check(s, "not-a-uuid", d2.id), CW_ERR_AUTH);

	/* enrollment codes are validated */
	{
		struct cw_enrollment e = {.uses_left = 0, .expires_ms = NOW};
		new_id(e.id);
		snprintf(e.branch_id, sizeof(e.branch_id), "%s", a1.id);
		snprintf(e.code_hash, sizeof(e.code_hash), "%s", h4);
		ck_assert_int_eq(cw_store_enrollment_create(s, &e), CW_ERR_INVAL);
		e.uses_left = 1;
		snprintf(e.code_hash, sizeof(e.code_hash), "short");
		ck_assert_int_eq(cw_store_enrollment_create(s, &e), CW_ERR_INVAL);
		snprintf(e.code_hash, sizeof(e.code_hash), "%s", h1); /* duplicate hash */
		ck_assert_int_eq(cw_store_enrollment_create(s, &e), CW_ERR_CONFLICT);
	}
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

struct rotator {
	struct cw_store *s;
	const char *device, *old;
	char new_jti[CW_UUID_STRLEN];
	int rc;
};

static void *rotate(void *arg)
{
	struct rotator *r = arg;

	r->rc = cw_store_device_token_rotate(r->s, r->device, r->old, r->new_jti, NOW, NOW + 1000);
	return NULL;
}

START_TEST(token_rotation_race)
{
	/* eight rotations of the same token at once: exactly one wins, and
	 * the device ends with exactly one live token, the winner's */
	struct cw_store *s = open_store();
	struct cw_chain a;
	struct cw_branch b;
	struct cw_device d;
	struct rotator r[8];
	pthread_t th[8];
	char h[65], mac[18], jti[CW_UUID_STRLEN];
	int wins = 0, live = 0;

	make_chain(s, &a, "A");
	make_branch(s, &b, a.id, "ROT");
	fake_hash(h);
	fake_mac(mac);
	make_code(s, b.id, h, 1, NOW + 3600000);
	ck_assert_int_eq(reg(s, "ROT", h, mac, NOW, &d, jti), CW_OK);
	for (int i = 0; i < 8; i++) {
		r[i] = (struct rotator){.s = s, .device = d.id, .old = jti, .rc = -100};
		new_id(r[i].new_jti);
		pthread_create(&th[i], NULL, rotate, &r[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert(r[i].rc == CW_OK || r[i].rc == CW_ERR_AUTH);
		wins += r[i].rc == CW_OK;
		live += cw_store_device_token_check(s, r[i].new_jti, d.id) == CW_OK;
	}
	ck_assert_int_eq(wins, 1);
	ck_assert_int_eq(live, 1);
	ck_assert_int_eq(cw_store_device_token_check(s, jti, d.id), CW_ERR_AUTH);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(heartbeat_and_stats)
{
	struct cw_store *s = open_store();
	struct cw_chain a;
	struct cw_branch a1;
	struct cw_device d, got;
	struct cw_branch_stats st;
	char h[65], mac[18], jti[CW_UUID_STRLEN], hb_branch[CW_UUID_STRLEN];
	struct cw_heartbeat hb = {.status = "online", .firmware = "1.2.3",
				  .health = "{\"cpu_temp\": 51.5, \"disk\": \"ok\"}", .now_ms = NOW + 1000};

	make_chain(s, &a, "A");
	make_branch(s, &a1, a.id, "HB");
	ck_assert_int_eq(cw_store_branch_stats(s, a1.id, NOW, NOW, &st), CW_OK);
	ck_assert_int_eq(st.devices_total, 0);
	ck_assert_int_eq(st.carts_total, 0);
	fake_hash(h);
	fake_mac(mac);
	make_code(s, a1.id, h, 1, NOW + 3600000);
	ck_assert_int_eq(reg(s, "HB", h, mac, NOW, &d, jti), CW_OK);

	ck_assert_int_eq(cw_store_device_heartbeat(s, d.id, &hb, hb_branch), CW_OK);
	ck_assert_str_eq(hb_branch, a1.id); /* for the live streams of the branch */
	ck_assert_int_eq(cw_store_device_get(s, d.id, &got), CW_OK);
	ck_assert_str_eq(got.status, "online");
	ck_assert_str_eq(got.firmware_version, "1.2.3");
	ck_assert_int_eq(got.last_heartbeat_ms, NOW + 1000);
	ck_assert_ptr_nonnull(strstr(got.health, "cpu_temp"));
	/* NULL firmware/health keep the stored ones */
	hb.firmware = NULL;
	hb.health = NULL;
	hb.status = "degraded";
	hb.now_ms = NOW + 31000;
	ck_assert_int_eq(cw_store_device_heartbeat(s, d.id, &hb, NULL), CW_OK);
	ck_assert_int_eq(cw_store_device_get(s, d.id, &got), CW_OK);
	ck_assert_str_eq(got.status, "degraded");
	ck_assert_str_eq(got.firmware_version, "1.2.3");
	ck_assert_ptr_nonnull(strstr(got.health, "cpu_temp"));
	/* the schema refuses an unknown status and invalid JSON */
	hb.status = "exploded";
	ck_assert_int_eq(cw_store_device_heartbeat(s, d.id, &hb, NULL), CW_ERR_INVAL);
	hb.status = "online";
	hb.health = "{not json";
	ck_assert_int_eq(cw_store_device_heartbeat(s, d.id, &hb, NULL), CW_ERR_INVAL);
	hb.health = NULL;
	/* unknown device */
	{
		char other[CW_UUID_STRLEN];
		new_id(other);
		ck_assert_int_eq(cw_store_device_heartbeat(s, other, &hb, NULL), CW_ERR_NOTFOUND);
		ck_assert_int_eq(cw_store_device_get(s, other, &got), CW_ERR_NOTFOUND);
	}
	/* stats: one device, online when its heartbeat is recent enough */
	ck_assert_int_eq(cw_store_branch_stats(s, a1.id, NOW, NOW + 30000, &st), CW_OK);
	ck_assert_int_eq(st.devices_total, 1);
	ck_assert_int_eq(st.devices_online, 1);
	ck_assert_int_eq(cw_store_branch_stats(s, a1.id, NOW, NOW + 60000, &st), CW_OK);
	ck_assert_int_eq(st.devices_online, 0);
	ck_assert_int_eq(st.rentals_open, 0);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(commands)
{
	struct cw_store *s = open_store();
	struct cw_chain a;
	struct cw_branch a1;
	struct cw_device d;
	struct cw_command c, got, out[4];
	char h[65], mac[18], jti[CW_UUID_STRLEN];
	char ids[3][CW_UUID_STRLEN];
	int n;

	make_chain(s, &a, "A");
	make_branch(s, &a1, a.id, "CMD");
	fake_hash(h);
	fake_mac(mac);
	make_code(s, a1.id, h, 1, NOW + 3600000);
	ck_assert_int_eq(reg(s, "CMD", h, mac, NOW, &d, jti), CW_OK);

	for (int i = 0; i < 3; i++) {
		memset(&c, 0, sizeof(c));
		new_id(c.id);
		memcpy(ids[i], c.id, sizeof(c.id));
		memcpy(c.device_id, d.id, sizeof(d.id));
		snprintf(c.action, sizeof(c.action), "unlock");
		snprintf(c.args, sizeof(c.args), "{\"cart\": %d, \"note\": \"it's\"}", i + 1);
		c.created_ms = NOW;
		/* the second one expires before the device asks */
		c.expires_ms = i == 1 ? NOW + 10 : NOW + 60000;
		ck_assert_int_eq(cw_store_command_create(s, &c), CW_OK);
	}
	ck_assert_int_eq(cw_store_command_get(s, ids[0], &got), CW_OK);
	ck_assert_str_eq(got.state, "pending");
	ck_assert_str_eq(got.device_id, d.id);
	ck_assert_str_eq(got.branch_id, a1.id);
	ck_assert_str_eq(got.chain_id, a.id);
	ck_assert_str_eq(got.action, "unlock");
	ck_assert_ptr_nonnull(strstr(got.args, "it's"));
	ck_assert_str_eq(got.result, "");
	/* a device that does not exist */
	new_id(c.id);
	new_id(c.device_id);
	ck_assert_int_eq(cw_store_command_create(s, &c), CW_ERR_NOTFOUND);

	/* cap 1: only the first is handed out and marked delivered */
	ck_assert_int_eq(cw_store_commands_for_device(s, d.id, NOW + 100, out, 1, &n), CW_OK);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(out[0].id, ids[0]);
	ck_assert_str_eq(out[0].state, "delivered");
	ck_assert_int_eq(cw_store_command_get(s, ids[2], &got), CW_OK);
	ck_assert_str_eq(got.state, "pending");
	ck_assert_int_eq(cw_store_command_get(s, ids[1], &got), CW_OK);
	ck_assert_str_eq(got.state, "expired");
	/* delivered but unfinished commands come again (the edge dedupes by id) */
	ck_assert_int_eq(cw_store_commands_for_device(s, d.id, NOW + 200, out, 4, &n), CW_OK);
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(out[0].id, ids[0]);
	ck_assert_str_eq(out[1].id, ids[2]);
	ck_assert_int_eq(cw_store_command_get(s, ids[2], &got), CW_OK);
	ck_assert_str_eq(got.state, "delivered");
	/* past expiry nothing is handed out and everything is expired */
	ck_assert_int_eq(cw_store_commands_for_device(s, d.id, NOW + 60000, out, 4, &n), CW_OK);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(cw_store_command_get(s, ids[0], &got), CW_OK);
	ck_assert_str_eq(got.state, "expired");
	ck_assert_int_eq(cw_store_command_get(s, "nope", &got), CW_ERR_NOTFOUND);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

/* ---- sync (issue 4) ---- */

static struct cw_sync_item sync_tel(int64_t seq)
{
	return (struct cw_sync_item){.seq = seq, .op = CW_SYNC_TELEMETRY, .event_type = "t.x",
				     .data = "{\"n\": 1}", .ts_ms = NOW, .clock_trusted = true};
}

struct sync_race {
	struct cw_store *s;
	const char *device_id;
	const struct cw_sync_item *it;
	int n, rc;
	struct cw_sync_result res;
};

static void *sync_race_thread(void *arg)
{
	struct sync_race *r = arg;

	r->rc = cw_store_sync_apply(r->s, r->device_id, r->it, r->n, NOW, &r->res);
	return NULL;
}

START_TEST(sync_batches)
{
	struct cw_store *s = open_store();
	struct cw_chain a;
	struct cw_branch a1;
	struct cw_device d, d2;
	struct cw_cart cart;
	struct cw_sync_result res;
	struct cw_sync_item it[40];
	char h[65], mac[18], jti[CW_UUID_STRLEN], cart_id[CW_UUID_STRLEN], rental_id[CW_UUID_STRLEN];
	int64_t hw = -1;

	make_chain(s, &a, "A");
	make_branch(s, &a1, a.id, "SYN");
	fake_hash(h);
	make_code(s, a1.id, h, 2, NOW + 3600000);
	fake_mac(mac);
	ck_assert_int_eq(reg(s, "SYN", h, mac, NOW, &d, jti), CW_OK);
	fake_mac(mac);
	ck_assert_int_eq(reg(s, "SYN", h, mac, NOW, &d2, jti), CW_OK);
	ck_assert_int_eq(cw_store_sync_high_water(s, d.id, &hw), CW_OK);
	ck_assert_int_eq(hw, 0);

	/* a cart, its rental, a telemetry row */
	new_id(cart_id);
	new_id(rental_id);
	it[0] = (struct cw_sync_item){.seq = 1, .op = CW_SYNC_CART, .id = cart_id, .cart_number = 4,
				      .locker_id = 3, .bus = 0, .board = 2, .status = "available",
				      .is_locked = true, .board_online = true, .updated_ms = NOW};
	it[1] = (struct cw_sync_item){.seq = 2, .op = CW_SYNC_RENTAL, .id = rental_id,
				      .cart_id = cart_id, .phone = "+972501234567",
				      .status = "active", .start_ms = NOW, .expected_ms = NOW + 60000,
				      .duration_min = -1, .clock_trusted = true, .updated_ms = NOW};
	it[2] = sync_tel(3);
	ck_assert_int_eq(cw_store_sync_apply(s, d.id, it, 3, NOW, &res), CW_OK);
	ck_assert_int_eq(res.high_water, 3);
	ck_assert_int_eq(res.applied, 3);
	ck_assert_int_eq(res.skipped, 0);
	ck_assert_str_eq(res.branch_id, a1.id); /* for the live streams of the branch */
	ck_assert_int_eq(cw_store_cart_get(s, cart_id, &cart), CW_OK);
	ck_assert_str_eq(cart.device_id, d.id);
	ck_assert_str_eq(cart.branch_id, a1.id);
	ck_assert_int_eq(cart.locker_id, 3);
	/* again: skipped */
	ck_assert_int_eq(cw_store_sync_apply(s, d.id, it, 3, NOW, &res), CW_OK);
	ck_assert_int_eq(res.applied, 0);
	ck_assert_int_eq(res.skipped, 3);
	/* a gap: refused, the mark stays */
	it[0] = sync_tel(5);
	ck_assert_int_eq(cw_store_sync_apply(s, d.id, it, 1, NOW, &res), CW_ERR_CONFLICT);
	ck_assert(res.gap);
	ck_assert_int_eq(res.high_water, 3);
	/* not consecutive */
	it[0] = sync_tel(4);
	it[1] = sync_tel(6);
	ck_assert_int_eq(cw_store_sync_apply(s, d.id, it, 2, NOW, &res), CW_ERR_INVAL);
	/* the other device may not touch the cart; nothing of its batch stays */
	it[0] = sync_tel(1);
	it[1] = (struct cw_sync_item){.seq = 2, .op = CW_SYNC_CART, .id = cart_id, .cart_number = 4,
				      .locker_id = 3, .status = "fault", .updated_ms = NOW};
	ck_assert_int_eq(cw_store_sync_apply(s, d2.id, it, 2, NOW, &res), CW_ERR_INVAL);
	ck_assert_int_eq(res.bad, 1);
	ck_assert_ptr_nonnull(res.why);
	ck_assert_int_eq(cw_store_sync_high_water(s, d2.id, &hw), CW_OK);
	ck_assert_int_eq(hw, 0);
	ck_assert_int_eq(cw_store_cart_get(s, cart_id, &cart), CW_OK);
	ck_assert_str_eq(cart.status, "available");

	/* the same batch from four threads at once: applied exactly once */
	for (int i = 0; i < 40; i++)
		it[i] = sync_tel(4 + i);
	{
		struct sync_race r[4];
		pthread_t th[4];
		int applied = 0, skipped = 0;
		for (int i = 0; i < 4; i++) {
			r[i] = (struct sync_race){.s = s, .device_id = d.id, .it = it, .n = 40};
			ck_assert_int_eq(pthread_create(&th[i], NULL, sync_race_thread, &r[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			ck_assert_int_eq(r[i].rc, CW_OK);
			applied += r[i].res.applied;
			skipped += r[i].res.skipped;
		}
		ck_assert_int_eq(applied, 40);
		ck_assert_int_eq(skipped, 120);
	}
	ck_assert_int_eq(cw_store_sync_high_water(s, d.id, &hw), CW_OK);
	ck_assert_int_eq(hw, 43);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(user_management)
{
	struct cw_store *s = open_store();
	struct cw_chain a, b;
	struct cw_branch a1, a2, b1;
	struct cw_user admin, m, got;
	struct cw_user_branches br = {.n = 0}, rd;
	struct cw_user_row *rows = calloc(CW_PAGE_MAX, sizeof(*rows));
	struct cw_scope sc = {.chain_id = NULL};
	struct cw_page pg = {.after = NULL, .limit = CW_PAGE_MAX};
	int n, found = 0;
	bool more;

	ck_assert_ptr_nonnull(rows);
	make_chain(s, &a, "A");
	make_chain(s, &b, "B");
	make_branch(s, &a1, a.id, "UM-A1");
	make_branch(s, &a2, a.id, "UM-A2");
	make_branch(s, &b1, b.id, "UM-B1");
	make_user(s, &admin, CW_ROLE_PLATFORM_ADMIN, NULL);
	/* create a manager with two branches, in one transaction */
	memset(&m, 0, sizeof(m));
	new_id(m.id);
	snprintf(m.email, sizeof(m.email), "m-%.12s@example.com", m.id + 24);
	snprintf(m.password_hash, sizeof(m.password_hash), "$argon2id$v=19$fake");
	m.role = CW_ROLE_BRANCH_MANAGER;
	snprintf(m.chain_id, sizeof(m.chain_id), "%s", a.id);
	m.active = true;
	br.n = 2;
	snprintf(br.ids[0], CW_UUID_STRLEN, "%s", a2.id);
	snprintf(br.ids[1], CW_UUID_STRLEN, "%s", a1.id);
	ck_assert_int_eq(cw_store_user_save(s, &m, &br, true, NOW), CW_OK);
	ck_assert_int_eq(cw_store_user_branches(s, m.id, &rd), CW_OK);
	ck_assert_int_eq(rd.n, 2);
	ck_assert_str_eq(rd.ids[0], strcmp(a1.id, a2.id) < 0 ? a1.id : a2.id); /* sorted */
	/* a branch of another chain: refused, and nothing of the change stays */
	snprintf(br.ids[1], CW_UUID_STRLEN, "%s", b1.id);
	m.active = false;
	ck_assert_int_eq(cw_store_user_save(s, &m, &br, false, NOW), CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_user_get(s, m.id, &got), CW_OK);
	ck_assert(got.active);
	ck_assert_int_eq(cw_store_user_branches(s, m.id, &rd), CW_OK);
	ck_assert_int_eq(rd.n, 2);
	/* the same branch twice is refused too (the API refuses it first) */
	snprintf(br.ids[1], CW_UUID_STRLEN, "%s", a2.id);
	ck_assert_int_eq(cw_store_user_save(s, &m, &br, false, NOW), CW_ERR_INVAL);
	/* update: deactivate, one branch; NULL branches leaves them */
	br.n = 1;
	ck_assert_int_eq(cw_store_user_save(s, &m, &br, false, NOW + 1), CW_OK);
	ck_assert_int_eq(cw_store_user_get(s, m.id, &got), CW_OK);
	ck_assert(!got.active);
	ck_assert_int_eq(cw_store_user_save(s, &m, NULL, false, NOW + 2), CW_OK);
	ck_assert_int_eq(cw_store_user_branches(s, m.id, &rd), CW_OK);
	ck_assert_int_eq(rd.n, 1);
	ck_assert_str_eq(rd.ids[0], a2.id);
	/* branches for a role without them */
	m.role = CW_ROLE_CHAIN_ADMIN;
	ck_assert_int_eq(cw_store_user_save(s, &m, &br, false, NOW), CW_ERR_INVAL);
	br.n = 0;
	ck_assert_int_eq(cw_store_user_save(s, &m, &br, false, NOW), CW_OK);
	ck_assert_int_eq(cw_store_user_branches(s, m.id, &rd), CW_OK);
	ck_assert_int_eq(rd.n, 0);
	/* email taken; unknown user */
	snprintf(m.email, sizeof(m.email), "%s", admin.email);
	ck_assert_int_eq(cw_store_user_save(s, &m, NULL, false, NOW), CW_ERR_CONFLICT);
	new_id(got.id);
	got.role = CW_ROLE_PLATFORM_ADMIN;
	got.chain_id[0] = '\0';
	ck_assert_int_eq(cw_store_user_save(s, &got, NULL, false, NOW), CW_ERR_NOTFOUND);
	/* lists: a chain's scope never holds platform admins or other chains */
	sc.chain_id = a.id;
	ck_assert_int_eq(cw_store_user_list(s, &sc, &pg, rows, &n, &more), CW_OK);
	for (int i = 0; i < n; i++) {
		ck_assert_str_eq(rows[i].user.chain_id, a.id);
		found += strcmp(rows[i].user.id, m.id) == 0;
	}
	ck_assert_int_eq(found, 1);
	sc.chain_id = NULL;
	pg.limit = 1;
	ck_assert_int_eq(cw_store_user_list(s, &sc, &pg, rows, &n, &more), CW_OK);
	ck_assert_int_eq(n, 1);
	ck_assert(more);
	free(rows);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(data_reads_refuse_bad_arguments)
{
	struct cw_store *s = open_store();
	struct cw_rental_filter f = {.from_ms = 10, .to_ms = 5};
	struct cw_page pg = {.after = NULL, .limit = 10};
	struct cw_rental r[10];
	struct cw_rental_stats st;
	struct cw_rental_day days[4];
	struct cw_telemetry_query q = {.key = CW_TELEMETRY_CHAIN, .limit = 10, .to_ms = CW_TIME_MAX_MS};
	struct cw_telemetry *t = calloc(10, sizeof(*t));
	struct cw_cart c;
	struct cw_rental_analytics an;
	struct cw_rental_hour hours[4];
	struct cw_cart_faults cf[4];
	char id[CW_UUID_STRLEN];
	int n, nd, nh;
	bool more;

	ck_assert_ptr_nonnull(t);
	new_id(id);
	q.id = id;
	/* a range the wrong way round, beyond the bounds, a bad cursor */
	ck_assert_int_eq(cw_store_rentals_history(s, id, &f, &pg, r, &n, &more), CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_rental_stats(s, id, 0, CW_TIME_MAX_MS + 1, NOW, &st, days, 4, &nd),
			 CW_ERR_INVAL);
	pg.after = "' OR 1=1 --";
	ck_assert_int_eq(cw_store_rentals_active(s, id, &pg, r, &n, &more), CW_ERR_INVAL);
	q.limit = 0;
	ck_assert_int_eq(cw_store_telemetry_list(s, &q, t, &n, &more), CW_ERR_INVAL);
	q.limit = 10;
	q.manager_id = "x";
	ck_assert_int_eq(cw_store_telemetry_list(s, &q, t, &n, &more), CW_ERR_INVAL);
	/* unknown objects are empty, not errors */
	q.manager_id = NULL;
	ck_assert_int_eq(cw_store_telemetry_list(s, &q, t, &n, &more), CW_OK);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(cw_store_rental_stats(s, id, 0, CW_TIME_MAX_MS, NOW, &st, days, 4, &nd), CW_OK);
	ck_assert_int_eq(st.total, 0);
	ck_assert_int_eq(nd, 0);
	pg.after = NULL;
	ck_assert_int_eq(cw_store_rentals_active(s, "not-a-uuid", &pg, r, &n, &more), CW_OK);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(cw_store_cart_get(s, id, &c), CW_ERR_NOTFOUND);
	ck_assert_int_eq(cw_store_cart_get(s, "' OR 1=1 --", &c), CW_ERR_NOTFOUND);
	/* branch analytics and faults (issue 7): the same rules; an unknown
	 * branch runs every statement and finds nothing */
	ck_assert_int_eq(cw_store_rental_analytics(s, id, 10, 5, NOW, &an, hours, 4, &nh),
			 CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_branch_faults(s, id, 0, CW_TIME_MAX_MS + 1, cf, 4, &n),
			 CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_branch_faults(s, id, 0, 10, cf, 0, &n), CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_rental_analytics(s, id, NOW - 1000, NOW + 5000, NOW, &an, hours,
						   4, &nh), CW_OK);
	ck_assert_int_eq(nh, 0);
	ck_assert_int_eq(an.carts, 0);
	ck_assert_int_eq(an.rented_ms, 0);
	ck_assert_int_eq(an.range_ms, 1000); /* up to now only */
	ck_assert_int_eq(an.durations[0] + an.durations[5], 0);
	ck_assert_int_eq(cw_store_branch_faults(s, id, 0, CW_TIME_MAX_MS, cf, 4, &n), CW_OK);
	ck_assert_int_eq(n, 0);
	free(t);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(pg_unreachable_and_reconnect)
{
	struct cw_store_config cfg = {.backend = CW_BACKEND_POSTGRES, .pool_size = 1,
				      .acquire_timeout_ms = 500};
	struct cw_store *s = NULL;
	PGconn *admin;
	PGresult *r;
	int rc;

	if (backend != CW_BACKEND_POSTGRES)
		return;
	/* nothing listens on port 1 */
	cfg.conninfo = "host=127.0.0.1 port=1 dbname=x";
	ck_assert_int_eq(cw_store_new(&cfg, &s), CW_ERR_OFFLINE);
	ck_assert_ptr_null(s);

	cfg.conninfo = conninfo;
	ck_assert_int_eq(cw_store_new(&cfg, &s), CW_OK);
	ck_assert_int_eq(cw_store_migrate(s, NULL), CW_OK);
	ck_assert_int_eq(cw_store_ping(s), CW_OK);
	/* the server drops our connection (as on a restart) */
	admin = PQconnectdb(conninfo);
	ck_assert_int_eq(PQstatus(admin), CONNECTION_OK);
	r = PQexec(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
			  "WHERE application_name = 'cartwise-cloud' AND datname = current_database() "
			  "AND pid <> pg_backend_pid()");
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	ck_assert_int_ge(PQntuples(r), 1);
	PQclear(r);
	PQfinish(admin);
	/* the first call may see the dead connection (503), the pool
	 * reconnects by itself and the next one works */
	rc = cw_store_ping(s);
	ck_assert(rc == CW_OK || rc == CW_ERR_OFFLINE);
	ck_assert_int_eq(cw_store_ping(s), CW_OK);
	{
		struct cw_chain c;
		make_chain(s, &c, "after reconnect");
	}
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

/* ---- connections: reads beside the writer ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The statements of the reads below run once before they are timed: the
 * SQLite backend learns that a statement only reads when it first prepares
 * it (on the writer), and sends it to a reader from then on. */
static void warm_reads(struct cw_store *s, const struct cw_device *d, const char *jti,
		       const char *branch_id)
{
	struct cw_device got;
	struct cw_chain c;
	struct cw_branch_stats st;

	ck_assert_int_eq(cw_store_device_get(s, d->id, &got), CW_OK);
	ck_assert_int_eq(cw_store_device_token_check(s, jti, d->id), CW_OK);
	ck_assert_int_eq(cw_store_chain_get(s, d->chain_id, &c), CW_OK);
	ck_assert_int_eq(cw_store_branch_stats(s, branch_id, NOW, NOW, &st), CW_OK);
}

START_TEST(read_after_write_is_visible)
{
	struct cw_store *s = open_store();
	struct cw_chain a, gc;
	struct cw_branch a1;
	struct cw_device d, got;
	struct cw_branch_stats st;
	char h[65], mac[18], jti[CW_UUID_STRLEN];
	struct cw_heartbeat hb = {.status = "online"};
	int total = 0, in_use = -1;

	make_chain(s, &a, "RAW");
	make_branch(s, &a1, a.id, "RAW");
	fake_hash(h);
	fake_mac(mac);
	make_code(s, a1.id, h, 1, NOW + 3600000);
	ck_assert_int_eq(reg(s, "RAW", h, mac, NOW, &d, jti), CW_OK);
	warm_reads(s, &d, jti, a1.id);
	cw_store_pool_stats(s, &total, &in_use);
	/* SQLite: the writer and pool_size (4) readers; PostgreSQL: the pool */
	ck_assert_int_eq(total, backend == CW_BACKEND_SQLITE ? 5 : 4);
	ck_assert_int_eq(in_use, 0);
	/* every read right after a write returns what it wrote: the same
	 * reader read the row before each write (an old snapshot kept would
	 * show the previous value) */
	for (int i = 1; i <= 200; i++) {
		hb.now_ms = NOW + i;
		ck_assert_int_eq(cw_store_device_heartbeat(s, d.id, &hb, NULL), CW_OK);
		ck_assert_int_eq(cw_store_device_get(s, d.id, &got), CW_OK);
		ck_assert_int_eq(got.last_heartbeat_ms, NOW + i);
		/* and a read-only transaction too */
		ck_assert_int_eq(cw_store_branch_stats(s, a1.id, NOW, NOW + i, &st), CW_OK);
		ck_assert_int_eq(st.devices_online, 1);
		ck_assert_int_eq(cw_store_branch_stats(s, a1.id, NOW, NOW + i + 1, &st), CW_OK);
		ck_assert_int_eq(st.devices_online, 0);
	}
	/* a write transaction (token rotation), then reads of what it changed */
	{
		char jti2[CW_UUID_STRLEN];
		new_id(jti2);
		ck_assert_int_eq(cw_store_device_token_rotate(s, d.id, jti, jti2, NOW, NOW + 60000),
				 CW_OK);
		ck_assert_int_eq(cw_store_device_token_check(s, jti, d.id), CW_ERR_AUTH);
		ck_assert_int_eq(cw_store_device_token_check(s, jti2, d.id), CW_OK);
	}
	/* an update and a delete */
	snprintf(a.name, sizeof(a.name), "renamed");
	ck_assert_int_eq(cw_store_chain_update(s, &a, NOW + 5), CW_OK);
	ck_assert_int_eq(cw_store_chain_get(s, a.id, &gc), CW_OK);
	ck_assert_str_eq(gc.name, "renamed");
	{
		struct cw_chain e;
		make_chain(s, &e, "short-lived");
		ck_assert_int_eq(cw_store_chain_get(s, e.id, &gc), CW_OK);
		ck_assert_int_eq(cw_store_chain_delete(s, e.id), CW_OK);
		ck_assert_int_eq(cw_store_chain_get(s, e.id, &gc), CW_ERR_NOTFOUND);
	}
	cw_store_pool_stats(s, &total, &in_use);
	ck_assert_int_eq(in_use, 0);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

struct blocked_write {
	struct cw_store *s;
	const char *device_id;
	int64_t now_ms;
	int rc;
	atomic_bool done;
};

static void *blocked_heartbeat(void *arg)
{
	struct blocked_write *w = arg;
	struct cw_heartbeat hb = {.status = "online", .now_ms = w->now_ms};

	w->rc = cw_store_device_heartbeat(w->s, w->device_id, &hb, NULL);
	atomic_store(&w->done, true);
	return NULL;
}

struct reader {
	struct cw_store *s;
	const struct cw_device *d;
	const char *jti, *branch_id;
	int fails;
	int64_t slowest_ms;
};

static void *read_loop(void *arg)
{
	struct reader *r = arg;

	for (int i = 0; i < 50; i++) {
		struct cw_device got;
		struct cw_chain c;
		struct cw_branch_stats st;
		int64_t t0 = mono_ms(), dt;

		if (cw_store_device_get(r->s, r->d->id, &got) != CW_OK ||
		    got.last_heartbeat_ms != NOW || cw_store_device_token_check(r->s, r->jti, r->d->id) ||
		    cw_store_chain_get(r->s, r->d->chain_id, &c) ||
		    cw_store_branch_stats(r->s, r->branch_id, NOW, NOW, &st) || st.devices_total != 1)
			r->fails++;
		dt = mono_ms() - t0;
		if (dt > r->slowest_ms)
			r->slowest_ms = dt;
	}
	return NULL;
}

/* Something outside the store holds a lock the heartbeat's UPDATE needs
 * (SQLite: the write lock, BEGIN IMMEDIATE on a connection of its own;
 * PostgreSQL: the device's row, FOR UPDATE), so the store's write waits
 * inside the database while it holds its connection (SQLite: the writer).
 * Reads from four threads at once must go on meanwhile: with one
 * connection for everything they would wait for the write. */
START_TEST(reads_go_on_during_a_write)
{
	struct cw_store *s = open_store();
	struct cw_chain a;
	struct cw_branch a1;
	struct cw_device d, got;
	char h[65], mac[18], jti[CW_UUID_STRLEN], path[512], sql[160];
	struct blocked_write w = {.s = s, .now_ms = NOW + 777};
	struct reader r[4];
	pthread_t wt, rt[4];
	sqlite3 *lite = NULL;
	PGconn *pg = NULL;
	PGresult *res;
	int total = 0, in_use = 0;

	make_chain(s, &a, "CR");
	make_branch(s, &a1, a.id, "CR");
	fake_hash(h);
	fake_mac(mac);
	make_code(s, a1.id, h, 1, NOW + 3600000);
	ck_assert_int_eq(reg(s, "CR", h, mac, NOW, &d, jti), CW_OK);
	{
		struct cw_heartbeat hb = {.status = "online", .now_ms = NOW};
		ck_assert_int_eq(cw_store_device_heartbeat(s, d.id, &hb, NULL), CW_OK);
	}
	warm_reads(s, &d, jti, a1.id);
	w.device_id = d.id;

	if (backend == CW_BACKEND_SQLITE) {
		snprintf(path, sizeof(path), "%s/cloud.db", tmpdir);
		ck_assert_int_eq(sqlite3_open(path, &lite), SQLITE_OK);
		ck_assert_int_eq(sqlite3_exec(lite, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	} else {
		pg = PQconnectdb(conninfo);
		ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
		snprintf(sql, sizeof(sql), "BEGIN; SELECT 1 FROM devices WHERE id = '%s' FOR UPDATE",
			 d.id);
		res = PQexec(pg, sql);
		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		ck_assert_int_eq(PQntuples(res), 1);
		PQclear(res);
	}
	ck_assert_int_eq(pthread_create(&wt, NULL, blocked_heartbeat, &w), 0);
	/* the write is taken and waiting inside the database */
	for (int i = 0; i < 100 && in_use < 1; i++) {
		usleep(10000);
		cw_store_pool_stats(s, &total, &in_use);
	}
	ck_assert_int_eq(in_use, 1);
	usleep(200000);
	ck_assert(!atomic_load(&w.done));

	for (int i = 0; i < 4; i++) {
		r[i] = (struct reader){.s = s, .d = &d, .jti = jti, .branch_id = a1.id};
		ck_assert_int_eq(pthread_create(&rt[i], NULL, read_loop, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(rt[i], NULL);
		ck_assert_int_eq(r[i].fails, 0);
		/* a read waited for nothing (SQLite's busy timeout is 5 s) */
		ck_assert_int_lt(r[i].slowest_ms, 2000);
	}
	/* all 4 × 50 rounds of reads ran while the write still waited, and saw
	 * the committed state, not the write to come */
	ck_assert(!atomic_load(&w.done));

	if (lite) {
		ck_assert_int_eq(sqlite3_exec(lite, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(lite);
	} else {
		res = PQexec(pg, "ROLLBACK");
		ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
		PQfinish(pg);
	}
	pthread_join(wt, NULL);
	ck_assert_int_eq(w.rc, CW_OK);
	/* and once it committed, a reader sees it */
	ck_assert_int_eq(cw_store_device_get(s, d.id, &got), CW_OK);
	ck_assert_int_eq(got.last_heartbeat_ms, NOW + 777);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

/* The backend itself: a connection taken for reading refuses a statement
 * that writes (SQLite: sqlite3_stmt_readonly on a read-only connection;
 * PostgreSQL: a READ ONLY transaction), and the row is left alone. */
START_TEST(read_connection_refuses_writes)
{
	const struct cw_store_backend *be =
		backend == CW_BACKEND_SQLITE ? &cw_store_sqlite_backend : &cw_store_pg_backend;
	struct cw_store *s = open_store();
	struct cw_chain a, got;
	struct cw_store_config cfg = {.backend = backend, .pool_size = 2, .acquire_timeout_ms = 2000};
	char path[512];
	void *impl = NULL, *conn = NULL;
	unsigned errors;
	int rc;

	make_chain(s, &a, "guarded");
	if (backend == CW_BACKEND_SQLITE) {
		snprintf(path, sizeof(path), "%s/cloud.db", tmpdir);
		cfg.path = path;
	} else {
		cfg.conninfo = conninfo;
	}
	ck_assert_int_eq(be->open(&cfg, &impl), CW_OK);
	errors = cw_log_error_count();
	ck_assert_int_eq(be->conn_get(impl, CW_CONN_READ, &conn), CW_OK);
	ck_assert_int_eq(be->exec(conn, CW_SQL_BEGIN_READ, NULL, 0, NULL, NULL, NULL), CW_OK);
	{
		struct cw_param p[] = {{.t = CW_P_TEXT, .s = a.id}};
		rc = be->exec(conn, CW_SQL_CHAIN_DELETE, p, 1, NULL, NULL, NULL);
	}
	ck_assert_int_ne(rc, CW_OK);
	be->exec(conn, CW_SQL_ROLLBACK, NULL, 0, NULL, NULL, NULL);
	be->conn_put(impl, conn);
	ck_assert_uint_gt(cw_log_error_count(), errors);
	if (backend == CW_BACKEND_SQLITE) {
		/* alone too, and BEGIN IMMEDIATE (which a read-only connection
		 * would accept) */
		struct cw_param p[] = {{.t = CW_P_TEXT, .s = a.id}};
		ck_assert_int_eq(be->conn_get(impl, CW_CONN_READ, &conn), CW_OK);
		ck_assert_int_eq(be->exec(conn, CW_SQL_CHAIN_DELETE, p, 1, NULL, NULL, NULL),
				 CW_ERR_INTERNAL);
		ck_assert_int_eq(be->exec(conn, CW_SQL_BEGIN, NULL, 0, NULL, NULL, NULL),
				 CW_ERR_INTERNAL);
		be->conn_put(impl, conn);
		/* without readers the writer stands in for them, and refuses the
		 * same (while taken for reading only) */
		be->close(impl);
		cfg.pool_size = 0;
		ck_assert_int_eq(be->open(&cfg, &impl), CW_OK);
		ck_assert_int_eq(be->conn_get(impl, CW_CONN_READ, &conn), CW_OK);
		ck_assert_int_eq(be->exec(conn, CW_SQL_CHAIN_DELETE, p, 1, NULL, NULL, NULL),
				 CW_ERR_INTERNAL);
		be->conn_put(impl, conn);
		ck_assert_int_eq(be->conn_get(impl, CW_CONN_WRITE, &conn), CW_OK);
		ck_assert_int_eq(be->exec(conn, CW_SQL_PING, NULL, 0, NULL, NULL, NULL), CW_OK);
		be->conn_put(impl, conn);
	}
	be->close(impl);
	ck_assert_int_eq(cw_store_chain_get(s, a.id, &got), CW_OK);
	cw_store_free(s);
}
END_TEST

/* SQLite ":memory:" is private to its connection: no readers, no WAL,
 * everything on the one connection (PostgreSQL: nothing to test). */
START_TEST(sqlite_in_memory_has_one_connection)
{
	struct cw_store_config cfg = {.backend = backend, .path = ":memory:", .pool_size = 4};
	struct cw_store *s = NULL;
	struct cw_chain a, got;
	struct cw_branch_stats st;
	struct cw_branch b;
	int total = 0, in_use = -1;

	if (backend != CW_BACKEND_SQLITE)
		return;
	ck_assert_int_eq(cw_store_new(&cfg, &s), CW_OK);
	ck_assert_int_eq(cw_store_migrate(s, NULL), CW_OK);
	cw_store_pool_stats(s, &total, &in_use);
	ck_assert_int_eq(total, 1);
	ck_assert_int_eq(in_use, 0);
	make_chain(s, &a, "in memory");
	for (int i = 0; i < 3; i++) { /* the second time, a known read */
		ck_assert_int_eq(cw_store_chain_get(s, a.id, &got), CW_OK);
		ck_assert_str_eq(got.name, "in memory");
	}
	make_branch(s, &b, a.id, "MEM");
	ck_assert_int_eq(cw_store_branch_stats(s, b.id, NOW, NOW, &st), CW_OK);
	ck_assert_int_eq(st.devices_total, 0);
	cw_store_free(s);
	/* and pool_size 0 on a file: the writer alone */
	{
		char buf[512];
		fresh_config("noreaders", &cfg, buf, sizeof(buf));
		cfg.pool_size = 0;
		ck_assert_int_eq(cw_store_new(&cfg, &s), CW_OK);
		ck_assert_int_eq(cw_store_migrate(s, NULL), CW_OK);
		cw_store_pool_stats(s, &total, &in_use);
		ck_assert_int_eq(total, 1);
		make_chain(s, &a, "writer only");
		ck_assert_int_eq(cw_store_chain_get(s, a.id, &got), CW_OK);
		ck_assert_int_eq(cw_store_chain_get(s, a.id, &got), CW_OK);
		cw_store_free(s);
	}
	no_errors_logged();
}
END_TEST


struct login_adder {
	struct cw_store *s;
	const char *key;
	int rc;
};

static void *login_add_many(void *arg)
{
	struct login_adder *a = arg;

	for (int i = 0; i < 10 && a->rc == CW_OK; i++)
		a->rc = cw_store_login_failure_add(a->s, a->key, NOW + 5, 60000, NULL);
	return NULL;
}

START_TEST(login_failures)
{
	/* two stores on one database stand for two instances behind a load
	 * balancer: what one counts, the other sees */
	struct cw_store *s = open_store(), *s2 = open_store();
	struct cw_login_failures f;
	struct login_adder ad[8];
	pthread_t th[8];
	char k1[65], k2[65], k3[65], many[20][65], upper[65];
	int left;

	fake_hash(k1);
	fake_hash(k2);
	fake_hash(k3);
	ck_assert_int_eq(cw_store_login_failures_get(s, k1, NOW, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 0);
	ck_assert_int_eq(f.window_start_ms, 0);
	for (int i = 1; i <= 3; i++) {
		ck_assert_int_eq(cw_store_login_failure_add(i % 2 ? s : s2, k1, NOW + i, 1000, &f),
				 CW_OK);
		ck_assert_int_eq(f.failures, i);
		ck_assert_int_eq(f.window_start_ms, NOW + 1); /* the first failure's time */
	}
	ck_assert_int_eq(cw_store_login_failures_get(s2, k1, NOW + 1000, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 3);
	ck_assert_int_eq(f.window_start_ms, NOW + 1);
	/* the window is [start, start + window): at its end it has passed */
	ck_assert_int_eq(cw_store_login_failures_get(s, k1, NOW + 1001, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 0);
	/* a failure after the window starts a new one, in the same upsert */
	ck_assert_int_eq(cw_store_login_failure_add(s2, k1, NOW + 1500, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 1);
	ck_assert_int_eq(f.window_start_ms, NOW + 1500);
	/* keys count separately; clear forgets one key only, and is idempotent */
	ck_assert_int_eq(cw_store_login_failure_add(s, k2, NOW + 1500, 1000, NULL), CW_OK);
	ck_assert_int_eq(cw_store_login_failure_add(s, k2, NOW + 1501, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 2);
	ck_assert_int_eq(cw_store_login_failures_clear(s2, k1), CW_OK);
	ck_assert_int_eq(cw_store_login_failures_clear(s2, k1), CW_OK);
	ck_assert_int_eq(cw_store_login_failures_get(s, k1, NOW + 1600, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 0);
	ck_assert_int_eq(cw_store_login_failures_get(s, k2, NOW + 1600, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 2);
	/* only 64 lower-case hex characters are keys */
	memcpy(upper, k3, sizeof(upper));
	upper[0] = 'A';
	upper[1] = 'B';
	ck_assert_int_eq(cw_store_login_failures_get(s, upper, NOW, 1000, &f), CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_login_failures_get(s, "abc", NOW, 1000, &f), CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_login_failures_get(s, NULL, NOW, 1000, &f), CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_login_failure_add(s, "'; DROP TABLE login_failures; --", NOW,
						    1000, &f), CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_login_failure_add(s, k3, NOW, 0, &f), CW_ERR_INVAL);
	ck_assert_int_eq(cw_store_login_failures_clear(s, "abc"), CW_ERR_INVAL);

	/* pruning: each failure deletes at most CW_LOGIN_PRUNE_BATCH rows of
	 * expired windows, of any key; live windows are kept. The first of these
	 * failures prunes k2's window (expired at NOW + 2500). */
	for (int i = 0; i < 20; i++) {
		fake_hash(many[i]);
		ck_assert_int_eq(cw_store_login_failure_add(s, many[i], NOW + 10000, 1000, NULL),
				 CW_OK);
	}
	ck_assert_int_eq(cw_store_login_failures_get(s, k2, NOW + 1600, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 0);
	ck_assert_int_eq(cw_store_login_failure_add(s, k3, NOW + 20000, 1000, NULL), CW_OK);
	left = 0;
	for (int i = 0; i < 20; i++) {
		/* read as at NOW + 10000, when the row would still be live */
		ck_assert_int_eq(cw_store_login_failures_get(s, many[i], NOW + 10000, 1000, &f), CW_OK);
		left += f.failures > 0;
	}
	/* 20 expired rows: 16 went, 4 are left */
	ck_assert_int_eq(left, 20 - CW_LOGIN_PRUNE_BATCH);
	ck_assert_int_eq(cw_store_login_failure_add(s2, k3, NOW + 20001, 1000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 2); /* k3's live window was not pruned */
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(cw_store_login_failures_get(s, many[i], NOW + 10000, 1000, &f), CW_OK);
		ck_assert_int_eq(f.failures, 0);
	}

	/* concurrent failures on both "instances" are all counted (no lost
	 * update between a read and a write) */
	for (int i = 0; i < 8; i++) {
		ad[i] = (struct login_adder){.s = i % 2 ? s : s2, .key = k1, .rc = CW_OK};
		pthread_create(&th[i], NULL, login_add_many, &ad[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(ad[i].rc, CW_OK);
	}
	ck_assert_int_eq(cw_store_login_failures_get(s, k1, NOW + 10, 60000, &f), CW_OK);
	ck_assert_int_eq(f.failures, 80);
	ck_assert_int_eq(f.window_start_ms, NOW + 5);
	cw_store_free(s2);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

START_TEST(bad_config)
{
	struct cw_store_config cfg = {.backend = backend, .pool_size = 0};
	struct cw_store *s = (struct cw_store *)1;

	ck_assert_int_eq(cw_store_new(&cfg, &s), CW_ERR_CONFIG);
	ck_assert_ptr_null(s);
	cfg.backend = (enum cw_backend)7;
	ck_assert_int_eq(cw_store_new(&cfg, &s), CW_ERR_CONFIG);
}
END_TEST

static void drop_databases(void)
{
	char name[96];

	pg_admin("DROP DATABASE IF EXISTS ", dbname, " WITH (FORCE)");
	snprintf(name, sizeof(name), "%s_race", dbname);
	pg_admin("DROP DATABASE IF EXISTS ", name, " WITH (FORCE)");
}

/* ---- dashboards (issue 7): device list, branch update, enrollment codes,
 * branch comparison ---- */

static int compare_collect(void *ctx, const struct cw_branch_compare *row)
{
	struct cw_branch_compare *rows = ctx;
	int i = 0;

	while (i < 4 && rows[i].branch_id[0])
		i++;
	ck_assert_int_lt(i, 4);
	rows[i] = *row;
	return CW_OK;
}

START_TEST(dashboard_reads_and_edits)
{
	struct cw_store *s = open_store();
	struct cw_chain a, b;
	struct cw_branch a1, a2, b1, got;
	struct cw_user mgr;
	struct cw_device da1, da2, db1, rows[4], d;
	struct cw_enrollment_row codes[4], e;
	struct cw_branch_compare cmp[4];
	struct cw_scope all = {NULL, NULL}, chain_a = {NULL, NULL}, manager = {NULL, NULL};
	struct cw_page page = {.limit = 4}, one = {.limit = 1};
	struct cw_heartbeat hb = {.status = "online", .now_ms = NOW + 1000};
	char h1[65], h2[65], hb1[65], mac[18], jti[CW_UUID_STRLEN], after[CW_UUID_STRLEN];
	char code_a[32], code_a2[32], code_b[32];
	int n;
	bool more;

	make_chain(s, &a, "A");
	make_chain(s, &b, "B");
	/* codes of this test only (registration names the code) */
	snprintf(code_a, sizeof(code_a), "DA-%.8s", a.id + 28);
	snprintf(code_a2, sizeof(code_a2), "DA2-%.8s", a.id + 28);
	snprintf(code_b, sizeof(code_b), "DB-%.8s", b.id + 28);
	make_branch(s, &a1, a.id, code_a);
	make_branch(s, &a2, a.id, code_a2);
	make_branch(s, &b1, b.id, code_b);
	make_user(s, &mgr, CW_ROLE_BRANCH_MANAGER, a.id);
	ck_assert_int_eq(cw_store_user_add_branch(s, mgr.id, a1.id), CW_OK);
	fake_hash(h1);
	fake_hash(h2);
	fake_hash(hb1);
	make_code(s, a1.id, h1, 5, NOW + 3600000);
	make_code(s, a2.id, h2, 5, NOW + 3600000);
	make_code(s, b1.id, hb1, 5, NOW + 3600000);
	fake_mac(mac);
	ck_assert_int_eq(reg(s, code_a, h1, mac, NOW, &da1, jti), CW_OK);
	fake_mac(mac);
	ck_assert_int_eq(reg(s, code_a2, h2, mac, NOW, &da2, jti), CW_OK);
	fake_mac(mac);
	ck_assert_int_eq(reg(s, code_b, hb1, mac, NOW, &db1, jti), CW_OK);
	ck_assert_int_eq(cw_store_device_heartbeat(s, da1.id, &hb, NULL), CW_OK);

	/* devices: by branch, by chain, a manager's; pages; never another tenant's */
	ck_assert_int_eq(cw_store_device_list(s, &all, a2.id, &page, rows, &n, &more), CW_OK);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(rows[0].id, da2.id);
	ck_assert_str_eq(rows[0].chain_id, a.id);
	chain_a.chain_id = a.id;
	ck_assert_int_eq(cw_store_device_list(s, &chain_a, NULL, &page, rows, &n, &more), CW_OK);
	ck_assert_int_eq(n, 2);
	ck_assert(!more);
	for (int i = 0; i < n; i++)
		ck_assert_str_eq(rows[i].chain_id, a.id);
	ck_assert_int_lt(strcmp(rows[0].id, rows[1].id), 0); /* id order */
	ck_assert_int_eq(cw_store_device_list(s, &chain_a, NULL, &one, rows, &n, &more), CW_OK);
	ck_assert(n == 1 && more);
	snprintf(after, sizeof(after), "%s", rows[0].id);
	one.after = after;
	ck_assert_int_eq(cw_store_device_list(s, &chain_a, NULL, &one, rows, &n, &more), CW_OK);
	ck_assert(n == 1 && !more);
	one.after = db1.id; /* a cursor of another chain positions, but shows none of it */
	ck_assert_int_eq(cw_store_device_list(s, &chain_a, NULL, &one, rows, &n, &more), CW_OK);
	for (int i = 0; i < n; i++)
		ck_assert_str_eq(rows[i].chain_id, a.id);
	manager.chain_id = a.id;
	manager.manager_id = mgr.id;
	ck_assert_int_eq(cw_store_device_list(s, &manager, NULL, &page, rows, &n, &more), CW_OK);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(rows[0].id, da1.id);
	ck_assert_int_eq(rows[0].last_heartbeat_ms, NOW + 1000);
	one.after = "not-a-uuid";
	ck_assert_int_eq(cw_store_device_list(s, &all, NULL, &one, rows, &n, &more), CW_ERR_INVAL);

	/* enrollment codes: listed per branch, read with the chain, revoked */
	ck_assert_int_eq(cw_store_enrollment_list(s, a1.id, &page, codes, &n, &more), CW_OK);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(codes[0].e.branch_id, a1.id);
	ck_assert_str_eq(codes[0].chain_id, a.id);
	ck_assert_str_eq(codes[0].e.code_hash, ""); /* never read back */
	ck_assert_int_eq(codes[0].e.uses_left, 4);
	ck_assert_int_eq(codes[0].e.expires_ms, NOW + 3600000);
	ck_assert_int_eq(cw_store_enrollment_get(s, codes[0].e.id, &e), CW_OK);
	ck_assert_str_eq(e.chain_id, a.id);
	ck_assert_int_eq(cw_store_enrollment_revoke(s, e.e.id), CW_OK);
	ck_assert_int_eq(cw_store_enrollment_revoke(s, e.e.id), CW_OK); /* idempotent */
	ck_assert_int_eq(cw_store_enrollment_get(s, e.e.id, &e), CW_OK);
	ck_assert_int_eq(e.e.uses_left, 0);
	fake_mac(mac);
	ck_assert_int_eq(reg(s, code_a, h1, mac, NOW, &d, jti), CW_ERR_AUTH);
	new_id(jti);
	ck_assert_int_eq(cw_store_enrollment_revoke(s, jti), CW_ERR_NOTFOUND);
	ck_assert_int_eq(cw_store_enrollment_get(s, jti, &e), CW_ERR_NOTFOUND);

	/* branches: edited, a taken code refused, deactivated (registration refused) */
	got = a2;
	snprintf(got.name, sizeof(got.name), "Renamed");
	snprintf(got.city, sizeof(got.city), "Haifa");
	got.has_location = true;
	got.latitude = 32.8;
	got.longitude = 35.0;
	got.active = false;
	ck_assert_int_eq(cw_store_branch_update(s, &got, NOW + 5), CW_OK);
	ck_assert_int_eq(cw_store_branch_get(s, a2.id, &got), CW_OK);
	ck_assert_str_eq(got.name, "Renamed");
	ck_assert_str_eq(got.city, "Haifa");
	ck_assert(got.has_location && !got.active);
	ck_assert_int_eq(got.updated_ms, NOW + 5);
	fake_mac(mac);
	ck_assert_int_eq(reg(s, code_a2, h2, mac, NOW, &d, jti), CW_ERR_AUTH);
	snprintf(got.code, sizeof(got.code), "%s", code_a);
	ck_assert_int_eq(cw_store_branch_update(s, &got, NOW + 6), CW_ERR_CONFLICT);
	snprintf(got.code, sizeof(got.code), "%s", code_b); /* another chain's code is free */
	ck_assert_int_eq(cw_store_branch_update(s, &got, NOW + 6), CW_OK);
	new_id(got.id);
	ck_assert_int_eq(cw_store_branch_update(s, &got, NOW + 7), CW_ERR_NOTFOUND);

	/* the comparison: every branch of the chain by code, a manager's only */
	memset(cmp, 0, sizeof(cmp));
	ck_assert_int_eq(cw_store_chain_branch_compare(s, a.id, NULL, NOW - 86400000, NOW + 86400000,
						       NOW + 1000, NOW, compare_collect, cmp),
			 CW_OK);
	/* by code: a1 (DA-...), then a2, now coded like chain B's branch (not listed) */
	ck_assert_str_eq(cmp[0].branch_id, a1.id);
	ck_assert_str_eq(cmp[1].branch_id, a2.id);
	ck_assert_str_eq(cmp[1].code, code_b);
	ck_assert_str_eq(cmp[1].name, "Renamed");
	ck_assert(cmp[0].active && !cmp[1].active);
	ck_assert_str_eq(cmp[2].branch_id, "");
	ck_assert_int_eq(cmp[0].devices, 1);
	ck_assert_int_eq(cmp[0].devices_online, 1);
	ck_assert_int_eq(cmp[1].devices, 1);
	ck_assert_int_eq(cmp[1].devices_online, 0);
	ck_assert_int_eq(cmp[0].rentals + cmp[0].carts + cmp[0].open, 0);
	memset(cmp, 0, sizeof(cmp));
	ck_assert_int_eq(cw_store_chain_branch_compare(s, a.id, mgr.id, NOW - 86400000,
						       NOW + 86400000, NOW, NOW, compare_collect, cmp),
			 CW_OK);
	ck_assert_str_eq(cmp[0].branch_id, a1.id);
	ck_assert_str_eq(cmp[1].branch_id, "");
	ck_assert_int_eq(cw_store_chain_branch_compare(s, a.id, NULL, NOW, NOW - 1, NOW, NOW,
						       compare_collect, cmp),
			 CW_ERR_INVAL);
	cw_store_free(s);
	no_errors_logged();
}
END_TEST

/* What a listener heard (cw_store_listen's callback runs on its thread). */
struct heard {
	pthread_mutex_t mu;
	int n, nulls;
	char last[CW_STORE_NOTIFY_MAX + 1];
};

static void heard_cb(void *ctx, const char *payload)
{
	struct heard *h = ctx;

	pthread_mutex_lock(&h->mu);
	if (payload) {
		h->n++;
		snprintf(h->last, sizeof(h->last), "%s", payload);
	} else {
		h->nulls++;
	}
	pthread_mutex_unlock(&h->mu);
}

static int heard_n(struct heard *h)
{
	int n;

	pthread_mutex_lock(&h->mu);
	n = h->n;
	pthread_mutex_unlock(&h->mu);
	return n;
}

/* Change notifications between instances: on PostgreSQL a second store
 * hears what the first sends, and a store never hears its own; SQLite has
 * one instance and does nothing (without error). */
START_TEST(notify_and_listen)
{
	struct cw_store *a = open_store(), *b = open_store();
	struct heard ha = {.n = 0}, hb = {.n = 0};
	char big[CW_STORE_NOTIFY_MAX + 2];

	pthread_mutex_init(&ha.mu, NULL);
	pthread_mutex_init(&hb.mu, NULL);
	ck_assert_int_eq(cw_store_listen(a, heard_cb, &ha), CW_OK);
	ck_assert_int_eq(cw_store_listen(b, heard_cb, &hb), CW_OK);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(cw_store_notify(a, big), CW_ERR_TOOBIG);
	if (backend == CW_BACKEND_POSTGRES) {
		ck_assert_int_eq(cw_store_listen(a, heard_cb, &ha), CW_ERR_STATE);
		/* the listener may still be connecting: send until b hears */
		for (int i = 0; i < 100 && heard_n(&hb) == 0; i++) {
			ck_assert_int_eq(cw_store_notify(a, "branch:carts,rentals"), CW_OK);
			usleep(50 * 1000);
		}
		ck_assert_int_ge(heard_n(&hb), 1);
		ck_assert_str_eq(hb.last, "branch:carts,rentals");
		usleep(200 * 1000);
		ck_assert_int_eq(heard_n(&ha), 0); /* its own */
		ck_assert_int_eq(hb.nulls, 0);     /* no reconnect */
	} else {
		ck_assert_int_eq(cw_store_notify(a, "branch:carts"), CW_OK);
		ck_assert_int_eq(heard_n(&hb), 0);
	}
	cw_store_unlisten(a);
	cw_store_unlisten(a); /* idempotent */
	cw_store_free(a);
	cw_store_free(b); /* stops b's listener */
	pthread_mutex_destroy(&ha.mu);
	pthread_mutex_destroy(&hb.mu);
}
END_TEST

int main(int argc, char **argv)
{
	Suite *su;
	TCase *tc;
	SRunner *sr;
	int failed;
	char cmd[300];

	if (argc != 2 || (strcmp(argv[1], "sqlite") != 0 && strcmp(argv[1], "postgres") != 0)) {
		fprintf(stderr, "usage: %s sqlite|postgres\n", argv[0]);
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	backend = strcmp(argv[1], "sqlite") == 0 ? CW_BACKEND_SQLITE : CW_BACKEND_POSTGRES;
	if (backend == CW_BACKEND_POSTGRES) {
		unsigned char rnd[6];
		char hex[13];
		if (!getenv("PGHOST") && !getenv("PGPORT") && !getenv("PGUSER") &&
		    !getenv("PGDATABASE")) {
			fprintf(stderr, "no PG* variables: skipped (run under pg_virtualenv)\n");
			return SKIP;
		}
		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
		snprintf(dbname, sizeof(dbname), "cwtest_%s", hex);
		if (pg_admin("CREATE DATABASE ", dbname, "") != 0)
			return 1;
		snprintf(conninfo, sizeof(conninfo), "dbname=%s", dbname);
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s/cwstore.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return 1;

	su = suite_create(backend == CW_BACKEND_SQLITE ? "store-sqlite" : "store-postgres");
	tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, migrate_is_idempotent);
	tcase_add_test(tc, concurrent_migrations_do_not_race);
	tcase_add_test(tc, chains_crud_and_pages);
	tcase_add_test(tc, branches_scoped_lists);
	tcase_add_test(tc, users);
	tcase_add_test(tc, device_registration);
	tcase_add_test(tc, token_rotation_race);
	tcase_add_test(tc, heartbeat_and_stats);
	tcase_add_test(tc, commands);
	tcase_add_test(tc, user_management);
	tcase_add_test(tc, data_reads_refuse_bad_arguments);
	tcase_add_test(tc, login_failures);
	tcase_add_test(tc, pg_unreachable_and_reconnect);
	tcase_add_test(tc, read_after_write_is_visible);
	tcase_add_test(tc, reads_go_on_during_a_write);
	tcase_add_test(tc, read_connection_refuses_writes);
	tcase_add_test(tc, sqlite_in_memory_has_one_connection);
	tcase_add_test(tc, bad_config);
	tcase_add_test(tc, sync_batches);
	tcase_add_test(tc, notify_and_listen);
	tcase_add_test(tc, dashboard_reads_and_edits);
	suite_add_tcase(su, tc);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);

	if (backend == CW_BACKEND_POSTGRES)
		drop_databases();
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
