/* sse.h - GET /api/v1/stream: availability changes as Server-Sent Events.
 *
 * Each client gets a response whose content reader copies from the client's own bounded buffer; when
 * the buffer is empty the connection is suspended (MHD_suspend_connection from the content reader, the
 * documented place) and resumed when an event is queued. A 1 s timer compares every facility's view
 * with the one last sent and queues an `availability` event for each change, staleness included, so
 * a facility going quiet is announced as unknown. A slow client whose buffer overflows is dropped
 * (counted) rather than holding memory. Loop thread only. */
#ifndef CP_SSE_H
#define CP_SSE_H

#include <microhttpd.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"

struct cp_daemon;
struct sse_client;
struct sse_last;

struct cp_sse {
        struct cp_daemon *d;
        uv_timer_t timer;
        struct sse_client *clients;
        size_t n_clients;
        struct sse_last *last; /* per facility: what was last announced */
        size_t n_last;
        uint64_t reg_gen;
        uint64_t events, dropped_clients;
        int64_t next_ping_ms;
        bool stopping;
};

int cp_sse_init(struct cp_sse *s, struct cp_daemon *d, uv_loop_t *loop);
/* Handles GET /api/v1/stream. */
enum MHD_Result cp_sse_handle(struct cp_sse *s, struct MHD_Connection *conn, struct cp_http_req *req);
/* Ends every stream (resuming suspended connections, as MHD_stop_daemon requires) and closes the timer. */
void cp_sse_stop(struct cp_sse *s);

#endif
