/* test_rrd.c - the rrd worker against the real librrd in a temp dir: files created and updated with
 * explicit time stamps and read back with rrd_fetch_r, unknown values, out-of-order updates, id to
 * file name encoding, graphs as PNG, queue overflow, draining on stop, and a real rrdcached on a unix
 * socket (started and stopped by PID here). Each test has its own loop and ends with
 * uv_loop_close() == 0. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* clang-format off */
#include <cmocka.h> /* after setjmp.h, stdarg.h and stddef.h, which it uses */
/* clang-format on */

#include "citypulse/cp_err.h"

#include "store_rrd.h"

#include <rrd.h>


/* librrd, pango and fontconfig are built without frame pointers: unwind leak stacks the slow way so
 * that the frames named in tests/lsan.supp are there to match (they are librrd's leaks, not ours). The
 * path is relative to the source tree, where main() changes to (argv[1], "." by default). */
const char *__asan_default_options(void);
const char *__lsan_default_options(void);
const char *__asan_default_options(void)
{
        return "fast_unwind_on_malloc=0:malloc_context_size=64";
}
const char *__lsan_default_options(void)
{
        return "suppressions=tests/lsan.supp:print_suppressions=0";
}

/* A multiple of the 60 s step, in November 2023. */
#define T0 ((int64_t)1700000040)

struct ctx {
        char tmp[64];
        char dir[96];
        uv_loop_t loop;
        struct cp_rrd *r;
        bool stopped;
        pid_t cached_pid;
};

struct graph_result {
        int calls;
        int err;
        unsigned char *png;
        size_t len;
};

static int64_t now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
        return now_us() / 1000;
}

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));

        if (!c)
                return -1;
        snprintf(c->tmp, sizeof(c->tmp), "/tmp/cp-rrd-XXXXXX");
        if (!mkdtemp(c->tmp))
                return -1;
        snprintf(c->dir, sizeof(c->dir), "%s/rrd", c->tmp);
        if (uv_loop_init(&c->loop) < 0)
                return -1;
        c->r = calloc(1, sizeof(*c->r));
        *state = c;
        return c->r ? 0 : -1;
}

static void stop_cached(struct ctx *c)
{
        int status;

        if (c->cached_pid <= 0)
                return;
        kill(c->cached_pid, SIGTERM);
        waitpid(c->cached_pid, &status, 0);
        c->cached_pid = 0;
}

static int teardown(void **state)
{
        struct ctx *c = *state;
        char cmd[128];
        int r;

        stop_cached(c); /* when a test failed half-way */
        snprintf(cmd, sizeof(cmd), "rm -rf %s", c->tmp);
        r = system(cmd);
        free(c->r);
        free(c);
        return r == 0 ? 0 : -1;
}

static void start(struct ctx *c, const char *cached_address)
{
        char err[256] = "";
        int r = cp_rrd_start(c->r, &c->loop, c->dir, cached_address, err, sizeof(err));

        if (r < 0)
                fail_msg("cp_rrd_start: %s (%s)", cp_err_name(r), err);
}

static void on_stopped(struct cp_rrd *r)
{
        struct ctx *c = r->async.loop->data;

        c->stopped = true;
}

/* Runs the loop until done(c, arg) holds, for at most 20 s. */
static void run_until(struct ctx *c, bool (*done)(struct ctx *c, uint64_t arg), uint64_t arg)
{
        int64_t deadline = now_ms() + 20000;

        while (!done(c, arg)) {
                if (now_ms() > deadline)
                        fail_msg("timed out waiting on the rrd worker");
                uv_run(&c->loop, UV_RUN_NOWAIT);
                usleep(500);
        }
}

static bool is_stopped(struct ctx *c, uint64_t arg)
{
        (void)arg;
        return c->stopped;
}

/* Every update submitted so far has been dealt with one way or another. */
static bool updates_done(struct ctx *c, uint64_t n)
{
        struct cp_rrd_stats s;

        cp_rrd_get_stats(c->r, &s);
        return s.updates_applied + s.updates_skipped + s.updates_failed >= n;
}

static bool graph_done(struct ctx *c, uint64_t ptr)
{
        (void)c;
        return ((struct graph_result *)(uintptr_t)ptr)->calls > 0;
}

static void stop(struct ctx *c)
{
        c->loop.data = c;
        cp_rrd_stop(c->r, on_stopped);
        run_until(c, is_stopped, 0);
        assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&c->loop), 0);
}

static void stats(struct ctx *c, struct cp_rrd_stats *s)
{
        cp_rrd_get_stats(c->r, s);
}

static void path_of(struct ctx *c, const char *id, char *buf, size_t len)
{
        char name[CP_RRD_NAME_MAX + 1];

        assert_int_equal(cp_rrd_file_name(id, name, sizeof(name)), 0);
        snprintf(buf, len, "%s/%s", c->dir, name);
}

/* Consolidated values of one file, from the archive with a step of `step` seconds. */
struct series {
        time_t start, end;
        unsigned long step, ds_cnt;
        char **ds_names;
        rrd_value_t *data;
};

static void fetch(const char *path, const char *cf, int64_t from, int64_t to, unsigned long step,
                  struct series *s)
{
        memset(s, 0, sizeof(*s));
        s->start = (time_t)from;
        s->end = (time_t)to;
        s->step = step;
        rrd_clear_error();
        if (rrd_fetch_r(path, cf, &s->start, &s->end, &s->step, &s->ds_cnt, &s->ds_names, &s->data) < 0)
                fail_msg("rrd_fetch_r %s: %s", path, rrd_get_error());
        assert_int_equal(s->step, step);
        assert_int_equal(s->ds_cnt, 2);
}

/* The consolidated value of data source ds for the interval (t - step, t]. */
static double value_at(const struct series *s, int64_t t, unsigned ds)
{
        int64_t row = (t - (int64_t)s->start) / (int64_t)s->step - 1;

        assert_true(row >= 0 && t <= (int64_t)s->end);
        return s->data[row * (int64_t)s->ds_cnt + ds];
}

static void series_free(struct series *s)
{
        for (unsigned long i = 0; i < s->ds_cnt; i++)
                rrd_freemem(s->ds_names[i]);
        rrd_freemem(s->ds_names);
        rrd_freemem(s->data);
}

static int64_t last_update(const char *path)
{
        unsigned long n = 0;
        char **names, **vals;
        time_t last;

        rrd_clear_error();
        if (rrd_lastupdate_r(path, &last, &n, &names, &vals) < 0)
                fail_msg("rrd_lastupdate_r %s: %s", path, rrd_get_error());
        for (unsigned long i = 0; i < n; i++) {
                rrd_freemem(names[i]);
                rrd_freemem(vals[i]);
        }
        rrd_freemem(names);
        rrd_freemem(vals);
        return (int64_t)last;
}

static void submit_facility(struct ctx *c, const char *id, int64_t ts, double occ, double free_spaces)
{
        struct cp_rrd_batch *b = cp_rrd_batch_new();

        assert_non_null(b);
        assert_int_equal(cp_rrd_batch_add_facility(b, id, ts, occ, free_spaces), 0);
        cp_rrd_submit_take(c->r, b);
}

static void test_facility_roundtrip(void **state)
{
        struct ctx *c = *state;
        struct cp_rrd_batch *b = cp_rrd_batch_new();
        struct cp_rrd_stats s;
        struct series se;
        char path[512];

        start(c, NULL);
        /* Two ids in one batch, and one of them out of order inside the batch: the worker sorts. */
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 60, 0.25, 30), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 180, 0.75, 10), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 120, 0.5, 20), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 240, NAN, NAN), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 300, 1.0, 0), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 360, 1.5, -1), 0); /* out of range: U */
        assert_int_equal(cp_rrd_batch_add_facility(b, "P2", T0 + 60, 0.1, 90), 0);
        assert_int_equal(cp_rrd_batch_count(b), 7);
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, 7);
        stats(c, &s);
        assert_int_equal(s.updates_applied, 7);
        assert_int_equal(s.updates_skipped, 0);
        assert_int_equal(s.errors, 0);
        assert_int_equal(s.files_created, 2);
        stop(c);

        path_of(c, "P1", path, sizeof(path));
        assert_int_equal(last_update(path), T0 + 360);
        fetch(path, "AVERAGE", T0, T0 + 360, 60, &se);
        /* The file starts 1 s before the first update: (T0, T0+60] is mostly unknown. */
        assert_true(isnan(value_at(&se, T0 + 60, 0)));
        assert_float_equal(value_at(&se, T0 + 120, 0), 0.5, 1e-9);
        assert_float_equal(value_at(&se, T0 + 120, 1), 20, 1e-9);
        assert_float_equal(value_at(&se, T0 + 180, 0), 0.75, 1e-9);
        assert_float_equal(value_at(&se, T0 + 180, 1), 10, 1e-9);
        assert_true(isnan(value_at(&se, T0 + 240, 0))); /* unknown stays unknown */
        assert_true(isnan(value_at(&se, T0 + 240, 1)));
        assert_float_equal(value_at(&se, T0 + 300, 0), 1.0, 1e-9);
        assert_float_equal(value_at(&se, T0 + 300, 1), 0, 1e-9);
        assert_true(isnan(value_at(&se, T0 + 360, 0))); /* 1.5 is outside 0..1 */
        assert_true(isnan(value_at(&se, T0 + 360, 1))); /* -1 free spaces is below 0 */
        assert_string_equal(se.ds_names[0], "occupancy");
        assert_string_equal(se.ds_names[1], "free");
        series_free(&se);
        /* The MIN and MAX archives exist too. */
        fetch(path, "MAX", T0, T0 + 360, 60, &se);
        assert_float_equal(value_at(&se, T0 + 180, 0), 0.75, 1e-9);
        series_free(&se);
        fetch(path, "MIN", T0, T0 + 360, 60, &se);
        assert_float_equal(value_at(&se, T0 + 180, 1), 10, 1e-9);
        series_free(&se);
}

static void test_district_roundtrip(void **state)
{
        struct ctx *c = *state;
        struct cp_rrd_batch *b = cp_rrd_batch_new();
        struct cp_rrd_stats s;
        struct series se;
        char path[512];

        start(c, NULL);
        assert_int_equal(cp_rrd_batch_add_district(b, "north", T0 + 60, 1000, 100.0), 0);
        assert_int_equal(cp_rrd_batch_add_district(b, "north", T0 + 120, -500, 100.5), 0);
        assert_int_equal(cp_rrd_batch_add_district(b, "north", T0 + 180, NAN, 101.0), 0);
        assert_int_equal(cp_rrd_batch_add_district(b, "north", T0 + 240, 2000, NAN), 0);
        assert_int_equal(cp_rrd_batch_add_district(b, "north", T0 + 300, 2000, 101.2), 0);
        assert_int_equal(cp_rrd_batch_add_district(b, "north", T0 + 360, 2000, 50.0), 0); /* counter reset */
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, 6);
        stats(c, &s);
        assert_int_equal(s.updates_applied, 6);
        assert_int_equal(s.errors, 0);
        stop(c);

        path_of(c, "north", path, sizeof(path));
        fetch(path, "AVERAGE", T0, T0 + 360, 60, &se);
        assert_string_equal(se.ds_names[0], "power");
        assert_string_equal(se.ds_names[1], "energy");
        assert_float_equal(value_at(&se, T0 + 120, 0), -500, 1e-9);
        /* 0.5 kWh in 60 s: 500 Wh / 60 s = 8.333 Wh/s, that is 30 kW (x 3.6). */
        assert_float_equal(value_at(&se, T0 + 120, 1), 500.0 / 60, 1e-9);
        assert_float_equal(value_at(&se, T0 + 120, 1) * 3.6, 30.0, 1e-9);
        assert_true(isnan(value_at(&se, T0 + 180, 0)));
        assert_float_equal(value_at(&se, T0 + 180, 1), 500.0 / 60, 1e-9);
        assert_float_equal(value_at(&se, T0 + 240, 0), 2000, 1e-9);
        assert_true(isnan(value_at(&se, T0 + 240, 1)));
        /* After an unknown counter value the rate needs two known values again. */
        assert_true(isnan(value_at(&se, T0 + 300, 1)));
        /* A decreasing counter gives a negative rate, below the minimum 0: unknown. */
        assert_true(isnan(value_at(&se, T0 + 360, 1)));
        series_free(&se);
}

static void test_out_of_order_skipped(void **state)
{
        struct ctx *c = *state;
        struct cp_rrd_batch *b;
        struct cp_rrd_stats s;
        struct series se;
        char path[512];

        start(c, NULL);
        submit_facility(c, "P1", T0 + 120, 0.5, 5);
        run_until(c, updates_done, 1);
        /* Older, equal, newer; and a duplicate inside the batch: the first one wins. */
        b = cp_rrd_batch_new();
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 60, 0.1, 1), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 120, 0.9, 9), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 180, 0.25, 3), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 180, 0.95, 4), 0);
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, 5);
        /* Later batches still go through. */
        submit_facility(c, "P1", T0 + 240, 0.3, 2);
        run_until(c, updates_done, 6);
        stats(c, &s);
        assert_int_equal(s.updates_applied, 3);
        assert_int_equal(s.updates_skipped, 3);
        assert_int_equal(s.updates_failed, 0);
        assert_int_equal(s.errors, 0);
        stop(c);

        path_of(c, "P1", path, sizeof(path));
        assert_int_equal(last_update(path), T0 + 240);
        fetch(path, "AVERAGE", T0 + 60, T0 + 240, 60, &se);
        assert_float_equal(value_at(&se, T0 + 180, 0), 0.25, 1e-9);
        assert_float_equal(value_at(&se, T0 + 240, 0), 0.3, 1e-9);
        series_free(&se);
}

static void check_name(const char *id, const char *want)
{
        char buf[CP_RRD_NAME_MAX + 1];

        assert_int_equal(cp_rrd_file_name(id, buf, sizeof(buf)), 0);
        assert_string_equal(buf, want);
        assert_null(strchr(buf, '/'));
        assert_true(buf[0] != '.');
}

static void test_file_names(void **state)
{
        char big[400], buf[CP_RRD_NAME_MAX + 1], small[8];

        (void)state;
        check_name("P-12_a.b", "P-12_a.b.rrd");
        check_name("a/b", "a%2Fb.rrd");
        check_name("a%2Fb", "a%252Fb.rrd"); /* '%' itself is encoded: no two ids share a name */
        check_name("..", "%2E..rrd");
        check_name(".", "%2E.rrd");
        check_name(".hidden", "%2Ehidden.rrd");
        check_name("../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd.rrd"); /* only a leading dot matters */
        check_name("shelly:em:0", "shelly%3Aem%3A0.rrd");
        check_name("a b\\c\n", "a%20b%5Cc%0A.rrd");
        check_name("caf\xc3\xa9", "caf%C3%A9.rrd");
        assert_int_equal(cp_rrd_file_name("", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(cp_rrd_file_name(NULL, buf, sizeof(buf)), -EINVAL);
        /* 251 plain bytes + ".rrd" is the longest name; one more, or one encoded byte, is too long. */
        memset(big, 'x', 251);
        big[251] = '\0';
        assert_int_equal(cp_rrd_file_name(big, buf, sizeof(buf)), 0);
        assert_int_equal(strlen(buf), 255);
        big[251] = 'x';
        big[252] = '\0';
        assert_int_equal(cp_rrd_file_name(big, buf, sizeof(buf)), -ENAMETOOLONG);
        big[250] = '/';
        big[251] = '\0';
        assert_int_equal(cp_rrd_file_name(big, buf, sizeof(buf)), -ENAMETOOLONG);
        assert_int_equal(cp_rrd_file_name("abcd", small, sizeof(small)), -ENAMETOOLONG);
        assert_int_equal(cp_rrd_period_parse("1d"), CP_RRD_1D);
        assert_int_equal(cp_rrd_period_parse("1w"), CP_RRD_1W);
        assert_int_equal(cp_rrd_period_parse("1m"), CP_RRD_1M);
        assert_int_equal(cp_rrd_period_parse("1y"), CP_RRD_1Y);
        assert_int_equal(cp_rrd_period_parse("2d"), -EINVAL);
        assert_int_equal(cp_rrd_period_parse(NULL), -EINVAL);
}

static void test_hostile_ids_stay_inside(void **state)
{
        static const char *const ids[] = {"../escape", "a/b:c", "..", "/abs/path", "x%2F"};
        struct ctx *c = *state;
        struct cp_rrd_batch *b = cp_rrd_batch_new();
        struct cp_rrd_stats s;
        char path[512];
        struct stat st;

        start(c, NULL);
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
                assert_int_equal(cp_rrd_batch_add_facility(b, ids[i], T0 + 60, 0.5, 1), 0);
        assert_int_equal(cp_rrd_batch_add_facility(b, "", T0 + 60, 0.5, 1), -EINVAL);
        assert_int_equal(cp_rrd_batch_add_facility(b, "ok", 0, 0.5, 1), -EINVAL);
        /* The same id as a district: the facility created the file first, the district is refused. */
        assert_int_equal(cp_rrd_batch_add_district(b, "a/b:c", T0 + 60, 1, 1), 0);
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, 6);
        stats(c, &s);
        assert_int_equal(s.updates_applied, 5);
        assert_int_equal(s.updates_failed, 1);
        assert_int_equal(s.errors, 1);
        stop(c);

        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                path_of(c, ids[i], path, sizeof(path));
                assert_int_equal(stat(path, &st), 0);
        }
        /* Nothing beside dir in its parent, nothing at the absolute path. */
        snprintf(path, sizeof(path), "%s/escape.rrd", c->tmp);
        assert_int_equal(stat(path, &st), -1);
        snprintf(path, sizeof(path), "%s/%%2E.%%2Fescape.rrd", c->dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(stat("/abs/path.rrd", &st), -1);
}

static void on_graph(void *ud, int err, unsigned char *png, size_t len)
{
        struct graph_result *g = ud;

        g->calls++;
        g->err = err;
        g->png = png;
        g->len = len;
}

static uint32_t be32(const unsigned char *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_png(const struct graph_result *g)
{
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

        assert_int_equal(g->calls, 1);
        assert_int_equal(g->err, 0);
        assert_non_null(g->png);
        assert_true(g->len > 33);
        assert_memory_equal(g->png, sig, 8);
        assert_memory_equal(g->png + 12, "IHDR", 4);
        /* The plot area plus axes, title and legend. */
        assert_true(be32(g->png + 16) > CP_RRD_GRAPH_WIDTH && be32(g->png + 16) < 1200);
        assert_true(be32(g->png + 20) > CP_RRD_GRAPH_HEIGHT && be32(g->png + 20) < 600);
}

static void graph(struct ctx *c, enum cp_rrd_kind kind, const char *id, enum cp_rrd_period period,
                  struct graph_result *g)
{
        memset(g, 0, sizeof(*g));
        assert_int_equal(cp_rrd_graph(c->r, kind, id, period, on_graph, g), 0);
        run_until(c, graph_done, (uint64_t)(uintptr_t)g);
}

static void save(const struct graph_result *g, const char *name)
{
        const char *dir = getenv("CP_RRD_TEST_PNG_DIR"); /* to look at them */
        char path[256];
        FILE *f;

        if (!dir)
                return;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "wb");
        if (f) {
                fwrite(g->png, 1, g->len, f);
                fclose(f);
        }
}

static void test_graphs(void **state)
{
        struct ctx *c = *state;
        struct cp_rrd_batch *b = cp_rrd_batch_new();
        int64_t now = (int64_t)time(NULL) / 60 * 60, t0 = now - 2 * 86400;
        struct graph_result g;
        struct cp_rrd_stats s;
        size_t n = 0;

        start(c, NULL);
        /* Two days of data, so that every period has something to draw. */
        for (int64_t t = t0; t <= now; t += 60, n += 2) {
                double x = (double)(t - t0) / 86400.0 * 6.283;

                assert_int_equal(
                    cp_rrd_batch_add_facility(b, "Gare/Nord:1", t, 0.5 + 0.4 * sin(x), 100 - 80 * sin(x)), 0);
                assert_int_equal(
                    cp_rrd_batch_add_district(b, "centre", t, 3000 * sin(x), (double)(t - t0) / 3600.0 * 2.5),
                    0);
        }
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, n);
        stats(c, &s);
        assert_int_equal(s.updates_applied, n);

        for (int p = 0; p < _CP_RRD_PERIOD_MAX; p++) {
                char name[64];

                graph(c, CP_RRD_FACILITY, "Gare/Nord:1", (enum cp_rrd_period)p, &g);
                check_png(&g);
                snprintf(name, sizeof(name), "facility-%d.png", p);
                save(&g, name);
                free(g.png);
                graph(c, CP_RRD_DISTRICT, "centre", (enum cp_rrd_period)p, &g);
                check_png(&g);
                snprintf(name, sizeof(name), "district-%d.png", p);
                save(&g, name);
                free(g.png);
        }
        graph(c, CP_RRD_FACILITY, "no-such-parking", CP_RRD_1D, &g);
        assert_int_equal(g.err, -ENOENT);
        assert_null(g.png);
        /* The id exists, as the other kind. */
        graph(c, CP_RRD_DISTRICT, "Gare/Nord:1", CP_RRD_1D, &g);
        assert_int_equal(g.err, -ENOENT);
        assert_int_equal(cp_rrd_graph(c->r, CP_RRD_FACILITY, "centre", (enum cp_rrd_period)7, on_graph, &g),
                         -EINVAL);
        assert_int_equal(cp_rrd_graph(c->r, (enum cp_rrd_kind)5, "centre", CP_RRD_1D, on_graph, &g), -EINVAL);
        assert_int_equal(cp_rrd_graph(c->r, CP_RRD_FACILITY, "", CP_RRD_1D, on_graph, &g), -EINVAL);
        stats(c, &s);
        assert_int_equal(s.graphs_rendered, 2 * _CP_RRD_PERIOD_MAX);
        assert_int_equal(s.graphs_failed, 2);
        assert_int_equal(s.errors, 0);
        stop(c);
}

static bool queue_empty(struct ctx *c, uint64_t arg)
{
        struct cp_rrd_stats s;

        (void)arg;
        cp_rrd_get_stats(c->r, &s);
        return s.queue_depth == 0;
}

/* The worker is held up by a FIFO named like an rrd file: librrd's open() of it blocks until a writer
 * shows up. That stands for a slow disk and makes the overflow deterministic. */
static void test_queue_overflow_drops_oldest(void **state)
{
        struct ctx *c = *state;
        struct cp_rrd_stats s;
        char fifo[512], path[512];
        int64_t deadline;
        int fd;

        start(c, NULL);
        path_of(c, "stall", fifo, sizeof(fifo));
        assert_int_equal(mkfifo(fifo, 0600), 0);
        submit_facility(c, "stall", T0 + 60, 0.5, 1);
        run_until(c, queue_empty, 0); /* the worker has taken it, and is stuck in it from now on */
        for (int i = 0; i < CP_RRD_QUEUE_MAX + 5; i++)
                submit_facility(c, "q", T0 + 60 * (i + 1), 0.5, (double)i);
        stats(c, &s);
        assert_int_equal(s.batches_dropped, 5);
        assert_int_equal(s.updates_dropped, 5);
        assert_int_equal(s.queue_depth, CP_RRD_QUEUE_MAX);
        assert_int_equal(s.updates_applied, 0);

        /* Let the worker go: open the FIFO's write end once its reader (the worker) is there. */
        deadline = now_ms() + 10000;
        while ((fd = open(fifo, O_WRONLY | O_NONBLOCK)) < 0) {
                assert_int_equal(errno, ENXIO);
                if (now_ms() > deadline)
                        fail_msg("the worker never opened the FIFO");
                usleep(1000);
        }
        close(fd);
        run_until(c, updates_done, 1 + CP_RRD_QUEUE_MAX);
        stats(c, &s);
        assert_int_equal(s.updates_failed, 1); /* the FIFO is no rrd file */
        assert_true(s.errors >= 1);
        assert_int_equal(s.updates_applied, CP_RRD_QUEUE_MAX);
        assert_int_equal(s.queue_depth, 0);
        stop(c);

        /* The five oldest were dropped: the file starts just before the sixth. */
        path_of(c, "q", path, sizeof(path));
        assert_int_equal(last_update(path), T0 + 60 * (CP_RRD_QUEUE_MAX + 5));
        {
                struct series se;

                fetch(path, "AVERAGE", T0, T0 + 60 * 8, 60, &se);
                assert_true(isnan(value_at(&se, T0 + 60 * 5, 1)));
                assert_float_equal(value_at(&se, T0 + 60 * 7, 1), 6, 1e-9);
                series_free(&se);
        }
        (void)unlink(fifo);
}

static void test_stop_drains(void **state)
{
        struct ctx *c = *state;
        struct graph_result g = {0}, late = {0};
        struct cp_rrd_stats s;
        char path[512];

        start(c, NULL);
        for (int i = 0; i < 20; i++)
                submit_facility(c, i % 2 ? "odd" : "even", T0 + 60 * (i + 1), 0.5, (double)i);
        /* A graph request racing the stop completes either way, exactly once. */
        assert_int_equal(cp_rrd_graph(c->r, CP_RRD_FACILITY, "even", CP_RRD_1D, on_graph, &g), 0);
        c->loop.data = c;
        cp_rrd_stop(c->r, on_stopped);
        cp_rrd_stop(c->r, on_stopped); /* twice is fine */
        submit_facility(c, "even", T0 + 6000, 0.5, 1);
        assert_int_equal(cp_rrd_graph(c->r, CP_RRD_FACILITY, "even", CP_RRD_1D, on_graph, &late), -ECANCELED);
        run_until(c, is_stopped, 0);
        assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&c->loop), 0);

        stats(c, &s);
        assert_int_equal(s.updates_applied, 20);
        assert_int_equal(s.batches_dropped, 1);
        assert_int_equal(g.calls, 1);
        assert_true(g.err == 0 || g.err == -ECANCELED || g.err == -ENOENT);
        free(g.png);
        assert_int_equal(late.calls, 0);
        path_of(c, "odd", path, sizeof(path));
        assert_int_equal(last_update(path), T0 + 60 * 20);
        path_of(c, "even", path, sizeof(path));
        assert_int_equal(last_update(path), T0 + 60 * 19);
}

/* ---- rrdcached ---- */

static bool socket_accepts(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM, 0), r;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        return r == 0;
}

/* rrdcached in the foreground, writing nothing for an hour unless asked to flush, so that the test
 * sees which updates went through it. */
static void start_cached(struct ctx *c, const char *sock)
{
        char listen[160], pidfile[128], log[128];
        int64_t deadline;
        pid_t pid;

        snprintf(listen, sizeof(listen), "unix:%s", sock);
        snprintf(pidfile, sizeof(pidfile), "%s/rrdcached.pid", c->tmp);
        snprintf(log, sizeof(log), "%s/rrdcached.log", c->tmp);
        (void)unlink(sock);
        (void)unlink(pidfile);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execlp("rrdcached", "rrdcached", "-g", "-F", "-B", "-b", c->tmp, "-w", "3600", "-f", "7200",
                       "-p", pidfile, "-o", log, "-l", listen, (char *)NULL);
                _exit(127);
        }
        c->cached_pid = pid;
        deadline = now_ms() + 10000;
        while (!socket_accepts(sock)) {
                int status;

                if (waitpid(pid, &status, WNOHANG) == pid) {
                        c->cached_pid = 0;
                        fail_msg("rrdcached exited (status %d); is the rrdcached package installed?", status);
                }
                if (now_ms() > deadline)
                        fail_msg("rrdcached did not come up on %s", sock);
                usleep(2000);
        }
}

static void test_rrdcached(void **state)
{
        struct ctx *c = *state;
        struct cp_rrd_batch *b = cp_rrd_batch_new();
        char sock[128], address[160], path[512];
        struct graph_result g;
        struct cp_rrd_stats s;

        snprintf(sock, sizeof(sock), "%s/rrdcached.sock", c->tmp);
        snprintf(address, sizeof(address), "unix:%s", sock);
        start_cached(c, sock);
        start(c, address);
        path_of(c, "P1", path, sizeof(path));

        for (int i = 1; i <= 10; i++)
                assert_int_equal(cp_rrd_batch_add_facility(b, "P1", T0 + 60 * i, 0.1 * i, 10 - i), 0);
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, 10);
        stats(c, &s);
        assert_int_equal(s.updates_applied, 10);
        assert_int_equal(s.errors, 0);
        /* The worker created the file; the updates wait in rrdcached. */
        assert_int_equal(last_update(path), T0 + 59);

        /* Graphing flushes the file first. */
        graph(c, CP_RRD_FACILITY, "P1", CP_RRD_1Y, &g);
        check_png(&g);
        free(g.png);
        assert_int_equal(last_update(path), T0 + 600);

        /* Old updates are skipped by the worker, not refused by rrdcached. */
        submit_facility(c, "P1", T0 + 300, 0.9, 1);
        submit_facility(c, "P1", T0 + 660, 0.9, 1);
        run_until(c, updates_done, 12);
        stats(c, &s);
        assert_int_equal(s.updates_skipped, 1);
        assert_int_equal(s.updates_applied, 11);

        /* rrdcached restarts (flushing at exit): the worker reconnects. */
        stop_cached(c);
        assert_int_equal(last_update(path), T0 + 660);
        start_cached(c, sock);
        submit_facility(c, "P1", T0 + 720, 0.5, 5);
        run_until(c, updates_done, 13);
        stats(c, &s);
        if (s.updates_applied != 12) {
                char msg[256];

                cp_rrd_errmsg(c->r, msg, sizeof(msg));
                fail_msg("update after the restart failed: %s", msg);
        }
        /* rrdcached gone: updates fail, counted, and nothing blocks; the second file does not even try
         * to connect during the back-off. */
        stop_cached(c);
        assert_int_equal(last_update(path), T0 + 720);
        submit_facility(c, "P1", T0 + 780, 0.5, 5);
        submit_facility(c, "P2", T0 + 780, 0.5, 5);
        run_until(c, updates_done, 15);
        stats(c, &s);
        assert_int_equal(s.updates_failed, 2);
        assert_int_equal(s.errors, 2);
        /* Back after the first back-off period (1 s): the next update connects again. */
        start_cached(c, sock);
        usleep(1100 * 1000);
        submit_facility(c, "P1", T0 + 840, 0.5, 5);
        run_until(c, updates_done, 16);
        stats(c, &s);
        assert_int_equal(s.updates_applied, 13);
        stop(c);
        stop_cached(c); /* flushes */
        assert_int_equal(last_update(path), T0 + 840);
}

/* Not a check: the cost of an update, printed for the README (run it without sanitizers for real
 * figures). One time stamp per file per call, then 60 per call. */
static void test_cost(void **state)
{
        enum { FILES = 200, BURST = 60 };
        struct ctx *c = *state;
        struct cp_rrd_batch *b;
        char id[32];
        uint64_t n = 0;
        int64_t t;

        start(c, NULL);
        b = cp_rrd_batch_new();
        for (int i = 0; i < FILES; i++, n++) {
                snprintf(id, sizeof(id), "f%d", i);
                assert_int_equal(cp_rrd_batch_add_facility(b, id, T0 + 60, 0.5, 1), 0);
        }
        t = now_us();
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, n);
        print_message("create + 1 update: %.1f us per file\n", (double)(now_us() - t) / FILES);

        b = cp_rrd_batch_new();
        for (int i = 0; i < FILES; i++, n++) {
                snprintf(id, sizeof(id), "f%d", i);
                assert_int_equal(cp_rrd_batch_add_facility(b, id, T0 + 120, 0.5, 1), 0);
        }
        t = now_us();
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, n);
        print_message("1 time stamp per call: %.1f us per update\n", (double)(now_us() - t) / FILES);

        b = cp_rrd_batch_new();
        for (int i = 0; i < FILES; i++)
                for (int k = 0; k < BURST; k++, n++) {
                        snprintf(id, sizeof(id), "f%d", i);
                        assert_int_equal(cp_rrd_batch_add_facility(b, id, T0 + 180 + 60 * k, 0.5, 1), 0);
                }
        t = now_us();
        cp_rrd_submit_take(c->r, b);
        run_until(c, updates_done, n);
        print_message("%d time stamps per call: %.1f us per update\n", BURST,
                      (double)(now_us() - t) / (FILES * BURST));
        stop(c);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_file_names),
            cmocka_unit_test_setup_teardown(test_facility_roundtrip, setup, teardown),
            cmocka_unit_test_setup_teardown(test_district_roundtrip, setup, teardown),
            cmocka_unit_test_setup_teardown(test_out_of_order_skipped, setup, teardown),
            cmocka_unit_test_setup_teardown(test_hostile_ids_stay_inside, setup, teardown),
            cmocka_unit_test_setup_teardown(test_graphs, setup, teardown),
            cmocka_unit_test_setup_teardown(test_queue_overflow_drops_oldest, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stop_drains, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rrdcached, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cost, setup, teardown),
        };

        if (argc > 1 && chdir(argv[1]) < 0) {
                perror(argv[1]);
                return 1;
        }
        /* Quiet: the worker's complaints about the FIFO and the missing rrdcached are expected. */
        cp_log_init(CP_LOG_SINK_PLAIN, getenv("CP_RRD_TEST_DEBUG") ? CP_LOG_DEBUG : CP_LOG_ERR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
