/* gc.c — the store's side of garbage collection (store-gc.h): layer listing and forgetting,
 * removal of unreferenced contents, the sweep of files no record names. Part of the store
 * module; content removal itself (sl_store_content_forget) lives in store.c next to the
 * in-memory map it must edit. */
#include "store-gc.h"
#include "store-internal.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

int sl_store_layer_infos(struct sl_store *s, struct sl_store_layer_info **ret, size_t *ret_n,
                         sl_error_t *err)
{
    *ret = NULL;
    *ret_n = 0;
    sqlite3 *db = sl_store_db_lock(s);
    sqlite3_stmt *st = NULL;
    struct sl_store_layer_info *v = NULL;
    size_t n = 0;
    int r = 0;
    if (sqlite3_prepare_v2(db, "SELECT digest, state, created FROM layer ORDER BY id", -1, &st,
                           NULL) != SQLITE_OK) {
        r = sl_error_make(err, EIO, "list layers: %s", sqlite3_errmsg(db));
    } else {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *d = (const char *)sqlite3_column_text(st, 0);
            const char *state = (const char *)sqlite3_column_text(st, 1);
            if (!d || !sl_digest_valid(d))
                continue;
            v = sl_xrealloc(v, (n + 1) * sizeof *v);
            snprintf(v[n].digest, sizeof v[n].digest, "%s", d);
            v[n].state = state && strcmp(state, "complete") == 0 ? SL_STORE_LAYER_COMPLETE
                                                                 : SL_STORE_LAYER_INCOMPLETE;
            v[n].recorded = sqlite3_column_int64(st, 2);
            n++;
        }
        sqlite3_finalize(st);
    }
    sl_store_db_unlock(s);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int sl_store_layer_forget(struct sl_store *s, const char *digest, sl_error_t *err)
{
    sqlite3 *db = sl_store_db_lock(s);
    int r = sl_store_db_exec(s, err, "BEGIN", NULL);
    if (r >= 0)
        r = sl_store_db_exec(s, err, "DELETE FROM layer_content WHERE layer = ?", "t", digest);
    if (r >= 0)
        r = sl_store_db_exec(s, err, "DELETE FROM layer WHERE digest = ?", "t", digest);
    int changed = r >= 0 ? sqlite3_changes(db) : 0;
    int resumes = 0;
    if (r >= 0 && changed > 0)
        r = resumes = sl_store_resume_forget_layer(s, db, digest, err);
    if (r >= 0)
        r = sl_store_db_exec(s, err, "COMMIT", NULL);
    else
        sl_store_db_exec(s, NULL, "ROLLBACK", NULL);
    sl_store_db_unlock(s);
    if (r < 0)
        return sl_error_wrap(err, r, "forget layer %s", digest);
    return changed > 0 ? resumes : -ENOENT;
}

/* Digests of contents no layer references. */
static int unreferenced(struct sl_store *s, char (**ret)[SL_DIGEST_STR_LEN], size_t *ret_n,
                        sl_error_t *err)
{
    sqlite3 *db = sl_store_db_lock(s);
    sqlite3_stmt *st = NULL;
    char(*v)[SL_DIGEST_STR_LEN] = NULL;
    size_t n = 0;
    int r = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT digest FROM content WHERE size > 0 AND NOT EXISTS"
                           " (SELECT 1 FROM layer_content WHERE content = content.digest)",
                           -1, &st, NULL) != SQLITE_OK) {
        r = sl_error_make(err, EIO, "gc: list contents: %s", sqlite3_errmsg(db));
    } else {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *d = (const char *)sqlite3_column_text(st, 0);
            if (!d || !sl_digest_valid(d))
                continue;
            v = sl_xrealloc(v, (n + 1) * sizeof *v);
            snprintf(v[n++], SL_DIGEST_STR_LEN, "%s", d);
        }
        sqlite3_finalize(st);
    }
    sl_store_db_unlock(s);
    *ret = v;
    *ret_n = n;
    return r;
}

static bool has_row(struct sl_store *s, const char *digest)
{
    sqlite3 *db = sl_store_db_lock(s);
    sqlite3_stmt *st = NULL;
    bool found = true; /* on error, keep */
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM content WHERE digest = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
        found = sqlite3_step(st) != SQLITE_DONE;
        sqlite3_finalize(st);
    }
    sl_store_db_unlock(s);
    return found;
}

static bool is_hex64(const char *n)
{
    size_t i = 0;
    for (; n[i]; i++)
        if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            return false;
    return i == 64;
}

/* Files in dir `rel` (relative to the store root) named by a digest without a content row. */
static void sweep_dir(struct sl_store *s, const char *rel, struct sl_store_gc_result *res)
{
    int dfd = openat(sl_store_root_fd(s), rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_hex64(de->d_name))
            continue;
        char digest[SL_DIGEST_STR_LEN];
        memcpy(digest, "sha256:", 7);
        memcpy(digest + 7, de->d_name, 65);
        if (has_row(s, digest))
            continue;
        uint64_t freed = 0;
        if (sl_store_content_forget(s, digest, &freed, NULL) > 0) {
            res->files_swept++;
            res->bytes_freed += freed;
            log_debug("store gc: swept %s/%s (no record)", rel, de->d_name);
        }
    }
    closedir(d);
}

int sl_store_gc_contents(struct sl_store *s, struct sl_store_gc_result *ret, sl_error_t *err)
{
    memset(ret, 0, sizeof *ret);
    /* completions waiting for their durable commit would otherwise count as busy */
    int r = sl_store_flush_completed(s, err);
    if (r < 0)
        return r;
    char(*v)[SL_DIGEST_STR_LEN] = NULL;
    size_t n = 0;
    r = unreferenced(s, &v, &n, err);
    enum { BATCH = 512 };
    bool removed[BATCH];
    for (size_t i = 0; r >= 0 && i < n; i += BATCH) {
        size_t k = SL_MIN((size_t)BATCH, n - i);
        uint64_t freed = 0;
        r = sl_store_content_forget_batch(s, (const char(*)[SL_DIGEST_STR_LEN])(v + i), k, removed,
                                          &freed, err);
        for (size_t j = 0; r >= 0 && j < k; j++) {
            if (removed[j])
                ret->contents_removed++;
            else
                ret->contents_busy++;
        }
        ret->bytes_freed += freed;
    }
    free(v);
    if (r < 0)
        return r;
    sweep_dir(s, "content/partial", ret);
    int rfd = openat(sl_store_root_fd(s), "content/sha256",
                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = rfd >= 0 ? fdopendir(rfd) : NULL;
    if (!d && rfd >= 0)
        close(rfd);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strlen(de->d_name) != 2 || de->d_name[0] == '.')
            continue;
        char rel[300];
        snprintf(rel, sizeof rel, "content/sha256/%s", de->d_name);
        sweep_dir(s, rel, ret);
    }
    if (d)
        closedir(d);
    return 0;
}

void sl_store_content_path(struct sl_store *s, const char *digest, char *out, size_t len)
{
    const char *h = digest + 7;
    snprintf(out, len, "%s/content/sha256/%.2s/%s", sl_store_root(s), h, h);
}
