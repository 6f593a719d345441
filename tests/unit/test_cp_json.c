/* test_cp_json.c - unit tests for drivers/cp_json.c: payload loading limits, the pruned loader and the
 * typed getters' values and texts. Driver-level behaviour is covered by the golden vectors. */
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h uses jmp_buf, va_list and size_t without including their headers. */
#include <cmocka.h>

#define RX INT64_C(1772359200000)

struct fixture {
        struct cp_batch b;
        json_t *root;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        json_decref(f->root);
        free(f);
        return 0;
}

static int load_len(struct fixture *f, const void *p, size_t len)
{
        /* An exact-size copy: the loader must not read a terminator. */
        uint8_t *copy = malloc(len ? len : 1);
        struct cp_msg msg;
        int r;

        assert_non_null(copy);
        memcpy(copy, p, len);
        msg = (struct cp_msg){"t", copy, len, RX};
        json_decref(f->root);
        f->root = NULL;
        r = cp_json_load(&msg, &f->b, &f->root);
        free(copy);
        return r;
}

static void load_ok(struct fixture *f, const char *s)
{
        int r = load_len(f, s, strlen(s));

        if (r != 0)
                fail_msg("'%s': %s", s, f->b.text);
}

static void expect_fail(const struct fixture *f, int r, enum cp_reason reason, const char *text)
{
        assert_int_equal(r, -EPROTO);
        assert_int_equal(f->b.n, 0);
        assert_string_equal(cp_reason_label(f->b.reason), cp_reason_label(reason));
        assert_string_equal(f->b.text, text);
}

static void test_load_limits(void **state)
{
        struct fixture *f = *state;
        size_t len = CP_JSON_MAX_BYTES;
        char *big = malloc(len + 1);

        assert_non_null(big);
        /* Exactly at the limit is fine. */
        memset(big, ' ', len);
        big[0] = '[';
        big[len - 1] = ']';
        assert_int_equal(load_len(f, big, len), 0);
        assert_true(json_is_array(f->root));
        big[len - 1] = ' ';
        big[len] = ']';
        expect_fail(f, load_len(f, big, len + 1), CP_REASON_TOO_LARGE,
                    "payload is 262145 bytes, limit 262144");
        assert_null(f->root);
        free(big);

        expect_fail(f, load_len(f, "", 0), CP_REASON_EMPTY, "empty payload");
        expect_fail(f, load_len(f, "{\"a\":1}\0", 8), CP_REASON_BAD_FORMAT, "binary payload, expected JSON");
        expect_fail(f, load_len(f, "{\"a\":1} x", 9), CP_REASON_BAD_JSON,
                    "invalid JSON at 1:9: end of file expected near 'x'");
        expect_fail(f, load_len(f, "{\"a\":[1e400]}", 13), CP_REASON_OUT_OF_RANGE,
                    "number out of range at 1:11: real number overflow near '1e400'");
        expect_fail(f, load_len(f, "{\"a\":9223372036854775808}", 25), CP_REASON_OUT_OF_RANGE,
                    "number out of range at 1:24: too big integer near '9223372036854775808'");
        expect_fail(f, load_len(f, "{\"a\":\"\\ud800\"}", 14), CP_REASON_BAD_JSON,
                    "invalid JSON at 1:13: invalid Unicode '\\uD800' near '\"\\ud800\"'");
        assert_int_equal(cp_json_load(NULL, &f->b, &f->root), -EINVAL);

        /* Scalars load; drivers then say what they expected. */
        load_ok(f, "42");
        assert_true(json_is_integer(f->root));
        assert_int_equal(cp_json_fail_type(&f->b, NULL, "payload", f->root, "object"), -EPROTO);
        assert_string_equal(f->b.text, "payload is a number, expected object");
        /* Duplicate keys: the last wins. */
        load_ok(f, "{\"a\":1,\"a\":2}");
        assert_int_equal(json_integer_value(json_object_get(f->root, "a")), 2);
}

static void test_numbers(void **state)
{
        struct fixture *f = *state;
        bool present = true;
        double d = -1;
        int64_t n = -1;

        load_ok(
            f,
            "{\"i\":12,\"r\":-0.5,\"s\":\"12\",\"z\":null,\"big\":1e300,\"f\":10.0,\"neg\":-3,\"frac\":0.1,"
            "\"max\":1000000000,\"over\":1000000001,\"o\":{\"x\":true}}");
        assert_int_equal(cp_json_get_number(&f->b, f->root, NULL, "i", true, &d, &present), 0);
        assert_true(d == 12 && present);
        assert_int_equal(cp_json_get_number(&f->b, f->root, NULL, "r", true, &d, NULL), 0);
        assert_true(d == -0.5);
        /* Optional and absent (or null): success, untouched value, present false. */
        d = 7;
        assert_int_equal(cp_json_get_number(&f->b, f->root, NULL, "nope", false, &d, &present), 0);
        assert_true(d == 7 && !present);
        assert_int_equal(cp_json_get_number(&f->b, f->root, NULL, "z", false, &d, &present), 0);
        assert_true(d == 7 && !present);
        expect_fail(f, cp_json_get_number(&f->b, f->root, NULL, "nope", true, &d, NULL),
                    CP_REASON_MISSING_FIELD, "nope is missing");
        expect_fail(f, cp_json_get_number(&f->b, f->root, "payload", "z", true, &d, NULL),
                    CP_REASON_MISSING_FIELD, "payload.z is null");
        expect_fail(f, cp_json_get_number(&f->b, f->root, NULL, "s", true, &d, NULL), CP_REASON_WRONG_TYPE,
                    "s is a string, expected number");

        assert_int_equal(cp_json_get_count(&f->b, f->root, NULL, "i", true, &n, NULL), 0);
        assert_int_equal(n, 12);
        assert_int_equal(cp_json_get_count(&f->b, f->root, NULL, "f", true, &n, NULL), 0);
        assert_int_equal(n, 10);
        assert_int_equal(cp_json_get_count(&f->b, f->root, NULL, "max", true, &n, NULL), 0);
        assert_int_equal(n, 1000000000);
        expect_fail(f, cp_json_get_count(&f->b, f->root, NULL, "neg", true, &n, NULL), CP_REASON_OUT_OF_RANGE,
                    "neg is -3, expected >= 0");
        expect_fail(f, cp_json_get_count(&f->b, f->root, NULL, "r", true, &n, NULL), CP_REASON_OUT_OF_RANGE,
                    "r is -0.5, expected >= 0");
        expect_fail(f, cp_json_get_count(&f->b, f->root, NULL, "frac", true, &n, NULL),
                    CP_REASON_OUT_OF_RANGE, "frac is 0.1, expected a whole number");
        expect_fail(f, cp_json_get_count(&f->b, f->root, NULL, "over", true, &n, NULL),
                    CP_REASON_OUT_OF_RANGE, "over is 1000000001, expected <= 1000000000");
        expect_fail(f, cp_json_get_count(&f->b, f->root, NULL, "big", true, &n, NULL), CP_REASON_OUT_OF_RANGE,
                    "big is 1e+300, expected <= 1000000000");
        expect_fail(f, cp_json_get_count(&f->b, json_object_get(f->root, "o"), "o", "x", true, &n, NULL),
                    CP_REASON_WRONG_TYPE, "o.x is a boolean, expected number");
}

static void test_other_types(void **state)
{
        struct fixture *f = *state;
        json_t *o = NULL, *a = NULL;
        const char *s = NULL;
        bool v = false, present = false;

        load_ok(f, "{\"t\":true,\"f\":false,\"one\":1,\"str\":\"true\",\"name\":\"Gare\",\"o\":{\"k\":[]},"
                   "\"a\":[{\"x\":1}]}");
        assert_int_equal(cp_json_get_bool(&f->b, f->root, NULL, "t", true, &v, &present), 0);
        assert_true(v && present);
        assert_int_equal(cp_json_get_bool(&f->b, f->root, NULL, "f", true, &v, NULL), 0);
        assert_false(v);
        expect_fail(f, cp_json_get_bool(&f->b, f->root, "decoded_payload", "one", true, &v, NULL),
                    CP_REASON_WRONG_TYPE, "decoded_payload.one is a number, expected boolean");
        expect_fail(f, cp_json_get_bool(&f->b, f->root, "decoded_payload", "str", true, &v, NULL),
                    CP_REASON_WRONG_TYPE, "decoded_payload.str is a string, expected boolean");

        assert_int_equal(cp_json_get_string(&f->b, f->root, NULL, "name", true, 4, &s, &present), 0);
        assert_string_equal(s, "Gare");
        expect_fail(f, cp_json_get_string(&f->b, f->root, NULL, "name", true, 3, &s, NULL),
                    CP_REASON_OUT_OF_RANGE, "name is 4 bytes long, limit 3");
        expect_fail(f, cp_json_get_string(&f->b, f->root, NULL, "t", true, 3, &s, NULL), CP_REASON_WRONG_TYPE,
                    "t is a boolean, expected string");

        assert_int_equal(cp_json_get_object(&f->b, f->root, NULL, "o", true, &o, &present), 0);
        assert_true(json_is_object(o) && present);
        assert_int_equal(cp_json_get_array(&f->b, o, "o", "k", true, &a, NULL), 0);
        assert_true(json_is_array(a));
        assert_int_equal(cp_json_get_object(&f->b, f->root, NULL, "missing", false, &o, &present), 0);
        assert_null(o);
        assert_false(present);
        expect_fail(f, cp_json_get_array(&f->b, f->root, NULL, "o", true, &a, NULL), CP_REASON_WRONG_TYPE,
                    "o is an object, expected array");
        assert_null(a);
        /* Array elements: a key starting with '[' joins without a dot. */
        assert_int_equal(cp_json_get_array(&f->b, f->root, NULL, "a", true, &a, NULL), 0);
        expect_fail(f, cp_json_get_bool(&f->b, json_array_get(a, 0), "a[0]", "x", true, &v, NULL),
                    CP_REASON_WRONG_TYPE, "a[0].x is a number, expected boolean");
        expect_fail(f, cp_json_fail_type(&f->b, "a", "[3]", json_array_get(a, 0), "string"),
                    CP_REASON_WRONG_TYPE, "a[3] is an object, expected string");
        /* A non-object container is reported by its path. */
        expect_fail(f, cp_json_get_bool(&f->b, a, "a", "x", true, &v, NULL), CP_REASON_WRONG_TYPE,
                    "a is an array, expected object");

        assert_string_equal(cp_json_type_name(NULL), "nothing");
        assert_string_equal(cp_json_type_name(json_object_get(f->root, "t")), "a boolean");
}

static void test_ids(void **state)
{
        struct fixture *f = *state;
        char id[CP_SENSOR_ID_MAX];

        load_ok(f, "{\"s\":\"P-GARE\",\"i\":-12,\"r\":1.5,\"e\":\"\",\"w\":\"a/#\",\"c\":\"a\\u001bb\","
                   "\"u\":\"\\u00c9tage\"}");
        assert_int_equal(cp_json_get_id(&f->b, f->root, NULL, "s", false, id), 0);
        assert_string_equal(id, "P-GARE");
        assert_int_equal(cp_json_get_id(&f->b, f->root, NULL, "u", false, id), 0);
        assert_string_equal(id, "Étage");
        assert_int_equal(cp_json_get_id(&f->b, f->root, NULL, "i", true, id), 0);
        assert_string_equal(id, "-12");
        expect_fail(f, cp_json_get_id(&f->b, f->root, NULL, "i", false, id), CP_REASON_WRONG_TYPE,
                    "i is a number, expected string");
        expect_fail(f, cp_json_get_id(&f->b, f->root, NULL, "r", true, id), CP_REASON_WRONG_TYPE,
                    "r is a number, expected string or integer");
        expect_fail(f, cp_json_get_id(&f->b, f->root, "x", "e", false, id), CP_REASON_BAD_ID, "x.e is empty");
        expect_fail(f, cp_json_get_id(&f->b, f->root, NULL, "w", false, id), CP_REASON_BAD_ID,
                    "w 'a/#' contains an MQTT wildcard");
        expect_fail(f, cp_json_get_id(&f->b, f->root, NULL, "c", false, id), CP_REASON_BAD_ID,
                    "c 'a\\x1bb' contains a control character");
        expect_fail(f, cp_json_get_id(&f->b, f->root, NULL, "none", false, id), CP_REASON_MISSING_FIELD,
                    "none is missing");
}

static void test_times(void **state)
{
        struct fixture *f = *state;
        struct cp_tz *paris;
        int64_t ms = 0;
        bool present = false;

        assert_int_equal(cp_tz_load("Europe/Paris", &paris), 0);
        load_ok(f, "{\"iso\":\"2026-03-01T10:00:00.5Z\",\"local\":\"2026-03-01T11:00:00\",\"s\":1772359200,"
                   "\"ms\":1772359200123,\"frac\":1772359200.25,\"neg\":-5,\"old\":\"1969-12-31T23:59:59Z\","
                   "\"bad\":\"yesterday\",\"b\":false,\"huge\":1e25}");
        assert_int_equal(cp_json_get_time(&f->b, f->root, NULL, "iso", true, NULL, &ms, &present), 0);
        assert_int_equal(ms, RX + 500);
        assert_true(present);
        assert_int_equal(cp_json_get_time(&f->b, f->root, NULL, "local", true, paris, &ms, NULL), 0);
        assert_int_equal(ms, RX);
        assert_int_equal(cp_json_get_time(&f->b, f->root, NULL, "s", true, NULL, &ms, NULL), 0);
        assert_int_equal(ms, RX);
        assert_int_equal(cp_json_get_time(&f->b, f->root, NULL, "ms", true, NULL, &ms, NULL), 0);
        assert_int_equal(ms, RX + 123);
        assert_int_equal(cp_json_get_time(&f->b, f->root, NULL, "frac", true, NULL, &ms, NULL), 0);
        assert_int_equal(ms, RX + 250);
        ms = 1;
        assert_int_equal(cp_json_get_time(&f->b, f->root, NULL, "absent", false, NULL, &ms, &present), 0);
        assert_int_equal(ms, 1);
        assert_false(present);
        expect_fail(f, cp_json_get_time(&f->b, f->root, NULL, "local", true, NULL, &ms, NULL),
                    CP_REASON_BAD_TIMESTAMP,
                    "local '2026-03-01T11:00:00' is not an RFC 3339 time with a UTC offset");
        expect_fail(f, cp_json_get_time(&f->b, f->root, "m", "bad", true, paris, &ms, NULL),
                    CP_REASON_BAD_TIMESTAMP, "m.bad 'yesterday' is not an RFC 3339 time");
        expect_fail(f, cp_json_get_time(&f->b, f->root, NULL, "neg", true, paris, &ms, NULL),
                    CP_REASON_BAD_TIMESTAMP, "neg -5 is not between 1970 and 2200");
        expect_fail(f, cp_json_get_time(&f->b, f->root, NULL, "huge", true, paris, &ms, NULL),
                    CP_REASON_BAD_TIMESTAMP, "huge 1e+25 is not between 1970 and 2200");
        expect_fail(f, cp_json_get_time(&f->b, f->root, NULL, "old", true, paris, &ms, NULL),
                    CP_REASON_BAD_TIMESTAMP, "old '1969-12-31T23:59:59Z' is not between 1970 and 2200");
        expect_fail(f, cp_json_get_time(&f->b, f->root, NULL, "b", true, paris, &ms, NULL),
                    CP_REASON_WRONG_TYPE, "b is a boolean, expected string or number");
        cp_tz_free(paris);
}

/* ---- cp_json_load_object() and cp_json_load_pruned() ---- */

static int load_pruned_len(struct fixture *f, const void *p, size_t len, const struct cp_json_keep *keep)
{
        uint8_t *copy = malloc(len ? len : 1);
        struct cp_msg msg;
        int r;

        assert_non_null(copy);
        memcpy(copy, p, len);
        msg = (struct cp_msg){"t", copy, len, RX};
        json_decref(f->root);
        f->root = NULL;
        r = cp_json_load_pruned(&msg, &f->b, keep, &f->root);
        free(copy);
        return r;
}

static int load_pruned(struct fixture *f, const char *s, const struct cp_json_keep *keep)
{
        return load_pruned_len(f, s, strlen(s), keep);
}

/* What cp_json.h promises for one kept value, built from jansson's full tree. */
static json_t *expected_value(json_t *v, const struct cp_json_keep *sub);

/* A table key matches a member: the same name, or "prefix*suffix" and a name that starts with prefix
 * and ends with suffix, the two not overlapping. */
static bool keep_matches(const char *pattern, const char *key)
{
        const char *star = strchr(pattern, '*');
        size_t pre, suf, len = strlen(key);

        if (!star)
                return strcmp(pattern, key) == 0;
        pre = (size_t)(star - pattern);
        suf = strlen(star + 1);
        return len >= pre + suf && strncmp(pattern, key, pre) == 0 && strcmp(key + len - suf, star + 1) == 0;
}

static json_t *expected_object(json_t *obj, const struct cp_json_keep *keep)
{
        json_t *out = json_object();
        const char *key;
        json_t *v;

        json_object_foreach(obj, key, v)
        {
                const struct cp_json_keep *k = NULL;

                if (keep == CP_JSON_KEEP_ALL) {
                        k = keep;
                } else {
                        for (const struct cp_json_keep *e = keep; e && e->key && !k; e++)
                                k = keep_matches(e->key, key) ? e : NULL;
                }
                if (k)
                        json_object_set_new(out, key, expected_value(v, k->sub));
        }
        return out;
}

static json_t *expected_value(json_t *v, const struct cp_json_keep *sub)
{
        json_t *out, *e;
        size_t i;

        if (json_is_object(v))
                return sub ? expected_object(v, sub) : json_object();
        if (!json_is_array(v))
                return json_incref(v);
        out = json_array();
        json_array_foreach(v, i, e)
        {
                if (sub)
                        json_array_append_new(out, expected_value(e, sub));
        }
        return out;
}

/* The pruned load of s has every kept member exactly as the full load has it (cp_json.h's promise).
 * With exact, the tree holds nothing else: the fast reader took the payload (a fallback to the full
 * loader would also hold the members keep omits). */
static void expect_pruned(struct fixture *f, const char *s, const struct cp_json_keep *keep, bool exact)
{
        json_error_t err;
        json_t *full = json_loads(s, JSON_DECODE_ANY, &err), *want, *got;

        assert_non_null(full);
        want = expected_object(full, keep);
        if (load_pruned(f, s, keep) != 0)
                fail_msg("'%s': %s", s, f->b.text);
        got = exact ? json_incref(f->root) : expected_object(f->root, keep);
        if (!json_equal(got, want)) {
                char *g = json_dumps(f->root, JSON_SORT_KEYS), *w = json_dumps(want, JSON_SORT_KEYS);

                fail_msg("'%s': got %s, want %s%s", s, g, w, exact ? " exactly" : "");
        }
        json_decref(got);
        json_decref(want);
        json_decref(full);
}

static const struct cp_json_keep keep_dev[] = {{"id", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_test[] = {
    {"dev", keep_dev},  {"n", NULL}, {"s", NULL},  {"all", CP_JSON_KEEP_ALL},
    {"list", keep_dev}, {"", NULL},  {NULL, NULL},
};

static const struct cp_json_keep keep_pattern[] = {{"sw", NULL}, {"sw:*", keep_dev}, {NULL, NULL}};
static const struct cp_json_keep keep_star[] = {{"*", keep_pattern}, {NULL, NULL}};
static const struct cp_json_keep keep_suffix[] = {
    {"a*_", NULL}, {"*_", keep_dev}, {"x*y*z", NULL}, {NULL, NULL}};

static void test_load_object(void **state)
{
        struct fixture *f = *state;
        struct cp_msg msg = {"t", (const uint8_t *)"[1]", 3, RX};

        assert_int_equal(cp_json_load_object(&msg, &f->b, &f->root), -EPROTO);
        assert_null(f->root);
        assert_string_equal(f->b.text, "payload is an array, expected object");
        msg = (struct cp_msg){"t", (const uint8_t *)"{\"a\":1}", 7, RX};
        assert_int_equal(cp_json_load_object(&msg, &f->b, &f->root), 0);
        assert_true(json_is_object(f->root));
}

/* Every kept member has jansson's type and value; nothing else is there. */
static void test_pruned_values(void **state)
{
        struct fixture *f = *state;

        expect_pruned(f, "{}", keep_test, true);
        expect_pruned(f, "{\"x\":1}", keep_test, true);
        expect_pruned(f, " {\"n\" : 12 , \"s\":\"\u00e9t\u00e9\",\"x\":[1,{\"y\":\"\\\"\"}]}\r\n", keep_test,
                      true);
        expect_pruned(f, "{\"n\":-0,\"s\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}", keep_test, true);
        expect_pruned(f, "{\"n\":123456789012345678}", keep_test, true);
        expect_pruned(f, "{\"n\":-123456789012345678}", keep_test, true);
        expect_pruned(f, "{\"n\":0.1}", keep_test, true);
        expect_pruned(f, "{\"n\":-1.5E+2}", keep_test, true);
        expect_pruned(f, "{\"n\":1e-99}", keep_test, true);
        expect_pruned(f, "{\"n\":10.0}", keep_test, true);
        expect_pruned(f, "{\"n\":true,\"s\":false,\"all\":null}", keep_test, true);
        /* A leaf that is a container is kept empty: only its type is read. */
        expect_pruned(f, "{\"n\":{\"a\":1},\"s\":[1,2]}", keep_test, true);
        /* A table prunes an object and every object in an array. */
        expect_pruned(
            f,
            "{\"dev\":{\"id\":\"a\",\"other\":{\"deep\":[1]}},\"list\":[{\"id\":1,\"z\":2},3,[{\"id\":4}]]}",
            keep_test, true);
        /* KEEP_ALL keeps everything below. */
        expect_pruned(f, "{\"all\":{\"a\":[1,null,{\"b\":\"c\"}],\"d\":{}}}", keep_test, true);
        expect_pruned(f, "{\"all\":[150,null,2.5]}", keep_test, true);
        /* Duplicate keys: the last one, as jansson. */
        expect_pruned(f, "{\"n\":1,\"x\":0,\"n\":2}", keep_test, true);
        expect_pruned(f, "{\"dev\":{\"id\":\"a\"},\"dev\":{\"id\":\"b\"}}", keep_test, true);
        /* An empty key is a key like any other. */
        expect_pruned(f, "{\"\":5}", keep_test, true);
        /* Escapes anywhere but in what is kept or compared with a table. */
        expect_pruned(f, "{\"x\":{\"\\u0041\":\"\\ud83d\\ude00\\/\\b\\f\\t\"},\"n\":1}", keep_test, true);
        /* Patterns: "prefix*" keeps every member that starts with prefix; exact entries come first. */
        expect_pruned(f,
                      "{\"sw:0\":{\"id\":0,\"x\":1},\"sw\":2,\"sw:\":{},\"sw:12\":{\"id\":[1]},\"sx:1\":3}",
                      keep_pattern, true);
        expect_pruned(f, "{\"sw:\\u0041\":1,\"sw:1\":{\"id\":1}}", keep_pattern, false);
        expect_pruned(f, "{\"a\":{\"p\":1,\"q\":{\"z\":2}},\"b\":[{\"\":3}]}", keep_star, true);
        /* "prefix*suffix": both ends, not overlapping; a second '*' is a byte of the suffix. */
        expect_pruned(f,
                      "{\"a_\":1,\"ab_\":{\"id\":2},\"_\":{\"id\":3,\"q\":4},\"b\":5,\"b_x\":6,\"x*y*z\":7,"
                      "\"xAy*z\":8,\"xyz\":9,\"x*y\":10}",
                      keep_suffix, true);
        assert_int_equal(load_pruned(f, "{\"sw\":{\"id\":1},\"sw:1\":{\"id\":2,\"x\":3}}", keep_pattern), 0);
        assert_int_equal(json_object_size(json_object_get(f->root, "sw")),
                         0); /* a leaf: "sw:*" is not "sw" */
        assert_int_equal(json_object_size(f->root), 2);
        assert_int_equal(json_object_size(json_object_get(f->root, "sw:1")), 1);
        /* NULL keeps nothing but the root. */
        assert_int_equal(load_pruned(f, "{\"n\":1}", NULL), 0);
        assert_int_equal(json_object_size(f->root), 0);
}

/* The fast reader's limits: past them the full loader takes over, with its own (equal) result. */
static void test_pruned_fallback(void **state)
{
        struct fixture *f = *state;
        char deep[300];
        size_t n = 0;

        /* An escaped kept key or string, a 19-digit integer, a long real, a 3-digit exponent: all still
         * decoded exactly (jansson's full tree). */
        expect_pruned(f, "{\"\\u006e\":1}", keep_test, false);
        expect_pruned(f, "{\"x\\u0041\":1,\"n\":2}", keep_test, false);
        expect_pruned(f, "{\"s\":\"a\\\"b\"}", keep_test, false);
        expect_pruned(f, "{\"n\":1234567890123456789}", keep_test, false);
        expect_pruned(f, "{\"n\":0.1234567890123456789012345678901234567890}", keep_test, false);
        expect_pruned(f, "{\"n\":1e100}", keep_test, false);
        /* Nesting deeper than the scanner goes. */
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"n\":1,\"x\":");
        for (int i = 0; i < 70; i++)
                deep[n++] = '[';
        for (int i = 0; i < 70; i++)
                deep[n++] = ']';
        deep[n++] = '}';
        deep[n] = '\0';
        expect_pruned(f, deep, keep_test, false);

        /* Errors are the loader's, to the letter. */
        expect_fail(f, load_pruned_len(f, "", 0, keep_test), CP_REASON_EMPTY, "empty payload");
        expect_fail(f, load_pruned_len(f, "{\"n\":1}\0", 8, keep_test), CP_REASON_BAD_FORMAT,
                    "binary payload, expected JSON");
        expect_fail(f, load_pruned(f, "{\"n\":1} x", keep_test), CP_REASON_BAD_JSON,
                    "invalid JSON at 1:9: end of file expected near 'x'");
        expect_fail(f, load_pruned(f, "{\"x\":[1e400],\"n\":1}", keep_test), CP_REASON_OUT_OF_RANGE,
                    "number out of range at 1:11: real number overflow near '1e400'");
        expect_fail(f, load_pruned(f, "{\"x\":\"\\ud800\"}", keep_test), CP_REASON_BAD_JSON,
                    "invalid JSON at 1:13: invalid Unicode '\\uD800' near '\"\\ud800\"'");
        expect_fail(f, load_pruned(f, "{\"x\":\"\\u0000\"}", keep_test), CP_REASON_BAD_JSON,
                    "invalid JSON at 1:13: \\u0000 in a string");
        expect_fail(f, load_pruned(f, "{\"x\":\"\xc0\xaf\"}", keep_test), CP_REASON_BAD_JSON,
                    "invalid UTF-8 at 1:6: unable to decode byte 0xc0 near '\"'");
        expect_fail(f, load_pruned(f, "{\"x\":01}", keep_test), CP_REASON_BAD_JSON,
                    "invalid JSON at 1:6: invalid token near '0'");
        expect_fail(f, load_pruned(f, "[{\"n\":1}]", keep_test), CP_REASON_WRONG_TYPE,
                    "payload is an array, expected object");
        expect_fail(f, load_pruned(f, "\"n\"", keep_test), CP_REASON_WRONG_TYPE,
                    "payload is a string, expected object");
        assert_null(f->root);
        assert_int_equal(cp_json_load_pruned(NULL, &f->b, keep_test, &f->root), -EINVAL);
}

/* cp_json_load_pruned_any(): any root, copied as a member kept with sub = keep. */
static void expect_pruned_any(struct fixture *f, const char *s, const struct cp_json_keep *keep, bool exact)
{
        struct cp_msg msg = {"t", (const uint8_t *)s, strlen(s), RX};
        json_error_t err;
        json_t *full = json_loads(s, JSON_DECODE_ANY, &err), *want, *got;

        assert_non_null(full);
        want = expected_value(full, keep);
        json_decref(f->root);
        f->root = NULL;
        if (cp_json_load_pruned_any(&msg, &f->b, keep, &f->root) != 0)
                fail_msg("'%s': %s", s, f->b.text);
        got = exact ? json_incref(f->root) : expected_value(f->root, keep);
        if (!json_equal(got, want)) {
                char *g = json_dumps(f->root, JSON_SORT_KEYS | JSON_ENCODE_ANY);
                char *w = json_dumps(want, JSON_SORT_KEYS | JSON_ENCODE_ANY);

                fail_msg("'%s': got %s, want %s", s, g, w);
        }
        json_decref(got);
        json_decref(want);
        json_decref(full);
}

static void test_pruned_any(void **state)
{
        struct fixture *f = *state;
        struct cp_msg msg = {"t", (const uint8_t *)"[1,", 3, RX};

        expect_pruned_any(f, "[{\"n\":1,\"x\":2},{\"dev\":{\"id\":3,\"y\":4}},5,[{\"n\":6,\"z\":7}]]",
                          keep_test, true);
        expect_pruned_any(f, " [] ", keep_test, true);
        expect_pruned_any(f, "{\"n\":1,\"x\":2}", keep_test, true);
        expect_pruned_any(f, "\"str\"", keep_test, true);
        expect_pruned_any(f, "12.5", keep_test, true);
        expect_pruned_any(f, "null", keep_test, true);
        expect_pruned_any(f, "[{\"n\":1}]", NULL, true);
        /* Past the fast reader's limits, the full loader (the result compared through keep). */
        expect_pruned_any(f, "[{\"\\u006e\":1,\"x\":2}]", keep_test, false);
        /* Errors are cp_json_load()'s. */
        expect_fail(f, cp_json_load_pruned_any(&msg, &f->b, keep_test, &f->root), CP_REASON_BAD_JSON,
                    "invalid JSON at 1:3: ']' expected near end of file");
}

static void test_fmt_number(void **state)
{
        struct fixture *f = *state;
        char buf[CP_FMT_DOUBLE_MAX];

        load_ok(f, "[20, 20.0, 0.1, -1234567890123456789, 1e300]");
        cp_json_fmt_number(json_array_get(f->root, 0), buf, sizeof(buf));
        assert_string_equal(buf, "20");
        cp_json_fmt_number(json_array_get(f->root, 1), buf, sizeof(buf));
        assert_string_equal(buf, "2e+01");
        cp_json_fmt_number(json_array_get(f->root, 2), buf, sizeof(buf));
        assert_string_equal(buf, "0.1");
        cp_json_fmt_number(json_array_get(f->root, 3), buf, sizeof(buf));
        assert_string_equal(buf, "-1234567890123456789");
        cp_json_fmt_number(json_array_get(f->root, 4), buf, sizeof(buf));
        assert_string_equal(buf, "1e+300");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_load_limits, setup, teardown),
            cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
            cmocka_unit_test_setup_teardown(test_other_types, setup, teardown),
            cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
            cmocka_unit_test_setup_teardown(test_times, setup, teardown),
            cmocka_unit_test_setup_teardown(test_load_object, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pruned_values, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pruned_fallback, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pruned_any, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fmt_number, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
