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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* X(key, quantity), in emission order, for fields[] and keep_root[]. VOLTAGE is found by its
 * quantity: it turns into battery_v on battery devices. */
#define STATE_FIELD_MAP(X)                                                                                   \
        X("power", CP_Q_POWER_W)                                                                             \
        X("power_apparent", CP_Q_APPARENT_POWER_VA)                                                          \
        X("power_reactive", CP_Q_REACTIVE_POWER_VAR)                                                         \
        X("voltage", CP_Q_VOLTAGE_V)                                                                         \
        X("current", CP_Q_CURRENT_A)                                                                         \
        X("ac_frequency", CP_Q_FREQUENCY_HZ)                                                                 \
        X("energy", CP_Q_ENERGY_IMPORT_KWH)                                                                  \
        X("produced_energy", CP_Q_ENERGY_EXPORT_KWH)                                                         \
        X("temperature", CP_Q_TEMPERATURE_C)                                                                 \
        X("humidity", CP_Q_HUMIDITY_PCT)

static const struct state_field fields[] = {
#define STATE_FIELD_ROW(key, q) {key, q},
    STATE_FIELD_MAP(STATE_FIELD_ROW)
#undef STATE_FIELD_ROW
};
#define NFIELDS CP_ARRAY_LEN(fields)

/* What z2m_decode() reads, for cp_json_load_pruned(): of `battery` only the presence. */
static const struct cp_json_keep keep_device[] = {{"friendlyName", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_root[] = {
#define STATE_FIELD_KEEP(key, q) {key, NULL},
    STATE_FIELD_MAP(STATE_FIELD_KEEP)
#undef STATE_FIELD_KEEP
        {"battery", NULL},
    {"last_seen", NULL},
    {"device", keep_device},
    {NULL, NULL},
};

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
        static const char *const keys[] = {"timezone", "base_topic", NULL};
        const char *driver = conf && conf->driver ? conf->driver : "zigbee2mqtt";
        const char *base = cp_conf_get(conf, "base_topic");
        const char *problem;
        struct z2m_state *st;
        int r;

        if ((r = cp_conf_check_keys(conf, keys, err, errlen)) < 0)
                return r;
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
        r = cp_conf_load_tz(conf, &st->tz, err, errlen);
        if (r < 0) {
                free(st);
                return r;
        }
        *ret_state = st;
        return 0;
}

/* ---- values ---- */

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

        cp_quantity_bounds(q, &lo, &hi);
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
                cp_quantity_bounds(q, &lo, &hi);
                return cp_batch_fail_bounds(b, fields[i].key, sv->v[i], lo * scale, hi * scale,
                                            scale != 1.0 ? " (mV, battery device)" : NULL);
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

/* ---- topic ---- */

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
        if (cp_span_is(last + 1, len, "availability") || cp_span_is(last + 1, len, "set") ||
            cp_span_is(last + 1, len, "get"))
                return true;
        for (prev = last; prev > name && prev[-1] != '/'; prev--)
                ;
        return prev > name && (cp_span_is(prev, (size_t)(last - prev), "set") ||
                               cp_span_is(prev, (size_t)(last - prev), "get"));
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
        r = cp_json_load_pruned(msg, out, keep_root, &root);
        if (r < 0)
                return r;
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
