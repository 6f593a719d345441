/* explore.h - the Opendatasoft Explore v2.1 subset and the import-ready exports; see explore.c. */
#ifndef CP_EXPLORE_H
#define CP_EXPLORE_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

struct cp_daemon;
struct cp_http_req;

/* GET /api/explore/v2.1/catalog/datasets[/...]: segs are the path segments after "datasets". */
enum MHD_Result cp_explore_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                  char *const *segs, size_t n);
/* GET /exports/<dataset>.<format>. */
enum MHD_Result cp_exports_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                  const char *file);
/* GET /api/v1/series, /api/v1/sensors/{id}/readings, /api/v1/rejects (admin token). */
enum MHD_Result cp_series_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req);
enum MHD_Result cp_readings_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req,
                                   const char *id);
enum MHD_Result cp_rejects_handle(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req);
/* Sets *ok when the request carries the admin bearer token; otherwise has queued 403 (admin off) or 401. */
enum MHD_Result cp_admin_check(struct cp_daemon *d, struct MHD_Connection *conn, struct cp_http_req *req, bool *ok);

/* Resumes every suspended query request (MHD_stop_daemon needs none suspended). */
void cp_explore_stop(struct cp_daemon *d);

#endif
