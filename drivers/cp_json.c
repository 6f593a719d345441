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

void cp_json_fmt_number(const json_t *v, char *buf, size_t size)
{
        if (json_is_integer(v))
                (void)snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
                cp_fmt_double_g(json_number_value(v), buf, size);
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

int cp_json_load_object(const struct cp_msg *msg, struct cp_batch *b, json_t **ret_root)
{
        json_t *root;
        int r = cp_json_load(msg, b, &root);

        if (r < 0)
                return r;
        if (!json_is_object(root)) {
                r = cp_json_fail_type(b, NULL, "payload", root, "object");
                json_decref(root);
                return r;
        }
        *ret_root = root;
        return 0;
}

/* ---- the pruned load (cp_json_load_pruned) ----
 *
 * jansson reads a document byte by byte through a callback and builds a value for every member: a
 * 2 KB TTS envelope costs ~30 us, almost all of it in rx_metadata, settings and correlation_ids that no
 * reading needs. The scanner below checks the whole document against the JSON grammar and copies only
 * the members the keep table names. Every check mirrors one of jansson's (load.c), so that a document
 * the scanner accepts is one jansson accepts with the same values; where mirroring would take more
 * than a few lines (unescaping, big numbers, deep nesting) it gives up instead. */

#define SCAN_MAX_DEPTH  64
#define SCAN_MAX_NUMBER 40 /* bytes; with at most 2 exponent digits no double overflows */

/* Its own sub table, so that everything below a kept-whole value is kept whole too. */
const struct cp_json_keep cp_json_keep_all[] = {{NULL, cp_json_keep_all}};

struct scanner {
        const char *p, *end;
        unsigned depth;
};

static bool scan_value(struct scanner *s, const struct cp_json_keep *sub, json_t **ret);

/* Bytes that stand for themselves inside a string: ASCII from 0x20, but '"' (0x22) and '\\' (0x5c). */
static const bool plain_byte[256] = {[0x20 ... 0x21] = true, [0x23 ... 0x5b] = true, [0x5d ... 0x7f] = true};

/* JSON's white space: space, tab, line feed, carriage return. */
static const bool ws_byte[256] = {[' '] = true, ['\t'] = true, ['\n'] = true, ['\r'] = true};

static inline void skip_ws(struct scanner *s)
{
        while (s->p < s->end && ws_byte[(unsigned char)*s->p])
                s->p++;
}

static bool is_digit(const struct scanner *s, const char *q)
{
        return q < s->end && *q >= '0' && *q <= '9';
}

/* The 4 hex digits of a \u escape at q, or -1. */
static long hex4(const struct scanner *s, const char *q)
{
        long v = 0;

        if (s->end - q < 4)
                return -1;
        for (int i = 0; i < 4; i++) {
                char c = q[i];

                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else
                        return -1;
        }
        return v;
}

/* The escape after the backslash at q, as jansson accepts it: \" \\ \/ \b \f \n \r \t, or \uXXXX that
 * is not \u0000, with surrogates only in high-low pairs. Returns the bytes after the backslash, or 0. */
static size_t escape_len(const struct scanner *s, const char *q)
{
        long v, lo;

        if (q + 1 >= s->end)
                return 0;
        if (strchr("\"\\/bfnrt", q[1]) && q[1] != '\0')
                return 1;
        if (q[1] != 'u' || (v = hex4(s, q + 2)) <= 0 || (v >= 0xdc00 && v <= 0xdfff))
                return 0;
        if (v < 0xd800 || v > 0xdbff)
                return 5;
        if (s->end - q < 12 || q[6] != '\\' || q[7] != 'u' || (lo = hex4(s, q + 8)) < 0xdc00 || lo > 0xdfff)
                return 0;
        return 11;
}

/* A string; *s->p is the opening quote. Well-formed UTF-8 is accepted; escapes only when the string
 * is skipped (ret NULL), since a kept string or a key would have to be unescaped. */
static bool scan_string(struct scanner *s, const char **ret, size_t *ret_len)
{
        const char *q = s->p + 1;

        while (q < s->end) {
                unsigned char c;
                uint32_t cp;
                size_t n;

                /* The common case, a run of plain bytes, in a tight loop. */
                while (q < s->end && plain_byte[(unsigned char)*q])
                        q++;
                if (q >= s->end)
                        break;
                c = (unsigned char)*q;
                if (c == '"') {
                        if (ret) {
                                *ret = s->p + 1;
                                *ret_len = (size_t)(q - *ret);
                        }
                        s->p = q + 1;
                        return true;
                }
                if (c < 0x20)
                        return false;
                n = c == '\\' ? (ret ? 0 : escape_len(s, q))
                              : cp_utf8_seq((const uint8_t *)q, (size_t)(s->end - q), &cp);
                if (n == 0)
                        return false;
                q += c == '\\' ? n + 1 : n;
        }
        return false;
}

/* RFC 8259 number; integers of up to 18 digits and reals of up to SCAN_MAX_NUMBER bytes with at
 * most two exponent digits, so that neither strtoll() nor strtod() can overflow. */
static bool scan_number(struct scanner *s, json_t **ret)
{
        const char *q = s->p, *exp;
        char buf[SCAN_MAX_NUMBER + 1];
        bool real = false;
        size_t len;

        if (q < s->end && *q == '-')
                q++;
        if (!is_digit(s, q))
                return false;
        if (*q == '0')
                q++;
        else
                while (is_digit(s, q))
                        q++;
        if (q < s->end && *q == '.') {
                real = true;
                if (!is_digit(s, ++q))
                        return false;
                while (is_digit(s, q))
                        q++;
        }
        if (q < s->end && (*q == 'e' || *q == 'E')) {
                real = true;
                if (++q < s->end && (*q == '+' || *q == '-'))
                        q++;
                exp = q;
                if (!is_digit(s, q))
                        return false;
                while (is_digit(s, q))
                        q++;
                if (q - exp > 2)
                        return false;
        }
        len = (size_t)(q - s->p);
        if (len > SCAN_MAX_NUMBER || (!real && len - (*s->p == '-') > 18))
                return false;
        if (ret && !real) {
                /* At most 18 digits: the value fits an int64 exactly, as strtoll() would give it. */
                bool neg = *s->p == '-';
                json_int_t v = 0;

                for (const char *d = s->p + neg; d < q; d++)
                        v = v * 10 + (*d - '0');
                if (!(*ret = json_integer(neg ? -v : v)))
                        return false;
        } else if (ret) {
                memcpy(buf, s->p, len);
                buf[len] = '\0';
                if (!(*ret = json_real(strtod(buf, NULL))))
                        return false;
        }
        s->p = q;
        return true;
}

static bool scan_literal(struct scanner *s, const char *word, json_t *v, json_t **ret)
{
        size_t n = strlen(word);

        if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
                return false;
        s->p += n;
        if (ret)
                *ret = v;
        return true;
}

/* Whether key[0..len) ends with the NUL-terminated suffix. */
static bool ends_with(const char *key, size_t len, const char *suffix)
{
        size_t n = strlen(suffix);

        return n <= len && memcmp(key + len - n, suffix, n) == 0;
}

/* The entry of table k for key[0..len), which holds no NUL (scan_string() refuses control bytes): the
 * first whose key is key itself, or a pattern "prefix*suffix" that key fits (cp_json.h). */
static const struct cp_json_keep *find_keep(const struct cp_json_keep *k, const char *key, size_t len)
{
        char first = len ? key[0] : '\0';

        if (k == CP_JSON_KEEP_ALL)
                return k;
        /* Every payload key is looked up, most of them in vain: the first byte settles nearly all, and
         * the rest is compared by hand rather than through a library call. */
        for (; k->key; k++) {
                size_t i = 0;

                if (k->key[0] != first && k->key[0] != '*')
                        continue;
                while (i < len && k->key[i] == key[i] && k->key[i] != '*')
                        i++;
                if (k->key[i] == '*' && ends_with(key + i, len - i, k->key + i + 1))
                        return k;
                if (k->key[i] == '\0' && i == len)
                        return k;
        }
        return NULL;
}

/* One "key": value member of an object; with obj, the value is copied into it as sub says (a
 * duplicate key replaces the earlier value, as in jansson). */
static bool scan_member(struct scanner *s, const struct cp_json_keep *sub, json_t *obj)
{
        const struct cp_json_keep *k = NULL;
        json_t *v = NULL;
        const char *key;
        size_t klen;

        skip_ws(s);
        /* A key is only read where members are kept; elsewhere it may hold escapes. */
        if (s->p >= s->end || *s->p != '"' || !scan_string(s, obj && sub ? &key : NULL, &klen))
                return false;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
                return false;
        s->p++;
        if (obj && sub)
                k = find_keep(sub, key, klen);
        if (!scan_value(s, k ? k->sub : NULL, k ? &v : NULL))
                return false;
        /* The key is valid UTF-8 without escapes (scan_string() checked it); the setter takes v even
         * when it fails. */
        return !v || json_object_setn_new_nocheck(obj, key, klen, v) == 0;
}

/* One element of an array; with arr, copied into it by sub (an array kept as a leaf stays empty). */
static bool scan_element(struct scanner *s, const struct cp_json_keep *sub, json_t *arr)
{
        json_t *v = NULL;

        if (!scan_value(s, sub, arr && sub ? &v : NULL))
                return false;
        /* json_array_append_new() takes v even when it fails. */
        return !v || json_array_append_new(arr, v) == 0;
}

/* An object or an array, *s->p being its opening bracket; with ret, a new one holding what sub keeps
 * (scan_member(), scan_element()). */
static bool scan_container(struct scanner *s, const struct cp_json_keep *sub, json_t **ret)
{
        bool is_object = *s->p == '{';
        char close = is_object ? '}' : ']';
        json_t *c = NULL;

        if (++s->depth > SCAN_MAX_DEPTH)
                return false;
        s->p++;
        if (ret && !(c = is_object ? json_object() : json_array()))
                return false;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
                s->p++;
                goto out_done;
        }
        for (;;) {
                if (!(is_object ? scan_member(s, sub, c) : scan_element(s, sub, c)))
                        goto out_fail;
                skip_ws(s);
                if (s->p < s->end && *s->p == ',') {
                        s->p++;
                        continue;
                }
                if (s->p < s->end && *s->p == close) {
                        s->p++;
                        break;
                }
                goto out_fail;
        }
out_done:
        s->depth--;
        if (ret)
                *ret = c;
        return true;
out_fail:
        json_decref(c);
        return false;
}

/* One value; with ret, its copy (a new reference) as `sub` says (struct cp_json_keep). On failure
 * nothing is left allocated. */
static bool scan_value(struct scanner *s, const struct cp_json_keep *sub, json_t **ret)
{
        const char *str;
        size_t len;

        skip_ws(s);
        if (s->p >= s->end)
                return false;
        switch (*s->p) {
        case '{':
        case '[':
                return scan_container(s, sub, ret);
        case '"':
                if (!scan_string(s, ret ? &str : NULL, &len))
                        return false;
                return !ret || (*ret = json_stringn_nocheck(str, len)) != NULL;
        case 't':
                return scan_literal(s, "true", json_true(), ret);
        case 'f':
                return scan_literal(s, "false", json_false(), ret);
        case 'n':
                return scan_literal(s, "null", json_null(), ret);
        default:
                return scan_number(s, ret);
        }
}

/* The fast reader of cp_json_load_pruned() and cp_json_load_pruned_any(): true with *ret_root when it
 * took the whole payload (an object root only unless any), false to fall back to the full loader. */
static bool load_fast(const struct cp_msg *msg, const struct cp_json_keep *keep, bool any, json_t **ret_root)
{
        struct scanner s;
        json_t *root = NULL;

        /* Empty and oversized payloads go straight to the loader, which names the problem. */
        if (!msg->payload || msg->len == 0 || msg->len > CP_JSON_MAX_BYTES)
                return false;
        s = (struct scanner){(const char *)msg->payload, (const char *)msg->payload + msg->len, 0};
        skip_ws(&s);
        if (s.p < s.end && (any || *s.p == '{') && scan_value(&s, keep, &root)) {
                skip_ws(&s);
                if (s.p == s.end) {
                        *ret_root = root;
                        return true;
                }
                json_decref(root);
        }
        return false;
}

int cp_json_load_pruned(const struct cp_msg *msg, struct cp_batch *b, const struct cp_json_keep *keep,
                        json_t **ret_root)
{
        if (!msg || !b || !ret_root)
                return -EINVAL;
        if (load_fast(msg, keep, false, ret_root))
                return 0;
        return cp_json_load_object(msg, b, ret_root);
}

int cp_json_load_pruned_any(const struct cp_msg *msg, struct cp_batch *b, const struct cp_json_keep *keep,
                            json_t **ret_root)
{
        if (!msg || !b || !ret_root)
                return -EINVAL;
        if (load_fast(msg, keep, true, ret_root))
                return 0;
        return cp_json_load(msg, b, ret_root);
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
        cp_json_fmt_number(v, num, sizeof(num));
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
                        cp_json_fmt_number(v, num, sizeof(num));
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
