/* agg.h - the bucket math of CONTRACT section 5, as pure functions: no I/O, no clock, no globals.
 *
 * Every signal is a step function of observation time: a value holds from its reading until the next
 * reading of the same sensor and quantity, or until `stale_after` of silence, after which it is
 * unknown (unknown before the first reading too). A bucket [t0, t1) is computed from the points of
 * that step function: callers pass, sorted by time, every point with ts in [t0 - stale_after, t1)
 * (earlier points cannot reach t0) and, for counters, the last point before those as `prev`.
 * Times are UTC milliseconds.
 *
 * Time is counted in whole milliseconds, and "after stale_after of silence" is read as the live view
 * reads it (cp_live_fresh: fresh while now - ts <= stale_after): a reading at ts is known at every
 * millisecond ts, ts+1, ..., ts+stale_after, so alone it covers stale_after + 1 ms, [ts, ts+stale_after+1).
 * That is why a point at t0 - stale_after still reaches t0 (for 1 ms) and one before it does not.
 *
 * Input rules, shared by every compute function: points are sorted by ts ascending (callers sort; the
 * functions do not). A point whose ts is not after the previous accepted point of the same signal is
 * ignored: this is how a duplicate (same ts, any value) loses to the first one, and it makes unsorted
 * input degrade into dropped points instead of negative durations. Values are finite (the drivers'
 * batch helpers refuse NaN and infinities). stale_after_ms < 0 is read as 0. t0 < t1.
 *
 * Every function is reentrant and may run on any thread: inputs are borrowed for the call, ret is the
 * caller's, and nothing is kept.
 *
 * A value that the contract calls null is NAN in a double field (min/max with no known time, last when
 * unknown) and 0 in an integer field, next to the flag or count that says it is null.
 *
 * Stats compose: a 15-minute bucket is the merge of its fifteen 1-minute buckets, an hour of its four
 * quarters, a local day of its hours (23, 24 or 25 of them), with exactly the result a direct
 * computation over the longer span would give. Known times, counts, min, max, last and the occupancy
 * spot-ms are exact integers or copies of input values, so they always match bit for bit; the two
 * floating sums (a gauge's integral, a counter's increase) match bit for bit whenever every term and
 * partial sum is exactly representable (integer-valued readings, as W and counts mostly are), and
 * otherwise to within float rounding (about 1e-15 relative), because adding doubles is not associative. */
#ifndef CP_AGG_H
#define CP_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cp_agg_point {
        int64_t ts_ms;
        double value;
};

/* A gauge (power_w, free_spaces of a counter, ...) over one bucket. */
struct cp_agg_gauge {
        int64_t t0, t1;
        int64_t known_ms; /* time in [t0,t1) where the value is known */
        double integral;  /* sum of value * ms over the known time */
        double min, max;  /* over the step function on the known time (a carried-in value counts);
                           * NAN when known_ms == 0 */
        double last;      /* the value just before t1 (NAN when has_last is false) */
        bool has_last;    /* false: unknown just before t1 (last is null) */
        int64_t last_ts;  /* observation time of `last` (0 when has_last is false); for a district sum,
                           * the newest observation among the meters known just before t1 */
        uint32_t samples; /* readings observed inside [t0,t1), duplicates not counted (saturates) */
};

/* Computes a gauge bucket from sorted points (ts ascending; duplicates of a time: the first wins).
 * Points may start before t0 - stale_after and end after t1: those are ignored, except as carry-in.
 * Allocates nothing. */
void cp_agg_gauge_compute(const struct cp_agg_point *p, size_t n, int64_t t0, int64_t t1,
                          int64_t stale_after_ms, struct cp_agg_gauge *ret);
/* Merges adjacent buckets (a.t1 == b.t0) into a (a becomes [a.t0, b.t1)). */
void cp_agg_gauge_merge(struct cp_agg_gauge *a, const struct cp_agg_gauge *b);
/* Time-weighted mean over the known time; false when there was no known time (mean is null). */
bool cp_agg_gauge_mean(const struct cp_agg_gauge *g, double *ret);

/* A cumulative counter (energy_*_kwh, entries_total) over one bucket: the sum of the increases between
 * consecutive readings whose later reading falls in [t0,t1); a decrease is a reset and counts the new
 * value as the increase. The first reading ever (no reading before it) contributes no increase.
 * Counters do not go stale: an increase after a long silence lands in the bucket of the later reading. */
struct cp_agg_counter {
        int64_t t0, t1;
        double increase;
        uint32_t samples;
        bool has_prev; /* the last reading before the bucket's first, as seen when computing */
};
/* prev: the reading just before the first point at or after t0 (NULL when none is known). The readings
 * are taken as prev followed by p[0..n): points of p before t0 are allowed (they only become the
 * predecessor), points at or before prev->ts are ignored, points at or after t1 are ignored. has_prev
 * is true when any reading before t0 was seen (prev or a point of p). */
void cp_agg_counter_compute(const struct cp_agg_point *prev, const struct cp_agg_point *p, size_t n,
                            int64_t t0, int64_t t1, struct cp_agg_counter *ret);
void cp_agg_counter_merge(struct cp_agg_counter *a, const struct cp_agg_counter *b);

/* Occupancy of a facility fed by spot sensors: each spot a 0/1 step function (any value other than 0
 * is occupied, as in the live view). */
struct cp_agg_occupancy {
        int64_t t0, t1;
        int64_t registered_spots;
        double occupied_spot_ms; /* sum over spots of time known occupied */
        double known_spot_ms;    /* sum over spots of time known */
        /* Coverage's denominator: registered_spots x (t1 - t0) for a computed bucket, the sum of those
         * over the parts of a merged one. It is kept apart because a registry reload can change
         * registered_spots between two buckets that are later merged; registered_spots of a merged
         * bucket is then the later bucket's. */
        double capacity_spot_ms;
        /* free_spaces(t) = spots known free at t; min/max over [t0,t1) where at least one spot is
         * known, last just before t1. has_free is false when no spot was known at any time in the
         * bucket (free_min = free_max = 0 then); has_free_last is false when no spot is known just
         * before t1 (free_last = 0 then). */
        int64_t free_min, free_max, free_last;
        bool has_free, has_free_last;
        uint32_t samples; /* spot readings inside [t0,t1), duplicates not counted (saturates) */
};
/* spots[i] points to spot i's sorted points, n[i] of them (spots[i] may be NULL when n[i] is 0). Pass
 * the registered spots only; a registered spot without any point may be passed empty or left out.
 * Allocates O(n_spots) scratch memory when n_spots > 8 and frees it before returning. Returns 0, or
 * -ENOMEM (ret then holds an empty bucket: nothing known, coverage 0). */
int cp_agg_occupancy_compute(const struct cp_agg_point *const *spots, const size_t *n, size_t n_spots,
                             int64_t registered_spots, int64_t t0, int64_t t1, int64_t stale_after_ms,
                             struct cp_agg_occupancy *ret);
/* Merges adjacent buckets (a.t1 == b.t0) into a. */
void cp_agg_occupancy_merge(struct cp_agg_occupancy *a, const struct cp_agg_occupancy *b);
/* occupancy_rate_mean = occupied / known spot-seconds (false when nothing was known);
 * coverage = known spot-seconds / (registered spots x (t1 - t0)), that is known_spot_ms /
 * capacity_spot_ms, 0 when no spot is registered. */
bool cp_agg_occupancy_rate(const struct cp_agg_occupancy *o, double *ret);
double cp_agg_occupancy_coverage(const struct cp_agg_occupancy *o);

/* A facility fed by a counter: the time-weighted mean of occupied/total with the same carry-over;
 * free_spaces min/max/last from the counter's free_spaces step function. Callers pass the counter's
 * free_spaces points (convert occupied_spaces readings to total - occupied first) and the facility's
 * total for the bucket (the counter's reported total_spaces, else the registry's).
 *
 * The result is stored as if the facility had `total_spaces` spots that are all known while the counter
 * is, (total - free) of them occupied: registered_spots = total_spaces, occupied_spot_ms = integral of
 * (total - free) over the known time, known_spot_ms = total x known ms, capacity_spot_ms = total x
 * (t1 - t0). Then cp_agg_occupancy_rate() is the time-weighted mean of (total - free)/total and
 * cp_agg_occupancy_coverage() the known fraction of the bucket, and both sums stay exact integers, so
 * merges compose bit for bit (storing the fraction itself would round at every bucket boundary).
 * free is truncated to a count and negative values read as 0, as in the live view; for the rate a
 * free count above total reads as total (rate 0). With total_spaces <= 0 the rate is null and coverage
 * 0, while the free_spaces stats are still computed. Allocates nothing. */
void cp_agg_counter_occupancy_compute(const struct cp_agg_point *free_pts, size_t n, int64_t total_spaces,
                                      int64_t t0, int64_t t1, int64_t stale_after_ms,
                                      struct cp_agg_occupancy *ret);

/* District power: the sum of its meters' step functions over the time at least one meter is known
 * (a meter that is unknown contributes nothing then); mean, min, max, last of that sum. The sum at a
 * time does not depend on the order the meters changed in (it is kept in a fixed-shape tree), so min,
 * max and last compose bit for bit. Allocates O(n_meters) scratch memory when n_meters > 8 and frees
 * it before returning. Returns 0, or -ENOMEM (ret then holds an empty bucket: nothing known). */
int cp_agg_sum_compute(const struct cp_agg_point *const *meters, const size_t *n, size_t n_meters, int64_t t0,
                       int64_t t1, int64_t stale_after_ms, struct cp_agg_gauge *ret);

/* Bucket periods. */
enum cp_period {
        CP_P_1M,
        CP_P_15M,
        CP_P_1H,
        CP_P_1D,
        _CP_P_MAX,
};
struct cp_tz;
/* Start of the bucket containing t (1m, 15m, 1h aligned to UTC, floored for negative times too; 1d
 * to local midnight in tz, UTC midnight when tz is NULL). */
int64_t cp_agg_bucket_start(enum cp_period p, const struct cp_tz *tz, int64_t t);
/* End of the bucket starting at t0 (of the bucket containing t0 when t0 is not a start); a local day
 * lasts 23, 24 or 25 hours. */
int64_t cp_agg_bucket_end(enum cp_period p, const struct cp_tz *tz, int64_t t0);

#endif
