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
 * Values outside physical bounds (cp_quantity_bounds()) refuse the whole message, like any other error:
 * a meter that reports one impossible figure is not trusted for the others of the same instant. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Tasmota's energy drivers report a few phases or channels (ENERGY_MAX_PHASES); more than 8 entries
 * is not a Tasmota payload, and 8 channels of 9 quantities still fit one batch. */
#define MAX_CHANNELS 8
/* Tasmota's START_VALID_TIME (2016-01-01T00:00:00Z): an earlier clock has not been set yet. */
#define CLOCK_VALID_FROM_S 1451606400.0
#define CLOCK_VALID_FROM_Y 2016

struct energy_field {
        const char *key;
        enum cp_quantity q;
        bool common;   /* a scalar next to arrays holds for every channel */
        bool skip_tic; /* derived from Power, which is VA under Teleinfo */
};

/* X(key, quantity, common, skip_tic): the ENERGY fields read, for fields[] and keep_energy[]. */
#define ENERGY_FIELD_MAP(X)                                                                                  \
        X("Power", CP_Q_POWER_W, false, false)                                                               \
        X("ApparentPower", CP_Q_APPARENT_POWER_VA, false, true)                                              \
        X("ReactivePower", CP_Q_REACTIVE_POWER_VAR, false, true)                                             \
        X("Factor", CP_Q_POWER_FACTOR, false, true)                                                          \
        X("Voltage", CP_Q_VOLTAGE_V, true, false)                                                            \
        X("Current", CP_Q_CURRENT_A, false, false)                                                           \
        X("Frequency", CP_Q_FREQUENCY_HZ, true, false)                                                       \
        X("Total", CP_Q_ENERGY_IMPORT_KWH, false, false)                                                     \
        X("ExportActive", CP_Q_ENERGY_EXPORT_KWH, false, false)

static const struct energy_field fields[] = {
#define ENERGY_FIELD_ROW(key, q, common, skip_tic) {key, q, common, skip_tic},
    ENERGY_FIELD_MAP(ENERGY_FIELD_ROW)
#undef ENERGY_FIELD_ROW
};
#define NFIELDS CP_ARRAY_LEN(fields)

/* What decode_energy() and check_status_topic() read, for cp_json_load_pruned(). A field may be an
 * array (one entry per channel), kept whole; of TIC only the presence is read. */
static const struct cp_json_keep keep_energy[] = {
#define ENERGY_FIELD_KEEP(key, q, common, skip_tic) {key, CP_JSON_KEEP_ALL},
    ENERGY_FIELD_MAP(ENERGY_FIELD_KEEP)
#undef ENERGY_FIELD_KEEP
        {NULL, NULL},
};
static const struct cp_json_keep keep_sensor[] = {
    {"ENERGY", keep_energy}, {"TIC", NULL}, {"Epoch", NULL}, {"Time", NULL}, {NULL, NULL},
};
static const struct cp_json_keep keep_status[] = {{"Topic", NULL}, {NULL, NULL}};
/* A SENSOR payload, or a STATUS reply with its StatusSNS. */
static const struct cp_json_keep keep_root[] = {
    {"ENERGY", keep_energy},    {"TIC", NULL}, {"Epoch", NULL}, {"Time", NULL}, {"Status", keep_status},
    {"StatusSNS", keep_sensor}, {NULL, NULL},
};

/* Message names that are status, not measurements (PAYLOADS.md section 4, Tasmota's tele/ topics). */
static const char *const status_names[] = {"LWT",    "STATE",   "INFO1",  "INFO2",     "INFO3",
                                           "UPTIME", "MARGINS", "RESULT", "HASS_STATE"};

/* ---- values ---- */

/* Checks one value; `index` < 0 for a scalar, else its position in the array (named "[i]"). */
static int check_value(struct cp_batch *b, const char *path, const char *key, long index, enum cp_quantity q,
                       double v)
{
        char name[96];
        double lo, hi;

        cp_quantity_bounds(q, &lo, &hi);
        if (v >= lo && v <= hi)
                return 0;
        if (index < 0)
                (void)snprintf(name, sizeof(name), "%s.%s", path, key);
        else
                (void)snprintf(name, sizeof(name), "%s.%s[%ld]", path, key, index);
        return cp_batch_fail_bounds(b, name, v, lo, hi, NULL);
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

static int read_time(struct cp_batch *b, const struct cp_tz *tz, const json_t *obj, const char *path,
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
        return cp_json_get_time(b, obj, path, key, false, tz, ret_ts, NULL);
}

/* ---- topic ---- */

static bool is_prefix(const char *s, size_t len)
{
        return cp_span_is(s, len, "tele") || cp_span_is(s, len, "stat") || cp_span_is(s, len, "cmnd");
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

/* ---- decode ---- */

/* Decodes the ENERGY of `obj` (the payload, or StatusSNS of a status reply named by `path`); epath
 * names ENERGY in texts ("ENERGY", "StatusSNS.ENERGY"). */
static int decode_energy(const struct cp_tz *tz, const struct cp_msg *msg, struct cp_batch *out,
                         const json_t *obj, const char *path, const char *epath, const char *id)
{
        const json_t *tic = json_object_get(obj, "TIC");
        struct field_values f[NFIELDS] = {0};
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
        r = scan_energy(out, energy, epath, tic && !json_is_null(tic), f, &nch);
        if (r < 0)
                return r;
        for (size_t i = 0; i < NFIELDS; i++)
                any = any || f[i].present;
        if (!any)
                return -ENODATA;
        r = read_time(out, tz, obj, path, msg->rx_ms, &ts);
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
        if (tp->prefix && cp_span_is(tp->prefix, tp->prefix_len, "cmnd"))
                return TOPIC_NODATA;
        if (strcmp(name, "SENSOR") == 0)
                return TOPIC_SENSOR;
        if (is_status_reply(name))
                return TOPIC_STATUS;
        /* stat/<topic>/<command>: the result of a command (POWER, RESULT, UPGRADE, ...). */
        if (tp->prefix && cp_span_is(tp->prefix, tp->prefix_len, "stat"))
                return TOPIC_NODATA;
        return TOPIC_UNKNOWN;
}

static int tasmota_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct cp_tz *tz = state;
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
        r = cp_json_load_pruned(msg, out, keep_root, &root);
        if (r < 0)
                return r;
        if (kind == TOPIC_SENSOR) {
                r = decode_energy(tz, msg, out, root, NULL, "ENERGY", id);
                goto out_decref;
        }
        r = check_status_topic(out, root, id);
        if (r < 0)
                goto out_decref;
        r = cp_json_get_object(out, root, NULL, "StatusSNS", false, &sns, &has_sns);
        if (r < 0)
                goto out_decref;
        r = has_sns ? decode_energy(tz, msg, out, sns, "StatusSNS", "StatusSNS.ENERGY", id) : -ENODATA;
out_decref:
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_tasmota = {
    .abi = CP_DRIVER_ABI,
    .name = "tasmota",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = tasmota_decode,
};
