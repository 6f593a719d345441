/* dataset.h - the open-data datasets of CONTRACT section 6: their fields, Opendatasoft types, and where
 * each field lives in SQL. One static catalog shared by the Explore API, ODSQL, the exports, the portal
 * push and the bucket writer, so a field name is spelled in exactly one place.
 *
 * Every dataset is queried as an SQL table:
 * - bucket datasets (parking-occupancy-*, energy-*) are tables of citypulse.db written by the bucket
 *   engine (bucket.c);
 * - live datasets (parking-availability, parking-spots, energy-live) are snapshots of the live state,
 *   loaded into a table of the same shape in an in-memory database for the query.
 * In both, a datetime field is an INTEGER column of UTC milliseconds named <field>_ms, and the
 * geo_point_2d field is two REAL columns `lat` and `lon` (NULL when the thing has no place). Every other
 * field is a column of its own name. Names are promises to users: never rename one. */
#ifndef CP_DATASET_H
#define CP_DATASET_H

#include <stdbool.h>
#include <stddef.h>

enum cp_ods_type {
        CP_ODS_TEXT,
        CP_ODS_INT,
        CP_ODS_DOUBLE,
        CP_ODS_BOOLEAN,  /* INTEGER 0/1 in SQL */
        CP_ODS_DATETIME, /* INTEGER UTC ms in SQL, column <name>_ms */
        CP_ODS_GEO_POINT, /* REAL lat, REAL lon in SQL */
};
/* ODS type names: text int double boolean datetime geo_point_2d. */
const char *cp_ods_type_name(enum cp_ods_type t);

struct cp_ods_field {
        const char *name;  /* field name in every output and in ODSQL */
        const char *label; /* human label (catalog) */
        enum cp_ods_type type;
        const char *col;   /* SQL column; for CP_ODS_GEO_POINT the latitude column */
        const char *col2;  /* CP_ODS_GEO_POINT: the longitude column; else NULL */
        const char *description;
};

enum cp_dataset_kind {
        CP_DS_LIVE_PARKING, /* parking-availability */
        CP_DS_LIVE_SPOTS,   /* parking-spots */
        CP_DS_LIVE_ENERGY,  /* energy-live */
        CP_DS_OCCUPANCY,    /* parking-occupancy-{15min,hourly,daily} */
        CP_DS_ENERGY,       /* energy-{15min,hourly,daily} */
};

struct cp_dataset {
        const char *id;          /* "parking-occupancy-15min" */
        const char *title;
        const char *description;
        enum cp_dataset_kind kind;
        const char *table;       /* SQL table (for live datasets: the snapshot table's name) */
        const struct cp_ods_field *fields;
        size_t n_fields;
        const char *key;         /* comma-separated key fields: "parking_id,bucket_start" */
        const char *default_order; /* SQL ORDER BY used when the request gives none (stable paging) */
        int period;              /* bucket datasets: enum cp_period; -1 for live ones */
};

size_t cp_dataset_count(void);
const struct cp_dataset *cp_dataset_at(size_t i);
/* NULL when unknown. */
const struct cp_dataset *cp_dataset_find(const char *id);
const struct cp_ods_field *cp_dataset_field(const struct cp_dataset *ds, const char *name, size_t len);
bool cp_dataset_is_bucket(const struct cp_dataset *ds);

/* CREATE TABLE statement for a dataset's SQL table (bucket tables add internal columns after the
 * public ones, named with a leading underscore, which no output ever shows). */
const char *cp_dataset_live_schema(enum cp_dataset_kind k);

#endif
