/* mqtt_in.h - the MQTT session, driven by the libuv loop: uv_poll_t on mosquitto_socket() (writable
 * interest only while mosquitto_want_write()), mosquitto_loop_misc() from a 1 s timer, non-blocking
 * connects with capped exponential back-off and jitter. The broker keeps our subscriptions and queues
 * QoS 1 messages while we are away (mqtt.clean_session no).
 *
 * MQTT 3.1.1 by default. With mqtt.shared_group set, MQTT v5: every route is subscribed as
 * $share/<group>/<filter>, so several daemons on one broker split a stream message by message. A v5
 * session outlives the connection only with a Session Expiry Interval on CONNECT, and libmosquitto
 * 2.0 takes CONNECT properties only in the blocking mosquitto_connect_bind_v5(): that call runs on
 * the libuv threadpool (DNS, TCP connect; the CONNECT packet is only queued), never on the loop.
 * Loop thread only, apart from that one call. */
#ifndef CP_MQTT_IN_H
#define CP_MQTT_IN_H

#include <mosquitto.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "log.h"

enum cp_mqtt_state {
        CP_MQTT_DISCONNECTED,
        CP_MQTT_CONNECTING,
        CP_MQTT_CONNECTED,
        CP_MQTT_STOPPED,
};

struct cp_mqtt_in;
typedef void (*cp_mqtt_message_fn)(struct cp_mqtt_in *m, const struct mosquitto_message *msg, void *ud);

struct cp_mqtt_in {
        uv_loop_t *loop;
        struct mosquitto *mosq;
        uv_poll_t poll;
        int poll_fd; /* -1: no poll handle */
        int poll_events;
        bool poll_closing;
        uv_timer_t misc_timer;
        uv_timer_t reconnect_timer;
        uv_idle_t drain_idle; /* more to read after a capped burst: once per loop iteration */
        enum cp_mqtt_state state;
        bool ever_connected;
        bool stopping;
        int64_t backoff_ms;
        char *host;
        int port;
        int keepalive_s;
        int qos;
        int64_t reconnect_max_ms;
        char *status_topic;
        char *shared_group; /* NULL: plain subscriptions, MQTT 3.1.1 */
        bool v5;
        mosquitto_property *connect_props; /* v5 CONNECT properties (Session Expiry Interval) */
        uv_work_t connect_req;             /* v5: mosquitto_connect_bind_v5() on the threadpool */
        bool connect_busy;                 /* connect_req queued or running: nothing may touch mosq */
        int connect_rc, connect_errno;     /* written by the threadpool, read after it completed */
        char **want;   /* filters the config asks for (with the $share/<group>/ prefix) */
        size_t n_want;
        char **subscribed; /* filters the broker holds for our session, as far as we know */
        int *subscribed_mid; /* the SUBSCRIBE message id of each, 0 once acknowledged or unknown */
        size_t n_subscribed;
        uint64_t connects, reconnects, disconnects, messages;
        int64_t connected_since_ms;
        int last_err;   /* MOSQ_ERR_* of the last failure */
        int last_errno; /* errno when last_err is MOSQ_ERR_ERRNO */
        bool refused;   /* the broker refused this connect attempt in its CONNACK */
        struct cp_complaint conn_complaint;
        struct cp_complaint drop_complaint; /* connections dropped because the journal failed */
        uint64_t drops;
        cp_mqtt_message_fn on_message;
        void (*on_state)(struct cp_mqtt_in *m, void *ud);
        /* After each read burst, before anything is written to the broker (PUBACKs included). */
        void (*on_burst_end)(struct cp_mqtt_in *m, void *ud);
        void (*on_closed)(struct cp_mqtt_in *m, void *ud);
        void *ud;
        unsigned pending_closes;
};

/* Sets up the client from the config (credentials, TLS, will) and starts connecting. Errors that a
 * retry cannot fix (a missing CA file, unreadable password file) are returned with a message. */
int cp_mqtt_in_start(struct cp_mqtt_in *m, uv_loop_t *loop, const struct cp_config *c, char *err, size_t errlen);
/* Applies the routes of a new config: subscribes new filters, unsubscribes removed ones (in the same
 * $share/<group>/ form). A changed mqtt.shared_group needs a restart: warns and keeps the running one. */
int cp_mqtt_in_set_routes(struct cp_mqtt_in *m, const struct cp_config *c);
/* Stops reading, publishes the offline status, disconnects, and closes the handles; on_closed runs when
 * everything is closed. */
void cp_mqtt_in_stop(struct cp_mqtt_in *m);
/* Publishes (QoS 1) through the same session; returns a MOSQ_ERR_* code. */
/* From on_burst_end, when the burst could not be journaled: closes the connection without writing
 * anything queued (the burst's PUBACKs included), so the broker keeps and redelivers those messages, and
 * reconnects with the usual back-off. */
void cp_mqtt_in_drop(struct cp_mqtt_in *m);
int cp_mqtt_in_publish(struct cp_mqtt_in *m, const char *topic, const void *payload, size_t len, bool retain);

const char *cp_mqtt_state_name(enum cp_mqtt_state s);

#endif
