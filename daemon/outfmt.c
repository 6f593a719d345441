/* outfmt.c - see outfmt.h. */
#include "outfmt.h"

#include "citypulse/cp_tz.h"

#include "citypulse/cp_common.h"
#include "citypulse/cp_driver.h"
#include "timefmt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Datetimes outside years 1..9999 are written as null: ISO 8601 needs four year digits, and the
 * offset arithmetic must not overflow. */
#define ISO_MIN_MS INT64_C(-62135596800000) /* 0001-01-01T00:00:00Z */
#define ISO_MAX_MS INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */

static const char BOM[] = "\xEF\xBB\xBF";
static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

static const char *const names[_CP_OF_MAX] = {
    [CP_OF_JSON] = "json",       [CP_OF_JSONL] = "jsonl",     [CP_OF_CSV] = "csv",
    [CP_OF_GEOJSON] = "geojson", [CP_OF_RECORDS] = "records",
};

int cp_outfmt_parse(const char *name, enum cp_outfmt *ret)
{
        for (int f = 0; f < _CP_OF_MAX; f++) {
                if (f != CP_OF_RECORDS && strcmp(name, names[f]) == 0) {
                        *ret = (enum cp_outfmt)f;
                        return 0;
                }
        }
        return -EINVAL;
}

const char *cp_outfmt_name(enum cp_outfmt f)
{
        return (unsigned)f < _CP_OF_MAX ? names[f] : "json";
}

const char *cp_outfmt_content_type(enum cp_outfmt f)
{
        switch (f) {
        case CP_OF_JSONL:
                return "application/jsonl; charset=utf-8";
        case CP_OF_CSV:
                return "text/csv; charset=utf-8";
        case CP_OF_GEOJSON:
                return "application/geo+json; charset=utf-8";
        case CP_OF_JSON:
        case CP_OF_RECORDS:
        default:
                return "application/json; charset=utf-8";
        }
}

bool cp_outfmt_delim_ok(char c)
{
        return c == '\t' || (c > ' ' && c < 0x7f && c != '"');
}

void cp_outw_init(struct cp_outw *w, enum cp_outfmt fmt, const struct cp_ods_field *const *fields, size_t n,
                  const struct cp_tz *tz)
{
        memset(w, 0, sizeof(*w));
        w->fmt = fmt;
        w->fields = fields;
        w->n_fields = n;
        w->tz = tz;
        w->delim = ';';
        w->bom = true;
        w->total_count = -1;
        w->geo = n;
        w->day = INT64_MIN;
        for (size_t i = 0; i < n; i++) {
                if (fields[i]->type == CP_ODS_GEO_POINT) {
                        w->geo = i;
                        break;
                }
        }
}

/* --- text --- */

/* Length of the character at p: 1 for ASCII, else the well-formed UTF-8 sequence's, 0 when ill-formed. */
static size_t seq_len(const uint8_t *p, size_t len, uint32_t *ret_cp)
{
        if (p[0] < 0x80) {
                *ret_cp = p[0];
                return 1;
        }
        return cp_utf8_seq(p, len, ret_cp);
}

/* Appends s[0..len) with every byte that does not start a well-formed UTF-8 sequence replaced by
 * U+FFFD, and each byte for which esc() gives a text replaced by that text. Runs of plain bytes are
 * copied in one go. */
static void put_utf8(struct cp_buf *out, const char *s, size_t len,
                     const char *(*esc)(uint32_t cp, char tmp[8]))
{
        const uint8_t *p = (const uint8_t *)s;
        size_t run = 0, i = 0;
        char tmp[8];

        while (i < len) {
                uint32_t cp;
                size_t n = seq_len(p + i, len - i, &cp);
                const char *rep;

                rep = n == 0 ? REPLACEMENT : esc(cp, tmp);
                if (!rep) {
                        i += n;
                        continue;
                }
                cp_buf_append(out, s + run, i - run);
                cp_buf_puts(out, rep);
                i += n ? n : 1;
                run = i;
        }
        cp_buf_append(out, s + run, len - run);
}

/* JSON (RFC 8259 7): quote, backslash and control characters; U+2028/2029 too, so that the text is
 * also a valid JavaScript literal. NULL: the character goes out as it is. */
static const char *json_esc(uint32_t cp, char tmp[8])
{
        static const char hex[] = "0123456789abcdef";

        switch (cp) {
        case '"':
                return "\\\"";
        case '\\':
                return "\\\\";
        case '\n':
                return "\\n";
        case '\r':
                return "\\r";
        case '\t':
                return "\\t";
        case '\b':
                return "\\b";
        case '\f':
                return "\\f";
        case 0x2028:
                return "\\u2028";
        case 0x2029:
                return "\\u2029";
        default:
                break;
        }
        if (cp >= 0x20)
                return NULL;
        memcpy(tmp, "\\u00", 4);
        tmp[4] = hex[cp >> 4];
        tmp[5] = hex[cp & 15];
        tmp[6] = '\0';
        return tmp;
}

static void put_json_str(struct cp_buf *out, const char *s, size_t len)
{
        cp_buf_putc(out, '"');
        put_utf8(out, s, len, json_esc);
        cp_buf_putc(out, '"');
}

/* Inside a quoted CSV cell: quotes doubled, NUL replaced (Python's csv and others stop at NUL). */
static const char *csv_esc(uint32_t cp, char tmp[8])
{
        (void)tmp;
        if (cp == '"')
                return "\"\"";
        if (cp == 0)
                return REPLACEMENT;
        return NULL;
}

static void put_csv_cell(const struct cp_outw *w, struct cp_buf *out, const char *s, size_t len)
{
        bool quote = len == 0;
        size_t i = 0;

        /* The common cell: plain ASCII with nothing to quote or replace, copied as it is. */
        while (i < len) {
                unsigned char c = (unsigned char)s[i];
                if (c >= 0x80 || c < 0x20 || c == '"' || c == (unsigned char)w->delim)
                        break;
                i++;
        }
        if (len && i == len) {
                cp_buf_append(out, s, len);
                return;
        }

        for (i = 0; i < len && !quote; i++)
                quote = s[i] == w->delim || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
        if (quote)
                cp_buf_putc(out, '"');
        put_utf8(out, s, len, csv_esc);
        if (quote)
                cp_buf_putc(out, '"');
}

static void put_eol(const struct cp_outw *w, struct cp_buf *out)
{
        cp_buf_puts(out, w->crlf ? "\r\n" : "\n");
}

/* --- values --- */

/* One field's value of the current row, decoded from its column(s). */
struct val {
        enum { V_NULL, V_TEXT, V_INT, V_REAL, V_BOOL, V_TIME, V_GEO } kind;
        const char *s;
        size_t len;
        int64_t i;
        double d, lat, lon;
};

static void read_val(const struct cp_ods_field *f, sqlite3_stmt *st, int col, struct val *v)
{
        int t = sqlite3_column_type(st, col);

        memset(v, 0, sizeof(*v));
        if (t == SQLITE_NULL && f->type != CP_ODS_GEO_POINT)
                return;
        switch (f->type) {
        case CP_ODS_TEXT:
                v->s = (const char *)sqlite3_column_text(st, col);
                v->len = (size_t)sqlite3_column_bytes(st, col);
                v->kind = v->s ? V_TEXT : V_NULL;
                return;
        case CP_ODS_INT:
                if (t == SQLITE_FLOAT) {
                        v->d = sqlite3_column_double(st, col);
                        v->kind = isfinite(v->d) ? V_REAL : V_NULL;
                        return;
                }
                v->i = sqlite3_column_int64(st, col);
                v->kind = V_INT;
                return;
        case CP_ODS_DOUBLE:
                v->d = sqlite3_column_double(st, col);
                v->kind = isfinite(v->d) ? V_REAL : V_NULL;
                return;
        case CP_ODS_BOOLEAN:
                v->i = sqlite3_column_int64(st, col) != 0;
                v->kind = V_BOOL;
                return;
        case CP_ODS_DATETIME:
                v->i = sqlite3_column_int64(st, col);
                v->kind = v->i >= ISO_MIN_MS && v->i <= ISO_MAX_MS ? V_TIME : V_NULL;
                return;
        case CP_ODS_GEO_POINT:
                if (t == SQLITE_NULL || sqlite3_column_type(st, col + 1) == SQLITE_NULL)
                        return;
                v->lat = sqlite3_column_double(st, col);
                v->lon = sqlite3_column_double(st, col + 1);
                if (isfinite(v->lat) && isfinite(v->lon) && fabs(v->lat) <= 90 && fabs(v->lon) <= 180)
                        v->kind = V_GEO;
                return;
        }
}

/* Decimal digits of v into buf (no NUL); returns their count. */
static size_t put_i64(char *buf, int64_t v)
{
        char d[24];
        uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        size_t n = 0, o = 0;

        do
                d[n++] = (char)('0' + u % 10);
        while ((u /= 10) > 0);
        if (v < 0)
                buf[o++] = '-';
        while (n)
                buf[o++] = d[--n];
        return o;
}

static void two(char *p, int v)
{
        p[0] = (char)('0' + v / 10);
        p[1] = (char)('0' + v % 10);
}

/* The text cp_time_iso() writes ("2026-03-01T11:00:00.123+01:00", "...Z" without a zone), without
 * printf: the date part is kept while rows stay on the same local day. */
static size_t put_time(struct cp_outw *w, char *buf, int64_t ms)
{
        int32_t off = w->tz ? cp_tz_offset_at(w->tz, ms) : 0;
        int64_t local = ms + (int64_t)off * 1000;
        int64_t day = local >= 0 ? local / 86400000 : -((-local + 86399999) / 86400000);
        int64_t rem = local - day * 86400000;
        size_t o;

        if (day != w->day) {
                int64_t y;
                unsigned m, dd;

                cp_civil_from_days(day, &y, &m, &dd);
                snprintf(w->date, sizeof(w->date), "%04lld-%02u-%02u", (long long)y, m, dd);
                w->day = day;
        }
        if (w->tz && (!w->off_set || off != w->off)) {
                int a = off < 0 ? -off : off;
                w->offs[0] = off < 0 ? '-' : '+';
                two(w->offs + 1, a / 3600);
                w->offs[3] = ':';
                two(w->offs + 4, a / 60 % 60);
                w->offs[6] = '\0';
                w->off = off;
                w->off_set = true;
        }
        o = strlen(w->date);
        memcpy(buf, w->date, o);
        buf[o++] = 'T';
        two(buf + o, (int)(rem / 3600000));
        buf[o + 2] = ':';
        two(buf + o + 3, (int)(rem / 60000 % 60));
        buf[o + 5] = ':';
        two(buf + o + 6, (int)(rem / 1000 % 60));
        buf[o + 8] = '.';
        buf[o + 9] = (char)('0' + rem % 1000 / 100);
        two(buf + o + 10, (int)(rem % 100));
        o += 12;
        if (w->tz) {
                memcpy(buf + o, w->offs, 6);
                o += 6;
        } else {
                buf[o++] = 'Z';
        }
        buf[o] = '\0';
        return o;
}

static int n_cols(const struct cp_ods_field *f)
{
        return f->type == CP_ODS_GEO_POINT ? 2 : 1;
}

/* The value as bare text (CSV cell, or the inside of a JSON string for times and geo points).
 * Returns the text, in tmp or borrowed from the row; *len its length. NULL for null. */
static const char *val_text(const struct cp_outw *w, const struct val *v, char tmp[2 * CP_FMT_DOUBLE_MAX + 2],
                            size_t *len)
{
        size_t n;

        switch (v->kind) {
        case V_NULL:
                return NULL;
        case V_TEXT:
                *len = v->len;
                return v->s;
        case V_INT:
                *len = put_i64(tmp, v->i);
                tmp[*len] = '\0';
                return tmp;
        case V_REAL:
                cp_fmt_double(v->d, tmp, CP_FMT_DOUBLE_MAX);
                break;
        case V_BOOL:
                strcpy(tmp, v->i ? "true" : "false");
                break;
        case V_TIME:
                *len = put_time((struct cp_outw *)(uintptr_t)w, tmp, v->i);
                return tmp;
        case V_GEO:
                cp_fmt_double(v->lat, tmp, CP_FMT_DOUBLE_MAX);
                n = strlen(tmp);
                tmp[n++] = ',';
                cp_fmt_double(v->lon, tmp + n, CP_FMT_DOUBLE_MAX);
                break;
        }
        *len = strlen(tmp);
        return tmp;
}

static void put_json_val(const struct cp_outw *w, struct cp_buf *out, const struct val *v)
{
        char tmp[2 * CP_FMT_DOUBLE_MAX + 2], lon[CP_FMT_DOUBLE_MAX];
        const char *s;
        size_t len;

        if (v->kind == V_GEO && w->fmt == CP_OF_RECORDS) {
                cp_fmt_double(v->lat, tmp, CP_FMT_DOUBLE_MAX);
                cp_fmt_double(v->lon, lon, sizeof(lon));
                cp_buf_printf(out, "{\"lon\":%s,\"lat\":%s}", lon, tmp);
                return;
        }
        s = val_text(w, v, tmp, &len);
        if (!s)
                cp_buf_puts(out, "null");
        else if (v->kind == V_TEXT || v->kind == V_TIME || v->kind == V_GEO)
                put_json_str(out, s, len);
        else
                cp_buf_append(out, s, len);
}

/* The row as one flat JSON object; field `skip` (an index, n_fields for none) is left out. */
static void put_json_object(const struct cp_outw *w, sqlite3_stmt *st, struct cp_buf *out, size_t skip)
{
        bool first = true;
        int col = 0;

        cp_buf_putc(out, '{');
        for (size_t i = 0; i < w->n_fields; col += n_cols(w->fields[i]), i++) {
                struct val v;

                if (i == skip)
                        continue;
                read_val(w->fields[i], st, col, &v);
                if (!first)
                        cp_buf_putc(out, ',');
                first = false;
                put_json_str(out, w->fields[i]->name, strlen(w->fields[i]->name));
                cp_buf_putc(out, ':');
                put_json_val(w, out, &v);
        }
        cp_buf_putc(out, '}');
}

static int geo_col(const struct cp_outw *w)
{
        int col = 0;

        for (size_t i = 0; i < w->geo; i++)
                col += n_cols(w->fields[i]);
        return col;
}

static void put_feature(const struct cp_outw *w, sqlite3_stmt *st, struct cp_buf *out)
{
        char lat[CP_FMT_DOUBLE_MAX], lon[CP_FMT_DOUBLE_MAX];
        struct val g = {.kind = V_NULL};

        if (w->geo < w->n_fields)
                read_val(w->fields[w->geo], st, geo_col(w), &g);
        cp_buf_puts(out, "{\"type\":\"Feature\",\"geometry\":");
        if (g.kind == V_GEO) {
                cp_fmt_double(g.lat, lat, sizeof(lat));
                cp_fmt_double(g.lon, lon, sizeof(lon));
                cp_buf_printf(out, "{\"type\":\"Point\",\"coordinates\":[%s,%s]}", lon, lat);
        } else {
                cp_buf_puts(out, "null");
        }
        cp_buf_puts(out, ",\"properties\":");
        put_json_object(w, st, out, w->geo);
        cp_buf_putc(out, '}');
}

static void put_csv_row(const struct cp_outw *w, sqlite3_stmt *st, struct cp_buf *out)
{
        char tmp[2 * CP_FMT_DOUBLE_MAX + 2];
        int col = 0;

        for (size_t i = 0; i < w->n_fields; col += n_cols(w->fields[i]), i++) {
                struct val v;
                const char *s;
                size_t len;

                if (i)
                        cp_buf_putc(out, w->delim);
                read_val(w->fields[i], st, col, &v);
                s = val_text(w, &v, tmp, &len);
                if (s)
                        put_csv_cell(w, out, s, len);
        }
        put_eol(w, out);
}

/* --- the writer --- */

void cp_outw_begin(struct cp_outw *w, struct cp_buf *out)
{
        switch (w->fmt) {
        case CP_OF_JSON:
                cp_buf_putc(out, '[');
                break;
        case CP_OF_JSONL:
                break;
        case CP_OF_CSV:
                if (w->bom)
                        cp_buf_puts(out, BOM);
                for (size_t i = 0; i < w->n_fields; i++) {
                        if (i)
                                cp_buf_putc(out, w->delim);
                        put_csv_cell(w, out, w->fields[i]->name, strlen(w->fields[i]->name));
                }
                put_eol(w, out);
                break;
        case CP_OF_GEOJSON:
                cp_buf_puts(out, "{\"type\":\"FeatureCollection\",\"features\":[");
                break;
        case CP_OF_RECORDS:
        default:
                if (w->total_count >= 0) {
                        cp_buf_printf(out, "{\"total_count\":%lld,\"results\":[", (long long)w->total_count);
                        w->total_done = true;
                } else {
                        cp_buf_puts(out, "{\"results\":[");
                }
                break;
        }
}

void cp_outw_row_stmt(struct cp_outw *w, sqlite3_stmt *st, struct cp_buf *out)
{
        switch (w->fmt) {
        case CP_OF_JSON:
        case CP_OF_GEOJSON:
        case CP_OF_RECORDS:
        default:
                cp_buf_puts(out, w->rows ? ",\n" : "\n");
                if (w->fmt == CP_OF_GEOJSON)
                        put_feature(w, st, out);
                else
                        put_json_object(w, st, out, w->n_fields);
                break;
        case CP_OF_JSONL:
                put_json_object(w, st, out, w->n_fields);
                cp_buf_putc(out, '\n');
                break;
        case CP_OF_CSV:
                put_csv_row(w, st, out);
                break;
        }
        w->rows++;
}

void cp_outw_end(struct cp_outw *w, struct cp_buf *out, int64_t total_count)
{
        const char *nl = w->rows ? "\n" : "";

        switch (w->fmt) {
        case CP_OF_JSON:
                cp_buf_printf(out, "%s]\n", nl);
                break;
        case CP_OF_JSONL:
        case CP_OF_CSV:
                break;
        case CP_OF_GEOJSON:
                cp_buf_printf(out, "%s]}\n", nl);
                break;
        case CP_OF_RECORDS:
        default:
                if (w->total_done)
                        cp_buf_printf(out, "%s]}\n", nl);
                else
                        cp_buf_printf(out, "%s],\"total_count\":%lld}\n", nl,
                                      (long long)CP_MAX(total_count, 0));
                w->total_done = true;
                break;
        }
}

/* --- jansson --- */

/* A jansson string of s[0..len) with ill-formed UTF-8 replaced as in the stream (jansson refuses it). */
static json_t *json_text(const char *s, size_t len)
{
        struct cp_buf b = CP_BUF_INIT;
        const uint8_t *p = (const uint8_t *)s;
        json_t *j;
        size_t i, n;
        uint32_t cp;

        for (i = 0; i < len; i += n)
                if ((n = seq_len(p + i, len - i, &cp)) == 0)
                        break;
        if (i == len)
                return json_stringn(s, len);
        cp_buf_append(&b, s, i);
        while (i < len) {
                n = seq_len(p + i, len - i, &cp);
                if (n)
                        cp_buf_append(&b, s + i, n);
                else
                        cp_buf_puts(&b, REPLACEMENT);
                i += n ? n : 1;
        }
        j = b.oom ? NULL : json_stringn(b.p, b.len);
        cp_buf_free(&b);
        return j;
}

static json_t *val_json(const struct cp_outw *w, const struct val *v)
{
        char tmp[2 * CP_FMT_DOUBLE_MAX + 2];
        const char *s;
        size_t len;

        switch (v->kind) {
        case V_NULL:
                return json_null();
        case V_TEXT:
                return json_text(v->s, v->len);
        case V_INT:
                return json_integer((json_int_t)v->i);
        case V_REAL:
                return json_real(v->d);
        case V_BOOL:
                return json_boolean(v->i);
        case V_TIME:
        case V_GEO:
        default:
                s = val_text(w, v, tmp, &len);
                return json_stringn(s, len);
        }
}

json_t *cp_outw_row_json(const struct cp_outw *w, sqlite3_stmt *st)
{
        json_t *o = json_object();
        int col = 0;

        if (!o)
                return NULL;
        for (size_t i = 0; i < w->n_fields; col += n_cols(w->fields[i]), i++) {
                struct val v;

                read_val(w->fields[i], st, col, &v);
                if (json_object_set_new(o, w->fields[i]->name, val_json(w, &v)) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}
