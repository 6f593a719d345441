/* storeq.h - the store thread: imports journal segments into SQLite in order, off the loop thread.
 * The loop hands over segment paths; the thread imports each in one transaction, deletes it after the
 * commit, and retries with back-off (1 s doubling to 30 s) while the disk is full or the database is
 * locked, keeping the segment and everything queued behind it. Progress reaches the loop through a
 * uv_async_t. */
#ifndef CP_STOREQ_H
#define CP_STOREQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bucket.h"
#include "log.h"
#include "store.h"

struct cp_storeq_job;

struct cp_storeq {
        uv_loop_t *loop;
        uv_thread_t thread;
        uv_mutex_t mu;
        uv_cond_t cv;
        uv_async_t async;
        struct cp_store *store;
        struct cp_storeq_job *head, *tail;
        bool stop;
        bool running;
        int64_t retention_readings_ms, retention_rejects_ms;
        int64_t prune_due_ms;

        /* Written by the thread, read anywhere. */
        _Atomic uint64_t segments_done;
        _Atomic uint64_t readings_stored;
        _Atomic uint64_t readings_dup;
        _Atomic uint64_t rejects_stored;
        _Atomic uint64_t import_errors;
        _Atomic uint64_t pruned;
        _Atomic int64_t queue_depth;
        _Atomic int last_err;  /* 0 when the last import succeeded */
        _Atomic bool writable; /* the last transaction committed */

        /* Buckets (NULL bucket_cfg: none). The engine lives on the thread; a new topology waits here. */
        struct cp_bucket_cfg bucket_cfg;
        bool buckets;
        struct cp_bucket *bucket;
        struct cp_topo *pending_topo; /* under mu */
        struct cp_bucket_stats bstats;
        _Atomic uint64_t bucket_errors;

        struct cp_complaint import_complaint; /* store thread only */
        char errmsg[256]; /* under mu */
        void (*on_progress)(struct cp_storeq *q); /* loop thread; may be NULL */
        void (*on_stopped)(struct cp_storeq *q);  /* loop thread, once the thread has exited */
};

/* Takes ownership of store. Returns 0 or a negative libuv error. */
int cp_storeq_start(struct cp_storeq *q, uv_loop_t *loop, struct cp_store *store, int64_t retention_readings_ms,
                    int64_t retention_rejects_ms);
/* Enables buckets before cp_storeq_start (takes ownership of topo). */
void cp_storeq_set_buckets(struct cp_storeq *q, const struct cp_bucket_cfg *cfg, struct cp_topo *topo);
/* Hands a new topology (registry reload) to the thread; takes ownership. */
void cp_storeq_set_topo(struct cp_storeq *q, struct cp_topo *topo);
/* Queues a segment path (ownership of the string moves to the queue on every path). */
void cp_storeq_submit_take(struct cp_storeq *q, char *path);
/* Asks the thread to finish the queue (one last try each) and exit; on_stopped runs on the loop after
 * the thread has been joined and the store closed, then the async handle is closed. */
void cp_storeq_stop(struct cp_storeq *q);
/* Copies the last error message. */
void cp_storeq_errmsg(struct cp_storeq *q, char *buf, size_t len);

#endif
