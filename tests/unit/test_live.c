/* test_live.c - latest values (newest observation wins, duplicates ignored) and facility views. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "live.h"

#define MIN 60000

static struct cp_reading rd(const char *id, enum cp_quantity q, double v, int64_t ts)
{
        struct cp_reading r;

        memset(&r, 0, sizeof(r));
        snprintf(r.sensor_id, sizeof(r.sensor_id), "%s", id);
        r.quantity = q;
        r.value = v;
        r.ts_ms = ts;
        r.rx_ms = ts + 5;
        return r;
}

static struct cp_registry *reg_new(void)
{
        struct cp_config_errors errs = {0};
        struct cp_registry *r = NULL;

        assert_int_equal(cp_registry_parse("f", "parking_id;name;total_spaces;lat;lon;city;operator\n"
                                                "S;Spots;4;;;;\nC;Counter;100;;;;\nE;Empty;7;;;;\n",
                                           "s", "sensor_id;kind;parking_id;spot_id;district\n"
                                                "s1;spot;S;;\ns2;spot;S;;\ns3;spot;S;;\ns4;spot;S;;\n"
                                                "g1;facility;C;;\nm1;meter;;;D\n",
                                           &r, &errs),
                         0);
        return r;
}

static void test_newest_wins(void **state)
{
        struct cp_live l;
        struct cp_reading r;
        struct cp_sensor *s;

        (void)state;
        cp_live_init(&l, 10, 5 * MIN, 0);
        r = rd("x", CP_Q_POWER_W, 10, 1000);
        assert_int_equal(cp_live_apply(&l, &r), 1);
        r = rd("x", CP_Q_POWER_W, 20, 900); /* older: stored elsewhere, not live */
        assert_int_equal(cp_live_apply(&l, &r), 0);
        r = rd("x", CP_Q_POWER_W, 30, 1000); /* duplicate time: the first arrival wins */
        assert_int_equal(cp_live_apply(&l, &r), 0);
        r = rd("x", CP_Q_VOLTAGE_V, 230, 500);
        assert_int_equal(cp_live_apply(&l, &r), 1);
        s = cp_live_get(&l, "x", 1);
        assert_non_null(s);
        assert_true(cp_sensor_value(s, CP_Q_POWER_W)->value == 10);
        assert_true(cp_sensor_value(s, CP_Q_VOLTAGE_V)->value == 230);
        assert_null(cp_sensor_value(s, CP_Q_CURRENT_A));
        cp_live_done(&l);
}

static void test_unregistered_cap(void **state)
{
        struct cp_live l;
        struct cp_reading r;

        (void)state;
        cp_live_init(&l, 2, 5 * MIN, 0);
        r = rd("a", CP_Q_POWER_W, 1, 1);
        assert_int_equal(cp_live_apply(&l, &r), 1);
        r = rd("b", CP_Q_POWER_W, 1, 1);
        assert_int_equal(cp_live_apply(&l, &r), 1);
        r = rd("c", CP_Q_POWER_W, 1, 1);
        assert_int_equal(cp_live_apply(&l, &r), -ENOSPC);
        r = rd("a", CP_Q_POWER_W, 2, 2); /* known ones still update */
        assert_int_equal(cp_live_apply(&l, &r), 1);
        assert_int_equal(l.n_unregistered, 2);
        cp_live_done(&l);
}

static void test_spot_facility(void **state)
{
        struct cp_registry *reg = reg_new();
        const struct cp_reg_facility *f = cp_registry_facility(reg, "S");
        struct cp_facility_view v;
        struct cp_live l;
        struct cp_reading r;
        int64_t t0 = 1772359200000;

        (void)state;
        cp_live_init(&l, 10, 5 * MIN, 0);
        assert_int_equal(cp_live_link(&l, reg), 0);
        cp_live_facility(&l, f, t0, &v);
        assert_int_equal(v.status, CP_FS_UNKNOWN);
        assert_false(v.known);
        r = rd("s1", CP_Q_OCCUPIED, 0, t0);
        cp_live_apply(&l, &r);
        r = rd("s2", CP_Q_OCCUPIED, 1, t0 + MIN);
        cp_live_apply(&l, &r);
        r = rd("s3", CP_Q_OCCUPIED, 0, t0 + 2 * MIN);
        cp_live_apply(&l, &r);
        cp_live_facility(&l, f, t0 + 3 * MIN, &v);
        assert_int_equal(v.status, CP_FS_OPEN);
        assert_int_equal(v.free_spaces, 2); /* s4 never reported: not counted as free */
        assert_int_equal(v.total_spaces, 4);
        assert_int_equal(v.known_spots, 3);
        assert_true(v.occupancy_rate > 0.333 && v.occupancy_rate < 0.334);
        assert_int_equal(v.last_reported_ms, t0 + 2 * MIN);
        assert_int_equal(v.next_change_ms, t0 + 5 * MIN + 1);
        /* s1 goes stale: it is no longer known free. */
        cp_live_facility(&l, f, t0 + 5 * MIN + 1, &v);
        assert_int_equal(v.free_spaces, 1);
        /* Everything stale: unknown, never "1 free". */
        cp_live_facility(&l, f, t0 + 8 * MIN, &v);
        assert_int_equal(v.status, CP_FS_UNKNOWN);
        assert_false(v.known);
        cp_live_done(&l);
        cp_registry_free(reg);
}

static void test_counter_facility(void **state)
{
        struct cp_registry *reg = reg_new();
        const struct cp_reg_facility *f = cp_registry_facility(reg, "C");
        struct cp_facility_view v;
        struct cp_live l;
        struct cp_reading r;
        int64_t t0 = 1772359200000;

        (void)state;
        cp_live_init(&l, 10, 5 * MIN, 2);
        assert_int_equal(cp_live_link(&l, reg), 0);
        r = rd("g1", CP_Q_FREE_SPACES, 40, t0);
        cp_live_apply(&l, &r);
        r = rd("g1", CP_Q_TOTAL_SPACES, 120, t0);
        cp_live_apply(&l, &r);
        cp_live_facility(&l, f, t0 + 1000, &v);
        assert_int_equal(v.status, CP_FS_OPEN);
        assert_int_equal(v.free_spaces, 40);
        assert_int_equal(v.total_spaces, 120); /* the counter's own total, reported with it */
        r = rd("g1", CP_Q_FREE_SPACES, 2, t0 + MIN);
        cp_live_apply(&l, &r);
        cp_live_facility(&l, f, t0 + MIN, &v);
        assert_int_equal(v.status, CP_FS_FULL); /* free <= live.full_threshold (2) */
        assert_int_equal(v.total_spaces, 120); /* the counter's latest total, not the registry's */
        cp_live_facility(&l, f, t0 + 7 * MIN, &v);
        assert_int_equal(v.status, CP_FS_UNKNOWN);
        /* A facility with no sensors at all. */
        cp_live_facility(&l, cp_registry_facility(reg, "E"), t0, &v);
        assert_int_equal(v.status, CP_FS_UNKNOWN);
        assert_int_equal(v.total_spaces, 7);
        cp_live_done(&l);
        cp_registry_free(reg);
}

static void test_relink_keeps_values(void **state)
{
        struct cp_registry *reg = reg_new(), *reg2 = reg_new();
        struct cp_live l;
        struct cp_reading r;
        struct cp_facility_view v;
        int64_t t0 = 1772359200000;

        (void)state;
        cp_live_init(&l, 10, 5 * MIN, 0);
        assert_int_equal(cp_live_link(&l, reg), 0);
        r = rd("g1", CP_Q_FREE_SPACES, 40, t0);
        cp_live_apply(&l, &r);
        r = rd("stranger", CP_Q_POWER_W, 1, t0);
        cp_live_apply(&l, &r);
        assert_int_equal(l.n_unregistered, 1);
        assert_int_equal(cp_live_link(&l, reg2), 0);
        cp_registry_free(reg);
        cp_live_facility(&l, cp_registry_facility(reg2, "C"), t0, &v);
        assert_int_equal(v.free_spaces, 40);
        assert_int_equal(l.n_unregistered, 1);
        assert_int_equal(reg2->districts[0].n_meters, 1);
        cp_live_done(&l);
        cp_registry_free(reg2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_newest_wins),       cmocka_unit_test(test_unregistered_cap),
                cmocka_unit_test(test_spot_facility),     cmocka_unit_test(test_counter_facility),
                cmocka_unit_test(test_relink_keeps_values),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
