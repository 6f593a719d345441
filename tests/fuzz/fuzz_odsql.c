/* fuzz_odsql.c - libFuzzer harness over the ODSQL module (daemon/odsql.c).
 *
 * Input: NUL-separated parts, in order where, select, order_by, refine, exclude, limit, offset,
 * updated_since, timezone; a missing part is an absent parameter. The refine and exclude parts hold
 * one "field:value" per line. Seeds: tests/fuzz/odsql_seeds/.
 *
 * Each input is planned against three datasets (live parking, 15-minute occupancy, live energy), as a
 * records query and as an export, and every plan is run by SQLite over small in-memory tables. Beyond
 * crashes, leaks and sanitizer reports it enforces the contract: the result is 0, -EINVAL with a
 * message, or -ENOMEM; a plan's SQL is one read-only statement that prepares (no parser stack
 * overflow, no unknown column), binds exactly its parameters and runs to the end with n_cols columns
 * and at most `limit` rows; the tables never change. */
#include "buf.h"
#include "dataset.h"
#include "odsql.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS 9
#define MAX_LINES 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sqlite3 *db;
static const char *const dataset_ids[] = {"parking-availability", "parking-occupancy-15min", "energy-live"};

static void die(const char *what, const char *sql)
{
        fprintf(stderr, "fuzz_odsql: %s: %s\nSQL: %s\n", what, db ? sqlite3_errmsg(db) : "", sql ? sql : "");
        abort();
}

static void exec(const char *sql)
{
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
                die("setup", sql);
}

static void create_table(const struct cp_dataset *ds)
{
        struct cp_buf b = CP_BUF_INIT;

        cp_buf_printf(&b, "CREATE TABLE %s(", ds->table);
        for (size_t i = 0; i < ds->n_fields; i++) {
                const struct cp_ods_field *f = &ds->fields[i];

                cp_buf_puts(&b, i ? ", " : "");
                if (f->type == CP_ODS_GEO_POINT)
                        cp_buf_printf(&b, "%s REAL, %s REAL", f->col, f->col2);
                else
                        cp_buf_printf(&b, "%s %s", f->col,
                                      f->type == CP_ODS_TEXT     ? "TEXT"
                                      : f->type == CP_ODS_DOUBLE ? "REAL"
                                                                 : "INTEGER");
        }
        cp_buf_puts(&b, ")");
        exec(b.p);
        cp_buf_free(&b);
}

static int64_t total_rows(void)
{
        sqlite3_stmt *st;
        int64_t n = 0;
        const char *sql = "SELECT (SELECT count(*) FROM parking_availability) + (SELECT count(*) FROM"
                          " parking_occupancy_15min) * 100 + (SELECT count(*) FROM energy_live) * 10000";

        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
                die("count", sql);
        n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return n;
}

static void setup(void)
{
        if (sqlite3_open(":memory:", &db) != SQLITE_OK || cp_odsql_register(db) != SQLITE_OK)
                die("open", NULL);
        for (size_t i = 0; i < sizeof(dataset_ids) / sizeof(dataset_ids[0]); i++)
                create_table(cp_dataset_find(dataset_ids[i]));
        exec(
            "INSERT INTO parking_availability VALUES"
            "('issy-p01', 'Parking Hôtel de Ville', 'Issy-les-Moulineaux', 'Indigo', 112, 400, 0.72, 'open',"
            " 1773475500000, 48.8241, 2.2701),"
            "('issy-p02', 'Parking 100% Vélo_Park', 'Issy', NULL, 0, 50, 1.0, 'full', 1773475800000, 48.8286, 2.2701),"
            "('issy-p03', 'Corentin', 'Issy', 'Effia', NULL, 200, NULL, 'unknown', NULL, 48.8275, 2.2790),"
            "('issy-p04', 'L''Atelier', 'Issy', 'Indigo', 5, 20, 0.75, 'open', 1773475200000, NULL, NULL)");
        exec(
            "INSERT INTO parking_occupancy_15min(parking_id, bucket_start_ms, bucket_end_ms, occupancy_rate_mean,"
            " samples, revision, updated_at_ms, lat, lon) VALUES"
            "('issy-p01', 1774738800000, 1774739700000, 0.5, 3, 0, 1774739760000, 48.8241, 2.2701),"
            "('issy-p01', 1774739700000, 1774740600000, NULL, 0, 1, 1774740660000, 48.8241, 2.2701),"
            "('issy-p02', 1774738800000, 1774739700000, 0.9, 7, 0, 1774739760000, NULL, NULL)");
        exec("INSERT INTO energy_live VALUES"
             "('m1', 'meter', 'north', 1200.5, 10.25, 0, 1, 1, 'live', 1773475500000),"
             "('north', 'district', 'north', -300, 100, 3.5, 2, 3, 'unknown', NULL)");
}

/* Splits s on '\n' into at most MAX_LINES strings (in place). */
static size_t split_lines(char *s, const char **out)
{
        size_t n = 0;

        while (s && n < MAX_LINES) {
                char *nl = strchr(s, '\n');

                out[n++] = s;
                if (!nl)
                        break;
                *nl = '\0';
                s = nl + 1;
        }
        return n;
}

static void run(const struct cp_odsql_plan *plan, const struct cp_sqlq *q, bool rows)
{
        sqlite3_stmt *st;
        const char *tail = NULL;
        int64_t n = 0;
        int r;

        if (sqlite3_prepare_v2(db, q->sql.p, -1, &st, &tail) != SQLITE_OK)
                die("prepare", q->sql.p);
        if (*tail != '\0' || !sqlite3_stmt_readonly(st))
                die("not one read-only statement", q->sql.p);
        if (cp_sqlq_bind(q, st) != SQLITE_OK)
                die("bind", q->sql.p);
        if (rows && sqlite3_column_count(st) != (int)plan->n_cols)
                die("column count", q->sql.p);
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
                n++;
        if (r != SQLITE_DONE)
                die("step", q->sql.p);
        if (rows && plan->limit >= 0 && n > plan->limit)
                die("more rows than the limit", q->sql.p);
        if (!rows && n != 1)
                die("count returned no row", q->sql.p);
        sqlite3_finalize(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *refine[MAX_LINES], *exclude[MAX_LINES];
        char *parts[MAX_PARTS] = {0};
        struct cp_odsql_request req;
        struct cp_odsql_plan plan;
        size_t n_parts = 0, n_refine = 0, n_exclude = 0;
        char *buf, *s, err[256];
        int64_t before;

        if (!db)
                setup();
        buf = malloc(size + 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';
        for (s = buf; n_parts < MAX_PARTS;) {
                parts[n_parts++] = s;
                s += strlen(s);
                if (s == buf + size)
                        break;
                s++;
        }
        if (parts[3])
                n_refine = split_lines(parts[3], refine);
        if (parts[4])
                n_exclude = split_lines(parts[4], exclude);
        before = total_rows();
        for (size_t d = 0; d < sizeof(dataset_ids) / sizeof(dataset_ids[0]); d++) {
                for (int export_ = 0; export_ <= 1; export_++) {
                        int r;

                        req = (struct cp_odsql_request){
                            .where = parts[0],
                            .select = parts[1],
                            .order_by = parts[2],
                            .refine = refine,
                            .n_refine = n_refine,
                            .exclude = exclude,
                            .n_exclude = n_exclude,
                            .limit = parts[5],
                            .offset = parts[6],
                            .updated_since = parts[7],
                            .timezone = parts[8],
                            .export_ = export_,
                        };
                        err[0] = 'X';
                        r = cp_odsql_plan(cp_dataset_find(dataset_ids[d]), &req, &plan, err, sizeof(err));
                        if (r == 0) {
                                run(&plan, &plan.rows, true);
                                run(&plan, &plan.count, false);
                                if (plan.count.n_params + 2 != plan.rows.n_params)
                                        die("rows and count filters differ", plan.rows.sql.p);
                        } else if (!((r == -EINVAL && err[0] && err[0] != 'X') || r == -ENOMEM)) {
                                die("bad failure", err);
                        }
                        cp_odsql_plan_done(&plan);
                }
        }
        if (total_rows() != before)
                die("a table changed", NULL);
        free(buf);
        return 0;
}
