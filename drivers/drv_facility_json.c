/* drv_facility_json.c - generic parking facility counter (PAYLOADS.md section 3, "Generic JSON"):
 *
 *   {"facility":"P-GARE","total":450,"free":120,"occupied":330,"entries":1520,"exits":1190,
 *    "timestamp":"2026-03-01T11:00:00+01:00","levels":[{"level":"B1","total":200,"free":40}]}
 *
 * Readings: total -> total_spaces, free -> free_spaces, occupied -> occupied_spaces (snapshots),
 * entries -> entries_total, exits -> exits_total (cumulative since the counter's reset), for sensor
 * `facility`; each level gives total_spaces/free_spaces for sensor "<facility>:<level>".
 * The whole message is refused when any part is wrong: a counter that contradicts itself is not
 * trustworthy for any of its values. Unknown fields are ignored.
 *
 * Settings: driver.facility_json.timezone reads a timestamp without offset (CONTRACT section 3: never
 * as UTC). The daemon passes agg.timezone when the key is unset; alone, the driver uses Europe/Paris.
 * Any other key is refused, as the config contract wants for unknown keys. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The snapshot counts of a facility or of one level; `has_*` tell which were sent. */
struct counts {
        int64_t total, free, occupied;
        bool has_total, has_free, has_occupied;
};

/* Reads total/free (and occupied when asked) from obj and checks free <= total, occupied <= total
 * and occupied == total - free (counts are already >= 0). `path` names obj in texts ("levels[1]"),
 * NULL at the top level. */
static int read_counts(struct cp_batch *b, const json_t *obj, const char *path, bool with_occupied,
                       struct counts *c)
{
        const char *prefix = path ? path : "";
        const char *dot = path ? "." : "";
        int r;

        r = cp_json_get_count(b, obj, path, "total", false, &c->total, &c->has_total);
        if (r < 0)
                return r;
        r = cp_json_get_count(b, obj, path, "free", false, &c->free, &c->has_free);
        if (r < 0)
                return r;
        c->has_occupied = false;
        if (with_occupied) {
                r = cp_json_get_count(b, obj, path, "occupied", false, &c->occupied, &c->has_occupied);
                if (r < 0)
                        return r;
        }
        if (!c->has_total && !c->has_free && !c->has_occupied)
                return cp_batch_fail(b, CP_REASON_MISSING_FIELD,
                                     with_occupied ? "%s%snone of total, free, occupied is present"
                                                   : "%s%snone of total, free is present",
                                     prefix, path ? ": " : "");
        if (c->has_total && c->has_free && c->free > c->total)
                return cp_batch_fail(b, CP_REASON_INCONSISTENT,
                                     "%s%sfree %lld is greater than %s%stotal %lld", prefix, dot,
                                     (long long)c->free, prefix, dot, (long long)c->total);
        if (c->has_total && c->has_occupied && c->occupied > c->total)
                return cp_batch_fail(b, CP_REASON_INCONSISTENT, "occupied %lld is greater than total %lld",
                                     (long long)c->occupied, (long long)c->total);
        if (c->has_total && c->has_free && c->has_occupied && c->occupied != c->total - c->free)
                return cp_batch_fail(b, CP_REASON_INCONSISTENT,
                                     "occupied %lld does not match total %lld - free %lld = %lld",
                                     (long long)c->occupied, (long long)c->total, (long long)c->free,
                                     (long long)(c->total - c->free));
        return 0;
}

static int add_counts(struct cp_batch *b, const char *id, const struct counts *c, int64_t ts, int64_t rx)
{
        int r = 0;

        if (c->has_total)
                r = cp_batch_add(b, id, CP_Q_TOTAL_SPACES, (double)c->total, ts, rx);
        if (r == 0 && c->has_free)
                r = cp_batch_add(b, id, CP_Q_FREE_SPACES, (double)c->free, ts, rx);
        if (r == 0 && c->has_occupied)
                r = cp_batch_add(b, id, CP_Q_OCCUPIED_SPACES, (double)c->occupied, ts, rx);
        return r;
}

static int decode_levels(struct cp_batch *b, const json_t *levels, const char *facility, int64_t ts,
                         int64_t rx)
{
        char names[CP_BATCH_CAP][CP_SENSOR_ID_MAX];
        size_t n = json_array_size(levels);
        char path[32];
        int r;

        /* Each level adds at least one reading; more levels than the batch holds cannot fit. */
        if (n > CP_BATCH_CAP)
                return cp_batch_fail(b, CP_REASON_TOO_MANY_READINGS, "levels has %zu entries, limit %d", n,
                                     CP_BATCH_CAP);
        for (size_t i = 0; i < n; i++) {
                const json_t *lv = json_array_get(levels, i);
                struct counts c;

                (void)snprintf(path, sizeof(path), "levels[%zu]", i);
                if (!json_is_object(lv))
                        return cp_json_fail_type(b, "levels", path + strlen("levels"), lv, "object");
                r = cp_json_get_id(b, lv, path, "level", true, names[i]);
                if (r < 0)
                        return r;
                /* Two entries for one level would give two values for the same sensor and time. */
                for (size_t j = 0; j < i; j++) {
                        if (strcmp(names[i], names[j]) == 0)
                                return cp_batch_fail(b, CP_REASON_INCONSISTENT,
                                                     "%s.level '%s' repeats levels[%zu].level", path,
                                                     names[i], j);
                }
                r = read_counts(b, lv, path, false, &c);
                if (r < 0)
                        return r;
                if (c.has_total) {
                        r = cp_batch_add_ch(b, facility, names[i], CP_Q_TOTAL_SPACES, (double)c.total, ts,
                                            rx);
                        if (r < 0)
                                return r;
                }
                if (c.has_free) {
                        r = cp_batch_add_ch(b, facility, names[i], CP_Q_FREE_SPACES, (double)c.free, ts, rx);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int facility_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct cp_tz *tz = state;
        char facility[CP_SENSOR_ID_MAX];
        int64_t ts, entries = 0, exits = 0;
        bool has_ts, has_entries, has_exits, has_levels;
        json_t *root = NULL, *levels;
        struct counts c;
        int r;

        cp_batch_reset(out);
        r = cp_json_load_object(msg, out, &root);
        if (r < 0)
                return r;
        r = cp_json_get_id(out, root, NULL, "facility", false, facility);
        if (r < 0)
                goto out_decref;
        /* Without init (a fuzzer, a test) there is no zone, and a time without offset is refused. */
        r = cp_json_get_time(out, root, NULL, "timestamp", false, tz, &ts, &has_ts);
        if (r < 0)
                goto out_decref;
        if (!has_ts)
                ts = msg->rx_ms;
        r = read_counts(out, root, NULL, true, &c);
        if (r < 0)
                goto out_decref;
        r = cp_json_get_count(out, root, NULL, "entries", false, &entries, &has_entries);
        if (r < 0)
                goto out_decref;
        r = cp_json_get_count(out, root, NULL, "exits", false, &exits, &has_exits);
        if (r < 0)
                goto out_decref;
        r = cp_json_get_array(out, root, NULL, "levels", false, &levels, &has_levels);
        if (r < 0)
                goto out_decref;

        r = add_counts(out, facility, &c, ts, msg->rx_ms);
        if (r == 0 && has_entries)
                r = cp_batch_add(out, facility, CP_Q_ENTRIES_TOTAL, (double)entries, ts, msg->rx_ms);
        if (r == 0 && has_exits)
                r = cp_batch_add(out, facility, CP_Q_EXITS_TOTAL, (double)exits, ts, msg->rx_ms);
        if (r == 0 && has_levels)
                r = decode_levels(out, levels, facility, ts, msg->rx_ms);
out_decref:
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_facility_json = {
    .abi = CP_DRIVER_ABI,
    .name = "facility_json",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = facility_decode,
};
