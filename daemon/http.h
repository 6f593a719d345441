/* http.h - libmicrohttpd driven by the libuv loop: MHD_USE_EPOLL without an MHD thread, a uv_poll_t on
 * each daemon's epoll fd and a uv_timer_t from MHD_get_timeout(). Handlers run on the loop thread.
 * One MHD daemon per http.listen address. */
#ifndef CP_HTTP_H
#define CP_HTTP_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

/* One request, from the first byte of its URI to its completion. */
struct cp_http_req {
        char *raw_uri; /* as sent, before any unescaping: path segments are decoded by the router */
        const char *method;
        bool head;
        bool started;
        int route;      /* index into the caller's route table, for metrics */
        unsigned status;
        void *ctx;      /* for streaming handlers */
        void (*ctx_free)(void *ctx);
};

struct cp_http;
/* Returns the result of MHD_queue_response (or MHD_NO to drop the connection). */
typedef enum MHD_Result (*cp_http_handler_fn)(struct cp_http *h, struct MHD_Connection *conn, struct cp_http_req *req,
                                              void *ud);
typedef void (*cp_http_done_fn)(struct cp_http *h, struct cp_http_req *req, void *ud);

struct cp_http_listener {
        struct cp_http *h;
        struct MHD_Daemon *d;
        uv_poll_t poll;
        uv_timer_t timer;
        char *addr;
};

struct cp_http {
        uv_loop_t *loop;
        struct cp_http_listener *ls;
        size_t n_ls;
        unsigned pending_closes;
        cp_http_handler_fn handler;
        cp_http_done_fn done;
        void *ud;
        void (*on_closed)(struct cp_http *h);
        uint64_t connections, requests;
};

/* Binds every http.listen address. Returns 0, or a negative errno with err saying which address. */
int cp_http_start(struct cp_http *h, uv_loop_t *loop, const struct cp_config *c, cp_http_handler_fn handler,
                  cp_http_done_fn done, void *ud, char *err, size_t errlen);
/* Stops accepting and closes every connection and handle; on_closed runs when all are closed. */
void cp_http_stop(struct cp_http *h);

/* Runs MHD again on the next loop iteration: after MHD_resume_connection(), which MHD only acts on
 * inside MHD_run(). */
void cp_http_kick(struct cp_http *h);
/* Queues a response with status; counts it on req. */
enum MHD_Result cp_http_queue(struct MHD_Connection *conn, struct cp_http_req *req, unsigned status,
                              struct MHD_Response *resp);
/* A small JSON error body {"error":code,"message":msg}. */
enum MHD_Result cp_http_error(struct MHD_Connection *conn, struct cp_http_req *req, unsigned status,
                              const char *code, const char *msg);
/* Percent-decodes src[len] into dst (size dstlen); rejects '%00' and bad escapes. Returns the decoded
 * length or -EINVAL. */
int cp_http_pct_decode(const char *src, size_t len, char *dst, size_t dstlen);

/* A query parameter as an integer in [lo, hi]: 0 and *ret set, 0 and *ret untouched when s is NULL
 * (absent), -EINVAL otherwise. */
int cp_http_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *ret);

#endif
