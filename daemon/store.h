/* store.h - SQLite history (CONTRACT section 7). A struct cp_store is one connection: the writer is
 * owned by the store thread (storeq), and it is used on the main thread only at start-up, before that
 * thread exists. */
#ifndef CP_STORE_H
#define CP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "citypulse/cp_reading.h"

struct cp_store;

struct cp_import_result {
        uint64_t records;
        uint64_t readings_new;
        uint64_t readings_dup;
        uint64_t rejects;
        int torn;
};

/* Opens (creating and migrating) the database at path, in WAL mode. On error returns -errno-ish and
 * writes SQLite's own message into err. */
int cp_store_open(const char *path, struct cp_store **ret, char *err, size_t errlen);
void cp_store_close(struct cp_store *s);

/* Imports one journal segment in one transaction. 0 on success (the caller may delete the segment);
 * -ENOSPC for a full disk, -EBUSY when locked past the busy timeout, -EIO otherwise; err says more. */
int cp_store_import(struct cp_store *s, const char *segment, struct cp_import_result *res, char *err,
                    size_t errlen);

/* Calls cb for the newest stored reading of every (sensor, quantity). */
int cp_store_load_latest(struct cp_store *s, int (*cb)(void *ud, const struct cp_reading *r), void *ud);

/* Deletes readings observed before readings_before_ms and rejects received before rejects_before_ms,
 * in slices so that no transaction grows large. Returns rows deleted or a negative error. */
int64_t cp_store_prune(struct cp_store *s, int64_t readings_before_ms, int64_t rejects_before_ms, char *err,
                       size_t errlen);

/* An SQLite result code as -errno: 0 for OK/ROW/DONE, -ENOSPC (full), -EBUSY (busy, locked), -ENOMEM,
 * -EACCES (read-only, permission, cannot open), else -EIO. */
int cp_sqlite_errno(int rc);

/* The connection, for the bucket engine on the same thread. */
struct sqlite3;
struct sqlite3 *cp_store_db(struct cp_store *s);
/* Every newly stored reading goes through cp_bucket_note() inside its import transaction (NULL: none). */
struct cp_bucket;
void cp_store_set_bucket(struct cp_store *s, struct cp_bucket *b);

/* True when a write transaction can be begun now (for /readyz). */
int cp_store_schema_version(struct cp_store *s);

#endif
