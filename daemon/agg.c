/* agg.c - the bucket math of CONTRACT section 5 (see agg.h): one sweep line over step functions.
 *
 * Every compute function runs the same sweep. Each signal (a meter, a spot, a counter) has a cursor
 * on its sorted points and changes state only at event times: a reading (the value becomes known) or
 * the end of its known time (ts + stale_after + 1, unless a newer reading came first). A min-heap of
 * the signals' next event times yields those times in order; between two of them every signal is
 * constant, so each stat is accumulated once per piece. That is O(events x log signals) time and
 * O(signals) memory, whatever the bucket length. */
#include "agg.h"

#include "citypulse/cp_tz.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS INT64_C(60000)
#define DAY_MS    (1440 * MINUTE_MS)

/* Signal counts up to this run on a stack buffer: a single gauge or counter, and most districts,
 * never touch the allocator. */
#define SMALL_SIGNALS 8

/* Free counts are truncated to int64; this bound keeps the conversion defined for absurd values and
 * is far beyond any car park. */
#define FREE_MAX 1e15

enum sweep_mode {
        SWEEP_SUM,     /* values add up (gauge, district power) */
        SWEEP_SPOTS,   /* 0/1 spots: counts of known, occupied and free spots */
        SWEEP_COUNTER, /* one free_spaces counter standing for `total` spots */
};

struct sig {
        const struct cp_agg_point *p;
        size_t n, pos; /* p[pos] is the next point not yet taken */
        int64_t ts;    /* observation time of the point in force */
        int64_t until; /* end (exclusive) of that point's known time */
        double value;
        bool seen; /* a point was taken: ts is meaningful */
        bool known;
};

/* A heap entry carries its key, so sifting reads one array. */
struct heap_ent {
        int64_t key; /* the signal's next event time, INT64_MAX when none */
        size_t i;
};

/* What a known signal adds to the occupancy counts. */
struct occ_w {
        int64_t known, occ, free;
};

struct sweep {
        enum sweep_mode mode;
        size_t n_sig;
        struct sig *sig;
        struct heap_ent *heap; /* every signal, a min-heap on (key, index) */
        double *tree; /* SWEEP_SUM: leaves at [n_sig, 2 n_sig), each inner node the sum of its children */
        int64_t t0, t1, stale_after, total;

        /* State between two event times. */
        size_t n_known;
        struct occ_w w;

        /* Accumulated over [t0, t1). */
        uint32_t samples;
        int64_t known_ms;
        double integral, min, max;
        /* Doubles, so that an absurd total cannot overflow; they stay exact integers below 2^53 ms. */
        double known_spot_ms, occ_spot_ms;
        int64_t free_min, free_max;
};

/* Saturating, because an absurd stale_after must not wrap the end of a known time into the past. */
static int64_t add_sat(int64_t a, int64_t b)
{
        if (b > 0 && a > INT64_MAX - b)
                return INT64_MAX;
        return a + b;
}

static uint32_t add_u32_sat(uint32_t a, uint32_t b)
{
        return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

/* The next point the signal will take, skipping those that are not after the one in force: that is the
 * "first of a time wins" rule for duplicates, and keeps durations positive on unsorted input. */
static int64_t sig_peek(struct sig *s)
{
        while (s->pos < s->n && s->seen && s->p[s->pos].ts_ms <= s->ts)
                s->pos++;
        return s->pos < s->n ? s->p[s->pos].ts_ms : INT64_MAX;
}

static int64_t sig_next_event(struct sig *s)
{
        int64_t t = sig_peek(s);

        if (s->known && s->until < t)
                t = s->until;
        return t;
}

static int64_t free_count(double v)
{
        /* Like the live view: counts are truncated and a negative one means none free; !(v > 0) also
         * catches NaN. */
        if (!(v > 0))
                return 0;
        if (v > FREE_MAX)
                return (int64_t)FREE_MAX;
        return (int64_t)v;
}

static struct occ_w occ_weight(const struct sweep *w, const struct sig *s)
{
        struct occ_w r = {0, 0, 0};

        if (!s->known)
                return r;
        if (w->mode == SWEEP_SPOTS) {
                bool occ = s->value != 0;

                r.known = 1;
                r.occ = occ;
                r.free = !occ;
        } else {
                r.free = free_count(s->value);
                if (w->total > 0) {
                        r.known = w->total;
                        r.occ = w->total - (r.free < w->total ? r.free : w->total);
                }
        }
        return r;
}

static void tree_set(struct sweep *w, size_t i, double v)
{
        /* Recomputing the path from the children (never adding a difference) makes the sum a function
         * of the current values alone: a direct and a merged computation see the same bits. */
        i += w->n_sig;
        w->tree[i] = v;
        for (i >>= 1; i >= 1; i >>= 1)
                w->tree[i] = w->tree[2 * i] + w->tree[2 * i + 1];
}

/* Applies signal i's event at time t: its next point when that is due at t, else the end of its known
 * time. A point due exactly when the previous one expires simply replaces it. Returns the signal's next
 * event time. */
static int64_t sig_apply(struct sweep *w, size_t i, int64_t t)
{
        struct sig *s = &w->sig[i];
        bool was_known = s->known;
        struct occ_w old = {0, 0, 0};

        if (w->mode != SWEEP_SUM)
                old = occ_weight(w, s);
        if (sig_peek(s) == t) {
                s->value = s->p[s->pos].value;
                s->ts = t;
                s->until = add_sat(t, add_sat(w->stale_after, 1));
                s->seen = true;
                s->known = true;
                s->pos++;
                if (t >= w->t0)
                        w->samples = add_u32_sat(w->samples, 1);
        } else {
                s->known = false;
        }
        if (s->known && !was_known)
                w->n_known++;
        else if (!s->known && was_known)
                w->n_known--;
        if (w->mode == SWEEP_SUM) {
                /* An unknown meter counts as 0, which adds nothing and adds it exactly. */
                tree_set(w, i, s->known ? s->value : 0.0);
        } else {
                struct occ_w now = occ_weight(w, s);

                w->w.known += now.known - old.known;
                w->w.occ += now.occ - old.occ;
                w->w.free += now.free - old.free;
        }
        return sig_next_event(s);
}

static bool heap_less(const struct heap_ent *a, const struct heap_ent *b)
{
        return a->key < b->key || (a->key == b->key && a->i < b->i);
}

static void heap_sift_down(struct sweep *w, size_t i)
{
        struct heap_ent *h = w->heap, e = h[i];
        size_t n = w->n_sig;

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= n)
                        break;
                if (c + 1 < n && heap_less(&h[c + 1], &h[c]))
                        c++;
                if (!heap_less(&h[c], &e))
                        break;
                h[i] = h[c];
                i = c;
        }
        h[i] = e;
}

/* Adds the piece [lo, hi) of [t0, t1), over which every signal is constant. */
static void accumulate(struct sweep *w, int64_t lo, int64_t hi)
{
        int64_t len = hi - lo;

        if (w->n_known == 0)
                return;
        if (w->mode == SWEEP_SUM) {
                double v = w->tree[1];

                if (w->known_ms == 0 || v < w->min)
                        w->min = v;
                if (w->known_ms == 0 || v > w->max)
                        w->max = v;
                w->known_ms += len;
                w->integral += v * (double)len;
        } else {
                if (w->known_ms == 0 || w->w.free < w->free_min)
                        w->free_min = w->w.free;
                if (w->known_ms == 0 || w->w.free > w->free_max)
                        w->free_max = w->w.free;
                w->known_ms += len;
                w->known_spot_ms += (double)w->w.known * (double)len;
                w->occ_spot_ms += (double)w->w.occ * (double)len;
        }
}

/* Bytes of scratch memory for n signals; the order of the arrays keeps each one aligned. */
static size_t sweep_bytes(size_t n)
{
        size_t per = sizeof(struct sig) + sizeof(struct heap_ent) + 2 * sizeof(double);

        return n > SIZE_MAX / per ? 0 : n * per;
}

static void sweep_init(struct sweep *w, void *mem, enum sweep_mode mode,
                       const struct cp_agg_point *const *pts, const size_t *n, size_t n_sig, int64_t t0,
                       int64_t t1, int64_t stale_after_ms)
{
        memset(w, 0, sizeof(*w));
        w->mode = mode;
        w->n_sig = n_sig;
        w->sig = mem;
        w->heap = (struct heap_ent *)(void *)(w->sig + n_sig);
        w->tree = (double *)(void *)(w->heap + n_sig);
        w->t0 = t0;
        w->t1 = t1;
        w->stale_after = stale_after_ms > 0 ? stale_after_ms : 0;
        for (size_t i = 0; i < n_sig; i++) {
                struct sig *s = &w->sig[i];

                memset(s, 0, sizeof(*s));
                s->p = pts[i];
                s->n = pts[i] ? n[i] : 0;
                w->heap[i].key = sig_next_event(s);
                w->heap[i].i = i;
                w->tree[n_sig + i] = 0.0;
                w->tree[i] = 0.0;
        }
        for (size_t i = n_sig / 2; i-- > 0;)
                heap_sift_down(w, i);
}

/* Runs the sweep up to t1. Afterwards the signals hold their state just before t1. */
static void sweep_run(struct sweep *w)
{
        int64_t cur = INT64_MIN;

        for (;;) {
                int64_t t = w->n_sig ? w->heap[0].key : INT64_MAX;
                int64_t lo = cur > w->t0 ? cur : w->t0, hi = t < w->t1 ? t : w->t1;

                if (lo < hi)
                        accumulate(w, lo, hi);
                if (t >= w->t1)
                        return;
                /* Every signal changing at t first, then the piece starting at t. */
                while (w->heap[0].key == t) {
                        w->heap[0].key = sig_apply(w, w->heap[0].i, t);
                        heap_sift_down(w, 0);
                }
                cur = t;
        }
}

/* Runs a sweep on a stack buffer, or on the heap for many signals. Returns 0 or -ENOMEM. */
static int run_sweep(struct sweep *w, enum sweep_mode mode, const struct cp_agg_point *const *pts,
                     const size_t *n, size_t n_sig, int64_t t0, int64_t t1, int64_t stale_after_ms,
                     void **ret_mem)
{
        static_assert(sizeof(struct sig) % sizeof(int64_t) == 0 &&
                          sizeof(struct heap_ent) % sizeof(double) == 0,
                      "the arrays carved after struct sig stay aligned");
        size_t bytes = sweep_bytes(n_sig);
        void *mem = *ret_mem;

        if (n_sig > SMALL_SIGNALS) {
                if (bytes == 0 || !(mem = malloc(bytes)))
                        return -ENOMEM;
                *ret_mem = mem;
        }
        sweep_init(w, mem, mode, pts, n, n_sig, t0, t1, stale_after_ms);
        sweep_run(w);
        return 0;
}

/* Stack scratch space for SMALL_SIGNALS signals, aligned for every array the sweep carves from it. */
union small_mem {
        max_align_t align;
        unsigned char b[SMALL_SIGNALS * (sizeof(struct sig) + sizeof(struct heap_ent) + 2 * sizeof(double))];
};

static void gauge_empty(int64_t t0, int64_t t1, struct cp_agg_gauge *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->t0 = t0;
        ret->t1 = t1;
        ret->min = NAN;
        ret->max = NAN;
        ret->last = NAN;
}

static void gauge_from_sweep(const struct sweep *w, struct cp_agg_gauge *ret)
{
        gauge_empty(w->t0, w->t1, ret);
        ret->samples = w->samples;
        if (w->known_ms > 0) {
                ret->known_ms = w->known_ms;
                ret->integral = w->integral;
                ret->min = w->min;
                ret->max = w->max;
        }
        if (w->n_known == 0)
                return;
        ret->has_last = true;
        ret->last = w->tree[1];
        ret->last_ts = INT64_MIN;
        for (size_t i = 0; i < w->n_sig; i++)
                if (w->sig[i].known && w->sig[i].ts > ret->last_ts)
                        ret->last_ts = w->sig[i].ts;
}

static int sum_compute(const struct cp_agg_point *const *meters, const size_t *n, size_t n_meters, int64_t t0,
                       int64_t t1, int64_t stale_after_ms, struct cp_agg_gauge *ret)
{
        union small_mem small;
        void *mem = &small;
        struct sweep w;
        int r;

        assert(t0 < t1);
        r = run_sweep(&w, SWEEP_SUM, meters, n, n_meters, t0, t1, stale_after_ms, &mem);
        if (r < 0) {
                gauge_empty(t0, t1, ret);
                return r;
        }
        gauge_from_sweep(&w, ret);
        if (mem != &small)
                free(mem);
        return 0;
}

void cp_agg_gauge_compute(const struct cp_agg_point *p, size_t n, int64_t t0, int64_t t1,
                          int64_t stale_after_ms, struct cp_agg_gauge *ret)
{
        /* One signal always fits the stack buffer, so this cannot fail. */
        (void)sum_compute(&p, &n, 1, t0, t1, stale_after_ms, ret);
}

int cp_agg_sum_compute(const struct cp_agg_point *const *meters, const size_t *n, size_t n_meters, int64_t t0,
                       int64_t t1, int64_t stale_after_ms, struct cp_agg_gauge *ret)
{
        return sum_compute(meters, n, n_meters, t0, t1, stale_after_ms, ret);
}

void cp_agg_gauge_merge(struct cp_agg_gauge *a, const struct cp_agg_gauge *b)
{
        assert(a->t1 == b->t0);
        if (b->known_ms > 0) {
                if (a->known_ms == 0 || b->min < a->min)
                        a->min = b->min;
                if (a->known_ms == 0 || b->max > a->max)
                        a->max = b->max;
        }
        a->known_ms += b->known_ms;
        a->integral += b->integral;
        /* What holds just before b.t1 is b's business alone: a's last point either still holds there,
         * and then b carried it in, or it does not matter. */
        a->last = b->last;
        a->has_last = b->has_last;
        a->last_ts = b->last_ts;
        a->samples = add_u32_sat(a->samples, b->samples);
        a->t1 = b->t1;
}

bool cp_agg_gauge_mean(const struct cp_agg_gauge *g, double *ret)
{
        if (g->known_ms <= 0)
                return false;
        *ret = g->integral / (double)g->known_ms;
        return true;
}

void cp_agg_counter_compute(const struct cp_agg_point *prev, const struct cp_agg_point *p, size_t n,
                            int64_t t0, int64_t t1, struct cp_agg_counter *ret)
{
        const struct cp_agg_point *last = prev;

        assert(t0 < t1);
        memset(ret, 0, sizeof(*ret));
        ret->t0 = t0;
        ret->t1 = t1;
        ret->has_prev = prev && prev->ts_ms < t0;
        for (size_t i = 0; i < n && p[i].ts_ms < t1; i++) {
                /* The same skip rule as the step functions: duplicates lose to the first arrival. */
                if (last && p[i].ts_ms <= last->ts_ms)
                        continue;
                if (p[i].ts_ms >= t0) {
                        ret->samples = add_u32_sat(ret->samples, 1);
                        if (last) {
                                double d = p[i].value - last->value;

                                ret->increase += d >= 0 ? d : p[i].value;
                        }
                } else {
                        ret->has_prev = true;
                }
                last = &p[i];
        }
}

void cp_agg_counter_merge(struct cp_agg_counter *a, const struct cp_agg_counter *b)
{
        assert(a->t1 == b->t0);
        a->increase += b->increase;
        a->samples = add_u32_sat(a->samples, b->samples);
        a->t1 = b->t1;
}

static void occupancy_empty(int64_t t0, int64_t t1, int64_t registered, struct cp_agg_occupancy *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->t0 = t0;
        ret->t1 = t1;
        ret->registered_spots = registered > 0 ? registered : 0;
        ret->capacity_spot_ms = (double)ret->registered_spots * (double)(t1 - t0);
}

static void occupancy_from_sweep(const struct sweep *w, int64_t registered, struct cp_agg_occupancy *ret)
{
        occupancy_empty(w->t0, w->t1, registered, ret);
        ret->occupied_spot_ms = w->occ_spot_ms;
        ret->known_spot_ms = w->known_spot_ms;
        ret->samples = w->samples;
        if (w->known_ms > 0) {
                ret->has_free = true;
                ret->free_min = w->free_min;
                ret->free_max = w->free_max;
        }
        if (w->n_known > 0) {
                ret->has_free_last = true;
                ret->free_last = w->w.free;
        }
}

int cp_agg_occupancy_compute(const struct cp_agg_point *const *spots, const size_t *n, size_t n_spots,
                             int64_t registered_spots, int64_t t0, int64_t t1, int64_t stale_after_ms,
                             struct cp_agg_occupancy *ret)
{
        union small_mem small;
        void *mem = &small;
        struct sweep w;
        int r;

        assert(t0 < t1);
        r = run_sweep(&w, SWEEP_SPOTS, spots, n, n_spots, t0, t1, stale_after_ms, &mem);
        if (r < 0) {
                occupancy_empty(t0, t1, registered_spots, ret);
                return r;
        }
        occupancy_from_sweep(&w, registered_spots, ret);
        if (mem != &small)
                free(mem);
        return 0;
}

void cp_agg_counter_occupancy_compute(const struct cp_agg_point *free_pts, size_t n, int64_t total_spaces,
                                      int64_t t0, int64_t t1, int64_t stale_after_ms,
                                      struct cp_agg_occupancy *ret)
{
        union small_mem small;
        void *mem = &small;
        struct sweep w;

        assert(t0 < t1);
        /* One signal always fits the stack buffer, so this cannot fail. total is set after the init
         * (which clears it) and before the run, the first to read it. */
        sweep_init(&w, mem, SWEEP_COUNTER, &free_pts, &n, 1, t0, t1, stale_after_ms);
        w.total = total_spaces;
        sweep_run(&w);
        occupancy_from_sweep(&w, total_spaces, ret);
}

void cp_agg_occupancy_merge(struct cp_agg_occupancy *a, const struct cp_agg_occupancy *b)
{
        assert(a->t1 == b->t0);
        if (b->has_free) {
                if (!a->has_free || b->free_min < a->free_min)
                        a->free_min = b->free_min;
                if (!a->has_free || b->free_max > a->free_max)
                        a->free_max = b->free_max;
                a->has_free = true;
        }
        a->free_last = b->free_last;
        a->has_free_last = b->has_free_last;
        a->occupied_spot_ms += b->occupied_spot_ms;
        a->known_spot_ms += b->known_spot_ms;
        a->capacity_spot_ms += b->capacity_spot_ms;
        a->registered_spots = b->registered_spots;
        a->samples = add_u32_sat(a->samples, b->samples);
        a->t1 = b->t1;
}

bool cp_agg_occupancy_rate(const struct cp_agg_occupancy *o, double *ret)
{
        if (!(o->known_spot_ms > 0))
                return false;
        *ret = o->occupied_spot_ms / o->known_spot_ms;
        return true;
}

double cp_agg_occupancy_coverage(const struct cp_agg_occupancy *o)
{
        if (!(o->capacity_spot_ms > 0))
                return 0.0;
        return o->known_spot_ms / o->capacity_spot_ms;
}

/* Floors t to a multiple of len, towards minus infinity (C's % truncates towards zero). */
static int64_t floor_to(int64_t t, int64_t len)
{
        int64_t r = t % len;

        if (r < 0)
                r += len;
        /* Only reachable within one period of INT64_MIN, where no real time lives. */
        if (t < INT64_MIN + r)
                return INT64_MIN;
        return t - r;
}

static int64_t period_ms(enum cp_period p)
{
        switch (p) {
        case CP_P_1M:
                return MINUTE_MS;
        case CP_P_15M:
                return 15 * MINUTE_MS;
        case CP_P_1H:
                return 60 * MINUTE_MS;
        case CP_P_1D:
        case _CP_P_MAX:
                break;
        }
        return DAY_MS;
}

int64_t cp_agg_bucket_start(enum cp_period p, const struct cp_tz *tz, int64_t t)
{
        assert(p < _CP_P_MAX);
        if (p == CP_P_1D && tz)
                return cp_tz_day_start(tz, t);
        return floor_to(t, period_ms(p));
}

int64_t cp_agg_bucket_end(enum cp_period p, const struct cp_tz *tz, int64_t t0)
{
        assert(p < _CP_P_MAX);
        if (p == CP_P_1D && tz)
                return cp_tz_next_day(tz, t0);
        return add_sat(floor_to(t0, period_ms(p)), period_ms(p));
}
