/* explore.c - the Opendatasoft Explore v2.1 subset (catalog, records, exports) and the import-ready files
 * /exports/<dataset>.<csv|json|geojson> (CONTRACT section 6, FORMATS.md 1a and 1c).
 *
 * Every query runs off the loop thread, on libuv's thread pool: the request is suspended, a job parses
 * nothing (the plan is built on the loop, where a bad query is answered 400 at once), opens its own
 * read-only SQLite connection (bucket datasets) or an in-memory database loaded with a snapshot of the
 * live state taken on the loop (live datasets), runs the plan, and resumes the request. Records (at most
 * 100 rows) come back in memory; an export is written to an unlinked temporary file under
 * <data_dir>/tmp and sent from it (sendfile), so memory does not grow with the rows. An export's ETag
 * is the dataset's version (newest updated_at and row count) and the query, checked before the export
 * runs: a portal that polls an unchanged file gets a 304 for the price of one indexed query. */
#include "explore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "citypulse/cp_common.h"
#include "citypulse/cp_tz.h"
#include "daemon.h"
#include "dataset.h"
#include "log.h"
#include "odsql.h"
#include "outfmt.h"
#include "timefmt.h"

#define MAX_JOBS       16        /* queries in flight; beyond, 503 with Retry-After */
#define MAX_REFINE     32
#define FLUSH_BYTES    (256 * 1024)
#define EXPORT_TTL_S   60

enum job_kind {
        J_RECORDS,
        J_EXPORT,
        J_COUNT,
        J_SQL, /* a fixed query with bound parameters: rows as JSON objects (history routes) */
};

/* One value of a live snapshot row, in the live table's column order. */
struct sval {
        int type; /* SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT */
        int64_t i;
        double d;
        char *s;
};

struct cp_xjob {
        uv_work_t work;
        struct cp_xjob *next;
        struct cp_daemon *d;
        struct MHD_Connection *conn;
        struct cp_http_req *req; /* NULL once the request is gone */
        bool done, resumed;

        enum job_kind kind;
        const struct cp_dataset *ds;
        struct cp_odsql_plan plan;
        enum cp_outfmt fmt;
        char delim;
        bool bom;
        struct sval *snap;
        size_t snap_rows, snap_cols;
        char db_path[4096];
        char tmp_dir[4096];
        char query_key[64]; /* hash of the query, for the export ETag */
        char if_none_match[128];

        struct cp_sqlq sql;      /* J_SQL */
        const char *wrap_key;    /* J_SQL: the array's key in the answer */
        json_t *wrap;            /* J_SQL: the answer object the array goes into (owned) */
        int64_t page_limit;      /* J_SQL: rows asked for; a full page gets a next cursor */
        const char *cursor_col;  /* J_SQL: column whose last value is the next cursor */
        const struct cp_tz *tz;  /* J_SQL: times in answers */

        /* results */
        json_t *rows;            /* J_SQL */
        int64_t last_cursor;
        unsigned status;
        char err[256];
        struct cp_buf body;
        int fd;
        uint64_t fd_size;
        int64_t total;
        int64_t version_ms;
        char etag[96];
        bool not_modified;
        uint64_t content_hash;
};

/* ---- helpers ----------------------------------------------------------------------------------------- */

static enum MHD_Result ods_error(struct MHD_Connection *conn, struct cp_http_req *req, unsigned status,
                                 const char *code, const char *msg)
{
        json_t *j = json_pack("{s:s, s:s}", "error_code", code, "message", msg);
        char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        struct MHD_Response *r;
        enum MHD_Result ret;

        json_decref(j);
        if (!body)
                return MHD_NO;
        r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!r) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
                MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
        ret = cp_http_queue(conn, req, status, r);
        MHD_destroy_response(r);
        return ret;
}

static void sval_text(struct sval *v, const char *s)
{
        if (s && (v->s = strdup(s)))
                v->type = SQLITE_TEXT;
        else
                v->type = SQLITE_NULL;
}

static void sval_int(struct sval *v, bool has, int64_t i)
{
        v->type = has ? SQLITE_INTEGER : SQLITE_NULL;
        v->i = i;
}

static void sval_real(struct sval *v, bool has, double d)
{
        v->type = has && isfinite(d) ? SQLITE_FLOAT : SQLITE_NULL;
        v->d = d;
}

static void snap_free(struct sval *s, size_t n)
{
        for (size_t i = 0; s && i < n; i++)
                free(s[i].s);
        free(s);
}

/* The live state as rows of the dataset's live table (loop thread). */
static int snapshot(struct cp_daemon *d, const struct cp_dataset *ds, struct sval **ret, size_t *rows, size_t *cols)
{
        const struct cp_registry *reg = d->reg;
        int64_t now = cp_now_ms();
        size_t n = 0, nc, cap;
        struct sval *v, *row;

        switch (ds->kind) {
        case CP_DS_LIVE_PARKING:
                nc = 11;
                cap = reg->n_facilities;
                break;
        case CP_DS_LIVE_SPOTS:
                nc = 7;
                cap = 0;
                for (size_t i = 0; i < reg->n_facilities; i++)
                        cap += reg->facilities[i].n_spots;
                break;
        case CP_DS_LIVE_ENERGY:
                nc = 10;
                cap = reg->n_sensors + reg->n_districts;
                break;
        default:
                return -EINVAL;
        }
        v = calloc((cap ? cap : 1) * nc, sizeof(*v));
        if (!v)
                return -ENOMEM;
        if (ds->kind == CP_DS_LIVE_PARKING) {
                for (size_t i = 0; i < reg->n_facilities; i++) {
                        const struct cp_reg_facility *f = &reg->facilities[i];
                        struct cp_facility_view fv;

                        cp_live_facility(&d->live, f, now, &fv);
                        row = &v[n++ * nc];
                        sval_text(&row[0], f->id);
                        sval_text(&row[1], f->name);
                        sval_text(&row[2], f->city);
                        sval_text(&row[3], f->operator_);
                        sval_int(&row[4], fv.known, fv.free_spaces);
                        sval_int(&row[5], true, fv.total_spaces);
                        sval_real(&row[6], fv.known, round(fv.occupancy_rate * 1000.0) / 1000.0);
                        sval_text(&row[7], cp_fstatus_name(fv.status));
                        sval_int(&row[8], fv.last_reported_ms > 0, fv.last_reported_ms);
                        sval_real(&row[9], f->has_geo, f->lat);
                        sval_real(&row[10], f->has_geo, f->lon);
                }
        } else if (ds->kind == CP_DS_LIVE_SPOTS) {
                for (size_t i = 0; i < reg->n_facilities; i++) {
                        const struct cp_reg_facility *f = &reg->facilities[i];

                        for (size_t k = 0; k < f->n_spots; k++) {
                                const struct cp_sensor *s = f->spots[k];
                                const struct cp_qval *q = cp_sensor_value(s, CP_Q_OCCUPIED);
                                const char *st = "unknown";

                                if (q && cp_live_fresh(&d->live, q, now))
                                        st = q->value != 0 ? "occupied" : "free";
                                row = &v[n++ * nc];
                                sval_text(&row[0], s->reg ? s->reg->spot_id : s->id);
                                sval_text(&row[1], s->id);
                                sval_text(&row[2], f->id);
                                sval_text(&row[3], st);
                                sval_int(&row[4], q != NULL, q ? q->ts_ms : 0);
                                sval_real(&row[5], f->has_geo, f->lat);
                                sval_real(&row[6], f->has_geo, f->lon);
                        }
                }
        } else {
                for (size_t i = 0; i < reg->n_sensors; i++) {
                        const struct cp_reg_sensor *rs = &reg->sensors[i];
                        const struct cp_sensor *s;
                        struct cp_energy_view ev;

                        if (rs->kind != CP_SK_METER && rs->kind != CP_SK_PV)
                                continue;
                        s = cp_live_get(&d->live, rs->id, strlen(rs->id));
                        if (!s)
                                continue;
                        cp_live_meter(&d->live, s, now, &ev);
                        row = &v[n++ * nc];
                        sval_text(&row[0], rs->id);
                        sval_text(&row[1], rs->kind == CP_SK_PV ? "pv" : "meter");
                        sval_text(&row[2], rs->district ? rs->district->name : NULL);
                        sval_real(&row[3], ev.known && ev.has_power, ev.power_w);
                        sval_real(&row[4], ev.known && ev.has_import, ev.energy_import_kwh);
                        sval_real(&row[5], ev.known && ev.has_export, ev.energy_export_kwh);
                        sval_int(&row[6], true, ev.known ? 1 : 0);
                        sval_int(&row[7], true, 1);
                        sval_text(&row[8], ev.known ? "live" : "unknown");
                        sval_int(&row[9], ev.last_reported_ms > 0, ev.last_reported_ms);
                }
                for (size_t i = 0; i < reg->n_districts; i++) {
                        const struct cp_reg_district *dd = &reg->districts[i];
                        struct cp_energy_view ev;

                        cp_live_district(&d->live, dd, now, &ev);
                        row = &v[n++ * nc];
                        sval_text(&row[0], dd->name);
                        sval_text(&row[1], "district");
                        sval_text(&row[2], dd->name);
                        sval_real(&row[3], ev.known && ev.has_power, ev.power_w);
                        sval_real(&row[4], ev.known && ev.has_import, ev.energy_import_kwh);
                        sval_real(&row[5], ev.known && ev.has_export, ev.energy_export_kwh);
                        sval_int(&row[6], true, ev.meters_known);
                        sval_int(&row[7], true, ev.meters_total);
                        sval_text(&row[8], ev.known ? "live" : "unknown");
                        sval_int(&row[9], ev.last_reported_ms > 0, ev.last_reported_ms);
                }
        }
        *ret = v;
        *rows = n;
        *cols = nc;
        return 0;
}

/* ---- the job, on a pool thread ----------------------------------------------------------------------- */

static int load_snapshot(struct cp_xjob *j, sqlite3 *db)
{
        char sql[256];
        sqlite3_stmt *st;
        int rc;
        size_t o;

        if ((rc = sqlite3_exec(db, cp_dataset_live_schema(j->ds->kind), NULL, NULL, NULL)) != SQLITE_OK)
                return rc;
        o = (size_t)snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO %s VALUES(", j->ds->table);
        for (size_t c = 0; c < j->snap_cols; c++)
                o += (size_t)snprintf(sql + o, sizeof(sql) - o, "%s?", c ? "," : "");
        snprintf(sql + o, sizeof(sql) - o, ")");
        if ((rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL)) != SQLITE_OK)
                return rc;
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        for (size_t r = 0; r < j->snap_rows && rc == SQLITE_OK; r++) {
                const struct sval *row = &j->snap[r * j->snap_cols];

                for (size_t c = 0; c < j->snap_cols; c++) {
                        int i = (int)c + 1;
                        switch (row[c].type) {
                        case SQLITE_INTEGER:
                                sqlite3_bind_int64(st, i, row[c].i);
                                break;
                        case SQLITE_FLOAT:
                                sqlite3_bind_double(st, i, row[c].d);
                                break;
                        case SQLITE_TEXT:
                                sqlite3_bind_text(st, i, row[c].s, -1, SQLITE_STATIC);
                                break;
                        default:
                                sqlite3_bind_null(st, i);
                        }
                }
                rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
                sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        return rc;
}

static int run_count(struct cp_xjob *j, sqlite3 *db)
{
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(db, j->plan.count.sql.p, -1, &st, NULL);

        if (rc != SQLITE_OK)
                return rc;
        if ((rc = cp_sqlq_bind(&j->plan.count, st)) == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        j->total = sqlite3_column_int64(st, 0);
                        rc = SQLITE_OK;
                }
        }
        sqlite3_finalize(st);
        return rc;
}

/* The dataset's version: newest updated_at and row count (bucket datasets). */
static int run_version(struct cp_xjob *j, sqlite3 *db)
{
        char sql[256];
        sqlite3_stmt *st;
        int rc;

        snprintf(sql, sizeof(sql), "SELECT max(updated_at_ms), count(*) FROM %s", j->ds->table);
        if ((rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL)) != SQLITE_OK)
                return rc;
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                j->version_ms = sqlite3_column_int64(st, 0);
                snprintf(j->etag, sizeof(j->etag), "\"%" PRIx64 "-%" PRIx64 "-%s\"", (uint64_t)j->version_ms,
                         (uint64_t)sqlite3_column_int64(st, 1), j->query_key);
                rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        return rc;
}

static bool flush_to_fd(struct cp_xjob *j)
{
        size_t o = 0;

        if (!j->etag[0]) /* live datasets: the ETag is the body's hash (bucket ones have their version) */
                j->content_hash = cp_fnv64(j->body.p, j->body.len, j->content_hash);
        while (o < j->body.len) {
                ssize_t w = write(j->fd, j->body.p + o, j->body.len - o);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        snprintf(j->err, sizeof(j->err), "writing the export: %s", strerror(errno));
                        return false;
                }
                o += (size_t)w;
        }
        j->fd_size += j->body.len;
        cp_buf_reset(&j->body);
        return true;
}

static int open_tmp(struct cp_xjob *j)
{
        char path[4200];
        int fd;

        (void)mkdir(j->tmp_dir, 0700);
        fd = open(j->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
                return fd;
        snprintf(path, sizeof(path), "%s/export-XXXXXX", j->tmp_dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
                unlink(path);
        return fd;
}

static int run_rows(struct cp_xjob *j, sqlite3 *db)
{
        struct cp_outw w;
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(db, j->plan.rows.sql.p, -1, &st, NULL);

        if (rc != SQLITE_OK)
                return rc;
        if ((rc = cp_sqlq_bind(&j->plan.rows, st)) != SQLITE_OK) {
                sqlite3_finalize(st);
                return rc;
        }
        cp_outw_init(&w, j->fmt, j->plan.out, j->plan.n_out, j->plan.tz);
        if (j->fmt == CP_OF_CSV) {
                w.delim = j->delim;
                w.bom = j->bom;
        }
        if (j->fmt == CP_OF_RECORDS)
                w.total_count = j->total;
        cp_outw_begin(&w, &j->body);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                cp_outw_row_stmt(&w, st, &j->body);
                if (j->kind == J_EXPORT && j->body.len >= FLUSH_BYTES && !flush_to_fd(j)) {
                        sqlite3_finalize(st);
                        return SQLITE_IOERR;
                }
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
                return rc;
        cp_outw_end(&w, &j->body, j->total);
        if (j->body.oom)
                return SQLITE_NOMEM;
        if (j->kind == J_EXPORT && !flush_to_fd(j))
                return SQLITE_IOERR;
        return SQLITE_OK;
}

/* Rows as objects: a column named x_ms becomes x as an ISO time; a BLOB becomes text when it is UTF-8,
 * else null with x_base64... kept simple: invalid UTF-8 is replaced by jansson's refusal -> null. */
static int run_sql(struct cp_xjob *j, sqlite3 *db)
{
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(db, j->sql.sql.p, -1, &st, NULL);

        if (rc != SQLITE_OK)
                return rc;
        if ((rc = cp_sqlq_bind(&j->sql, st)) != SQLITE_OK) {
                sqlite3_finalize(st);
                return rc;
        }
        if (!(j->rows = json_array())) {
                sqlite3_finalize(st);
                return SQLITE_NOMEM;
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                json_t *o = json_object();
                for (int c = 0; o && c < sqlite3_column_count(st); c++) {
                        const char *name = sqlite3_column_name(st, c);
                        size_t nl = strlen(name);
                        json_t *v;

                        if (j->cursor_col && strcmp(name, j->cursor_col) == 0)
                                j->last_cursor = sqlite3_column_int64(st, c);
                        if (nl > 3 && strcmp(name + nl - 3, "_ms") == 0) {
                                char key[64], iso_buf[CP_ISO_MAX];
                                snprintf(key, sizeof(key), "%.*s", (int)(nl - 3), name);
                                v = sqlite3_column_type(st, c) == SQLITE_NULL
                                            ? json_null()
                                            : json_string(cp_time_iso(iso_buf, sizeof(iso_buf), sqlite3_column_int64(st, c),
                                                                      j->tz));
                                json_object_set_new(o, key, v);
                                continue;
                        }
                        switch (sqlite3_column_type(st, c)) {
                        case SQLITE_INTEGER:
                                v = json_integer(sqlite3_column_int64(st, c));
                                break;
                        case SQLITE_FLOAT:
                                v = json_real(sqlite3_column_double(st, c));
                                break;
                        case SQLITE_TEXT:
                        case SQLITE_BLOB:
                                v = json_stringn((const char *)sqlite3_column_blob(st, c), (size_t)sqlite3_column_bytes(st, c));
                                break;
                        default:
                                v = json_null();
                        }
                        json_object_set_new(o, name, v ? v : json_null());
                }
                if (!o || json_array_append_new(j->rows, o) < 0) {
                        sqlite3_finalize(st);
                        return SQLITE_NOMEM;
                }
        }
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void job_work(uv_work_t *w)
{
        struct cp_xjob *j = cp_container_of(w, struct cp_xjob, work);
        bool live = j->ds && !cp_dataset_is_bucket(j->ds);
        sqlite3 *db = NULL;
        int rc;

        j->fd = -1;
        j->content_hash = CP_FNV64_INIT;
        rc = live ? sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, NULL)
                  : sqlite3_open_v2(j->db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_busy_timeout(db, 5000);
                rc = cp_odsql_register(db);
        }
        if (rc == SQLITE_OK && live)
                rc = load_snapshot(j, db);
        if (rc == SQLITE_OK && j->kind == J_SQL) {
                rc = run_sql(j, db);
                goto out;
        }
        if (rc == SQLITE_OK && j->kind == J_EXPORT && !live) {
                rc = run_version(j, db);
                if (rc == SQLITE_OK && j->etag[0] && strstr(j->if_none_match, j->etag)) {
                        j->not_modified = true;
                        goto out;
                }
        }
        if (rc == SQLITE_OK && (j->kind == J_RECORDS || j->kind == J_COUNT))
                rc = run_count(j, db);
        if (rc == SQLITE_OK && j->kind == J_EXPORT && (j->fd = open_tmp(j)) < 0) {
                snprintf(j->err, sizeof(j->err), "no temporary file for the export: %s", strerror(errno));
                j->status = MHD_HTTP_SERVICE_UNAVAILABLE;
                goto out;
        }
        if (rc == SQLITE_OK && j->kind != J_COUNT)
                rc = run_rows(j, db);
out:
        if (rc != SQLITE_OK && !j->status) {
                if (!j->err[0])
                        snprintf(j->err, sizeof(j->err), "query failed: %s",
                                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
                j->status = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED ? MHD_HTTP_SERVICE_UNAVAILABLE
                                                                                       : MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
        if (!j->status)
                j->status = MHD_HTTP_OK;
        sqlite3_close(db);
}

/* ---- the job, on the loop ---------------------------------------------------------------------------- */

static void job_free(struct cp_xjob *j)
{
        struct cp_daemon *d = j->d;

        for (struct cp_xjob **pp = &d->xjobs; *pp; pp = &(*pp)->next)
                if (*pp == j) {
                        *pp = j->next;
                        break;
                }
        d->n_xjobs--;
        cp_odsql_plan_done(&j->plan);
        cp_sqlq_done(&j->sql);
        json_decref(j->rows);
        json_decref(j->wrap);
        snap_free(j->snap, j->snap_rows * j->snap_cols);
        cp_buf_free(&j->body);
        if (j->fd >= 0)
                close(j->fd);
        free(j);
}

static void job_resume(struct cp_xjob *j)
{
        if (j->resumed || !j->req)
                return;
        j->resumed = true;
        MHD_resume_connection(j->conn);
        cp_http_kick(&j->d->http);
}

static void job_after(uv_work_t *w, int status)
{
        struct cp_xjob *j = cp_container_of(w, struct cp_xjob, work);

        if (status == UV_ECANCELED) {
                j->status = MHD_HTTP_SERVICE_UNAVAILABLE;
                snprintf(j->err, sizeof(j->err), "shutting down");
        }
        j->done = true;
        if (!j->req) {
                job_free(j);
                return;
        }
        job_resume(j);
}

static void job_req_gone(void *ctx)
{
        struct cp_xjob *j = ctx;

        j->req = NULL;
        if (j->done)
                job_free(j);
}

void cp_explore_stop(struct cp_daemon *d)
{
        for (struct cp_xjob *j = d->xjobs; j; j = j->next)
                job_resume(j);
}

static enum MHD_Result answer(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                              struct cp_xjob *j)
{
        struct MHD_Response *r;
        enum MHD_Result ret;
        char fname[160], lm[64];

        if (j->status != MHD_HTTP_OK)
                return ods_error(conn, req, j->status, j->status == MHD_HTTP_SERVICE_UNAVAILABLE ? "Unavailable" : "Error",
                                 j->err);
        if (j->kind == J_COUNT) {
                /* Catalog entry of one dataset: answered by cp_explore_handle from the count. */
                return MHD_NO;
        }
        if (j->kind == J_SQL) {
                char *body;
                if (j->page_limit > 0 && (int64_t)json_array_size(j->rows) == j->page_limit) {
                        char cur[32];
                        snprintf(cur, sizeof(cur), "%" PRId64, j->last_cursor);
                        json_object_set_new(j->wrap, "next_cursor", json_string(cur));
                } else if (j->page_limit > 0) {
                        json_object_set_new(j->wrap, "next_cursor", json_null());
                }
                json_object_set_new(j->wrap, j->wrap_key, j->rows);
                j->rows = NULL;
                body = json_dumps(j->wrap, JSON_COMPACT | JSON_REAL_PRECISION(15));
                if (!body)
                        return MHD_NO;
                return cp_api_send_body_take(d, conn, req, MHD_HTTP_OK, body, strlen(body),
                                             "application/json; charset=utf-8", true, d->cfg->http_ttl_ms);
        }
        if (j->kind == J_RECORDS) {
                char *body = cp_buf_steal(&j->body);
                return cp_api_send_body_take(d, conn, req, MHD_HTTP_OK, body ? body : strdup("{}"),
                                             body ? strlen(body) : 2, "application/json; charset=utf-8", true,
                                             d->cfg->http_ttl_ms);
        }
        if (!j->etag[0]) /* live datasets: the body's own hash */
                snprintf(j->etag, sizeof(j->etag), "\"%016" PRIx64 "\"", j->content_hash);
        if (j->not_modified || cp_api_etag_matches(conn, j->etag))
                return cp_api_not_modified(conn, req, j->etag, EXPORT_TTL_S, true);
        r = MHD_create_response_from_fd((uint64_t)j->fd_size, j->fd);
        if (!r)
                return MHD_NO;
        j->fd = -1; /* the response owns it */
        cp_api_common_headers(r, j->etag, j->ds->period >= 0 ? EXPORT_TTL_S : d->cfg->http_ttl_ms / 1000, true,
                              cp_outfmt_content_type(j->fmt));
        snprintf(fname, sizeof(fname), "attachment; filename=\"%s.%s\"", j->ds->id, cp_outfmt_name(j->fmt));
        MHD_add_response_header(r, "Content-Disposition", fname);
        if (j->version_ms > 0) {
                time_t t = (time_t)(j->version_ms / 1000);
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
                MHD_add_response_header(r, MHD_HTTP_HEADER_LAST_MODIFIED, lm);
        }
        ret = cp_http_queue(conn, req, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
}

/* ---- request parsing --------------------------------------------------------------------------------- */

struct args {
        const char *refine[MAX_REFINE], *exclude[MAX_REFINE];
        size_t n_refine, n_exclude;
        bool too_many;
        uint64_t hash;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
        struct args *a = cls;

        (void)kind;
        a->hash = cp_fnv64(key, strlen(key) + 1, a->hash);
        if (value)
                a->hash = cp_fnv64(value, strlen(value) + 1, a->hash);
        if (!value)
                return MHD_YES;
        if (strcmp(key, "refine") == 0) {
                if (a->n_refine == MAX_REFINE)
                        a->too_many = true;
                else
                        a->refine[a->n_refine++] = value;
        } else if (strcmp(key, "exclude") == 0) {
                if (a->n_exclude == MAX_REFINE)
                        a->too_many = true;
                else
                        a->exclude[a->n_exclude++] = value;
        }
        return MHD_YES;
}

static const char *arg(struct MHD_Connection *conn, const char *k)
{
        return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, k);
}

static enum MHD_Result start_job(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                 const struct cp_dataset *ds, enum job_kind kind, enum cp_outfmt fmt)
{
        struct cp_odsql_request q;
        struct args a;
        struct cp_xjob *j;
        char err[256] = "";
        const char *delim = arg(conn, "delimiter"), *bom = arg(conn, "with_bom"), *inm;
        int r;

        if (d->n_xjobs >= MAX_JOBS)
                return ods_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable", "too many queries running, retry");
        memset(&a, 0, sizeof(a));
        a.hash = CP_FNV64_INIT;
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &a);
        if (a.too_many)
                return ods_error(conn, req, MHD_HTTP_BAD_REQUEST, "ODSQLError", "at most 32 refine and 32 exclude parameters");
        if (delim && (strlen(delim) != 1 || !cp_outfmt_delim_ok(delim[0])))
                return ods_error(conn, req, MHD_HTTP_BAD_REQUEST, "InvalidParameter",
                                 "delimiter must be one printable character other than '\"'");
        if (bom && strcmp(bom, "true") != 0 && strcmp(bom, "false") != 0)
                return ods_error(conn, req, MHD_HTTP_BAD_REQUEST, "InvalidParameter", "with_bom must be true or false");
        memset(&q, 0, sizeof(q));
        q.select = arg(conn, "select");
        q.where = arg(conn, "where");
        q.order_by = arg(conn, "order_by");
        q.timezone = arg(conn, "timezone");
        q.updated_since = arg(conn, "updated_since");
        q.limit = arg(conn, "limit");
        q.offset = arg(conn, "offset");
        q.refine = a.refine;
        q.n_refine = a.n_refine;
        q.exclude = a.exclude;
        q.n_exclude = a.n_exclude;
        q.export_ = kind == J_EXPORT;
        if (!(j = calloc(1, sizeof(*j))))
                return MHD_NO;
        j->fd = -1;
        if ((r = cp_odsql_plan(ds, &q, &j->plan, err, sizeof(err))) < 0) {
                free(j);
                return ods_error(conn, req, r == -EINVAL ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_INTERNAL_SERVER_ERROR,
                                 "ODSQLError", err[0] ? err : "invalid query");
        }
        j->d = d;
        j->conn = conn;
        j->req = req;
        j->kind = kind;
        j->ds = ds;
        j->fmt = fmt;
        j->delim = delim ? delim[0] : ';';
        j->bom = !bom || strcmp(bom, "true") == 0;
        a.hash = cp_fnv64(ds->id, strlen(ds->id), cp_fnv64(&fmt, sizeof(fmt), a.hash));
        snprintf(j->query_key, sizeof(j->query_key), "%016" PRIx64, a.hash);
        inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
        snprintf(j->if_none_match, sizeof(j->if_none_match), "%s", inm ? inm : "");
        snprintf(j->db_path, sizeof(j->db_path), "%s/citypulse.db", d->cfg->data_dir);
        snprintf(j->tmp_dir, sizeof(j->tmp_dir), "%s/tmp", d->cfg->data_dir);
        if (!cp_dataset_is_bucket(ds) && (r = snapshot(d, ds, &j->snap, &j->snap_rows, &j->snap_cols)) < 0) {
                cp_odsql_plan_done(&j->plan);
                free(j);
                return MHD_NO;
        }
        j->next = d->xjobs;
        d->xjobs = j;
        d->n_xjobs++;
        if ((r = uv_queue_work(&d->loop, &j->work, job_work, job_after)) < 0) {
                job_free(j);
                return ods_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable", "cannot queue the query");
        }
        req->ctx = j;
        req->ctx_free = job_req_gone;
        MHD_suspend_connection(conn);
        return MHD_YES;
}

/* ---- catalog ----------------------------------------------------------------------------------------- */

static json_t *dataset_json(const struct cp_dataset *ds, const struct cp_daemon *d)
{
        json_t *fields = json_array(), *o;

        for (size_t i = 0; i < ds->n_fields; i++) {
                const struct cp_ods_field *f = &ds->fields[i];
                json_array_append_new(fields, json_pack("{s:s, s:s, s:s, s:s}", "name", f->name, "label", f->label, "type",
                                                        cp_ods_type_name(f->type), "description", f->description));
        }
        o = json_pack("{s:s, s:o, s:{s:{s:s, s:s, s:s}}}", "dataset_id", ds->id, "fields", fields, "metas", "default",
                      "title", ds->title, "description", ds->description, "timezone", cp_tz_name(d->tz));
        if (o) {
                json_t *keys = json_array();
                char buf[128];
                snprintf(buf, sizeof(buf), "%s", ds->key);
                for (char *save = NULL, *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save))
                        json_array_append_new(keys, json_string(k));
                json_object_set_new(o, "keys", keys);
        }
        return o;
}

static enum MHD_Result send_json(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req, json_t *j)
{
        char *body = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;

        json_decref(j);
        if (!body)
                return MHD_NO;
        return cp_api_send_body_take(d, conn, req, MHD_HTTP_OK, body, strlen(body), "application/json; charset=utf-8",
                                     true, d->cfg->http_ttl_ms);
}

/* segs: after "/api/explore/v2.1/catalog/datasets". */
enum MHD_Result cp_explore_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                  char *const *segs, size_t n)
{
        struct cp_xjob *j = req->ctx;
        const struct cp_dataset *ds;
        enum cp_outfmt fmt;

        if (j) {
                if (j->kind == J_COUNT && j->status == MHD_HTTP_OK) {
                        json_t *o = dataset_json(j->ds, d);
                        json_object_set_new(json_object_get(json_object_get(o, "metas"), "default"), "records_count",
                                            json_integer(j->total));
                        return send_json(d, conn, req, o);
                }
                return answer(d, conn, req, j);
        }
        if (n == 0) {
                json_t *arr = json_array();
                for (size_t i = 0; i < cp_dataset_count(); i++)
                        json_array_append_new(arr, dataset_json(cp_dataset_at(i), d));
                return send_json(d, conn, req, json_pack("{s:I, s:o}", "total_count", (json_int_t)cp_dataset_count(),
                                                         "results", arr));
        }
        if (!(ds = cp_dataset_find(segs[0])))
                return ods_error(conn, req, MHD_HTTP_NOT_FOUND, "NotFound", "Unknown dataset");
        if (n == 1)
                return start_job(d, conn, req, ds, J_COUNT, CP_OF_RECORDS);
        if (n == 2 && strcmp(segs[1], "records") == 0)
                return start_job(d, conn, req, ds, J_RECORDS, CP_OF_RECORDS);
        if (n == 2 && strcmp(segs[1], "exports") == 0) {
                json_t *arr = json_array();
                for (int f = 0; f < CP_OF_RECORDS; f++)
                        json_array_append_new(arr, json_pack("{s:s}", "name", cp_outfmt_name((enum cp_outfmt)f)));
                return send_json(d, conn, req, json_pack("{s:o}", "results", arr));
        }
        if (n == 3 && strcmp(segs[1], "exports") == 0) {
                if (cp_outfmt_parse(segs[2], &fmt) < 0)
                        return ods_error(conn, req, MHD_HTTP_BAD_REQUEST, "InvalidParameter",
                                         "export format must be json, jsonl, csv or geojson");
                return start_job(d, conn, req, ds, J_EXPORT, fmt);
        }
        return ods_error(conn, req, MHD_HTTP_NOT_FOUND, "NotFound", "no such resource");
}

/* /exports/<dataset>.<csv|json|geojson|jsonl>: the same as the Explore export with its defaults. */
enum MHD_Result cp_exports_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                  const char *file)
{
        struct cp_xjob *j = req->ctx;
        const char *dot = strrchr(file, '.');
        const struct cp_dataset *ds;
        enum cp_outfmt fmt;
        char id[128];

        if (j)
                return answer(d, conn, req, j);
        if (!dot || (size_t)(dot - file) >= sizeof(id) || cp_outfmt_parse(dot + 1, &fmt) < 0)
                return ods_error(conn, req, MHD_HTTP_NOT_FOUND, "NotFound",
                                 "exports are /exports/<dataset>.csv, .json, .jsonl or .geojson");
        memcpy(id, file, (size_t)(dot - file));
        id[dot - file] = '\0';
        if (!(ds = cp_dataset_find(id)))
                return ods_error(conn, req, MHD_HTTP_NOT_FOUND, "NotFound", "Unknown dataset");
        return start_job(d, conn, req, ds, J_EXPORT, fmt);
}

/* ---- history routes: series, a sensor's readings, rejects --------------------------------------------- */

#define PAGE_DEF 1000
#define PAGE_MAX 10000

static enum MHD_Result bad(struct MHD_Connection *conn, struct cp_http_req *req, const char *msg)
{
        return cp_http_error(conn, req, MHD_HTTP_BAD_REQUEST, "bad_request", msg);
}

static int parse_time_arg(const struct cp_daemon *d, const char *s, int64_t *ret)
{
        if (!s)
                return 0;
        return cp_time_parse(s, strlen(s), d->tz, ret) < 0 ? -EINVAL : 0;
}

static enum MHD_Result start_sql(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                 struct cp_sqlq *q, json_t *wrap, const char *key, int64_t page_limit,
                                 const char *cursor_col)
{
        struct cp_xjob *j;

        if (q->sql.oom || !wrap) {
                cp_sqlq_done(q);
                json_decref(wrap);
                return MHD_NO;
        }
        if (d->n_xjobs >= MAX_JOBS) {
                cp_sqlq_done(q);
                json_decref(wrap);
                return ods_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable", "too many queries running, retry");
        }
        if (!(j = calloc(1, sizeof(*j)))) {
                cp_sqlq_done(q);
                json_decref(wrap);
                return MHD_NO;
        }
        j->fd = -1;
        j->d = d;
        j->conn = conn;
        j->req = req;
        j->kind = J_SQL;
        j->sql = *q;
        j->wrap = wrap;
        j->wrap_key = key;
        j->page_limit = page_limit;
        j->cursor_col = cursor_col;
        j->tz = d->tz;
        snprintf(j->db_path, sizeof(j->db_path), "%s/citypulse.db", d->cfg->data_dir);
        j->next = d->xjobs;
        d->xjobs = j;
        d->n_xjobs++;
        if (uv_queue_work(&d->loop, &j->work, job_work, job_after) < 0) {
                job_free(j);
                return ods_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable", "cannot queue the query");
        }
        req->ctx = j;
        req->ctx_free = job_req_gone;
        MHD_suspend_connection(conn);
        return MHD_YES;
}

/* GET /api/v1/series?dataset=&id=[&kind=][&from=][&to=][&updated_since=][&limit=][&cursor=]: one entity's
 * bucket rows in time order, keyset-paged (cursor = the last bucket_start in ms). */
enum MHD_Result cp_series_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req)
{
        const char *dsn = arg(conn, "dataset"), *id = arg(conn, "id"), *kind = arg(conn, "kind");
        int64_t from = INT64_MIN, to = INT64_MAX, since = INT64_MIN, limit = PAGE_DEF, cursor = INT64_MIN;
        const struct cp_dataset *ds;
        struct cp_sqlq q;

        if (req->ctx)
                return answer(d, conn, req, req->ctx);
        if (!dsn || !(ds = cp_dataset_find(dsn)) || !cp_dataset_is_bucket(ds))
                return bad(conn, req, "dataset must name a bucket dataset (parking-occupancy-* or energy-*)");
        if (!id || !*id)
                return bad(conn, req, "id is required: a parking_id, meter id or district");
        if (kind && ds->kind != CP_DS_ENERGY)
                return bad(conn, req, "kind applies to energy datasets only");
        if (parse_time_arg(d, arg(conn, "from"), &from) < 0 || parse_time_arg(d, arg(conn, "to"), &to) < 0 ||
            parse_time_arg(d, arg(conn, "updated_since"), &since) < 0)
                return bad(conn, req, "from, to and updated_since are ISO 8601 times, e.g. 2026-03-01T00:00:00+01:00");
        if (cp_http_parse_int(arg(conn, "limit"), 1, PAGE_MAX, &limit) < 0 ||
            cp_http_parse_int(arg(conn, "cursor"), INT64_MIN + 1, INT64_MAX, &cursor) < 0)
                return bad(conn, req, "limit is 1..10000; cursor is the next_cursor of the previous page");
        cp_sqlq_init(&q);
        cp_buf_puts(&q.sql, "SELECT ");
        for (size_t i = 0; i < ds->n_fields; i++) {
                const struct cp_ods_field *f = &ds->fields[i];
                if (f->type == CP_ODS_GEO_POINT)
                        cp_buf_printf(&q.sql, "%s%s, %s", i ? ", " : "", f->col, f->col2);
                else
                        cp_buf_printf(&q.sql, "%s%s", i ? ", " : "", f->col);
        }
        cp_buf_printf(&q.sql, " FROM %s WHERE %s = ", ds->table, ds->kind == CP_DS_ENERGY ? "id" : "parking_id");
        cp_sqlq_text(&q, id, strlen(id));
        if (kind) {
                cp_buf_puts(&q.sql, " AND kind = ");
                cp_sqlq_text(&q, kind, strlen(kind));
        }
        cp_buf_puts(&q.sql, " AND bucket_start_ms >= ");
        cp_sqlq_int(&q, CP_MAX(from, cursor == INT64_MIN ? INT64_MIN : cursor + 1));
        cp_buf_puts(&q.sql, " AND bucket_start_ms < ");
        cp_sqlq_int(&q, to);
        if (since != INT64_MIN) {
                cp_buf_puts(&q.sql, " AND updated_at_ms >= ");
                cp_sqlq_int(&q, since);
        }
        cp_buf_puts(&q.sql, ds->kind == CP_DS_ENERGY ? " ORDER BY bucket_start_ms, kind LIMIT " : " ORDER BY bucket_start_ms LIMIT ");
        cp_sqlq_int(&q, limit);
        return start_sql(d, conn, req, &q, json_pack("{s:s, s:s}", "dataset", ds->id, "id", id), "data", limit,
                         "bucket_start_ms");
}

/* GET /api/v1/sensors/{id}/readings?[quantity=][&from=][&to=][&limit=][&cursor=]: stored readings in
 * observation-time order. Without from, the last 24 hours (the readings table is keyed by time). The
 * cursor is "<ts_ms>:<quantity>" of the last row. */
enum MHD_Result cp_readings_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                   const char *id)
{
        const char *qn = arg(conn, "quantity"), *cur = arg(conn, "cursor");
        int64_t to = INT64_MAX, limit = PAGE_DEF, now = cp_now_ms(), from = now - 86400000LL, cts = 0;
        enum cp_quantity quantity;
        char cq[64] = "";
        struct cp_sqlq q;
        json_t *wrap;

        if (req->ctx) {
                struct cp_xjob *j = req->ctx;
                /* The cursor names the last row's time and quantity. */
                if (j->status == MHD_HTTP_OK && j->rows && (int64_t)json_array_size(j->rows) == j->page_limit) {
                        json_t *last = json_array_get(j->rows, json_array_size(j->rows) - 1);
                        char buf[96];
                        snprintf(buf, sizeof(buf), "%" PRId64 ":%s", j->last_cursor,
                                 json_string_value(json_object_get(last, "quantity")));
                        json_object_set_new(j->wrap, "next_cursor", json_string(buf));
                        j->page_limit = 0;
                } else if (j->status == MHD_HTTP_OK) {
                        json_object_set_new(j->wrap, "next_cursor", json_null());
                        j->page_limit = 0;
                }
                return answer(d, conn, req, j);
        }
        if (qn && cp_quantity_parse(qn, &quantity) < 0)
                return bad(conn, req, "unknown quantity (see CONTRACT section 3 for the names)");
        if (parse_time_arg(d, arg(conn, "from"), &from) < 0 || parse_time_arg(d, arg(conn, "to"), &to) < 0)
                return bad(conn, req, "from and to are ISO 8601 times, e.g. 2026-03-01T00:00:00+01:00");
        if (cp_http_parse_int(arg(conn, "limit"), 1, PAGE_MAX, &limit) < 0)
                return bad(conn, req, "limit is 1..10000");
        if (cur && (sscanf(cur, "%" SCNd64 ":%63[a-z0-9_]", &cts, cq) != 2 || cp_quantity_parse(cq, &quantity) < 0))
                return bad(conn, req, "cursor is the next_cursor of the previous page");
        cp_sqlq_init(&q);
        cp_buf_puts(&q.sql, "SELECT quantity, value, ts_ms AS observed_at_ms, received_ms AS received_at_ms"
                            " FROM readings WHERE ts_ms >= ");
        cp_sqlq_int(&q, from);
        cp_buf_puts(&q.sql, " AND ts_ms < ");
        cp_sqlq_int(&q, to);
        cp_buf_puts(&q.sql, " AND sensor_id = ");
        cp_sqlq_text(&q, id, strlen(id));
        if (qn) {
                cp_buf_puts(&q.sql, " AND quantity = ");
                cp_sqlq_text(&q, qn, strlen(qn));
        }
        if (cur) {
                cp_buf_puts(&q.sql, " AND (ts_ms > ");
                cp_sqlq_int(&q, cts);
                cp_buf_puts(&q.sql, " OR (ts_ms = ");
                cp_sqlq_int(&q, cts);
                cp_buf_puts(&q.sql, " AND quantity > ");
                cp_sqlq_text(&q, cq, strlen(cq));
                cp_buf_puts(&q.sql, "))");
        }
        cp_buf_puts(&q.sql, " ORDER BY ts_ms, quantity LIMIT ");
        cp_sqlq_int(&q, limit);
        wrap = json_pack("{s:s}", "sensor_id", id);
        return start_sql(d, conn, req, &q, wrap, "readings", limit, "observed_at_ms");
}

/* Constant-time comparison of the bearer token. */
static bool token_ok(const struct cp_daemon *d, struct MHD_Connection *conn)
{
        const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        size_t tl, hl;
        unsigned char diff = 0;

        if (!h || strncmp(h, "Bearer ", 7) != 0 || !d->admin_token)
                return false;
        h += 7;
        tl = strlen(d->admin_token);
        hl = strlen(h);
        for (size_t i = 0; i < tl; i++)
                diff |= (unsigned char)(d->admin_token[i] ^ (i < hl ? h[i] : 0));
        return diff == 0 && hl == tl;
}

/* Admin routes: 403 while http.admin_token_file is unset (they are off), 401 without the right token. */
enum MHD_Result cp_admin_check(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req, bool *ok)
{
        struct MHD_Response *r;
        enum MHD_Result ret;
        const char *body = "{\"error\":\"unauthorized\",\"message\":\"this endpoint needs Authorization: Bearer <token>\"}";

        *ok = false;
        if (!d->admin_token)
                return cp_http_error(conn, req, MHD_HTTP_FORBIDDEN, "forbidden",
                                     "admin endpoints are off: set http.admin_token_file");
        if (token_ok(d, conn)) {
                *ok = true;
                return MHD_YES;
        }
        r = MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
        if (!r)
                return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"citypulse\"");
        ret = cp_http_queue(conn, req, MHD_HTTP_UNAUTHORIZED, r);
        MHD_destroy_response(r);
        return ret;
}

/* GET /api/v1/rejects?[driver=][&limit=][&cursor=] (admin): newest first. The payload is given as text
 * when it is UTF-8 (else null, with its size in payload_bytes). */
enum MHD_Result cp_rejects_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req)
{
        const char *drv = arg(conn, "driver");
        int64_t limit = 100, cursor = INT64_MAX;
        struct cp_sqlq q;
        enum MHD_Result ret;
        bool ok;

        if (req->ctx)
                return answer(d, conn, req, req->ctx);
        ret = cp_admin_check(d, conn, req, &ok);
        if (!ok)
                return ret;
        if (cp_http_parse_int(arg(conn, "limit"), 1, PAGE_MAX, &limit) < 0 ||
            cp_http_parse_int(arg(conn, "cursor"), 1, INT64_MAX, &cursor) < 0)
                return bad(conn, req, "limit is 1..10000; cursor is the next_cursor of the previous page");
        cp_sqlq_init(&q);
        cp_buf_puts(&q.sql, "SELECT rowid AS id, received_ms AS received_at_ms, topic, driver, reason, detail,"
                            " CASE WHEN payload IS NULL THEN NULL ELSE CAST(payload AS TEXT) END AS payload,"
                            " length(payload) AS payload_bytes FROM rejects WHERE rowid < ");
        cp_sqlq_int(&q, cursor);
        if (drv) {
                cp_buf_puts(&q.sql, " AND driver = ");
                cp_sqlq_text(&q, drv, strlen(drv));
        }
        cp_buf_puts(&q.sql, " ORDER BY rowid DESC LIMIT ");
        cp_sqlq_int(&q, limit);
        return start_sql(d, conn, req, &q, json_pack("{}"), "rejects", limit, "id");
}
