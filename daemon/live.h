/* live.h - the latest value of every (sensor, quantity), and the facility and district views built on
 * them (CONTRACT section 5). Pure logic: no I/O, time is passed in. Loop thread only. */
#ifndef CP_LIVE_H
#define CP_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "citypulse/cp_reading.h"
#include "map.h"
#include "registry.h"

struct cp_qval {
        double value;
        int64_t ts_ms;
        int64_t rx_ms;
        uint8_t q; /* enum cp_quantity */
};

struct cp_sensor {
        char *id;
        const struct cp_reg_sensor *reg; /* NULL: unregistered */
        struct cp_qval *q;
        uint8_t n_q, cap_q;
};

struct cp_live {
        struct cp_map sensors; /* id -> struct cp_sensor * */
        const struct cp_registry *reg;
        size_t n_unregistered;
        size_t max_unregistered;
        int64_t stale_after_ms;
        int64_t full_threshold;
        uint64_t changes; /* bumped whenever a newest value changes */
};

enum cp_fstatus {
        CP_FS_OPEN,
        CP_FS_FULL,
        CP_FS_UNKNOWN,
        CP_FS_CLOSED,
};
const char *cp_fstatus_name(enum cp_fstatus s);

struct cp_facility_view {
        enum cp_fstatus status;
        bool known;             /* free_spaces and occupancy_rate are meaningful */
        int64_t free_spaces;
        int64_t total_spaces;
        double occupancy_rate;  /* 0..1 */
        int64_t last_reported_ms; /* newest observation of the facility's sensors, 0 if none */
        int64_t last_received_ms;
        int64_t next_change_ms; /* when staleness alone changes this view, INT64_MAX if never */
        bool from_spots;        /* spot sensors (else a counter) */
        int64_t known_spots;    /* spot facilities: spots with a fresh reading */
};

void cp_live_init(struct cp_live *l, size_t max_unregistered, int64_t stale_after_ms, int64_t full_threshold);
void cp_live_done(struct cp_live *l);
/* Links the live entries to a (new) registry: registered sensors get an entry even without readings, and
 * the registry's facility and district arrays point at them. The registry must outlive the link or be
 * replaced by another cp_live_link(). Returns 0 or -ENOMEM (the old link is then still in place... the
 * caller keeps the old registry). */
int cp_live_link(struct cp_live *l, const struct cp_registry *reg);

/* Applies one reading. Returns 1 when it became the newest value of its sensor and quantity, 0 when it
 * is older or a duplicate (same observation time: the first arrival wins), -ENOSPC when the sensor is
 * unregistered and the cap on unregistered sensors is reached (the reading is not tracked live), or
 * -ENOMEM. */
int cp_live_apply(struct cp_live *l, const struct cp_reading *r);

struct cp_sensor *cp_live_get(const struct cp_live *l, const char *id, size_t len);
const struct cp_qval *cp_sensor_value(const struct cp_sensor *s, enum cp_quantity q);
/* True when v exists and is no older than stale_after at now. */
bool cp_live_fresh(const struct cp_live *l, const struct cp_qval *v, int64_t now_ms);

void cp_live_facility(const struct cp_live *l, const struct cp_reg_facility *f, int64_t now_ms,
                      struct cp_facility_view *ret);

/* A meter's or a district's latest power and energy. Only fresh values count: a meter silent for
 * longer than live.stale_after contributes nothing, and a district with no fresh meter is unknown. */
struct cp_energy_view {
        bool known;
        bool has_power, has_import, has_export;
        double power_w;           /* signed: + import, - export */
        double energy_import_kwh; /* cumulative counters */
        double energy_export_kwh;
        int64_t meters_known, meters_total;
        int64_t last_reported_ms;
};
void cp_live_meter(const struct cp_live *l, const struct cp_sensor *s, int64_t now_ms, struct cp_energy_view *ret);
void cp_live_district(const struct cp_live *l, const struct cp_reg_district *d, int64_t now_ms,
                      struct cp_energy_view *ret);

#endif
