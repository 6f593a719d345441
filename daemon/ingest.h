/* ingest.h - one MQTT message: route -> driver decode -> sanity checks -> journal -> live state.
 * A message that cannot be decoded becomes a reject (journal, counters, one warning per driver and
 * reason with repeats counted) and changes no state. Loop thread only. */
#ifndef CP_INGEST_H
#define CP_INGEST_H

#include <stdint.h>

#include "citypulse/cp_driver.h"
#include "journal.h"
#include "live.h"
#include "log.h"
#include "route.h"

#define CP_MAX_DRIVERS 32

struct cp_driver_stats {
        uint64_t messages;
        uint64_t readings;
        uint64_t nodata;
        uint64_t rejects[_CP_REASON_MAX];
        struct cp_complaint complaint[_CP_REASON_MAX];
};

struct cp_ingest {
        struct cp_router *router; /* borrowed; swapped on reload */
        struct cp_journal *journal;
        struct cp_live *live;
        int64_t max_payload;
        int64_t max_future_skew_ms;
        int64_t rejects_max_payload;

        uint64_t messages;
        uint64_t readings;          /* accepted and journaled */
        uint64_t live_changes;      /* readings that became the newest value */
        uint64_t stale_or_dup;      /* older than the live value, or a duplicate */
        uint64_t unregistered_over_cap;
        uint64_t no_route;
        uint64_t rejects;
        uint64_t journal_errors;
        struct cp_driver_stats drv[CP_MAX_DRIVERS];
        struct cp_complaint no_route_complaint;
        struct cp_complaint journal_complaint;
        bool burst_failed; /* a journal write of the current read burst failed */
        struct cp_complaint cap_complaint;

        /* Called for each reject after it is journaled (republish); may be NULL. */
        void (*on_reject)(struct cp_ingest *in, const struct cp_jreject *x, void *ud);
        void *ud;
};

void cp_ingest_init(struct cp_ingest *in, struct cp_router *router, struct cp_journal *journal, struct cp_live *live,
                    const struct cp_config *c);
/* Applies reloadable limits of a new config. */
void cp_ingest_configure(struct cp_ingest *in, const struct cp_config *c);
/* Logs "recovered" for reject reasons that have not recurred for quiet_ms (called from a timer). */
void cp_ingest_expire_complaints(struct cp_ingest *in, int64_t now_ms, int64_t quiet_ms);
/* Writes the journal records of the messages handled since the last call (end of a read burst).
 * Returns 0, or a negative errno when any of them could not be written: the caller must then not let
 * the burst's acknowledgements leave (cp_mqtt_in_drop), so the broker redelivers those messages. */
int cp_ingest_flush(struct cp_ingest *in, int64_t now_ms);
void cp_ingest_message(struct cp_ingest *in, const char *topic, const void *payload, size_t len, int64_t rx_ms);

#endif
