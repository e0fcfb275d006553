/* resume.c — resume points of interrupted pulls and the contents a new delta can name as held
 * (store.h). Part of the store module: shares its SQLite connection (store-internal.h). The
 * tables are created on first use so the store's schema stays untouched. A point's layers
 * (pull_resume_layer) let the collector drop it with any of them (store-gc.h). */
#include "store-gc.h"
#include "store-internal.h"
#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>
#include <time.h>

static const char resume_schema[] =
    "CREATE TABLE IF NOT EXISTS pull_resume("
    "  key TEXT PRIMARY KEY, url TEXT NOT NULL, body BLOB, etag TEXT NOT NULL,"
    "  head_len INTEGER NOT NULL, payload_off INTEGER NOT NULL, updated INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS pull_resume_layer("
    "  key TEXT NOT NULL, layer TEXT NOT NULL, PRIMARY KEY(key, layer)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS pull_resume_layer_by_layer ON pull_resume_layer(layer);";

/* Creates the tables when missing; the caller holds the database lock. */
static int schema(sqlite3 *db, sl_error_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, resume_schema, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    int r = sl_error_make(err, EIO, "resume tables: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return r;
}

void sl_store_resume_clear(struct sl_store_resume *r)
{
    if (!r)
        return;
    free(r->url);
    free(r->body);
    free(r->etag);
    for (size_t i = 0; i < r->n_layers; i++)
        free(r->layers[i]);
    free(r->layers);
    memset(r, 0, sizeof(*r));
}

int sl_store_resume_put(struct sl_store *s, const char *key, const struct sl_store_resume *r,
                        sl_error_t *err)
{
    if (!key || !r->url || !r->etag)
        return sl_error_make(err, EINVAL, "resume point: key, url and etag are required");
    sqlite3 *db = sl_store_db_lock(s);
    int rc = schema(db, err);
    if (rc >= 0)
        rc = sl_store_db_exec(s, err, "BEGIN", NULL);
    if (rc < 0) {
        sl_store_db_unlock(s);
        return rc;
    }
    rc = sl_store_db_exec(
        s, err,
        "INSERT INTO pull_resume(key, url, body, etag, head_len, payload_off, updated)"
        " VALUES(?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET url = excluded.url,"
        " body = excluded.body, etag = excluded.etag, head_len = excluded.head_len,"
        " payload_off = excluded.payload_off, updated = excluded.updated",
        "ttbtiii", key, r->url, (const void *)(r->body ? r->body : ""),
        r->body ? strlen(r->body) : (size_t)0, r->etag, (int64_t)r->head_len,
        (int64_t)r->payload_off, (int64_t)time(NULL));
    if (rc >= 0)
        rc = sl_store_db_exec(s, err, "DELETE FROM pull_resume_layer WHERE key = ?", "t", key);
    for (size_t i = 0; rc >= 0 && i < r->n_layers; i++)
        rc = sl_store_db_exec(s, err,
                              "INSERT OR IGNORE INTO pull_resume_layer(key, layer) VALUES(?,?)",
                              "tt", key, r->layers[i]);
    if (rc >= 0)
        rc = sl_store_db_exec(s, err, "COMMIT", NULL);
    else
        sl_store_db_exec(s, NULL, "ROLLBACK", NULL);
    sl_store_db_unlock(s);
    return rc;
}

int sl_store_resume_get(struct sl_store *s, const char *key, struct sl_store_resume *ret,
                        sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    sqlite3 *db = sl_store_db_lock(s);
    int r = schema(db, err);
    sqlite3_stmt *st = NULL;
    if (r >= 0 && sqlite3_prepare_v2(db,
                                     "SELECT url, body, etag, head_len, payload_off FROM "
                                     "pull_resume WHERE key = ?",
                                     -1, &st, NULL) != SQLITE_OK)
        r = sl_error_make(err, EIO, "select resume point: %s", sqlite3_errmsg(db));
    if (r >= 0) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *url = (const char *)sqlite3_column_text(st, 0);
            const char *etag = (const char *)sqlite3_column_text(st, 2);
            int blen = sqlite3_column_bytes(st, 1);
            int64_t hl = sqlite3_column_int64(st, 3), po = sqlite3_column_int64(st, 4);
            if (!url || !etag || hl < 0 || po < 0) {
                r = -ENOENT; /* unusable row: as if none */
            } else {
                ret->url = sl_xstrdup(url);
                ret->etag = sl_xstrdup(etag);
                if (blen > 0)
                    ret->body = sl_xstrndup(sqlite3_column_blob(st, 1), (size_t)blen);
                ret->head_len = (uint64_t)hl;
                ret->payload_off = (uint64_t)po;
            }
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = sl_error_make(err, EIO, "select resume point: %s", sqlite3_errmsg(db));
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (r >= 0 && sqlite3_prepare_v2(db, "SELECT layer FROM pull_resume_layer WHERE key = ?", -1,
                                     &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *d = (const char *)sqlite3_column_text(st, 0);
            if (!d)
                continue;
            ret->layers = sl_xrealloc(ret->layers, (ret->n_layers + 1) * sizeof(*ret->layers));
            ret->layers[ret->n_layers++] = sl_xstrdup(d);
        }
        sqlite3_finalize(st);
    }
    sl_store_db_unlock(s);
    if (r < 0)
        sl_store_resume_clear(ret);
    return r;
}

int sl_store_resume_delete(struct sl_store *s, const char *key, sl_error_t *err)
{
    sqlite3 *db = sl_store_db_lock(s);
    int r = schema(db, err);
    if (r >= 0)
        r = sl_store_db_exec(s, err, "DELETE FROM pull_resume WHERE key = ?", "t", key);
    if (r >= 0)
        r = sl_store_db_exec(s, err, "DELETE FROM pull_resume_layer WHERE key = ?", "t", key);
    sl_store_db_unlock(s);
    return r;
}

int sl_store_resume_forget_layer(struct sl_store *s, sqlite3 *db, const char *layer,
                                 sl_error_t *err)
{
    int r = schema(db, err);
    if (r >= 0)
        r = sl_store_db_exec(s, err,
                             "DELETE FROM pull_resume WHERE key IN"
                             " (SELECT key FROM pull_resume_layer WHERE layer = ?)",
                             "t", layer);
    int n = r >= 0 ? sqlite3_changes(db) : 0;
    if (r >= 0)
        r = sl_store_db_exec(s, err,
                             "DELETE FROM pull_resume_layer WHERE key NOT IN"
                             " (SELECT key FROM pull_resume)",
                             NULL);
    return r < 0 ? r : n;
}

int sl_store_resume_prune_unlinked(struct sl_store *s, int64_t before, uint64_t *ret_n,
                                   sl_error_t *err)
{
    *ret_n = 0;
    sqlite3 *db = sl_store_db_lock(s);
    int r = schema(db, err);
    if (r >= 0)
        r = sl_store_db_exec(s, err,
                             "DELETE FROM pull_resume WHERE updated < ? AND NOT EXISTS"
                             " (SELECT 1 FROM pull_resume_layer l WHERE l.key = pull_resume.key)",
                             "i", before);
    if (r >= 0)
        *ret_n = (uint64_t)sqlite3_changes(db);
    sl_store_db_unlock(s);
    return r < 0 ? sl_error_wrap(err, r, "prune resume points") : 0;
}

int sl_store_held_contents(struct sl_store *s, size_t max, char ***ret, size_t *ret_n,
                           sl_error_t *err)
{
    sqlite3 *db = sl_store_db_lock(s);
    sqlite3_stmt *st = NULL;
    char **v = NULL;
    size_t n = 0;
    int r = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT DISTINCT c.digest FROM layer l"
                           " JOIN layer_content lc ON lc.layer = l.digest"
                           " JOIN content c ON c.digest = lc.content"
                           " WHERE l.state != 'complete' AND c.complete = 1 AND c.size > 0"
                           " ORDER BY c.digest LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK) {
        r = sl_error_make(err, EIO, "list held contents: %s", sqlite3_errmsg(db));
    } else {
        sqlite3_bind_int64(st, 1, (int64_t)max);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *d = (const char *)sqlite3_column_text(st, 0);
            if (!d || !sl_digest_valid(d))
                continue;
            v = sl_xrealloc(v, (n + 1) * sizeof(*v));
            v[n++] = sl_xstrdup(d);
        }
        sqlite3_finalize(st);
    }
    sl_store_db_unlock(s);
    *ret = v;
    *ret_n = n;
    return r;
}
