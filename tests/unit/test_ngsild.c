/* test_ngsild.c - NGSI-LD entities from a registry and a live state: every type, normalized and
 * keyValues, with and without @context; ids, attribute types, [lon,lat], observedAt, unknowns. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "citypulse/cp_tz.h"
#include "live.h"
#include "ngsild.h"

#define MIN INT64_C(60000)
#define T0  INT64_C(1772359200000) /* 2026-03-01T10:00:00Z */

static const struct cp_ngsild_opts NORM_CTX = {false, true, NULL};
static const struct cp_ngsild_opts NORM = {false, false, NULL};
static const struct cp_ngsild_opts KV_CTX = {true, true, NULL};
static const struct cp_ngsild_opts KV = {true, false, NULL};

struct fx {
        struct cp_registry *reg;
        struct cp_live live;
};

static void apply(struct fx *x, const char *id, enum cp_quantity q, double v, int64_t ts)
{
        struct cp_reading r;

        memset(&r, 0, sizeof(r));
        snprintf(r.sensor_id, sizeof(r.sensor_id), "%s", id);
        r.quantity = q;
        r.value = v;
        r.ts_ms = ts;
        r.rx_ms = ts + 5;
        assert_true(cp_live_apply(&x->live, &r) >= 0);
}

static int setup(void **state)
{
        struct cp_config_errors errs = {0};
        struct fx *x = calloc(1, sizeof(*x));

        assert_non_null(x);
        assert_int_equal(
            cp_registry_parse("f",
                              "parking_id;name;total_spaces;lat;lon;city;operator\n"
                              "P1;Parking Hôtel de Ville;4;48.8241;2.2701;Issy-les-Moulineaux;Indigo\n"
                              "C1;Counter;100;-33.8688;151.2093;;\n"
                              "N/1 é;No place;7;;;;\n",
                              "s",
                              "sensor_id;kind;parking_id;spot_id;district\n"
                              "s1;spot;P1;A13;\ns2;spot;P1;;\ns:3/é %;spot;P1;;\n"
                              "g1;facility;C1;;\nm1;meter;;;Centre Ville\npv1;pv;;;Centre Ville\n",
                              &x->reg, &errs),
            0);
        cp_live_init(&x->live, 10, 5 * MIN, 0);
        assert_int_equal(cp_live_link(&x->live, x->reg), 0);
        apply(x, "s1", CP_Q_OCCUPIED, 1, T0);
        apply(x, "s2", CP_Q_OCCUPIED, 0, T0 + MIN);
        apply(x, "g1", CP_Q_FREE_SPACES, 40, T0);
        apply(x, "g1", CP_Q_TOTAL_SPACES, 100, T0);
        apply(x, "m1", CP_Q_POWER_W, 1500, T0);
        apply(x, "m1", CP_Q_ENERGY_IMPORT_KWH, 1234.5, T0);
        apply(x, "pv1", CP_Q_POWER_W, -800, T0 + MIN);
        *state = x;
        return 0;
}

static int teardown(void **state)
{
        struct fx *x = *state;

        cp_live_done(&x->live);
        cp_registry_free(x->reg);
        free(x);
        return 0;
}

/* --- checks --- */

static const char *sget(const json_t *o, const char *k)
{
        const json_t *v = json_object_get(o, k);

        if (!json_is_string(v))
                fail_msg("%s is not a string", k);
        return json_string_value(v);
}

/* The attribute in normalized form: {"type": type, ...}; returns it. */
static json_t *attr(const json_t *e, const char *name, const char *type)
{
        json_t *a = json_object_get(e, name);

        if (!json_is_object(a))
                fail_msg("%s is not an object", name);
        assert_string_equal(sget(a, "type"), type);
        return a;
}

static json_t *pval(const json_t *e, const char *name)
{
        return json_object_get(attr(e, name, "Property"), "value");
}

static void check_context(const json_t *e, bool want)
{
        json_t *c = json_object_get(e, "@context");

        if (!want) {
                assert_null(c);
                return;
        }
        assert_true(json_is_array(c));
        assert_int_equal(json_array_size(c), 2);
        assert_string_equal(json_string_value(json_array_get(c, 0)), cp_ngsild_context_url());
        assert_string_equal(json_string_value(json_array_get(c, 1)),
                            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld");
}

static void check_point(const json_t *geo, double lon, double lat)
{
        json_t *c = json_object_get(geo, "coordinates");

        assert_string_equal(sget(geo, "type"), "Point");
        assert_int_equal(json_array_size(c), 2);
        assert_true(json_real_value(json_array_get(c, 0)) == lon);
        assert_true(json_real_value(json_array_get(c, 1)) == lat);
}

/* Every attribute of a normalized entity is a Property, GeoProperty or Relationship with a value or
 * an object, and every observedAt is a UTC ISO time. */
static void check_normalized(json_t *e)
{
        const char *k;
        json_t *a;

        json_object_foreach(e, k, a)
        {
                const char *t;
                json_t *obs;

                if (!strcmp(k, "id") || !strcmp(k, "type") || !strcmp(k, "@context"))
                        continue;
                assert_true(json_is_object(a));
                t = sget(a, "type");
                if (!strcmp(t, "Relationship")) {
                        assert_non_null(json_object_get(a, "object"));
                } else {
                        assert_true(!strcmp(t, "Property") || !strcmp(t, "GeoProperty"));
                        assert_non_null(json_object_get(a, "value"));
                        assert_false(json_is_null(json_object_get(a, "value")));
                }
                obs = json_object_get(a, "observedAt");
                if (obs) {
                        const char *s = json_string_value(obs);
                        assert_non_null(s);
                        assert_int_equal(strlen(s), 24);
                        assert_true(s[10] == 'T' && s[23] == 'Z');
                }
        }
}

/* A keyValues entity has no Property wrappers left. */
static void check_key_values(json_t *e)
{
        const char *k;
        json_t *a;

        json_object_foreach(e, k, a)
        {
                json_t *t = json_is_object(a) ? json_object_get(a, "type") : NULL;
                if (t)
                        assert_true(!strcmp(json_string_value(t), "Point") ||
                                    !strcmp(json_string_value(t), "PostalAddress"));
        }
}

static json_t *parking(struct fx *x, const char *id, int64_t now, const struct cp_ngsild_opts *o)
{
        const struct cp_reg_facility *f = cp_registry_facility(x->reg, id);
        struct cp_facility_view v;
        json_t *e;

        assert_non_null(f);
        cp_live_facility(&x->live, f, now, &v);
        e = cp_ngsild_parking(f, &v, o);
        assert_non_null(e);
        if (o->key_values)
                check_key_values(e);
        else
                check_normalized(e);
        check_context(e, o->context_in_body);
        return e;
}

/* --- tests --- */

static void test_parking_normalized(void **state)
{
        struct fx *x = *state;
        json_t *e = parking(x, "P1", T0 + 2 * MIN, &NORM_CTX), *a, *refs;

        assert_string_equal(sget(e, "id"), "urn:ngsi-ld:OffStreetParking:P1");
        assert_string_equal(sget(e, "type"), "OffStreetParking");
        assert_string_equal(json_string_value(pval(e, "name")), "Parking Hôtel de Ville");
        assert_string_equal(sget(pval(e, "address"), "addressLocality"), "Issy-les-Moulineaux");
        check_point(json_object_get(attr(e, "location", "GeoProperty"), "value"), 2.2701, 48.8241);
        assert_int_equal(json_integer_value(pval(e, "totalSpotNumber")), 4);
        assert_null(json_object_get(attr(e, "totalSpotNumber", "Property"), "observedAt"));
        /* s1 occupied, s2 free, s3 never heard: 1 free, 1 occupied of the 2 known. */
        a = attr(e, "availableSpotNumber", "Property");
        assert_int_equal(json_integer_value(json_object_get(a, "value")), 1);
        assert_string_equal(sget(a, "observedAt"), "2026-03-01T10:01:00.000Z");
        assert_int_equal(json_integer_value(pval(e, "occupiedSpotNumber")), 1);
        assert_true(json_real_value(pval(e, "occupancy")) == 0.5);
        a = attr(e, "status", "Property");
        assert_string_equal(sget(a, "value"), "spacesAvailable");
        assert_string_equal(sget(a, "observedAt"), "2026-03-01T10:01:00.000Z");
        assert_string_equal(json_string_value(pval(e, "occupancyModified")), "2026-03-01T10:01:00.000Z");
        refs = json_object_get(attr(e, "refParkingSpot", "Relationship"), "object");
        assert_int_equal(json_array_size(refs), 3);
        assert_string_equal(json_string_value(json_array_get(refs, 0)), "urn:ngsi-ld:ParkingSpot:s1");
        assert_string_equal(json_string_value(json_array_get(refs, 2)),
                            "urn:ngsi-ld:ParkingSpot:s:3%2F%C3%A9%20%25");
        json_decref(e);

        /* Without @context (Link header instead): the same entity. */
        e = parking(x, "P1", T0 + 2 * MIN, &NORM);
        assert_int_equal(json_integer_value(pval(e, "availableSpotNumber")), 1);
        json_decref(e);
}

static void test_parking_key_values(void **state)
{
        struct fx *x = *state;
        json_t *e = parking(x, "P1", T0 + 2 * MIN, &KV_CTX), *refs;

        assert_string_equal(sget(e, "id"), "urn:ngsi-ld:OffStreetParking:P1");
        assert_string_equal(sget(e, "name"), "Parking Hôtel de Ville");
        check_point(json_object_get(e, "location"), 2.2701, 48.8241);
        assert_int_equal(json_integer_value(json_object_get(e, "availableSpotNumber")), 1);
        assert_int_equal(json_integer_value(json_object_get(e, "totalSpotNumber")), 4);
        assert_string_equal(sget(e, "status"), "spacesAvailable");
        assert_string_equal(sget(json_object_get(e, "address"), "addressLocality"), "Issy-les-Moulineaux");
        refs = json_object_get(e, "refParkingSpot");
        assert_true(json_is_array(refs));
        assert_string_equal(json_string_value(json_array_get(refs, 1)), "urn:ngsi-ld:ParkingSpot:s2");
        json_decref(e);

        e = parking(x, "P1", T0 + 2 * MIN, &KV);
        assert_null(json_object_get(e, "@context"));
        json_decref(e);
}

/* Stale: no number is presented as live; status unknown; capacity and last report time stay. */
static void test_parking_unknown(void **state)
{
        struct fx *x = *state;
        struct cp_ngsild_opts paris = {false, false, NULL};
        const struct cp_ngsild_opts *forms[] = {&NORM, &KV};
        struct cp_tz *tz;

        for (size_t i = 0; i < 2; i++) {
                json_t *e = parking(x, "P1", T0 + 10 * MIN, forms[i]);

                assert_null(json_object_get(e, "availableSpotNumber"));
                assert_null(json_object_get(e, "occupiedSpotNumber"));
                assert_null(json_object_get(e, "occupancy"));
                if (forms[i]->key_values) {
                        assert_string_equal(sget(e, "status"), "unknown");
                        assert_int_equal(json_integer_value(json_object_get(e, "totalSpotNumber")), 4);
                        assert_string_equal(sget(e, "occupancyModified"), "2026-03-01T10:01:00.000Z");
                } else {
                        assert_string_equal(json_string_value(pval(e, "status")), "unknown");
                        assert_null(json_object_get(attr(e, "status", "Property"), "observedAt"));
                        assert_int_equal(json_integer_value(pval(e, "totalSpotNumber")), 4);
                }
                json_decref(e);
        }

        /* Never heard, no place, odd id: no location, no occupancyModified, id percent-encoded. */
        {
                json_t *e = parking(x, "N/1 é", T0, &NORM);
                char type[32], id[32];

                assert_string_equal(sget(e, "id"), "urn:ngsi-ld:OffStreetParking:N%2F1%20%C3%A9");
                assert_null(json_object_get(e, "location"));
                assert_null(json_object_get(e, "address"));
                assert_null(json_object_get(e, "occupancyModified"));
                assert_null(json_object_get(e, "refParkingSpot"));
                assert_string_equal(json_string_value(pval(e, "status")), "unknown");
                assert_int_equal(cp_ngsild_parse_id(sget(e, "id"), type, sizeof(type), id, sizeof(id)), 0);
                assert_string_equal(type, "OffStreetParking");
                assert_string_equal(id, "N/1 é");
                json_decref(e);
        }

        /* DateTime values in the zone asked for; observedAt stays UTC. */
        assert_int_equal(cp_tz_load("Europe/Paris", &tz), 0);
        paris.tz = tz;
        {
                json_t *e = parking(x, "P1", T0 + 2 * MIN, &paris);
                assert_string_equal(json_string_value(pval(e, "occupancyModified")),
                                    "2026-03-01T11:01:00.000+01:00");
                assert_string_equal(sget(attr(e, "availableSpotNumber", "Property"), "observedAt"),
                                    "2026-03-01T10:01:00.000Z");
                json_decref(e);
        }
        cp_tz_free(tz);
}

static void test_parking_counter(void **state)
{
        struct fx *x = *state;
        json_t *e = parking(x, "C1", T0 + MIN, &NORM_CTX);

        assert_int_equal(json_integer_value(pval(e, "availableSpotNumber")), 40);
        assert_int_equal(json_integer_value(pval(e, "occupiedSpotNumber")), 60);
        assert_int_equal(json_integer_value(pval(e, "totalSpotNumber")), 100);
        assert_true(json_real_value(pval(e, "occupancy")) == 0.6);
        check_point(json_object_get(attr(e, "location", "GeoProperty"), "value"), 151.2093, -33.8688);
        assert_null(json_object_get(e, "address")); /* empty city */
        assert_null(json_object_get(e, "refParkingSpot"));
        json_decref(e);

        apply(x, "g1", CP_Q_FREE_SPACES, 0, T0 + 2 * MIN);
        e = parking(x, "C1", T0 + 3 * MIN, &KV);
        assert_string_equal(sget(e, "status"), "full");
        assert_int_equal(json_integer_value(json_object_get(e, "availableSpotNumber")), 0);
        assert_true(json_real_value(json_object_get(e, "occupancy")) == 1.0);
        json_decref(e);
}

static json_t *spot(struct fx *x, const char *id, int64_t now, const struct cp_ngsild_opts *o)
{
        struct cp_sensor *s = cp_live_get(&x->live, id, strlen(id));
        const struct cp_qval *q;
        json_t *e;

        assert_non_null(s);
        assert_non_null(s->reg);
        q = cp_sensor_value(s, CP_Q_OCCUPIED);
        e = cp_ngsild_spot(s->reg, q, cp_live_fresh(&x->live, q, now), o);
        assert_non_null(e);
        if (o->key_values)
                check_key_values(e);
        else
                check_normalized(e);
        check_context(e, o->context_in_body);
        return e;
}

static void test_spot(void **state)
{
        struct fx *x = *state;
        json_t *e, *a;
        char type[32], id[32];

        e = spot(x, "s1", T0 + 2 * MIN, &NORM_CTX);
        assert_string_equal(sget(e, "id"), "urn:ngsi-ld:ParkingSpot:s1");
        assert_string_equal(sget(e, "type"), "ParkingSpot");
        assert_string_equal(json_string_value(pval(e, "name")), "A13");
        assert_string_equal(json_string_value(json_array_get(pval(e, "category"), 0)), "offStreet");
        a = attr(e, "status", "Property");
        assert_string_equal(sget(a, "value"), "occupied");
        assert_string_equal(sget(a, "observedAt"), "2026-03-01T10:00:00.000Z");
        assert_string_equal(json_string_value(pval(e, "observationDateTime")), "2026-03-01T10:00:00.000Z");
        assert_string_equal(sget(attr(e, "refParkingSite", "Relationship"), "object"),
                            "urn:ngsi-ld:OffStreetParking:P1");
        check_point(json_object_get(attr(e, "location", "GeoProperty"), "value"), 2.2701, 48.8241);
        json_decref(e);

        e = spot(x, "s2", T0 + 2 * MIN, &KV);
        assert_string_equal(sget(e, "status"), "free");
        assert_string_equal(sget(e, "refParkingSite"), "urn:ngsi-ld:OffStreetParking:P1");
        assert_string_equal(sget(e, "name"), "s2"); /* spot_id defaults to the sensor id */
        check_point(json_object_get(e, "location"), 2.2701, 48.8241);
        json_decref(e);

        /* Stale: unknown, but when it last reported stays. */
        e = spot(x, "s1", T0 + 6 * MIN, &NORM);
        a = attr(e, "status", "Property");
        assert_string_equal(sget(a, "value"), "unknown");
        assert_null(json_object_get(a, "observedAt"));
        assert_string_equal(json_string_value(pval(e, "observationDateTime")), "2026-03-01T10:00:00.000Z");
        json_decref(e);

        /* Never heard. */
        e = spot(x, "s:3/é %", T0, &KV_CTX);
        assert_string_equal(sget(e, "status"), "unknown");
        assert_null(json_object_get(e, "observationDateTime"));
        assert_int_equal(cp_ngsild_parse_id(sget(e, "id"), type, sizeof(type), id, sizeof(id)), 0);
        assert_string_equal(type, "ParkingSpot");
        assert_string_equal(id, "s:3/é %");
        json_decref(e);
}

static void test_meter(void **state)
{
        struct fx *x = *state;
        struct cp_sensor *m = cp_live_get(&x->live, "m1", 2);
        struct cp_energy_view v;
        json_t *e, *a;

        cp_live_meter(&x->live, m, T0 + MIN, &v);
        e = cp_ngsild_meter("m1", "Centre Ville", &v, &NORM_CTX);
        assert_non_null(e);
        check_normalized(e);
        check_context(e, true);
        assert_string_equal(sget(e, "id"), "urn:ngsi-ld:ACMeasurement:m1");
        assert_string_equal(sget(e, "type"), "ACMeasurement");
        assert_string_equal(json_string_value(pval(e, "areaServed")), "Centre Ville");
        assert_string_equal(json_string_value(pval(e, "dateObserved")), "2026-03-01T10:00:00.000Z");
        a = attr(e, "totalActivePower", "Property");
        assert_true(json_number_value(json_object_get(a, "value")) == 1500);
        assert_string_equal(sget(a, "unitCode"), "WTT");
        assert_string_equal(sget(a, "observedAt"), "2026-03-01T10:00:00.000Z");
        a = attr(e, "totalActiveEnergyImport", "Property");
        assert_true(json_number_value(json_object_get(a, "value")) == 1234.5);
        assert_string_equal(sget(a, "unitCode"), "KWH");
        assert_null(json_object_get(e, "totalActiveEnergyExport")); /* never measured */
        json_decref(e);

        e = cp_ngsild_meter("m1", NULL, &v, &KV);
        assert_non_null(e);
        check_key_values(e);
        assert_true(json_number_value(json_object_get(e, "totalActivePower")) == 1500);
        assert_null(json_object_get(e, "areaServed"));
        assert_null(json_object_get(e, "@context"));
        json_decref(e);

        /* Stale meter: no measurement at all, the last time stays. */
        cp_live_meter(&x->live, m, T0 + 10 * MIN, &v);
        e = cp_ngsild_meter("m1", "Centre Ville", &v, &NORM);
        assert_non_null(e);
        assert_null(json_object_get(e, "totalActivePower"));
        assert_null(json_object_get(e, "totalActiveEnergyImport"));
        assert_string_equal(json_string_value(pval(e, "dateObserved")), "2026-03-01T10:00:00.000Z");
        json_decref(e);
}

static void test_district(void **state)
{
        struct fx *x = *state;
        const struct cp_reg_district *d = &x->reg->districts[0];
        struct cp_energy_view v;
        char type[32], id[32];
        json_t *e;

        assert_string_equal(d->name, "Centre Ville");
        cp_live_district(&x->live, d, T0 + 2 * MIN, &v);
        e = cp_ngsild_district(d->name, &v, &KV_CTX);
        assert_non_null(e);
        check_context(e, true);
        assert_string_equal(sget(e, "id"), "urn:ngsi-ld:ACMeasurement:district:Centre%20Ville");
        assert_true(json_number_value(json_object_get(e, "totalActivePower")) == 700); /* 1500 - 800 */
        assert_string_equal(sget(e, "dateObserved"), "2026-03-01T10:01:00.000Z");
        assert_int_equal(cp_ngsild_parse_id(sget(e, "id"), type, sizeof(type), id, sizeof(id)), 0);
        assert_string_equal(id, CP_NGSILD_DISTRICT_PREFIX "Centre Ville");
        json_decref(e);

        cp_live_district(&x->live, d, T0 + 20 * MIN, &v);
        e = cp_ngsild_district(d->name, &v, &NORM);
        assert_non_null(e);
        check_normalized(e);
        assert_null(json_object_get(e, "totalActivePower"));
        assert_null(json_object_get(e, "totalActiveEnergyImport"));
        json_decref(e);
}

static void test_ids(void **state)
{
        static const char *const locals[] = {"P1", "a b", "x/y%z", "é:ü", "~._-", "100%", "urn:ngsi-ld:X:y"};
        static const char *const bad[] = {
            "",
            "urn:ngsi-ld:",
            "urn:ngsi-ld:Type",
            "urn:ngsi-ld:Type:",
            "urn:ngsi-ld::x",
            "urn:x:Type:id",
            "ngsi-ld:Type:id",
            "urn:ngsi-ld:1Type:x",
            "urn:ngsi-ld:Ty-pe:x",
            "urn:ngsi-ld:Ty pe:x",
            "urn:ngsi-ld:T:a%2",
            "urn:ngsi-ld:T:a%zz",
            "urn:ngsi-ld:T:a%00b",
            "urn:ngsi-ld:T:%C3",
            "urn:ngsi-ld:T:a b",
            "urn:ngsi-ld:T:a\tb",
            "urn:ngsi-ld:T:a\x7f",
            "urn:ngsi-ld:T:\xC3(",
        };
        char type[32], id[32];

        (void)state;
        for (size_t i = 0; i < sizeof(locals) / sizeof(locals[0]); i++) {
                char *urn = cp_ngsild_id("ParkingSpot", locals[i]);

                assert_non_null(urn);
                assert_int_equal(strncmp(urn, "urn:ngsi-ld:ParkingSpot:", 24), 0);
                for (const char *p = urn; *p; p++)
                        assert_true(*p > ' ' && *p < 0x7f && *p != '/' && *p != ' ');
                assert_int_equal(cp_ngsild_parse_id(urn, type, sizeof(type), id, sizeof(id)), 0);
                assert_string_equal(type, "ParkingSpot");
                assert_string_equal(id, locals[i]);
                free(urn);
        }
        /* Other spellings a client may send. */
        assert_int_equal(
            cp_ngsild_parse_id("URN:NGSI-LD:OffStreetParking:p%2f1", type, sizeof(type), id, sizeof(id)), 0);
        assert_string_equal(type, "OffStreetParking");
        assert_string_equal(id, "p/1");
        assert_int_equal(cp_ngsild_parse_id("urn:ngsi-ld:Spot_2:a:b:c", type, sizeof(type), id, sizeof(id)),
                         0);
        assert_string_equal(type, "Spot_2");
        assert_string_equal(id, "a:b:c");

        strcpy(type, "keep");
        strcpy(id, "keep");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (cp_ngsild_parse_id(bad[i], type, sizeof(type), id, sizeof(id)) != -EINVAL)
                        fail_msg("'%s' was not refused", bad[i]);
                assert_string_equal(type, "keep");
                assert_string_equal(id, "keep");
        }
        assert_int_equal(cp_ngsild_parse_id(NULL, type, sizeof(type), id, sizeof(id)), -EINVAL);
        /* Buffers: the NUL counts. */
        assert_int_equal(cp_ngsild_parse_id("urn:ngsi-ld:ABCD:xyz", type, 4, id, sizeof(id)), -ENAMETOOLONG);
        assert_int_equal(cp_ngsild_parse_id("urn:ngsi-ld:ABCD:xyz", type, 5, id, 3), -ENAMETOOLONG);
        assert_int_equal(cp_ngsild_parse_id("urn:ngsi-ld:ABCD:%41yz", type, 5, id, 4), 0);
        assert_string_equal(type, "ABCD");
        assert_string_equal(id, "Ayz");
        assert_string_equal(cp_ngsild_context_url(), "https://smartdatamodels.org/context.jsonld");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_parking_normalized, setup, teardown),
            cmocka_unit_test_setup_teardown(test_parking_key_values, setup, teardown),
            cmocka_unit_test_setup_teardown(test_parking_unknown, setup, teardown),
            cmocka_unit_test_setup_teardown(test_parking_counter, setup, teardown),
            cmocka_unit_test_setup_teardown(test_spot, setup, teardown),
            cmocka_unit_test_setup_teardown(test_meter, setup, teardown),
            cmocka_unit_test_setup_teardown(test_district, setup, teardown),
            cmocka_unit_test(test_ids),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
