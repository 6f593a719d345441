/* drv_ttn_v3.c - The Things Stack v3 (TTN / TTS) MQTT uplinks of parking sensors (PAYLOADS.md section 1):
 *
 *   topic v3/<app>@<tenant>/devices/<device_id>/up   (TTS Open Source: v3/<app>/devices/<device_id>/up)
 *   {"end_device_ids":{"device_id":"nps-p12-017",...},"received_at":"...",
 *    "uplink_message":{"f_port":1,"decoded_payload":{"type":"parking_status","occupied":true,...},
 *                      "rx_metadata":[...],"settings":{...},"received_at":"2026-03-01T09:59:58.123456789Z"}}
 *
 * The sensor id is end_device_ids.device_id; the device named by the topic must be the same one
 * (ID_MISMATCH otherwise). Readings come from the payload formatter's output, decoded_payload:
 *   occupancy -> occupied (0/1), from any of
 *     occupied   JSON boolean (Nwave NPS405/NPS310, Bosch TPS110: status, heartbeat and startup frames;
 *                null, as Nwave sends on SDI tag registration, means unknown and gives no reading)
 *     status     "occupied" / "free", state "OCCUPIED" / "FREE" (other decoders; case is ignored)
 *     alarmPark  JSON boolean, vehicle detected (Dingtek DO201)
 *   When several are present they must agree (INCONSISTENT otherwise): one spot, one state.
 *   battery_voltage (Nwave heartbeat) or volt (Dingtek), V -> battery_v (CONTRACT section 3 fine print)
 *   temperature, degrees C -> temperature_c; humidity, % -> humidity_pct (Dingtek)
 * All readings belong to the device itself (one spot, no channels). Every other field is ignored.
 * The formatter's JSON reaches us unchanged, so a number where a boolean belongs ("occupied": 1) is
 * WRONG_TYPE here, unlike chirpstack_v4 where PAYLOADS.md documents integers arriving as doubles.
 *
 * Observation time: uplink_message.received_at, the Network Server's reception time (ns precision,
 * cut to the ms), else the top-level received_at (Application Server), else the receive time. The
 * gateways' rx_metadata[].time is not used: a gateway without GPS reports its own clock, which may
 * be anything, while the servers' clocks are synchronised.
 *
 * No reading, no reject (-ENODATA), for valid messages that carry no measurement:
 *   - other events of the device tree (/join, /down/..., /service/data, /location/solved);
 *   - an uplink without decoded_payload (no formatter configured, or the formatter failed: only
 *     frm_payload remains, and its bytes mean nothing without the device's codec);
 *   - a decoded_payload without any field above (debug frames, Bosch device information, Nwave tag
 *     registration with "occupied": null);
 *   - a simulated uplink ("simulated": true, typed into the console): open data must not carry
 *     made-up occupancy.
 * A topic of another shape (a bridge that renamed it) is accepted: the message kind then comes from
 * the payload (uplink_message, or one of the other events' fields) and there is no topic id to check.
 *
 * Settings: driver.ttn_v3.timezone reads a time without offset (TTS always sends "Z", but the rule
 * is never to assume UTC); any other key is refused. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEZONE "Europe/Paris"
#define PAYLOAD_PATH     "uplink_message.decoded_payload"

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

struct ttn_state {
        struct cp_tz *tz;
};

enum topic_kind {
        TOPIC_FOREIGN, /* not v3/<app>/devices/<id>/<event>: no device to compare, kind from payload */
        TOPIC_UP,
        TOPIC_OTHER, /* join, down/..., service/data, location/solved: no readings */
};

struct topic_info {
        enum topic_kind kind;
        const char *dev; /* points into the topic; not terminated */
        size_t dev_len;
};

/* The occupancy found so far: value -1 while no field gave one; `shown` names the first field and
 * its value for the text of a contradiction ("occupied true", "status 'free'"). */
struct occupancy {
        int value;
        char shown[64];
};

static void ttn_free(void *state)
{
        struct ttn_state *st = state;

        if (!st)
                return;
        cp_tz_free(st->tz);
        free(st);
}

static int ttn_init(const struct cp_conf_section *conf, void **ret_state, char *err, size_t errlen)
{
        const char *driver = conf && conf->driver ? conf->driver : "ttn_v3";
        const char *zone = cp_conf_get(conf, "timezone");
        struct ttn_state *st;
        int r;

        for (size_t i = 0; conf && i < conf->n; i++) {
                if (!conf->kv[i].key || strcmp(conf->kv[i].key, "timezone") != 0) {
                        (void)snprintf(err, errlen, "driver.%s.%s: unknown key", driver,
                                       conf->kv[i].key ? conf->kv[i].key : "");
                        return -EINVAL;
                }
        }
        if (!zone)
                zone = DEFAULT_TIMEZONE;
        st = calloc(1, sizeof(*st));
        if (!st) {
                (void)snprintf(err, errlen, "driver.%s: out of memory", driver);
                return -ENOMEM;
        }
        r = cp_tz_load(zone, &st->tz);
        if (r < 0) {
                if (r == -ENOENT)
                        (void)snprintf(err, errlen, "driver.%s.timezone: unknown time zone '%s'", driver,
                                       zone);
                else if (r == -EINVAL)
                        (void)snprintf(err, errlen, "driver.%s.timezone: invalid time zone name '%s'", driver,
                                       zone);
                else
                        (void)snprintf(err, errlen, "driver.%s.timezone: cannot load time zone '%s': %s",
                                       driver, zone, strerror(-r));
                free(st);
                return r;
        }
        *ret_state = st;
        return 0;
}

/* v3/<application_id>[@<tenant_id>]/devices/<device_id>/<event...>; TTS fixes this layout. */
static void parse_topic(const char *topic, struct topic_info *t)
{
        const char *app, *slash, *dev, *end;

        t->kind = TOPIC_FOREIGN;
        t->dev = NULL;
        t->dev_len = 0;
        if (!topic || strncmp(topic, "v3/", 3) != 0)
                return;
        app = topic + 3;
        slash = strchr(app, '/');
        if (!slash || slash == app || strncmp(slash, "/devices/", 9) != 0)
                return;
        dev = slash + 9;
        end = strchr(dev, '/');
        if (!end || end == dev || end[1] == '\0')
                return;
        t->dev = dev;
        t->dev_len = (size_t)(end - dev);
        t->kind = strcmp(end + 1, "up") == 0 ? TOPIC_UP : TOPIC_OTHER;
}

/* A number for texts: whole numbers as such ("20", not the "2e+01" that "%.1g" gives), others in
 * the shortest "%g" form that reads back as the same double ("3.3", not "3.2999999999999998"). */
static void fmt_double(double d, char *buf, size_t size)
{
        if (d > -1e15 && d < 1e15 && d == (double)(int64_t)d) {
                (void)snprintf(buf, size, "%.0f", d);
                return;
        }
        for (int prec = 1; prec <= 17; prec++) {
                (void)snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return;
        }
}

/* Adds one source's opinion to *occ; a second source must say the same. */
static int merge_occupancy(struct cp_batch *b, struct occupancy *occ, int value, const char *shown)
{
        if (occ->value < 0) {
                occ->value = value;
                (void)snprintf(occ->shown, sizeof(occ->shown), "%s", shown);
                return 0;
        }
        if (occ->value != value)
                return cp_batch_fail(b, CP_REASON_INCONSISTENT,
                                     PAYLOAD_PATH ".%s contradicts " PAYLOAD_PATH ".%s", shown, occ->shown);
        return 0;
}

/* A boolean occupancy field: occupied, alarmPark. */
static int read_flag(struct cp_batch *b, const json_t *obj, const char *key, struct occupancy *occ)
{
        char shown[64];
        bool v, present;
        int r;

        r = cp_json_get_bool(b, obj, PAYLOAD_PATH, key, false, &v, &present);
        if (r < 0 || !present)
                return r;
        (void)snprintf(shown, sizeof(shown), "%s %s", key, v ? "true" : "false");
        return merge_occupancy(b, occ, v ? 1 : 0, shown);
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
static int read_word(struct cp_batch *b, const json_t *obj, const char *key, struct occupancy *occ)
{
        char shown[64];
        const char *s;
        bool present;
        int value, r;

        r = cp_json_get_string(b, obj, PAYLOAD_PATH, key, false, WORD_MAX, &s, &present);
        if (r < 0 || !present)
                return r;
        if (word_eq(s, "occupied"))
                value = 1;
        else if (word_eq(s, "free"))
                value = 0;
        else
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE,
                                     PAYLOAD_PATH ".%s is '%s', expected 'occupied' or 'free'", key, s);
        (void)snprintf(shown, sizeof(shown), "%s '%s'", key, s);
        return merge_occupancy(b, occ, value, shown);
}

/* An optional number within [min, max]. */
static int read_health(struct cp_batch *b, const json_t *obj, const char *key, double min, double max,
                       double *ret, bool *ret_present)
{
        char num[40], lo[40], hi[40];
        int r;

        r = cp_json_get_number(b, obj, PAYLOAD_PATH, key, false, ret, ret_present);
        if (r < 0 || !*ret_present)
                return r;
        if (*ret < min || *ret > max) {
                fmt_double(*ret, num, sizeof(num));
                fmt_double(min, lo, sizeof(lo));
                fmt_double(max, hi, sizeof(hi));
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, PAYLOAD_PATH ".%s is %s, expected %s to %s",
                                     key, num, lo, hi);
        }
        return 0;
}

/* The readings of one decoded_payload; -ENODATA when it holds none of the known fields. Everything is
 * read and checked before the first reading is added, so a bad field never leaves half a message. */
static int decode_fields(struct cp_batch *b, const json_t *obj, const char *id, int64_t ts, int64_t rx)
{
        struct occupancy occ = {.value = -1};
        double batt = 0, volt = 0, temp = 0, hum = 0;
        bool has_batt = false, has_volt = false, has_temp = false, has_hum = false;
        char n1[40], n2[40];
        int r;

        r = read_flag(b, obj, "occupied", &occ);
        if (r == 0)
                r = read_word(b, obj, "status", &occ);
        if (r == 0)
                r = read_word(b, obj, "state", &occ);
        if (r == 0)
                r = read_flag(b, obj, "alarmPark", &occ);
        if (r == 0)
                r = read_health(b, obj, "battery_voltage", BATTERY_V_MIN, BATTERY_V_MAX, &batt, &has_batt);
        if (r == 0)
                r = read_health(b, obj, "volt", BATTERY_V_MIN, BATTERY_V_MAX, &volt, &has_volt);
        if (r == 0)
                r = read_health(b, obj, "temperature", TEMPERATURE_C_MIN, TEMPERATURE_C_MAX, &temp,
                                &has_temp);
        if (r == 0)
                r = read_health(b, obj, "humidity", HUMIDITY_PCT_MIN, HUMIDITY_PCT_MAX, &hum, &has_hum);
        if (r < 0)
                return r;
        /* Two names for one supply voltage: no decoder sends both, but if one does they must agree. */
        if (has_batt && has_volt && batt != volt) {
                fmt_double(volt, n1, sizeof(n1));
                fmt_double(batt, n2, sizeof(n2));
                return cp_batch_fail(b, CP_REASON_INCONSISTENT,
                                     PAYLOAD_PATH ".volt %s contradicts " PAYLOAD_PATH ".battery_voltage %s",
                                     n1, n2);
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

/* Without a TTS topic, the payload says what it is: the fields that name the other events. */
static bool is_other_event(const json_t *root)
{
        static const char *const keys[] = {
            "join_accept",
            "downlink_ack",
            "downlink_nack",
            "downlink_sent",
            "downlink_failed",
            "downlink_queued",
            "downlink_queue_invalidated",
            "service_data",
            "location_solved",
        };

        for (size_t i = 0; i < CP_ARRAY_LEN(keys); i++) {
                if (json_object_get(root, keys[i]))
                        return true;
        }
        return false;
}

/* ---- fast path: a pruned copy of the message ----
 *
 * jansson reads a document byte by byte through a callback; a 2 KB TTS envelope costs ~30 us, almost
 * all of it in rx_metadata, settings and correlation_ids that no reading needs. So the message is
 * first scanned here: the scanner checks the whole document against the JSON grammar and copies
 * only the members named in the `keep` tables below into a small jansson tree, which the decoder
 * then reads exactly as it would read the full one. The scanner accepts a strict subset of what
 * jansson accepts: at anything it does not handle simply (an escape in a key or in a copied string,
 * integers of 19 digits, long numbers, deep nesting, any error) it gives up, and the payload goes to
 * cp_json_load(), which decodes it fully or reports the error with its position. The result is the
 * same either way; only the time differs. */

#define SCAN_MAX_DEPTH  64
#define SCAN_MAX_NUMBER 40 /* bytes; with at most 2 exponent digits no double overflows */

/* A member to copy. `sub` lists what to copy from the value when it is an object; NULL copies the
 * value as a leaf (a container as an empty one of the same type: only its type is ever read).
 * Tables end with {NULL, NULL}. The decoder must read nothing that is not listed here. */
struct keep {
        const char *key;
        const struct keep *sub;
};

static const struct keep keep_ids[] = {{"device_id", NULL}, {NULL, NULL}};
static const struct keep keep_payload[] = {
    {"occupied", NULL},        {"status", NULL},      {"state", NULL},    {"alarmPark", NULL}, {"volt", NULL},
    {"battery_voltage", NULL}, {"temperature", NULL}, {"humidity", NULL}, {NULL, NULL},
};
static const struct keep keep_uplink[] = {
    {"received_at", NULL}, {"decoded_payload", keep_payload}, {NULL, NULL}};
static const struct keep keep_root[] = {
    {"end_device_ids", keep_ids},
    {"uplink_message", keep_uplink},
    {"received_at", NULL},
    {"simulated", NULL},
    /* Their presence tells the other events apart (is_other_event()). */
    {"join_accept", NULL},
    {"downlink_ack", NULL},
    {"downlink_nack", NULL},
    {"downlink_sent", NULL},
    {"downlink_failed", NULL},
    {"downlink_queued", NULL},
    {"downlink_queue_invalidated", NULL},
    {"service_data", NULL},
    {"location_solved", NULL},
    {NULL, NULL},
};

struct scanner {
        const char *p, *end;
        unsigned depth;
};

static bool scan_value(struct scanner *s, const struct keep *sub, json_t **ret);

static void skip_ws(struct scanner *s)
{
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
                s->p++;
}

static bool is_digit(const struct scanner *s, const char *q)
{
        return q < s->end && *q >= '0' && *q <= '9';
}

/* Length of the well-formed UTF-8 sequence at q (2..4 bytes, RFC 3629: no overlong form, surrogate
 * or code point above U+10FFFF, as jansson checks), or 0. */
static size_t utf8_len(const struct scanner *s, const char *q)
{
        const unsigned char *u = (const unsigned char *)q;
        size_t n, avail = (size_t)(s->end - q);
        unsigned cp;

        if (u[0] >= 0xc2 && u[0] <= 0xdf) {
                n = 2;
                cp = u[0] & 0x1fu;
        } else if (u[0] >= 0xe0 && u[0] <= 0xef) {
                n = 3;
                cp = u[0] & 0x0fu;
        } else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
                n = 4;
                cp = u[0] & 0x07u;
        } else {
                return 0;
        }
        if (avail < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((u[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (u[i] & 0x3fu);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

/* The 4 hex digits of a \u escape at q, or -1. */
static long hex4(const struct scanner *s, const char *q)
{
        long v = 0;

        if (s->end - q < 4)
                return -1;
        for (int i = 0; i < 4; i++) {
                char c = q[i];

                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else
                        return -1;
        }
        return v;
}

/* The escape after the backslash at q, as jansson accepts it: \" \\ \/ \b \f \n \r \t, or \uXXXX that
 * is not \u0000, with surrogates only in high-low pairs. Returns the bytes after the backslash, or 0. */
static size_t escape_len(const struct scanner *s, const char *q)
{
        long v, lo;

        if (q + 1 >= s->end)
                return 0;
        if (strchr("\"\\/bfnrt", q[1]) && q[1] != '\0')
                return 1;
        if (q[1] != 'u' || (v = hex4(s, q + 2)) <= 0 || (v >= 0xdc00 && v <= 0xdfff))
                return 0;
        if (v < 0xd800 || v > 0xdbff)
                return 5;
        if (s->end - q < 12 || q[6] != '\\' || q[7] != 'u' || (lo = hex4(s, q + 8)) < 0xdc00 || lo > 0xdfff)
                return 0;
        return 11;
}

/* A string; *s->p is the opening quote. Well-formed UTF-8 is accepted; escapes only when the string
 * is skipped (ret NULL), since a kept string or a key would have to be unescaped. */
static bool scan_string(struct scanner *s, const char **ret, size_t *ret_len)
{
        const char *q = s->p + 1;

        while (q < s->end) {
                unsigned char c = (unsigned char)*q;
                size_t n;

                if (c == '"') {
                        if (ret) {
                                *ret = s->p + 1;
                                *ret_len = (size_t)(q - *ret);
                        }
                        s->p = q + 1;
                        return true;
                }
                if (c < 0x20)
                        return false;
                if (c < 0x80 && c != '\\') {
                        q++;
                        continue;
                }
                n = c == '\\' ? (ret ? 0 : escape_len(s, q)) : utf8_len(s, q);
                if (n == 0)
                        return false;
                q += c == '\\' ? n + 1 : n;
        }
        return false;
}

/* RFC 8259 number; integers of up to 18 digits and reals of up to SCAN_MAX_NUMBER bytes with at
 * most two exponent digits, so that neither strtoll() nor strtod() can overflow. */
static bool scan_number(struct scanner *s, json_t **ret)
{
        const char *q = s->p, *exp;
        char buf[SCAN_MAX_NUMBER + 1];
        bool real = false;
        size_t len;

        if (q < s->end && *q == '-')
                q++;
        if (!is_digit(s, q))
                return false;
        if (*q == '0')
                q++;
        else
                while (is_digit(s, q))
                        q++;
        if (q < s->end && *q == '.') {
                real = true;
                if (!is_digit(s, ++q))
                        return false;
                while (is_digit(s, q))
                        q++;
        }
        if (q < s->end && (*q == 'e' || *q == 'E')) {
                real = true;
                if (++q < s->end && (*q == '+' || *q == '-'))
                        q++;
                exp = q;
                if (!is_digit(s, q))
                        return false;
                while (is_digit(s, q))
                        q++;
                if (q - exp > 2)
                        return false;
        }
        len = (size_t)(q - s->p);
        if (len > SCAN_MAX_NUMBER || (!real && len - (*s->p == '-') > 18))
                return false;
        if (ret) {
                memcpy(buf, s->p, len);
                buf[len] = '\0';
                *ret = real ? json_real(strtod(buf, NULL)) : json_integer(strtoll(buf, NULL, 10));
                if (!*ret)
                        return false;
        }
        s->p = q;
        return true;
}

static bool scan_literal(struct scanner *s, const char *word, json_t *v, json_t **ret)
{
        size_t n = strlen(word);

        if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
                return false;
        s->p += n;
        if (ret)
                *ret = v;
        return true;
}

static const struct keep *find_keep(const struct keep *k, const char *key, size_t len)
{
        for (; k->key; k++) {
                if (strlen(k->key) == len && memcmp(k->key, key, len) == 0)
                        return k;
        }
        return NULL;
}

/* An object; with ret, a new object holding the members that `sub` lists (a duplicate key
 * replaces the earlier value, as in jansson). */
static bool scan_object(struct scanner *s, const struct keep *sub, json_t **ret)
{
        json_t *obj = NULL;

        if (++s->depth > SCAN_MAX_DEPTH)
                return false;
        s->p++;
        if (ret && !(obj = json_object()))
                return false;
        skip_ws(s);
        if (s->p < s->end && *s->p == '}') {
                s->p++;
                goto out_done;
        }
        for (;;) {
                const struct keep *k = NULL;
                json_t *v = NULL;
                const char *key;
                size_t klen;

                skip_ws(s);
                /* A key is only read where members are kept; elsewhere it may hold escapes. */
                if (s->p >= s->end || *s->p != '"' || !scan_string(s, obj && sub ? &key : NULL, &klen))
                        goto out_fail;
                skip_ws(s);
                if (s->p >= s->end || *s->p != ':')
                        goto out_fail;
                s->p++;
                if (obj && sub)
                        k = find_keep(sub, key, klen);
                if (!scan_value(s, k ? k->sub : NULL, k ? &v : NULL))
                        goto out_fail;
                /* json_object_set_new() takes v even when it fails. */
                if (v && json_object_set_new(obj, k->key, v) < 0)
                        goto out_fail;
                skip_ws(s);
                if (s->p < s->end && *s->p == ',') {
                        s->p++;
                        continue;
                }
                if (s->p < s->end && *s->p == '}') {
                        s->p++;
                        break;
                }
                goto out_fail;
        }
out_done:
        s->depth--;
        if (ret)
                *ret = obj;
        return true;
out_fail:
        json_decref(obj);
        return false;
}

/* An array; with ret, an empty one (no member of an array is ever read). */
static bool scan_array(struct scanner *s, json_t **ret)
{
        if (++s->depth > SCAN_MAX_DEPTH)
                return false;
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == ']') {
                s->p++;
        } else {
                for (;;) {
                        if (!scan_value(s, NULL, NULL))
                                return false;
                        skip_ws(s);
                        if (s->p < s->end && *s->p == ',') {
                                s->p++;
                                continue;
                        }
                        if (s->p < s->end && *s->p == ']') {
                                s->p++;
                                break;
                        }
                        return false;
                }
        }
        s->depth--;
        return !ret || (*ret = json_array()) != NULL;
}

/* One value; with ret, its copy (a new reference), pruned to `sub` when it is an object. On failure
 * nothing is left allocated. */
static bool scan_value(struct scanner *s, const struct keep *sub, json_t **ret)
{
        const char *str;
        size_t len;

        skip_ws(s);
        if (s->p >= s->end)
                return false;
        switch (*s->p) {
        case '{':
                return scan_object(s, sub, ret);
        case '[':
                return scan_array(s, ret);
        case '"':
                if (!scan_string(s, ret ? &str : NULL, &len))
                        return false;
                return !ret || (*ret = json_stringn_nocheck(str, len)) != NULL;
        case 't':
                return scan_literal(s, "true", json_true(), ret);
        case 'f':
                return scan_literal(s, "false", json_false(), ret);
        case 'n':
                return scan_literal(s, "null", json_null(), ret);
        default:
                return scan_number(s, ret);
        }
}

/* The pruned tree of a payload whose root is an object, or NULL when the scanner gives up (then
 * cp_json_load() decides). */
static json_t *load_pruned(const struct cp_msg *msg, const struct keep *keep)
{
        struct scanner s;
        json_t *root = NULL;

        if (!msg->payload || msg->len == 0 || msg->len > CP_JSON_MAX_BYTES)
                return NULL;
        s = (struct scanner){(const char *)msg->payload, (const char *)msg->payload + msg->len, 0};
        skip_ws(&s);
        if (s.p >= s.end || *s.p != '{' || !scan_value(&s, keep, &root))
                return NULL;
        skip_ws(&s);
        if (s.p != s.end) {
                json_decref(root);
                return NULL;
        }
        return root;
}

/* Decodes a loaded message (the full tree or the pruned one: the same result). */
static int decode_root(const struct ttn_state *st, const struct cp_msg *msg, json_t *root,
                       struct cp_batch *out)
{
        const struct cp_tz *tz = st ? st->tz : NULL;
        char dev[CP_SENSOR_ID_MAX];
        json_t *ids, *up, *decoded;
        bool present, simulated = false;
        struct topic_info topic;
        int64_t ts;
        int r;

        if (!json_is_object(root))
                return cp_json_fail_type(out, NULL, "payload", root, "object");
        parse_topic(msg->topic, &topic);
        /* Only /up carries readings; the other events of the device tree are valid and empty. */
        if (topic.kind == TOPIC_OTHER)
                return -ENODATA;
        r = cp_json_get_object(out, root, NULL, "end_device_ids", true, &ids, NULL);
        if (r < 0)
                return r;
        r = cp_json_get_id(out, ids, "end_device_ids", "device_id", false, dev);
        if (r < 0)
                return r;
        if (topic.dev && (strlen(dev) != topic.dev_len || memcmp(dev, topic.dev, topic.dev_len) != 0))
                return cp_batch_fail(out, CP_REASON_ID_MISMATCH,
                                     "end_device_ids.device_id '%s' does not match the topic's device '%.*s'",
                                     dev, (int)CP_MIN(topic.dev_len, 64), topic.dev);
        /* On a TTS /up topic the uplink must be there; elsewhere its absence may mean another event. */
        r = cp_json_get_object(out, root, NULL, "uplink_message", topic.kind == TOPIC_UP, &up, &present);
        if (r < 0)
                return r;
        if (!present) {
                if (is_other_event(root))
                        return -ENODATA;
                return cp_batch_fail(out, CP_REASON_MISSING_FIELD, "uplink_message is missing");
        }
        r = cp_json_get_bool(out, root, NULL, "simulated", false, &simulated, NULL);
        if (r < 0)
                return r;
        if (simulated)
                return -ENODATA;
        r = cp_json_get_time(out, up, "uplink_message", "received_at", false, tz, &ts, &present);
        if (r == 0 && !present)
                r = cp_json_get_time(out, root, NULL, "received_at", false, tz, &ts, &present);
        if (r < 0)
                return r;
        if (!present)
                ts = msg->rx_ms;
        r = cp_json_get_object(out, up, "uplink_message", "decoded_payload", false, &decoded, &present);
        if (r < 0)
                return r;
        if (!present)
                return -ENODATA;
        return decode_fields(out, decoded, dev, ts, msg->rx_ms);
}

static int ttn_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        json_t *root;
        int r;

        cp_batch_reset(out);
        root = load_pruned(msg, keep_root);
        if (!root) {
                r = cp_json_load(msg, out, &root);
                if (r < 0)
                        return r;
        }
        r = decode_root(state, msg, root, out);
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_ttn_v3 = {
    .abi = CP_DRIVER_ABI,
    .name = "ttn_v3",
    .init = ttn_init,
    .free = ttn_free,
    .decode = ttn_decode,
};
