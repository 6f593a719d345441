/* test_route.c - the driver table and routing: first matching route wins, wildcards, driver settings
 * checked at build time with FILE:LINE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static struct cp_config *conf(const char *text)
{
        struct cp_config_errors errs = {0};
        struct cp_config *c = NULL;

        assert_int_equal(cp_config_parse("r.conf", text, strlen(text), cp_driver_known, &c, &errs), 0);
        return c;
}

static void test_table(void **state)
{
        (void)state;
        assert_true(cp_driver_count() >= 1);
        assert_true(cp_driver_known("facility_json"));
        assert_false(cp_driver_known("nope"));
        assert_int_equal(cp_driver_index("facility_json") >= 0, 1);
        for (size_t i = 0; i < cp_driver_count(); i++) {
                assert_int_equal(cp_driver_at(i)->abi, CP_DRIVER_ABI);
                assert_non_null(cp_driver_at(i)->decode);
                assert_int_equal(cp_driver_index(cp_driver_at(i)->name), (int)i);
        }
}

static void test_match(void **state)
{
        struct cp_config *c = conf("route city/parking/special/counter facility_json\n"
                                   "route city/parking/+/counter facility_json\n"
                                   "route city/# facility_json\n");
        struct cp_config_errors errs = {0};
        struct cp_router *r = NULL;
        const struct cp_route_entry *e;

        (void)state;
        assert_int_equal(cp_router_build(c, &r, &errs), 0);
        assert_int_equal(r->n, 3);
        e = cp_router_match(r, "city/parking/special/counter");
        assert_non_null(e);
        assert_string_equal(e->filter, "city/parking/special/counter"); /* the first line wins */
        e = cp_router_match(r, "city/parking/p2/counter");
        assert_string_equal(e->filter, "city/parking/+/counter");
        e = cp_router_match(r, "city/x/y/z");
        assert_string_equal(e->filter, "city/#");
        assert_null(cp_router_match(r, "town/parking/p2/counter"));
        assert_null(cp_router_match(r, "$SYS/broker/uptime"));
        cp_router_free(r);
        cp_config_free(c);
}

static void test_driver_settings_error(void **state)
{
        struct cp_config *c = conf("route a/# facility_json\n"
                                   "driver.facility_json.timezone Mars/Olympus_Mons\n");
        struct cp_config_errors errs = {0};
        struct cp_router *r = NULL;

        (void)state;
        assert_true(cp_router_build(c, &r, &errs) < 0);
        assert_null(r);
        assert_int_equal(errs.n, 1);
        assert_true(strncmp(errs.msg[0], "r.conf:2: driver facility_json: ", 32) == 0);
        assert_non_null(strstr(errs.msg[0], "Mars/Olympus_Mons"));
        cp_config_errors_done(&errs);
        cp_config_free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_match),
                cmocka_unit_test(test_driver_settings_error),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
