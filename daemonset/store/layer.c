/* layer.c — layer records and local blob import (store.h). Part of the store module: shares
 * its SQLite connection through the small internal interface in store-internal.h. */
#include "store-gc.h"
#include "store-internal.h"
#include "store.h"

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *state_name(enum sl_store_layer_state st)
{
    return st == SL_STORE_LAYER_COMPLETE ? "complete" : "incomplete";
}

void sl_store_layer_clear(struct sl_store_layer *l)
{
    if (!l)
        return;
    free(l->tail);
    l->tail = NULL;
    l->tail_len = 0;
}

static int layer_put(struct sl_store *s, struct sl_store_layer *l, const struct sl_toc *toc,
                     sl_error_t *err);

int sl_store_layer_put(struct sl_store *s, struct sl_store_layer *l, const struct sl_toc *toc,
                       sl_error_t *err)
{
    /* expect + reference as one step against the collector (store-gc.h) */
    sl_store_gc_lock(s, false);
    int r = layer_put(s, l, toc, err);
    sl_store_gc_unlock(s);
    if (r < 0)
        return r;
    return sl_store_layer_refresh(s, l->digest, toc, &l->state, err);
}

static int layer_put(struct sl_store *s, struct sl_store_layer *l, const struct sl_toc *toc,
                     sl_error_t *err)
{
    if (!sl_digest_valid(l->digest) || !sl_digest_valid(l->toc_digest))
        return sl_error_make(err, EINVAL, "layer record: invalid digest");
    if (strcmp(sl_toc_digest(toc), l->toc_digest) != 0)
        return sl_error_make(err, EINVAL, "layer %s: tree has TOC %s, record says %s", l->digest,
                             sl_toc_digest(toc), l->toc_digest);
    /* Every content is expected in the same transaction as the record and its references: a
     * record then never names contents the store ignores, and a crash keeps all or nothing. */
    size_t n = 0, cap = sl_toc_count(toc);
    _cleanup_free_ struct sl_store_want *w = sl_xcalloc(cap ? cap : 1, sizeof *w);
    for (size_t i = 0; i < cap; i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(toc, i);
        if (e->type == SL_TOC_REG && e->has_digest)
            w[n++] = (struct sl_store_want){.digest = e->digest, .size = e->size};
    }
    int r = sl_store_expect_prepare(s, w, n, err);
    if (r < 0)
        return sl_error_wrap(err, r, "layer %s", l->digest);
    sqlite3 *db = sl_store_db_lock(s);
    sqlite3_stmt *ref = NULL;
    /* The record is durable when this returns, power loss included (the WAL is synced at the
     * commit): the pull registers the image in containerd (fsynced) right after it. */
    bool full = sl_store_synced(s);
    r = full ? sl_store_db_exec(s, err, "PRAGMA synchronous=FULL", NULL) : 0;
    if (r >= 0)
        r = sl_store_db_exec(s, err, "BEGIN", NULL);
    if (r >= 0)
        r = sl_store_expect_rows(s, w, n, err);
    if (r >= 0)
        r = sl_store_db_exec(
            s, err,
            "INSERT INTO layer(digest, toc_digest, blob_size, toc_offset, tail, state, created)"
            " VALUES(?,?,?,?,?,'incomplete',?) ON CONFLICT(digest) DO UPDATE SET"
            " toc_digest = excluded.toc_digest, blob_size = excluded.blob_size,"
            " toc_offset = excluded.toc_offset, tail = excluded.tail, created = excluded.created",
            "ttiibi", l->digest, l->toc_digest, (int64_t)l->blob_size, (int64_t)l->toc_offset,
            (const void *)l->tail, l->tail_len, (int64_t)time(NULL));
    if (r >= 0 && sqlite3_prepare_v2(db,
                                     "INSERT OR IGNORE INTO layer_content(layer, content) "
                                     "VALUES(?,?)",
                                     -1, &ref, NULL) != SQLITE_OK)
        r = sl_error_make(err, EIO, "store database: layer references: %s", sqlite3_errmsg(db));
    for (size_t i = 0; r >= 0 && i < n; i++) {
        if (w[i].size == 0 || (i > 0 && strcmp(w[i].digest, w[i - 1].digest) == 0))
            continue;
        sqlite3_reset(ref);
        sqlite3_bind_text(ref, 1, l->digest, -1, SQLITE_STATIC);
        sqlite3_bind_text(ref, 2, w[i].digest, -1, SQLITE_STATIC);
        int rc = sqlite3_step(ref);
        if (rc != SQLITE_DONE)
            r = sl_error_make(err, rc == SQLITE_FULL ? ENOSPC : EIO,
                              "store database: layer references: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(ref);
    if (r >= 0)
        r = sl_store_db_exec(s, err, "COMMIT", NULL);
    else if (!sqlite3_get_autocommit(db))
        sl_store_db_exec(s, NULL, "ROLLBACK", NULL);
    if (full)
        sl_store_db_exec(s, NULL, "PRAGMA synchronous=NORMAL", NULL);
    if (r >= 0) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT id FROM layer WHERE digest = ?", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_text(st, 1, l->digest, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW)
                l->id = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
    }
    sl_store_db_unlock(s);
    if (r >= 0)
        r = sl_store_expect_adopt(s, w, n, err);
    if (r < 0)
        return sl_error_wrap(err, r, "record layer %s", l->digest);
    return 0;
}

int sl_store_layer_get(struct sl_store *s, const char *digest, struct sl_store_layer *ret,
                       sl_error_t *err)
{
    memset(ret, 0, sizeof *ret);
    sqlite3 *db = sl_store_db_lock(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT id, toc_digest, blob_size, toc_offset, tail, state FROM layer WHERE digest = ?",
        -1, &st, NULL);
    int r = 0;
    if (rc != SQLITE_OK) {
        r = sl_error_make(err, EIO, "select layer: %s", sqlite3_errmsg(db));
    } else {
        sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *td = (const char *)sqlite3_column_text(st, 1);
            ret->id = sqlite3_column_int64(st, 0);
            snprintf(ret->digest, sizeof ret->digest, "%s", digest);
            snprintf(ret->toc_digest, sizeof ret->toc_digest, "%s", td ? td : "");
            ret->blob_size = (uint64_t)sqlite3_column_int64(st, 2);
            ret->toc_offset = (uint64_t)sqlite3_column_int64(st, 3);
            ret->tail_len = (size_t)sqlite3_column_bytes(st, 4);
            ret->tail = sl_xmalloc(ret->tail_len + 1);
            if (ret->tail_len)
                memcpy(ret->tail, sqlite3_column_blob(st, 4), ret->tail_len);
            const char *state = (const char *)sqlite3_column_text(st, 5);
            ret->state = state && strcmp(state, "complete") == 0 ? SL_STORE_LAYER_COMPLETE
                                                                 : SL_STORE_LAYER_INCOMPLETE;
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = sl_error_make(err, EIO, "select layer: %s", sqlite3_errmsg(db));
        }
        sqlite3_finalize(st);
    }
    sl_store_db_unlock(s);
    return r;
}

int sl_store_layer_list(struct sl_store *s, char ***ret, size_t *ret_n, sl_error_t *err)
{
    sqlite3 *db = sl_store_db_lock(s);
    sqlite3_stmt *st = NULL;
    char **v = NULL;
    size_t n = 0;
    int r = 0;
    if (sqlite3_prepare_v2(db, "SELECT digest FROM layer ORDER BY id", -1, &st, NULL) !=
        SQLITE_OK) {
        r = sl_error_make(err, EIO, "list layers: %s", sqlite3_errmsg(db));
    } else {
        while (sqlite3_step(st) == SQLITE_ROW) {
            v = sl_xrealloc(v, (n + 1) * sizeof *v);
            v[n++] = sl_xstrdup((const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
    }
    sl_store_db_unlock(s);
    *ret = v;
    *ret_n = n;
    return r;
}

struct tail_reader {
    const struct sl_store_layer *l;
};

/* Serves the blob's bytes [toc_offset, blob_size) from the record; anything else is absent. */
static int tail_read_at(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err)
{
    const struct sl_store_layer *l = ((struct tail_reader *)ud)->l;
    if (off < l->toc_offset || off - l->toc_offset > l->tail_len ||
        len > l->tail_len - (off - l->toc_offset))
        return sl_error_make(err, EIO,
                             "layer %s: TOC read at %" PRIu64 "+%zu outside the recorded tail",
                             l->digest, off, len);
    memcpy(buf, l->tail + (off - l->toc_offset), len);
    return 0;
}

int sl_store_layer_load_toc(const struct sl_store_layer *l, struct sl_toc **ret, sl_error_t *err)
{
    if (l->toc_offset > l->blob_size || l->blob_size - l->toc_offset != l->tail_len)
        return sl_error_make(err, EINVAL, "layer %s: tail of %zu bytes does not end the blob",
                             l->digest, l->tail_len);
    struct tail_reader tr = {.l = l};
    int r = sl_toc_load(tail_read_at, &tr, l->blob_size, l->toc_digest, ret, err);
    if (r < 0)
        return sl_error_wrap(err, r, "layer %s", l->digest);
    return 0;
}

int sl_store_layer_refresh(struct sl_store *s, const char *digest, const struct sl_toc *toc,
                           enum sl_store_layer_state *ret, sl_error_t *err)
{
    enum sl_store_layer_state st = SL_STORE_LAYER_COMPLETE;
    for (size_t i = 0; i < sl_toc_count(toc) && st == SL_STORE_LAYER_COMPLETE; i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(toc, i);
        if (e->type == SL_TOC_REG && e->has_digest && e->size > 0 &&
            sl_store_content_state(s, e->digest) != SL_STORE_COMPLETE)
            st = SL_STORE_LAYER_INCOMPLETE;
    }
    /* The contents' completion commits come first, so a durable "complete" layer never names
     * contents whose own completion could still be lost. */
    int r = sl_store_flush_completed(s, err);
    if (r < 0)
        return r;
    sl_store_db_lock(s);
    r = sl_store_db_exec(s, err, "UPDATE layer SET state = ? WHERE digest = ?", "tt",
                         state_name(st), digest);
    sl_store_db_unlock(s);
    if (r >= 0 && st == SL_STORE_LAYER_COMPLETE)
        r = sl_store_sync(s, err);
    if (r < 0)
        return r;
    if (ret)
        *ret = st;
    return 0;
}

/* ---------------------------------------------------------------- import */

static int hash_blob(int fd, uint64_t size, char out[SL_DIGEST_STR_LEN], sl_error_t *err)
{
    enum { PIECE = 1 << 20 };
    _cleanup_free_ uint8_t *buf = sl_xmalloc(PIECE);
    struct sl_sha256 h;
    sl_sha256_init(&h);
    for (uint64_t off = 0; off < size;) {
        size_t n = (size_t)SL_MIN((uint64_t)PIECE, size - off);
        int r = sl_toc_pread_fd(&fd, buf, n, off, err);
        if (r < 0) {
            sl_sha256_done(&h);
            return r;
        }
        sl_sha256_update(&h, buf, n);
        off += n;
    }
    sl_sha256_final(&h, out);
    return 0;
}

int sl_store_import_blob(struct sl_store *s, int fd, const char *layer_digest, bool toc_only,
                         char ret_digest[SL_DIGEST_STR_LEN], struct sl_toc **ret_toc,
                         sl_error_t *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return sl_error_make(err, errno, "stat blob: %s", strerror(errno));
    uint64_t size = (uint64_t)st.st_size;
    struct sl_store_layer l = {0};
    if (layer_digest) {
        if (!sl_digest_valid(layer_digest))
            return sl_error_make(err, EINVAL, "invalid layer digest `%.80s`", layer_digest);
        snprintf(l.digest, sizeof l.digest, "%s", layer_digest);
    } else {
        int r = hash_blob(fd, size, l.digest, err);
        if (r < 0)
            return sl_error_wrap(err, r, "hash blob");
    }
    _cleanup_toc_ struct sl_toc *toc = NULL;
    int r = sl_toc_load(sl_toc_pread_fd, &fd, size, NULL, &toc, err);
    if (r < 0)
        return sl_error_wrap(err, r, "layer %s", l.digest);
    snprintf(l.toc_digest, sizeof l.toc_digest, "%s", sl_toc_digest(toc));
    l.blob_size = size;
    l.toc_offset = sl_toc_offset(toc);
    l.tail_len = (size_t)(size - l.toc_offset);
    if (l.tail_len > (64u << 20))
        return sl_error_make(err, EFBIG, "layer %s: TOC tail of %zu bytes", l.digest, l.tail_len);
    l.tail = sl_xmalloc(l.tail_len + 1);
    r = sl_toc_pread_fd(&fd, l.tail, l.tail_len, l.toc_offset, err);
    if (r >= 0)
        r = sl_store_layer_put(s, &l, toc, err);
    sl_store_layer_clear(&l);
    if (r < 0)
        return r;

    uint8_t *buf = NULL;
    size_t buf_len = 0;
    for (size_t i = 0; !toc_only && r >= 0 && i < sl_toc_count(toc); i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(toc, i);
        if (e->type != SL_TOC_REG || !e->has_digest || e->size == 0 ||
            sl_store_content_state(s, e->digest) == SL_STORE_COMPLETE)
            continue;
        for (size_t k = 0; r >= 0 && k < e->n_chunks; k++) {
            const struct sl_toc_chunk *c = &e->chunks[k];
            if (c->compressed_size > (uint64_t)SL_TOC_MAX_CHUNK * 2) {
                r = sl_error_make(err, EFBIG, "chunk member of %" PRIu64 " bytes",
                                  c->compressed_size);
                break;
            }
            if (c->compressed_size > buf_len) {
                buf_len = (size_t)c->compressed_size;
                buf = sl_xrealloc(buf, buf_len);
            }
            r = sl_toc_pread_fd(&fd, buf, (size_t)c->compressed_size, c->offset, err);
            if (r >= 0)
                r = sl_store_put_chunk(s, e->digest, c, buf, (size_t)c->compressed_size, err);
            if (r < 0)
                r = sl_error_wrap(err, r, "layer %s: file `%s`", l.digest, e->name);
        }
    }
    free(buf);
    if (r < 0)
        return r;
    if (!toc_only) {
        r = sl_store_layer_refresh(s, l.digest, toc, NULL, err);
        if (r < 0)
            return r;
    }
    if (ret_digest)
        memcpy(ret_digest, l.digest, SL_DIGEST_STR_LEN);
    if (ret_toc)
        *ret_toc = TAKE_PTR(toc);
    return 0;
}
