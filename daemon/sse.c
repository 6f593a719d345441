/* sse.c - see sse.h. */
#include "sse.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "timefmt.h"

#define CLIENT_BUF_MAX (256 * 1024) /* queued bytes per client before it is dropped as too slow */
#define PING_MS        15000        /* a comment line keeps proxies from closing an idle stream */
#define MAX_CLIENTS    1024

struct sse_client {
        struct sse_client *next, *prev;
        struct cp_sse *s;
        struct MHD_Connection *conn;
        char *buf;
        size_t len, off, cap;
        bool suspended;
        bool ended; /* the stream ends once the buffer is drained */
};

struct sse_last {
        int status;
        int64_t free_spaces;
        bool known;
};

static void unlink_client(struct cp_sse *s, struct sse_client *c)
{
        if (c->prev)
                c->prev->next = c->next;
        else
                s->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_clients--;
}

static void resume(struct sse_client *c)
{
        if (c->suspended) {
                c->suspended = false;
                MHD_resume_connection(c->conn);
                cp_http_kick(&c->s->d->http);
        }
}

/* Appends text to one client's buffer; a client that falls too far behind is ended. */
static void client_push(struct sse_client *c, const char *text, size_t n)
{
        if (c->ended)
                return;
        if (c->off && c->off == c->len)
                c->off = c->len = 0;
        if (c->len + n > CLIENT_BUF_MAX) {
                c->s->dropped_clients++;
                c->ended = true;
                resume(c);
                return;
        }
        if (c->len + n > c->cap) {
                size_t ncap = CP_MAX(c->cap * 2, c->len + n + 1024);
                char *nb = realloc(c->buf, ncap);
                if (!nb) {
                        c->ended = true;
                        resume(c);
                        return;
                }
                c->buf = nb;
                c->cap = ncap;
        }
        memcpy(c->buf + c->len, text, n);
        c->len += n;
        resume(c);
}

static void broadcast(struct cp_sse *s, const char *text, size_t n)
{
        for (struct sse_client *c = s->clients; c; c = c->next)
                client_push(c, text, n);
}

static ssize_t on_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        struct sse_client *c = cls;
        size_t n;

        (void)pos;
        if (c->off < c->len) {
                n = CP_MIN(max, c->len - c->off);
                memcpy(buf, c->buf + c->off, n);
                c->off += n;
                return (ssize_t)n;
        }
        if (c->ended || c->s->stopping)
                return MHD_CONTENT_READER_END_OF_STREAM;
        /* Nothing to send: park the connection until an event arrives (no busy polling). */
        c->suspended = true;
        MHD_suspend_connection(c->conn);
        return 0;
}

static void on_free(void *cls)
{
        struct sse_client *c = cls;

        unlink_client(c->s, c);
        free(c->buf);
        free(c);
}

/* One event line for a facility, in the same shape as /api/v1/parkings entries. */
static char *facility_event(struct cp_daemon *d, const struct cp_reg_facility *f, const struct cp_facility_view *v)
{
        char iso[CP_ISO_MAX], *json, *out = NULL;
        json_t *o = json_pack("{s:s, s:s, s:o, s:I, s:o, s:s, s:o}", "parking_id", f->id, "name", f->name,
                              "free_spaces", v->known ? json_integer(v->free_spaces) : json_null(), "total_spaces",
                              (json_int_t)v->total_spaces, "occupancy_rate",
                              v->known ? json_real(v->occupancy_rate) : json_null(), "status",
                              cp_fstatus_name(v->status), "last_reported",
                              v->last_reported_ms ? json_string(cp_time_iso(iso, sizeof(iso), v->last_reported_ms, d->tz))
                                                  : json_null());

        json = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(4)) : NULL;
        json_decref(o);
        if (json && asprintf(&out, "event: availability\ndata: %s\n\n", json) < 0)
                out = NULL;
        free(json);
        return out;
}

static void check_changes(struct cp_sse *s, int64_t now, struct sse_client *only)
{
        struct cp_daemon *d = s->d;

        if (s->reg_gen != d->reg_gen || s->n_last != d->reg->n_facilities) {
                struct sse_last *nl = calloc(d->reg->n_facilities ? d->reg->n_facilities : 1, sizeof(*nl));
                if (!nl)
                        return;
                for (size_t i = 0; i < d->reg->n_facilities; i++)
                        nl[i].status = -1; /* announce everything after a reload */
                free(s->last);
                s->last = nl;
                s->n_last = d->reg->n_facilities;
                s->reg_gen = d->reg_gen;
        }
        for (size_t i = 0; i < d->reg->n_facilities; i++) {
                const struct cp_reg_facility *f = &d->reg->facilities[i];
                struct cp_facility_view v;
                struct sse_last *l = &s->last[i];
                char *ev;

                cp_live_facility(&d->live, f, now, &v);
                bool changed = l->status != (int)v.status || l->known != v.known ||
                               (v.known && l->free_spaces != v.free_spaces);
                if (!changed && !only)
                        continue;
                ev = facility_event(d, f, &v);
                if (!ev)
                        continue;
                if (only) {
                        client_push(only, ev, strlen(ev));
                } else {
                        broadcast(s, ev, strlen(ev));
                        s->events++;
                        l->status = (int)v.status;
                        l->known = v.known;
                        l->free_spaces = v.free_spaces;
                }
                free(ev);
        }
}

static void on_timer(uv_timer_t *t)
{
        struct cp_sse *s = t->data;
        int64_t now = cp_now_ms();

        check_changes(s, now, NULL);
        if (now >= s->next_ping_ms) {
                static const char ping[] = ": ping\n\n";
                broadcast(s, ping, sizeof(ping) - 1);
                s->next_ping_ms = now + PING_MS;
        }
}

int cp_sse_init(struct cp_sse *s, struct cp_daemon *d, uv_loop_t *loop)
{
        int r;

        memset(s, 0, sizeof(*s));
        s->d = d;
        if ((r = uv_timer_init(loop, &s->timer)) < 0)
                return r;
        s->timer.data = s;
        return uv_timer_start(&s->timer, on_timer, 1000, 1000);
}

enum MHD_Result cp_sse_handle(struct cp_sse *s, struct MHD_Connection *conn, struct cp_http_req *req)
{
        struct sse_client *c;
        struct MHD_Response *r;
        enum MHD_Result ret;
        static const char hello[] = "retry: 3000\n\n";

        if (s->n_clients >= MAX_CLIENTS || s->stopping)
                return cp_http_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "too_many_streams",
                                     "too many open streams, retry later");
        /* Bring the announced state up to date for the others first, so the newcomer's snapshot is not
         * followed by a repeat of the same values. */
        check_changes(s, cp_now_ms(), NULL);
        c = calloc(1, sizeof(*c));
        if (!c)
                return MHD_NO;
        c->s = s;
        c->conn = conn;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, on_read, c, on_free);
        if (!r) {
                free(c);
                return MHD_NO;
        }
        c->next = s->clients;
        if (s->clients)
                s->clients->prev = c;
        s->clients = c;
        s->n_clients++;
        /* The current state first, so a client needs no separate request to start from. */
        client_push(c, hello, sizeof(hello) - 1);
        check_changes(s, cp_now_ms(), c);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
        ret = cp_http_queue(conn, req, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
}

void cp_sse_stop(struct cp_sse *s)
{
        s->stopping = true;
        for (struct sse_client *c = s->clients; c; c = c->next) {
                c->ended = true;
                resume(c);
        }
        if (!uv_is_closing((uv_handle_t *)&s->timer))
                uv_close((uv_handle_t *)&s->timer, NULL);
        free(s->last);
        s->last = NULL;
        s->n_last = 0;
}
