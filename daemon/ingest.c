/* ingest.c - see ingest.h. */
#include "ingest.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "citypulse/cp_err.h"

void cp_ingest_configure(struct cp_ingest *in, const struct cp_config *c)
{
        in->max_payload = c->mqtt_max_payload;
        in->max_future_skew_ms = c->agg_max_future_skew_ms;
        in->rejects_max_payload = c->rejects_max_payload;
}

void cp_ingest_init(struct cp_ingest *in, struct cp_router *router, struct cp_journal *journal, struct cp_live *live,
                    const struct cp_config *c)
{
        memset(in, 0, sizeof(*in));
        in->router = router;
        in->journal = journal;
        in->live = live;
        cp_ingest_configure(in, c);
}

static void journal_failed(struct cp_ingest *in, int err, int64_t rx_ms, const char *topic)
{
        char q[256];

        in->journal_errors++;
        in->burst_failed = true;
        cp_complain(&in->journal_complaint, rx_ms, "ingest",
                    "cannot write the journal, readings are kept live but not stored err=%s topic=%s", cp_err_name(err),
                    cp_log_quote(q, sizeof(q), topic, strlen(topic)));
}

static void reject(struct cp_ingest *in, int drv, const char *topic, const void *payload, size_t len, int64_t rx_ms,
                   enum cp_reason reason, const char *text)
{
        const char *dname = drv >= 0 ? cp_driver_at((size_t)drv)->name : "none";
        struct cp_jreject x = {
                .rx_ms = rx_ms,
                .topic = topic,
                .driver = dname,
                .reason = cp_reason_label(reason),
                .text = text,
                .payload = payload,
                .payload_len = CP_MIN(len, (size_t)in->rejects_max_payload),
        };
        struct cp_complaint *c = drv >= 0 ? &in->drv[drv].complaint[reason] : &in->no_route_complaint;
        char tq[256], xq[512];
        int r;

        in->rejects++;
        if (drv >= 0)
                in->drv[drv].rejects[reason]++;
        else
                in->no_route++;
        cp_complain(c, rx_ms, "ingest", "payload rejected driver=%s reason=%s topic=%s err=%s", dname, x.reason,
                    cp_log_quote(tq, sizeof(tq), topic, strlen(topic)), cp_log_quote(xq, sizeof(xq), text, strlen(text)));
        if (cp_log_threshold >= CP_LOG_DEBUG) {
                char pq[512];
                cp_log(CP_LOG_DEBUG, "ingest", "rejected payload driver=%s topic=%s payload=%s", dname, tq,
                       cp_log_quote(pq, sizeof(pq), payload, len));
        }
        r = cp_journal_append_reject(in->journal, &x);
        if (r < 0)
                journal_failed(in, r, rx_ms, topic);
        if (in->on_reject)
                in->on_reject(in, &x, in->ud);
}

void cp_ingest_message(struct cp_ingest *in, const char *topic, const void *payload, size_t len, int64_t rx_ms)
{
        const struct cp_route_entry *route;
        const struct cp_driver *d;
        struct cp_batch b;
        struct cp_msg msg = {.topic = topic, .payload = payload, .len = len, .rx_ms = rx_ms};
        char text[CP_REASON_TEXT_MAX + 64];
        int r;

        in->messages++;
        route = in->router ? cp_router_match(in->router, topic) : NULL;
        if (!route) {
                reject(in, -1, topic, payload, len, rx_ms, CP_REASON_NO_ROUTE, "no route matches this topic");
                return;
        }
        d = cp_driver_at((size_t)route->driver);
        in->drv[route->driver].messages++;
        if ((int64_t)len > in->max_payload) {
                snprintf(text, sizeof(text), "%s: payload of %zu bytes is larger than mqtt.max_payload %lld", d->name,
                         len, (long long)in->max_payload);
                reject(in, route->driver, topic, payload, len, rx_ms, CP_REASON_TOO_LARGE, text);
                return;
        }
        cp_batch_reset(&b);
        r = d->decode(route->state, &msg, &b);
        if (r == -ENODATA) {
                in->drv[route->driver].nodata++;
                return;
        }
        if (r < 0 || b.n == 0) {
                if (b.reason == CP_REASON_NONE)
                        b.reason = CP_REASON_BAD_FORMAT;
                snprintf(text, sizeof(text), "%s: %s", d->name, b.text[0] ? b.text : cp_err_name(r));
                reject(in, route->driver, topic, payload, len, rx_ms, b.reason, text);
                return;
        }
        for (size_t i = 0; i < b.n; i++) {
                if (b.v[i].ts_ms > rx_ms + in->max_future_skew_ms) {
                        snprintf(text, sizeof(text),
                                 "%s: observation time is %lld ms ahead of the receive time (agg.max_future_skew %lld ms) sensor=%s",
                                 d->name, (long long)(b.v[i].ts_ms - rx_ms), (long long)in->max_future_skew_ms,
                                 b.v[i].sensor_id);
                        reject(in, route->driver, topic, payload, len, rx_ms, CP_REASON_FUTURE_TIMESTAMP, text);
                        return;
                }
        }
        if (b.partial != CP_REASON_NONE) {
                /* The message is good but part of it was dropped (a TIC group with a bad checksum):
                 * keep the readings and record the dropped part. */
                snprintf(text, sizeof(text), "%s: %s%s", d->name, b.partial_text,
                         b.partial_count > 1 ? " (and more)" : "");
                reject(in, route->driver, topic, payload, len, rx_ms, b.partial, text);
        }
        r = cp_journal_append_readings(in->journal, b.v, b.n);
        if (r < 0)
                journal_failed(in, r, rx_ms, topic);
        in->readings += b.n;
        in->drv[route->driver].readings += b.n;
        for (size_t i = 0; i < b.n; i++) {
                r = cp_live_apply(in->live, &b.v[i]);
                if (r > 0) {
                        in->live_changes++;
                } else if (r == 0) {
                        in->stale_or_dup++;
                } else if (r == -ENOSPC) {
                        in->unregistered_over_cap++;
                        cp_complain(&in->cap_complaint, rx_ms, "ingest",
                                    "too many unregistered sensors, new ones are stored but not tracked live sensor=%s cap=%zu",
                                    b.v[i].sensor_id, in->live->max_unregistered);
                }
        }
}

void cp_ingest_expire_complaints(struct cp_ingest *in, int64_t now_ms, int64_t quiet_ms)
{
        char what[96];

        for (size_t i = 0; i < cp_driver_count() && i < CP_MAX_DRIVERS; i++)
                for (int r = 0; r < _CP_REASON_MAX; r++) {
                        if (!in->drv[i].complaint[r].active)
                                continue;
                        snprintf(what, sizeof(what), "payloads driver=%s reason=%s", cp_driver_at(i)->name,
                                 cp_reason_label((enum cp_reason)r));
                        cp_complain_expire(&in->drv[i].complaint[r], now_ms, quiet_ms, "ingest", what);
                }
        cp_complain_expire(&in->no_route_complaint, now_ms, quiet_ms, "ingest", "payloads driver=none reason=no_route");
        cp_complain_expire(&in->cap_complaint, now_ms, quiet_ms, "ingest", "unregistered sensor cap");
}

int cp_ingest_flush(struct cp_ingest *in, int64_t now_ms)
{
        bool wrote = in->journal->pend_len > 0;
        int r = cp_journal_flush(in->journal);
        bool failed;

        if (r < 0)
                journal_failed(in, r, now_ms, "(batch)");
        failed = in->burst_failed;
        in->burst_failed = false;
        if (failed)
                return r < 0 ? r : -EIO;
        /* Recovered only when bytes really reached the journal (an empty burst proves nothing). */
        if (wrote && in->journal_complaint.active)
                cp_complain_release(&in->journal_complaint, "ingest", "journal writes");
        return 0;
}
