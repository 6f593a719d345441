/* cp_json.c - jansson helpers for JSON drivers (cp_json.h): payload loading with reasons a person can
 * act on, and typed getters whose texts name the JSON path. Pure: no logging, no globals.
 *
 * Numbers in texts are printed with "%g"/strtod, which follow LC_NUMERIC; the daemon never calls
 * setlocale(), so they stay in the C locale. */
#include "citypulse/cp_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for a path in texts; text[] itself is CP_REASON_TEXT_MAX, so longer paths are cut anyway. */
#define NAME_LEN 128
#define CP_STR_(x) #x
#define CP_STR(x)  CP_STR_(x)

static void join_path(char *buf, size_t size, const char *path, const char *key)
{
        if (!path || !path[0])
                (void)snprintf(buf, size, "%s", key ? key : "");
        else if (!key || !key[0])
                (void)snprintf(buf, size, "%s", path);
        else
                (void)snprintf(buf, size, key[0] == '[' ? "%s%s" : "%s.%s", path, key);
}

/* The shortest "%g" form that reads back as the same double: 0.1, not 0.10000000000000001. */
static void fmt_double(double d, char *buf, size_t size)
{
        for (int prec = 1; prec <= 17; prec++) {
                (void)snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return;
        }
}

static void fmt_number(const json_t *v, char *buf, size_t size)
{
        if (json_is_integer(v))
                (void)snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
                fmt_double(json_number_value(v), buf, size);
}

const char *cp_json_type_name(const json_t *v)
{
        if (!v)
                return "nothing";
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "an unknown value";
}

int cp_json_fail_type(struct cp_batch *b, const char *path, const char *key, const json_t *v,
                      const char *expected)
{
        char name[NAME_LEN];

        join_path(name, sizeof(name), path, key);
        return cp_batch_fail(b, CP_REASON_WRONG_TYPE, "%s is %s, expected %s", name, cp_json_type_name(v),
                             expected);
}

static int load_error(struct cp_batch *b, const json_error_t *err)
{
        switch (json_error_code(err)) {
        case json_error_out_of_memory:
                (void)cp_batch_fail(b, CP_REASON_TOO_LARGE, "out of memory parsing JSON");
                return -ENOMEM;
        case json_error_stack_overflow:
                return cp_batch_fail(b, CP_REASON_TOO_LARGE, "JSON nested too deeply at %d:%d", err->line,
                                     err->column);
        case json_error_invalid_utf8:
                return cp_batch_fail(b, CP_REASON_BAD_JSON, "invalid UTF-8 at %d:%d: %s", err->line,
                                     err->column, err->text);
        case json_error_numeric_overflow:
                /* Valid JSON syntax, but no double or int64 holds it: the value is the problem. */
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "number out of range at %d:%d: %s", err->line,
                                     err->column, err->text);
        case json_error_null_character:
                /* jansson's own text names its JSON_ALLOW_NUL flag, which means nothing to an operator. */
                return cp_batch_fail(b, CP_REASON_BAD_JSON, "invalid JSON at %d:%d: \\u0000 in a string",
                                     err->line, err->column);
        default:
                return cp_batch_fail(b, CP_REASON_BAD_JSON, "invalid JSON at %d:%d: %s", err->line,
                                     err->column, err->text);
        }
}

int cp_json_load(const struct cp_msg *msg, struct cp_batch *b, json_t **ret_root)
{
        json_error_t err;
        json_t *root;

        if (!msg || !b || !ret_root)
                return -EINVAL;
        if (msg->len == 0 || !msg->payload)
                return cp_batch_fail(b, CP_REASON_EMPTY, "empty payload");
        if (msg->len > CP_JSON_MAX_BYTES)
                return cp_batch_fail(b, CP_REASON_TOO_LARGE, "payload is %zu bytes, limit %d", msg->len,
                                     CP_JSON_MAX_BYTES);
        /* JSON text never holds a raw NUL; one means protobuf or another binary format on the topic. */
        if (memchr(msg->payload, 0, msg->len))
                return cp_batch_fail(b, CP_REASON_BAD_FORMAT, "binary payload, expected JSON");
        root = json_loadb((const char *)msg->payload, msg->len, JSON_DECODE_ANY, &err);
        if (!root)
                return load_error(b, &err);
        *ret_root = root;
        return 0;
}

/* Returns 1 with *ret_v set, 0 for an absent optional field, or a negative errno. */
static int lookup(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                  json_t **ret_v, bool *ret_present)
{
        char name[NAME_LEN];
        json_t *v;

        *ret_v = NULL;
        if (ret_present)
                *ret_present = false;
        if (!json_is_object(obj)) {
                (void)cp_json_fail_type(b, NULL, path && path[0] ? path : "payload", obj, "object");
                return -EPROTO;
        }
        v = json_object_get(obj, key);
        if (v && !json_is_null(v)) {
                *ret_v = v;
                return 1;
        }
        if (!required)
                return 0;
        join_path(name, sizeof(name), path, key);
        (void)cp_batch_fail(b, CP_REASON_MISSING_FIELD, "%s is %s", name, v ? "null" : "missing");
        return -EPROTO;
}

int cp_json_get_number(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                       bool required, double *ret, bool *ret_present)
{
        json_t *v;
        int r = lookup(b, obj, path, key, required, &v, ret_present);

        if (r <= 0)
                return r;
        if (!json_is_number(v))
                return cp_json_fail_type(b, path, key, v, "number");
        *ret = json_number_value(v);
        if (ret_present)
                *ret_present = true;
        return 0;
}

/* Out-of-range texts for counts; formatting happens only on this path, never for a valid count. */
static int count_fail(struct cp_batch *b, const char *path, const char *key, const json_t *v, const char *expected)
{
        char name[NAME_LEN], num[40];

        join_path(name, sizeof(name), path, key);
        fmt_number(v, num, sizeof(num));
        return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s is %s, expected %s", name, num, expected);
}

int cp_json_get_count(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                      int64_t *ret, bool *ret_present)
{
        json_t *v;
        double d;
        int r = lookup(b, obj, path, key, required, &v, ret_present);

        if (r <= 0)
                return r;
        if (json_is_integer(v)) {
                /* Integers are compared as integers: a double would round values near INT64_MAX. */
                json_int_t i = json_integer_value(v);
                if (i < 0)
                        return count_fail(b, path, key, v, ">= 0");
                if (i > CP_JSON_COUNT_MAX)
                        return count_fail(b, path, key, v, "<= " CP_STR(CP_JSON_COUNT_MAX));
                *ret = (int64_t)i;
        } else if (json_is_real(v)) {
                d = json_real_value(v);
                if (d < 0)
                        return count_fail(b, path, key, v, ">= 0");
                if (d != floor(d))
                        return count_fail(b, path, key, v, "a whole number");
                if (d > CP_JSON_COUNT_MAX)
                        return count_fail(b, path, key, v, "<= " CP_STR(CP_JSON_COUNT_MAX));
                *ret = (int64_t)d;
        } else {
                return cp_json_fail_type(b, path, key, v, "number");
        }
        if (ret_present)
                *ret_present = true;
        return 0;
}

int cp_json_get_bool(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                     bool *ret, bool *ret_present)
{
        json_t *v;
        int r = lookup(b, obj, path, key, required, &v, ret_present);

        if (r <= 0)
                return r;
        if (!json_is_boolean(v))
                return cp_json_fail_type(b, path, key, v, "boolean");
        *ret = json_is_true(v);
        if (ret_present)
                *ret_present = true;
        return 0;
}

int cp_json_get_string(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                       bool required, size_t max_len, const char **ret, bool *ret_present)
{
        char name[NAME_LEN];
        json_t *v;
        int r = lookup(b, obj, path, key, required, &v, ret_present);

        if (r <= 0)
                return r;
        if (!json_is_string(v))
                return cp_json_fail_type(b, path, key, v, "string");
        if (json_string_length(v) > max_len) {
                join_path(name, sizeof(name), path, key);
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s is %zu bytes long, limit %zu", name,
                                     json_string_length(v), max_len);
        }
        *ret = json_string_value(v);
        if (ret_present)
                *ret_present = true;
        return 0;
}

int cp_json_get_id(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                   bool allow_integer, char *ret)
{
        char name[NAME_LEN], num[32];
        const char *s, *problem;
        json_t *v;
        size_t len;
        int r = lookup(b, obj, path, key, true, &v, NULL);

        if (r < 0)
                return r;
        if (json_is_string(v)) {
                s = json_string_value(v);
                len = json_string_length(v);
        } else if (allow_integer && json_is_integer(v)) {
                (void)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                s = num;
                len = strlen(num);
        } else {
                return cp_json_fail_type(b, path, key, v, allow_integer ? "string or integer" : "string");
        }
        problem = cp_sensor_id_problem(s, len);
        if (problem) {
                join_path(name, sizeof(name), path, key);
                if (len == 0)
                        return cp_batch_fail(b, CP_REASON_BAD_ID, "%s is empty", name);
                if (len >= CP_SENSOR_ID_MAX)
                        return cp_batch_fail(b, CP_REASON_BAD_ID, "%s is %zu bytes long, limit %d", name, len,
                                             CP_SENSOR_ID_MAX - 1);
                return cp_batch_fail(b, CP_REASON_BAD_ID, "%s '%s' %s", name, s, problem);
        }
        memcpy(ret, s, len + 1);
        return 0;
}

static int get_container(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                         bool required, json_type type, json_t **ret, bool *ret_present)
{
        json_t *v;
        int r;

        *ret = NULL;
        r = lookup(b, obj, path, key, required, &v, ret_present);
        if (r <= 0)
                return r;
        if (json_typeof(v) != type)
                return cp_json_fail_type(b, path, key, v, type == JSON_OBJECT ? "object" : "array");
        *ret = v;
        if (ret_present)
                *ret_present = true;
        return 0;
}

int cp_json_get_object(struct cp_batch *b, const json_t *obj, const char *path, const char *key,
                       bool required, json_t **ret, bool *ret_present)
{
        return get_container(b, obj, path, key, required, JSON_OBJECT, ret, ret_present);
}

int cp_json_get_array(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                      json_t **ret, bool *ret_present)
{
        return get_container(b, obj, path, key, required, JSON_ARRAY, ret, ret_present);
}

/* A bad timestamp: the text starts with the field's path, joined only now that it is needed. */
static int time_fail(struct cp_batch *b, const char *path, const char *key, const char *fmt, ...) CP_PRINTF(4, 5);
static int time_fail(struct cp_batch *b, const char *path, const char *key, const char *fmt, ...)
{
        char name[NAME_LEN], text[CP_REASON_TEXT_MAX];
        va_list ap;

        join_path(name, sizeof(name), path, key);
        va_start(ap, fmt);
        (void)vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        return cp_batch_fail(b, CP_REASON_BAD_TIMESTAMP, "%s%s", name, text);
}

int cp_json_get_time(struct cp_batch *b, const json_t *obj, const char *path, const char *key, bool required,
                     const struct cp_tz *tz, int64_t *ret_ms, bool *ret_present)
{
        char num[40];
        json_t *v;
        int64_t ms;
        int r = lookup(b, obj, path, key, required, &v, ret_present);

        if (r <= 0)
                return r;
        if (json_is_string(v)) {
                /* Quoted up to 64 bytes: enough to show the mistake, short enough for the text. */
                if (cp_time_parse(json_string_value(v), json_string_length(v), tz, &ms) < 0)
                        return time_fail(b, path, key, " '%.64s' is not an RFC 3339 time%s",
                                         json_string_value(v), tz ? "" : " with a UTC offset");
                if (ms < CP_TIME_MIN_MS || ms >= CP_TIME_MAX_MS)
                        return time_fail(b, path, key, " '%.64s' is not between 1970 and 2200",
                                         json_string_value(v));
        } else if (json_is_number(v)) {
                if (cp_time_from_epoch(json_number_value(v), &ms) < 0) {
                        fmt_number(v, num, sizeof(num));
                        return time_fail(b, path, key, " %s is not between 1970 and 2200", num);
                }
        } else {
                return cp_json_fail_type(b, path, key, v, "string or number");
        }
        *ret_ms = ms;
        if (ret_present)
                *ret_present = true;
        return 0;
}
