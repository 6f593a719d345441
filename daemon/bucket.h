/* bucket.h - the bucket engine: CONTRACT section 5 buckets (1m, 15m, 1h, 1d) written to SQLite, on the
 * store thread, from what is stored.
 *
 * The readings table is the source of truth and buckets are a pure function of it: a bucket is
 * (re)computed from the readings that can reach it, then upserted; a row whose values did not change is
 * not touched, one that did gets revision + 1 and a new updated_at. That makes recovery simple: after
 * SIGTERM or kill -9 nothing needs replaying, only the work that was due is done again, and doing it
 * twice gives the same rows.
 *
 * Windows close in observation-time order behind a watermark W (persisted): the 1-minute window
 * [W, W+1m) is computed once the wall clock passes its end plus a close delay, from the readings in it and
 * the value every signal carried in from before W (the "carry", persisted too, so a counter's previous
 * reading is known without a scan). A reading stored later with a time before W is late: it marks the
 * 1-minute buckets it can change (its own, those its value holds into until live.stale_after, and for a
 * counter the bucket of its successor) dirty in the same transaction that stores it; they are recomputed
 * from a scan at the next tick. A reading older than agg.allowed_lateness leaves buckets alone and is
 * counted (too_late). 15m buckets are merges of their 1m buckets, hours of quarters, local days of hours
 * (agg.h: merges are exact); a rewritten child marks its parent dirty, and a parent is computed once W
 * passes its end.
 *
 * The registry decides what feeds what: spot sensors and facility counters feed their facility, meters
 * and PV their own row and their district. Unregistered sensors feed no bucket. An entity with nothing
 * known and no reading in a bucket gets no row for it. */
#ifndef CP_BUCKET_H
#define CP_BUCKET_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "agg.h"
#include "citypulse/cp_reading.h"
#include "dataset.h"
#include "registry.h"

struct cp_topo;
struct cp_bucket;

/* An immutable copy of what the bucket engine needs from a registry; built on the loop thread, then owned
 * by the engine. NULL on allocation failure. */
struct cp_topo *cp_topo_new(const struct cp_registry *reg);
void cp_topo_free(struct cp_topo *t);

/* A bucket row that was written (closed for the first time or revised). */
struct cp_bucket_event {
        const struct cp_dataset *ds; /* parking-occupancy-* or energy-* */
        const char *id;              /* parking_id, meter id or district */
        int64_t bucket_start_ms;
        int64_t revision;
        json_t *record; /* the row in the dataset's fields (push and export conventions); borrowed */
};

struct cp_bucket_cfg {
        int64_t stale_after_ms;
        int64_t allowed_lateness_ms;
        int64_t close_delay_ms;          /* a window is closed this long after its end */
        int64_t retention_ms[_CP_P_MAX]; /* rows older than this are pruned; 0 keeps them */
        const struct cp_tz *tz;          /* day buckets; borrowed, outlives the engine */
        /* Store thread, inside the transaction that wrote them: the 15m, 1h and 1d rows of one dataset as a
         * JSON array (borrowed), for a durable queue in the same database. A negative return rolls back. */
        int (*on_batch)(void *ud, const struct cp_dataset *ds, json_t *records);
        /* Store thread, after the commit: each of those rows. */
        void (*on_row)(void *ud, const struct cp_bucket_event *ev);
        void *ud;
};

struct cp_bucket_stats {
        _Atomic uint64_t windows;     /* 1-minute windows closed in order */
        _Atomic uint64_t rows;        /* bucket rows written for the first time */
        _Atomic uint64_t revisions;   /* bucket rows revised */
        _Atomic uint64_t late;        /* late readings that marked buckets dirty */
        _Atomic uint64_t too_late;    /* readings older than agg.allowed_lateness */
        _Atomic int64_t dirty;        /* dirty buckets waiting */
        _Atomic int64_t watermark_ms; /* W */
        _Atomic uint64_t pruned;
};

/* Opens the engine on db (schema already migrated by store.c); takes ownership of topo. Loads the
 * watermark (W = the current minute on a first start) and the carry. Store thread only after this. */
int cp_bucket_open(sqlite3 *db, const struct cp_bucket_cfg *cfg, struct cp_topo *topo, int64_t now_ms,
                   struct cp_bucket_stats *stats, struct cp_bucket **ret, char *err, size_t errlen);
void cp_bucket_close(struct cp_bucket *b);
/* Replaces the topology (registry reload); takes ownership. Outside a transaction. */
int cp_bucket_set_topo(struct cp_bucket *b, struct cp_topo *topo, char *err, size_t errlen);

/* Inside the store's import transaction, for every newly stored reading. Returns 0 or an SQLite error
 * mapped to -errno (the transaction then rolls back). */
int cp_bucket_note(struct cp_bucket *b, const struct cp_reading *r, int64_t now_ms);

/* After a failed import transaction (rolled back): reloads the carry from the database. */
void cp_bucket_rollback(struct cp_bucket *b);

/* Outside any transaction: closes the windows that are due and recomputes dirty buckets, in bounded
 * transactions of its own. Returns 1 when more work is due right away, 0 when caught up, or a negative
 * error (-ENOSPC, -EBUSY, -EIO) with err set; a failed transaction is rolled back and retried later. */
int cp_bucket_tick(struct cp_bucket *b, int64_t now_ms, char *err, size_t errlen);

/* Next wall-clock time a window closes (for the store thread's sleep). */
int64_t cp_bucket_next_due(const struct cp_bucket *b);

#endif
