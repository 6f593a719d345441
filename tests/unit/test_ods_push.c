/* test_ods_push.c - the Opendatasoft push sink against a real HTTP receiver (tests/e2e/ods_receiver.py,
 * started per test with fork+exec, killed by PID), a real libuv loop, real libcurl and a real SQLite file.
 *
 * Delivery is at least once: a request that timed out or was aborted may have reached the portal, and
 * its rows are sent again. What must hold, and is checked after every failure mode: among the requests
 * the receiver accepted, every record of a dataset appears exactly once and in order, and none is
 * missing. Every test also checks, in its teardown, that the push key never reached stderr (all log
 * output, debug included, is captured in a file). Run from the repository root. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
/* cmocka.h needs the headers above first. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "citypulse/cp_common.h"
#include "log.h"
#include "ods_push.h"
#include "timefmt.h"

/* The token makes any leak easy to find; the rest needs percent-encoding (space + / & = %). */
#define KEY_TOKEN "s3cr3tTOKEN42"
#define KEY       KEY_TOKEN " k+y/&=%"
#define KEY_ENC   "s3cr3tTOKEN42%20k%2By%2F%26%3D%25"

struct fx {
        char dir[64];
        char db[128], log[128], ctl[128], portf[128], errlog[128], rxerr[128];
        pid_t rx_pid;
        int port;
        int saved_stderr;
        uv_loop_t loop;
        struct cp_push p;
        bool running, stopped;
        /* predicate arguments */
        const char *want_ds;
        size_t want_n;
        uint64_t want_failures;
};

/* ---- receiver ---- */

static void set_mode(struct fx *f, const char *mode)
{
        char tmp[160];
        FILE *fp;

        snprintf(tmp, sizeof(tmp), "%s.tmp", f->ctl);
        fp = fopen(tmp, "w");
        assert_non_null(fp);
        fprintf(fp, "%s\n", mode);
        assert_int_equal(fclose(fp), 0);
        assert_int_equal(rename(tmp, f->ctl), 0);
}

static void rx_start(struct fx *f, int port)
{
        const char *script =
            getenv("CP_ODS_RECEIVER") ? getenv("CP_ODS_RECEIVER") : "tests/e2e/ods_receiver.py";
        char portarg[16], py[] = "python3", a_port[] = "--port", a_log[] = "--log", a_pf[] = "--port-file",
                          a_ctl[] = "--control", scr[256];
        char *argv[] = {py, scr, a_port, portarg, a_log, f->log, a_pf, f->portf, a_ctl, f->ctl, NULL};
        pid_t parent = getpid();
        FILE *fp;

        assert_int_equal(access(script, R_OK), 0);
        snprintf(scr, sizeof(scr), "%s", script);
        snprintf(portarg, sizeof(portarg), "%d", port);
        (void)unlink(f->portf);
        f->rx_pid = fork();
        assert_true(f->rx_pid >= 0);
        if (f->rx_pid == 0) {
                /* The receiver dies with the test, even when a sanitizer ends the test early. */
                int out = open("/dev/null", O_WRONLY),
                    err = open(f->rxerr, O_WRONLY | O_CREAT | O_APPEND, 0600);
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent || out < 0 || err < 0)
                        _exit(127);
                dup2(out, 1);
                dup2(err, 2);
                execvp(py, argv);
                _exit(127);
        }
        /* Poll for the port file (written once the socket listens), never sleep blindly. */
        for (int i = 0; i < 1000 && access(f->portf, R_OK) != 0; i++)
                usleep(10000);
        fp = fopen(f->portf, "r");
        assert_non_null(fp);
        assert_int_equal(fscanf(fp, "%d", &f->port), 1);
        fclose(fp);
        assert_true(f->port > 0);
}

static void rx_stop(struct fx *f)
{
        int st;

        if (f->rx_pid <= 0)
                return;
        (void)kill(f->rx_pid, SIGTERM);
        for (int i = 0; i < 200; i++) {
                if (waitpid(f->rx_pid, &st, WNOHANG) == f->rx_pid) {
                        f->rx_pid = 0;
                        return;
                }
                usleep(10000);
        }
        (void)kill(f->rx_pid, SIGKILL);
        (void)waitpid(f->rx_pid, &st, 0);
        f->rx_pid = 0;
}

/* Every request the receiver logged, as a JSON array (caller decrefs). */
static json_t *rx_log(struct fx *f)
{
        json_t *all = json_array();
        char *line = NULL;
        size_t cap = 0;
        FILE *fp = fopen(f->log, "r");

        if (!fp)
                return all;
        while (getline(&line, &cap, fp) > 0) {
                json_t *e = json_loads(line, 0, NULL);
                if (e) /* a line being written may be partial: it is read again next time */
                        json_array_append_new(all, e);
        }
        free(line);
        fclose(fp);
        return all;
}

static bool accepted(json_t *e)
{
        const char *mode = json_string_value(json_object_get(e, "mode"));

        return json_integer_value(json_object_get(e, "status")) == 200 && mode &&
               (strcmp(mode, "ok") == 0 || strcmp(mode, "ok_lower") == 0);
}

static bool for_dataset(json_t *e, const char *ds)
{
        char want[200];

        snprintf(want, sizeof(want), "/api/push/1.0/%s/realtime/push/", ds);
        return strcmp(json_string_value(json_object_get(e, "path")), want) == 0;
}

static size_t accepted_records(struct fx *f, const char *ds)
{
        json_t *all = rx_log(f), *e;
        size_t i, n = 0;

        json_array_foreach(all, i, e)
        {
                if (accepted(e) && for_dataset(e, ds))
                        n += json_array_size(json_object_get(e, "records"));
        }
        json_decref(all);
        return n;
}

/* Among accepted requests for ds: records seq first..first+n-1, each exactly once, in order; every
 * accepted request valid and below max_body. Returns the number of accepted requests. */
static size_t check_delivery(struct fx *f, const char *ds, long first, size_t n, size_t max_body)
{
        json_t *all = rx_log(f), *e;
        long next = first;
        size_t i, reqs = 0;

        json_array_foreach(all, i, e)
        {
                json_t *recs = json_object_get(e, "records"), *r;
                size_t k;

                if (!for_dataset(e, ds))
                        continue;
                assert_string_equal(json_string_value(json_object_get(e, "content_type")),
                                    "application/json");
                assert_string_equal(
                    json_string_value(json_object_get(json_object_get(e, "params"), "pushkey")), KEY);
                /* A request the client gave up on mid-upload (timeout) reaches the receiver truncated. */
                if (!accepted(e))
                        continue;
                assert_true(json_is_true(json_object_get(e, "valid")));
                assert_true((size_t)json_integer_value(json_object_get(e, "len")) < max_body);
                reqs++;
                json_array_foreach(recs, k, r)
                {
                        assert_int_equal(json_integer_value(json_object_get(r, "seq")), next);
                        next++;
                }
        }
        assert_int_equal(next - first, (long)n);
        json_decref(all);
        return reqs;
}

static size_t count_requests(struct fx *f, const char *ds, bool only_failed)
{
        json_t *all = rx_log(f), *e;
        size_t i, n = 0;

        json_array_foreach(all, i, e)
        {
                if (for_dataset(e, ds) && (!only_failed || !accepted(e)))
                        n++;
        }
        json_decref(all);
        return n;
}

/* ---- stderr capture ---- */

static char *slurp(const char *path)
{
        FILE *fp = fopen(path, "r");
        char *s;
        long n;

        if (!fp)
                return strdup("");
        fseek(fp, 0, SEEK_END);
        n = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        s = calloc(1, (size_t)n + 1);
        if (s && fread(s, 1, (size_t)n, fp) != (size_t)n)
                s[0] = '\0';
        fclose(fp);
        return s;
}

static size_t count_in_log(struct fx *f, const char *needle)
{
        char *s = slurp(f->errlog);
        size_t n = 0;

        for (const char *q = s; (q = strstr(q, needle)); q++)
                n++;
        free(s);
        return n;
}

/* ---- loop helpers ---- */

static void on_tick(uv_timer_t *t)
{
        (void)t;
}

static void on_tick_closed(uv_handle_t *h)
{
        *(bool *)h->data = true;
}

static bool run_until(struct fx *f, bool (*pred)(struct fx *), int64_t ms)
{
        uv_timer_t tick;
        bool ok, closed = false;
        uint64_t deadline;

        uv_update_time(&f->loop);
        deadline = uv_now(&f->loop) + (uint64_t)ms;
        uv_timer_init(&f->loop, &tick);
        tick.data = &closed;
        uv_timer_start(&tick, on_tick, 10, 10);
        while (!(ok = pred(f)) && uv_now(&f->loop) < deadline)
                uv_run(&f->loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *)&tick, on_tick_closed);
        while (!closed)
                uv_run(&f->loop, UV_RUN_ONCE);
        return ok;
}

static bool pred_never(struct fx *f)
{
        (void)f;
        return false;
}

static void run_for(struct fx *f, int64_t ms)
{
        (void)run_until(f, pred_never, ms);
}

static bool pred_delivered(struct fx *f)
{
        return accepted_records(f, f->want_ds) >= f->want_n;
}

static bool pred_idle(struct fx *f)
{
        return f->p.stats.queue_rows == 0 && f->p.stats.in_flight == 0 && f->p.stats.pending_records == 0 &&
               !f->p.job;
}

static bool pred_failures(struct fx *f)
{
        return f->p.stats.failures >= f->want_failures;
}

static bool pred_in_flight(struct fx *f)
{
        return f->p.stats.in_flight > 0;
}

static bool pred_stopped(struct fx *f)
{
        return f->stopped;
}

static void on_stopped(struct cp_push *p)
{
        struct fx *f = cp_container_of(p, struct fx, p);

        f->stopped = true;
}

static struct cp_push_cfg base_cfg(struct fx *f, char *url, size_t urllen)
{
        struct cp_push_cfg c = {0};

        snprintf(url, urllen, "http://127.0.0.1:%d/api/push/1.0/{dataset}/realtime/push/", f->port);
        c.url_template = url;
        c.pushkey = KEY "\n"; /* as read from a file: the trailing newline is not part of the key */
        c.db_path = f->db;
        c.flush_interval_ms = 50;
        c.timeout_ms = 2000;
        c.backoff_min_ms = 50;
        c.backoff_max_ms = 200;
        return c;
}

static void push_start(struct fx *f, const struct cp_push_cfg *c)
{
        char err[256] = "";

        f->stopped = false;
        assert_int_equal(cp_push_start(&f->p, &f->loop, c, err, sizeof(err)), 0);
        f->running = true;
}

static void push_stop(struct fx *f)
{
        if (!f->running)
                return;
        cp_push_stop(&f->p, on_stopped);
        assert_true(run_until(f, pred_stopped, 15000));
        f->running = false;
}

static json_t *rec(long seq, size_t pad)
{
        char *s = malloc(pad + 1);
        json_t *r;

        memset(s, 'x', pad);
        s[pad] = '\0';
        r = json_pack("{s:i, s:s, s:s}", "seq", (json_int_t)seq, "parking_id", "issy-p1", "pad", s);
        free(s);
        return r;
}

static void add_n(struct fx *f, const char *ds, long first, long n, size_t pad)
{
        for (long i = first; i < first + n; i++)
                assert_int_equal(cp_push_add(&f->p, ds, rec(i, pad)), 0);
}

/* ---- fixture ---- */

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        int fd;

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/cp-odspush-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->db, sizeof(f->db), "%s/citypulse.db", f->dir);
        snprintf(f->log, sizeof(f->log), "%s/requests.jsonl", f->dir);
        snprintf(f->ctl, sizeof(f->ctl), "%s/mode", f->dir);
        snprintf(f->portf, sizeof(f->portf), "%s/port", f->dir);
        snprintf(f->errlog, sizeof(f->errlog), "%s/stderr.log", f->dir);
        snprintf(f->rxerr, sizeof(f->rxerr), "%s/receiver.err", f->dir);
        assert_int_equal(uv_loop_init(&f->loop), 0);
        /* Capture every log line, debug included, to check that the key never shows. */
        fflush(stderr);
        f->saved_stderr = dup(2);
        fd = open(f->errlog, O_WRONLY | O_CREAT | O_APPEND, 0600);
        assert_true(fd >= 0 && f->saved_stderr >= 0);
        assert_int_equal(dup2(fd, 2), 2);
        close(fd);
        cp_log_init(CP_LOG_SINK_PLAIN, CP_LOG_DEBUG);
        set_mode(f, "ok");
        rx_start(f, 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        char cmd[128], *s;
        int bad = 0;

        if (f->running) {
                cp_push_stop(&f->p, on_stopped);
                (void)run_until(f, pred_stopped, 15000);
        }
        rx_stop(f);
        if (uv_loop_close(&f->loop) != 0)
                bad = 1;
        fflush(stderr);
        dup2(f->saved_stderr, 2);
        close(f->saved_stderr);
        s = slurp(f->errlog);
        if (strstr(s, KEY_TOKEN)) {
                fprintf(stderr, "the push key appears in the log output\n");
                bad = 1;
        }
        /* Show what cmocka printed while stderr was captured (lines without a log timestamp), or
         * everything with CP_TEST_VERBOSE. */
        for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"))
                if (getenv("CP_TEST_VERBOSE") || !(line[0] >= '0' && line[0] <= '9'))
                        fprintf(stderr, "%s\n", line);
        free(s);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        if (system(cmd) != 0)
                bad = 1;
        free(f);
        cp_log_init(CP_LOG_SINK_PLAIN, CP_LOG_INFO);
        return bad ? -1 : 0;
}

/* ---- direct database access ---- */

static sqlite3 *db_open(struct fx *f)
{
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        return db;
}

static int64_t db_int(struct fx *f, const char *sql)
{
        sqlite3 *db = db_open(f);
        sqlite3_stmt *st;
        int64_t v = -1;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void check_last_errors(struct fx *f, const char *want)
{
        sqlite3 *db = db_open(f);
        sqlite3_stmt *st;
        int rows = 0;

        assert_int_equal(sqlite3_prepare_v2(db, "SELECT attempts, last_error FROM push_queue", -1, &st, NULL),
                         SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
                const char *e = (const char *)sqlite3_column_text(st, 1);
                if (!e)
                        continue; /* a row never tried yet */
                rows++;
                assert_true(sqlite3_column_int64(st, 0) >= 1);
                assert_non_null(strstr(e, want));
                assert_null(strstr(e, KEY_TOKEN));
                assert_null(strstr(e, "s3cr3t"));
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        assert_true(rows >= 1);
}

/* ---- tests ---- */

/* Records arrive as JSON arrays of objects, in order, exactly once, split below max_batch_bytes; the key
 * is in the query string at the receiver. */
static void test_order_and_batches(void **state)
{
        struct fx *f = *state;
        char url[160], buf[512];
        struct cp_push_cfg c = base_cfg(f, url, sizeof(url));
        size_t reqs;

        c.max_batch_bytes = 2000;
        push_start(f, &c);
        for (long i = 0; i < 300; i++) {
                assert_int_equal(cp_push_add(&f->p, "parking-availability", rec(i, 40)), 0);
                if (i % 6 == 0)
                        assert_int_equal(cp_push_add(&f->p, "energy-live", rec(i / 6, 10)), 0);
                if (i % 50 == 0)
                        run_for(f, 20);
        }
        assert_int_equal(cp_push_add(&f->p, "parking-availability", rec(999, 3000)), -EMSGSIZE);
        assert_int_equal(cp_push_add(&f->p, "parking-availability", json_integer(3)), -EINVAL);
        assert_int_equal(cp_push_add(&f->p, "bad dataset/id", rec(0, 1)), -EINVAL);
        assert_int_equal(cp_push_add(&f->p, "", rec(0, 1)), -EINVAL);
        f->want_ds = "parking-availability";
        f->want_n = 300;
        assert_true(run_until(f, pred_delivered, 20000));
        f->want_ds = "energy-live";
        f->want_n = 50;
        assert_true(run_until(f, pred_delivered, 20000));
        assert_true(run_until(f, pred_idle, 5000));
        reqs = check_delivery(f, "parking-availability", 0, 300, 2000);
        assert_true(reqs >= 10); /* 300 x ~75 bytes cannot fit under 2000 bytes in fewer */
        check_delivery(f, "energy-live", 0, 50, 2000);
        assert_int_equal(f->p.stats.records_sent, 350);
        assert_int_equal(f->p.stats.failures, 0);
        assert_int_equal(f->p.stats.dropped_records, 1);
        assert_int_equal(f->p.stats.queue_rows, 0);
        assert_int_equal(f->p.stats.queue_bytes, 0);
        cp_push_format_stats(&f->p, buf, sizeof(buf));
        assert_non_null(strstr(buf, "records_sent=350"));
        assert_null(strstr(buf, KEY_TOKEN));
        push_stop(f);
        assert_int_equal(db_int(f, "SELECT count(*) FROM push_queue"), 0);
        assert_int_equal(db_int(f, "SELECT rows FROM push_queue_size"), 0);
        assert_int_equal(count_in_log(f, "pushkey=REDACTED"), 1); /* the "started" line */
}

/* A failure mode is retried with backoff, the rows stay queued with attempts and last_error, one
 * warning per streak, then "recovered"; afterwards every record was accepted exactly once. */
static void retry_case(struct fx *f, const char *mode, const char *err_class, int64_t timeout_ms)
{
        char url[160];
        struct cp_push_cfg c = base_cfg(f, url, sizeof(url));
        json_t *all, *e;
        double last_t = 0;
        size_t i, gaps = 0, fails;

        c.timeout_ms = timeout_ms;
        set_mode(f, mode);
        push_start(f, &c);
        add_n(f, "parking-occupancy-15min", 0, 20, 20);
        f->want_failures = 3;
        assert_true(run_until(f, pred_failures, 20000));
        assert_int_equal(f->p.stats.records_sent, 0);
        assert_true(f->p.stats.queue_rows >= 1);
        assert_true(db_int(f, "SELECT sum(n_records) FROM push_queue") == 20);
        check_last_errors(f, err_class);
        /* Backoff: requests are sequential, the next one starts backoff_min_ms (50) after a failure at
         * the earliest. (Under load a timed-out request may never have reached the receiver's log.) */
        all = rx_log(f);
        json_array_foreach(all, i, e)
        {
                double t = json_real_value(json_object_get(e, "t"));
                if (last_t > 0) {
                        assert_true(t - last_t >= 0.045);
                        gaps++;
                }
                last_t = t;
        }
        json_decref(all);
        assert_true(gaps >= 1);

        set_mode(f, "ok");
        add_n(f, "parking-occupancy-15min", 20, 10, 20);
        f->want_ds = "parking-occupancy-15min";
        f->want_n = 30;
        assert_true(run_until(f, pred_delivered, 20000));
        assert_true(run_until(f, pred_idle, 5000));
        check_delivery(f, "parking-occupancy-15min", 0, 30, CP_PUSH_MAX_BODY);
        fails = count_requests(f, "parking-occupancy-15min", true);
        if (strcmp(mode, "hang") != 0) /* a hung request may still be on its way when the mode flips */
                assert_int_equal(fails, f->p.stats.failures);
        assert_int_equal(f->p.stats.records_sent, 30);
        assert_int_equal(count_in_log(f, "W ods_push: push failed"), 1);
        assert_int_equal(count_in_log(f, "N ods_push: recovered push dataset=parking-occupancy-15min"), 1);
        push_stop(f);
}

static void test_retry_500(void **state)
{
        retry_case(*state, "500", "http_status: HTTP 500", 2000);
}

static void test_retry_bad_answer(void **state)
{
        retry_case(*state, "badbody", "bad_answer", 2000);
}

static void test_retry_closed_connection(void **state)
{
        retry_case(*state, "close", "connection", 2000);
}

static void test_retry_timeout(void **state)
{
        retry_case(*state, "hang", "timeout", 300);
}

/* The older documented answer, {"status": "ok"}, with whitespace, is a success too. */
static void test_answer_case_insensitive(void **state)
{
        struct fx *f = *state;
        char url[160];
        struct cp_push_cfg c = base_cfg(f, url, sizeof(url));

        set_mode(f, "ok_lower");
        push_start(f, &c);
        add_n(f, "energy-15min", 0, 5, 5);
        f->want_ds = "energy-15min";
        f->want_n = 5;
        assert_true(run_until(f, pred_delivered, 10000));
        assert_true(run_until(f, pred_idle, 5000));
        assert_int_equal(f->p.stats.failures, 0);
        push_stop(f);
}

/* Nothing listens: connection refused, retried; the receiver comes back on the same port. */
static void test_receiver_down(void **state)
{
        struct fx *f = *state;
        char url[160];
        struct cp_push_cfg c;
        int port = f->port;

        rx_stop(f);
        c = base_cfg(f, url, sizeof(url));
        push_start(f, &c);
        add_n(f, "parking-spots", 0, 25, 10);
        f->want_failures = 3;
        assert_true(run_until(f, pred_failures, 20000));
        check_last_errors(f, "connect");
        assert_int_equal(count_in_log(f, "err=connect reason="), 1);
        rx_start(f, port);
        f->want_ds = "parking-spots";
        f->want_n = 25;
        assert_true(run_until(f, pred_delivered, 20000));
        assert_true(run_until(f, pred_idle, 5000));
        check_delivery(f, "parking-spots", 0, 25, CP_PUSH_MAX_BODY);
        push_stop(f);
}

/* Stop with a request in flight and records still in memory; a fresh sink on the same database sends
 * all of it. */
static void test_stop_restart(void **state)
{
        struct fx *f = *state;
        char url[160];
        struct cp_push_cfg c = base_cfg(f, url, sizeof(url));

        c.timeout_ms = 10000;
        set_mode(f, "hang");
        push_start(f, &c);
        add_n(f, "parking-occupancy-hourly", 0, 20, 10);
        assert_true(run_until(f, pred_in_flight, 10000));
        add_n(f, "parking-occupancy-hourly", 20, 20, 10); /* still in memory at the stop */
        push_stop(f);
        assert_int_equal(db_int(f, "SELECT sum(n_records) FROM push_queue"), 40);
        assert_int_equal(db_int(f, "SELECT max(attempts) FROM push_queue"), 0); /* aborted, not failed */

        set_mode(f, "ok");
        memset(&f->p, 0, sizeof(f->p));
        push_start(f, &c);
        f->want_ds = "parking-occupancy-hourly";
        f->want_n = 40;
        assert_true(run_until(f, pred_delivered, 20000));
        assert_true(run_until(f, pred_idle, 5000));
        check_delivery(f, "parking-occupancy-hourly", 0, 40, CP_PUSH_MAX_BODY);
        assert_int_equal(f->p.stats.records_sent, 40);
        push_stop(f);
        assert_int_equal(db_int(f, "SELECT count(*) FROM push_queue"), 0);
}

static void insert_rows(struct fx *f, const char *ds, long first_seq, int rows, int per_row, size_t pad,
                        size_t *ret_len)
{
        sqlite3 *db = db_open(f);
        long seq = first_seq;

        for (int i = 0; i < rows; i++) {
                json_t *a = json_array();
                char *body;

                for (int k = 0; k < per_row; k++)
                        json_array_append_new(a, rec(seq++, pad));
                body = json_dumps(a, JSON_COMPACT);
                assert_int_equal(
                    cp_push_queue_insert(db, ds, body, strlen(body), (size_t)per_row, cp_now_ms()), 0);
                if (ret_len)
                        *ret_len += strlen(body);
                free(body);
                json_decref(a);
        }
        sqlite3_close(db);
}

/* Rows inserted by another connection (the bucket writer's way) are merged into requests below
 * max_batch_bytes; over max_queue_bytes the oldest are dropped, counted, logged once. */
static void test_external_rows_and_bound(void **state)
{
        struct fx *f = *state;
        char url[160];
        struct cp_push_cfg c = base_cfg(f, url, sizeof(url));
        sqlite3 *db;
        size_t len = 0, keep;
        json_t *all, *e;
        size_t i;
        long first_seq = -1;

        /* cp_push_queue_insert's checks, and it creates the table on a fresh database. */
        db = db_open(f);
        assert_int_equal(cp_push_queue_insert(db, "x", "{\"a\":1}", 7, 1, 0), -EINVAL);
        assert_int_equal(cp_push_queue_insert(db, "x", "[{\"a\":1}]", 9, 2, 0), -EINVAL);
        assert_int_equal(cp_push_queue_insert(db, "x", "[1]", 3, 1, 0), -EINVAL);
        assert_int_equal(cp_push_queue_insert(db, "x y", "[{}]", 4, 1, 0), -EINVAL);
        assert_int_equal(cp_push_queue_insert(db, "x", "[{}]", CP_PUSH_MAX_BODY, 1, 0), -EMSGSIZE);
        sqlite3_close(db);
        /* Seqs 100..299: every row the same length. */
        insert_rows(f, "energy-hourly", 100, 20, 10, 60, &len);
        assert_int_equal(db_int(f, "SELECT rows FROM push_queue_size"), 20);
        assert_int_equal(db_int(f, "SELECT bytes FROM push_queue_size"), (int64_t)len);
        len /= 20;

        keep = 5000 / len;
        c.max_queue_bytes = 5000;
        c.max_batch_bytes = 2 * len + 10; /* two rows merged per request */
        push_start(f, &c);
        f->want_ds = "energy-hourly";
        f->want_n = keep * 10;
        assert_true(run_until(f, pred_delivered, 20000));
        assert_true(run_until(f, pred_idle, 5000));
        assert_int_equal(f->p.stats.dropped_records, (20 - keep) * 10);
        assert_int_equal(
            count_in_log(f, "W ods_push: queue over max_queue_bytes, dropped the oldest batches"), 1);
        /* The newest rows survived, and were merged two by two. */
        all = rx_log(f);
        json_array_foreach(all, i, e)
        {
                if (first_seq < 0)
                        first_seq = (long)json_integer_value(
                            json_object_get(json_array_get(json_object_get(e, "records"), 0), "seq"));
                assert_true(json_array_size(json_object_get(e, "records")) <= 20);
        }
        json_decref(all);
        assert_int_equal(first_seq, 100 + (long)(20 - keep) * 10);
        assert_true(check_delivery(f, "energy-hourly", first_seq, keep * 10, c.max_batch_bytes) <=
                    (keep + 1) / 2);

        /* Rows committed while running are sent after cp_push_notify(). */
        insert_rows(f, "energy-hourly", 1000, 3, 2, 5, NULL);
        cp_push_notify(&f->p);
        f->want_n = keep * 10 + 6;
        assert_true(run_until(f, pred_delivered, 10000));
        assert_true(run_until(f, pred_idle, 5000));
        push_stop(f);
}

/* A large array from the bucket writer is split into rows below 1 MB, each sent alone (two would not fit
 * a request), in order. */
static void test_insert_records_splits(void **state)
{
        struct fx *f = *state;
        char url[160];
        struct cp_push_cfg c = base_cfg(f, url, sizeof(url));
        json_t *a = json_array();
        sqlite3 *db;
        size_t reqs;

        for (long i = 0; i < 2500; i++)
                json_array_append_new(a, rec(i, 500));
        json_array_append_new(a, json_string("not an object"));
        db = db_open(f);
        assert_int_equal(cp_push_queue_insert_records(db, "parking-occupancy-daily", a, cp_now_ms()), 1);
        assert_int_equal(cp_push_queue_insert_records(db, "bad id", a, 0), -EINVAL);
        sqlite3_close(db);
        json_decref(a);
        assert_int_equal(db_int(f, "SELECT count(*) FROM push_queue"), 2);
        assert_int_equal(db_int(f, "SELECT sum(n_records) FROM push_queue"), 2500);
        assert_true(db_int(f, "SELECT max(length(body)) FROM push_queue") < CP_PUSH_MAX_BODY);
        assert_true(db_int(f, "SELECT min(length(body)) FROM push_queue") > 300000);

        c.timeout_ms = 20000; /* ~1 MB bodies under ASan on a busy machine */
        push_start(f, &c);
        f->want_ds = "parking-occupancy-daily";
        f->want_n = 2500;
        assert_true(run_until(f, pred_delivered, 30000));
        assert_true(run_until(f, pred_idle, 5000));
        reqs = check_delivery(f, "parking-occupancy-daily", 0, 2500, CP_PUSH_MAX_BODY);
        assert_int_equal(reqs, 2);
        push_stop(f);
}

/* The key never shows in logs, stats, stored errors or start errors; the URL's own query values are
 * redacted in logs too, and reach the receiver intact. */
static void test_key_secrecy(void **state)
{
        struct fx *f = *state;
        char url[200], err[256] = "", buf[512];
        struct cp_push_cfg c = base_cfg(f, url, sizeof(url));
        struct cp_push bad;
        json_t *all;

        c.url_template = "http://127.0.0.1:1/x?pushkey=" KEY_TOKEN;
        assert_int_equal(cp_push_start(&bad, &f->loop, &c, err, sizeof(err)), -EINVAL);
        assert_null(strstr(err, KEY_TOKEN));
        c.url_template = "ftp://x/" KEY_TOKEN;
        assert_int_equal(cp_push_start(&bad, &f->loop, &c, err, sizeof(err)), -EINVAL);
        assert_null(strstr(err, KEY_TOKEN));
        c.url_template = url;
        c.pushkey = " \n";
        assert_int_equal(cp_push_start(&bad, &f->loop, &c, err, sizeof(err)), -EINVAL);

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/push/1.0/{dataset}/realtime/push/?resource=rt",
                 f->port);
        c = base_cfg(f, buf, sizeof(buf));
        c.url_template = url;
        set_mode(f, "500");
        push_start(f, &c);
        add_n(f, "energy-daily", 0, 3, 5);
        f->want_failures = 2;
        assert_true(run_until(f, pred_failures, 10000));
        check_last_errors(f, "HTTP 500");
        cp_push_format_stats(&f->p, buf, sizeof(buf));
        assert_null(strstr(buf, KEY_TOKEN));
        assert_int_equal(
            count_in_log(f, "/api/push/1.0/energy-daily/realtime/push/?resource=REDACTED&pushkey=REDACTED"),
            1);
        set_mode(f, "ok");
        f->want_ds = "energy-daily";
        f->want_n = 3;
        assert_true(run_until(f, pred_delivered, 10000));
        all = rx_log(f);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(json_array_get(all, 0), "params"), "resource")),
            "rt");
        assert_string_equal(json_string_value(json_object_get(json_array_get(all, 0), "query")),
                            "resource=rt&pushkey=" KEY_ENC);
        json_decref(all);
        push_stop(f);
        /* The teardown checks the whole captured log. */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_order_and_batches, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_500, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_bad_answer, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_closed_connection, setup, teardown),
            cmocka_unit_test_setup_teardown(test_retry_timeout, setup, teardown),
            cmocka_unit_test_setup_teardown(test_answer_case_insensitive, setup, teardown),
            cmocka_unit_test_setup_teardown(test_receiver_down, setup, teardown),
            cmocka_unit_test_setup_teardown(test_stop_restart, setup, teardown),
            cmocka_unit_test_setup_teardown(test_external_rows_and_bound, setup, teardown),
            cmocka_unit_test_setup_teardown(test_insert_records_splits, setup, teardown),
            cmocka_unit_test_setup_teardown(test_key_secrecy, setup, teardown),
        };

        if (getenv("CP_TEST_FILTER")) /* e.g. CP_TEST_FILTER='test_retry_*' */
                cmocka_set_test_filter(getenv("CP_TEST_FILTER"));
        return cmocka_run_group_tests(tests, NULL, NULL);
}
