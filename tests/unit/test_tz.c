/* test_tz.c - unit tests for drivers/tz.c: TZif parsing, offsets, local time solving, day bounds.
 * Expected instants were checked against glibc (`TZ=... date`) and zdump, never against tz.c. */
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* cmocka.h uses jmp_buf, va_list and size_t without including their headers. */
#include <cmocka.h>

#define HOUR_MS INT64_C(3600000)

/* UTC ms of a civil UTC time; cp_days_from_civil() is checked on its own in test_civil_days. */
static int64_t utc(int y, unsigned mo, unsigned d, int h, int mi, int s)
{
        return (cp_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + s) * 1000;
}

static struct cp_tz *load(const char *name)
{
        struct cp_tz *tz = NULL;

        assert_int_equal(cp_tz_load(name, &tz), 0);
        assert_non_null(tz);
        return tz;
}

static void test_civil_days(void **state)
{
        int64_t y;
        unsigned m, d;

        (void)state;
        assert_int_equal(cp_days_from_civil(1970, 1, 1), 0);
        assert_int_equal(cp_days_from_civil(1969, 12, 31), -1);
        assert_int_equal(cp_days_from_civil(2000, 3, 1), 11017);
        assert_int_equal(cp_days_from_civil(2026, 3, 1), 20513); /* 1772359200 / 86400 */
        assert_int_equal(cp_days_from_civil(2201, 1, 1), 84371);
        assert_int_equal(cp_days_from_civil(0, 3, 1), -719468);
        assert_int_equal(cp_days_from_civil(1600, 2, 29), -135081);
        cp_civil_from_days(-1, &y, &m, &d);
        assert_true(y == 1969 && m == 12 && d == 31);
        cp_civil_from_days(11016, &y, &m, &d);
        assert_true(y == 2000 && m == 2 && d == 29);
        /* Round trip over +-2200 years, day by day. */
        for (int64_t z = -800000; z <= 800000; z++) {
                cp_civil_from_days(z, &y, &m, &d);
                if (cp_days_from_civil(y, m, d) != z)
                        fail_msg("day %lld -> %lld-%u-%u does not round-trip", (long long)z, (long long)y, m,
                                 d);
        }
}

static void test_paris_offsets(void **state)
{
        struct cp_tz *tz = load("Europe/Paris");

        (void)state;
        assert_string_equal(cp_tz_name(tz), "Europe/Paris");
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 1, 15, 12, 0, 0)), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 7, 15, 12, 0, 0)), 7200);
        /* The changes happen at 01:00 UTC on the last Sundays of March and October. */
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 3, 29, 1, 0, 0) - 1), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 3, 29, 1, 0, 0)), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 10, 25, 1, 0, 0) - 1), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 10, 25, 1, 0, 0)), 3600);
        /* History: Paris was on UTC+0 in winter 1939 and on local mean time (+00:09:21) in 1890. */
        assert_int_equal(cp_tz_offset_at(tz, utc(1939, 1, 15, 0, 0, 0)), 0);
        assert_int_equal(cp_tz_offset_at(tz, utc(1890, 1, 1, 0, 0, 0)), 561);
        cp_tz_free(tz);
}

static void test_paris_far_future(void **state)
{
        struct cp_tz *tz = load("Europe/Paris");

        (void)state;
        /* Beyond the table (2037 in "fat" files, earlier in "slim" ones): the footer rule. */
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 1, 15, 12, 0, 0)), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 7, 15, 12, 0, 0)), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 3, 28, 1, 0, 0) - 1), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 3, 28, 1, 0, 0)), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2199, 10, 27, 1, 0, 0) - 1), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2199, 10, 27, 1, 0, 0)), 3600);
        /* Day lengths keep working there. */
        assert_int_equal(cp_tz_next_day(tz, utc(2100, 3, 28, 12, 0, 0)) -
                             cp_tz_day_start(tz, utc(2100, 3, 28, 12, 0, 0)),
                         23 * HOUR_MS);
        assert_int_equal(cp_tz_next_day(tz, utc(2100, 10, 31, 12, 0, 0)) -
                             cp_tz_day_start(tz, utc(2100, 10, 31, 12, 0, 0)),
                         25 * HOUR_MS);
        cp_tz_free(tz);
}

static void test_other_rules(void **state)
{
        struct cp_tz *tz;

        (void)state;
        /* Southern hemisphere: DST spans the new year. */
        tz = load("Australia/Sydney");
        assert_int_equal(cp_tz_offset_at(tz, utc(2150, 1, 15, 0, 0, 0)), 39600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2150, 7, 15, 0, 0, 0)), 36000);
        cp_tz_free(tz);
        /* Negative DST: "IST-1GMT0,M10.5.0,M3.5.0/1", winter is the "daylight" time. */
        tz = load("Europe/Dublin");
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 1, 15, 0, 0, 0)), 0);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 7, 15, 0, 0, 0)), 3600);
        cp_tz_free(tz);
        /* Version 3 rule times: "<-02>2<-01>,M3.5.0/-1,M10.5.0/0". */
        tz = load("America/Nuuk");
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 3, 27, 1, 0, 0) - 1), -7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 3, 28, 1, 0, 0) - 1), -7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 3, 28, 1, 0, 0)), -3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 10, 31, 1, 0, 0) - 1), -3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 10, 31, 1, 0, 0)), -7200);
        cp_tz_free(tz);
        /* "<-04>4<-03>,M9.1.6/24,M4.1.6/24": hour 24 is the next day's midnight. */
        tz = load("America/Santiago");
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 9, 5, 4, 0, 0) - 1), -14400);
        assert_int_equal(cp_tz_offset_at(tz, utc(2100, 9, 5, 4, 0, 0)), -10800);
        cp_tz_free(tz);
        /* No DST at all. */
        tz = load("Etc/GMT+5");
        assert_int_equal(cp_tz_offset_at(tz, utc(2150, 7, 1, 0, 0, 0)), -18000);
        cp_tz_free(tz);
}

static void test_gap_and_overlap(void **state)
{
        struct cp_tz *tz = load("Europe/Paris");
        int64_t ms;

        (void)state;
        /* Spring forward: 02:00..02:59 do not exist and are read with the offset before (+01:00). */
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 3, 29, 1, 59, 59, 0, &ms), 0);
        assert_int_equal(ms, utc(2026, 3, 29, 0, 59, 59));
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 3, 29, 2, 0, 0, 0, &ms), 0);
        assert_int_equal(ms, utc(2026, 3, 29, 1, 0, 0));
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 3, 29, 2, 30, 0, 250, &ms), 0);
        assert_int_equal(ms, utc(2026, 3, 29, 1, 30, 0) + 250);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 3, 29, 3, 0, 0, 0, &ms), 0);
        assert_int_equal(ms, utc(2026, 3, 29, 1, 0, 0));
        /* Fall back: 02:00..02:59 happen twice; the first (CEST) is chosen. */
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 10, 25, 1, 59, 0, 0, &ms), 0);
        assert_int_equal(ms, utc(2026, 10, 24, 23, 59, 0));
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 10, 25, 2, 30, 0, 0, &ms), 0);
        assert_int_equal(ms, utc(2026, 10, 25, 0, 30, 0));
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 10, 25, 3, 0, 0, 0, &ms), 0);
        assert_int_equal(ms, utc(2026, 10, 25, 2, 0, 0));
        /* Ordinary times, winter and summer. */
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 3, 1, 11, 0, 0, 0, &ms), 0);
        assert_int_equal(ms, INT64_C(1772359200000));
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 7, 14, 12, 0, 0, 999, &ms), 0);
        assert_int_equal(ms, utc(2026, 7, 14, 10, 0, 0) + 999);
        /* Impossible dates and fields. */
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 2, 29, 0, 0, 0, 0, &ms), -ERANGE);
        assert_int_equal(cp_tz_local_to_utc(tz, 2028, 2, 29, 0, 0, 0, 0, &ms), 0);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 13, 1, 0, 0, 0, 0, &ms), -ERANGE);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 4, 31, 0, 0, 0, 0, &ms), -ERANGE);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 4, 1, 24, 0, 0, 0, &ms), -ERANGE);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 4, 1, 0, 60, 0, 0, &ms), -ERANGE);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 4, 1, 0, 0, 60, 0, &ms), -ERANGE);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 4, 1, 0, 0, 0, 1000, &ms), -ERANGE);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 4, 1, 0, 0, 0, -1, &ms), -ERANGE);
        cp_tz_free(tz);
}

static void test_day_lengths(void **state)
{
        struct cp_tz *tz = load("Europe/Paris");
        int64_t t;

        (void)state;
        /* 2026-03-29: 23 hours, from 2026-03-28T23:00Z to 2026-03-29T22:00Z. */
        t = utc(2026, 3, 29, 12, 0, 0);
        assert_int_equal(cp_tz_day_start(tz, t), utc(2026, 3, 28, 23, 0, 0));
        assert_int_equal(cp_tz_next_day(tz, t), utc(2026, 3, 29, 22, 0, 0));
        /* 2026-10-25: 25 hours. */
        t = utc(2026, 10, 25, 12, 0, 0);
        assert_int_equal(cp_tz_day_start(tz, t), utc(2026, 10, 24, 22, 0, 0));
        assert_int_equal(cp_tz_next_day(tz, t), utc(2026, 10, 25, 23, 0, 0));
        /* An ordinary day, 24 hours. */
        t = INT64_C(1772359200000);
        assert_int_equal(cp_tz_day_start(tz, t), utc(2026, 2, 28, 23, 0, 0));
        assert_int_equal(cp_tz_next_day(tz, t), utc(2026, 3, 1, 23, 0, 0));
        /* Bounds: midnight belongs to its day, the ms before to the previous one. */
        t = utc(2026, 3, 28, 23, 0, 0);
        assert_int_equal(cp_tz_day_start(tz, t), t);
        assert_int_equal(cp_tz_day_start(tz, t - 1), utc(2026, 3, 27, 23, 0, 0));
        assert_int_equal(cp_tz_next_day(tz, t - 1), t);
        /* In the repeated hour, both passes are in the same day. */
        assert_int_equal(cp_tz_day_start(tz, utc(2026, 10, 25, 0, 30, 0)), utc(2026, 10, 24, 22, 0, 0));
        assert_int_equal(cp_tz_day_start(tz, utc(2026, 10, 25, 1, 30, 0)), utc(2026, 10, 24, 22, 0, 0));
        /* Walking a whole year day by day: 365 days, one of 23 h and one of 25 h. */
        t = cp_tz_day_start(tz, utc(2026, 1, 1, 12, 0, 0));
        for (int i = 0, n23 = 0, n25 = 0; i <= 365; i++) {
                int64_t next = cp_tz_next_day(tz, t), len = next - t;

                if (i == 365) {
                        assert_int_equal(t, utc(2026, 12, 31, 23, 0, 0));
                        assert_int_equal(n23, 1);
                        assert_int_equal(n25, 1);
                        break;
                }
                n23 += len == 23 * HOUR_MS;
                n25 += len == 25 * HOUR_MS;
                assert_true(len == 23 * HOUR_MS || len == 24 * HOUR_MS || len == 25 * HOUR_MS);
                assert_int_equal(cp_tz_day_start(tz, next - 1), t);
                t = next;
        }
        cp_tz_free(tz);
}

static void test_utc(void **state)
{
        struct cp_tz *tz = load("UTC");
        int64_t ms;

        (void)state;
        assert_string_equal(cp_tz_name(tz), "UTC");
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 7, 1, 0, 0, 0)), 0);
        assert_int_equal(cp_tz_offset_at(tz, utc(1900, 7, 1, 0, 0, 0)), 0);
        assert_int_equal(cp_tz_day_start(tz, utc(2026, 3, 29, 12, 0, 0)), utc(2026, 3, 29, 0, 0, 0));
        assert_int_equal(cp_tz_next_day(tz, utc(2026, 3, 29, 12, 0, 0)), utc(2026, 3, 30, 0, 0, 0));
        /* Before 1970 too (floor division). */
        assert_int_equal(cp_tz_day_start(tz, -1), -86400000);
        assert_int_equal(cp_tz_local_to_utc(tz, 2026, 3, 1, 10, 0, 0, 0, &ms), 0);
        assert_int_equal(ms, INT64_C(1772359200000));
        cp_tz_free(tz);
}

static void test_bad_names(void **state)
{
        static const char *const bad[] = {
            "",
            "../etc/passwd",
            "/etc/localtime",
            "Europe/../UTC",
            "Europe/Paris\n",
            "Europe Paris",
            "Europe//Paris",
            "Europe/",
            "Europe/Paris.",
            "..",
            "Europe/Pa\xc3\xa9ris",
            "Europe\\Paris",
            "~root",
        };
        struct cp_tz *tz = NULL;
        char longname[300];

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (cp_tz_load(bad[i], &tz) != -EINVAL)
                        fail_msg("name '%s' was not refused", bad[i]);
        }
        assert_int_equal(cp_tz_load(NULL, &tz), -EINVAL);
        memset(longname, 'A', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_int_equal(cp_tz_load(longname, &tz), -EINVAL);
        assert_null(tz);
        cp_tz_free(NULL);
}

static void test_unknown_zones(void **state)
{
        struct cp_tz *tz = NULL;

        (void)state;
        assert_int_equal(cp_tz_load("Europe/Pariss", &tz), -ENOENT);
        assert_int_equal(cp_tz_load("Mars/Olympus_Mons", &tz), -ENOENT);
        /* A directory of zones is not a zone. */
        assert_int_equal(cp_tz_load("Europe", &tz), -ENOENT);
        assert_null(tz);
}

/* ---- files in a private $TZDIR ---- */

struct tzdir {
        char path[64];
};

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
        char path[256];
        FILE *f;

        (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
}

static int setup_tzdir(void **state)
{
        struct tzdir *d = calloc(1, sizeof(*d));

        if (!d)
                return -1;
        (void)snprintf(d->path, sizeof(d->path), "/tmp/cp_test_tz.XXXXXX");
        if (!mkdtemp(d->path)) {
                free(d);
                return -1;
        }
        /* The test may call setenv: cp_tz_load only reads $TZDIR, it never changes the environment. */
        if (setenv("TZDIR", d->path, 1) < 0) {
                (void)rmdir(d->path);
                free(d);
                return -1;
        }
        *state = d;
        return 0;
}

static int teardown_tzdir(void **state)
{
        struct tzdir *d = *state;
        char cmd[128];

        (void)unsetenv("TZDIR");
        (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
        if (system(cmd) != 0)
                return -1;
        free(d);
        return 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

/* A version 1 file with CET (type 0) and CEST (type 1) and the two 2026 changes only. */
static size_t build_v1(uint8_t *buf)
{
        static const uint8_t types[2][6] = {{0, 0, 0x0e, 0x10, 0, 0}, {0, 0, 0x1c, 0x20, 1, 4}};
        size_t n = 44;

        memset(buf, 0, 44);
        memcpy(buf, "TZif", 4);
        put_be32(buf + 32, 2); /* timecnt */
        put_be32(buf + 36, 2); /* typecnt */
        put_be32(buf + 40, 9); /* charcnt */
        put_be32(buf + n, (uint32_t)(utc(2026, 3, 29, 1, 0, 0) / 1000));
        put_be32(buf + n + 4, (uint32_t)(utc(2026, 10, 25, 1, 0, 0) / 1000));
        buf[n + 8] = 1;
        buf[n + 9] = 0;
        n += 10;
        memcpy(buf + n, types, sizeof(types));
        n += sizeof(types);
        memcpy(buf + n, "CET\0CEST", 9);
        return n + 9;
}

/* A version 2 UTC file with one leap second record, as in the "right/" zones. */
static size_t build_leap(uint8_t *buf)
{
        static const uint8_t magic[5] = {'T', 'Z', 'i', 'f', '2'};
        static const uint8_t footer[6] = {'\n', 'U', 'T', 'C', '0', '\n'};
        size_t n = 0;

        for (size_t timesize = 4; timesize <= 8; timesize += 4) {
                memset(buf + n, 0, 44);
                memcpy(buf + n, magic, sizeof(magic));
                put_be32(buf + n + 28, 1); /* leapcnt */
                put_be32(buf + n + 36, 1); /* typecnt */
                put_be32(buf + n + 40, 4); /* charcnt */
                n += 44;
                memset(buf + n, 0, 10 + timesize + 4);
                memcpy(buf + n + 6, "UTC", 4);
                n += 10;
                put_be32(buf + n + timesize - 4, 78796800); /* 1972-07-01 */
                put_be32(buf + n + timesize, 1);
                n += timesize + 4;
        }
        memcpy(buf + n, footer, sizeof(footer));
        return n + sizeof(footer);
}

/* A version 2 file with no transition, one type of offset `utoff`, and `footer` as TZ string. */
static size_t build_v2(uint8_t *buf, int32_t utoff, const char *footer)
{
        size_t n = 0;

        for (int part = 0; part < 2; part++) {
                memset(buf + n, 0, 44);
                memcpy(buf + n, "TZif2", 5);
                put_be32(buf + n + 36, 1); /* typecnt */
                put_be32(buf + n + 40, 4); /* charcnt */
                n += 44;
                put_be32(buf + n, (uint32_t)utoff);
                buf[n + 4] = 0;
                buf[n + 5] = 0;
                memcpy(buf + n + 6, "XXX", 4);
                n += 10;
        }
        buf[n++] = '\n';
        memcpy(buf + n, footer, strlen(footer));
        n += strlen(footer);
        buf[n++] = '\n';
        return n;
}

static int load_footer(const struct tzdir *d, const char *footer, int32_t utoff, struct cp_tz **ret)
{
        uint8_t buf[256];
        size_t n = build_v2(buf, utoff, footer);

        write_file(d->path, "Test", buf, n);
        return cp_tz_load("Test", ret);
}

static void test_footer_rules(void **state)
{
        const struct tzdir *d = *state;
        struct cp_tz *tz;

        /* All-year DST (version 3 idiom): -04:00 all the time. */
        assert_int_equal(load_footer(d, "EST5EDT,0/0,J365/25", -18000, &tz), 0);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 1, 1, 4, 30, 0)), -14400);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 7, 1, 0, 0, 0)), -14400);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 12, 31, 23, 30, 0)), -14400);
        assert_int_equal(cp_tz_offset_at(tz, utc(2027, 1, 1, 5, 30, 0)), -14400);
        cp_tz_free(tz);
        /* Quoted names and minutes. */
        assert_int_equal(load_footer(d, "<+0330>-3:30", 12600, &tz), 0);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 1, 1, 0, 0, 0)), 12600);
        cp_tz_free(tz);
        /* Jn never counts February 29: J60 is March 1 even in 2028. */
        assert_int_equal(load_footer(d, "AAA-1BBB,J60/2,J300/3", 3600, &tz), 0);
        assert_int_equal(cp_tz_offset_at(tz, utc(2028, 3, 1, 1, 0, 0) - 1000), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2028, 3, 1, 1, 0, 0)), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2028, 10, 27, 1, 0, 0) - 1000), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2028, 10, 27, 1, 0, 0)), 3600);
        cp_tz_free(tz);
        /* Zero-based n counts it: day 59 is February 29 in 2028, March 1 in 2027. */
        assert_int_equal(load_footer(d, "AAA-1BBB,59/2,299/3", 3600, &tz), 0);
        assert_int_equal(cp_tz_offset_at(tz, utc(2028, 2, 29, 1, 0, 0) - 1000), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2028, 2, 29, 1, 0, 0)), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2027, 3, 1, 1, 0, 0) - 1000), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2027, 3, 1, 1, 0, 0)), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2028, 10, 26, 1, 0, 0) - 1000), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2028, 10, 26, 1, 0, 0)), 3600);
        cp_tz_free(tz);
}

static void test_bad_footers(void **state)
{
        static const char *const bad[] = {
            "CET-1CEST",                       /* DST without a rule */
            "C-1",                             /* name too short */
            "CET",                             /* no offset */
            "CET-25",                          /* offset beyond 24 h */
            "CET-1CEST,M13.5.0,M10.5.0/3",     /* month 13 */
            "CET-1CEST,M3.6.0,M10.5.0/3",      /* week 6 */
            "CET-1CEST,M3.5.7,M10.5.0/3",      /* weekday 7 */
            "CET-1CEST,M3.5.0,M10.5.0/168",    /* hour beyond 167 */
            "CET-1CEST,M3.5.0",                /* no end */
            "CET-1CEST,J0,J100",               /* J is 1-based */
            "CET-1CEST,M3.5.0,M10.5.0/3 junk", /* trailing bytes */
            "<CE>-1",                          /* quoted name too short */
            "<C!T>-1",                         /* bad byte in quoted name */
        };
        const struct tzdir *d = *state;
        struct cp_tz *tz = NULL;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (load_footer(d, bad[i], 3600, &tz) != -EPROTO)
                        fail_msg("footer '%s' was not refused", bad[i]);
        }
        assert_null(tz);
}

static void test_damaged_and_v1(void **state)
{
        const struct tzdir *d = *state;
        uint8_t *buf;
        struct cp_tz *tz = NULL;
        FILE *f;
        uint8_t v1[256];
        long len;
        size_t got;

        write_file(d->path, "Empty", "", 0);
        assert_int_equal(cp_tz_load("Empty", &tz), -EPROTO);
        write_file(d->path, "Text", "hello, world\n", 13);
        assert_int_equal(cp_tz_load("Text", &tz), -EPROTO);

        f = fopen("/usr/share/zoneinfo/Europe/Paris", "rb");
        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        len = ftell(f);
        assert_true(len > 44);
        rewind(f);
        buf = malloc((size_t)len);
        assert_non_null(buf);
        got = fread(buf, 1, (size_t)len, f);
        assert_int_equal(got, (size_t)len);
        (void)fclose(f);

        /* Cut anywhere inside the data: damaged. */
        write_file(d->path, "Cut", buf, 100);
        assert_int_equal(cp_tz_load("Cut", &tz), -EPROTO);
        write_file(d->path, "Cut2", buf, (size_t)len - 30);
        assert_int_equal(cp_tz_load("Cut2", &tz), -EPROTO);

        /* Version 1: 32-bit data and no footer, so the last type stays in force. */
        write_file(d->path, "V1", v1, build_v1(v1));
        tz = load("V1");
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 1, 15, 12, 0, 0)), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 3, 29, 1, 0, 0) - 1), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 3, 29, 1, 0, 0)), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 7, 15, 12, 0, 0)), 7200);
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 10, 25, 1, 0, 0)), 3600);
        assert_int_equal(cp_tz_offset_at(tz, utc(2027, 7, 15, 12, 0, 0)), 3600);
        cp_tz_free(tz);

        /* Leap-second zones count TAI-like seconds, not POSIX time. */
        write_file(d->path, "Leap", v1, build_leap(v1));
        assert_int_equal(cp_tz_load("Leap", &tz), -ENOTSUP);

        /* A version byte that is neither 0 nor '2'.. is damaged. */
        buf[4] = '1';
        write_file(d->path, "BadVersion", buf, (size_t)len);
        assert_int_equal(cp_tz_load("BadVersion", &tz), -EPROTO);
        free(buf);

        /* Without tzdata, UTC still works; other zones do not. */
        assert_int_equal(cp_tz_load("Europe/Paris", &tz), -ENOENT);
        tz = load("UTC");
        assert_int_equal(cp_tz_offset_at(tz, utc(2026, 7, 1, 0, 0, 0)), 0);
        assert_int_equal(cp_tz_day_start(tz, utc(2026, 7, 1, 5, 0, 0)), utc(2026, 7, 1, 0, 0, 0));
        cp_tz_free(tz);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_civil_days),
            cmocka_unit_test(test_paris_offsets),
            cmocka_unit_test(test_paris_far_future),
            cmocka_unit_test(test_other_rules),
            cmocka_unit_test(test_gap_and_overlap),
            cmocka_unit_test(test_day_lengths),
            cmocka_unit_test(test_utc),
            cmocka_unit_test(test_bad_names),
            cmocka_unit_test(test_unknown_zones),
            cmocka_unit_test_setup_teardown(test_footer_rules, setup_tzdir, teardown_tzdir),
            cmocka_unit_test_setup_teardown(test_bad_footers, setup_tzdir, teardown_tzdir),
            cmocka_unit_test_setup_teardown(test_damaged_and_v1, setup_tzdir, teardown_tzdir),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
