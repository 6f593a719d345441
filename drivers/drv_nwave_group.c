/* drv_nwave_group.c - Nwave RTA Group Availability (PAYLOADS.md section 3), as delivered over RabbitMQ
 * and bridged to MQTT:
 *
 *   {"timestamp":"2026-03-01T09:59:58.412Z","group_id":1187,"group_custom_id":"P-GARE-L1","level_id":7,
 *    "floor_number":1,"positions_availability":[{"position":{"id":48213,"network_id":"<uuid>",
 *    "custom_id":"GARE-L1-001","group_inner_id":1,"lat":48.87,"lon":2.32},"occupation_status":"occupied"},
 *    ...],"summary":{"total":12,"occupied":7,"available":4,"undefined":1}}
 *
 * Readings: one spot sensor per position (CONTRACT section 3), `occupied` 1 for "occupied" and 0 for
 * "free", for sensor position.custom_id, or position.id (in decimal) when custom_id is absent, null
 * or "". "n/a" is Nwave's "unknown" (a damaged or silent sensor): it gives no reading, because
 * reporting it as free would invent a vacancy. A group whose positions are all "n/a" is a valid
 * message without a measurement (-ENODATA). The summary is Nwave's own count, computed with rules we
 * do not see (parking type, sensor health), so it is neither a reading nor checked against the
 * positions. Observation time: `timestamp` (the message generation time), else the receive time.
 *
 * The whole message is refused when any position is wrong (unknown status, missing id, two positions
 * with one id): a group that contradicts itself is not trustworthy for any of its spots.
 * A group larger than CP_BATCH_CAP positions is refused whole (TOO_MANY_READINGS) whatever the mix of
 * statuses: counting only the positions that yield a reading would make one group's messages pass or
 * fail with the number of "n/a" sensors, which is harder to diagnose than a constant refusal.
 *
 * No topic check: one message carries many spot sensors, so no single sensor id can appear in the
 * topic, and the group id is not a sensor id.
 *
 * Settings: driver.nwave_group.timezone reads a timestamp without offset (never as UTC); the daemon
 * passes agg.timezone when unset, alone the driver uses Europe/Paris. Any other key is refused. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POSITIONS        "positions_availability"
/* Room for "positions_availability[63].position". */
#define PATH_LEN 64

/* What nwave_decode() reads, for cp_json_load_pruned(): the time, and of each element its status
 * and its position's ids. */
static const struct cp_json_keep keep_position[] = {{"id", NULL}, {"custom_id", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_element[] = {
    {"position", keep_position},
    {"occupation_status", NULL},
    {NULL, NULL},
};
static const struct cp_json_keep keep_root[] = {
    {"timestamp", NULL},
    {POSITIONS, keep_element},
    {NULL, NULL},
};

/* The spot's sensor id: a non-empty custom_id (the operator's own bay name), else the numeric id.
 * `path` names the position object ("positions_availability[3].position"). */
static int read_position_id(struct cp_batch *b, const json_t *pos, const char *path, char *ret)
{
        const json_t *custom = json_object_get(pos, "custom_id"), *id;

        if (custom && !json_is_null(custom)) {
                if (!json_is_string(custom))
                        return cp_json_fail_type(b, path, "custom_id", custom, "string");
                if (json_string_length(custom) > 0)
                        return cp_json_get_id(b, pos, path, "custom_id", false, ret);
        }
        /* A negative id is no Nwave id; written out it would look like a valid sensor name. */
        id = json_object_get(pos, "id");
        if (json_is_integer(id) && json_integer_value(id) < 0)
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE,
                                     "%s.id is %" JSON_INTEGER_FORMAT ", expected >= 0", path,
                                     json_integer_value(id));
        return cp_json_get_id(b, pos, path, "id", true, ret);
}

/* Maps occupation_status to 1 (occupied), 0 (free) or -1 (n/a, no reading). */
static int read_status(struct cp_batch *b, const json_t *pa, const char *path, int *ret)
{
        const char *s;
        size_t len;
        int r;

        r = cp_json_get_string(b, pa, path, "occupation_status", true, SIZE_MAX, &s, NULL);
        if (r < 0)
                return r;
        len = strlen(s);
        if (len == 8 && memcmp(s, "occupied", 8) == 0)
                *ret = 1;
        else if (len == 4 && memcmp(s, "free", 4) == 0)
                *ret = 0;
        else if (len == 3 && memcmp(s, "n/a", 3) == 0)
                *ret = -1;
        else
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE,
                                     "%s.occupation_status '%.40s' is not one of occupied, free, n/a", path,
                                     s);
        return 0;
}

static int nwave_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct cp_tz *tz = state;
        char ids[CP_BATCH_CAP][CP_SENSOR_ID_MAX];
        int status[CP_BATCH_CAP];
        char path[PATH_LEN], ppath[PATH_LEN];
        json_t *root = NULL, *positions;
        size_t n, nread = 0;
        bool has_ts;
        int64_t ts;
        int r;

        cp_batch_reset(out);
        r = cp_json_load_pruned(msg, out, keep_root, &root);
        if (r < 0)
                return r;
        r = cp_json_get_array(out, root, NULL, POSITIONS, true, &positions, NULL);
        if (r < 0)
                goto out_decref;
        n = json_array_size(positions);
        if (n > CP_BATCH_CAP) {
                r = cp_batch_fail(out, CP_REASON_TOO_MANY_READINGS,
                                  POSITIONS " has %zu positions, limit %d per message", n, CP_BATCH_CAP);
                goto out_decref;
        }
        /* Without init (a fuzzer, a test) there is no zone, and a time without offset is refused. */
        r = cp_json_get_time(out, root, NULL, "timestamp", false, tz, &ts, &has_ts);
        if (r < 0)
                goto out_decref;
        if (!has_ts)
                ts = msg->rx_ms;

        /* Everything is checked before the first reading is added: a bad position refuses the group. */
        for (size_t i = 0; i < n; i++) {
                const json_t *pa = json_array_get(positions, i);
                json_t *pos;

                (void)snprintf(path, sizeof(path), POSITIONS "[%zu]", i);
                if (!json_is_object(pa)) {
                        r = cp_json_fail_type(out, POSITIONS, path + strlen(POSITIONS), pa, "object");
                        goto out_decref;
                }
                r = cp_json_get_object(out, pa, path, "position", true, &pos, NULL);
                if (r < 0)
                        goto out_decref;
                (void)snprintf(ppath, sizeof(ppath), POSITIONS "[%zu].position", i);
                r = read_position_id(out, pos, ppath, ids[i]);
                if (r < 0)
                        goto out_decref;
                r = read_status(out, pa, path, &status[i]);
                if (r < 0)
                        goto out_decref;
                /* One spot twice would give two values for one sensor at one instant. */
                for (size_t j = 0; j < i; j++) {
                        if (strcmp(ids[i], ids[j]) == 0) {
                                r = cp_batch_fail(out, CP_REASON_INCONSISTENT,
                                                  "%s: sensor id '%s' repeats " POSITIONS "[%zu]", path,
                                                  ids[i], j);
                                goto out_decref;
                        }
                }
                if (status[i] >= 0)
                        nread++;
        }
        if (nread == 0) {
                r = -ENODATA;
                goto out_decref;
        }
        for (size_t i = 0; i < n; i++) {
                if (status[i] < 0)
                        continue;
                r = cp_batch_add(out, ids[i], CP_Q_OCCUPIED, status[i], ts, msg->rx_ms);
                if (r < 0)
                        goto out_decref;
        }
        r = 0;
out_decref:
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_nwave_group = {
    .abi = CP_DRIVER_ABI,
    .name = "nwave_group",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = nwave_decode,
};
