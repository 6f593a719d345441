/* test_odsql.c - unit tests for daemon/odsql.c. Every plan is run by SQLite against in-memory tables
 * built from the dataset catalog, and the test checks the rows that come back, not the SQL text.
 * Distances were computed apart with Python's haversine (R = 6371008.8 m); instants with `TZ=... date`. */
#include "buf.h"
#include "citypulse/cp_tz.h"
#include "dataset.h"
#include "odsql.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* cmocka.h uses jmp_buf, va_list and size_t without including their headers. */
#include <cmocka.h>

#define MIN_MS INT64_C(60000)

static sqlite3 *db;
static const struct cp_dataset *parking, *occupancy;
static int64_t last_count; /* count(*) of the last run() */

/* A dataset of the test's own, for the boolean type that no catalog dataset has yet. */
static const struct cp_ods_field f_bikes[] = {
    {"station", "Station", CP_ODS_TEXT, "station", NULL, ""},
    {"is_open", "Open", CP_ODS_BOOLEAN, "is_open", NULL, ""},
    {"bikes", "Bikes", CP_ODS_INT, "bikes", NULL, ""},
};
static const struct cp_dataset bikes = {
    "bikes", "Bikes", "", CP_DS_LIVE_PARKING, "bikes", f_bikes, 3, "station", "station", -1,
};

static int64_t utc(int y, unsigned mo, unsigned d, int h, int mi)
{
        return (cp_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60) * 1000;
}

static void exec(const char *sql)
{
        char *msg = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
                fail_msg("%s: %s", sql, msg);
}

/* CREATE TABLE with the dataset's SQL columns, typed as dataset.h says. */
static void create_table(const struct cp_dataset *ds)
{
        struct cp_buf b = CP_BUF_INIT;

        cp_buf_printf(&b, "CREATE TABLE %s(", ds->table);
        for (size_t i = 0; i < ds->n_fields; i++) {
                const struct cp_ods_field *f = &ds->fields[i];

                if (i)
                        cp_buf_puts(&b, ", ");
                switch (f->type) {
                case CP_ODS_TEXT:
                        cp_buf_printf(&b, "%s TEXT", f->col);
                        break;
                case CP_ODS_DOUBLE:
                        cp_buf_printf(&b, "%s REAL", f->col);
                        break;
                case CP_ODS_GEO_POINT:
                        cp_buf_printf(&b, "%s REAL, %s REAL", f->col, f->col2);
                        break;
                default:
                        cp_buf_printf(&b, "%s INTEGER", f->col);
                        break;
                }
        }
        cp_buf_puts(&b, ")");
        exec(b.p);
        cp_buf_free(&b);
}

static void fill_occupancy(int64_t from, int64_t to)
{
        sqlite3_stmt *st;

        assert_int_equal(sqlite3_prepare_v2(db,
                                            "INSERT INTO parking_occupancy_15min(parking_id, bucket_start_ms,"
                                            " bucket_end_ms, occupancy_rate_mean, samples, revision,"
                                            " updated_at_ms, lat, lon) VALUES('issy-p01', ?, ?, 0.5, 3, 0, ?,"
                                            " 48.8241, 2.2701)",
                                            -1, &st, NULL),
                         SQLITE_OK);
        for (int64_t t = from; t < to; t += 15 * MIN_MS) {
                sqlite3_bind_int64(st, 1, t);
                sqlite3_bind_int64(st, 2, t + 15 * MIN_MS);
                sqlite3_bind_int64(st, 3, t + 16 * MIN_MS);
                assert_int_equal(sqlite3_step(st), SQLITE_DONE);
                sqlite3_reset(st);
        }
        sqlite3_finalize(st);
}

static int setup(void **state)
{
        (void)state;
        parking = cp_dataset_find("parking-availability");
        occupancy = cp_dataset_find("parking-occupancy-15min");
        assert_non_null(parking);
        assert_non_null(occupancy);
        assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
        assert_int_equal(cp_odsql_register(db), SQLITE_OK);
        create_table(parking);
        create_table(occupancy);
        create_table(&bikes);
        /* Issy-les-Moulineaux. p02 is 500.38 m north of p01, p03 753.27 m away, p05 (Paris) 7011 m;
         * p04 has no place. */
        exec(
            "INSERT INTO parking_availability VALUES"
            "('issy-p01', 'Parking Hôtel de Ville', 'Issy-les-Moulineaux', 'Indigo', 112, 400, 0.72, 'open',"
            " 1773475500000, 48.8241, 2.2701),"
            "('issy-p02', 'Parking 100% Vélo_Park', 'Issy-les-Moulineaux', NULL, 0, 50, 1.0, 'full',"
            " 1773475800000, 48.8286, 2.2701),"
            "('issy-p03', 'Parking Corentin Celton', 'Issy-les-Moulineaux', 'Effia', NULL, 200, NULL, 'unknown',"
            " NULL, 48.8275, 2.2790),"
            "('issy-p04', 'L''Atelier \"quoted\"', 'Issy-les-Moulineaux', 'Indigo', 5, 20, 0.75, 'open',"
            " 1773475200000, NULL, NULL),"
            "('paris-p05', 'Parking VéloXPark Paris', 'Paris', 'Saemes', 40, 300, 0.87, 'closed',"
            " 1773478800000, 48.8566, 2.3522)");
        fill_occupancy(utc(2026, 3, 28, 22, 0), utc(2026, 3, 30, 0, 0));
        fill_occupancy(utc(2026, 10, 24, 21, 0), utc(2026, 10, 26, 1, 0));
        exec("INSERT INTO bikes VALUES ('a', 1, 3), ('b', 0, 0), ('c', NULL, 7)");
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
        return 0;
}

static int64_t count_rows(const char *table)
{
        char sql[128];
        sqlite3_stmt *st;
        int64_t n;

        (void)snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return n;
}

static void tables_intact(void)
{
        assert_int_equal(count_rows("parking_availability"), 5);
        assert_int_equal(count_rows("parking_occupancy_15min"), 104 + 112);
        assert_int_equal(count_rows("bikes"), 3);
}

/* Runs a plan; returns the first result column of each row joined by ',' (NULL as "null"), or
 * "ERR <message>". The count query runs too, into last_count. */
static const char *run(const struct cp_dataset *ds, const struct cp_odsql_request *req)
{
        static char out[16384];
        struct cp_odsql_plan plan;
        char err[256];
        sqlite3_stmt *st;
        size_t n = 0;
        int r;

        r = cp_odsql_plan(ds, req, &plan, err, sizeof(err));
        if (r < 0) {
                assert_int_equal(r, -EINVAL);
                assert_true(err[0] != '\0');
                (void)snprintf(out, sizeof(out), "ERR %s", err);
                return out;
        }
        if (sqlite3_prepare_v2(db, plan.rows.sql.p, -1, &st, NULL) != SQLITE_OK)
                fail_msg("prepare %s: %s", plan.rows.sql.p, sqlite3_errmsg(db));
        assert_int_equal(sqlite3_column_count(st), (int)plan.n_cols);
        assert_int_equal(cp_sqlq_bind(&plan.rows, st), SQLITE_OK);
        out[0] = '\0';
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                const char *v = (const char *)sqlite3_column_text(st, 0);

                n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", n ? "," : "", v ? v : "null");
                assert_true(n < sizeof(out));
        }
        assert_int_equal(r, SQLITE_DONE);
        sqlite3_finalize(st);
        if (sqlite3_prepare_v2(db, plan.count.sql.p, -1, &st, NULL) != SQLITE_OK)
                fail_msg("prepare %s: %s", plan.count.sql.p, sqlite3_errmsg(db));
        assert_int_equal(cp_sqlq_bind(&plan.count, st), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        last_count = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        cp_odsql_plan_done(&plan);
        return out;
}

/* The parking ids matching a where clause, in the default order. */
static const char *ids(const char *where)
{
        struct cp_odsql_request req = {.where = where, .select = "parking_id", .limit = "100"};

        return run(parking, &req);
}

static const char *ids_tz(const char *where, const char *tz)
{
        struct cp_odsql_request req = {
            .where = where, .select = "parking_id", .limit = "100", .timezone = tz};

        return run(parking, &req);
}

static void test_defaults(void **state)
{
        struct cp_odsql_request req = {0};
        struct cp_odsql_plan plan;
        char err[256];

        (void)state;
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, err, sizeof(err)), 0);
        assert_int_equal(plan.limit, 10);
        assert_int_equal(plan.offset, 0);
        assert_int_equal(plan.n_out, parking->n_fields);
        assert_int_equal(plan.n_cols, parking->n_fields + 1);
        assert_string_equal(cp_tz_name(plan.tz), "UTC");
        assert_ptr_equal(plan.out[0], &parking->fields[0]);
        cp_odsql_plan_done(&plan);
        cp_odsql_plan_done(&plan); /* twice is harmless */
        assert_string_equal(run(parking, &req), "issy-p01,issy-p02,issy-p03,issy-p04,paris-p05");
        assert_int_equal(last_count, 5);
        assert_string_equal(ids(""), "issy-p01,issy-p02,issy-p03,issy-p04,paris-p05");
        assert_string_equal(ids("   \t "), "issy-p01,issy-p02,issy-p03,issy-p04,paris-p05");
}

static void test_comparisons(void **state)
{
        (void)state;
        assert_string_equal(ids("free_spaces = 112"), "issy-p01");
        assert_string_equal(ids("free_spaces:112"), "issy-p01");
        assert_string_equal(ids("free_spaces : 0"), "issy-p02");
        /* != and <> keep the rows without a value, as on ODS. */
        assert_string_equal(ids("free_spaces != 112"), "issy-p02,issy-p03,issy-p04,paris-p05");
        assert_string_equal(ids("free_spaces <> 0"), "issy-p01,issy-p03,issy-p04,paris-p05");
        assert_string_equal(ids("free_spaces < 40"), "issy-p02,issy-p04");
        assert_string_equal(ids("free_spaces <= 40"), "issy-p02,issy-p04,paris-p05");
        assert_string_equal(ids("free_spaces > 40"), "issy-p01");
        assert_string_equal(ids("free_spaces >= 40"), "issy-p01,paris-p05");
        assert_string_equal(ids("free_spaces>=40"), "issy-p01,paris-p05");
        assert_string_equal(ids("free_spaces > -1"), "issy-p01,issy-p02,issy-p04,paris-p05");
        /* Literal first. */
        assert_string_equal(ids("40 < free_spaces"), "issy-p01");
        assert_string_equal(ids("'open' = status"), "issy-p01,issy-p04");
        /* Decimals and exponents, against REAL and INTEGER columns. */
        assert_string_equal(ids("occupancy_rate >= 0.75"), "issy-p02,issy-p04,paris-p05");
        assert_string_equal(ids("occupancy_rate > .8"), "issy-p02,paris-p05");
        assert_string_equal(ids("total_spaces = 4e2"), "issy-p01");
        assert_string_equal(ids("free_spaces > 2.5 AND free_spaces < 6"), "issy-p04");
        assert_string_equal(ids("status = \"open\""), "issy-p01,issy-p04");
        assert_string_equal(ids("status = 'closed'"), "paris-p05");
        /* null */
        assert_string_equal(ids("free_spaces = null"), "issy-p03");
        assert_string_equal(ids("free_spaces != NULL"), "issy-p01,issy-p02,issy-p04,paris-p05");
        assert_string_equal(ids("free_spaces < null"),
                            "ERR where: null can only be compared with = or != at position 15");
        /* Keywords are case-insensitive, field names are not. */
        assert_string_equal(ids("status = 'open' and FREE_spaces > 1"), "ERR Unknown field: FREE_spaces");
        assert_string_equal(ids("Free_spaces > 1"), "ERR Unknown field: Free_spaces");
        assert_string_equal(ids("`free_spaces` > 100"), "issy-p01");
}

static void test_logic(void **state)
{
        (void)state;
        /* AND binds tighter than OR. */
        assert_string_equal(ids("status = 'full' OR status = 'open' AND free_spaces > 10"),
                            "issy-p01,issy-p02");
        assert_string_equal(ids("(status = 'full' OR status = 'open') AND free_spaces > 10"), "issy-p01");
        assert_string_equal(ids("status = 'open' or status = 'closed' OR status='unknown'"),
                            "issy-p01,issy-p03,issy-p04,paris-p05");
        /* NOT binds tighter than AND; a null field fails the test, so NOT of it passes. */
        assert_string_equal(ids("NOT free_spaces > 10"), "issy-p02,issy-p03,issy-p04");
        assert_string_equal(ids("not (free_spaces > 10 or status = 'open')"), "issy-p02,issy-p03");
        assert_string_equal(ids("NOT NOT free_spaces > 10"), "issy-p01,paris-p05");
        assert_string_equal(ids("NOT free_spaces > 10 AND status = 'unknown'"), "issy-p03");
        assert_string_equal(ids("NOT (free_spaces > 10 AND occupancy_rate < 0.8)"),
                            "issy-p02,issy-p03,issy-p04,paris-p05");
        assert_string_equal(ids("((((free_spaces = 0))))"), "issy-p02");
        assert_string_equal(ids("free_spaces = 0 OR (NOT (status = 'open'))"), "issy-p02,issy-p03,paris-p05");
}

static void test_in_null_range(void **state)
{
        (void)state;
        assert_string_equal(ids("parking_id IN ('issy-p03', \"paris-p05\")"), "issy-p03,paris-p05");
        assert_string_equal(ids("parking_id in ('nope')"), "");
        assert_string_equal(ids("free_spaces IN (0, 5, 112)"), "issy-p01,issy-p02,issy-p04");
        assert_string_equal(ids("free_spaces IN (0, null)"), "issy-p02,issy-p03");
        assert_string_equal(ids("free_spaces IN (null)"), "issy-p03");
        assert_string_equal(ids("free_spaces IN ('5', 40.0)"), "issy-p04,paris-p05");
        assert_string_equal(ids("free_spaces NOT IN (0, 5)"), "issy-p01,issy-p03,paris-p05");
        assert_string_equal(ids("NOT free_spaces IN (0, 5)"), "issy-p01,issy-p03,paris-p05");
        assert_string_equal(ids("free_spaces IS NULL"), "issy-p03");
        assert_string_equal(ids("free_spaces is not null"), "issy-p01,issy-p02,issy-p04,paris-p05");
        assert_string_equal(ids("operator IS NULL OR last_reported IS NULL"), "issy-p02,issy-p03");
        assert_string_equal(ids("geo_point_2d IS NULL"), "issy-p04");
        assert_string_equal(ids("geo_point_2d IS NOT NULL"), "issy-p01,issy-p02,issy-p03,paris-p05");
        /* Ranges: [ ] include, ] [ exclude; ".." or TO. */
        assert_string_equal(ids("free_spaces IN [5 .. 40]"), "issy-p04,paris-p05");
        assert_string_equal(ids("free_spaces IN ]5..40]"), "paris-p05");
        assert_string_equal(ids("free_spaces IN [5 TO 40["), "issy-p04");
        assert_string_equal(ids("free_spaces IN ]0..112["), "issy-p04,paris-p05");
        assert_string_equal(ids("name IN ['L' .. 'M']"), "issy-p04");
        assert_string_equal(ids("free_spaces IN [null .. 3]"),
                            "ERR where: a range cannot have a null end at position 1");
        assert_string_equal(ids("free_spaces IN ()"), "ERR where: empty IN list at position 17");
        assert_string_equal(ids("free_spaces IN (1,)"), "ERR where: unexpected ')' at position 19");
        assert_string_equal(ids("free_spaces IS 3"), "ERR where: unexpected '3' at position 16");
        assert_string_equal(ids("free_spaces NOT 3"), "ERR where: unexpected '3' at position 17");
}

static void test_like_and_text(void **state)
{
        (void)state;
        /* Without a wildcard LIKE matches anywhere, ignoring ASCII case. */
        assert_string_equal(ids("name LIKE 'ville'"), "issy-p01");
        assert_string_equal(ids("name like \"VILLE\""), "issy-p01");
        assert_string_equal(ids("name LIKE 'parking'"), "issy-p01,issy-p02,issy-p03,paris-p05");
        /* '_' and '\' are literal: Vélo_Park is not VéloXPark. */
        assert_string_equal(ids("name LIKE 'Vélo_Park'"), "issy-p02");
        assert_string_equal(ids("name LIKE 'Vélo\\\\Park'"), "");
        /* '*' and '%' are wildcards, and then the pattern is anchored. */
        assert_string_equal(ids("name LIKE 'Parking*Ville'"), "issy-p01");
        assert_string_equal(ids("name LIKE 'Parking%Paris'"), "paris-p05");
        assert_string_equal(ids("name LIKE '*Park'"), "issy-p02");
        assert_string_equal(ids("name LIKE 'Park'"), "issy-p01,issy-p02,issy-p03,paris-p05");
        assert_string_equal(ids("name NOT LIKE 'parking'"), "issy-p04");
        assert_string_equal(ids("operator NOT LIKE 'indigo'"), "issy-p02,issy-p03,paris-p05");
        assert_string_equal(ids("free_spaces LIKE '1'"),
                            "ERR where: LIKE needs a text field, 'free_spaces' is int at position 1");
        assert_string_equal(ids("name LIKE 3"), "ERR where: LIKE needs a quoted pattern at position 11");
        /* A bare string searches every text field. */
        assert_string_equal(ids("\"celton\""), "issy-p03");
        assert_string_equal(ids("'indigo'"), "issy-p01,issy-p04");
        assert_string_equal(ids("'100%'"), "issy-p02");
        assert_string_equal(ids("'issy' AND 'effia'"), "issy-p03");
        assert_string_equal(ids("search(name, 'celton')"), "issy-p03");
        assert_string_equal(ids("SEARCH(*, 'saemes')"), "paris-p05");
        assert_string_equal(ids("startswith(parking_id, 'issy-p0')"), "issy-p01,issy-p02,issy-p03,issy-p04");
        assert_string_equal(ids("startswith(name, 'Parking 100%')"), "issy-p02");
        assert_string_equal(ids("startswith(name, 'Parking 1*')"), "");
        assert_string_equal(ids("startswith(free_spaces, '1')"),
                            "ERR where: startswith() needs a text field, 'free_spaces' is int at position 1");
        assert_string_equal(ids("search(name)"),
                            "ERR where: search() takes 2 arguments, not 1 at position 1");
        assert_string_equal(ids("search(name, 3)"),
                            "ERR where: search() argument 2 must be a quoted string at position 14");
}

static void test_string_literals(void **state)
{
        (void)state;
        assert_string_equal(ids("name = 'L''Atelier \"quoted\"'"), "issy-p04");
        assert_string_equal(ids("name = \"L'Atelier \"\"quoted\"\"\""), "issy-p04");
        assert_string_equal(ids("name = 'L\\'Atelier \\\"quoted\\\"'"), "issy-p04");
        assert_string_equal(ids("name = \"Parking H\\u00f4tel de Ville\""), "issy-p01");
        assert_string_equal(ids("name = \"Parking H\\xf4tel de Ville\""), "issy-p01");
        assert_string_equal(ids("name = \"Parking Hôtel de Ville\""), "issy-p01");
        /* Backslash-newline continues the line. */
        assert_string_equal(ids("name = \"Parking \\\nHôtel de Ville\""), "issy-p01");
        assert_string_equal(ids("name = \"Parking \\\r\nHôtel \\\rde Ville\" OR 'x\\ty' = name"), "issy-p01");
        assert_string_equal(ids("name = '\\uD83D\\uDE00'"), "");
        assert_string_equal(ids("name = '\\uDE00'"),
                            "ERR where: bad \\u escape in the string starting at position 9");
        assert_string_equal(ids("name = '\\u12'"),
                            "ERR where: bad \\u escape in the string starting at position 9");
        assert_string_equal(ids("name = '\\xZZ'"),
                            "ERR where: bad \\x escape in the string starting at position 9");
        assert_string_equal(ids("name = '\\0'"),
                            "ERR where: NUL character in the string starting at position 8");
        assert_string_equal(ids("name = '\\x00'"),
                            "ERR where: NUL character in the string starting at position 8");
        assert_string_equal(ids("name = '\\u0000'"),
                            "ERR where: NUL character in the string starting at position 8");
        assert_string_equal(ids("name = 'abc"), "ERR where: unterminated string starting at position 8");
        assert_string_equal(ids("name = \"abc'"), "ERR where: unterminated string starting at position 8");
        assert_string_equal(ids("name = 'abc\\"), "ERR where: unterminated string starting at position 8");
        assert_string_equal(ids("`name = 1"),
                            "ERR where: unterminated back-quoted name starting at position 1");
        assert_string_equal(ids("`` = 1"), "ERR where: empty back-quoted name at position 1");
        assert_string_equal(ids("`nope` = 1"), "ERR Unknown field: nope");
        assert_string_equal(ids("free_spaces = 1.2.3"), "ERR where: unexpected '.3' at position 18");
        assert_string_equal(ids("free_spaces = 12abc"),
                            "ERR where: unexpected 'abc' after a number at position 17");
        assert_string_equal(ids("free_spaces = 1e999"), "ERR where: bad number at position 15");
        /* A huge integer is read as a double. */
        assert_string_equal(ids("free_spaces < 99999999999999999999999"),
                            "issy-p01,issy-p02,issy-p04,paris-p05");
}

static void test_type_leniency(void **state)
{
        struct cp_odsql_request req = {.select = "station", .limit = "100"};

        (void)state;
        /* A number against a text field compares as the text it was written as. */
        assert_string_equal(ids("parking_id = 12"), "");
        assert_string_equal(ids("status = true"), "");
        assert_string_equal(ids("name > 5"), "issy-p01,issy-p02,issy-p03,issy-p04,paris-p05");
        /* A string against a number field must hold a number. */
        assert_string_equal(ids("free_spaces = '112'"), "issy-p01");
        assert_string_equal(ids("free_spaces > \"1e1\""), "issy-p01,paris-p05");
        assert_string_equal(ids("free_spaces = 'abc'"),
                            "ERR where: 'abc' is not a number (field 'free_spaces' is int) at position 15");
        assert_string_equal(ids("free_spaces = ' 12'"),
                            "ERR where: ' 12' is not a number (field 'free_spaces' is int) at position 15");
        assert_string_equal(
            ids("occupancy_rate = true"),
            "ERR where: 'true' is not a number (field 'occupancy_rate' is double) at position 18");
        assert_string_equal(
            ids("free_spaces = date'2026-01-01'"),
            "ERR where: '2026-01-01' is not a number (field 'free_spaces' is int) at position 15");
        assert_string_equal(ids("name = date'2026-01-01'"),
                            "ERR where: text field 'name' cannot be compared with a date at position 8");
        /* A string against a datetime field is a date; a number is refused. */
        assert_string_equal(ids("last_reported > '2026-03-14T08:05:00Z'"), "issy-p02,paris-p05");
        assert_string_equal(
            ids("last_reported > 5"),
            "ERR where: datetime field 'last_reported' needs a date such as date'2026-03-14' at position 17");
        assert_string_equal(ids("last_reported > 'tomorrow'"),
                            "ERR where: 'tomorrow' is not a date at position 17");
        assert_string_equal(
            ids("geo_point_2d = 1"),
            "ERR where: geo field 'geo_point_2d' only works in in_bbox(), within_distance() and IS NULL at position 1");
        assert_string_equal(
            ids("geo_point_2d IN (1)"),
            "ERR where: geo field 'geo_point_2d' only works in in_bbox(), within_distance() and IS NULL at position 1");
        assert_string_equal(ids("free_spaces = geom'POINT(1 2)'"),
                            "ERR where: geom literals only work in within_distance() at position 15");
        /* Booleans: true/false, 1/0, and the strings "true"/"false". */
        req.where = "is_open = true";
        assert_string_equal(run(&bikes, &req), "a");
        req.where = "is_open = 0 OR is_open = 'TRUE'";
        assert_string_equal(run(&bikes, &req), "a,b");
        req.where = "is_open != true";
        assert_string_equal(run(&bikes, &req), "b,c");
        req.where = "is_open = 'yes'";
        assert_string_equal(run(&bikes, &req),
                            "ERR where: 'yes' is not a boolean (field 'is_open') at position 11");
        req.where = "is_open = 2";
        assert_string_equal(run(&bikes, &req),
                            "ERR where: '2' is not a boolean (field 'is_open') at position 11");
        req.where = NULL;
        req.refine = (const char *const[]){"is_open:false"};
        req.n_refine = 1;
        assert_string_equal(run(&bikes, &req), "b");
        req.refine = (const char *const[]){"is_open:maybe"};
        assert_string_equal(run(&bikes, &req), "ERR refine: 'maybe' is not a boolean (field 'is_open')");
}

static void test_dates_dst(void **state)
{
        struct cp_odsql_request req = {.select = "bucket_start", .limit = "100", .timezone = "Europe/Paris"};
        char want[64];

        (void)state;
        /* 2026-03-29 in Paris lasts 23 hours (02:00 -> 03:00), in UTC 24. */
        req.refine = (const char *const[]){"bucket_start:2026-03-29"};
        req.n_refine = 1;
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 92);
        req.timezone = NULL;
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 96);
        req.timezone = "UTC";
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 96);
        /* 2026-10-25 in Paris lasts 25 hours. */
        req.timezone = "Europe/Paris";
        req.refine = (const char *const[]){"bucket_start:2026-10-25"};
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 100);
        req.refine = (const char *const[]){"bucket_start:2026/10/25"};
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 100);
        /* A month, a year. */
        req.refine = (const char *const[]){"bucket_start:2026-03"};
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 104);
        req.refine = (const char *const[]){"bucket_start:2026"};
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 216);
        req.refine = (const char *const[]){"bucket_start:2025"};
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 0);
        req.refine = (const char *const[]){"bucket_start:2026-13"};
        assert_string_equal(run(occupancy, &req),
                            "ERR refine: '2026-13' is not a date (YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601)");
        req.refine = (const char *const[]){"bucket_start:2026-02-30"};
        assert_string_equal(run(occupancy, &req),
                            "ERR refine: '2026-02-30' is not a date (YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601)");
        req.refine = NULL;
        req.n_refine = 0;

        /* The same day with comparisons and date literals read in Paris. */
        req.where = "bucket_start >= date'2026-03-29' AND bucket_start < date'2026/03/30'";
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 92);
        req.where = "bucket_start IN [date'2026-03-29' .. date'2026-03-30'[";
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 92);
        /* Local 03:00 CEST is 01:00 UTC. */
        (void)snprintf(want, sizeof(want), "%lld", (long long)utc(2026, 3, 29, 1, 0));
        req.where = "bucket_start = date'2026-03-29T03:00:00'";
        assert_string_equal(run(occupancy, &req), want);
        req.where = "bucket_start = date'2026-03-29T03:00'";
        assert_string_equal(run(occupancy, &req), want);
        req.where = "bucket_start = '2026-03-29 03:00:00'";
        assert_string_equal(run(occupancy, &req), want);
        req.where = "bucket_start = date'2026-03-29T01:00:00Z'";
        assert_string_equal(run(occupancy, &req), want);
        req.where = "bucket_start = date'2026-03-29T03:00+02:00'";
        assert_string_equal(run(occupancy, &req), want);
        /* 02:30 does not exist that night: it is read with the offset before the gap (+01:00). */
        (void)snprintf(want, sizeof(want), "%lld", (long long)utc(2026, 3, 29, 1, 30));
        req.where = "bucket_start = date'2026-03-29T02:30:00'";
        assert_string_equal(run(occupancy, &req), want);
        /* 02:30 on 2026-10-25 happens twice: the earlier one (+02:00) is chosen. */
        (void)snprintf(want, sizeof(want), "%lld", (long long)utc(2026, 10, 25, 0, 30));
        req.where = "bucket_start = date'2026-10-25T02:30:00'";
        assert_string_equal(run(occupancy, &req), want);
        /* An offset wins over the timezone parameter. */
        (void)snprintf(want, sizeof(want), "%lld", (long long)utc(2026, 3, 29, 8, 0));
        req.where = "bucket_start = date'2026-03-29T09:00:00+01:00'";
        assert_string_equal(run(occupancy, &req), want);
        req.timezone = "UTC";
        req.where = "bucket_start = date'2026-03-29T08:00:00'";
        assert_string_equal(run(occupancy, &req), want);
        req.where = "bucket_start = date'yesterday'";
        assert_string_equal(run(occupancy, &req), "ERR where: 'yesterday' is not a date at position 16");
        req.where = "bucket_start = date'2026-03-29T25:00:00'";
        assert_string_equal(run(occupancy, &req),
                            "ERR where: '2026-03-29T25:00:00' is not a date at position 16");
        req.where = NULL;

        /* updated_since: rows changed at or after the instant. */
        /* The last row starts at 00:45Z and was updated at 01:01Z. */
        req.updated_since = "2026-10-26T01:01:01Z";
        assert_string_equal(run(occupancy, &req), "");
        assert_int_equal(last_count, 0);
        req.updated_since = "2026-10-26T02:01:00+01:00";
        (void)snprintf(want, sizeof(want), "%lld", (long long)utc(2026, 10, 26, 0, 45));
        assert_string_equal(run(occupancy, &req), want);
        assert_int_equal(last_count, 1);
        req.updated_since = "2026-10-26";
        (void)run(occupancy, &req);
        assert_int_equal(last_count, 5);
        req.updated_since = "soon";
        assert_string_equal(run(occupancy, &req), "ERR updated_since: not an ISO 8601 date or datetime");
        assert_string_equal(run(parking, &(struct cp_odsql_request){.updated_since = "2026-01-01"}),
                            "ERR updated_since: dataset parking-availability has no updated_at field");
}

static void test_timezone(void **state)
{
        (void)state;
        assert_string_equal(ids_tz("", "Mars/Olympus_Mons"), "ERR Unknown timezone: Mars/Olympus_Mons");
        assert_string_equal(ids_tz("", "../../../etc/passwd"), "ERR Unknown timezone: ../../../etc/passwd");
        assert_string_equal(ids_tz("", "Europe"), "ERR Unknown timezone: Europe");
        assert_string_equal(ids_tz("", "Europe/Paris"), "issy-p01,issy-p02,issy-p03,issy-p04,paris-p05");
        assert_string_equal(ids_tz("", ""), "issy-p01,issy-p02,issy-p03,issy-p04,paris-p05");
        /* last_reported of p04 is 2026-03-14T08:00Z = 09:00 in Paris, of p05 09:00Z. */
        assert_string_equal(ids_tz("last_reported = date'2026-03-14T09:00:00'", "Europe/Paris"), "issy-p04");
        assert_string_equal(ids_tz("last_reported = date'2026-03-14T09:00:00'", "UTC"), "paris-p05");
        assert_string_equal(ids_tz("last_reported < date'2026-03-14'", "Asia/Tokyo"), "");
        assert_string_equal(ids_tz("last_reported < date'2026-03-15'", "Asia/Tokyo"),
                            "issy-p01,issy-p02,issy-p04,paris-p05");
}

static void test_geo(void **state)
{
        (void)state;
        assert_true(cp_distance_m(48.8241, 2.2701, 48.8286, 2.2701) > 500.37);
        assert_true(cp_distance_m(48.8241, 2.2701, 48.8286, 2.2701) < 500.39);
        assert_true(fabs(cp_distance_m(48.8241, 2.2701, 48.8566, 2.3522) - 7011.48) < 0.01);
        assert_true(cp_distance_m(0, 0, 0, 180) > 20015000 && cp_distance_m(0, 0, 0, 180) < 20016000);

        assert_string_equal(ids("in_bbox(geo_point_2d, 48.82, 2.26, 48.83, 2.28)"),
                            "issy-p01,issy-p02,issy-p03");
        assert_string_equal(ids("in_bbox(geo_point_2d, 48.83, 2.28, 48.82, 2.26)"),
                            "issy-p01,issy-p02,issy-p03");
        assert_string_equal(ids("in_bbox(geo_point_2d, 48.82, 2.28, 48.83, 2.26)"),
                            "issy-p01,issy-p02,issy-p03");
        assert_string_equal(ids("in_bbox(geo_point_2d, 48.824, 2.27, 48.828, 2.271)"), "issy-p01");
        assert_string_equal(ids("NOT in_bbox(geo_point_2d, 48.82, 2.26, 48.83, 2.28)"), "issy-p04,paris-p05");
        assert_string_equal(ids("IN_BBOX(`geo_point_2d`, 40, -10, 50, 10) AND status = 'open'"), "issy-p01");

        /* From p01: p02 is 500.38 m away, p03 753.27 m, p05 7011.48 m. */
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 500m)"),
                            "issy-p01");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 501m)"),
                            "issy-p01,issy-p02");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 500.4)"),
                            "issy-p01,issy-p02");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 0.5km)"),
                            "issy-p01");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 0.31mi)"),
                            "issy-p01");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 0.32mi)"),
                            "issy-p01,issy-p02");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 550yd)"),
                            "issy-p01,issy-p02");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 1640ft)"),
                            "issy-p01");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 1 km)"),
                            "issy-p01,issy-p02,issy-p03");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'point (2.2701  48.8241)', 7011m)"),
                            "issy-p01,issy-p02,issy-p03");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 7012m)"),
                            "issy-p01,issy-p02,issy-p03,paris-p05");
        assert_string_equal(
            ids("within_distance(geo_point_2d, geom'{\"type\":\"Point\",\"coordinates\":[2.2701,48.8241]}', 501m)"),
            "issy-p01,issy-p02");
        assert_string_equal(
            ids("within_distance(geo_point_2d, geom'{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[2.2701,48.8241]}}', 501m)"),
            "issy-p01,issy-p02");
        /* A huge radius, and one around a pole, skip the longitude prefilter but stay exact. */
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(0 0)', 20100km)"),
                            "issy-p01,issy-p02,issy-p03,paris-p05");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(-170 89.9)', 4600km)"),
                            "issy-p01,issy-p02,issy-p03,paris-p05");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(179.9 48.8)', 10km)"), "");
        assert_string_equal(ids("not within_distance(geo_point_2d, geom'POINT(2.2701 48.8241)', 501m)"),
                            "issy-p03,issy-p04,paris-p05");

        /* Errors. */
        assert_string_equal(ids("in_bbox(name, 1, 2, 3, 4)"),
                            "ERR where: in_bbox() needs a geo_point_2d field, 'name' is text at position 1");
        assert_string_equal(
            ids("within_distance(free_spaces, geom'POINT(1 2)', 5m)"),
            "ERR where: within_distance() needs a geo_point_2d field, 'free_spaces' is int at position 1");
        assert_string_equal(ids("in_bbox(geo_point_2d, 48.82, 2.26, 48.83)"),
                            "ERR where: in_bbox() takes 5 arguments, not 4 at position 1");
        assert_string_equal(ids("in_bbox(geo_point_2d, 1, 2, 3, 4, 5, 6, 7, 8, 9)"),
                            "ERR where: too many arguments to in_bbox() at position 44");
        assert_string_equal(ids("in_bbox(geo_point_2d, '48.82', 2.26, 48.83, 2.28)"),
                            "ERR where: in_bbox() argument 2 must be a number at position 23");
        assert_string_equal(ids("in_bbox(geo_point_2d, 91, 2.26, 48.83, 2.28)"),
                            "ERR where: in_bbox() argument 2 is not a latitude at position 23");
        assert_string_equal(ids("in_bbox(geo_point_2d, 48, 2.26, 48.83, 181)"),
                            "ERR where: in_bbox() argument 5 is not a longitude at position 40");
        assert_string_equal(ids("in_bbox(3, 1, 2, 3, 4)"),
                            "ERR where: in_bbox() argument 1 must be a field name at position 9");
        assert_string_equal(ids("in_bbox(nope, 1, 2, 3, 4)"), "ERR Unknown field: nope");
        assert_string_equal(
            ids("within_distance(geo_point_2d, 'POINT(1 2)', 5m)"),
            "ERR where: within_distance() argument 2 must be geom'POINT(lon lat)' at position 31");
        assert_string_equal(
            ids("within_distance(geo_point_2d, geom'LINESTRING(1 2, 3 4)', 5m)"),
            "ERR where: within_distance() argument 2 must be geom'POINT(lon lat)' at position 31");
        assert_string_equal(
            ids("within_distance(geo_point_2d, geom'POINT(1 2 3)', 5m)"),
            "ERR where: within_distance() argument 2 must be geom'POINT(lon lat)' at position 31");
        assert_string_equal(
            ids("within_distance(geo_point_2d, geom'{\"type\":\"Point\"}', 5m)"),
            "ERR where: within_distance() argument 2 must be geom'POINT(lon lat)' at position 31");
        assert_string_equal(
            ids("within_distance(geo_point_2d, geom'POINT(48.8 200)', 5m)"),
            "ERR where: within_distance() point is not a longitude and a latitude at position 31");
        assert_string_equal(
            ids("within_distance(geo_point_2d, geom'POINT(2.27 48.82)', 5parsecs)"),
            "ERR where: unknown distance unit (use m, km, mi, yd, ft, cm or mm) at position 57");
        assert_string_equal(ids("within_distance(geo_point_2d, geom'POINT(2.27 48.82)', -5m)"),
                            "ERR where: within_distance() needs a distance of 0 or more at position 56");
        assert_string_equal(
            ids("within_distance(geo_point_2d, geom'POINT(2.27 48.82)', 'far')"),
            "ERR where: within_distance() argument 3 must be a distance such as 500m at position 56");
        assert_string_equal(ids("distance(geo_point_2d, 1)"),
                            "ERR where: unknown function 'distance' at position 1");
        assert_string_equal(ids("sleep(10) = 1"), "ERR where: unknown function 'sleep' at position 1");
        assert_string_equal(ids("in_bbox(geo_point_2d, 1, 2, 3, 4"),
                            "ERR where: unexpected end of text at position 33");
        assert_string_equal(ids("in_bbox(geo_point_2d, 1, 2, 3, 4,)"),
                            "ERR where: unexpected ')' at position 34");
}

static void test_select(void **state)
{
        struct cp_odsql_request req = {.select = "name, free_spaces", .where = "parking_id = 'issy-p01'"};
        struct cp_odsql_plan plan;
        char err[256];

        (void)state;
        assert_string_equal(run(parking, &req), "Parking Hôtel de Ville");
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, err, sizeof(err)), 0);
        assert_int_equal(plan.n_out, 2);
        assert_int_equal(plan.n_cols, 2);
        assert_string_equal(plan.out[1]->name, "free_spaces");
        cp_odsql_plan_done(&plan);
        /* A geo field takes two columns, lat then lon. */
        req.select = "geo_point_2d,name";
        assert_string_equal(run(parking, &req), "48.8241");
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, err, sizeof(err)), 0);
        assert_int_equal(plan.n_out, 2);
        assert_int_equal(plan.n_cols, 3);
        cp_odsql_plan_done(&plan);
        /* Duplicates are dropped; `*` is every field; back-quotes are allowed. */
        req.select = " name , name,`name`";
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, err, sizeof(err)), 0);
        assert_int_equal(plan.n_out, 1);
        cp_odsql_plan_done(&plan);
        req.select = "status, *";
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, err, sizeof(err)), 0);
        assert_int_equal(plan.n_out, parking->n_fields);
        assert_string_equal(plan.out[0]->name, "status");
        cp_odsql_plan_done(&plan);
        req.select = "foo";
        assert_string_equal(run(parking, &req), "ERR Unknown field: foo");
        req.select = "name,";
        assert_string_equal(run(parking, &req), "ERR select: empty field name");
        req.select = "count(*)";
        assert_string_equal(run(parking, &req), "ERR Unknown field: count(*)");
        req.select = "name AS n";
        assert_string_equal(run(parking, &req), "ERR Unknown field: name AS n");
        req.select = "name FROM parking_availability; DROP TABLE parking_availability; --";
        assert_string_equal(run(parking, &req),
                            "ERR Unknown field: name FROM parking_availability; DROP TAB...");
        tables_intact();
}

static void test_order_by(void **state)
{
        struct cp_odsql_request req = {.select = "parking_id", .limit = "100"};

        (void)state;
        req.order_by = "free_spaces desc";
        assert_string_equal(run(parking, &req), "issy-p01,paris-p05,issy-p04,issy-p02,issy-p03");
        req.order_by = "free_spaces";
        assert_string_equal(run(parking, &req), "issy-p03,issy-p02,issy-p04,paris-p05,issy-p01");
        req.order_by = "name ASC";
        assert_string_equal(run(parking, &req), "issy-p04,issy-p02,issy-p03,issy-p01,paris-p05");
        /* Ties are broken by the key, so pages never overlap. */
        req.order_by = "city DESC";
        assert_string_equal(run(parking, &req), "paris-p05,issy-p01,issy-p02,issy-p03,issy-p04");
        req.order_by = "status, free_spaces DESC";
        assert_string_equal(run(parking, &req), "paris-p05,issy-p02,issy-p01,issy-p04,issy-p03");
        req.order_by = " `operator`  desc , parking_id desc";
        assert_string_equal(run(parking, &req), "paris-p05,issy-p04,issy-p01,issy-p03,issy-p02");
        req.order_by = "geo_point_2d";
        assert_string_equal(run(parking, &req), "ERR order_by: geo field 'geo_point_2d' cannot be ordered");
        req.order_by = "nope desc";
        assert_string_equal(run(parking, &req), "ERR Unknown field: nope");
        req.order_by = "name sideways";
        assert_string_equal(
            run(parking, &req),
            "ERR order_by: expected 'field', 'field asc' or 'field desc', got 'name sideways'");
        req.order_by = "name desc; DROP TABLE parking_availability";
        assert_string_equal(
            run(parking, &req),
            "ERR order_by: expected 'field', 'field asc' or 'field desc', got 'name desc; DROP TABLE parking_availabili...'");
        req.order_by = "name,,status";
        assert_string_equal(run(parking, &req), "ERR order_by: empty field name");
        req.order_by = "random()";
        assert_string_equal(run(parking, &req), "ERR Unknown field: random()");
        /* The occupancy default order is by time, then facility. */
        req.order_by = NULL;
        req.select = "bucket_start";
        req.limit = "1";
        req.where = "bucket_start > date'2026-10-01'";
        {
                char want[32];

                (void)snprintf(want, sizeof(want), "%lld", (long long)utc(2026, 10, 24, 21, 0));
                assert_string_equal(run(occupancy, &req), want);
        }
        tables_intact();
}

static void test_paging(void **state)
{
        struct cp_odsql_request req = {.select = "parking_id"};
        char all[256] = "";

        (void)state;
        /* Pages of 2 put together are the whole ordered list, without overlap. */
        req.limit = "2";
        req.offset = "0";
        strcat(all, run(parking, &req));
        req.offset = "2";
        strcat(all, ",");
        strcat(all, run(parking, &req));
        req.offset = "4";
        strcat(all, ",");
        strcat(all, run(parking, &req));
        assert_string_equal(all, "issy-p01,issy-p02,issy-p03,issy-p04,paris-p05");
        assert_int_equal(last_count, 5);
        req.offset = "5";
        assert_string_equal(run(parking, &req), "");
        assert_int_equal(last_count, 5);
        req.limit = "0";
        req.offset = NULL;
        assert_string_equal(run(parking, &req), "");
        assert_int_equal(last_count, 5);

        req.limit = "101";
        assert_string_equal(run(parking, &req), "ERR limit must be at most 100");
        req.limit = "100";
        assert_string_equal(run(parking, &req), "issy-p01,issy-p02,issy-p03,issy-p04,paris-p05");
        req.limit = "-1";
        assert_string_equal(run(parking, &req), "ERR limit must not be negative");
        req.limit = "ten";
        assert_string_equal(run(parking, &req), "ERR limit must be an integer");
        req.limit = "";
        assert_string_equal(run(parking, &req), "ERR limit must be an integer");
        req.limit = " 5";
        assert_string_equal(run(parking, &req), "ERR limit must be an integer");
        req.limit = "99999999999999999999";
        assert_string_equal(run(parking, &req), "ERR limit must be an integer");
        req.limit = "10";
        req.offset = "-1";
        assert_string_equal(run(parking, &req), "ERR offset must not be negative");
        req.offset = "1.5";
        assert_string_equal(run(parking, &req), "ERR offset must be an integer");
        req.offset = "9991";
        assert_string_equal(run(parking, &req), "ERR offset + limit must be at most 10000");
        req.offset = "9990";
        assert_string_equal(run(parking, &req), "");

        /* Exports: everything by default, or -1; a limit has no maximum; no offset. */
        req = (struct cp_odsql_request){.select = "bucket_start", .export_ = true};
        (void)run(occupancy, &req);
        assert_int_equal(strlen(run(occupancy, &req)) > 0, 1);
        {
                struct cp_odsql_plan plan;
                char err[256];

                assert_int_equal(cp_odsql_plan(occupancy, &req, &plan, err, sizeof(err)), 0);
                assert_int_equal(plan.limit, -1);
                cp_odsql_plan_done(&plan);
        }
        {
                size_t n = 1;
                const char *s = run(occupancy, &req);

                for (; *s; s++)
                        n += *s == ',';
                assert_int_equal(n, 216);
        }
        req.limit = "-1";
        assert_int_equal(last_count, 216);
        req.limit = "150";
        {
                size_t n = 1;
                const char *s = run(occupancy, &req);

                for (; *s; s++)
                        n += *s == ',';
                assert_int_equal(n, 150);
        }
        req.limit = "-2";
        assert_string_equal(run(occupancy, &req), "ERR limit must be -1 (everything) or a number of records");
        req.limit = NULL;
        req.offset = "0";
        assert_string_equal(run(occupancy, &req), "ERR offset is not allowed on exports");
}

static void test_refine_exclude(void **state)
{
        struct cp_odsql_request req = {.select = "parking_id", .limit = "100"};

        (void)state;
        req.refine = (const char *const[]){"status:open"};
        req.n_refine = 1;
        assert_string_equal(run(parking, &req), "issy-p01,issy-p04");
        req.refine = (const char *const[]){"status:open", "operator:Indigo", "free_spaces:5"};
        req.n_refine = 3;
        assert_string_equal(run(parking, &req), "issy-p04");
        req.refine = (const char *const[]){"city:Issy-les-Moulineaux"};
        req.n_refine = 1;
        req.exclude = (const char *const[]){"free_spaces:0", "status:open"};
        req.n_exclude = 2;
        assert_string_equal(run(parking, &req), "issy-p03");
        req.where = "free_spaces IS NOT NULL";
        assert_string_equal(run(parking, &req), "");
        req.where = NULL;
        req.refine = NULL;
        req.n_refine = 0;
        req.exclude = (const char *const[]){"operator:Indigo"};
        req.n_exclude = 1;
        assert_string_equal(run(parking, &req), "issy-p02,issy-p03,paris-p05");
        req.exclude = (const char *const[]){"name:L'Atelier \"quoted\""};
        assert_string_equal(run(parking, &req), "issy-p01,issy-p02,issy-p03,paris-p05");
        req.exclude = (const char *const[]){"last_reported:2026-03-14"};
        assert_string_equal(run(parking, &req), "issy-p03");
        req.exclude = (const char *const[]){"nope:1"};
        assert_string_equal(run(parking, &req), "ERR Unknown field: nope");
        req.exclude = NULL;
        req.n_exclude = 0;
        req.n_refine = 1;
        req.refine = (const char *const[]){" `occupancy_rate` :0.72"};
        assert_string_equal(run(parking, &req), "issy-p01");
        req.refine = (const char *const[]){"status"};
        assert_string_equal(run(parking, &req), "ERR refine: expected field:value, got 'status'");
        req.refine = (const char *const[]){"free_spaces:many"};
        assert_string_equal(run(parking, &req),
                            "ERR refine: 'many' is not a number (field 'free_spaces' is int)");
        req.refine = (const char *const[]){"geo_point_2d:48.8,2.2"};
        assert_string_equal(run(parking, &req), "ERR refine: geo field 'geo_point_2d' cannot be refined");
        req.refine = (const char *const[]){"name:'; DROP TABLE parking_availability; --"};
        assert_string_equal(run(parking, &req), "");
        req.refine = (const char *const[]){"name:\xc3("};
        assert_string_equal(run(parking, &req), "ERR refine: invalid UTF-8 at position 6");
        {
                const char *many[CP_ODSQL_MAX_REFINE + 1];

                for (size_t i = 0; i < CP_ARRAY_LEN(many); i++)
                        many[i] = "status:open";
                req.refine = many;
                req.n_refine = CP_ODSQL_MAX_REFINE;
                assert_string_equal(run(parking, &req), "issy-p01,issy-p04");
                req.n_refine = CP_ODSQL_MAX_REFINE + 1;
                assert_string_equal(run(parking, &req), "ERR at most 32 refine and exclude parameters");
        }
        tables_intact();
}

static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
        struct cp_buf b = CP_BUF_INIT;

        cp_buf_puts(&b, head);
        for (size_t i = 0; i < n; i++)
                cp_buf_puts(&b, unit);
        cp_buf_puts(&b, tail);
        assert_false(b.oom);
        return cp_buf_steal(&b);
}

static void test_limits(void **state)
{
        char *s, *t;

        (void)state;
        /* Nesting: 32 levels pass, 33 do not; 10,000 are refused early. */
        s = repeat("", "(", 32, "free_spaces = 0");
        t = repeat(s, ")", 32, "");
        assert_string_equal(ids(t), "issy-p02");
        free(s);
        free(t);
        s = repeat("", "(", 33, "free_spaces = 0");
        t = repeat(s, ")", 33, "");
        assert_string_equal(ids(t), "ERR where: nesting deeper than 32 levels (at position 33)");
        free(s);
        free(t);
        /* Alternating AND and OR, nested to the right: SQLite's parser must still cope. */
        s = repeat("", "free_spaces = 5 OR (free_spaces > 1 AND (", 16, "free_spaces = 0");
        t = repeat(s, "))", 16, "");
        assert_string_equal(ids(t), "issy-p04");
        free(s);
        free(t);
        /* Each step is NOT, (, NOT, (: 4 levels. Two-valued, it is f != 5 AND f > 1 AND ... */
        s = repeat("", "NOT (free_spaces = 5 OR NOT (free_spaces > 1 AND ", 8, "free_spaces > 100");
        t = repeat(s, "))", 8, "");
        assert_string_equal(ids(t), "issy-p01");
        free(s);
        free(t);
        /* The same nested to the left; the planner must stay linear (it once was exponential here). */
        {
                struct cp_buf b = CP_BUF_INIT;
                struct timespec t0, t1;

                for (int i = 0; i < 32; i++)
                        cp_buf_putc(&b, '(');
                cp_buf_puts(&b, "free_spaces = 0");
                for (int i = 0; i < 32; i++)
                        cp_buf_puts(&b, i % 2 ? " OR free_spaces = 5)" : " AND free_spaces < 10)");
                (void)clock_gettime(CLOCK_MONOTONIC, &t0);
                assert_string_equal(ids(b.p), "issy-p02,issy-p04");
                (void)clock_gettime(CLOCK_MONOTONIC, &t1);
                assert_true(t1.tv_sec - t0.tv_sec < 2);
                cp_buf_free(&b);
        }
        s = repeat("", "NOT ", 32, "free_spaces = 0");
        assert_string_equal(ids(s), "issy-p02");
        free(s);
        s = repeat("", "not ", 33, "free_spaces = 0");
        assert_string_equal(ids(s), "ERR where: nesting deeper than 32 levels (at position 129)");
        free(s);
        s = repeat("", "(", 10000, "");
        assert_string_equal(ids(s), "ERR where: longer than 4096 bytes");
        free(s);
        s = repeat("", "(", 4000, "");
        assert_string_equal(ids(s), "ERR where: nesting deeper than 32 levels (at position 33)");
        free(s);
        s = repeat("", "( NOT ", 600, "x");
        assert_string_equal(ids(s), "ERR where: nesting deeper than 32 levels (at position 97)");
        free(s);
        /* Text length. */
        s = repeat("name = '", "a", 4087, "'");
        assert_int_equal(strlen(s), 4096);
        assert_string_equal(ids(s), "");
        free(s);
        s = repeat("name = '", "a", 4088, "'");
        assert_string_equal(ids(s), "ERR where: longer than 4096 bytes");
        free(s);
        /* Terms: 64 comparisons OR-ed are 191 terms; 86 are 257. */
        s = repeat("free_spaces = 0", " OR free_spaces = 1", 63, "");
        assert_string_equal(ids(s), "issy-p02");
        free(s);
        s = repeat("free_spaces = 0", " OR free_spaces = 1", 85, "");
        assert_string_equal(ids(s), "ERR where: more than 256 terms at position 1613");
        free(s);
        /* IN lists: 100 values pass, 101 do not. */
        s = repeat("free_spaces IN (0", ", 1", 99, ")");
        assert_string_equal(ids(s), "issy-p02");
        free(s);
        s = repeat("free_spaces IN (0", ", 1", 100, ")");
        assert_string_equal(ids(s), "ERR where: IN list longer than 100 values at position 317");
        free(s);
        s = repeat("free_spaces IN (0", ", 1", 2000, ")");
        assert_string_equal(ids(s), "ERR where: longer than 4096 bytes");
        free(s);
        /* Other parameters are bounded too. */
        s = repeat("name", ",name", 1000, "");
        assert_string_equal(run(parking, &(struct cp_odsql_request){.select = s}),
                            "ERR select: longer than 4096 bytes");
        free(s);
        s = repeat("name", ",name", 100, "");
        assert_string_equal(run(parking, &(struct cp_odsql_request){.order_by = s}),
                            "ERR order_by: more than 32 fields");
        free(s);
        tables_intact();
}

static void test_syntax_errors(void **state)
{
        (void)state;
        assert_string_equal(ids("free_spaces > 1)"), "ERR where: unexpected ')' at position 16");
        assert_string_equal(ids("(free_spaces > 1"), "ERR where: missing ')' at position 17");
        assert_string_equal(ids("free_spaces >"), "ERR where: unexpected end of text at position 14");
        assert_string_equal(ids("free_spaces"),
                            "ERR where: expected an operator after 'free_spaces' at position 12");
        assert_string_equal(ids("free_spaces == 1"), "ERR where: unexpected '=' at position 14");
        assert_string_equal(ids("free_spaces = 1 AND"), "ERR where: unexpected end of text at position 20");
        assert_string_equal(ids("AND free_spaces = 1"), "ERR where: unexpected 'AND' at position 1");
        assert_string_equal(ids("free_spaces = 1 free_spaces = 2"),
                            "ERR where: unexpected 'free_spaces' at position 17");
        assert_string_equal(ids("()"), "ERR where: unexpected ')' at position 2");
        assert_string_equal(ids("1"), "ERR where: unexpected end of text at position 2");
        assert_string_equal(ids("1 = 1"), "ERR where: unexpected '1' at position 5");
        assert_string_equal(ids("true"), "ERR where: unexpected end of text at position 5");
        assert_string_equal(ids("free_spaces = free_spaces"),
                            "ERR where: unexpected 'free_spaces' at position 15");
        assert_string_equal(ids("free_spaces = 1 ; 2"), "ERR where: unexpected character ';' at position 17");
        assert_string_equal(ids("free_spaces = 1 # 2"), "ERR where: unexpected character '#' at position 17");
        assert_string_equal(ids("free_spaces = 1 -- 2"),
                            "ERR where: unexpected character '-' at position 17");
        assert_string_equal(ids("name = 'é' é"), "ERR where: unexpected character 'é' at position 12");
        assert_string_equal(ids("free_spaces ! 1"), "ERR where: unexpected character '!' at position 13");
        assert_string_equal(ids("free_spaces = 1 ) OR (1"), "ERR where: unexpected ')' at position 17");
        assert_string_equal(ids("free_spaces = ["), "ERR where: unexpected '[' at position 15");
        assert_string_equal(ids("free_spaces IN 1"), "ERR where: unexpected '1' at position 16");
        assert_string_equal(ids("free_spaces IN [1 .. 2"),
                            "ERR where: unexpected end of text at position 23");
        assert_string_equal(ids("free_spaces IN [1 , 2]"), "ERR where: unexpected ',' at position 19");
        assert_string_equal(ids("in = 1"), "ERR where: unexpected 'in' at position 1");
        assert_string_equal(ids("free_spaces = 1 AND date = 3"), "ERR Unknown field: date");
        assert_string_equal(ids("free_spaces = 1 AND geom"), "ERR Unknown field: geom");
        assert_string_equal(ids("free_spaces = 112\n AND\tstatus = 'open'"), "issy-p01");
        /* Positions count characters, not bytes. */
        assert_string_equal(ids("name = 'Hôtel' )"), "ERR where: unexpected ')' at position 16");
}

static void test_injection(void **state)
{
        struct cp_odsql_plan plan;
        struct cp_odsql_request req = {.where = "name = 'ZZSECRET' OR name LIKE 'ZZLIKE' OR 'ZZTEXT'",
                                       .refine = (const char *const[]){"status:ZZREFINE"},
                                       .n_refine = 1};
        char err[256];

        (void)state;
        assert_string_equal(ids("'; DROP TABLE parking_availability; --"),
                            "ERR where: unterminated string starting at position 1");
        assert_string_equal(ids("'; DROP TABLE parking_availability; --'"), "");
        assert_string_equal(ids("\"; DROP TABLE parking_availability; --"),
                            "ERR where: unterminated string starting at position 1");
        assert_string_equal(ids("x'; DROP TABLE parking_availability; --"),
                            "ERR where: unterminated string starting at position 2");
        assert_string_equal(ids("name = ''; DROP TABLE parking_availability; --"),
                            "ERR where: unexpected character ';' at position 10");
        assert_string_equal(ids("name = '; DROP TABLE parking_availability; --'"), "");
        assert_string_equal(ids("name = \"x\" OR 1=1; --"),
                            "ERR where: unexpected character ';' at position 18");
        assert_string_equal(ids("name = \"x\" OR 1=1"), "ERR where: unexpected '1' at position 17");
        assert_string_equal(ids("`name\"; DROP TABLE parking_availability; --` = 1"),
                            "ERR Unknown field: name\"; DROP TABLE parking_availability; ...");
        assert_string_equal(ids("name = 'a' UNION SELECT sql FROM sqlite_master"),
                            "ERR where: unexpected 'UNION' at position 12");
        assert_string_equal(ids("name = \"\\\""), "ERR where: unterminated string starting at position 8");
        assert_string_equal(ids("name = '''"), "ERR where: unterminated string starting at position 8");
        assert_string_equal(ids("name = \"abc\" AND status = 'x"),
                            "ERR where: unterminated string starting at position 27");
        /* A NUL ends the C string the HTTP layer hands over; what is left must still parse. */
        assert_string_equal(ids("name = 'a\0' OR 1 = 1"),
                            "ERR where: unterminated string starting at position 8");
        /* Invalid UTF-8: a stray continuation byte, a cut sequence, an overlong '/', a surrogate. */
        assert_string_equal(ids("name = '\x80'"), "ERR where: invalid UTF-8 at position 9");
        assert_string_equal(ids("name = 'é\xc3'"), "ERR where: invalid UTF-8 at position 10");
        assert_string_equal(ids("name = '\xc0\xaf'"), "ERR where: invalid UTF-8 at position 9");
        assert_string_equal(ids("name = '\xed\xa0\x80'"), "ERR where: invalid UTF-8 at position 9");
        assert_string_equal(ids("\xff"), "ERR where: invalid UTF-8 at position 1");
        assert_string_equal(run(parking, &(struct cp_odsql_request){.select = "name\xfe"}),
                            "ERR select: invalid UTF-8 at position 5");
        assert_string_equal(run(parking, &(struct cp_odsql_request){.order_by = "\xfe"}),
                            "ERR order_by: invalid UTF-8 at position 1");
        assert_string_equal(run(parking, &(struct cp_odsql_request){.timezone = "Europe/\xfe"}),
                            "ERR timezone: invalid UTF-8 at position 8");
        /* Control characters outside strings are refused, inside they are data. */
        assert_string_equal(ids("name = 1\x01"), "ERR where: unexpected character '?' at position 9");
        assert_string_equal(ids("name = 'a\x01'"), "");
        tables_intact();

        /* No literal ever reaches the SQL text: only `?`. */
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, err, sizeof(err)), 0);
        assert_null(strstr(plan.rows.sql.p, "ZZ"));
        assert_null(strstr(plan.count.sql.p, "ZZ"));
        /* The only quotes are those of the fixed ESCAPE '\' clauses. */
        {
                size_t quotes = 0, escapes = 0;

                for (const char *c = plan.rows.sql.p; *c; c++)
                        quotes += *c == '\'';
                for (const char *c = plan.rows.sql.p; (c = strstr(c, " ESCAPE '\\'")); c++)
                        escapes++;
                assert_int_equal(escapes, 1 + 5); /* LIKE, then the bare string over the 5 text fields */
                assert_int_equal(quotes, 2 * escapes);
        }
        assert_true(plan.rows.n_params >= 4);
        assert_string_equal(plan.rows.params[0].text, "ZZSECRET");
        assert_int_equal(plan.rows.params[plan.rows.n_params - 2].i, 10);
        assert_int_equal(plan.count.n_params, plan.rows.n_params - 2);
        cp_odsql_plan_done(&plan);
}

static void test_bind(void **state)
{
        struct cp_odsql_request req = {.where = "free_spaces > 1.5 AND name = 'x'"};
        struct cp_odsql_plan plan;
        sqlite3_stmt *st;
        char err[256];

        (void)state;
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, err, sizeof(err)), 0);
        assert_int_equal(plan.count.n_params, 2);
        assert_int_equal(plan.count.params[0].type, CP_SP_DOUBLE);
        assert_true(plan.count.params[0].d == 1.5);
        assert_int_equal(plan.count.params[1].type, CP_SP_TEXT);
        /* A statement with another number of parameters is refused. */
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT ?", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(cp_sqlq_bind(&plan.count, st), SQLITE_RANGE);
        sqlite3_finalize(st);
        cp_odsql_plan_done(&plan);

        /* Other datasets build valid SQL too. */
        for (size_t i = 0; i < cp_dataset_count(); i++) {
                const struct cp_dataset *ds = cp_dataset_at(i);

                req = (struct cp_odsql_request){0};
                assert_int_equal(cp_odsql_plan(ds, &req, &plan, err, sizeof(err)), 0);
                assert_non_null(strstr(plan.rows.sql.p, ds->table));
                assert_non_null(strstr(plan.rows.sql.p, "ORDER BY"));
                cp_odsql_plan_done(&plan);
        }
        req = (struct cp_odsql_request){.where = "in_bbox(geo_point_2d, 1, 2, 3, 4)"};
        assert_int_equal(cp_odsql_plan(cp_dataset_find("energy-live"), &req, &plan, err, sizeof(err)),
                         -EINVAL);
        assert_string_equal(err, "Unknown field: geo_point_2d");
        cp_odsql_plan_done(&plan);
        /* A tiny error buffer is filled safely. */
        req = (struct cp_odsql_request){.where = "nope = 1"};
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, err, 8), -EINVAL);
        assert_string_equal(err, "Unknown");
        assert_int_equal(cp_odsql_plan(parking, &req, &plan, NULL, 0), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_defaults),      cmocka_unit_test(test_comparisons),
            cmocka_unit_test(test_logic),         cmocka_unit_test(test_in_null_range),
            cmocka_unit_test(test_like_and_text), cmocka_unit_test(test_string_literals),
            cmocka_unit_test(test_type_leniency), cmocka_unit_test(test_dates_dst),
            cmocka_unit_test(test_timezone),      cmocka_unit_test(test_geo),
            cmocka_unit_test(test_select),        cmocka_unit_test(test_order_by),
            cmocka_unit_test(test_paging),        cmocka_unit_test(test_refine_exclude),
            cmocka_unit_test(test_limits),        cmocka_unit_test(test_syntax_errors),
            cmocka_unit_test(test_injection),     cmocka_unit_test(test_bind),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
