/* http_ngsild.c - read-only NGSI-LD (ETSI GS CIM 009) over the live state: GET /ngsi-ld/v1/entities
 * ?type=OffStreetParking|ParkingSpot|ACMeasurement[&id=][&options=keyValues][&limit=][&offset=] and
 * GET /ngsi-ld/v1/entities/{id}. The body carries @context when the client accepts application/ld+json;
 * otherwise it is application/json with the context in a Link header, as the specification asks.
 * Entities are rendered by ngsild.c from the same views as the drivers' app feed, so a stale value is
 * "unknown" here too. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "citypulse/cp_common.h"
#include "daemon.h"
#include "http_ngsild.h"
#include "ngsild.h"
#include "timefmt.h"

#define DEFAULT_LIMIT 20
#define MAX_LIMIT     1000

static enum MHD_Result ngsi_error(struct MHD_Connection *conn, struct cp_http_req *req, unsigned status,
                                  const char *type, const char *detail)
{
        char t[160];
        json_t *j;
        char *body;
        struct MHD_Response *r;
        enum MHD_Result ret;

        snprintf(t, sizeof(t), "https://uri.etsi.org/ngsi-ld/errors/%s", type);
        j = json_pack("{s:s, s:s, s:s}", "type", t, "title", type, "detail", detail);
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!body)
                return MHD_NO;
        r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!r) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        ret = cp_http_queue(conn, req, status, r);
        MHD_destroy_response(r);
        return ret;
}

static bool wants_ld(struct MHD_Connection *conn)
{
        const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        return a && strstr(a, "application/ld+json");
}

static enum MHD_Result send_entity(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req, json_t *j,
                            bool ld)
{
        char *body = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        char etag[24], link[256];
        struct MHD_Response *r;
        enum MHD_Result ret;
        json_decref(j);
        if (!body)
                return MHD_NO;
        snprintf(etag, sizeof(etag), "\"%016llx\"", (unsigned long long)cp_fnv64(body, strlen(body), CP_FNV64_INIT));
        if (cp_api_etag_matches(conn, etag)) {
                free(body);
                return cp_api_not_modified(conn, req, etag, d->cfg->http_ttl_ms / 1000, true);
        }
        r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!r) {
                free(body);
                return MHD_NO;
        }
        cp_api_common_headers(r, etag, d->cfg->http_ttl_ms / 1000, true, ld ? "application/ld+json" : "application/json");
        if (!ld) {
                snprintf(link, sizeof(link),
                         "<%s>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
                         cp_ngsild_context_url());
                MHD_add_response_header(r, "Link", link);
        }
        ret = cp_http_queue(conn, req, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
}

enum etype { T_PARKING, T_SPOT, T_AC, T_NONE };

static enum etype type_parse(const char *t)
{
        if (!t)
                return T_NONE;
        if (strcmp(t, "OffStreetParking") == 0)
                return T_PARKING;
        if (strcmp(t, "ParkingSpot") == 0)
                return T_SPOT;
        if (strcmp(t, "ACMeasurement") == 0)
                return T_AC;
        return T_NONE;
}

/* Calls emit for every entity of type t whose local id matches want (NULL: all), in registry order. */
struct walk {
        struct cp_daemon *d;
        struct cp_ngsild_opts o;
        int64_t now;
        json_t *out;
        int64_t skip, limit, seen;
};

static void add(struct walk *w, json_t *e)
{
        if (!e)
                return;
        if (w->seen++ < w->skip || (int64_t)json_array_size(w->out) >= w->limit) {
                json_decref(e);
                return;
        }
        json_array_append_new(w->out, e);
}

static void walk_type(struct walk *w, enum etype t, const char *want)
{
        const struct cp_registry *reg = w->d->reg;
        const struct cp_live *l = &w->d->live;

        if (t == T_PARKING) {
                for (size_t i = 0; i < reg->n_facilities; i++) {
                        const struct cp_reg_facility *f = &reg->facilities[i];
                        struct cp_facility_view v;

                        if (want && strcmp(want, f->id) != 0)
                                continue;
                        cp_live_facility(l, f, w->now, &v);
                        add(w, cp_ngsild_parking(f, &v, &w->o));
                }
        } else if (t == T_SPOT) {
                for (size_t i = 0; i < reg->n_facilities; i++)
                        for (size_t k = 0; k < reg->facilities[i].n_spots; k++) {
                                const struct cp_sensor *s = reg->facilities[i].spots[k];
                                const struct cp_qval *q = cp_sensor_value(s, CP_Q_OCCUPIED);

                                if (want && strcmp(want, s->id) != 0)
                                        continue;
                                add(w, cp_ngsild_spot(s->reg, q, q && cp_live_fresh(l, q, w->now), &w->o));
                        }
        } else if (t == T_AC) {
                size_t pl = strlen(CP_NGSILD_DISTRICT_PREFIX);

                for (size_t i = 0; i < reg->n_sensors; i++) {
                        const struct cp_reg_sensor *rs = &reg->sensors[i];
                        const struct cp_sensor *s;
                        struct cp_energy_view v;

                        if ((rs->kind != CP_SK_METER && rs->kind != CP_SK_PV) || (want && strcmp(want, rs->id) != 0))
                                continue;
                        if (!(s = cp_live_get(l, rs->id, strlen(rs->id))))
                                continue;
                        cp_live_meter(l, s, w->now, &v);
                        add(w, cp_ngsild_meter(rs->id, rs->district ? rs->district->name : NULL, &v, &w->o));
                }
                for (size_t i = 0; i < reg->n_districts; i++) {
                        const struct cp_reg_district *dd = &reg->districts[i];
                        struct cp_energy_view v;

                        if (want && (strncmp(want, CP_NGSILD_DISTRICT_PREFIX, pl) != 0 || strcmp(want + pl, dd->name) != 0))
                                continue;
                        cp_live_district(l, dd, w->now, &v);
                        add(w, cp_ngsild_district(dd->name, &v, &w->o));
                }
        }
}

/* segs: after "/ngsi-ld/v1". */
enum MHD_Result cp_ngsild_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                 char *const *segs, size_t n)
{
        const char *type = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "type");
        const char *opts = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "options");
        const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
        struct walk w = {.d = d, .now = cp_now_ms(), .limit = DEFAULT_LIMIT};
        bool ld = wants_ld(conn);
        char t[64], local[CP_SENSOR_ID_MAX];
        enum etype et;

        if (n == 0 || strcmp(segs[0], "entities") != 0 || n > 2)
                return ngsi_error(conn, req, MHD_HTTP_NOT_FOUND, "ResourceNotFound", "no such resource");
        w.o.key_values = opts && strstr(opts, "keyValues");
        w.o.context_in_body = ld;
        w.o.tz = d->tz;
        if (opts && !w.o.key_values && strcmp(opts, "normalized") != 0)
                return ngsi_error(conn, req, MHD_HTTP_BAD_REQUEST, "BadRequestData", "options must be keyValues or normalized");
        if (n == 2) {
                json_t *e;
                if (cp_ngsild_parse_id(segs[1], t, sizeof(t), local, sizeof(local)) < 0 || (et = type_parse(t)) == T_NONE)
                        return ngsi_error(conn, req, MHD_HTTP_BAD_REQUEST, "BadRequestData",
                                          "the id must be urn:ngsi-ld:<OffStreetParking|ParkingSpot|ACMeasurement>:<id>");
                w.out = json_array();
                w.limit = 1;
                walk_type(&w, et, local);
                if (!w.out || json_array_size(w.out) == 0) {
                        json_decref(w.out);
                        return ngsi_error(conn, req, MHD_HTTP_NOT_FOUND, "ResourceNotFound", "no such entity");
                }
                e = json_incref(json_array_get(w.out, 0));
                json_decref(w.out);
                return send_entity(d, conn, req, e, ld);
        }
        if (!type)
                return ngsi_error(conn, req, MHD_HTTP_BAD_REQUEST, "BadRequestData",
                                  "type is required: OffStreetParking, ParkingSpot or ACMeasurement");
        if ((et = type_parse(type)) == T_NONE)
                return ngsi_error(conn, req, MHD_HTTP_BAD_REQUEST, "BadRequestData",
                                  "type must be OffStreetParking, ParkingSpot or ACMeasurement");
        if (cp_http_parse_int(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit"), 0, MAX_LIMIT, &w.limit) < 0 ||
            cp_http_parse_int(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset"), 0, INT32_MAX, &w.skip) < 0)
                return ngsi_error(conn, req, MHD_HTTP_BAD_REQUEST, "BadRequestData",
                                  "limit must be 0..1000 and offset a non-negative integer");
        if (id) {
                if (cp_ngsild_parse_id(id, t, sizeof(t), local, sizeof(local)) < 0 || type_parse(t) != et)
                        return ngsi_error(conn, req, MHD_HTTP_BAD_REQUEST, "BadRequestData", "id does not name an entity of that type");
        }
        w.out = json_array();
        if (!w.out)
                return MHD_NO;
        walk_type(&w, et, id ? local : NULL);
        return send_entity(d, conn, req, w.out, ld);
}
