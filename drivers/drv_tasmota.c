/* drv_tasmota.c - Tasmota energy plugs and meters (PAYLOADS.md section 4):
 *
 *   tele/plug-07/SENSOR  {"Time":"2026-03-01T10:59:30","ENERGY":{"TotalStartTime":"2025-11-02T09:12:44",
 *                         "Total":123.456,"Yesterday":1.2,"Today":0.8,"Period":12,"Power":150,
 *                         "ApparentPower":160,"ReactivePower":55,"Factor":0.94,"Voltage":231,"Current":0.69}}
 *
 * Sensor id: the Tasmota topic. With the default FullTopic `%prefix%/%topic%/` that is the level between
 * `tele` (or `stat`) and the message name; a FullTopic that puts more levels around %topic% gives the
 * levels between the prefix and the message name, or, when the prefix is the next-to-last level
 * (`%topic%/%prefix%/`, as in Tasmota's own Teleinfo page), every level before it.
 *
 * Readings from ENERGY: Power -> power_w (signed, as sent), ApparentPower -> apparent_power_va,
 * ReactivePower -> reactive_power_var, Factor -> power_factor, Voltage -> voltage_v, Current ->
 * current_a, Frequency -> frequency_hz, Total -> energy_import_kwh, ExportActive -> energy_export_kwh.
 * Total and ExportActive are kWh counters. Today, Yesterday (kWh, reset daily) and Period (Wh since
 * the last message) are not counters in the contract's sense and are not read; TotalStartTime only
 * dates the counter.
 *
 * Multi-channel devices send arrays, one entry per channel, giving sensors "<topic>:1", "<topic>:2"...
 * A scalar Voltage or Frequency next to arrays is common to every channel (Tasmota's voltage_common)
 * and is repeated for each; any other scalar next to arrays is the device's own figure (with
 * SetOption129 0 Tasmota sums Total over the channels) and goes to "<topic>" itself. Arrays of one
 * message must have the same length.
 *
 * Teleinfo: when the payload carries a TIC object, ENERGY.Power is the meter's PAPP or SINSTS, an
 * apparent power, so it becomes apparent_power_va; ApparentPower, ReactivePower and Factor are then
 * Tasmota's own arithmetic on that VA figure and are not read.
 *
 * Time: `Epoch` (UTC seconds, Tasmota's `Time 1`) when present, else `Time`: a local time without
 * offset read in driver.tasmota.timezone, an offset when SetOption52 is on, or UTC epoch seconds
 * (`Time 2`). A clock before 2016 is Tasmota's "not synchronised yet" (START_VALID_TIME): the
 * receive time is used instead, as for a message without Time.
 *
 * Other messages: stat/<topic>/STATUS<n> with a StatusSNS object decodes like SENSOR; LWT, STATE and
 * the other status messages, command topics (cmnd/...), command results (stat/...) and discovery
 * (tasmota/discovery/...) carry no reading (-ENODATA). An unknown message name on tele/ is refused,
 * so that a misrouted topic shows up in the rejects.
 *
 * Values outside physical bounds (quantity_bounds()) refuse the whole message, like any other error:
 * a meter that reports one impossible figure is not trusted for the others of the same instant. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEZONE "Europe/Paris"
/* Tasmota's energy drivers report a few phases or channels (ENERGY_MAX_PHASES); more than 8 entries
 * is not a Tasmota payload, and 8 channels of 9 quantities still fit one batch. */
#define MAX_CHANNELS 8
/* Tasmota's START_VALID_TIME (2016-01-01T00:00:00Z): an earlier clock has not been set yet. */
#define CLOCK_VALID_FROM_S 1451606400.0
#define CLOCK_VALID_FROM_Y 2016

struct tasmota_state {
        struct cp_tz *tz;
};

struct energy_field {
        const char *key;
        enum cp_quantity q;
        bool common;   /* a scalar next to arrays holds for every channel */
        bool skip_tic; /* derived from Power, which is VA under Teleinfo */
};

static const struct energy_field fields[] = {
    {"Power", CP_Q_POWER_W, false, false},
    {"ApparentPower", CP_Q_APPARENT_POWER_VA, false, true},
    {"ReactivePower", CP_Q_REACTIVE_POWER_VAR, false, true},
    {"Factor", CP_Q_POWER_FACTOR, false, true},
    {"Voltage", CP_Q_VOLTAGE_V, true, false},
    {"Current", CP_Q_CURRENT_A, false, false},
    {"Frequency", CP_Q_FREQUENCY_HZ, true, false},
    {"Total", CP_Q_ENERGY_IMPORT_KWH, false, false},
    {"ExportActive", CP_Q_ENERGY_EXPORT_KWH, false, false},
};
#define NFIELDS CP_ARRAY_LEN(fields)

/* Message names that are status, not measurements (PAYLOADS.md section 4, Tasmota's tele/ topics). */
static const char *const status_names[] = {"LWT",    "STATE",   "INFO1",  "INFO2",     "INFO3",
                                           "UPTIME", "MARGINS", "RESULT", "HASS_STATE"};

static void tasmota_free(void *state)
{
        struct tasmota_state *st = state;

        if (!st)
                return;
        cp_tz_free(st->tz);
        free(st);
}

static int tasmota_init(const struct cp_conf_section *conf, void **ret_state, char *err, size_t errlen)
{
        const char *driver = conf && conf->driver ? conf->driver : "tasmota";
        const char *zone = cp_conf_get(conf, "timezone");
        struct tasmota_state *st;
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

/* ---- values ---- */

/* Whole numbers without exponent, others in the shortest "%g" form that reads back the same. */
static void fmt_num(double d, char *buf, size_t size)
{
        if (d == floor(d) && fabs(d) < 1e15) {
                (void)snprintf(buf, size, "%.0f", d);
                return;
        }
        for (int prec = 1; prec <= 17; prec++) {
                (void)snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return;
        }
}

/* Physically possible values for each quantity: a reading outside says the device or the payload is
 * broken, and storing it would wreck every mean and counter built on it. */
static void quantity_bounds(enum cp_quantity q, double *lo, double *hi)
{
        switch (q) {
        case CP_Q_APPARENT_POWER_VA:
                *lo = 0, *hi = 1e7;
                break;
        case CP_Q_POWER_FACTOR:
                *lo = -1, *hi = 1;
                break;
        case CP_Q_VOLTAGE_V:
                *lo = 0, *hi = 1000;
                break;
        case CP_Q_CURRENT_A:
                *lo = -1e5, *hi = 1e5;
                break;
        case CP_Q_FREQUENCY_HZ:
                *lo = 0, *hi = 1000;
                break;
        case CP_Q_ENERGY_IMPORT_KWH:
        case CP_Q_ENERGY_EXPORT_KWH:
                *lo = 0, *hi = 1e9;
                break;
        default: /* power_w, reactive_power_var: signed */
                *lo = -1e7, *hi = 1e7;
                break;
        }
}

/* Checks one value; `index` < 0 for a scalar, else its position in the array (named "[i]"). */
static int check_value(struct cp_batch *b, const char *path, const char *key, long index, enum cp_quantity q,
                       double v)
{
        char sv[40], slo[40], shi[40];
        double lo, hi;

        quantity_bounds(q, &lo, &hi);
        if (v >= lo && v <= hi)
                return 0;
        fmt_num(v, sv, sizeof(sv));
        fmt_num(lo, slo, sizeof(slo));
        fmt_num(hi, shi, sizeof(shi));
        if (index < 0)
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s.%s is %s, expected %s to %s", path, key,
                                     sv, slo, shi);
        return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s.%s[%ld] is %s, expected %s to %s", path, key,
                             index, sv, slo, shi);
}

/* One ENERGY field as read: a scalar (n 0, in v[0]) or an array of n entries, where a null entry is
 * a channel without this value (has[k] false), as null is absent everywhere else. */
struct field_values {
        bool present;
        uint8_t n;
        enum cp_quantity q; /* the field's, or apparent_power_va for Power under Teleinfo */
        bool has[MAX_CHANNELS];
        double v[MAX_CHANNELS];
};

/* Reads the array `v` of field `key` into fv; its length must match `nch` when that is not 0. */
static int scan_array(struct cp_batch *b, const json_t *v, const char *path, const char *key,
                      const char *first_array, size_t nch, struct field_values *fv)
{
        size_t n = json_array_size(v);
        char name[40];
        int r;

        if (n == 0)
                return cp_batch_fail(b, CP_REASON_BAD_FORMAT, "%s.%s is an empty array", path, key);
        if (n > MAX_CHANNELS)
                return cp_batch_fail(b, CP_REASON_TOO_MANY_READINGS, "%s.%s has %zu entries, limit %d", path,
                                     key, n, MAX_CHANNELS);
        if (first_array && n != nch)
                return cp_batch_fail(b, CP_REASON_INCONSISTENT, "%s.%s has %zu entries, %s.%s has %zu", path,
                                     key, n, path, first_array, nch);
        for (size_t k = 0; k < n; k++) {
                const json_t *e = json_array_get(v, k);

                fv->has[k] = !json_is_null(e);
                if (!fv->has[k])
                        continue;
                if (!json_is_number(e)) {
                        (void)snprintf(name, sizeof(name), "%s[%zu]", key, k);
                        return cp_json_fail_type(b, path, name, e, "number");
                }
                r = check_value(b, path, key, (long)k, fv->q, json_number_value(e));
                if (r < 0)
                        return r;
                fv->v[k] = json_number_value(e);
        }
        fv->present = true;
        fv->n = (uint8_t)n;
        return 0;
}

/* Reads and validates every field of ENERGY into f[]; the channel count (0: no arrays) in *ret_nch. */
static int scan_energy(struct cp_batch *b, const json_t *energy, const char *path, bool tic,
                       struct field_values f[NFIELDS], size_t *ret_nch)
{
        const char *first_array = NULL;
        size_t nch = 0;
        int r;

        for (size_t i = 0; i < NFIELDS; i++) {
                const json_t *v = json_object_get(energy, fields[i].key);

                f[i].present = false;
                f[i].n = 0;
                f[i].q = fields[i].q;
                if (!v || json_is_null(v) || (tic && fields[i].skip_tic))
                        continue;
                if (tic && fields[i].q == CP_Q_POWER_W)
                        f[i].q = CP_Q_APPARENT_POWER_VA;
                if (json_is_number(v)) {
                        r = check_value(b, path, fields[i].key, -1, f[i].q, json_number_value(v));
                        if (r < 0)
                                return r;
                        f[i].present = f[i].has[0] = true;
                        f[i].v[0] = json_number_value(v);
                        continue;
                }
                if (!json_is_array(v))
                        return cp_json_fail_type(b, path, fields[i].key, v, "number or array");
                r = scan_array(b, v, path, fields[i].key, first_array, nch, &f[i]);
                if (r < 0)
                        return r;
                first_array = fields[i].key;
                nch = f[i].n;
        }
        *ret_nch = nch;
        return 0;
}

static int emit_readings(struct cp_batch *b, const struct field_values f[NFIELDS], size_t nch, const char *id,
                         int64_t ts, int64_t rx)
{
        char ch[24];
        int r;

        for (size_t i = 0; i < NFIELDS; i++) {
                /* Without arrays everything is the device's; with them, only the non-common scalars. */
                if (!f[i].present || f[i].n > 0 || (nch > 0 && fields[i].common))
                        continue;
                r = cp_batch_add(b, id, f[i].q, f[i].v[0], ts, rx);
                if (r < 0)
                        return r;
        }
        for (size_t k = 0; k < nch; k++) {
                (void)snprintf(ch, sizeof(ch), "%zu", k + 1);
                for (size_t i = 0; i < NFIELDS; i++) {
                        size_t idx = f[i].n > 0 ? k : 0;

                        if (!f[i].present || (f[i].n == 0 && !fields[i].common) || !f[i].has[idx])
                                continue;
                        r = cp_batch_add_ch(b, id, ch, f[i].q, f[i].v[idx], ts, rx);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* ---- time ---- */

/* Whether a Time/Epoch value is Tasmota's clock before its first synchronisation: a number of
 * seconds, or a "YYYY-..." string, before 2016. */
static bool clock_unset_num(double v)
{
        return v >= 0 && v < CLOCK_VALID_FROM_S;
}

static bool clock_unset_str(const char *s, size_t len)
{
        if (len < 5 || s[4] != '-')
                return false;
        for (int i = 0; i < 4; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
        }
        return (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0') <
               CLOCK_VALID_FROM_Y;
}

static bool clock_unset(const json_t *v)
{
        if (json_is_number(v))
                return clock_unset_num(json_number_value(v));
        return json_is_string(v) && clock_unset_str(json_string_value(v), json_string_length(v));
}

static int read_time(struct cp_batch *b, const struct tasmota_state *st, const json_t *obj, const char *path,
                     int64_t rx, int64_t *ret_ts)
{
        /* Epoch is UTC and needs no zone, so it wins over the local Time sent next to it. */
        const char *key = "Epoch";
        const json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v)) {
                key = "Time";
                v = json_object_get(obj, key);
        }
        *ret_ts = rx;
        if (!v || json_is_null(v) || clock_unset(v))
                return 0;
        /* Without init (a fuzzer, a test) there is no zone, and a time without offset is refused. */
        return cp_json_get_time(b, obj, path, key, false, st ? st->tz : NULL, ret_ts, NULL);
}

/* ---- topic ---- */

static bool level_is(const char *s, size_t len, const char *word)
{
        return strlen(word) == len && memcmp(s, word, len) == 0;
}

static bool is_prefix(const char *s, size_t len)
{
        return level_is(s, len, "tele") || level_is(s, len, "stat") || level_is(s, len, "cmnd");
}

/* The parts of a Tasmota topic: the prefix level (NULL when none) and the id around it. */
struct topic_parts {
        const char *prefix, *id;
        size_t prefix_len, id_len;
};

/* Finds the first tele/stat/cmnd level before `last` (the '/' in front of the message name); the id
 * is what lies between that level and `last`, else, when the prefix is the next-to-last level, what
 * lies before it. */
static void split_topic(const char *topic, const char *last, struct topic_parts *tp)
{
        const char *s = topic;

        *tp = (struct topic_parts){0};
        while (s < last) {
                const char *e = memchr(s, '/', (size_t)(last - s));

                if (!e)
                        e = last;
                if (is_prefix(s, (size_t)(e - s))) {
                        tp->prefix = s;
                        tp->prefix_len = (size_t)(e - s);
                        if (e < last) {
                                tp->id = e + 1;
                                tp->id_len = (size_t)(last - tp->id);
                        } else if (s > topic) {
                                tp->id = topic;
                                tp->id_len = (size_t)(s - 1 - topic);
                        }
                        return;
                }
                s = e + 1;
        }
}

static int topic_id(struct cp_batch *b, const char *topic, const struct topic_parts *tp, char *id)
{
        const char *problem;

        if (!tp->prefix)
                return cp_batch_fail(b, CP_REASON_BAD_ID,
                                     "topic '%s' has no tele, stat or cmnd level to find the Tasmota topic",
                                     topic);
        if (tp->id_len == 0)
                return cp_batch_fail(b, CP_REASON_MISSING_FIELD, "topic '%s' holds no Tasmota topic", topic);
        if (tp->id_len >= CP_SENSOR_ID_MAX)
                return cp_batch_fail(b, CP_REASON_BAD_ID,
                                     "Tasmota topic in '%.60s...' is %zu bytes long, limit %d", topic,
                                     tp->id_len, CP_SENSOR_ID_MAX - 1);
        problem = cp_sensor_id_problem(tp->id, tp->id_len);
        if (problem)
                return cp_batch_fail(b, CP_REASON_BAD_ID, "Tasmota topic '%.*s' %s", (int)tp->id_len, tp->id,
                                     problem);
        memcpy(id, tp->id, tp->id_len);
        id[tp->id_len] = '\0';
        return 0;
}

/* STATUS, STATUS0 ... STATUS13: Tasmota's answers to the Status command. */
static bool is_status_reply(const char *name)
{
        if (strncmp(name, "STATUS", 6) != 0)
                return false;
        for (name += 6; *name; name++) {
                if (*name < '0' || *name > '9')
                        return false;
        }
        return true;
}

/* Status 0 also names the device: Status.Topic is the %topic% of the FullTopic, so the id is that
 * or ends in "/<Topic>" (a FullTopic with more levels). */
static int check_status_topic(struct cp_batch *b, const json_t *root, const char *id)
{
        const json_t *status = json_object_get(root, "Status");
        const json_t *t = json_object_get(status, "Topic");
        size_t idl = strlen(id), tl;

        if (!json_is_string(t))
                return 0;
        tl = json_string_length(t);
        if (tl == idl ? memcmp(id, json_string_value(t), tl) == 0
                      : (tl < idl && id[idl - tl - 1] == '/' &&
                         memcmp(id + idl - tl, json_string_value(t), tl) == 0))
                return 0;
        return cp_batch_fail(b, CP_REASON_ID_MISMATCH, "Status.Topic '%s' contradicts topic id '%s'",
                             json_string_value(t), id);
}

/* ---- fast path ----
 *
 * jansson builds a tree of the whole payload, which costs most of a decode. The common message (a
 * well-formed SENSOR) is instead read by a strict scanner that accepts only a subset of JSON (no
 * escapes, printable ASCII strings, shallow nesting, integers of up to 18 digits, finite reals) and
 * reads it exactly as jansson would: the last of duplicate keys wins, integers go through int64,
 * reals through strtod. Whatever it does not accept, and every message that would be refused, goes
 * the jansson way below, which alone writes error texts. */

#define LITE_MAX_DEPTH 32

struct lite {
        const char *p, *end;
        unsigned depth;
};

static void lite_ws(struct lite *x)
{
        while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\n' || *x->p == '\r'))
                x->p++;
}

static bool lite_string(struct lite *x, const char **ret, size_t *ret_len)
{
        const char *s;

        if (x->p >= x->end || *x->p != '"')
                return false;
        s = ++x->p;
        for (; x->p < x->end; x->p++) {
                unsigned char c = (unsigned char)*x->p;

                if (c == '"') {
                        *ret = s;
                        *ret_len = (size_t)(x->p++ - s);
                        return true;
                }
                if (c < 0x20 || c >= 0x7f || c == '\\')
                        return false;
        }
        return false;
}

static bool lite_digits(struct lite *x)
{
        const char *s = x->p;

        while (x->p < x->end && *x->p >= '0' && *x->p <= '9')
                x->p++;
        return x->p > s;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool lite_number(struct lite *x, double *ret)
{
        const char *s = x->p;
        bool neg = false, real = false;
        char buf[64];
        int64_t iv = 0;

        if (x->p < x->end && *x->p == '-') {
                neg = true;
                x->p++;
        }
        if (x->p >= x->end || *x->p < '0' || *x->p > '9')
                return false;
        if (*x->p == '0')
                x->p++;
        else
                (void)lite_digits(x);
        if (x->p < x->end && *x->p == '.') {
                real = true;
                x->p++;
                if (!lite_digits(x))
                        return false;
        }
        if (x->p < x->end && (*x->p == 'e' || *x->p == 'E')) {
                real = true;
                x->p++;
                if (x->p < x->end && (*x->p == '+' || *x->p == '-'))
                        x->p++;
                if (!lite_digits(x))
                        return false;
        }
        if (!real) {
                /* 18 digits always fit an int64; jansson converts its json_int_t the same way. */
                if (x->p - s - neg > 18)
                        return false;
                for (const char *d = s + neg; d < x->p; d++)
                        iv = iv * 10 + (*d - '0');
                *ret = (double)(neg ? -iv : iv);
                return true;
        }
        if ((size_t)(x->p - s) >= sizeof(buf))
                return false;
        memcpy(buf, s, (size_t)(x->p - s));
        buf[x->p - s] = '\0';
        *ret = strtod(buf, NULL);
        return isfinite(*ret);
}

static bool lite_word(struct lite *x, const char *word, size_t len)
{
        if ((size_t)(x->end - x->p) < len || memcmp(x->p, word, len) != 0)
                return false;
        x->p += len;
        return true;
}

/* Moves to the next member of an object whose '{' was read: 1 with its key and x->p at the value (not
 * at the end), 0 at the closing '}', -1 on anything else. */
static int lite_next_key(struct lite *x, bool *first, const char **key, size_t *key_len)
{
        lite_ws(x);
        if (x->p >= x->end)
                return -1;
        if (*x->p == '}') {
                x->p++;
                return 0;
        }
        if (!*first) {
                if (*x->p != ',')
                        return -1;
                x->p++;
                lite_ws(x);
        }
        *first = false;
        if (!lite_string(x, key, key_len))
                return -1;
        lite_ws(x);
        if (x->p >= x->end || *x->p != ':')
                return -1;
        x->p++;
        lite_ws(x);
        return x->p < x->end ? 1 : -1;
}

/* The same for arrays: 1 with x->p at the next element (not at the end), 0 at the closing ']'. */
static int lite_next_elem(struct lite *x, bool *first)
{
        lite_ws(x);
        if (x->p >= x->end)
                return -1;
        if (*x->p == ']') {
                x->p++;
                return 0;
        }
        if (!*first) {
                if (*x->p != ',')
                        return -1;
                x->p++;
                lite_ws(x);
        }
        *first = false;
        return x->p < x->end ? 1 : -1;
}

/* Checks and steps over one value of any type. */
static bool lite_skip(struct lite *x)
{
        bool first = true;
        const char *s;
        size_t n;
        double d;
        int r;

        if (x->p >= x->end)
                return false;
        switch (*x->p) {
        case '"':
                return lite_string(x, &s, &n);
        case '{':
        case '[':
                if (++x->depth > LITE_MAX_DEPTH)
                        return false;
                if (*x->p++ == '{') {
                        while ((r = lite_next_key(x, &first, &s, &n)) > 0) {
                                if (!lite_skip(x))
                                        return false;
                        }
                } else {
                        while ((r = lite_next_elem(x, &first)) > 0) {
                                if (!lite_skip(x))
                                        return false;
                        }
                }
                x->depth--;
                return r == 0;
        case 't':
                return lite_word(x, "true", 4);
        case 'f':
                return lite_word(x, "false", 5);
        case 'n':
                return lite_word(x, "null", 4);
        default:
                return lite_number(x, &d);
        }
}

static bool lite_key_is(const char *key, size_t len, const char *name)
{
        return strlen(name) == len && memcmp(key, name, len) == 0;
}

/* One ENERGY field: null (absent), a number, or an array of numbers and nulls. The lite_*() readers
 * of a member value start where lite_next_key() left x->p, on a byte of the value. */
static bool lite_field(struct lite *x, struct field_values *fv)
{
        bool first = true;
        int r;

        fv->present = false;
        fv->n = 0;
        if (*x->p == 'n')
                return lite_word(x, "null", 4);
        if (*x->p != '[') {
                fv->present = fv->has[0] = true;
                return lite_number(x, &fv->v[0]);
        }
        x->p++;
        while ((r = lite_next_elem(x, &first)) > 0) {
                if (fv->n == MAX_CHANNELS)
                        return false;
                fv->has[fv->n] = *x->p != 'n';
                if (!(fv->has[fv->n] ? lite_number(x, &fv->v[fv->n]) : lite_word(x, "null", 4)))
                        return false;
                fv->n++;
        }
        fv->present = true;
        return r == 0 && fv->n > 0;
}

/* The parts of a SENSOR payload the decode needs. */
struct lite_sensor {
        struct lite_time {
                const char *s; /* a string, else a number (num) when present */
                size_t len;
                double num;
                bool present;
        } time, epoch;
        bool tic, has_energy;
        struct field_values f[NFIELDS];
};

static bool lite_time_value(struct lite *x, struct lite_time *t)
{
        t->present = false;
        t->s = NULL;
        if (*x->p == 'n')
                return lite_word(x, "null", 4);
        t->present = true;
        if (*x->p == '"')
                return lite_string(x, &t->s, &t->len);
        return lite_number(x, &t->num);
}

static bool lite_energy(struct lite *x, struct lite_sensor *ls)
{
        bool first = true;
        const char *k;
        size_t kn;
        int r;

        for (size_t i = 0; i < NFIELDS; i++)
                ls->f[i].present = false;
        ls->has_energy = false;
        if (*x->p == 'n')
                return lite_word(x, "null", 4);
        if (*x->p != '{')
                return false;
        x->p++;
        ls->has_energy = true;
        while ((r = lite_next_key(x, &first, &k, &kn)) > 0) {
                size_t i = 0;

                while (i < NFIELDS && !lite_key_is(k, kn, fields[i].key))
                        i++;
                if (!(i < NFIELDS ? lite_field(x, &ls->f[i]) : lite_skip(x)))
                        return false;
        }
        return r == 0;
}

static bool lite_parse_sensor(const struct cp_msg *msg, struct lite_sensor *ls)
{
        struct lite x = {(const char *)msg->payload, (const char *)msg->payload + msg->len, 1};
        bool first = true;
        const char *k;
        size_t kn;
        bool ok;
        int r;

        ls->time.present = ls->epoch.present = ls->tic = ls->has_energy = false;
        for (size_t i = 0; i < NFIELDS; i++)
                ls->f[i].present = false;
        lite_ws(&x);
        if (x.p >= x.end || *x.p != '{')
                return false;
        x.p++;
        while ((r = lite_next_key(&x, &first, &k, &kn)) > 0) {
                if (lite_key_is(k, kn, "ENERGY")) {
                        ok = lite_energy(&x, ls);
                } else if (lite_key_is(k, kn, "Time")) {
                        ok = lite_time_value(&x, &ls->time);
                } else if (lite_key_is(k, kn, "Epoch")) {
                        ok = lite_time_value(&x, &ls->epoch);
                } else if (lite_key_is(k, kn, "TIC")) {
                        ls->tic = *x.p != 'n';
                        ok = lite_skip(&x);
                } else {
                        ok = lite_skip(&x);
                }
                if (!ok)
                        return false;
        }
        lite_ws(&x);
        return r == 0 && x.p == x.end;
}

/* The checks of scan_energy() and read_time(), without texts. */
static bool lite_check(const struct tasmota_state *st, struct lite_sensor *ls, int64_t rx, size_t *ret_nch,
                       int64_t *ret_ts)
{
        const struct lite_time *t = ls->epoch.present ? &ls->epoch : &ls->time;
        size_t nch = 0;
        double lo, hi;

        for (size_t i = 0; i < NFIELDS; i++) {
                struct field_values *fv = &ls->f[i];

                if (!fv->present || (ls->tic && fields[i].skip_tic)) {
                        fv->present = false;
                        continue;
                }
                fv->q = ls->tic && fields[i].q == CP_Q_POWER_W ? CP_Q_APPARENT_POWER_VA : fields[i].q;
                if (fv->n > 0) {
                        if (nch > 0 && fv->n != nch)
                                return false;
                        nch = fv->n;
                }
                quantity_bounds(fv->q, &lo, &hi);
                for (size_t k = 0; k < (fv->n ? fv->n : 1u); k++) {
                        if (fv->has[k] && !(fv->v[k] >= lo && fv->v[k] <= hi))
                                return false;
                }
        }
        *ret_nch = nch;
        *ret_ts = rx;
        if (!t->present || (t->s ? clock_unset_str(t->s, t->len) : clock_unset_num(t->num)))
                return true;
        if (!t->s)
                return cp_time_from_epoch(t->num, ret_ts) == 0;
        return cp_time_parse(t->s, t->len, st ? st->tz : NULL, ret_ts) == 0 && *ret_ts >= CP_TIME_MIN_MS &&
               *ret_ts < CP_TIME_MAX_MS;
}

/* Decodes a SENSOR message the fast way: returns 0 or -ENODATA as the full decode would, or 1 when
 * the message needs the full decode. */
static int lite_decode(const struct tasmota_state *st, const struct cp_msg *msg, struct cp_batch *out,
                       const char *id)
{
        struct lite_sensor ls;
        bool any = false;
        size_t nch;
        int64_t ts;

        if (msg->len == 0 || msg->len > CP_JSON_MAX_BYTES || !msg->payload || !lite_parse_sensor(msg, &ls))
                return 1;
        if (!ls.has_energy)
                return -ENODATA;
        if (!lite_check(st, &ls, msg->rx_ms, &nch, &ts))
                return 1;
        for (size_t i = 0; i < NFIELDS; i++)
                any = any || ls.f[i].present;
        if (!any)
                return -ENODATA;
        /* A failure here (a bad id, a full batch) is the full decode's failure too. */
        return emit_readings(out, ls.f, nch, id, ts, msg->rx_ms);
}

/* ---- decode ---- */

/* Decodes the ENERGY of `obj` (the payload, or StatusSNS of a status reply named by `path`). */
static int decode_energy(const struct tasmota_state *st, const struct cp_msg *msg, struct cp_batch *out,
                         const json_t *obj, const char *path, const char *id)
{
        const json_t *tic = json_object_get(obj, "TIC");
        struct field_values f[NFIELDS] = {0};
        char epath[32];
        json_t *energy;
        bool has_energy, any = false;
        size_t nch = 0;
        int64_t ts;
        int r;

        r = cp_json_get_object(out, obj, path, "ENERGY", false, &energy, &has_energy);
        if (r < 0)
                return r;
        /* A SENSOR of a plug without energy monitor (a DS18B20, an AM2301...) measures nothing ours. */
        if (!has_energy)
                return -ENODATA;
        (void)snprintf(epath, sizeof(epath), "%s%sENERGY", path ? path : "", path ? "." : "");
        r = scan_energy(out, energy, epath, tic && !json_is_null(tic), f, &nch);
        if (r < 0)
                return r;
        for (size_t i = 0; i < NFIELDS; i++)
                any = any || f[i].present;
        if (!any)
                return -ENODATA;
        r = read_time(out, st, obj, path, msg->rx_ms, &ts);
        if (r < 0)
                return r;
        return emit_readings(out, f, nch, id, ts, msg->rx_ms);
}

/* What a topic carries, from its message name and prefix level. */
enum topic_kind {
        TOPIC_SENSOR,  /* tele/<topic>/SENSOR */
        TOPIC_STATUS,  /* stat/<topic>/STATUS<n>: StatusSNS, when present, is a SENSOR */
        TOPIC_NODATA,  /* status, commands, command results, discovery */
        TOPIC_UNKNOWN, /* a message name this driver does not know */
};

static enum topic_kind classify_topic(const char *topic, const char *name, const struct topic_parts *tp)
{
        /* Status first, whatever the payload: an LWT is plain text and may be an empty retained clear. */
        for (size_t i = 0; i < CP_ARRAY_LEN(status_names); i++) {
                if (strcmp(name, status_names[i]) == 0)
                        return TOPIC_NODATA;
        }
        if (strncmp(topic, "tasmota/discovery/", 18) == 0)
                return TOPIC_NODATA;
        if (tp->prefix && level_is(tp->prefix, tp->prefix_len, "cmnd"))
                return TOPIC_NODATA;
        if (strcmp(name, "SENSOR") == 0)
                return TOPIC_SENSOR;
        if (is_status_reply(name))
                return TOPIC_STATUS;
        /* stat/<topic>/<command>: the result of a command (POWER, RESULT, UPGRADE, ...). */
        if (tp->prefix && level_is(tp->prefix, tp->prefix_len, "stat"))
                return TOPIC_NODATA;
        return TOPIC_UNKNOWN;
}

static int tasmota_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct tasmota_state *st = state;
        const char *topic = msg->topic ? msg->topic : "";
        const char *slash = strrchr(topic, '/');
        const char *name = slash ? slash + 1 : topic;
        char id[CP_SENSOR_ID_MAX];
        enum topic_kind kind;
        struct topic_parts tp;
        json_t *root = NULL, *sns = NULL;
        bool has_sns;
        int r;

        cp_batch_reset(out);
        split_topic(topic, slash ? slash : topic, &tp);
        kind = classify_topic(topic, name, &tp);
        if (kind == TOPIC_NODATA)
                return -ENODATA;
        if (kind == TOPIC_UNKNOWN)
                return cp_batch_fail(
                    out, CP_REASON_UNSUPPORTED,
                    "Tasmota message '%s' is not handled: expected SENSOR, STATUS10 or a status message",
                    name);
        r = topic_id(out, topic, &tp, id);
        if (r < 0)
                return r;
        if (kind == TOPIC_SENSOR) {
                r = lite_decode(st, msg, out, id);
                if (r <= 0)
                        return r;
        }
        r = cp_json_load(msg, out, &root);
        if (r < 0)
                return r;
        if (!json_is_object(root)) {
                r = cp_json_fail_type(out, NULL, "payload", root, "object");
                goto out_decref;
        }
        if (kind == TOPIC_SENSOR) {
                r = decode_energy(st, msg, out, root, NULL, id);
                goto out_decref;
        }
        r = check_status_topic(out, root, id);
        if (r < 0)
                goto out_decref;
        r = cp_json_get_object(out, root, NULL, "StatusSNS", false, &sns, &has_sns);
        if (r < 0)
                goto out_decref;
        r = has_sns ? decode_energy(st, msg, out, sns, "StatusSNS", id) : -ENODATA;
out_decref:
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_tasmota = {
    .abi = CP_DRIVER_ABI,
    .name = "tasmota",
    .init = tasmota_init,
    .free = tasmota_free,
    .decode = tasmota_decode,
};
