/* store.c - the SQLite writer.
 *
 * Key layout: readings is a WITHOUT ROWID table keyed (ts_ms, sensor_id, quantity). Readings arrive
 * roughly in observation-time order, so inserts land at the right edge of the one B-tree, which keeps
 * the rate near that of a table without any index (measured here: ~840k rows/s unindexed, ~475k with a
 * time-first key, ~35k with a sensor-first key at 1M rows). The uniqueness the contract asks for holds
 * whatever the column order of the key. `latest` keeps the newest value per sensor and quantity, so a
 * restart rebuilds live state without scanning history. */
#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citypulse/cp_common.h"
#include "bucket.h"
#include "journal.h"
#include "timefmt.h"

struct cp_store {
        sqlite3 *db;
        sqlite3_stmt *ins_reading;
        sqlite3_stmt *upsert_latest;
        sqlite3_stmt *ins_reject;
        sqlite3_stmt *begin, *commit, *rollback;
        struct cp_import_result *cur;
        struct cp_bucket *bucket; /* NULL: no buckets (tests, tools) */
        int64_t import_now_ms;
        int last_rc; /* the SQLite code that stopped an import */
};

/* Bucket tables (bucket.c): the dataset's public columns, then internal ones (leading underscore) that
 * let a parent bucket be merged exactly from its children. Keyed by time first, like readings. */
#define OCC_TABLE(t)                                                                                              \
        "CREATE TABLE " t "(parking_id TEXT NOT NULL, bucket_start_ms INTEGER NOT NULL, bucket_end_ms INTEGER NOT NULL," \
        " occupancy_rate_mean REAL, coverage REAL NOT NULL, free_spaces_min INTEGER, free_spaces_max INTEGER,"        \
        " free_spaces_last INTEGER, samples INTEGER NOT NULL, revision INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL," \
        " lat REAL, lon REAL, _registered INTEGER NOT NULL, _occupied_ms REAL NOT NULL, _known_ms REAL NOT NULL,"    \
        " _capacity_ms REAL NOT NULL, _has_free INTEGER NOT NULL, _has_free_last INTEGER NOT NULL,"                  \
        " PRIMARY KEY (bucket_start_ms, parking_id)) WITHOUT ROWID;"                                                 \
        "CREATE INDEX " t "_id ON " t "(parking_id, bucket_start_ms);"                                               \
        "CREATE INDEX " t "_updated ON " t "(updated_at_ms);"
#define EN_TABLE(t)                                                                                               \
        "CREATE TABLE " t "(id TEXT NOT NULL, kind TEXT NOT NULL, district TEXT, bucket_start_ms INTEGER NOT NULL,"  \
        " bucket_end_ms INTEGER NOT NULL, energy_import_kwh REAL, energy_export_kwh REAL, power_w_mean REAL,"        \
        " power_w_min REAL, power_w_max REAL, power_w_last REAL, samples INTEGER NOT NULL, coverage REAL NOT NULL,"  \
        " revision INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL, _known_ms INTEGER NOT NULL,"                    \
        " _integral REAL NOT NULL, _last_ts INTEGER NOT NULL, _has_last INTEGER NOT NULL,"                          \
        " _p_samples INTEGER NOT NULL, _i_samples INTEGER NOT NULL, _e_samples INTEGER NOT NULL,"                    \
        " PRIMARY KEY (bucket_start_ms, kind, id)) WITHOUT ROWID;"                                                   \
        "CREATE INDEX " t "_id ON " t "(kind, id, bucket_start_ms);"                                                 \
        "CREATE INDEX " t "_updated ON " t "(updated_at_ms);"

/* Schema migrations, applied in order; PRAGMA user_version holds how many ran. Never edit one that has
 * shipped: add the next. */
static const char *const migrations[] = {
        /* 1 */
        "CREATE TABLE readings(sensor_id TEXT NOT NULL, quantity TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
        " value REAL NOT NULL, received_ms INTEGER NOT NULL, PRIMARY KEY (ts_ms, sensor_id, quantity))"
        " WITHOUT ROWID;"
        "CREATE TABLE latest(sensor_id TEXT NOT NULL, quantity TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
        " value REAL NOT NULL, received_ms INTEGER NOT NULL, PRIMARY KEY (sensor_id, quantity)) WITHOUT ROWID;"
        "CREATE TABLE rejects(received_ms INTEGER NOT NULL, topic TEXT NOT NULL, driver TEXT NOT NULL,"
        " reason TEXT NOT NULL, payload BLOB, detail TEXT NOT NULL DEFAULT '');"
        "CREATE INDEX rejects_received ON rejects(received_ms);"
        "CREATE INDEX rejects_driver ON rejects(driver, received_ms);",
        /* 2: buckets */
        "CREATE TABLE agg_state(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE agg_dirty(period INTEGER NOT NULL, t0 INTEGER NOT NULL, etype INTEGER NOT NULL,"
        " id TEXT NOT NULL, PRIMARY KEY (period, t0, etype, id)) WITHOUT ROWID;"
        "CREATE TABLE agg_carry(sensor_id TEXT NOT NULL, quantity TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
        " value REAL NOT NULL, PRIMARY KEY (sensor_id, quantity)) WITHOUT ROWID;"
        OCC_TABLE("parking_occupancy_1min") OCC_TABLE("parking_occupancy_15min")
        OCC_TABLE("parking_occupancy_hourly") OCC_TABLE("parking_occupancy_daily")
        EN_TABLE("energy_1min") EN_TABLE("energy_15min") EN_TABLE("energy_hourly") EN_TABLE("energy_daily"),
        /* 3: a signal's oldest reading, so a counter's missing predecessor needs no scan */
        "ALTER TABLE agg_carry ADD COLUMN first_ts_ms INTEGER;",
};

int cp_sqlite_errno(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_CANTOPEN:
                return -EACCES;
        default:
                return -EIO;
        }
}

static int fail(struct cp_store *s, int rc, const char *what, char *err, size_t errlen)
{
        if (err)
                snprintf(err, errlen, "%s: %s", what, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        return cp_sqlite_errno(rc);
}

static int exec(struct cp_store *s, const char *sql, char *err, size_t errlen)
{
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : fail(s, rc, sql, err, errlen);
}

static int migrate(struct cp_store *s, char *err, size_t errlen)
{
        sqlite3_stmt *st;
        int version, r;
        char sql[64];

        if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
                return fail(s, sqlite3_errcode(s->db), "user_version", err, errlen);
        sqlite3_step(st);
        version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (version > (int)CP_ARRAY_LEN(migrations)) {
                snprintf(err, errlen, "database schema version %d is newer than this citypulsed (%zu)", version,
                         CP_ARRAY_LEN(migrations));
                return -EPROTO;
        }
        for (int v = version; v < (int)CP_ARRAY_LEN(migrations); v++) {
                if ((r = exec(s, "BEGIN IMMEDIATE", err, errlen)) < 0)
                        return r;
                snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", v + 1);
                if ((r = exec(s, migrations[v], err, errlen)) < 0 || (r = exec(s, sql, err, errlen)) < 0) {
                        (void)exec(s, "ROLLBACK", NULL, 0);
                        return r;
                }
                if ((r = exec(s, "COMMIT", err, errlen)) < 0)
                        return r;
        }
        return 0;
}

static int prepare(struct cp_store *s, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
        int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
        return rc == SQLITE_OK ? 0 : fail(s, rc, sql, err, errlen);
}

int cp_store_open(const char *path, struct cp_store **ret, char *err, size_t errlen)
{
        struct cp_store *s = calloc(1, sizeof(*s));
        int rc, r;

        if (!s)
                return -ENOMEM;
        rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
        if (rc != SQLITE_OK) {
                r = fail(s, rc, "open", err, errlen);
                goto out_close;
        }
        sqlite3_busy_timeout(s->db, 5000);
        if ((r = exec(s, "PRAGMA journal_mode=WAL", err, errlen)) < 0 ||
            (r = exec(s, "PRAGMA synchronous=NORMAL", err, errlen)) < 0 ||
            (r = exec(s, "PRAGMA cache_size=-32768", err, errlen)) < 0 ||
            (r = exec(s, "PRAGMA journal_size_limit=67108864", err, errlen)) < 0 || (r = migrate(s, err, errlen)) < 0)
                goto out_close;
        if ((r = prepare(s, "INSERT OR IGNORE INTO readings VALUES(?1,?2,?3,?4,?5)", &s->ins_reading, err,
                         errlen)) < 0 ||
            (r = prepare(s,
                         "INSERT INTO latest VALUES(?1,?2,?3,?4,?5) ON CONFLICT(sensor_id,quantity) DO UPDATE"
                         " SET ts_ms=excluded.ts_ms, value=excluded.value, received_ms=excluded.received_ms"
                         " WHERE excluded.ts_ms > latest.ts_ms",
                         &s->upsert_latest, err, errlen)) < 0 ||
            (r = prepare(s, "INSERT INTO rejects(received_ms,topic,driver,reason,payload,detail) VALUES(?,?,?,?,?,?)",
                         &s->ins_reject, err, errlen)) < 0 ||
            (r = prepare(s, "BEGIN IMMEDIATE", &s->begin, err, errlen)) < 0 ||
            (r = prepare(s, "COMMIT", &s->commit, err, errlen)) < 0 ||
            (r = prepare(s, "ROLLBACK", &s->rollback, err, errlen)) < 0)
                goto out_close;
        *ret = s;
        return 0;
out_close:
        cp_store_close(s);
        return r;
}

void cp_store_close(struct cp_store *s)
{
        if (!s)
                return;
        sqlite3_finalize(s->ins_reading);
        sqlite3_finalize(s->upsert_latest);
        sqlite3_finalize(s->ins_reject);
        sqlite3_finalize(s->begin);
        sqlite3_finalize(s->commit);
        sqlite3_finalize(s->rollback);
        sqlite3_close(s->db);
        free(s);
}

static int step_reset(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int on_reading(void *ud, const struct cp_reading *r)
{
        struct cp_store *s = ud;
        const char *q = cp_quantity_name(r->quantity);
        int rc;

        sqlite3_bind_text(s->ins_reading, 1, r->sensor_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->ins_reading, 2, q, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s->ins_reading, 3, r->ts_ms);
        sqlite3_bind_double(s->ins_reading, 4, r->value);
        sqlite3_bind_int64(s->ins_reading, 5, r->rx_ms);
        rc = step_reset(s->ins_reading);
        if (rc != SQLITE_OK)
                goto fail;
        if (sqlite3_changes(s->db) == 0) {
                /* Already stored: a QoS 1 duplicate or a segment imported twice. Latest is already right. */
                s->cur->readings_dup++;
                return 0;
        }
        s->cur->readings_new++;
        sqlite3_bind_text(s->upsert_latest, 1, r->sensor_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->upsert_latest, 2, q, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s->upsert_latest, 3, r->ts_ms);
        sqlite3_bind_double(s->upsert_latest, 4, r->value);
        sqlite3_bind_int64(s->upsert_latest, 5, r->rx_ms);
        rc = step_reset(s->upsert_latest);
        if (rc != SQLITE_OK)
                goto fail;
        if (s->bucket) {
                int e = cp_bucket_note(s->bucket, r, s->import_now_ms);
                if (e < 0) {
                        s->last_rc = e == -ENOSPC ? SQLITE_FULL : e == -EBUSY ? SQLITE_BUSY : SQLITE_IOERR;
                        return e;
                }
        }
        return 0;
fail:
        s->last_rc = rc;
        return cp_sqlite_errno(rc);
}

static int on_reject(void *ud, const struct cp_jreject *x)
{
        struct cp_store *s = ud;
        int rc;

        sqlite3_bind_int64(s->ins_reject, 1, x->rx_ms);
        sqlite3_bind_text(s->ins_reject, 2, x->topic, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->ins_reject, 3, x->driver, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->ins_reject, 4, x->reason, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s->ins_reject, 5, x->payload_len ? x->payload : "", (int)x->payload_len, SQLITE_STATIC);
        sqlite3_bind_text(s->ins_reject, 6, x->text, -1, SQLITE_STATIC);
        s->cur->rejects++;
        rc = step_reset(s->ins_reject);
        if (rc == SQLITE_OK)
                return 0;
        s->last_rc = rc;
        return cp_sqlite_errno(rc);
}

int cp_store_import(struct cp_store *s, const char *segment, struct cp_import_result *res, char *err,
                    size_t errlen)
{
        struct cp_jvisitor vis = {.reading = on_reading, .reject = on_reject, .ud = s};
        int64_t n;
        int rc;

        memset(res, 0, sizeof(*res));
        s->cur = res;
        s->import_now_ms = cp_now_ms();
        rc = step_reset(s->begin);
        if (rc != SQLITE_OK)
                return fail(s, rc, "begin", err, errlen);
        s->last_rc = SQLITE_OK;
        n = cp_journal_read(segment, &vis, &res->torn);
        if (n < 0) {
                int r = s->last_rc != SQLITE_OK ? fail(s, s->last_rc, "insert", err, errlen) : (int)n;
                if (s->last_rc == SQLITE_OK)
                        snprintf(err, errlen, "reading %s: %s", segment, strerror((int)-n));
                (void)step_reset(s->rollback);
                if (s->bucket)
                        cp_bucket_rollback(s->bucket);
                return r;
        }
        res->records = (uint64_t)n;
        rc = step_reset(s->commit);
        if (rc != SQLITE_OK) {
                int r = fail(s, rc, "commit", err, errlen);
                (void)step_reset(s->rollback);
                if (s->bucket)
                        cp_bucket_rollback(s->bucket);
                return r;
        }
        return 0;
}

int cp_store_load_latest(struct cp_store *s, int (*cb)(void *ud, const struct cp_reading *r), void *ud)
{
        sqlite3_stmt *st;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(s->db, "SELECT sensor_id, quantity, ts_ms, value, received_ms FROM latest", -1, &st,
                                NULL);
        if (rc != SQLITE_OK)
                return cp_sqlite_errno(rc);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct cp_reading rd;
                const char *id = (const char *)sqlite3_column_text(st, 0);
                const char *q = (const char *)sqlite3_column_text(st, 1);

                memset(&rd, 0, sizeof(rd));
                if (!id || !q || strlen(id) >= sizeof(rd.sensor_id) || cp_quantity_parse(q, &rd.quantity) < 0)
                        continue;
                strcpy(rd.sensor_id, id);
                rd.ts_ms = sqlite3_column_int64(st, 2);
                rd.value = sqlite3_column_double(st, 3);
                rd.rx_ms = sqlite3_column_int64(st, 4);
                if ((r = cb(ud, &rd)) != 0)
                        break;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = cp_sqlite_errno(rc);
        sqlite3_finalize(st);
        return r;
}

/* Deletes in slices of 10000 rows, each its own transaction, so a reader is never locked out for long. */
static int64_t prune_table(struct cp_store *s, const char *sql, int64_t before, char *err, size_t errlen)
{
        sqlite3_stmt *st;
        int64_t total = 0;
        int rc;

        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return fail(s, rc, "prune", err, errlen);
        for (;;) {
                sqlite3_bind_int64(st, 1, before);
                rc = sqlite3_step(st);
                sqlite3_reset(st);
                if (rc != SQLITE_DONE) {
                        int r = fail(s, rc, "prune", err, errlen);
                        sqlite3_finalize(st);
                        return r;
                }
                if (sqlite3_changes(s->db) == 0)
                        break;
                total += sqlite3_changes(s->db);
        }
        sqlite3_finalize(st);
        return total;
}

int64_t cp_store_prune(struct cp_store *s, int64_t readings_before_ms, int64_t rejects_before_ms, char *err,
                       size_t errlen)
{
        int64_t a, b;

        a = prune_table(s,
                        "DELETE FROM readings WHERE ts_ms < ?1 AND ts_ms <= COALESCE((SELECT ts_ms FROM readings"
                        " ORDER BY ts_ms LIMIT 1 OFFSET 10000), ?1)",
                        readings_before_ms, err, errlen);
        if (a < 0)
                return a;
        b = prune_table(s, "DELETE FROM rejects WHERE rowid IN (SELECT rowid FROM rejects WHERE received_ms < ?1 LIMIT 10000)",
                        rejects_before_ms, err, errlen);
        if (b < 0)
                return b;
        return a + b;
}

int cp_store_schema_version(struct cp_store *s)
{
        sqlite3_stmt *st;
        int v = -1;

        if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return v;
}

sqlite3 *cp_store_db(struct cp_store *s)
{
        return s->db;
}

void cp_store_set_bucket(struct cp_store *s, struct cp_bucket *b)
{
        s->bucket = b;
}
