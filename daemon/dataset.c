/* dataset.c - the catalog; see dataset.h. */
#include "dataset.h"

#include <string.h>

#include "agg.h"
#include "citypulse/cp_common.h"

const char *cp_ods_type_name(enum cp_ods_type t)
{
        switch (t) {
        case CP_ODS_TEXT:
                return "text";
        case CP_ODS_INT:
                return "int";
        case CP_ODS_DOUBLE:
                return "double";
        case CP_ODS_BOOLEAN:
                return "boolean";
        case CP_ODS_DATETIME:
                return "datetime";
        case CP_ODS_GEO_POINT:
                return "geo_point_2d";
        }
        return "text";
}

#define GEO {"geo_point_2d", "Location", CP_ODS_GEO_POINT, "lat", "lon", "WGS84 point, lat,lon"}

static const struct cp_ods_field f_parking[] = {
        {"parking_id", "Parking id", CP_ODS_TEXT, "parking_id", NULL, "Stable facility identifier"},
        {"name", "Name", CP_ODS_TEXT, "name", NULL, "Facility name"},
        {"city", "City", CP_ODS_TEXT, "city", NULL, "Municipality"},
        {"operator", "Operator", CP_ODS_TEXT, "operator", NULL, "Operating company"},
        {"free_spaces", "Free spaces", CP_ODS_INT, "free_spaces", NULL, "Free spaces now; null when unknown"},
        {"total_spaces", "Total spaces", CP_ODS_INT, "total_spaces", NULL, "Capacity"},
        {"occupancy_rate", "Occupancy rate", CP_ODS_DOUBLE, "occupancy_rate", NULL,
         "Occupied share 0..1; null when unknown"},
        {"status", "Status", CP_ODS_TEXT, "status", NULL, "open, full, closed or unknown (sensors silent)"},
        {"last_reported", "Last reported", CP_ODS_DATETIME, "last_reported_ms", NULL,
         "Newest observation time of the facility's sensors"},
        GEO,
};

static const struct cp_ods_field f_spots[] = {
        {"spot_id", "Spot id", CP_ODS_TEXT, "spot_id", NULL, "Parking bay identifier"},
        {"sensor_id", "Sensor id", CP_ODS_TEXT, "sensor_id", NULL, "Sensor identifier"},
        {"parking_id", "Parking id", CP_ODS_TEXT, "parking_id", NULL, "Facility the bay belongs to"},
        {"status", "Status", CP_ODS_TEXT, "status", NULL, "free, occupied or unknown (sensor silent)"},
        {"observed_at", "Observed at", CP_ODS_DATETIME, "observed_at_ms", NULL, "Observation time of the state"},
        GEO,
};

static const struct cp_ods_field f_energy_live[] = {
        {"id", "Id", CP_ODS_TEXT, "id", NULL, "Meter id or district name"},
        {"kind", "Kind", CP_ODS_TEXT, "kind", NULL, "meter, pv or district"},
        {"district", "District", CP_ODS_TEXT, "district", NULL, "District of the meter"},
        {"power_w", "Power (W)", CP_ODS_DOUBLE, "power_w", NULL, "Active power, + import, - export"},
        {"energy_import_kwh", "Energy imported (kWh)", CP_ODS_DOUBLE, "energy_import_kwh", NULL,
         "Cumulative import counter (districts: sum over meters)"},
        {"energy_export_kwh", "Energy exported (kWh)", CP_ODS_DOUBLE, "energy_export_kwh", NULL,
         "Cumulative export counter (districts: sum over meters)"},
        {"meters_known", "Meters reporting", CP_ODS_INT, "meters_known", NULL, "Meters with a fresh reading"},
        {"meters_total", "Meters", CP_ODS_INT, "meters_total", NULL, "Meters registered"},
        {"status", "Status", CP_ODS_TEXT, "status", NULL, "live or unknown (sensors silent)"},
        {"last_reported", "Last reported", CP_ODS_DATETIME, "last_reported_ms", NULL, "Newest observation time"},
};

static const struct cp_ods_field f_occupancy[] = {
        {"parking_id", "Parking id", CP_ODS_TEXT, "parking_id", NULL, "Stable facility identifier"},
        {"bucket_start", "Bucket start", CP_ODS_DATETIME, "bucket_start_ms", NULL, "Start of the period"},
        {"bucket_end", "Bucket end", CP_ODS_DATETIME, "bucket_end_ms", NULL, "End of the period (excluded)"},
        {"occupancy_rate_mean", "Mean occupancy rate", CP_ODS_DOUBLE, "occupancy_rate_mean", NULL,
         "Occupied spot-seconds / known spot-seconds; null when nothing was known"},
        {"coverage", "Coverage", CP_ODS_DOUBLE, "coverage", NULL,
         "Known spot-seconds / (registered spots x period)"},
        {"free_spaces_min", "Free spaces min", CP_ODS_INT, "free_spaces_min", NULL, "Minimum over known time"},
        {"free_spaces_max", "Free spaces max", CP_ODS_INT, "free_spaces_max", NULL, "Maximum over known time"},
        {"free_spaces_last", "Free spaces last", CP_ODS_INT, "free_spaces_last", NULL,
         "Value just before the end; null when unknown then"},
        {"samples", "Samples", CP_ODS_INT, "samples", NULL, "Readings observed in the period"},
        {"revision", "Revision", CP_ODS_INT, "revision", NULL, "0 when first published, +1 per revision"},
        {"updated_at", "Updated at", CP_ODS_DATETIME, "updated_at_ms", NULL, "When this row last changed"},
        GEO,
};

static const struct cp_ods_field f_energy[] = {
        {"id", "Id", CP_ODS_TEXT, "id", NULL, "Meter id or district name"},
        {"kind", "Kind", CP_ODS_TEXT, "kind", NULL, "meter, pv or district"},
        {"district", "District", CP_ODS_TEXT, "district", NULL, "District"},
        {"bucket_start", "Bucket start", CP_ODS_DATETIME, "bucket_start_ms", NULL, "Start of the period"},
        {"bucket_end", "Bucket end", CP_ODS_DATETIME, "bucket_end_ms", NULL, "End of the period (excluded)"},
        {"energy_import_kwh", "Energy imported (kWh)", CP_ODS_DOUBLE, "energy_import_kwh", NULL,
         "Increase of the import counter in the period"},
        {"energy_export_kwh", "Energy exported (kWh)", CP_ODS_DOUBLE, "energy_export_kwh", NULL,
         "Increase of the export counter in the period"},
        {"power_w_mean", "Mean power (W)", CP_ODS_DOUBLE, "power_w_mean", NULL, "Time-weighted over known time"},
        {"power_w_min", "Min power (W)", CP_ODS_DOUBLE, "power_w_min", NULL, "Minimum over known time"},
        {"power_w_max", "Max power (W)", CP_ODS_DOUBLE, "power_w_max", NULL, "Maximum over known time"},
        {"power_w_last", "Last power (W)", CP_ODS_DOUBLE, "power_w_last", NULL, "Value just before the end"},
        {"samples", "Samples", CP_ODS_INT, "samples", NULL, "Readings observed in the period"},
        {"coverage", "Coverage", CP_ODS_DOUBLE, "coverage", NULL, "Share of the period with power known"},
        {"revision", "Revision", CP_ODS_INT, "revision", NULL, "0 when first published, +1 per revision"},
        {"updated_at", "Updated at", CP_ODS_DATETIME, "updated_at_ms", NULL, "When this row last changed"},
};

#define DS(id_, title_, desc_, kind_, table_, f_, key_, order_, period_)                                        \
        {id_, title_, desc_, kind_, table_, f_, CP_ARRAY_LEN(f_), key_, order_, period_}

static const struct cp_dataset datasets[] = {
        DS("parking-availability", "Parking availability (live)",
           "One row per facility: free spaces and status now. A facility whose sensors went silent is unknown.",
           CP_DS_LIVE_PARKING, "parking_availability", f_parking, "parking_id", "parking_id", -1),
        DS("parking-spots", "Parking spots (live)", "One row per sensed bay: free, occupied or unknown.",
           CP_DS_LIVE_SPOTS, "parking_spots", f_spots, "sensor_id", "parking_id, spot_id, sensor_id", -1),
        DS("parking-occupancy-15min", "Parking occupancy, 15 minutes",
           "Time-weighted occupancy per facility and quarter hour (UTC-aligned).", CP_DS_OCCUPANCY,
           "parking_occupancy_15min", f_occupancy, "parking_id,bucket_start", "bucket_start_ms, parking_id",
           CP_P_15M),
        DS("parking-occupancy-hourly", "Parking occupancy, hourly", "Time-weighted occupancy per facility and hour.",
           CP_DS_OCCUPANCY, "parking_occupancy_hourly", f_occupancy, "parking_id,bucket_start",
           "bucket_start_ms, parking_id", CP_P_1H),
        DS("parking-occupancy-daily", "Parking occupancy, daily",
           "Time-weighted occupancy per facility and local day (agg.timezone).", CP_DS_OCCUPANCY,
           "parking_occupancy_daily", f_occupancy, "parking_id,bucket_start", "bucket_start_ms, parking_id",
           CP_P_1D),
        DS("energy-live", "Energy (live)", "Latest power and energy per meter and district.", CP_DS_LIVE_ENERGY,
           "energy_live", f_energy_live, "kind,id", "kind, id", -1),
        DS("energy-15min", "Energy, 15 minutes", "Energy and power per meter and district and quarter hour.",
           CP_DS_ENERGY, "energy_15min", f_energy, "id,bucket_start", "bucket_start_ms, id", CP_P_15M),
        DS("energy-hourly", "Energy, hourly", "Energy and power per meter and district and hour.", CP_DS_ENERGY,
           "energy_hourly", f_energy, "id,bucket_start", "bucket_start_ms, id", CP_P_1H),
        DS("energy-daily", "Energy, daily", "Energy and power per meter and district and local day.", CP_DS_ENERGY,
           "energy_daily", f_energy, "id,bucket_start", "bucket_start_ms, id", CP_P_1D),
};

size_t cp_dataset_count(void)
{
        return CP_ARRAY_LEN(datasets);
}

const struct cp_dataset *cp_dataset_at(size_t i)
{
        return i < CP_ARRAY_LEN(datasets) ? &datasets[i] : NULL;
}

const struct cp_dataset *cp_dataset_find(const char *id)
{
        for (size_t i = 0; i < CP_ARRAY_LEN(datasets); i++)
                if (strcmp(datasets[i].id, id) == 0)
                        return &datasets[i];
        return NULL;
}

const struct cp_ods_field *cp_dataset_field(const struct cp_dataset *ds, const char *name, size_t len)
{
        for (size_t i = 0; i < ds->n_fields; i++)
                if (strlen(ds->fields[i].name) == len && memcmp(ds->fields[i].name, name, len) == 0)
                        return &ds->fields[i];
        return NULL;
}

bool cp_dataset_is_bucket(const struct cp_dataset *ds)
{
        return ds->kind == CP_DS_OCCUPANCY || ds->kind == CP_DS_ENERGY;
}

const char *cp_dataset_live_schema(enum cp_dataset_kind k)
{
        switch (k) {
        case CP_DS_LIVE_PARKING:
                return "CREATE TABLE parking_availability(parking_id TEXT PRIMARY KEY, name TEXT, city TEXT,"
                       " operator TEXT, free_spaces INTEGER, total_spaces INTEGER, occupancy_rate REAL,"
                       " status TEXT NOT NULL, last_reported_ms INTEGER, lat REAL, lon REAL)";
        case CP_DS_LIVE_SPOTS:
                return "CREATE TABLE parking_spots(spot_id TEXT, sensor_id TEXT PRIMARY KEY, parking_id TEXT,"
                       " status TEXT NOT NULL, observed_at_ms INTEGER, lat REAL, lon REAL)";
        case CP_DS_LIVE_ENERGY:
                return "CREATE TABLE energy_live(id TEXT, kind TEXT NOT NULL, district TEXT, power_w REAL,"
                       " energy_import_kwh REAL, energy_export_kwh REAL, meters_known INTEGER,"
                       " meters_total INTEGER, status TEXT NOT NULL, last_reported_ms INTEGER,"
                       " PRIMARY KEY(kind, id))";
        default:
                return NULL;
        }
}
