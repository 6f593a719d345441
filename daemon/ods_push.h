/* ods_push.h - the Opendatasoft realtime push sink (FORMATS 1b, CONTRACT 6 "Portal push").
 *
 * Records (JSON objects) are batched per dataset into JSON arrays, the batches are made durable in the
 * push_queue table of the daemon's SQLite database, and a sender POSTs the oldest due rows of each
 * dataset to the portal, one request in flight per dataset, deleting them only once the portal answered
 * 2xx with {"status":"OK"}. Anything else is retried with exponential backoff and full jitter; the rows
 * stay queued, across restarts too. Delivery is at least once: a request that timed out may have been
 * processed by the portal, and is sent again (the portal's Unique ID makes that an upsert).
 *
 * Threads: the HTTP side (libcurl multi interface on uv_poll/uv_timer handles) and every function here
 * but two run on the loop thread. SQLite work runs on the libuv threadpool, one work item at a time, on a
 * connection of this module's own. cp_push_queue_insert() and cp_push_queue_insert_records() run on
 * any thread, on any connection; cp_push_notify() on any thread.
 *
 * The push key is a secret: it is only ever put in the request URL. Logs, stored errors and stats show
 * URLs with every query value replaced by REDACTED. */
#ifndef CP_ODS_PUSH_H
#define CP_ODS_PUSH_H

#include "log.h"

#include <curl/curl.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Every request body is shorter than this (the portal takes up to 5 MB; we stay under 1 MB). */
#define CP_PUSH_MAX_BODY 1000000
/* Datasets one sink pushes to; more are refused (cp_push_add) or left queued (rows of other modules). */
#define CP_PUSH_MAX_DATASETS 32
/* A dataset id: 1..CP_PUSH_MAX_DATASET_LEN bytes of [A-Za-z0-9._-]. */
#define CP_PUSH_MAX_DATASET_LEN 128

struct cp_push_cfg {
        const char *url_template;  /* "https://portal/api/push/1.0/{dataset}/realtime/push/"; {dataset} is
                                      replaced (percent-encoded) by the dataset id, every occurrence */
        const char *pushkey;       /* appended as ?pushkey= (percent-encoded); never logged */
        const char *db_path;       /* the daemon's citypulse.db (WAL; others write to it concurrently) */
        int64_t flush_interval_ms; /* 0: 1000; in-memory batches go to the queue this often */
        int64_t timeout_ms;        /* 0: 30000; whole request, connect included */
        int64_t backoff_min_ms;    /* 0: 1000 */
        int64_t backoff_max_ms;    /* 0: 300000 */
        size_t max_batch_bytes;    /* 0: 1000000; bodies are shorter; at most CP_PUSH_MAX_BODY */
        int64_t max_queue_bytes;   /* 0: 256 MiB; over it the oldest rows are dropped */
        size_t max_pending_bytes;  /* 0: 16 MiB; batches waiting in memory for the database (when it is
                                      locked or failing); over it the oldest are dropped */
};

/* Plain integers, loop thread. Queue figures are as of the last queue operation. */
struct cp_push_stats {
        int64_t queue_rows;       /* rows in push_queue (every dataset, whoever inserted them) */
        int64_t queue_bytes;      /* their body bytes */
        int64_t pending_records;  /* records in memory, not queued yet */
        uint64_t batches_sent;    /* requests the portal accepted */
        uint64_t records_sent;    /* records in them */
        uint64_t failures;        /* failed requests (non-2xx, other answer, network, timeout) */
        uint64_t dropped_records; /* dropped: queue bound, pending bound, or larger than a batch */
        uint64_t db_errors;       /* failed queue operations (retried) */
        uint64_t in_flight;       /* requests in flight */
};

struct cp_push_ds;
struct cp_push_pending;
struct cp_push_result;
struct cp_push_xfer;
struct cp_push_sock;
struct cp_push_job;
struct cp_push_db;

struct cp_push {
        uv_loop_t *loop;
        struct cp_push_cfg cfg; /* strings point to the copies below */
        char *url_template, *pushkey, *pushkey_enc, *db_path;
        CURLM *multi;
        struct curl_slist *headers;
        uv_timer_t curl_timer;  /* CURLMOPT_TIMERFUNCTION */
        uv_timer_t flush_timer; /* in-memory batches to the queue */
        uv_timer_t wake_timer;  /* next due row, or a database retry */
        uv_async_t notify;      /* cp_push_notify() */

        struct cp_push_ds *ds[CP_PUSH_MAX_DATASETS];
        size_t n_ds;
        struct cp_push_pending *pend_head, *pend_tail; /* batches waiting to be queued, oldest first */
        size_t pend_bytes;
        struct cp_push_result *res_head, *res_tail; /* request outcomes waiting to be recorded */
        struct cp_push_xfer *xfers;                 /* requests in flight */
        struct cp_push_sock *socks;                 /* sockets libcurl asked us to watch */
        struct cp_push_job *job;                    /* the queue operation running, or NULL */
        struct cp_push_db *db;                      /* threadpool side only, one work item at a time */
        bool want_job;
        bool started;
        bool stopping;
        bool stopped;
        int pending_closes;
        uint64_t hold_until; /* uv_now() before which no queue operation starts (database retry) */
        int64_t db_backoff_ms;
        uint64_t rng;
        struct cp_complaint db_complaint, drop_complaint, skip_complaint;
        struct cp_push_stats stats;
        void (*on_stopped)(struct cp_push *p);
};

/* Validates cfg (copied; 0 fields take defaults), sets up libcurl and the handles, and schedules the first
 * queue operation, which opens the database, creates the queue table if needed and starts sending what
 * an earlier run left queued. Returns 0, or -EINVAL (bad URL, empty push key, out-of-range limit) or
 * -ENOMEM with err set (never containing the key); on failure nothing needs stopping. Loop thread. */
int cp_push_start(struct cp_push *p, uv_loop_t *loop, const struct cp_push_cfg *cfg, char *err,
                  size_t errlen);

/* Appends a record (a JSON object; the reference is stolen on every path) to the dataset's in-memory
 * batch. Returns 0, -EINVAL (not an object, bad dataset id, too many datasets), -EMSGSIZE (the record
 * alone would not fit a batch; counted as dropped), -ESHUTDOWN (stopping) or -ENOMEM. Loop thread. */
int cp_push_add(struct cp_push *p, const char *dataset, json_t *record);

/* Wakes the sender after rows were committed with cp_push_queue_insert(). Any thread, from
 * cp_push_start() until cp_push_stop() is called. */
void cp_push_notify(struct cp_push *p);

/* Creates push_queue and its helpers (an index, a size table kept by triggers) if missing. Any
 * connection, any thread, outside or inside a transaction. Returns 0 or -errno. */
int cp_push_queue_init(sqlite3 *db);

/* Queues a body (a JSON array of n_records objects, len < CP_PUSH_MAX_BODY bytes) for dataset, due now.
 * Plain SQL on db, so it joins the caller's transaction if one is open; creates the table when missing.
 * Returns 0, -EINVAL (bad dataset, body not a non-empty array of objects), -EMSGSIZE, or an SQLite error
 * as -errno (-EBUSY, -ENOSPC, -ENOMEM, -EIO). Any thread; then call cp_push_notify() after the commit. */
int cp_push_queue_insert(sqlite3 *db, const char *dataset, const char *body, size_t len, size_t n_records,
                         int64_t now_ms);

/* The same for a JSON array of records (borrowed), as the bucket writer's on_batch hands them over:
 * serialised and split into as many rows as needed, each body below CP_PUSH_MAX_BODY. Returns the number
 * of elements left out (not an object, or alone too large), or -EINVAL (bad dataset, not an array),
 * -ENOMEM, or an SQLite error as -errno; rows inserted before an error stay in the caller's transaction,
 * which should then roll back. Any thread. */
int cp_push_queue_insert_records(sqlite3 *db, const char *dataset, json_t *records, int64_t now_ms);

/* Moves the in-memory batches to the queue, aborts requests in flight (their rows stay queued), closes
 * the database and every handle, then calls on_stopped (may be NULL) on the loop. p may be freed from
 * on_stopped on. Loop thread; calling it twice does nothing. */
void cp_push_stop(struct cp_push *p, void (*on_stopped)(struct cp_push *p));

/* "queue_rows=.. queue_bytes=.. ..." for the periodic summary line. Returns buf. */
const char *cp_push_format_stats(const struct cp_push *p, char *buf, size_t len);

#endif
