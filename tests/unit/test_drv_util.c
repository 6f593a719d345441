/* test_drv_util.c - unit tests for drivers/drv_util.c: time parsing, epoch magnitudes, sensor ids,
 * batches, the name tables, and the helpers drivers share for texts, value ranges and topics. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_err.h"
#include "citypulse/cp_reading.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h uses jmp_buf, va_list and size_t without including their headers. */
#include <cmocka.h>

#define RX INT64_C(1772359200000) /* 2026-03-01T10:00:00Z */

static int parse(const char *s, const struct cp_tz *tz, int64_t *ret)
{
        return cp_time_parse(s, strlen(s), tz, ret);
}

static void expect_time(const char *s, const struct cp_tz *tz, int64_t want)
{
        int64_t got = 0;
        int r = parse(s, tz, &got);

        if (r != 0 || got != want)
                fail_msg("'%s': got r=%d %lld, want %lld", s, r, (long long)got, (long long)want);
}

static void test_time_parse_valid(void **state)
{
        (void)state;
        expect_time("2026-03-01T10:00:00Z", NULL, RX);
        expect_time("2026-03-01t10:00:00z", NULL, RX);
        expect_time("2026-03-01 10:00:00Z", NULL, RX);
        expect_time("2026-03-01T10:00:00.1Z", NULL, RX + 100);
        expect_time("2026-03-01T10:00:00.12Z", NULL, RX + 120);
        expect_time("2026-03-01T10:00:00.123Z", NULL, RX + 123);
        /* Nanoseconds are truncated, not rounded. */
        expect_time("2026-03-01T10:00:00.999999999Z", NULL, RX + 999);
        expect_time("2026-03-01T10:00:00.123456789+00:00", NULL, RX + 123);
        expect_time("2026-03-01T11:00:00+01:00", NULL, RX);
        expect_time("2026-03-01T11:00:00+0100", NULL, RX);
        expect_time("2026-03-01T04:30:00-05:30", NULL, RX);
        expect_time("2026-03-01T10:00:00-00:00", NULL, RX);
        expect_time("2026-03-02T09:59:00+23:59", NULL, RX);
        /* A leap second stays inside its minute. */
        expect_time("2026-03-01T09:59:60Z", NULL, RX - 1);
        expect_time("2026-03-01T10:59:60.5+01:00", NULL, RX - 1);
        expect_time("1970-01-01T00:00:00Z", NULL, 0);
        expect_time("1969-12-31T23:59:59.999Z", NULL, -1);
        expect_time("2028-02-29T00:00:00Z", NULL, INT64_C(1835395200000));
        expect_time("2000-02-29T00:00:00Z", NULL, INT64_C(951782400000));
}

static void test_time_parse_length(void **state)
{
        const char s[] = "2026-03-01T10:00:00Zgarbage";
        int64_t ms;

        (void)state;
        /* Only len bytes count: the payload is not NUL-terminated. */
        assert_int_equal(cp_time_parse(s, 20, NULL, &ms), 0);
        assert_int_equal(ms, RX);
        assert_int_equal(cp_time_parse(s, sizeof(s) - 1, NULL, &ms), -EINVAL);
        assert_int_equal(cp_time_parse(s, 19, NULL, &ms), -EINVAL); /* no offset, no zone */
        assert_int_equal(cp_time_parse("2026-03-01T10:00:00\0Z", 21, NULL, &ms), -EINVAL);
        assert_int_equal(cp_time_parse(NULL, 0, NULL, &ms), -EINVAL);
        assert_int_equal(cp_time_parse(s, 20, NULL, NULL), -EINVAL);
}

static void test_time_parse_invalid(void **state)
{
        static const char *const bad[] = {
            "",
            "2026",
            "2026-03-01",
            "2026-03-01T10:00Z",
            "2026-3-01T10:00:00Z",
            "2026-03-1T10:00:00Z",
            "2026-03-01T1:00:00Z",
            "2026-03-01X10:00:00Z",
            "2026/03/01T10:00:00Z",
            "2026-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-03-00T00:00:00Z",
            "2026-03-32T00:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T10:60:00Z",
            "2026-03-01T10:00:61Z",
            "2026-03-01T10:00:00.Z",
            "2026-03-01T10:00:00.1234567890Z",
            "2026-03-01T10:00:00,5Z",
            "2026-03-01T10:00:00ZZ",
            "2026-03-01T10:00:00Z ",
            " 2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00+01",
            "2026-03-01T10:00:00+1:00",
            "2026-03-01T10:00:00+01:0",
            "2026-03-01T10:00:00+24:00",
            "2026-03-01T10:00:00+01:60",
            "2026-03-01T10:00:00+01:00:00",
            "2026-03-01T10:00:00 +01:00",
            "2026-03-01T10:00:00UTC",
            "+2026-03-01T10:00:00Z",
            "2026-03-01T10:00:0aZ",
            "\xef\xbc\x92\xef\xbc\x90\xef\xbc\x92\xef\xbc\x96-03-01T10:00:00Z",
            "1772359200",
        };
        int64_t ms = 42;

        (void)state;
        for (size_t i = 0; i < CP_ARRAY_LEN(bad); i++) {
                if (parse(bad[i], NULL, &ms) != -EINVAL)
                        fail_msg("'%s' was accepted", bad[i]);
        }
        assert_int_equal(ms, 42); /* never clobbered on failure */
}

static void test_time_parse_local(void **state)
{
        struct cp_tz *paris, *utc;
        int64_t ms;

        (void)state;
        assert_int_equal(cp_tz_load("Europe/Paris", &paris), 0);
        assert_int_equal(cp_tz_load("UTC", &utc), 0);
        expect_time("2026-03-01T11:00:00", paris, RX);
        expect_time("2026-03-01 11:00:00.5", paris, RX + 500);
        expect_time("2026-07-01T12:00:00", paris, INT64_C(1782900000000));
        expect_time("2026-03-01T10:00:00", utc, RX);
        /* An explicit offset wins over the zone. */
        expect_time("2026-03-01T10:00:00Z", paris, RX);
        /* Gap: read with the offset before it. */
        expect_time("2026-03-29T02:30:00", paris, INT64_C(1774747800000));
        assert_int_equal(parse("2026-03-01T11:00:00", NULL, &ms), -EINVAL);
        assert_int_equal(parse("2026-02-30T11:00:00", paris, &ms), -EINVAL);
        cp_tz_free(paris);
        cp_tz_free(utc);
}

static void expect_epoch(double v, int64_t want)
{
        int64_t got = 0;
        int r = cp_time_from_epoch(v, &got);

        if (r != 0 || got != want)
                fail_msg("%.17g: got r=%d %lld, want %lld", v, r, (long long)got, (long long)want);
}

static void test_epoch(void **state)
{
        int64_t ms = 42;

        (void)state;
        expect_epoch(1772359200, RX);
        expect_epoch(1772359200.123, RX + 123);
        expect_epoch(1772359200.5, RX + 500);
        expect_epoch(1772359200123.0, RX + 123);
        expect_epoch(1772359200123456.0, RX + 123);
        expect_epoch(1772359200123456789.0, RX + 123);
        expect_epoch(0, 0);
        expect_epoch(0.0009, 0);
        /* Just under 1e11 is seconds (year 5138, refused below); 1e11 is ms (1973). */
        expect_epoch(1e11, INT64_C(100000000000));
        assert_int_equal(cp_time_from_epoch(99999999999999.0, &ms), -ERANGE); /* ms, year 5138 */
        expect_epoch(1e14, INT64_C(100000000000));
        expect_epoch(1e17, INT64_C(100000000000));
        /* Last accepted second: 2200-12-31T23:59:59Z. */
        expect_epoch(7289654399.0, INT64_C(7289654399000));
        assert_int_equal(cp_time_from_epoch(7289654400.0, &ms), -ERANGE);
        assert_int_equal(cp_time_from_epoch(99999999999.0, &ms), -ERANGE);
        assert_int_equal(cp_time_from_epoch(-1, &ms), -ERANGE);
        assert_int_equal(cp_time_from_epoch(-1772359200, &ms), -ERANGE);
        assert_int_equal(cp_time_from_epoch(1e20, &ms), -ERANGE);
        assert_int_equal(cp_time_from_epoch(1e300, &ms), -ERANGE);
        assert_int_equal(cp_time_from_epoch(NAN, &ms), -ERANGE);
        assert_int_equal(cp_time_from_epoch(INFINITY, &ms), -ERANGE);
        assert_int_equal(cp_time_from_epoch(-INFINITY, &ms), -ERANGE);
        assert_int_equal(ms, 42);
        assert_int_equal(CP_TIME_MAX_MS, cp_days_from_civil(2201, 1, 1) * 86400000);
}

static void test_sensor_ids(void **state)
{
        static const char *const good[] = {
            "P-GARE",
            "a81758fffe03",
            "garage/level-1/ev-plug-07",
            "Gare Saint-Lazare",
            "Étage-2",
            "shellypro3em-a8032ab1c2d4:0",
            "x",
            "\xf0\x9f\x9a\x97",
            "a:b.c_d~e",
        };
        static const struct {
                const char *id;
                size_t len;
                const char *problem;
        } bad[] = {
            {"", 0, "is empty"},
            {"a\x01", 2, "contains a control character"},
            {"a\nb", 3, "contains a control character"},
            {"a\x7f", 2, "contains a control character"},
            {"a\xc2\x85", 3, "contains a control character"}, /* U+0085, C1 */
            {"a\0b", 3, "contains a control character"},
            {"a+b", 3, "contains an MQTT wildcard"},
            {"sensors/#", 9, "contains an MQTT wildcard"},
            {"\xff", 1, "is not valid UTF-8"},
            {"\xc0\xaf", 2, "is not valid UTF-8"},         /* overlong '/' */
            {"\xe0\x80\xaf", 3, "is not valid UTF-8"},     /* overlong '/' */
            {"\xed\xa0\x80", 3, "is not valid UTF-8"},     /* surrogate */
            {"\xf4\x90\x80\x80", 4, "is not valid UTF-8"}, /* above U+10FFFF */
            {"ab\xe2\x82", 4, "is not valid UTF-8"},       /* cut sequence */
        };
        char id[CP_SENSOR_ID_MAX + 1];

        (void)state;
        for (size_t i = 0; i < CP_ARRAY_LEN(good); i++) {
                if (cp_sensor_id_valid(good[i], strlen(good[i])) != 0)
                        fail_msg("'%s' refused: %s", good[i], cp_sensor_id_problem(good[i], strlen(good[i])));
        }
        for (size_t i = 0; i < CP_ARRAY_LEN(bad); i++) {
                const char *p = cp_sensor_id_problem(bad[i].id, bad[i].len);

                if (!p || strcmp(p, bad[i].problem) != 0)
                        fail_msg("bad[%zu]: got '%s', want '%s'", i, p ? p : "(valid)", bad[i].problem);
                assert_int_equal(cp_sensor_id_valid(bad[i].id, bad[i].len), -EINVAL);
        }
        memset(id, 'a', sizeof(id));
        assert_int_equal(cp_sensor_id_valid(id, CP_SENSOR_ID_MAX - 1), 0);
        assert_int_equal(cp_sensor_id_valid(id, CP_SENSOR_ID_MAX), -EINVAL);
        assert_string_equal(cp_sensor_id_problem(id, CP_SENSOR_ID_MAX), "is too long");
        assert_int_equal(cp_sensor_id_valid(NULL, 3), -EINVAL);
}

static struct cp_batch *new_batch(void)
{
        struct cp_batch *b = calloc(1, sizeof(*b));

        assert_non_null(b);
        return b;
}

static void test_batch_add(void **state)
{
        struct cp_batch *b = new_batch();
        char name[16];

        (void)state;
        assert_int_equal(cp_batch_add(b, "P-GARE", CP_Q_FREE_SPACES, 12, RX - 5, RX), 0);
        assert_int_equal(b->n, 1);
        assert_string_equal(b->v[0].sensor_id, "P-GARE");
        assert_int_equal(b->v[0].quantity, CP_Q_FREE_SPACES);
        assert_true(b->v[0].value == 12);
        assert_int_equal(b->v[0].ts_ms, RX - 5);
        assert_int_equal(b->v[0].rx_ms, RX);
        assert_int_equal(cp_batch_add_ch(b, "shellyplus1pm-a8032ab1c2d4", "0", CP_Q_POWER_W, -3.5, RX, RX),
                         0);
        assert_string_equal(b->v[1].sensor_id, "shellyplus1pm-a8032ab1c2d4:0");
        assert_true(b->v[1].value == -3.5);
        assert_int_equal(b->n, 2);
        free(b);

        /* Fill to the cap, then one more: the whole batch is dropped. */
        b = new_batch();
        for (int i = 0; i < CP_BATCH_CAP; i++) {
                (void)snprintf(name, sizeof(name), "s%d", i);
                assert_int_equal(cp_batch_add(b, name, CP_Q_POWER_W, i, RX, RX), 0);
        }
        assert_int_equal(b->n, CP_BATCH_CAP);
        assert_int_equal(cp_batch_add(b, "one-more", CP_Q_POWER_W, 1, RX, RX), -ENOSPC);
        assert_int_equal(b->n, 0);
        assert_int_equal(b->reason, CP_REASON_TOO_MANY_READINGS);
        assert_string_equal(b->text, "more than 64 readings in one message");
        free(b);
}

static void test_batch_add_errors(void **state)
{
        struct cp_batch *b = new_batch();
        char longid[200];

        (void)state;
        assert_int_equal(cp_batch_add(b, "m", CP_Q_POWER_W, 1, RX, RX), 0);
        assert_int_equal(cp_batch_add(b, "m", CP_Q_POWER_W, NAN, RX, RX), -ERANGE);
        assert_int_equal(b->n, 0);
        assert_int_equal(b->reason, CP_REASON_OUT_OF_RANGE);
        assert_string_equal(b->text, "m power_w is not a finite number");
        assert_int_equal(cp_batch_add(b, "m", CP_Q_POWER_W, INFINITY, RX, RX), -ERANGE);

        memset(longid, 'x', sizeof(longid) - 1);
        longid[sizeof(longid) - 1] = '\0';
        assert_int_equal(cp_batch_add(b, longid, CP_Q_POWER_W, 1, RX, RX), -ENAMETOOLONG);
        assert_int_equal(b->reason, CP_REASON_BAD_ID);
        assert_string_equal(
            b->text, "sensor id 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is 199 bytes long, limit 127");
        longid[CP_SENSOR_ID_MAX - 1] = '\0';
        assert_int_equal(cp_batch_add(b, longid, CP_Q_POWER_W, 1, RX, RX), 0);
        longid[100] = '\0';
        assert_int_equal(
            cp_batch_add_ch(b, longid, "channel-with-a-rather-long-name-0", CP_Q_POWER_W, 1, RX, RX),
            -ENAMETOOLONG);
        assert_int_equal(b->n, 0);

        assert_int_equal(cp_batch_add(b, "a+b", CP_Q_POWER_W, 1, RX, RX), -EINVAL);
        assert_int_equal(b->reason, CP_REASON_BAD_ID);
        assert_string_equal(b->text, "sensor id 'a+b' contains an MQTT wildcard");
        assert_int_equal(cp_batch_add(b, "", CP_Q_POWER_W, 1, RX, RX), -EINVAL);
        assert_int_equal(cp_batch_add(b, NULL, CP_Q_POWER_W, 1, RX, RX), -EINVAL);
        assert_int_equal(cp_batch_add_ch(b, "dev", "a\x01", CP_Q_POWER_W, 1, RX, RX), -EINVAL);
        assert_string_equal(b->text, "sensor id 'dev:a\\x01' contains a control character");
        assert_int_equal(cp_batch_add_ch(b, "dev", NULL, CP_Q_POWER_W, 1, RX, RX), -EINVAL);
        assert_int_equal(cp_batch_add(b, "m", _CP_Q_MAX, 1, RX, RX), -EINVAL);
        assert_int_equal(cp_batch_add(b, "m", (enum cp_quantity) - 1, 1, RX, RX), -EINVAL);
        assert_int_equal(b->n, 0);
        free(b);
}

static void test_batch_fail(void **state)
{
        struct cp_batch *b = new_batch();
        char big[600];

        (void)state;
        assert_int_equal(cp_batch_add(b, "m", CP_Q_POWER_W, 1, RX, RX), 0);
        assert_int_equal(cp_batch_fail(b, CP_REASON_WRONG_TYPE, "%s is %s, expected %s",
                                       "decoded_payload.occupied", "a string", "boolean"),
                         -EPROTO);
        assert_int_equal(b->n, 0);
        assert_int_equal(b->reason, CP_REASON_WRONG_TYPE);
        assert_string_equal(b->text, "decoded_payload.occupied is a string, expected boolean");

        /* Control bytes and invalid UTF-8 from a payload are escaped; valid UTF-8 stays. */
        (void)cp_batch_fail(b, CP_REASON_BAD_ID, "id '%s'", "\x1b[31mÉ\xff\x7f\xc2\x85");
        assert_string_equal(b->text, "id '\\x1b[31mÉ\\xff\\x7f\\xc2\\x85'");

        /* Long texts are cut to the buffer, never inside a character. */
        for (size_t i = 0; i + 2 < sizeof(big); i += 2)
                memcpy(big + i, "é", 2);
        big[sizeof(big) - 2] = '\0';
        (void)cp_batch_fail(b, CP_REASON_BAD_FORMAT, "x%s", big);
        assert_true(strlen(b->text) < CP_REASON_TEXT_MAX);
        assert_int_equal(strlen(b->text), CP_REASON_TEXT_MAX - 1);
        assert_memory_equal(b->text + strlen(b->text) - 2, "é", 2);
        memset(big, '\n', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        (void)cp_batch_fail(b, CP_REASON_BAD_FORMAT, "%s", big);
        assert_int_equal(strlen(b->text) % 4, 0);
        assert_true(strlen(b->text) < CP_REASON_TEXT_MAX);
        free(b);
}

static void test_names(void **state)
{
        enum cp_quantity q;

        (void)state;
        assert_string_equal(cp_reason_label(CP_REASON_NONE), "none");
        assert_string_equal(cp_reason_label(CP_REASON_BAD_JSON), "bad_json");
        assert_string_equal(cp_reason_label(CP_REASON_EMPTY), "empty");
        assert_string_equal(cp_reason_label(_CP_REASON_MAX), "unknown");
        assert_string_equal(cp_reason_label((enum cp_reason) - 1), "unknown");
        for (int i = 0; i < _CP_REASON_MAX; i++)
                assert_string_not_equal(cp_reason_label((enum cp_reason)i), "unknown");

        for (int i = 0; i < _CP_Q_MAX; i++) {
                const char *name = cp_quantity_name((enum cp_quantity)i);

                assert_non_null(name);
                assert_int_equal(cp_quantity_parse(name, &q), 0);
                assert_int_equal(q, i);
        }
        assert_string_equal(cp_quantity_name(CP_Q_ENERGY_IMPORT_KWH), "energy_import_kwh");
        assert_null(cp_quantity_name(_CP_Q_MAX));
        assert_int_equal(cp_quantity_parse("power_W", &q), -EINVAL);
        assert_int_equal(cp_quantity_parse("", &q), -EINVAL);
        assert_int_equal(cp_quantity_parse(NULL, &q), -EINVAL);
        assert_int_equal(cp_quantity_kind(CP_Q_OCCUPIED), CP_QK_STATE);
        assert_int_equal(cp_quantity_kind(CP_Q_FREE_SPACES), CP_QK_GAUGE);
        assert_int_equal(cp_quantity_kind(CP_Q_ENTRIES_TOTAL), CP_QK_COUNTER);
        assert_int_equal(cp_quantity_kind(CP_Q_ENERGY_EXPORT_KWH), CP_QK_COUNTER);

        assert_string_equal(cp_err_name(-EPROTO), "EPROTO");
        assert_string_equal(cp_err_name(EINVAL), "EINVAL");
        assert_string_equal(cp_err_name(-ENOTCONN), "ENOTCONN");
        assert_string_equal(cp_err_name(0), "E?");
        assert_string_equal(cp_err_name(-9999), "E?");
        assert_string_equal(cp_err_name(INT_MIN), "E?");
}

static void test_conf_get(void **state)
{
        const struct cp_conf_kv kv[] = {{"timezone", "UTC"}, {"mapping", "a=b"}};
        const struct cp_conf_section sec = {"json_map", kv, CP_ARRAY_LEN(kv)};

        (void)state;
        assert_string_equal(cp_conf_get(&sec, "timezone"), "UTC");
        assert_string_equal(cp_conf_get(&sec, "mapping"), "a=b");
        assert_null(cp_conf_get(&sec, "Timezone"));
        assert_null(cp_conf_get(&sec, NULL));
        assert_null(cp_conf_get(NULL, "timezone"));
}

/* Same-sensor readings in a row skip the id check; a different id, valid or not, still gets it. */
static void test_batch_add_same_id(void **state)
{
        struct cp_batch *b = new_batch();

        (void)state;
        assert_int_equal(cp_batch_add(b, "plug-07", CP_Q_POWER_W, 1, RX, RX), 0);
        assert_int_equal(cp_batch_add(b, "plug-07", CP_Q_VOLTAGE_V, 230, RX, RX), 0);
        assert_int_equal(cp_batch_add(b, "plug-0", CP_Q_VOLTAGE_V, 230, RX, RX), 0);
        assert_int_equal(b->n, 3);
        assert_string_equal(b->v[2].sensor_id, "plug-0");
        assert_int_equal(cp_batch_add(b, "plug-0#", CP_Q_POWER_W, 1, RX, RX), -EINVAL);
        assert_string_equal(b->text, "sensor id 'plug-0#' contains an MQTT wildcard");
        assert_int_equal(b->n, 0);
        free(b);
}

static void expect_fmt(double d, const char *plain, const char *g)
{
        char buf[CP_FMT_DOUBLE_MAX];

        cp_fmt_double(d, buf, sizeof(buf));
        if (strcmp(buf, plain) != 0)
                fail_msg("cp_fmt_double(%.17g): got '%s', want '%s'", d, buf, plain);
        cp_fmt_double_g(d, buf, sizeof(buf));
        if (strcmp(buf, g) != 0)
                fail_msg("cp_fmt_double_g(%.17g): got '%s', want '%s'", d, buf, g);
}

static void test_fmt_double(void **state)
{
        (void)state;
        expect_fmt(20, "20", "2e+01");
        expect_fmt(-300, "-300", "-3e+02");
        expect_fmt(0, "0", "0");
        expect_fmt(-0.0, "-0", "-0");
        expect_fmt(3.3, "3.3", "3.3");
        expect_fmt(0.1, "0.1", "0.1");
        expect_fmt(-273.15, "-273.15", "-273.15");
        expect_fmt(1e7, "10000000", "1e+07");
        expect_fmt(999999999999999, "999999999999999", "999999999999999");
        expect_fmt(123456789012345.5, "123456789012345.5", "123456789012345.5");
        expect_fmt(1e15, "1e+15", "1e+15");
        expect_fmt(1e300, "1e+300", "1e+300");
        expect_fmt(1.0 / 3, "0.3333333333333333", "0.3333333333333333");
        expect_fmt(-1.2345678901234567e-308, "-1.2345678901234567e-308", "-1.2345678901234567e-308");
}

static void test_span_is(void **state)
{
        (void)state;
        assert_true(cp_span_is("tele/x", 4, "tele"));
        assert_false(cp_span_is("tele/x", 3, "tele"));
        assert_false(cp_span_is("tele/x", 5, "tele"));
        assert_true(cp_span_is("", 0, ""));
        assert_false(cp_span_is("x", 1, ""));
}

static void test_quantity_ranges(void **state)
{
        struct cp_batch *b = new_batch();
        double lo, hi;

        (void)state;
        assert_null(cp_quantity_range_problem(CP_Q_OCCUPIED, 1));
        assert_string_equal(cp_quantity_range_problem(CP_Q_OCCUPIED, 0.5), "expected 0 or 1");
        assert_null(cp_quantity_range_problem(CP_Q_FREE_SPACES, 1000000000));
        assert_string_equal(cp_quantity_range_problem(CP_Q_EXITS_TOTAL, 1000000001),
                            "expected a whole number 0..1000000000");
        assert_string_equal(cp_quantity_range_problem(CP_Q_TOTAL_SPACES, 2.5),
                            "expected a whole number 0..1000000000");
        assert_string_equal(cp_quantity_range_problem(CP_Q_VOLTAGE_V_L2, -1), "expected >= 0");
        assert_null(cp_quantity_range_problem(CP_Q_POWER_W, -1e12));
        assert_null(cp_quantity_range_problem(CP_Q_CURRENT_A, -5));
        assert_string_equal(cp_quantity_range_problem(CP_Q_POWER_FACTOR, 1.01), "expected -1..1");
        assert_string_equal(cp_quantity_range_problem(CP_Q_HUMIDITY_PCT, 100.5), "expected 0..100");
        assert_string_equal(cp_quantity_range_problem(CP_Q_TEMPERATURE_C, -274), "expected >= -273.15");
        assert_null(cp_quantity_range_problem(CP_Q_TEMPERATURE_C, 5000));

        cp_quantity_bounds(CP_Q_VOLTAGE_V, &lo, &hi);
        assert_true(lo == 0 && hi == 1000);
        cp_quantity_bounds(CP_Q_POWER_FACTOR, &lo, &hi);
        assert_true(lo == -1 && hi == 1);
        cp_quantity_bounds(CP_Q_TEMPERATURE_C, &lo, &hi);
        assert_true(lo == -273.15 && hi == 1000);
        cp_quantity_bounds(CP_Q_REACTIVE_POWER_VAR, &lo, &hi);
        assert_true(lo == -1e7 && hi == 1e7);

        assert_int_equal(cp_batch_fail_bounds(b, "ENERGY.Voltage[1]", 1000.5, 0, 1000, NULL), -EPROTO);
        assert_int_equal(b->reason, CP_REASON_OUT_OF_RANGE);
        assert_string_equal(b->text, "ENERGY.Voltage[1] is 1000.5, expected 0 to 1000");
        (void)cp_batch_fail_bounds(b, "voltage", -5, 0, 100000, " (mV, battery device)");
        assert_string_equal(b->text, "voltage is -5, expected 0 to 100000 (mV, battery device)");

        assert_null(cp_value_check_problem(-1e9, CP_CHECK_SIGNED));
        assert_string_equal(cp_value_check_problem(-0.1, CP_CHECK_NONNEG), "expected >= 0");
        assert_string_equal(cp_value_check_problem(-1.5, CP_CHECK_PF), "expected -1 to 1");
        assert_null(cp_value_check_problem(-1, CP_CHECK_PF));
        assert_string_equal(cp_value_check_problem(-300, CP_CHECK_ABOVE_0K), "below absolute zero (-273.15)");
        free(b);
}

static void expect_span(const char *topic, const char *setting, const char *want)
{
        struct cp_topic_span span = {0};
        char err[256] = "";
        const char *p = NULL;
        size_t len = 0;

        if (cp_conf_parse_topic_span("senml", "id_topic_level", setting, &span, err, sizeof(err)) != 0)
                fail_msg("'%s': %s", setting, err);
        if (!want) {
                assert_false(cp_topic_span_get(topic, &span, &p, &len));
                return;
        }
        assert_true(cp_topic_span_get(topic, &span, &p, &len));
        if (len != strlen(want) || memcmp(p, want, len) != 0)
                fail_msg("'%s' level %s: got '%.*s', want '%s'", topic, setting, (int)len, p, want);
}

static void test_topic_span(void **state)
{
        struct cp_topic_span span = {0};
        char err[256];

        (void)state;
        expect_span("a/b/c", "1", "a");
        expect_span("a/b/c", "2", "b");
        expect_span("a/b/c", "-1", "c");
        expect_span("a/b/c", "-3", "a");
        expect_span("a/b/c", "2..", "b/c");
        expect_span("a/b/c", "-2..", "b/c");
        expect_span("a//c", "2", "");
        expect_span("a/b/c", "4", NULL);
        expect_span("a/b/c", "-4", NULL);
        expect_span("abc", "1..", "abc");

        assert_int_equal(
            cp_conf_parse_topic_span("json_map", "id_topic_level", "64..", &span, err, sizeof(err)), 0);
        assert_true(span.level == 64 && span.to_end);
        const char *const bad[] = {"0", "65", "-65", "x", "", "2.", "2...", "1e1", "99999999999999999999"};
        for (size_t i = 0; i < CP_ARRAY_LEN(bad); i++) {
                char want[256];

                assert_int_equal(
                    cp_conf_parse_topic_span("json_map", "id_topic_level", bad[i], &span, err, sizeof(err)),
                    -EINVAL);
                (void)snprintf(
                    want, sizeof(want),
                    "driver.json_map.id_topic_level: '%s' is not a topic level: N or N.. with N in 1..64 "
                    "from the start or -1..-64 from the end",
                    bad[i]);
                assert_string_equal(err, want);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_time_parse_valid),
            cmocka_unit_test(test_time_parse_length),
            cmocka_unit_test(test_time_parse_invalid),
            cmocka_unit_test(test_time_parse_local),
            cmocka_unit_test(test_epoch),
            cmocka_unit_test(test_sensor_ids),
            cmocka_unit_test(test_batch_add),
            cmocka_unit_test(test_batch_add_errors),
            cmocka_unit_test(test_batch_fail),
            cmocka_unit_test(test_names),
            cmocka_unit_test(test_conf_get),
            cmocka_unit_test(test_batch_add_same_id),
            cmocka_unit_test(test_fmt_double),
            cmocka_unit_test(test_span_is),
            cmocka_unit_test(test_quantity_ranges),
            cmocka_unit_test(test_topic_span),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
