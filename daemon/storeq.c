/* storeq.c - see storeq.h. */
#include "storeq.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "citypulse/cp_common.h"
#include "citypulse/cp_err.h"
#include "log.h"

#define STORE_NICE 5 /* relative to the process: the loop thread has priority */

struct cp_storeq_job {
        struct cp_storeq_job *next;
        char *path;
};

static int64_t wall_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_err(struct cp_storeq *q, int err, const char *msg)
{
        uv_mutex_lock(&q->mu);
        snprintf(q->errmsg, sizeof(q->errmsg), "%s", msg);
        uv_mutex_unlock(&q->mu);
        atomic_store(&q->last_err, err);
}

void cp_storeq_errmsg(struct cp_storeq *q, char *buf, size_t len)
{
        uv_mutex_lock(&q->mu);
        snprintf(buf, len, "%s", q->errmsg);
        uv_mutex_unlock(&q->mu);
}

static void store_recovered(struct cp_storeq *q)
{
        atomic_store(&q->writable, true);
        if (atomic_exchange(&q->last_err, 0) != 0)
                set_err(q, 0, "");
        if (q->import_complaint.active)
                cp_complain_release(&q->import_complaint, "store", "SQLite writes");
}

/* Imports one segment; returns 0 (done, deleted) or the error. */
static int import_one(struct cp_storeq *q, const char *path)
{
        struct cp_import_result res;
        char err[256] = "";
        int r;

        r = cp_store_import(q->store, path, &res, err, sizeof(err));
        if (r < 0) {
                if (r == -ENOENT) {
                        /* Nothing to import: it was imported and deleted before. */
                        return 0;
                }
                atomic_fetch_add(&q->import_errors, 1);
                atomic_store(&q->writable, false);
                set_err(q, r, err);
                cp_complain(&q->import_complaint, wall_ms(), "store",
                            "cannot write to SQLite, keeping the journal and retrying err=%s reason='%s'",
                            cp_err_name(-r), err);
                return r;
        }
        if (res.torn)
                cp_log(CP_LOG_ERR, "store", "journal segment ends in a damaged record, imported what was whole path=%s records=%llu",
                       path, (unsigned long long)res.records);
        if (unlink(path) < 0 && errno != ENOENT)
                cp_log(CP_LOG_ERR, "store", "cannot delete imported journal segment path=%s err=%s", path,
                       cp_err_name(errno));
        atomic_fetch_add(&q->segments_done, 1);
        atomic_fetch_add(&q->readings_stored, res.readings_new);
        atomic_fetch_add(&q->readings_dup, res.readings_dup);
        atomic_fetch_add(&q->rejects_stored, res.rejects);
        /* Writable again only once rows really went in: an import of duplicates commits nothing, and
         * an empty commit succeeds even on a full disk. */
        if (res.readings_new + res.rejects > 0 || atomic_load(&q->last_err) == 0)
                store_recovered(q);
        return 0;
}

static void maybe_prune(struct cp_storeq *q)
{
        int64_t now = wall_ms(), n;
        char err[256] = "";

        if (now < q->prune_due_ms)
                return;
        q->prune_due_ms = now + 3600 * 1000;
        n = cp_store_prune(q->store, now - q->retention_readings_ms, now - q->retention_rejects_ms, err, sizeof(err));
        if (n < 0)
                cp_log(CP_LOG_WARNING, "store", "retention pruning failed, will retry in an hour err=%s reason='%s'",
                       cp_err_name((int)n), err);
        else if (n > 0)
                atomic_fetch_add(&q->pruned, (uint64_t)n);
}

static bool queue_empty(struct cp_storeq *q)
{
        bool empty;

        uv_mutex_lock(&q->mu);
        empty = q->head == NULL;
        uv_mutex_unlock(&q->mu);
        return empty;
}

/* Runs the bucket engine: a new topology first, then what is due. Returns when it would sleep until
 * (wall-clock ms). Called without mu. */
static int64_t buckets_step(struct cp_storeq *q, bool drain)
{
        struct cp_topo *t;
        char err[256] = "";
        int64_t now = wall_ms();
        int r;

        if (!q->bucket)
                return now + 60000;
        uv_mutex_lock(&q->mu);
        t = q->pending_topo;
        q->pending_topo = NULL;
        uv_mutex_unlock(&q->mu);
        if (t && (r = cp_bucket_set_topo(q->bucket, t, err, sizeof(err))) < 0)
                cp_log(CP_LOG_ERR, "buckets", "cannot apply the new registry, buckets keep the old one err=%s reason='%s'",
                       cp_err_name(-r), err);
        do {
                r = cp_bucket_tick(q->bucket, now, err, sizeof(err));
                if (r < 0) {
                        /* The same trouble as a failed import (a locked or full database): not writable,
                         * said once, retried. */
                        atomic_fetch_add(&q->bucket_errors, 1);
                        atomic_store(&q->writable, false);
                        set_err(q, r, err);
                        cp_complain(&q->import_complaint, wall_ms(), "store",
                                    "cannot write to SQLite, keeping the journal and retrying err=%s reason='%s'",
                                    cp_err_name(-r), err);
                        return now + 1000;
                }
                /* A bucket update that got its write lock proves a lock is gone, not that a full disk
                 * has room: after -ENOSPC only a real import says so. */
                if (!atomic_load(&q->writable) && atomic_load(&q->last_err) == -EBUSY && queue_empty(q))
                        store_recovered(q);
                now = wall_ms();
        } while (r == 1 && drain);
        if (r == 1)
                return now;
        /* Late readings are recomputed within a second; a window closes at its due time. */
        return CP_MIN(cp_bucket_next_due(q->bucket), now + 1000);
}

static void thread_main(void *arg)
{
        struct cp_storeq *q = arg;
        int64_t backoff_ms = 0, due = 0;

        /* The loop thread acknowledges messages once they are in the journal; this thread only moves
         * them on to SQLite. On a small machine under a burst, the loop goes first and the import catches
         * up after (Linux nice values are per thread). Nothing waits on this thread but the history. */
        id_t tid = (id_t)syscall(SYS_gettid);
        int nice_now;

        errno = 0;
        nice_now = getpriority(PRIO_PROCESS, tid);
        if ((nice_now == -1 && errno) || setpriority(PRIO_PROCESS, tid, CP_MIN(nice_now + STORE_NICE, 19)) < 0)
                cp_log(CP_LOG_DEBUG, "store", "cannot lower the store thread's priority err=%s", cp_err_name(errno));

        uv_mutex_lock(&q->mu);
        for (;;) {
                struct cp_storeq_job *j;
                int r;

                while (!q->head && !q->stop) {
                        int64_t wait;

                        uv_mutex_unlock(&q->mu);
                        maybe_prune(q);
                        due = buckets_step(q, false);
                        uv_mutex_lock(&q->mu);
                        wait = CP_MAX(due - wall_ms(), (int64_t)0);
                        if (!q->head && !q->stop && wait > 0)
                                (void)uv_cond_timedwait(&q->cv, &q->mu, (uint64_t)CP_MIN(wait, 60000) * 1000000ull);
                }
                if (!q->head)
                        break; /* stop, and nothing left */
                j = q->head;
                uv_mutex_unlock(&q->mu);

                r = import_one(q, j->path);
                if (r == 0 && wall_ms() >= due)
                        due = buckets_step(q, false);
                uv_async_send(&q->async);

                uv_mutex_lock(&q->mu);
                if (r == 0) {
                        q->head = j->next;
                        if (!q->head)
                                q->tail = NULL;
                        free(j->path);
                        free(j);
                        atomic_fetch_sub(&q->queue_depth, 1);
                        backoff_ms = 0;
                        continue;
                }
                if (q->stop) {
                        /* Shutting down and the store still fails: the segments stay on disk and are
                         * imported at the next start. Nothing is lost. */
                        break;
                }
                backoff_ms = backoff_ms ? CP_MIN(backoff_ms * 2, 30000) : 1000;
                (void)uv_cond_timedwait(&q->cv, &q->mu, (uint64_t)backoff_ms * 1000000ull);
        }
        uv_mutex_unlock(&q->mu);
        if (q->bucket) {
                /* What is due now is done before leaving; the rest waits for the next start. */
                (void)buckets_step(q, false);
                cp_store_set_bucket(q->store, NULL);
                cp_bucket_close(q->bucket);
                q->bucket = NULL;
        }
        uv_async_send(&q->async);
}

static void on_async_closed(uv_handle_t *h)
{
        struct cp_storeq *q = cp_container_of(h, struct cp_storeq, async);

        if (q->on_stopped)
                q->on_stopped(q);
}

static void on_async(uv_async_t *a)
{
        struct cp_storeq *q = cp_container_of(a, struct cp_storeq, async);
        bool finished;

        if (q->on_progress)
                q->on_progress(q);
        uv_mutex_lock(&q->mu);
        finished = q->stop && q->running && (!q->head || atomic_load(&q->last_err) != 0);
        uv_mutex_unlock(&q->mu);
        if (!finished)
                return;
        /* The thread is past its loop or about to be: joining waits at most for its last import. */
        uv_thread_join(&q->thread);
        q->running = false;
        while (q->head) {
                struct cp_storeq_job *j = q->head;
                q->head = j->next;
                free(j->path);
                free(j);
        }
        cp_store_close(q->store);
        q->store = NULL;
        uv_close((uv_handle_t *)&q->async, on_async_closed);
}

int cp_storeq_start(struct cp_storeq *q, uv_loop_t *loop, struct cp_store *store, int64_t retention_readings_ms,
                    int64_t retention_rejects_ms)
{
        int r;

        q->loop = loop;
        q->store = store;
        q->retention_readings_ms = retention_readings_ms;
        q->retention_rejects_ms = retention_rejects_ms;
        q->prune_due_ms = 0;
        atomic_store(&q->writable, true);
        if ((r = uv_mutex_init(&q->mu)) < 0)
                return r;
        if ((r = uv_cond_init(&q->cv)) < 0)
                return r;
        if ((r = uv_async_init(loop, &q->async, on_async)) < 0)
                return r;
        if (q->buckets) {
                char err[256] = "";
                struct cp_topo *t = q->pending_topo;

                q->pending_topo = NULL;
                r = cp_bucket_open(cp_store_db(store), &q->bucket_cfg, t, wall_ms(), &q->bstats, &q->bucket, err,
                                   sizeof(err));
                if (r < 0) {
                        cp_log(CP_LOG_ERR, "buckets", "cannot start the bucket engine err=%s reason='%s'", cp_err_name(-r),
                               err);
                        return r;
                }
                cp_store_set_bucket(store, q->bucket);
        }
        q->running = true;
        if ((r = uv_thread_create(&q->thread, thread_main, q)) < 0) {
                q->running = false;
                return r;
        }
        return 0;
}

void cp_storeq_set_buckets(struct cp_storeq *q, const struct cp_bucket_cfg *cfg, struct cp_topo *topo)
{
        q->bucket_cfg = *cfg;
        q->buckets = true;
        q->pending_topo = topo;
}

void cp_storeq_set_topo(struct cp_storeq *q, struct cp_topo *topo)
{
        struct cp_topo *old;

        uv_mutex_lock(&q->mu);
        old = q->pending_topo;
        q->pending_topo = topo;
        uv_cond_signal(&q->cv);
        uv_mutex_unlock(&q->mu);
        cp_topo_free(old);
}

void cp_storeq_submit_take(struct cp_storeq *q, char *path)
{
        struct cp_storeq_job *j = calloc(1, sizeof(*j));

        if (!j) {
                /* The segment stays on disk and is imported at the next start. */
                cp_log(CP_LOG_ERR, "store", "out of memory queueing a journal segment, it will be imported at the next start path=%s",
                       path);
                free(path);
                return;
        }
        j->path = path;
        uv_mutex_lock(&q->mu);
        if (q->tail)
                q->tail->next = j;
        else
                q->head = j;
        q->tail = j;
        atomic_fetch_add(&q->queue_depth, 1);
        uv_cond_signal(&q->cv);
        uv_mutex_unlock(&q->mu);
}

void cp_storeq_stop(struct cp_storeq *q)
{
        uv_mutex_lock(&q->mu);
        q->stop = true;
        uv_cond_signal(&q->cv);
        uv_mutex_unlock(&q->mu);
        uv_async_send(&q->async);
}
