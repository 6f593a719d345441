/* cp_driver.h - the driver interface. A driver is a pure decoder: no I/O, no logging, no globals,
 * no libuv or MQTT. It turns one message into normalized readings or says, in words a person
 * understands, why it could not. Registration is static: drivers/drivers.def. */
#ifndef CP_DRIVER_H
#define CP_DRIVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cp_common.h"
#include "cp_reading.h"

#define CP_DRIVER_ABI 1

/* Why a payload was rejected: a small fixed set, so metrics labels stay bounded.
 * X(ENUM, "label") - labels are used in logs, metrics and the rejects table. */
#define CP_REASON_MAP(X)                                                                                     \
        X(NONE, "none")                                                                                      \
        X(BAD_JSON, "bad_json")                                                                              \
        X(BAD_FORMAT, "bad_format")                                                                          \
        X(MISSING_FIELD, "missing_field")                                                                    \
        X(WRONG_TYPE, "wrong_type")                                                                          \
        X(OUT_OF_RANGE, "out_of_range")                                                                      \
        X(INCONSISTENT, "inconsistent")                                                                      \
        X(ID_MISMATCH, "id_mismatch")                                                                        \
        X(BAD_ID, "bad_id")                                                                                  \
        X(BAD_TIMESTAMP, "bad_timestamp")                                                                    \
        X(FUTURE_TIMESTAMP, "future_timestamp")                                                              \
        X(CHECKSUM, "checksum")                                                                              \
        X(UNSUPPORTED, "unsupported")                                                                        \
        X(TOO_LARGE, "too_large")                                                                            \
        X(TOO_MANY_READINGS, "too_many_readings")                                                            \
        X(EMPTY, "empty")                                                                                    \
        X(NO_ROUTE, "no_route")

enum cp_reason {
#define CP_R_ENUM(e, label) CP_REASON_##e,
        CP_REASON_MAP(CP_R_ENUM)
#undef CP_R_ENUM
                _CP_REASON_MAX
};

const char *cp_reason_label(enum cp_reason r);

/* One MQTT message, borrowed for the duration of decode(). The payload is not NUL-terminated. */
struct cp_msg {
        const char *topic;
        const uint8_t *payload;
        size_t len;
        int64_t rx_ms; /* receive time, UTC ms; also the observation time when the payload has none */
};

#define CP_BATCH_CAP      64
#define CP_REASON_TEXT_MAX 200

/* Caller-owned output of one decode. On failure `reason` says why and `text` says it in words. */
struct cp_batch {
        struct cp_reading v[CP_BATCH_CAP];
        size_t n;
        enum cp_reason reason;
        char text[CP_REASON_TEXT_MAX];
        /* A decode that succeeds may still have dropped a part of the message (a TIC group with a bad
         * checksum): the readings are kept, and the dropped part is recorded as a reject with this
         * reason and text. CP_REASON_NONE when nothing was dropped. Set with cp_batch_note_partial(). */
        enum cp_reason partial;
        unsigned partial_count;
        char partial_text[CP_REASON_TEXT_MAX];
};

/* Driver-specific settings: the `driver.<name>.<key> <value>` lines of the config. */
struct cp_conf_kv {
        const char *key;
        const char *value;
};
struct cp_conf_section {
        const char *driver;
        const struct cp_conf_kv *kv;
        size_t n;
};
/* Value of `key` in `sec`, or NULL. */
const char *cp_conf_get(const struct cp_conf_section *sec, const char *key);

struct cp_driver {
        unsigned abi;     /* CP_DRIVER_ABI; the registry refuses a mismatch */
        const char *name; /* used in config, logs and metrics */
        /* Optional. Validates the driver's settings and builds its state. On error returns a negative
         * errno and writes a message (naming the key) into err[errlen]. */
        int (*init)(const struct cp_conf_section *conf, void **ret_state, char *err, size_t errlen);
        void (*free)(void *state); /* optional, NULL-safe */
        /* Returns 0 with out->n >= 1 readings; -ENODATA for a valid message that carries no reading
         * (status, availability, heartbeat); or a negative errno with out->reason and out->text set.
         * On failure out->n is 0: no partial reading is ever kept. */
        int (*decode)(void *state, const struct cp_msg *msg, struct cp_batch *out);
};

struct cp_tz;
/* --- helpers for drivers (drivers/drv_util.c; pure) --- */

/* Refuses any key of conf that is not in allowed[] (NULL-terminated) with
 * "driver.<name>.<key>: unknown key" in err. Returns 0 or -EINVAL. */
int cp_conf_check_keys(const struct cp_conf_section *conf, const char *const *allowed, char *err, size_t errlen);
/* Loads the zone named by conf's `timezone` (Europe/Paris when unset; the daemon always passes
 * agg.timezone), with "driver.<name>.timezone: unknown time zone 'X'" in err on failure. */
int cp_conf_load_tz(const struct cp_conf_section *conf, struct cp_tz **ret, char *err, size_t errlen);
/* init/free for the many drivers whose only setting is `timezone`: the state is the struct cp_tz. */
int cp_driver_tz_init(const struct cp_conf_section *conf, void **ret_state, char *err, size_t errlen);
void cp_driver_tz_free(void *state);

/* Records why decode failed and returns -EPROTO. The text is prefixed by nothing: drivers write
 * "decoded_payload.occupied is a string, expected boolean"; ingest adds the driver name.
 * Also sets b->n to 0 (a failure keeps no reading). The stored text is always valid UTF-8 without
 * control characters: bytes that are not are written as \xNN, and a long text is cut at a character
 * boundary, so payload bytes quoted in it are safe for logs, JSON and the rejects table. */
int cp_batch_fail(struct cp_batch *b, enum cp_reason reason, const char *fmt, ...) CP_PRINTF(3, 4);
/* Notes a dropped part of an otherwise good message (see struct cp_batch); the first note's text is
 * kept, later ones are counted. */
void cp_batch_note_partial(struct cp_batch *b, enum cp_reason reason, const char *fmt, ...) CP_PRINTF(3, 4);
/* Prepares a batch for a decode: no reading, no reason, nothing dropped. */
void cp_batch_reset(struct cp_batch *b);
/* Appends a reading. Returns 0, -ERANGE for a non-finite value, -ENOSPC when full, -ENAMETOOLONG for
 * an id that does not fit, -EINVAL for an id cp_sensor_id_valid() refuses (or an unknown quantity);
 * on failure sets the reason and, like cp_batch_fail(), sets b->n to 0. */
int cp_batch_add(struct cp_batch *b, const char *sensor_id, enum cp_quantity q, double value, int64_t ts_ms,
                 int64_t rx_ms);
/* Same, with the id given as "<base>:<channel>". */
int cp_batch_add_ch(struct cp_batch *b, const char *base, const char *channel, enum cp_quantity q, double value,
                    int64_t ts_ms, int64_t rx_ms);

/* Length of the well-formed UTF-8 sequence at p (1..4 of the len >= 1 bytes there), its code point in
 * *ret_cp; 0 for what RFC 3629 refuses: a stray or cut byte, an overlong form, a surrogate, a code
 * point above U+10FFFF (jansson refuses the same). */
size_t cp_utf8_seq(const uint8_t *p, size_t len, uint32_t *ret_cp);

/* Validates a device id: 1..CP_SENSOR_ID_MAX-1 bytes, printable UTF-8, no control bytes, no MQTT
 * wildcards. Returns 0 or -EINVAL. */
int cp_sensor_id_valid(const char *id, size_t len);
/* The same check, saying what is wrong: NULL for a valid id, else a static phrase completing
 * "<id> ...": "is empty", "is too long", "contains a control character", "contains an MQTT wildcard"
 * or "is not valid UTF-8". */
const char *cp_sensor_id_problem(const char *id, size_t len);

struct cp_tz;
/* Parses an RFC 3339 / ISO 8601 time ("2026-03-01T10:00:00.123456789Z", "+01:00" offsets, a space
 * instead of "T"; the fraction is kept to the millisecond). A time without offset is read in `tz`;
 * tz NULL makes such a time an error. Returns 0 or -EINVAL. */
int cp_time_parse(const char *s, size_t len, const struct cp_tz *tz, int64_t *ret_ms);
/* Converts an epoch number to ms, detecting s, ms, us or ns by magnitude. Returns 0 or -ERANGE. */
int cp_time_from_epoch(double v, int64_t *ret_ms);

/* Observation times drivers accept from payloads: years 1970 to 2200, [MIN, MAX). */
#define CP_TIME_MIN_MS 0
#define CP_TIME_MAX_MS INT64_C(7289654400000) /* 2201-01-01T00:00:00Z */

/* Whether s[0..len) (not terminated) is exactly the string `word`. */
bool cp_span_is(const char *s, size_t len, const char *word);

/* --- numbers in texts --- */

/* Room for any number either function writes ("-1.2345678901234567e-308"). */
#define CP_FMT_DOUBLE_MAX 40
/* A whole number of magnitude below 1e15 as plain digits ("20", "-300", not the "2e+01" of "%.1g"),
 * anything else in the shortest "%g" form that reads back as the same double ("3.3", not
 * "3.2999999999999998"; "1e+20"). */
void cp_fmt_double(double d, char *buf, size_t size);
/* Always the shortest "%g" form that reads back as the same double: "2e+01" for 20. */
void cp_fmt_double_g(double d, char *buf, size_t size);

/* --- value ranges ---
 * Three families, because drivers promised different things in their reject texts and a refactor
 * must not change what a message gets; each is shared by the drivers that use it. */

/* What a reading of q can hold at all, for drivers whose source describes itself or is mapped in the
 * config (json_map, senml): NULL for a possible value, else a phrase that completes a text after the
 * value: "expected 0 or 1" (occupied), "expected a whole number 0..1000000000" (space counts and
 * counters), "expected >= 0" (energies, apparent power, voltages, battery, frequency),
 * "expected -1..1" (power factor), "expected 0..100" (humidity), "expected >= -273.15"
 * (temperature). Power, reactive power and currents take any finite value (NULL). */
const char *cp_quantity_range_problem(enum cp_quantity q, double v);

/* Physically possible values [*ret_lo, *ret_hi] of a mains energy meter's readings (tasmota,
 * zigbee2mqtt): apparent power 0..1e7 VA, power factor -1..1, voltage 0..1000 V, current +-1e5 A,
 * frequency 0..1000 Hz, energies 0..1e9 kWh, battery 0..100 V, temperature -273.15..1000 degC,
 * humidity 0..100 %, anything else (power, reactive power) +-1e7. A reading outside says the device or
 * the payload is broken, and storing it would wreck every mean and counter built on it. */
void cp_quantity_bounds(enum cp_quantity q, double *ret_lo, double *ret_hi);

/* Fails OUT_OF_RANGE with "<name> is <v>, expected <lo> to <hi><note>" (numbers by cp_fmt_double(),
 * note may be NULL) and returns -EPROTO. */
int cp_batch_fail_bounds(struct cp_batch *b, const char *name, double v, double lo, double hi,
                         const char *note);

/* What a Shelly field's value may be (shelly_gen1, shelly_gen2); anything else is physically
 * impossible. */
enum cp_value_check {
        CP_CHECK_SIGNED,  /* any finite value: power flows both ways */
        CP_CHECK_NONNEG,  /* counters, voltage, current, frequency, apparent power */
        CP_CHECK_PF,      /* power factor, -1..1 */
        CP_CHECK_ABOVE_0K /* temperature in degC */
};
/* NULL when v is possible for `check`, else what is wrong with it: "expected >= 0",
 * "expected -1 to 1", "below absolute zero (-273.15)". */
const char *cp_value_check_problem(double v, enum cp_value_check check);

/* --- topics --- */

/* The longest level number a topic span takes. */
#define CP_TOPIC_LEVEL_MAX 64
/* Where a topic holds the device id: level `level`, through the last one with to_end. */
struct cp_topic_span {
        int level; /* 1 = first, -1 = last; 0: the topic holds no id */
        bool to_end;
};
/* Parses the setting driver.<driver>.<key>: "N" (one level) or "N.." (level N to the last), N in
 * 1..CP_TOPIC_LEVEL_MAX from the start or -1..-CP_TOPIC_LEVEL_MAX from the end. Returns 0, or -EINVAL
 * with "driver.<driver>.<key>: '<value>' is not a topic level: ..." in err. */
int cp_conf_parse_topic_span(const char *driver, const char *key, const char *value,
                             struct cp_topic_span *ret, char *err, size_t errlen);
/* The part of `topic` that `span` names, borrowed from topic into *ret and *ret_len (without the
 * levels after it unless to_end); false when the topic has too few levels. span->level must not be 0. */
bool cp_topic_span_get(const char *topic, const struct cp_topic_span *span, const char **ret,
                       size_t *ret_len);

#endif
