/* test_bucket.c - the bucket engine on a real SQLite file: windows closed in order, late readings revising
 * buckets, duplicates and too-late readings ignored, parents merged, districts summed, a restart in the
 * middle giving the same rows as an uninterrupted run, and a 23-hour local day. Expected values are
 * computed by hand in the comments. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "bucket.h"
#include "citypulse/cp_tz.h"
#include "store.h"

#define MIN 60000LL
#define HOUR (60 * MIN)
/* 2026-03-02T10:00:00Z, a Monday, on an hour. */
#define T0 1772445600000LL

struct env {
        char dir[64];
        char path[128];
        struct cp_store *store;
        sqlite3 *db;
        struct cp_bucket *b;
        struct cp_bucket_stats st;
        struct cp_tz *tz;
        struct cp_registry *reg;
        int batches, rows_in_batches;
};

static int on_batch(void *ud, const struct cp_dataset *ds, json_t *records)
{
        struct env *e = ud;

        (void)ds;
        assert_true(json_is_array(records));
        e->batches++;
        e->rows_in_batches += (int)json_array_size(records);
        return 0;
}

static void engine_open(struct env *e, int64_t now, int64_t stale)
{
        struct cp_bucket_cfg cfg = {
                .stale_after_ms = stale,
                .allowed_lateness_ms = 2 * 86400000LL,
                .close_delay_ms = 2000,
                .tz = e->tz,
                .on_batch = on_batch,
                .ud = e,
        };
        char err[256] = "";

        assert_int_equal(cp_bucket_open(e->db, &cfg, cp_topo_new(e->reg), now, &e->st, &e->b, err, sizeof(err)), 0);
        cp_store_set_bucket(e->store, e->b);
}

static void env_open(struct env *e, int64_t now, int64_t stale)
{
        struct cp_config_errors errs = {0};
        char err[256] = "";

        memset(e, 0, sizeof(*e));
        snprintf(e->dir, sizeof(e->dir), "/tmp/cp-bucket-XXXXXX");
        assert_non_null(mkdtemp(e->dir));
        snprintf(e->path, sizeof(e->path), "%s/citypulse.db", e->dir);
        assert_int_equal(cp_store_open(e->path, &e->store, err, sizeof(err)), 0);
        e->db = cp_store_db(e->store);
        assert_int_equal(cp_tz_load("Europe/Paris", &e->tz), 0);
        assert_int_equal(cp_registry_parse("f", "parking_id;name;total_spaces;lat;lon;city;operator\n"
                                                "S;Spots;2;48.824;2.27;Issy;\nC;Counter;100;;;;\n",
                                           "s", "sensor_id;kind;parking_id;spot_id;district\n"
                                                "a;spot;S;;\nb;spot;S;;\ng;facility;C;;\n"
                                                "m1;meter;;;D\nm2;meter;;;D\n",
                                           &e->reg, &errs),
                         0);
        engine_open(e, now, stale);
}

static void engine_close(struct env *e)
{
        cp_store_set_bucket(e->store, NULL);
        cp_bucket_close(e->b);
        e->b = NULL;
}

static void env_close(struct env *e)
{
        char cmd[160];

        engine_close(e);
        cp_store_close(e->store);
        cp_registry_free(e->reg);
        cp_tz_free(e->tz);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
        assert_int_equal(system(cmd), 0);
}

/* Stores one reading the way store.c does: insert, and the engine hears of it only when it is new. */
static void put(struct env *e, const char *id, enum cp_quantity q, double v, int64_t ts, int64_t now)
{
        sqlite3_stmt *st;
        struct cp_reading r;

        memset(&r, 0, sizeof(r));
        snprintf(r.sensor_id, sizeof(r.sensor_id), "%s", id);
        r.quantity = q;
        r.value = v;
        r.ts_ms = ts;
        r.rx_ms = now;
        assert_int_equal(sqlite3_exec(e->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(e->db, "INSERT OR IGNORE INTO readings VALUES(?,?,?,?,?)", -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, cp_quantity_name(q), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, ts);
        sqlite3_bind_double(st, 4, v);
        sqlite3_bind_int64(st, 5, now);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        if (sqlite3_changes(e->db) == 1 && e->b)
                assert_int_equal(cp_bucket_note(e->b, &r, now), 0);
        assert_int_equal(sqlite3_exec(e->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
}

static void tick_until_idle(struct env *e, int64_t now)
{
        char err[256] = "";
        int r, n = 0;

        while ((r = cp_bucket_tick(e->b, now, err, sizeof(err))) == 1)
                assert_true(++n < 10000);
        assert_int_equal(r, 0);
}

/* One row as text, for comparisons. */
static void row_text(struct env *e, const char *sql, char *buf, size_t len)
{
        sqlite3_stmt *st;
        size_t o = 0;

        buf[0] = '\0';
        assert_int_equal(sqlite3_prepare_v2(e->db, sql, -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
                for (int i = 0; i < sqlite3_column_count(st); i++) {
                        const char *v = (const char *)sqlite3_column_text(st, i);
                        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "|" : "", v ? v : "NULL");
                        assert_true(o < len);
                }
                o += (size_t)snprintf(buf + o, len - o, "\n");
                assert_true(o < len);
        }
        sqlite3_finalize(st);
}

static double col_double(struct env *e, const char *sql)
{
        sqlite3_stmt *st;
        double v = NAN;

        assert_int_equal(sqlite3_prepare_v2(e->db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
                v = sqlite3_column_double(st, 0);
        sqlite3_finalize(st);
        return v;
}

static void spot_stream(struct env *e)
{
        /* a: occupied at T0, free at T0+7m30s; b: free at T0. */
        put(e, "a", CP_Q_OCCUPIED, 1, T0, T0);
        put(e, "b", CP_Q_OCCUPIED, 0, T0, T0);
        put(e, "a", CP_Q_OCCUPIED, 0, T0 + 450000, T0 + 450000);
}

static void test_spots_in_order(void **state)
{
        struct env e;
        char row[512];

        (void)state;
        env_open(&e, T0, HOUR);
        spot_stream(&e);
        tick_until_idle(&e, T0 + 15 * MIN + 2500);
        /* occupied 450 s of 1800 known spot-seconds; both spots known all along: coverage 1; free 1 then 2. */
        row_text(&e,
                 "SELECT parking_id, bucket_end_ms - bucket_start_ms, occupancy_rate_mean, coverage, free_spaces_min,"
                 " free_spaces_max, free_spaces_last, samples, revision, lat, lon FROM parking_occupancy_15min",
                 row, sizeof(row));
        assert_string_equal(row, "S|900000|0.25|1.0|1|2|2|3|0|48.824|2.27\n");
        /* 15 one-minute rows, the 8th with the change at 30 s: 1 occupied spot-minute of 2 for half. */
        assert_int_equal((int)col_double(&e, "SELECT count(*) FROM parking_occupancy_1min"), 15);
        assert_true(fabs(col_double(&e, "SELECT occupancy_rate_mean FROM parking_occupancy_1min WHERE"
                                        " bucket_start_ms = 1772446020000") - 0.25) < 1e-12);
        /* The facility counter has no readings: no rows. Not closed yet: no hourly row. */
        assert_int_equal((int)col_double(&e, "SELECT count(*) FROM parking_occupancy_hourly"), 0);
        assert_int_equal(e.rows_in_batches, 1);
        assert_int_equal(atomic_load(&e.st.watermark_ms), T0 + 15 * MIN);
        env_close(&e);
}

static void test_late_revision_duplicate_too_late(void **state)
{
        struct env e;
        char row[512];

        (void)state;
        env_open(&e, T0, HOUR);
        spot_stream(&e);
        tick_until_idle(&e, T0 + 16 * MIN + 2500);
        /* Late: b occupied at T0+10m (W is T0+16m). b is occupied 300 s more: (450 + 300) / 1800. */
        put(&e, "b", CP_Q_OCCUPIED, 1, T0 + 10 * MIN, T0 + 16 * MIN + 3000);
        assert_int_equal(atomic_load(&e.st.late), 1);
        tick_until_idle(&e, T0 + 16 * MIN + 4000);
        row_text(&e, "SELECT occupancy_rate_mean, free_spaces_min, free_spaces_last, samples, revision,"
                     " updated_at_ms FROM parking_occupancy_15min",
                 row, sizeof(row));
        assert_string_equal(row, "0.416667|1|1|4|1|1772446564000\n");
        /* A duplicate (same sensor, quantity, time) with another value changes nothing. */
        put(&e, "b", CP_Q_OCCUPIED, 0, T0 + 10 * MIN, T0 + 17 * MIN);
        tick_until_idle(&e, T0 + 17 * MIN + 100);
        row_text(&e, "SELECT occupancy_rate_mean, revision FROM parking_occupancy_15min", row, sizeof(row));
        assert_string_equal(row, "0.416667|1\n");
        /* Older than agg.allowed_lateness (2 days): stored, counted, buckets untouched. */
        put(&e, "a", CP_Q_OCCUPIED, 1, T0 + 5 * MIN, T0 + 3 * 86400000LL);
        assert_int_equal(atomic_load(&e.st.too_late), 1);
        tick_until_idle(&e, T0 + 17 * MIN + 200);
        row_text(&e, "SELECT occupancy_rate_mean, revision FROM parking_occupancy_15min", row, sizeof(row));
        assert_string_equal(row, "0.416667|1\n");
        env_close(&e);
}

static void meter_stream(struct env *e, int64_t now_shift)
{
        /* m1: 100 W at T0, 200 W at T0+5m; import 10.0, 10.5, 11.0 at T0, +5m, +10m.
         * m2: 50 W at T0; import 100 at T0, 5 at T0+5m (a reset: counts 5). */
        put(e, "m1", CP_Q_POWER_W, 100, T0, T0 + now_shift);
        put(e, "m1", CP_Q_ENERGY_IMPORT_KWH, 10.0, T0, T0 + now_shift);
        put(e, "m2", CP_Q_POWER_W, 50, T0, T0 + now_shift);
        put(e, "m2", CP_Q_ENERGY_IMPORT_KWH, 100, T0, T0 + now_shift);
        put(e, "m1", CP_Q_POWER_W, 200, T0 + 5 * MIN, T0 + now_shift);
        put(e, "m1", CP_Q_ENERGY_IMPORT_KWH, 10.5, T0 + 5 * MIN, T0 + now_shift);
        put(e, "m2", CP_Q_ENERGY_IMPORT_KWH, 5, T0 + 5 * MIN, T0 + now_shift);
        put(e, "m1", CP_Q_ENERGY_IMPORT_KWH, 11.0, T0 + 10 * MIN, T0 + now_shift);
}

static void test_meters_and_district(void **state)
{
        struct env e;
        char row[1024];

        (void)state;
        env_open(&e, T0, HOUR);
        meter_stream(&e, 0);
        tick_until_idle(&e, T0 + 15 * MIN + 2500);
        row_text(&e,
                 "SELECT id, kind, district, energy_import_kwh, energy_export_kwh, round(power_w_mean, 6), power_w_min,"
                 " power_w_max, power_w_last, samples, coverage FROM energy_15min ORDER BY kind, id",
                 row, sizeof(row));
        /* District: 150 W for 300 s then 250 W for 600 s: mean 216.666667. Energy: m1 1.0 + m2 5 (reset). */
        assert_string_equal(row, "D|district|D|6.0|NULL|216.666667|150.0|250.0|250.0|5|1.0\n"
                                 "m1|meter|D|1.0|NULL|166.666667|100.0|200.0|200.0|3|1.0\n"
                                 "m2|meter|D|5.0|NULL|50.0|50.0|50.0|50.0|2|1.0\n");
        env_close(&e);
}

/* The same stream twice: straight through, and with the engine closed (as by kill -9: it holds nothing
 * the database does not) and reopened mid-way, some readings arriving late after the restart. */
static void test_restart_same_rows(void **state)
{
        static const char *q =
                "SELECT 'o', parking_id, bucket_start_ms, occupancy_rate_mean, coverage, free_spaces_min, free_spaces_max,"
                " free_spaces_last, samples FROM parking_occupancy_15min UNION ALL SELECT 'e', id, bucket_start_ms,"
                " energy_import_kwh, power_w_mean, power_w_min, power_w_max, power_w_last, samples FROM energy_15min"
                " UNION ALL SELECT 'h', id, bucket_start_ms, energy_import_kwh, power_w_mean, coverage, samples, 0, 0"
                " FROM energy_hourly ORDER BY 1, 2, 3";
        struct env a, b;
        static char ra[65536], rb[65536];

        (void)state;
        env_open(&a, T0, HOUR);
        spot_stream(&a);
        meter_stream(&a, 0);
        for (int i = 1; i < 8; i++)
                put(&a, "m1", CP_Q_POWER_W, 100 + i * 10, T0 + i * 7 * MIN, T0);
        tick_until_idle(&a, T0 + 70 * MIN);

        env_open(&b, T0, HOUR);
        spot_stream(&b);
        meter_stream(&b, 0);
        for (int i = 1; i < 4; i++)
                put(&b, "m1", CP_Q_POWER_W, 100 + i * 10, T0 + i * 7 * MIN, T0);
        tick_until_idle(&b, T0 + 25 * MIN);
        engine_close(&b);
        /* Down for a while; these were in the journal and are imported after the restart: late. */
        engine_open(&b, T0 + 40 * MIN, HOUR);
        for (int i = 4; i < 8; i++)
                put(&b, "m1", CP_Q_POWER_W, 100 + i * 10, T0 + i * 7 * MIN, T0 + 40 * MIN);
        tick_until_idle(&b, T0 + 70 * MIN);

        row_text(&a, q, ra, sizeof(ra));
        row_text(&b, q, rb, sizeof(rb));
        assert_string_equal(ra, rb);
        assert_non_null(strstr(ra, "h|m1|1772445600000|"));
        env_close(&a);
        env_close(&b);
}

/* 2026-03-29 in Europe/Paris lasts 23 hours: from 2026-03-28T23:00Z to 2026-03-29T22:00Z. */
static void test_dst_day(void **state)
{
        const int64_t day0 = 1774738800000LL, day1 = 1774821600000LL;
        struct env e;
        char row[512];

        (void)state;
        env_open(&e, day0 - HOUR, HOUR);
        for (int64_t t = day0 - HOUR; t <= day1 + HOUR; t += 30 * MIN)
                put(&e, "m1", CP_Q_POWER_W, 100, t, day0 - HOUR);
        tick_until_idle(&e, day1 + 2 * HOUR);
        row_text(&e, "SELECT bucket_end_ms - bucket_start_ms, power_w_mean, coverage, samples FROM energy_daily"
                     " WHERE id = 'm1' AND bucket_start_ms = 1774738800000",
                 row, sizeof(row));
        assert_string_equal(row, "82800000|100.0|1.0|46\n");
        env_close(&e);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_spots_in_order),
                cmocka_unit_test(test_late_revision_duplicate_too_late),
                cmocka_unit_test(test_meters_and_district),
                cmocka_unit_test(test_restart_same_rows),
                cmocka_unit_test(test_dst_day),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
