/* lorawan_parking.c - the decoder output of LoRaWAN parking sensors (lorawan_parking.h), shared by the
 * network server drivers ttn_v3 and chirpstack_v4: the same devices and payload decoders reach us
 * through either, only the envelope differs. */
#include "lorawan_parking.h"

#include <errno.h>
#include <stdio.h>

/* Plausible device health: a battery above 20 V or below 0 V, a device colder than any temperature
 * recorded on Earth or hotter than electronics survive, is a broken decoder or sensor. */
#define BATTERY_V_MIN     0.0
#define BATTERY_V_MAX     20.0
#define TEMPERATURE_C_MIN (-90.0)
#define TEMPERATURE_C_MAX 125.0
#define HUMIDITY_PCT_MIN  0.0
#define HUMIDITY_PCT_MAX  100.0

/* Longest status/state word accepted ("occupied"); a longer one cannot be a known value. */
#define WORD_MAX 32
/* "uplink_message.decoded_payload" + "." + the longest key, with room to spare. */
#define NAME_LEN 96

/* Every member decode() reads: a member missing here would be absent from the pruned tree. */
const struct cp_json_keep cp_lorawan_parking_keep[] = {
    {"occupied", NULL},        {"status", NULL},      {"state", NULL},    {"alarmPark", NULL}, {"volt", NULL},
    {"battery_voltage", NULL}, {"temperature", NULL}, {"humidity", NULL}, {NULL, NULL},
};

/* The occupancy found so far: value -1 while no field gave one; `shown` names the first field and
 * its value for the text of a contradiction ("occupied true", "status 'free'"). */
struct occupancy {
        int value;
        char shown[64];
};

/* Adds one source's opinion to *occ; a second source must say the same. */
static int merge_occupancy(struct cp_batch *b, const char *path, struct occupancy *occ, int value,
                           const char *shown)
{
        if (occ->value < 0) {
                occ->value = value;
                (void)snprintf(occ->shown, sizeof(occ->shown), "%s", shown);
                return 0;
        }
        if (occ->value != value)
                return cp_batch_fail(b, CP_REASON_INCONSISTENT, "%s.%s contradicts %s.%s", path, shown, path,
                                     occ->shown);
        return 0;
}

/* A boolean occupancy field: occupied, alarmPark; with numeric_flags also 0 and 1. */
static int read_flag(struct cp_batch *b, const struct cp_lorawan_parking_src *src, const json_t *obj,
                     const char *key, struct occupancy *occ)
{
        char shown[64], num[CP_FMT_DOUBLE_MAX];
        const json_t *v;
        bool flag, present;
        double d;
        int r;

        if (!src->numeric_flags) {
                r = cp_json_get_bool(b, obj, src->path, key, false, &flag, &present);
                if (r < 0 || !present)
                        return r;
                (void)snprintf(shown, sizeof(shown), "%s %s", key, flag ? "true" : "false");
                return merge_occupancy(b, src->path, occ, flag ? 1 : 0, shown);
        }
        v = json_object_get(obj, key);
        if (!v || json_is_null(v))
                return 0;
        if (json_is_boolean(v)) {
                (void)snprintf(shown, sizeof(shown), "%s %s", key, json_is_true(v) ? "true" : "false");
                return merge_occupancy(b, src->path, occ, json_is_true(v) ? 1 : 0, shown);
        }
        if (!json_is_number(v))
                return cp_json_fail_type(b, src->path, key, v, "boolean or 0/1");
        d = json_number_value(v);
        if (d != 0 && d != 1) {
                cp_fmt_double(d, num, sizeof(num));
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s.%s is %s, expected 0 or 1", src->path,
                                     key, num);
        }
        (void)snprintf(shown, sizeof(shown), "%s %d", key, d == 1);
        return merge_occupancy(b, src->path, occ, d == 1, shown);
}

/* ASCII case-insensitive equality; strcasecmp() follows the locale (a Turkish one folds 'I' apart). */
static bool word_eq(const char *s, const char *lower)
{
        for (; *s && *lower; s++, lower++) {
                char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;

                if (c != *lower)
                        return false;
        }
        return *s == *lower;
}

/* A word occupancy field: status "occupied"/"free", state "OCCUPIED"/"FREE", in any case. */
static int read_word(struct cp_batch *b, const char *path, const json_t *obj, const char *key,
                     struct occupancy *occ)
{
        char shown[64];
        const char *s;
        bool present;
        int value, r;

        r = cp_json_get_string(b, obj, path, key, false, WORD_MAX, &s, &present);
        if (r < 0 || !present)
                return r;
        if (word_eq(s, "occupied"))
                value = 1;
        else if (word_eq(s, "free"))
                value = 0;
        else
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE,
                                     "%s.%s is '%s', expected 'occupied' or 'free'", path, key, s);
        (void)snprintf(shown, sizeof(shown), "%s '%s'", key, s);
        return merge_occupancy(b, path, occ, value, shown);
}

/* An optional number within [min, max]. */
static int read_health(struct cp_batch *b, const char *path, const json_t *obj, const char *key, double min,
                       double max, double *ret, bool *ret_present)
{
        char name[NAME_LEN];
        int r;

        r = cp_json_get_number(b, obj, path, key, false, ret, ret_present);
        if (r < 0 || !*ret_present)
                return r;
        if (*ret < min || *ret > max) {
                (void)snprintf(name, sizeof(name), "%s.%s", path, key);
                return cp_batch_fail_bounds(b, name, *ret, min, max, NULL);
        }
        return 0;
}

int cp_lorawan_parking_decode(struct cp_batch *b, const struct cp_lorawan_parking_src *src,
                              const json_t *parent, const char *id, int64_t ts, int64_t rx)
{
        const char *path = src->path;
        struct occupancy occ = {.value = -1};
        double batt = 0, volt = 0, temp = 0, hum = 0;
        bool has_batt = false, has_volt = false, has_temp = false, has_hum = false, present;
        char n1[CP_FMT_DOUBLE_MAX], n2[CP_FMT_DOUBLE_MAX];
        json_t *obj;
        int r;

        r = cp_json_get_object(b, parent, src->parent, src->key, false, &obj, &present);
        if (r < 0)
                return r;
        if (!present)
                return -ENODATA;
        r = read_flag(b, src, obj, "occupied", &occ);
        if (r == 0)
                r = read_word(b, path, obj, "status", &occ);
        if (r == 0)
                r = read_word(b, path, obj, "state", &occ);
        if (r == 0)
                r = read_flag(b, src, obj, "alarmPark", &occ);
        if (r == 0)
                r = read_health(b, path, obj, "battery_voltage", BATTERY_V_MIN, BATTERY_V_MAX, &batt,
                                &has_batt);
        if (r == 0)
                r = read_health(b, path, obj, "volt", BATTERY_V_MIN, BATTERY_V_MAX, &volt, &has_volt);
        if (r == 0)
                r = read_health(b, path, obj, "temperature", TEMPERATURE_C_MIN, TEMPERATURE_C_MAX, &temp,
                                &has_temp);
        if (r == 0)
                r = read_health(b, path, obj, "humidity", HUMIDITY_PCT_MIN, HUMIDITY_PCT_MAX, &hum, &has_hum);
        if (r < 0)
                return r;
        /* Two names for one supply voltage: no decoder sends both, but if one does they must agree. */
        if (has_batt && has_volt && batt != volt) {
                cp_fmt_double(volt, n1, sizeof(n1));
                cp_fmt_double(batt, n2, sizeof(n2));
                return cp_batch_fail(b, CP_REASON_INCONSISTENT,
                                     "%s.volt %s contradicts %s.battery_voltage %s", path, n1, path, n2);
        }
        if (has_volt) {
                batt = volt;
                has_batt = true;
        }
        if (occ.value < 0 && !has_batt && !has_temp && !has_hum)
                return -ENODATA;
        r = 0;
        if (occ.value >= 0)
                r = cp_batch_add(b, id, CP_Q_OCCUPIED, occ.value, ts, rx);
        if (r == 0 && has_batt)
                r = cp_batch_add(b, id, CP_Q_BATTERY_V, batt, ts, rx);
        if (r == 0 && has_temp)
                r = cp_batch_add(b, id, CP_Q_TEMPERATURE_C, temp, ts, rx);
        if (r == 0 && has_hum)
                r = cp_batch_add(b, id, CP_Q_HUMIDITY_PCT, hum, ts, rx);
        return r;
}
