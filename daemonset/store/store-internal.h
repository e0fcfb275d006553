/* store-internal.h — shared between the store's own files (store.c, layer.c); not for users
 * of the store. The database is one connection guarded by a mutex: lock, use, unlock. */
#ifndef SL_DAEMON_STORE_INTERNAL_H
#define SL_DAEMON_STORE_INTERNAL_H

#include "digest.h"
#include "error.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

struct sl_store;

/* Takes the database lock and returns the connection. */
sqlite3 *sl_store_db_lock(struct sl_store *s);
void sl_store_db_unlock(struct sl_store *s);
/* Whether the store syncs its writes (not --no-sync / o->no_sync). */
bool sl_store_synced(const struct sl_store *s);
/* Runs one statement; parameters by `types`: 't' text, 'i' int64, 'b' blob (pointer, size_t).
 * The caller holds the database lock. */
int sl_store_db_exec(struct sl_store *s, sl_error_t *err, const char *sql, const char *types, ...);
/* Makes every completion so far durable and commits it (one syncfs + one transaction); returns
 * after any batch another thread is flushing. Caller holds no store lock. */
int sl_store_flush_completed(struct sl_store *s, sl_error_t *err);
/* Deletes the resume points (resume.c) whose answer lists `layer`; returns how many. The caller
 * holds the database lock (`db`), usually inside the transaction that forgets the layer. */
int sl_store_resume_forget_layer(struct sl_store *s, sqlite3 *db, const char *layer,
                                 sl_error_t *err);

/* Expecting many contents at once (a layer's, sl_store_layer_put): one transaction and
 * prepared statements instead of a load + insert + reload per content. */
enum sl_store_want_state {
    SL_STORE_WANT_MEMORY, /* already in memory (or a duplicate of an earlier entry): nothing to do
                           */
    SL_STORE_WANT_NEW,    /* no row: inserted by sl_store_expect_rows, adopted in memory after */
    SL_STORE_WANT_KNOWN,  /* a row exists (e.g. after a restart): loaded the usual way after */
};
struct sl_store_want {
    const char *digest; /* validated by sl_store_expect_prepare */
    uint64_t size;
    enum sl_store_want_state state;
};
/* Step 1, no lock held: sorts w by digest, marks duplicates and contents already in memory,
 * refuses invalid digests and size conflicts (-EINVAL). Caller holds the gc lock shared (from
 * here until step 3) so nothing expected here can be collected meanwhile. */
int sl_store_expect_prepare(struct sl_store *s, struct sl_store_want *w, size_t n, sl_error_t *err);
/* Step 2, inside the caller's transaction (database lock held): a row for every content not
 * in memory and not yet in the database (NEW), size checks against existing rows (KNOWN). */
int sl_store_expect_rows(struct sl_store *s, struct sl_store_want *w, size_t n, sl_error_t *err);
/* Step 3, after the commit, no lock held: NEW contents enter memory (partial, no chunk; empty
 * ones complete), KNOWN ones are loaded (content_load: verifies what the disk holds). */
int sl_store_expect_adopt(struct sl_store *s, const struct sl_store_want *w, size_t n,
                          sl_error_t *err);

#endif
