/* tz.c - IANA time zones read from TZif files (RFC 8536, versions 1 to 4), without tzset().
 *
 * localtime_r()/mktime() depend on the process-wide TZ and take a lock inside glibc; the daemon needs
 * several zones at once (agg.timezone, one per driver) from several threads, so it parses the files
 * itself. The 64-bit body of a v2+ file is used when present; instants after its last transition
 * follow the POSIX TZ string of the footer (with the v3 extension of hours -167..167), which is what
 * makes future years right with "slim" files, whose tables stop at the last rule change. */
#include "citypulse/cp_common.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZ_NAME_MAX    255
/* The largest zone file is about 4 KiB; anything far bigger is not a TZif file. */
#define TZ_FILE_MAX   (1024L * 1024)
#define TZ_HEADER_LEN 44
/* RFC 8536 3.2: a UT offset SHOULD lie in -89999..93599. The search window of local_to_utc() relies on
 * that bound, so files outside it are refused. */
#define TZ_UTOFF_MIN (-89999)
#define TZ_UTOFF_MAX 93599
/* Local times are solved in a window wider than any offset. */
#define TZ_SEARCH_SPAN 100000
/* Inputs are clamped to about +-300000 years, so that no seconds/ms product can overflow. */
#define TZ_MS_LIMIT  INT64_C(10000000000000000)
#define SECS_PER_DAY 86400

enum rule_kind {
        RULE_JULIAN1, /* Jn: day 1..365, February 29 never counted */
        RULE_JULIAN0, /* n: day 0..365, February 29 counted in leap years */
        RULE_MWD,     /* Mm.w.d: day d (0 = Sunday) of week w (5 = last) of month m */
};

struct rule_date {
        enum rule_kind kind;
        int day; /* Jn and n */
        int mon, week, wday;
        int32_t secs; /* local time of day of the change, -167h..167h */
};

/* A POSIX TZ string: "CET-1CEST,M3.5.0,M10.5.0/3". Offsets here are east-positive (UT offsets),
 * the opposite of the sign written in the string. */
struct tz_rule {
        int32_t std_off;
        int32_t dst_off;
        bool has_dst;
        struct rule_date start; /* read in standard time */
        struct rule_date end;   /* read in daylight time */
};

struct tz_type {
        int32_t utoff;
        bool isdst;
};

struct cp_tz {
        char *name;
        size_t ntrans;
        int64_t *trans;      /* UTC seconds, strictly increasing */
        uint8_t *trans_type; /* index into types for each transition */
        size_t ntypes;
        struct tz_type *types;
        bool has_rule;
        struct tz_rule rule;
};

static int64_t floor_div(int64_t a, int64_t b)
{
        int64_t q = a / b;

        if ((a % b != 0) && ((a < 0) != (b < 0)))
                q--;
        return q;
}

int64_t cp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
        int64_t era;
        unsigned yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = (unsigned)(y - era * 400);
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t)doe - 719468;
}

void cp_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
        int64_t era;
        unsigned doe, yoe, doy, mp, mm;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = (unsigned)(z - era * 146097);
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        mm = mp < 10 ? mp + 3 : mp - 9;
        *y = (int64_t)yoe + era * 400 + (mm <= 2);
        *m = mm;
        *d = doy - (153 * mp + 2) / 5 + 1;
}

static bool is_leap(int64_t y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
        static const unsigned char mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

        if (m == 2 && is_leap(y))
                return 29;
        return mdays[m - 1];
}

/* ---- POSIX TZ strings ---- */

struct cursor {
        const char *p;
        const char *end;
};

static bool cur_peek(const struct cursor *c, char ch)
{
        return c->p < c->end && *c->p == ch;
}

/* Reads 1..maxdig decimal digits into *ret. */
static int cur_number(struct cursor *c, int maxdig, int *ret)
{
        int v = 0, n = 0;

        while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && n < maxdig) {
                v = v * 10 + (*c->p - '0');
                c->p++;
                n++;
        }
        if (n == 0)
                return -EPROTO;
        *ret = v;
        return 0;
}

/* A zone abbreviation: three or more letters, or <...> holding letters, digits, '+' and '-'. */
static int cur_name(struct cursor *c)
{
        const char *start;

        if (cur_peek(c, '<')) {
                start = ++c->p;
                while (c->p < c->end && *c->p != '>') {
                        char ch = *c->p;

                        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                              (ch >= '0' && ch <= '9') || ch == '+' || ch == '-'))
                                return -EPROTO;
                        c->p++;
                }
                if (c->p == c->end || c->p - start < 3)
                        return -EPROTO;
                c->p++;
                return 0;
        }
        start = c->p;
        while (c->p < c->end && ((*c->p >= 'A' && *c->p <= 'Z') || (*c->p >= 'a' && *c->p <= 'z')))
                c->p++;
        return c->p - start >= 3 ? 0 : -EPROTO;
}

/* [+-]hh[:mm[:ss]] with hh <= max_hours; returns seconds with the sign as written. */
static int cur_hms(struct cursor *c, int max_hours, int32_t *ret)
{
        int sign = 1, h, m = 0, s = 0, r;

        if (cur_peek(c, '+') || cur_peek(c, '-')) {
                sign = *c->p == '-' ? -1 : 1;
                c->p++;
        }
        r = cur_number(c, 3, &h);
        if (r < 0 || h > max_hours)
                return -EPROTO;
        if (cur_peek(c, ':')) {
                c->p++;
                r = cur_number(c, 2, &m);
                if (r < 0 || m > 59)
                        return -EPROTO;
                if (cur_peek(c, ':')) {
                        c->p++;
                        r = cur_number(c, 2, &s);
                        if (r < 0 || s > 59)
                                return -EPROTO;
                }
        }
        *ret = sign * (h * 3600 + m * 60 + s);
        return 0;
}

static int cur_rule_date(struct cursor *c, struct rule_date *rd)
{
        int r;

        if (cur_peek(c, 'J')) {
                c->p++;
                rd->kind = RULE_JULIAN1;
                r = cur_number(c, 3, &rd->day);
                if (r < 0 || rd->day < 1 || rd->day > 365)
                        return -EPROTO;
        } else if (cur_peek(c, 'M')) {
                c->p++;
                rd->kind = RULE_MWD;
                r = cur_number(c, 2, &rd->mon);
                if (r < 0 || rd->mon < 1 || rd->mon > 12 || !cur_peek(c, '.'))
                        return -EPROTO;
                c->p++;
                r = cur_number(c, 1, &rd->week);
                if (r < 0 || rd->week < 1 || rd->week > 5 || !cur_peek(c, '.'))
                        return -EPROTO;
                c->p++;
                r = cur_number(c, 1, &rd->wday);
                if (r < 0 || rd->wday > 6)
                        return -EPROTO;
        } else {
                rd->kind = RULE_JULIAN0;
                r = cur_number(c, 3, &rd->day);
                if (r < 0 || rd->day > 365)
                        return -EPROTO;
        }
        rd->secs = 2 * 3600; /* POSIX default: 02:00:00 */
        if (cur_peek(c, '/')) {
                c->p++;
                /* RFC 8536 3.3.1 (version 3) allows -167..167 hours here. */
                if (cur_hms(c, 167, &rd->secs) < 0)
                        return -EPROTO;
        }
        return 0;
}

/* A TZ string with DST but no rule would fall back to an implementation default (US rules in
 * tzcode); zic never writes one, so it is refused rather than guessed. */
static int parse_posix_tz(const char *s, size_t len, struct tz_rule *rule)
{
        struct cursor c = {s, s + len};
        int32_t off;

        memset(rule, 0, sizeof(*rule));
        if (cur_name(&c) < 0 || cur_hms(&c, 24, &off) < 0)
                return -EPROTO;
        rule->std_off = -off;
        if (c.p == c.end)
                return 0;
        if (cur_name(&c) < 0)
                return -EPROTO;
        rule->has_dst = true;
        rule->dst_off = rule->std_off + 3600;
        if (c.p < c.end && *c.p != ',') {
                if (cur_hms(&c, 24, &off) < 0)
                        return -EPROTO;
                rule->dst_off = -off;
        }
        if (!cur_peek(&c, ','))
                return -EPROTO;
        c.p++;
        if (cur_rule_date(&c, &rule->start) < 0 || !cur_peek(&c, ','))
                return -EPROTO;
        c.p++;
        if (cur_rule_date(&c, &rule->end) < 0 || c.p != c.end)
                return -EPROTO;
        return 0;
}

/* UTC second at which `rd` happens in `year`, the rule's time being local with offset `off`. */
static int64_t rule_date_utc(const struct rule_date *rd, int64_t year, int32_t off)
{
        int64_t days = cp_days_from_civil(year, 1, 1);

        switch (rd->kind) {
        case RULE_JULIAN1:
                days += rd->day - 1 + (is_leap(year) && rd->day >= 60 ? 1 : 0);
                break;
        case RULE_JULIAN0:
                days += rd->day;
                break;
        case RULE_MWD: {
                int64_t first = cp_days_from_civil(year, (unsigned)rd->mon, 1);
                /* 1970-01-01 was a Thursday (4). */
                int first_wday = (int)(((first % 7) + 7 + 4) % 7);

                days = first + (rd->wday - first_wday + 7) % 7 + 7 * (int64_t)(rd->week - 1);
                /* Week 5 means "the last one", which may be the fourth. */
                if (days >= first + days_in_month(year, (unsigned)rd->mon))
                        days -= 7;
                break;
        }
        }
        return days * SECS_PER_DAY + rd->secs - off;
}

struct rule_event {
        int64_t t;
        bool dst;
};

/* The DST changes of the years around `t`, so that the change in force at `t` is among them even
 * with the v3 extension moving a change up to a week into the neighbouring year. */
static size_t rule_events(const struct tz_rule *rule, int64_t t, struct rule_event ev[8])
{
        int64_t year;
        unsigned m, d;
        size_t n = 0;

        cp_civil_from_days(floor_div(t + rule->std_off, SECS_PER_DAY), &year, &m, &d);
        for (int64_t y = year - 2; y <= year + 1; y++) {
                ev[n++] = (struct rule_event){rule_date_utc(&rule->start, y, rule->std_off), true};
                ev[n++] = (struct rule_event){rule_date_utc(&rule->end, y, rule->dst_off), false};
        }
        return n;
}

static int32_t rule_offset(const struct tz_rule *rule, int64_t t)
{
        struct rule_event ev[8];
        size_t n;
        const struct rule_event *best = NULL;

        if (!rule->has_dst)
                return rule->std_off;
        n = rule_events(rule, t, ev);
        for (size_t i = 0; i < n; i++) {
                if (ev[i].t > t)
                        continue;
                /* On a tie (all-year DST written as "0/0,J365/25"), daylight time wins. */
                if (!best || ev[i].t > best->t || (ev[i].t == best->t && ev[i].dst))
                        best = &ev[i];
        }
        if (!best)
                return rule->std_off;
        return best->dst ? rule->dst_off : rule->std_off;
}

/* ---- offsets and transitions ---- */

/* Index of the last transition at or before t; only called with trans[0] <= t. */
static size_t find_trans(const struct cp_tz *tz, int64_t t)
{
        size_t lo = 0, hi = tz->ntrans;

        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;

                if (tz->trans[mid] <= t)
                        lo = mid;
                else
                        hi = mid;
        }
        return lo;
}

static int32_t offset_at_sec(const struct cp_tz *tz, int64_t t)
{
        if (tz->ntrans == 0)
                return tz->has_rule ? rule_offset(&tz->rule, t) : tz->types[0].utoff;
        /* RFC 8536 3.2: before the first transition, time type 0 applies. */
        if (t < tz->trans[0])
                return tz->types[0].utoff;
        if (t >= tz->trans[tz->ntrans - 1] && tz->has_rule)
                return rule_offset(&tz->rule, t);
        return tz->types[tz->trans_type[find_trans(tz, t)]].utoff;
}

/* First change strictly after t, from the table or from the footer rule. */
static bool next_change(const struct cp_tz *tz, int64_t t, int64_t *ret)
{
        struct rule_event ev[8];
        int64_t best = INT64_MAX;
        size_t n;

        if (tz->ntrans > 0 && t < tz->trans[tz->ntrans - 1]) {
                *ret = t < tz->trans[0] ? tz->trans[0] : tz->trans[find_trans(tz, t) + 1];
                return true;
        }
        if (!tz->has_rule || !tz->rule.has_dst)
                return false;
        n = rule_events(&tz->rule, t, ev);
        /* rule_events() covers year+1 of t, which always holds a change after t. */
        for (size_t i = 0; i < n; i++) {
                if (ev[i].t > t && ev[i].t < best)
                        best = ev[i].t;
        }
        if (best == INT64_MAX)
                return false;
        *ret = best;
        return true;
}

/* Solves t + offset(t) == local. The offset is piecewise constant; walking its pieces over a window
 * wider than any offset finds the earliest solution (the first of two in an overlap). When there is
 * none, `local` is in a gap and is read with the offset in force before it. */
static int64_t local_to_utc_sec(const struct cp_tz *tz, int64_t local)
{
        int64_t seg_start = local - TZ_SEARCH_SPAN;
        int32_t off = offset_at_sec(tz, seg_start);

        for (;;) {
                int64_t cand = local - off, next;
                int32_t next_off;

                if (!next_change(tz, seg_start, &next) || next > local + TZ_SEARCH_SPAN)
                        return cand;
                if (cand >= seg_start && cand < next)
                        return cand;
                next_off = offset_at_sec(tz, next);
                if (cand >= next && local - next_off < next)
                        return cand;
                seg_start = next;
                off = next_off;
        }
}

static int64_t clamp_ms(int64_t ms)
{
        return CP_MAX(-TZ_MS_LIMIT, CP_MIN(TZ_MS_LIMIT, ms));
}

int32_t cp_tz_offset_at(const struct cp_tz *tz, int64_t utc_ms)
{
        return offset_at_sec(tz, floor_div(clamp_ms(utc_ms), 1000));
}

int cp_tz_local_to_utc(const struct cp_tz *tz, int year, int mon, int day, int hour, int min, int sec, int ms,
                       int64_t *ret_ms)
{
        int64_t local;

        if (year < 0 || year > 9999 || mon < 1 || mon > 12 || day < 1 ||
            (unsigned)day > days_in_month(year, (unsigned)mon) || hour < 0 || hour > 23 || min < 0 ||
            min > 59 || sec < 0 || sec > 59 || ms < 0 || ms > 999)
                return -ERANGE;
        local = cp_days_from_civil(year, (unsigned)mon, (unsigned)day) * SECS_PER_DAY;
        local += (int64_t)hour * 3600 + (int64_t)min * 60 + sec;
        *ret_ms = local_to_utc_sec(tz, local) * 1000 + ms;
        return 0;
}

static int64_t local_day_of(const struct cp_tz *tz, int64_t utc_ms, int64_t *ret_sec)
{
        int64_t t = floor_div(clamp_ms(utc_ms), 1000);

        *ret_sec = t;
        return floor_div(t + offset_at_sec(tz, t), SECS_PER_DAY);
}

int64_t cp_tz_day_start(const struct cp_tz *tz, int64_t utc_ms)
{
        int64_t t, day = local_day_of(tz, utc_ms, &t);
        int64_t start = local_to_utc_sec(tz, day * SECS_PER_DAY);

        /* Only a zone falling back across midnight can put "its" midnight after t; then the day began
         * at the previous midnight. */
        if (start > t)
                start = local_to_utc_sec(tz, (day - 1) * SECS_PER_DAY);
        return start * 1000;
}

int64_t cp_tz_next_day(const struct cp_tz *tz, int64_t utc_ms)
{
        int64_t t, day = local_day_of(tz, utc_ms, &t);

        /* The loop guarantees progress even for a zone that repeats a midnight. */
        for (int k = 1; k <= 3; k++) {
                int64_t next = local_to_utc_sec(tz, (day + k) * SECS_PER_DAY);

                if (next > t)
                        return next * 1000;
        }
        return (t + SECS_PER_DAY) * 1000;
}

/* ---- TZif files ---- */

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
        return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_counts {
        uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static int read_header(const uint8_t *p, size_t len, struct tzif_counts *c, uint8_t *ret_version)
{
        if (len < TZ_HEADER_LEN || memcmp(p, "TZif", 4) != 0)
                return -EPROTO;
        *ret_version = p[4];
        c->isutcnt = be32(p + 20);
        c->isstdcnt = be32(p + 24);
        c->leapcnt = be32(p + 28);
        c->timecnt = be32(p + 32);
        c->typecnt = be32(p + 36);
        c->charcnt = be32(p + 40);
        return 0;
}

static size_t body_len(const struct tzif_counts *c, size_t timesize)
{
        return (size_t)c->timecnt * (timesize + 1) + (size_t)c->typecnt * 6 + c->charcnt +
               (size_t)c->leapcnt * (timesize + 4) + c->isstdcnt + c->isutcnt;
}

static int parse_body(struct cp_tz *tz, const uint8_t *p, const struct tzif_counts *c, size_t timesize)
{
        const uint8_t *idx, *ti;

        /* Leap-second zones ("right/...") count TAI-like seconds; readings use POSIX time. */
        if (c->leapcnt != 0)
                return -ENOTSUP;
        if (c->typecnt == 0 || c->typecnt > 256 || c->charcnt == 0 ||
            (c->isstdcnt != 0 && c->isstdcnt != c->typecnt) || (c->isutcnt != 0 && c->isutcnt != c->typecnt))
                return -EPROTO;
        tz->ntrans = c->timecnt;
        tz->ntypes = c->typecnt;
        tz->trans = calloc(CP_MAX(tz->ntrans, 1), sizeof(*tz->trans));
        tz->trans_type = calloc(CP_MAX(tz->ntrans, 1), sizeof(*tz->trans_type));
        tz->types = calloc(tz->ntypes, sizeof(*tz->types));
        if (!tz->trans || !tz->trans_type || !tz->types)
                return -ENOMEM;
        idx = p + (size_t)c->timecnt * timesize;
        ti = idx + c->timecnt;
        for (size_t i = 0; i < tz->ntrans; i++) {
                const uint8_t *q = p + i * timesize;

                tz->trans[i] = timesize == 8 ? be64(q) : (int32_t)be32(q);
                if (i > 0 && tz->trans[i] <= tz->trans[i - 1])
                        return -EPROTO;
                if (idx[i] >= c->typecnt)
                        return -EPROTO;
                tz->trans_type[i] = idx[i];
        }
        for (size_t i = 0; i < tz->ntypes; i++) {
                const uint8_t *q = ti + i * 6;
                int32_t utoff = (int32_t)be32(q);

                if (utoff < TZ_UTOFF_MIN || utoff > TZ_UTOFF_MAX || q[4] > 1 || q[5] >= c->charcnt)
                        return -EPROTO;
                tz->types[i] = (struct tz_type){utoff, q[4] == 1};
        }
        return 0;
}

/* The footer of a v2+ file: "\n<TZ string>\n". An empty string means "no rule": the last type
 * stays in force. */
static int parse_footer(struct cp_tz *tz, const uint8_t *p, size_t len)
{
        const uint8_t *nl;
        size_t n;

        if (len == 0)
                return 0; /* tolerated: some generators omit the footer */
        if (p[0] != '\n')
                return -EPROTO;
        nl = memchr(p + 1, '\n', len - 1);
        if (!nl)
                return -EPROTO;
        n = (size_t)(nl - (p + 1));
        if (n == 0)
                return 0;
        if (parse_posix_tz((const char *)(p + 1), n, &tz->rule) < 0)
                return -EPROTO;
        tz->has_rule = true;
        return 0;
}

static int parse_tzif(struct cp_tz *tz, const uint8_t *buf, size_t len)
{
        struct tzif_counts c;
        uint8_t version;
        size_t off, blen;
        int r;

        r = read_header(buf, len, &c, &version);
        if (r < 0)
                return r;
        if (version != 0 && version < '2')
                return -EPROTO;
        blen = body_len(&c, 4);
        if (blen > len - TZ_HEADER_LEN)
                return -EPROTO;
        if (version == 0)
                return parse_body(tz, buf + TZ_HEADER_LEN, &c, 4);

        /* Version 2 and later (and, as RFC 9636 asks, unknown later versions): skip the 32-bit
         * data and read the second header, its 64-bit body and the footer. */
        off = TZ_HEADER_LEN + blen;
        r = read_header(buf + off, len - off, &c, &version);
        if (r < 0)
                return r;
        off += TZ_HEADER_LEN;
        blen = body_len(&c, 8);
        if (blen > len - off)
                return -EPROTO;
        r = parse_body(tz, buf + off, &c, 8);
        if (r < 0)
                return r;
        off += blen;
        return parse_footer(tz, buf + off, len - off);
}

/* IANA names are ASCII letters, digits, '_', '+', '-' and '/' separators: nothing here can climb out
 * of the zone directory or name a hidden file. */
static bool name_valid(const char *name)
{
        size_t len;

        if (!name)
                return false;
        len = strlen(name);
        if (len == 0 || len > TZ_NAME_MAX || name[0] == '/' || name[len - 1] == '/' || strstr(name, "..") ||
            strstr(name, "//"))
                return false;
        for (size_t i = 0; i < len; i++) {
                char ch = name[i];

                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                      ch == '_' || ch == '+' || ch == '-' || ch == '/'))
                        return false;
        }
        return true;
}

static int read_file(const char *path, uint8_t **ret_buf, size_t *ret_len)
{
        struct stat st;
        uint8_t *buf = NULL;
        size_t len, got = 0;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ENOTDIR || errno == ENAMETOOLONG ? -ENOENT : -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto out_close;
        }
        /* A directory ("Europe") opens fine but is not a zone. */
        if (!S_ISREG(st.st_mode)) {
                r = -ENOENT;
                goto out_close;
        }
        if (st.st_size > TZ_FILE_MAX) {
                r = -EPROTO;
                goto out_close;
        }
        len = (size_t)st.st_size;
        buf = malloc(CP_MAX(len, 1));
        if (!buf) {
                r = -ENOMEM;
                goto out_close;
        }
        while (got < len) {
                ssize_t n = read(fd, buf + got, len - got);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        goto out_free;
                }
                if (n == 0)
                        break; /* truncated under us; the parser will notice */
                got += (size_t)n;
        }
        *ret_buf = buf;
        *ret_len = got;
        buf = NULL;
        r = 0;
out_free:
        free(buf);
out_close:
        (void)close(fd);
        return r;
}

void cp_tz_free(struct cp_tz *tz)
{
        if (!tz)
                return;
        free(tz->name);
        free(tz->trans);
        free(tz->trans_type);
        free(tz->types);
        free(tz);
}

/* UTC needs no file: containers often ship without tzdata, and "UTC" must always work. */
static int make_utc(struct cp_tz *tz)
{
        tz->ntypes = 1;
        tz->types = calloc(1, sizeof(*tz->types));
        return tz->types ? 0 : -ENOMEM;
}

int cp_tz_load(const char *name, struct cp_tz **ret)
{
        const char *dir = getenv("TZDIR");
        struct cp_tz *tz;
        uint8_t *buf = NULL;
        size_t len = 0, path_len;
        char *path;
        int r;

        if (!name_valid(name))
                return -EINVAL;
        if (!dir || dir[0] == '\0')
                dir = TZ_DEFAULT_DIR;
        tz = calloc(1, sizeof(*tz));
        if (!tz)
                return -ENOMEM;
        tz->name = strdup(name);
        path_len = strlen(dir) + 1 + strlen(name) + 1;
        path = malloc(path_len);
        if (!tz->name || !path) {
                r = -ENOMEM;
                goto out_free;
        }
        (void)snprintf(path, path_len, "%s/%s", dir, name);
        r = read_file(path, &buf, &len);
        if (r == -ENOENT && (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0))
                r = make_utc(tz);
        else if (r == 0)
                r = parse_tzif(tz, buf, len);
        if (r < 0)
                goto out_free;
        *ret = tz;
        tz = NULL;
out_free:
        free(buf);
        free(path);
        cp_tz_free(tz);
        return r;
}

const char *cp_tz_name(const struct cp_tz *tz)
{
        return tz->name;
}
