/* lorawan_parking.h - the output of LoRaWAN parking sensors' payload decoders, read the same way
 * whichever network server delivers it (ttn_v3: uplink_message.decoded_payload, chirpstack_v4:
 * object). Internal to drivers/: not part of the driver interface in include/. Pure: no logging, no
 * allocation beyond jansson's, no globals. */
#ifndef CP_LORAWAN_PARKING_H
#define CP_LORAWAN_PARKING_H

#include "citypulse/cp_json.h"

#include <stdbool.h>
#include <stdint.h>

/* Where a network server puts the decoder output, and how. */
struct cp_lorawan_parking_src {
        const char *parent; /* path of the object that holds it, NULL for the payload root */
        const char *key;    /* its member there: "decoded_payload", "object" */
        const char *path;   /* parent.key, the output's path in texts */
        bool numeric_flags; /* occupied and alarmPark may also be the numbers 0 and 1 (0.0, 1.0):
                             * ChirpStack passes the output through a protobuf Struct, whose numbers are
                             * all doubles */
};

/* The members cp_lorawan_parking_decode() reads, as a cp_json_load_pruned() table: a driver puts it
 * under the member that holds the decoder output. */
extern const struct cp_json_keep cp_lorawan_parking_keep[];

/* Reads the decoder output, member src->key of `parent`, of device `id` (one spot, no channels) into
 * readings stamped ts (observation) and rx (receive time):
 *   occupancy -> occupied (0/1), from any of
 *     occupied   boolean (Nwave NPS405/NPS310, Bosch TPS110; null means unknown and gives no reading)
 *     status     "occupied" / "free", state "OCCUPIED" / "FREE" (other decoders; ASCII case ignored)
 *     alarmPark  boolean, vehicle detected (Dingtek DO201)
 *   which must agree when several are present (INCONSISTENT);
 *   battery_voltage (Nwave heartbeat) or volt (Dingtek), V -> battery_v, 0..20 (both must agree);
 *   temperature, degC -> temperature_c, -90..125; humidity, % -> humidity_pct, 0..100.
 * Every other member is ignored. Returns 0 with the readings added; -ENODATA when there is no output
 * (absent or null: no decoder configured, or it failed) or it holds none of these fields; or a
 * negative errno with the reason in b (an output that is not an object is WRONG_TYPE). Everything is
 * read and checked before the first reading is added, so a bad field never leaves half a message. */
int cp_lorawan_parking_decode(struct cp_batch *b, const struct cp_lorawan_parking_src *src,
                              const json_t *parent, const char *id, int64_t ts, int64_t rx);

#endif
