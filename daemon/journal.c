/* journal.c - see journal.h. */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "citypulse/cp_common.h"

#define REC_READING 'R'
#define REC_REJECT  'X'
#define HDR         8
#define MAX_BODY    (4u << 20)

int cp_journal_open(struct cp_journal *j, const char *dir)
{
        char **paths = NULL;
        size_t n = 0;
        int r;

        memset(j, 0, sizeof(*j));
        j->fd = -1;
        if (mkdir(dir, 0750) < 0 && errno != EEXIST)
                return -errno;
        j->dir = strdup(dir);
        if (!j->dir)
                return -ENOMEM;
        r = cp_journal_list(dir, &paths, &n);
        if (r < 0)
                return r;
        j->seq = 1;
        if (n) {
                const char *base = strrchr(paths[n - 1], '/');
                j->seq = strtoull(base ? base + 1 : paths[n - 1], NULL, 10) + 1;
        }
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        free(paths);
        return 0;
}

static char *seg_path(const char *dir, uint64_t seq)
{
        char *p;

        if (asprintf(&p, "%s/%016" PRIu64 ".seg", dir, seq) < 0)
                return NULL;
        return p;
}

void cp_journal_close(struct cp_journal *j)
{
        (void)cp_journal_flush(j);
        free(j->pend);
        j->pend = NULL;
        j->pend_cap = 0;
        if (j->fd >= 0)
                close(j->fd);
        j->fd = -1;
        free(j->dir);
        j->dir = NULL;
}

static int ensure_open(struct cp_journal *j)
{
        char *p;

        if (j->fd >= 0)
                return 0;
        p = seg_path(j->dir, j->seq);
        if (!p)
                return -ENOMEM;
        j->fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        free(p);
        if (j->fd < 0)
                return -errno;
        j->bytes = j->records = 0;
        return 0;
}

/* Writes a buffer of whole records. A short write (disk full in the middle) is cut back, so the
 * segment never holds half a record that a later append would follow. */
static int write_direct(struct cp_journal *j, const uint8_t *buf, size_t len, size_t nrec)
{
        size_t off = 0;
        int r;

        if ((r = ensure_open(j)) < 0)
                goto fail;
        while (off < len) {
                ssize_t w = write(j->fd, buf + off, len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        r = -errno;
                        if (off && ftruncate(j->fd, (off_t)j->bytes) < 0)
                                r = -EIO;
                        goto fail;
                }
                off += (size_t)w;
        }
        j->bytes += len;
        j->records += nrec;
        return 0;
fail:
        j->write_errors++;
        j->last_err = r;
        return r;
}

#define PEND_FLUSH (1u << 20)

int cp_journal_flush(struct cp_journal *j)
{
        int r;

        if (!j->pend_len)
                return 0;
        r = write_direct(j, j->pend, j->pend_len, j->pend_records);
        j->pend_len = j->pend_records = 0;
        return r;
}

static int write_records(struct cp_journal *j, const uint8_t *buf, size_t len, size_t nrec)
{
        if (j->pend_len + len > j->pend_cap) {
                size_t ncap = CP_MAX(j->pend_cap * 2, j->pend_len + len + 65536);
                uint8_t *np = realloc(j->pend, ncap);
                if (!np) {
                        /* Cannot buffer: write what is pending and this record now. */
                        int r = cp_journal_flush(j);
                        return r < 0 ? r : write_direct(j, buf, len, nrec);
                }
                j->pend = np;
                j->pend_cap = ncap;
        }
        memcpy(j->pend + j->pend_len, buf, len);
        j->pend_len += len;
        j->pend_records += nrec;
        return j->pend_len >= PEND_FLUSH ? cp_journal_flush(j) : 0;
}

static uint8_t *put(uint8_t *p, const void *v, size_t n)
{
        memcpy(p, v, n);
        return p + n;
}

static void seal(uint8_t *rec, size_t body_len)
{
        uint32_t len = (uint32_t)body_len;
        uint32_t crc = (uint32_t)crc32(0L, rec + HDR, (uInt)body_len);

        memcpy(rec, &len, 4);
        memcpy(rec + 4, &crc, 4);
}

int cp_journal_append_readings(struct cp_journal *j, const struct cp_reading *v, size_t n)
{
        uint8_t stackbuf[8192];
        uint8_t *buf = stackbuf, *p;
        size_t need = 0;
        int r;

        if (n == 0)
                return 0;
        for (size_t i = 0; i < n; i++)
                need += HDR + 2 + 24 + 1 + strlen(v[i].sensor_id);
        if (need > sizeof(stackbuf) && !(buf = malloc(need)))
                return -ENOMEM;
        p = buf;
        for (size_t i = 0; i < n; i++) {
                uint8_t *rec = p;
                uint8_t idlen = (uint8_t)strlen(v[i].sensor_id);
                uint8_t type = REC_READING, q = (uint8_t)v[i].quantity;

                p += HDR;
                p = put(p, &type, 1);
                p = put(p, &q, 1);
                p = put(p, &v[i].ts_ms, 8);
                p = put(p, &v[i].rx_ms, 8);
                p = put(p, &v[i].value, 8);
                p = put(p, &idlen, 1);
                p = put(p, v[i].sensor_id, idlen);
                seal(rec, (size_t)(p - rec - HDR));
        }
        r = write_records(j, buf, (size_t)(p - buf), n);
        if (buf != stackbuf)
                free(buf);
        return r;
}

int cp_journal_append_reject(struct cp_journal *j, const struct cp_jreject *x)
{
        uint16_t tl = (uint16_t)CP_MIN(strlen(x->topic), 65535u);
        uint8_t dl = (uint8_t)CP_MIN(strlen(x->driver), 255u);
        uint8_t rl = (uint8_t)CP_MIN(strlen(x->reason), 255u);
        uint16_t xl = (uint16_t)CP_MIN(strlen(x->text), 65535u);
        uint32_t pl = (uint32_t)CP_MIN(x->payload_len, (size_t)MAX_BODY - 70000u);
        size_t body = 1 + 8 + 2 + 1 + 1 + 2 + 4 + tl + dl + rl + xl + pl;
        uint8_t type = REC_REJECT, *buf, *p;
        int r;

        buf = malloc(HDR + body);
        if (!buf)
                return -ENOMEM;
        p = buf + HDR;
        p = put(p, &type, 1);
        p = put(p, &x->rx_ms, 8);
        p = put(p, &tl, 2);
        p = put(p, &dl, 1);
        p = put(p, &rl, 1);
        p = put(p, &xl, 2);
        p = put(p, &pl, 4);
        p = put(p, x->topic, tl);
        p = put(p, x->driver, dl);
        p = put(p, x->reason, rl);
        p = put(p, x->text, xl);
        if (pl)
                p = put(p, x->payload, pl);
        seal(buf, body);
        r = write_records(j, buf, HDR + body, 1);
        free(buf);
        return r;
}

int cp_journal_rotate(struct cp_journal *j, char **ret_path)
{
        *ret_path = NULL;
        (void)cp_journal_flush(j);
        if (j->fd < 0)
                return 0;
        if (j->records == 0 && j->bytes == 0)
                return 0;
        close(j->fd);
        j->fd = -1;
        j->bytes = j->records = 0;
        *ret_path = seg_path(j->dir, j->seq);
        j->seq++;
        return *ret_path ? 0 : -ENOMEM;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int cp_journal_list(const char *dir, char ***ret_paths, size_t *ret_n)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        char **v = NULL;
        size_t n = 0;

        *ret_paths = NULL;
        *ret_n = 0;
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                char **t, *p;
                if (len != 20 || strcmp(de->d_name + 16, ".seg") != 0 || strspn(de->d_name, "0123456789") != 16)
                        continue;
                if (asprintf(&p, "%s/%s", dir, de->d_name) < 0)
                        goto oom;
                t = realloc(v, (n + 1) * sizeof(*t));
                if (!t) {
                        free(p);
                        goto oom;
                }
                v = t;
                v[n++] = p;
        }
        closedir(d);
        if (n)
                qsort(v, n, sizeof(*v), cmp_str);
        *ret_paths = v;
        *ret_n = n;
        return 0;
oom:
        closedir(d);
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
        return -ENOMEM;
}

static int decode_reading(const uint8_t *b, size_t len, struct cp_reading *r)
{
        uint8_t idlen;

        if (len < 2 + 24 + 1)
                return -EPROTO;
        memset(r, 0, sizeof(*r));
        r->quantity = (enum cp_quantity)b[1];
        memcpy(&r->ts_ms, b + 2, 8);
        memcpy(&r->rx_ms, b + 10, 8);
        memcpy(&r->value, b + 18, 8);
        idlen = b[26];
        if (r->quantity >= _CP_Q_MAX || idlen == 0 || idlen >= CP_SENSOR_ID_MAX || len != 27u + idlen)
                return -EPROTO;
        memcpy(r->sensor_id, b + 27, idlen);
        r->sensor_id[idlen] = '\0';
        return 0;
}

/* Strings in a reject record are not NUL-terminated: copy them out. */
static int decode_reject(const uint8_t *b, size_t len, struct cp_jreject *x, char **bufs)
{
        uint16_t tl, xl;
        uint8_t dl, rl;
        uint32_t pl;
        const uint8_t *p;
        const size_t fixed = 1 + 8 + 2 + 1 + 1 + 2 + 4;

        if (len < fixed)
                return -EPROTO;
        memcpy(&x->rx_ms, b + 1, 8);
        memcpy(&tl, b + 9, 2);
        dl = b[11];
        rl = b[12];
        memcpy(&xl, b + 13, 2);
        memcpy(&pl, b + 15, 4);
        if (len != fixed + tl + dl + rl + xl + pl)
                return -EPROTO;
        p = b + fixed;
        bufs[0] = strndup((const char *)p, tl);
        p += tl;
        bufs[1] = strndup((const char *)p, dl);
        p += dl;
        bufs[2] = strndup((const char *)p, rl);
        p += rl;
        bufs[3] = strndup((const char *)p, xl);
        p += xl;
        if (!bufs[0] || !bufs[1] || !bufs[2] || !bufs[3])
                return -ENOMEM;
        x->topic = bufs[0];
        x->driver = bufs[1];
        x->reason = bufs[2];
        x->text = bufs[3];
        x->payload = p;
        x->payload_len = pl;
        return 0;
}

int64_t cp_journal_read(const char *path, const struct cp_jvisitor *vis, int *ret_torn)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint8_t *buf = NULL;
        struct stat st;
        int64_t count = 0;
        size_t off = 0, size;

        *ret_torn = 0;
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                count = -errno;
                goto out;
        }
        size = (size_t)st.st_size;
        buf = malloc(size ? size : 1);
        if (!buf) {
                count = -ENOMEM;
                goto out;
        }
        for (size_t got = 0; got < size;) {
                ssize_t n = read(fd, buf + got, size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        count = n < 0 ? -errno : -EIO;
                        goto out;
                }
                got += (size_t)n;
        }
        while (off < size) {
                uint32_t len, crc;
                const uint8_t *body;
                int r = 0;

                if (size - off < HDR) {
                        *ret_torn = 1;
                        break;
                }
                memcpy(&len, buf + off, 4);
                memcpy(&crc, buf + off + 4, 4);
                body = buf + off + HDR;
                if (len == 0 || len > MAX_BODY || size - off - HDR < len ||
                    (uint32_t)crc32(0L, body, (uInt)len) != crc) {
                        *ret_torn = 1;
                        break;
                }
                if (body[0] == REC_READING) {
                        struct cp_reading rd;
                        if (decode_reading(body, len, &rd) < 0) {
                                *ret_torn = 1;
                                break;
                        }
                        if (vis->reading)
                                r = vis->reading(vis->ud, &rd);
                } else if (body[0] == REC_REJECT) {
                        struct cp_jreject x;
                        char *bufs[4] = {0};
                        r = decode_reject(body, len, &x, bufs);
                        if (r == -EPROTO) {
                                *ret_torn = 1;
                                break;
                        }
                        if (r == 0 && vis->reject)
                                r = vis->reject(vis->ud, &x);
                        for (int i = 0; i < 4; i++)
                                free(bufs[i]);
                } else {
                        *ret_torn = 1;
                        break;
                }
                if (r) {
                        count = r;
                        goto out;
                }
                count++;
                off += HDR + len;
        }
out:
        free(buf);
        close(fd);
        return count;
}
