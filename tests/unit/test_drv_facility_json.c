/* test_drv_facility_json.c - the facility_json driver's settings (init/free) and its behaviour
 * without state; payload decoding itself is covered by tests/drivers/facility_json/. */
#include "citypulse/cp_driver.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h uses jmp_buf, va_list and size_t without including their headers. */
#include <cmocka.h>

extern const struct cp_driver cp_driver_facility_json;

#define RX INT64_C(1772359200000)

static int init_with(const struct cp_conf_kv *kv, size_t n, void **ret_state, char *err, size_t errlen)
{
        const struct cp_conf_section sec = {"facility_json", kv, n};

        return cp_driver_facility_json.init(&sec, ret_state, err, errlen);
}

static int decode(void *st, const char *payload, struct cp_batch *b)
{
        const struct cp_msg msg = {"city/parking/test/counter", (const uint8_t *)payload, strlen(payload),
                                   RX};

        return cp_driver_facility_json.decode(st, &msg, b);
}

static void test_identity(void **state)
{
        (void)state;
        assert_int_equal(cp_driver_facility_json.abi, CP_DRIVER_ABI);
        assert_string_equal(cp_driver_facility_json.name, "facility_json");
        assert_non_null(cp_driver_facility_json.decode);
        cp_driver_facility_json.free(NULL);
}

static void test_timezone_setting(void **state)
{
        const struct cp_conf_kv utc[] = {{"timezone", "UTC"}};
        const char *local = "{\"facility\":\"P\",\"free\":1,\"timestamp\":\"2026-03-01T10:00:00\"}";
        struct cp_batch *b = calloc(1, sizeof(*b));
        void *st = NULL;
        char err[200] = "";

        (void)state;
        assert_non_null(b);
        /* Default: Europe/Paris, so 10:00 local is 09:00Z in winter. */
        assert_int_equal(init_with(NULL, 0, &st, err, sizeof(err)), 0);
        assert_non_null(st);
        assert_int_equal(decode(st, local, b), 0);
        assert_int_equal(b->v[0].ts_ms, RX - 3600000);
        cp_driver_facility_json.free(st);

        st = NULL;
        assert_int_equal(init_with(utc, 1, &st, err, sizeof(err)), 0);
        assert_int_equal(decode(st, local, b), 0);
        assert_int_equal(b->n, 1);
        assert_int_equal(b->v[0].ts_ms, RX);
        cp_driver_facility_json.free(st);

        /* Init may be skipped (fuzzing): local times are then refused, the rest works. */
        assert_int_equal(decode(NULL, local, b), -EPROTO);
        assert_int_equal(b->n, 0);
        assert_int_equal(b->reason, CP_REASON_BAD_TIMESTAMP);
        assert_string_equal(b->text,
                            "timestamp '2026-03-01T10:00:00' is not an RFC 3339 time with a UTC offset");
        assert_int_equal(decode(NULL, "{\"facility\":\"P\",\"free\":1}", b), 0);
        assert_int_equal(b->v[0].ts_ms, RX);
        free(b);
}

static void test_bad_settings(void **state)
{
        const struct cp_conf_kv unknown_zone[] = {{"timezone", "Europe/Pariss"}};
        const struct cp_conf_kv bad_name[] = {{"timezone", "../../etc/passwd"}};
        const struct cp_conf_kv unknown_key[] = {{"timezone", "UTC"}, {"time_zone", "UTC"}};
        void *st = NULL;
        char err[200];

        (void)state;
        assert_int_equal(init_with(unknown_zone, 1, &st, err, sizeof(err)), -ENOENT);
        assert_string_equal(err, "driver.facility_json.timezone: unknown time zone 'Europe/Pariss'");
        assert_int_equal(init_with(bad_name, 1, &st, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "driver.facility_json.timezone: invalid time zone name '../../etc/passwd'");
        assert_int_equal(init_with(unknown_key, 2, &st, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "driver.facility_json.time_zone: unknown key");
        assert_null(st);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_identity),
            cmocka_unit_test(test_timezone_setting),
            cmocka_unit_test(test_bad_settings),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
