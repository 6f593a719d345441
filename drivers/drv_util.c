/* drv_util.c - pure helpers shared by the drivers (cp_driver.h) and the names behind the X-macro
 * tables: reasons, quantities, errno names. Nothing here logs, allocates or reads a clock. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_err.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_reading.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

const char *cp_err_name(int err)
{
        /* -INT_MIN would overflow; no errno is that large anyway. */
        if (err == -2147483647 - 1)
                return "E?";
        switch (err < 0 ? -err : err) {
#define CP_ERR_CASE(e)                                                                                       \
        case e:                                                                                              \
                return #e;
                CP_ERRNO_MAP(CP_ERR_CASE)
#undef CP_ERR_CASE
        default:
                return "E?";
        }
}

static const char *const reason_labels[] = {
#define CP_R_LABEL(e, label) [CP_REASON_##e] = (label),
    CP_REASON_MAP(CP_R_LABEL)
#undef CP_R_LABEL
};

const char *cp_reason_label(enum cp_reason r)
{
        if ((unsigned)r >= CP_ARRAY_LEN(reason_labels))
                return "unknown";
        return reason_labels[r];
}

static const struct {
        const char *name;
        enum cp_qkind kind;
} quantities[] = {
#define CP_Q_ROW(e, name, kind) [CP_Q_##e] = {name, kind},
    CP_QUANTITY_MAP(CP_Q_ROW)
#undef CP_Q_ROW
};

const char *cp_quantity_name(enum cp_quantity q)
{
        if ((unsigned)q >= CP_ARRAY_LEN(quantities))
                return NULL;
        return quantities[q].name;
}

int cp_quantity_parse(const char *name, enum cp_quantity *ret)
{
        if (!name)
                return -EINVAL;
        for (size_t i = 0; i < CP_ARRAY_LEN(quantities); i++) {
                if (strcmp(quantities[i].name, name) == 0) {
                        *ret = (enum cp_quantity)i;
                        return 0;
                }
        }
        return -EINVAL;
}

enum cp_qkind cp_quantity_kind(enum cp_quantity q)
{
        /* An out-of-range quantity is a programming error; a gauge is the harmless answer. */
        if ((unsigned)q >= CP_ARRAY_LEN(quantities))
                return CP_QK_GAUGE;
        return quantities[q].kind;
}

const char *cp_conf_get(const struct cp_conf_section *sec, const char *key)
{
        if (!sec || !key)
                return NULL;
        for (size_t i = 0; i < sec->n; i++) {
                if (sec->kv[i].key && strcmp(sec->kv[i].key, key) == 0)
                        return sec->kv[i].value;
        }
        return NULL;
}

/* ---- UTF-8 and ids ---- */

size_t cp_utf8_seq(const uint8_t *p, size_t len, uint32_t *ret_cp)
{
        uint32_t cp;
        size_t n;

        if (p[0] < 0x80) {
                *ret_cp = p[0];
                return 1;
        }
        if (p[0] >= 0xc2 && p[0] <= 0xdf) {
                n = 2;
                cp = p[0] & 0x1f;
        } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                n = 3;
                cp = p[0] & 0x0f;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                n = 4;
                cp = p[0] & 0x07;
        } else {
                return 0;
        }
        if (len < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return n;
}

/* C0, DEL and C1 controls. */
static bool is_control(uint32_t cp)
{
        return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

const char *cp_sensor_id_problem(const char *id, size_t len)
{
        const uint8_t *p = (const uint8_t *)id;
        size_t i = 0;

        if (!id || len == 0)
                return "is empty";
        if (len >= CP_SENSOR_ID_MAX)
                return "is too long";
        while (i < len) {
                uint32_t cp;
                size_t n = cp_utf8_seq(p + i, len - i, &cp);

                if (n == 0)
                        return "is not valid UTF-8";
                if (is_control(cp))
                        return "contains a control character";
                /* The id becomes part of published topics (opendata/.../<id>). */
                if (cp == '+' || cp == '#')
                        return "contains an MQTT wildcard";
                i += n;
        }
        return NULL;
}

int cp_sensor_id_valid(const char *id, size_t len)
{
        return cp_sensor_id_problem(id, len) ? -EINVAL : 0;
}

/* ---- batches ---- */

/* Copies src into dst[size], escaping what a log line or a JSON string must not carry raw, and
 * cutting only between characters. */
static void sanitize_text(char *dst, size_t size, const char *src)
{
        const uint8_t *p = (const uint8_t *)src;
        size_t len = strlen(src), i = 0, o = 0;

        while (i < len) {
                uint32_t cp;
                size_t n = cp_utf8_seq(p + i, len - i, &cp);

                if (n > 0 && !is_control(cp)) {
                        if (o + n >= size)
                                break;
                        memcpy(dst + o, p + i, n);
                        o += n;
                        i += n;
                        continue;
                }
                /* An escaped control or stray byte: one byte at a time. */
                if (o + 4 >= size)
                        break;
                (void)snprintf(dst + o, size - o, "\\x%02x", p[i]);
                o += 4;
                i++;
        }
        dst[o] = '\0';
}

static void batch_vfail(struct cp_batch *b, enum cp_reason reason, const char *fmt, va_list ap)
    CP_PRINTF(3, 0);

static void batch_vfail(struct cp_batch *b, enum cp_reason reason, const char *fmt, va_list ap)
{
        /* Larger than text[] so that sanitize_text() decides where to cut. */
        char raw[4 * CP_REASON_TEXT_MAX];

        (void)vsnprintf(raw, sizeof(raw), fmt, ap);
        b->n = 0;
        b->reason = reason;
        sanitize_text(b->text, sizeof(b->text), raw);
}

int cp_batch_fail(struct cp_batch *b, enum cp_reason reason, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        batch_vfail(b, reason, fmt, ap);
        va_end(ap);
        return -EPROTO;
}

static int batch_fail_errno(struct cp_batch *b, int err, enum cp_reason reason, const char *fmt, ...)
    CP_PRINTF(4, 5);

static int batch_fail_errno(struct cp_batch *b, int err, enum cp_reason reason, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        batch_vfail(b, reason, fmt, ap);
        va_end(ap);
        return err;
}

void cp_batch_reset(struct cp_batch *b)
{
        b->n = 0;
        b->reason = CP_REASON_NONE;
        b->text[0] = '\0';
        b->partial = CP_REASON_NONE;
        b->partial_count = 0;
        b->partial_text[0] = '\0';
}

void cp_batch_note_partial(struct cp_batch *b, enum cp_reason reason, const char *fmt, ...)
{
        char raw[2 * CP_REASON_TEXT_MAX];
        va_list ap;

        if (b->partial_count++ > 0)
                return;
        b->partial = reason;
        va_start(ap, fmt);
        (void)vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        sanitize_text(b->partial_text, sizeof(b->partial_text), raw);
}

int cp_batch_add(struct cp_batch *b, const char *sensor_id, enum cp_quantity q, double value, int64_t ts_ms,
                 int64_t rx_ms)
{
        struct cp_reading *r;
        const char *problem;
        size_t len;

        if ((unsigned)q >= _CP_Q_MAX)
                return batch_fail_errno(b, -EINVAL, CP_REASON_UNSUPPORTED,
                                        "internal error: unknown quantity %d", (int)q);
        len = sensor_id ? strlen(sensor_id) : 0;
        /* Drivers add several readings of one sensor in a row: an id just accepted needs no new check. */
        if (sensor_id && b->n > 0 && b->n <= CP_BATCH_CAP && len < CP_SENSOR_ID_MAX &&
            memcmp(b->v[b->n - 1].sensor_id, sensor_id, len + 1) == 0)
                problem = NULL;
        else
                problem = cp_sensor_id_problem(sensor_id, len);
        if (problem && len >= CP_SENSOR_ID_MAX)
                return batch_fail_errno(b, -ENAMETOOLONG, CP_REASON_BAD_ID,
                                        "sensor id '%.40s...' is %zu bytes long, limit %d", sensor_id, len,
                                        CP_SENSOR_ID_MAX - 1);
        if (problem)
                return batch_fail_errno(b, -EINVAL, CP_REASON_BAD_ID, "sensor id '%s' %s",
                                        sensor_id ? sensor_id : "", problem);
        if (!isfinite(value))
                return batch_fail_errno(b, -ERANGE, CP_REASON_OUT_OF_RANGE, "%s %s is not a finite number",
                                        sensor_id, cp_quantity_name(q));
        if (b->n >= CP_BATCH_CAP)
                return batch_fail_errno(b, -ENOSPC, CP_REASON_TOO_MANY_READINGS,
                                        "more than %d readings in one message", CP_BATCH_CAP);
        r = &b->v[b->n++];
        memcpy(r->sensor_id, sensor_id, len + 1);
        r->quantity = q;
        r->value = value;
        r->ts_ms = ts_ms;
        r->rx_ms = rx_ms;
        return 0;
}

int cp_batch_add_ch(struct cp_batch *b, const char *base, const char *channel, enum cp_quantity q,
                    double value, int64_t ts_ms, int64_t rx_ms)
{
        /* Room for two maximal parts, so that an overlong id is reported, not silently cut. */
        char id[2 * CP_SENSOR_ID_MAX + 2];

        if (!base || !channel)
                return batch_fail_errno(b, -EINVAL, CP_REASON_BAD_ID, "internal error: sensor id missing");
        if (strlen(base) >= CP_SENSOR_ID_MAX || strlen(channel) >= CP_SENSOR_ID_MAX)
                return batch_fail_errno(b, -ENAMETOOLONG, CP_REASON_BAD_ID,
                                        "sensor id '%.40s...' is longer than %d bytes", base,
                                        CP_SENSOR_ID_MAX - 1);
        (void)snprintf(id, sizeof(id), "%s:%s", base, channel);
        return cp_batch_add(b, id, q, value, ts_ms, rx_ms);
}

/* ---- time ---- */

static bool take_digits(const char *s, size_t n, int *ret)
{
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

static bool civil_valid(int y, int m, int d)
{
        int64_t yy;
        unsigned mm, dd;

        if (m < 1 || m > 12 || d < 1 || d > 31)
                return false;
        /* Day 31 of a 30-day month comes back as the 1st of the next one. */
        cp_civil_from_days(cp_days_from_civil(y, (unsigned)m, (unsigned)d), &yy, &mm, &dd);
        return yy == y && mm == (unsigned)m && dd == (unsigned)d;
}

struct civil_time {
        int y, mo, d, h, mi, sec, ms;
};

/* The fixed part, "YYYY-MM-DD{T|t| }hh:mm:ss" (19 bytes), with every field in range. */
static bool parse_date_time(const char *s, struct civil_time *ct)
{
        if (!take_digits(s, 4, &ct->y) || s[4] != '-' || !take_digits(s + 5, 2, &ct->mo) || s[7] != '-' ||
            !take_digits(s + 8, 2, &ct->d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
            !take_digits(s + 11, 2, &ct->h) || s[13] != ':' || !take_digits(s + 14, 2, &ct->mi) ||
            s[16] != ':' || !take_digits(s + 17, 2, &ct->sec))
                return false;
        return civil_valid(ct->y, ct->mo, ct->d) && ct->h <= 23 && ct->mi <= 59 && ct->sec <= 60;
}

/* ".f" with 1 to 9 digits at s[*i], if any; the fraction is truncated to the millisecond. */
static bool parse_fraction(const char *s, size_t len, size_t *i, int *ret_ms)
{
        size_t nd = 0;
        int ms = 0;

        if (*i >= len || s[*i] != '.')
                return true;
        for ((*i)++; *i < len && s[*i] >= '0' && s[*i] <= '9'; (*i)++, nd++) {
                if (nd < 3)
                        ms = ms * 10 + (s[*i] - '0');
        }
        if (nd == 0 || nd > 9)
                return false;
        for (; nd < 3; nd++)
                ms *= 10;
        *ret_ms = ms;
        return true;
}

/* "Z", "z", "+hh:mm", "-hh:mm", "+hhmm" or "-hhmm", ending the string; east-positive seconds. */
static bool parse_offset(const char *s, size_t len, int32_t *ret_off)
{
        int oh, om;

        if (len == 1 && (s[0] == 'Z' || s[0] == 'z')) {
                *ret_off = 0;
                return true;
        }
        if (s[0] != '+' && s[0] != '-')
                return false;
        if (len == 6 && s[3] == ':') {
                if (!take_digits(s + 1, 2, &oh) || !take_digits(s + 4, 2, &om))
                        return false;
        } else if (len == 5) {
                if (!take_digits(s + 1, 2, &oh) || !take_digits(s + 3, 2, &om))
                        return false;
        } else {
                return false;
        }
        if (oh > 23 || om > 59)
                return false;
        *ret_off = (s[0] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        return true;
}

/* YYYY-MM-DD{T|t| }hh:mm:ss[.f{1,9}][Z|z|+hh:mm|-hh:mm|+hhmm|-hhmm] */
int cp_time_parse(const char *s, size_t len, const struct cp_tz *tz, int64_t *ret_ms)
{
        struct civil_time ct = {0};
        size_t i = 19;
        int32_t off;
        int64_t secs;

        if (!s || !ret_ms || len < 19 || !parse_date_time(s, &ct) || !parse_fraction(s, len, &i, &ct.ms))
                return -EINVAL;
        /* A leap second is kept inside its minute rather than spilling into the next. */
        if (ct.sec == 60) {
                ct.sec = 59;
                ct.ms = 999;
        }
        if (i == len) {
                if (!tz || cp_tz_local_to_utc(tz, ct.y, ct.mo, ct.d, ct.h, ct.mi, ct.sec, ct.ms, ret_ms) < 0)
                        return -EINVAL;
                return 0;
        }
        if (!parse_offset(s + i, len - i, &off))
                return -EINVAL;
        secs = cp_days_from_civil(ct.y, (unsigned)ct.mo, (unsigned)ct.d) * 86400;
        secs += (int64_t)ct.h * 3600 + (int64_t)ct.mi * 60 + ct.sec - off;
        *ret_ms = secs * 1000 + ct.ms;
        return 0;
}

int cp_time_from_epoch(double v, int64_t *ret_ms)
{
        double a = fabs(v), us;
        int64_t ius, ms;

        if (!isfinite(v))
                return -ERANGE;
        if (a < 1e11)
                us = v * 1e6;
        else if (a < 1e14)
                us = v * 1e3;
        else if (a < 1e17)
                us = v;
        else if (a < 1e20)
                us = v / 1e3;
        else
                return -ERANGE;
        /* Rounding to the microsecond first absorbs binary noise: 1772359200.123 s is stored as
         * ...200.12299999, and must still give 123 ms. Every branch keeps |us| < 1e17. */
        ius = (int64_t)round(us);
        ms = ius / 1000 - (ius % 1000 < 0 ? 1 : 0);
        if (ms < CP_TIME_MIN_MS || ms >= CP_TIME_MAX_MS)
                return -ERANGE;
        *ret_ms = ms;
        return 0;
}

/* ---- texts and values ---- */

bool cp_span_is(const char *s, size_t len, const char *word)
{
        return strlen(word) == len && memcmp(s, word, len) == 0;
}

void cp_fmt_double_g(double d, char *buf, size_t size)
{
        for (int prec = 1; prec <= 17; prec++) {
                (void)snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return;
        }
}

void cp_fmt_double(double d, char *buf, size_t size)
{
        /* Below 1e15 every whole double is exact in "%.0f" and short enough to read. */
        if (d == floor(d) && fabs(d) < 1e15) {
                (void)snprintf(buf, size, "%.0f", d);
                return;
        }
        /* The same text cp_fmt_double_g() finds, in at most three tries instead of up to seventeen:
         * a double whose shortest form has p <= 15 significant digits (DBL_DIG) prints as exactly that
         * form under "%.15g", which drops trailing zeros, and for what reaches here (not whole, or
         * beyond 1e15) %.15g and %.<p>g agree on fixed or exponent notation. */
        /* Most sensor values and coordinates have at most 7 decimals: when the 7-decimal rounding reads
         * back as d, it is the shortest form (trailing zeros dropped), written without printf. The
         * scaled value stays below 2^53 (exact), and 1e-4 <= |d| keeps %g's fixed notation. */
        if (fabs(d) >= 1e-4 && fabs(d) < 1e9 && size >= 32) {
                int dec = fabs(d) < 1e8 ? 7 : 6;
                double scale = dec == 7 ? 1e7 : 1e6;
                int64_t k = llround(d * scale), unit = dec == 7 ? 10000000 : 1000000;

                if ((double)k / scale == d) {
                        char digits[24];
                        uint64_t u = (uint64_t)(k < 0 ? -k : k), ip = u / (uint64_t)unit, fp = u % (uint64_t)unit;
                        size_t o = 0, n = 0;

                        if (k < 0)
                                buf[o++] = '-';
                        do
                                digits[n++] = (char)('0' + ip % 10);
                        while ((ip /= 10) > 0);
                        while (n)
                                buf[o++] = digits[--n];
                        if (fp) {
                                int w = dec;
                                while (fp % 10 == 0) {
                                        fp /= 10;
                                        w--;
                                }
                                buf[o++] = '.';
                                for (int i = w - 1; i >= 0; i--) {
                                        buf[o + (size_t)i] = (char)('0' + fp % 10);
                                        fp /= 10;
                                }
                                o += (size_t)w;
                        }
                        buf[o] = '\0';
                        return;
                }
        }
        if (fabs(d) < DBL_MIN) { /* subnormal: fewer digits of precision, the argument fails */
                cp_fmt_double_g(d, buf, size);
                return;
        }
        for (int prec = 15; prec <= 17; prec++) {
                (void)snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return;
        }
}

const char *cp_quantity_range_problem(enum cp_quantity q, double v)
{
        switch (q) {
        case CP_Q_OCCUPIED:
                return v != 0 && v != 1 ? "expected 0 or 1" : NULL;
        case CP_Q_FREE_SPACES:
        case CP_Q_TOTAL_SPACES:
        case CP_Q_OCCUPIED_SPACES:
        case CP_Q_ENTRIES_TOTAL:
        case CP_Q_EXITS_TOTAL:
                return v < 0 || v != floor(v) || v > CP_JSON_COUNT_MAX
                           ? "expected a whole number 0..1000000000"
                           : NULL;
        case CP_Q_ENERGY_IMPORT_KWH:
        case CP_Q_ENERGY_EXPORT_KWH:
        case CP_Q_APPARENT_POWER_VA:
        case CP_Q_VOLTAGE_V:
        case CP_Q_VOLTAGE_V_L1:
        case CP_Q_VOLTAGE_V_L2:
        case CP_Q_VOLTAGE_V_L3:
        case CP_Q_BATTERY_V:
        case CP_Q_FREQUENCY_HZ:
                return v < 0 ? "expected >= 0" : NULL;
        case CP_Q_POWER_FACTOR:
                return v < -1 || v > 1 ? "expected -1..1" : NULL;
        case CP_Q_HUMIDITY_PCT:
                return v < 0 || v > 100 ? "expected 0..100" : NULL;
        case CP_Q_TEMPERATURE_C:
                return v < -273.15 ? "expected >= -273.15" : NULL;
        default:
                return NULL;
        }
}

void cp_quantity_bounds(enum cp_quantity q, double *ret_lo, double *ret_hi)
{
        double lo, hi;

        switch (q) {
        case CP_Q_APPARENT_POWER_VA:
                lo = 0, hi = 1e7;
                break;
        case CP_Q_POWER_FACTOR:
                lo = -1, hi = 1;
                break;
        case CP_Q_VOLTAGE_V:
                lo = 0, hi = 1000;
                break;
        case CP_Q_CURRENT_A:
                lo = -1e5, hi = 1e5;
                break;
        case CP_Q_FREQUENCY_HZ:
                lo = 0, hi = 1000;
                break;
        case CP_Q_ENERGY_IMPORT_KWH:
        case CP_Q_ENERGY_EXPORT_KWH:
                lo = 0, hi = 1e9;
                break;
        case CP_Q_BATTERY_V:
                lo = 0, hi = 100;
                break;
        case CP_Q_TEMPERATURE_C:
                lo = -273.15, hi = 1000;
                break;
        case CP_Q_HUMIDITY_PCT:
                lo = 0, hi = 100;
                break;
        default: /* power_w, reactive_power_var: signed */
                lo = -1e7, hi = 1e7;
                break;
        }
        *ret_lo = lo;
        *ret_hi = hi;
}

int cp_batch_fail_bounds(struct cp_batch *b, const char *name, double v, double lo, double hi,
                         const char *note)
{
        char sv[CP_FMT_DOUBLE_MAX], slo[CP_FMT_DOUBLE_MAX], shi[CP_FMT_DOUBLE_MAX];

        cp_fmt_double(v, sv, sizeof(sv));
        cp_fmt_double(lo, slo, sizeof(slo));
        cp_fmt_double(hi, shi, sizeof(shi));
        return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s is %s, expected %s to %s%s", name, sv, slo, shi,
                             note ? note : "");
}

const char *cp_value_check_problem(double v, enum cp_value_check check)
{
        switch (check) {
        case CP_CHECK_SIGNED:
                return NULL;
        case CP_CHECK_NONNEG:
                return v < 0 ? "expected >= 0" : NULL;
        case CP_CHECK_PF:
                return v < -1 || v > 1 ? "expected -1 to 1" : NULL;
        case CP_CHECK_ABOVE_0K:
                return v < -273.15 ? "below absolute zero (-273.15)" : NULL;
        }
        return NULL;
}

/* ---- topics ---- */

bool cp_topic_span_get(const char *topic, const struct cp_topic_span *span, const char **ret, size_t *ret_len)
{
        size_t n = 1, first, len = strlen(topic);
        const char *p = topic, *end;

        for (size_t i = 0; i < len; i++)
                n += topic[i] == '/';
        if ((span->level > 0 && (size_t)span->level > n) || (span->level < 0 && (size_t)-span->level > n))
                return false;
        first = span->level > 0 ? (size_t)span->level : n + 1 - (size_t)-span->level;
        for (size_t i = 1; i < first; i++)
                p = strchr(p, '/') + 1;
        end = span->to_end ? NULL : strchr(p, '/');
        *ret = p;
        *ret_len = end ? (size_t)(end - p) : strlen(p);
        return true;
}

/* ---- driver settings ---- */

int cp_conf_parse_topic_span(const char *driver, const char *key, const char *value,
                             struct cp_topic_span *ret, char *err, size_t errlen)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(value, &end, 10);
        if (errno || end == value || v == 0 || v > CP_TOPIC_LEVEL_MAX || v < -CP_TOPIC_LEVEL_MAX ||
            (*end && strcmp(end, "..") != 0)) {
                (void)snprintf(err, errlen,
                               "driver.%s.%s: '%s' is not a topic level: N or N.. with N in 1..%d from the "
                               "start or -1..-%d from the end",
                               driver, key, value, CP_TOPIC_LEVEL_MAX, CP_TOPIC_LEVEL_MAX);
                return -EINVAL;
        }
        ret->to_end = *end != '\0';
        ret->level = (int)v;
        return 0;
}

#define DEFAULT_TIMEZONE "Europe/Paris"

static const char *driver_name(const struct cp_conf_section *conf)
{
        return conf && conf->driver ? conf->driver : "?";
}

int cp_conf_check_keys(const struct cp_conf_section *conf, const char *const *allowed, char *err, size_t errlen)
{
        for (size_t i = 0; conf && i < conf->n; i++) {
                const char *k = conf->kv[i].key ? conf->kv[i].key : "";
                bool ok = false;

                for (size_t a = 0; allowed && allowed[a] && !ok; a++)
                        ok = strcmp(k, allowed[a]) == 0;
                if (!ok) {
                        (void)snprintf(err, errlen, "driver.%s.%s: unknown key", driver_name(conf), k);
                        return -EINVAL;
                }
        }
        return 0;
}

int cp_conf_load_tz(const struct cp_conf_section *conf, struct cp_tz **ret, char *err, size_t errlen)
{
        const char *zone = cp_conf_get(conf, "timezone"), *driver = driver_name(conf);
        int r;

        if (!zone)
                zone = DEFAULT_TIMEZONE;
        r = cp_tz_load(zone, ret);
        if (r == -ENOENT)
                (void)snprintf(err, errlen, "driver.%s.timezone: unknown time zone '%s'", driver, zone);
        else if (r == -EINVAL)
                (void)snprintf(err, errlen, "driver.%s.timezone: invalid time zone name '%s'", driver, zone);
        else if (r < 0)
                (void)snprintf(err, errlen, "driver.%s.timezone: cannot load time zone '%s': %s", driver, zone,
                               strerror(-r));
        return r;
}

int cp_driver_tz_init(const struct cp_conf_section *conf, void **ret_state, char *err, size_t errlen)
{
        static const char *const keys[] = {"timezone", NULL};
        struct cp_tz *tz;
        int r;

        if ((r = cp_conf_check_keys(conf, keys, err, errlen)) < 0)
                return r;
        if ((r = cp_conf_load_tz(conf, &tz, err, errlen)) < 0)
                return r;
        *ret_state = tz;
        return 0;
}

void cp_driver_tz_free(void *state)
{
        cp_tz_free(state);
}
