/* test_outfmt.c - the export writers, read back: jansson for the JSON forms, a small RFC 4180 reader
 * for CSV. Tables are built from the catalog's own fields, filled with awkward values.
 *
 * With CP_OUTFMT_DUMP=<dir> set, the test also writes one export per format of a bucket dataset to
 * <dir>/occupancy.<json|jsonl|csv|geojson|records>, for tests/e2e/check_export.py. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "citypulse/cp_tz.h"
#include "outfmt.h"

/* --- fixtures --- */

struct fx {
        sqlite3 *db;
        const struct cp_dataset *ds;
        const struct cp_ods_field *f[32];
        size_t n;
        struct cp_tz *paris;
};

static void exec(sqlite3 *db, const char *sql)
{
        char *err = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
                fail_msg("sql failed: %s: %s", err, sql);
}

static const char *sql_type(enum cp_ods_type t)
{
        switch (t) {
        case CP_ODS_TEXT:
                return "TEXT";
        case CP_ODS_DOUBLE:
        case CP_ODS_GEO_POINT:
                return "REAL";
        default:
                return "INTEGER";
        }
}

/* A table named t shaped like the dataset: the live schema when there is one, else one column per
 * field (two for the geo point). */
static void fx_open(struct fx *x, const char *ds_id)
{
        const char *live;

        memset(x, 0, sizeof(*x));
        assert_int_equal(sqlite3_open(":memory:", &x->db), SQLITE_OK);
        x->ds = cp_dataset_find(ds_id);
        assert_non_null(x->ds);
        assert_true(x->ds->n_fields <= 32);
        for (size_t i = 0; i < x->ds->n_fields; i++)
                x->f[x->n++] = &x->ds->fields[i];
        live = cp_dataset_live_schema(x->ds->kind);
        if (live) {
                exec(x->db, live);
                char sql[128];
                snprintf(sql, sizeof(sql), "ALTER TABLE %s RENAME TO t", x->ds->table);
                exec(x->db, sql);
        } else {
                struct cp_buf b = CP_BUF_INIT;
                cp_buf_puts(&b, "CREATE TABLE t(");
                for (size_t i = 0; i < x->n; i++) {
                        cp_buf_printf(&b, "%s%s %s", i ? ", " : "", x->f[i]->col, sql_type(x->f[i]->type));
                        if (x->f[i]->col2)
                                cp_buf_printf(&b, ", %s REAL", x->f[i]->col2);
                }
                cp_buf_puts(&b, ")");
                exec(x->db, b.p);
                cp_buf_free(&b);
        }
        assert_int_equal(cp_tz_load("Europe/Paris", &x->paris), 0);
}

static void fx_close(struct fx *x)
{
        sqlite3_close(x->db);
        cp_tz_free(x->paris);
}

/* SELECT of the writer's fields, in order, from t. */
static sqlite3_stmt *fx_select(struct fx *x, const struct cp_ods_field *const *f, size_t n, const char *tail)
{
        struct cp_buf b = CP_BUF_INIT;
        sqlite3_stmt *st = NULL;

        cp_buf_puts(&b, "SELECT ");
        for (size_t i = 0; i < n; i++) {
                cp_buf_printf(&b, "%s%s", i ? ", " : "", f[i]->col);
                if (f[i]->col2)
                        cp_buf_printf(&b, ", %s", f[i]->col2);
        }
        cp_buf_printf(&b, " FROM t %s", tail ? tail : "ORDER BY rowid");
        assert_int_equal(sqlite3_prepare_v2(x->db, b.p, -1, &st, NULL), SQLITE_OK);
        cp_buf_free(&b);
        return st;
}

/* Runs a whole export; the caller frees the text. */
static char *run_w(struct fx *x, struct cp_outw *w, const char *tail, int64_t total, size_t *ret_len)
{
        struct cp_buf out = CP_BUF_INIT;
        sqlite3_stmt *st = fx_select(x, w->fields, w->n_fields, tail);
        int rc;

        cp_outw_begin(w, &out);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                cp_outw_row_stmt(w, st, &out);
        assert_int_equal(rc, SQLITE_DONE);
        cp_outw_end(w, &out, total);
        sqlite3_finalize(st);
        assert_false(out.oom);
        if (ret_len)
                *ret_len = out.len;
        return cp_buf_steal(&out);
}

static char *run(struct fx *x, enum cp_outfmt fmt, const struct cp_tz *tz, size_t *ret_len)
{
        struct cp_outw w;

        cp_outw_init(&w, fmt, x->f, x->n, tz);
        return run_w(x, &w, NULL, 3, ret_len);
}

/* Three facilities: separators, quotes and newlines; control characters, no place, nulls; invalid
 * UTF-8, extreme numbers, a far-away place. */
static void fill_parking(struct fx *x)
{
        exec(x->db,
             "INSERT INTO t VALUES('p;1', 'Parking \"Hôtel\" de Ville\nniveau -1', 'Issy-les-Moulineaux',"
             " NULL, 112, 400, 0.72, 'open', 1772359200123, 48.8241, 2.2701)");
        exec(x->db, "INSERT INTO t VALUES('p2', 'a\r\nb\tc' || char(1) || char(8232) || '\\', '', 'Indigo',"
                    " NULL, 0, NULL, 'unknown', NULL, NULL, NULL)");
        exec(x->db,
             "INSERT INTO t VALUES('p3', CAST(X'41C328FF42' AS TEXT) || char(0) || 'z', 'S' || char(233) ||"
             " 'te', 'o,p', 9223372036854775807, -9223372036854775808, 9e999, 'full', 1782900000000,"
             " -33.8688, 151.2093)");
}

/* --- a small RFC 4180 reader --- */

#define CSV_ROWS  64
#define CSV_CELLS 16

struct csv {
        size_t n_rows;
        size_t n_cells[CSV_ROWS];
        char *cell[CSV_ROWS][CSV_CELLS];
        bool quoted[CSV_ROWS][CSV_CELLS];
        bool crlf; /* line ends seen: true if every record ended with CRLF */
};

static void csv_free(struct csv *c)
{
        for (size_t r = 0; r < c->n_rows; r++)
                for (size_t i = 0; i < c->n_cells[r]; i++)
                        free(c->cell[r][i]);
}

/* Returns 0, or -1 for text RFC 4180 refuses (a quote inside an unquoted cell, text after a closing
 * quote, an unterminated quote) or too many rows or cells. */
static int csv_parse(const char *s, size_t len, char delim, struct csv *c)
{
        size_t i = 0;
        int crlf = -1;

        memset(c, 0, sizeof(*c));
        while (i < len) {
                size_t r = c->n_rows++, n;
                if (r >= CSV_ROWS)
                        return -1;
                for (;;) {
                        struct cp_buf b = CP_BUF_INIT;
                        bool q = i < len && s[i] == '"';

                        if ((n = c->n_cells[r]++) >= CSV_CELLS)
                                return -1;
                        if (q) {
                                for (i++;; i++) {
                                        if (i >= len)
                                                return -1;
                                        if (s[i] == '"' && i + 1 < len && s[i + 1] == '"')
                                                cp_buf_putc(&b, s[i++]);
                                        else if (s[i] == '"')
                                                break;
                                        else
                                                cp_buf_putc(&b, s[i]);
                                }
                                i++;
                        } else {
                                for (; i < len && s[i] != delim && s[i] != '\n' && s[i] != '\r'; i++) {
                                        if (s[i] == '"')
                                                return -1;
                                        cp_buf_putc(&b, s[i]);
                                }
                        }
                        cp_buf_putc(&b, '\0');
                        c->cell[r][n] = cp_buf_steal(&b);
                        c->quoted[r][n] = q;
                        if (i < len && s[i] == delim) {
                                i++;
                                continue;
                        }
                        break;
                }
                if (i + 1 < len && s[i] == '\r' && s[i + 1] == '\n') {
                        crlf = crlf != 0;
                        i += 2;
                } else if (i < len && s[i] == '\n') {
                        crlf = 0;
                        i++;
                } else if (i < len) {
                        return -1;
                }
        }
        c->crlf = crlf == 1;
        return 0;
}

/* --- checks --- */

static json_t *load(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);

        if (!j)
                fail_msg("bad JSON at %d:%d: %s\n%s", e.line, e.column, e.text, text);
        return j;
}

static const char *sget(const json_t *o, const char *k)
{
        const json_t *v = json_object_get(o, k);

        if (!json_is_string(v))
                fail_msg("%s is not a string", k);
        return json_string_value(v);
}

/* The first row's and the others' values, as every flat JSON form (json, jsonl, geojson properties,
 * records results) must carry them. geo: whether geo_point_2d is expected in the object. */
static void check_rows(json_t *r0, json_t *r1, json_t *r2, bool geo, bool geo_object)
{
        assert_string_equal(sget(r0, "parking_id"), "p;1");
        assert_string_equal(sget(r0, "name"), "Parking \"Hôtel\" de Ville\nniveau -1");
        assert_true(json_is_null(json_object_get(r0, "operator")));
        assert_int_equal(json_integer_value(json_object_get(r0, "free_spaces")), 112);
        assert_true(json_real_value(json_object_get(r0, "occupancy_rate")) == 0.72);
        assert_string_equal(sget(r0, "last_reported"), "2026-03-01T11:00:00.123+01:00");
        if (geo && geo_object) {
                json_t *g = json_object_get(r0, "geo_point_2d");
                assert_true(json_number_value(json_object_get(g, "lat")) == 48.8241);
                assert_true(json_number_value(json_object_get(g, "lon")) == 2.2701);
                assert_int_equal(json_object_size(g), 2);
        } else if (geo) {
                assert_string_equal(sget(r0, "geo_point_2d"), "48.8241,2.2701");
        } else {
                assert_null(json_object_get(r0, "geo_point_2d"));
        }

        assert_string_equal(sget(r1, "name"), "a\r\nb\tc\x01\xE2\x80\xA8\\");
        assert_string_equal(sget(r1, "city"), "");
        assert_true(json_is_null(json_object_get(r1, "free_spaces")));
        assert_true(json_is_null(json_object_get(r1, "occupancy_rate")));
        assert_true(json_is_null(json_object_get(r1, "last_reported")));
        assert_int_equal(json_integer_value(json_object_get(r1, "total_spaces")), 0);
        if (geo)
                assert_true(json_is_null(json_object_get(r1, "geo_point_2d")));

        /* Each ill-formed byte is one U+FFFD; the NUL survives as \u0000. */
        assert_int_equal(json_string_length(json_object_get(r2, "name")), 11);
        assert_memory_equal(sget(r2, "name"),
                            "A\xEF\xBF\xBD(\xEF\xBF\xBD"
                            "B\0z",
                            11);
        assert_string_equal(sget(r2, "city"), "S\xC3\xA9te");
        assert_int_equal(json_integer_value(json_object_get(r2, "free_spaces")), INT64_MAX);
        assert_int_equal(json_integer_value(json_object_get(r2, "total_spaces")), INT64_MIN);
        assert_true(json_is_null(json_object_get(r2, "occupancy_rate"))); /* inf */
        assert_string_equal(sget(r2, "last_reported"), "2026-07-01T12:00:00.000+02:00");
        if (geo && !geo_object)
                assert_string_equal(sget(r2, "geo_point_2d"), "-33.8688,151.2093");
}

static void test_json(void **state)
{
        struct fx x;
        char *s;
        json_t *j;

        (void)state;
        fx_open(&x, "parking-availability");
        fill_parking(&x);
        s = run(&x, CP_OF_JSON, x.paris, NULL);
        assert_true(s[0] == '[');
        j = load(s);
        assert_true(json_is_array(j));
        assert_int_equal(json_array_size(j), 3);
        /* Flat objects with every field, in catalog order. */
        assert_int_equal(json_object_size(json_array_get(j, 0)), x.n);
        assert_string_equal(json_object_iter_key(json_object_iter(json_array_get(j, 0))), "parking_id");
        check_rows(json_array_get(j, 0), json_array_get(j, 1), json_array_get(j, 2), true, false);
        /* No raw control characters, and U+2028 escaped for JavaScript. */
        for (const char *p = s; *p; p++)
                assert_false((unsigned char)*p < 0x20 && *p != '\n');
        assert_non_null(strstr(s, "\\u0001\\u2028\\\\"));
        assert_null(strstr(s, "inf"));
        assert_null(strstr(s, "nan"));
        json_decref(j);
        free(s);
        fx_close(&x);
}

static void test_jsonl(void **state)
{
        struct fx x;
        json_t *r[3];
        char *s, *line, *save = NULL;
        size_t n = 0, len;

        (void)state;
        fx_open(&x, "parking-availability");
        fill_parking(&x);
        s = run(&x, CP_OF_JSONL, x.paris, &len);
        assert_true(s[len - 1] == '\n');
        for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                assert_true(n < 3);
                r[n] = load(line);
                assert_true(json_is_object(r[n]));
                n++;
        }
        assert_int_equal(n, 3);
        check_rows(r[0], r[1], r[2], true, false);
        for (size_t i = 0; i < 3; i++)
                json_decref(r[i]);
        free(s);
        fx_close(&x);
}

static void test_records(void **state)
{
        struct fx x;
        struct cp_outw w;
        char *s;
        json_t *j, *res;

        (void)state;
        fx_open(&x, "parking-availability");
        fill_parking(&x);
        /* total_count given at the end: it follows the results. */
        s = run(&x, CP_OF_RECORDS, x.paris, NULL);
        j = load(s);
        assert_int_equal(json_object_size(j), 2);
        assert_int_equal(json_integer_value(json_object_get(j, "total_count")), 3);
        res = json_object_get(j, "results");
        assert_int_equal(json_array_size(res), 3);
        check_rows(json_array_get(res, 0), json_array_get(res, 1), json_array_get(res, 2), true, true);
        json_decref(j);
        free(s);

        /* total_count known first: written first, as the portal does; a page of 1 of 42. */
        cp_outw_init(&w, CP_OF_RECORDS, x.f, x.n, x.paris);
        w.total_count = 42;
        s = run_w(&x, &w, "ORDER BY rowid LIMIT 1", 0, NULL);
        assert_true(strncmp(s, "{\"total_count\":42,\"results\":[", 29) == 0);
        j = load(s);
        assert_int_equal(json_integer_value(json_object_get(j, "total_count")), 42);
        assert_int_equal(json_array_size(json_object_get(j, "results")), 1);
        json_decref(j);
        free(s);

        /* An empty page. */
        cp_outw_init(&w, CP_OF_RECORDS, x.f, x.n, x.paris);
        s = run_w(&x, &w, "WHERE 0", 0, NULL);
        assert_string_equal(s, "{\"results\":[],\"total_count\":0}\n");
        free(s);
        fx_close(&x);
}

static void test_geojson(void **state)
{
        struct fx x;
        struct cp_outw w;
        char *s;
        json_t *j, *fs, *f, *g, *c, *p[3];

        (void)state;
        fx_open(&x, "parking-availability");
        fill_parking(&x);
        s = run(&x, CP_OF_GEOJSON, x.paris, NULL);
        j = load(s);
        assert_string_equal(sget(j, "type"), "FeatureCollection");
        fs = json_object_get(j, "features");
        assert_int_equal(json_array_size(fs), 3);
        for (size_t i = 0; i < 3; i++) {
                f = json_array_get(fs, i);
                assert_string_equal(sget(f, "type"), "Feature");
                p[i] = json_object_get(f, "properties");
                assert_true(json_is_object(p[i]));
                assert_int_equal(json_object_size(p[i]), x.n - 1); /* every field but the geometry */
        }
        /* [lon, lat] */
        g = json_object_get(json_array_get(fs, 0), "geometry");
        assert_string_equal(sget(g, "type"), "Point");
        c = json_object_get(g, "coordinates");
        assert_int_equal(json_array_size(c), 2);
        assert_true(json_number_value(json_array_get(c, 0)) == 2.2701);
        assert_true(json_number_value(json_array_get(c, 1)) == 48.8241);
        /* No place: a null geometry, the Feature still there. */
        g = json_object_get(json_array_get(fs, 1), "geometry");
        assert_non_null(g);
        assert_true(json_is_null(g));
        c = json_object_get(json_object_get(json_array_get(fs, 2), "geometry"), "coordinates");
        assert_true(json_number_value(json_array_get(c, 0)) == 151.2093);
        assert_true(json_number_value(json_array_get(c, 1)) == -33.8688);
        check_rows(p[0], p[1], p[2], false, false);
        json_decref(j);
        free(s);

        /* A selection without the geo field: every geometry null, nothing lost. */
        cp_outw_init(&w, CP_OF_GEOJSON, x.f, 2, NULL);
        s = run_w(&x, &w, NULL, 0, NULL);
        j = load(s);
        fs = json_object_get(j, "features");
        assert_int_equal(json_array_size(fs), 3);
        assert_true(json_is_null(json_object_get(json_array_get(fs, 0), "geometry")));
        assert_int_equal(json_object_size(json_object_get(json_array_get(fs, 0), "properties")), 2);
        json_decref(j);
        free(s);

        /* No row at all. */
        cp_outw_init(&w, CP_OF_GEOJSON, x.f, x.n, NULL);
        s = run_w(&x, &w, "WHERE 0", 0, NULL);
        assert_string_equal(s, "{\"type\":\"FeatureCollection\",\"features\":[]}\n");
        free(s);
        fx_close(&x);
}

static void test_csv(void **state)
{
        struct fx x;
        struct cp_outw w;
        struct csv c;
        size_t len;
        char *s;

        (void)state;
        fx_open(&x, "parking-availability");
        fill_parking(&x);
        s = run(&x, CP_OF_CSV, x.paris, &len);
        assert_memory_equal(s, "\xEF\xBB\xBF", 3);
        assert_int_equal(csv_parse(s + 3, len - 3, ';', &c), 0);
        assert_false(c.crlf);
        assert_int_equal(c.n_rows, 4);
        for (size_t r = 0; r < 4; r++)
                assert_int_equal(c.n_cells[r], x.n);
        for (size_t i = 0; i < x.n; i++) {
                assert_string_equal(c.cell[0][i], x.f[i]->name);
                assert_false(c.quoted[0][i]);
        }
        /* row 1: quoted for ';', '"' and LF; the rest as is. */
        assert_string_equal(c.cell[1][0], "p;1");
        assert_true(c.quoted[1][0]);
        assert_string_equal(c.cell[1][1], "Parking \"Hôtel\" de Ville\nniveau -1");
        assert_string_equal(c.cell[1][3], ""); /* null operator: empty, unquoted */
        assert_false(c.quoted[1][3]);
        assert_string_equal(c.cell[1][4], "112");
        assert_string_equal(c.cell[1][6], "0.72");
        assert_false(c.quoted[1][6]);
        assert_string_equal(c.cell[1][8], "2026-03-01T11:00:00.123+01:00");
        assert_string_equal(c.cell[1][9], "48.8241,2.2701");
        assert_false(c.quoted[1][9]);
        /* row 2: CR LF inside a quoted cell; "" for the empty string, nothing for null. */
        assert_string_equal(c.cell[2][1], "a\r\nb\tc\x01\xE2\x80\xA8\\");
        assert_string_equal(c.cell[2][2], "");
        assert_true(c.quoted[2][2]);
        assert_string_equal(c.cell[2][4], "");
        assert_false(c.quoted[2][4]);
        assert_string_equal(c.cell[2][9], "");
        /* row 3: U+FFFD for bad bytes and for NUL; int64 limits; inf is null. */
        assert_string_equal(c.cell[3][1], "A\xEF\xBF\xBD(\xEF\xBF\xBD"
                                          "B\xEF\xBF\xBDz");
        assert_string_equal(c.cell[3][3], "o,p");
        assert_false(c.quoted[3][3]);
        assert_string_equal(c.cell[3][4], "9223372036854775807");
        assert_string_equal(c.cell[3][5], "-9223372036854775808");
        assert_string_equal(c.cell[3][6], "");
        assert_string_equal(c.cell[3][8], "2026-07-01T12:00:00.000+02:00");
        csv_free(&c);
        free(s);

        /* ',' delimiter, no BOM, CRLF: "lat,lon" and "o,p" must be quoted now. */
        cp_outw_init(&w, CP_OF_CSV, x.f, x.n, NULL);
        w.delim = ',';
        w.bom = false;
        w.crlf = true;
        s = run_w(&x, &w, NULL, 0, &len);
        assert_true(s[0] == 'p');
        assert_int_equal(csv_parse(s, len, ',', &c), 0);
        assert_true(c.crlf);
        assert_int_equal(c.n_rows, 4);
        assert_string_equal(c.cell[1][9], "48.8241,2.2701");
        assert_true(c.quoted[1][9]);
        assert_string_equal(c.cell[3][3], "o,p");
        assert_true(c.quoted[3][3]);
        assert_string_equal(c.cell[1][8], "2026-03-01T10:00:00.123Z");
        assert_string_equal(c.cell[1][0], "p;1");
        assert_false(c.quoted[1][0]);
        csv_free(&c);
        free(s);

        /* Header only when there is no row. */
        cp_outw_init(&w, CP_OF_CSV, x.f, 2, NULL);
        s = run_w(&x, &w, "WHERE 0", 0, NULL);
        assert_string_equal(s, "\xEF\xBB\xBFparking_id;name\n");
        free(s);
        fx_close(&x);
}

/* Doubles: shortest round trip, never nan or inf; booleans; UTC as +00:00; datetimes out of range. */
static void test_numbers_and_times(void **state)
{
        static const struct cp_ods_field fd[] = {
            {"d", "D", CP_ODS_DOUBLE, "d", NULL, ""},
            {"b", "B", CP_ODS_BOOLEAN, "b", NULL, ""},
            {"t", "T", CP_ODS_DATETIME, "t_ms", NULL, ""},
            {"i", "I", CP_ODS_INT, "i", NULL, ""},
        };
        static const double want[] = {0.1 + 0.2, 1e308, -1.5e-300, 5e-324, 123456789012345.0, 1e21, -2.5e-7};
        const struct cp_ods_field *f[] = {&fd[0], &fd[1], &fd[2], &fd[3]};
        struct cp_tz *utc;
        struct cp_outw w;
        sqlite3_stmt *st;
        sqlite3 *db;
        char *s;
        json_t *j;
        size_t n = 0;

        (void)state;
        assert_int_equal(cp_tz_load("UTC", &utc), 0);
        assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
        exec(db, "CREATE TABLE t(d REAL, b INTEGER, t_ms INTEGER, i INTEGER)");
        assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?, 1, 0, 2.5)", -1, &st, NULL),
                         SQLITE_OK);
        for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
                sqlite3_bind_double(st, 1, want[k]);
                assert_int_equal(sqlite3_step(st), SQLITE_DONE);
                sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        exec(db, "INSERT INTO t VALUES(9e999, 0, 253402300800000, NULL)"); /* inf; year 10000 */
        exec(db, "INSERT INTO t VALUES(-9e999, 0, -62135596800001, 7)");
        exec(db, "INSERT INTO t VALUES(NULL, NULL, -62135596800000, -1)");
        exec(db, "INSERT INTO t VALUES(0, 0, 253402300799999, 0)");

        cp_outw_init(&w, CP_OF_JSON, f, 4, utc);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT d, b, t_ms, i FROM t ORDER BY rowid", -1, &st, NULL),
                         SQLITE_OK);
        {
                struct cp_buf out = CP_BUF_INIT;
                cp_outw_begin(&w, &out);
                while (sqlite3_step(st) == SQLITE_ROW)
                        cp_outw_row_stmt(&w, st, &out);
                cp_outw_end(&w, &out, 0);
                s = cp_buf_steal(&out);
        }
        sqlite3_finalize(st);
        assert_null(strstr(s, "inf"));
        assert_null(strstr(s, "nan"));
        assert_non_null(strstr(s, "\"d\":0.30000000000000004,"));
        assert_non_null(strstr(s, "\"d\":1e+308,"));
        assert_non_null(strstr(s, "\"d\":5e-324,"));
        j = load(s);
        for (n = 0; n < sizeof(want) / sizeof(want[0]); n++) {
                json_t *r = json_array_get(j, n);
                double got = json_number_value(json_object_get(r, "d"));
                assert_memory_equal(&got, &want[n], sizeof(got)); /* bit for bit */
                assert_true(json_is_true(json_object_get(r, "b")));
                assert_string_equal(sget(r, "t"), "1970-01-01T00:00:00.000+00:00");
                assert_true(json_real_value(json_object_get(r, "i")) == 2.5); /* a real in an INT column */
        }
        assert_true(json_is_null(json_object_get(json_array_get(j, n), "d")));
        assert_true(json_is_false(json_object_get(json_array_get(j, n), "b")));
        assert_true(json_is_null(json_object_get(json_array_get(j, n), "t")));
        assert_true(json_is_null(json_object_get(json_array_get(j, n), "i")));
        assert_true(json_is_null(json_object_get(json_array_get(j, n + 1), "d")));
        assert_true(json_is_null(json_object_get(json_array_get(j, n + 1), "t")));
        assert_true(json_is_null(json_object_get(json_array_get(j, n + 2), "b")));
        assert_string_equal(sget(json_array_get(j, n + 2), "t"), "0001-01-01T00:00:00.000+00:00");
        assert_int_equal(json_integer_value(json_object_get(json_array_get(j, n + 2), "i")), -1);
        assert_string_equal(sget(json_array_get(j, n + 3), "t"), "9999-12-31T23:59:59.999+00:00");
        json_decref(j);
        free(s);
        sqlite3_close(db);
        cp_tz_free(utc);
}

/* Memory does not grow with rows: the caller drains after each row and the buffer stays small. */
static void test_streaming(void **state)
{
        static const enum cp_outfmt fmts[] = {CP_OF_JSON, CP_OF_JSONL, CP_OF_CSV, CP_OF_GEOJSON,
                                              CP_OF_RECORDS};
        struct fx x;

        (void)state;
        fx_open(&x, "parking-occupancy-15min");
        exec(x.db, "WITH RECURSIVE c(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM c WHERE k < 49999)"
                   " INSERT INTO t SELECT 'p' || (k % 7), 1772359200000 + (k / 7) * 900000,"
                   " 1772359200000 + (k / 7 + 1) * 900000, k / 50000.0, 1, 3, 9, 4, 12, 0,"
                   " 1772359300000, 48.8 + k / 1e6, 2.2 + k / 1e6 FROM c");
        for (size_t k = 0; k < sizeof(fmts) / sizeof(fmts[0]); k++) {
                struct cp_buf out = CP_BUF_INIT;
                sqlite3_stmt *st;
                struct cp_outw w;
                size_t total = 0;
                int rc;

                cp_outw_init(&w, fmts[k], x.f, x.n, x.paris);
                st = fx_select(&x, w.fields, w.n_fields, NULL);
                cp_outw_begin(&w, &out);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        cp_outw_row_stmt(&w, st, &out);
                        total += out.len;
                        cp_buf_reset(&out);
                }
                assert_int_equal(rc, SQLITE_DONE);
                cp_outw_end(&w, &out, (int64_t)w.rows);
                assert_int_equal(w.rows, 50000);
                assert_true(total > 50000 * 100);
                assert_true(out.cap <= 1024);
                sqlite3_finalize(st);
                cp_buf_free(&out);
        }
        fx_close(&x);
}

static void test_row_json(void **state)
{
        struct fx x;
        struct cp_outw w;
        sqlite3_stmt *st;
        json_t *r[3];

        (void)state;
        fx_open(&x, "parking-availability");
        fill_parking(&x);
        cp_outw_init(&w, CP_OF_JSON, x.f, x.n, x.paris);
        st = fx_select(&x, x.f, x.n, NULL);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(sqlite3_step(st), SQLITE_ROW);
                r[i] = cp_outw_row_json(&w, st);
                assert_non_null(r[i]);
                assert_int_equal(json_object_size(r[i]), x.n);
        }
        sqlite3_finalize(st);
        check_rows(r[0], r[1], r[2], true, false);
        for (size_t i = 0; i < 3; i++)
                json_decref(r[i]);
        fx_close(&x);
}

static void test_names(void **state)
{
        enum cp_outfmt f = CP_OF_CSV;

        (void)state;
        assert_int_equal(cp_outfmt_parse("json", &f), 0);
        assert_int_equal(f, CP_OF_JSON);
        assert_int_equal(cp_outfmt_parse("jsonl", &f), 0);
        assert_int_equal(f, CP_OF_JSONL);
        assert_int_equal(cp_outfmt_parse("csv", &f), 0);
        assert_int_equal(f, CP_OF_CSV);
        assert_int_equal(cp_outfmt_parse("geojson", &f), 0);
        assert_int_equal(f, CP_OF_GEOJSON);
        assert_int_equal(cp_outfmt_parse("records", &f), -EINVAL);
        assert_int_equal(cp_outfmt_parse("CSV", &f), -EINVAL);
        assert_int_equal(cp_outfmt_parse("xlsx", &f), -EINVAL);
        assert_int_equal(cp_outfmt_parse("", &f), -EINVAL);
        assert_int_equal(f, CP_OF_GEOJSON);
        for (int k = 0; k < _CP_OF_MAX; k++) {
                assert_non_null(strstr(cp_outfmt_content_type((enum cp_outfmt)k), "; charset=utf-8"));
                if (k != CP_OF_RECORDS) {
                        assert_int_equal(cp_outfmt_parse(cp_outfmt_name((enum cp_outfmt)k), &f), 0);
                        assert_int_equal(f, k);
                }
        }
        assert_string_equal(cp_outfmt_content_type(CP_OF_CSV), "text/csv; charset=utf-8");
        assert_string_equal(cp_outfmt_content_type(CP_OF_GEOJSON), "application/geo+json; charset=utf-8");
        assert_true(cp_outfmt_delim_ok(';'));
        assert_true(cp_outfmt_delim_ok(','));
        assert_true(cp_outfmt_delim_ok('\t'));
        assert_false(cp_outfmt_delim_ok('"'));
        assert_false(cp_outfmt_delim_ok('\n'));
        assert_false(cp_outfmt_delim_ok('\r'));
        assert_false(cp_outfmt_delim_ok('\0'));
        assert_false(cp_outfmt_delim_ok((char)0xC3));
}

/* Exports of a bucket dataset for tests/e2e/check_export.py (only with CP_OUTFMT_DUMP set). */
static void test_dump(void **state)
{
        static const enum cp_outfmt fmts[] = {CP_OF_JSON, CP_OF_JSONL, CP_OF_CSV, CP_OF_GEOJSON,
                                              CP_OF_RECORDS};
        const char *dir = getenv("CP_OUTFMT_DUMP");
        struct fx x;

        (void)state;
        if (!dir)
                skip();
        fx_open(&x, "parking-occupancy-15min");
        exec(x.db, "WITH RECURSIVE c(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM c WHERE k < 23)"
                   " INSERT INTO t SELECT 'issy-p0' || (k % 3), 1772359200000 + (k / 3) * 900000,"
                   " 1772359200000 + (k / 3 + 1) * 900000, CASE WHEN k = 5 THEN NULL ELSE k / 24.0 END,"
                   " 1 - k / 100.0, 3, 9, NULLIF(k, 7), 12, 0, 1772359300000,"
                   " CASE WHEN k % 3 = 2 THEN NULL ELSE 48.8241 + k / 1e4 END, 2.2701 FROM c");
        exec(x.db, "UPDATE t SET parking_id = 'issy;\"p\"' || char(10) || 'é' WHERE rowid = 1");
        for (size_t k = 0; k < sizeof(fmts) / sizeof(fmts[0]); k++) {
                struct cp_outw w;
                char path[512], *s;
                size_t len;
                FILE *fp;

                cp_outw_init(&w, fmts[k], x.f, x.n, x.paris);
                s = run_w(&x, &w, NULL, 24, &len);
                snprintf(path, sizeof(path), "%s/occupancy.%s", dir, cp_outfmt_name(fmts[k]));
                fp = fopen(path, "wb");
                assert_non_null(fp);
                assert_int_equal(fwrite(s, 1, len, fp), len);
                assert_int_equal(fclose(fp), 0);
                free(s);
        }
        fx_close(&x);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_json),      cmocka_unit_test(test_jsonl),
            cmocka_unit_test(test_records),   cmocka_unit_test(test_geojson),
            cmocka_unit_test(test_csv),       cmocka_unit_test(test_numbers_and_times),
            cmocka_unit_test(test_streaming), cmocka_unit_test(test_row_json),
            cmocka_unit_test(test_names),     cmocka_unit_test(test_dump),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
