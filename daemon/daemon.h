/* daemon.h - struct cp_daemon, the one context every module hangs off (no process-wide globals but the
 * log threshold), and the start-up and shutdown order in main.c. */
#ifndef CP_DAEMON_H
#define CP_DAEMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "citypulse/cp_tz.h"
#include "config.h"
#include "http.h"
#include "ingest.h"
#include "journal.h"
#include "live.h"
#include "mqtt_in.h"
#include "ods_push.h"
#include "registry.h"
#include "republish.h"
#include "route.h"
#include "sse.h"
#include "store_rrd.h"
#include "storeq.h"

struct cp_http_cache {
        struct MHD_Response *resp; /* shared by every request until the data changes */
        struct MHD_Response *resp_gz; /* the same, gzip-encoded (NULL when too small to pay) */
        char etag[24];
        char etag_gz[28];
        uint64_t changes;   /* live->changes when rendered */
        int64_t valid_until_ms; /* staleness alone changes the body then */
        int64_t rendered_ms;
        uint64_t reg_gen;
};

enum cp_route_id {
        CP_RT_PARKINGS,
        CP_RT_PARKING,
        CP_RT_SPOTS,
        CP_RT_SENSOR,
        CP_RT_HEALTHZ,
        CP_RT_READYZ,
        CP_RT_METRICS,
        CP_RT_ENERGY,
        CP_RT_STREAM,
        CP_RT_GRAPH,
        CP_RT_DASHBOARD,
        CP_RT_EXPLORE,
        CP_RT_EXPORT,
        CP_RT_NGSILD,
        CP_RT_HISTORY,
        CP_RT_ADMIN,
        CP_RT_OTHER,
        _CP_RT_MAX,
};

struct cp_daemon {
        uv_loop_t loop;
        const char *config_path;
        struct cp_config *cfg;
        struct cp_registry *reg;
        uint64_t reg_gen;
        struct cp_router *router;
        struct cp_tz *tz;
        struct cp_live live;
        struct cp_journal journal;
        struct cp_ingest ingest;
        struct cp_storeq storeq;
        struct cp_mqtt_in mqtt;
        struct cp_http http;
        struct cp_sse sse;
        struct cp_rrd rrd;
        bool rrd_running;
        uv_timer_t rrd_timer; /* samples live state into the series every rrd.step */
        struct cp_graph_job *graph_jobs; /* graph requests waiting for the rrd thread */
        struct cp_graph_cache *graph_cache;
        size_t n_graph_cache;

        uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
        uv_timer_t rotate_timer;   /* hands journal segments to the store thread */
        uv_timer_t stats_timer;    /* one info line a minute, STATUS= */
        uv_timer_t watchdog_timer; /* WATCHDOG=1 at half of WatchdogSec */

        /* Bucket rows for MQTT, from the store thread (main.c). */
        uv_mutex_t bucket_mu;
        bool bucket_mu_inited;
        struct bucket_msg *bucket_head, *bucket_tail;
        _Atomic int64_t bucket_msgs_pending;
        _Atomic uint64_t bucket_msgs_dropped;
        uint64_t bucket_msgs_published;
        char publish_prefix[256]; /* a restart key: fixed for the run */

        struct cp_republish republish; /* retained live records over MQTT */
        struct cp_push push;           /* the portal push, when ods_push.url is set */
        bool push_running;
        struct sqlite3 *store_db;      /* the store's connection: used only on the store thread after start */
        char *admin_token; /* from http.admin_token_file; NULL: admin endpoints off */
        struct cp_xjob *xjobs; /* Explore queries in flight (explore.c) */
        unsigned n_xjobs;

        struct cp_http_cache parkings_cache;
        uint64_t http_status[_CP_RT_MAX][6]; /* by route and status class 1xx..5xx (index 0 unused) */
        uint64_t reloads, reload_failures;
        int64_t started_ms;
        bool stopping;
        bool loop_inited;
        uint64_t last_summary_messages;
        int64_t reject_window_ms;   /* republished rejects are capped per second */
        unsigned rejects_in_window;
};

/* http_api.c: the routes. */
enum MHD_Result cp_api_handle(struct cp_http *h, struct MHD_Connection *conn, struct cp_http_req *req, void *ud);
void cp_api_done(struct cp_http *h, struct cp_http_req *req, void *ud);
/* Shared by the routes in other files. */
bool cp_api_etag_matches(struct MHD_Connection *conn, const char *etag);
void cp_api_common_headers(struct MHD_Response *r, const char *etag, int64_t ttl_s, bool api, const char *ctype);
enum MHD_Result cp_api_not_modified(struct MHD_Connection *conn, struct cp_http_req *req, const char *etag,
                                    int64_t ttl_s, bool api);
/* Sends body (a malloc'd buffer it takes) with an ETag of its bytes; 304 when If-None-Match matches. */
enum MHD_Result cp_api_send_body_take(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                      unsigned status, char *body, size_t len, const char *ctype, bool api,
                                      int64_t ttl_ms);
void cp_api_cache_drop(struct cp_daemon *d);
/* Resumes every suspended graph request (MHD_stop_daemon needs none suspended) and frees the cache. */
void cp_api_graphs_stop(struct cp_daemon *d);

/* sdnotify.c: sd_notify(3) without libsystemd; a no-op when $NOTIFY_SOCKET is unset. */
int cp_sd_notify(const char *state);
/* Watchdog interval in µs from $WATCHDOG_USEC (for this pid), or 0. */
uint64_t cp_sd_watchdog_usec(void);

#endif
