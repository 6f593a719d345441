/* mqtt_in.c - see mqtt_in.h. */
#include "mqtt_in.h"

#include <errno.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "citypulse/cp_common.h"
#include "log.h"

#define READ_BURST     1024 /* packets per readable event before yielding to other handles */
#define BACKOFF_MIN_MS 250
#define INFLIGHT_MAX   100 /* QoS 1 messages we keep in flight; with v5 also our Receive Maximum */
/* MQTT v5 Session Expiry Interval for mqtt.clean_session no: 0xFFFFFFFF means "never expires", which is
 * what clean_session=false means in 3.1.1, so both protocols keep the session alike. */
#define SESSION_EXPIRY_NEVER UINT32_MAX

struct poll_ctx {
        uv_poll_t h;
        struct cp_mqtt_in *m;
};

static struct poll_ctx *pollctx(struct cp_mqtt_in *m);
static void update_poll(struct cp_mqtt_in *m);
static void schedule_reconnect(struct cp_mqtt_in *m);
static void maybe_closed(struct cp_mqtt_in *m);
static void on_drain(uv_idle_t *t);

const char *cp_mqtt_state_name(enum cp_mqtt_state s)
{
        switch (s) {
        case CP_MQTT_CONNECTING:
                return "connecting";
        case CP_MQTT_CONNECTED:
                return "connected";
        case CP_MQTT_STOPPED:
                return "stopped";
        case CP_MQTT_DISCONNECTED:
                break;
        }
        return "disconnected";
}

static void set_state(struct cp_mqtt_in *m, enum cp_mqtt_state s)
{
        if (m->state == s)
                return;
        m->state = s;
        if (m->on_state)
                m->on_state(m, m->ud);
}

/* The poll handle lives in its own allocation: closing it is asynchronous, and a new socket may need a
 * new handle before the old one's close callback ran. */
static struct poll_ctx *pollctx(struct cp_mqtt_in *m)
{
        return m->poll.data;
}

static void on_poll_closed(uv_handle_t *h)
{
        struct poll_ctx *pc = h->data;
        struct cp_mqtt_in *m = pc->m;

        free(pc);
        m->pending_closes--;
        maybe_closed(m);
}

static void drop_poll(struct cp_mqtt_in *m)
{
        struct poll_ctx *pc = pollctx(m);

        if (!pc)
                return;
        uv_poll_stop(&pc->h);
        uv_close((uv_handle_t *)&pc->h, on_poll_closed);
        m->poll.data = NULL;
        m->poll_fd = -1;
        m->poll_events = 0;
}

static int64_t now_ms(void);

static void connection_lost(struct cp_mqtt_in *m)
{
        drop_poll(m);
        if (m->stopping)
                return;
        bool had_session = m->connected_since_ms != 0;

        m->connected_since_ms = 0;
        if (m->refused) /* libmosquitto 2.0 returns a refused v5 CONNACK as a protocol error */
                m->last_err = MOSQ_ERR_CONN_REFUSED;
        if (!had_session && !m->drop_complaint.active)
                /* a failed attempt; a lost session was already logged by on_disconnect, a dropped one by
                 * cp_mqtt_in_drop() */
                cp_complain(&m->conn_complaint, now_ms(), "mqtt", "cannot reach the broker, retrying host=%s port=%d err='%s'",
                            m->host, m->port,
                            m->last_err == MOSQ_ERR_ERRNO ? strerror(m->last_errno) : mosquitto_strerror(m->last_err));
        set_state(m, CP_MQTT_DISCONNECTED);
        schedule_reconnect(m);
}

static void read_burst_inner(struct cp_mqtt_in *m);

void cp_mqtt_in_drop(struct cp_mqtt_in *m)
{
        int fd = m->mosq ? mosquitto_socket(m->mosq) : -1;

        if (fd < 0 || m->stopping)
                return;
        /* Nothing queued may leave, not even a DISCONNECT: the PUBACKs libmosquitto queued for this burst
         * die with the socket, and the broker redelivers those messages to the persistent session. */
        (void)shutdown(fd, SHUT_RDWR);
        m->drops++;
        m->last_err = MOSQ_ERR_CONN_LOST;
        m->last_errno = 0;
        cp_complain(&m->drop_complaint, now_ms(), "mqtt",
                    "dropping the broker connection: messages that could not be journaled stay with the broker host=%s port=%d",
                    m->host, m->port);
        set_state(m, CP_MQTT_DISCONNECTED);
        m->connected_since_ms = 0;
        drop_poll(m);
        schedule_reconnect(m);
}

/* Reads what is waiting, then lets the owner make it durable (on_burst_end) before the loop writes
 * the PUBACKs of those messages: libmosquitto only queued them (see mosquitto_threaded_set). */
static void read_burst(struct cp_mqtt_in *m)
{
        read_burst_inner(m);
        if (m->on_burst_end)
                m->on_burst_end(m, m->ud);
}

static void read_burst_inner(struct cp_mqtt_in *m)
{
        for (int i = 0; i < READ_BURST; i++) {
                int rc;

                errno = 0;
                rc = mosquitto_loop_read(m->mosq, 1);
                if (m->poll.data == NULL)
                        return; /* dropped from a callback */
                if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) < 0) {
                        m->last_errno = errno;
                        m->last_err = rc;
                        if (mosquitto_socket(m->mosq) >= 0)
                                (void)mosquitto_disconnect(m->mosq);
                        connection_lost(m);
                        return;
                }
                /* mosquitto_loop_read() handles one packet a call and reports "no more data" as success
                 * with errno EAGAIN: read until then. */
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                        return;
                if (m->stopping)
                        return;
        }
        /* More may be waiting, possibly inside TLS buffers that poll cannot see: come back on the next
         * loop iteration, after the other handles had their turn. (A 0 ms timer re-armed from its own
         * callback would run again within the same timer phase with libuv 1.44, starving HTTP.) */
        uv_idle_start(&m->drain_idle, on_drain);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
        struct poll_ctx *pc = h->data;
        struct cp_mqtt_in *m = pc->m;

        if (status < 0) {
                cp_log(CP_LOG_DEBUG, "mqtt", "socket error err=%s", uv_err_name(status));
                events = UV_READABLE | UV_WRITABLE; /* let libmosquitto find the error */
        }
        if ((events & UV_WRITABLE) && mosquitto_socket(m->mosq) >= 0) {
                int rc = mosquitto_loop_write(m->mosq, 1);
                if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(m->mosq) < 0) {
                        m->last_errno = errno;
                        m->last_err = rc;
                        connection_lost(m);
                        return;
                }
        }
        if ((events & UV_READABLE) && !m->stopping && m->poll.data == pc)
                read_burst(m);
        if (m->poll.data)
                update_poll(m);
}

static void on_drain(uv_idle_t *t)
{
        struct cp_mqtt_in *m = cp_container_of(t, struct cp_mqtt_in, drain_idle);

        uv_idle_stop(&m->drain_idle);
        if (m->poll.data && !m->stopping) {
                read_burst(m);
                if (m->poll.data)
                        update_poll(m);
        }
}

/* Watches the current socket: readable always (unless stopping), writable only while libmosquitto has
 * something queued, so an idle connection costs no wake-ups. */
static void update_poll(struct cp_mqtt_in *m)
{
        int fd;
        int events;
        struct poll_ctx *pc = pollctx(m);

        if (m->connect_busy) /* the threadpool owns m->mosq until connect_done() */
                return;
        fd = mosquitto_socket(m->mosq);
        if (fd < 0) {
                drop_poll(m);
                return;
        }
        if (pc && fd != m->poll_fd)
                drop_poll(m);
        if (!m->poll.data) {
                pc = calloc(1, sizeof(*pc));
                if (!pc) {
                        cp_log(CP_LOG_ERR, "mqtt", "out of memory for the poll handle");
                        return;
                }
                pc->m = m;
                pc->h.data = pc;
                if (uv_poll_init_socket(m->loop, &pc->h, fd) < 0) {
                        free(pc);
                        cp_log(CP_LOG_ERR, "mqtt", "cannot watch the broker socket fd=%d", fd);
                        return;
                }
                m->pending_closes++;
                m->poll.data = pc;
                m->poll_fd = fd;
                m->poll_events = 0;
        }
        events = (m->stopping ? 0 : UV_READABLE) | (mosquitto_want_write(m->mosq) ? UV_WRITABLE : 0);
        if (events != m->poll_events) {
                if (events)
                        uv_poll_start(&pc->h, events, on_poll);
                else
                        uv_poll_stop(&pc->h);
                m->poll_events = events;
        }
}

static void on_misc(uv_timer_t *t)
{
        struct cp_mqtt_in *m = cp_container_of(t, struct cp_mqtt_in, misc_timer);

        if (m->connect_busy || mosquitto_socket(m->mosq) < 0)
                return;
        (void)mosquitto_loop_misc(m->mosq);
        if (mosquitto_socket(m->mosq) < 0) {
                /* Keepalive expired: libmosquitto closed the socket. */
                connection_lost(m);
                return;
        }
        update_poll(m);
}

static int64_t jitter(int64_t ms)
{
        /* "Equal jitter": half fixed, half random, so a fleet of daemons does not reconnect in step. */
        return ms / 2 + (int64_t)((double)(ms / 2) * ((double)random() / (double)RAND_MAX));
}

/* The outcome of mosquitto_connect_async() / _reconnect_async() / _connect_bind_v5(): on success the
 * CONNECT packet is queued and the socket connected or connecting; update_poll() takes it from there. */
static void connect_result(struct cp_mqtt_in *m, int rc, int err)
{
        if (rc != MOSQ_ERR_SUCCESS) {
                m->last_errno = err;
                m->last_err = rc;
                cp_log(CP_LOG_DEBUG, "mqtt", "connect attempt failed host=%s port=%d err='%s'", m->host,
                       m->port, rc == MOSQ_ERR_ERRNO ? strerror(err) : mosquitto_strerror(rc));
                connection_lost(m);
                return;
        }
        update_poll(m);
}

/* Threadpool. libmosquitto 2.0 sends CONNECT properties only from this blocking call; m->mosq is
 * "threaded", so it resolves, connects and queues CONNECT without writing it, and leaves the socket
 * non-blocking. Nothing on the loop touches m->mosq meanwhile (connect_busy). */
static void connect_work(uv_work_t *req)
{
        struct cp_mqtt_in *m = cp_container_of(req, struct cp_mqtt_in, connect_req);

        errno = 0;
        m->connect_rc =
            mosquitto_connect_bind_v5(m->mosq, m->host, m->port, m->keepalive_s, NULL, m->connect_props);
        m->connect_errno = errno;
}

static void connect_done(uv_work_t *req, int status)
{
        struct cp_mqtt_in *m = cp_container_of(req, struct cp_mqtt_in, connect_req);

        m->connect_busy = false;
        m->pending_closes--;
        if (m->stopping) {
                maybe_closed(m); /* mosquitto_destroy() closes a socket the attempt may have opened */
                return;
        }
        if (status < 0) { /* only uv_cancel() from cp_mqtt_in_stop() cancels, and that sets stopping */
                connect_result(m, MOSQ_ERR_UNKNOWN, 0);
                return;
        }
        connect_result(m, m->connect_rc, m->connect_errno);
}

static void try_connect(struct cp_mqtt_in *m)
{
        int rc;

        set_state(m, CP_MQTT_CONNECTING);
        m->refused = false;
        if (m->v5) {
                int r;

                m->connects++;
                m->connect_busy = true;
                m->pending_closes++;
                r = uv_queue_work(m->loop, &m->connect_req, connect_work, connect_done);
                if (r < 0) {
                        m->connect_busy = false;
                        m->pending_closes--;
                        connect_result(m, MOSQ_ERR_ERRNO, -r);
                }
                return;
        }
        if (!m->ever_connected && m->connects == 0)
                rc = mosquitto_connect_async(m->mosq, m->host, m->port, m->keepalive_s);
        else
                rc = mosquitto_reconnect_async(m->mosq);
        m->connects++;
        connect_result(m, rc, errno);
}

static void on_reconnect_timer(uv_timer_t *t)
{
        struct cp_mqtt_in *m = cp_container_of(t, struct cp_mqtt_in, reconnect_timer);

        if (!m->stopping)
                try_connect(m);
}

static void schedule_reconnect(struct cp_mqtt_in *m)
{
        int64_t d;

        m->backoff_ms = m->backoff_ms ? CP_MIN(m->backoff_ms * 2, m->reconnect_max_ms) : BACKOFF_MIN_MS;
        d = jitter(m->backoff_ms);
        cp_log(CP_LOG_DEBUG, "mqtt", "reconnecting later delay_ms=%lld", (long long)d);
        uv_timer_start(&m->reconnect_timer, on_reconnect_timer, (uint64_t)d, 0);
}

static char *sub_filter(const struct cp_mqtt_in *m, const char *filter)
{
        char *s;

        if (!m->shared_group)
                return strdup(filter);
        if (asprintf(&s, "$share/%s/%s", m->shared_group, filter) < 0)
                return NULL;
        return s;
}

static bool in_list(char **v, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

static void free_list(char ***v, size_t *n)
{
        for (size_t i = 0; i < *n; i++)
                free((*v)[i]);
        free(*v);
        *v = NULL;
        *n = 0;
}

static void free_subscribed(struct cp_mqtt_in *m)
{
        free_list(&m->subscribed, &m->n_subscribed);
        free(m->subscribed_mid);
        m->subscribed_mid = NULL;
}

/* A SUBSCRIBE the connection lost before its SUBACK may never have reached the broker, and
 * libmosquitto does not resend it: forget it, so that sync_subscriptions() sends it again. */
static void forget_unacknowledged(struct cp_mqtt_in *m)
{
        size_t n = 0;

        for (size_t i = 0; i < m->n_subscribed; i++) {
                if (m->subscribed_mid[i] != 0) {
                        free(m->subscribed[i]);
                        continue;
                }
                m->subscribed[n] = m->subscribed[i];
                m->subscribed_mid[n++] = 0;
        }
        m->n_subscribed = n;
}

static int subscribed_index(const struct cp_mqtt_in *m, const char *s)
{
        for (size_t i = 0; i < m->n_subscribed; i++)
                if (strcmp(m->subscribed[i], s) == 0)
                        return (int)i;
        return -1;
}

/* Makes the broker's subscriptions match m->want: subscribe what is missing, unsubscribe the rest.
 * Shared subscriptions ask for no retained messages at subscribe time: MQTT v5 (4.8.2) says a broker
 * does not send them to a shared subscription, but mosquitto 2.0 sends them to every member, which
 * would store each retained reading once per instance. */
static void sync_subscriptions(struct cp_mqtt_in *m)
{
        char **keep = NULL;
        int *keep_mid = NULL;
        size_t n_keep = 0;
        int options = m->shared_group ? MQTT_SUB_OPT_SEND_RETAIN_NEVER : 0;

        if (m->state != CP_MQTT_CONNECTED)
                return;
        for (size_t i = 0; i < m->n_subscribed; i++) {
                if (in_list(m->want, m->n_want, m->subscribed[i]))
                        continue;
                int rc = mosquitto_unsubscribe(m->mosq, NULL, m->subscribed[i]);
                cp_log(rc == MOSQ_ERR_SUCCESS ? CP_LOG_NOTICE : CP_LOG_WARNING, "mqtt",
                       "unsubscribing filter='%s' err='%s'", m->subscribed[i], mosquitto_strerror(rc));
        }
        keep = calloc(m->n_want ? m->n_want : 1, sizeof(*keep));
        keep_mid = calloc(m->n_want ? m->n_want : 1, sizeof(*keep_mid));
        if (!keep || !keep_mid) {
                free(keep);
                free(keep_mid);
                return;
        }
        for (size_t i = 0; i < m->n_want; i++) {
                int k = subscribed_index(m, m->want[i]), mid = k < 0 ? 0 : m->subscribed_mid[k];

                if (k < 0) {
                        int rc = mosquitto_subscribe_v5(m->mosq, &mid, m->want[i], m->qos, options, NULL);
                        if (rc != MOSQ_ERR_SUCCESS) {
                                cp_log(CP_LOG_ERR, "mqtt", "subscribe failed filter='%s' err='%s'", m->want[i],
                                       mosquitto_strerror(rc));
                                continue;
                        }
                        cp_log(CP_LOG_INFO, "mqtt", "subscribing filter='%s' qos=%d", m->want[i], m->qos);
                }
                keep[n_keep] = strdup(m->want[i]);
                keep_mid[n_keep] = mid;
                if (keep[n_keep])
                        n_keep++;
        }
        free_subscribed(m);
        m->subscribed = keep;
        m->subscribed_mid = keep_mid;
        m->n_subscribed = n_keep;
        update_poll(m);
}

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What to check for an MQTT v5 reason code (CONNACK or DISCONNECT from the broker), or "". */
static const char *reason_hint(int rc)
{
        switch (rc) {
        case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION:
                return "the broker does not speak MQTT v5, which mqtt.shared_group needs";
        case MQTT_RC_CLIENTID_NOT_VALID:
                return "check mqtt.client_id";
        case MQTT_RC_BAD_USERNAME_OR_PASSWORD:
        case MQTT_RC_NOT_AUTHORIZED:
        case MQTT_RC_BAD_AUTHENTICATION_METHOD:
                return "check mqtt.username, mqtt.password_file and the broker's ACL";
        case MQTT_RC_SESSION_TAKEN_OVER:
                return "another client connected with the same mqtt.client_id: each instance needs its own";
        case MQTT_RC_USE_ANOTHER_SERVER:
        case MQTT_RC_SERVER_MOVED:
                return "the broker redirects clients elsewhere: check mqtt.host";
        case MQTT_RC_SHARED_SUBS_NOT_SUPPORTED:
                return "the broker does not support shared subscriptions: unset mqtt.shared_group";
        }
        return "";
}

/* Logs a v5 reason code from the broker with its name, the broker's Reason String if it sent one, and
 * what to check; filter: the subscription concerned, or NULL. */
static void log_reason(int level, const struct cp_mqtt_in *m, const char *what, const char *filter, int rc,
                       const mosquitto_property *props)
{
        char *why = NULL;
        char f[300] = "", w[300] = "", h[120] = "";
        const char *hint = reason_hint(rc);

        if (props)
                (void)mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &why, false);
        if (filter)
                (void)snprintf(f, sizeof(f), " filter='%s'", filter);
        if (why)
                (void)snprintf(w, sizeof(w), " reason='%s'", why);
        if (*hint)
                (void)snprintf(h, sizeof(h), " hint='%s'", hint);
        cp_log(level, "mqtt", "%s host=%s port=%d%s err='%s' reason_code=0x%02x%s%s", what, m->host, m->port,
               f, mosquitto_reason_string(rc), (unsigned)rc, w, h);
        free(why);
}

/* MQTT v5 CONNACK properties that change what this session can count on. */
static void check_connack(const struct cp_mqtt_in *m, const mosquitto_property *props)
{
        uint8_t b;
        uint32_t expiry;

        if (mosquitto_property_read_byte(props, MQTT_PROP_SHARED_SUB_AVAILABLE, &b, false) && !b &&
            m->shared_group)
                cp_log(CP_LOG_ERR, "mqtt",
                       "the broker has no shared subscriptions, mqtt.shared_group cannot work host=%s",
                       m->host);
        if (mosquitto_property_read_byte(props, MQTT_PROP_MAXIMUM_QOS, &b, false) && b < m->qos)
                cp_log(CP_LOG_WARNING, "mqtt", "the broker grants at most QoS %u, below mqtt.qos=%d host=%s",
                       (unsigned)b, m->qos, m->host);
        if (m->connect_props &&
            mosquitto_property_read_int32(props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, &expiry, false) &&
            expiry != SESSION_EXPIRY_NEVER)
                cp_log(CP_LOG_WARNING, "mqtt",
                       "the broker ends our session %" PRIu32
                       " s after a disconnect, messages sent later are lost host=%s",
                       expiry, m->host);
}

static void on_connect(struct mosquitto *mosq, void *ud, int rc, int flags, const mosquitto_property *props)
{
        struct cp_mqtt_in *m = ud;
        bool session_present = flags & 1;

        (void)mosq;
        if (rc != 0) {
                m->last_err = MOSQ_ERR_CONN_REFUSED;
                m->refused = true;
                if (m->v5)
                        log_reason(CP_LOG_ERR, m, "broker refused the connection", NULL, rc, props);
                else
                        cp_log(CP_LOG_ERR, "mqtt", "broker refused the connection host=%s port=%d err='%s'", m->host,
                               m->port, mosquitto_connack_string(rc));
                return; /* libmosquitto closes the socket; on_poll sees it and schedules a retry */
        }
        if (m->v5)
                check_connack(m, props);
        m->backoff_ms = 0;
        m->connected_since_ms = now_ms();
        if (m->ever_connected)
                m->reconnects++;
        if (!session_present) {
                if (m->ever_connected)
                        cp_log(CP_LOG_WARNING, "mqtt",
                               "persistent session lost, messages published while disconnected may be missing host=%s port=%d",
                               m->host, m->port);
                /* The broker has no subscriptions for us: make them all again. */
                free_subscribed(m);
        } else {
                forget_unacknowledged(m);
        }
        /* While connections are dropped for journal failures, reconnecting is routine: debug only. */
        if (m->v5)
                cp_log(m->drop_complaint.active ? CP_LOG_DEBUG : CP_LOG_NOTICE, "mqtt",
                       "connected host=%s port=%d session_present=%d protocol=v5 shared_group='%s'", m->host,
                       m->port, session_present, m->shared_group ? m->shared_group : "");
        else
                cp_log(m->drop_complaint.active ? CP_LOG_DEBUG : CP_LOG_NOTICE, "mqtt",
                       "connected host=%s port=%d session_present=%d", m->host, m->port, session_present);
        cp_complain_release(&m->conn_complaint, "mqtt", "broker connection");
        m->ever_connected = true;
        set_state(m, CP_MQTT_CONNECTED);
        (void)mosquitto_publish(m->mosq, NULL, m->status_topic, 6, "online", 1, true);
        sync_subscriptions(m);
}

/* rc is a MOSQ_ERR_* code for a local cause (a lost socket, a keepalive timeout), or with MQTT v5 the
 * reason code of the broker's DISCONNECT (0x80 and above). */
static void on_disconnect(struct mosquitto *mosq, void *ud, int rc, const mosquitto_property *props)
{
        struct cp_mqtt_in *m = ud;

        (void)mosq;
        if (m->state == CP_MQTT_CONNECTED) {
                m->disconnects++;
                if (!m->stopping && m->v5 && rc >= MQTT_RC_UNSPECIFIED)
                        log_reason(CP_LOG_WARNING, m, "broker connection lost, reconnecting", NULL, rc,
                                   props);
                else if (!m->stopping)
                        cp_log(CP_LOG_WARNING, "mqtt",
                               "broker connection lost, reconnecting host=%s port=%d err='%s'", m->host,
                               m->port, mosquitto_strerror(rc));
        }
        if (m->state != CP_MQTT_STOPPED)
                set_state(m, CP_MQTT_DISCONNECTED);
}

/* One filter per SUBSCRIBE, so granted[0] is its QoS, or a failure code (0x80; with v5 any code from
 * 0x80 on, e.g. 0x87 not authorized, 0x9E no shared subscriptions). */
static void on_subscribe(struct mosquitto *mosq, void *ud, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
        struct cp_mqtt_in *m = ud;
        const char *filter = "?";

        (void)mosq;
        for (size_t i = 0; i < m->n_subscribed; i++) {
                if (m->subscribed_mid[i] == mid) {
                        m->subscribed_mid[i] = 0;
                        filter = m->subscribed[i];
                        break;
                }
        }
        for (int i = 0; i < n; i++) {
                if (granted[i] < 0x80) {
                        if (granted[i] < m->qos)
                                cp_log(CP_LOG_WARNING, "mqtt",
                                       "broker granted a lower QoS filter='%s' qos=%d", filter, granted[i]);
                } else if (m->v5) {
                        log_reason(CP_LOG_ERR, m, "broker refused a subscription", filter, granted[i], props);
                } else {
                        cp_log(CP_LOG_ERR, "mqtt",
                               "broker refused a subscription (check its ACL) host=%s filter='%s'", m->host,
                               filter);
                }
        }
}

static void on_message(struct mosquitto *mosq, void *ud, const struct mosquitto_message *msg)
{
        struct cp_mqtt_in *m = ud;

        (void)mosq;
        m->messages++;
        if (m->on_message)
                m->on_message(m, msg, m->ud);
}

static int want_from_config(struct cp_mqtt_in *m, const struct cp_config *c, char ***ret, size_t *ret_n)
{
        char **v = calloc(c->n_routes ? c->n_routes : 1, sizeof(*v));
        size_t n = 0;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_routes; i++) {
                char *f = sub_filter(m, c->routes[i].filter);
                if (!f) {
                        free_list(&v, &n);
                        return -ENOMEM;
                }
                if (in_list(v, n, f))
                        free(f);
                else
                        v[n++] = f;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Reads the password file: the first line, without its newline. */
static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
        if (path && access(path, R_OK) < 0) {
                snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
                return -errno;
        }
        return 0;
}

static int start(struct cp_mqtt_in *m, uv_loop_t *loop, const struct cp_config *c, char *err, size_t errlen);

int cp_mqtt_in_start(struct cp_mqtt_in *m, uv_loop_t *loop, const struct cp_config *c, char *err, size_t errlen)
{
        int r = start(m, loop, c, err, errlen);

        if (r < 0) {
                /* Nothing was handed to the loop yet: undo the allocations here. */
                if (m->mosq)
                        mosquitto_destroy(m->mosq);
                m->mosq = NULL;
                free(m->host);
                free(m->status_topic);
                free(m->shared_group);
                free_list(&m->want, &m->n_want);
                mosquitto_property_free_all(&m->connect_props);
                m->host = m->status_topic = m->shared_group = NULL;
        }
        return r;
}

/* MQTT v5 for shared subscriptions: the protocol, our Receive Maximum (a v5 broker sends at most that
 * many unacknowledged QoS 1 messages, whatever its own max_inflight_messages says; libmosquitto's
 * default is 20), and the Session Expiry Interval a persistent session needs. */
static int setup_v5(struct cp_mqtt_in *m, const struct cp_config *c, char *err, size_t errlen)
{
        int rc;

        m->v5 = true;
        rc = mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
        if (rc == MOSQ_ERR_SUCCESS)
                rc = mosquitto_int_option(m->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, INFLIGHT_MAX);
        if (rc == MOSQ_ERR_SUCCESS && !c->mqtt_clean_session)
                rc = mosquitto_property_add_int32(&m->connect_props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                                  SESSION_EXPIRY_NEVER);
        if (rc != MOSQ_ERR_SUCCESS) {
                snprintf(err, errlen, "mqtt v5 setup: %s", mosquitto_strerror(rc));
                return rc == MOSQ_ERR_NOMEM ? -ENOMEM : -EINVAL;
        }
        return 0;
}

static int start(struct cp_mqtt_in *m, uv_loop_t *loop, const struct cp_config *c, char *err, size_t errlen)
{
        int rc, r;

        memset(m, 0, sizeof(*m));
        m->loop = loop;
        m->poll_fd = -1;
        m->host = strdup(c->mqtt_host);
        m->port = (int)c->mqtt_port;
        m->keepalive_s = (int)(c->mqtt_keepalive_ms / 1000);
        m->qos = (int)c->mqtt_qos;
        m->reconnect_max_ms = c->mqtt_reconnect_max_ms;
        m->shared_group = c->mqtt_shared_group ? strdup(c->mqtt_shared_group) : NULL;
        if (asprintf(&m->status_topic, "%s/status", c->publish_prefix) < 0)
                m->status_topic = NULL;
        if (!m->host || !m->status_topic || (c->mqtt_shared_group && !m->shared_group))
                return -ENOMEM;
        if ((r = want_from_config(m, c, &m->want, &m->n_want)) < 0)
                return r;
        m->mosq = mosquitto_new(c->mqtt_client_id, c->mqtt_clean_session, m);
        if (!m->mosq) {
                snprintf(err, errlen, "mosquitto_new failed: %s", strerror(errno));
                return -ENOMEM;
        }
        mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        if (m->shared_group && (r = setup_v5(m, c, err, errlen)) < 0)
                return r;
        /* libmosquitto 2.0.11 queues the QoS 1 PUBACK before it calls on_message, and without this
         * writes it to the socket at once: a crash in between would lose a message the broker then
         * forgets. Marked "threaded" (no thread is started), it only queues the PUBACK; our loop writes
         * it when the socket is next writable, after on_message has put the message in the journal. */
        mosquitto_threaded_set(m->mosq, true);
        mosquitto_max_inflight_messages_set(m->mosq, INFLIGHT_MAX);
        /* The _v5 callbacks also serve 3.1.1 (without properties); rc then holds 3.1.1 codes. */
        mosquitto_connect_v5_callback_set(m->mosq, on_connect);
        mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
        mosquitto_message_callback_set(m->mosq, on_message);
        mosquitto_subscribe_v5_callback_set(m->mosq, on_subscribe);
        if (c->mqtt_username) {
                char pw[1024] = "";
                if (c->mqtt_password_file && (r = cp_read_secret(c->mqtt_password_file, pw, sizeof(pw), err, errlen)) < 0)
                        return r;
                rc = mosquitto_username_pw_set(m->mosq, c->mqtt_username, c->mqtt_password_file ? pw : NULL);
                explicit_bzero(pw, sizeof(pw));
                if (rc != MOSQ_ERR_SUCCESS) {
                        snprintf(err, errlen, "mqtt credentials: %s", mosquitto_strerror(rc));
                        return -EINVAL;
                }
        }
        if (c->mqtt_tls_cafile) {
                if ((r = check_readable("mqtt.tls.cafile", c->mqtt_tls_cafile, err, errlen)) < 0 ||
                    (r = check_readable("mqtt.tls.certfile", c->mqtt_tls_certfile, err, errlen)) < 0 ||
                    (r = check_readable("mqtt.tls.keyfile", c->mqtt_tls_keyfile, err, errlen)) < 0)
                        return r;
                rc = mosquitto_tls_set(m->mosq, c->mqtt_tls_cafile, NULL, c->mqtt_tls_certfile, c->mqtt_tls_keyfile,
                                       NULL);
                if (rc != MOSQ_ERR_SUCCESS) {
                        snprintf(err, errlen, "mqtt TLS setup: %s", mosquitto_strerror(rc));
                        return -EINVAL;
                }
        }
        rc = mosquitto_will_set(m->mosq, m->status_topic, 7, "offline", 1, true);
        if (rc != MOSQ_ERR_SUCCESS) {
                snprintf(err, errlen, "mqtt will: %s", mosquitto_strerror(rc));
                return -EINVAL;
        }
        uv_timer_init(loop, &m->misc_timer);
        uv_timer_init(loop, &m->reconnect_timer);
        uv_idle_init(loop, &m->drain_idle);
        m->pending_closes = 3;
        uv_timer_start(&m->misc_timer, on_misc, 1000, 1000);
        try_connect(m);
        return 0;
}

int cp_mqtt_in_set_routes(struct cp_mqtt_in *m, const struct cp_config *c)
{
        char **v;
        size_t n;
        int r;

        /* The group decides the protocol and the session's subscriptions: it changes with a restart. */
        if (!!m->shared_group != !!c->mqtt_shared_group ||
            (m->shared_group && strcmp(m->shared_group, c->mqtt_shared_group) != 0))
                cp_log(CP_LOG_WARNING, "config",
                       "changed keys need a restart, keeping their running values keys=mqtt.shared_group");
        if ((r = want_from_config(m, c, &v, &n)) < 0)
                return r;
        free_list(&m->want, &m->n_want);
        m->want = v;
        m->n_want = n;
        sync_subscriptions(m);
        return 0;
}

int cp_mqtt_in_publish(struct cp_mqtt_in *m, const char *topic, const void *payload, size_t len, bool retain)
{
        int rc;

        if (m->state != CP_MQTT_CONNECTED)
                return MOSQ_ERR_NO_CONN;
        rc = mosquitto_publish(m->mosq, NULL, topic, (int)len, payload, 1, retain);
        if (rc == MOSQ_ERR_SUCCESS)
                update_poll(m);
        return rc;
}

static void on_timer_closed(uv_handle_t *h)
{
        struct cp_mqtt_in *m = h->data;

        m->pending_closes--;
        maybe_closed(m);
}

static void maybe_closed(struct cp_mqtt_in *m)
{
        if (!m->stopping || m->pending_closes)
                return;
        mosquitto_destroy(m->mosq);
        m->mosq = NULL;
        free(m->host);
        free(m->status_topic);
        free(m->shared_group);
        free_list(&m->want, &m->n_want);
        free_subscribed(m);
        mosquitto_property_free_all(&m->connect_props);
        if (m->on_closed)
                m->on_closed(m, m->ud);
}

/* Sends what libmosquitto has queued, waiting at most until the deadline: used once, at shutdown, so
 * the "offline" status and the DISCONNECT reach the broker. */
static void flush_blocking(struct cp_mqtt_in *m, int timeout_ms)
{
        for (int waited = 0; waited < timeout_ms && mosquitto_socket(m->mosq) >= 0 && mosquitto_want_write(m->mosq);) {
                struct pollfd p = {.fd = mosquitto_socket(m->mosq), .events = POLLOUT};
                if (poll(&p, 1, 10) > 0 && mosquitto_loop_write(m->mosq, 1) != MOSQ_ERR_SUCCESS)
                        break;
                waited += 10;
        }
}

void cp_mqtt_in_stop(struct cp_mqtt_in *m)
{
        if (m->stopping)
                return;
        m->stopping = true;
        uv_timer_stop(&m->reconnect_timer);
        /* A v5 connect on the threadpool: dropped if it has not started; otherwise connect_done() runs
         * when it returns (a black-holed broker holds it for the kernel's SYN timeout) and then lets
         * maybe_closed() free the client. */
        if (m->connect_busy && uv_cancel((uv_req_t *)&m->connect_req) < 0)
                cp_log(CP_LOG_NOTICE, "mqtt", "waiting for the connect attempt in progress host=%s port=%d",
                       m->host, m->port);
        if (m->state == CP_MQTT_CONNECTED) {
                (void)mosquitto_publish(m->mosq, NULL, m->status_topic, 7, "offline", 1, true);
                flush_blocking(m, 1000);
                (void)mosquitto_disconnect(m->mosq);
                flush_blocking(m, 1000);
        }
        set_state(m, CP_MQTT_STOPPED);
        drop_poll(m);
        m->misc_timer.data = m;
        m->reconnect_timer.data = m;
        m->drain_idle.data = m;
        uv_close((uv_handle_t *)&m->misc_timer, on_timer_closed);
        uv_close((uv_handle_t *)&m->reconnect_timer, on_timer_closed);
        uv_close((uv_handle_t *)&m->drain_idle, on_timer_closed);
}
