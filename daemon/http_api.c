/* http_api.c - the routes of CONTRACT section 6 served so far: the drivers' app feed, sensors, health,
 * readiness and metrics. Every GET carries an ETag and Cache-Control: public, max-age=<http.ttl>, and
 * answers 304 to a matching If-None-Match. The facility list, polled by every app, is rendered once per
 * change (at most every 250 ms) into one MHD_Response shared by all requests. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <unistd.h>
#include <sys/mman.h>

#include "buf.h"
#include "citypulse/cp_common.h"
#include "daemon.h"
#include "explore.h"
#include "http_ngsild.h"
#include "log.h"
#include "timefmt.h"

#define API_VERSION     "1.0"
#define GZIP_MIN        1024 /* bytes: smaller bodies go out as they are */
#define RENDER_COALESCE 250 /* ms: the feed is rendered at most this often while readings pour in */
#define JSON_FLAGS      (JSON_COMPACT | JSON_REAL_PRECISION(10))

static void make_etag(char *buf, size_t len, const char *body, size_t n)
{
        snprintf(buf, len, "\"%016" PRIx64 "\"", cp_fnv64(body, n, CP_FNV64_INIT));
}

static bool gz_etag_matches(struct MHD_Connection *conn, const char *etag)
{
        char gz[40];
        size_t el = strlen(etag);

        if (el < 2 || el + 4 >= sizeof(gz))
                return false;
        memcpy(gz, etag, el - 1);
        memcpy(gz + el - 1, "-gz\"", 5);
        return cp_api_etag_matches(conn, gz);
}

/* True when the client takes gzip (Accept-Encoding lists gzip without q=0). */
static bool accepts_gzip(struct MHD_Connection *conn)
{
        const char *ae = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
        const char *g = ae ? strstr(ae, "gzip") : NULL;

        return g && strncmp(g + 4, ";q=0", 4) != 0 && strncmp(g + 4, "; q=0", 5) != 0;
}

/* gzip of body (level 6), malloc'd; NULL when it does not pay or on error. */
static char *gzip_body(const char *body, size_t len, size_t *ret_len)
{
        z_stream z;
        uLong cap = compressBound((uLong)len) + 32;
        char *out;
        int rc;

        if (len < GZIP_MIN || !(out = malloc(cap)))
                return NULL;
        memset(&z, 0, sizeof(z));
        if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
                free(out);
                return NULL;
        }
        z.next_in = (Bytef *)(uintptr_t)body;
        z.avail_in = (uInt)len;
        z.next_out = (Bytef *)out;
        z.avail_out = (uInt)cap;
        rc = deflate(&z, Z_FINISH);
        *ret_len = z.total_out;
        deflateEnd(&z);
        if (rc != Z_STREAM_END || *ret_len >= len) {
                free(out);
                return NULL;
        }
        return out;
}

/* A response for body, gzip-encoded when that was asked for and pays; the ETag of the gzip variant
 * differs (RFC 9110: a representation's tag covers its encoding). Takes body. */
static struct MHD_Response *response_take(struct MHD_Connection *conn, char *body, size_t len, char *etag,
                                          size_t etag_len, bool *gz)
{
        struct MHD_Response *r;
        size_t zl = 0;
        char *z = accepts_gzip(conn) ? gzip_body(body, len, &zl) : NULL;

        *gz = z != NULL;
        if (z) {
                size_t el = strlen(etag);
                free(body);
                body = z;
                len = zl;
                if (el >= 2 && el + 4 < etag_len)
                        memcpy(etag + el - 1, "-gz\"", 5);
        }
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!r) {
                free(body);
                return NULL;
        }
        if (*gz)
                MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
        return r;
}

/* If-None-Match: a list of entity tags, or "*"; weak tags compare by their opaque part. */
bool cp_api_etag_matches(struct MHD_Connection *conn, const char *etag)
{
        const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
        size_t el = strlen(etag);

        if (!inm)
                return false;
        for (const char *p = inm; *p;) {
                while (*p == ' ' || *p == ',')
                        p++;
                if (*p == '*')
                        return true;
                if (p[0] == 'W' && p[1] == '/')
                        p += 2;
                if (strncmp(p, etag, el) == 0 && (p[el] == '\0' || p[el] == ',' || p[el] == ' '))
                        return true;
                while (*p && *p != ',')
                        p++;
        }
        return false;
}

void cp_api_common_headers(struct MHD_Response *r, const char *etag, int64_t ttl_s, bool api, const char *ctype)
{
        char cc[64];

        snprintf(cc, sizeof(cc), "public, max-age=%lld", (long long)ttl_s);
        if (ctype)
                MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cc);
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
        if (api)
                MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
}

enum MHD_Result cp_api_not_modified(struct MHD_Connection *conn, struct cp_http_req *req, const char *etag,
                                    int64_t ttl_s, bool api)
{
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)(uintptr_t) "", MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ret;

        if (!r)
                return MHD_NO;
        cp_api_common_headers(r, etag, ttl_s, api, NULL);
        ret = cp_http_queue(conn, req, MHD_HTTP_NOT_MODIFIED, r);
        MHD_destroy_response(r);
        return ret;
}

/* Sends body (taking ownership of the malloc'd buffer) with ETag and caching headers. */
enum MHD_Result cp_api_send_body_take(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                      unsigned status, char *body, size_t len, const char *ctype, bool api,
                                      int64_t ttl_ms)
{
        struct MHD_Response *r;
        enum MHD_Result ret;
        char etag[32];
        bool gz;

        (void)d;
        make_etag(etag, sizeof(etag), body, len);
        if (status == MHD_HTTP_OK && (cp_api_etag_matches(conn, etag) || gz_etag_matches(conn, etag))) {
                free(body);
                return cp_api_not_modified(conn, req, etag, ttl_ms / 1000, api);
        }
        if (!(r = response_take(conn, body, len, etag, sizeof(etag), &gz)))
                return MHD_NO;
        cp_api_common_headers(r, etag, ttl_ms / 1000, api, ctype);
        ret = cp_http_queue(conn, req, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result send_json_take(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                      unsigned status, json_t *j, int64_t ttl_ms)
{
        char *body = json_dumps(j, JSON_FLAGS);
        size_t len;

        json_decref(j);
        if (!body)
                return cp_http_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
        len = strlen(body);
        return cp_api_send_body_take(d, conn, req, status, body, len, "application/json; charset=utf-8", true, ttl_ms);
}

static json_t *iso_or_null(const struct cp_daemon *d, int64_t ms)
{
        char buf[CP_ISO_MAX];

        if (ms <= 0)
                return json_null();
        return json_string(cp_time_iso(buf, sizeof(buf), ms, d->tz));
}

static double round3(double x)
{
        return round(x * 1000.0) / 1000.0;
}

/* One facility as the drivers' app sees it. Unknown is null, never a number presented as live. */
static json_t *facility_json(const struct cp_daemon *d, const struct cp_reg_facility *f, int64_t now,
                             struct cp_facility_view *v)
{
        cp_live_facility(&d->live, f, now, v);
        return json_pack("{s:s, s:s, s:s, s:o, s:I, s:o, s:s, s:o, s:o, s:o}", "parking_id", f->id, "name", f->name,
                         "city", f->city, "free_spaces", v->known ? json_integer(v->free_spaces) : json_null(),
                         "total_spaces", (json_int_t)v->total_spaces, "occupancy_rate",
                         v->known ? json_real(round3(v->occupancy_rate)) : json_null(), "status",
                         cp_fstatus_name(v->status), "last_reported", iso_or_null(d, v->last_reported_ms), "lat",
                         f->has_geo ? json_real(f->lat) : json_null(), "lon",
                         f->has_geo ? json_real(f->lon) : json_null());
}

static json_t *envelope(const struct cp_daemon *d, int64_t last_updated_ms, json_t *data)
{
        return json_pack("{s:o, s:I, s:s, s:o}", "last_updated", iso_or_null(d, last_updated_ms), "ttl",
                         (json_int_t)(d->cfg->http_ttl_ms / 1000), "version", API_VERSION, "data", data);
}

void cp_api_cache_drop(struct cp_daemon *d)
{
        if (d->parkings_cache.resp)
                MHD_destroy_response(d->parkings_cache.resp);
        if (d->parkings_cache.resp_gz)
                MHD_destroy_response(d->parkings_cache.resp_gz);
        memset(&d->parkings_cache, 0, sizeof(d->parkings_cache));
}

/* A response over an anonymous in-memory file holding body, which MHD sends with sendfile(): the
 * polled facility list goes out without being copied into every socket by the loop thread. Takes
 * body; falls back to a plain buffer response. */
static struct MHD_Response *shared_response_take(char *body, size_t len)
{
        struct MHD_Response *r;
        size_t o = 0;
        int fd = memfd_create("citypulse-response", MFD_CLOEXEC);

        while (fd >= 0 && o < len) {
                ssize_t w = write(fd, body + o, len - o);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        close(fd);
                        fd = -1;
                        break;
                }
                o += (size_t)w;
        }
        if (fd >= 0 && (r = MHD_create_response_from_fd((uint64_t)len, fd))) {
                free(body);
                return r;
        }
        if (fd >= 0)
                close(fd);
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!r)
                free(body);
        return r;
}

/* Renders the facility list into the shared response when the data (or staleness) changed. */
static int render_parkings(struct cp_daemon *d, int64_t now)
{
        struct cp_http_cache *c = &d->parkings_cache;
        json_t *arr = json_array(), *doc;
        int64_t last = 0, next_change = INT64_MAX;
        struct MHD_Response *r;
        char *body;

        if (!arr)
                return -ENOMEM;
        for (size_t i = 0; i < d->reg->n_facilities; i++) {
                struct cp_facility_view v;
                json_array_append_new(arr, facility_json(d, &d->reg->facilities[i], now, &v));
                last = CP_MAX(last, v.last_reported_ms);
                next_change = CP_MIN(next_change, v.next_change_ms);
        }
        doc = envelope(d, last, json_pack("{s:o}", "parkings", arr));
        body = doc ? json_dumps(doc, JSON_FLAGS) : NULL;
        json_decref(doc);
        if (!body)
                return -ENOMEM;
        {
                size_t zl = 0, len = strlen(body);
                char *z = gzip_body(body, len, &zl);
                struct MHD_Response *rz = z ? shared_response_take(z, zl) : NULL;
                char etag[sizeof(c->etag)];

                make_etag(etag, sizeof(etag), body, len);
                r = shared_response_take(body, len);
                if (!r) {
                        if (rz)
                                MHD_destroy_response(rz);
                        return -ENOMEM;
                }
                cp_api_cache_drop(d);
                memcpy(c->etag, etag, sizeof(etag));
                cp_api_common_headers(r, c->etag, d->cfg->http_ttl_ms / 1000, true, "application/json; charset=utf-8");
                MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
                if (rz) {
                        size_t el = strlen(c->etag);
                        memcpy(c->etag_gz, c->etag, el - 1);
                        memcpy(c->etag_gz + el - 1, "-gz\"", 5);
                        cp_api_common_headers(rz, c->etag_gz, d->cfg->http_ttl_ms / 1000, true,
                                              "application/json; charset=utf-8");
                        MHD_add_response_header(rz, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
                        MHD_add_response_header(rz, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
                        c->resp_gz = rz;
                }
        }
        c->resp = r;
        c->changes = d->live.changes;
        c->reg_gen = d->reg_gen;
        c->valid_until_ms = next_change;
        c->rendered_ms = now;
        return 0;
}

static enum MHD_Result get_parkings(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req)
{
        struct cp_http_cache *c = &d->parkings_cache;
        int64_t now = cp_now_ms();
        bool stale = !c->resp || c->reg_gen != d->reg_gen || now >= c->valid_until_ms ||
                     (c->changes != d->live.changes && now - c->rendered_ms >= RENDER_COALESCE);

        if (stale && render_parkings(d, now) < 0)
                return cp_http_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
        if (cp_api_etag_matches(conn, c->etag))
                return cp_api_not_modified(conn, req, c->etag, d->cfg->http_ttl_ms / 1000, true);
        if (c->resp_gz && cp_api_etag_matches(conn, c->etag_gz))
                return cp_api_not_modified(conn, req, c->etag_gz, d->cfg->http_ttl_ms / 1000, true);
        if (c->resp_gz && accepts_gzip(conn))
                return cp_http_queue(conn, req, MHD_HTTP_OK, c->resp_gz);
        return cp_http_queue(conn, req, MHD_HTTP_OK, c->resp);
}

static enum MHD_Result get_parking(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                   const char *id)
{
        const struct cp_reg_facility *f = cp_registry_facility(d->reg, id);
        struct cp_facility_view v;
        json_t *one;

        if (!f)
                return cp_http_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such parking_id");
        one = facility_json(d, f, cp_now_ms(), &v);
        return send_json_take(d, conn, req, MHD_HTTP_OK, envelope(d, v.last_reported_ms, json_pack("{s:o}", "parking", one)),
                              d->cfg->http_ttl_ms);
}

static enum MHD_Result get_spots(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                 const char *id)
{
        const struct cp_reg_facility *f = cp_registry_facility(d->reg, id);
        int64_t now = cp_now_ms(), last = 0;
        json_t *arr;

        if (!f)
                return cp_http_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such parking_id");
        arr = json_array();
        for (size_t i = 0; i < f->n_spots; i++) {
                const struct cp_sensor *s = f->spots[i];
                const struct cp_qval *q = cp_sensor_value(s, CP_Q_OCCUPIED);
                const char *status = "unknown";

                if (q && cp_live_fresh(&d->live, q, now))
                        status = q->value != 0 ? "occupied" : "free";
                if (q)
                        last = CP_MAX(last, q->ts_ms);
                json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:o}", "spot_id", s->reg->spot_id, "sensor_id",
                                                     s->id, "status", status, "observed_at",
                                                     iso_or_null(d, q ? q->ts_ms : 0)));
        }
        return send_json_take(d, conn, req, MHD_HTTP_OK,
                              envelope(d, last, json_pack("{s:s, s:o}", "parking_id", f->id, "spots", arr)),
                              d->cfg->http_ttl_ms);
}

static enum MHD_Result get_sensor(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                  const char *id)
{
        const struct cp_sensor *s = cp_live_get(&d->live, id, strlen(id));
        json_t *readings;

        if (!s)
                return cp_http_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such sensor_id");
        readings = json_object();
        for (unsigned i = 0; i < s->n_q; i++) {
                const struct cp_qval *q = &s->q[i];
                json_object_set_new(readings, cp_quantity_name((enum cp_quantity)q->q),
                                    json_pack("{s:f, s:o, s:o}", "value", q->value, "observed_at",
                                              iso_or_null(d, q->ts_ms), "received_at", iso_or_null(d, q->rx_ms)));
        }
        return send_json_take(d, conn, req, MHD_HTTP_OK,
                              json_pack("{s:s, s:b, s:s, s:o}", "sensor_id", s->id, "registered", s->reg != NULL,
                                        "kind", cp_skind_name(s->reg ? s->reg->kind : CP_SK_UNREGISTERED), "readings",
                                        readings),
                              d->cfg->http_ttl_ms);
}

static json_t *num_or_null(bool has, double v)
{
        return has ? json_real(v) : json_null();
}

static json_t *energy_fields(const struct cp_daemon *d, const struct cp_energy_view *v)
{
        return json_pack("{s:o, s:o, s:o, s:s, s:o}", "power_w", num_or_null(v->has_power, v->power_w),
                         "energy_import_kwh", num_or_null(v->has_import, v->energy_import_kwh), "energy_export_kwh",
                         num_or_null(v->has_export, v->energy_export_kwh), "status", v->known ? "ok" : "unknown",
                         "last_reported", iso_or_null(d, v->last_reported_ms));
}

/* Meters and districts, latest power and energy. Unknown values are null, never stale numbers. */
static enum MHD_Result get_energy(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req)
{
        json_t *districts = json_array(), *meters = json_array();
        int64_t now = cp_now_ms(), last = 0;

        for (size_t i = 0; i < d->reg->n_districts; i++) {
                const struct cp_reg_district *rd = &d->reg->districts[i];
                struct cp_energy_view v;
                json_t *o;

                cp_live_district(&d->live, rd, now, &v);
                last = CP_MAX(last, v.last_reported_ms);
                o = energy_fields(d, &v);
                json_object_set_new(o, "district", json_string(rd->name));
                json_object_set_new(o, "meters_total", json_integer(v.meters_total));
                json_object_set_new(o, "meters_reporting", json_integer(v.meters_known));
                json_array_append_new(districts, o);
                for (size_t k = 0; k < rd->n_meters; k++) {
                        const struct cp_sensor *s = rd->meters[k];
                        cp_live_meter(&d->live, s, now, &v);
                        o = energy_fields(d, &v);
                        json_object_set_new(o, "meter_id", json_string(s->id));
                        json_object_set_new(o, "kind", json_string(cp_skind_name(s->reg->kind)));
                        json_object_set_new(o, "district", json_string(rd->name));
                        json_array_append_new(meters, o);
                }
        }
        return send_json_take(d, conn, req, MHD_HTTP_OK,
                              envelope(d, last, json_pack("{s:o, s:o}", "districts", districts, "meters", meters)),
                              d->cfg->http_ttl_ms);
}

static enum MHD_Result get_healthz(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req)
{
        char *body = strdup("{\"status\":\"ok\"}\n");

        if (!body)
                return MHD_NO;
        return cp_api_send_body_take(d, conn, req, MHD_HTTP_OK, body, strlen(body), "application/json", false, 0);
}

static enum MHD_Result get_readyz(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req)
{
        bool mqtt_ok = d->mqtt.state == CP_MQTT_CONNECTED;
        bool store_ok = atomic_load(&d->storeq.writable) && d->ingest.journal_complaint.active == false;
        char err[256] = "";
        json_t *j;

        if (!store_ok)
                cp_storeq_errmsg(&d->storeq, err, sizeof(err));
        if (!store_ok && !err[0] && d->ingest.journal_complaint.active)
                snprintf(err, sizeof(err), "journal writes failing (see the log)");
        j = json_pack("{s:b, s:s, s:s, s:s}", "ready", mqtt_ok && store_ok, "mqtt", cp_mqtt_state_name(d->mqtt.state),
                      "store", store_ok ? "writable" : "failing", "store_error", err);
        return send_json_take(d, conn, req, mqtt_ok && store_ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, j, 0);
}

/* The dashboard page for people: plain HTML, CSS and JS embedded in the binary (daemon/dashboard.html). */
extern const char cp_dashboard_html[], cp_dashboard_html_end[];

static enum MHD_Result get_dashboard(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req)
{
        size_t len = (size_t)(cp_dashboard_html_end - cp_dashboard_html);
        struct MHD_Response *r;
        enum MHD_Result ret;
        char etag[24];

        make_etag(etag, sizeof(etag), cp_dashboard_html, len);
        if (cp_api_etag_matches(conn, etag))
                return cp_api_not_modified(conn, req, etag, 60, false);
        r = MHD_create_response_from_buffer(len, (void *)(uintptr_t)cp_dashboard_html, MHD_RESPMEM_PERSISTENT);
        if (!r)
                return MHD_NO;
        cp_api_common_headers(r, etag, 60, false, "text/html; charset=utf-8");
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        ret = cp_http_queue(conn, req, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        (void)d;
        return ret;
}

/* --- graphs: GET /graphs/{parking_id|district}.png?period=1d|1w|1m|1y ---
 *
 * librrd renders on the rrd thread, one graph at a time (rrd_graph_v is not reentrant). The request is
 * suspended meanwhile and resumed by the callback; MHD then calls the handler again, which finds the
 * PNG in the job and queues it. Rendered PNGs are kept for a minute (the series' step): a dashboard
 * polled by many people costs one render per graph and period, and librrd 1.7.2 leaks a little on
 * every rrd_graph_v call. */

#define GRAPH_CACHE_MS 60000

struct cp_graph_job {
        struct cp_graph_job *next;
        struct cp_daemon *d;
        struct MHD_Connection *conn;
        struct cp_http_req *req; /* NULL once the request is gone */
        char key[CP_SENSOR_ID_MAX + 16];
        unsigned char *png;
        size_t len;
        int err;
        bool done;    /* the rrd callback ran */
        bool resumed; /* the connection was resumed */
};

struct cp_graph_cache {
        char key[CP_SENSOR_ID_MAX + 16];
        unsigned char *png;
        size_t len;
        int64_t rendered_ms;
};

static void job_unlink(struct cp_daemon *d, struct cp_graph_job *j)
{
        for (struct cp_graph_job **pp = &d->graph_jobs; *pp; pp = &(*pp)->next)
                if (*pp == j) {
                        *pp = j->next;
                        return;
                }
}

/* A job is freed by whichever of its two owners lets go last: the rrd callback or the request. */
static void job_release(struct cp_graph_job *j)
{
        if (!j->done || j->req)
                return;
        job_unlink(j->d, j);
        free(j->png);
        free(j);
}

static void job_req_gone(void *ctx)
{
        struct cp_graph_job *j = ctx;

        j->req = NULL;
        job_release(j);
}

static void job_resume(struct cp_graph_job *j)
{
        if (j->resumed || !j->req)
                return;
        j->resumed = true;
        MHD_resume_connection(j->conn);
        cp_http_kick(&j->d->http);
}

static struct cp_graph_cache *cache_find(struct cp_daemon *d, const char *key)
{
        for (size_t i = 0; i < d->n_graph_cache; i++)
                if (strcmp(d->graph_cache[i].key, key) == 0)
                        return &d->graph_cache[i];
        return NULL;
}

static void cache_put(struct cp_daemon *d, const char *key, const unsigned char *png, size_t len)
{
        struct cp_graph_cache *c = cache_find(d, key);
        unsigned char *copy;

        if (d->stopping)
                return;
        copy = malloc(len);
        if (!copy)
                return;
        memcpy(copy, png, len);
        if (!c) {
                struct cp_graph_cache *v = realloc(d->graph_cache, (d->n_graph_cache + 1) * sizeof(*v));
                if (!v) {
                        free(copy);
                        return;
                }
                d->graph_cache = v;
                c = &v[d->n_graph_cache++];
                memset(c, 0, sizeof(*c));
                snprintf(c->key, sizeof(c->key), "%s", key);
        }
        free(c->png);
        c->png = copy;
        c->len = len;
        c->rendered_ms = cp_now_ms();
}

static void on_graph(void *ud, int err, unsigned char *png, size_t len)
{
        struct cp_graph_job *j = ud;

        j->done = true;
        j->err = err;
        j->png = png;
        j->len = len;
        if (!err && png)
                cache_put(j->d, j->key, png, len);
        job_resume(j);
        job_release(j);
}

static enum MHD_Result send_png(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                const unsigned char *png, size_t len)
{
        char *copy = malloc(len ? len : 1);

        if (!copy)
                return MHD_NO;
        memcpy(copy, png, len);
        (void)d;
        return cp_api_send_body_take(d, conn, req, MHD_HTTP_OK, copy, len, "image/png", false, GRAPH_CACHE_MS);
}

static enum MHD_Result get_graph(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                 const char *file)
{
        struct cp_graph_job *j = req->ctx;
        const char *pq = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "period");
        enum cp_rrd_kind kind;
        struct cp_graph_cache *c;
        char id[CP_SENSOR_ID_MAX], key[CP_SENSOR_ID_MAX + 16];
        size_t fl = strlen(file);
        int period, r;

        if (j) {
                /* Called again after the resume: the render is done. */
                if (j->err == -ENOENT)
                        return cp_http_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no series yet for this id");
                if (j->err || !j->png)
                        return cp_http_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "graph_failed",
                                             "the graph could not be rendered, retry later");
                return send_png(d, conn, req, j->png, j->len);
        }
        if (fl < 5 || strcmp(file + fl - 4, ".png") != 0 || fl - 4 >= sizeof(id))
                return cp_http_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "graphs are /graphs/<id>.png");
        memcpy(id, file, fl - 4);
        id[fl - 4] = '\0';
        period = cp_rrd_period_parse(pq ? pq : "1d");
        if (period < 0)
                return cp_http_error(conn, req, MHD_HTTP_BAD_REQUEST, "bad_request",
                                     "period must be one of 1d, 1w, 1m, 1y");
        if (cp_registry_facility(d->reg, id)) {
                kind = CP_RRD_FACILITY;
        } else {
                bool found = false;
                for (size_t i = 0; i < d->reg->n_districts && !found; i++)
                        found = strcmp(d->reg->districts[i].name, id) == 0;
                if (!found)
                        return cp_http_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such facility or district");
                kind = CP_RRD_DISTRICT;
        }
        snprintf(key, sizeof(key), "%s|%d", id, period);
        c = cache_find(d, key);
        if (c && cp_now_ms() - c->rendered_ms < GRAPH_CACHE_MS)
                return send_png(d, conn, req, c->png, c->len);
        if (!d->rrd_running)
                return cp_http_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "graphs_off", "graphs are not available");
        j = calloc(1, sizeof(*j));
        if (!j)
                return MHD_NO;
        j->d = d;
        j->conn = conn;
        j->req = req;
        snprintf(j->key, sizeof(j->key), "%s", key);
        r = cp_rrd_graph(&d->rrd, kind, id, (enum cp_rrd_period)period, on_graph, j);
        if (r < 0) {
                free(j);
                if (r == -EAGAIN)
                        return cp_http_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", "too many graphs waiting, retry");
                return cp_http_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "graph_failed", "graphs are not available");
        }
        j->next = d->graph_jobs;
        d->graph_jobs = j;
        req->ctx = j;
        req->ctx_free = job_req_gone;
        MHD_suspend_connection(conn);
        return MHD_YES;
}

void cp_api_graphs_stop(struct cp_daemon *d)
{
        for (struct cp_graph_job *j = d->graph_jobs; j; j = j->next) {
                if (!j->done)
                        j->err = -ECANCELED;
                job_resume(j);
        }
        for (size_t i = 0; i < d->n_graph_cache; i++)
                free(d->graph_cache[i].png);
        free(d->graph_cache);
        d->graph_cache = NULL;
        d->n_graph_cache = 0;
}

/* --- metrics (Prometheus text format 0.0.4). Labels carry drivers, reasons, routes and classes, never
 * topics or sensor ids. --- */

struct buf {
        char *p;
        size_t n, cap;
        bool oom;
};

static void bprintf(struct buf *b, const char *fmt, ...) CP_PRINTF(2, 3);
static void bprintf(struct buf *b, const char *fmt, ...)
{
        va_list ap;
        int w;

        for (;;) {
                if (b->oom)
                        return;
                va_start(ap, fmt);
                w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
                va_end(ap);
                if (w >= 0 && (size_t)w < b->cap - b->n) {
                        b->n += (size_t)w;
                        return;
                }
                size_t ncap = b->cap * 2 + (size_t)(w > 0 ? w : 0);
                char *np = realloc(b->p, ncap);
                if (!np) {
                        b->oom = true;
                        return;
                }
                b->p = np;
                b->cap = ncap;
        }
}

static void metric_head(struct buf *b, const char *name, const char *type, const char *help)
{
        bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const route_names[_CP_RT_MAX] = {
        [CP_RT_PARKINGS] = "parkings", [CP_RT_PARKING] = "parking", [CP_RT_SPOTS] = "spots",
        [CP_RT_SENSOR] = "sensor",     [CP_RT_HEALTHZ] = "healthz", [CP_RT_READYZ] = "readyz",
        [CP_RT_METRICS] = "metrics",   [CP_RT_ENERGY] = "energy", [CP_RT_STREAM] = "stream", [CP_RT_GRAPH] = "graph", [CP_RT_DASHBOARD] = "dashboard", [CP_RT_EXPLORE] = "explore", [CP_RT_EXPORT] = "export", [CP_RT_NGSILD] = "ngsild", [CP_RT_HISTORY] = "history", [CP_RT_ADMIN] = "admin",   [CP_RT_OTHER] = "other",
};

static enum MHD_Result get_metrics(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req)
{
        struct buf b = {.p = malloc(16384), .cap = 16384};
        const struct cp_ingest *in = &d->ingest;
        int64_t now = cp_now_ms();
        size_t stale = 0;

        if (!b.p)
                return MHD_NO;
        metric_head(&b, "citypulse_mqtt_messages_total", "counter", "MQTT messages received, by driver.");
        for (size_t i = 0; i < cp_driver_count(); i++)
                bprintf(&b, "citypulse_mqtt_messages_total{driver=\"%s\"} %" PRIu64 "\n", cp_driver_at(i)->name,
                        in->drv[i].messages);
        bprintf(&b, "citypulse_mqtt_messages_total{driver=\"none\"} %" PRIu64 "\n", in->no_route);
        metric_head(&b, "citypulse_decode_errors_total", "counter", "Rejected payloads, by driver and reason.");
        for (size_t i = 0; i < cp_driver_count(); i++)
                for (int r = 1; r < _CP_REASON_MAX; r++)
                        if (in->drv[i].rejects[r])
                                bprintf(&b, "citypulse_decode_errors_total{driver=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                                        cp_driver_at(i)->name, cp_reason_label((enum cp_reason)r),
                                        in->drv[i].rejects[r]);
        bprintf(&b, "citypulse_decode_errors_total{driver=\"none\",reason=\"no_route\"} %" PRIu64 "\n", in->no_route);
        metric_head(&b, "citypulse_readings_total", "counter", "Readings decoded and journaled, by driver.");
        for (size_t i = 0; i < cp_driver_count(); i++)
                bprintf(&b, "citypulse_readings_total{driver=\"%s\"} %" PRIu64 "\n", cp_driver_at(i)->name,
                        in->drv[i].readings);
        metric_head(&b, "citypulse_readings_stored_total", "counter", "Readings committed to SQLite.");
        bprintf(&b, "citypulse_readings_stored_total %" PRIu64 "\n", atomic_load(&d->storeq.readings_stored));
        metric_head(&b, "citypulse_readings_duplicate_total", "counter",
                    "Readings already stored (same sensor, quantity and observation time).");
        bprintf(&b, "citypulse_readings_duplicate_total %" PRIu64 "\n", atomic_load(&d->storeq.readings_dup));
        metric_head(&b, "citypulse_rejects_stored_total", "counter", "Rejected payloads committed to SQLite.");
        bprintf(&b, "citypulse_rejects_stored_total %" PRIu64 "\n", atomic_load(&d->storeq.rejects_stored));
        metric_head(&b, "citypulse_journal_errors_total", "counter", "Failed journal writes.");
        bprintf(&b, "citypulse_journal_errors_total %" PRIu64 "\n", in->journal_errors);
        metric_head(&b, "citypulse_store_queue_segments", "gauge", "Journal segments waiting for the store thread.");
        bprintf(&b, "citypulse_store_queue_segments %" PRId64 "\n", atomic_load(&d->storeq.queue_depth));
        metric_head(&b, "citypulse_journal_bytes", "gauge", "Bytes in the journal segment being written.");
        bprintf(&b, "citypulse_journal_bytes %" PRIu64 "\n", d->journal.bytes);
        metric_head(&b, "citypulse_store_import_errors_total", "counter", "Failed segment imports (retried).");
        bprintf(&b, "citypulse_store_import_errors_total %" PRIu64 "\n", atomic_load(&d->storeq.import_errors));
        {
                struct cp_bucket_stats *bs = &d->storeq.bstats;
                int64_t wm = atomic_load(&bs->watermark_ms);

                metric_head(&b, "citypulse_bucket_rows_total", "counter", "Bucket rows written for the first time.");
                bprintf(&b, "citypulse_bucket_rows_total %" PRIu64 "\n", atomic_load(&bs->rows));
                metric_head(&b, "citypulse_bucket_revisions_total", "counter",
                            "Bucket rows revised by late readings (revision + 1).");
                bprintf(&b, "citypulse_bucket_revisions_total %" PRIu64 "\n", atomic_load(&bs->revisions));
                metric_head(&b, "citypulse_readings_late_total", "counter",
                            "Readings stored after their bucket closed, within agg.allowed_lateness.");
                bprintf(&b, "citypulse_readings_late_total %" PRIu64 "\n", atomic_load(&bs->late));
                metric_head(&b, "citypulse_readings_too_late_total", "counter",
                            "Readings older than agg.allowed_lateness: stored, buckets left alone.");
                bprintf(&b, "citypulse_readings_too_late_total %" PRIu64 "\n", atomic_load(&bs->too_late));
                metric_head(&b, "citypulse_buckets_dirty", "gauge", "Buckets waiting to be recomputed.");
                bprintf(&b, "citypulse_buckets_dirty %" PRId64 "\n", atomic_load(&bs->dirty));
                metric_head(&b, "citypulse_bucket_watermark_lag_seconds", "gauge",
                            "Wall clock minus the end of the last closed 1-minute window.");
                bprintf(&b, "citypulse_bucket_watermark_lag_seconds %.3f\n", wm ? (double)(now - wm) / 1000.0 : 0.0);
                metric_head(&b, "citypulse_bucket_errors_total", "counter", "Failed bucket updates (retried).");
                bprintf(&b, "citypulse_bucket_errors_total %" PRIu64 "\n", atomic_load(&d->storeq.bucket_errors));
                metric_head(&b, "citypulse_bucket_messages_total", "counter",
                            "Bucket rows republished over MQTT, by result.");
                bprintf(&b, "citypulse_bucket_messages_total{result=\"published\"} %" PRIu64 "\n",
                        d->bucket_msgs_published);
                bprintf(&b, "citypulse_bucket_messages_total{result=\"dropped\"} %" PRIu64 "\n",
                        atomic_load(&d->bucket_msgs_dropped));
        }
        {
                const struct cp_push_stats *ps = &d->push.stats;
                bool on = d->push_running;

                metric_head(&b, "citypulse_ods_push_queue_rows", "gauge",
                            "Batches waiting in the durable portal push queue (0 when ods_push.url is unset).");
                bprintf(&b, "citypulse_ods_push_queue_rows %" PRId64 "\n", on ? ps->queue_rows : 0);
                metric_head(&b, "citypulse_ods_push_queue_bytes", "gauge", "Bytes of those batches.");
                bprintf(&b, "citypulse_ods_push_queue_bytes %" PRId64 "\n", on ? ps->queue_bytes : 0);
                metric_head(&b, "citypulse_ods_push_pending_records", "gauge", "Records in memory, not queued yet.");
                bprintf(&b, "citypulse_ods_push_pending_records %" PRId64 "\n", on ? ps->pending_records : 0);
                metric_head(&b, "citypulse_ods_push_in_flight", "gauge", "Push requests in flight.");
                bprintf(&b, "citypulse_ods_push_in_flight %" PRIu64 "\n", on ? ps->in_flight : 0);
                metric_head(&b, "citypulse_ods_push_batches_total", "counter", "Push requests the portal accepted.");
                bprintf(&b, "citypulse_ods_push_batches_total %" PRIu64 "\n", ps->batches_sent);
                metric_head(&b, "citypulse_ods_push_records_total", "counter", "Records in the accepted requests.");
                bprintf(&b, "citypulse_ods_push_records_total %" PRIu64 "\n", ps->records_sent);
                metric_head(&b, "citypulse_ods_push_failures_total", "counter",
                            "Failed push requests (non-2xx, another answer, network, timeout), retried.");
                bprintf(&b, "citypulse_ods_push_failures_total %" PRIu64 "\n", ps->failures);
                metric_head(&b, "citypulse_ods_push_dropped_records_total", "counter",
                            "Records dropped by the queue bounds.");
                bprintf(&b, "citypulse_ods_push_dropped_records_total %" PRIu64 "\n", ps->dropped_records);
        }
        metric_head(&b, "citypulse_mqtt_connected", "gauge", "1 while connected to the broker.");
        bprintf(&b, "citypulse_mqtt_connected %d\n", d->mqtt.state == CP_MQTT_CONNECTED);
        metric_head(&b, "citypulse_mqtt_reconnects_total", "counter", "Successful reconnections after a loss.");
        bprintf(&b, "citypulse_mqtt_reconnects_total %" PRIu64 "\n", d->mqtt.reconnects);
        metric_head(&b, "citypulse_unregistered_sensors", "gauge", "Distinct unregistered sensors tracked live.");
        bprintf(&b, "citypulse_unregistered_sensors %zu\n", d->live.n_unregistered);
        metric_head(&b, "citypulse_unregistered_over_cap_total", "counter",
                    "Readings of unregistered sensors past registry.max_unregistered (stored, not tracked live).");
        bprintf(&b, "citypulse_unregistered_over_cap_total %" PRIu64 "\n", in->unregistered_over_cap);
        for (size_t i = 0; i < d->reg->n_facilities; i++) {
                struct cp_facility_view v;
                cp_live_facility(&d->live, &d->reg->facilities[i], now, &v);
                stale += v.status == CP_FS_UNKNOWN;
        }
        metric_head(&b, "citypulse_facilities", "gauge", "Registered facilities.");
        bprintf(&b, "citypulse_facilities %zu\n", d->reg->n_facilities);
        metric_head(&b, "citypulse_facilities_stale", "gauge", "Facilities whose status is unknown (no fresh reading).");
        bprintf(&b, "citypulse_facilities_stale %zu\n", stale);
        metric_head(&b, "citypulse_http_requests_total", "counter", "HTTP requests, by route and status class.");
        for (int r = 0; r < _CP_RT_MAX; r++)
                for (int c = 1; c <= 5; c++)
                        if (d->http_status[r][c])
                                bprintf(&b, "citypulse_http_requests_total{route=\"%s\",code=\"%dxx\"} %" PRIu64 "\n",
                                        route_names[r], c, d->http_status[r][c]);
        metric_head(&b, "citypulse_reloads_total", "counter", "Configuration reloads, by result.");
        bprintf(&b, "citypulse_reloads_total{result=\"ok\"} %" PRIu64 "\n", d->reloads);
        bprintf(&b, "citypulse_reloads_total{result=\"failed\"} %" PRIu64 "\n", d->reload_failures);
        if (b.oom) {
                free(b.p);
                return MHD_NO;
        }
        return cp_api_send_body_take(d, conn, req, MHD_HTTP_OK, b.p, b.n, "text/plain; version=0.0.4; charset=utf-8", false, 0);
}

/* --- routing --- */

#define MAX_SEGS 8

struct path {
        char *seg[MAX_SEGS];
        size_t n;
        char buf[1024];
};

/* Splits the raw path at '/' and percent-decodes each segment, so "%2F" stays inside a sensor id.
 * Returns 0, -EINVAL for a bad escape, -E2BIG when too long or too deep. */
static int split_path(const char *raw, struct path *p)
{
        const char *q = strchr(raw, '?');
        size_t len = q ? (size_t)(q - raw) : strlen(raw), o = 0;
        const char *s = raw, *end = raw + len;

        p->n = 0;
        if (len == 0 || raw[0] != '/')
                return -EINVAL;
        s++;
        while (s <= end) {
                const char *slash = memchr(s, '/', (size_t)(end - s));
                size_t sl = slash ? (size_t)(slash - s) : (size_t)(end - s);
                int w;

                if (p->n == MAX_SEGS)
                        return -E2BIG;
                w = cp_http_pct_decode(s, sl, p->buf + o, sizeof(p->buf) - o);
                if (w < 0)
                        return sl * 3 > sizeof(p->buf) - o ? -E2BIG : -EINVAL;
                p->seg[p->n++] = p->buf + o;
                o += (size_t)w + 1;
                if (!slash)
                        break;
                s = slash + 1;
        }
        /* "/api/v1/parkings/" reads as "/api/v1/parkings". */
        if (p->n > 1 && p->seg[p->n - 1][0] == '\0')
                p->n--;
        return 0;
}

static bool seg_is(const struct path *p, size_t i, const char *s)
{
        return i < p->n && strcmp(p->seg[i], s) == 0;
}

enum MHD_Result cp_api_handle(struct cp_http *h, struct MHD_Connection *conn, struct cp_http_req *req, void *ud)
{
        struct cp_daemon *d = ud;
        struct path p;
        int r;

        (void)h;
        if (strcmp(req->method, MHD_HTTP_METHOD_GET) != 0 && !req->head) {
                struct MHD_Response *resp;
                enum MHD_Result ret;
                req->route = CP_RT_OTHER;
                resp = MHD_create_response_from_buffer(0, (void *)(uintptr_t) "", MHD_RESPMEM_PERSISTENT);
                if (!resp)
                        return MHD_NO;
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
                ret = cp_http_queue(conn, req, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
                MHD_destroy_response(resp);
                return ret;
        }
        r = split_path(req->raw_uri, &p);
        if (r < 0) {
                req->route = CP_RT_OTHER;
                if (r == -E2BIG)
                        return cp_http_error(conn, req, MHD_HTTP_URI_TOO_LONG, "uri_too_long", "path too long or too deep");
                return cp_http_error(conn, req, MHD_HTTP_BAD_REQUEST, "bad_request", "malformed percent-encoding in path");
        }
        if (seg_is(&p, 0, "api") && seg_is(&p, 1, "v1")) {
                if (seg_is(&p, 2, "parkings")) {
                        if (p.n == 3) {
                                req->route = CP_RT_PARKINGS;
                                return get_parkings(d, conn, req);
                        }
                        if (p.n == 4) {
                                req->route = CP_RT_PARKING;
                                return get_parking(d, conn, req, p.seg[3]);
                        }
                        if (p.n == 5 && seg_is(&p, 4, "spots")) {
                                req->route = CP_RT_SPOTS;
                                return get_spots(d, conn, req, p.seg[3]);
                        }
                }
                if (seg_is(&p, 2, "stream") && p.n == 3) {
                        req->route = CP_RT_STREAM;
                        return cp_sse_handle(&d->sse, conn, req);
                }
                if (seg_is(&p, 2, "energy") && p.n == 3) {
                        req->route = CP_RT_ENERGY;
                        return get_energy(d, conn, req);
                }
                if (seg_is(&p, 2, "sensors") && p.n == 4) {
                        req->route = CP_RT_SENSOR;
                        return get_sensor(d, conn, req, p.seg[3]);
                }
                if (seg_is(&p, 2, "sensors") && p.n == 5 && seg_is(&p, 4, "readings")) {
                        req->route = CP_RT_HISTORY;
                        return cp_readings_handle(d, conn, req, p.seg[3]);
                }
                if (seg_is(&p, 2, "series") && p.n == 3) {
                        req->route = CP_RT_HISTORY;
                        return cp_series_handle(d, conn, req);
                }
                if (seg_is(&p, 2, "rejects") && p.n == 3) {
                        req->route = CP_RT_ADMIN;
                        return cp_rejects_handle(d, conn, req);
                }
        } else if (p.n == 1 && p.seg[0][0] == '\0') {
                req->route = CP_RT_DASHBOARD;
                return get_dashboard(d, conn, req);
        } else if (p.n == 2 && seg_is(&p, 0, "graphs")) {
                req->route = CP_RT_GRAPH;
                return get_graph(d, conn, req, p.seg[1]);
        } else if (seg_is(&p, 0, "api") && seg_is(&p, 1, "explore") && seg_is(&p, 2, "v2.1") && seg_is(&p, 3, "catalog") &&
                   seg_is(&p, 4, "datasets")) {
                req->route = CP_RT_EXPLORE;
                return cp_explore_handle(d, conn, req, p.seg + 5, p.n - 5);
        } else if (seg_is(&p, 0, "ngsi-ld") && seg_is(&p, 1, "v1")) {
                req->route = CP_RT_NGSILD;
                return cp_ngsild_handle(d, conn, req, p.seg + 2, p.n - 2);
        } else if (p.n == 2 && seg_is(&p, 0, "exports")) {
                req->route = CP_RT_EXPORT;
                return cp_exports_handle(d, conn, req, p.seg[1]);
        } else if (p.n == 1 && seg_is(&p, 0, "healthz")) {
                req->route = CP_RT_HEALTHZ;
                return get_healthz(d, conn, req);
        } else if (p.n == 1 && seg_is(&p, 0, "readyz")) {
                req->route = CP_RT_READYZ;
                return get_readyz(d, conn, req);
        } else if (p.n == 1 && seg_is(&p, 0, "metrics")) {
                req->route = CP_RT_METRICS;
                return get_metrics(d, conn, req);
        }
        req->route = CP_RT_OTHER;
        return cp_http_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such resource");
}

void cp_api_done(struct cp_http *h, struct cp_http_req *req, void *ud)
{
        struct cp_daemon *d = ud;
        unsigned cls = req->status / 100;

        (void)h;
        if (req->route < 0 || req->route >= _CP_RT_MAX)
                req->route = CP_RT_OTHER;
        if (cls >= 1 && cls <= 5)
                d->http_status[req->route][cls]++;
}
