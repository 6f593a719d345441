/* live.c - latest values and facility views. */
#include "live.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *cp_fstatus_name(enum cp_fstatus s)
{
        switch (s) {
        case CP_FS_OPEN:
                return "open";
        case CP_FS_FULL:
                return "full";
        case CP_FS_CLOSED:
                return "closed";
        case CP_FS_UNKNOWN:
                break;
        }
        return "unknown";
}

void cp_live_init(struct cp_live *l, size_t max_unregistered, int64_t stale_after_ms, int64_t full_threshold)
{
        memset(l, 0, sizeof(*l));
        l->max_unregistered = max_unregistered;
        l->stale_after_ms = stale_after_ms;
        l->full_threshold = full_threshold;
}

static void sensor_free(struct cp_sensor *s)
{
        if (!s)
                return;
        free(s->q);
        free(s->id);
        free(s);
}

void cp_live_done(struct cp_live *l)
{
        void *v;

        for (size_t it = 0; cp_map_next(&l->sensors, &it, &v);)
                sensor_free(v);
        cp_map_done(&l->sensors);
}

static struct cp_sensor *sensor_new(struct cp_live *l, const char *id)
{
        struct cp_sensor *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->id = strdup(id);
        if (!s->id || cp_map_put(&l->sensors, s->id, s) < 0) {
                sensor_free(s);
                return NULL;
        }
        return s;
}

struct cp_sensor *cp_live_get(const struct cp_live *l, const char *id, size_t len)
{
        return cp_map_get(&l->sensors, id, len);
}

static int push_ptr(struct cp_sensor ***arr, size_t *n, struct cp_sensor *s)
{
        struct cp_sensor **v = realloc(*arr, (*n + 1) * sizeof(*v));

        if (!v)
                return -ENOMEM;
        v[(*n)++] = s;
        *arr = v;
        return 0;
}

int cp_live_link(struct cp_live *l, const struct cp_registry *reg)
{
        struct cp_registry *r = (struct cp_registry *)(uintptr_t)reg;
        void *v;

        /* Everything starts unregistered, then the registry claims its own. */
        for (size_t it = 0; cp_map_next(&l->sensors, &it, &v);)
                ((struct cp_sensor *)v)->reg = NULL;
        l->n_unregistered = 0;
        for (size_t i = 0; i < r->n_facilities; i++) {
                free(r->facilities[i].spots);
                free(r->facilities[i].counters);
                r->facilities[i].spots = r->facilities[i].counters = NULL;
                r->facilities[i].n_spots = r->facilities[i].n_counters = 0;
        }
        for (size_t i = 0; i < r->n_districts; i++) {
                free(r->districts[i].meters);
                r->districts[i].meters = NULL;
                r->districts[i].n_meters = 0;
        }
        for (size_t i = 0; i < r->n_sensors; i++) {
                const struct cp_reg_sensor *rs = &r->sensors[i];
                struct cp_sensor *s = cp_live_get(l, rs->id, strlen(rs->id));
                int e = 0;

                if (!s && !(s = sensor_new(l, rs->id)))
                        return -ENOMEM;
                s->reg = rs;
                if (rs->kind == CP_SK_SPOT)
                        e = push_ptr(&rs->facility->spots, &rs->facility->n_spots, s);
                else if (rs->kind == CP_SK_FACILITY)
                        e = push_ptr(&rs->facility->counters, &rs->facility->n_counters, s);
                if (!e && rs->district && (rs->kind == CP_SK_METER || rs->kind == CP_SK_PV))
                        e = push_ptr(&rs->district->meters, &rs->district->n_meters, s);
                if (e)
                        return e;
        }
        for (size_t it = 0; cp_map_next(&l->sensors, &it, &v);)
                if (!((struct cp_sensor *)v)->reg)
                        l->n_unregistered++;
        l->reg = reg;
        l->changes++;
        return 0;
}

const struct cp_qval *cp_sensor_value(const struct cp_sensor *s, enum cp_quantity q)
{
        for (unsigned i = 0; i < s->n_q; i++)
                if (s->q[i].q == q)
                        return &s->q[i];
        return NULL;
}

bool cp_live_fresh(const struct cp_live *l, const struct cp_qval *v, int64_t now_ms)
{
        return v && now_ms - v->ts_ms <= l->stale_after_ms;
}

int cp_live_apply(struct cp_live *l, const struct cp_reading *r)
{
        struct cp_sensor *s = cp_live_get(l, r->sensor_id, strlen(r->sensor_id));
        struct cp_qval *qv = NULL;

        if (!s) {
                if (l->n_unregistered >= l->max_unregistered)
                        return -ENOSPC;
                if (!(s = sensor_new(l, r->sensor_id)))
                        return -ENOMEM;
                l->n_unregistered++;
        }
        for (unsigned i = 0; i < s->n_q; i++)
                if (s->q[i].q == r->quantity)
                        qv = &s->q[i];
        if (!qv) {
                if (s->n_q == s->cap_q) {
                        unsigned ncap = s->cap_q ? s->cap_q * 2u : 2u;
                        struct cp_qval *v;
                        if (ncap > _CP_Q_MAX)
                                ncap = _CP_Q_MAX;
                        v = realloc(s->q, ncap * sizeof(*v));
                        if (!v)
                                return -ENOMEM;
                        s->q = v;
                        s->cap_q = (uint8_t)ncap;
                }
                qv = &s->q[s->n_q++];
                qv->q = (uint8_t)r->quantity;
        } else if (r->ts_ms <= qv->ts_ms) {
                return 0;
        }
        qv->value = r->value;
        qv->ts_ms = r->ts_ms;
        qv->rx_ms = r->rx_ms;
        l->changes++;
        return 1;
}

static int64_t min64(int64_t a, int64_t b)
{
        return a < b ? a : b;
}

/* A facility fed by spot sensors: free = registered spots known free now. */
static void view_spots(const struct cp_live *l, const struct cp_reg_facility *f, int64_t now_ms,
                       struct cp_facility_view *v)
{
        int64_t free_n = 0, occ_n = 0;

        for (size_t i = 0; i < f->n_spots; i++) {
                const struct cp_qval *q = cp_sensor_value(f->spots[i], CP_Q_OCCUPIED);
                if (!q)
                        continue;
                if (q->ts_ms > v->last_reported_ms) {
                        v->last_reported_ms = q->ts_ms;
                        v->last_received_ms = q->rx_ms;
                }
                if (!cp_live_fresh(l, q, now_ms))
                        continue;
                v->next_change_ms = min64(v->next_change_ms, q->ts_ms + l->stale_after_ms + 1);
                if (q->value != 0)
                        occ_n++;
                else
                        free_n++;
        }
        v->from_spots = true;
        v->known_spots = free_n + occ_n;
        v->total_spaces = f->total_spaces;
        if (v->known_spots == 0)
                return;
        v->known = true;
        v->free_spaces = free_n;
        v->occupancy_rate = (double)occ_n / (double)v->known_spots;
}

/* A facility fed by counters: the counter with the newest observation speaks for it. */
static void view_counter(const struct cp_live *l, const struct cp_reg_facility *f, int64_t now_ms,
                         struct cp_facility_view *v)
{
        const struct cp_sensor *best = NULL;
        const struct cp_qval *bq = NULL, *tq, *oq;

        for (size_t i = 0; i < f->n_counters; i++) {
                const struct cp_qval *q = cp_sensor_value(f->counters[i], CP_Q_FREE_SPACES);
                if (!q)
                        q = cp_sensor_value(f->counters[i], CP_Q_OCCUPIED_SPACES);
                if (q && (!bq || q->ts_ms > bq->ts_ms)) {
                        bq = q;
                        best = f->counters[i];
                }
        }
        v->total_spaces = f->total_spaces;
        if (!best)
                return;
        v->last_reported_ms = bq->ts_ms;
        v->last_received_ms = bq->rx_ms;
        tq = cp_sensor_value(best, CP_Q_TOTAL_SPACES);
        if (tq && tq->value > 0)
                v->total_spaces = (int64_t)tq->value;
        if (!cp_live_fresh(l, bq, now_ms))
                return;
        v->next_change_ms = bq->ts_ms + l->stale_after_ms + 1;
        v->known = true;
        if (bq->q == CP_Q_FREE_SPACES) {
                v->free_spaces = (int64_t)bq->value;
        } else {
                oq = bq;
                v->free_spaces = v->total_spaces - (int64_t)oq->value;
        }
        if (v->free_spaces < 0)
                v->free_spaces = 0;
        if (v->free_spaces > v->total_spaces)
                v->total_spaces = v->free_spaces;
        v->occupancy_rate =
                v->total_spaces > 0 ? (double)(v->total_spaces - v->free_spaces) / (double)v->total_spaces : 0.0;
}

void cp_live_facility(const struct cp_live *l, const struct cp_reg_facility *f, int64_t now_ms,
                      struct cp_facility_view *v)
{
        memset(v, 0, sizeof(*v));
        v->next_change_ms = INT64_MAX;
        if (f->n_counters)
                view_counter(l, f, now_ms, v);
        else
                view_spots(l, f, now_ms, v);
        if (!v->known)
                v->status = CP_FS_UNKNOWN;
        else if (v->free_spaces <= l->full_threshold)
                v->status = CP_FS_FULL;
        else
                v->status = CP_FS_OPEN;
}

void cp_live_meter(const struct cp_live *l, const struct cp_sensor *s, int64_t now_ms, struct cp_energy_view *v)
{
        static const enum cp_quantity qs[] = {CP_Q_POWER_W, CP_Q_ENERGY_IMPORT_KWH, CP_Q_ENERGY_EXPORT_KWH};

        memset(v, 0, sizeof(*v));
        v->meters_total = 1;
        for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
                const struct cp_qval *q = cp_sensor_value(s, qs[i]);
                if (!q)
                        continue;
                v->last_reported_ms = q->ts_ms > v->last_reported_ms ? q->ts_ms : v->last_reported_ms;
                if (!cp_live_fresh(l, q, now_ms))
                        continue;
                v->known = true;
                if (qs[i] == CP_Q_POWER_W) {
                        v->has_power = true;
                        v->power_w = q->value;
                } else if (qs[i] == CP_Q_ENERGY_IMPORT_KWH) {
                        v->has_import = true;
                        v->energy_import_kwh = q->value;
                } else {
                        v->has_export = true;
                        v->energy_export_kwh = q->value;
                }
        }
        v->meters_known = v->known;
}

void cp_live_district(const struct cp_live *l, const struct cp_reg_district *d, int64_t now_ms,
                      struct cp_energy_view *v)
{
        memset(v, 0, sizeof(*v));
        v->meters_total = (int64_t)d->n_meters;
        for (size_t i = 0; i < d->n_meters; i++) {
                struct cp_energy_view m;

                cp_live_meter(l, d->meters[i], now_ms, &m);
                if (m.last_reported_ms > v->last_reported_ms)
                        v->last_reported_ms = m.last_reported_ms;
                if (!m.known)
                        continue;
                v->known = true;
                v->meters_known++;
                v->has_power |= m.has_power;
                v->power_w += m.power_w;
                v->has_import |= m.has_import;
                v->energy_import_kwh += m.energy_import_kwh;
                v->has_export |= m.has_export;
                v->energy_export_kwh += m.energy_export_kwh;
        }
}
