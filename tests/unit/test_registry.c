/* test_registry.c - registry CSV parsing and its FILE:LINE errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "registry.h"

#define FAC_HDR "parking_id;name;total_spaces;lat;lon;city;operator\n"
#define SEN_HDR "sensor_id;kind;parking_id;spot_id;district\n"

static void expect_error(const char *fac, const char *sen, const char *want)
{
        struct cp_config_errors errs = {0};
        struct cp_registry *r = NULL;

        assert_true(cp_registry_parse("f.csv", fac, "s.csv", sen, &r, &errs) < 0);
        assert_null(r);
        assert_true(errs.n >= 1);
        if (strcmp(errs.msg[0], want) != 0)
                fprintf(stderr, "got:  %s\nwant: %s\n", errs.msg[0], want);
        assert_string_equal(errs.msg[0], want);
        cp_config_errors_done(&errs);
}

static void test_valid(void **state)
{
        struct cp_config_errors errs = {0};
        struct cp_registry *r = NULL;
        const struct cp_reg_facility *f;

        (void)state;
        assert_int_equal(cp_registry_parse("f.csv",
                                           "\xef\xbb\xbf" FAC_HDR "P1;\"Parking; de la Mairie\";120;48.8245;2.2737;Issy;SPL\r\n"
                                           "\n"
                                           "P2;Gare;10;;;Issy;\n",
                                           "s.csv",
                                           "district;spot_id;sensor_id;kind;parking_id;extra\n"
                                           ";A-1;spot-1;spot;P1;x\n"
                                           ";;gate-1;facility;P2;\n"
                                           "Centre;;meter-1;meter;;\n"
                                           "Centre;;pv-1;pv;;\n",
                                           &r, &errs),
                         0);
        assert_int_equal(r->n_facilities, 2);
        f = cp_registry_facility(r, "P1");
        assert_non_null(f);
        assert_string_equal(f->name, "Parking; de la Mairie");
        assert_int_equal(f->total_spaces, 120);
        assert_true(f->has_geo);
        assert_true(f->lat > 48.82 && f->lat < 48.83);
        assert_false(cp_registry_facility(r, "P2")->has_geo);
        assert_null(cp_registry_facility(r, "P3"));
        assert_int_equal(r->n_sensors, 4);
        assert_int_equal(r->sensors[0].kind, CP_SK_SPOT);
        assert_string_equal(r->sensors[0].spot_id, "A-1");
        assert_ptr_equal(r->sensors[0].facility, f);
        assert_string_equal(r->sensors[1].spot_id, "gate-1");
        assert_int_equal(r->n_districts, 1);
        assert_ptr_equal(r->sensors[2].district, &r->districts[0]);
        assert_ptr_equal(r->sensors[3].district, &r->districts[0]);
        cp_registry_free(r);
}

static void test_errors(void **state)
{
        (void)state;
        expect_error("", NULL, "f.csv: empty file, expected a header row");
        expect_error("parking_id;name\n", NULL, "f.csv:1: header: missing column 'total_spaces'");
        expect_error(FAC_HDR "P1;x;-1;;;;\n", NULL, "f.csv:2: total_spaces '-1' is not a count 0..1000000");
        expect_error(FAC_HDR "P1;x;ten;;;;\n", NULL, "f.csv:2: total_spaces 'ten' is not a count 0..1000000");
        expect_error(FAC_HDR "P1;x;1;91;2;;\n", NULL,
                     "f.csv:2: lat '91' lon '2': expected decimal degrees, lat -90..90, lon -180..180");
        expect_error(FAC_HDR "P1;x;1;48.1;;;\n", NULL,
                     "f.csv:2: lat '48.1' lon '': expected decimal degrees, lat -90..90, lon -180..180");
        expect_error(FAC_HDR "P1;x;1;;;;\nP1;y;2;;;;\n", NULL, "f.csv:3: parking_id 'P1' appears twice");
        expect_error(FAC_HDR ";x;1;;;;\n", NULL, "f.csv:2: parking_id '' is empty or has forbidden characters");
        expect_error(FAC_HDR "P1;\"x;1;;;;\n", NULL, "f.csv:2: unterminated quoted field");
        expect_error(FAC_HDR "P1;x\"y;1;;;;\n", NULL, "f.csv:2: quote inside an unquoted field");
        expect_error(FAC_HDR "P1;\xff;1;;;;\n", NULL, "f.csv:2: invalid UTF-8 or control character");
        expect_error(FAC_HDR "P1;x;1;;;;\n", SEN_HDR "s1;bay;P1;;\n", "s.csv:2: kind 'bay' is not one of spot, facility, meter, pv");
        expect_error(FAC_HDR "P1;x;1;;;;\n", SEN_HDR "s1;spot;P9;;\n",
                     "s.csv:2: spot sensor 's1': parking_id 'P9' is not in the facilities file");
        expect_error(FAC_HDR "P1;x;1;;;;\n", SEN_HDR "m1;meter;;;\n", "s.csv:2: meter sensor 'm1': district is empty");
        expect_error(FAC_HDR "P1;x;1;;;;\n", SEN_HDR "s1;spot;P1;;\ns1;spot;P1;;\n", "s.csv:3: sensor_id 's1' appears twice");
        expect_error(FAC_HDR "P1;x;1;;;;\n", SEN_HDR "a+b;spot;P1;;\n",
                     "s.csv:2: sensor_id 'a+b' is empty or has forbidden characters");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
