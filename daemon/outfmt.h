/* outfmt.h - streaming record writers for the open-data outputs (CONTRACT section 6, FORMATS.md 1a and
 * 1c): the Explore v2.1 exports (json, jsonl, csv, geojson) and the records page.
 *
 * A writer turns rows of a SQLite statement into text appended to a struct cp_buf: begin once, row per
 * row, end once. It keeps no row and allocates nothing, so memory does not grow with the number of
 * rows: the caller drains (sends and resets) the buffer whenever it likes, between any two calls.
 *
 * Conventions, per format:
 *   json     a bare array of flat objects, one per line: `[\n{..},\n{..}\n]\n` (what the portal's
 *            JSON connector imports with no set-up)
 *   jsonl    one flat object per line, `\n` after each
 *   csv      UTF-8 with a BOM (bom), `;` (delim), `\n` line ends (FORMATS.md 1c; crlf for RFC 4180's
 *            `\r\n`), one header row of field names; a cell holding the delimiter, `"`, CR or LF is
 *            quoted with its quotes doubled; null is an empty cell, the empty string is `""`
 *   geojson  a FeatureCollection; each Feature's geometry is a Point [lon,lat] from the first
 *            geo_point_2d field of the row, or null when the row has no place; `properties` holds every
 *            other field, flat
 *   records  {"total_count":N,"results":[..]} (Explore v2.1 records page)
 * Values: a datetime (SQL: INTEGER UTC ms) is ISO 8601 with the offset of `tz` in force at that time
 * ("2026-03-01T11:00:00.000+01:00"; tz NULL: "...Z"), null when NULL or outside years 1..9999;
 * geo_point_2d (SQL: REAL lat, REAL lon) is {"lon":..,"lat":..} in records and the string "lat,lon" in
 * json, jsonl and csv (what the portal auto-types as a geo point), null when either column is NULL,
 * not finite or out of range (|lat| > 90, |lon| > 180); doubles are the shortest text that reads back
 * the same (cp_fmt_double()), null when not finite (never nan or inf); booleans true/false; integers
 * plain digits. Strings: JSON-escaped (control characters as \n, \t, \u001f..., U+2028 and U+2029
 * escaped for JavaScript); bytes that are not well-formed UTF-8 are each replaced by U+FFFD, in every
 * format (an export already half sent cannot be refused, and the portal would refuse the whole file);
 * in CSV a NUL byte is U+FFFD too (CSV readers stop at NUL).
 *
 * Loop thread or any one thread per writer: a writer is plain data, and writers share nothing. */
#ifndef CP_OUTFMT_H
#define CP_OUTFMT_H

#include "buf.h"
#include "dataset.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cp_tz;

enum cp_outfmt {
        CP_OF_JSON,
        CP_OF_JSONL,
        CP_OF_CSV,
        CP_OF_GEOJSON,
        CP_OF_RECORDS,
        _CP_OF_MAX,
};

/* The export format named by an exports URL: "json", "jsonl", "csv" or "geojson" (case-sensitive;
 * "records" is not an export). Returns 0 and *ret, or -EINVAL (ret untouched). */
int cp_outfmt_parse(const char *name, enum cp_outfmt *ret);
/* The name cp_outfmt_parse() takes ("records" for CP_OF_RECORDS), and the file extension. */
const char *cp_outfmt_name(enum cp_outfmt f);
/* Content-Type with charset: "application/json; charset=utf-8", "application/jsonl; charset=utf-8",
 * "text/csv; charset=utf-8", "application/geo+json; charset=utf-8". */
const char *cp_outfmt_content_type(enum cp_outfmt f);
/* Whether c may be a CSV delimiter: one printable ASCII byte that is not `"` (tab allowed too). */
bool cp_outfmt_delim_ok(char c);

struct cp_outw {
        enum cp_outfmt fmt;
        const struct cp_ods_field *const *fields; /* borrowed; outlives the writer */
        size_t n_fields;
        const struct cp_tz *tz; /* borrowed; NULL: UTC with "Z" */
        char delim;             /* csv: ';' by default; must pass cp_outfmt_delim_ok() */
        bool bom;               /* csv: UTF-8 BOM first, true by default */
        bool crlf;              /* csv: "\r\n" line ends, false by default ("\n") */
        int64_t total_count;    /* records: set (>= 0) before begin to write it first; -1 by default */
        uint64_t rows;          /* rows written so far */
        /* private */
        size_t geo; /* geojson: index in fields of the geometry field; n_fields if none */
        bool total_done;
        int64_t day;       /* times: the local day whose "YYYY-MM-DD" is in date (INT64_MIN: none) */
        char date[16];
        int32_t off;       /* the UTC offset whose "+HH:MM" is in offs */
        char offs[8];
        bool off_set;
};

/* Sets up a writer with the defaults above. fields are the output columns, in the order of the
 * statement's result columns (a geo_point_2d field takes two, lat then lon). The caller may change
 * delim, bom, crlf and total_count before cp_outw_begin(). */
void cp_outw_init(struct cp_outw *w, enum cp_outfmt fmt, const struct cp_ods_field *const *fields, size_t n,
                  const struct cp_tz *tz);
/* Appends what comes before the first row (BOM and header, "[", the FeatureCollection head...). */
void cp_outw_begin(struct cp_outw *w, struct cp_buf *out);
/* Appends the current row of st (after sqlite3_step() returned SQLITE_ROW). */
void cp_outw_row_stmt(struct cp_outw *w, sqlite3_stmt *st, struct cp_buf *out);
/* Appends what closes the document. total_count is used by the records format only, when it was not
 * written by cp_outw_begin() (it then follows "results": JSON objects are unordered). */
void cp_outw_end(struct cp_outw *w, struct cp_buf *out, int64_t total_count);

/* The current row of st as a new jansson object in the push/export conventions ("lat,lon" geo
 * string, ISO datetimes, null for unknown), for the portal push and MQTT. The caller owns the result
 * (json_decref); NULL only when out of memory. */
json_t *cp_outw_row_json(const struct cp_outw *w, sqlite3_stmt *st);

#endif
