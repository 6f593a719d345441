/* cp_json.h - jansson helpers for JSON drivers: load a payload, read typed fields, and on any
 * failure leave a reason and a precise text in the batch. Pure: no logging, no I/O, no globals.
 *
 * Every function that takes a batch returns 0 or a negative errno; on failure it has already called
 * cp_batch_fail() (so b->n is 0) and the driver just returns the value.
 *
 * Paths in texts: a field is named by `path` and `key` joined with '.', or without a dot when the key
 * starts with '[': (NULL, "free") -> "free", ("decoded_payload", "occupied") ->
 * "decoded_payload.occupied", ("levels", "[2]") -> "levels[2]". Drivers build `path` for nested
 * objects and array elements themselves ("levels[2]").
 *
 * JSON null counts as absent: an optional field that is null is skipped (TTN sends "occupied": null
 * for unknown, Shelly "n_current": null), a required one is MISSING_FIELD. */
#ifndef CP_JSON_H
#define CP_JSON_H

#include "cp_driver.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Payloads above this size are refused before parsing (TOO_LARGE). */
#define CP_JSON_MAX_BYTES 262144 /* 256 KiB */
/* The largest value cp_json_get_count() accepts. */
#define CP_JSON_COUNT_MAX 1000000000

/* Parses msg->payload. On success *ret_root holds a new reference (any JSON type: drivers check the
 * root with json_is_object() and report with cp_json_fail_type(b, NULL, "payload", root, "object"));
 * the caller releases it with json_decref() on every path.
 * Failures (reason, text):
 *   EMPTY       "empty payload"                                  (len 0: e.g. a retained delete)
 *   TOO_LARGE   "payload is 300000 bytes, limit 262144"
 *   BAD_FORMAT  "binary payload, expected JSON"                  (a NUL byte: protobuf, raw frames)
 *   BAD_JSON    "invalid JSON at 1:17: <jansson's text>"         (NaN, nan, Infinity, truncation, ...)
 *   BAD_JSON    "invalid UTF-8 at 1:6: <jansson's text>"
 *   OUT_OF_RANGE "number out of range at 1:10: <jansson's text>" (1e400, integers beyond int64)
 *   TOO_LARGE   "JSON nested too deeply at 1:2049"
 * Returns -EPROTO for those, -ENOMEM (reason TOO_LARGE, "out of memory parsing JSON") when jansson
 * runs out of memory, -EINVAL for NULL arguments.
 * Duplicate keys are accepted and the last one wins: JSON.parse, Go and Python behave that way, the
 * network servers feeding us are written in those, and refusing would drop a whole message for a
 * harmless quirk (RFC 8259 4 only says names SHOULD be unique). */
int cp_json_load(const struct cp_msg *msg, struct cp_batch *b, json_t **ret_root);

/* cp_json_load() for drivers whose payload must be an object: any other root fails WRONG_TYPE
 * "payload is an array, expected object" (-EPROTO) and nothing is returned. On success *ret_root is a
 * new reference to an object, released by the caller with json_decref(). */
int cp_json_load_object(const struct cp_msg *msg, struct cp_batch *b, json_t **ret_root);

/* A member cp_json_load_pruned() copies, in a table that ends with {NULL, NULL}. `key` is a member
 * name, or a pattern with one '*' standing for any run of bytes: "prefix*suffix" takes every member
 * whose name starts with prefix and ends with suffix, not overlapping ("switch:*" for "switch:0",
 * "switch:1", ...; "*_" for every name ending in '_'; "*" alone for all). A member takes the first
 * entry it matches, so exact names go before patterns (an entry with a '*' is always a pattern).
 * `sub` says how:
 *   NULL              the value as a leaf; an object or array becomes an empty one of the same type
 *                     (for fields whose type or presence alone is read)
 *   CP_JSON_KEEP_ALL  the whole value, everything below it included
 *   a table           an object keeps only the members the table lists (recursively); an array keeps
 *                     every element, each copied by the same table (objects pruned, the rest as is);
 *                     any other value is copied as it is */
struct cp_json_keep {
        const char *key;
        const struct cp_json_keep *sub;
};

extern const struct cp_json_keep cp_json_keep_all[];
#define CP_JSON_KEEP_ALL cp_json_keep_all

/* cp_json_load_object() that builds only the members `keep` lists (NULL: none, an empty root), for
 * drivers whose payloads carry far more than they read: jansson builds a value for every member, and
 * building a few instead is several times faster. The whole payload is still checked against the
 * JSON grammar as jansson checks it: a message cp_json_load() would refuse is never accepted here.
 *
 * The fast reader takes a strict subset of what jansson takes: an object root at most 64 levels
 * deep, integers of at most 18 digits, reals of at most 40 characters with at most two exponent
 * digits (no double can overflow), and escapes only in strings it neither copies nor compares (a
 * copied string, and every key of an object whose members a table picks, would have to be
 * unescaped first). On anything else, and on every error, it gives up and the payload goes to
 * cp_json_load_object(), which decodes all of it or reports the error with its position. Either way
 * the result is the same: every kept member, at every level, has exactly the type and value
 * cp_json_load() gives it (but for a container kept as a leaf, which may come back empty), and of
 * duplicate keys the last one wins, as there. A member keep omits is absent from the fast reader's
 * tree but present after a fallback, so a driver must read nothing that keep does not list (nor the
 * inside of a leaf container): its decode would then depend on the path taken.
 * Returns and failures are cp_json_load_object()'s: on success *ret_root is a new reference to an
 * object, which the caller releases with json_decref(). */
int cp_json_load_pruned(const struct cp_msg *msg, struct cp_batch *b, const struct cp_json_keep *keep,
                        json_t **ret_root);

/* cp_json_load_pruned() for payloads whose root may be any JSON value, as cp_json_load() takes them
 * (SenML packs, NGSI entity lists): the root is copied as a member kept with sub = keep would be (an
 * object pruned by keep, an array with every element copied by keep, any other value as it is; keep
 * NULL leaves an empty container). Falls back to cp_json_load(), whose returns and failures it has:
 * on success *ret_root is a new reference of any type, released by the caller with json_decref(). */
int cp_json_load_pruned_any(const struct cp_msg *msg, struct cp_batch *b, const struct cp_json_keep *keep,
                            json_t **ret_root);

/* A JSON number for texts: an integer exactly, a real in the shortest "%g" form that reads back as
 * the same double (cp_fmt_double_g()). */
void cp_json_fmt_number(const json_t *v, char *buf, size_t size);

/* "an object", "an array", "a string", "a number", "a boolean", "null"; "nothing" for NULL. */
const char *cp_json_type_name(const json_t *v);

/* Fails with WRONG_TYPE "<path.key> is <type name of v>, expected <expected>" and returns -EPROTO.
 * For drivers that accept several shapes ("boolean or string") and report the rest themselves. */
int cp_json_fail_type(struct cp_batch *b, const char *path, const char *key, const json_t *v,
                      const char *expected);

/* Typed getters. `obj` must be a JSON object (anything else fails WRONG_TYPE naming `path`).
 * A missing (or null) field: required -> MISSING_FIELD "<path.key> is missing"; optional -> returns
 * 0 with *ret_present false and *ret untouched. ret_present may be NULL. A field of the wrong type
 * is WRONG_TYPE "<path.key> is a string, expected number". */

/* Any JSON number (integer or real; jansson has already refused overflow, NaN and Infinity). A
 * number written as a string ("12.5") is WRONG_TYPE: converting would hide a device that changed
 * its format. */
int cp_json_get_number(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                       bool required, double *ret, bool *ret_present);
/* A count: a whole number in 0..CP_JSON_COUNT_MAX. An integral real (10.0, as ChirpStack's
 * protobuf Struct encodes integers) is accepted. OUT_OF_RANGE texts: "total is -3, expected >= 0",
 * "total is 12.5, expected a whole number", "total is 2000000000, expected <= 1000000000". */
int cp_json_get_count(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                      int64_t *ret, bool *ret_present);
/* JSON true or false only: 0/1 and "true" are WRONG_TYPE. */
int cp_json_get_bool(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                     bool *ret, bool *ret_present);
/* A string of at most max_len bytes (longer: OUT_OF_RANGE "<path.key> is 300 bytes long, limit
 * 64"). *ret is borrowed from obj: valid while the root is referenced. Valid UTF-8 without NUL
 * (jansson guarantees both). */
int cp_json_get_string(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                       bool required, size_t max_len, const char **ret, bool *ret_present);
/* A required device id or channel name, copied into ret[CP_SENSOR_ID_MAX] and checked with
 * cp_sensor_id_problem(): BAD_ID "facility is 200 bytes long, limit 127",
 * "facility 'P\x01' contains a control character". With allow_integer, a JSON integer is accepted
 * and written in decimal (Nwave position ids, numbered levels). */
int cp_json_get_id(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                   bool allow_integer, char *ret);
/* A nested object or array; *ret is borrowed from obj, NULL when absent. */
int cp_json_get_object(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                       bool required, json_t **ret, bool *ret_present);
int cp_json_get_array(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                      json_t **ret, bool *ret_present);
/* An observation time: an RFC 3339 string (cp_time_parse(); a time without offset is read in tz,
 * and refused when tz is NULL) or an epoch number (cp_time_from_epoch(): s, ms, us or ns by
 * magnitude). The result must lie in [CP_TIME_MIN_MS, CP_TIME_MAX_MS) (years 1970..2200).
 * BAD_TIMESTAMP texts: "timestamp '2026-02-30T10:00:00Z' is not an RFC 3339 time",
 * "timestamp 1e+25 is not between 1970 and 2200"; another type is WRONG_TYPE
 * "timestamp is a boolean, expected string or number". */
int cp_json_get_time(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                     const struct cp_tz *tz, int64_t *ret_ms, bool *ret_present);

#endif
