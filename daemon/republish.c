/* republish.c - the live open-data records over MQTT (CONTRACT section 6): retained
 * <prefix>/opendata/parking/<parking_id> per facility and <prefix>/opendata/energy/<meter|district> per
 * meter, PV producer and district, each with observed_at, received_at and stale. Once a second the
 * views are rendered and a record is published only when its bytes changed (a facility going stale
 * changes it too), so a quiet city sends nothing. Publishing only queues in libmosquitto; while the
 * broker is away nothing is sent, and after a reconnection every record is sent again (retained
 * messages may have been lost with a broker that has no persistence).
 *
 * The same tick feeds the portal push (ods_push.*): parking-availability, parking-spots and energy-live
 * records in the datasets' fields and the portal's conventions ("lat,lon", UTC times), handed over when
 * they change, whatever the broker's state; the portal upserts them on their keys. */
#include "republish.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "citypulse/cp_common.h"
#include "daemon.h"
#include "timefmt.h"

#define TICK_MS 1000

static json_t *iso(const struct cp_daemon *d, int64_t ms)
{
        char buf[CP_ISO_MAX];

        return ms > 0 ? json_string(cp_time_iso(buf, sizeof(buf), ms, d->tz)) : json_null();
}

static json_t *num(bool has, double v)
{
        return has && isfinite(v) ? json_real(v) : json_null();
}

/* Publishes j (taken) on prefix/kind/id when its bytes differ from the last sent (MQTT connected). */
static void maybe_publish(struct cp_republish *rp, const char *kind, const char *id, json_t *j, uint64_t *last)
{
        struct cp_daemon *d = rp->d;
        char *body;
        char lv[512], topic[1024];
        uint64_t h;

        if (!j)
                return;
        if (d->mqtt.state != CP_MQTT_CONNECTED) {
                json_decref(j);
                return;
        }
        body = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(j);
        if (!body)
                return;
        h = cp_fnv64(body, strlen(body), CP_FNV64_INIT) | 1; /* 0 means "never sent" */
        if (h != *last) {
                cp_topic_level(lv, sizeof(lv), id);
                snprintf(topic, sizeof(topic), "%s/opendata/%s/%s", d->cfg->publish_prefix, kind, lv);
                if (cp_mqtt_in_publish(&d->mqtt, topic, body, strlen(body), true) == 0) {
                        *last = h;
                        rp->published++;
                }
        }
        free(body);
}

/* Hands j (taken), a record of dataset ds in its fields and the portal's conventions, to the portal push
 * when its bytes changed since the last one handed over. */
static void maybe_push(struct cp_republish *rp, const char *ds, json_t *j, uint64_t *last)
{
        char *body;
        uint64_t h;

        if (!j || !rp->d->push_running) {
                json_decref(j);
                return;
        }
        body = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        h = body ? cp_fnv64(body, strlen(body), CP_FNV64_INIT) | 1 : 0;
        free(body);
        if (h && h != *last && cp_push_add(&rp->d->push, ds, json_incref(j)) == 0)
                *last = h;
        json_decref(j);
}

static json_t *iso_utc(int64_t ms)
{
        char buf[CP_ISO_MAX];

        return ms > 0 ? json_string(cp_time_iso(buf, sizeof(buf), ms, NULL)) : json_null();
}

static json_t *geo(bool has, double lat, double lon)
{
        char buf[64];

        if (!has)
                return json_null();
        snprintf(buf, sizeof(buf), "%.7g,%.7g", lat, lon);
        return json_string(buf);
}

static json_t *energy_record(const struct cp_daemon *d, const char *id, const char *kind, const char *district,
                             const struct cp_energy_view *v)
{
        return json_pack("{s:s, s:s, s:s?, s:o, s:o, s:o, s:I, s:I, s:s, s:o, s:b}", "id", id, "kind", kind, "district",
                         district, "power_w", num(v->known && v->has_power, v->power_w), "energy_import_kwh",
                         num(v->known && v->has_import, v->energy_import_kwh), "energy_export_kwh",
                         num(v->known && v->has_export, v->energy_export_kwh), "meters_known",
                         (json_int_t)v->meters_known, "meters_total", (json_int_t)v->meters_total, "status",
                         v->known ? "live" : "unknown", "observed_at", iso(d, v->last_reported_ms), "stale", !v->known);
}

/* An energy-live record in the dataset's fields. */
static json_t *push_energy(const char *id, const char *kind, const char *district, const struct cp_energy_view *v)
{
        return json_pack("{s:s, s:s, s:s?, s:o, s:o, s:o, s:I, s:I, s:s, s:o}", "id", id, "kind", kind, "district",
                         district, "power_w", num(v->known && v->has_power, v->power_w), "energy_import_kwh",
                         num(v->known && v->has_import, v->energy_import_kwh), "energy_export_kwh",
                         num(v->known && v->has_export, v->energy_export_kwh), "meters_known",
                         (json_int_t)v->meters_known, "meters_total", (json_int_t)v->meters_total, "status",
                         v->known ? "live" : "unknown", "last_reported", iso_utc(v->last_reported_ms));
}

static bool resize(uint64_t **a, size_t *n, size_t want)
{
        uint64_t *p;

        if (*a && *n == want)
                return true;
        p = calloc(want ? want : 1, sizeof(*p));
        if (!p)
                return false;
        free(*a);
        *a = p;
        *n = want;
        return true;
}

static void on_tick(uv_timer_t *t)
{
        struct cp_republish *rp = t->data;
        struct cp_daemon *d = rp->d;
        const struct cp_registry *reg = d->reg;
        int64_t now = cp_now_ms();

        if (d->mqtt.state != CP_MQTT_CONNECTED)
                rp->was_connected = false;
        if (d->mqtt.state != CP_MQTT_CONNECTED && !d->push_running)
                return;
        if (!resize(&rp->fac, &rp->n_fac, reg->n_facilities) || !resize(&rp->sen, &rp->n_sen, reg->n_sensors) ||
            !resize(&rp->dist, &rp->n_dist, reg->n_districts) || !resize(&rp->pfac, &rp->n_pfac, reg->n_facilities) ||
            !resize(&rp->psen, &rp->n_psen, reg->n_sensors) || !resize(&rp->pdist, &rp->n_pdist, reg->n_districts) ||
            !resize(&rp->spot_key, &rp->n_spot_key, reg->n_sensors))
                return;
        if (rp->preg_gen != d->reg_gen) {
                memset(rp->pfac, 0, CP_MAX(rp->n_pfac, (size_t)1) * sizeof(*rp->pfac));
                memset(rp->psen, 0, CP_MAX(rp->n_psen, (size_t)1) * sizeof(*rp->psen));
                memset(rp->pdist, 0, CP_MAX(rp->n_pdist, (size_t)1) * sizeof(*rp->pdist));
                memset(rp->spot_key, 0, CP_MAX(rp->n_spot_key, (size_t)1) * sizeof(*rp->spot_key));
                rp->preg_gen = d->reg_gen;
        }
        if (d->mqtt.state == CP_MQTT_CONNECTED && (!rp->was_connected || rp->reg_gen != d->reg_gen)) {
                /* Everything again after a reconnection or a reload. */
                memset(rp->fac, 0, CP_MAX(rp->n_fac, (size_t)1) * sizeof(*rp->fac));
                memset(rp->sen, 0, CP_MAX(rp->n_sen, (size_t)1) * sizeof(*rp->sen));
                memset(rp->dist, 0, CP_MAX(rp->n_dist, (size_t)1) * sizeof(*rp->dist));
                rp->was_connected = true;
                rp->reg_gen = d->reg_gen;
        }
        for (size_t i = 0; i < reg->n_facilities; i++) {
                const struct cp_reg_facility *f = &reg->facilities[i];
                struct cp_facility_view v;
                json_t *j;

                cp_live_facility(&d->live, f, now, &v);
                j = json_pack("{s:s, s:s, s:s, s:o, s:I, s:o, s:s, s:o, s:o, s:b, s:o, s:o}", "parking_id", f->id, "name",
                              f->name, "city", f->city, "free_spaces", v.known ? json_integer(v.free_spaces) : json_null(),
                              "total_spaces", (json_int_t)v.total_spaces, "occupancy_rate",
                              num(v.known, round(v.occupancy_rate * 1000.0) / 1000.0), "status", cp_fstatus_name(v.status),
                              "observed_at", iso(d, v.last_reported_ms), "received_at", iso(d, v.last_received_ms),
                              "stale", v.status == CP_FS_UNKNOWN, "lat", num(f->has_geo, f->lat), "lon",
                              num(f->has_geo, f->lon));
                maybe_publish(rp, "parking", f->id, j, &rp->fac[i]);
                if (d->push_running)
                        maybe_push(rp, "parking-availability",
                                   json_pack("{s:s, s:s, s:s, s:s?, s:o, s:I, s:o, s:s, s:o, s:o}", "parking_id", f->id,
                                             "name", f->name, "city", f->city, "operator", f->operator_, "free_spaces",
                                             v.known ? json_integer(v.free_spaces) : json_null(), "total_spaces",
                                             (json_int_t)v.total_spaces, "occupancy_rate",
                                             num(v.known, round(v.occupancy_rate * 1000.0) / 1000.0), "status",
                                             cp_fstatus_name(v.status), "last_reported", iso_utc(v.last_reported_ms),
                                             "geo_point_2d", geo(f->has_geo, f->lat, f->lon)),
                                   &rp->pfac[i]);
        }
        for (size_t i = 0; i < reg->n_sensors; i++) {
                const struct cp_reg_sensor *rs = &reg->sensors[i];
                const struct cp_sensor *s;
                struct cp_energy_view v;

                if (rs->kind == CP_SK_SPOT && d->push_running && rs->facility) {
                        /* parking-spots, for the portal only (no MQTT topic per bay). */
                        const struct cp_qval *q;
                        const char *st = "unknown";

                        if (!(s = cp_live_get(&d->live, rs->id, strlen(rs->id))))
                                continue;
                        q = cp_sensor_value(s, CP_Q_OCCUPIED);
                        if (q && cp_live_fresh(&d->live, q, now))
                                st = q->value != 0 ? "occupied" : "free";
                        {
                                /* A spot's record changes only with its status and observation time:
                                 * compare those before building any JSON (a city has many spots). */
                                uint64_t key = (uint64_t)(q ? q->ts_ms : 0) * 4 + (uint64_t)(st[0] == 'o') * 2 +
                                               (uint64_t)(st[0] == 'f') + 1;

                                if (key == rp->spot_key[i])
                                        continue;
                                rp->spot_key[i] = key;
                        }
                        maybe_push(rp, "parking-spots",
                                   json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "spot_id", rs->spot_id ? rs->spot_id : rs->id,
                                             "sensor_id", rs->id, "parking_id", rs->facility->id, "status", st,
                                             "observed_at", iso_utc(q ? q->ts_ms : 0), "geo_point_2d",
                                             geo(rs->facility->has_geo, rs->facility->lat, rs->facility->lon)),
                                   &rp->psen[i]);
                        continue;
                }
                if (rs->kind != CP_SK_METER && rs->kind != CP_SK_PV)
                        continue;
                if (!(s = cp_live_get(&d->live, rs->id, strlen(rs->id))))
                        continue;
                cp_live_meter(&d->live, s, now, &v);
                maybe_publish(rp, "energy", rs->id,
                              energy_record(d, rs->id, rs->kind == CP_SK_PV ? "pv" : "meter",
                                            rs->district ? rs->district->name : NULL, &v),
                              &rp->sen[i]);
                if (d->push_running)
                        maybe_push(rp, "energy-live",
                                   push_energy(rs->id, rs->kind == CP_SK_PV ? "pv" : "meter",
                                               rs->district ? rs->district->name : NULL, &v),
                                   &rp->psen[i]);
        }
        for (size_t i = 0; i < reg->n_districts; i++) {
                struct cp_energy_view v;

                cp_live_district(&d->live, &reg->districts[i], now, &v);
                maybe_publish(rp, "energy", reg->districts[i].name,
                              energy_record(d, reg->districts[i].name, "district", reg->districts[i].name, &v),
                              &rp->dist[i]);
                if (d->push_running)
                        maybe_push(rp, "energy-live",
                                   push_energy(reg->districts[i].name, "district", reg->districts[i].name, &v),
                                   &rp->pdist[i]);
        }
}

int cp_republish_start(struct cp_republish *rp, struct cp_daemon *d)
{
        int r;

        memset(rp, 0, sizeof(*rp));
        rp->d = d;
        if ((r = uv_timer_init(&d->loop, &rp->timer)) < 0)
                return r;
        rp->timer.data = rp;
        return uv_timer_start(&rp->timer, on_tick, TICK_MS, TICK_MS);
}

void cp_republish_stop(struct cp_republish *rp)
{
        if (rp->timer.loop && !uv_is_closing((uv_handle_t *)&rp->timer))
                uv_close((uv_handle_t *)&rp->timer, NULL);
        free(rp->fac);
        free(rp->sen);
        free(rp->dist);
        free(rp->pfac);
        free(rp->psen);
        free(rp->pdist);
        free(rp->spot_key);
        rp->fac = rp->sen = rp->dist = rp->pfac = rp->psen = rp->pdist = rp->spot_key = NULL;
        rp->n_fac = rp->n_sen = rp->n_dist = rp->n_pfac = rp->n_psen = rp->n_pdist = rp->n_spot_key = 0;
}
