/* fuzz_http_query.c - libFuzzer harness over the HTTP query string of the Explore records and export
 * routes: URL query splitting, percent-decoding (cp_http_pct_decode, daemon/http.c) and the ODSQL
 * planner (cp_odsql_plan, daemon/odsql.c), with every plan run by SQLite.
 *
 * Input: a raw URL query string, "where=...&select=...&refine=status%3Aopen&limit=10" (a raw NUL byte
 * ends it, as it would end a C string). Like the daemon (explore.c over libmicrohttpd): parameters are
 * split at '&', the key from the value at the first '='; '+' means a space; key and value are
 * percent-decoded; a parameter without '=' has no value and is ignored; the first occurrence of
 * select, where, order_by, limit, offset, timezone and updated_since counts; refine and exclude
 * repeat, more than 32 of either is a 400. A bad escape is a 400 (nothing planned).
 *
 * Checks, besides crashes, leaks and sanitizer reports:
 * - cp_http_pct_decode agrees with a reference decoder (result and bytes), never writes a NUL inside
 *   the result, fits exactly in len+1 bytes and refuses one byte less;
 * - for every dataset of the catalog (dataset.h), as a records query and as an export, the planner
 *   returns 0, -ENOMEM, or a negative errno with a message; a plan's SQL is one read-only statement
 *   that prepares against the dataset's table (live tables: the daemon's snapshot schema; bucket
 *   tables: the dataset's columns), binds exactly its parameters, runs to the end with n_cols columns
 *   and at most `limit` rows; its count query returns one row; the tables never change.
 * Seeds: tests/fuzz/http_query_seeds/. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dataset.h"
#include "http.h"
#include "odsql.h"

#define MAX_LIST 32 /* explore.c MAX_REFINE: refine and exclude each */
#define MAX_IN   (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sqlite3 *db;

static void die(const char *what, const char *detail)
{
        fprintf(stderr, "fuzz_http_query: %s: %s\n%s%s\n", what, db ? sqlite3_errmsg(db) : "",
                detail ? "detail: " : "", detail ? detail : "");
        abort();
}

static void exec(const char *sql)
{
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
                die("setup", sql);
}

/* ---- the database: every dataset's table with a few rows -------------------------------------------- */

static const char *const texts[] = {"issy-p01", "L'Atelier 100% Vélo_Park", "Zone \"Nord\" \\ é", "r3"};

static void create_table(const struct cp_dataset *ds)
{
        struct cp_buf b = CP_BUF_INIT;

        if (!cp_dataset_is_bucket(ds)) {
                /* The daemon's own snapshot schema (explore.c load_snapshot). */
                exec(cp_dataset_live_schema(ds->kind));
                return;
        }
        cp_buf_printf(&b, "CREATE TABLE %s(", ds->table);
        for (size_t i = 0; i < ds->n_fields; i++) {
                const struct cp_ods_field *f = &ds->fields[i];

                cp_buf_puts(&b, i ? ", " : "");
                if (f->type == CP_ODS_GEO_POINT)
                        cp_buf_printf(&b, "%s REAL, %s REAL", f->col, f->col2);
                else
                        cp_buf_printf(&b, "%s %s", f->col,
                                      f->type == CP_ODS_TEXT ? "TEXT" : f->type == CP_ODS_DOUBLE ? "REAL" : "INTEGER");
        }
        cp_buf_puts(&b, ")");
        if (b.oom)
                die("setup", "out of memory");
        exec(b.p);
        cp_buf_free(&b);
}

/* Four rows: three with every column set (texts with quotes, % and _, UTF-8), one with NULL numbers. */
static void fill_table(const struct cp_dataset *ds)
{
        struct cp_buf b = CP_BUF_INIT;
        sqlite3_stmt *st;
        int n = 0;

        cp_buf_printf(&b, "INSERT INTO %s(", ds->table);
        for (size_t i = 0; i < ds->n_fields; i++) {
                const struct cp_ods_field *f = &ds->fields[i];
                cp_buf_printf(&b, "%s%s", i ? ", " : "", f->col);
                n++;
                if (f->col2) {
                        cp_buf_printf(&b, ", %s", f->col2);
                        n++;
                }
        }
        cp_buf_puts(&b, ") VALUES(");
        for (int i = 0; i < n; i++)
                cp_buf_puts(&b, i ? ", ?" : "?");
        cp_buf_puts(&b, ")");
        if (b.oom || sqlite3_prepare_v2(db, b.p, -1, &st, NULL) != SQLITE_OK)
                die("setup", b.p);
        for (int row = 0; row < 4; row++) {
                int k = 1;

                for (size_t i = 0; i < ds->n_fields; i++) {
                        const struct cp_ods_field *f = &ds->fields[i];
                        bool null = row == 3;

                        switch (f->type) {
                        case CP_ODS_TEXT:
                                sqlite3_bind_text(st, k++, texts[(row + i) % 4], -1, SQLITE_STATIC);
                                break;
                        case CP_ODS_INT:
                        case CP_ODS_BOOLEAN:
                                if (null)
                                        sqlite3_bind_null(st, k++);
                                else
                                        sqlite3_bind_int64(st, k++, f->type == CP_ODS_BOOLEAN ? row & 1 : row * 57 - 3);
                                break;
                        case CP_ODS_DOUBLE:
                                if (null)
                                        sqlite3_bind_null(st, k++);
                                else
                                        sqlite3_bind_double(st, k++, row * 0.375 - 0.25);
                                break;
                        case CP_ODS_DATETIME:
                                if (null)
                                        sqlite3_bind_null(st, k++);
                                else
                                        sqlite3_bind_int64(st, k++, INT64_C(1773475200000) + row * INT64_C(900000));
                                break;
                        case CP_ODS_GEO_POINT:
                                if (null) {
                                        sqlite3_bind_null(st, k++);
                                        sqlite3_bind_null(st, k++);
                                } else {
                                        sqlite3_bind_double(st, k++, 48.8241 + row * 0.004);
                                        sqlite3_bind_double(st, k++, 2.2701 - row * 0.003);
                                }
                                break;
                        }
                }
                if (sqlite3_step(st) != SQLITE_DONE)
                        die("setup insert", b.p);
                sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        cp_buf_free(&b);
}

static int64_t total_rows(void)
{
        int64_t n = 0;

        for (size_t i = 0; i < cp_dataset_count(); i++) {
                char sql[128];
                sqlite3_stmt *st;

                snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", cp_dataset_at(i)->table);
                if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
                        die("count", sql);
                n = n * 10 + sqlite3_column_int64(st, 0);
                sqlite3_finalize(st);
        }
        return n;
}

static void setup(void)
{
        if (sqlite3_open(":memory:", &db) != SQLITE_OK || cp_odsql_register(db) != SQLITE_OK)
                die("open", NULL);
        for (size_t i = 0; i < cp_dataset_count(); i++) {
                const struct cp_dataset *ds = cp_dataset_at(i);
                sqlite3_stmt *st;
                char sql[128];

                /* Datasets of one period family may share nothing, but a table is created once. */
                snprintf(sql, sizeof(sql), "SELECT 1 FROM sqlite_master WHERE name = '%s'", ds->table);
                if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
                        die("setup", sql);
                if (sqlite3_step(st) != SQLITE_ROW) {
                        create_table(ds);
                        fill_table(ds);
                }
                sqlite3_finalize(st);
        }
}

/* ---- percent-decoding ------------------------------------------------------------------------------ */

static int ref_hex(unsigned char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The reference: %XX with two hex digits, never %00; anything else is copied. */
static int ref_decode(const char *s, size_t len, char *out)
{
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                if (s[i] != '%') {
                        out[o++] = s[i];
                        continue;
                }
                if (len - i < 3 || ref_hex((unsigned char)s[i + 1]) < 0 || ref_hex((unsigned char)s[i + 2]) < 0)
                        return -EINVAL;
                out[o] = (char)(ref_hex((unsigned char)s[i + 1]) * 16 + ref_hex((unsigned char)s[i + 2]));
                if (out[o] == '\0')
                        return -EINVAL;
                o++;
                i += 2;
        }
        return (int)o;
}

/* Decodes s[len] ('+' read as a space first) into a new string; NULL for a bad escape. */
static char *decode(const char *s, size_t len)
{
        char *in = malloc(len + 1), *out = malloc(len + 1), *ref = malloc(len + 1);
        int n, m;

        if (!in || !out || !ref)
                die("decode", "out of memory");
        for (size_t i = 0; i < len; i++)
                in[i] = s[i] == '+' ? ' ' : s[i];
        in[len] = '\0'; /* for die() only: the decoder is given len */
        n = cp_http_pct_decode(in, len, out, len + 1);
        m = ref_decode(in, len, ref);
        if (n != m || (n >= 0 && memcmp(out, ref, (size_t)n) != 0))
                die("cp_http_pct_decode differs from the reference", in);
        if (n >= 0) {
                if (out[n] != '\0' || memchr(out, '\0', (size_t)n))
                        die("decoded text is not one C string", in);
                /* It fits in exactly n + 1 bytes, and says so when it does not. */
                if (cp_http_pct_decode(in, len, ref, (size_t)n + 1) != n || memcmp(ref, out, (size_t)n + 1) != 0)
                        die("decode into an exact buffer", in);
                /* One byte short fails, even for an empty input into no room at all (a regression: it used
                 * to write the NUL past the buffer; GET /<1023 bytes>/ overflowed split_path's buffer). */
                if (cp_http_pct_decode(in, len, ref, (size_t)n) != -EINVAL)
                        die("decode into a short buffer did not fail", in);
        }
        free(in);
        free(ref);
        if (n < 0) {
                free(out);
                return NULL;
        }
        return out;
}

/* ---- plans ----------------------------------------------------------------------------------------- */

static void run(const struct cp_odsql_plan *plan, const struct cp_sqlq *q, bool rows)
{
        sqlite3_stmt *st;
        const char *tail = NULL;
        int64_t n = 0;
        int r;

        if (q->sql.oom || !q->sql.p)
                die("plan SQL missing", NULL);
        if (sqlite3_prepare_v2(db, q->sql.p, -1, &st, &tail) != SQLITE_OK)
                die("prepare", q->sql.p);
        if (!st || *tail != '\0' || !sqlite3_stmt_readonly(st))
                die("not one read-only statement", q->sql.p);
        if (sqlite3_bind_parameter_count(st) != (int)q->n_params || cp_sqlq_bind(q, st) != SQLITE_OK)
                die("bind", q->sql.p);
        if (rows && sqlite3_column_count(st) != (int)plan->n_cols)
                die("column count", q->sql.p);
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
                n++;
        if (r != SQLITE_DONE)
                die("step", q->sql.p);
        if (rows && plan->limit >= 0 && n > plan->limit)
                die("more rows than the limit", q->sql.p);
        if (!rows && n != 1)
                die("count returned no row", q->sql.p);
        sqlite3_finalize(st);
}

struct query {
        char *select, *where, *order_by, *limit, *offset, *timezone, *updated_since;
        char *refine[MAX_LIST], *exclude[MAX_LIST];
        size_t n_refine, n_exclude;
        char *other[8]; /* decoded values of other keys (freed with the rest) */
        size_t n_other;
};

static void query_free(struct query *q)
{
        free(q->select);
        free(q->where);
        free(q->order_by);
        free(q->limit);
        free(q->offset);
        free(q->timezone);
        free(q->updated_since);
        for (size_t i = 0; i < q->n_refine; i++)
                free(q->refine[i]);
        for (size_t i = 0; i < q->n_exclude; i++)
                free(q->exclude[i]);
        for (size_t i = 0; i < q->n_other; i++)
                free(q->other[i]);
}

/* Takes one decoded key=value. Returns false when the request is refused (too many refines). */
static bool take(struct query *q, const char *key, char *value)
{
        static const struct {
                const char *name;
                size_t off;
        } scalars[] = {
                {"select", offsetof(struct query, select)},         {"where", offsetof(struct query, where)},
                {"order_by", offsetof(struct query, order_by)},     {"limit", offsetof(struct query, limit)},
                {"offset", offsetof(struct query, offset)},         {"timezone", offsetof(struct query, timezone)},
                {"updated_since", offsetof(struct query, updated_since)},
        };

        for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
                if (strcmp(key, scalars[i].name) == 0) {
                        char **slot = (char **)((char *)q + scalars[i].off);
                        if (*slot) /* the first occurrence counts */
                                break;
                        *slot = value;
                        return true;
                }
        }
        if (strcmp(key, "refine") == 0 || strcmp(key, "exclude") == 0) {
                bool r = key[0] == 'r';
                size_t *n = r ? &q->n_refine : &q->n_exclude;

                if (*n == MAX_LIST) {
                        free(value);
                        return false;
                }
                (r ? q->refine : q->exclude)[(*n)++] = value;
                return true;
        }
        if (q->n_other < sizeof(q->other) / sizeof(q->other[0]))
                q->other[q->n_other++] = value;
        else
                free(value);
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct query q;
        const char *s = (const char *)data, *end;
        int64_t before;
        bool ok = true;

        if (!db)
                setup();
        if (size > MAX_IN)
                return 0;
        end = memchr(s, '\0', size);
        if (!end)
                end = s + size;
        memset(&q, 0, sizeof(q));
        while (ok && s < end) {
                const char *amp = memchr(s, '&', (size_t)(end - s)), *stop = amp ? amp : end;
                const char *eq = memchr(s, '=', (size_t)(stop - s));
                char *key, *value;

                if (eq) {
                        key = decode(s, (size_t)(eq - s));
                        value = key ? decode(eq + 1, (size_t)(stop - eq - 1)) : NULL;
                        if (!key || !value) {
                                ok = false; /* a bad escape: 400 */
                        } else {
                                ok = take(&q, key, value);
                        }
                        free(key);
                } else if (stop > s && !(key = decode(s, (size_t)(stop - s)))) {
                        ok = false;
                } else if (stop > s) {
                        free(key); /* no value: ignored */
                }
                s = amp ? amp + 1 : end;
        }
        if (!ok) {
                query_free(&q);
                return 0;
        }
        before = total_rows();
        for (size_t d = 0; d < cp_dataset_count(); d++) {
                const struct cp_dataset *ds = cp_dataset_at(d);

                for (int export_ = 0; export_ <= 1; export_++) {
                        struct cp_odsql_request req = {
                                .select = q.select,
                                .where = q.where,
                                .order_by = q.order_by,
                                .timezone = q.timezone,
                                .updated_since = q.updated_since,
                                .refine = (const char *const *)q.refine,
                                .n_refine = q.n_refine,
                                .exclude = (const char *const *)q.exclude,
                                .n_exclude = q.n_exclude,
                                .limit = q.limit,
                                .offset = q.offset,
                                .export_ = export_,
                        };
                        struct cp_odsql_plan plan;
                        char err[256];
                        int r;

                        memset(err, 'X', sizeof(err));
                        err[sizeof(err) - 1] = '\0';
                        r = cp_odsql_plan(ds, &req, &plan, err, sizeof(err));
                        if (r == 0) {
                                if (plan.n_out == 0 || plan.n_cols < plan.n_out || !plan.tz)
                                        die("plan without output or zone", plan.rows.sql.p);
                                if (export_ ? plan.limit < -1 : (plan.limit < 0 || plan.limit > CP_ODSQL_LIMIT_MAX))
                                        die("limit out of range", plan.rows.sql.p);
                                if (plan.offset < 0 || (!export_ && plan.offset + plan.limit > CP_ODSQL_WINDOW_MAX))
                                        die("offset out of range", plan.rows.sql.p);
                                run(&plan, &plan.rows, true);
                                run(&plan, &plan.count, false);
                                if (plan.count.n_params + 2 != plan.rows.n_params)
                                        die("rows and count filters differ", plan.rows.sql.p);
                        } else if (r > 0 || !memchr(err, '\0', sizeof(err)) || !err[0] ||
                                   (r != -ENOMEM && err[0] == 'X' && err[1] == 'X')) {
                                die("bad failure", err);
                        }
                        cp_odsql_plan_done(&plan);
                }
        }
        if (total_rows() != before)
                die("a table changed", NULL);
        query_free(&q);
        return 0;
}
