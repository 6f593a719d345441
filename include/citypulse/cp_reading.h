/* cp_reading.h - normalized readings (CONTRACT section 3): quantities and their units are fixed here. */
#ifndef CP_READING_H
#define CP_READING_H

#include <stddef.h>
#include <stdint.h>

/* How a quantity aggregates (CONTRACT section 5). */
enum cp_qkind {
        CP_QK_STATE,   /* 0/1 spot state: occupancy math */
        CP_QK_GAUGE,   /* instantaneous value: time-weighted mean, min, max, last */
        CP_QK_COUNTER, /* cumulative counter: sum of increases, a decrease is a reset */
};

/* X(ENUM, "name", kind). The names are the contract's; never rename one. */
#define CP_QUANTITY_MAP(X)                                                                                   \
        X(OCCUPIED, "occupied", CP_QK_STATE)                                                                 \
        X(FREE_SPACES, "free_spaces", CP_QK_GAUGE)                                                           \
        X(TOTAL_SPACES, "total_spaces", CP_QK_GAUGE)                                                         \
        X(OCCUPIED_SPACES, "occupied_spaces", CP_QK_GAUGE)                                                   \
        X(ENTRIES_TOTAL, "entries_total", CP_QK_COUNTER)                                                     \
        X(EXITS_TOTAL, "exits_total", CP_QK_COUNTER)                                                         \
        X(POWER_W, "power_w", CP_QK_GAUGE)                                                                   \
        X(POWER_W_L1, "power_w_l1", CP_QK_GAUGE)                                                             \
        X(POWER_W_L2, "power_w_l2", CP_QK_GAUGE)                                                             \
        X(POWER_W_L3, "power_w_l3", CP_QK_GAUGE)                                                             \
        X(ENERGY_IMPORT_KWH, "energy_import_kwh", CP_QK_COUNTER)                                             \
        X(ENERGY_EXPORT_KWH, "energy_export_kwh", CP_QK_COUNTER)                                             \
        X(APPARENT_POWER_VA, "apparent_power_va", CP_QK_GAUGE)                                               \
        X(REACTIVE_POWER_VAR, "reactive_power_var", CP_QK_GAUGE)                                             \
        X(POWER_FACTOR, "power_factor", CP_QK_GAUGE)                                                         \
        X(VOLTAGE_V, "voltage_v", CP_QK_GAUGE)                                                               \
        X(VOLTAGE_V_L1, "voltage_v_l1", CP_QK_GAUGE)                                                         \
        X(VOLTAGE_V_L2, "voltage_v_l2", CP_QK_GAUGE)                                                         \
        X(VOLTAGE_V_L3, "voltage_v_l3", CP_QK_GAUGE)                                                         \
        X(CURRENT_A, "current_a", CP_QK_GAUGE)                                                               \
        X(CURRENT_A_L1, "current_a_l1", CP_QK_GAUGE)                                                         \
        X(CURRENT_A_L2, "current_a_l2", CP_QK_GAUGE)                                                         \
        X(CURRENT_A_L3, "current_a_l3", CP_QK_GAUGE)                                                         \
        X(FREQUENCY_HZ, "frequency_hz", CP_QK_GAUGE)                                                         \
        X(BATTERY_V, "battery_v", CP_QK_GAUGE)                                                               \
        X(TEMPERATURE_C, "temperature_c", CP_QK_GAUGE)                                                       \
        X(HUMIDITY_PCT, "humidity_pct", CP_QK_GAUGE)

enum cp_quantity {
#define CP_Q_ENUM(e, name, kind) CP_Q_##e,
        CP_QUANTITY_MAP(CP_Q_ENUM)
#undef CP_Q_ENUM
                _CP_Q_MAX
};

/* The longest sensor id accepted, including the NUL. Longer ids are rejected by drivers. */
#define CP_SENSOR_ID_MAX 128

struct cp_reading {
        char sensor_id[CP_SENSOR_ID_MAX];
        enum cp_quantity quantity;
        double value;      /* in the quantity's fixed unit; always finite */
        int64_t ts_ms;     /* observation time, UTC milliseconds */
        int64_t rx_ms;     /* receive time, UTC milliseconds */
};

/* Quantity name ("power_w") or NULL when q is out of range. */
const char *cp_quantity_name(enum cp_quantity q);
/* Parses a quantity name; returns 0 and sets *ret, or -EINVAL. */
int cp_quantity_parse(const char *name, enum cp_quantity *ret);
enum cp_qkind cp_quantity_kind(enum cp_quantity q);

#endif
