/* trace.c — recorder (fs hook → memory → SQLite) and report (SQLite → trace document v1 →
 * proxy). See trace.h for the heuristics. */
#include "trace.h"

#include "cleanup.h"
#include "http.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITER_PERIOD_MS 100
#define CGROUP_FILE_MAX  8192
#define REPLY_MAX        (1u << 20)

struct ev {
    char *cgroup, *layer, *path;
    int64_t ts_ns;
};

typedef int (*register_fn)(void *ud, const struct sl_delta_header *h, const char *ns,
                           int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud,
                           sl_error_t *err);

struct sl_trace {
    sqlite3 *db;
    pthread_mutex_t db_lock; /* the connection; held for whole transactions */

    pthread_mutex_t buf_lock; /* pending, enabled */
    pthread_cond_t wake;
    struct ev *pending;
    size_t n_pending, cap_pending;
    atomic_bool enabled;
    char *group; /* under db_lock */
    atomic_ulong dropped;

    bool stopping; /* under buf_lock */
    pthread_t writer;
    bool writer_started;

    pthread_mutex_t set_lock; /* serialises optimizer on/off and reports */

    register_fn chain_fn;
    void *chain_ud;
};

static void ev_free(struct ev *e)
{
    free(e->cgroup);
    free(e->layer);
    free(e->path);
}

static int db_err(struct sl_trace *t, sl_error_t *err, const char *what)
{
    return sl_error_make(err, EIO, "trace db: %s: %s", what, sqlite3_errmsg(t->db));
}

static int exec(struct sl_trace *t, const char *sql, sl_error_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(t->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int r = sl_error_make(err, EIO, "trace db: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static void stmt_finalize(sqlite3_stmt **s)
{
    if (*s)
        sqlite3_finalize(*s);
}
#define _cleanup_stmt_ _cleanup_(stmt_finalize)

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- cgroup ---- */

int sl_trace_cgroup_parse(const char *text, char **ret)
{
    *ret = NULL;
    _cleanup_free_ char *v2 = NULL, *v1 = NULL, *first = NULL;
    const char *p = text;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        _cleanup_free_ char *line = sl_xstrndup(p, len);
        p = nl ? nl + 1 : NULL;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/')
            continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (!first)
            first = sl_xstrdup(path);
        if (strcmp(line, "0") == 0 && *ctrls == 0) {
            if (strcmp(path, "/") != 0 && !v2)
                v2 = sl_xstrdup(path);
            continue;
        }
        /* v1: controllers are a comma list */
        _cleanup_free_ char *list = sl_xasprintf(",%s,", ctrls);
        if (!v1 &&
            (strstr(list, ",pids,") || strstr(list, ",memory,") || strstr(list, ",name=systemd,")))
            v1 = sl_xstrdup(path);
    }
    if (v2)
        *ret = TAKE_PTR(v2);
    else if (v1)
        *ret = TAKE_PTR(v1);
    else if (first)
        *ret = TAKE_PTR(first);
    else
        return -ENOENT;
    return 0;
}

static int cgroup_of_pid(pid_t pid, char **ret)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[CGROUP_FILE_MAX];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0 || (len += (size_t)n) == sizeof(buf) - 1)
            break;
    }
    buf[len] = 0;
    return sl_trace_cgroup_parse(buf, ret);
}

/* ---- recording ---- */

void sl_trace_record(struct sl_trace *t, const char *cgroup, const char *layer_digest,
                     const char *path, int64_t ts_ns)
{
    pthread_mutex_lock(&t->buf_lock);
    if (!atomic_load(&t->enabled)) {
        pthread_mutex_unlock(&t->buf_lock);
        return;
    }
    if (t->n_pending >= SL_TRACE_MAX_PENDING) {
        pthread_mutex_unlock(&t->buf_lock);
        atomic_fetch_add(&t->dropped, 1);
        return;
    }
    if (t->n_pending == t->cap_pending) {
        t->cap_pending = t->cap_pending ? t->cap_pending * 2 : 256;
        t->pending = sl_xrealloc(t->pending, t->cap_pending * sizeof(*t->pending));
    }
    t->pending[t->n_pending++] = (struct ev){.cgroup = sl_xstrdup(cgroup),
                                             .layer = sl_xstrdup(layer_digest),
                                             .path = sl_xstrdup(path),
                                             .ts_ns = ts_ns};
    pthread_mutex_unlock(&t->buf_lock);
}

void sl_trace_fs_event(void *ud, const struct sl_fs_event *ev)
{
    struct sl_trace *t = ud;
    if (!t || !atomic_load_explicit(&t->enabled, memory_order_relaxed))
        return;
    if (!ev->layer_digest || !ev->path || ev->pid <= 0)
        return;
    /* The caller may exit before the writer runs: resolve its cgroup now. */
    _cleanup_free_ char *cg = NULL;
    if (cgroup_of_pid(ev->pid, &cg) < 0)
        return;
    if (strcmp(cg, "/") == 0) /* the root cgroup holds host processes, never a container */
        return;
    sl_trace_record(t, cg, ev->layer_digest, ev->path, ev->ts_ns);
}

/* Writes `evs` in one transaction. Caller holds db_lock. */
static int write_events(struct sl_trace *t, struct ev *evs, size_t n, sl_error_t *err)
{
    if (n == 0)
        return 0;
    int r = exec(t, "BEGIN IMMEDIATE", err);
    if (r < 0)
        return r;
    _cleanup_stmt_ sqlite3_stmt *find = NULL, *ins = NULL, *start = NULL, *acc = NULL;
    if (sqlite3_prepare_v2(t->db, "SELECT id FROM traces WHERE cgroup = ?1 AND finished = 0", -1,
                           &find, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(t->db, "INSERT INTO traces(cgroup, grp, start_ns) VALUES(?1, ?2, ?3)",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(t->db, "UPDATE traces SET start_ns = min(start_ns, ?2) WHERE id = ?1",
                           -1, &start, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(t->db,
                           "INSERT INTO accesses(trace, layer, path, ts_ns) VALUES(?1,?2,?3,?4) "
                           "ON CONFLICT(trace, layer, path) DO UPDATE SET "
                           "ts_ns = min(ts_ns, excluded.ts_ns)",
                           -1, &acc, NULL) != SQLITE_OK) {
        r = db_err(t, err, "prepare");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        struct ev *e = &evs[i];
        int64_t id = -1;
        sqlite3_reset(find);
        sqlite3_bind_text(find, 1, e->cgroup, -1, SQLITE_STATIC);
        if (sqlite3_step(find) == SQLITE_ROW)
            id = sqlite3_column_int64(find, 0);
        if (id < 0) {
            sqlite3_reset(ins);
            sqlite3_bind_text(ins, 1, e->cgroup, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 2, t->group ? t->group : SL_TRACE_DEFAULT_GROUP, -1,
                              SQLITE_STATIC);
            sqlite3_bind_int64(ins, 3, e->ts_ns);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                r = db_err(t, err, "insert trace");
                goto fail;
            }
            id = sqlite3_last_insert_rowid(t->db);
        } else {
            sqlite3_reset(start);
            sqlite3_bind_int64(start, 1, id);
            sqlite3_bind_int64(start, 2, e->ts_ns);
            if (sqlite3_step(start) != SQLITE_DONE) {
                r = db_err(t, err, "update trace");
                goto fail;
            }
        }
        sqlite3_reset(acc);
        sqlite3_bind_int64(acc, 1, id);
        sqlite3_bind_text(acc, 2, e->layer, -1, SQLITE_STATIC);
        sqlite3_bind_text(acc, 3, e->path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(acc, 4, e->ts_ns);
        if (sqlite3_step(acc) != SQLITE_DONE) {
            r = db_err(t, err, "insert access");
            goto fail;
        }
    }
    return exec(t, "COMMIT", err);
fail:
    exec(t, "ROLLBACK", NULL);
    return r;
}

/* Caller holds db_lock. Takes the buffer and writes it; on failure the events are lost (and
 * logged): a database that cannot be written will not take them later either. */
static int flush_locked(struct sl_trace *t, sl_error_t *err)
{
    pthread_mutex_lock(&t->buf_lock);
    struct ev *evs = t->pending;
    size_t n = t->n_pending;
    t->pending = NULL;
    t->n_pending = t->cap_pending = 0;
    pthread_mutex_unlock(&t->buf_lock);
    int r = write_events(t, evs, n, err);
    for (size_t i = 0; i < n; i++)
        ev_free(&evs[i]);
    free(evs);
    return r;
}

int sl_trace_flush(struct sl_trace *t, sl_error_t *err)
{
    pthread_mutex_lock(&t->db_lock);
    int r = flush_locked(t, err);
    pthread_mutex_unlock(&t->db_lock);
    return r;
}

static void *writer_main(void *arg)
{
    struct sl_trace *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->buf_lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += WRITER_PERIOD_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (!t->stopping)
            pthread_cond_timedwait(&t->wake, &t->buf_lock, &until);
        bool stop = t->stopping;
        bool work = t->n_pending > 0;
        pthread_mutex_unlock(&t->buf_lock);
        if (work) {
            _cleanup_error_ sl_error_t err = NULL;
            int r = sl_trace_flush(t, &err);
            if (r < 0)
                log_warn("trace: %s", sl_error_msg(err, r));
        }
        if (stop)
            return NULL;
    }
}

/* ---- open/close, state ---- */

static int state_get(struct sl_trace *t, const char *k, char **ret)
{
    *ret = NULL;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->db, "SELECT v FROM state WHERE k = ?1", -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        *ret = sl_xstrdup((const char *)sqlite3_column_text(s, 0));
    return 0;
}

static int state_set(struct sl_trace *t, const char *k, const char *v, sl_error_t *err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->db, "INSERT OR REPLACE INTO state(k, v) VALUES(?1, ?2)", -1, &s,
                           NULL) != SQLITE_OK)
        return db_err(t, err, "prepare state");
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, v, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        return db_err(t, err, "write state");
    return 0;
}

int sl_trace_open(const char *db_path, struct sl_trace **ret, sl_error_t *err)
{
    struct sl_trace *t = sl_xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->db_lock, NULL);
    pthread_mutex_init(&t->buf_lock, NULL);
    pthread_mutex_init(&t->set_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    _cleanup_(sl_trace_closep) struct sl_trace *guard = t;
    int rc = sqlite3_open_v2(db_path, &t->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                 SQLITE_OPEN_EXRESCODE,
                             NULL);
    if (rc != SQLITE_OK)
        return sl_error_make(err, EIO, "open %s: %s", db_path,
                             t->db ? sqlite3_errmsg(t->db) : sqlite3_errstr(rc));
    sqlite3_busy_timeout(t->db, 5000);
    static const char schema[] =
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE IF NOT EXISTS state(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS images(digest TEXT PRIMARY KEY, layers TEXT NOT NULL,"
        "  seen INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS traces(id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  cgroup TEXT NOT NULL, grp TEXT NOT NULL, start_ns INTEGER NOT NULL,"
        "  end_ns INTEGER NOT NULL DEFAULT 0, finished INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX IF NOT EXISTS traces_cgroup ON traces(cgroup, finished);"
        "CREATE TABLE IF NOT EXISTS accesses(trace INTEGER NOT NULL, layer TEXT NOT NULL,"
        "  path TEXT NOT NULL, ts_ns INTEGER NOT NULL,"
        "  PRIMARY KEY(trace, layer, path)) WITHOUT ROWID;";
    int r = exec(t, schema, err);
    if (r < 0)
        return sl_error_wrap(err, r, "open %s", db_path);
    _cleanup_free_ char *en = NULL, *grp = NULL;
    state_get(t, "enabled", &en);
    state_get(t, "group", &grp);
    atomic_store(&t->enabled, en && strcmp(en, "1") == 0);
    t->group = grp ? TAKE_PTR(grp) : sl_xstrdup(SL_TRACE_DEFAULT_GROUP);
    if (pthread_create(&t->writer, NULL, writer_main, t) != 0)
        return sl_error_make(err, EAGAIN, "trace: cannot start the writer thread");
    t->writer_started = true;
    *ret = TAKE_PTR(guard);
    return 0;
}

void sl_trace_close(struct sl_trace *t)
{
    if (!t)
        return;
    if (t->writer_started) {
        pthread_mutex_lock(&t->buf_lock);
        t->stopping = true;
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->buf_lock);
        pthread_join(t->writer, NULL);
    }
    if (t->db) {
        _cleanup_error_ sl_error_t err = NULL;
        int r = sl_trace_flush(t, &err);
        if (r < 0)
            log_warn("trace: %s", sl_error_msg(err, r));
        sqlite3_close(t->db);
    }
    for (size_t i = 0; i < t->n_pending; i++)
        ev_free(&t->pending[i]);
    free(t->pending);
    free(t->group);
    pthread_mutex_destroy(&t->db_lock);
    pthread_mutex_destroy(&t->buf_lock);
    pthread_mutex_destroy(&t->set_lock);
    pthread_cond_destroy(&t->wake);
    free(t);
}

bool sl_trace_enabled(struct sl_trace *t)
{
    return atomic_load(&t->enabled);
}

int sl_trace_set_optimizer(struct sl_trace *t, bool enable, const char *group, int *ret_finished,
                           sl_error_t *err)
{
    if (!group || !*group)
        group = SL_TRACE_DEFAULT_GROUP;
    if (enable && strlen(group) > 256)
        return sl_error_make(err, EINVAL, "group name longer than 256 bytes");
    pthread_mutex_lock(&t->set_lock);
    /* Stop taking events before the last flush so none lands in a new trace afterwards. */
    pthread_mutex_lock(&t->buf_lock);
    atomic_store(&t->enabled, false);
    pthread_mutex_unlock(&t->buf_lock);
    pthread_mutex_lock(&t->db_lock);
    int r = flush_locked(t, err);
    if (r < 0)
        goto out;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->db, "UPDATE traces SET finished = 1, end_ns = ?1 WHERE finished = 0",
                           -1, &s, NULL) != SQLITE_OK) {
        r = db_err(t, err, "prepare");
        goto out;
    }
    sqlite3_bind_int64(s, 1, now_ns());
    if (sqlite3_step(s) != SQLITE_DONE) {
        r = db_err(t, err, "finish traces");
        goto out;
    }
    int finished = sqlite3_changes(t->db);
    if ((r = state_set(t, "enabled", enable ? "1" : "0", err)) < 0 ||
        (r = state_set(t, "group", enable ? group : SL_TRACE_DEFAULT_GROUP, err)) < 0)
        goto out;
    free(t->group);
    t->group = sl_xstrdup(enable ? group : SL_TRACE_DEFAULT_GROUP);
    if (ret_finished)
        *ret_finished = finished;
    r = 0;
out:
    pthread_mutex_unlock(&t->db_lock);
    if (r >= 0 && enable)
        atomic_store(&t->enabled, true);
    pthread_mutex_unlock(&t->set_lock);
    return r;
}

/* ---- images ---- */

int sl_trace_add_image(struct sl_trace *t, const char *manifest_digest, const char *const *layers,
                       size_t n_layers, sl_error_t *err)
{
    struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    for (size_t i = 0; i < n_layers; i++) {
        sl_buf_puts(&b, layers[i]);
        sl_buf_puts(&b, "\n");
    }
    sl_buf_puts(&b, "");
    pthread_mutex_lock(&t->db_lock);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = 0;
    if (sqlite3_prepare_v2(t->db,
                           "INSERT OR REPLACE INTO images(digest, layers, seen) VALUES(?1, ?2, "
                           "(SELECT coalesce(max(seen), 0) + 1 FROM images))",
                           -1, &s, NULL) != SQLITE_OK)
        r = db_err(t, err, "prepare");
    else {
        sqlite3_bind_text(s, 1, manifest_digest, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, b.data ? b.data : "", -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            r = db_err(t, err, "record image");
    }
    pthread_mutex_unlock(&t->db_lock);
    sl_buf_free(&b);
    return r;
}

void sl_trace_chain_register(struct sl_trace *t, register_fn fn, void *ud)
{
    t->chain_fn = fn;
    t->chain_ud = ud;
}

int sl_trace_pull_register(void *ud, const struct sl_delta_header *h, const char *ns,
                           int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud,
                           sl_error_t *err)
{
    struct sl_trace *t = ud;
    _cleanup_free_ const char **layers = sl_xcalloc(h->n_layers + 1, sizeof(*layers));
    for (size_t i = 0; i < h->n_layers; i++)
        layers[i] = h->layers[i].digest;
    _cleanup_error_ sl_error_t e2 = NULL;
    int r = sl_trace_add_image(t, h->digest, layers, h->n_layers, &e2);
    if (r < 0) /* traces lose an image, the pull goes on */
        log_warn("trace: %s", sl_error_msg(e2, r));
    if (t->chain_fn)
        return t->chain_fn(t->chain_ud, h, ns, gate, gate_ud, err);
    return gate ? gate(gate_ud, err) : 0;
}

/* ---- listing ---- */

int sl_trace_list(struct sl_trace *t, json_t **ret, sl_error_t *err)
{
    pthread_mutex_lock(&t->db_lock);
    int r = flush_locked(t, err);
    json_auto_t *arr = json_array();
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (r >= 0 && sqlite3_prepare_v2(t->db,
                                     "SELECT id, cgroup, grp, start_ns, end_ns, finished,"
                                     " (SELECT count(*) FROM accesses WHERE trace = id),"
                                     " (SELECT count(DISTINCT layer) FROM accesses"
                                     "  WHERE trace = id) FROM traces ORDER BY id",
                                     -1, &s, NULL) != SQLITE_OK)
        r = db_err(t, err, "prepare");
    while (r >= 0 && sqlite3_step(s) == SQLITE_ROW)
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:I,s:I,s:b,s:I,s:I}", "id",
                                             (json_int_t)sqlite3_column_int64(s, 0), "cgroup",
                                             (const char *)sqlite3_column_text(s, 1), "group",
                                             (const char *)sqlite3_column_text(s, 2), "startNs",
                                             (json_int_t)sqlite3_column_int64(s, 3), "endNs",
                                             (json_int_t)sqlite3_column_int64(s, 4), "finished",
                                             sqlite3_column_int(s, 5), "accesses",
                                             (json_int_t)sqlite3_column_int64(s, 6), "layers",
                                             (json_int_t)sqlite3_column_int64(s, 7)));
    bool en = atomic_load(&t->enabled);
    json_t *doc = r < 0 ? NULL
                        : json_pack("{s:{s:b,s:s},s:I,s:O}", "optimizer", "enabled", en, "group",
                                    en ? t->group : "", "dropped",
                                    (json_int_t)atomic_load(&t->dropped), "traces", arr);
    pthread_mutex_unlock(&t->db_lock);
    if (r < 0)
        return r;
    *ret = doc;
    return 0;
}

/* ---- report ---- */

struct image {
    char *digest;
    char **layers;
    size_t n_layers;
    int64_t seen;
};

struct tr {
    int64_t id;
    char *grp;
    int64_t start_ns;
    int img; /* index into the images, -1: none explains it */
};

struct acc {
    int img_slot; /* index into the group's images */
    int layer;
    char *path;
    int64_t t;
};

static void images_free(struct image *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].digest);
        for (size_t j = 0; j < v[i].n_layers; j++)
            free(v[i].layers[j]);
        free(v[i].layers);
    }
    free(v);
}

static int image_layer(const struct image *im, const char *layer)
{
    for (size_t j = 0; j < im->n_layers; j++)
        if (strcmp(im->layers[j], layer) == 0)
            return (int)j;
    return -1;
}

static int acc_cmp(const void *a, const void *b)
{
    const struct acc *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return strcmp(x->path, y->path);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Caller holds db_lock. */
static int load_images(struct sl_trace *t, struct image **ret, size_t *ret_n, sl_error_t *err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->db, "SELECT digest, layers, seen FROM images ORDER BY seen DESC", -1,
                           &s, NULL) != SQLITE_OK)
        return db_err(t, err, "prepare");
    struct image *v = NULL;
    size_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        v = sl_xrealloc(v, (n + 1) * sizeof(*v));
        struct image *im = &v[n++];
        *im = (struct image){.digest = sl_xstrdup((const char *)sqlite3_column_text(s, 0)),
                             .seen = sqlite3_column_int64(s, 2)};
        const char *p = (const char *)sqlite3_column_text(s, 1);
        while (p && *p) {
            const char *nl = strchr(p, '\n');
            size_t len = nl ? (size_t)(nl - p) : strlen(p);
            if (len) {
                im->layers = sl_xrealloc(im->layers, (im->n_layers + 1) * sizeof(char *));
                im->layers[im->n_layers++] = sl_xstrndup(p, len);
            }
            p = nl ? nl + 1 : NULL;
        }
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* The image explaining every layer of trace `id` (see trace.h), or -1. */
static int attribute(struct sl_trace *t, int64_t id, const struct image *imgs, size_t n_imgs)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->db, "SELECT DISTINCT layer FROM accesses WHERE trace = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s, 1, id);
    bool *ok = sl_xcalloc(n_imgs + 1, sizeof(bool));
    for (size_t i = 0; i < n_imgs; i++)
        ok[i] = true;
    bool any = false;
    while (sqlite3_step(s) == SQLITE_ROW) {
        any = true;
        const char *layer = (const char *)sqlite3_column_text(s, 0);
        for (size_t i = 0; i < n_imgs; i++)
            if (ok[i] && image_layer(&imgs[i], layer) < 0)
                ok[i] = false;
    }
    int best = -1;
    for (size_t i = 0; any && i < n_imgs; i++) /* images come most recent first */
        if (ok[i] && (best < 0 || imgs[i].n_layers < imgs[best].n_layers))
            best = (int)i;
    free(ok);
    return best;
}

/* One group document from traces `trs[idx[0..n)]`. */
static int build_group(struct sl_trace *t, const char *name, const struct tr *trs,
                       const size_t *idx, size_t n, const struct image *imgs, json_t **ret,
                       int *ret_accesses, sl_error_t *err)
{
    /* the group's images, sorted (like the original), and its clock's origin */
    _cleanup_free_ char **names = sl_xcalloc(n + 1, sizeof(char *));
    size_t n_names = 0;
    int64_t origin = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const struct tr *x = &trs[idx[i]];
        if (x->start_ns < origin)
            origin = x->start_ns;
        bool dup = false;
        for (size_t j = 0; j < n_names; j++)
            dup = dup || strcmp(names[j], imgs[x->img].digest) == 0;
        if (!dup)
            names[n_names++] = imgs[x->img].digest;
    }
    if (n_names > SL_TRACE_DOC_MAX_IMAGES)
        return sl_error_make(err, E2BIG, "group %s: %zu images (at most %d)", name, n_names,
                             SL_TRACE_DOC_MAX_IMAGES);
    qsort(names, n_names, sizeof(char *), str_cmp);

    struct acc *accs = NULL;
    size_t n_accs = 0;
    int r = 0;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->db, "SELECT layer, path, ts_ns FROM accesses WHERE trace = ?1", -1,
                           &s, NULL) != SQLITE_OK)
        return db_err(t, err, "prepare");
    for (size_t i = 0; i < n; i++) {
        const struct tr *x = &trs[idx[i]];
        const struct image *im = &imgs[x->img];
        int slot = 0;
        while (strcmp(names[slot], im->digest) != 0)
            slot++;
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, x->id);
        while (sqlite3_step(s) == SQLITE_ROW) {
            int layer = image_layer(im, (const char *)sqlite3_column_text(s, 0));
            if (layer < 0)
                continue;
            if (n_accs >= SL_TRACE_DOC_MAX_ACCESSES) {
                r = sl_error_make(err, E2BIG, "more than %u accesses to report",
                                  SL_TRACE_DOC_MAX_ACCESSES);
                goto out;
            }
            accs = sl_xrealloc(accs, (n_accs + 1) * sizeof(*accs));
            int64_t ts = sqlite3_column_int64(s, 2) - origin;
            accs[n_accs++] =
                (struct acc){.img_slot = slot,
                             .layer = layer,
                             .path = sl_xstrdup((const char *)sqlite3_column_text(s, 1)),
                             .t = ts < 0 ? 0 : ts};
        }
    }
    qsort(accs, n_accs, sizeof(*accs), acc_cmp);
    json_t *ja = json_array(), *ji = json_array();
    for (size_t j = 0; j < n_names; j++)
        json_array_append_new(ji, json_string(names[j]));
    for (size_t j = 0; j < n_accs; j++)
        json_array_append_new(ja, json_pack("{s:i,s:i,s:s,s:I}", "image", accs[j].img_slot, "layer",
                                            accs[j].layer, "path", accs[j].path, "timeNs",
                                            (json_int_t)accs[j].t));
    *ret = json_pack("{s:s,s:o,s:o}", "name", name, "images", ji, "accesses", ja);
    *ret_accesses = (int)n_accs;
out:
    for (size_t j = 0; j < n_accs; j++)
        free(accs[j].path);
    free(accs);
    return r;
}

int sl_trace_build_report(struct sl_trace *t, json_t **ret_doc, int64_t **ret_ids,
                          size_t *ret_n_ids, int *ret_skipped, sl_error_t *err)
{
    *ret_doc = NULL;
    *ret_ids = NULL;
    *ret_n_ids = 0;
    *ret_skipped = 0;
    pthread_mutex_lock(&t->db_lock);
    struct image *imgs = NULL;
    size_t n_imgs = 0;
    struct tr *trs = NULL;
    size_t n_trs = 0;
    int64_t *ids = NULL;
    size_t *idx = NULL;
    json_auto_t *groups = json_array();
    int total = 0;
    int r = flush_locked(t, err);
    if (r >= 0)
        r = load_images(t, &imgs, &n_imgs, err);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (r >= 0 && sqlite3_prepare_v2(t->db,
                                     "SELECT id, grp, start_ns FROM traces WHERE finished = 1 "
                                     "ORDER BY id",
                                     -1, &s, NULL) != SQLITE_OK)
        r = db_err(t, err, "prepare");
    while (r >= 0 && sqlite3_step(s) == SQLITE_ROW) {
        trs = sl_xrealloc(trs, (n_trs + 1) * sizeof(*trs));
        trs[n_trs] = (struct tr){.id = sqlite3_column_int64(s, 0),
                                 .grp = sl_xstrdup((const char *)sqlite3_column_text(s, 1)),
                                 .start_ns = sqlite3_column_int64(s, 2)};
        trs[n_trs].img = attribute(t, trs[n_trs].id, imgs, n_imgs);
        n_trs++;
    }
    ids = sl_xcalloc(n_trs + 1, sizeof(*ids));
    idx = sl_xcalloc(n_trs + 1, sizeof(*idx));
    bool *done = sl_xcalloc(n_trs + 1, sizeof(bool));
    for (size_t i = 0; r >= 0 && i < n_trs; i++) {
        ids[i] = trs[i].id;
        if (trs[i].img < 0) {
            (*ret_skipped)++;
            log_debug("trace %lld: no pulled image holds all its layers; dropped",
                      (long long)trs[i].id);
            done[i] = true;
        }
    }
    for (size_t i = 0; r >= 0 && i < n_trs; i++) {
        if (done[i])
            continue;
        /* the default group: one document group per trace; a named group: all its traces */
        bool joint = strcmp(trs[i].grp, SL_TRACE_DEFAULT_GROUP) != 0;
        size_t n = 0;
        for (size_t j = i; j < n_trs; j++)
            if (!done[j] && (j == i || (joint && strcmp(trs[j].grp, trs[i].grp) == 0))) {
                idx[n++] = j;
                done[j] = true;
            }
        if (json_array_size(groups) >= SL_TRACE_DOC_MAX_GROUPS) {
            r = sl_error_make(err, E2BIG, "more than %d groups to report", SL_TRACE_DOC_MAX_GROUPS);
            break;
        }
        json_t *g = NULL;
        int na = 0;
        r = build_group(t, trs[i].grp, trs, idx, n, imgs, &g, &na, err);
        if (r >= 0) {
            json_array_append_new(groups, g);
            total += na;
        }
    }
    free(done);
    pthread_mutex_unlock(&t->db_lock);
    if (r >= 0 && total > (int)SL_TRACE_DOC_MAX_ACCESSES)
        r = sl_error_make(err, E2BIG, "more than %u accesses to report", SL_TRACE_DOC_MAX_ACCESSES);
    if (r >= 0) {
        if (json_array_size(groups) > 0)
            *ret_doc = json_pack("{s:i,s:O}", "version", 1, "groups", groups);
        *ret_ids = ids;
        *ret_n_ids = n_trs;
        ids = NULL;
    }
    for (size_t i = 0; i < n_trs; i++)
        free(trs[i].grp);
    free(trs);
    free(ids);
    free(idx);
    images_free(imgs, n_imgs);
    return r;
}

static int delete_traces(struct sl_trace *t, const int64_t *ids, size_t n, sl_error_t *err)
{
    pthread_mutex_lock(&t->db_lock);
    int r = exec(t, "BEGIN IMMEDIATE", err);
    _cleanup_stmt_ sqlite3_stmt *a = NULL, *b = NULL;
    if (r >= 0 &&
        (sqlite3_prepare_v2(t->db, "DELETE FROM accesses WHERE trace = ?1", -1, &a, NULL) !=
             SQLITE_OK ||
         sqlite3_prepare_v2(t->db, "DELETE FROM traces WHERE id = ?1", -1, &b, NULL) != SQLITE_OK))
        r = db_err(t, err, "prepare");
    for (size_t i = 0; r >= 0 && i < n; i++) {
        sqlite3_reset(a);
        sqlite3_reset(b);
        sqlite3_bind_int64(a, 1, ids[i]);
        sqlite3_bind_int64(b, 1, ids[i]);
        if (sqlite3_step(a) != SQLITE_DONE || sqlite3_step(b) != SQLITE_DONE)
            r = db_err(t, err, "delete trace");
    }
    if (r >= 0)
        r = exec(t, "COMMIT", err);
    else
        exec(t, "ROLLBACK", NULL);
    pthread_mutex_unlock(&t->db_lock);
    return r;
}

int sl_trace_report(struct sl_trace *t, const char *proxy_url, const char *auth,
                    struct sl_trace_report_result *res, sl_error_t *err)
{
    *res = (struct sl_trace_report_result){0};
    pthread_mutex_lock(&t->set_lock);
    json_auto_t *doc = NULL;
    _cleanup_free_ int64_t *ids = NULL;
    size_t n_ids = 0;
    int r = sl_trace_build_report(t, &doc, &ids, &n_ids, &res->skipped, err);
    if (r < 0 || n_ids == 0)
        goto out;
    res->traces = (int)n_ids - res->skipped;
    if (doc) {
        json_t *groups = json_object_get(doc, "groups");
        res->groups = (int)json_array_size(groups);
        size_t gi;
        json_t *g;
        json_array_foreach(groups, gi, g)
        {
            res->accesses += (int)json_array_size(json_object_get(g, "accesses"));
            res->images += (int)json_array_size(json_object_get(g, "images"));
        }
        size_t len = 0;
        _cleanup_free_ char *body = sl_json_dump(doc, &len);
        _cleanup_free_ char *url = NULL;
        r = sl_http_url_resolve(proxy_url, "/starlight/report", &url);
        if (r < 0) {
            r = sl_error_make(err, -r, "bad proxy URL %s", proxy_url);
            goto out;
        }
        static const char *const hdrs[] = {"Content-Type: application/json", NULL};
        struct sl_http_request req;
        sl_http_request_init(&req);
        req.method = "POST";
        req.url = url;
        req.headers = hdrs;
        req.authorization = auth;
        req.body = body;
        req.body_len = (int64_t)len;
        req.has_body = true;
        req.retries = 0;
        struct sl_buf reply;
        sl_buf_init(&reply, REPLY_MAX);
        req.body_buf = &reply;
        struct sl_http_response resp = {0};
        struct sl_http_options ho = {.retries = -1, .connect_timeout_s = 10, .timeout_s = 300};
        r = sl_http_perform(&ho, &req, &resp, err);
        res->status = resp.status;
        if (r < 0) {
            /* the transport's message already names the URL */
        } else if (resp.status != 200) {
            r = sl_error_make(err, EBADMSG, "POST %s: HTTP %ld: %.*s", url, resp.status,
                              (int)resp.error_body.len,
                              resp.error_body.data ? resp.error_body.data : "");
        } else if (reply.len) {
            res->reply = json_loadb(reply.data, reply.len, 0, NULL);
        }
        sl_http_response_free(&resp);
        sl_buf_free(&reply);
        if (r < 0)
            goto out; /* the traces stay for the next report */
    }
    r = delete_traces(t, ids, n_ids, err);
    if (r < 0)
        r = sl_error_wrap(err, r, "the proxy took the traces, but they could not be deleted");
out:
    pthread_mutex_unlock(&t->set_lock);
    return r;
}
