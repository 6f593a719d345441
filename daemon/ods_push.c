/* ods_push.c - see ods_push.h.
 *
 * Flow. cp_push_add() appends to a per-dataset in-memory batch; the flush timer (or a full batch) moves
 * batches to a pending list. A "queue operation" (one uv_work_t at a time, struct cp_push_job) then, on
 * the threadpool: inserts the pending batches, records the outcomes of finished requests (delete on
 * success; attempts, next_try_ms and last_error on failure), enforces max_queue_bytes, and picks, for
 * every dataset with nothing in flight, its oldest rows if they are due, merged into one body below
 * max_batch_bytes. Back on the loop the picked rows become libcurl transfers; their outcomes feed the
 * next queue operation. A dataset is "busy" from the moment its rows are picked until the outcome of
 * that request is committed, so its rows are never sent twice at once and always in id order.
 *
 * libcurl runs on the loop as curl's multi-uv example does: CURLMOPT_SOCKETFUNCTION maps each socket to
 * a uv_poll_t, CURLMOPT_TIMERFUNCTION to one uv_timer_t, and both call curl_multi_socket_action(). */
#include "ods_push.h"

#include "buf.h"
#include "citypulse/cp_common.h"
#include "citypulse/cp_err.h"
#include "timefmt.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef CP_VERSION
#define CP_VERSION "dev"
#endif

#define MOD                "ods_push"
#define DEF_FLUSH_MS       1000
#define DEF_TIMEOUT_MS     30000
#define DEF_BACKOFF_MIN_MS 1000
#define DEF_BACKOFF_MAX_MS (5 * 60 * 1000)
#define DEF_MAX_BATCH      1000000
#define DEF_MAX_QUEUE      (256ll * 1024 * 1024)
#define DEF_MAX_PENDING    ((size_t)16 * 1024 * 1024)
#define MAX_ANSWER         65536 /* a longer answer is not {"status":"OK"} */
#define MAX_ROWS_PER_SEND  1000
#define DB_BUSY_TIMEOUT_MS 5000
#define DB_BACKOFF_MIN_MS  1000
#define DB_BACKOFF_MAX_MS  30000
#define SKIP_QUIET_MS      (10 * 60 * 1000)
#define REDACTED           "REDACTED"
#define STR_(x)            #x
#define STR(x)             STR_(x)

struct cp_push_ds {
        char *name;
        char *url;           /* with the push key: CURLOPT_URL only, never logged */
        char *log_url;       /* every query value REDACTED */
        char *what;          /* "push dataset=<name>" for the complaint's "recovered" line */
        struct cp_buf batch; /* "[rec,rec" (closed when flushed); empty when batch_records is 0 */
        size_t batch_records;
        bool busy;         /* rows picked, request or its outcome pending */
        bool resolving;    /* kick(): its outcome goes into the operation being built */
        int64_t *busy_ids; /* those rows */
        size_t n_busy_ids;
        struct cp_complaint complaint;
};

/* A closed batch waiting to be inserted. */
struct cp_push_pending {
        struct cp_push_pending *next;
        struct cp_push_ds *ds;
        char *body;
        size_t len;
        size_t n_records;
        int64_t created_ms;
};

/* The outcome of a request, waiting to be recorded (rows: ds->busy_ids). */
struct cp_push_result {
        struct cp_push_result *next;
        struct cp_push_ds *ds;
        bool ok;
        int64_t next_try_ms;
        char *error; /* scrubbed; NULL when ok */
};

/* Rows picked by a queue operation, merged into one request body. */
struct cp_push_send {
        struct cp_push_send *next;
        char *dataset;
        int64_t *ids;
        size_t n_ids, cap_ids;
        struct cp_buf body;
        size_t n_parts;
        size_t n_records;
        int64_t attempts;
};

struct cp_push_xfer {
        struct cp_push_xfer *next;
        struct cp_push *p;
        struct cp_push_ds *ds;
        CURL *easy;
        char *body;
        size_t len;
        size_t n_records;
        int64_t attempts;
        uint64_t started;
        struct cp_buf answer;
        bool answer_too_long;
        char errbuf[CURL_ERROR_SIZE];
};

struct cp_push_sock {
        uv_poll_t h;
        struct cp_push_sock *next;
        struct cp_push *p;
        curl_socket_t fd;
        bool closing;
};

struct ds_snap {
        const char *name; /* ds->name: immutable while the job runs */
        bool busy;
};

struct cp_push_job {
        uv_work_t req;
        struct cp_push *p;
        /* In. */
        struct cp_push_pending *ins;
        struct cp_push_result *res;
        struct ds_snap *known;
        size_t n_known;
        int64_t *busy_ids; /* sorted */
        size_t n_busy_ids;
        size_t new_slots;
        bool fetch;
        bool close_db;
        /* Out. */
        int err;
        char errmsg[256];
        bool applied; /* ins and res are committed */
        bool have_size;
        int64_t rows, bytes;
        uint64_t dropped_rows, dropped_records;
        size_t skipped; /* datasets left alone for lack of a slot */
        struct cp_push_send *sends, *sends_tail;
        int64_t next_due_ms; /* 0: nothing waiting */
};

struct cp_push_db {
        sqlite3 *db;
        sqlite3_stmt *ins, *del, *fail, *size, *datasets, *head, *oldest, *begin, *commit, *rollback;
};

static void kick(struct cp_push *p);
static void maybe_stopped(struct cp_push *p);
static void check_multi_info(struct cp_push *p);

/* ---- small helpers ---- */

static uint64_t next_rand(struct cp_push *p)
{
        /* xorshift64*: jitter only, no need for quality, and no shared global state. */
        uint64_t x = p->rng;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p->rng = x;
        return x * 0x2545F4914F6CDD1Dull;
}

/* Exponential from backoff_min_ms, doubling per attempt up to backoff_max_ms, with full jitter (uniform
 * in [0, cap]) floored at backoff_min_ms so a failing portal is never hammered. */
static int64_t backoff_ms(struct cp_push *p, int64_t attempts)
{
        int64_t cap = p->cfg.backoff_min_ms, d;

        for (int64_t i = 1; i < attempts && cap < p->cfg.backoff_max_ms; i++)
                cap *= 2;
        cap = CP_MIN(cap, p->cfg.backoff_max_ms);
        d = (int64_t)((double)(next_rand(p) >> 11) / 9007199254740992.0 * (double)cap);
        return CP_MAX(d, p->cfg.backoff_min_ms);
}

static bool dataset_valid(const char *s)
{
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++) {
                char c = s[n];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.'))
                        return false;
        }
        return n > 0 && n <= CP_PUSH_MAX_DATASET_LEN;
}

static void pct_encode(struct cp_buf *b, const char *s)
{
        static const char hex[] = "0123456789ABCDEF";

        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == '~') {
                        cp_buf_putc(b, (char)c);
                } else {
                        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
                        cp_buf_append(b, e, 3);
                }
        }
}

/* The URL as logs may show it: every query value replaced, and the pushkey parameter we add. */
static char *redact_url(const char *url)
{
        struct cp_buf b = CP_BUF_INIT;
        const char *q = strchr(url, '?');

        cp_buf_append(&b, url, q ? (size_t)(q - url) : strlen(url));
        cp_buf_putc(&b, '?');
        if (q) {
                for (const char *s = q + 1; *s;) {
                        size_t n = strcspn(s, "&");
                        size_t k = strcspn(s, "=&");
                        if (n > 0) {
                                cp_buf_append(&b, s, k);
                                cp_buf_puts(&b, "=" REDACTED "&");
                        }
                        s += n;
                        if (*s == '&')
                                s++;
                }
        }
        cp_buf_puts(&b, "pushkey=" REDACTED);
        return cp_buf_steal(&b);
}

/* Replaces every occurrence of the key (raw or percent-encoded) in s. Returns a new string or NULL. */
static char *scrub(const struct cp_push *p, const char *s)
{
        struct cp_buf b = CP_BUF_INIT;
        const char *keys[2] = {p->pushkey, p->pushkey_enc};

        while (*s) {
                size_t hit = 0;
                for (size_t i = 0; i < 2; i++) {
                        size_t n = keys[i] ? strlen(keys[i]) : 0;
                        if (n && strncmp(s, keys[i], n) == 0)
                                hit = CP_MAX(hit, n);
                }
                if (hit) {
                        cp_buf_puts(&b, REDACTED);
                        s += hit;
                } else {
                        cp_buf_putc(&b, *s++);
                }
        }
        if (b.oom) {
                cp_buf_free(&b);
                return NULL;
        }
        return b.p ? b.p : strdup("");
}

static int sql_errno(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_TOOBIG:
                return -EMSGSIZE;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        default:
                return -EIO;
        }
}

/* ---- the queue table: any thread, any connection ---- */

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS push_queue(id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, body BLOB NOT NULL,"
    " n_records INTEGER NOT NULL, created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_try_ms INTEGER NOT NULL DEFAULT 0, last_error TEXT);"
    "CREATE INDEX IF NOT EXISTS push_queue_dataset ON push_queue(dataset, id);"
    /* Row and byte counts kept by triggers, whichever connection writes: counting a 256 MiB queue
     * after every operation would read all of it. Recounted when the sender opens the database. */
    "CREATE TABLE IF NOT EXISTS push_queue_size(k INTEGER PRIMARY KEY CHECK (k = 0), rows INTEGER NOT NULL,"
    " bytes INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO push_queue_size VALUES(0, 0, 0);"
    "CREATE TRIGGER IF NOT EXISTS push_queue_size_ins AFTER INSERT ON push_queue BEGIN"
    " UPDATE push_queue_size SET rows = rows + 1, bytes = bytes + length(NEW.body) WHERE k = 0; END;"
    "CREATE TRIGGER IF NOT EXISTS push_queue_size_del AFTER DELETE ON push_queue BEGIN"
    " UPDATE push_queue_size SET rows = rows - 1, bytes = bytes - length(OLD.body) WHERE k = 0; END;"
    "CREATE TRIGGER IF NOT EXISTS push_queue_size_upd AFTER UPDATE OF body ON push_queue BEGIN"
    " UPDATE push_queue_size SET bytes = bytes - length(OLD.body) + length(NEW.body) WHERE k = 0; END;";

int cp_push_queue_init(sqlite3 *db)
{
        bool own_txn = sqlite3_get_autocommit(db) != 0;
        int rc;

        if (own_txn && (rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
                return sql_errno(rc);
        rc = sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
        if (own_txn) {
                if (rc == SQLITE_OK)
                        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
                if (rc != SQLITE_OK)
                        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        }
        return rc == SQLITE_OK ? 0 : sql_errno(rc);
}

static const char insert_sql[] =
    "INSERT INTO push_queue(dataset, body, n_records, created_ms) VALUES(?1, ?2, ?3, ?4)";

static int bind_insert(sqlite3_stmt *st, const char *dataset, const char *body, size_t len, size_t n_records,
                       int64_t now_ms)
{
        int rc;

        if ((rc = sqlite3_bind_text(st, 1, dataset, -1, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_blob64(st, 2, body, len, SQLITE_STATIC)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)n_records)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 4, now_ms)) != SQLITE_OK)
                return rc;
        rc = sqlite3_step(st);
        (void)sqlite3_reset(st);
        (void)sqlite3_clear_bindings(st);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static bool body_valid(const char *body, size_t len, size_t n_records)
{
        json_error_t e;
        json_t *v = json_loadb(body, len, 0, &e);
        bool ok = json_is_array(v) && json_array_size(v) == n_records && n_records > 0;

        for (size_t i = 0; ok && i < json_array_size(v); i++)
                ok = json_is_object(json_array_get(v, i));
        json_decref(v);
        return ok;
}

/* Inserts a body already known to be well formed. */
static int insert_raw(sqlite3 *db, const char *dataset, const char *body, size_t len, size_t n_records,
                      int64_t now_ms)
{
        sqlite3_stmt *st = NULL;
        int rc, r;

        rc = sqlite3_prepare_v2(db, insert_sql, -1, &st, NULL);
        if (rc != SQLITE_OK) {
                /* Most likely the table does not exist yet: the sender creates it once it runs. */
                if ((r = cp_push_queue_init(db)) < 0)
                        return r;
                rc = sqlite3_prepare_v2(db, insert_sql, -1, &st, NULL);
                if (rc != SQLITE_OK)
                        return sql_errno(rc);
        }
        rc = bind_insert(st, dataset, body, len, n_records, now_ms);
        sqlite3_finalize(st);
        return rc == SQLITE_OK ? 0 : sql_errno(rc);
}

int cp_push_queue_insert(sqlite3 *db, const char *dataset, const char *body, size_t len, size_t n_records,
                         int64_t now_ms)
{
        if (!dataset_valid(dataset) || !body)
                return -EINVAL;
        if (len >= CP_PUSH_MAX_BODY)
                return -EMSGSIZE;
        if (!body_valid(body, len, n_records))
                return -EINVAL;
        return insert_raw(db, dataset, body, len, n_records, now_ms);
}

int cp_push_queue_insert_records(sqlite3 *db, const char *dataset, json_t *records, int64_t now_ms)
{
        struct cp_buf b = CP_BUF_INIT;
        size_t i, n = 0;
        json_t *v;
        int dropped = 0, r = 0;

        if (!dataset_valid(dataset) || !json_is_array(records))
                return -EINVAL;
        json_array_foreach(records, i, v)
        {
                char *s;
                size_t len;

                if (!json_is_object(v) || !(s = json_dumps(v, JSON_COMPACT))) {
                        if (json_is_object(v)) {
                                r = -ENOMEM;
                                goto out;
                        }
                        dropped++;
                        continue;
                }
                len = strlen(s);
                if (len + 2 >= CP_PUSH_MAX_BODY) {
                        free(s);
                        dropped++;
                        continue;
                }
                if (n && b.len + 1 + len + 1 >= CP_PUSH_MAX_BODY) {
                        cp_buf_putc(&b, ']');
                        r = b.oom ? -ENOMEM : insert_raw(db, dataset, b.p, b.len, n, now_ms);
                        cp_buf_reset(&b);
                        n = 0;
                        if (r < 0) {
                                free(s);
                                goto out;
                        }
                }
                cp_buf_putc(&b, n ? ',' : '[');
                cp_buf_append(&b, s, len);
                free(s);
                n++;
        }
        if (n) {
                cp_buf_putc(&b, ']');
                r = b.oom ? -ENOMEM : insert_raw(db, dataset, b.p, b.len, n, now_ms);
        }
out:
        cp_buf_free(&b);
        return r < 0 ? r : dropped;
}

/* ---- threadpool side: one job at a time owns p->db ---- */

static int job_fail(struct cp_push_job *j, sqlite3 *db, int rc, const char *what)
{
        snprintf(j->errmsg, sizeof(j->errmsg), "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        j->err = sql_errno(rc);
        return j->err;
}

static void db_close(struct cp_push_db *d)
{
        sqlite3_stmt **all[] = {&d->ins,  &d->del,    &d->fail,  &d->size,   &d->datasets,
                                &d->head, &d->oldest, &d->begin, &d->commit, &d->rollback};

        if (!d)
                return;
        for (size_t i = 0; i < CP_ARRAY_LEN(all); i++) {
                sqlite3_finalize(*all[i]);
                *all[i] = NULL;
        }
        sqlite3_close(d->db);
        free(d);
}

static int db_open(struct cp_push_job *j)
{
        struct cp_push *p = j->p;
        struct cp_push_db *d = calloc(1, sizeof(*d));
        struct {
                sqlite3_stmt **st;
                const char *sql;
        } stmts[] = {
            {NULL, insert_sql},
            {NULL, "DELETE FROM push_queue WHERE id = ?1"},
            {NULL,
             "UPDATE push_queue SET attempts = attempts + 1, next_try_ms = ?2, last_error = ?3 WHERE id = ?1"},
            {NULL, "SELECT rows, bytes FROM push_queue_size WHERE k = 0"},
            /* Distinct datasets by skip-scan on the index: O(datasets * log rows), not a full scan. */
            {NULL, "WITH RECURSIVE d(name) AS (SELECT min(dataset) FROM push_queue UNION ALL"
                   " SELECT (SELECT min(dataset) FROM push_queue WHERE dataset > d.name) FROM d"
                   " WHERE d.name IS NOT NULL) SELECT name FROM d WHERE name IS NOT NULL"},
            {NULL, "SELECT id, length(body), n_records, attempts, next_try_ms, body FROM push_queue"
                   " WHERE dataset = ?1 ORDER BY id LIMIT " STR(MAX_ROWS_PER_SEND)},
            {NULL, "SELECT id, length(body), n_records FROM push_queue ORDER BY id"},
            {NULL, "BEGIN IMMEDIATE"},
            {NULL, "COMMIT"},
            {NULL, "ROLLBACK"},
        };
        int rc, r;

        if (!d) {
                snprintf(j->errmsg, sizeof(j->errmsg), "out of memory");
                return j->err = -ENOMEM;
        }
        stmts[0].st = &d->ins;
        stmts[1].st = &d->del;
        stmts[2].st = &d->fail;
        stmts[3].st = &d->size;
        stmts[4].st = &d->datasets;
        stmts[5].st = &d->head;
        stmts[6].st = &d->oldest;
        stmts[7].st = &d->begin;
        stmts[8].st = &d->commit;
        stmts[9].st = &d->rollback;
        rc = sqlite3_open_v2(p->db_path, &d->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK) {
                r = job_fail(j, d->db, rc, "open");
                goto out_close;
        }
        sqlite3_busy_timeout(d->db, DB_BUSY_TIMEOUT_MS);
        if ((rc = sqlite3_exec(d->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL)) != SQLITE_OK) {
                r = job_fail(j, d->db, rc, "journal_mode");
                goto out_close;
        }
        if ((r = cp_push_queue_init(d->db)) < 0) {
                snprintf(j->errmsg, sizeof(j->errmsg), "create push_queue: %s", sqlite3_errmsg(d->db));
                j->err = r;
                goto out_close;
        }
        for (size_t i = 0; i < CP_ARRAY_LEN(stmts); i++) {
                rc =
                    sqlite3_prepare_v3(d->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].st, NULL);
                if (rc != SQLITE_OK) {
                        r = job_fail(j, d->db, rc, "prepare");
                        goto out_close;
                }
        }
        rc = sqlite3_exec(
            d->db,
            "BEGIN IMMEDIATE; UPDATE push_queue_size SET rows = (SELECT count(*) FROM push_queue),"
            " bytes = (SELECT coalesce(sum(length(body)), 0) FROM push_queue) WHERE k = 0; COMMIT",
            NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                r = job_fail(j, d->db, rc, "count push_queue");
                (void)sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
                goto out_close;
        }
        p->db = d;
        return 0;
out_close:
        db_close(d);
        return r;
}

static int step_done(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        (void)sqlite3_reset(st);
        return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int read_size(struct cp_push_job *j, int64_t *rows, int64_t *bytes)
{
        struct cp_push_db *d = j->p->db;
        int rc = sqlite3_step(d->size);

        if (rc == SQLITE_ROW) {
                *rows = sqlite3_column_int64(d->size, 0);
                *bytes = sqlite3_column_int64(d->size, 1);
                rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
                *rows = *bytes = 0;
                rc = SQLITE_OK;
        }
        (void)sqlite3_reset(d->size);
        return rc == SQLITE_OK ? 0 : job_fail(j, d->db, rc, "read push_queue size");
}

static int cmp_id(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return x < y ? -1 : x > y;
}

static bool is_busy_id(const struct cp_push_job *j, int64_t id)
{
        return j->n_busy_ids && bsearch(&id, j->busy_ids, j->n_busy_ids, sizeof(id), cmp_id);
}

/* Inside the transaction: drops the oldest rows (not those in flight) until the queue fits. */
static int enforce_bound(struct cp_push_job *j)
{
        struct cp_push_db *d = j->p->db;
        int64_t rows, bytes, excess;
        int64_t *ids = NULL;
        size_t n = 0, cap = 0;
        uint64_t records = 0;
        int rc = SQLITE_OK, r;

        if ((r = read_size(j, &rows, &bytes)) < 0)
                return r;
        if (bytes <= j->p->cfg.max_queue_bytes)
                return 0;
        excess = bytes - j->p->cfg.max_queue_bytes;
        while (excess > 0 && (rc = sqlite3_step(d->oldest)) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(d->oldest, 0);
                if (is_busy_id(j, id))
                        continue;
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 64;
                        int64_t *t = realloc(ids, nc * sizeof(*ids));
                        if (!t) {
                                rc = SQLITE_NOMEM;
                                break;
                        }
                        ids = t;
                        cap = nc;
                }
                ids[n++] = id;
                excess -= sqlite3_column_int64(d->oldest, 1);
                records += (uint64_t)sqlite3_column_int64(d->oldest, 2);
        }
        (void)sqlite3_reset(d->oldest);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE && rc != SQLITE_OK) {
                free(ids);
                return job_fail(j, d->db, rc, "select oldest rows");
        }
        for (size_t i = 0; i < n; i++) {
                (void)sqlite3_bind_int64(d->del, 1, ids[i]);
                if ((rc = step_done(d->del)) != SQLITE_OK) {
                        free(ids);
                        return job_fail(j, d->db, rc, "drop oldest rows");
                }
        }
        free(ids);
        j->dropped_rows += n;
        j->dropped_records += records;
        return 0;
}

static int record_result(struct cp_push_job *j, const struct cp_push_result *res)
{
        struct cp_push_db *d = j->p->db;
        const struct cp_push_ds *ds = res->ds;
        int rc;

        for (size_t i = 0; i < ds->n_busy_ids; i++) {
                if (res->ok) {
                        (void)sqlite3_bind_int64(d->del, 1, ds->busy_ids[i]);
                        rc = step_done(d->del);
                } else {
                        (void)sqlite3_bind_int64(d->fail, 1, ds->busy_ids[i]);
                        (void)sqlite3_bind_int64(d->fail, 2, res->next_try_ms);
                        (void)sqlite3_bind_text(d->fail, 3, res->error ? res->error : "", -1, SQLITE_STATIC);
                        rc = step_done(d->fail);
                        (void)sqlite3_clear_bindings(d->fail);
                }
                if (rc != SQLITE_OK)
                        return job_fail(j, d->db, rc, res->ok ? "delete sent rows" : "record failure");
        }
        return 0;
}

/* One transaction: insert the pending batches, record outcomes, enforce the bound. */
static int apply(struct cp_push_job *j)
{
        struct cp_push_db *d = j->p->db;
        int64_t rows, bytes;
        int rc, r;

        if (!j->ins && !j->res) {
                if ((r = read_size(j, &rows, &bytes)) < 0)
                        return r;
                if (bytes <= j->p->cfg.max_queue_bytes)
                        return 0;
        }
        if ((rc = step_done(d->begin)) != SQLITE_OK)
                return job_fail(j, d->db, rc, "begin");
        for (struct cp_push_pending *x = j->ins; x; x = x->next)
                if ((rc = bind_insert(d->ins, x->ds->name, x->body, x->len, x->n_records, x->created_ms)) !=
                    SQLITE_OK) {
                        r = job_fail(j, d->db, rc, "insert batch");
                        goto out_rollback;
                }
        for (struct cp_push_result *x = j->res; x; x = x->next)
                if ((r = record_result(j, x)) < 0)
                        goto out_rollback;
        if ((r = enforce_bound(j)) < 0)
                goto out_rollback;
        if ((rc = step_done(d->commit)) != SQLITE_OK) {
                r = job_fail(j, d->db, rc, "commit");
                goto out_rollback;
        }
        return 0;
out_rollback:
        (void)step_done(d->rollback);
        j->dropped_rows = j->dropped_records = 0;
        return r;
}

static bool is_ws(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The elements of a stored array body, without brackets; false when the body is not an array. */
static bool array_inner(const char *b, size_t n, const char **ret, size_t *ret_len)
{
        while (n && is_ws(*b)) {
                b++;
                n--;
        }
        while (n && is_ws(b[n - 1]))
                n--;
        if (n < 2 || b[0] != '[' || b[n - 1] != ']')
                return false;
        b++;
        n -= 2;
        while (n && is_ws(*b)) {
                b++;
                n--;
        }
        while (n && is_ws(b[n - 1]))
                n--;
        *ret = b;
        *ret_len = n;
        return true;
}

static int send_add_id(struct cp_push_send *s, int64_t id)
{
        if (s->n_ids == s->cap_ids) {
                size_t nc = s->cap_ids ? s->cap_ids * 2 : 8;
                int64_t *t = realloc(s->ids, nc * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                s->ids = t;
                s->cap_ids = nc;
        }
        s->ids[s->n_ids++] = id;
        return 0;
}

static void send_free(struct cp_push_send *s)
{
        if (!s)
                return;
        free(s->dataset);
        free(s->ids);
        cp_buf_free(&s->body);
        free(s);
}

/* Picks the oldest rows of one dataset if they are due, merged into one body below max_batch_bytes.
 * A stored body that is not an array (written by hand) is sent alone, as it is. */
static int fetch_dataset(struct cp_push_job *j, const char *name, int64_t now)
{
        struct cp_push_db *d = j->p->db;
        struct cp_push_send *s = NULL;
        bool raw = false;
        int rc;

        (void)sqlite3_bind_text(d->head, 1, name, -1, SQLITE_TRANSIENT);
        while ((rc = sqlite3_step(d->head)) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(d->head, 0);
                size_t blen = (size_t)sqlite3_column_int64(d->head, 1);
                int64_t next_try = sqlite3_column_int64(d->head, 4);
                const char *body, *inner;
                size_t len, ilen;

                /* A retry time further away than backoff_max_ms means the wall clock went back: due. */
                if (next_try > now && next_try - now <= j->p->cfg.backoff_max_ms) {
                        if (!s)
                                j->next_due_ms = j->next_due_ms ? CP_MIN(j->next_due_ms, next_try) : next_try;
                        break;
                }
                if (s && s->body.len + blen + 1 >= j->p->cfg.max_batch_bytes)
                        break;
                body = sqlite3_column_blob(d->head, 5);
                len = (size_t)sqlite3_column_bytes(d->head, 5);
                if (!body) {
                        body = "";
                        len = 0;
                }
                if (!array_inner(body, len, &inner, &ilen)) {
                        if (s)
                                break;
                        raw = true;
                }
                if (!s) {
                        s = calloc(1, sizeof(*s));
                        if (!s || !(s->dataset = strdup(name)))
                                goto out_oom;
                        s->attempts = sqlite3_column_int64(d->head, 3);
                        if (!raw)
                                cp_buf_putc(&s->body, '[');
                }
                if (raw) {
                        cp_buf_append(&s->body, body, len);
                } else if (ilen) {
                        if (s->n_parts++)
                                cp_buf_putc(&s->body, ',');
                        cp_buf_append(&s->body, inner, ilen);
                }
                if (send_add_id(s, id) < 0)
                        goto out_oom;
                s->n_records += (size_t)sqlite3_column_int64(d->head, 2);
                if (raw || s->n_ids >= MAX_ROWS_PER_SEND)
                        break;
        }
        (void)sqlite3_reset(d->head);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
                send_free(s);
                return job_fail(j, d->db, rc, "select due rows");
        }
        if (!s)
                return 0;
        if (!raw)
                cp_buf_putc(&s->body, ']');
        if (s->body.oom)
                goto out_oom;
        if (j->sends_tail)
                j->sends_tail->next = s;
        else
                j->sends = s;
        j->sends_tail = s;
        return 0;
out_oom:
        (void)sqlite3_reset(d->head);
        send_free(s);
        snprintf(j->errmsg, sizeof(j->errmsg), "out of memory reading due rows");
        return j->err = -ENOMEM;
}

static int fetch(struct cp_push_job *j)
{
        struct cp_push_db *d = j->p->db;
        int64_t now = cp_now_ms();
        size_t slots = j->new_slots;
        int rc, r = 0;

        while ((rc = sqlite3_step(d->datasets)) == SQLITE_ROW) {
                const char *name = (const char *)sqlite3_column_text(d->datasets, 0);
                const struct ds_snap *k = NULL;

                if (!name)
                        continue;
                for (size_t i = 0; i < j->n_known && !k; i++)
                        if (strcmp(j->known[i].name, name) == 0)
                                k = &j->known[i];
                if (k && k->busy)
                        continue;
                if (!k) {
                        if (!slots) {
                                j->skipped++;
                                continue;
                        }
                        slots--;
                }
                if ((r = fetch_dataset(j, name, now)) < 0)
                        break;
        }
        (void)sqlite3_reset(d->datasets);
        if (r < 0)
                return r;
        return rc == SQLITE_DONE ? 0 : job_fail(j, d->db, rc, "list datasets");
}

static void job_work(uv_work_t *req)
{
        struct cp_push_job *j = cp_container_of(req, struct cp_push_job, req);
        struct cp_push *p = j->p;

        if (!p->db && db_open(j) < 0)
                goto out;
        if (apply(j) < 0)
                goto out;
        j->applied = true;
        if (read_size(j, &j->rows, &j->bytes) < 0)
                goto out;
        j->have_size = true;
        if (j->fetch)
                (void)fetch(j);
out:
        if (j->close_db) {
                db_close(p->db);
                p->db = NULL;
        }
}

/* ---- loop side ---- */

static void pending_free(struct cp_push_pending *x)
{
        while (x) {
                struct cp_push_pending *n = x->next;
                free(x->body);
                free(x);
                x = n;
        }
}

static void results_free(struct cp_push_result *x)
{
        while (x) {
                struct cp_push_result *n = x->next;
                free(x->error);
                free(x);
                x = n;
        }
}

static int find_ds(struct cp_push *p, const char *name, struct cp_push_ds **ret)
{
        struct cp_push_ds *ds;
        struct cp_buf b = CP_BUF_INIT;
        char *base;

        for (size_t i = 0; i < p->n_ds; i++)
                if (strcmp(p->ds[i]->name, name) == 0) {
                        *ret = p->ds[i];
                        return 0;
                }
        if (p->n_ds == CP_PUSH_MAX_DATASETS)
                return -E2BIG;
        if (!(ds = calloc(1, sizeof(*ds))))
                return -ENOMEM;
        /* The URL: the template with {dataset} replaced, then ?pushkey= (or &pushkey=). */
        for (const char *t = p->url_template; *t;) {
                if (strncmp(t, "{dataset}", 9) == 0) {
                        pct_encode(&b, name);
                        t += 9;
                } else {
                        cp_buf_putc(&b, *t++);
                }
        }
        base = cp_buf_steal(&b);
        if (base) {
                const char *q = strchr(base, '?');
                cp_buf_puts(&b, base);
                if (!q)
                        cp_buf_putc(&b, '?');
                else if (q[1] && base[strlen(base) - 1] != '&')
                        cp_buf_putc(&b, '&');
                cp_buf_puts(&b, "pushkey=");
                cp_buf_puts(&b, p->pushkey_enc);
                ds->url = cp_buf_steal(&b);
                ds->log_url = redact_url(base);
        }
        ds->name = strdup(name);
        if (asprintf(&ds->what, "push dataset=%s", name) < 0)
                ds->what = NULL;
        free(base);
        if (!ds->url || !ds->log_url || !ds->name || !ds->what) {
                free(ds->url);
                free(ds->log_url);
                free(ds->name);
                free(ds->what);
                free(ds);
                return -ENOMEM;
        }
        p->ds[p->n_ds++] = ds;
        *ret = ds;
        return 0;
}

static void arm_wake(struct cp_push *p, uint64_t delay_ms);

static void drop_pending_over_bound(struct cp_push *p)
{
        uint64_t records = 0, batches = 0;

        while (p->pend_bytes > p->cfg.max_pending_bytes && p->pend_head && p->pend_head != p->pend_tail) {
                struct cp_push_pending *x = p->pend_head;
                p->pend_head = x->next;
                p->pend_bytes -= x->len;
                records += x->n_records;
                batches++;
                x->next = NULL;
                pending_free(x);
        }
        if (!batches)
                return;
        p->stats.dropped_records += records;
        p->stats.pending_records -= (int64_t)records;
        cp_complain(
            &p->drop_complaint, cp_now_ms(), MOD,
            "the queue database is not keeping up, dropping the oldest batches in memory batches=%" PRIu64
            " records=%" PRIu64 " max_pending_bytes=%zu",
            batches, records, p->cfg.max_pending_bytes);
}

static void pending_push(struct cp_push *p, struct cp_push_pending *x)
{
        if (p->pend_tail)
                p->pend_tail->next = x;
        else
                p->pend_head = x;
        p->pend_tail = x;
        p->pend_bytes += x->len;
}

/* Closes the dataset's batch and moves it to the pending list. */
static void close_batch(struct cp_push *p, struct cp_push_ds *ds)
{
        struct cp_push_pending *x;
        size_t n = ds->batch_records;

        if (!n)
                return;
        ds->batch_records = 0;
        cp_buf_putc(&ds->batch, ']');
        x = calloc(1, sizeof(*x));
        if (!x || ds->batch.oom) {
                free(x);
                cp_buf_free(&ds->batch);
                p->stats.dropped_records += n;
                p->stats.pending_records -= (int64_t)n;
                cp_log(CP_LOG_ERR, MOD, "out of memory closing a batch, dropping it dataset=%s records=%zu",
                       ds->name, n);
                return;
        }
        x->ds = ds;
        x->len = ds->batch.len;
        x->body = cp_buf_steal(&ds->batch);
        x->n_records = n;
        x->created_ms = cp_now_ms();
        pending_push(p, x);
        drop_pending_over_bound(p);
        p->want_job = true;
}

static void close_all_batches(struct cp_push *p)
{
        for (size_t i = 0; i < p->n_ds; i++)
                close_batch(p, p->ds[i]);
}

int cp_push_add(struct cp_push *p, const char *dataset, json_t *record)
{
        struct cp_push_ds *ds;
        char *s = NULL;
        size_t n;
        int r;

        if (!p->started || p->stopping) {
                r = -ESHUTDOWN;
                goto out;
        }
        if (!json_is_object(record) || !dataset_valid(dataset)) {
                r = -EINVAL;
                goto out;
        }
        if ((r = find_ds(p, dataset, &ds)) < 0) {
                r = r == -E2BIG ? -EINVAL : r;
                goto out;
        }
        if (!(s = json_dumps(record, JSON_COMPACT))) {
                r = -ENOMEM;
                goto out;
        }
        n = strlen(s);
        if (n + 2 >= p->cfg.max_batch_bytes) {
                p->stats.dropped_records++;
                cp_complain(
                    &p->drop_complaint, cp_now_ms(), MOD,
                    "record larger than a batch, dropping it dataset=%s bytes=%zu max_batch_bytes=%zu",
                    dataset, n, p->cfg.max_batch_bytes);
                r = -EMSGSIZE;
                goto out;
        }
        /* A body never reaches max_batch_bytes: "[" + records + "," each + "]". */
        if (ds->batch_records && ds->batch.len + 1 + n + 1 >= p->cfg.max_batch_bytes) {
                close_batch(p, ds);
                kick(p);
        }
        if (!cp_buf_reserve(&ds->batch, n + 2)) {
                ds->batch.oom = false; /* the batch so far is intact */
                r = -ENOMEM;
                goto out;
        }
        cp_buf_putc(&ds->batch, ds->batch_records ? ',' : '[');
        cp_buf_append(&ds->batch, s, n);
        ds->batch_records++;
        p->stats.pending_records++;
        r = 0;
out:
        free(s);
        json_decref(record);
        return r;
}

/* ---- libcurl on the loop ---- */

static void on_sock_closed(uv_handle_t *h)
{
        struct cp_push_sock *sc = h->data;
        struct cp_push *p = sc->p;

        for (struct cp_push_sock **pp = &p->socks; *pp; pp = &(*pp)->next)
                if (*pp == sc) {
                        *pp = sc->next;
                        break;
                }
        free(sc);
        p->pending_closes--;
        maybe_stopped(p);
}

static void sock_close(struct cp_push *p, struct cp_push_sock *sc)
{
        if (sc->closing)
                return;
        sc->closing = true;
        uv_poll_stop(&sc->h);
        p->pending_closes++;
        uv_close((uv_handle_t *)&sc->h, on_sock_closed);
}

static void on_sock_event(uv_poll_t *h, int status, int events)
{
        struct cp_push_sock *sc = h->data;
        struct cp_push *p = sc->p;
        int flags = 0, running;

        if (status < 0)
                flags = CURL_CSELECT_ERR;
        if (events & UV_READABLE)
                flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
                flags |= CURL_CSELECT_OUT;
        (void)curl_multi_socket_action(p->multi, sc->fd, flags, &running);
        check_multi_info(p);
}

/* CURLMOPT_SOCKETFUNCTION: watch what libcurl wants on this socket, or stop watching it. libcurl calls
 * CURL_POLL_REMOVE before it closes a socket, so a poll handle never outlives its fd's use (the close
 * itself is asynchronous, but uv_close stops the watcher at once). */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
        struct cp_push *p = userp;
        struct cp_push_sock *sc = socketp;
        int events = 0;

        (void)easy;
        if (what == CURL_POLL_REMOVE) {
                if (sc) {
                        (void)curl_multi_assign(p->multi, s, NULL);
                        sock_close(p, sc);
                }
                return 0;
        }
        if (!sc) {
                sc = calloc(1, sizeof(*sc));
                if (!sc)
                        return -1;
                if (uv_poll_init_socket(p->loop, &sc->h, s) < 0) {
                        free(sc);
                        return -1;
                }
                sc->h.data = sc;
                sc->p = p;
                sc->fd = s;
                sc->next = p->socks;
                p->socks = sc;
                (void)curl_multi_assign(p->multi, s, sc);
        }
        if (what & CURL_POLL_IN)
                events |= UV_READABLE;
        if (what & CURL_POLL_OUT)
                events |= UV_WRITABLE;
        if (uv_poll_start(&sc->h, events, on_sock_event) < 0)
                return -1;
        return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
        struct cp_push *p = t->data;
        int running;

        (void)curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_multi_info(p);
}

/* CURLMOPT_TIMERFUNCTION: one timer for the whole multi handle. 0 becomes 1 ms: a 0 ms timer armed from
 * a timer callback would run again in the same timer phase (libuv 1.44). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
        struct cp_push *p = userp;

        (void)multi;
        if (timeout_ms < 0)
                uv_timer_stop(&p->curl_timer);
        else
                uv_timer_start(&p->curl_timer, on_curl_timeout, timeout_ms ? (uint64_t)timeout_ms : 1, 0);
        return 0;
}

static size_t on_answer(char *data, size_t size, size_t nmemb, void *userp)
{
        struct cp_push_xfer *x = userp;
        size_t n = size * nmemb;

        if (x->answer.len + n > MAX_ANSWER) {
                x->answer_too_long = true;
                return 0; /* aborts the transfer: whatever it is, it is not {"status":"OK"} */
        }
        cp_buf_append(&x->answer, data, n);
        return x->answer.oom ? 0 : n;
}

static bool answer_ok(const struct cp_push_xfer *x)
{
        json_error_t e;
        json_t *v, *st;
        bool ok;

        if (!x->answer.len)
                return false;
        v = json_loadb(x->answer.p, x->answer.len, 0, &e);
        st = json_object_get(v, "status");
        ok = json_is_object(v) && json_is_string(st) && strcasecmp(json_string_value(st), "ok") == 0;
        json_decref(v);
        return ok;
}

static void xfer_free(struct cp_push_xfer *x)
{
        if (x->easy)
                curl_easy_cleanup(x->easy);
        free(x->body);
        cp_buf_free(&x->answer);
        free(x);
}

static void xfer_unlink(struct cp_push *p, struct cp_push_xfer *x)
{
        for (struct cp_push_xfer **pp = &p->xfers; *pp; pp = &(*pp)->next)
                if (*pp == x) {
                        *pp = x->next;
                        break;
                }
        p->stats.in_flight--;
}

static void result_push(struct cp_push *p, struct cp_push_result *r)
{
        if (p->res_tail)
                p->res_tail->next = r;
        else
                p->res_head = r;
        p->res_tail = r;
        p->want_job = true;
}

/* Classifies a finished request: NULL when the portal took the batch, else the error class, with the
 * detail (to be scrubbed) in buf. */
static const char *judge(struct cp_push_xfer *x, CURLcode code, long status, char *buf, size_t len)
{
        char quoted[200];

        if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && x->answer_too_long)) {
                snprintf(buf, len, "%s%s%s", curl_easy_strerror(code), x->errbuf[0] ? ": " : "", x->errbuf);
                switch (code) {
                case CURLE_OPERATION_TIMEDOUT:
                        return "timeout";
                case CURLE_COULDNT_CONNECT:
                        return "connect";
                case CURLE_COULDNT_RESOLVE_HOST:
                        return "resolve";
                case CURLE_GOT_NOTHING:
                case CURLE_RECV_ERROR:
                case CURLE_SEND_ERROR:
                case CURLE_PARTIAL_FILE:
                        return "connection";
                default:
                        return "transfer";
                }
        }
        cp_log_quote(quoted, sizeof(quoted), x->answer.p ? x->answer.p : "", CP_MIN(x->answer.len, 150));
        if (status < 200 || status > 299) {
                snprintf(buf, len, "HTTP %ld, answer %s", status, quoted);
                return "http_status";
        }
        if (x->answer_too_long || !answer_ok(x)) {
                snprintf(buf, len, "HTTP %ld, answer %s%s is not {\"status\":\"OK\"}", status, quoted,
                         x->answer_too_long ? " (too long)" : "");
                return "bad_answer";
        }
        return NULL;
}

static void xfer_done(struct cp_push *p, struct cp_push_xfer *x, CURLcode code)
{
        struct cp_push_ds *ds = x->ds;
        struct cp_push_result *r = calloc(1, sizeof(*r));
        int64_t now = cp_now_ms();
        long status = 0;
        char detail[512];
        const char *cls;

        (void)curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        (void)curl_multi_remove_handle(p->multi, x->easy);
        xfer_unlink(p, x);
        cls = judge(x, code, status, detail, sizeof(detail));
        if (!r) {
                /* The rows stay busy until the stop; they are sent again after a restart. */
                cp_log(CP_LOG_ERR, MOD, "out of memory recording a request outcome dataset=%s", ds->name);
                xfer_free(x);
                return;
        }
        r->ds = ds;
        if (!cls) {
                r->ok = true;
                p->stats.batches_sent++;
                p->stats.records_sent += x->n_records;
                cp_log(CP_LOG_DEBUG, MOD,
                       "batch accepted dataset=%s records=%zu bytes=%zu rows=%zu ms=%" PRIu64, ds->name,
                       x->n_records, x->len, ds->n_busy_ids, uv_now(p->loop) - x->started);
                cp_complain_release(&ds->complaint, MOD, ds->what);
        } else {
                int64_t attempts = x->attempts + 1, delay = backoff_ms(p, attempts);
                char *clean = scrub(p, detail), quoted[600];

                r->next_try_ms = now + delay;
                if (clean && asprintf(&r->error, "%s: %s", cls, clean) < 0)
                        r->error = NULL;
                p->stats.failures++;
                cp_log_quote(quoted, sizeof(quoted), clean ? clean : "?", clean ? strlen(clean) : 1);
                free(clean);
                cp_complain(
                    &ds->complaint, now, MOD,
                    "push failed, keeping the batch queued for a retry dataset=%s url=%s records=%zu attempts=%" PRId64
                    " retry_in_ms=%" PRId64 " err=%s reason=%s",
                    ds->name, ds->log_url, x->n_records, attempts, delay, cls, quoted);
                cp_log(CP_LOG_DEBUG, MOD,
                       "request failed dataset=%s attempts=%" PRId64 " retry_in_ms=%" PRId64 " err=%s",
                       ds->name, attempts, delay, cls);
        }
        xfer_free(x);
        result_push(p, r);
}

static void check_multi_info(struct cp_push *p)
{
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(p->multi, &left))) {
                struct cp_push_xfer *x = NULL;
                CURLcode code = m->data.result;

                if (m->msg != CURLMSG_DONE)
                        continue;
                (void)curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
                if (x)
                        xfer_done(p, x, code);
        }
        kick(p);
}

static CURL *make_easy(struct cp_push *p, struct cp_push_xfer *x)
{
        CURL *e = curl_easy_init();

        if (!e)
                return NULL;
        if (curl_easy_setopt(e, CURLOPT_URL, x->ds->url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->len) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->headers) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)p->cfg.timeout_ms) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_USERAGENT, "citypulse/" CP_VERSION) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_answer) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075500
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK
#else
            curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK
#endif
        ) {
                curl_easy_cleanup(e);
                return NULL;
        }
        return e;
}

/* Starts the request for rows a queue operation picked; takes s on every path. */
static void start_send(struct cp_push *p, struct cp_push_send *s)
{
        struct cp_push_ds *ds;
        struct cp_push_xfer *x;
        int r;

        if ((r = find_ds(p, s->dataset, &ds)) < 0) {
                cp_log(CP_LOG_ERR, MOD, "cannot track dataset, leaving its rows queued dataset=%s err=%s",
                       s->dataset, cp_err_name(r));
                send_free(s);
                return;
        }
        ds->busy = true;
        free(ds->busy_ids);
        ds->busy_ids = s->ids;
        ds->n_busy_ids = s->n_ids;
        s->ids = NULL;
        x = calloc(1, sizeof(*x));
        if (x) {
                x->p = p;
                x->ds = ds;
                x->n_records = s->n_records;
                x->attempts = s->attempts;
                x->len = s->body.len;
                x->body = cp_buf_steal(&s->body);
                x->started = uv_now(p->loop);
                x->easy = x->body ? make_easy(p, x) : NULL;
        }
        send_free(s);
        if (!x || !x->easy || curl_multi_add_handle(p->multi, x->easy) != CURLM_OK) {
                struct cp_push_result *res = calloc(1, sizeof(*res));

                if (x)
                        xfer_free(x);
                cp_log(CP_LOG_ERR, MOD, "cannot start a request, retrying later dataset=%s", ds->name);
                if (res) {
                        res->ds = ds;
                        res->next_try_ms = cp_now_ms() + p->cfg.backoff_min_ms;
                        res->error = strdup("start: cannot start the request");
                        result_push(p, res);
                }
                return;
        }
        x->next = p->xfers;
        p->xfers = x;
        p->stats.in_flight++;
        cp_log(CP_LOG_DEBUG, MOD, "sending batch dataset=%s records=%zu bytes=%zu rows=%zu attempts=%" PRId64,
               ds->name, x->n_records, x->len, ds->n_busy_ids, x->attempts);
}

/* ---- queue operations, loop side ---- */

static void on_wake(uv_timer_t *t)
{
        struct cp_push *p = t->data;

        p->want_job = true;
        kick(p);
}

static void arm_wake(struct cp_push *p, uint64_t delay_ms)
{
        if (p->stopping)
                return;
        if (uv_is_active((uv_handle_t *)&p->wake_timer) && uv_timer_get_due_in(&p->wake_timer) <= delay_ms)
                return;
        uv_timer_start(&p->wake_timer, on_wake, delay_ms, 0);
}

static void finish_stop(struct cp_push *p);

/* Puts a job's inputs back in front of what arrived since, in order (nothing of it was committed). */
static void requeue(struct cp_push *p, struct cp_push_job *j)
{
        if (j->ins) {
                struct cp_push_pending *last = j->ins;
                size_t bytes = last->len;

                while (last->next) {
                        last = last->next;
                        bytes += last->len;
                }
                last->next = p->pend_head;
                if (!p->pend_head)
                        p->pend_tail = last;
                p->pend_head = j->ins;
                p->pend_bytes += bytes;
                j->ins = NULL;
                drop_pending_over_bound(p);
        }
        if (j->res) {
                struct cp_push_result *last = j->res;

                while (last->next)
                        last = last->next;
                last->next = p->res_head;
                if (!p->res_head)
                        p->res_tail = last;
                p->res_head = j->res;
                j->res = NULL;
        }
}

static void job_done(uv_work_t *req, int status)
{
        struct cp_push_job *j = cp_container_of(req, struct cp_push_job, req);
        struct cp_push *p = j->p;
        int64_t now = cp_now_ms();
        bool final = j->close_db;

        p->job = NULL;
        if (status < 0 && !j->err) {
                j->err = status;
                snprintf(j->errmsg, sizeof(j->errmsg), "queue operation cancelled");
        }
        if (j->err) {
                p->stats.db_errors++;
                p->db_backoff_ms =
                    p->db_backoff_ms ? CP_MIN(p->db_backoff_ms * 2, DB_BACKOFF_MAX_MS) : DB_BACKOFF_MIN_MS;
                p->hold_until = uv_now(p->loop) + (uint64_t)p->db_backoff_ms;
                p->want_job = true;
                if (!final)
                        cp_complain(
                            &p->db_complaint, now, MOD,
                            "queue database operation failed, retrying db=%s err=%s reason='%s' retry_in_ms=%" PRId64,
                            p->db_path, cp_err_name(j->err), j->errmsg, p->db_backoff_ms);
                arm_wake(p, (uint64_t)p->db_backoff_ms);
        } else {
                p->db_backoff_ms = 0;
                cp_complain_release(&p->db_complaint, MOD, "queue database");
        }
        if (j->applied) {
                for (struct cp_push_pending *x = j->ins; x; x = x->next)
                        p->stats.pending_records -= (int64_t)x->n_records;
                pending_free(j->ins);
                for (struct cp_push_result *x = j->res; x; x = x->next) {
                        x->ds->busy = false;
                        free(x->ds->busy_ids);
                        x->ds->busy_ids = NULL;
                        x->ds->n_busy_ids = 0;
                }
                results_free(j->res);
        } else if (final) {
                uint64_t lost = 0;
                for (struct cp_push_pending *x = j->ins; x; x = x->next)
                        lost += x->n_records;
                if (lost)
                        cp_log(CP_LOG_ERR, MOD,
                               "cannot queue the last batches at stop, they are lost records=%" PRIu64
                               " db=%s err=%s reason='%s'",
                               lost, p->db_path, cp_err_name(j->err), j->errmsg);
                p->stats.dropped_records += lost;
                p->stats.pending_records -= (int64_t)lost;
                pending_free(j->ins);
                results_free(j->res);
        } else {
                /* Nothing was committed: put everything back in front, in order. */
                requeue(p, j);
        }
        if (j->have_size) {
                p->stats.queue_rows = j->rows;
                p->stats.queue_bytes = j->bytes;
        }
        if (j->dropped_rows) {
                p->stats.dropped_records += j->dropped_records;
                cp_complain(&p->drop_complaint, now, MOD,
                            "queue over max_queue_bytes, dropped the oldest batches rows=%" PRIu64
                            " records=%" PRIu64 " max_queue_bytes=%" PRId64,
                            j->dropped_rows, j->dropped_records, p->cfg.max_queue_bytes);
        } else {
                cp_complain_expire(&p->drop_complaint, now, SKIP_QUIET_MS, MOD, "queue size");
        }
        if (j->skipped)
                cp_complain(
                    &p->skip_complaint, now, MOD,
                    "queued rows for more datasets than a sink handles, leaving them queued datasets_skipped=%zu max=%d",
                    j->skipped, CP_PUSH_MAX_DATASETS);
        while (j->sends) {
                struct cp_push_send *s = j->sends;
                j->sends = s->next;
                s->next = NULL;
                if (p->stopping)
                        send_free(s);
                else
                        start_send(p, s);
        }
        if (j->next_due_ms && !j->err)
                arm_wake(p, (uint64_t)CP_MAX(j->next_due_ms - now, 0));
        free(j->known);
        free(j->busy_ids);
        free(j);
        if (final) {
                finish_stop(p);
                return;
        }
        kick(p);
}

/* Starts a queue operation when one is wanted and none runs. */
static void kick(struct cp_push *p)
{
        struct cp_push_job *j;
        size_t n_ids = 0;

        if (p->job || !p->want_job || p->stopped || !p->started)
                return;
        if (!p->stopping && uv_now(p->loop) < p->hold_until) {
                arm_wake(p, p->hold_until - uv_now(p->loop));
                return;
        }
        j = calloc(1, sizeof(*j));
        if (j && p->n_ds)
                j->known = calloc(p->n_ds, sizeof(*j->known));
        for (size_t i = 0; i < p->n_ds; i++)
                n_ids += p->ds[i]->n_busy_ids;
        if (j && n_ids)
                j->busy_ids = calloc(n_ids, sizeof(*j->busy_ids));
        if (!j || (p->n_ds && !j->known) || (n_ids && !j->busy_ids)) {
                if (j) {
                        free(j->known);
                        free(j->busy_ids);
                        free(j);
                }
                cp_log(CP_LOG_ERR, MOD, "out of memory starting a queue operation, retrying in a second");
                p->hold_until = uv_now(p->loop) + 1000;
                arm_wake(p, 1000);
                return;
        }
        j->p = p;
        /* A dataset whose outcome this operation records is free again by the time it picks rows. */
        for (struct cp_push_result *r = p->res_head; r; r = r->next)
                r->ds->resolving = true;
        for (size_t i = 0; i < p->n_ds; i++) {
                struct cp_push_ds *ds = p->ds[i];
                bool busy = ds->busy && !ds->resolving;

                j->known[i].name = ds->name;
                j->known[i].busy = busy;
                for (size_t k = 0; busy && k < ds->n_busy_ids; k++)
                        j->busy_ids[j->n_busy_ids++] = ds->busy_ids[k];
                ds->resolving = false;
        }
        j->n_known = p->n_ds;
        if (j->n_busy_ids > 1)
                qsort(j->busy_ids, j->n_busy_ids, sizeof(*j->busy_ids), cmp_id);
        j->new_slots = CP_PUSH_MAX_DATASETS - p->n_ds;
        j->fetch = !p->stopping;
        j->close_db = p->stopping;
        j->ins = p->pend_head;
        j->res = p->res_head;
        p->pend_head = p->pend_tail = NULL;
        p->pend_bytes = 0;
        p->res_head = p->res_tail = NULL;
        p->want_job = false;
        p->job = j;
        if (uv_queue_work(p->loop, &j->req, job_work, job_done) < 0) {
                /* Only on a closing loop. */
                p->job = NULL;
                requeue(p, j);
                free(j->known);
                free(j->busy_ids);
                free(j);
                p->want_job = true;
                p->hold_until = uv_now(p->loop) + 1000;
                arm_wake(p, 1000);
        }
}

static void on_flush(uv_timer_t *t)
{
        struct cp_push *p = t->data;

        close_all_batches(p);
        kick(p);
}

static void on_notify(uv_async_t *a)
{
        struct cp_push *p = a->data;

        p->want_job = true;
        kick(p);
}

void cp_push_notify(struct cp_push *p)
{
        (void)uv_async_send(&p->notify);
}

/* ---- start and stop ---- */

static void free_strings(struct cp_push *p)
{
        if (p->pushkey)
                explicit_bzero(p->pushkey, strlen(p->pushkey));
        if (p->pushkey_enc)
                explicit_bzero(p->pushkey_enc, strlen(p->pushkey_enc));
        free(p->url_template);
        free(p->pushkey);
        free(p->pushkey_enc);
        free(p->db_path);
        p->url_template = p->pushkey = p->pushkey_enc = p->db_path = NULL;
}

static int check_cfg(struct cp_push *p, const struct cp_push_cfg *in, char *err, size_t errlen)
{
        struct cp_push_cfg *c = &p->cfg;
        const char *u = in->url_template;
        size_t klen;

        *c = *in;
        if (!u || !(strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0)) {
                snprintf(err, errlen, "ods_push.url must start with http:// or https://");
                return -EINVAL;
        }
        for (const char *s = u; *s; s++)
                if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '#') {
                        snprintf(err, errlen, "ods_push.url has a space, control character or '#'");
                        return -EINVAL;
                }
        if (strcasestr(u, "pushkey=") || strcasestr(u, "apikey=")) {
                snprintf(err, errlen, "ods_push.url holds a key; put it in ods_push.pushkey_file instead");
                return -EINVAL;
        }
        klen = in->pushkey ? strlen(in->pushkey) : 0;
        while (klen && is_ws(in->pushkey[klen - 1]))
                klen--;
        if (!klen) {
                snprintf(err, errlen, "the push key is empty");
                return -EINVAL;
        }
        for (size_t i = 0; i < klen; i++)
                if ((unsigned char)in->pushkey[i] < ' ' || in->pushkey[i] == 0x7f) {
                        snprintf(err, errlen, "the push key has a control character");
                        return -EINVAL;
                }
        if (!in->db_path || !*in->db_path) {
                snprintf(err, errlen, "no database path");
                return -EINVAL;
        }
        c->flush_interval_ms = c->flush_interval_ms ? c->flush_interval_ms : DEF_FLUSH_MS;
        c->timeout_ms = c->timeout_ms ? c->timeout_ms : DEF_TIMEOUT_MS;
        c->backoff_min_ms = c->backoff_min_ms ? c->backoff_min_ms : DEF_BACKOFF_MIN_MS;
        c->backoff_max_ms = c->backoff_max_ms ? c->backoff_max_ms : DEF_BACKOFF_MAX_MS;
        c->max_batch_bytes = c->max_batch_bytes ? c->max_batch_bytes : DEF_MAX_BATCH;
        c->max_queue_bytes = c->max_queue_bytes ? c->max_queue_bytes : DEF_MAX_QUEUE;
        c->max_pending_bytes = c->max_pending_bytes ? c->max_pending_bytes : DEF_MAX_PENDING;
        if (c->flush_interval_ms < 0 || c->timeout_ms < 0 || c->backoff_min_ms < 0 ||
            c->backoff_max_ms < c->backoff_min_ms || c->max_queue_bytes < 0 || c->max_batch_bytes < 16 ||
            c->max_batch_bytes > CP_PUSH_MAX_BODY || c->timeout_ms > LONG_MAX) {
                snprintf(err, errlen, "ods_push limits out of range");
                return -EINVAL;
        }
        p->url_template = strdup(u);
        p->pushkey = strndup(in->pushkey, klen);
        p->db_path = strdup(in->db_path);
        if (p->pushkey) {
                struct cp_buf b = CP_BUF_INIT;
                pct_encode(&b, p->pushkey);
                p->pushkey_enc = cp_buf_steal(&b);
        }
        if (!p->url_template || !p->pushkey || !p->pushkey_enc || !p->db_path) {
                free_strings(p);
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        c->url_template = p->url_template;
        c->pushkey = p->pushkey;
        c->db_path = p->db_path;
        return 0;
}

int cp_push_start(struct cp_push *p, uv_loop_t *loop, const struct cp_push_cfg *cfg, char *err, size_t errlen)
{
        char *log_url;
        int r;

        memset(p, 0, sizeof(*p));
        p->loop = loop;
        if ((r = check_cfg(p, cfg, err, errlen)) < 0)
                return r;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                snprintf(err, errlen, "libcurl initialisation failed");
                r = -ENOMEM;
                goto out_free;
        }
        p->multi = curl_multi_init();
        p->headers = curl_slist_append(NULL, "Content-Type: application/json");
        if (p->headers)
                p->headers = curl_slist_append(p->headers, "Accept: application/json");
        /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
        if (p->headers)
                p->headers = curl_slist_append(p->headers, "Expect:");
        if (!p->multi || !p->headers) {
                snprintf(err, errlen, "out of memory");
                r = -ENOMEM;
                goto out_curl;
        }
        (void)curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        (void)curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
        (void)curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        (void)curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
        if ((r = uv_async_init(loop, &p->notify, on_notify)) < 0) {
                snprintf(err, errlen, "uv_async_init: %s", uv_strerror(r));
                goto out_curl;
        }
        p->notify.data = p;
        uv_timer_init(loop, &p->curl_timer);
        uv_timer_init(loop, &p->flush_timer);
        uv_timer_init(loop, &p->wake_timer);
        p->curl_timer.data = p->flush_timer.data = p->wake_timer.data = p;
        p->rng = (uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)p) | 1;
        uv_timer_start(&p->flush_timer, on_flush, (uint64_t)p->cfg.flush_interval_ms,
                       (uint64_t)p->cfg.flush_interval_ms);
        p->started = true;
        p->want_job = true;
        kick(p);
        log_url = redact_url(p->url_template);
        cp_log(CP_LOG_NOTICE, MOD, "started url=%s db=%s max_batch_bytes=%zu max_queue_bytes=%" PRId64,
               log_url ? log_url : "?", p->db_path, p->cfg.max_batch_bytes, p->cfg.max_queue_bytes);
        if (!strstr(p->url_template, "{dataset}"))
                cp_log(CP_LOG_NOTICE, MOD,
                       "url has no {dataset}, every dataset goes to the same portal dataset");
        free(log_url);
        return 0;
out_curl:
        curl_slist_free_all(p->headers);
        if (p->multi)
                curl_multi_cleanup(p->multi);
        p->headers = NULL;
        p->multi = NULL;
        curl_global_cleanup();
out_free:
        free_strings(p);
        return r;
}

static void on_handle_closed(uv_handle_t *h)
{
        struct cp_push *p = h->data;

        p->pending_closes--;
        maybe_stopped(p);
}

static void close_handle(struct cp_push *p, uv_handle_t *h)
{
        if (uv_is_closing(h))
                return;
        p->pending_closes++;
        uv_close(h, on_handle_closed);
}

static void ds_free(struct cp_push_ds *ds)
{
        if (ds->url)
                explicit_bzero(ds->url, strlen(ds->url));
        free(ds->url);
        free(ds->log_url);
        free(ds->name);
        free(ds->what);
        free(ds->busy_ids);
        cp_buf_free(&ds->batch);
        free(ds);
}

static void maybe_stopped(struct cp_push *p)
{
        void (*cb)(struct cp_push *);

        if (!p->stopped || p->pending_closes > 0 || !p->started)
                return;
        p->started = false;
        for (size_t i = 0; i < p->n_ds; i++)
                ds_free(p->ds[i]);
        p->n_ds = 0;
        pending_free(p->pend_head);
        results_free(p->res_head);
        p->pend_head = p->pend_tail = NULL;
        p->res_head = p->res_tail = NULL;
        curl_slist_free_all(p->headers);
        p->headers = NULL;
        free_strings(p);
        curl_global_cleanup();
        cb = p->on_stopped;
        if (cb)
                cb(p);
}

static void finish_stop(struct cp_push *p)
{
        cp_log(CP_LOG_NOTICE, MOD,
               "stopped queue_rows=%" PRId64 " queue_bytes=%" PRId64 " records_sent=%" PRIu64
               " failures=%" PRIu64 " dropped_records=%" PRIu64,
               p->stats.queue_rows, p->stats.queue_bytes, p->stats.records_sent, p->stats.failures,
               p->stats.dropped_records);
        /* May still call on_curl_socket(CURL_POLL_REMOVE) for cached connections. */
        curl_multi_cleanup(p->multi);
        p->multi = NULL;
        for (struct cp_push_sock *sc = p->socks; sc; sc = sc->next)
                sock_close(p, sc);
        close_handle(p, (uv_handle_t *)&p->curl_timer);
        close_handle(p, (uv_handle_t *)&p->flush_timer);
        close_handle(p, (uv_handle_t *)&p->wake_timer);
        p->stopped = true;
        maybe_stopped(p);
}

void cp_push_stop(struct cp_push *p, void (*on_stopped)(struct cp_push *p))
{
        if (p->stopping)
                return;
        if (!p->started) {
                if (on_stopped)
                        on_stopped(p);
                return;
        }
        p->stopping = true;
        p->on_stopped = on_stopped;
        uv_timer_stop(&p->flush_timer);
        uv_timer_stop(&p->wake_timer);
        close_all_batches(p);
        /* Requests in flight are abandoned: their rows were never deleted, so they are sent again after a
         * restart (the portal may have received them: at least once). */
        while (p->xfers) {
                struct cp_push_xfer *x = p->xfers;
                (void)curl_multi_remove_handle(p->multi, x->easy);
                xfer_unlink(p, x);
                xfer_free(x);
        }
        close_handle(p, (uv_handle_t *)&p->notify);
        /* The last queue operation inserts what is pending, records known outcomes and closes the
         * database; it starts once a running one is done. */
        p->hold_until = 0;
        p->want_job = true;
        kick(p);
}

const char *cp_push_format_stats(const struct cp_push *p, char *buf, size_t len)
{
        const struct cp_push_stats *s = &p->stats;

        snprintf(buf, len,
                 "queue_rows=%" PRId64 " queue_bytes=%" PRId64 " pending_records=%" PRId64
                 " batches_sent=%" PRIu64 " records_sent=%" PRIu64 " failures=%" PRIu64
                 " dropped_records=%" PRIu64 " db_errors=%" PRIu64 " in_flight=%" PRIu64,
                 s->queue_rows, s->queue_bytes, s->pending_records, s->batches_sent, s->records_sent,
                 s->failures, s->dropped_records, s->db_errors, s->in_flight);
        return buf;
}
