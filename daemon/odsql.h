/* odsql.h - the Opendatasoft Explore v2.1 query parameters (select, where, order_by, limit, offset,
 * refine, exclude, timezone, updated_since) turned into SQLite queries over a dataset's table
 * (dataset.h). Pure: no I/O but loading the `timezone` zone file, no logging, no globals.
 *
 * Safety: user text never reaches SQL. `where` is tokenized and parsed by hand into a bounded tree;
 * every literal becomes a `?` parameter, every field name is looked up in the dataset and replaced by
 * the catalog's own column names, and only fixed SQL fragments are written around them.
 *
 * The ODSQL subset (README "ODSQL"):
 *   literals    "text" 'text' (doubled quotes or backslash escapes \" \' \\ \n \t \r \b \f \v \xHH
 *               \uXXXX), 12, -3.5, 1e3, true, false, null, date'2026-03-14' (also 2026/03/14, 2026,
 *               2026-03, full ISO datetimes with or without offset), geom'POINT(lon lat)' or a GeoJSON
 *               Point; `back-quoted` field names.
 *   predicates  f = v (also f : v), f != v (also <>), < <= > >=, v op f, f IN (v, ...),
 *               f IN [a .. b] (with ] [ for open ends, TO for ..), f IS [NOT] NULL, f [NOT] LIKE "p",
 *               f NOT IN (...), a bare "text" (full text over the text fields), search(f|*, "t"),
 *               startswith(f, "t"), in_bbox(geo, lat1, lon1, lat2, lon2),
 *               within_distance(geo, geom'POINT(lon lat)', 500m) (units m km mi yd ft cm mm; m default)
 *   logic       NOT > AND > OR, parentheses; keywords and function names are case-insensitive.
 * Semantics: two-valued logic as on ODS: a comparison with a null field is false, and NOT or != of it
 * is true (`f != 1` matches rows where f is null). LIKE is case-insensitive (ASCII); `*` and `%` match
 * any run of characters, `_` is literal; a pattern without a wildcard matches anywhere in the text.
 * A datetime is compared as an instant: a date without offset is read in `timezone` (UTC by default),
 * date'2026-03-14' being local midnight. A string compared with a datetime field is read as a date; a
 * string compared with a number field must hold a number; a number compared with a text field is
 * compared as the text it was written as.
 *
 * Thread: any; a plan is owned by one caller. */
#ifndef CP_ODSQL_H
#define CP_ODSQL_H

#include "buf.h"
#include "dataset.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits; each is an error for the user (HTTP 400), never a truncation. */
#define CP_ODSQL_MAX_TEXT   4096  /* bytes of any one parameter (where, select, a refine...) */
#define CP_ODSQL_MAX_DEPTH  32    /* nesting of parentheses and NOT in where */
#define CP_ODSQL_MAX_NODES  256   /* operators, predicates and literals in where */
#define CP_ODSQL_MAX_IN     100   /* values in one IN list */
#define CP_ODSQL_MAX_REFINE 32    /* refine plus exclude parameters */
#define CP_ODSQL_LIMIT_DEF  10    /* records: default limit */
#define CP_ODSQL_LIMIT_MAX  100   /* records: largest limit */
#define CP_ODSQL_WINDOW_MAX 10000 /* records: offset + limit at most */

enum cp_sqlparam_type {
        CP_SP_TEXT,
        CP_SP_INT,
        CP_SP_DOUBLE,
};

struct cp_sqlparam {
        int type;   /* enum cp_sqlparam_type */
        char *text; /* CP_SP_TEXT: owned, NUL-terminated, valid UTF-8 */
        int64_t i;
        double d;
};

/* An SQL text with its `?` parameters, in order. */
struct cp_sqlq {
        struct cp_buf sql; /* sql.oom is also set when the parameter array could not grow */
        struct cp_sqlparam *params;
        size_t n_params, cap_params;
};

void cp_sqlq_init(struct cp_sqlq *q);
/* Frees the contents; q may be zeroed or half-built. */
void cp_sqlq_done(struct cp_sqlq *q);
/* Binds every parameter in order, starting at index 1 (texts with SQLITE_TRANSIENT). Returns SQLITE_OK,
 * SQLITE_RANGE when st does not have exactly n_params parameters, or the sqlite error. */
int cp_sqlq_bind(const struct cp_sqlq *q, sqlite3_stmt *st);
/* Appends a `?` to the SQL and its value to the parameters (sql.oom set when out of memory). */
void cp_sqlq_int(struct cp_sqlq *q, int64_t v);
void cp_sqlq_text(struct cp_sqlq *q, const char *s, size_t len);

/* Raw strings from the URL query (already percent-decoded), NULL when absent. They are C strings: the
 * HTTP layer refuses a decoded NUL byte before calling here. */
struct cp_odsql_request {
        const char *select, *where, *order_by, *timezone, *updated_since;
        const char *const *refine; /* each "field:value" */
        size_t n_refine;
        const char *const *exclude; /* each "field:value" */
        size_t n_exclude;
        const char *limit, *offset; /* as text: they are validated here too */
        bool export_; /* exports: no limit by default (limit=-1 or absent = all), offset refused */
};

struct cp_odsql_plan {
        /* SELECT <output columns> FROM <table> [WHERE ...] ORDER BY ... LIMIT ? OFFSET ? */
        struct cp_sqlq rows;
        /* SELECT count(*) FROM <table> [WHERE ...], the same filter */
        struct cp_sqlq count;
        /* Output fields in order; a geo field takes 2 result columns (lat, lon), others 1. */
        const struct cp_ods_field **out;
        size_t n_out;
        size_t n_cols;    /* result columns of `rows` */
        struct cp_tz *tz; /* the `timezone` param loaded (UTC by default); owned by the plan */
        int64_t limit;    /* resolved; -1 = all (exports) */
        int64_t offset;
};

/* Builds the plan for dataset ds (which must outlive the plan). Returns 0; -EINVAL with a message for
 * the user in err (for the HTTP 400 body {"error_code":"ODSQLError","message":err}), e.g.
 * "Unknown field: foo", "where: unexpected ')' at position 14" (positions count characters from 1),
 * "limit must be at most 100", "where: nesting deeper than 32 levels", "Unknown timezone: X";
 * -ENOMEM (err "out of memory"); or another negative errno from loading the zone (err says which).
 * On failure *plan is left empty (cp_odsql_plan_done() is still safe); on success the caller frees it
 * with cp_odsql_plan_done(). */
int cp_odsql_plan(const struct cp_dataset *ds, const struct cp_odsql_request *req, struct cp_odsql_plan *plan,
                  char *err, size_t errlen);
void cp_odsql_plan_done(struct cp_odsql_plan *plan);

/* Registers the SQL functions plans use on db: cp_distance_m(lat1, lon1, lat2, lon2), the great-circle
 * (haversine) distance in metres on a sphere of radius CP_EARTH_RADIUS_M, NULL when an argument is
 * NULL. Returns an SQLite result code. Call once per connection, before preparing a plan's SQL. */
#define CP_EARTH_RADIUS_M 6371008.8
int cp_odsql_register(sqlite3 *db);
/* The same distance, for C callers and tests. */
double cp_distance_m(double lat1, double lon1, double lat2, double lon2);

#endif
