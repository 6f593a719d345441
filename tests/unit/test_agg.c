/* test_agg.c - unit tests for daemon/agg.c: the bucket math of CONTRACT section 5.
 *
 * The hand-computed cases spell out every piece of the step functions in their comments. A reading is
 * known at ms ts..ts+stale_after inclusive (agg.h), so a reading left alone covers ST + 1 ms. The
 * property tests then check the sweep against a brute-force oracle that walks every millisecond, and
 * check that merging adjacent buckets gives what a direct computation over the union gives. */
#include "agg.h"
#include "citypulse/cp_tz.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* cmocka.h uses jmp_buf, va_list and size_t without including their headers. */
#include <cmocka.h>

#define SEC_MS  INT64_C(1000)
#define MIN_MS  INT64_C(60000)
#define HOUR_MS INT64_C(3600000)
#define ST      (5 * MIN_MS) /* live.stale_after's default */

/* UTC ms of a civil UTC time. */
static int64_t utc(int y, unsigned mo, unsigned d, int h, int mi, int s)
{
        return (cp_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + s) * 1000;
}

/* An arbitrary minute-aligned origin for the hand-computed cases. */
#define T0 (utc(2026, 6, 1, 10, 0, 0))

static struct cp_agg_point pt(int64_t ts, double v)
{
        struct cp_agg_point p = {ts, v};

        return p;
}

/* Same bits, with NaN equal to NaN (the null of a double field). */
static bool same_double(double a, double b)
{
        if (isnan(a) || isnan(b))
                return isnan(a) && isnan(b);
        return a == b;
}

static void check_gauge_equal(const struct cp_agg_gauge *a, const struct cp_agg_gauge *b, const char *what)
{
        if (a->t0 != b->t0 || a->t1 != b->t1 || a->known_ms != b->known_ms ||
            !same_double(a->integral, b->integral) || !same_double(a->min, b->min) ||
            !same_double(a->max, b->max) || a->has_last != b->has_last || !same_double(a->last, b->last) ||
            a->last_ts != b->last_ts || a->samples != b->samples)
                fail_msg("%s: gauges differ:\n"
                         "  [%lld,%lld) known=%lld int=%.17g min=%.17g max=%.17g last=%d/%.17g@%lld n=%u\n"
                         "  [%lld,%lld) known=%lld int=%.17g min=%.17g max=%.17g last=%d/%.17g@%lld n=%u",
                         what, (long long)a->t0, (long long)a->t1, (long long)a->known_ms, a->integral,
                         a->min, a->max, a->has_last, a->last, (long long)a->last_ts, a->samples,
                         (long long)b->t0, (long long)b->t1, (long long)b->known_ms, b->integral, b->min,
                         b->max, b->has_last, b->last, (long long)b->last_ts, b->samples);
}

static void check_occ_equal(const struct cp_agg_occupancy *a, const struct cp_agg_occupancy *b,
                            const char *what)
{
        if (a->t0 != b->t0 || a->t1 != b->t1 || a->registered_spots != b->registered_spots ||
            a->occupied_spot_ms != b->occupied_spot_ms || a->known_spot_ms != b->known_spot_ms ||
            a->capacity_spot_ms != b->capacity_spot_ms || a->has_free != b->has_free ||
            a->free_min != b->free_min || a->free_max != b->free_max ||
            a->has_free_last != b->has_free_last || a->free_last != b->free_last || a->samples != b->samples)
                fail_msg("%s: occupancies differ:\n"
                         "  [%lld,%lld) reg=%lld occ=%.17g known=%.17g cap=%.17g "
                         "free=%d/%lld..%lld last=%d/%lld n=%u\n"
                         "  [%lld,%lld) reg=%lld occ=%.17g known=%.17g cap=%.17g "
                         "free=%d/%lld..%lld last=%d/%lld n=%u",
                         what, (long long)a->t0, (long long)a->t1, (long long)a->registered_spots,
                         a->occupied_spot_ms, a->known_spot_ms, a->capacity_spot_ms, a->has_free,
                         (long long)a->free_min, (long long)a->free_max, a->has_free_last,
                         (long long)a->free_last, a->samples, (long long)b->t0, (long long)b->t1,
                         (long long)b->registered_spots, b->occupied_spot_ms, b->known_spot_ms,
                         b->capacity_spot_ms, b->has_free, (long long)b->free_min, (long long)b->free_max,
                         b->has_free_last, (long long)b->free_last, b->samples);
}

static void check_counter_equal(const struct cp_agg_counter *a, const struct cp_agg_counter *b,
                                const char *what)
{
        if (a->t0 != b->t0 || a->t1 != b->t1 || !same_double(a->increase, b->increase) ||
            a->samples != b->samples || a->has_prev != b->has_prev)
                fail_msg(
                    "%s: counters differ: [%lld,%lld) inc=%.17g n=%u prev=%d vs [%lld,%lld) inc=%.17g n=%u "
                    "prev=%d",
                    what, (long long)a->t0, (long long)a->t1, a->increase, a->samples, a->has_prev,
                    (long long)b->t0, (long long)b->t1, b->increase, b->samples, b->has_prev);
}

/* ---- Gauges, by hand ---- */

static void test_gauge_carry_over(void **state)
{
        /* 300 from T0-2m is carried in and holds until the 200 at T0+1m; 50 from T0+3m to the end.
         * [T0, T0+1m) 300, [T0+1m, T0+3m) 200, [T0+3m, T0+5m) 50. */
        const struct cp_agg_point p[] = {pt(T0 - 2 * MIN_MS, 300), pt(T0 + MIN_MS, 200),
                                         pt(T0 + 3 * MIN_MS, 50)};
        struct cp_agg_gauge g;
        double mean;

        (void)state;
        cp_agg_gauge_compute(p, 3, T0, T0 + 5 * MIN_MS, ST, &g);
        assert_int_equal(g.t0, T0);
        assert_int_equal(g.t1, T0 + 5 * MIN_MS);
        assert_int_equal(g.known_ms, 5 * MIN_MS);
        assert_true(g.integral == 300.0 * 60000 + 200.0 * 120000 + 50.0 * 120000);
        assert_true(cp_agg_gauge_mean(&g, &mean));
        assert_true(mean == 160.0);
        assert_true(g.min == 50.0);
        assert_true(g.max == 300.0); /* the carried-in value counts */
        assert_true(g.has_last);
        assert_true(g.last == 50.0);
        assert_int_equal(g.last_ts, T0 + 3 * MIN_MS);
        assert_int_equal(g.samples, 2); /* the carried-in reading is not inside the bucket */
}

static void test_gauge_gap(void **state)
{
        /* 10 at T0, 20 at T0+2m, then silence until 30 at T0+12m (stale_after 5m):
         * [T0, T0+2m) 10; [T0+2m, T0+7m+1ms) 20; unknown until T0+12m; [T0+12m, T0+15m) 30. */
        const struct cp_agg_point p[] = {pt(T0, 10), pt(T0 + 2 * MIN_MS, 20), pt(T0 + 12 * MIN_MS, 30)};
        struct cp_agg_gauge g;
        double mean;

        (void)state;
        cp_agg_gauge_compute(p, 3, T0, T0 + 15 * MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, 2 * MIN_MS + (ST + 1) + 3 * MIN_MS);
        assert_true(g.integral == 10.0 * 120000 + 20.0 * 300001 + 30.0 * 180000);
        assert_true(cp_agg_gauge_mean(&g, &mean));
        assert_true(mean == 12600020.0 / 600001.0);
        assert_true(g.min == 10.0 && g.max == 30.0);
        assert_true(g.has_last && g.last == 30.0);
        assert_int_equal(g.samples, 3);

        /* Ending inside the gap: unknown just before t1, so last is null. */
        cp_agg_gauge_compute(p, 3, T0, T0 + 10 * MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, 2 * MIN_MS + ST + 1);
        assert_false(g.has_last);
        assert_true(isnan(g.last));
        assert_int_equal(g.last_ts, 0);
        assert_int_equal(g.samples, 2);

        /* A bucket entirely inside the gap knows nothing, though a reading reached into the bucket
         * before it: here T0+7m+1ms is the first unknown millisecond. */
        cp_agg_gauge_compute(p, 3, T0 + 7 * MIN_MS + 1, T0 + 12 * MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, 0);
        assert_false(cp_agg_gauge_mean(&g, &mean));
        assert_true(isnan(g.min) && isnan(g.max));
        cp_agg_gauge_compute(p, 3, T0 + 7 * MIN_MS, T0 + 12 * MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, 1);
        assert_true(g.min == 20.0 && g.max == 20.0 && !g.has_last);
}

static void test_gauge_stale_at_start(void **state)
{
        /* The carry-in is one ms older than stale_after at T0: unknown at T0, so only the 7 counts. */
        const struct cp_agg_point old[] = {pt(T0 - ST - 1, 500), pt(T0 + MIN_MS, 7)};
        /* Exactly stale_after old at T0: still known at T0 itself (as the live view says), 1 ms. */
        const struct cp_agg_point edge[] = {pt(T0 - ST, 500), pt(T0 + MIN_MS, 7)};
        struct cp_agg_gauge g;
        double mean;

        (void)state;
        cp_agg_gauge_compute(old, 2, T0, T0 + 2 * MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, MIN_MS);
        assert_true(g.integral == 7.0 * 60000);
        assert_true(cp_agg_gauge_mean(&g, &mean) && mean == 7.0);
        assert_true(g.min == 7.0 && g.max == 7.0);
        assert_int_equal(g.samples, 1);

        cp_agg_gauge_compute(edge, 2, T0, T0 + 2 * MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, MIN_MS + 1);
        assert_true(g.integral == 500.0 + 7.0 * 60000);
        assert_true(g.min == 7.0 && g.max == 500.0);
}

static void test_gauge_duplicates(void **state)
{
        /* Same ts, different value: the first wins and the second is not a sample. */
        const struct cp_agg_point p[] = {pt(T0, 10), pt(T0, 99), pt(T0 + MIN_MS, 20), pt(T0 + MIN_MS, 20),
                                         pt(T0 + MIN_MS, -5)};
        struct cp_agg_gauge g;

        (void)state;
        cp_agg_gauge_compute(p, 5, T0, T0 + 2 * MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, 2 * MIN_MS);
        assert_true(g.integral == 10.0 * 60000 + 20.0 * 60000);
        assert_true(g.min == 10.0 && g.max == 20.0);
        assert_true(g.last == 20.0);
        assert_int_equal(g.samples, 2);
}

static void test_gauge_unsorted_input(void **state)
{
        /* Callers sort. Unsorted input is not an error the functions can report: a point that is not after
         * the previous accepted one is dropped, like a duplicate, so durations never go negative. Here the
         * 99 at T0+1m comes after T0+2m and is dropped. */
        const struct cp_agg_point p[] = {pt(T0, 10), pt(T0 + 2 * MIN_MS, 30), pt(T0 + MIN_MS, 99)};
        struct cp_agg_gauge g;

        (void)state;
        cp_agg_gauge_compute(p, 3, T0, T0 + 3 * MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, 3 * MIN_MS);
        assert_true(g.integral == 10.0 * 120000 + 30.0 * 60000);
        assert_true(g.max == 30.0);
        assert_int_equal(g.samples, 2);
}

static void test_gauge_no_points(void **state)
{
        struct cp_agg_gauge g;
        double mean = 42;

        (void)state;
        cp_agg_gauge_compute(NULL, 0, T0, T0 + MIN_MS, ST, &g);
        assert_int_equal(g.known_ms, 0);
        assert_false(cp_agg_gauge_mean(&g, &mean));
        assert_true(mean == 42); /* untouched */
        assert_true(isnan(g.min) && isnan(g.max) && isnan(g.last));
        assert_false(g.has_last);
        assert_int_equal(g.samples, 0);

        /* Points only after the bucket change nothing either. */
        {
                const struct cp_agg_point p[] = {pt(T0 + MIN_MS, 1)};

                cp_agg_gauge_compute(p, 1, T0, T0 + MIN_MS, ST, &g);
                assert_int_equal(g.known_ms, 0);
                assert_int_equal(g.samples, 0);
        }
}

static void test_gauge_merge_by_hand(void **state)
{
        /* The gap case split at T0+5m and T0+10m: the 20 crosses the first boundary, the gap the second. */
        const struct cp_agg_point p[] = {pt(T0, 10), pt(T0 + 2 * MIN_MS, 20), pt(T0 + 12 * MIN_MS, 30)};
        struct cp_agg_gauge whole, a, b, c;

        (void)state;
        cp_agg_gauge_compute(p, 3, T0, T0 + 15 * MIN_MS, ST, &whole);
        cp_agg_gauge_compute(p, 3, T0, T0 + 5 * MIN_MS, ST, &a);
        cp_agg_gauge_compute(p, 3, T0 + 5 * MIN_MS, T0 + 10 * MIN_MS, ST, &b);
        cp_agg_gauge_compute(p, 3, T0 + 10 * MIN_MS, T0 + 15 * MIN_MS, ST, &c);
        assert_int_equal(b.known_ms, 2 * MIN_MS + 1);
        assert_true(b.min == 20.0 && b.max == 20.0); /* carried in */
        assert_int_equal(b.samples, 0);
        cp_agg_gauge_merge(&a, &b);
        cp_agg_gauge_merge(&a, &c);
        check_gauge_equal(&a, &whole, "3 x 5m");

        /* An empty bucket on either side. */
        cp_agg_gauge_compute(p, 3, T0 - 10 * MIN_MS, T0, ST, &a);
        assert_int_equal(a.known_ms, 0);
        cp_agg_gauge_merge(&a, &whole);
        assert_true(a.min == 10.0 && a.max == 30.0 && a.t0 == T0 - 10 * MIN_MS);
}

/* ---- Counters, by hand ---- */

static void test_counter_reset(void **state)
{
        /* 100 before the bucket, then 110, 125, a reset to 5, 8; the 50 at t1 belongs to the next bucket.
         * Increases: 10 + 15 + 5 (the new value) + 3. */
        const struct cp_agg_point prev = pt(T0 - MIN_MS, 100);
        const struct cp_agg_point p[] = {pt(T0 + MIN_MS, 110), pt(T0 + 2 * MIN_MS, 125),
                                         pt(T0 + 3 * MIN_MS, 5), pt(T0 + 4 * MIN_MS, 8),
                                         pt(T0 + 5 * MIN_MS, 50)};
        struct cp_agg_counter c;

        (void)state;
        cp_agg_counter_compute(&prev, p, 5, T0, T0 + 5 * MIN_MS, &c);
        assert_true(c.increase == 33.0);
        assert_int_equal(c.samples, 4);
        assert_true(c.has_prev);

        /* No reading before: the first reading ever contributes nothing. */
        cp_agg_counter_compute(NULL, p, 5, T0, T0 + 5 * MIN_MS, &c);
        assert_true(c.increase == 23.0);
        assert_int_equal(c.samples, 4);
        assert_false(c.has_prev);

        /* The next bucket: 8 -> 50. */
        cp_agg_counter_compute(&p[3], &p[4], 1, T0 + 5 * MIN_MS, T0 + 10 * MIN_MS, &c);
        assert_true(c.increase == 42.0);
        assert_int_equal(c.samples, 1);

        /* An unchanged counter increases by 0, a bucket without readings too. */
        cp_agg_counter_compute(&p[4], NULL, 0, T0 + 10 * MIN_MS, T0 + 15 * MIN_MS, &c);
        assert_true(c.increase == 0.0);
        assert_int_equal(c.samples, 0);
        assert_true(c.has_prev);
}

static void test_counter_duplicates_and_prev(void **state)
{
        /* The duplicate 0 at T0+2m would be a reset if it counted; it does not. */
        const struct cp_agg_point p[] = {pt(T0 - MIN_MS, 100), pt(T0 + MIN_MS, 110), pt(T0 + 2 * MIN_MS, 125),
                                         pt(T0 + 2 * MIN_MS, 0), pt(T0 + 3 * MIN_MS, 130)};
        struct cp_agg_counter c;

        (void)state;
        /* Points before t0 may come in p: they only act as the predecessor. */
        cp_agg_counter_compute(NULL, p, 5, T0, T0 + 5 * MIN_MS, &c);
        assert_true(c.increase == 30.0);
        assert_int_equal(c.samples, 3);
        assert_true(c.has_prev);

        /* prev repeated at the head of p (the two readings of "the point before" agree): no double count. */
        cp_agg_counter_compute(&p[0], p, 5, T0, T0 + 5 * MIN_MS, &c);
        assert_true(c.increase == 30.0);
        assert_int_equal(c.samples, 3);
}

/* ---- Occupancy, by hand ---- */

static void test_occupancy_spots(void **state)
{
        /* Four registered spots over [T0, T0+10m), stale_after 5m:
         *   A: occupied from T0-1m (carried in), again at T0+3m, free at T0+6m and T0+8m: occupied
         *      [T0, T0+6m), free [T0+6m, T0+10m).
         *   B: never reports: unknown throughout (passed empty).
         *   C: free at T0+5m: unknown [T0, T0+5m), free [T0+5m, T0+10m).
         *   D: occupied at T0-10m (stale by T0-5m+1ms), occupied at T0+2m: occupied [T0+2m, T0+7m+1ms),
         *      unknown after.
         * occupied spot-ms = 6m (A) + 5m+1ms (D); known = 10m (A) + 5m (C) + 5m+1ms (D).
         * free(t): [T0, T0+5m) 0 (known: A, then A D); [T0+5m, T0+6m) 1; [T0+6m, T0+10m) 2. */
        const struct cp_agg_point a[] = {pt(T0 - MIN_MS, 1), pt(T0 + 3 * MIN_MS, 1), pt(T0 + 6 * MIN_MS, 0),
                                         pt(T0 + 8 * MIN_MS, 0)};
        const struct cp_agg_point c[] = {pt(T0 + 5 * MIN_MS, 0)};
        const struct cp_agg_point d[] = {pt(T0 - 10 * MIN_MS, 1), pt(T0 + 2 * MIN_MS, 1)};
        const struct cp_agg_point *spots[] = {a, NULL, c, d};
        const size_t n[] = {4, 0, 1, 2};
        struct cp_agg_occupancy o;
        double rate;

        (void)state;
        assert_int_equal(cp_agg_occupancy_compute(spots, n, 4, 4, T0, T0 + 10 * MIN_MS, ST, &o), 0);
        assert_int_equal(o.registered_spots, 4);
        assert_true(o.occupied_spot_ms == 360000.0 + 300001.0);
        assert_true(o.known_spot_ms == 600000.0 + 300000.0 + 300001.0);
        assert_true(o.capacity_spot_ms == 4.0 * 600000);
        assert_true(cp_agg_occupancy_rate(&o, &rate));
        assert_true(rate == 660001.0 / 1200001.0); /* unknown spot-time is not in the denominator */
        assert_true(cp_agg_occupancy_coverage(&o) == 1200001.0 / 2400000.0);
        assert_true(o.has_free);
        assert_int_equal(o.free_min, 0);
        assert_int_equal(o.free_max, 2);
        assert_true(o.has_free_last);
        assert_int_equal(o.free_last, 2);
        assert_int_equal(o.samples, 5); /* A: 3, C: 1, D: 1 */

        /* The twenty minutes before: D's reading at T0-10m is known [T0-10m, T0-5m+1ms), A's at T0-1m
         * [T0-1m, T0), both occupied; nobody is known in between. */
        assert_int_equal(cp_agg_occupancy_compute(spots, n, 4, 4, T0 - 20 * MIN_MS, T0, ST, &o), 0);
        assert_true(o.known_spot_ms == 300001.0 + 60000.0 && o.occupied_spot_ms == 300001.0 + 60000.0);
        assert_true(o.has_free && o.free_min == 0 && o.free_max == 0);
        assert_true(o.has_free_last && o.free_last == 0);
        assert_int_equal(o.samples, 2);
        /* Only the gap between them: nothing known. */
        assert_int_equal(cp_agg_occupancy_compute(spots, n, 4, 4, T0 - 5 * MIN_MS + 1, T0 - MIN_MS, ST, &o),
                         0);
        assert_true(o.known_spot_ms == 0.0);
        assert_false(o.has_free);
        assert_false(o.has_free_last);

        /* Nothing known at all: rate null, coverage 0, free stats null. */
        assert_int_equal(cp_agg_occupancy_compute(spots, n, 4, 4, T0 - 40 * MIN_MS, T0 - 20 * MIN_MS, ST, &o),
                         0);
        assert_false(cp_agg_occupancy_rate(&o, &rate));
        assert_true(cp_agg_occupancy_coverage(&o) == 0.0);
        assert_false(o.has_free);
        assert_false(o.has_free_last);
        assert_int_equal(o.free_min, 0);
        assert_int_equal(o.free_max, 0);
        assert_int_equal(o.samples, 0);

        /* No spot registered: coverage 0, not a division by zero. */
        assert_int_equal(cp_agg_occupancy_compute(NULL, NULL, 0, 0, T0, T0 + MIN_MS, ST, &o), 0);
        assert_true(cp_agg_occupancy_coverage(&o) == 0.0);
        assert_false(cp_agg_occupancy_rate(&o, &rate));
}

static void test_occupancy_counter(void **state)
{
        /* A counter for 100 spaces: 40 free at T0-2m (carried in), 10 free at T0+4m, then silence:
         * [T0, T0+3m+1ms) 60 occupied; unknown until T0+4m; [T0+4m, T0+9m+1ms) 90 occupied; unknown for
         * the last 59999 ms. */
        const struct cp_agg_point p[] = {pt(T0 - 2 * MIN_MS, 40), pt(T0 + 4 * MIN_MS, 10)};
        struct cp_agg_occupancy o;
        double rate;

        (void)state;
        cp_agg_counter_occupancy_compute(p, 2, 100, T0, T0 + 10 * MIN_MS, ST, &o);
        assert_int_equal(o.registered_spots, 100);
        assert_true(o.occupied_spot_ms == 60.0 * 180001 + 90.0 * 300001);
        assert_true(o.known_spot_ms == 100.0 * 480002);
        assert_true(o.capacity_spot_ms == 100.0 * 600000);
        assert_true(cp_agg_occupancy_rate(&o, &rate));
        /* The time-weighted mean of occupied/total over the known time. */
        assert_true(fabs(rate - (0.6 * 180001 + 0.9 * 300001) / 480002) < 1e-15);
        assert_true(cp_agg_occupancy_coverage(&o) == 480002.0 / 600000.0);
        assert_true(o.has_free && o.free_min == 10 && o.free_max == 40); /* the carried-in 40 counts */
        assert_false(o.has_free_last);
        assert_int_equal(o.samples, 1);

        /* More free than total reads as empty for the rate; free stats keep the reported count. A total
         * of 0 leaves the rate null and coverage 0 but still reports free_spaces. */
        {
                const struct cp_agg_point q[] = {pt(T0, 120), pt(T0 + MIN_MS, -3)};

                cp_agg_counter_occupancy_compute(q, 2, 100, T0, T0 + 2 * MIN_MS, ST, &o);
                assert_true(o.occupied_spot_ms == 100.0 * 60000);
                assert_true(o.known_spot_ms == 100.0 * 120000);
                assert_true(o.free_min == 0 && o.free_max == 120 && o.free_last == 0);
                cp_agg_counter_occupancy_compute(q, 2, 0, T0, T0 + 2 * MIN_MS, ST, &o);
                assert_false(cp_agg_occupancy_rate(&o, &rate));
                assert_true(cp_agg_occupancy_coverage(&o) == 0.0);
                assert_true(o.has_free && o.free_max == 120);
        }
}

static void test_occupancy_merge_registry_change(void **state)
{
        /* One spot registered in the first half hour, two in the second, all known and free: coverage is
         * 1 over the hour, which registered_spots x (t1 - t0) alone could not say. */
        const struct cp_agg_point s1[] = {pt(T0, 0),
                                          pt(T0 + 5 * MIN_MS, 0),
                                          pt(T0 + 10 * MIN_MS, 0),
                                          pt(T0 + 15 * MIN_MS, 0),
                                          pt(T0 + 20 * MIN_MS, 0),
                                          pt(T0 + 25 * MIN_MS, 0),
                                          pt(T0 + 30 * MIN_MS, 0),
                                          pt(T0 + 35 * MIN_MS, 0),
                                          pt(T0 + 40 * MIN_MS, 0),
                                          pt(T0 + 45 * MIN_MS, 0),
                                          pt(T0 + 50 * MIN_MS, 0),
                                          pt(T0 + 55 * MIN_MS, 0)};
        const struct cp_agg_point *spots[] = {s1, s1};
        const size_t n[] = {12, 12};
        struct cp_agg_occupancy a, b;
        double rate;

        (void)state;
        assert_int_equal(cp_agg_occupancy_compute(spots, n, 1, 1, T0, T0 + 30 * MIN_MS, ST, &a), 0);
        assert_int_equal(cp_agg_occupancy_compute(spots, n, 2, 2, T0 + 30 * MIN_MS, T0 + HOUR_MS, ST, &b), 0);
        cp_agg_occupancy_merge(&a, &b);
        assert_int_equal(a.registered_spots, 2);
        assert_true(cp_agg_occupancy_coverage(&a) == 1.0);
        assert_true(cp_agg_occupancy_rate(&a, &rate) && rate == 0.0);
        assert_int_equal(a.free_min, 1);
        assert_int_equal(a.free_max, 2);
        assert_int_equal(a.free_last, 2);
}

/* ---- District power, by hand ---- */

static void test_sum_district(void **state)
{
        /* Over [T0, T0+10m), stale_after 5m:
         *   M1: 1000 at T0-1m (carried in) and T0+3m, 1500 at T0+5m (known to the end).
         *   M2: 200 at T0+2m, then silence: known [T0+2m, T0+7m+1ms), unknown after.
         *   M3: registered, never reported.
         * Sum: [T0, T0+2m) 1000; [T0+2m, T0+5m) 1200; [T0+5m, T0+7m+1ms) 1700; [T0+7m+1ms, T0+10m) 1500. */
        const struct cp_agg_point m1[] = {pt(T0 - MIN_MS, 1000), pt(T0 + 3 * MIN_MS, 1000),
                                          pt(T0 + 5 * MIN_MS, 1500)};
        const struct cp_agg_point m2[] = {pt(T0 + 2 * MIN_MS, 200)};
        const struct cp_agg_point *meters[] = {m1, m2, NULL};
        const size_t n[] = {3, 1, 0};
        struct cp_agg_gauge g;
        double mean;

        (void)state;
        assert_int_equal(cp_agg_sum_compute(meters, n, 3, T0, T0 + 10 * MIN_MS, ST, &g), 0);
        assert_int_equal(g.known_ms, 10 * MIN_MS);
        assert_true(g.integral == 1000.0 * 120000 + 1200.0 * 180000 + 1700.0 * 120001 + 1500.0 * 179999);
        assert_true(cp_agg_gauge_mean(&g, &mean) && mean == 810000200.0 / 600000.0);
        assert_true(g.min == 1000.0 && g.max == 1700.0);
        assert_true(g.has_last && g.last == 1500.0);
        assert_int_equal(g.last_ts, T0 + 5 * MIN_MS);
        assert_int_equal(g.samples, 3);

        /* Before M1's first reading nothing is known: [T0-20m, T0) knows only M1's last minute. */
        assert_int_equal(cp_agg_sum_compute(meters, n, 3, T0 - 20 * MIN_MS, T0, ST, &g), 0);
        assert_int_equal(g.known_ms, MIN_MS);
        assert_true(cp_agg_gauge_mean(&g, &mean) && mean == 1000.0);

        /* A PV meter exporting (negative) joins: the sum goes below zero. */
        {
                const struct cp_agg_point pv[] = {pt(T0, -3000)};
                const struct cp_agg_point *m[] = {m1, pv};
                const size_t nm[] = {3, 1};

                assert_int_equal(cp_agg_sum_compute(m, nm, 2, T0, T0 + 2 * MIN_MS, ST, &g), 0);
                assert_true(g.min == -2000.0 && g.max == -2000.0 && g.last == -2000.0);
        }

        /* No meter at all. */
        assert_int_equal(cp_agg_sum_compute(NULL, NULL, 0, T0, T0 + MIN_MS, ST, &g), 0);
        assert_false(cp_agg_gauge_mean(&g, &mean));
        assert_false(g.has_last);
}

/* ---- Bucket bounds ---- */

static void test_bucket_utc(void **state)
{
        int64_t t = utc(2026, 3, 29, 1, 59, 59) + 999;

        (void)state;
        assert_int_equal(cp_agg_bucket_start(CP_P_1M, NULL, t), utc(2026, 3, 29, 1, 59, 0));
        assert_int_equal(cp_agg_bucket_start(CP_P_15M, NULL, t), utc(2026, 3, 29, 1, 45, 0));
        assert_int_equal(cp_agg_bucket_start(CP_P_1H, NULL, t), utc(2026, 3, 29, 1, 0, 0));
        assert_int_equal(cp_agg_bucket_end(CP_P_1M, NULL, utc(2026, 3, 29, 1, 59, 0)),
                         utc(2026, 3, 29, 2, 0, 0));
        assert_int_equal(cp_agg_bucket_end(CP_P_15M, NULL, utc(2026, 3, 29, 1, 45, 0)),
                         utc(2026, 3, 29, 2, 0, 0));
        assert_int_equal(cp_agg_bucket_end(CP_P_1H, NULL, utc(2026, 3, 29, 1, 0, 0)),
                         utc(2026, 3, 29, 2, 0, 0));
        /* A start is its own bucket's start. */
        assert_int_equal(cp_agg_bucket_start(CP_P_1H, NULL, utc(2026, 3, 29, 1, 0, 0)),
                         utc(2026, 3, 29, 1, 0, 0));

        /* Floor, not truncation, before 1970. */
        assert_int_equal(cp_agg_bucket_start(CP_P_1M, NULL, -1), -MIN_MS);
        assert_int_equal(cp_agg_bucket_start(CP_P_15M, NULL, -1), -15 * MIN_MS);
        assert_int_equal(cp_agg_bucket_start(CP_P_1H, NULL, -1), -HOUR_MS);
        assert_int_equal(cp_agg_bucket_start(CP_P_1M, NULL, -MIN_MS), -MIN_MS);
        assert_int_equal(cp_agg_bucket_start(CP_P_1M, NULL, -MIN_MS - 1), -2 * MIN_MS);
        assert_int_equal(cp_agg_bucket_start(CP_P_1M, NULL, 0), 0);
        assert_int_equal(cp_agg_bucket_end(CP_P_1H, NULL, -HOUR_MS), 0);
        /* 1d without a zone: UTC days. */
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, NULL, -1), -24 * HOUR_MS);
        assert_int_equal(cp_agg_bucket_end(CP_P_1D, NULL, 0), 24 * HOUR_MS);
}

static void test_bucket_days_paris(void **state)
{
        struct cp_tz *tz = NULL;
        /* 2026-03-29: CET -> CEST at 01:00Z, 23 hours; 2026-10-25: CEST -> CET at 01:00Z, 25 hours. */
        int64_t spring0 = utc(2026, 3, 28, 23, 0, 0), spring1 = utc(2026, 3, 29, 22, 0, 0);
        int64_t autumn0 = utc(2026, 10, 24, 22, 0, 0), autumn1 = utc(2026, 10, 25, 23, 0, 0);

        (void)state;
        assert_int_equal(cp_tz_load("Europe/Paris", &tz), 0);
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, spring0), spring0);
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, utc(2026, 3, 29, 1, 30, 0)), spring0);
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, spring1 - 1), spring0);
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, spring1), spring1);
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, spring0 - 1), utc(2026, 3, 27, 23, 0, 0));
        assert_int_equal(cp_agg_bucket_end(CP_P_1D, tz, spring0), spring1);
        assert_int_equal(spring1 - spring0, 23 * HOUR_MS);

        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, autumn0), autumn0);
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, utc(2026, 10, 25, 0, 30, 0)), autumn0);
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, utc(2026, 10, 25, 1, 30, 0)), autumn0);
        assert_int_equal(cp_agg_bucket_start(CP_P_1D, tz, autumn1 - 1), autumn0);
        assert_int_equal(cp_agg_bucket_end(CP_P_1D, tz, autumn0), autumn1);
        assert_int_equal(autumn1 - autumn0, 25 * HOUR_MS);
        assert_int_equal(cp_agg_bucket_end(CP_P_1D, tz, autumn1), utc(2026, 10, 26, 23, 0, 0));

        /* Hours still follow UTC inside a local day: 23 and 25 of them. */
        for (int k = 0; k < 2; k++) {
                int64_t d0 = k ? autumn0 : spring0, d1 = k ? autumn1 : spring1, t = d0;
                int hours = 0;

                while (t < d1) {
                        assert_int_equal(cp_agg_bucket_start(CP_P_1H, tz, t), t);
                        t = cp_agg_bucket_end(CP_P_1H, tz, t);
                        hours++;
                }
                assert_int_equal(t, d1);
                assert_int_equal(hours, k ? 25 : 23);
        }
        cp_tz_free(tz);
}

/* ---- Property tests ---- */

struct rng {
        uint64_t s;
};

/* xorshift64*: fixed seeds keep failures reproducible. */
static uint64_t rng_next(struct rng *r)
{
        r->s ^= r->s >> 12;
        r->s ^= r->s << 25;
        r->s ^= r->s >> 27;
        return r->s * UINT64_C(2685821657736338717);
}

/* Uniform in [lo, hi]. */
static int64_t rng_range(struct rng *r, int64_t lo, int64_t hi)
{
        return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

#define MAX_PTS 400
#define MAX_SIG 12

enum vkind {
        V_INT,    /* integers in [-1000, 1000]: every sum exact */
        V_DYADIC, /* multiples of 1/8: every sum exact too */
        V_DEC,    /* multiples of 0.1: sums round */
        V_SPOT,   /* 0/1 */
        V_FREE,   /* 0..120 with the odd out-of-range value */
};

struct sigbuf {
        struct cp_agg_point p[MAX_PTS];
        size_t n;
};

static double rand_value(struct rng *r, enum vkind k)
{
        switch (k) {
        case V_INT:
                return (double)rng_range(r, -1000, 1000);
        case V_DYADIC:
                return (double)rng_range(r, -8000, 8000) / 8.0;
        case V_DEC:
                return (double)rng_range(r, -10000, 10000) / 10.0;
        case V_SPOT:
                return (double)rng_range(r, 0, 1);
        case V_FREE:
                return (double)rng_range(r, -2, 125);
        }
        return 0;
}

/* A random step function around [start, end): gaps mostly short, some exactly at the stale edge, some
 * longer than stale_after, and duplicates (same ts, another value). */
static void gen_signal(struct rng *r, struct sigbuf *s, int64_t start, int64_t end, int64_t stale,
                       enum vkind k)
{
        int64_t ts = start - rng_range(r, 0, 2 * stale);

        s->n = 0;
        if (rng_range(r, 0, 9) == 0)
                return; /* a silent signal */
        while (ts < end && s->n < MAX_PTS) {
                int64_t c = rng_range(r, 0, 99), gap;

                s->p[s->n++] = pt(ts, rand_value(r, k));
                if (c < 55)
                        gap = rng_range(r, 1, stale / 2);
                else if (c < 70)
                        gap = stale + rng_range(r, -1, 2);
                else if (c < 85)
                        gap = rng_range(r, stale + 2, 3 * stale);
                else
                        gap = 0;
                ts += gap;
        }
}

/* The accepted points: the first of each ts, in order. */
static size_t accepted(const struct cp_agg_point *p, size_t n, struct cp_agg_point *out)
{
        size_t m = 0;

        for (size_t i = 0; i < n; i++)
                if (m == 0 || p[i].ts_ms > out[m - 1].ts_ms)
                        out[m++] = p[i];
        return m;
}

/* The step function at ms t, straight from the definition. */
static bool naive_at(const struct cp_agg_point *acc, size_t m, int64_t stale, int64_t t, double *v,
                     int64_t *ts)
{
        const struct cp_agg_point *best = NULL;

        for (size_t i = 0; i < m && acc[i].ts_ms <= t; i++)
                best = &acc[i];
        if (!best || t - best->ts_ms > stale)
                return false;
        *v = best->value;
        *ts = best->ts_ms;
        return true;
}

/* Brute-force district sum (a gauge is a district of one meter), one millisecond at a time. */
static void naive_sum(struct sigbuf *sig, size_t n_sig, int64_t t0, int64_t t1, int64_t stale,
                      struct cp_agg_gauge *g)
{
        static struct cp_agg_point acc[MAX_SIG][MAX_PTS];
        size_t m[MAX_SIG];

        memset(g, 0, sizeof(*g));
        g->t0 = t0;
        g->t1 = t1;
        g->min = g->max = g->last = NAN;
        for (size_t i = 0; i < n_sig; i++) {
                m[i] = accepted(sig[i].p, sig[i].n, acc[i]);
                for (size_t j = 0; j < m[i]; j++)
                        g->samples += acc[i][j].ts_ms >= t0 && acc[i][j].ts_ms < t1;
        }
        for (int64_t t = t0; t < t1; t++) {
                double s = 0, v;
                int64_t ts, newest = INT64_MIN;
                bool any = false;

                for (size_t i = 0; i < n_sig; i++)
                        if (naive_at(acc[i], m[i], stale, t, &v, &ts)) {
                                s += v;
                                any = true;
                                newest = ts > newest ? ts : newest;
                        }
                if (!any)
                        continue;
                if (g->known_ms == 0 || s < g->min)
                        g->min = s;
                if (g->known_ms == 0 || s > g->max)
                        g->max = s;
                g->known_ms++;
                g->integral += s;
                if (t == t1 - 1) {
                        g->has_last = true;
                        g->last = s;
                        g->last_ts = newest;
                }
        }
}

/* Brute-force occupancy: spots, or one counter for `total` spaces. */
static void naive_occ(struct sigbuf *sig, size_t n_sig, bool counter, int64_t registered, int64_t total,
                      int64_t t0, int64_t t1, int64_t stale, struct cp_agg_occupancy *o)
{
        static struct cp_agg_point acc[MAX_SIG][MAX_PTS];
        size_t m[MAX_SIG];

        memset(o, 0, sizeof(*o));
        o->t0 = t0;
        o->t1 = t1;
        o->registered_spots = counter ? (total > 0 ? total : 0) : registered;
        o->capacity_spot_ms = (double)o->registered_spots * (double)(t1 - t0);
        for (size_t i = 0; i < n_sig; i++) {
                m[i] = accepted(sig[i].p, sig[i].n, acc[i]);
                for (size_t j = 0; j < m[i]; j++)
                        o->samples += acc[i][j].ts_ms >= t0 && acc[i][j].ts_ms < t1;
        }
        for (int64_t t = t0; t < t1; t++) {
                int64_t free_n = 0, known = 0, occ = 0, ts;
                bool any = false;
                double v;

                for (size_t i = 0; i < n_sig; i++) {
                        if (!naive_at(acc[i], m[i], stale, t, &v, &ts))
                                continue;
                        any = true;
                        if (!counter) {
                                known++;
                                occ += v != 0;
                                free_n += v == 0;
                        } else {
                                int64_t f = v > 0 ? (int64_t)v : 0;

                                free_n += f;
                                if (total > 0) {
                                        known += total;
                                        occ += total - (f < total ? f : total);
                                }
                        }
                }
                if (!any)
                        continue;
                if (!o->has_free || free_n < o->free_min)
                        o->free_min = free_n;
                if (!o->has_free || free_n > o->free_max)
                        o->free_max = free_n;
                o->has_free = true;
                o->known_spot_ms += (double)known;
                o->occupied_spot_ms += (double)occ;
                if (t == t1 - 1) {
                        o->has_free_last = true;
                        o->free_last = free_n;
                }
        }
}

/* First index with ts >= t. */
static size_t lower_bound(const struct cp_agg_point *p, size_t n, int64_t t)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (p[mid].ts_ms < t)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Random cut points t[0] < ... < t[k], some on the edges the points create. */
static size_t gen_cuts(struct rng *r, const struct sigbuf *s, int64_t t0, int64_t t1, int64_t stale,
                       int64_t *cut, size_t max)
{
        size_t k = 0;
        int64_t c[16];
        size_t nc = (size_t)rng_range(r, 0, 6);

        for (size_t i = 0; i < nc && i < 16; i++) {
                if (s->n && rng_range(r, 0, 1)) {
                        const struct cp_agg_point *p = &s->p[rng_range(r, 0, (int64_t)s->n - 1)];
                        int64_t off[] = {0, 1, stale, stale + 1, stale + 2};

                        c[i] = p->ts_ms + off[rng_range(r, 0, 4)];
                } else {
                        c[i] = rng_range(r, t0, t1);
                }
        }
        /* Sort (insertion, tiny), keep the ones strictly inside and distinct. */
        for (size_t i = 1; i < nc; i++)
                for (size_t j = i; j > 0 && c[j - 1] > c[j]; j--) {
                        int64_t x = c[j];

                        c[j] = c[j - 1];
                        c[j - 1] = x;
                }
        cut[k++] = t0;
        for (size_t i = 0; i < nc && k < max - 1; i++)
                if (c[i] > cut[k - 1] && c[i] < t1)
                        cut[k++] = c[i];
        cut[k++] = t1;
        return k;
}

/* The gauge over [a, b) from only the window of points the header asks callers to pass. */
static void gauge_windowed(const struct sigbuf *s, int64_t a, int64_t b, int64_t stale,
                           struct cp_agg_gauge *g)
{
        size_t lo = lower_bound(s->p, s->n, a - stale), hi = lower_bound(s->p, s->n, b);

        cp_agg_gauge_compute(s->p + lo, hi - lo, a, b, stale, g);
}

static void test_gauge_property(void **state)
{
        struct rng r = {UINT64_C(0x9e3779b97f4a7c15)};
        struct sigbuf s;

        (void)state;
        for (int iter = 0; iter < 3000; iter++) {
                int64_t stale = rng_range(&r, 0, 60), t0 = rng_range(&r, -500, 500);
                int64_t t1 = t0 + rng_range(&r, 1, 600), cut[8];
                enum vkind k = iter % 3 == 0 ? V_DYADIC : V_INT;
                struct cp_agg_gauge direct, win, naive, merged, part;
                char what[64];
                size_t nc;

                gen_signal(&r, &s, t0, t1 + 50, stale > 2 ? stale : 3, k);
                (void)snprintf(what, sizeof(what), "gauge iter %d", iter);
                cp_agg_gauge_compute(s.p, s.n, t0, t1, stale, &direct);
                naive_sum(&s, 1, t0, t1, stale, &naive);
                check_gauge_equal(&direct, &naive, what);
                gauge_windowed(&s, t0, t1, stale, &win);
                check_gauge_equal(&win, &direct, what);

                nc = gen_cuts(&r, &s, t0, t1, stale, cut, 8);
                gauge_windowed(&s, cut[0], cut[1], stale, &merged);
                for (size_t i = 1; i + 1 < nc; i++) {
                        if (i % 2)
                                gauge_windowed(&s, cut[i], cut[i + 1], stale, &part);
                        else
                                cp_agg_gauge_compute(s.p, s.n, cut[i], cut[i + 1], stale, &part);
                        cp_agg_gauge_merge(&merged, &part);
                }
                check_gauge_equal(&merged, &direct, what);
        }
}

static void test_sum_property(void **state)
{
        struct rng r = {UINT64_C(0x243f6a8885a308d3)};
        static struct sigbuf s[MAX_SIG];

        (void)state;
        for (int iter = 0; iter < 1000; iter++) {
                int64_t stale = rng_range(&r, 3, 60), t0 = rng_range(&r, -500, 500);
                int64_t t1 = t0 + rng_range(&r, 1, 500), cut[8];
                size_t n_sig = (size_t)rng_range(&r, 1, MAX_SIG), nc;
                const struct cp_agg_point *pp[MAX_SIG];
                size_t n[MAX_SIG];
                struct cp_agg_gauge direct, naive, merged = {0}, part;
                char what[64];

                for (size_t i = 0; i < n_sig; i++) {
                        gen_signal(&r, &s[i], t0, t1 + 50, stale, iter % 2 ? V_INT : V_DYADIC);
                        pp[i] = s[i].p;
                        n[i] = s[i].n;
                }
                (void)snprintf(what, sizeof(what), "sum iter %d (%zu meters)", iter, n_sig);
                assert_int_equal(cp_agg_sum_compute(pp, n, n_sig, t0, t1, stale, &direct), 0);
                naive_sum(s, n_sig, t0, t1, stale, &naive);
                check_gauge_equal(&direct, &naive, what);

                nc = gen_cuts(&r, &s[0], t0, t1, stale, cut, 8);
                for (size_t i = 0; i + 1 < nc; i++) {
                        assert_int_equal(cp_agg_sum_compute(pp, n, n_sig, cut[i], cut[i + 1], stale, &part),
                                         0);
                        if (i == 0)
                                merged = part;
                        else
                                cp_agg_gauge_merge(&merged, &part);
                }
                check_gauge_equal(&merged, &direct, what);
        }
}

static void test_occupancy_property(void **state)
{
        struct rng r = {UINT64_C(0x13198a2e03707344)};
        static struct sigbuf s[MAX_SIG];

        (void)state;
        for (int iter = 0; iter < 1500; iter++) {
                int64_t stale = rng_range(&r, 3, 60), t0 = rng_range(&r, -500, 500);
                int64_t t1 = t0 + rng_range(&r, 1, 500), cut[8];
                bool counter = iter % 3 == 0;
                size_t n_sig = counter ? 1 : (size_t)rng_range(&r, 1, MAX_SIG), nc;
                int64_t total = counter ? rng_range(&r, -1, 110) : -1;
                int64_t registered = (int64_t)n_sig + rng_range(&r, 0, 3);
                const struct cp_agg_point *pp[MAX_SIG];
                size_t n[MAX_SIG];
                struct cp_agg_occupancy direct, naive, merged = {0}, part;
                char what[64];

                for (size_t i = 0; i < n_sig; i++) {
                        gen_signal(&r, &s[i], t0, t1 + 50, stale, counter ? V_FREE : V_SPOT);
                        pp[i] = s[i].p;
                        n[i] = s[i].n;
                }
                (void)snprintf(what, sizeof(what), "occupancy iter %d (%s)", iter,
                               counter ? "counter" : "spots");
                if (counter)
                        cp_agg_counter_occupancy_compute(pp[0], n[0], total, t0, t1, stale, &direct);
                else
                        assert_int_equal(
                            cp_agg_occupancy_compute(pp, n, n_sig, registered, t0, t1, stale, &direct), 0);
                naive_occ(s, n_sig, counter, registered, total, t0, t1, stale, &naive);
                check_occ_equal(&direct, &naive, what);

                nc = gen_cuts(&r, &s[0], t0, t1, stale, cut, 8);
                for (size_t i = 0; i + 1 < nc; i++) {
                        if (counter)
                                cp_agg_counter_occupancy_compute(pp[0], n[0], total, cut[i], cut[i + 1],
                                                                 stale, &part);
                        else
                                assert_int_equal(cp_agg_occupancy_compute(pp, n, n_sig, registered, cut[i],
                                                                          cut[i + 1], stale, &part),
                                                 0);
                        if (i == 0)
                                merged = part;
                        else
                                cp_agg_occupancy_merge(&merged, &part);
                }
                check_occ_equal(&merged, &direct, what);
        }
}

/* The reading just before p[lo], as a caller finds it: the first arrival of its time. */
static const struct cp_agg_point *prev_of(const struct cp_agg_point *p, size_t lo)
{
        size_t j;

        if (lo == 0)
                return NULL;
        j = lo - 1;
        while (j > 0 && p[j - 1].ts_ms == p[j].ts_ms)
                j--;
        return &p[j];
}

/* A cumulative counter on the random times of s: increases, sometimes a reset, and the duplicates of
 * gen_signal() with other values. */
static void gen_counter(struct rng *r, struct sigbuf *s, int64_t t0, int64_t t1, bool decimal)
{
        double v = (double)rng_range(r, 0, 1000);

        gen_signal(r, s, t0, t1 + 50, 30, V_INT);
        for (size_t i = 0; i < s->n; i++) {
                int64_t c = rng_range(r, 0, 19);

                if (c == 0)
                        v = (double)rng_range(r, 0, 20);
                else if (c > 2)
                        v += decimal ? (double)rng_range(r, 0, 500) / 10.0 : (double)rng_range(r, 0, 50);
                s->p[i].value = v;
        }
}

/* The counter over [t0, t1) straight from the definition, over the accepted readings. */
static void naive_counter(const struct sigbuf *s, int64_t t0, int64_t t1, struct cp_agg_counter *c)
{
        struct cp_agg_point acc[MAX_PTS];
        size_t m = accepted(s->p, s->n, acc);

        memset(c, 0, sizeof(*c));
        c->t0 = t0;
        c->t1 = t1;
        for (size_t i = 0; i < m; i++) {
                if (acc[i].ts_ms < t0)
                        c->has_prev = true;
                if (acc[i].ts_ms < t0 || acc[i].ts_ms >= t1)
                        continue;
                c->samples++;
                if (i > 0)
                        c->increase +=
                            acc[i].value >= acc[i - 1].value ? acc[i].value - acc[i - 1].value : acc[i].value;
        }
}

/* The counter over [a, b) as a caller computes it: the readings inside, and prev the one before. */
static void counter_windowed(const struct sigbuf *s, int64_t a, int64_t b, struct cp_agg_counter *c)
{
        size_t lo = lower_bound(s->p, s->n, a);

        cp_agg_counter_compute(prev_of(s->p, lo), s->p + lo, lower_bound(s->p, s->n, b) - lo, a, b, c);
}

static void test_counter_property(void **state)
{
        struct rng r = {UINT64_C(0xa4093822299f31d0)};
        struct sigbuf s;

        (void)state;
        for (int iter = 0; iter < 3000; iter++) {
                int64_t t0 = rng_range(&r, -500, 500), t1 = t0 + rng_range(&r, 1, 600), cut[8];
                struct cp_agg_counter direct, naive, merged, part;
                bool decimal = iter % 4 == 0;
                char what[64];
                size_t nc;

                (void)snprintf(what, sizeof(what), "counter iter %d", iter);
                gen_counter(&r, &s, t0, t1, decimal);
                counter_windowed(&s, t0, t1, &direct);
                naive_counter(&s, t0, t1, &naive);
                /* The oracle adds in the same order, but keep decimals to a tolerance anyway. */
                assert_true(fabs(direct.increase - naive.increase) <= 1e-9 * (1 + fabs(naive.increase)));
                naive.increase = direct.increase;
                check_counter_equal(&direct, &naive, what);

                /* Parts alternate between the caller's window and the whole history (prev found by the
                 * function among the points before the part). */
                nc = gen_cuts(&r, &s, t0, t1, 0, cut, 8);
                counter_windowed(&s, cut[0], cut[1], &merged);
                for (size_t i = 1; i + 1 < nc; i++) {
                        if (i % 2)
                                cp_agg_counter_compute(NULL, s.p, s.n, cut[i], cut[i + 1], &part);
                        else
                                counter_windowed(&s, cut[i], cut[i + 1], &part);
                        cp_agg_counter_merge(&merged, &part);
                }
                if (decimal) {
                        /* Decimal increases round differently when summed in another grouping. */
                        assert_true(fabs(merged.increase - direct.increase) <=
                                    1e-9 * (1 + fabs(direct.increase)));
                        merged.increase = direct.increase;
                }
                check_counter_equal(&merged, &direct, what);
        }
}

static void test_gauge_property_decimal(void **state)
{
        /* Decimal values: everything but the integral composes bit for bit, the integral to rounding. */
        struct rng r = {UINT64_C(0x082efa98ec4e6c89)};
        struct sigbuf s;

        (void)state;
        for (int iter = 0; iter < 1000; iter++) {
                int64_t stale = rng_range(&r, 3, 60), t0 = rng_range(&r, -500, 500);
                int64_t t1 = t0 + rng_range(&r, 1, 600), cut[8];
                struct cp_agg_gauge direct, merged, part;
                char what[64];
                size_t nc;

                gen_signal(&r, &s, t0, t1 + 50, stale, V_DEC);
                cp_agg_gauge_compute(s.p, s.n, t0, t1, stale, &direct);
                nc = gen_cuts(&r, &s, t0, t1, stale, cut, 8);
                cp_agg_gauge_compute(s.p, s.n, cut[0], cut[1], stale, &merged);
                for (size_t i = 1; i + 1 < nc; i++) {
                        cp_agg_gauge_compute(s.p, s.n, cut[i], cut[i + 1], stale, &part);
                        cp_agg_gauge_merge(&merged, &part);
                }
                (void)snprintf(what, sizeof(what), "decimal gauge iter %d", iter);
                if (fabs(merged.integral - direct.integral) > 1e-12 * (1 + fabs(direct.integral)))
                        fail_msg("%s: integral %.17g vs %.17g", what, merged.integral, direct.integral);
                merged.integral = direct.integral;
                check_gauge_equal(&merged, &direct, what);
        }
}

/* One bucket of each kind over the same three signals: a gauge (signal 0), a district of signals 0
 * and 1, the occupancy of spot 1, and the counter of signal 2. */
struct quad {
        struct cp_agg_gauge g, s;
        struct cp_agg_occupancy o;
        struct cp_agg_counter c;
};

static void quad_compute(const struct cp_agg_point *const *pp, const size_t *n, int64_t t0, int64_t t1,
                         struct quad *q)
{
        cp_agg_gauge_compute(pp[0], n[0], t0, t1, ST, &q->g);
        assert_int_equal(cp_agg_sum_compute(pp, n, 2, t0, t1, ST, &q->s), 0);
        assert_int_equal(cp_agg_occupancy_compute(pp + 1, n + 1, 1, 1, t0, t1, ST, &q->o), 0);
        cp_agg_counter_compute(NULL, pp[2], n[2], t0, t1, &q->c);
}

static void quad_merge(struct quad *a, const struct quad *b)
{
        cp_agg_gauge_merge(&a->g, &b->g);
        cp_agg_gauge_merge(&a->s, &b->s);
        cp_agg_occupancy_merge(&a->o, &b->o);
        cp_agg_counter_merge(&a->c, &b->c);
}

/* The bucket of period p starting at t0, merged from the buckets of the next shorter period, down to
 * minutes computed directly: the way the daemon rolls buckets up. *ret_parts: how many parts of the
 * next shorter period were merged. */
static void quad_rolled(const struct cp_agg_point *const *pp, const size_t *n, const struct cp_tz *tz,
                        enum cp_period p, int64_t t0, struct quad *ret, int *ret_parts)
{
        int64_t t1 = cp_agg_bucket_end(p, tz, t0), t;
        struct quad part;
        int sub;

        *ret_parts = 1;
        if (p == CP_P_1M) {
                quad_compute(pp, n, t0, t1, ret);
                return;
        }
        quad_rolled(pp, n, tz, p - 1, t0, ret, &sub);
        for (t = cp_agg_bucket_end(p - 1, tz, t0); t < t1; t = cp_agg_bucket_end(p - 1, tz, t)) {
                quad_rolled(pp, n, tz, p - 1, t, &part, &sub);
                quad_merge(ret, &part);
                (*ret_parts)++;
        }
        /* The parts tile the bucket exactly. */
        assert_int_equal(t, t1);
}

/* A local day of minute buckets merged up (1m -> 15m -> 1h -> 1d) equals the day computed at once, on
 * both Paris DST days, for gauges, district sums, occupancy and counters. */
static void test_day_composition_paris(void **state)
{
        struct cp_tz *tz = NULL;
        struct rng r = {UINT64_C(0x452821e638d01377)};
        static struct cp_agg_point pts[3][4000];
        const int64_t days[] = {utc(2026, 3, 29, 12, 0, 0), utc(2026, 10, 25, 12, 0, 0)};

        (void)state;
        assert_int_equal(cp_tz_load("Europe/Paris", &tz), 0);
        for (size_t d = 0; d < 2; d++) {
                int64_t d0 = cp_agg_bucket_start(CP_P_1D, tz, days[d]);
                int64_t d1 = cp_agg_bucket_end(CP_P_1D, tz, d0);
                const struct cp_agg_point *pp[3];
                struct quad direct, rolled;
                int hours = 0;
                size_t n[3];

                /* Three signals from an hour before the day: readings 1 s to 2 min apart, some 10-minute
                 * silences; the first a gauge, the second a spot, the third a cumulative counter. */
                for (size_t i = 0; i < 3; i++) {
                        int64_t ts = d0 - HOUR_MS + rng_range(&r, 0, MIN_MS);
                        double c = 0;

                        n[i] = 0;
                        while (ts < d1 + HOUR_MS && n[i] < 4000) {
                                c += (double)rng_range(&r, 0, 9);
                                pts[i][n[i]++] = pt(ts, i == 2 ? c : (double)rng_range(&r, 0, i ? 1 : 5000));
                                ts += rng_range(&r, 0, 19) ? rng_range(&r, SEC_MS, 2 * MIN_MS) : 10 * MIN_MS;
                        }
                        pp[i] = pts[i];
                }
                quad_compute(pp, n, d0, d1, &direct);
                quad_rolled(pp, n, tz, CP_P_1D, d0, &rolled, &hours);
                assert_int_equal(hours, d ? 25 : 23);
                check_gauge_equal(&rolled.g, &direct.g, "day gauge");
                check_gauge_equal(&rolled.s, &direct.s, "day sum");
                check_occ_equal(&rolled.o, &direct.o, "day occupancy");
                check_counter_equal(&rolled.c, &direct.c, "day counter");
                assert_true(direct.g.known_ms > 0 && direct.g.known_ms < d1 - d0); /* the silences show */
        }
        cp_tz_free(tz);
}

static void test_many_spots(void **state)
{
        /* 500 spots (the heap-allocated path) over an hour of minute readings, against the per-spot sums
         * a single-spot computation gives. */
        enum { N_SPOTS = 500, N_PTS = 61 };
        static struct cp_agg_point buf[N_SPOTS * N_PTS];
        static const struct cp_agg_point *pp[N_SPOTS];
        static size_t n[N_SPOTS];
        struct rng r = {UINT64_C(0xbe5466cf34e90c6c)};
        struct cp_agg_occupancy all, one;
        double occ = 0, known = 0;

        (void)state;
        for (size_t i = 0; i < N_SPOTS; i++) {
                pp[i] = buf + i * N_PTS;
                n[i] = N_PTS;
                for (size_t j = 0; j < N_PTS; j++)
                        buf[i * N_PTS + j] = pt(T0 - MIN_MS + (int64_t)j * MIN_MS + rng_range(&r, 0, 999),
                                                (double)rng_range(&r, 0, 1));
        }
        assert_int_equal(cp_agg_occupancy_compute(pp, n, N_SPOTS, N_SPOTS, T0, T0 + HOUR_MS, ST, &all), 0);
        for (size_t i = 0; i < N_SPOTS; i++) {
                assert_int_equal(cp_agg_occupancy_compute(pp + i, n + i, 1, 1, T0, T0 + HOUR_MS, ST, &one),
                                 0);
                occ += one.occupied_spot_ms;
                known += one.known_spot_ms;
        }
        assert_true(all.occupied_spot_ms == occ);
        assert_true(all.known_spot_ms == known);
        assert_true(cp_agg_occupancy_coverage(&all) == 1.0);
        assert_true(all.free_min >= 0 && all.free_max <= N_SPOTS && all.free_min <= all.free_max);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_gauge_carry_over),
            cmocka_unit_test(test_gauge_gap),
            cmocka_unit_test(test_gauge_stale_at_start),
            cmocka_unit_test(test_gauge_duplicates),
            cmocka_unit_test(test_gauge_unsorted_input),
            cmocka_unit_test(test_gauge_no_points),
            cmocka_unit_test(test_gauge_merge_by_hand),
            cmocka_unit_test(test_counter_reset),
            cmocka_unit_test(test_counter_duplicates_and_prev),
            cmocka_unit_test(test_occupancy_spots),
            cmocka_unit_test(test_occupancy_counter),
            cmocka_unit_test(test_occupancy_merge_registry_change),
            cmocka_unit_test(test_sum_district),
            cmocka_unit_test(test_bucket_utc),
            cmocka_unit_test(test_bucket_days_paris),
            cmocka_unit_test(test_gauge_property),
            cmocka_unit_test(test_gauge_property_decimal),
            cmocka_unit_test(test_sum_property),
            cmocka_unit_test(test_occupancy_property),
            cmocka_unit_test(test_counter_property),
            cmocka_unit_test(test_day_composition_paris),
            cmocka_unit_test(test_many_spots),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
