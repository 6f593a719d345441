/* ngsild.h - NGSI-LD entities built from the live state (FORMATS.md section 3): OffStreetParking per
 * facility, ParkingSpot per spot sensor, ACMeasurement per meter and per district, in the FIWARE Smart
 * Data Models' attribute names. Pure: no I/O, no clock (the caller passes views computed at its now).
 *
 * Forms: normalized (every attribute {"type":"Property","value":..}, location {"type":"GeoProperty",
 * "value":<GeoJSON Point [lon,lat]>}, links {"type":"Relationship","object":<urn or [urns]>}) or
 * keyValues (the bare values). With context_in_body the entity carries "@context" (for
 * application/ld+json); without, the caller sends cp_ngsild_context_url() in a Link header.
 *
 * Ids: "urn:ngsi-ld:<Type>:<local id>", the local id percent-encoded: every byte but ASCII letters,
 * digits, '-', '.', '_', '~' and ':' becomes %XX (so '/', '%', spaces and non-ASCII are safe in a URN
 * and in a URL path). Local ids: the facility's parking_id, the spot sensor's sensor_id (unique,
 * unlike spot_id), the meter's sensor_id, and "district:<name>" for a district.
 *
 * Times: observedAt (an NGSI-LD temporal property) is always UTC, "2026-03-01T10:00:00.000Z"; DateTime
 * attribute values (occupancyModified, observationDateTime, dateObserved) are ISO 8601 with the
 * offset of opts->tz (NULL: UTC "Z"), as plain strings as in the Smart Data Models' examples.
 *
 * Unknown is never presented as a live number: a facility whose view is not known (sensors silent
 * past live.stale_after, or never heard) has status "unknown" and no availableSpotNumber,
 * occupiedSpotNumber or occupancy (totalSpotNumber, the capacity, stays); a spot without a fresh
 * reading has status "unknown"; a meter or district without fresh values has none of its measurement
 * attributes. The time of the last reading stays visible (occupancyModified, observationDateTime,
 * dateObserved) so that consumers can tell how old the last knowledge is.
 *
 * Every builder returns a new reference (the caller json_decref()s it), or NULL when out of memory.
 * Any thread; nothing is kept. */
#ifndef CP_NGSILD_H
#define CP_NGSILD_H

#include "live.h"
#include "registry.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct cp_tz;

/* The Smart Data Models context, one document for every model (Parking and Energy alike), as the
 * models' own NGSI-LD examples cite it; the core context follows it in a body "@context". */
#define CP_NGSILD_SDM_CONTEXT  "https://smartdatamodels.org/context.jsonld"
#define CP_NGSILD_CORE_CONTEXT "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
/* Local id prefix of a district's ACMeasurement entity. */
#define CP_NGSILD_DISTRICT_PREFIX "district:"

struct cp_ngsild_opts {
        bool key_values;        /* options=keyValues */
        bool context_in_body;   /* true for application/ld+json */
        const struct cp_tz *tz; /* DateTime values; NULL: UTC */
};

/* OffStreetParking from a facility and its view: name, address.addressLocality (city), location,
 * totalSpotNumber; when known: availableSpotNumber, occupiedSpotNumber (spot facilities: known spots
 * that are occupied; counters: total - free), occupancy (0..1, 3 decimals), each with observedAt =
 * the newest reading; status spacesAvailable | full | closed | unknown; occupancyModified;
 * refParkingSpot (the spot entities, when the facility has spot sensors). */
json_t *cp_ngsild_parking(const struct cp_reg_facility *f, const struct cp_facility_view *v,
                          const struct cp_ngsild_opts *o);
/* ParkingSpot from a spot sensor: name (spot_id), category ["offStreet"], status free | occupied
 * (with observedAt) when occupied is given and fresh, else unknown; observationDateTime of the last
 * reading; refParkingSite and location (the facility's point: a bay has no coordinates of its own in
 * the registry). occupied may be NULL (never heard). */
json_t *cp_ngsild_spot(const struct cp_reg_sensor *s, const struct cp_qval *occupied, bool fresh,
                       const struct cp_ngsild_opts *o);
/* ACMeasurement of one meter (id = its sensor_id; district may be NULL or empty): name, areaServed
 * (district), dateObserved, and when fresh totalActivePower (W, unitCode WTT), totalActiveEnergyImport
 * and totalActiveEnergyExport (kWh, unitCode KWH), each with observedAt. */
json_t *cp_ngsild_meter(const char *id, const char *district, const struct cp_energy_view *v,
                        const struct cp_ngsild_opts *o);
/* ACMeasurement of a district (the sum over its meters, cp_live_district()), id
 * "urn:ngsi-ld:ACMeasurement:district:<name>", otherwise as cp_ngsild_meter(). */
json_t *cp_ngsild_district(const char *name, const struct cp_energy_view *v, const struct cp_ngsild_opts *o);

/* For the Link header when the body has no @context:
 * Link: <URL>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json" */
const char *cp_ngsild_context_url(void);

/* "urn:ngsi-ld:<type>:<local id percent-encoded>", malloc'd (the caller frees); NULL when out of
 * memory. */
char *cp_ngsild_id(const char *type, const char *local);
/* Parses "urn:ngsi-ld:<Type>:<id>" ("urn:ngsi-ld:" in any case) into the type (a letter, then letters,
 * digits or '_') and the local id, percent-decoded (any %XX; other bytes as they are, but for
 * controls and spaces). Returns 0; -EINVAL when malformed (no type, empty id, a bad %-escape, a
 * decoded NUL, a raw control or space, an id that is not UTF-8); -ENAMETOOLONG when a part does not
 * fit its buffer (tlen, idlen count the NUL). Outputs are untouched on failure. */
int cp_ngsild_parse_id(const char *urn, char *type, size_t tlen, char *id, size_t idlen);

#endif
