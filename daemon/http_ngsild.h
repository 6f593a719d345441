/* http_ngsild.h - the NGSI-LD routes; see http_ngsild.c. */
#ifndef CP_HTTP_NGSILD_H
#define CP_HTTP_NGSILD_H

#include <microhttpd.h>
#include <stddef.h>

struct cp_daemon;
struct cp_http_req;

/* GET /ngsi-ld/v1/...: segs are the path segments after "v1". */
enum MHD_Result cp_ngsild_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                 char *const *segs, size_t n);

#endif
