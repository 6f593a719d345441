/* store_rrd.h - round-robin archives behind GET /graphs/{id}.png (CONTRACT sections 6 and 7).
 *
 * One file per series under <data_dir>/rrd/, named after the id (cp_rrd_file_name):
 *   facility  DS occupancy GAUGE 0..1  occupied share of the spaces, U when unknown
 *             DS free      GAUGE 0..U  free spaces
 *   district  DS power     GAUGE U..U  W, signed (+ import, - export)
 *             DS energy    DERIVE 0..U the kWh counter stored as whole Wh, so it reads back in Wh/s:
 *                                      multiply by 3.6 for kW (by 3600 for W). librrd takes only
 *                                      integers for a DERIVE ("not a simple signed integer"), and
 *                                      whole kWh would be too coarse for one-minute steps.
 * Step 60 s, heartbeat 300 s (live.stale_after's default: an older value is unknown), AVERAGE, MIN
 * and MAX each over 1-minute rows for 25 hours, 5-minute rows for 7.3 days, 1-hour rows for 32 days
 * and 1-day rows for 370 days (a little over each graph period, so librrd never falls back to the
 * coarser archive for a graph ending now).
 *
 * Threading: every librrd call runs on one worker thread owned by struct cp_rrd. That keeps the loop
 * from blocking on disk (an rrd_update_r costs 35-50 us) and serializes rrd_graph_v, which crashes when
 * two calls overlap. The worker reports to the loop through a uv_async_t. Graph requests go before
 * pending updates, so a graph waits for at most one pass over the updates.
 *
 * Updates are best-effort: the queue holds CP_RRD_QUEUE_MAX batches and drops the oldest when full,
 * so the ingest path never waits. The worker merges every queued batch, sorts by file and time, and
 * writes each file with one call (rrd_update_r, or rrdc_update when rrd.cached_address is set).
 * Updates not after a file's last update are skipped and counted: librrd refuses them. */
#ifndef CP_RRD_H
#define CP_RRD_H

#include "log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define CP_RRD_STEP_S          60
#define CP_RRD_HEARTBEAT_S     300
#define CP_RRD_QUEUE_MAX       64     /* batches waiting for the worker; the oldest is dropped beyond */
#define CP_RRD_GRAPH_QUEUE_MAX 16     /* graph requests waiting; cp_rrd_graph() says -EAGAIN beyond */
#define CP_RRD_BATCH_MAX       100000 /* updates in one batch; cp_rrd_batch_add_*() says -ENOSPC beyond */
#define CP_RRD_NAME_MAX        255    /* bytes of a file name, ".rrd" included (NAME_MAX) */
#define CP_RRD_GRAPH_WIDTH     800    /* plot area in pixels; the PNG adds axes, title and legend */
#define CP_RRD_GRAPH_HEIGHT    250

enum cp_rrd_kind {
        CP_RRD_FACILITY,
        CP_RRD_DISTRICT,
        _CP_RRD_KIND_MAX,
};

enum cp_rrd_period {
        CP_RRD_1D,
        CP_RRD_1W,
        CP_RRD_1M, /* 30 days */
        CP_RRD_1Y, /* 365 days */
        _CP_RRD_PERIOD_MAX,
};

/* A batch of updates, built on the loop thread and handed over with cp_rrd_submit_take(). */
struct cp_rrd_batch;

/* Called on the loop thread, exactly once for every cp_rrd_graph() that returned 0. err is 0 or a
 * negative errno: -ENOENT (no file of that kind for the id), -ECANCELED (the worker stopped first),
 * or librrd's failure turned into an errno (-EIO when librrd gives no better hint). On success png
 * holds len bytes that the callback owns and releases with free(); otherwise png is NULL. */
typedef void (*cp_rrd_graph_fn)(void *ud, int err, unsigned char *png, size_t len);

struct cp_rrd_graph_req;
struct cp_rrd_file;

/* Zero it before cp_rrd_start(), then treat the fields as private except queue_max, which may be set
 * before start (0 means CP_RRD_QUEUE_MAX). Use cp_rrd_get_stats() for the counters. */
struct cp_rrd {
        size_t queue_max;

        uv_loop_t *loop;
        uv_thread_t thread;
        uv_mutex_t mu;
        uv_cond_t cv;
        uv_async_t async;
        char *dir;            /* absolute, resolved at start */
        char *cached_address; /* NULL: the worker writes the files itself */

        /* Under mu. */
        struct cp_rrd_batch *batch_head, *batch_tail;
        size_t batch_count;
        struct cp_rrd_graph_req *graph_head, *graph_tail; /* waiting for the worker */
        size_t graph_count;
        struct cp_rrd_graph_req *done_head, *done_tail; /* rendered, waiting for the loop */
        bool stop;
        bool worker_done;
        char errmsg[256];

        /* Loop thread only. */
        bool running;
        struct cp_complaint drop_complaint;
        void (*on_stopped)(struct cp_rrd *r);

        /* Worker thread only (and the loop once the worker is joined). */
        struct cp_rrd_file *files; /* what the worker knows of each file: kind, last update */
        size_t files_cap, files_len;
        bool cached_up;
        int64_t cached_retry_ms, cached_backoff_ms;
        struct cp_complaint update_complaint, cached_complaint, graph_complaint;

        /* Counters: written by the worker (drops by the loop), read anywhere. */
        _Atomic uint64_t updates_applied; /* timestamps written to a file or accepted by rrdcached */
        _Atomic uint64_t updates_skipped; /* not after the file's last update */
        _Atomic uint64_t updates_failed;  /* lost to an error (see errors) */
        _Atomic uint64_t updates_dropped; /* in dropped batches */
        _Atomic uint64_t batches_dropped; /* the queue was full, or the worker had stopped */
        _Atomic uint64_t errors;          /* failed librrd / rrdcached operations */
        _Atomic uint64_t files_created;
        _Atomic uint64_t graphs_rendered;
        _Atomic uint64_t graphs_failed; /* -ENOENT included */
        _Atomic int64_t queue_depth;    /* batches waiting */
};

struct cp_rrd_stats {
        uint64_t updates_applied, updates_skipped, updates_failed, updates_dropped;
        uint64_t batches_dropped, errors, files_created, graphs_rendered, graphs_failed;
        int64_t queue_depth;
};

/* Creates dir (mode 0750, the parent must exist), resolves it to an absolute path and starts the
 * worker. cached_address is NULL or empty to write the files directly, else rrdcached's address as
 * librrd takes it ("unix:/path", "/path", "host:port"); the connection is made by the worker, on first
 * use, and retried with back-off (1 s doubling to 60 s). rrdcached must run on this host, see the files
 * under the same absolute paths and be allowed to write them; for a TCP address librrd sends absolute
 * paths only with RRDCACHED_STRIPPATH set (rrdcached(1)). Loop thread. Returns 0, or a negative errno
 * with err saying what failed; then nothing needs stopping, but when the async handle was initialised
 * it is closing, so run the loop once before uv_loop_close(). */
int cp_rrd_start(struct cp_rrd *r, uv_loop_t *loop, const char *dir, const char *cached_address, char *err,
                 size_t errlen);

/* Asks the worker to apply every queued batch and exit; graph requests not started yet complete with
 * -ECANCELED. Once the thread is joined, the async handle is closed, and on_stopped (may be NULL) runs
 * from its close callback: r may be freed then (it cannot be started again). Batches submitted after
 * this are dropped and counted. librrd has no timeouts: a hung disk or rrdcached holds the stop up
 * until its call returns. Loop thread, after a successful cp_rrd_start(); a second call does nothing. */
void cp_rrd_stop(struct cp_rrd *r, void (*on_stopped)(struct cp_rrd *r));

/* Takes ownership of b on every path (NULL is accepted): queues it for the worker, dropping the
 * oldest queued batch when queue_max are waiting. Never blocks on the worker. Loop thread. */
void cp_rrd_submit_take(struct cp_rrd *r, struct cp_rrd_batch *b);

/* Renders the graph of id over period on the worker and calls cb(ud, ...) on the loop thread.
 * Returns 0 (cb will be called once), or, without ever calling cb: -EINVAL for a bad kind or period
 * or an empty id, -ENAMETOOLONG for an id too long for a file name, -EAGAIN when
 * CP_RRD_GRAPH_QUEUE_MAX requests are waiting, -ECANCELED after cp_rrd_stop(), -ENOMEM. The graph
 * ends now: 800x250 plot, occupancy in percent (mean line, min-max band) or power in kW (mean, band,
 * and the mean power from the energy counter). Loop thread. */
int cp_rrd_graph(struct cp_rrd *r, enum cp_rrd_kind kind, const char *id, enum cp_rrd_period period,
                 cp_rrd_graph_fn cb, void *ud);

/* Copies the counters (atomic loads). Any thread. */
void cp_rrd_get_stats(const struct cp_rrd *r, struct cp_rrd_stats *ret);

/* Copies the last librrd error text ("" when none yet). Any thread. */
void cp_rrd_errmsg(struct cp_rrd *r, char *buf, size_t len);

/* New empty batch, or NULL on OOM. The caller owns it until cp_rrd_submit_take() or
 * cp_rrd_batch_free(). Any thread, one thread per batch. */
struct cp_rrd_batch *cp_rrd_batch_new(void);
/* NULL-safe. */
void cp_rrd_batch_free(struct cp_rrd_batch *b);
size_t cp_rrd_batch_count(const struct cp_rrd_batch *b);

/* Adds one update: ts in seconds since the epoch (UTC, > 0); NAN (or an infinity) means unknown and
 * is stored as U. occupancy is the occupied fraction 0..1 (librrd stores values outside as unknown);
 * energy_kwh is the district's cumulative import counter in kWh. Returns 0, -EINVAL (empty id,
 * ts <= 0), -ENAMETOOLONG (see cp_rrd_file_name), -ENOSPC (CP_RRD_BATCH_MAX reached) or -ENOMEM; the
 * batch is unchanged on failure. */
int cp_rrd_batch_add_facility(struct cp_rrd_batch *b, const char *id, int64_t ts, double occupancy,
                              double free_spaces);
int cp_rrd_batch_add_district(struct cp_rrd_batch *b, const char *id, int64_t ts, double power_w,
                              double energy_kwh);

/* Writes the file name for id into buf: every byte outside [A-Za-z0-9_.-] becomes %XX (upper-case
 * hex), so do '%' itself and a leading '.', then ".rrd" is appended. The mapping is one-to-one, and a
 * name never contains '/', never starts with '.', so it always stays inside dir. Returns 0, -EINVAL
 * (empty id) or -ENAMETOOLONG (over CP_RRD_NAME_MAX bytes, or over len - 1). Pure, any thread. */
int cp_rrd_file_name(const char *id, char *buf, size_t len);

/* "1d" "1w" "1m" "1y" -> enum cp_rrd_period, or -EINVAL. Pure. */
int cp_rrd_period_parse(const char *s);

#endif
