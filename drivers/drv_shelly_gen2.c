/* drv_shelly_gen2.c - Shelly Gen2/Gen3/Gen4 RPC notifications over MQTT (PAYLOADS.md section 5):
 *
 *   topic shellypro3em-08f9e0e6d1a0/events/rpc
 *   {"src":"shellypro3em-08f9e0e6d1a0","dst":"shellypro3em-08f9e0e6d1a0/events","method":"NotifyStatus",
 *    "params":{"ts":1772359170.12,"em:0":{"id":0,"a_act_power":-1520.3,"total_act_power":-890.1},
 *              "emdata:0":{"id":0,"total_act":152340.55,"total_act_ret":80211.9}}}
 *
 * Readings, for sensor "<src>:<N>" of component "<type>:<N>" (CONTRACT section 3: switch:N, em:N and
 * emdata:N of one device are the same meter), observed at params.ts (unix seconds with a fraction;
 * msg->rx_ms when absent):
 *   switch:N, pm1:N, cover:N, light:N   apower -> power_w, voltage -> voltage_v, current -> current_a,
 *                                       freq -> frequency_hz, pf -> power_factor,
 *                                       aenergy.total -> energy_import_kwh (Wh / 1000),
 *                                       ret_aenergy.total -> energy_export_kwh (Wh / 1000),
 *                                       temperature.tC -> temperature_c
 *   em:N (three-phase)                  total_act_power -> power_w, a_|b_|c_act_power -> power_w_l1..l3,
 *                                       total_aprt_power -> apparent_power_va,
 *                                       a_|b_|c_voltage -> voltage_v_l1..l3,
 *                                       a_|b_|c_current -> current_a_l1..l3
 *   emdata:N                            total_act -> energy_import_kwh, total_act_ret -> energy_export_kwh
 *   em1:N (mono-phase)                  act_power -> power_w, aprt_power -> apparent_power_va,
 *                                       voltage, current, pf, freq as for switch
 *   em1data:N                           total_act_energy -> energy_import_kwh,
 *                                       total_act_ret_energy -> energy_export_kwh
 * Power keeps its sign (negative is export). pm1, cover and light carry the same power-meter fields
 * as switch in the Shelly API, so they are read the same way. Fields without a quantity of their
 * own are skipped: per-phase pf, frequency and apparent power, n_current, total_current (a sum of
 * phase currents is not a current), per-phase energies, by_minute, output. The temperature a
 * component reports is the device's own sensor; it is a measured quantity (temperature_c, device
 * health) on the channel's sensor. Other components (sys, wifi, input:N, add-on temperature:N
 * probes whose ids would collide with the switch channels, ...) are ignored.
 *
 * NotifyStatus carries only what changed, so each field is optional and a message yields exactly
 * the readings of the fields it holds: a switch:0 without apower is not 0 W. A notification that
 * holds no measured field (only output, only sys), and NotifyEvent, give -ENODATA. Any bad field
 * refuses the whole message. Other topics of the device (<prefix>/online, <prefix>/status/...,
 * <prefix>/debug/log) are not notifications and give -ENODATA too.
 *
 * Ids: the sensor base is `src`, the device's own id. The topic is "<prefix>/events/rpc" where the
 * prefix defaults to that id but can be set to anything in the device's MQTT settings; the device
 * then names its prefix in `dst` ("<prefix>/events"). A topic whose prefix is neither src nor the
 * prefix in dst contradicts the payload and is refused with ID_MISMATCH.
 *
 * Settings: only driver.shelly_gen2.timezone (filled in by the daemon), checked but unused since
 * params.ts is UTC. Any other key is refused. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_SUFFIX     "/events/rpc"
#define TOPIC_SUFFIX_LEN (sizeof(TOPIC_SUFFIX) - 1)
#define DST_SUFFIX       "/events"
#define DST_SUFFIX_LEN   (sizeof(DST_SUFFIX) - 1)
#define METHOD_MAX_LEN   64
/* A prefix is an MQTT topic; anything longer than this is not one a person configured. */
#define DST_MAX_LEN 512
/* Component ids: devices have 1 to 4 of a kind; three digits leave ample room. */
#define COMPONENT_ID_MAX_LEN 3
/* "params." + "em1data" + ":" + 3 digits + "." + "ret_aenergy", with room to spare. */
#define PATH_LEN 64

/* One field of a component's status: `key`, or `obj`.`key` when obj is set. */
struct field {
        const char *obj;
        const char *key;
        enum cp_quantity q;
        double divisor; /* from the field's unit to the quantity's */
        enum cp_value_check check;
};

static const struct field meter_fields[] = {
    {NULL, "apower", CP_Q_POWER_W, 1, CP_CHECK_SIGNED},
    {NULL, "voltage", CP_Q_VOLTAGE_V, 1, CP_CHECK_NONNEG},
    {NULL, "current", CP_Q_CURRENT_A, 1, CP_CHECK_NONNEG},
    {NULL, "freq", CP_Q_FREQUENCY_HZ, 1, CP_CHECK_NONNEG},
    {NULL, "pf", CP_Q_POWER_FACTOR, 1, CP_CHECK_PF},
    {"aenergy", "total", CP_Q_ENERGY_IMPORT_KWH, 1000, CP_CHECK_NONNEG},
    {"ret_aenergy", "total", CP_Q_ENERGY_EXPORT_KWH, 1000, CP_CHECK_NONNEG},
    {"temperature", "tC", CP_Q_TEMPERATURE_C, 1, CP_CHECK_ABOVE_0K},
};

static const struct field em_fields[] = {
    {NULL, "total_act_power", CP_Q_POWER_W, 1, CP_CHECK_SIGNED},
    {NULL, "a_act_power", CP_Q_POWER_W_L1, 1, CP_CHECK_SIGNED},
    {NULL, "b_act_power", CP_Q_POWER_W_L2, 1, CP_CHECK_SIGNED},
    {NULL, "c_act_power", CP_Q_POWER_W_L3, 1, CP_CHECK_SIGNED},
    {NULL, "total_aprt_power", CP_Q_APPARENT_POWER_VA, 1, CP_CHECK_NONNEG},
    {NULL, "a_voltage", CP_Q_VOLTAGE_V_L1, 1, CP_CHECK_NONNEG},
    {NULL, "b_voltage", CP_Q_VOLTAGE_V_L2, 1, CP_CHECK_NONNEG},
    {NULL, "c_voltage", CP_Q_VOLTAGE_V_L3, 1, CP_CHECK_NONNEG},
    {NULL, "a_current", CP_Q_CURRENT_A_L1, 1, CP_CHECK_NONNEG},
    {NULL, "b_current", CP_Q_CURRENT_A_L2, 1, CP_CHECK_NONNEG},
    {NULL, "c_current", CP_Q_CURRENT_A_L3, 1, CP_CHECK_NONNEG},
};

static const struct field emdata_fields[] = {
    {NULL, "total_act", CP_Q_ENERGY_IMPORT_KWH, 1000, CP_CHECK_NONNEG},
    {NULL, "total_act_ret", CP_Q_ENERGY_EXPORT_KWH, 1000, CP_CHECK_NONNEG},
};

static const struct field em1_fields[] = {
    {NULL, "act_power", CP_Q_POWER_W, 1, CP_CHECK_SIGNED},
    {NULL, "aprt_power", CP_Q_APPARENT_POWER_VA, 1, CP_CHECK_NONNEG},
    {NULL, "voltage", CP_Q_VOLTAGE_V, 1, CP_CHECK_NONNEG},
    {NULL, "current", CP_Q_CURRENT_A, 1, CP_CHECK_NONNEG},
    {NULL, "pf", CP_Q_POWER_FACTOR, 1, CP_CHECK_PF},
    {NULL, "freq", CP_Q_FREQUENCY_HZ, 1, CP_CHECK_NONNEG},
};

static const struct field em1data_fields[] = {
    {NULL, "total_act_energy", CP_Q_ENERGY_IMPORT_KWH, 1000, CP_CHECK_NONNEG},
    {NULL, "total_act_ret_energy", CP_Q_ENERGY_EXPORT_KWH, 1000, CP_CHECK_NONNEG},
};

struct component {
        const char *type;
        const struct field *fields;
        size_t n;
};

static const struct component components[] = {
    {"switch", meter_fields, CP_ARRAY_LEN(meter_fields)},
    {"pm1", meter_fields, CP_ARRAY_LEN(meter_fields)},
    {"cover", meter_fields, CP_ARRAY_LEN(meter_fields)},
    {"light", meter_fields, CP_ARRAY_LEN(meter_fields)},
    {"em", em_fields, CP_ARRAY_LEN(em_fields)},
    {"emdata", emdata_fields, CP_ARRAY_LEN(emdata_fields)},
    {"em1", em1_fields, CP_ARRAY_LEN(em1_fields)},
    {"em1data", em1data_fields, CP_ARRAY_LEN(em1data_fields)},
};

/* What gen2_decode() reads, for cp_json_load_pruned(): every field of every component table above
 * (one table for all types: a field another type reads is kept but never looked at) and the id. */
static const struct cp_json_keep keep_total[] = {{"total", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_tc[] = {{"tC", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_component[] = {
    {"id", NULL},
    {"apower", NULL},
    {"voltage", NULL},
    {"current", NULL},
    {"freq", NULL},
    {"pf", NULL},
    {"aenergy", keep_total},
    {"ret_aenergy", keep_total},
    {"temperature", keep_tc},
    {"total_act_power", NULL},
    {"a_act_power", NULL},
    {"b_act_power", NULL},
    {"c_act_power", NULL},
    {"total_aprt_power", NULL},
    {"a_voltage", NULL},
    {"b_voltage", NULL},
    {"c_voltage", NULL},
    {"a_current", NULL},
    {"b_current", NULL},
    {"c_current", NULL},
    {"total_act", NULL},
    {"total_act_ret", NULL},
    {"act_power", NULL},
    {"aprt_power", NULL},
    {"total_act_energy", NULL},
    {"total_act_ret_energy", NULL},
    {NULL, NULL},
};
/* Every "<type>:..." key find_component() takes, whatever follows the colon (a bad id is reported). */
static const struct cp_json_keep keep_params[] = {
    {"ts", NULL},
    {"switch:*", keep_component},
    {"pm1:*", keep_component},
    {"cover:*", keep_component},
    {"light:*", keep_component},
    {"em:*", keep_component},
    {"emdata:*", keep_component},
    {"em1:*", keep_component},
    {"em1data:*", keep_component},
    {NULL, NULL},
};
static const struct cp_json_keep keep_root[] = {
    {"src", NULL}, {"dst", NULL}, {"method", NULL}, {"params", keep_params}, {NULL, NULL},
};

/* The component type of a params key "<type>:<id>", NULL for keys this driver does not read. */
static const struct component *find_component(const char *key, const char **ret_id)
{
        const char *colon = strchr(key, ':');
        size_t len;

        if (!colon)
                return NULL;
        len = (size_t)(colon - key);
        for (size_t i = 0; i < CP_ARRAY_LEN(components); i++) {
                if (strlen(components[i].type) == len && memcmp(key, components[i].type, len) == 0) {
                        *ret_id = colon + 1;
                        return &components[i];
                }
        }
        return NULL;
}

/* A component id as the firmware writes it: 1 to COMPONENT_ID_MAX_LEN digits, no leading zero.
 * Returns its value, or -1. */
static int parse_component_id(const char *s)
{
        size_t len = strlen(s);
        int v = 0;

        if (len == 0 || len > COMPONENT_ID_MAX_LEN || (len > 1 && s[0] == '0'))
                return -1;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v;
}

/* Reads field f of one component (its object is `obj`, named `path` in texts) and adds its reading
 * for sensor `sensor`. */
static int decode_field(struct cp_batch *b, const json_t *obj, const char *path, const struct field *f,
                        const char *sensor, int64_t ts, int64_t rx)
{
        char sub_path[2 * PATH_LEN], num[40];
        const char *problem;
        json_t *sub, *v;
        bool present;
        double d;
        int r;

        if (f->obj) {
                r = cp_json_get_object(b, obj, path, f->obj, false, &sub, &present);
                if (r < 0 || !present)
                        return r;
                (void)snprintf(sub_path, sizeof(sub_path), "%s.%s", path, f->obj);
                obj = sub;
                path = sub_path;
        }
        r = cp_json_get_number(b, obj, path, f->key, false, &d, &present);
        if (r < 0 || !present)
                return r;
        problem = cp_value_check_problem(d, f->check);
        if (problem) {
                v = json_object_get(obj, f->key);
                cp_json_fmt_number(v, num, sizeof(num));
                (void)cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s.%s is %s, %s", path, f->key, num, problem);
                return -ERANGE;
        }
        return cp_batch_add(b, sensor, f->q, d / f->divisor, ts, rx);
}

/* One "<type>:<id>" member of params. */
static int decode_component(struct cp_batch *b, const char *key, const json_t *obj, const struct component *c,
                            const char *id, const char *src, int64_t ts, int64_t rx)
{
        /* Room for an overlong src, so that cp_batch_add() reports it rather than a cut id. */
        char path[PATH_LEN], sensor[CP_SENSOR_ID_MAX + COMPONENT_ID_MAX_LEN + 2];
        int r, num = parse_component_id(id);
        const json_t *idv;

        if (num < 0)
                return cp_batch_fail(b, CP_REASON_BAD_FORMAT, "params key '%s' is not %s:<number>", key,
                                     c->type);
        /* Absent and null alike: nothing changed in this component. */
        if (json_is_null(obj))
                return 0;
        if (!json_is_object(obj))
                return cp_json_fail_type(b, "params", key, obj, "object");
        (void)snprintf(path, sizeof(path), "params.%s", key);
        /* Status objects repeat their id; one that disagrees with the key is a corrupt frame. */
        idv = json_object_get(obj, "id");
        if (idv && !json_is_null(idv)) {
                if (!json_is_integer(idv))
                        return cp_json_fail_type(b, path, "id", idv, "integer");
                if (json_integer_value(idv) != num)
                        return cp_batch_fail(b, CP_REASON_INCONSISTENT,
                                             "%s.id is %" JSON_INTEGER_FORMAT ", expected %s as in the key",
                                             path, json_integer_value(idv), id);
        }
        /* The same "<src>:<N>" for every field: built once, not once per reading. */
        (void)snprintf(sensor, sizeof(sensor), "%s:%s", src, id);
        for (size_t i = 0; i < c->n; i++) {
                r = decode_field(b, obj, path, &c->fields[i], sensor, ts, rx);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Whether topic prefix p[0..plen) is s[0..slen). */
static bool prefix_is(const char *p, size_t plen, const char *s, size_t slen)
{
        return plen == slen && memcmp(p, s, plen) == 0;
}

/* The topic prefix must name the device (src) or be the prefix it says it publishes under (dst). */
static int check_topic_id(struct cp_batch *b, const char *prefix, size_t plen, const char *src,
                          const char *dst)
{
        size_t dlen = dst ? strlen(dst) : 0;
        bool dst_has_prefix = dlen > DST_SUFFIX_LEN && strcmp(dst + dlen - DST_SUFFIX_LEN, DST_SUFFIX) == 0;

        if (prefix_is(prefix, plen, src, strlen(src)))
                return 0;
        if (dst_has_prefix && prefix_is(prefix, plen, dst, dlen - DST_SUFFIX_LEN))
                return 0;
        if (dst_has_prefix)
                return cp_batch_fail(b, CP_REASON_ID_MISMATCH,
                                     "topic device '%.*s' is neither src '%s' nor the prefix of dst '%s'",
                                     (int)plen, prefix, src, dst);
        return cp_batch_fail(b, CP_REASON_ID_MISMATCH, "topic device '%.*s' does not match src '%s'",
                             (int)plen, prefix, src);
}

static int decode_params(struct cp_batch *b, const json_t *root, const char *src, int64_t rx)
{
        const struct component *c;
        const char *key, *id;
        json_t *params, *v;
        bool has_ts;
        int64_t ts;
        int r;

        r = cp_json_get_object(b, root, NULL, "params", true, &params, NULL);
        if (r < 0)
                return r;
        /* A string time would be accepted by cp_json_get_time(), but Shelly never sends one. */
        v = json_object_get(params, "ts");
        if (v && !json_is_null(v) && !json_is_number(v))
                return cp_json_fail_type(b, "params", "ts", v, "number");
        r = cp_json_get_time(b, params, "params", "ts", false, NULL, &ts, &has_ts);
        if (r < 0)
                return r;
        if (!has_ts)
                ts = rx;
        /* In the order the device wrote them: jansson keeps insertion order. */
        for (void *it = json_object_iter(params); it; it = json_object_iter_next(params, it)) {
                key = json_object_iter_key(it);
                v = json_object_iter_value(it);
                c = find_component(key, &id);
                if (!c)
                        continue;
                r = decode_component(b, key, v, c, id, src, ts, rx);
                if (r < 0)
                        return r;
        }
        return b->n > 0 ? 0 : -ENODATA;
}

static int gen2_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const char *topic = msg->topic ? msg->topic : "", *dst = NULL, *method;
        size_t tlen = strlen(topic), plen;
        char src[CP_SENSOR_ID_MAX];
        json_t *root = NULL;
        int r;

        (void)state;
        cp_batch_reset(out);
        /* online, status/<component>, debug/log, rpc requests: not notifications. */
        if (tlen < TOPIC_SUFFIX_LEN || strcmp(topic + tlen - TOPIC_SUFFIX_LEN, TOPIC_SUFFIX) != 0)
                return -ENODATA;
        plen = tlen - TOPIC_SUFFIX_LEN;

        r = cp_json_load_pruned(msg, out, keep_root, &root);
        if (r < 0)
                return r;
        r = cp_json_get_id(out, root, NULL, "src", false, src);
        if (r < 0)
                goto out_decref;
        r = cp_json_get_string(out, root, NULL, "dst", false, DST_MAX_LEN, &dst, NULL);
        if (r < 0)
                goto out_decref;
        r = check_topic_id(out, topic, plen, src, dst);
        if (r < 0)
                goto out_decref;
        r = cp_json_get_string(out, root, NULL, "method", true, METHOD_MAX_LEN, &method, NULL);
        if (r < 0)
                goto out_decref;
        if (strcmp(method, "NotifyStatus") == 0 || strcmp(method, "NotifyFullStatus") == 0) {
                r = decode_params(out, root, src, msg->rx_ms);
        } else if (strcmp(method, "NotifyEvent") == 0) {
                /* Button pushes, scripts, schedules: events, never measurements. */
                r = -ENODATA;
        } else {
                (void)cp_batch_fail(out, CP_REASON_UNSUPPORTED,
                                    "method '%s' is not NotifyStatus, NotifyFullStatus or NotifyEvent",
                                    method);
                r = -ENOTSUP;
        }
out_decref:
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_shelly_gen2 = {
    .abi = CP_DRIVER_ABI,
    .name = "shelly_gen2",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = gen2_decode,
};
