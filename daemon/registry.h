/* registry.h - the facilities and sensors CSV files (CONTRACT section 4). A registry is built whole,
 * validated, and swapped in only when valid; the live state links its sensors to it. */
#ifndef CP_REGISTRY_H
#define CP_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "map.h"

enum cp_skind {
        CP_SK_UNREGISTERED,
        CP_SK_SPOT,
        CP_SK_FACILITY,
        CP_SK_METER,
        CP_SK_PV,
};

struct cp_sensor; /* live state, see live.h */

struct cp_reg_facility {
        char *id, *name, *city, *operator_;
        int64_t total_spaces;
        double lat, lon;
        bool has_geo;
        /* Filled by cp_live_link(): the live entries of this facility's sensors. */
        struct cp_sensor **spots;
        size_t n_spots;
        struct cp_sensor **counters;
        size_t n_counters;
};

struct cp_reg_district {
        char *name;
        struct cp_sensor **meters; /* meters and pv, filled by cp_live_link() */
        size_t n_meters;
};

struct cp_reg_sensor {
        char *id;
        enum cp_skind kind;
        char *spot_id; /* spot sensors: the bay's id (defaults to the sensor id) */
        struct cp_reg_facility *facility;
        struct cp_reg_district *district;
};

struct cp_registry {
        struct cp_reg_facility *facilities;
        size_t n_facilities;
        struct cp_reg_sensor *sensors;
        size_t n_sensors;
        struct cp_reg_district *districts;
        size_t n_districts;
        struct cp_map by_facility; /* id -> struct cp_reg_facility * */
        struct cp_map by_sensor;   /* id -> struct cp_reg_sensor * */
};

/* Loads the registry files named by the config (either may be unset: an empty registry). Returns 0
 * and *ret, or -EINVAL with FILE:LINE messages in errs. */
int cp_registry_load(const struct cp_config *c, struct cp_registry **ret, struct cp_config_errors *errs);
/* Same from text held in memory (tests). Either text may be NULL. */
int cp_registry_parse(const char *fac_name, const char *fac_text, const char *sen_name, const char *sen_text,
                      struct cp_registry **ret, struct cp_config_errors *errs);
void cp_registry_free(struct cp_registry *r);

const char *cp_skind_name(enum cp_skind k);
const struct cp_reg_facility *cp_registry_facility(const struct cp_registry *r, const char *id);

#endif
