/* drv_senml.c - SenML JSON packs (RFC 8428; PAYLOADS.md section 8):
 *
 *   [{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1772359140,"n":"energy","u":"kWh","s":12345.678},
 *    {"n":"power","u":"W","v":1520},{"n":"voltage","u":"V","v":231.2}]
 *
 * Records are resolved as RFC 8428 section 4.6 says: base fields (bn, bt, bu, bv, bs, bver) apply to
 * their record and every later one; name = bn + n, time = bt + t, value = bv + v, sum = bs + s. A
 * resolved time below 2^28 is relative to now (the receive time), above it is Unix seconds.
 *
 * Sensor id: bn without its trailing ':' or '/' (CONTRACT section 3); the rest of the name (n) only
 * helps choose the quantity. A record without bn names its device itself ("urn:dev:ow:x:temp" ->
 * "urn:dev:ow:x"), or takes the id from the topic (driver.senml.id_topic_level).
 * Units decide quantities (CONTRACT fine print): W/kW -> power_w; Wh/kWh/J with a sum, or with a name
 * saying energy -> energy_import_kwh (energy_export_kwh when the name says export, inject or return);
 * V/mV -> voltage_v (battery_v when the name says bat); A/mA -> current_a; VA/kVA ->
 * apparent_power_va; var/kvar -> reactive_power_var; Cel/K -> temperature_c; %RH -> humidity_pct;
 * Hz -> frequency_hz. A name part "l1".."l3" (or "phase1".."phase3") makes power, voltage and current
 * per phase. Records with another unit, no unit, or a string/boolean/data value are skipped (not an
 * error); so are KPN's base-only records. A pack with no usable record is -ENODATA.
 * Power named export is skipped too: nothing says which sign such a device gives it.
 *
 * The whole pack is refused when a record breaks RFC 8428 (a must-understand field ending in '_', an
 * invalid name, two values), when a field has the wrong type, or when a value is impossible.
 *
 * Settings: driver.senml.id_topic_level N or N.. (optional): the topic level that holds the device
 * id (1 = first, -1 = last), or with "..", the topic from that level to its end (ids such as
 * "parking/level1/meter7" span levels); a bn that contradicts it is ID_MISMATCH. driver.senml.timezone is
 * accepted (the daemon passes it to every driver) and unused: SenML times are always UTC. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 8428 4.5.2: below this a resolved time is relative to now. */
#define SENML_REL_LIMIT 268435456.0 /* 2^28 */
/* cp_time_from_epoch() reads larger numbers as ms; as SenML seconds they lie past 2200 anyway. */
#define SENML_SECONDS_MAX 1e11
#define SENML_VERSION     10

struct senml_state {
        struct cp_topic_span id_span; /* level 0: the topic holds no id */
};

enum unit_kind { U_POWER, U_ENERGY, U_VOLT, U_CURRENT, U_APPARENT, U_REACTIVE, U_TEMP, U_HUMIDITY, U_FREQ };

static const struct {
        const char *name;
        enum unit_kind kind;
        double scale, offset;
} units[] = {
    {"W", U_POWER, 1, 0},          {"kW", U_POWER, 1000, 0},      {"Wh", U_ENERGY, 0.001, 0},
    {"kWh", U_ENERGY, 1, 0},       {"J", U_ENERGY, 1 / 3.6e6, 0}, {"V", U_VOLT, 1, 0},
    {"mV", U_VOLT, 0.001, 0},      {"A", U_CURRENT, 1, 0},        {"mA", U_CURRENT, 0.001, 0},
    {"VA", U_APPARENT, 1, 0},      {"kVA", U_APPARENT, 1000, 0},  {"var", U_REACTIVE, 1, 0},
    {"kvar", U_REACTIVE, 1000, 0}, {"Cel", U_TEMP, 1, 0},         {"K", U_TEMP, 1, -273.15},
    {"%RH", U_HUMIDITY, 1, 0},     {"Hz", U_FREQ, 1, 0},
};

/* The base fields in force, borrowed from the root. */
struct base {
        const char *bn, *bu;
        size_t bn_len;
        double bt, bv, bs;
};

/* One record's own fields. */
struct record {
        const char *n, *u;
        size_t n_len;
        double v, s, t;
        bool has_v, has_s, has_other; /* has_other: vs, vb or vd */
        bool has_regular;             /* any of n, u, v, vs, vb, vd, s, t, ut */
        const char *first_value;      /* the first of v/vs/vb/vd, for the "two values" text */
        const char *second_value;
};

/* ---- settings ---- */

static void senml_free(void *state)
{
        free(state);
}

static int senml_init(const struct cp_conf_section *conf, void **ret_state, char *err, size_t errlen)
{
        const char *driver = conf && conf->driver ? conf->driver : "senml";
        struct senml_state *st;

        st = calloc(1, sizeof(*st));
        if (!st) {
                (void)snprintf(err, errlen, "driver.%s: out of memory", driver);
                return -ENOMEM;
        }
        for (size_t i = 0; conf && i < conf->n; i++) {
                const char *key = conf->kv[i].key ? conf->kv[i].key : "";
                const char *value = conf->kv[i].value ? conf->kv[i].value : "";

                if (strcmp(key, "timezone") == 0)
                        continue;
                if (strcmp(key, "id_topic_level") != 0) {
                        (void)snprintf(err, errlen, "driver.%s.%s: unknown key", driver, key);
                        goto out_free;
                }
                if (cp_conf_parse_topic_span(driver, key, value, &st->id_span, err, errlen) < 0)
                        goto out_free;
        }
        *ret_state = st;
        return 0;
out_free:
        free(st);
        return -EINVAL;
}

/* ---- helpers ---- */

/* "2" or "2..", for texts. */
static const char *span_name(const struct cp_topic_span *span, char *buf, size_t size)
{
        (void)snprintf(buf, size, "%d%s", span->level, span->to_end ? ".." : "");
        return buf;
}

/* Case-insensitive search of `word` in s[len]. */
static bool name_has(const char *s, size_t len, const char *word)
{
        size_t wl = strlen(word);

        for (size_t i = 0; i + wl <= len; i++) {
                if (strncasecmp(s + i, word, wl) == 0)
                        return true;
        }
        return false;
}

static bool is_name_sep(char c)
{
        return c == ':' || c == '.' || c == '/' || c == '_' || c == '-';
}

/* 1..3 for a name part "l1".."l3" or "phase1".."phase3" (any case), else 0. */
static int name_phase(const char *s, size_t len)
{
        size_t i = 0;

        while (i < len) {
                size_t j = i;

                while (j < len && !is_name_sep(s[j]))
                        j++;
                if (j - i == 2 && (s[i] == 'l' || s[i] == 'L') && s[i + 1] >= '1' && s[i + 1] <= '3')
                        return s[i + 1] - '0';
                if (j - i == 6 && strncasecmp(s + i, "phase", 5) == 0 && s[i + 5] >= '1' && s[i + 5] <= '3')
                        return s[i + 5] - '0';
                i = j + 1;
        }
        return 0;
}

/* RFC 8428 4.5.1: [A-Za-z0-9][A-Za-z0-9:./_-]*, checked over the two parts of the resolved name. */
static bool name_valid(const char *bn, size_t bn_len, const char *n, size_t n_len)
{
        const char *first = bn_len ? bn : n;

        if (bn_len + n_len == 0)
                return false;
        if (!((first[0] >= 'A' && first[0] <= 'Z') || (first[0] >= 'a' && first[0] <= 'z') ||
              (first[0] >= '0' && first[0] <= '9')))
                return false;
        for (size_t part = 0; part < 2; part++) {
                const char *s = part ? n : bn;
                size_t len = part ? n_len : bn_len;

                for (size_t i = 0; i < len; i++) {
                        char c = s[i];

                        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                              is_name_sep(c)))
                                return false;
                }
        }
        return true;
}

/* ---- one record ---- */

static int want_number(struct cp_batch *b, const char *path, const char *key, const json_t *v, double *ret)
{
        if (!json_is_number(v))
                return cp_json_fail_type(b, path, key, v, "number");
        *ret = json_number_value(v);
        return 0;
}

static int want_string(struct cp_batch *b, const char *path, const char *key, const json_t *v,
                       const char **ret, size_t *ret_len)
{
        if (!json_is_string(v))
                return cp_json_fail_type(b, path, key, v, "string");
        *ret = json_string_value(v);
        if (ret_len)
                *ret_len = json_string_length(v);
        return 0;
}

static void note_value(struct record *rec, const char *key)
{
        if (!rec->first_value)
                rec->first_value = key;
        else if (!rec->second_value)
                rec->second_value = key;
}

/* Reads the fields of record `obj` (path "[i]"), updating the base fields in force. One pass over the
 * keys: every field is looked at once, and a must-understand field cannot hide. */
static int read_record(struct cp_batch *b, json_t *obj, const char *path, struct base *base,
                       struct record *rec)
{
        int r = 0;

        memset(rec, 0, sizeof(*rec));
        for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
                const char *key = json_object_iter_key(it);
                json_t *v = json_object_iter_value(it);
                size_t kl = strlen(key);

                /* JSON null counts as absent, as everywhere in the drivers. */
                if (json_is_null(v))
                        continue;
                if (strcmp(key, "bn") == 0) {
                        r = want_string(b, path, key, v, &base->bn, &base->bn_len);
                } else if (strcmp(key, "bt") == 0) {
                        r = want_number(b, path, key, v, &base->bt);
                } else if (strcmp(key, "bu") == 0) {
                        r = want_string(b, path, key, v, &base->bu, NULL);
                } else if (strcmp(key, "bv") == 0) {
                        r = want_number(b, path, key, v, &base->bv);
                } else if (strcmp(key, "bs") == 0) {
                        r = want_number(b, path, key, v, &base->bs);
                } else if (strcmp(key, "bver") == 0) {
                        if (!json_is_integer(v))
                                return cp_json_fail_type(b, path, key, v, "integer");
                        if (json_integer_value(v) < 1)
                                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE,
                                                     "%s.bver is %lld, expected >= 1", path,
                                                     (long long)json_integer_value(v));
                        /* A later version may change meanings this decoder would get wrong. */
                        if (json_integer_value(v) > SENML_VERSION)
                                return cp_batch_fail(
                                    b, CP_REASON_UNSUPPORTED,
                                    "%s.bver is %lld, this decoder reads SenML up to version %d", path,
                                    (long long)json_integer_value(v), SENML_VERSION);
                } else if (strcmp(key, "n") == 0) {
                        r = want_string(b, path, key, v, &rec->n, &rec->n_len);
                        rec->has_regular = true;
                } else if (strcmp(key, "u") == 0) {
                        r = want_string(b, path, key, v, &rec->u, NULL);
                        rec->has_regular = true;
                } else if (strcmp(key, "v") == 0) {
                        r = want_number(b, path, key, v, &rec->v);
                        rec->has_v = rec->has_regular = true;
                        note_value(rec, "v");
                } else if (strcmp(key, "s") == 0) {
                        r = want_number(b, path, key, v, &rec->s);
                        rec->has_s = rec->has_regular = true;
                } else if (strcmp(key, "t") == 0) {
                        r = want_number(b, path, key, v, &rec->t);
                        rec->has_regular = true;
                } else if (strcmp(key, "ut") == 0) {
                        /* The update time only says when to expect the next value. */
                        double ut;

                        r = want_number(b, path, key, v, &ut);
                        rec->has_regular = true;
                } else if (strcmp(key, "vs") == 0 || strcmp(key, "vd") == 0) {
                        const char *s;

                        r = want_string(b, path, key, v, &s, NULL);
                        rec->has_other = rec->has_regular = true;
                        note_value(rec, key[1] == 's' ? "vs" : "vd");
                } else if (strcmp(key, "vb") == 0) {
                        if (!json_is_boolean(v))
                                return cp_json_fail_type(b, path, key, v, "boolean");
                        rec->has_other = rec->has_regular = true;
                        note_value(rec, "vb");
                } else if (kl > 0 && key[kl - 1] == '_') {
                        /* RFC 8428 4.4: an unknown must-understand field rejects the whole pack. */
                        return cp_batch_fail(b, CP_REASON_UNSUPPORTED,
                                             "%s.%s is a must-understand field this decoder does not know",
                                             path, key);
                }
                if (r < 0)
                        return r;
        }
        if (rec->second_value)
                return cp_batch_fail(b, CP_REASON_BAD_FORMAT, "%s has both %s and %s, expected one value",
                                     path, rec->first_value, rec->second_value);
        return 0;
}

/* The quantity a record gives, or false when the record is to be skipped. `hint` is the part of the
 * name after the device id. *ret_sum tells whether the sum (s) is the value rather than v. */
static bool choose_quantity(const struct record *rec, enum unit_kind kind, const char *hint, size_t hint_len,
                            enum cp_quantity *ret, bool *ret_sum)
{
        int phase = name_phase(hint, hint_len);

        *ret_sum = false;
        switch (kind) {
        case U_ENERGY:
                /* A counter needs a sum, or a name that says it is one; a bare Wh value may be a delta. */
                if (rec->has_s)
                        *ret_sum = true;
                else if (!rec->has_v || !name_has(hint, hint_len, "energy"))
                        return false;
                *ret = name_has(hint, hint_len, "export") || name_has(hint, hint_len, "inject") ||
                               name_has(hint, hint_len, "return")
                           ? CP_Q_ENERGY_EXPORT_KWH
                           : CP_Q_ENERGY_IMPORT_KWH;
                return true;
        case U_POWER:
                if (name_has(hint, hint_len, "export"))
                        return false;
                *ret = phase ? (enum cp_quantity)(CP_Q_POWER_W_L1 + phase - 1) : CP_Q_POWER_W;
                break;
        case U_VOLT:
                if (name_has(hint, hint_len, "bat"))
                        *ret = CP_Q_BATTERY_V;
                else
                        *ret = phase ? (enum cp_quantity)(CP_Q_VOLTAGE_V_L1 + phase - 1) : CP_Q_VOLTAGE_V;
                break;
        case U_CURRENT:
                *ret = phase ? (enum cp_quantity)(CP_Q_CURRENT_A_L1 + phase - 1) : CP_Q_CURRENT_A;
                break;
        case U_APPARENT:
                *ret = CP_Q_APPARENT_POWER_VA;
                break;
        case U_REACTIVE:
                *ret = CP_Q_REACTIVE_POWER_VAR;
                break;
        case U_TEMP:
                *ret = CP_Q_TEMPERATURE_C;
                break;
        case U_HUMIDITY:
                *ret = CP_Q_HUMIDITY_PCT;
                break;
        case U_FREQ:
                *ret = CP_Q_FREQUENCY_HZ;
                break;
        }
        return rec->has_v;
}

/* bt + t in UTC ms: Unix seconds from 2^28 up, relative to the receive time below. */
static int resolve_time(struct cp_batch *b, const char *path, double t, int64_t rx_ms, int64_t *ret_ms)
{
        char num[40];
        double ms;

        if (t >= SENML_REL_LIMIT) {
                if (t < SENML_SECONDS_MAX && cp_time_from_epoch(t, ret_ms) == 0)
                        return 0;
        } else {
                ms = (double)rx_ms + round(t * 1000.0);
                if (ms >= CP_TIME_MIN_MS && ms < (double)CP_TIME_MAX_MS) {
                        *ret_ms = (int64_t)ms;
                        return 0;
                }
        }
        cp_fmt_double(t, num, sizeof(num));
        return cp_batch_fail(b, CP_REASON_BAD_TIMESTAMP, "%s time %s is not between 1970 and 2200", path,
                             num);
}

/* The sensor id of a record and the part of its name after it. */
static int resolve_id(struct cp_batch *b, const struct senml_state *st, const struct cp_msg *msg,
                      const char *path, const struct base *base, const struct record *rec, char *id,
                      const char **ret_hint, size_t *ret_hint_len)
{
        const char *src, *tl = NULL;
        size_t len, tl_len = 0;
        bool from_topic = false;
        char lv[16];

        if (st && st->id_span.level) {
                span_name(&st->id_span, lv, sizeof(lv));
                if (!msg->topic || !cp_topic_span_get(msg->topic, &st->id_span, &tl, &tl_len))
                        return cp_batch_fail(b, CP_REASON_MISSING_FIELD, "topic '%s' has no level %d",
                                             msg->topic ? msg->topic : "", st->id_span.level);
                if (tl_len == 0)
                        return cp_batch_fail(b, CP_REASON_BAD_ID, "topic '%s' level %s is empty", msg->topic,
                                             lv);
        }
        if (base->bn_len > 0) {
                src = base->bn;
                len = base->bn_len;
                while (len > 0 && (src[len - 1] == ':' || src[len - 1] == '/'))
                        len--;
                if (len == 0)
                        return cp_batch_fail(b, CP_REASON_BAD_ID, "%s: bn '%s' leaves an empty sensor id",
                                             path, base->bn);
                *ret_hint = rec->n ? rec->n : "";
                *ret_hint_len = rec->n_len;
        } else {
                /* No bn: the name carries the device ("urn:dev:ow:x:temp"), else the topic does. */
                size_t k = rec->n_len;

                while (k > 0 && rec->n[k - 1] != ':' && rec->n[k - 1] != '/')
                        k--;
                if (k > 1) {
                        src = rec->n;
                        len = k - 1;
                        *ret_hint = rec->n + k;
                        *ret_hint_len = rec->n_len - k;
                } else if (tl) {
                        src = tl;
                        len = tl_len;
                        from_topic = true;
                        *ret_hint = rec->n;
                        *ret_hint_len = rec->n_len;
                } else {
                        return cp_batch_fail(b, CP_REASON_MISSING_FIELD,
                                             "%s has no bn and name '%s' names no device", path, rec->n);
                }
        }
        if (len >= CP_SENSOR_ID_MAX)
                return cp_batch_fail(b, CP_REASON_BAD_ID,
                                     "%s: sensor id '%.40s...' is %zu bytes long, limit %d", path, src, len,
                                     CP_SENSOR_ID_MAX - 1);
        if (!from_topic && cp_sensor_id_problem(src, len))
                return cp_batch_fail(b, CP_REASON_BAD_ID, "%s: sensor id '%.*s' %s", path, (int)len, src,
                                     cp_sensor_id_problem(src, len));
        if (from_topic && cp_sensor_id_problem(src, len))
                return cp_batch_fail(b, CP_REASON_BAD_ID, "topic level %s '%.*s' %s", lv, (int)len, src,
                                     cp_sensor_id_problem(src, len));
        if (tl && !from_topic && (len != tl_len || memcmp(src, tl, len) != 0))
                return cp_batch_fail(b, CP_REASON_ID_MISMATCH,
                                     "%s: sensor '%.*s' does not match topic level %s '%.*s'", path, (int)len,
                                     src, lv, (int)tl_len, tl);
        memcpy(id, src, len);
        id[len] = '\0';
        return 0;
}

/* ---- the pack ---- */

/* "[i]" into buf, without the cost of snprintf for every record. */
static void index_path(char *buf, size_t i)
{
        char digits[24];
        size_t n = 0, o = 0;

        do {
                digits[n++] = (char)('0' + i % 10);
                i /= 10;
        } while (i);
        buf[o++] = '[';
        while (n)
                buf[o++] = digits[--n];
        buf[o++] = ']';
        buf[o] = '\0';
}

static int decode_records(const struct senml_state *st, const struct cp_msg *msg, json_t *root,
                          struct cp_batch *out)
{
        size_t origin[CP_BATCH_CAP]; /* the record each reading came from, for the duplicate text */
        struct base base = {0};
        char path[32], id[CP_SENSOR_ID_MAX];
        /* The bn that id[] was resolved from: one check per device, not per record. */
        const char *id_bn = NULL;
        size_t nrec = json_array_size(root);
        int r;

        for (size_t i = 0; i < nrec; i++) {
                json_t *obj = json_array_get(root, i);
                const char *unit, *hint = NULL;
                size_t hint_len = 0, u;
                struct record rec;
                enum cp_quantity q = _CP_Q_MAX;
                bool use_sum;
                double value;
                int64_t ts;

                index_path(path, i);
                if (!json_is_object(obj))
                        return cp_json_fail_type(out, NULL, path, obj, "object");
                r = read_record(out, obj, path, &base, &rec);
                if (r < 0)
                        return r;
                /* KPN's {"bn":...,"bt":...}: base fields only, no reading (not a value of 0). */
                if (!rec.has_regular)
                        continue;
                if (!rec.has_v && !rec.has_s && !rec.has_other)
                        return cp_batch_fail(out, CP_REASON_MISSING_FIELD,
                                             "%s has no value (v, vs, vb, vd or s)", path);
                if (base.bn_len + rec.n_len == 0)
                        return cp_batch_fail(out, CP_REASON_MISSING_FIELD, "%s has no name (bn or n)", path);
                if (!name_valid(base.bn ? base.bn : "", base.bn_len, rec.n ? rec.n : "", rec.n_len))
                        return cp_batch_fail(out, CP_REASON_BAD_FORMAT,
                                             "%s name '%s%s' is not a valid SenML name", path,
                                             base.bn ? base.bn : "", rec.n ? rec.n : "");
                unit = rec.u ? rec.u : base.bu;
                if (!unit)
                        continue;
                for (u = 0; u < CP_ARRAY_LEN(units); u++) {
                        if (strcmp(units[u].name, unit) == 0)
                                break;
                }
                if (u == CP_ARRAY_LEN(units))
                        continue;
                if (base.bn_len > 0 && base.bn == id_bn) {
                        hint = rec.n ? rec.n : "";
                        hint_len = rec.n_len;
                } else {
                        r = resolve_id(out, st, msg, path, &base, &rec, id, &hint, &hint_len);
                        if (r < 0)
                                return r;
                        id_bn = base.bn_len > 0 ? base.bn : NULL;
                }
                if (!choose_quantity(&rec, units[u].kind, hint, hint_len, &q, &use_sum))
                        continue;
                r = resolve_time(out, path, base.bt + rec.t, msg->rx_ms, &ts);
                if (r < 0)
                        return r;
                value = use_sum ? base.bs + rec.s : base.bv + rec.v;
                value = value * units[u].scale + units[u].offset;
                if (!isfinite(value))
                        return cp_batch_fail(out, CP_REASON_OUT_OF_RANGE, "%s %s is not a finite number",
                                             path, cp_quantity_name(q));
                if (cp_quantity_range_problem(q, value)) {
                        char num[40];

                        cp_fmt_double(value, num, sizeof(num));
                        return cp_batch_fail(out, CP_REASON_OUT_OF_RANGE, "%s %s is %s, %s", path,
                                             cp_quantity_name(q), num, cp_quantity_range_problem(q, value));
                }
                /* Two values for one sensor, quantity and time: no way to tell which is right. */
                for (size_t j = 0; j < out->n; j++) {
                        if (out->v[j].quantity == q && out->v[j].ts_ms == ts &&
                            strcmp(out->v[j].sensor_id, id) == 0)
                                return cp_batch_fail(out, CP_REASON_INCONSISTENT,
                                                     "%s repeats %s of '%s' at the same time as [%zu]", path,
                                                     cp_quantity_name(q), id, origin[j]);
                }
                if (out->n < CP_BATCH_CAP)
                        origin[out->n] = i;
                r = cp_batch_add(out, id, q, value, ts, msg->rx_ms);
                if (r < 0)
                        return r;
        }
        return out->n > 0 ? 0 : -ENODATA;
}

/* What read_record() reads of a record, for cp_json_load_pruned_any(): every field it knows, and
 * every must-understand one (a name ending in '_'), which refuses the pack. */
static const struct cp_json_keep keep_record[] = {
    {"bn", NULL}, {"bt", NULL}, {"bu", NULL}, {"bv", NULL}, {"bs", NULL}, {"bver", NULL},
    {"n", NULL},  {"u", NULL},  {"v", NULL},  {"s", NULL},  {"t", NULL},  {"ut", NULL},
    {"vs", NULL}, {"vd", NULL}, {"vb", NULL}, {"*_", NULL}, {NULL, NULL},
};

static int senml_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct senml_state *st = state;
        json_t *root = NULL;
        int r;

        cp_batch_reset(out);
        r = cp_json_load_pruned_any(msg, out, keep_record, &root);
        if (r < 0)
                return r;
        if (!json_is_array(root))
                r = cp_json_fail_type(out, NULL, "payload", root, "array");
        else
                r = decode_records(st, msg, root, out);
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_senml = {
    .abi = CP_DRIVER_ABI,
    .name = "senml",
    .init = senml_init,
    .free = senml_free,
    .decode = senml_decode,
};
