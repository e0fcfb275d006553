/* store-internal.h — shared between the store's own files (store.c, layer.c); not for users
 * of the store. The database is one connection guarded by a mutex: lock, use, unlock. */
#ifndef SL_DAEMON_STORE_INTERNAL_H
#define SL_DAEMON_STORE_INTERNAL_H

#include "error.h"

#include <sqlite3.h>

struct sl_store;

/* Takes the database lock and returns the connection. */
sqlite3 *sl_store_db_lock(struct sl_store *s);
void sl_store_db_unlock(struct sl_store *s);
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

#endif
