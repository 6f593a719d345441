/* golden.c - table-driven driver tests (STYLE.md 2.8). Usage: golden <tests/drivers dir>.
 *
 * Every subdirectory is named after a driver of drivers/drivers.def and holds cases:
 *   NNN-<case>.in         the raw payload bytes
 *   NNN-<case>.topic      optional topic (trailing newline ignored); default "city/parking/test/counter"
 *   NNN-<case>.want.json  {"readings":[{"sensor_id","quantity","value","ts_ms"}...]} in order,
 *                         or {"error":"<reason label>","text":"<exact text>"}, or {"nodata":true};
 *                         readings may come with "partial":{"error","text","count"} when the driver
 *                         dropped a part of the message (cp_batch_note_partial)
 *   driver.conf           optional `key value` lines: the driver's config section
 * The receive time is fixed at 2026-03-01T10:00:00Z. Values compare within 1e-9, the rest exactly.
 * Adding a case means adding files; each case is one cmocka test named "<driver>/<case>". */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_err.h"
#include "citypulse/cp_reading.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
/* cmocka.h uses jmp_buf, va_list and size_t without including their headers. */
#include <cmocka.h>

#define RX_MS         INT64_C(1772359200000)
#define DEFAULT_TOPIC "city/parking/test/counter"
#define VALUE_EPS     1e-9

#define CP_DRIVER(n) extern const struct cp_driver cp_driver_##n;
#include "../../drivers/drivers.def"
#undef CP_DRIVER

static const struct cp_driver *const all_drivers[] = {
#define CP_DRIVER(n) &cp_driver_##n,
#include "../../drivers/drivers.def"
#undef CP_DRIVER
};

/* One driver directory: the driver, its config and its state, shared by its cases. */
struct suite {
        const struct cp_driver *drv;
        char *dir;
        struct cp_conf_kv *kv;
        size_t nkv;
        char *conf_text; /* the kv strings point into it */
        void *state;
        char *setup_error; /* set when the directory itself is broken; every case then fails */
};

struct golden_case {
        struct suite *suite;
        char *name; /* "<driver>/<case>" */
        char *stem; /* "<dir>/<case>" */
        bool stray; /* a file that is not part of a complete case */
};

static unsigned passed;

static int read_all(const char *path, char **ret_buf, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        size_t len = 0, cap = 0;
        int r = 0;

        if (!f)
                return -errno;
        for (;;) {
                size_t n;

                if (len == cap) {
                        char *nb;

                        cap = cap ? cap * 2 : 4096;
                        nb = realloc(buf, cap + 1);
                        if (!nb) {
                                r = -ENOMEM;
                                goto out_close;
                        }
                        buf = nb;
                }
                n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0) {
                        if (ferror(f))
                                r = -EIO;
                        break;
                }
        }
        buf[len] = '\0';
out_close:
        (void)fclose(f);
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}

static char *path_join(const char *a, const char *b, const char *c)
{
        size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
        char *p = malloc(n);

        if (p)
                (void)snprintf(p, n, "%s%s%s", a, b, c);
        return p;
}

static bool has_suffix(const char *s, const char *suffix)
{
        size_t ls = strlen(s), lx = strlen(suffix);

        return ls > lx && strcmp(s + ls - lx, suffix) == 0;
}

/* driver.conf: `key value` per line, '#' comments; the strings are cut in place in conf_text. */
static int load_conf(struct suite *s)
{
        char *path = path_join(s->dir, "/", "driver.conf"), *line, *save = NULL;
        size_t len;
        int r;

        if (!path)
                return -ENOMEM;
        r = read_all(path, &s->conf_text, &len);
        free(path);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        for (line = strtok_r(s->conf_text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *key = line + strspn(line, " \t"), *val;
                struct cp_conf_kv *nkv;

                if (*key == '\0' || *key == '#')
                        continue;
                val = key + strcspn(key, " \t");
                if (*val != '\0')
                        *val++ = '\0';
                val += strspn(val, " \t");
                val[strcspn(val, "\r")] = '\0';
                nkv = realloc(s->kv, (s->nkv + 1) * sizeof(*s->kv));
                if (!nkv)
                        return -ENOMEM;
                s->kv = nkv;
                s->kv[s->nkv++] = (struct cp_conf_kv){key, val};
        }
        return 0;
}

static void suite_setup(struct suite *s, const char *name)
{
        struct cp_conf_section sec;
        char err[256] = "";
        int r;

        for (size_t i = 0; i < CP_ARRAY_LEN(all_drivers); i++) {
                if (strcmp(all_drivers[i]->name, name) == 0)
                        s->drv = all_drivers[i];
        }
        if (!s->drv) {
                s->setup_error = strdup("no driver of that name in drivers/drivers.def");
                return;
        }
        if (s->drv->abi != CP_DRIVER_ABI) {
                s->setup_error = strdup("driver ABI mismatch");
                return;
        }
        r = load_conf(s);
        if (r < 0) {
                s->setup_error = strdup("cannot read driver.conf");
                return;
        }
        sec = (struct cp_conf_section){s->drv->name, s->kv, s->nkv};
        if (s->drv->init) {
                r = s->drv->init(&sec, &s->state, err, sizeof(err));
                if (r < 0) {
                        char msg[400];

                        (void)snprintf(msg, sizeof(msg), "init failed (%s): %s", cp_err_name(r), err);
                        s->setup_error = strdup(msg);
                }
        }
}

static void suite_free(struct suite *s)
{
        if (s->drv && s->drv->free && !s->setup_error)
                s->drv->free(s->state);
        free(s->dir);
        free(s->kv);
        free(s->conf_text);
        free(s->setup_error);
}

static void print_batch(const struct cp_batch *b)
{
        for (size_t i = 0; i < b->n && i < CP_BATCH_CAP; i++)
                print_error("    got[%zu] sensor_id='%s' quantity=%s value=%.17g ts_ms=%lld\n", i,
                            b->v[i].sensor_id,
                            cp_quantity_name(b->v[i].quantity) ? cp_quantity_name(b->v[i].quantity) : "?",
                            b->v[i].value, (long long)b->v[i].ts_ms);
}

static const char *rc_name(int rc)
{
        return rc == 0 ? "0" : cp_err_name(rc);
}

/* The check_* functions describe the first difference in why[] and return false. */
#define WHY_LEN 1024

static bool check_readings(int rc, const struct cp_batch *b, const json_t *want, char *why)
{
        size_t nwant = json_array_size(want);

        if (rc != 0) {
                (void)snprintf(why, WHY_LEN, "decode returned %s, reason %s '%s'; want %zu readings",
                               rc_name(rc), cp_reason_label(b->reason), b->text, nwant);
                return false;
        }
        if (b->n != nwant) {
                (void)snprintf(why, WHY_LEN, "got %zu readings, want %zu", b->n, nwant);
                return false;
        }
        for (size_t i = 0; i < nwant; i++) {
                const json_t *w = json_array_get(want, i);
                const char *id = json_string_value(json_object_get(w, "sensor_id"));
                const char *q = json_string_value(json_object_get(w, "quantity"));
                const json_t *value = json_object_get(w, "value"), *ts = json_object_get(w, "ts_ms");
                const struct cp_reading *g = &b->v[i];
                const char *gq = cp_quantity_name(g->quantity);

                if (!id || !q || !json_is_number(value) || !json_is_integer(ts)) {
                        (void)snprintf(why, WHY_LEN,
                                       "want.json readings[%zu] needs sensor_id, quantity, value, ts_ms", i);
                        return false;
                }
                if (strcmp(g->sensor_id, id) != 0 || !gq || strcmp(gq, q) != 0 ||
                    !(fabs(g->value - json_number_value(value)) <= VALUE_EPS) ||
                    g->ts_ms != json_integer_value(ts) || g->rx_ms != RX_MS) {
                        (void)snprintf(
                            why, WHY_LEN,
                            "reading %zu is sensor_id='%s' quantity=%s value=%.17g ts_ms=%lld rx_ms=%lld, "
                            "want sensor_id='%s' quantity=%s value=%.17g ts_ms=%lld rx_ms=%lld",
                            i, g->sensor_id, gq ? gq : "?", g->value, (long long)g->ts_ms,
                            (long long)g->rx_ms, id, q, json_number_value(value),
                            (long long)json_integer_value(ts), (long long)RX_MS);
                        return false;
                }
        }
        return true;
}

static bool check_error(int rc, const struct cp_batch *b, const json_t *want, char *why)
{
        const char *label = json_string_value(json_object_get(want, "error"));
        const char *text = json_string_value(json_object_get(want, "text"));

        if (!label || !text) {
                (void)snprintf(why, WHY_LEN, "want.json needs \"error\" and \"text\" strings");
                return false;
        }
        if (rc >= 0 || rc == -ENODATA) {
                (void)snprintf(why, WHY_LEN, "decode returned %s with %zu readings, want error %s '%s'",
                               rc_name(rc), b->n, label, text);
                return false;
        }
        if (b->n != 0) {
                (void)snprintf(why, WHY_LEN, "decode failed but left %zu readings (out->n must be 0)", b->n);
                return false;
        }
        if (strcmp(cp_reason_label(b->reason), label) != 0 || strcmp(b->text, text) != 0) {
                (void)snprintf(why, WHY_LEN, "got error %s '%s', want %s '%s'", cp_reason_label(b->reason),
                               b->text, label, text);
                return false;
        }
        return true;
}

static bool check_nodata(int rc, const struct cp_batch *b, char *why)
{
        if (rc == -ENODATA && b->n == 0)
                return true;
        (void)snprintf(why, WHY_LEN, "decode returned %s with %zu readings, reason %s '%s'; want nodata",
                       rc_name(rc), b->n, cp_reason_label(b->reason), b->text);
        return false;
}

static int read_case_file(const struct golden_case *gc, const char *suffix, char **ret_buf, size_t *ret_len)
{
        char *path = path_join(gc->stem, suffix, "");
        int r;

        if (!path)
                return -ENOMEM;
        r = read_all(path, ret_buf, ret_len);
        free(path);
        return r;
}

/* The files of one case, read whole. */
struct case_files {
        char *in, *topic, *want;
        size_t in_len, want_len;
};

static void case_files_done(struct case_files *cf)
{
        free(cf->in);
        free(cf->topic);
        free(cf->want);
}

static bool read_case(const struct golden_case *gc, struct case_files *cf, char *why)
{
        size_t len;
        int rc;

        rc = read_case_file(gc, ".in", &cf->in, &cf->in_len);
        if (rc < 0) {
                (void)snprintf(why, WHY_LEN, "cannot read .in: %s", cp_err_name(rc));
                return false;
        }
        rc = read_case_file(gc, ".topic", &cf->topic, &len);
        if (rc < 0 && rc != -ENOENT) {
                (void)snprintf(why, WHY_LEN, "cannot read .topic: %s", cp_err_name(rc));
                return false;
        }
        if (cf->topic)
                cf->topic[strcspn(cf->topic, "\r\n")] = '\0';
        rc = read_case_file(gc, ".want.json", &cf->want, &cf->want_len);
        if (rc < 0) {
                (void)snprintf(why, WHY_LEN, "cannot read .want.json: %s", cp_err_name(rc));
                return false;
        }
        return true;
}

/* A message decoded with a dropped part: "partial":{"error":"<label>","text":"<text>","count":N}.
 * Without "partial" in want.json, nothing may have been dropped. */
static bool check_partial(const struct cp_batch *b, const json_t *want, char *why)
{
        const char *label = json_string_value(json_object_get(want, "error"));
        const char *text = json_string_value(json_object_get(want, "text"));
        json_int_t count = json_integer_value(json_object_get(want, "count"));

        if (!want) {
                if (b->partial == CP_REASON_NONE)
                        return true;
                (void)snprintf(why, WHY_LEN, "unexpected dropped part %s '%s'", cp_reason_label(b->partial),
                               b->partial_text);
                return false;
        }
        if (!label || !text) {
                (void)snprintf(why, WHY_LEN, "\"partial\" needs \"error\" and \"text\" strings");
                return false;
        }
        if (b->partial == CP_REASON_NONE || strcmp(cp_reason_label(b->partial), label) != 0 ||
            strcmp(b->partial_text, text) != 0 || (count && (json_int_t)b->partial_count != count)) {
                (void)snprintf(why, WHY_LEN, "got dropped part %s '%s' x%u, want %s '%s' x%lld",
                               cp_reason_label(b->partial), b->partial_text, b->partial_count, label, text,
                               (long long)count);
                return false;
        }
        return true;
}

static bool check_result(int rc, const struct cp_batch *b, const json_t *want, char *why)
{
        const json_t *readings = json_object_get(want, "readings");

        if (json_is_array(readings))
                return check_readings(rc, b, readings, why) && check_partial(b, json_object_get(want, "partial"), why);
        if (json_object_get(want, "error"))
                return check_error(rc, b, want, why);
        if (json_is_true(json_object_get(want, "nodata")))
                return check_nodata(rc, b, why);
        (void)snprintf(why, WHY_LEN, "want.json has none of readings, error, nodata");
        return false;
}

static bool run_decode(const struct golden_case *gc, char *why)
{
        const struct suite *s = gc->suite;
        struct case_files cf = {0};
        uint8_t *payload = NULL;
        struct cp_batch *b = NULL;
        json_t *want = NULL;
        json_error_t jerr;
        struct cp_msg msg;
        bool ok = false;

        if (!read_case(gc, &cf, why))
                goto out;
        want = json_loadb(cf.want, cf.want_len, 0, &jerr);
        if (!json_is_object(want)) {
                (void)snprintf(why, WHY_LEN, ".want.json: %s at %d:%d", want ? "not an object" : jerr.text,
                               jerr.line, jerr.column);
                goto out;
        }
        /* An exact-size copy without terminator, so that ASan catches a driver reading past the end. */
        payload = malloc(cf.in_len ? cf.in_len : 1);
        b = malloc(sizeof(*b));
        if (!payload || !b) {
                (void)snprintf(why, WHY_LEN, "out of memory");
                goto out;
        }
        memcpy(payload, cf.in, cf.in_len);
        /* Poisoned, as a reused batch would be; only the documented fields are reset. */
        memset(b, 0xa5, sizeof(*b));
        cp_batch_reset(b);
        msg = (struct cp_msg){cf.topic ? cf.topic : DEFAULT_TOPIC, payload, cf.in_len, RX_MS};
        ok = check_result(s->drv->decode(s->state, &msg, b), b, want, why);
        if (!ok)
                print_batch(b);
out:
        json_decref(want);
        free(b);
        free(payload);
        case_files_done(&cf);
        return ok;
}

static void run_case(void **state)
{
        const struct golden_case *gc = *state;
        char why[WHY_LEN] = "";

        if (gc->suite->setup_error)
                fail_msg("%s: %s: %s", gc->name, gc->suite->dir, gc->suite->setup_error);
        if (gc->stray)
                fail_msg("%s: unexpected file: a case is NNN-name.in + NNN-name.want.json (+ NNN-name.topic)",
                         gc->name);
        /* Everything is freed before failing: cmocka leaves a failed test through longjmp. */
        if (!run_decode(gc, why))
                fail_msg("%s: %s", gc->name, why);
        passed++;
}

static int skip_hidden(const struct dirent *d)
{
        return d->d_name[0] != '.';
}

/* Whether the case `stem` of `f` (a .want.json or .topic file) has its .in file. */
static bool has_input(const struct suite *s, const char *f, size_t stem_len)
{
        char *stem = strndup(f, stem_len), *path = stem ? path_join(s->dir, "/", stem) : NULL;
        char *in = path ? path_join(path, ".in", "") : NULL;
        struct stat st;
        bool r = in && stat(in, &st) == 0;

        free(stem);
        free(path);
        free(in);
        return r;
}

/* Adds the cases of one driver directory. A file that belongs to no complete case becomes a failing
 * case, so that a misnamed file ("001-x.want" for ".want.json") cannot silently skip a test. */
static int add_suite(const char *root, const char *name, struct suite *s, struct golden_case **cases,
                     size_t *ncases)
{
        struct dirent **ents;
        int n, r = 0;

        s->dir = path_join(root, "/", name);
        if (!s->dir)
                return -ENOMEM;
        suite_setup(s, name);
        n = scandir(s->dir, &ents, skip_hidden, alphasort);
        if (n < 0)
                return -errno;
        for (int i = 0; i < n; i++) {
                const char *f = ents[i]->d_name;
                bool is_in = has_suffix(f, ".in"), stray;
                struct golden_case *gc;

                if (strcmp(f, "driver.conf") == 0)
                        continue;
                if (has_suffix(f, ".want.json") || has_suffix(f, ".topic")) {
                        size_t stem_len = strlen(f) - (has_suffix(f, ".topic") ? 6 : 10);

                        if (has_input(s, f, stem_len))
                                continue;
                        stray = true;
                } else {
                        stray = !is_in;
                }
                gc = realloc(*cases, (*ncases + 1) * sizeof(**cases));
                if (!gc) {
                        r = -ENOMEM;
                        break;
                }
                *cases = gc;
                gc = &gc[(*ncases)++];
                *gc = (struct golden_case){.suite = s, .stray = stray};
                gc->name = path_join(name, "/", f);
                gc->stem = path_join(s->dir, "/", f);
                if (!gc->name || !gc->stem) {
                        r = -ENOMEM;
                        break;
                }
                /* "<driver>/001-x.in" is shown as "<driver>/001-x". */
                if (is_in) {
                        gc->name[strlen(gc->name) - 3] = '\0';
                        gc->stem[strlen(gc->stem) - 3] = '\0';
                }
        }
        for (int i = 0; i < n; i++)
                free(ents[i]);
        free(ents);
        return r;
}

static bool is_dir(const char *root, const char *name)
{
        char *path = path_join(root, "/", name);
        struct stat st;
        bool r;

        r = path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        free(path);
        return r;
}

/* Everything main() builds, released by run_done(). */
struct run {
        struct dirent **ents;
        int nents;
        struct suite *suites;
        struct golden_case *cases;
        size_t ncases;
};

static void run_done(struct run *run)
{
        for (size_t i = 0; i < run->ncases; i++) {
                free(run->cases[i].name);
                free(run->cases[i].stem);
        }
        for (int i = 0; run->suites && i < run->nents; i++)
                suite_free(&run->suites[i]);
        for (int i = 0; i < run->nents; i++)
                free(run->ents[i]);
        free(run->ents);
        free(run->cases);
        free(run->suites);
}

/* One suite per driver directory under root, one case per .in file. */
static int collect(const char *root, struct run *run)
{
        run->nents = scandir(root, &run->ents, skip_hidden, alphasort);
        if (run->nents < 0) {
                run->nents = 0;
                (void)fprintf(stderr, "golden: cannot read '%s': %s\n", root, strerror(errno));
                return -1;
        }
        run->suites = calloc((size_t)run->nents + 1, sizeof(*run->suites));
        if (!run->suites)
                return -1;
        for (int i = 0; i < run->nents; i++) {
                const char *name = run->ents[i]->d_name;

                /* tests/drivers also holds this runner's source. */
                if (!is_dir(root, name))
                        continue;
                if (add_suite(root, name, &run->suites[i], &run->cases, &run->ncases) < 0) {
                        (void)fprintf(stderr, "golden: cannot list '%s/%s'\n", root, name);
                        return -1;
                }
        }
        if (run->ncases == 0) {
                (void)fprintf(stderr, "golden: no cases under '%s'\n", root);
                return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct run run = {0};
        struct CMUnitTest *tests = NULL;
        int failed = 1;

        if (argc != 2) {
                (void)fprintf(stderr, "usage: %s <tests/drivers dir>\n", argv[0]);
                return 2;
        }
        if (collect(argv[1], &run) < 0)
                goto out;
        tests = calloc(run.ncases, sizeof(*tests));
        if (!tests)
                goto out;
        for (size_t i = 0; i < run.ncases; i++)
                tests[i] = (struct CMUnitTest){run.cases[i].name, run_case, NULL, NULL, &run.cases[i]};
        /* The cmocka_run_group_tests() macro needs a static array; this is the function behind it. */
        failed = _cmocka_run_group_tests("golden", tests, run.ncases, NULL, NULL);
        printf("golden: %u passed, %zu failed\n", passed, run.ncases - passed);
out:
        free(tests);
        run_done(&run);
        return failed ? 1 : 0;
}
