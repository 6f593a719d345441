/* http.c - see http.h.
 *
 * libmicrohttpd calls the access handler at least twice per request: once when the headers are in and
 * again for the body. Queuing the response on the first call makes it close keep-alive connections,
 * so the handler is called only from the second call on (req->started). The raw URI is captured in
 * MHD_OPTION_URI_LOG_CALLBACK, whose return value becomes the request's context: MHD unescapes the path
 * before the handler sees it, which would turn a sensor id "a%2Fb" into two path segments. */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citypulse/cp_common.h"
#include "log.h"
#include "netaddr.h"

static void run_listener(struct cp_http_listener *l);

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
        struct cp_http_req *req = calloc(1, sizeof(*req));

        (void)cls;
        (void)conn;
        if (!req)
                return NULL;
        req->raw_uri = strdup(uri ? uri : "/");
        req->route = -1;
        if (!req->raw_uri) {
                free(req);
                return NULL;
        }
        return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct cp_http *h = cls;
        struct cp_http_req *req = *con_cls;

        (void)conn;
        (void)toe;
        if (!req)
                return;
        if (h->done && req->started)
                h->done(h, req, h->ud);
        if (req->ctx_free)
                req->ctx_free(req->ctx);
        free(req->raw_uri);
        free(req);
        *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
        struct cp_http *h = cls;

        (void)conn;
        (void)socket_context;
        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                h->connections++;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
        struct cp_http *h = cls;
        struct cp_http_req *req = *con_cls;

        (void)url;
        (void)version;
        (void)upload_data;
        if (!req)
                return MHD_NO; /* out of memory in on_uri */
        if (!req->started) {
                req->started = true;
                req->method = method;
                req->head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
                h->requests++;
                /* Every route is GET or HEAD: refuse anything else now, before MHD reads a body that
                 * may be large or never come (MHD then closes the connection after the answer). */
                if (!req->head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
                        return h->handler(h, conn, req, h->ud);
                return MHD_YES;
        }
        if (*upload_data_size) {
                /* No route takes a body: drop it as it comes, the handler answers after. */
                *upload_data_size = 0;
                return MHD_YES;
        }
        return h->handler(h, conn, req, h->ud);
}

enum MHD_Result cp_http_queue(struct MHD_Connection *conn, struct cp_http_req *req, unsigned status,
                              struct MHD_Response *resp)
{
        enum MHD_Result r;

        req->status = status;
        r = MHD_queue_response(conn, status, resp);
        return r;
}

enum MHD_Result cp_http_error(struct MHD_Connection *conn, struct cp_http_req *req, unsigned status,
                              const char *code, const char *msg)
{
        char body[1024];
        size_t o = 0;
        struct MHD_Response *resp;
        enum MHD_Result r;

        /* msg may echo user input: escape it as a JSON string by hand (ASCII controls and quotes). */
        o = (size_t)snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"", code);
        for (const char *p = msg; *p && o + 8 < sizeof(body); p++) {
                unsigned char c = (unsigned char)*p;
                if (c == '"' || c == '\\') {
                        body[o++] = '\\';
                        body[o++] = (char)c;
                } else if (c < 0x20) {
                        o += (size_t)snprintf(body + o, sizeof(body) - o, "\\u%04x", c);
                } else {
                        body[o++] = (char)c;
                }
        }
        o += (size_t)snprintf(body + o, sizeof(body) - o, "\"}\n");
        resp = MHD_create_response_from_buffer(CP_MIN(o, sizeof(body) - 1), body, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
        r = cp_http_queue(conn, req, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int cp_http_pct_decode(const char *src, size_t len, char *dst, size_t dstlen)
{
        size_t o = 0;

        if (dstlen == 0)
                return -EINVAL; /* not even room for the NUL */
        for (size_t i = 0; i < len; i++) {
                char c = src[i];
                if (c == '%') {
                        int hi, lo;
                        if (i + 2 >= len)
                                return -EINVAL;
                        hi = hexval(src[i + 1]);
                        lo = hexval(src[i + 2]);
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                                return -EINVAL;
                        c = (char)(hi * 16 + lo);
                        i += 2;
                }
                if (o + 1 >= dstlen)
                        return -EINVAL;
                dst[o++] = c;
        }
        dst[o] = '\0';
        return (int)o;
}

int cp_http_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *ret)
{
        char *end;
        long long v;

        if (!s)
                return 0;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < lo || v > hi)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* --- the loop glue --- */

static void on_timer(uv_timer_t *t)
{
        run_listener(t->data);
}

static void on_epoll(uv_poll_t *p, int status, int events)
{
        (void)status;
        (void)events;
        run_listener(p->data);
}

/* Runs MHD over whatever is ready, then arms the timer for its next deadline. MHD_get_timeout() gives
 * 0 when work is left that epoll will not announce again (MHD uses edge-triggered epoll inside). */
static void run_listener(struct cp_http_listener *l)
{
        MHD_UNSIGNED_LONG_LONG to;

        if (!l->d)
                return;
        /* While MHD says it has work right now (a large response still being sent), give it a few more
         * turns before yielding to the loop: each turn writes one chunk. */
        for (int i = 0; i < 8; i++) {
                MHD_run(l->d);
                if (MHD_get_timeout(l->d, &to) != MHD_YES || to != 0)
                        break;
        }
        /* "Now" becomes 1 ms: a 0 ms timer re-armed from its own callback would run again within the
         * same timer phase (libuv 1.44) and starve every other handle while MHD has work. */
        if (MHD_get_timeout(l->d, &to) == MHD_YES)
                uv_timer_start(&l->timer, on_timer, to ? to : 1, 0);
        else
                uv_timer_stop(&l->timer);
}

void cp_http_kick(struct cp_http *h)
{
        for (size_t i = 0; i < h->n_ls; i++)
                if (h->ls[i].d)
                        uv_timer_start(&h->ls[i].timer, on_timer, 0, 0);
}

static void on_handle_closed(uv_handle_t *hd)
{
        struct cp_http_listener *l = hd->data;
        struct cp_http *h = l->h;

        if (--h->pending_closes)
                return;
        for (size_t i = 0; i < h->n_ls; i++)
                free(h->ls[i].addr);
        free(h->ls);
        h->ls = NULL;
        h->n_ls = 0;
        if (h->on_closed)
                h->on_closed(h);
}

void cp_http_stop(struct cp_http *h)
{
        size_t n = h->n_ls;

        if (n == 0) {
                if (h->on_closed)
                        h->on_closed(h);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                struct cp_http_listener *l = &h->ls[i];
                if (l->d) {
                        uv_poll_stop(&l->poll);
                        MHD_stop_daemon(l->d);
                        l->d = NULL;
                }
        }
        for (size_t i = 0; i < n; i++) {
                struct cp_http_listener *l = &h->ls[i];
                if (l->poll.data) {
                        h->pending_closes++;
                        uv_close((uv_handle_t *)&l->poll, on_handle_closed);
                }
                if (l->timer.data) {
                        h->pending_closes++;
                        uv_close((uv_handle_t *)&l->timer, on_handle_closed);
                }
        }
        if (h->pending_closes == 0 && h->on_closed) {
                free(h->ls);
                h->ls = NULL;
                h->n_ls = 0;
                h->on_closed(h);
        }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        char buf[512];
        size_t n;

        (void)cls;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        n = strlen(buf);
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
        cp_log(CP_LOG_DEBUG, "http", "libmicrohttpd: %s", buf);
}

int cp_http_start(struct cp_http *h, uv_loop_t *loop, const struct cp_config *c, cp_http_handler_fn handler,
                  cp_http_done_fn done, void *ud, char *err, size_t errlen)
{
        memset(h, 0, sizeof(*h));
        h->loop = loop;
        h->handler = handler;
        h->done = done;
        h->ud = ud;
        h->ls = calloc(c->n_http_listen, sizeof(*h->ls));
        if (!h->ls)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_http_listen; i++) {
                struct cp_http_listener *l = &h->ls[h->n_ls];
                struct cp_netaddr a;
                const union MHD_DaemonInfo *info;
                unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC;

                if (cp_netaddr_parse(c->http_listen[i], &a) < 0) {
                        snprintf(err, errlen, "http.listen %s: not host:port", c->http_listen[i]);
                        return -EINVAL;
                }
                if (a.ss.ss_family == AF_INET6)
                        flags |= MHD_USE_IPv6;
                l->h = h;
                l->addr = strdup(c->http_listen[i]);
                l->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h,
                                        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a.ss,
                                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->http_max_connections,
                                        MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
                                        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                                        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
                                        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                                        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
                                        /* main() ignores SIGPIPE: MHD may then sendfile() fd responses
                                         * (exports, the shared facility list) instead of copying them */
                                        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)1,
                                        MHD_OPTION_END);
                if (!l->d) {
                        snprintf(err, errlen, "http.listen %s: cannot listen (address in use or not available)",
                                 c->http_listen[i]);
                        free(l->addr);
                        return -EADDRINUSE;
                }
                h->n_ls++;
                info = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_EPOLL_FD);
                if (!info || uv_poll_init(loop, &l->poll, info->epoll_fd) < 0) {
                        snprintf(err, errlen, "http.listen %s: cannot watch the epoll fd", c->http_listen[i]);
                        return -EIO;
                }
                l->poll.data = l;
                uv_timer_init(loop, &l->timer);
                l->timer.data = l;
                uv_poll_start(&l->poll, UV_READABLE, on_epoll);
                run_listener(l);
        }
        return 0;
}
