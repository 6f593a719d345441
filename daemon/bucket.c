/* bucket.c - see bucket.h. */
#include "bucket.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citypulse/cp_common.h"
#include "citypulse/cp_tz.h"
#include "map.h"
#include "store.h"
#include "timefmt.h"

#define MIN_MS 60000
#define WINDOWS_PER_TICK 30 /* in-order windows per tick: a long catch-up yields to imports */
#define GROUPS_PER_TICK 200 /* dirty bucket start times per period per tick */
#define PREV_LOOKBACK_MS (7 * 86400000LL)

/* ---- topology ---------------------------------------------------------------------------------------- */

enum etype { E_FAC, E_METER, E_DIST };

/* Signal slots per sensor kind. */
#define N_SLOTS 3
enum { S_OCC = 0 };                              /* spot */
enum { S_FREE = 0, S_OCCUPIED = 1, S_TOTAL = 2 }; /* facility counter */
enum { S_POWER = 0, S_IMPORT = 1, S_EXPORT = 2 }; /* meter, pv */

struct t_sensor {
        char *id;
        uint8_t kind; /* enum cp_skind */
        uint32_t ent; /* facility or meter index */
        uint32_t sig; /* first signal */
};

struct t_fac {
        char *id;
        double lat, lon;
        bool has_geo;
        int64_t total;
        uint32_t *spots, *counters; /* sensor indices */
        size_t n_spots, n_counters;
};

struct t_meter {
        uint32_t sensor;
        int32_t district; /* -1: none */
};

struct t_dist {
        char *name;
        uint32_t *meters; /* meter indices */
        size_t n;
};

struct cp_topo {
        struct t_sensor *s;
        struct t_fac *f;
        struct t_meter *m;
        struct t_dist *d;
        size_t n_s, n_f, n_m, n_d, n_sig;
        uint32_t *sig_owner; /* signal -> sensor index */
        struct cp_map by_sensor, by_fac, by_dist; /* id -> index + 1 */
};

void cp_topo_free(struct cp_topo *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n_s; i++)
                free(t->s[i].id);
        for (size_t i = 0; i < t->n_f; i++) {
                free(t->f[i].id);
                free(t->f[i].spots);
                free(t->f[i].counters);
        }
        for (size_t i = 0; i < t->n_d; i++) {
                free(t->d[i].name);
                free(t->d[i].meters);
        }
        free(t->s);
        free(t->f);
        free(t->m);
        free(t->d);
        free(t->sig_owner);
        cp_map_done(&t->by_sensor);
        cp_map_done(&t->by_fac);
        cp_map_done(&t->by_dist);
        free(t);
}

static int push_u32(uint32_t **a, size_t *n, uint32_t v)
{
        uint32_t *p = realloc(*a, (*n + 1) * sizeof(*p));

        if (!p)
                return -ENOMEM;
        p[(*n)++] = v;
        *a = p;
        return 0;
}

static void *idx_val(size_t i)
{
        return (void *)(uintptr_t)(i + 1);
}

static bool idx_get(const struct cp_map *m, const char *key, size_t *ret)
{
        void *v = cp_map_get(m, key, strlen(key));

        if (!v)
                return false;
        *ret = (size_t)(uintptr_t)v - 1;
        return true;
}

struct cp_topo *cp_topo_new(const struct cp_registry *reg)
{
        struct cp_topo *t = calloc(1, sizeof(*t));

        if (!t)
                return NULL;
        if (reg->n_facilities && !(t->f = calloc(reg->n_facilities, sizeof(*t->f))))
                goto oom;
        if (reg->n_districts && !(t->d = calloc(reg->n_districts, sizeof(*t->d))))
                goto oom;
        if (reg->n_sensors && (!(t->s = calloc(reg->n_sensors, sizeof(*t->s))) ||
                               !(t->m = calloc(reg->n_sensors, sizeof(*t->m)))))
                goto oom;
        for (size_t i = 0; i < reg->n_facilities; i++) {
                const struct cp_reg_facility *rf = &reg->facilities[i];
                struct t_fac *f = &t->f[t->n_f];

                if (!(f->id = strdup(rf->id)))
                        goto oom;
                t->n_f++;
                f->lat = rf->lat;
                f->lon = rf->lon;
                f->has_geo = rf->has_geo;
                f->total = rf->total_spaces;
                if (cp_map_put(&t->by_fac, f->id, idx_val(i)) < 0)
                        goto oom;
        }
        for (size_t i = 0; i < reg->n_districts; i++) {
                if (!(t->d[i].name = strdup(reg->districts[i].name)))
                        goto oom;
                t->n_d++;
                if (cp_map_put(&t->by_dist, t->d[i].name, idx_val(i)) < 0)
                        goto oom;
        }
        for (size_t i = 0; i < reg->n_sensors; i++) {
                const struct cp_reg_sensor *rs = &reg->sensors[i];
                struct t_sensor *s;
                size_t fi;

                if (rs->kind != CP_SK_SPOT && rs->kind != CP_SK_FACILITY && rs->kind != CP_SK_METER &&
                    rs->kind != CP_SK_PV)
                        continue;
                s = &t->s[t->n_s];
                if (!(s->id = strdup(rs->id)))
                        goto oom;
                s->kind = (uint8_t)rs->kind;
                s->sig = (uint32_t)t->n_sig;
                t->n_sig += rs->kind == CP_SK_SPOT ? 1 : N_SLOTS;
                if (rs->kind == CP_SK_SPOT || rs->kind == CP_SK_FACILITY) {
                        if (!rs->facility || !idx_get(&t->by_fac, rs->facility->id, &fi)) {
                                free(s->id);
                                continue;
                        }
                        s->ent = (uint32_t)fi;
                        if (push_u32(rs->kind == CP_SK_SPOT ? &t->f[fi].spots : &t->f[fi].counters,
                                     rs->kind == CP_SK_SPOT ? &t->f[fi].n_spots : &t->f[fi].n_counters,
                                     (uint32_t)t->n_s) < 0) {
                                free(s->id);
                                goto oom;
                        }
                } else {
                        struct t_meter *m = &t->m[t->n_m];
                        size_t di;

                        m->sensor = (uint32_t)t->n_s;
                        m->district = -1;
                        if (rs->district && idx_get(&t->by_dist, rs->district->name, &di)) {
                                m->district = (int32_t)di;
                                if (push_u32(&t->d[di].meters, &t->d[di].n, (uint32_t)t->n_m) < 0) {
                                        free(s->id);
                                        goto oom;
                                }
                        }
                        s->ent = (uint32_t)t->n_m++;
                }
                if (cp_map_put(&t->by_sensor, s->id, idx_val(t->n_s)) < 0) {
                        t->n_s++;
                        goto oom;
                }
                t->n_s++;
        }
        if (!(t->sig_owner = calloc(t->n_sig ? t->n_sig : 1, sizeof(*t->sig_owner))))
                goto oom;
        for (size_t i = 0; i < t->n_s; i++)
                for (uint32_t k = 0; k < (t->s[i].kind == CP_SK_SPOT ? 1u : N_SLOTS); k++)
                        t->sig_owner[t->s[i].sig + k] = (uint32_t)i;
        return t;
oom:
        cp_topo_free(t);
        return NULL;
}

/* Which slot a quantity feeds for a sensor kind, or -1. */
static int slot_of(uint8_t kind, enum cp_quantity q)
{
        switch (kind) {
        case CP_SK_SPOT:
                return q == CP_Q_OCCUPIED ? S_OCC : -1;
        case CP_SK_FACILITY:
                return q == CP_Q_FREE_SPACES ? S_FREE
                       : q == CP_Q_OCCUPIED_SPACES ? S_OCCUPIED
                       : q == CP_Q_TOTAL_SPACES   ? S_TOTAL
                                                  : -1;
        case CP_SK_METER:
        case CP_SK_PV:
                return q == CP_Q_POWER_W ? S_POWER : q == CP_Q_ENERGY_IMPORT_KWH ? S_IMPORT
                                                 : q == CP_Q_ENERGY_EXPORT_KWH   ? S_EXPORT
                                                                                 : -1;
        default:
                return -1;
        }
}

static bool slot_is_counter(uint8_t kind, int slot)
{
        return (kind == CP_SK_METER || kind == CP_SK_PV) && (slot == S_IMPORT || slot == S_EXPORT);
}

static const char *kind_name(uint8_t kind)
{
        return kind == CP_SK_PV ? "pv" : "meter";
}

/* ---- engine ------------------------------------------------------------------------------------------ */

struct sigstate {
        int64_t ts; /* carry: the newest stored reading before W */
        double v;
        int64_t first; /* the oldest reading the engine has seen (a counter has no predecessor before it) */
        bool has, has_first;
        uint32_t first_pt, n; /* this computation's points in b->pts */
};

struct wpt {
        uint32_t sig;
        int64_t ts;
        double v;
};

struct pending_ev {
        const struct cp_dataset *ds;
        char *id;
        int64_t t0, rev;
        json_t *rec;
};

static const char *const occ_tables[_CP_P_MAX] = {"parking_occupancy_1min", "parking_occupancy_15min",
                                                  "parking_occupancy_hourly", "parking_occupancy_daily"};
static const char *const en_tables[_CP_P_MAX] = {"energy_1min", "energy_15min", "energy_hourly", "energy_daily"};
static const char *const occ_datasets[_CP_P_MAX] = {NULL, "parking-occupancy-15min", "parking-occupancy-hourly",
                                                    "parking-occupancy-daily"};
static const char *const en_datasets[_CP_P_MAX] = {NULL, "energy-15min", "energy-hourly", "energy-daily"};

struct cp_bucket {
        sqlite3 *db;
        struct cp_bucket_cfg cfg;
        struct cp_topo *t;
        struct cp_bucket_stats *st;
        struct sigstate *sig;
        int64_t w; /* watermark */
        int64_t now;
        int64_t prune_due;

        struct wpt *pts;
        size_t n_pts, cap_pts;
        struct cp_agg_point *scratch;
        size_t cap_scratch;
        const struct cp_agg_point **ptrs;
        size_t *lens;
        size_t cap_ptrs;
        bool *mark_f, *mark_m, *mark_d; /* dirty-mode entity selection */
        bool dirty_mode;
        struct pending_ev *ev; /* rows written in the open transaction */
        size_t n_ev, cap_ev;

        sqlite3_stmt *scan, *next_rd, *prev_rd, *carry_up, *state_set, *dirty_ins, *dirty_t0s, *dirty_sel,
                *dirty_del, *dirty_count, *begin, *commit, *rollback;
        sqlite3_stmt *up_occ[_CP_P_MAX], *up_en[_CP_P_MAX], *sel_occ[_CP_P_MAX], *sel_en[_CP_P_MAX];
        int err_rc;
};

static void events_free(struct cp_bucket *b);

static int map_rc(int rc)
{
        return cp_sqlite_errno(rc);
}

static int run(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        sqlite3_reset(st);
        return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : map_rc(rc);
}

static int prep(struct cp_bucket *b, sqlite3_stmt **st, char *err, size_t errlen, const char *fmt, ...)
        CP_PRINTF(5, 6);
static int prep(struct cp_bucket *b, sqlite3_stmt **st, char *err, size_t errlen, const char *fmt, ...)
{
        char sql[2048];
        va_list ap;
        int rc;

        va_start(ap, fmt);
        vsnprintf(sql, sizeof(sql), fmt, ap);
        va_end(ap);
        rc = sqlite3_prepare_v3(b->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
        if (rc != SQLITE_OK) {
                snprintf(err, errlen, "prepare: %s", sqlite3_errmsg(b->db));
                return map_rc(rc);
        }
        return 0;
}

#define OCC_DATA                                                                                                  \
        "occupancy_rate_mean, coverage, free_spaces_min, free_spaces_max, free_spaces_last, samples, _registered,"   \
        " _occupied_ms, _known_ms, _capacity_ms, _has_free, _has_free_last"
#define EN_DATA                                                                                                   \
        "energy_import_kwh, energy_export_kwh, power_w_mean, power_w_min, power_w_max, power_w_last, samples,"     \
        " coverage, _known_ms, _integral, _last_ts, _has_last, _p_samples, _i_samples, _e_samples"

static int prepare_all(struct cp_bucket *b, char *err, size_t el)
{
        static const char *const occ_cols[] = {"occupancy_rate_mean", "coverage", "free_spaces_min",
                                               "free_spaces_max", "free_spaces_last", "samples", "_registered",
                                               "_occupied_ms", "_known_ms", "_capacity_ms", "_has_free",
                                               "_has_free_last"};
        static const char *const en_cols[] = {"energy_import_kwh", "energy_export_kwh", "power_w_mean",
                                              "power_w_min", "power_w_max", "power_w_last", "samples", "coverage",
                                              "_known_ms", "_integral", "_last_ts", "_has_last", "_p_samples",
                                              "_i_samples", "_e_samples"};
        char set[1024], cmp[1024];
        int r;

        if ((r = prep(b, &b->scan, err, el,
                      "SELECT sensor_id, quantity, ts_ms, value FROM readings WHERE ts_ms >= ?1 AND ts_ms < ?2")) < 0 ||
            (r = prep(b, &b->next_rd, err, el,
                      "SELECT ts_ms FROM readings WHERE ts_ms > ?1 AND ts_ms < ?2 AND sensor_id = ?3 AND quantity = ?4"
                      " ORDER BY ts_ms LIMIT 1")) < 0 ||
            (r = prep(b, &b->prev_rd, err, el,
                      "SELECT ts_ms, value FROM readings WHERE ts_ms < ?1 AND ts_ms >= ?2 AND sensor_id = ?3 AND"
                      " quantity = ?4 ORDER BY ts_ms DESC LIMIT 1")) < 0 ||
            (r = prep(b, &b->carry_up, err, el,
                      "INSERT INTO agg_carry(sensor_id, quantity, ts_ms, value, first_ts_ms) VALUES(?1,?2,?3,?4,?5)"
                      " ON CONFLICT(sensor_id, quantity) DO UPDATE SET"
                      " value = CASE WHEN excluded.ts_ms > agg_carry.ts_ms THEN excluded.value ELSE agg_carry.value END,"
                      " ts_ms = max(agg_carry.ts_ms, excluded.ts_ms),"
                      " first_ts_ms = min(coalesce(agg_carry.first_ts_ms, excluded.first_ts_ms), excluded.first_ts_ms)")) <
                    0 ||
            (r = prep(b, &b->state_set, err, el,
                      "INSERT INTO agg_state VALUES(?1,?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")) <
                    0 ||
            (r = prep(b, &b->dirty_ins, err, el, "INSERT OR IGNORE INTO agg_dirty VALUES(?1,?2,?3,?4)")) < 0 ||
            (r = prep(b, &b->dirty_t0s, err, el,
                      "SELECT DISTINCT t0 FROM agg_dirty WHERE period = ?1 AND t0 <= ?2 ORDER BY t0 LIMIT %d",
                      GROUPS_PER_TICK)) < 0 ||
            (r = prep(b, &b->dirty_sel, err, el, "SELECT etype, id FROM agg_dirty WHERE period = ?1 AND t0 = ?2")) <
                    0 ||
            (r = prep(b, &b->dirty_del, err, el, "DELETE FROM agg_dirty WHERE period = ?1 AND t0 = ?2")) < 0 ||
            (r = prep(b, &b->dirty_count, err, el, "SELECT count(*) FROM agg_dirty")) < 0 ||
            (r = prep(b, &b->begin, err, el, "BEGIN IMMEDIATE")) < 0 ||
            (r = prep(b, &b->commit, err, el, "COMMIT")) < 0 || (r = prep(b, &b->rollback, err, el, "ROLLBACK")) < 0)
                return r;

        for (int pass = 0; pass < 2; pass++) {
                const char *const *cols = pass ? en_cols : occ_cols;
                size_t n = pass ? CP_ARRAY_LEN(en_cols) : CP_ARRAY_LEN(occ_cols);
                size_t sl = 0, cl = 0;

                for (size_t i = 0; i < n; i++) {
                        sl += (size_t)snprintf(set + sl, sizeof(set) - sl, "%s = excluded.%s, ", cols[i], cols[i]);
                        cl += (size_t)snprintf(cmp + cl, sizeof(cmp) - cl, "%s%s IS NOT excluded.%s", i ? " OR " : "",
                                               cols[i], cols[i]);
                }
                for (int p = 0; p < _CP_P_MAX; p++) {
                        if (pass == 0)
                                r = prep(b, &b->up_occ[p], err, el,
                                         "INSERT INTO %s AS t (parking_id, bucket_start_ms, bucket_end_ms, lat, lon,"
                                         " revision, updated_at_ms, " OCC_DATA ")"
                                         " VALUES(?1,?2,?3,?4,?5,0,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)"
                                         " ON CONFLICT(bucket_start_ms, parking_id) DO UPDATE SET %s lat = excluded.lat,"
                                         " lon = excluded.lon, bucket_end_ms = excluded.bucket_end_ms,"
                                         " revision = t.revision + 1, updated_at_ms = excluded.updated_at_ms WHERE %s"
                                         " RETURNING revision",
                                         occ_tables[p], set, cmp);
                        else
                                r = prep(b, &b->up_en[p], err, el,
                                         "INSERT INTO %s AS t (id, kind, district, bucket_start_ms, bucket_end_ms,"
                                         " revision, updated_at_ms, " EN_DATA ")"
                                         " VALUES(?1,?2,?3,?4,?5,0,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,"
                                         "?20,?21) ON CONFLICT(bucket_start_ms, kind, id) DO UPDATE SET %s"
                                         " district = excluded.district, bucket_end_ms = excluded.bucket_end_ms,"
                                         " revision = t.revision + 1, updated_at_ms = excluded.updated_at_ms WHERE %s"
                                         " RETURNING revision",
                                         en_tables[p], set, cmp);
                        if (r < 0)
                                return r;
                        if (pass == 0)
                                r = prep(b, &b->sel_occ[p], err, el,
                                         "SELECT bucket_start_ms, bucket_end_ms, " OCC_DATA " FROM %s WHERE"
                                         " parking_id = ?1 AND bucket_start_ms >= ?2 AND bucket_start_ms < ?3"
                                         " ORDER BY bucket_start_ms",
                                         occ_tables[p]);
                        else
                                r = prep(b, &b->sel_en[p], err, el,
                                         "SELECT bucket_start_ms, bucket_end_ms, " EN_DATA " FROM %s WHERE kind = ?1"
                                         " AND id = ?2 AND bucket_start_ms >= ?3 AND bucket_start_ms < ?4"
                                         " ORDER BY bucket_start_ms",
                                         en_tables[p]);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

void cp_bucket_close(struct cp_bucket *b)
{
        if (!b)
                return;
        sqlite3_stmt *all[] = {b->scan,      b->next_rd,   b->prev_rd,   b->carry_up,    b->state_set,
                               b->dirty_ins, b->dirty_t0s, b->dirty_sel, b->dirty_del,   b->dirty_count,
                               b->begin,     b->commit,    b->rollback};
        for (size_t i = 0; i < CP_ARRAY_LEN(all); i++)
                sqlite3_finalize(all[i]);
        for (int p = 0; p < _CP_P_MAX; p++) {
                sqlite3_finalize(b->up_occ[p]);
                sqlite3_finalize(b->up_en[p]);
                sqlite3_finalize(b->sel_occ[p]);
                sqlite3_finalize(b->sel_en[p]);
        }
        events_free(b);
        free(b->ev);
        cp_topo_free(b->t);
        free(b->sig);
        free(b->pts);
        free(b->scratch);
        free(b->ptrs);
        free(b->lens);
        free(b->mark_f);
        free(b->mark_m);
        free(b->mark_d);
        free(b);
}

static const char *slot_quantity(uint8_t kind, int slot)
{
        static const enum cp_quantity fac[] = {CP_Q_FREE_SPACES, CP_Q_OCCUPIED_SPACES, CP_Q_TOTAL_SPACES};
        static const enum cp_quantity met[] = {CP_Q_POWER_W, CP_Q_ENERGY_IMPORT_KWH, CP_Q_ENERGY_EXPORT_KWH};

        if (kind == CP_SK_SPOT)
                return cp_quantity_name(CP_Q_OCCUPIED);
        return cp_quantity_name(kind == CP_SK_FACILITY ? fac[slot] : met[slot]);
}

/* Sets up per-topology state and loads the carry of its signals. */
static int load_topo(struct cp_bucket *b, struct cp_topo *t, char *err, size_t errlen)
{
        struct sigstate *sig = calloc(t->n_sig ? t->n_sig : 1, sizeof(*sig));
        bool *mf = calloc(t->n_f + 1, 1), *mm = calloc(t->n_m + 1, 1), *md = calloc(t->n_d + 1, 1);
        sqlite3_stmt *st = NULL;
        int rc;

        if (!sig || !mf || !mm || !md) {
                free(sig);
                free(mf);
                free(mm);
                free(md);
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        rc = sqlite3_prepare_v2(b->db, "SELECT sensor_id, quantity, ts_ms, value, first_ts_ms FROM agg_carry", -1, &st,
                                NULL);
        while (st && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *id = (const char *)sqlite3_column_text(st, 0);
                const char *qn = (const char *)sqlite3_column_text(st, 1);
                enum cp_quantity q;
                size_t si;
                int slot;

                if (!id || !qn || !idx_get(&t->by_sensor, id, &si) || cp_quantity_parse(qn, &q) < 0 ||
                    (slot = slot_of(t->s[si].kind, q)) < 0)
                        continue;
                sig[t->s[si].sig + (uint32_t)slot] = (struct sigstate){
                        .ts = sqlite3_column_int64(st, 2),
                        .v = sqlite3_column_double(st, 3),
                        .has = true,
                        .first = sqlite3_column_int64(st, 4),
                        .has_first = sqlite3_column_type(st, 4) != SQLITE_NULL};
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
                snprintf(err, errlen, "loading agg_carry: %s", sqlite3_errmsg(b->db));
                free(sig);
                free(mf);
                free(mm);
                free(md);
                return map_rc(rc) ? map_rc(rc) : -EIO;
        }
        cp_topo_free(b->t);
        free(b->sig);
        free(b->mark_f);
        free(b->mark_m);
        free(b->mark_d);
        b->t = t;
        b->sig = sig;
        b->mark_f = mf;
        b->mark_m = mm;
        b->mark_d = md;
        return 0;
}

void cp_bucket_rollback(struct cp_bucket *b)
{
        struct cp_topo *t = b->t;
        char err[64];

        events_free(b);
        b->t = NULL;
        if (load_topo(b, t, err, sizeof(err)) < 0)
                b->t = t; /* keeps the carry in memory: at worst a little ahead of the database */
}

int cp_bucket_set_topo(struct cp_bucket *b, struct cp_topo *t, char *err, size_t errlen)
{
        int r = load_topo(b, t, err, errlen);

        if (r < 0)
                cp_topo_free(t);
        return r;
}

static int64_t floor_ms(int64_t t, int64_t unit)
{
        int64_t q = t / unit;
        return (t % unit != 0 && t < 0 ? q - 1 : q) * unit;
}

int cp_bucket_open(sqlite3 *db, const struct cp_bucket_cfg *cfg, struct cp_topo *topo, int64_t now_ms,
                   struct cp_bucket_stats *stats, struct cp_bucket **ret, char *err, size_t errlen)
{
        struct cp_bucket *b = calloc(1, sizeof(*b));
        sqlite3_stmt *st;
        int r, rc;

        if (!b) {
                cp_topo_free(topo);
                return -ENOMEM;
        }
        b->db = db;
        b->cfg = *cfg;
        if (b->cfg.stale_after_ms < 0)
                b->cfg.stale_after_ms = 0;
        /* A parent is recomputed from its children: they must outlive the lateness window. */
        for (int p = CP_P_1M; p < CP_P_1D; p++)
                if (b->cfg.retention_ms[p] && b->cfg.retention_ms[p] < b->cfg.allowed_lateness_ms + 2 * 86400000LL)
                        b->cfg.retention_ms[p] = b->cfg.allowed_lateness_ms + 2 * 86400000LL;
        b->st = stats;
        if ((r = prepare_all(b, err, errlen)) < 0)
                goto fail;
        b->w = floor_ms(now_ms, MIN_MS);
        rc = sqlite3_prepare_v2(db, "SELECT value FROM agg_state WHERE key = 'watermark_ms'", -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                b->w = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if ((r = load_topo(b, topo, err, errlen)) < 0)
                goto fail;
        topo = NULL;
        atomic_store(&b->st->watermark_ms, b->w);
        *ret = b;
        return 0;
fail:
        cp_topo_free(topo);
        cp_bucket_close(b);
        return r;
}

int64_t cp_bucket_next_due(const struct cp_bucket *b)
{
        return b->w + MIN_MS + b->cfg.close_delay_ms;
}

/* ---- dirty marks ------------------------------------------------------------------------------------- */

static int mark(struct cp_bucket *b, int period, int64_t t0, enum etype e, const char *id)
{
        sqlite3_bind_int(b->dirty_ins, 1, period);
        sqlite3_bind_int64(b->dirty_ins, 2, t0);
        sqlite3_bind_int(b->dirty_ins, 3, (int)e);
        sqlite3_bind_text(b->dirty_ins, 4, id, -1, SQLITE_STATIC);
        return run(b->dirty_ins);
}

/* The entities a sensor feeds, marked dirty for the 1-minute bucket t0. */
static int mark_sensor(struct cp_bucket *b, const struct t_sensor *s, int64_t t0)
{
        const struct cp_topo *t = b->t;
        int r;

        if (s->kind == CP_SK_SPOT || s->kind == CP_SK_FACILITY)
                return mark(b, CP_P_1M, t0, E_FAC, t->f[s->ent].id);
        if ((r = mark(b, CP_P_1M, t0, E_METER, s->id)) < 0)
                return r;
        if (t->m[s->ent].district >= 0)
                r = mark(b, CP_P_1M, t0, E_DIST, t->d[t->m[s->ent].district].name);
        return r;
}

static int carry_store(struct cp_bucket *b, const struct t_sensor *s, int slot, const struct sigstate *sg)
{
        sqlite3_bind_text(b->carry_up, 1, s->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->carry_up, 2, slot_quantity(s->kind, slot), -1, SQLITE_STATIC);
        sqlite3_bind_int64(b->carry_up, 3, sg->ts);
        sqlite3_bind_double(b->carry_up, 4, sg->v);
        if (sg->has_first)
                sqlite3_bind_int64(b->carry_up, 5, sg->first);
        else
                sqlite3_bind_null(b->carry_up, 5);
        return run(b->carry_up);
}

int cp_bucket_note(struct cp_bucket *b, const struct cp_reading *rd, int64_t now_ms)
{
        const struct t_sensor *s;
        struct sigstate *sg;
        int64_t last;
        size_t si;
        int slot, r;

        if (rd->ts_ms >= b->w)
                return 0; /* its window is still open: it will be read when the window closes */
        if (!idx_get(&b->t->by_sensor, rd->sensor_id, &si))
                return 0;
        s = &b->t->s[si];
        if ((slot = slot_of(s->kind, rd->quantity)) < 0)
                return 0;
        if (now_ms - rd->ts_ms > b->cfg.allowed_lateness_ms) {
                atomic_fetch_add(&b->st->too_late, 1);
                return 0;
        }
        atomic_fetch_add(&b->st->late, 1);
        last = CP_MIN(rd->ts_ms + b->cfg.stale_after_ms, b->w - 1);
        for (int64_t t0 = floor_ms(rd->ts_ms, MIN_MS); t0 <= last; t0 += MIN_MS)
                if ((r = mark_sensor(b, s, t0)) < 0)
                        return r;
        sg = &b->sig[s->sig + (uint32_t)slot];
        if (slot_is_counter(s->kind, slot) && sg->has && sg->ts > rd->ts_ms) {
                /* The increase its successor counts changes too. The carry is the newest reading before W:
                 * when it is older than this one, nothing lies between, and the scan is skipped. */
                sqlite3_bind_int64(b->next_rd, 1, rd->ts_ms);
                sqlite3_bind_int64(b->next_rd, 2, b->w);
                sqlite3_bind_text(b->next_rd, 3, s->id, -1, SQLITE_STATIC);
                sqlite3_bind_text(b->next_rd, 4, slot_quantity(s->kind, slot), -1, SQLITE_STATIC);
                r = sqlite3_step(b->next_rd);
                if (r == SQLITE_ROW) {
                        int64_t nt = sqlite3_column_int64(b->next_rd, 0);
                        sqlite3_reset(b->next_rd);
                        if ((r = mark_sensor(b, s, floor_ms(nt, MIN_MS))) < 0)
                                return r;
                } else {
                        sqlite3_reset(b->next_rd);
                        if (r != SQLITE_DONE)
                                return map_rc(r);
                }
        }
        {
                bool changed = false;

                if (!sg->has || rd->ts_ms > sg->ts) {
                        sg->has = true;
                        sg->ts = rd->ts_ms;
                        sg->v = rd->value;
                        changed = true;
                }
                if (!sg->has_first || rd->ts_ms < sg->first) {
                        sg->has_first = true;
                        sg->first = rd->ts_ms;
                        changed = true;
                }
                if (changed && (r = carry_store(b, s, slot, sg)) < 0)
                        return r;
        }
        return 0;
}

/* ---- one 1-minute window ----------------------------------------------------------------------------- */

static bool sensor_selected(const struct cp_bucket *b, const struct t_sensor *s)
{
        if (!b->dirty_mode)
                return true;
        if (s->kind == CP_SK_SPOT || s->kind == CP_SK_FACILITY)
                return b->mark_f[s->ent];
        if (b->mark_m[s->ent])
                return true;
        return b->t->m[s->ent].district >= 0 && b->mark_d[b->t->m[s->ent].district];
}

static int cmp_wpt(const void *a, const void *b)
{
        const struct wpt *x = a, *y = b;

        if (x->sig != y->sig)
                return x->sig < y->sig ? -1 : 1;
        return (x->ts > y->ts) - (x->ts < y->ts);
}

/* Reads the points of [lo, hi) of the selected sensors into b->pts, sorted by signal then time. */
static int collect(struct cp_bucket *b, int64_t lo, int64_t hi)
{
        int rc;

        b->n_pts = 0;
        sqlite3_bind_int64(b->scan, 1, lo);
        sqlite3_bind_int64(b->scan, 2, hi);
        while ((rc = sqlite3_step(b->scan)) == SQLITE_ROW) {
                const char *id = (const char *)sqlite3_column_text(b->scan, 0);
                const char *qn = (const char *)sqlite3_column_text(b->scan, 1);
                enum cp_quantity q;
                size_t si;
                int slot;

                if (!id || !qn || !idx_get(&b->t->by_sensor, id, &si) || cp_quantity_parse(qn, &q) < 0 ||
                    (slot = slot_of(b->t->s[si].kind, q)) < 0 || !sensor_selected(b, &b->t->s[si]))
                        continue;
                if (b->n_pts == b->cap_pts) {
                        size_t cap = b->cap_pts ? b->cap_pts * 2 : 4096;
                        struct wpt *p = realloc(b->pts, cap * sizeof(*p));
                        if (!p) {
                                sqlite3_reset(b->scan);
                                return -ENOMEM;
                        }
                        b->pts = p;
                        b->cap_pts = cap;
                }
                b->pts[b->n_pts++] = (struct wpt){.sig = b->t->s[si].sig + (uint32_t)slot,
                                                  .ts = sqlite3_column_int64(b->scan, 2),
                                                  .v = sqlite3_column_double(b->scan, 3)};
        }
        sqlite3_reset(b->scan);
        if (rc != SQLITE_DONE)
                return map_rc(rc);
        if (b->n_pts)
                qsort(b->pts, b->n_pts, sizeof(*b->pts), cmp_wpt);
        for (size_t i = 0; i < b->n_pts; i++) {
                struct sigstate *sg = &b->sig[b->pts[i].sig];
                if (sg->n == 0)
                        sg->first_pt = (uint32_t)i;
                sg->n++;
        }
        return 0;
}

static void uncollect(struct cp_bucket *b)
{
        for (size_t i = 0; i < b->n_pts; i++)
                b->sig[b->pts[i].sig].n = 0;
}

/* Scratch space for point arrays; pointers into it are valid until the next reserve. */
static int reserve_scratch(struct cp_bucket *b, size_t n_points, size_t n_arrays)
{
        if (n_points > b->cap_scratch) {
                struct cp_agg_point *p = realloc(b->scratch, n_points * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                b->scratch = p;
                b->cap_scratch = n_points;
        }
        if (n_arrays > b->cap_ptrs) {
                const struct cp_agg_point **pp = realloc(b->ptrs, n_arrays * sizeof(*pp));
                if (!pp)
                        return -ENOMEM;
                b->ptrs = pp;
                size_t *l = realloc(b->lens, n_arrays * sizeof(*l));
                if (!l)
                        return -ENOMEM;
                b->lens = l;
                b->cap_ptrs = n_arrays;
        }
        return 0;
}

/* The point that precedes the window for a signal: the carry in order, or (dirty mode, counters, when the
 * scan holds nothing before t0) the newest stored reading before t0. */
static int pre_point(struct cp_bucket *b, const struct t_sensor *s, int slot, int64_t t0, struct cp_agg_point *ret)
{
        const struct sigstate *sg = &b->sig[s->sig + (uint32_t)slot];
        int rc;

        if (!b->dirty_mode) {
                if (!sg->has)
                        return 0;
                *ret = (struct cp_agg_point){sg->ts, sg->v};
                return 1;
        }
        if (!slot_is_counter(s->kind, slot))
                return 0; /* the scan reaches back stale_after: nothing older can reach t0 */
        if (sg->n && b->pts[sg->first_pt].ts < t0)
                return 0; /* the scan has one */
        if (sg->has_first && sg->first >= t0)
                return 0; /* nothing stored before its oldest reading: no scan */
        if (sg->has && sg->ts < t0) {
                /* The carry is the newest before W, and it is before t0: nothing lies between. */
                *ret = (struct cp_agg_point){sg->ts, sg->v};
                return 1;
        }
        sqlite3_bind_int64(b->prev_rd, 1, t0);
        sqlite3_bind_int64(b->prev_rd, 2, t0 - PREV_LOOKBACK_MS);
        sqlite3_bind_text(b->prev_rd, 3, s->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->prev_rd, 4, slot_quantity(s->kind, slot), -1, SQLITE_STATIC);
        rc = sqlite3_step(b->prev_rd);
        if (rc == SQLITE_ROW) {
                *ret = (struct cp_agg_point){sqlite3_column_int64(b->prev_rd, 0), sqlite3_column_double(b->prev_rd, 1)};
                sqlite3_reset(b->prev_rd);
                return 1;
        }
        sqlite3_reset(b->prev_rd);
        return rc == SQLITE_DONE ? 0 : map_rc(rc);
}

/* Copies a signal's points, with the point before the window first, into dst; returns how many. */
static int fill(struct cp_bucket *b, const struct t_sensor *s, int slot, int64_t t0, struct cp_agg_point *dst,
                size_t *n)
{
        const struct sigstate *sg = &b->sig[s->sig + (uint32_t)slot];
        struct cp_agg_point pre;
        int r = pre_point(b, s, slot, t0, &pre);

        if (r < 0)
                return r;
        *n = 0;
        if (r == 1)
                dst[(*n)++] = pre;
        for (uint32_t i = 0; i < sg->n; i++) {
                const struct wpt *p = &b->pts[sg->first_pt + i];
                dst[(*n)++] = (struct cp_agg_point){p->ts, p->v};
        }
        return 0;
}

static size_t sig_count(const struct cp_bucket *b, const struct t_sensor *s, int slot)
{
        return b->sig[s->sig + (uint32_t)slot].n + 1;
}

/* ---- rows -------------------------------------------------------------------------------------------- */

struct occ_row {
        struct cp_agg_occupancy o;
};

struct en_row {
        struct cp_agg_gauge g;
        struct cp_agg_counter imp, exp;
};

/* Published means, rates and increases are rounded to 6 decimals: more is noise for a portal, and the
 * exports write such values without printf (the internal columns keep the exact sums parents are
 * merged from). */
static double round6(double v)
{
        return isfinite(v) && fabs(v) < 1e9 ? round(v * 1e6) / 1e6 : v;
}

static void bind_opt_double(sqlite3_stmt *st, int i, bool has, double v)
{
        if (has && isfinite(v))
                sqlite3_bind_double(st, i, v);
        else
                sqlite3_bind_null(st, i);
}

static void bind_opt_int(sqlite3_stmt *st, int i, bool has, int64_t v)
{
        if (has)
                sqlite3_bind_int64(st, i, v);
        else
                sqlite3_bind_null(st, i);
}

static const char *iso(char *buf, size_t len, int64_t ms)
{
        return cp_time_iso(buf, len, ms, NULL);
}

static json_t *jnum_or_null(bool has, double v)
{
        return has && isfinite(v) ? json_real(v) : json_null();
}

static void emit(struct cp_bucket *b, const char *dsname, const char *id, int64_t t0, int64_t rev, json_t *rec)
{
        struct pending_ev *e;

        if (!rec)
                return;
        if (b->n_ev == b->cap_ev) {
                size_t cap = b->cap_ev ? b->cap_ev * 2 : 64;
                struct pending_ev *v = realloc(b->ev, cap * sizeof(*v));
                if (!v) {
                        json_decref(rec);
                        return;
                }
                b->ev = v;
                b->cap_ev = cap;
        }
        e = &b->ev[b->n_ev];
        e->ds = cp_dataset_find(dsname);
        e->id = strdup(id);
        if (!e->ds || !e->id) {
                free(e->id);
                json_decref(rec);
                return;
        }
        e->t0 = t0;
        e->rev = rev;
        e->rec = rec;
        b->n_ev++;
}

static void events_free(struct cp_bucket *b)
{
        for (size_t i = 0; i < b->n_ev; i++) {
                free(b->ev[i].id);
                json_decref(b->ev[i].rec);
        }
        b->n_ev = 0;
}

/* Inside the transaction: the rows of each dataset as one array, for the durable push queue. */
static int events_batch(struct cp_bucket *b)
{
        if (!b->cfg.on_batch)
                return 0;
        for (size_t i = 0; i < cp_dataset_count(); i++) {
                const struct cp_dataset *ds = cp_dataset_at(i);
                json_t *arr = NULL;
                int r;

                for (size_t k = 0; k < b->n_ev; k++) {
                        if (b->ev[k].ds != ds)
                                continue;
                        if (!arr && !(arr = json_array()))
                                return -ENOMEM;
                        json_array_append(arr, b->ev[k].rec);
                }
                if (!arr)
                        continue;
                r = b->cfg.on_batch(b->cfg.ud, ds, arr);
                json_decref(arr);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* After the commit: every row, for the MQTT republish. */
static void events_publish(struct cp_bucket *b)
{
        for (size_t i = 0; b->cfg.on_row && i < b->n_ev; i++) {
                struct cp_bucket_event ev = {.ds = b->ev[i].ds, .id = b->ev[i].id, .bucket_start_ms = b->ev[i].t0,
                                             .revision = b->ev[i].rev, .record = b->ev[i].rec};
                b->cfg.on_row(b->cfg.ud, &ev);
        }
        events_free(b);
}

static int64_t parent_start(const struct cp_bucket *b, int p, int64_t t0)
{
        return cp_agg_bucket_start((enum cp_period)(p + 1), b->cfg.tz, t0);
}

/* Runs a bound upsert. The row comes back (RETURNING revision) only when it was inserted or its values
 * changed: then it is counted and its parent marked dirty, and 1 is returned; 0 when nothing changed. */
static int wrote(struct cp_bucket *b, sqlite3_stmt *st, int p, enum etype e, const char *id, int64_t t0,
                 int64_t *rev)
{
        int rc = sqlite3_step(st);

        if (rc != SQLITE_ROW) {
                sqlite3_reset(st);
                return map_rc(rc);
        }
        *rev = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        atomic_fetch_add(*rev ? &b->st->revisions : &b->st->rows, 1);
        if (p < CP_P_1D && (rc = mark(b, p + 1, parent_start(b, p, t0), e, id)) < 0)
                return rc;
        return 1;
}

/* Upserts a facility row; on a write marks the parent dirty and reports it. */
static int write_occ(struct cp_bucket *b, int p, const struct t_fac *f, const struct cp_agg_occupancy *o)
{
        sqlite3_stmt *st = b->up_occ[p];
        double rate = 0, cov = round6(cp_agg_occupancy_coverage(o));
        bool has_rate = cp_agg_occupancy_rate(o, &rate);
        int rc;
        int64_t rev;

        if (o->known_spot_ms <= 0 && o->samples == 0)
                return 0;
        rate = round6(rate);
        sqlite3_bind_text(st, 1, f->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, o->t0);
        sqlite3_bind_int64(st, 3, o->t1);
        bind_opt_double(st, 4, f->has_geo, f->lat);
        bind_opt_double(st, 5, f->has_geo, f->lon);
        sqlite3_bind_int64(st, 6, b->now);
        bind_opt_double(st, 7, has_rate, rate);
        sqlite3_bind_double(st, 8, cov);
        bind_opt_int(st, 9, o->has_free, o->free_min);
        bind_opt_int(st, 10, o->has_free, o->free_max);
        bind_opt_int(st, 11, o->has_free_last, o->free_last);
        sqlite3_bind_int64(st, 12, o->samples);
        sqlite3_bind_int64(st, 13, o->registered_spots);
        sqlite3_bind_double(st, 14, o->occupied_spot_ms);
        sqlite3_bind_double(st, 15, o->known_spot_ms);
        sqlite3_bind_double(st, 16, o->capacity_spot_ms);
        sqlite3_bind_int(st, 17, o->has_free);
        sqlite3_bind_int(st, 18, o->has_free_last);
        if ((rc = wrote(b, st, p, E_FAC, f->id, o->t0, &rev)) <= 0)
                return rc;
        if (p > CP_P_1M && (b->cfg.on_row || b->cfg.on_batch)) {
                char i0[CP_ISO_MAX], i1[CP_ISO_MAX], iu[CP_ISO_MAX], geo[64];
                json_t *rec = json_object();

                if (rec) {
                        json_object_set_new(rec, "parking_id", json_string(f->id));
                        json_object_set_new(rec, "bucket_start", json_string(iso(i0, sizeof(i0), o->t0)));
                        json_object_set_new(rec, "bucket_end", json_string(iso(i1, sizeof(i1), o->t1)));
                        json_object_set_new(rec, "occupancy_rate_mean", jnum_or_null(has_rate, rate));
                        json_object_set_new(rec, "coverage", json_real(cov));
                        json_object_set_new(rec, "free_spaces_min", o->has_free ? json_integer(o->free_min) : json_null());
                        json_object_set_new(rec, "free_spaces_max", o->has_free ? json_integer(o->free_max) : json_null());
                        json_object_set_new(rec, "free_spaces_last",
                                            o->has_free_last ? json_integer(o->free_last) : json_null());
                        json_object_set_new(rec, "samples", json_integer(o->samples));
                        json_object_set_new(rec, "revision", json_integer(rev));
                        json_object_set_new(rec, "updated_at", json_string(iso(iu, sizeof(iu), b->now)));
                        if (f->has_geo) {
                                snprintf(geo, sizeof(geo), "%.7g,%.7g", f->lat, f->lon);
                                json_object_set_new(rec, "geo_point_2d", json_string(geo));
                        } else {
                                json_object_set_new(rec, "geo_point_2d", json_null());
                        }
                }
                emit(b, occ_datasets[p], f->id, o->t0, rev, rec);
        }
        return 0;
}

static int write_en(struct cp_bucket *b, int p, enum etype e, const char *id, const char *kind, const char *district,
                    const struct en_row *x)
{
        sqlite3_stmt *st = b->up_en[p];
        const struct cp_agg_gauge *g = &x->g;
        double mean = 0, cov = round6(g->t1 > g->t0 ? (double)g->known_ms / (double)(g->t1 - g->t0) : 0);
        bool has_mean = cp_agg_gauge_mean(g, &mean), known = g->known_ms > 0;
        double imp_r = round6(x->imp.increase), exp_r = round6(x->exp.increase);
        uint32_t samples = CP_MAX(g->samples, CP_MAX(x->imp.samples, x->exp.samples));
        int rc;
        int64_t rev;

        if (g->known_ms <= 0 && g->samples == 0 && x->imp.samples == 0 && x->exp.samples == 0)
                return 0;
        mean = round6(mean);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
        if (district)
                sqlite3_bind_text(st, 3, district, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, 3);
        sqlite3_bind_int64(st, 4, g->t0);
        sqlite3_bind_int64(st, 5, g->t1);
        sqlite3_bind_int64(st, 6, b->now);
        bind_opt_double(st, 7, x->imp.samples > 0, imp_r);
        bind_opt_double(st, 8, x->exp.samples > 0, exp_r);
        bind_opt_double(st, 9, has_mean, mean);
        bind_opt_double(st, 10, known, g->min);
        bind_opt_double(st, 11, known, g->max);
        bind_opt_double(st, 12, g->has_last, g->last);
        sqlite3_bind_int64(st, 13, samples);
        sqlite3_bind_double(st, 14, cov);
        sqlite3_bind_int64(st, 15, g->known_ms);
        sqlite3_bind_double(st, 16, g->integral);
        sqlite3_bind_int64(st, 17, g->last_ts);
        sqlite3_bind_int(st, 18, g->has_last);
        sqlite3_bind_int64(st, 19, g->samples);
        sqlite3_bind_int64(st, 20, x->imp.samples);
        sqlite3_bind_int64(st, 21, x->exp.samples);
        if ((rc = wrote(b, st, p, e, id, g->t0, &rev)) <= 0)
                return rc;
        if (p > CP_P_1M && (b->cfg.on_row || b->cfg.on_batch)) {
                char i0[CP_ISO_MAX], i1[CP_ISO_MAX], iu[CP_ISO_MAX];
                json_t *rec = json_object();

                if (rec) {
                        json_object_set_new(rec, "id", json_string(id));
                        json_object_set_new(rec, "kind", json_string(kind));
                        json_object_set_new(rec, "district", district ? json_string(district) : json_null());
                        json_object_set_new(rec, "bucket_start", json_string(iso(i0, sizeof(i0), g->t0)));
                        json_object_set_new(rec, "bucket_end", json_string(iso(i1, sizeof(i1), g->t1)));
                        json_object_set_new(rec, "energy_import_kwh", jnum_or_null(x->imp.samples > 0, imp_r));
                        json_object_set_new(rec, "energy_export_kwh", jnum_or_null(x->exp.samples > 0, exp_r));
                        json_object_set_new(rec, "power_w_mean", jnum_or_null(has_mean, mean));
                        json_object_set_new(rec, "power_w_min", jnum_or_null(known, g->min));
                        json_object_set_new(rec, "power_w_max", jnum_or_null(known, g->max));
                        json_object_set_new(rec, "power_w_last", jnum_or_null(g->has_last, g->last));
                        json_object_set_new(rec, "samples", json_integer(samples));
                        json_object_set_new(rec, "coverage", json_real(cov));
                        json_object_set_new(rec, "revision", json_integer(rev));
                        json_object_set_new(rec, "updated_at", json_string(iso(iu, sizeof(iu), b->now)));
                }
                emit(b, en_datasets[p], id, g->t0, rev, rec);
        }
        return 0;
}

/* ---- computing a window ------------------------------------------------------------------------------ */

static int compute_facility(struct cp_bucket *b, const struct t_fac *f, int64_t t0, int64_t t1)
{
        const struct cp_topo *t = b->t;
        struct cp_agg_occupancy o;
        size_t total = 0, used = 0;
        int r;

        if (f->n_spots) {
                for (size_t i = 0; i < f->n_spots; i++)
                        total += sig_count(b, &t->s[f->spots[i]], S_OCC);
                if ((r = reserve_scratch(b, total, f->n_spots)) < 0)
                        return r;
                for (size_t i = 0; i < f->n_spots; i++) {
                        if ((r = fill(b, &t->s[f->spots[i]], S_OCC, t0, b->scratch + used, &b->lens[i])) < 0)
                                return r;
                        b->ptrs[i] = b->scratch + used;
                        used += b->lens[i];
                }
                if ((r = cp_agg_occupancy_compute(b->ptrs, b->lens, f->n_spots, (int64_t)f->n_spots, t0, t1,
                                                  b->cfg.stale_after_ms, &o)) < 0)
                        return r;
                return write_occ(b, CP_P_1M, f, &o);
        }
        /* A counter: the first with data speaks for the facility. */
        for (size_t i = 0; i < f->n_counters; i++) {
                const struct t_sensor *s = &t->s[f->counters[i]];
                size_t nf, no, nt;
                int64_t totalsp = f->total;

                total = sig_count(b, s, S_FREE) + sig_count(b, s, S_OCCUPIED) + sig_count(b, s, S_TOTAL);
                if ((r = reserve_scratch(b, total, 1)) < 0)
                        return r;
                if ((r = fill(b, s, S_FREE, t0, b->scratch, &nf)) < 0 ||
                    (r = fill(b, s, S_OCCUPIED, t0, b->scratch + nf, &no)) < 0 ||
                    (r = fill(b, s, S_TOTAL, t0, b->scratch + nf + no, &nt)) < 0)
                        return r;
                if (nf == 0 && no == 0)
                        continue;
                if (nt > 0)
                        totalsp = (int64_t)b->scratch[nf + no + nt - 1].value;
                if (nf == 0) {
                        /* occupied_spaces only: free = total - occupied. */
                        for (size_t k = 0; k < no; k++)
                                b->scratch[k] = (struct cp_agg_point){b->scratch[k].ts_ms,
                                                                      (double)totalsp - b->scratch[k].value};
                        nf = no;
                }
                cp_agg_counter_occupancy_compute(b->scratch, nf, totalsp, t0, t1, b->cfg.stale_after_ms, &o);
                return write_occ(b, CP_P_1M, f, &o);
        }
        return 0;
}

static int compute_meter_into(struct cp_bucket *b, const struct t_sensor *s, int64_t t0, int64_t t1,
                              struct en_row *x, struct cp_agg_point *buf)
{
        size_t np, ni, ne;
        int r;

        if ((r = fill(b, s, S_POWER, t0, buf, &np)) < 0 || (r = fill(b, s, S_IMPORT, t0, buf + np, &ni)) < 0 ||
            (r = fill(b, s, S_EXPORT, t0, buf + np + ni, &ne)) < 0)
                return r;
        cp_agg_gauge_compute(buf, np, t0, t1, b->cfg.stale_after_ms, &x->g);
        /* The counters' points start with their predecessor when fill found one. */
        cp_agg_counter_compute(NULL, buf + np, ni, t0, t1, &x->imp);
        cp_agg_counter_compute(NULL, buf + np + ni, ne, t0, t1, &x->exp);
        return (int)np;
}

static size_t meter_points(const struct cp_bucket *b, const struct t_sensor *s)
{
        return sig_count(b, s, S_POWER) + sig_count(b, s, S_IMPORT) + sig_count(b, s, S_EXPORT);
}

static int compute_meter(struct cp_bucket *b, size_t mi, int64_t t0, int64_t t1)
{
        const struct cp_topo *t = b->t;
        const struct t_sensor *s = &t->s[t->m[mi].sensor];
        struct en_row x;
        int r;

        if ((r = reserve_scratch(b, meter_points(b, s), 1)) < 0)
                return r;
        if ((r = compute_meter_into(b, s, t0, t1, &x, b->scratch)) < 0)
                return r;
        return write_en(b, CP_P_1M, E_METER, s->id, kind_name(s->kind),
                        t->m[mi].district >= 0 ? t->d[t->m[mi].district].name : NULL, &x);
}

static int compute_district(struct cp_bucket *b, const struct t_dist *d, int64_t t0, int64_t t1)
{
        const struct cp_topo *t = b->t;
        struct en_row sum, x;
        size_t total = 0, used = 0;
        int r;

        memset(&sum, 0, sizeof(sum));
        sum.imp.t0 = sum.exp.t0 = t0;
        sum.imp.t1 = sum.exp.t1 = t1;
        for (size_t i = 0; i < d->n; i++)
                total += meter_points(b, &t->s[t->m[d->meters[i]].sensor]);
        if ((r = reserve_scratch(b, total, d->n ? d->n : 1)) < 0)
                return r;
        for (size_t i = 0; i < d->n; i++) {
                const struct t_sensor *s = &t->s[t->m[d->meters[i]].sensor];
                int np = compute_meter_into(b, s, t0, t1, &x, b->scratch + used);

                if (np < 0)
                        return np;
                b->ptrs[i] = b->scratch + used;
                b->lens[i] = (size_t)np; /* the power points come first */
                used += meter_points(b, s);
                sum.imp.increase += x.imp.increase;
                sum.imp.samples += x.imp.samples;
                sum.exp.increase += x.exp.increase;
                sum.exp.samples += x.exp.samples;
        }
        if ((r = cp_agg_sum_compute(b->ptrs, b->lens, d->n, t0, t1, b->cfg.stale_after_ms, &sum.g)) < 0)
                return r;
        /* District samples: the meters' readings of power. */
        return write_en(b, CP_P_1M, E_DIST, d->name, "district", d->name, &sum);
}

/* Computes the 1-minute window [t0, t0+1m) for every entity (in order) or the marked ones (dirty). */
static int compute_window(struct cp_bucket *b, int64_t t0)
{
        const struct cp_topo *t = b->t;
        const struct t_sensor *owner;
        int64_t t1 = t0 + MIN_MS;
        int r;

        r = collect(b, b->dirty_mode ? t0 - b->cfg.stale_after_ms - 1 : t0, t1);
        for (size_t i = 0; r == 0 && i < t->n_f; i++)
                if (!b->dirty_mode || b->mark_f[i])
                        r = compute_facility(b, &t->f[i], t0, t1);
        for (size_t i = 0; r == 0 && i < t->n_m; i++)
                if (!b->dirty_mode || b->mark_m[i])
                        r = compute_meter(b, i, t0, t1);
        for (size_t i = 0; r == 0 && i < t->n_d; i++)
                if (!b->dirty_mode || b->mark_d[i])
                        r = compute_district(b, &t->d[i], t0, t1);
        if (r == 0 && !b->dirty_mode) {
                /* The carry moves to the window's end. */
                for (size_t i = 0; r == 0 && i < b->n_pts; i++) {
                        const struct wpt *p = &b->pts[i];
                        struct sigstate *sg = &b->sig[p->sig];

                        if (i + 1 < b->n_pts && b->pts[i + 1].sig == p->sig)
                                continue; /* not the signal's last point */
                        if (sg->has && sg->ts >= p->ts)
                                continue;
                        sg->has = true;
                        sg->ts = p->ts;
                        sg->v = p->v;
                        if (!sg->has_first) {
                                sg->has_first = true;
                                sg->first = b->pts[sg->first_pt].ts;
                        }
                        owner = &t->s[t->sig_owner[p->sig]];
                        r = carry_store(b, owner, (int)(p->sig - owner->sig), sg);
                }
        }
        uncollect(b);
        return r;
}

/* ---- parents: merges of their children ---------------------------------------------------------------- */

/* The child period a parent is merged from: the longest whose buckets tile [t0, t1). */
static int child_period(int p, int64_t t0, int64_t t1)
{
        static const int64_t len[] = {MIN_MS, 15 * MIN_MS, 60 * MIN_MS};

        for (int c = p - 1; c >= CP_P_1M; c--)
                if (t0 % len[c] == 0 && t1 % len[c] == 0)
                        return c;
        return CP_P_1M;
}

static void occ_from_row(sqlite3_stmt *st, struct cp_agg_occupancy *o)
{
        memset(o, 0, sizeof(*o));
        o->t0 = sqlite3_column_int64(st, 0);
        o->t1 = sqlite3_column_int64(st, 1);
        /* 2 rate, 3 coverage: derived */
        o->free_min = sqlite3_column_int64(st, 4);
        o->free_max = sqlite3_column_int64(st, 5);
        o->free_last = sqlite3_column_int64(st, 6);
        o->samples = (uint32_t)sqlite3_column_int64(st, 7);
        o->registered_spots = sqlite3_column_int64(st, 8);
        o->occupied_spot_ms = sqlite3_column_double(st, 9);
        o->known_spot_ms = sqlite3_column_double(st, 10);
        o->capacity_spot_ms = sqlite3_column_double(st, 11);
        o->has_free = sqlite3_column_int(st, 12) != 0;
        o->has_free_last = sqlite3_column_int(st, 13) != 0;
}

static void occ_empty(struct cp_agg_occupancy *o, int64_t t0, int64_t t1, int64_t registered)
{
        memset(o, 0, sizeof(*o));
        o->t0 = t0;
        o->t1 = t1;
        o->registered_spots = registered;
        o->capacity_spot_ms = (double)registered * (double)(t1 - t0);
}

static int64_t fac_registered(const struct t_fac *f)
{
        return f->n_spots ? (int64_t)f->n_spots : CP_MAX(f->total, 0);
}

static int merge_facility(struct cp_bucket *b, int p, const struct t_fac *f, int64_t t0, int64_t t1)
{
        int c = child_period(p, t0, t1);
        sqlite3_stmt *st = b->sel_occ[c];
        struct cp_agg_occupancy acc, x, gap;
        int64_t cur = t0;
        int rc;

        occ_empty(&acc, t0, t0, fac_registered(f));
        sqlite3_bind_text(st, 1, f->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, t0);
        sqlite3_bind_int64(st, 3, t1);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                occ_from_row(st, &x);
                if (x.t0 < cur || x.t1 > t1)
                        continue; /* a child that does not tile (a zone change): skipped */
                if (x.t0 > cur) {
                        occ_empty(&gap, cur, x.t0, fac_registered(f));
                        cp_agg_occupancy_merge(&acc, &gap);
                }
                cp_agg_occupancy_merge(&acc, &x);
                cur = x.t1;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
                return map_rc(rc);
        if (cur < t1) {
                occ_empty(&gap, cur, t1, fac_registered(f));
                cp_agg_occupancy_merge(&acc, &gap);
        }
        return write_occ(b, p, f, &acc);
}

static void en_empty(struct en_row *x, int64_t t0, int64_t t1)
{
        memset(x, 0, sizeof(*x));
        x->g.t0 = x->imp.t0 = x->exp.t0 = t0;
        x->g.t1 = x->imp.t1 = x->exp.t1 = t1;
        x->g.min = x->g.max = x->g.last = NAN;
}

static void en_from_row(sqlite3_stmt *st, struct en_row *x)
{
        en_empty(x, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
        x->imp.increase = sqlite3_column_double(st, 2); /* NULL reads as 0 */
        x->exp.increase = sqlite3_column_double(st, 3);
        /* 4 mean: derived */
        x->g.min = sqlite3_column_type(st, 5) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 5);
        x->g.max = sqlite3_column_type(st, 6) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 6);
        x->g.last = sqlite3_column_type(st, 7) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 7);
        /* 8 samples, 9 coverage: derived */
        x->g.known_ms = sqlite3_column_int64(st, 10);
        x->g.integral = sqlite3_column_double(st, 11);
        x->g.last_ts = sqlite3_column_int64(st, 12);
        x->g.has_last = sqlite3_column_int(st, 13) != 0;
        x->g.samples = (uint32_t)sqlite3_column_int64(st, 14);
        x->imp.samples = (uint32_t)sqlite3_column_int64(st, 15);
        x->exp.samples = (uint32_t)sqlite3_column_int64(st, 16);
}

static void en_merge(struct en_row *a, const struct en_row *x)
{
        cp_agg_gauge_merge(&a->g, &x->g);
        cp_agg_counter_merge(&a->imp, &x->imp);
        cp_agg_counter_merge(&a->exp, &x->exp);
}

static int merge_energy(struct cp_bucket *b, int p, enum etype e, const char *id, const char *kind,
                        const char *district, int64_t t0, int64_t t1)
{
        int c = child_period(p, t0, t1);
        sqlite3_stmt *st = b->sel_en[c];
        struct en_row acc, x, gap;
        int64_t cur = t0;
        int rc;

        en_empty(&acc, t0, t0);
        sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, t0);
        sqlite3_bind_int64(st, 4, t1);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                en_from_row(st, &x);
                if (x.g.t0 < cur || x.g.t1 > t1)
                        continue;
                if (x.g.t0 > cur) {
                        en_empty(&gap, cur, x.g.t0);
                        en_merge(&acc, &gap);
                }
                en_merge(&acc, &x);
                cur = x.g.t1;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
                return map_rc(rc);
        if (cur < t1) {
                en_empty(&gap, cur, t1);
                en_merge(&acc, &gap);
        }
        return write_en(b, p, e, id, kind, district, &acc);
}

/* Recomputes one parent bucket of an entity named in a dirty mark. Unknown ids (the registry changed)
 * are dropped. */
static int merge_entity(struct cp_bucket *b, int p, enum etype e, const char *id, int64_t t0, int64_t t1)
{
        const struct cp_topo *t = b->t;
        size_t i;

        switch (e) {
        case E_FAC:
                return idx_get(&t->by_fac, id, &i) ? merge_facility(b, p, &t->f[i], t0, t1) : 0;
        case E_METER: {
                const struct t_sensor *s;
                const struct t_meter *m;

                if (!idx_get(&t->by_sensor, id, &i))
                        return 0;
                s = &t->s[i];
                if (s->kind != CP_SK_METER && s->kind != CP_SK_PV)
                        return 0;
                m = &t->m[s->ent];
                return merge_energy(b, p, e, s->id, kind_name(s->kind), m->district >= 0 ? t->d[m->district].name : NULL,
                                    t0, t1);
        }
        case E_DIST:
                return idx_get(&t->by_dist, id, &i) ? merge_energy(b, p, e, t->d[i].name, "district", t->d[i].name, t0, t1)
                                                    : 0;
        }
        return 0;
}

/* ---- tick -------------------------------------------------------------------------------------------- */

static int set_state(struct cp_bucket *b, const char *key, int64_t v)
{
        sqlite3_bind_text(b->state_set, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(b->state_set, 2, v);
        return run(b->state_set);
}

static int begin(struct cp_bucket *b)
{
        return run(b->begin);
}

static int end(struct cp_bucket *b, int r, const char *what, char *err, size_t errlen)
{
        if (r == 0)
                r = events_batch(b);
        if (r == 0 && (r = run(b->commit)) == 0) {
                events_publish(b);
                return 0;
        }
        snprintf(err, errlen, "%s: %s", what, r == -ENOMEM ? "out of memory" : sqlite3_errmsg(b->db));
        (void)run(b->rollback);
        events_free(b);
        return r;
}

/* Selects the entities of the dirty marks (period, t0) into the mark arrays (dirty mode), or for parents
 * runs them directly. */
static int process_group(struct cp_bucket *b, int p, int64_t t0)
{
        const struct cp_topo *t = b->t;
        int64_t t1 = cp_agg_bucket_end((enum cp_period)p, b->cfg.tz, t0);
        int rc, r = 0;
        bool any = false;

        if (p == CP_P_1M) {
                memset(b->mark_f, 0, t->n_f + 1);
                memset(b->mark_m, 0, t->n_m + 1);
                memset(b->mark_d, 0, t->n_d + 1);
        }
        sqlite3_bind_int(b->dirty_sel, 1, p);
        sqlite3_bind_int64(b->dirty_sel, 2, t0);
        while (r == 0 && (rc = sqlite3_step(b->dirty_sel)) == SQLITE_ROW) {
                enum etype e = (enum etype)sqlite3_column_int(b->dirty_sel, 0);
                const char *id = (const char *)sqlite3_column_text(b->dirty_sel, 1);
                size_t i;

                if (!id)
                        continue;
                if (p != CP_P_1M) {
                        /* The id is copied: merging writes marks, which may move the cursor's page. */
                        char *dup = strdup(id);
                        r = dup ? merge_entity(b, p, e, dup, t0, t1) : -ENOMEM;
                        free(dup);
                        continue;
                }
                if (e == E_FAC && idx_get(&t->by_fac, id, &i))
                        b->mark_f[i] = any = true;
                else if (e == E_METER && idx_get(&t->by_sensor, id, &i) &&
                         (t->s[i].kind == CP_SK_METER || t->s[i].kind == CP_SK_PV))
                        b->mark_m[t->s[i].ent] = any = true;
                else if (e == E_DIST && idx_get(&t->by_dist, id, &i))
                        b->mark_d[i] = any = true;
        }
        sqlite3_reset(b->dirty_sel);
        if (r < 0)
                return r;
        if (any) {
                /* A district needs its meters' points: select them too (their rows are rewritten only if
                 * they change). */
                for (size_t i = 0; i < t->n_d; i++)
                        if (b->mark_d[i])
                                for (size_t k = 0; k < t->d[i].n; k++)
                                        b->mark_m[t->d[i].meters[k]] = true;
                b->dirty_mode = true;
                r = compute_window(b, t0);
                b->dirty_mode = false;
                if (r < 0)
                        return r;
        }
        sqlite3_bind_int(b->dirty_del, 1, p);
        sqlite3_bind_int64(b->dirty_del, 2, t0);
        return run(b->dirty_del);
}

/* Dirty buckets of period p that are closed (end <= W), oldest first. Returns how many groups ran. */
static int process_dirty(struct cp_bucket *b, int p, int *groups)
{
        static const int64_t min_len[] = {MIN_MS, 15 * MIN_MS, 60 * MIN_MS, 23 * 60 * MIN_MS};
        int64_t t0s[GROUPS_PER_TICK];
        int n = 0, rc, r = 0;

        sqlite3_bind_int(b->dirty_t0s, 1, p);
        sqlite3_bind_int64(b->dirty_t0s, 2, b->w - min_len[p]);
        while ((rc = sqlite3_step(b->dirty_t0s)) == SQLITE_ROW && n < GROUPS_PER_TICK)
                t0s[n++] = sqlite3_column_int64(b->dirty_t0s, 0);
        sqlite3_reset(b->dirty_t0s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
                return map_rc(rc);
        for (int i = 0; r == 0 && i < n; i++) {
                if (cp_agg_bucket_end((enum cp_period)p, b->cfg.tz, t0s[i]) > b->w)
                        continue; /* a long local day not over yet */
                r = process_group(b, p, t0s[i]);
                (*groups)++;
        }
        return r;
}

static int64_t count_dirty(struct cp_bucket *b)
{
        int64_t n = 0;

        if (sqlite3_step(b->dirty_count) == SQLITE_ROW)
                n = sqlite3_column_int64(b->dirty_count, 0);
        sqlite3_reset(b->dirty_count);
        return n;
}

static int prune(struct cp_bucket *b, char *err, size_t errlen)
{
        for (int p = 0; p < _CP_P_MAX; p++) {
                if (!b->cfg.retention_ms[p])
                        continue;
                for (int k = 0; k < 2; k++) {
                        const char *tab = k ? en_tables[p] : occ_tables[p];
                        char sql[256];
                        int rc;

                        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE bucket_start_ms < %lld", tab,
                                 (long long)(b->now - b->cfg.retention_ms[p]));
                        rc = sqlite3_exec(b->db, sql, NULL, NULL, NULL);
                        if (rc != SQLITE_OK) {
                                snprintf(err, errlen, "pruning %s: %s", tab, sqlite3_errmsg(b->db));
                                return map_rc(rc);
                        }
                        atomic_fetch_add(&b->st->pruned, (uint64_t)sqlite3_changes(b->db));
                }
        }
        return 0;
}

int cp_bucket_tick(struct cp_bucket *b, int64_t now_ms, char *err, size_t errlen)
{
        int windows = 0, groups = 0, r;

        b->now = now_ms;
        if (now_ms >= b->prune_due) {
                b->prune_due = now_ms + 3600 * 1000;
                if ((r = prune(b, err, errlen)) < 0)
                        return r;
        }
        /* Windows in order, each in its own transaction with the carry and the watermark. */
        while (b->w + MIN_MS + b->cfg.close_delay_ms <= now_ms && windows < WINDOWS_PER_TICK) {
                if ((r = begin(b)) < 0)
                        return end(b, r, "begin", err, errlen);
                r = compute_window(b, b->w);
                if (r == 0)
                        r = set_state(b, "watermark_ms", b->w + MIN_MS);
                if ((r = end(b, r, "closing a window", err, errlen)) < 0) {
                        /* The carry in memory may be ahead of the database: reload it. */
                        cp_bucket_rollback(b);
                        return r;
                }
                b->w += MIN_MS;
                windows++;
                atomic_fetch_add(&b->st->windows, 1);
                atomic_store(&b->st->watermark_ms, b->w);
        }
        /* Dirty buckets, children before parents. */
        if ((r = begin(b)) < 0)
                return end(b, r, "begin", err, errlen);
        for (int p = CP_P_1M; r == 0 && p < _CP_P_MAX; p++)
                r = process_dirty(b, p, &groups);
        if ((r = end(b, r, "recomputing buckets", err, errlen)) < 0)
                return r;
        atomic_store(&b->st->dirty, count_dirty(b));
        return windows == WINDOWS_PER_TICK || groups >= GROUPS_PER_TICK ? 1 : 0;
}
