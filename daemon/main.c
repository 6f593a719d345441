/* main.c - command line, start-up and shutdown order, signals.
 *
 * Start-up: config, registry and drivers are validated first (the same code as --check-config); then
 * the store is opened and any journal segments a previous run left (a crash, a full disk) are imported
 * before live state is rebuilt from the store; only then do the HTTP listener and the first broker
 * connection attempt start, and READY=1 is sent. Shutdown (SIGTERM/SIGINT): stop reading MQTT (what we
 * did not read is not acknowledged and stays with the broker), hand the last journal segment to the
 * store thread, wait for it to commit, close every handle, and exit 0 with uv_loop_close() == 0. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "citypulse/cp_err.h"
#include "buf.h"
#include "daemon.h"
#include "explore.h"
#include "log.h"
#include "timefmt.h"

#ifndef CP_VERSION
#define CP_VERSION "0.1.0"
#endif

#define DEFAULT_CONFIG    "/etc/citypulse/citypulse.conf"
#define ROTATE_MS         200
#define BUCKET_CLOSE_DELAY_MS 2000 /* a 1-minute window is closed this long after its end */
#define ROTATE_BYTES      (8u << 20)
#define REJECT_PUB_PER_S  50

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: citypulsed [-c FILE] [--log=auto|journal|plain]\n"
                "       citypulsed --check-config [-c FILE]\n"
                "       citypulsed --version | --help\n"
                "\n"
                "Turns city sensor traffic from MQTT into live, trustworthy open data.\n"
                "\n"
                "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
                "      --check-config  validate the configuration and registry files, print every error as\n"
                "                      FILE:LINE: message, exit 0 when valid, 1 otherwise\n"
                "      --log=SINK      auto (journald prefixes when stderr is the journal), journal, plain\n"
                "  -V, --version       print the version\n"
                "  -h, --help          print this help\n"
                "\n"
                "Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads config and registry,\n"
                "SIGUSR1 toggles debug logging.\n");
}

static void print_errors(struct cp_config_errors *errs)
{
        for (size_t i = 0; i < errs->n; i++)
                fprintf(stderr, "%s\n", errs->msg[i]);
}

/* Everything a config brings, built and validated together, so a reload swaps all or nothing. */
struct bundle {
        struct cp_config *cfg;
        struct cp_registry *reg;
        struct cp_router *router;
        struct cp_tz *tz;
};

static void bundle_free(struct bundle *b)
{
        cp_router_free(b->router);
        cp_registry_free(b->reg);
        cp_tz_free(b->tz);
        cp_config_free(b->cfg);
        memset(b, 0, sizeof(*b));
}

static int bundle_load(const char *path, struct bundle *b, struct cp_config_errors *errs)
{
        int r, bad = 0;

        memset(b, 0, sizeof(*b));
        r = cp_config_load(path, cp_driver_known, &b->cfg, errs);
        if (r < 0)
                return r;
        if ((r = cp_tz_load(b->cfg->agg_timezone, &b->tz)) < 0) {
                cp_config_error(errs, path, 0, "agg.timezone: unknown time zone '%s'", b->cfg->agg_timezone);
                bad++;
        }
        if (cp_registry_load(b->cfg, &b->reg, errs) < 0)
                bad++;
        if (cp_router_build(b->cfg, &b->router, errs) < 0)
                bad++;
        if (bad) {
                bundle_free(b);
                return -EINVAL;
        }
        return 0;
}

/* --- loop callbacks --- */

static void rotate_journal(struct cp_daemon *d)
{
        char *path = NULL;

        if (cp_journal_rotate(&d->journal, &path) < 0) {
                cp_log(CP_LOG_ERR, "journal", "cannot rotate segment err=ENOMEM");
                return;
        }
        if (path)
                cp_storeq_submit_take(&d->storeq, path);
}

static void on_rotate(uv_timer_t *t)
{
        rotate_journal(t->data);
}

static void on_reject(struct cp_ingest *in, const struct cp_jreject *x, void *ud)
{
        struct cp_daemon *d = ud;
        char topic[512], iso[CP_ISO_MAX];
        json_t *j;
        char *body;
        int64_t now = x->rx_ms;

        (void)in;
        /* Republishing rejects must never slow ingest down: a storm is cut to a few a second (all of
         * them are in the rejects table and counted). */
        if (now - d->reject_window_ms >= 1000) {
                d->reject_window_ms = now;
                d->rejects_in_window = 0;
        }
        if (++d->rejects_in_window > REJECT_PUB_PER_S || d->mqtt.state != CP_MQTT_CONNECTED)
                return;
        snprintf(topic, sizeof(topic), "%s/rejects/%s", d->cfg->publish_prefix, x->driver);
        j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s%}", "received_at", cp_time_iso(iso, sizeof(iso), x->rx_ms, d->tz),
                      "topic", x->topic, "driver", x->driver, "reason", x->reason, "detail", x->text, "payload",
                      (const char *)x->payload, x->payload_len);
        if (!j) {
                /* Not UTF-8: jansson refuses it as a string; say so instead of sending the bytes. */
                j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:n}", "received_at", iso, "topic", x->topic, "driver",
                              x->driver, "reason", x->reason, "detail", x->text, "payload");
        }
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (body)
                (void)cp_mqtt_in_publish(&d->mqtt, topic, body, strlen(body), false);
        free(body);
}

static void on_mqtt_message(struct cp_mqtt_in *m, const struct mosquitto_message *msg, void *ud)
{
        struct cp_daemon *d = ud;

        (void)m;
        cp_ingest_message(&d->ingest, msg->topic, msg->payload, (size_t)msg->payloadlen, cp_now_ms());
}

static void on_mqtt_burst_end(struct cp_mqtt_in *m, void *ud)
{
        struct cp_daemon *d = ud;

        if (cp_ingest_flush(&d->ingest, cp_now_ms()) < 0) {
                /* Not journaled: the burst's PUBACKs must not leave. */
                cp_mqtt_in_drop(m);
                return;
        }
        if (m->drop_complaint.active && !d->ingest.journal_complaint.active)
                cp_complain_release(&m->drop_complaint, "mqtt", "connection drops for journal failures");
        if (d->journal.bytes >= ROTATE_BYTES)
                rotate_journal(d);
}

static void on_mqtt_state(struct cp_mqtt_in *m, void *ud)
{
        (void)m;
        (void)ud;
}

static void close_if_active(uv_handle_t *h)
{
        if (h->loop && !uv_is_closing(h))
                uv_close(h, NULL);
}

/* ---- bucket rows out over MQTT: produced on the store thread, published on the loop ---------------- */

struct bucket_msg {
        struct bucket_msg *next;
        char *topic;
        char *body;
};

#define BUCKET_MSG_MAX 20000 /* pending while the loop is busy; beyond, dropped and counted */

/* Store thread, inside the bucket transaction: the rows join the durable push queue atomically. */
static int on_bucket_batch(void *ud, const struct cp_dataset *ds, json_t *records)
{
        struct cp_daemon *d = ud;
        int r = cp_push_queue_insert_records(d->store_db, ds->id, records, cp_now_ms());

        return r < 0 ? r : 0;
}

static void on_bucket_row(void *ud, const struct cp_bucket_event *ev)
{
        struct cp_daemon *d = ud;
        struct bucket_msg *m;
        char level[512], topic[1024];

        if (atomic_load(&d->bucket_msgs_pending) >= BUCKET_MSG_MAX) {
                atomic_fetch_add(&d->bucket_msgs_dropped, 1);
                return;
        }
        cp_topic_level(level, sizeof(level), ev->id);
        snprintf(topic, sizeof(topic), "%s/buckets/%s/%s", d->publish_prefix, ev->ds->id, level);
        if (!(m = calloc(1, sizeof(*m))) || !(m->topic = strdup(topic)) ||
            !(m->body = json_dumps(ev->record, JSON_COMPACT))) {
                if (m)
                        free(m->topic);
                free(m);
                atomic_fetch_add(&d->bucket_msgs_dropped, 1);
                return;
        }
        uv_mutex_lock(&d->bucket_mu);
        if (d->bucket_tail)
                d->bucket_tail->next = m;
        else
                d->bucket_head = m;
        d->bucket_tail = m;
        uv_mutex_unlock(&d->bucket_mu);
        atomic_fetch_add(&d->bucket_msgs_pending, 1);
        uv_async_send(&d->storeq.async);
        if (d->push_running)
                cp_push_notify(&d->push); /* after the commit: the rows are in push_queue */
}

/* Loop thread: publishes what the store thread produced (QoS 1, not retained: one message per closed or
 * revised bucket). While the broker is away they are dropped and counted: the rows are in the database
 * and the exports, and MQTT out must never hold ingest back. */
static void drain_bucket_msgs(struct cp_daemon *d)
{
        struct bucket_msg *m;

        uv_mutex_lock(&d->bucket_mu);
        m = d->bucket_head;
        d->bucket_head = d->bucket_tail = NULL;
        uv_mutex_unlock(&d->bucket_mu);
        while (m) {
                struct bucket_msg *next = m->next;

                if (d->mqtt.state == CP_MQTT_CONNECTED &&
                    cp_mqtt_in_publish(&d->mqtt, m->topic, m->body, strlen(m->body), false) == 0)
                        d->bucket_msgs_published++;
                else
                        atomic_fetch_add(&d->bucket_msgs_dropped, 1);
                atomic_fetch_sub(&d->bucket_msgs_pending, 1);
                free(m->topic);
                free(m->body);
                free(m);
                m = next;
        }
}

/* Reads http.admin_token_file (whitespace trimmed). Returns 0 with *ret (NULL when the key is unset), or a
 * negative errno with the admin endpoints left as they were. The token is never logged. */
static int read_admin_token(const struct cp_config *c, char **ret)
{
        char buf[4097], err[256];
        int r;

        *ret = NULL;
        if (!c->http_admin_token_file)
                return 0;
        if ((r = cp_read_secret(c->http_admin_token_file, buf, sizeof(buf), err, sizeof(err))) < 0)
                return r;
        if (strlen(buf) < 16 || strpbrk(buf, " \t"))
                return -EINVAL;
        return (*ret = strdup(buf)) ? 0 : -ENOMEM;
}

static void load_admin_token(struct cp_daemon *d)
{
        char *tok;
        int r = read_admin_token(d->cfg, &tok);

        if (r < 0) {
                cp_log(CP_LOG_ERR, "http", "cannot use http.admin_token_file, admin endpoints keep their state path=%s err=%s%s",
                       d->cfg->http_admin_token_file, cp_err_name(-r),
                       r == -EINVAL ? " reason='the token must be one word of at least 16 characters'" : "");
                return;
        }
        free(d->admin_token);
        d->admin_token = tok;
}

/* The portal push (ods_push.*): the key from its file, trimmed; never logged. */
static int start_push(struct cp_daemon *d)
{
        struct cp_push_cfg pc;
        char key[1024] = "", path[4200], err[512] = "";
        int r;

        if (d->cfg->ods_push_pushkey_file &&
            (r = cp_read_secret(d->cfg->ods_push_pushkey_file, key, sizeof(key), err, sizeof(err))) < 0) {
                cp_log(CP_LOG_ERR, "push", "cannot read ods_push.pushkey_file err=%s reason='%s'", cp_err_name(-r), err);
                return r;
        }
        memset(&pc, 0, sizeof(pc));
        snprintf(path, sizeof(path), "%s/citypulse.db", d->cfg->data_dir);
        pc.url_template = d->cfg->ods_push_url;
        pc.pushkey = key[0] ? key : NULL;
        pc.db_path = path;
        r = cp_push_start(&d->push, &d->loop, &pc, err, sizeof(err));
        memset(key, 0, sizeof(key));
        if (r < 0) {
                cp_log(CP_LOG_ERR, "push", "cannot start the portal push err=%s reason='%s'", cp_err_name(-r), err);
                return r;
        }
        d->push_running = true;
        return 0;
}

static void on_store_progress(struct cp_storeq *q)
{
        drain_bucket_msgs(cp_container_of(q, struct cp_daemon, storeq));
}

static void on_store_stopped(struct cp_storeq *q)
{
        struct cp_daemon *d = cp_container_of(q, struct cp_daemon, storeq);

        drain_bucket_msgs(d);
        if (d->push_running) {
                d->push_running = false;
                cp_push_stop(&d->push, NULL);
        }
        cp_log(CP_LOG_NOTICE, "main", "store closed readings_stored=%" PRIu64 " segments=%" PRIu64,
               atomic_load(&q->readings_stored), atomic_load(&q->segments_done));
        close_if_active((uv_handle_t *)&d->rotate_timer);
}

static void on_mqtt_closed(struct cp_mqtt_in *m, void *ud)
{
        struct cp_daemon *d = ud;

        (void)m;
        /* Nothing can append to the journal any more: hand over the last segment and let the store
         * thread finish. */
        uv_timer_stop(&d->rotate_timer);
        rotate_journal(d);
        cp_journal_close(&d->journal);
        cp_storeq_stop(&d->storeq);
}

static void on_http_closed(struct cp_http *h)
{
        struct cp_daemon *d = cp_container_of(h, struct cp_daemon, http);

        cp_api_cache_drop(d);
}

static void on_rrd_stopped(struct cp_rrd *r);

static void begin_shutdown(struct cp_daemon *d, const char *why)
{
        if (d->stopping)
                return;
        d->stopping = true;
        cp_sd_notify("STOPPING=1");
        cp_log(CP_LOG_NOTICE, "main", "stopping signal=%s", why);
        close_if_active((uv_handle_t *)&d->sig_term);
        close_if_active((uv_handle_t *)&d->sig_int);
        close_if_active((uv_handle_t *)&d->sig_hup);
        close_if_active((uv_handle_t *)&d->sig_usr1);
        close_if_active((uv_handle_t *)&d->stats_timer);
        close_if_active((uv_handle_t *)&d->watchdog_timer);
        close_if_active((uv_handle_t *)&d->rrd_timer);
        cp_republish_stop(&d->republish);
        cp_sse_stop(&d->sse);
        cp_api_graphs_stop(d);
        cp_explore_stop(d);
        cp_http_stop(&d->http);
        cp_mqtt_in_stop(&d->mqtt);
        if (d->rrd_running)
                cp_rrd_stop(&d->rrd, on_rrd_stopped);
}

static void reload(struct cp_daemon *d)
{
        struct cp_config_errors errs = {0};
        struct bundle b;
        char keys[512];
        struct cp_registry *old_reg;

        cp_sd_notify("RELOADING=1");
        cp_log(CP_LOG_NOTICE, "main", "reloading file=%s", d->config_path);
        if (bundle_load(d->config_path, &b, &errs) < 0) {
                d->reload_failures++;
                for (size_t i = 0; i < errs.n; i++)
                        cp_log(CP_LOG_ERR, "config", "reload refused, keeping the running configuration: %s", errs.msg[i]);
                cp_config_errors_done(&errs);
                cp_sd_notify("READY=1");
                return;
        }
        if (cp_config_restart_keys(d->cfg, b.cfg, keys, sizeof(keys)))
                cp_log(CP_LOG_WARNING, "config", "changed keys need a restart, keeping their running values keys=%s", keys);
        cp_config_keep_restart_keys(d->cfg, b.cfg);
        if (cp_live_link(&d->live, b.reg) < 0) {
                d->reload_failures++;
                cp_log(CP_LOG_ERR, "config", "reload failed: out of memory linking the registry");
                (void)cp_live_link(&d->live, d->reg);
                bundle_free(&b);
                cp_sd_notify("READY=1");
                return;
        }
        old_reg = d->reg;
        d->reg = b.reg;
        cp_registry_free(old_reg);
        {
                struct cp_topo *topo = cp_topo_new(d->reg);
                if (topo)
                        cp_storeq_set_topo(&d->storeq, topo);
                else
                        cp_log(CP_LOG_ERR, "buckets", "out of memory: buckets keep the previous registry");
        }
        cp_router_free(d->router);
        d->router = b.router;
        d->ingest.router = b.router;
        cp_tz_free(b.tz); /* agg.timezone needs a restart: the running zone stays */
        cp_config_free(d->cfg);
        d->cfg = b.cfg;
        d->live.stale_after_ms = d->cfg->live_stale_after_ms;
        d->live.full_threshold = d->cfg->live_full_threshold;
        d->live.max_unregistered = (size_t)d->cfg->registry_max_unregistered;
        cp_ingest_configure(&d->ingest, d->cfg);
        cp_mqtt_in_set_routes(&d->mqtt, d->cfg);
        cp_log_threshold = (int)d->cfg->log_level;
        load_admin_token(d);
        d->reg_gen++;
        d->reloads++;
        cp_log(CP_LOG_NOTICE, "main", "reloaded facilities=%zu sensors=%zu routes=%zu", d->reg->n_facilities,
               d->reg->n_sensors, d->cfg->n_routes);
        cp_sd_notify("READY=1");
}

static void on_signal(uv_signal_t *s, int signum)
{
        struct cp_daemon *d = s->data;

        switch (signum) {
        case SIGTERM:
                begin_shutdown(d, "SIGTERM");
                break;
        case SIGINT:
                begin_shutdown(d, "SIGINT");
                break;
        case SIGHUP:
                reload(d);
                break;
        case SIGUSR1:
                cp_log_threshold = cp_log_threshold == CP_LOG_DEBUG ? (int)d->cfg->log_level : CP_LOG_DEBUG;
                cp_log(CP_LOG_NOTICE, "main", "log level changed level=%s", cp_log_level_name(cp_log_threshold));
                break;
        default:
                break;
        }
}

static void on_stats(uv_timer_t *t)
{
        struct cp_daemon *d = t->data;
        const struct cp_ingest *in = &d->ingest;
        char status[256];
        uint64_t dm = in->messages - d->last_summary_messages;
        double secs = (double)d->cfg->log_summary_interval_ms / 1000.0;

        d->last_summary_messages = in->messages;
        cp_ingest_expire_complaints(&d->ingest, cp_now_ms(), d->cfg->log_summary_interval_ms);
        char push[256] = "";

        if (d->push_running)
                snprintf(push, sizeof(push),
                         " push_queue=%" PRId64 " push_records_sent=%" PRIu64 " push_failures=%" PRIu64
                         " push_dropped=%" PRIu64,
                         d->push.stats.queue_rows, d->push.stats.records_sent, d->push.stats.failures,
                         d->push.stats.dropped_records);
        cp_log(CP_LOG_INFO, "stats",
               "summary messages=%" PRIu64 " per_s=%.1f readings=%" PRIu64 " stored=%" PRIu64 " rejects=%" PRIu64
               " no_route=%" PRIu64 " journal_errors=%" PRIu64 " store_queue=%" PRId64 " mqtt=%s unregistered=%zu"
               " bucket_rows=%" PRIu64 " bucket_revisions=%" PRIu64 " buckets_dirty=%" PRId64 "%s",
               in->messages, (double)dm / secs, in->readings, atomic_load(&d->storeq.readings_stored), in->rejects,
               in->no_route, in->journal_errors, atomic_load(&d->storeq.queue_depth),
               cp_mqtt_state_name(d->mqtt.state), d->live.n_unregistered, atomic_load(&d->storeq.bstats.rows),
               atomic_load(&d->storeq.bstats.revisions), atomic_load(&d->storeq.bstats.dirty), push);
        snprintf(status, sizeof(status), "STATUS=mqtt %s, %" PRIu64 " messages (%.0f/s), %" PRIu64 " stored, %" PRIu64 " rejected",
                 cp_mqtt_state_name(d->mqtt.state), in->messages, (double)dm / secs,
                 atomic_load(&d->storeq.readings_stored), in->rejects);
        cp_sd_notify(status);
}

/* Samples live state into the dashboard series: occupancy and free spaces per facility, power and
 * imported energy per district. Unknown is NAN, which the series store as unknown. */
static void on_rrd_sample(uv_timer_t *t)
{
        struct cp_daemon *d = t->data;
        struct cp_rrd_batch *b;
        int64_t now = cp_now_ms();

        if (!d->rrd_running || !(b = cp_rrd_batch_new()))
                return;
        for (size_t i = 0; i < d->reg->n_facilities; i++) {
                const struct cp_reg_facility *f = &d->reg->facilities[i];
                struct cp_facility_view v;
                cp_live_facility(&d->live, f, now, &v);
                (void)cp_rrd_batch_add_facility(b, f->id, now / 1000, v.known ? v.occupancy_rate : NAN,
                                                v.known ? (double)v.free_spaces : NAN);
        }
        for (size_t i = 0; i < d->reg->n_districts; i++) {
                const struct cp_reg_district *rd = &d->reg->districts[i];
                struct cp_energy_view v;
                cp_live_district(&d->live, rd, now, &v);
                (void)cp_rrd_batch_add_district(b, rd->name, now / 1000, v.has_power ? v.power_w : NAN,
                                                v.has_import ? v.energy_import_kwh : NAN);
        }
        if (cp_rrd_batch_count(b) == 0) {
                cp_rrd_batch_free(b);
                return;
        }
        cp_rrd_submit_take(&d->rrd, b);
}

static void on_rrd_stopped(struct cp_rrd *r)
{
        struct cp_daemon *d = cp_container_of(r, struct cp_daemon, rrd);

        d->rrd_running = false;
}

static void on_watchdog(uv_timer_t *t)
{
        (void)t;
        cp_sd_notify("WATCHDOG=1");
}

/* --- start-up --- */

static int restore_reading(void *ud, const struct cp_reading *r)
{
        struct cp_daemon *d = ud;

        (void)cp_live_apply(&d->live, r);
        return 0;
}

static int mkdir_p(const char *dir)
{
        char tmp[4096];
        size_t n = strlen(dir);

        if (n == 0 || n >= sizeof(tmp))
                return -ENAMETOOLONG;
        memcpy(tmp, dir, n + 1);
        for (char *p = tmp + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Imports the segments left by an earlier run, then rebuilds live state from the store. */
static int open_store(struct cp_daemon *d, struct cp_store **ret, char ***ret_left, size_t *ret_n_left)
{
        char path[4096], jdir[4096], err[512] = "";
        char **segs = NULL;
        size_t n = 0;
        struct cp_store *st;
        int r;

        snprintf(path, sizeof(path), "%s/citypulse.db", d->cfg->data_dir);
        snprintf(jdir, sizeof(jdir), "%s/journal", d->cfg->data_dir);
        if ((r = mkdir_p(d->cfg->data_dir)) < 0) {
                cp_log(CP_LOG_ERR, "main", "cannot create data_dir path=%s err=%s", d->cfg->data_dir, cp_err_name(r));
                return r;
        }
        if ((r = cp_store_open(path, &st, err, sizeof(err))) < 0) {
                cp_log(CP_LOG_ERR, "store", "cannot open database path=%s err=%s reason='%s'", path, cp_err_name(r), err);
                return r;
        }
        if ((r = cp_push_queue_init(cp_store_db(st))) < 0) {
                cp_log(CP_LOG_ERR, "store", "cannot create the push queue path=%s err=%s", path, cp_err_name(r));
                cp_store_close(st);
                return r;
        }
        d->store_db = cp_store_db(st);
        if ((r = cp_journal_list(jdir, &segs, &n)) < 0) {
                cp_log(CP_LOG_ERR, "journal", "cannot list journal path=%s err=%s", jdir, cp_err_name(r));
                cp_store_close(st);
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                struct cp_import_result res;
                r = cp_store_import(st, segs[i], &res, err, sizeof(err));
                if (r < 0) {
                        /* Keep them: the store thread retries them first, before any new segment. */
                        cp_log(CP_LOG_ERR, "journal", "cannot import a left-over segment yet, will retry path=%s err=%s reason='%s'",
                               segs[i], cp_err_name(r), err);
                        memmove(segs, segs + i, (n - i) * sizeof(*segs));
                        *ret_left = segs;
                        *ret_n_left = n - i;
                        segs = NULL;
                        break;
                }
                cp_log(CP_LOG_NOTICE, "journal", "recovered left-over segment path=%s records=%" PRIu64 " new=%" PRIu64 " duplicate=%" PRIu64 "%s",
                       segs[i], res.records, res.readings_new, res.readings_dup, res.torn ? " torn=1" : "");
                (void)unlink(segs[i]);
                free(segs[i]);
        }
        free(segs);
        if ((r = cp_store_load_latest(st, restore_reading, d)) < 0) {
                cp_log(CP_LOG_ERR, "store", "cannot load latest values err=%s", cp_err_name(r));
                cp_store_close(st);
                return r;
        }
        if ((r = cp_journal_open(&d->journal, jdir)) < 0) {
                cp_log(CP_LOG_ERR, "journal", "cannot open journal path=%s err=%s", jdir, cp_err_name(r));
                cp_store_close(st);
                return r;
        }
        *ret = st;
        return 0;
}

static void signal_start(struct cp_daemon *d, uv_signal_t *s, int signum)
{
        uv_signal_init(&d->loop, s);
        s->data = d;
        uv_signal_start(s, on_signal, signum);
}

static void walk_close(uv_handle_t *h, void *arg)
{
        (void)arg;
        if (!uv_is_closing(h)) {
                cp_log(CP_LOG_ERR, "main", "handle left open at exit type=%s", uv_handle_type_name(uv_handle_get_type(h)));
                uv_close(h, NULL);
        }
}

static int run(struct cp_daemon *d, struct bundle *b)
{
        struct cp_store *st = NULL;
        char err[512] = "";
        char **left = NULL;
        size_t n_left = 0;
        uint64_t wd;
        int r;

        d->cfg = b->cfg;
        d->reg = b->reg;
        d->router = b->router;
        d->tz = b->tz;
        d->started_ms = cp_now_ms();
        cp_log_threshold = (int)d->cfg->log_level;
        cp_live_init(&d->live, (size_t)d->cfg->registry_max_unregistered, d->cfg->live_stale_after_ms,
                     d->cfg->live_full_threshold);
        if ((r = cp_live_link(&d->live, d->reg)) < 0)
                return r;
        if ((r = uv_loop_init(&d->loop)) < 0)
                return r;
        d->loop_inited = true;
        d->storeq.on_stopped = on_store_stopped;
        d->storeq.on_progress = on_store_progress;
        if ((r = open_store(d, &st, &left, &n_left)) < 0)
                return r;
        {
                struct cp_bucket_cfg bc = {
                        .stale_after_ms = d->cfg->live_stale_after_ms,
                        .allowed_lateness_ms = d->cfg->agg_allowed_lateness_ms,
                        .close_delay_ms = BUCKET_CLOSE_DELAY_MS,
                        .tz = d->tz,
                        .on_row = on_bucket_row,
                        .on_batch = d->cfg->ods_push_url ? on_bucket_batch : NULL,
                        .ud = d,
                };
                struct cp_topo *topo = cp_topo_new(d->reg);

                for (int p = 0; p < _CP_P_MAX; p++)
                        bc.retention_ms[p] = d->cfg->store_retention_buckets_ms[p];
                if (!topo || (r = uv_mutex_init(&d->bucket_mu)) < 0) {
                        cp_topo_free(topo);
                        cp_store_close(st);
                        return -ENOMEM;
                }
                d->bucket_mu_inited = true;
                snprintf(d->publish_prefix, sizeof(d->publish_prefix), "%s", d->cfg->publish_prefix);
                cp_storeq_set_buckets(&d->storeq, &bc, topo);
        }
        if ((r = cp_storeq_start(&d->storeq, &d->loop, st, d->cfg->store_retention_readings_ms,
                                 d->cfg->store_retention_rejects_ms)) < 0) {
                cp_log(CP_LOG_ERR, "store", "cannot start the store thread err=%s", uv_err_name(r));
                cp_store_close(st);
                return r;
        }
        for (size_t i = 0; i < n_left; i++)
                cp_storeq_submit_take(&d->storeq, left[i]);
        free(left);
        cp_ingest_init(&d->ingest, d->router, &d->journal, &d->live, d->cfg);
        d->ingest.on_reject = on_reject;
        d->ingest.ud = d;
        snprintf(err, sizeof(err), "%s/rrd", d->cfg->data_dir);
        {
                char rdir[4096], rerr[256] = "";
                snprintf(rdir, sizeof(rdir), "%s", err);
                if ((r = cp_rrd_start(&d->rrd, &d->loop, rdir, d->cfg->rrd_cached_address, rerr, sizeof(rerr))) < 0)
                        /* The dashboard graphs are best-effort: the daemon runs without them. */
                        cp_log(CP_LOG_ERR, "rrd", "graphs disabled, cannot start the series store err=%s reason='%s'",
                               cp_err_name(r), rerr);
                else
                        d->rrd_running = true;
        }
        uv_timer_init(&d->loop, &d->rrd_timer);
        d->rrd_timer.data = d;
        uv_timer_start(&d->rrd_timer, on_rrd_sample, 0, (uint64_t)d->cfg->rrd_step_ms);
        if ((r = cp_sse_init(&d->sse, d, &d->loop)) < 0) {
                cp_log(CP_LOG_ERR, "http", "cannot start the event stream timer err=%s", uv_err_name(r));
                goto fail_stop;
        }
        if ((r = cp_http_start(&d->http, &d->loop, d->cfg, cp_api_handle, cp_api_done, d, err, sizeof(err))) < 0) {
                cp_log(CP_LOG_ERR, "http", "cannot start: %s", err);
                goto fail_stop;
        }
        d->http.on_closed = on_http_closed;
        d->mqtt.on_message = on_mqtt_message;
        if ((r = cp_mqtt_in_start(&d->mqtt, &d->loop, d->cfg, err, sizeof(err))) < 0) {
                cp_log(CP_LOG_ERR, "mqtt", "cannot start: %s", err);
                goto fail_stop;
        }
        load_admin_token(d);
        if (d->cfg->ods_push_url && (r = start_push(d)) < 0)
                goto fail_stop;
        if ((r = cp_republish_start(&d->republish, d)) < 0) {
                cp_log(CP_LOG_ERR, "mqtt", "cannot start the open-data republisher err=%s", uv_err_name(r));
                goto fail_stop;
        }
        d->mqtt.on_message = on_mqtt_message;
        d->mqtt.on_state = on_mqtt_state;
        d->mqtt.on_burst_end = on_mqtt_burst_end;
        d->mqtt.on_closed = on_mqtt_closed;
        d->mqtt.ud = d;
        signal_start(d, &d->sig_term, SIGTERM);
        signal_start(d, &d->sig_int, SIGINT);
        signal_start(d, &d->sig_hup, SIGHUP);
        signal_start(d, &d->sig_usr1, SIGUSR1);
        uv_timer_init(&d->loop, &d->rotate_timer);
        d->rotate_timer.data = d;
        uv_timer_start(&d->rotate_timer, on_rotate, ROTATE_MS, ROTATE_MS);
        uv_timer_init(&d->loop, &d->stats_timer);
        d->stats_timer.data = d;
        uv_timer_start(&d->stats_timer, on_stats, (uint64_t)d->cfg->log_summary_interval_ms,
                       (uint64_t)d->cfg->log_summary_interval_ms);
        uv_timer_init(&d->loop, &d->watchdog_timer);
        d->watchdog_timer.data = d;
        if ((wd = cp_sd_watchdog_usec()) > 0)
                uv_timer_start(&d->watchdog_timer, on_watchdog, wd / 2000, wd / 2000);
        cp_log(CP_LOG_NOTICE, "main", "started version=" CP_VERSION " config=%s facilities=%zu sensors=%zu routes=%zu http=%s broker=%s:%lld",
               d->config_path, d->reg->n_facilities, d->reg->n_sensors, d->cfg->n_routes, d->cfg->http_listen[0],
               d->cfg->mqtt_host, (long long)d->cfg->mqtt_port);
        cp_sd_notify("READY=1\nSTATUS=running");
        uv_run(&d->loop, UV_RUN_DEFAULT);
        return 0;

fail_stop:
        /* Start-up failed after the store thread started: stop it cleanly so nothing is lost. */
        d->stopping = true;
        close_if_active((uv_handle_t *)&d->rrd_timer);
        cp_republish_stop(&d->republish);
        cp_sse_stop(&d->sse);
        cp_api_graphs_stop(d);
        cp_explore_stop(d);
        cp_http_stop(&d->http);
        if (d->rrd_running)
                cp_rrd_stop(&d->rrd, on_rrd_stopped);
        cp_journal_close(&d->journal);
        cp_storeq_stop(&d->storeq);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        return r;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
                {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
                {"log", required_argument, NULL, 'L'},    {NULL, 0, NULL, 0},
        };
        const char *config = DEFAULT_CONFIG;
        enum cp_log_sink sink = CP_LOG_SINK_AUTO;
        struct cp_config_errors errs = {0};
        struct cp_daemon *d;
        struct bundle b;
        bool check = false;
        int c, r, rc;

        while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'C':
                        check = true;
                        break;
                case 'V':
                        printf("citypulsed " CP_VERSION "\n");
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'L':
                        if (strcmp(optarg, "journal") == 0)
                                sink = CP_LOG_SINK_JOURNAL;
                        else if (strcmp(optarg, "plain") == 0)
                                sink = CP_LOG_SINK_PLAIN;
                        else if (strcmp(optarg, "auto") != 0) {
                                fprintf(stderr, "citypulsed: --log: expected auto, journal or plain, got '%s'\n", optarg);
                                return 2;
                        }
                        break;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "citypulsed: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        cp_log_init(sink, CP_LOG_INFO);
        signal(SIGPIPE, SIG_IGN);
        srandom((unsigned)(time(NULL) ^ getpid()));
        mosquitto_lib_init();
        r = bundle_load(config, &b, &errs);
        if (r < 0) {
                print_errors(&errs);
                if (!check)
                        fprintf(stderr, "citypulsed: invalid configuration, not starting\n");
                cp_config_errors_done(&errs);
                mosquitto_lib_cleanup();
                return 1;
        }
        if (check) {
                printf("%s: configuration valid: %zu routes, %zu facilities, %zu sensors\n", config, b.cfg->n_routes,
                       b.reg->n_facilities, b.reg->n_sensors);
                bundle_free(&b);
                mosquitto_lib_cleanup();
                return 0;
        }
        d = calloc(1, sizeof(*d));
        if (!d) {
                bundle_free(&b);
                return 1;
        }
        d->config_path = config;
        r = run(d, &b);
        rc = r < 0 ? 1 : 0;
        if (d->loop_inited) {
                int lc = uv_loop_close(&d->loop);
                if (lc == UV_EBUSY) {
                        uv_walk(&d->loop, walk_close, NULL);
                        uv_run(&d->loop, UV_RUN_DEFAULT);
                        lc = uv_loop_close(&d->loop);
                        rc = 1;
                }
                if (lc < 0 && r >= 0)
                        rc = 1;
        }
        if (r >= 0)
                cp_log(CP_LOG_NOTICE, "main", "stopped exit=%d", rc);
        cp_live_done(&d->live);
        bundle_free(&(struct bundle){.cfg = d->cfg, .reg = d->reg, .router = d->router, .tz = d->tz});
        if (d->bucket_mu_inited) {
                while (d->bucket_head) {
                        struct bucket_msg *m = d->bucket_head;
                        d->bucket_head = m->next;
                        free(m->topic);
                        free(m->body);
                        free(m);
                }
                uv_mutex_destroy(&d->bucket_mu);
        }
        free(d->admin_token);
        free(d);
        mosquitto_lib_cleanup();
        return rc;
}
