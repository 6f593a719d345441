/* journal.h - the append-only journal that makes an acknowledged message safe.
 *
 * libmosquitto 2.0.11 sends the QoS 1 PUBACK before it calls on_message, so the broker will never
 * redeliver what we received. Every accepted reading and every reject is therefore written, with one
 * write(2), to the current journal segment before on_message returns: once in the kernel's page cache,
 * it survives a crash of this process (kill -9, abort, OOM kill). The store thread later imports whole
 * segments into SQLite in one transaction each and deletes them after the commit; at start-up the
 * segments left over are imported before anything else. Import is idempotent (readings are unique by
 * sensor, quantity and observation time), so a segment imported twice changes nothing.
 *
 * Segments are <dir>/NNNNNNNNNNNNNNNN.seg, numbered in order. A record is
 *   u32 length of body | u32 crc32(body) | body
 * in host byte order (a journal never leaves the machine that wrote it). A torn or corrupt tail (a
 * power cut) stops the import of that segment at the last good record, and is logged. */
#ifndef CP_JOURNAL_H
#define CP_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "citypulse/cp_reading.h"

struct cp_journal {
        char *dir;
        int fd;           /* current segment, -1 when none is open */
        uint64_t seq;     /* number of the current (or next) segment */
        uint64_t bytes;   /* in the current segment */
        uint64_t records; /* in the current segment */
        uint64_t write_errors;
        int last_err;
        /* Records appended since the last flush: a read burst of many messages costs one write(2).
         * The PUBACKs of those messages are only written to the broker's socket after the burst,
         * once cp_journal_flush() has returned, so durability is the same as one write a message. */
        uint8_t *pend;
        size_t pend_len, pend_cap, pend_records;
};

struct cp_jreject {
        int64_t rx_ms;
        const char *topic;
        const char *driver;
        const char *reason; /* label, such as "bad_json" */
        const char *text;   /* what a person reads */
        const void *payload;
        size_t payload_len; /* already cut at rejects.max_payload */
};

/* Callbacks of cp_journal_read(); a non-zero return stops the read with that value. */
struct cp_jvisitor {
        int (*reading)(void *ud, const struct cp_reading *r);
        int (*reject)(void *ud, const struct cp_jreject *x);
        void *ud;
};

/* Opens <dir> (created if missing) for appending; the first segment is numbered after every segment
 * already there. Returns 0 or -errno. */
int cp_journal_open(struct cp_journal *j, const char *dir);
void cp_journal_close(struct cp_journal *j);

/* Appends records to the pending buffer (written by cp_journal_flush(), or at once past 1 MiB).
 * Returns 0 or -errno (ENOMEM; or the error of a forced flush). */
int cp_journal_append_readings(struct cp_journal *j, const struct cp_reading *v, size_t n);
int cp_journal_append_reject(struct cp_journal *j, const struct cp_jreject *x);

/* Writes what was appended since the last flush, with one write(2). Returns 0 or -errno (the pending
 * records are then dropped, counted in write_errors). */
int cp_journal_flush(struct cp_journal *j);

/* Closes the current segment if it holds any record and returns its path in *ret_path (caller frees),
 * or sets *ret_path NULL when there was nothing to hand over. The next append opens a new segment. */
int cp_journal_rotate(struct cp_journal *j, char **ret_path);

/* Lists the segments in dir in order (paths, caller frees each and the array). */
int cp_journal_list(const char *dir, char ***ret_paths, size_t *ret_n);

/* Reads a segment. Returns the number of records read (>= 0), or -errno, or the visitor's value.
 * *ret_torn is set when the segment ended in a damaged record. */
int64_t cp_journal_read(const char *path, const struct cp_jvisitor *vis, int *ret_torn);

#endif
