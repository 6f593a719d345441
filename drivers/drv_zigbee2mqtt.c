/* drv_zigbee2mqtt.c - Zigbee2MQTT device state (PAYLOADS.md section 6):
 *
 *   zigbee2mqtt/garage/level-1/ev-plug-07  {"state":"ON","power":1840,"voltage":231,"current":7.98,
 *                                           "energy":412.37,"linkquality":96,"child_lock":"UNLOCK"}
 *
 * Sensor id: the friendly name, i.e. every topic level after the base topic (driver.zigbee2mqtt.
 * base_topic, default "zigbee2mqtt"); it may contain '/'. With include_device_information the payload
 * also names the device (device.friendlyName), and a name that contradicts the topic is refused.
 *
 * Readings (keys and units of zigbee-herdsman-converters' exposes): power (W, signed) -> power_w,
 * power_apparent (VA) -> apparent_power_va, power_reactive (var) -> reactive_power_var, voltage (V) ->
 * voltage_v, current (A) -> current_a, ac_frequency (Hz) -> frequency_hz, energy (kWh, cumulative) ->
 * energy_import_kwh, produced_energy (kWh, returned to the grid) -> energy_export_kwh, temperature
 * (degC) -> temperature_c, humidity (%) -> humidity_pct.
 * A battery-powered device (one that reports `battery`) sends `voltage` as its battery voltage in mV
 * (the battery_voltage expose): that becomes battery_v in V, never voltage_v. `battery` itself is a
 * percentage, which no quantity of the contract holds, so it is not a reading; neither are
 * linkquality, state, device_temperature (the plug's own electronics) or power_factor (sent as a
 * fraction by some converters and in % by others).
 *
 * Time: last_seen when Zigbee2MQTT is set to send it (ISO_8601 with Z, ISO_8601_local with an offset,
 * or epoch milliseconds; a time without offset is read in driver.zigbee2mqtt.timezone), else the
 * receive time. Every message is the device's full cached state, observed at that time.
 *
 * Not readings (-ENODATA): <name>/availability ("online"/"offline", or {"state":"online"}),
 * <name>/set, <name>/get and their /set/<attribute> forms (commands), everything under <base>/bridge,
 * the empty retained message Zigbee2MQTT publishes to clear a removed or renamed device, and a state
 * without any of the keys above (a switch, a button, a group).
 *
 * Values outside physical bounds refuse the whole message, like any other error. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEZONE   "Europe/Paris"
#define DEFAULT_BASE_TOPIC "zigbee2mqtt"

struct z2m_state {
        struct cp_tz *tz;
        char base[CP_SENSOR_ID_MAX];
        size_t base_len;
};

struct state_field {
        const char *key;
        enum cp_quantity q;
};

/* In emission order. VOLTAGE is found by its quantity: it turns into battery_v on battery devices. */
static const struct state_field fields[] = {
    {"power", CP_Q_POWER_W},
    {"power_apparent", CP_Q_APPARENT_POWER_VA},
    {"power_reactive", CP_Q_REACTIVE_POWER_VAR},
    {"voltage", CP_Q_VOLTAGE_V},
    {"current", CP_Q_CURRENT_A},
    {"ac_frequency", CP_Q_FREQUENCY_HZ},
    {"energy", CP_Q_ENERGY_IMPORT_KWH},
    {"produced_energy", CP_Q_ENERGY_EXPORT_KWH},
    {"temperature", CP_Q_TEMPERATURE_C},
    {"humidity", CP_Q_HUMIDITY_PCT},
};
#define NFIELDS CP_ARRAY_LEN(fields)

/* millivolts per volt: the unit of a battery device's `voltage` */
#define MV_PER_V 1000.0

static void z2m_free(void *state)
{
        struct z2m_state *st = state;

        if (!st)
                return;
        cp_tz_free(st->tz);
        free(st);
}

/* The base topic is a plain topic prefix: no wildcard, no empty level at either end. */
static const char *base_topic_problem(const char *base)
{
        size_t len = strlen(base);

        if (len == 0)
                return "is empty";
        if (len >= CP_SENSOR_ID_MAX)
                return "is too long";
        if (strpbrk(base, "+#"))
                return "contains an MQTT wildcard";
        if (base[0] == '/' || base[len - 1] == '/')
                return "starts or ends with '/'";
        return NULL;
}

static int z2m_init(const struct cp_conf_section *conf, void **ret_state, char *err, size_t errlen)
{
        const char *driver = conf && conf->driver ? conf->driver : "zigbee2mqtt";
        const char *zone = cp_conf_get(conf, "timezone");
        const char *base = cp_conf_get(conf, "base_topic");
        const char *problem;
        struct z2m_state *st;
        int r;

        for (size_t i = 0; conf && i < conf->n; i++) {
                const char *key = conf->kv[i].key;

                if (!key || (strcmp(key, "timezone") != 0 && strcmp(key, "base_topic") != 0)) {
                        (void)snprintf(err, errlen, "driver.%s.%s: unknown key", driver, key ? key : "");
                        return -EINVAL;
                }
        }
        if (!zone)
                zone = DEFAULT_TIMEZONE;
        if (!base)
                base = DEFAULT_BASE_TOPIC;
        problem = base_topic_problem(base);
        if (problem) {
                (void)snprintf(err, errlen, "driver.%s.base_topic: '%s' %s", driver, base, problem);
                return -EINVAL;
        }
        st = calloc(1, sizeof(*st));
        if (!st) {
                (void)snprintf(err, errlen, "driver.%s: out of memory", driver);
                return -ENOMEM;
        }
        st->base_len = strlen(base);
        memcpy(st->base, base, st->base_len + 1);
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
        case CP_Q_BATTERY_V:
                *lo = 0, *hi = 100;
                break;
        case CP_Q_TEMPERATURE_C:
                *lo = -273.15, *hi = 1000;
                break;
        case CP_Q_HUMIDITY_PCT:
                *lo = 0, *hi = 100;
                break;
        default: /* power_w, reactive_power_var: signed */
                *lo = -1e7, *hi = 1e7;
                break;
        }
}

/* The quantity and the unit scale of field i: `voltage` of a battery device is battery_v in mV. */
static enum cp_quantity field_quantity(size_t i, bool battery, double *ret_scale)
{
        *ret_scale = 1.0;
        if (fields[i].q == CP_Q_VOLTAGE_V && battery) {
                *ret_scale = MV_PER_V;
                return CP_Q_BATTERY_V;
        }
        return fields[i].q;
}

static bool in_bounds(enum cp_quantity q, double scale, double v)
{
        double lo, hi;

        quantity_bounds(q, &lo, &hi);
        return v >= lo * scale && v <= hi * scale;
}

/* The values of one state message, in the units sent; has[i] says which fields were there. */
struct state_values {
        bool has[NFIELDS];
        double v[NFIELDS];
        bool battery;
};

/* Reads and checks the fields of `root`; the texts name the key and the bounds in the unit sent. */
static int scan_state(struct cp_batch *b, const json_t *root, struct state_values *sv)
{
        const json_t *battery = json_object_get(root, "battery");
        char sval[40], slo[40], shi[40];
        double scale, lo, hi;
        enum cp_quantity q;
        int r;

        sv->battery = battery && !json_is_null(battery);
        for (size_t i = 0; i < NFIELDS; i++) {
                r = cp_json_get_number(b, root, NULL, fields[i].key, false, &sv->v[i], &sv->has[i]);
                if (r < 0)
                        return r;
                q = field_quantity(i, sv->battery, &scale);
                if (!sv->has[i] || in_bounds(q, scale, sv->v[i]))
                        continue;
                quantity_bounds(q, &lo, &hi);
                fmt_num(sv->v[i], sval, sizeof(sval));
                fmt_num(lo * scale, slo, sizeof(slo));
                fmt_num(hi * scale, shi, sizeof(shi));
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s is %s, expected %s to %s%s",
                                     fields[i].key, sval, slo, shi,
                                     scale != 1.0 ? " (mV, battery device)" : "");
        }
        return 0;
}

static int emit_readings(struct cp_batch *b, const struct state_values *sv, const char *id, int64_t ts,
                         int64_t rx)
{
        double scale;
        int r;

        for (size_t i = 0; i < NFIELDS; i++) {
                enum cp_quantity q = field_quantity(i, sv->battery, &scale);

                if (!sv->has[i])
                        continue;
                r = cp_batch_add(b, id, q, sv->v[i] / scale, ts, rx);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool any_value(const struct state_values *sv)
{
        for (size_t i = 0; i < NFIELDS; i++) {
                if (sv->has[i])
                        return true;
        }
        return false;
}

/* ---- fast path ----
 *
 * jansson builds a tree of the whole payload, which costs most of a decode. The common message (a
 * well-formed state) is instead read by a strict scanner that accepts only a subset of JSON (no
 * escapes, printable ASCII strings, shallow nesting, integers of up to 18 digits, finite reals) and
 * reads it exactly as jansson would: the last of duplicate keys wins, integers go through int64,
 * reals through strtod. Whatever it does not accept, and every message that would be refused, goes
 * the jansson way below, which alone writes error texts. The scanner is the same as drv_tasmota.c's. */

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

/* The parts of a state payload the decode needs. */
struct lite_state {
        struct state_values sv;
        const char *last_seen, *friendly; /* a string when not NULL */
        size_t last_seen_len, friendly_len;
        double last_seen_num; /* when has_last_seen and last_seen is NULL */
        bool has_last_seen;
};

/* A number or null for field i. The lite_*() readers of a member value start where lite_next_key()
 * left x->p, on a byte of the value. */
static bool lite_field(struct lite *x, struct state_values *sv, size_t i)
{
        sv->has[i] = *x->p != 'n';
        return sv->has[i] ? lite_number(x, &sv->v[i]) : lite_word(x, "null", 4);
}

static bool lite_last_seen(struct lite *x, struct lite_state *ls)
{
        ls->has_last_seen = *x->p != 'n';
        ls->last_seen = NULL;
        if (!ls->has_last_seen)
                return lite_word(x, "null", 4);
        if (*x->p == '"')
                return lite_string(x, &ls->last_seen, &ls->last_seen_len);
        return lite_number(x, &ls->last_seen_num);
}

/* device: null or an object whose friendlyName is null or a string. */
static bool lite_device(struct lite *x, struct lite_state *ls)
{
        bool first = true;
        const char *k;
        size_t kn;
        int r;

        ls->friendly = NULL;
        if (*x->p == 'n')
                return lite_word(x, "null", 4);
        if (*x->p != '{')
                return false;
        x->p++;
        while ((r = lite_next_key(x, &first, &k, &kn)) > 0) {
                bool ok;

                if (!lite_key_is(k, kn, "friendlyName")) {
                        ok = lite_skip(x);
                } else if (*x->p == 'n') {
                        ls->friendly = NULL;
                        ok = lite_word(x, "null", 4);
                } else {
                        ok = lite_string(x, &ls->friendly, &ls->friendly_len);
                }
                if (!ok)
                        return false;
        }
        return r == 0;
}

static bool lite_parse_state(const struct cp_msg *msg, struct lite_state *ls)
{
        struct lite x = {(const char *)msg->payload, (const char *)msg->payload + msg->len, 1};
        bool first = true, ok;
        const char *k;
        size_t kn;
        int r;

        memset(ls->sv.has, 0, sizeof(ls->sv.has));
        ls->sv.battery = ls->has_last_seen = false;
        ls->friendly = ls->last_seen = NULL;
        lite_ws(&x);
        if (x.p >= x.end || *x.p != '{')
                return false;
        x.p++;
        while ((r = lite_next_key(&x, &first, &k, &kn)) > 0) {
                size_t i = 0;

                while (i < NFIELDS && !lite_key_is(k, kn, fields[i].key))
                        i++;
                if (i < NFIELDS) {
                        ok = lite_field(&x, &ls->sv, i);
                } else if (lite_key_is(k, kn, "battery")) {
                        ls->sv.battery = *x.p != 'n';
                        ok = lite_skip(&x);
                } else if (lite_key_is(k, kn, "last_seen")) {
                        ok = lite_last_seen(&x, ls);
                } else if (lite_key_is(k, kn, "device")) {
                        ok = lite_device(&x, ls);
                } else {
                        ok = lite_skip(&x);
                }
                if (!ok)
                        return false;
        }
        lite_ws(&x);
        return r == 0 && x.p == x.end;
}

/* Decodes a state the fast way: returns 0 or -ENODATA as the full decode would, or 1 when the message
 * needs the full decode (anything unusual, and every message the full decode would refuse). */
static int lite_decode(const struct z2m_state *st, const struct cp_msg *msg, struct cp_batch *out,
                       const char *id)
{
        struct lite_state ls;
        double scale;
        int64_t ts = msg->rx_ms;

        if (msg->len > CP_JSON_MAX_BYTES || !msg->payload || !lite_parse_state(msg, &ls))
                return 1;
        if (ls.friendly && (ls.friendly_len != strlen(id) || memcmp(ls.friendly, id, ls.friendly_len) != 0))
                return 1;
        for (size_t i = 0; i < NFIELDS; i++) {
                enum cp_quantity q = field_quantity(i, ls.sv.battery, &scale);

                if (ls.sv.has[i] && !in_bounds(q, scale, ls.sv.v[i]))
                        return 1;
        }
        if (!any_value(&ls.sv))
                return -ENODATA;
        if (ls.has_last_seen) {
                if (ls.last_seen) {
                        if (cp_time_parse(ls.last_seen, ls.last_seen_len, st ? st->tz : NULL, &ts) < 0 ||
                            ts < CP_TIME_MIN_MS || ts >= CP_TIME_MAX_MS)
                                return 1;
                } else if (cp_time_from_epoch(ls.last_seen_num, &ts) < 0) {
                        return 1;
                }
        }
        return emit_readings(out, &ls.sv, id, ts, msg->rx_ms);
}

/* ---- topic ---- */

static bool level_is(const char *s, size_t len, const char *word)
{
        return strlen(word) == len && memcmp(s, word, len) == 0;
}

/* Whether `name` (the topic after the base) is a status or command topic rather than a device state:
 * <base>/bridge/..., <name>/availability, <name>/set|get, <name>/set|get/<attribute>. */
static bool is_status_topic(const char *name)
{
        const char *last = strrchr(name, '/'), *prev;
        size_t len;

        if (strcmp(name, "bridge") == 0 || strncmp(name, "bridge/", 7) == 0)
                return true;
        if (!last)
                return false;
        len = strlen(last + 1);
        if (level_is(last + 1, len, "availability") || level_is(last + 1, len, "set") ||
            level_is(last + 1, len, "get"))
                return true;
        for (prev = last; prev > name && prev[-1] != '/'; prev--)
                ;
        return prev > name &&
               (level_is(prev, (size_t)(last - prev), "set") || level_is(prev, (size_t)(last - prev), "get"));
}

/* The friendly name: the topic after "<base>/"; NULL, with the reason in b, when there is none. */
static const char *topic_name(struct cp_batch *b, const struct z2m_state *st, const char *topic)
{
        const char *base = st ? st->base : DEFAULT_BASE_TOPIC;
        size_t blen = st ? st->base_len : strlen(DEFAULT_BASE_TOPIC);

        if (strncmp(topic, base, blen) != 0 || (topic[blen] != '/' && topic[blen] != '\0')) {
                (void)cp_batch_fail(b, CP_REASON_BAD_ID, "topic '%s' is not under the base topic '%s'", topic,
                                    base);
                return NULL;
        }
        if (topic[blen] == '\0' || topic[blen + 1] == '\0') {
                (void)cp_batch_fail(b, CP_REASON_MISSING_FIELD,
                                    "topic '%s' holds no friendly name after '%s'", topic, base);
                return NULL;
        }
        return topic + blen + 1;
}

/* Checks the friendly name of a state topic as a sensor id. */
static int check_name(struct cp_batch *b, const char *name)
{
        size_t len = strlen(name);
        const char *problem;

        if (len >= CP_SENSOR_ID_MAX)
                return cp_batch_fail(b, CP_REASON_BAD_ID,
                                     "friendly name '%.40s...' is %zu bytes long, limit %d", name, len,
                                     CP_SENSOR_ID_MAX - 1);
        problem = cp_sensor_id_problem(name, len);
        if (problem)
                return cp_batch_fail(b, CP_REASON_BAD_ID, "friendly name '%s' %s", name, problem);
        /* Zigbee2MQTT refuses such names; one here is a topic that is not a device's. */
        if (name[0] == '/' || name[len - 1] == '/' || strstr(name, "//"))
                return cp_batch_fail(b, CP_REASON_BAD_ID, "friendly name '%s' has an empty topic level",
                                     name);
        return 0;
}

/* ---- decode ---- */

static int check_device(struct cp_batch *b, const json_t *root, const char *name)
{
        const char *friendly;
        bool has_dev, has_name;
        json_t *dev;
        int r;

        r = cp_json_get_object(b, root, NULL, "device", false, &dev, &has_dev);
        if (r < 0 || !has_dev)
                return r;
        r = cp_json_get_string(b, dev, "device", "friendlyName", false, SIZE_MAX, &friendly, &has_name);
        if (r < 0 || !has_name || strcmp(friendly, name) == 0)
                return r;
        return cp_batch_fail(b, CP_REASON_ID_MISMATCH,
                             "device.friendlyName '%.70s' contradicts topic name '%.70s'", friendly, name);
}

static int z2m_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct z2m_state *st = state;
        const char *topic = msg->topic ? msg->topic : "";
        const char *name;
        struct state_values sv;
        json_t *root = NULL;
        bool has_ts;
        int64_t ts;
        int r;

        cp_batch_reset(out);
        name = topic_name(out, st, topic);
        if (!name)
                return -EPROTO;
        /* Availability may be plain text, and commands are not ours to read: no payload check. */
        if (is_status_topic(name))
                return -ENODATA;
        r = check_name(out, name);
        if (r < 0)
                return r;
        /* Zigbee2MQTT clears the retained state of a removed or renamed device with an empty message. */
        if (msg->len == 0)
                return -ENODATA;
        r = lite_decode(st, msg, out, name);
        if (r <= 0)
                return r;
        r = cp_json_load(msg, out, &root);
        if (r < 0)
                return r;
        if (!json_is_object(root)) {
                r = cp_json_fail_type(out, NULL, "payload", root, "object");
                goto out_decref;
        }
        r = check_device(out, root, name);
        if (r < 0)
                goto out_decref;
        r = scan_state(out, root, &sv);
        if (r < 0)
                goto out_decref;
        if (!any_value(&sv)) {
                r = -ENODATA;
                goto out_decref;
        }
        /* Without init (a fuzzer, a test) there is no zone, and a time without offset is refused. */
        r = cp_json_get_time(out, root, NULL, "last_seen", false, st ? st->tz : NULL, &ts, &has_ts);
        if (r < 0)
                goto out_decref;
        r = emit_readings(out, &sv, name, has_ts ? ts : msg->rx_ms, msg->rx_ms);
out_decref:
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_zigbee2mqtt = {
    .abi = CP_DRIVER_ABI,
    .name = "zigbee2mqtt",
    .init = z2m_init,
    .free = z2m_free,
    .decode = z2m_decode,
};
