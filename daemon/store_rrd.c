/* store_rrd.c - see store_rrd.h. */
#include "store_rrd.h"

#include "buf.h"

#include <rrd.h>

#include "citypulse/cp_common.h"
#include "citypulse/cp_err.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <rrd_client.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MODULE "rrd"

#define LAST_UNKNOWN INT64_MIN
/* The table of known files is a cache: past this many entries it starts over rather than growing. */
#define FILES_MAX (1u << 20)
/* One "ts:v1:v2" update string: a time, and two %.12g values or Wh counters (19 bytes each at most). */
#define VALUE_MAX 80
/* librrd's client builds each rrdcached command in a 4096-byte buffer (RRD_CMD_MAX, not in its
 * public headers) and fails with ENOBUFS beyond; stay well below. */
#define CACHED_CMD_MAX        3800
#define CACHED_BACKOFF_MAX_MS 60000
/* How long without a new drop before the "dropping batches" complaint is released. */
#define DROP_QUIET_MS  (5 * 60 * 1000)
#define GRAPH_ARGS_MAX 48
#define TITLE_ID_MAX   96

/* The data sources of each kind, in the order of the values of an update. */
static const char *const ds_names[_CP_RRD_KIND_MAX][2] = {
    [CP_RRD_FACILITY] = {"occupancy", "free"},
    [CP_RRD_DISTRICT] = {"power", "energy"},
};
static const char *const kind_names[_CP_RRD_KIND_MAX] = {
    [CP_RRD_FACILITY] = "facility",
    [CP_RRD_DISTRICT] = "district",
};

static const char *const create_args[_CP_RRD_KIND_MAX][2] = {
    [CP_RRD_FACILITY] = {"DS:occupancy:GAUGE:300:0:1", "DS:free:GAUGE:300:0:U"},
    [CP_RRD_DISTRICT] = {"DS:power:GAUGE:300:U:U", "DS:energy:DERIVE:300:0:U"},
};
/* Rows: 1 min x 1500 (25 h), 5 min x 2100 (7.3 d), 1 h x 768 (32 d), 1 d x 370. A graph ending now
 * starts a bit before the newest row, so each archive covers a little more than its period; with an
 * exact fit librrd would fall back to the next, coarser one. */
/* clang-format off */
static const char *const rra_args[] = {
        "RRA:AVERAGE:0.5:1:1500",   "RRA:MIN:0.5:1:1500",   "RRA:MAX:0.5:1:1500",
        "RRA:AVERAGE:0.5:5:2100",   "RRA:MIN:0.5:5:2100",   "RRA:MAX:0.5:5:2100",
        "RRA:AVERAGE:0.5:60:768",   "RRA:MIN:0.5:60:768",   "RRA:MAX:0.5:60:768",
        "RRA:AVERAGE:0.5:1440:370", "RRA:MIN:0.5:1440:370", "RRA:MAX:0.5:1440:370",
};
/* clang-format on */

static const struct {
        const char *name;
        const char *label;
        int64_t seconds;
} periods[_CP_RRD_PERIOD_MAX] = {
    [CP_RRD_1D] = {"1d", "last 24 hours", 86400},
    [CP_RRD_1W] = {"1w", "last 7 days", 7 * 86400},
    [CP_RRD_1M] = {"1m", "last 30 days", 30 * 86400},
    [CP_RRD_1Y] = {"1y", "last 365 days", 365 * 86400},
};

struct cp_rrd_item {
        int64_t ts;
        double v[2];
        uint32_t name; /* offset of the file name in the batch's names */
        uint8_t kind;
};

struct cp_rrd_batch {
        struct cp_rrd_batch *next;
        struct cp_rrd_item *items;
        size_t n, cap;
        char *names;
        size_t names_len, names_cap;
};

struct cp_rrd_graph_req {
        struct cp_rrd_graph_req *next;
        enum cp_rrd_kind kind;
        enum cp_rrd_period period;
        cp_rrd_graph_fn cb;
        void *ud;
        int err;
        unsigned char *png;
        size_t len;
        char name[CP_RRD_NAME_MAX + 1];
        char id[]; /* for the title */
};

/* What the worker knows of one file, so that it reads a file's header once, not before every update. */
struct cp_rrd_file {
        char *name;   /* NULL: free slot */
        int64_t last; /* last update, or LAST_UNKNOWN: read it again before the next update */
        int kind;     /* enum cp_rrd_kind of its data sources, -1 for neither */
};

/* One update being merged: items of every queued batch, sorted by file, kind, time, then arrival. */
struct pending {
        const char *name;
        const struct cp_rrd_item *it;
        size_t seq;
};

/* What one pass over the queued batches went through, for the complaint's "recovered" line. */
struct pass {
        size_t files, applied, skipped, failed;
        bool update_failed;
};

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- names ---- */

static bool keep_byte(unsigned char c, size_t pos)
{
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
                return true;
        /* A leading '.' is encoded so that no name is ".", "..", or hidden. */
        return c == '_' || c == '-' || (c == '.' && pos > 0);
}

int cp_rrd_file_name(const char *id, char *buf, size_t len)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t o = 0, cap = CP_MIN(len, (size_t)CP_RRD_NAME_MAX + 1);

        if (len)
                buf[0] = '\0';
        if (!id || !*id)
                return -EINVAL;
        for (size_t i = 0; id[i]; i++) {
                unsigned char c = (unsigned char)id[i];
                bool keep = keep_byte(c, i);

                /* Room for this byte's encoding, ".rrd" and the NUL. */
                if (o + (keep ? 1 : 3) + 5 > cap) {
                        if (len)
                                buf[0] = '\0';
                        return -ENAMETOOLONG;
                }
                if (keep) {
                        buf[o++] = (char)c;
                } else {
                        buf[o++] = '%';
                        buf[o++] = hex[c >> 4];
                        buf[o++] = hex[c & 15];
                }
        }
        memcpy(buf + o, ".rrd", 5);
        return 0;
}

int cp_rrd_period_parse(const char *s)
{
        for (int i = 0; s && i < _CP_RRD_PERIOD_MAX; i++)
                if (strcmp(s, periods[i].name) == 0)
                        return i;
        return -EINVAL;
}

static int make_path(const struct cp_rrd *r, const char *name, char *buf, size_t len)
{
        int n = snprintf(buf, len, "%s/%s", r->dir, name);

        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ---- batches ---- */

struct cp_rrd_batch *cp_rrd_batch_new(void)
{
        return calloc(1, sizeof(struct cp_rrd_batch));
}

void cp_rrd_batch_free(struct cp_rrd_batch *b)
{
        if (!b)
                return;
        free(b->items);
        free(b->names);
        free(b);
}

size_t cp_rrd_batch_count(const struct cp_rrd_batch *b)
{
        return b ? b->n : 0;
}

/* Appends name unless the previous item has the same one (callers usually add runs of one id).
 * Returns its offset or -ENOMEM. */
static int64_t batch_intern(struct cp_rrd_batch *b, const char *name)
{
        size_t len = strlen(name) + 1;
        size_t off;

        if (b->n && strcmp(b->names + b->items[b->n - 1].name, name) == 0)
                return b->items[b->n - 1].name;
        if (b->names_len + len > b->names_cap) {
                size_t cap = CP_MAX(b->names_cap * 2, b->names_len + len + 256);
                char *p;

                if (cap > UINT32_MAX)
                        return -ENOMEM;
                p = realloc(b->names, cap);
                if (!p)
                        return -ENOMEM;
                b->names = p;
                b->names_cap = cap;
        }
        off = b->names_len;
        memcpy(b->names + off, name, len);
        b->names_len += len;
        return (int64_t)off;
}

static int batch_add(struct cp_rrd_batch *b, enum cp_rrd_kind kind, const char *id, int64_t ts, double v0,
                     double v1)
{
        char name[CP_RRD_NAME_MAX + 1];
        struct cp_rrd_item *it;
        int64_t off;
        int r;

        if (!b || ts <= 0 || ts > (int64_t)INT32_MAX * 64)
                return -EINVAL;
        if ((r = cp_rrd_file_name(id, name, sizeof(name))) < 0)
                return r;
        if (b->n >= CP_RRD_BATCH_MAX)
                return -ENOSPC;
        if (b->n == b->cap) {
                size_t cap = b->cap ? b->cap * 2 : 16;
                struct cp_rrd_item *p = realloc(b->items, cap * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                b->items = p;
                b->cap = cap;
        }
        off = batch_intern(b, name);
        if (off < 0)
                return (int)off;
        it = &b->items[b->n++];
        it->ts = ts;
        it->v[0] = v0;
        it->v[1] = v1;
        it->name = (uint32_t)off;
        it->kind = (uint8_t)kind;
        return 0;
}

int cp_rrd_batch_add_facility(struct cp_rrd_batch *b, const char *id, int64_t ts, double occupancy,
                              double free_spaces)
{
        return batch_add(b, CP_RRD_FACILITY, id, ts, occupancy, free_spaces);
}

int cp_rrd_batch_add_district(struct cp_rrd_batch *b, const char *id, int64_t ts, double power_w,
                              double energy_kwh)
{
        return batch_add(b, CP_RRD_DISTRICT, id, ts, power_w, energy_kwh);
}

/* ---- librrd errors ---- */

static void set_errmsg(struct cp_rrd *r, const char *msg)
{
        uv_mutex_lock(&r->mu);
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", msg);
        uv_mutex_unlock(&r->mu);
}

void cp_rrd_errmsg(struct cp_rrd *r, char *buf, size_t len)
{
        uv_mutex_lock(&r->mu);
        snprintf(buf, len, "%s", r->errmsg);
        uv_mutex_unlock(&r->mu);
}

/* librrd reports failures as text only, mostly "<what>: <strerror(errno)>" built with its own
 * strerror_r, so matching strerror's text (same locale) gets the errno back. The rest are librrd's
 * own phrases. */
static int err_from_rrd(const char *msg)
{
        static const int errnos[] = {ENOENT,     EACCES, EPERM,     ENOSPC,   EDQUOT,       EROFS,
                                     EEXIST,     ENOMEM, ENOTDIR,   EISDIR,   ENAMETOOLONG, ECONNREFUSED,
                                     ECONNRESET, EPIPE,  ETIMEDOUT, ENOTCONN, EIO};
        char buf[128];

        if (!msg || !*msg)
                return -EIO;
        /* Before the errno texts: rrdcached answers "illegal attempt..." for an old time stamp too. */
        if (strstr(msg, "illegal attempt to update"))
                return -ERANGE;
        for (size_t i = 0; i < CP_ARRAY_LEN(errnos); i++)
                if (strstr(msg, strerror_r(errnos[i], buf, sizeof(buf))))
                        return -errnos[i];
        if (strstr(msg, "No such file"))
                return -ENOENT; /* rrdcached's "No such file: <path>" */
        if (strstr(msg, "not a simple") || strstr(msg, "expected") || strstr(msg, "No DS called"))
                return -EINVAL;
        if (strstr(msg, "memory"))
                return -ENOMEM;
        if (strstr(msg, "rrdcached"))
                return -ENOTCONN;
        return -EIO;
}

/* After a failed librrd call: copies librrd's text into why, for the log line and the errmsg of
 * whoever counts the failure, and returns it as an errno. */
static int rrd_failure(char *why, size_t whylen)
{
        const char *msg = rrd_get_error();

        snprintf(why, whylen, "%s", msg && *msg ? msg : "librrd gave no reason");
        return err_from_rrd(msg);
}

/* The same for an rrdc_* status: a positive errno, or negative with librrd's text set. */
static int cached_failure(int status, char *why, size_t whylen)
{
        if (status > 0) {
                char buf[128];

                snprintf(why, whylen, "rrdcached: %s", strerror_r(status, buf, sizeof(buf)));
                return -status;
        }
        return rrd_failure(why, whylen);
}

static void free_strv(char **v, unsigned long n)
{
        if (!v)
                return;
        for (unsigned long i = 0; i < n; i++)
                rrd_freemem(v[i]);
        rrd_freemem(v);
}

/* ---- the table of known files (worker thread) ---- */

static uint64_t name_hash(const char *s)
{
        return cp_fnv64(s, strlen(s), CP_FNV64_INIT);
}

static void files_clear(struct cp_rrd *r)
{
        for (size_t i = 0; i < r->files_cap; i++)
                free(r->files[i].name);
        free(r->files);
        r->files = NULL;
        r->files_cap = 0;
        r->files_len = 0;
}

static int files_grow(struct cp_rrd *r)
{
        size_t cap = r->files_cap ? r->files_cap * 2 : 64;
        struct cp_rrd_file *t = calloc(cap, sizeof(*t));

        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < r->files_cap; i++) {
                size_t j;

                if (!r->files[i].name)
                        continue;
                j = name_hash(r->files[i].name) & (cap - 1);
                while (t[j].name)
                        j = (j + 1) & (cap - 1);
                t[j] = r->files[i];
        }
        free(r->files);
        r->files = t;
        r->files_cap = cap;
        return 0;
}

/* Finds the entry of name, adding it (last unknown) when new. NULL on OOM. */
static struct cp_rrd_file *files_get(struct cp_rrd *r, const char *name)
{
        size_t j;

        if (r->files_len >= FILES_MAX)
                files_clear(r);
        if ((r->files_len + 1) * 4 > r->files_cap * 3 && files_grow(r) < 0)
                return NULL;
        j = name_hash(name) & (r->files_cap - 1);
        while (r->files[j].name) {
                if (strcmp(r->files[j].name, name) == 0)
                        return &r->files[j];
                j = (j + 1) & (r->files_cap - 1);
        }
        r->files[j].name = strdup(name);
        if (!r->files[j].name)
                return NULL;
        r->files[j].last = LAST_UNKNOWN;
        r->files[j].kind = -1;
        r->files_len++;
        return &r->files[j];
}

/* ---- rrdcached (worker thread) ---- */

/* Connects unless connected; after a failure, waits out the back-off before trying again, so a dead
 * rrdcached costs one connect attempt per back-off period, not one per file. */
static int cached_connect(struct cp_rrd *r, char *why, size_t whylen)
{
        char qaddr[128], qwhy[300];
        int64_t now;
        int status, e;

        if (rrdc_is_connected(r->cached_address))
                return 0;
        now = mono_ms();
        if (now < r->cached_retry_ms) {
                snprintf(why, whylen, "rrdcached unreachable, next attempt in %lld ms",
                         (long long)(r->cached_retry_ms - now));
                return -ENOTCONN;
        }
        rrd_clear_error();
        status = rrdc_connect(r->cached_address);
        if (status == 0 && rrdc_is_connected(r->cached_address)) {
                r->cached_backoff_ms = 0;
                r->cached_retry_ms = 0;
                cp_log(CP_LOG_NOTICE, MODULE, "%s rrdcached address=%s",
                       r->cached_up ? "reconnected to" : "connected to",
                       cp_log_quote(qaddr, sizeof(qaddr), r->cached_address, strlen(r->cached_address)));
                r->cached_up = true;
                cp_complain_release(&r->cached_complaint, MODULE, "rrdcached connection");
                return 0;
        }
        e = status ? cached_failure(status, why, whylen) : -ENOTCONN;
        set_errmsg(r, why);
        r->cached_backoff_ms =
            r->cached_backoff_ms ? CP_MIN(r->cached_backoff_ms * 2, CACHED_BACKOFF_MAX_MS) : 1000;
        r->cached_retry_ms = now + r->cached_backoff_ms;
        cp_complain(
            &r->cached_complaint, now, MODULE,
            "cannot connect to rrdcached, updates are lost until it is back address=%s err=%s reason=%s",
            cp_log_quote(qaddr, sizeof(qaddr), r->cached_address, strlen(r->cached_address)), cp_err_name(e),
            cp_log_quote(qwhy, sizeof(qwhy), why, strlen(why)));
        return e;
}

/* Runs an rrdcached command that takes a file; when the connection had broken (rrdcached restarted),
 * reconnects at once and tries a second time. */
static int cached_call(struct cp_rrd *r, int (*fn)(const char *path, int n, const char *const *v, void *ctx),
                       const char *path, int n, const char *const *v, char *why, size_t whylen)
{
        int status, e;

        for (int attempt = 0;; attempt++) {
                if ((e = cached_connect(r, why, whylen)) < 0)
                        return e;
                rrd_clear_error();
                status = fn(path, n, v, NULL);
                if (status == 0)
                        return 0;
                e = cached_failure(status, why, whylen);
                if (rrdc_is_connected(r->cached_address) || attempt > 0)
                        return e;
                /* The connection is gone: skip the back-off once, the daemon is probably back. */
                r->cached_retry_ms = 0;
        }
}

static int call_update(const char *path, int n, const char *const *v, void *ctx)
{
        (void)ctx;
        return rrdc_update(path, n, v);
}

static int call_flush(const char *path, int n, const char *const *v, void *ctx)
{
        (void)n;
        (void)v;
        (void)ctx;
        return rrdc_flush(path);
}

/* Flushes rrdcached's pending updates of path to the file, so that reading it sees them. A daemon
 * that answers with an error (say, no such file) is not a failure here: the read that follows tells.
 * Returns 0 or -errno when rrdcached could not be reached. */
static int cached_flush(struct cp_rrd *r, const char *path, char *why, size_t whylen)
{
        int e = cached_call(r, call_flush, path, 0, NULL, why, whylen);

        if (e < 0 && rrdc_is_connected(r->cached_address))
                return 0;
        return e;
}

/* ---- files (worker thread) ---- */

static int kind_of(char **names, unsigned long n)
{
        for (int k = 0; k < _CP_RRD_KIND_MAX; k++)
                if (n == 2 && strcmp(names[0], ds_names[k][0]) == 0 && strcmp(names[1], ds_names[k][1]) == 0)
                        return k;
        return -1;
}

static int create_file(struct cp_rrd *r, const char *path, enum cp_rrd_kind kind, int64_t start, char *why,
                       size_t whylen)
{
        const char *argv[2 + CP_ARRAY_LEN(rra_args)];
        int argc = 0;

        argv[argc++] = create_args[kind][0];
        argv[argc++] = create_args[kind][1];
        for (size_t i = 0; i < CP_ARRAY_LEN(rra_args); i++)
                argv[argc++] = rra_args[i];
        /* no_overwrite: a file that appeared meanwhile is kept (and read back on the next pass). */
        rrd_clear_error();
        if (rrd_create_r2(path, CP_RRD_STEP_S, (time_t)start, 1, NULL, NULL, argc, argv) < 0)
                return rrd_failure(why, whylen);
        atomic_fetch_add(&r->files_created, 1);
        return 0;
}

/* Reads the kind and last update of the file at path into f, creating the file (starting just before
 * first_ts) when it does not exist. With rrdcached, its pending updates are flushed first, so the
 * last update read is the one rrdcached will check against. */
static int load_file(struct cp_rrd *r, struct cp_rrd_file *f, const char *path, enum cp_rrd_kind kind,
                     int64_t first_ts, char *why, size_t whylen)
{
        unsigned long n = 0;
        char **names = NULL, **vals = NULL;
        time_t last = 0;
        int e;

        if (r->cached_address && (e = cached_flush(r, path, why, whylen)) < 0)
                return e;
        rrd_clear_error();
        if (rrd_lastupdate_r(path, &last, &n, &names, &vals) < 0) {
                e = rrd_failure(why, whylen);
                if (e != -ENOENT)
                        return e;
                if ((e = create_file(r, path, kind, first_ts - 1, why, whylen)) < 0)
                        return e;
                f->kind = (int)kind;
                f->last = first_ts - 1;
                return 0;
        }
        f->kind = kind_of(names, n);
        f->last = (int64_t)last;
        free_strv(names, n);
        free_strv(vals, n);
        return 0;
}

static void fmt_gauge(char *buf, size_t len, double v)
{
        if (isfinite(v))
                snprintf(buf, len, "%.12g", v);
        else
                snprintf(buf, len, "U");
}

/* The kWh counter goes in as whole Wh: librrd takes only integers for a DERIVE. */
static void fmt_counter_wh(char *buf, size_t len, double kwh)
{
        double wh = kwh * 1000.0;

        if (isfinite(wh) && fabs(wh) < 9e15)
                snprintf(buf, len, "%lld", (long long)llround(wh));
        else
                snprintf(buf, len, "U");
}

static void fmt_update(char *buf, const struct cp_rrd_item *it)
{
        char a[32], b[32];

        fmt_gauge(a, sizeof(a), it->v[0]);
        if (it->kind == CP_RRD_DISTRICT)
                fmt_counter_wh(b, sizeof(b), it->v[1]);
        else
                fmt_gauge(b, sizeof(b), it->v[1]);
        snprintf(buf, VALUE_MAX, "%lld:%s:%s", (long long)it->ts, a, b);
}

/* Writes n updates to path. Returns 0 or -errno; *ret_written counts the updates that made it (with
 * rrdcached, commands are cut to fit its buffer, and an earlier command may have gone through). */
static int write_updates(struct cp_rrd *r, const char *path, const char **v, size_t n, size_t *ret_written,
                         char *why, size_t whylen)
{
        size_t i = 0, fixed;

        *ret_written = 0;
        if (!r->cached_address) {
                rrd_clear_error();
                if (rrd_update_r(path, NULL, (int)n, v) < 0)
                        return rrd_failure(why, whylen);
                *ret_written = n;
                return 0;
        }
        /* "update <path> v... \n", the path possibly escaped at every byte. */
        fixed = 16 + 2 * strlen(path);
        while (i < n) {
                size_t j = i, size = fixed;
                int e;

                while (j < n && (j == i || size + strlen(v[j]) + 1 <= CACHED_CMD_MAX))
                        size += strlen(v[j++]) + 1;
                e = cached_call(r, call_update, path, (int)(j - i), v + i, why, whylen);
                if (e < 0)
                        return e;
                *ret_written += j - i;
                i = j;
        }
        return 0;
}

static void group_failed(struct cp_rrd *r, struct pass *pass, const char *name, size_t n, int e,
                         const char *why)
{
        char q[300];

        set_errmsg(r, why);
        atomic_fetch_add(&r->updates_failed, n);
        pass->failed += n;
        pass->update_failed = true;
        cp_complain(&r->update_complaint, mono_ms(), MODULE,
                    "cannot update, dropping values file=%s values=%zu err=%s reason=%s", name, n,
                    cp_err_name(e), cp_log_quote(q, sizeof(q), why, strlen(why)));
}

/* Applies the n updates of one file (sorted by time): skips those not after its last update. */
static void apply_file(struct cp_rrd *r, struct pass *pass, const struct pending *p, size_t n)
{
        enum cp_rrd_kind kind = p[0].it->kind;
        const char *name = p[0].name;
        char path[PATH_MAX], why[256] = "";
        char(*vals)[VALUE_MAX] = NULL;
        const char **argv = NULL;
        struct cp_rrd_file *f;
        size_t m = 0, written = 0;
        int64_t after;
        int e;

        pass->files++;
        if ((e = make_path(r, name, path, sizeof(path))) < 0) {
                snprintf(why, sizeof(why), "path too long");
                goto out_failed;
        }
        f = files_get(r, name);
        vals = malloc(n * sizeof(*vals));
        argv = malloc(n * sizeof(*argv));
        if (!f || !vals || !argv) {
                e = -ENOMEM;
                snprintf(why, sizeof(why), "out of memory");
                goto out_failed;
        }
        if (f->last == LAST_UNKNOWN && (e = load_file(r, f, path, kind, p[0].it->ts, why, sizeof(why))) < 0) {
                f->last = LAST_UNKNOWN;
                goto out_failed;
        }
        if (f->kind != (int)kind) {
                /* A facility and a district with the same id share the file name: the first one keeps it. */
                e = -EEXIST;
                snprintf(why, sizeof(why), "the file holds other data sources than a %s's", kind_names[kind]);
                goto out_failed;
        }
        after = f->last;
        for (size_t i = 0; i < n; i++) {
                if (p[i].it->ts <= after)
                        continue;
                after = p[i].it->ts;
                fmt_update(vals[m], p[i].it);
                argv[m] = vals[m];
                m++;
        }
        atomic_fetch_add(&r->updates_skipped, n - m);
        pass->skipped += n - m;
        if (m == 0)
                goto out_free;
        e = write_updates(r, path, argv, m, &written, why, sizeof(why));
        atomic_fetch_add(&r->updates_applied, written);
        pass->applied += written;
        if (e < 0) {
                /* librrd may have applied part of the call: read the last update again next time. */
                f->last = LAST_UNKNOWN;
                n = m - written;
                goto out_failed;
        }
        f->last = after;
        goto out_free;

out_failed:
        atomic_fetch_add(&r->errors, 1);
        group_failed(r, pass, name, n, e, why);
out_free:
        free(vals);
        free(argv);
}

static int cmp_pending(const void *a, const void *b)
{
        const struct pending *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        if (c)
                return c;
        if (x->it->kind != y->it->kind)
                return x->it->kind < y->it->kind ? -1 : 1;
        if (x->it->ts != y->it->ts)
                return x->it->ts < y->it->ts ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Applies every batch of the list, merged: one librrd call per file, however many batches held
 * updates for it (measured with -O2: ~35 us for a call with one time stamp, ~3 us per time stamp
 * in a call with 60; creating a file ~0.5 ms). Frees the list. */
static void apply_batches(struct cp_rrd *r, struct cp_rrd_batch *list)
{
        struct pass pass = {0};
        struct pending *p = NULL;
        size_t total = 0, k = 0;
        int64_t t0 = mono_ms();

        for (struct cp_rrd_batch *b = list; b; b = b->next)
                total += b->n;
        if (total)
                p = malloc(total * sizeof(*p));
        if (total && !p) {
                atomic_fetch_add(&r->updates_failed, total);
                atomic_fetch_add(&r->errors, 1);
                cp_log(CP_LOG_ERR, MODULE, "out of memory merging batches, dropping updates values=%zu",
                       total);
                goto out_free;
        }
        for (struct cp_rrd_batch *b = list; b; b = b->next)
                for (size_t i = 0; i < b->n; i++, k++)
                        p[k] = (struct pending){b->names + b->items[i].name, &b->items[i], k};
        qsort(p, total, sizeof(*p), cmp_pending);
        for (size_t i = 0, j; i < total; i = j) {
                for (j = i + 1;
                     j < total && p[j].it->kind == p[i].it->kind && strcmp(p[j].name, p[i].name) == 0; j++)
                        ;
                apply_file(r, &pass, p + i, j - i);
        }
        if (!pass.update_failed && pass.applied)
                cp_complain_release(&r->update_complaint, MODULE, "updates");
        cp_log(CP_LOG_DEBUG, MODULE, "updates applied files=%zu applied=%zu skipped=%zu failed=%zu ms=%lld",
               pass.files, pass.applied, pass.skipped, pass.failed, (long long)(mono_ms() - t0));
out_free:
        free(p);
        while (list) {
                struct cp_rrd_batch *next = list->next;

                cp_rrd_batch_free(list);
                list = next;
        }
}

/* ---- graphs (worker thread) ---- */

struct args {
        char *v[GRAPH_ARGS_MAX];
        int n;
        bool failed;
};

static void arg(struct args *a, const char *fmt, ...) CP_PRINTF(2, 3);
static void arg(struct args *a, const char *fmt, ...)
{
        va_list ap;

        if (a->failed || a->n >= GRAPH_ARGS_MAX) {
                a->failed = true;
                return;
        }
        va_start(ap, fmt);
        if (vasprintf(&a->v[a->n], fmt, ap) < 0)
                a->failed = true;
        else
                a->n++;
        va_end(ap);
}

static void args_free(struct args *a)
{
        for (int i = 0; i < a->n; i++)
                free(a->v[i]);
}

/* rrdgraph splits DEF on ':'; a ':' in the path is written "\:". */
static void escape_colons(const char *s, char *buf, size_t len)
{
        size_t o = 0;

        for (; *s && o + 3 < len; s++) {
                if (*s == ':')
                        buf[o++] = '\\';
                buf[o++] = *s;
        }
        buf[o] = '\0';
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0. */
static size_t utf8_len(const unsigned char *s)
{
        size_t n;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4;
        else
                return 0;
        for (size_t i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

/* The id as the title shows it: control bytes and broken UTF-8 (which pango would complain about)
 * become '?', and a long id is cut at a character boundary. */
static void title_id(const char *id, char *buf, size_t len)
{
        const unsigned char *s = (const unsigned char *)id;
        size_t o = 0;

        while (*s) {
                size_t n = utf8_len(s);

                if (o + CP_MAX(n, (size_t)1) + 4 > len) {
                        memcpy(buf + o, "...", 3);
                        o += 3;
                        break;
                }
                if (n == 0 || (n == 1 && (*s < 0x20 || *s == 0x7f))) {
                        buf[o++] = '?';
                        s++;
                        continue;
                }
                memcpy(buf + o, s, n);
                o += n;
                s += n;
        }
        buf[o] = '\0';
}

static void graph_args(struct args *a, const struct cp_rrd_graph_req *g, const char *def_path)
{
        int64_t end = (int64_t)time(NULL);
        char title[TITLE_ID_MAX + 8];

        title_id(g->id, title, sizeof(title));
        arg(a, "graph");
        arg(a, "-"); /* into memory: the PNG comes back as the "image" blob */
        arg(a, "--imgformat=PNG");
        arg(a, "--width=%d", CP_RRD_GRAPH_WIDTH);
        arg(a, "--height=%d", CP_RRD_GRAPH_HEIGHT);
        arg(a, "--start=%lld", (long long)(end - periods[g->period].seconds));
        arg(a, "--end=%lld", (long long)end);
        arg(a, "--slope-mode");
        arg(a, "--units-exponent=0"); /* 0.5 kW, not 500 m */
        if (g->kind == CP_RRD_FACILITY) {
                arg(a, "--title=%s \xe2\x80\x94 occupancy, %s", title, periods[g->period].label);
                arg(a, "--vertical-label=occupied spaces (%%)");
                arg(a, "--lower-limit=0");
                arg(a, "--upper-limit=100");
                arg(a, "--rigid");
                arg(a, "DEF:avg=%s:occupancy:AVERAGE", def_path);
                arg(a, "DEF:min=%s:occupancy:MIN", def_path);
                arg(a, "DEF:max=%s:occupancy:MAX", def_path);
                arg(a, "CDEF:pavg=avg,100,*");
                arg(a, "CDEF:pmin=min,100,*");
                arg(a, "CDEF:pmax=max,100,*");
                arg(a, "CDEF:prange=max,min,-,100,*");
        } else {
                arg(a, "--title=%s \xe2\x80\x94 power, %s", title, periods[g->period].label);
                arg(a, "--vertical-label=power (kW)");
                arg(a, "DEF:avg=%s:power:AVERAGE", def_path);
                arg(a, "DEF:min=%s:power:MIN", def_path);
                arg(a, "DEF:max=%s:power:MAX", def_path);
                arg(a, "DEF:wh=%s:energy:AVERAGE", def_path);
                arg(a, "CDEF:pavg=avg,1000,/");
                arg(a, "CDEF:pmin=min,1000,/");
                arg(a, "CDEF:pmax=max,1000,/");
                arg(a, "CDEF:prange=max,min,-,1000,/");
                arg(a, "CDEF:ekw=wh,3.6,*"); /* Wh/s -> kW */
        }
        /* The min-max band: an invisible area up to the minimum, the range stacked on it. */
        arg(a, "AREA:pmin");
        arg(a, "AREA:prange#%s:min-max:STACK", g->kind == CP_RRD_FACILITY ? "c6dbef" : "fdd0a2");
        if (g->kind == CP_RRD_FACILITY) {
                arg(a, "LINE2:pavg#08519c:mean\\l");
        } else {
                arg(a, "LINE2:pavg#d94801:mean");
                arg(a, "LINE1:ekw#2171b5:mean from the energy counter\\l");
                arg(a, "HRULE:0#555555");
        }
        arg(a, "VDEF:vlast=pavg,LAST");
        arg(a, "VDEF:vavg=pavg,AVERAGE");
        arg(a, "VDEF:vmin=pmin,MINIMUM");
        arg(a, "VDEF:vmax=pmax,MAXIMUM");
        if (g->kind == CP_RRD_FACILITY) {
                arg(a, "GPRINT:vlast:last %%5.1lf %%%%");
                arg(a, "GPRINT:vavg:mean %%5.1lf %%%%");
                arg(a, "GPRINT:vmin:min %%5.1lf %%%%");
                arg(a, "GPRINT:vmax:max %%5.1lf %%%%\\l");
        } else {
                arg(a, "GPRINT:vlast:last %%8.2lf kW");
                arg(a, "GPRINT:vavg:mean %%8.2lf kW");
                arg(a, "GPRINT:vmin:min %%8.2lf kW");
                arg(a, "GPRINT:vmax:max %%8.2lf kW\\l");
        }
}

/* Renders g into g->png. Returns 0 or -errno with why set. */
static int render_graph(struct cp_rrd *r, struct cp_rrd_graph_req *g, char *why, size_t whylen)
{
        char path[PATH_MAX], def_path[2 * PATH_MAX];
        char **names = NULL, **vals = NULL;
        struct args a = {.n = 0};
        unsigned long n = 0;
        rrd_info_t *info, *i;
        time_t last;
        int e, kind;

        if ((e = make_path(r, g->name, path, sizeof(path))) < 0) {
                snprintf(why, whylen, "path too long");
                return e;
        }
        rrd_clear_error();
        if (rrd_lastupdate_r(path, &last, &n, &names, &vals) < 0)
                return rrd_failure(why, whylen);
        kind = kind_of(names, n);
        free_strv(names, n);
        free_strv(vals, n);
        if (kind != (int)g->kind) {
                snprintf(why, whylen, "the file holds no %s series", kind_names[g->kind]);
                return -ENOENT;
        }
        if (r->cached_address && (e = cached_flush(r, path, why, whylen)) < 0) {
                char q[300];

                /* Best-effort: the graph shows what reached the file. */
                cp_log(CP_LOG_DEBUG, MODULE,
                       "cannot flush before graphing, rendering what is on disk file=%s err=%s reason=%s",
                       g->name, cp_err_name(e), cp_log_quote(q, sizeof(q), why, strlen(why)));
        }
        escape_colons(path, def_path, sizeof(def_path));
        graph_args(&a, g, def_path);
        if (a.failed) {
                e = -ENOMEM;
                snprintf(why, whylen, "out of memory building the arguments");
                goto out_free_args;
        }
        rrd_clear_error();
        info = rrd_graph_v(a.n, a.v);
        if (!info) {
                e = rrd_failure(why, whylen);
                goto out_free_args;
        }
        for (i = info; i; i = i->next)
                if (i->type == RD_I_BLO && strcmp(i->key, "image") == 0)
                        break;
        e = 0;
        if (!i || !i->value.u_blo.size) {
                e = -EIO;
                snprintf(why, whylen, "librrd returned no image");
        } else if (!(g->png = malloc(i->value.u_blo.size))) {
                e = -ENOMEM;
                snprintf(why, whylen, "out of memory");
        } else {
                memcpy(g->png, i->value.u_blo.ptr, i->value.u_blo.size);
                g->len = i->value.u_blo.size;
        }
        rrd_info_free(info);
out_free_args:
        args_free(&a);
        return e;
}

static void run_graph(struct cp_rrd *r, struct cp_rrd_graph_req *g)
{
        char why[256] = "", q[300];

        g->err = render_graph(r, g, why, sizeof(why));
        if (g->err == 0) {
                atomic_fetch_add(&r->graphs_rendered, 1);
                cp_complain_release(&r->graph_complaint, MODULE, "graphs");
                return;
        }
        atomic_fetch_add(&r->graphs_failed, 1);
        if (g->err == -ENOENT) {
                cp_log(CP_LOG_DEBUG, MODULE, "no series to graph file=%s kind=%s reason=%s", g->name,
                       kind_names[g->kind], cp_log_quote(q, sizeof(q), why, strlen(why)));
                return;
        }
        atomic_fetch_add(&r->errors, 1);
        set_errmsg(r, why);
        cp_complain(&r->graph_complaint, mono_ms(), MODULE,
                    "cannot render a graph file=%s period=%s err=%s reason=%s", g->name,
                    periods[g->period].name, cp_err_name(g->err),
                    cp_log_quote(q, sizeof(q), why, strlen(why)));
}

/* ---- the worker ---- */

static void worker_main(void *arg)
{
        struct cp_rrd *r = arg;
        sigset_t set;

        /* librrd's client writes to the rrdcached socket with send() without MSG_NOSIGNAL: a daemon that
         * went away must give EPIPE here, not kill the process (main.c ignores SIGPIPE too, but this
         * module must not depend on it). */
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        (void)pthread_sigmask(SIG_BLOCK, &set, NULL);

        uv_mutex_lock(&r->mu);
        for (;;) {
                struct cp_rrd_graph_req *g;
                struct cp_rrd_batch *list;

                while (!r->batch_head && !r->graph_head && !r->stop)
                        uv_cond_wait(&r->cv, &r->mu);
                /* Graphs first: a person waits for them. Once stopping, they are cancelled instead. */
                if (r->graph_head && !r->stop) {
                        g = r->graph_head;
                        r->graph_head = g->next;
                        if (!r->graph_head)
                                r->graph_tail = NULL;
                        r->graph_count--;
                        uv_mutex_unlock(&r->mu);

                        g->next = NULL;
                        run_graph(r, g);

                        uv_mutex_lock(&r->mu);
                        if (r->done_tail)
                                r->done_tail->next = g;
                        else
                                r->done_head = g;
                        r->done_tail = g;
                        uv_async_send(&r->async);
                        continue;
                }
                if (!r->batch_head)
                        break; /* stopping, and every batch is applied */
                list = r->batch_head;
                r->batch_head = r->batch_tail = NULL;
                r->batch_count = 0;
                atomic_store(&r->queue_depth, 0);
                uv_mutex_unlock(&r->mu);

                apply_batches(r, list);

                uv_mutex_lock(&r->mu);
                uv_async_send(&r->async); /* progress, for whoever watches the counters */
        }
        uv_mutex_unlock(&r->mu);
        if (r->cached_address)
                (void)rrdc_disconnect();
        uv_mutex_lock(&r->mu);
        r->worker_done = true;
        uv_mutex_unlock(&r->mu);
        uv_async_send(&r->async);
}

/* ---- the loop side ---- */

static void deliver(struct cp_rrd_graph_req *list, int err)
{
        while (list) {
                struct cp_rrd_graph_req *next = list->next;

                if (err)
                        list->cb(list->ud, err, NULL, 0);
                else
                        list->cb(list->ud, list->err, list->png, list->len);
                free(list);
                list = next;
        }
}

static void on_async_closed(uv_handle_t *h)
{
        struct cp_rrd *r = cp_container_of(h, struct cp_rrd, async);
        void (*on_stopped)(struct cp_rrd * r) = r->on_stopped;

        uv_cond_destroy(&r->cv);
        uv_mutex_destroy(&r->mu);
        free(r->dir);
        r->dir = NULL;
        free(r->cached_address);
        r->cached_address = NULL;
        if (on_stopped)
                on_stopped(r); /* last: it may free r */
}

static void on_async(uv_async_t *a)
{
        struct cp_rrd *r = cp_container_of(a, struct cp_rrd, async);
        struct cp_rrd_graph_req *done, *cancelled;
        struct cp_rrd_batch *left;
        bool finished;

        uv_mutex_lock(&r->mu);
        done = r->done_head;
        r->done_head = r->done_tail = NULL;
        finished = r->worker_done && r->running;
        uv_mutex_unlock(&r->mu);
        deliver(done, 0);
        if (!finished)
                return;

        /* The worker is past its loop: joining waits at most for it to return. */
        uv_thread_join(&r->thread);
        r->running = false;
        uv_mutex_lock(&r->mu);
        done = r->done_head;
        cancelled = r->graph_head;
        left = r->batch_head;
        r->done_head = r->done_tail = NULL;
        r->graph_head = r->graph_tail = NULL;
        r->batch_head = r->batch_tail = NULL;
        r->graph_count = r->batch_count = 0;
        uv_mutex_unlock(&r->mu);
        deliver(done, 0);
        for (struct cp_rrd_graph_req *g = cancelled; g; g = g->next)
                atomic_fetch_add(&r->graphs_failed, 1);
        deliver(cancelled, -ECANCELED);
        while (left) { /* none: the worker drains them before it exits */
                struct cp_rrd_batch *next = left->next;

                cp_rrd_batch_free(left);
                left = next;
        }
        files_clear(r);
        uv_close((uv_handle_t *)&r->async, on_async_closed);
}

int cp_rrd_start(struct cp_rrd *r, uv_loop_t *loop, const char *dir, const char *cached_address, char *err,
                 size_t errlen)
{
        char buf[128];
        struct stat st;
        int e;

        if (!dir || !*dir) {
                snprintf(err, errlen, "no directory for the rrd files");
                return -EINVAL;
        }
        if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
                e = -errno;
                snprintf(err, errlen, "cannot create %s: %s", dir, strerror_r(-e, buf, sizeof(buf)));
                return e;
        }
        if (stat(dir, &st) < 0) {
                e = -errno;
                snprintf(err, errlen, "cannot stat %s: %s", dir, strerror_r(-e, buf, sizeof(buf)));
                return e;
        }
        if (!S_ISDIR(st.st_mode)) {
                snprintf(err, errlen, "%s is not a directory", dir);
                return -ENOTDIR;
        }
        /* Absolute: rrdcached resolves relative paths against its own directory. */
        r->dir = realpath(dir, NULL);
        if (!r->dir) {
                e = -errno;
                snprintf(err, errlen, "cannot resolve %s: %s", dir, strerror_r(-e, buf, sizeof(buf)));
                return e;
        }
        if (cached_address && *cached_address && !(r->cached_address = strdup(cached_address))) {
                e = -ENOMEM;
                snprintf(err, errlen, "out of memory");
                goto out_free_dir;
        }
        if (!r->queue_max)
                r->queue_max = CP_RRD_QUEUE_MAX;
        r->loop = loop;
        if ((e = uv_mutex_init(&r->mu)) < 0) {
                snprintf(err, errlen, "cannot create a mutex");
                goto out_free_address;
        }
        if ((e = uv_cond_init(&r->cv)) < 0) {
                snprintf(err, errlen, "cannot create a condition variable");
                goto out_destroy_mutex;
        }
        if ((e = uv_async_init(loop, &r->async, on_async)) < 0) {
                snprintf(err, errlen, "cannot create the async handle: %s", uv_strerror(e));
                goto out_destroy_cond;
        }
        r->running = true;
        if ((e = uv_thread_create(&r->thread, worker_main, r)) < 0) {
                r->running = false;
                snprintf(err, errlen, "cannot start the rrd thread: %s", uv_strerror(e));
                uv_close((uv_handle_t *)&r->async, NULL);
                goto out_destroy_cond;
        }
        return 0;

out_destroy_cond:
        uv_cond_destroy(&r->cv);
out_destroy_mutex:
        uv_mutex_destroy(&r->mu);
out_free_address:
        free(r->cached_address);
        r->cached_address = NULL;
out_free_dir:
        free(r->dir);
        r->dir = NULL;
        return e;
}

void cp_rrd_stop(struct cp_rrd *r, void (*on_stopped)(struct cp_rrd *r))
{
        uv_mutex_lock(&r->mu);
        if (r->stop) {
                uv_mutex_unlock(&r->mu);
                return;
        }
        r->stop = true;
        r->on_stopped = on_stopped;
        uv_cond_signal(&r->cv);
        uv_mutex_unlock(&r->mu);
        uv_async_send(&r->async);
}

void cp_rrd_submit_take(struct cp_rrd *r, struct cp_rrd_batch *b)
{
        struct cp_rrd_batch *dropped = NULL;
        size_t queued;

        if (!b)
                return;
        if (!b->n) {
                cp_rrd_batch_free(b);
                return;
        }
        b->next = NULL;
        uv_mutex_lock(&r->mu);
        if (r->stop) {
                dropped = b;
        } else {
                if (r->batch_count >= r->queue_max) {
                        /* The oldest goes: the newest values matter most for a graph ending now. */
                        dropped = r->batch_head;
                        r->batch_head = dropped->next;
                        if (!r->batch_head)
                                r->batch_tail = NULL;
                        r->batch_count--;
                        dropped->next = NULL;
                }
                if (r->batch_tail)
                        r->batch_tail->next = b;
                else
                        r->batch_head = b;
                r->batch_tail = b;
                r->batch_count++;
                atomic_store(&r->queue_depth, (int64_t)r->batch_count);
                uv_cond_signal(&r->cv);
        }
        queued = r->batch_count;
        uv_mutex_unlock(&r->mu);

        if (!dropped) {
                cp_complain_expire(&r->drop_complaint, (int64_t)uv_now(r->loop), DROP_QUIET_MS, MODULE,
                                   "rrd queue");
                return;
        }
        atomic_fetch_add(&r->batches_dropped, 1);
        atomic_fetch_add(&r->updates_dropped, dropped->n);
        cp_complain(&r->drop_complaint, (int64_t)uv_now(r->loop), MODULE,
                    "%s, dropping a batch values=%zu queued=%zu", r->stop ? "stopping" : "queue full",
                    dropped->n, queued);
        cp_rrd_batch_free(dropped);
}

int cp_rrd_graph(struct cp_rrd *r, enum cp_rrd_kind kind, const char *id, enum cp_rrd_period period,
                 cp_rrd_graph_fn cb, void *ud)
{
        struct cp_rrd_graph_req *g;
        size_t idlen;
        int e = 0;

        if ((unsigned)kind >= _CP_RRD_KIND_MAX || (unsigned)period >= _CP_RRD_PERIOD_MAX || !cb || !id)
                return -EINVAL;
        idlen = strlen(id);
        g = calloc(1, sizeof(*g) + idlen + 1);
        if (!g)
                return -ENOMEM;
        if ((e = cp_rrd_file_name(id, g->name, sizeof(g->name))) < 0) {
                free(g);
                return e;
        }
        memcpy(g->id, id, idlen + 1);
        g->kind = kind;
        g->period = period;
        g->cb = cb;
        g->ud = ud;

        uv_mutex_lock(&r->mu);
        if (r->stop)
                e = -ECANCELED;
        else if (r->graph_count >= CP_RRD_GRAPH_QUEUE_MAX)
                e = -EAGAIN;
        if (e < 0) {
                uv_mutex_unlock(&r->mu);
                free(g);
                return e;
        }
        if (r->graph_tail)
                r->graph_tail->next = g;
        else
                r->graph_head = g;
        r->graph_tail = g;
        r->graph_count++;
        uv_cond_signal(&r->cv);
        uv_mutex_unlock(&r->mu);
        return 0;
}

void cp_rrd_get_stats(const struct cp_rrd *r, struct cp_rrd_stats *ret)
{
        ret->updates_applied = atomic_load(&r->updates_applied);
        ret->updates_skipped = atomic_load(&r->updates_skipped);
        ret->updates_failed = atomic_load(&r->updates_failed);
        ret->updates_dropped = atomic_load(&r->updates_dropped);
        ret->batches_dropped = atomic_load(&r->batches_dropped);
        ret->errors = atomic_load(&r->errors);
        ret->files_created = atomic_load(&r->files_created);
        ret->graphs_rendered = atomic_load(&r->graphs_rendered);
        ret->graphs_failed = atomic_load(&r->graphs_failed);
        ret->queue_depth = atomic_load(&r->queue_depth);
}
