/* snapshotter.c — snapshot state machine over SQLite (snapshotter.h).
 *
 * Schema (user_version 1):
 *   snapshots(id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE, parent_id → snapshots.id,
 *             kind 1|2|3, created_ns, updated_ns, size, inodes)
 *   labels(snapshot_id → snapshots.id ON DELETE CASCADE, key, value), primary key (id, key)
 * AUTOINCREMENT keeps ids (= directory names) from ever being reused, so a directory left by a
 * crash can never be mistaken for a later snapshot's. A committed snapshot keeps the id of the
 * active one it came from (its row is renamed), as in containerd. */
#include "snapshotter.h"
#include "cleanup.h"
#include "snapfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <regex.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 1

struct sl_snap {
    char *root;
    char *snapdir; /* ROOT/snapshots */
    sqlite3 *db;
    pthread_mutex_t lock; /* serialises every use of db */
    struct sl_snap_hooks hooks;
    bool index_off; /* overlay "index=off", as containerd sets when the kernel knows it */
};

/* One ancestor as the mount computation needs it. */
struct chain_elem {
    int64_t id;
    char *layer; /* SL_SNAP_LABEL_STARLIGHT_LAYER value, or NULL */
};

struct row {
    int64_t id;
    int64_t parent_id; /* 0 = none */
    enum sl_snap_kind kind;
    int64_t size, inodes;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int db_err(struct sl_snap *s, sl_error_t *err, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db);
    int code = (rc & 0xff) == SQLITE_CONSTRAINT ? EEXIST
               : (rc & 0xff) == SQLITE_BUSY     ? EBUSY
               : (rc & 0xff) == SQLITE_FULL     ? ENOSPC
                                                : EIO;
    return sl_error_make(err, code, "snapshot database: %s: %s", what, sqlite3_errmsg(s->db));
}

static int db_exec(struct sl_snap *s, const char *sql, sl_error_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int r = sl_error_make(err, EIO, "snapshot database: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static void stmt_finalize(sqlite3_stmt **st)
{
    if (*st)
        sqlite3_finalize(*st);
}
#define _cleanup_stmt_ _cleanup_(stmt_finalize)

static int prep(struct sl_snap *s, const char *sql, sqlite3_stmt **ret, sl_error_t *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, ret, NULL) != SQLITE_OK)
        return db_err(s, err, "prepare");
    return 0;
}

/* A transaction that rolls back unless committed. */
struct txn {
    struct sl_snap *s;
    bool open;
};

static int txn_begin(struct sl_snap *s, struct txn *t, sl_error_t *err)
{
    int r = db_exec(s, "BEGIN IMMEDIATE", err);
    if (r < 0)
        return r;
    t->s = s;
    t->open = true;
    return 0;
}

static int txn_commit(struct txn *t, sl_error_t *err)
{
    int r = db_exec(t->s, "COMMIT", err);
    if (r < 0)
        return r;
    t->open = false;
    return 0;
}

static void txn_end(struct txn *t)
{
    if (t->open)
        (void)db_exec(t->s, "ROLLBACK", NULL);
    t->open = false;
}
#define _cleanup_txn_ _cleanup_(txn_end)

static void unlockp(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}
#define _cleanup_unlock_ _cleanup_(unlockp)

static pthread_mutex_t *lock_db(struct sl_snap *s)
{
    pthread_mutex_lock(&s->lock);
    return &s->lock;
}

static void chain_free(struct chain_elem *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(c[i].layer);
    free(c);
}

const char *sl_snap_kind_name(enum sl_snap_kind k)
{
    switch (k) {
    case SL_SNAP_KIND_VIEW:
        return "view";
    case SL_SNAP_KIND_ACTIVE:
        return "active";
    case SL_SNAP_KIND_COMMITTED:
        return "committed";
    default:
        return "unknown";
    }
}

const char *sl_snap_root(const struct sl_snap *s)
{
    return s->root;
}

void sl_snap_info_clear(struct sl_snap_info *info)
{
    if (!info)
        return;
    free(info->name);
    free(info->parent);
    for (size_t i = 0; i < info->nlabels; i++) {
        free(info->labels[i].key);
        free(info->labels[i].value);
    }
    free(info->labels);
    *info = (struct sl_snap_info){0};
}

void sl_snap_mounts_clear(struct sl_snap_mounts *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].type);
        free(m->v[i].source);
        for (size_t j = 0; j < m->v[i].noptions; j++)
            free(m->v[i].options[j]);
        free(m->v[i].options);
    }
    free(m->v);
    *m = (struct sl_snap_mounts){0};
}

void sl_snap_info_list_clear(struct sl_snap_info_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        sl_snap_info_clear(&l->v[i]);
    free(l->v);
    *l = (struct sl_snap_info_list){0};
}

/* ---- schema ----------------------------------------------------------------------------- */

static const char schema_v1[] =
    "CREATE TABLE snapshots ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  key TEXT NOT NULL UNIQUE,"
    "  parent_id INTEGER REFERENCES snapshots(id),"
    "  kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),"
    "  created_ns INTEGER NOT NULL,"
    "  updated_ns INTEGER NOT NULL,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  inodes INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX snapshots_parent ON snapshots(parent_id);"
    "CREATE TABLE labels ("
    "  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  PRIMARY KEY (snapshot_id, key)) WITHOUT ROWID;"
    "PRAGMA user_version = 1;";

static int migrate(struct sl_snap *s, sl_error_t *err)
{
    _cleanup_txn_ struct txn t = {0};
    int r = txn_begin(s, &t, err);
    if (r < 0)
        return r;
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    r = prep(s, "PRAGMA user_version", &st, err);
    if (r < 0)
        return r;
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    if (version > SCHEMA_VERSION)
        return sl_error_make(err, EPROTO,
                             "snapshot database has schema %d, newer than this daemon's (%d)",
                             version, SCHEMA_VERSION);
    if (version < 1) {
        r = db_exec(s, schema_v1, err);
        if (r < 0)
            return r;
    }
    return txn_commit(&t, err);
}

int sl_snap_open(const char *root, const struct sl_snap_hooks *hooks, struct sl_snap **ret,
                 sl_error_t *err)
{
    _cleanup_free_ char *snapdir = sl_xasprintf("%s/snapshots", root);
    int r = sl_snapfs_mkdir_p(snapdir, 0700);
    if (r < 0)
        return sl_error_make(err, -r, "create %s: %s", snapdir, strerror(-r));

    struct sl_snap *s = sl_xcalloc(1, sizeof(*s));
    s->root = sl_xstrdup(root);
    s->snapdir = TAKE_PTR(snapdir);
    pthread_mutex_init(&s->lock, NULL);
    if (hooks)
        s->hooks = *hooks;
    s->index_off = access("/sys/module/overlay/parameters/index", F_OK) == 0;

    _cleanup_free_ char *dbpath = sl_xasprintf("%s/metadata.db", root);
    if (sqlite3_open_v2(dbpath, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        r = sl_error_make(err, EIO, "open %s: %s", dbpath,
                          s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sl_snap_close(s);
        return r;
    }
    sqlite3_busy_timeout(s->db, 10000);
    /* WAL + synchronous=FULL: a committed call survives a power loss, readers never block. */
    r = db_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                err);
    if (r >= 0)
        r = migrate(s, err);
    if (r >= 0)
        r = sl_snap_cleanup(s, err);
    if (r < 0) {
        sl_snap_close(s);
        return sl_error_wrap(err, r, "snapshotter at %s", root);
    }
    *ret = s;
    return 0;
}

void sl_snap_close(struct sl_snap *s)
{
    if (!s)
        return;
    if (s->db)
        sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s->root);
    free(s->snapdir);
    free(s);
}

/* ---- lookups (lock held) ---------------------------------------------------------------- */

/* 1 found, 0 not found, < 0 error. */
static int get_row(struct sl_snap *s, const char *key, struct row *ret, sl_error_t *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prep(s,
                 "SELECT id, coalesce(parent_id, 0), kind, size, inodes FROM snapshots "
                 "WHERE key = ?",
                 &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return db_err(s, err, "look up snapshot");
    *ret = (struct row){
        .id = sqlite3_column_int64(st, 0),
        .parent_id = sqlite3_column_int64(st, 1),
        .kind = (enum sl_snap_kind)sqlite3_column_int(st, 2),
        .size = sqlite3_column_int64(st, 3),
        .inodes = sqlite3_column_int64(st, 4),
    };
    return 1;
}

static int need_row(struct sl_snap *s, const char *key, struct row *ret, sl_error_t *err)
{
    int r = get_row(s, key, ret, err);
    if (r == 0)
        return sl_error_make(err, ENOENT, "snapshot %s: not found", key);
    return r;
}

static int load_labels(struct sl_snap *s, int64_t id, struct sl_snap_info *info, sl_error_t *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prep(s, "SELECT key, value FROM labels WHERE snapshot_id = ? ORDER BY key", &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(st, 1, id);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (info->nlabels == cap) {
            cap = cap ? cap * 2 : 8;
            info->labels = sl_xrealloc(info->labels, cap * sizeof(*info->labels));
        }
        info->labels[info->nlabels++] = (struct sl_snap_label){
            sl_xstrdup((const char *)sqlite3_column_text(st, 0)),
            sl_xstrdup((const char *)sqlite3_column_text(st, 1)),
        };
    }
    if (rc != SQLITE_DONE)
        return db_err(s, err, "read labels");
    return 0;
}

#define INFO_COLUMNS                                                                               \
    "s.id, s.key, p.key, s.kind, s.created_ns, s.updated_ns FROM snapshots s "                     \
    "LEFT JOIN snapshots p ON p.id = s.parent_id"

static int64_t info_from_stmt(sqlite3_stmt *st, struct sl_snap_info *info)
{
    const char *parent = (const char *)sqlite3_column_text(st, 2);
    *info = (struct sl_snap_info){
        .name = sl_xstrdup((const char *)sqlite3_column_text(st, 1)),
        .parent = parent ? sl_xstrdup(parent) : NULL,
        .kind = (enum sl_snap_kind)sqlite3_column_int(st, 3),
        .created_ns = sqlite3_column_int64(st, 4),
        .updated_ns = sqlite3_column_int64(st, 5),
    };
    return sqlite3_column_int64(st, 0);
}

static int load_info(struct sl_snap *s, const char *key, struct sl_snap_info *ret, sl_error_t *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prep(s, "SELECT " INFO_COLUMNS " WHERE s.key = ?", &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return sl_error_make(err, ENOENT, "snapshot %s: not found", key);
    if (rc != SQLITE_ROW)
        return db_err(s, err, "read snapshot");
    struct sl_snap_info info;
    int64_t id = info_from_stmt(st, &info);
    r = load_labels(s, id, &info, err);
    if (r < 0) {
        sl_snap_info_clear(&info);
        return r;
    }
    *ret = info;
    return 0;
}

/* Ancestors of the snapshot with parent `parent_id`, immediate parent first. */
static int load_chain(struct sl_snap *s, int64_t parent_id, struct chain_elem **ret, size_t *ret_n,
                      sl_error_t *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prep(
        s,
        "SELECT coalesce(s.parent_id, 0), l.value FROM snapshots s "
        "LEFT JOIN labels l ON l.snapshot_id = s.id AND l.key = '" SL_SNAP_LABEL_STARLIGHT_LAYER
        "' WHERE s.id = ?",
        &st, err);
    if (r < 0)
        return r;
    struct chain_elem *c = NULL;
    size_t n = 0, cap = 0;
    for (int64_t id = parent_id; id != 0;) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) != SQLITE_ROW || n > 100000) {
            chain_free(c, n);
            return sl_error_make(err, EIO, "snapshot database: broken parent chain at id %" PRId64,
                                 id);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            c = sl_xrealloc(c, cap * sizeof(*c));
        }
        const char *layer = (const char *)sqlite3_column_text(st, 1);
        c[n++] = (struct chain_elem){id, layer && *layer ? sl_xstrdup(layer) : NULL};
        id = sqlite3_column_int64(st, 0);
    }
    *ret = c;
    *ret_n = n;
    return 0;
}

static int put_labels(struct sl_snap *s, int64_t id, const struct sl_snap_label *labels, size_t n,
                      sl_error_t *err)
{
    if (n == 0)
        return 0;
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prep(s, "INSERT OR REPLACE INTO labels (snapshot_id, key, value) VALUES (?, ?, ?)", &st,
                 err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        /* an empty value means "no label" (containerd drops them too) */
        if (!labels[i].value || !*labels[i].value)
            continue;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, labels[i].key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, labels[i].value, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_err(s, err, "write label");
    }
    return 0;
}

static int exec_id(struct sl_snap *s, const char *sql, int64_t id, sl_error_t *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    int r = prep(s, sql, &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_err(s, err, "update");
    return 0;
}

static int check_labels(const struct sl_snap_label *labels, size_t n, sl_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!labels[i].key || !*labels[i].key)
            return sl_error_make(err, EINVAL, "label key must not be empty");
        size_t len = strlen(labels[i].key) + (labels[i].value ? strlen(labels[i].value) : 0);
        if (len > SL_SNAP_MAX_LABEL)
            return sl_error_make(err, EINVAL,
                                 "label key and value length (%zu bytes) greater "
                                 "than maximum size (%d bytes)",
                                 len, SL_SNAP_MAX_LABEL);
    }
    return 0;
}

/* ---- mounts ----------------------------------------------------------------------------- */

static void mount_add(struct sl_snap_mounts *m, const char *type, const char *source,
                      char **options, size_t n)
{
    m->v = sl_xrealloc(m->v, (m->n + 1) * sizeof(*m->v));
    m->v[m->n++] = (struct sl_snap_mount){sl_xstrdup(type), sl_xstrdup(source), options, n};
}

/* The directory a committed ancestor contributes: the hook's for a Starlight layer (whose own
 * directory is empty: a layer the hook does not serve fails the call), else its own fs
 * directory. */
static int parent_dir(struct sl_snap *s, const struct chain_elem *c, bool placeholder, char **ret,
                      sl_error_t *err)
{
    if (c->layer && s->hooks.lowerdir) {
        char *path = NULL;
        int r = s->hooks.lowerdir(s->hooks.ud, c->layer, &path, err);
        if (r >= 0 && path) {
            *ret = path;
            return 0;
        }
        free(path);
        if (placeholder && r == -ENOENT) {
            sl_error_free(err);
            *ret = sl_xasprintf("%s/%" PRId64 "/fs", s->snapdir, c->id);
            return 0;
        }
        if (r >= 0 || r == -ENOENT) { /* its own directory is empty: never mount that */
            sl_error_free(err);
            return sl_error_make(err, EIO,
                                 "Starlight layer %s is not served on this node (its pull did "
                                 "not publish it): pull the image again",
                                 c->layer);
        }
        return sl_error_wrap(err, r, "lower directory of layer %s", c->layer);
    }
    *ret = sl_xasprintf("%s/%" PRId64 "/fs", s->snapdir, c->id);
    return 0;
}

/* `placeholder`: the snapshot is a Starlight layer's own (the daemon's registration prepares it
 * only to commit it; its mounts are never used), so a parent not served yet gives its own
 * directory instead of failing. */
static int build_mounts(struct sl_snap *s, enum sl_snap_kind kind, int64_t id,
                        const struct chain_elem *chain, size_t n, bool placeholder,
                        struct sl_snap_mounts *ret, sl_error_t *err)
{
    struct sl_snap_mounts m = {0};
    if (n == 0) {
        char **o = sl_xcalloc(2, sizeof(char *));
        o[0] = sl_xstrdup(kind == SL_SNAP_KIND_VIEW ? "ro" : "rw");
        o[1] = sl_xstrdup("rbind");
        _cleanup_free_ char *src = sl_xasprintf("%s/%" PRId64 "/fs", s->snapdir, id);
        mount_add(&m, "bind", src, o, 2);
        *ret = m;
        return 0;
    }
    if (kind != SL_SNAP_KIND_ACTIVE && n == 1) {
        _cleanup_free_ char *src = NULL;
        int r = parent_dir(s, &chain[0], placeholder, &src, err);
        if (r < 0)
            return r;
        char **o = sl_xcalloc(2, sizeof(char *));
        o[0] = sl_xstrdup("ro");
        o[1] = sl_xstrdup("rbind");
        mount_add(&m, "bind", src, o, 2);
        *ret = m;
        return 0;
    }
    /* lowerdir: immediate parent (top-most layer) leftmost, as overlayfs wants it */
    size_t len = 0, cap = 256;
    _cleanup_free_ char *lower = sl_xmalloc(cap);
    memcpy(lower, "lowerdir=", 9);
    len = 9;
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *dir = NULL;
        int r = parent_dir(s, &chain[i], placeholder, &dir, err);
        if (r < 0)
            return r;
        size_t dl = strlen(dir);
        if (len + dl + 2 > cap) {
            cap = (len + dl + 2) * 2;
            lower = sl_xrealloc(lower, cap);
        }
        if (i > 0)
            lower[len++] = ':';
        memcpy(lower + len, dir, dl);
        len += dl;
    }
    lower[len] = '\0';
    char **o = sl_xcalloc(4, sizeof(char *));
    size_t no = 0;
    if (s->index_off)
        o[no++] = sl_xstrdup("index=off");
    if (kind == SL_SNAP_KIND_ACTIVE) {
        o[no++] = sl_xasprintf("workdir=%s/%" PRId64 "/work", s->snapdir, id);
        o[no++] = sl_xasprintf("upperdir=%s/%" PRId64 "/fs", s->snapdir, id);
    }
    o[no++] = TAKE_PTR(lower);
    mount_add(&m, "overlay", "overlay", o, no);
    *ret = m;
    return 0;
}

/* ---- operations ------------------------------------------------------------------------- */

/* Creates ROOT/snapshots/<id>/{fs[,work]} through a temporary name, so a half-made directory
 * never carries a snapshot id. Lock held. */
static int make_dir(struct sl_snap *s, int64_t id, enum sl_snap_kind kind, int64_t parent_id,
                    sl_error_t *err)
{
    _cleanup_free_ char *tmp = sl_xasprintf("%s/new-XXXXXX", s->snapdir);
    if (!mkdtemp(tmp))
        return sl_error_make(err, errno, "create snapshot directory in %s: %m", s->snapdir);
    _cleanup_free_ char *fs = sl_xasprintf("%s/fs", tmp);
    _cleanup_free_ char *work = sl_xasprintf("%s/work", tmp);
    _cleanup_free_ char *dst = sl_xasprintf("%s/%" PRId64, s->snapdir, id);
    int r = 0;
    if (mkdir(fs, 0755) < 0 || (kind == SL_SNAP_KIND_ACTIVE && mkdir(work, 0711) < 0)) {
        r = sl_error_make(err, errno, "create %s: %m", fs);
        goto fail;
    }
    if (parent_id != 0) {
        /* like containerd: the new upper directory belongs to whoever owns the parent's */
        _cleanup_free_ char *pfs = sl_xasprintf("%s/%" PRId64 "/fs", s->snapdir, parent_id);
        struct stat st;
        if (stat(pfs, &st) == 0 && lchown(fs, st.st_uid, st.st_gid) < 0) {
            r = sl_error_make(err, errno, "chown %s: %m", fs);
            goto fail;
        }
    }
    if (rename(tmp, dst) < 0) {
        r = sl_error_make(err, errno, "rename %s to %s: %m", tmp, dst);
        goto fail;
    }
    return 0;
fail:
    (void)sl_snapfs_rmtree(AT_FDCWD, tmp);
    return r;
}

static int create_snapshot(struct sl_snap *s, enum sl_snap_kind kind, const char *key,
                           const char *parent, const struct sl_snap_label *labels, size_t nlabels,
                           struct sl_snap_mounts *ret, sl_error_t *err)
{
    if (!key || !*key)
        return sl_error_make(err, EINVAL, "snapshot key must not be empty");
    int r = check_labels(labels, nlabels, err);
    if (r < 0)
        return r;
    if (parent && !*parent)
        parent = NULL;

    struct chain_elem *chain = NULL;
    size_t nchain = 0;
    int64_t id;
    {
        _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
        _cleanup_txn_ struct txn t = {0};
        r = txn_begin(s, &t, err);
        if (r < 0)
            return r;
        struct row row, prow = {0};
        r = get_row(s, key, &row, err);
        if (r < 0)
            return r;
        if (r > 0)
            return sl_error_make(err, EEXIST, "snapshot %s: already exists", key);
        if (parent) {
            r = get_row(s, parent, &prow, err);
            if (r < 0)
                return r;
            if (r == 0)
                return sl_error_make(err, ENOENT, "parent snapshot %s: not found", parent);
            if (prow.kind != SL_SNAP_KIND_COMMITTED)
                return sl_error_make(err, EINVAL, "parent %s is not a committed snapshot", parent);
        }
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        r = prep(s,
                 "INSERT INTO snapshots (key, parent_id, kind, created_ns, updated_ns) "
                 "VALUES (?, ?, ?, ?, ?)",
                 &st, err);
        if (r < 0)
            return r;
        int64_t now = now_ns();
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (parent)
            sqlite3_bind_int64(st, 2, prow.id);
        else
            sqlite3_bind_null(st, 2);
        sqlite3_bind_int(st, 3, (int)kind);
        sqlite3_bind_int64(st, 4, now);
        sqlite3_bind_int64(st, 5, now);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_err(s, err, "insert snapshot");
        id = sqlite3_last_insert_rowid(s->db);
        r = put_labels(s, id, labels, nlabels, err);
        if (r < 0)
            return r;
        if (parent) {
            r = load_chain(s, prow.id, &chain, &nchain, err);
            if (r < 0)
                return r;
        }
        r = make_dir(s, id, kind, prow.id, err);
        if (r >= 0)
            r = txn_commit(&t, err);
        if (r < 0) {
            _cleanup_free_ char *dir = sl_xasprintf("%" PRId64, id);
            int dfd = open(s->snapdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)sl_snapfs_rmtree(dfd, dir);
                close(dfd);
            }
            chain_free(chain, nchain);
            return r;
        }
    }
    bool placeholder = false;
    for (size_t i = 0; kind == SL_SNAP_KIND_ACTIVE && i < nlabels; i++)
        placeholder |= labels[i].key && strcmp(labels[i].key, SL_SNAP_LABEL_STARLIGHT_LAYER) == 0;
    r = build_mounts(s, kind, id, chain, nchain, placeholder, ret, err);
    chain_free(chain, nchain);
    return r;
}

int sl_snap_prepare(struct sl_snap *s, const char *key, const char *parent,
                    const struct sl_snap_label *labels, size_t nlabels, struct sl_snap_mounts *ret,
                    sl_error_t *err)
{
    if (s->hooks.remote_prepare && key && *key) {
        for (size_t i = 0; i < nlabels; i++) {
            if (!labels[i].key || strcmp(labels[i].key, SL_SNAP_LABEL_REF) != 0)
                continue;
            int r = s->hooks.remote_prepare(s->hooks.remote_ud, key, parent, labels, nlabels, err);
            if (r == -EEXIST && !(err && *err))
                r = sl_error_make(err, EEXIST, "target snapshot %s: already exists (remote)",
                                  labels[i].value ? labels[i].value : "");
            if (r < 0)
                return r;
            break;
        }
    }
    return create_snapshot(s, SL_SNAP_KIND_ACTIVE, key, parent, labels, nlabels, ret, err);
}

int sl_snap_view(struct sl_snap *s, const char *key, const char *parent,
                 const struct sl_snap_label *labels, size_t nlabels, struct sl_snap_mounts *ret,
                 sl_error_t *err)
{
    return create_snapshot(s, SL_SNAP_KIND_VIEW, key, parent, labels, nlabels, ret, err);
}

int sl_snap_mounts(struct sl_snap *s, const char *key, struct sl_snap_mounts *ret, sl_error_t *err)
{
    struct chain_elem *chain = NULL;
    size_t nchain = 0;
    struct row row;
    {
        _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
        int r = need_row(s, key, &row, err);
        if (r < 0)
            return r;
        if (row.kind != SL_SNAP_KIND_ACTIVE && row.kind != SL_SNAP_KIND_VIEW)
            return sl_error_make(err, EBUSY, "snapshot %s is not active or view", key);
        r = load_chain(s, row.parent_id, &chain, &nchain, err);
        if (r < 0)
            return r;
    }
    int r = build_mounts(s, row.kind, row.id, chain, nchain, false, ret, err);
    chain_free(chain, nchain);
    return r;
}

int sl_snap_commit(struct sl_snap *s, const char *name, const char *key,
                   const struct sl_snap_label *labels, size_t nlabels, sl_error_t *err)
{
    if (!name || !*name)
        return sl_error_make(err, EINVAL, "commit name must not be empty");
    int r = check_labels(labels, nlabels, err);
    if (r < 0)
        return r;
    struct row row, other;
    {
        _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
        r = need_row(s, key, &row, err);
        if (r < 0)
            return r;
        if (row.kind != SL_SNAP_KIND_ACTIVE)
            return sl_error_make(err, EBUSY, "snapshot %s is not active", key);
        r = get_row(s, name, &other, err);
        if (r < 0)
            return r;
        if (r > 0)
            return sl_error_make(err, EEXIST, "committed snapshot %s: already exists", name);
    }
    /* The walk can take long on a big layer: no lock held. */
    _cleanup_free_ char *fs = sl_xasprintf("%s/%" PRId64 "/fs", s->snapdir, row.id);
    struct sl_snap_usage u;
    r = sl_snapfs_usage(fs, &u.size, &u.inodes);
    if (r < 0)
        return sl_error_make(err, -r, "usage of %s: %s", fs, strerror(-r));

    _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
    _cleanup_txn_ struct txn t = {0};
    r = txn_begin(s, &t, err);
    if (r < 0)
        return r;
    struct row again;
    r = need_row(s, key, &again, err);
    if (r < 0)
        return r;
    if (again.id != row.id || again.kind != SL_SNAP_KIND_ACTIVE)
        return sl_error_make(err, EBUSY, "snapshot %s changed while committing", key);
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    r = prep(s,
             "UPDATE snapshots SET key = ?, kind = 3, created_ns = ?, updated_ns = ?, size = ?, "
             "inodes = ? WHERE id = ?",
             &st, err);
    if (r < 0)
        return r;
    int64_t now = now_ns();
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, u.size);
    sqlite3_bind_int64(st, 5, u.inodes);
    sqlite3_bind_int64(st, 6, row.id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        if ((sqlite3_errcode(s->db) & 0xff) == SQLITE_CONSTRAINT)
            return sl_error_make(err, EEXIST, "committed snapshot %s: already exists", name);
        return db_err(s, err, "commit snapshot");
    }
    /* labels are replaced, not inherited (containerd) */
    r = exec_id(s, "DELETE FROM labels WHERE snapshot_id = ?", row.id, err);
    if (r >= 0)
        r = put_labels(s, row.id, labels, nlabels, err);
    if (r >= 0)
        r = txn_commit(&t, err);
    return r;
}

int sl_snap_remove(struct sl_snap *s, const char *key, sl_error_t *err)
{
    struct row row;
    {
        _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
        _cleanup_txn_ struct txn t = {0};
        int r = txn_begin(s, &t, err);
        if (r < 0)
            return r;
        r = need_row(s, key, &row, err);
        if (r < 0)
            return r;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        r = prep(s, "SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1", &st, err);
        if (r < 0)
            return r;
        sqlite3_bind_int64(st, 1, row.id);
        if (sqlite3_step(st) == SQLITE_ROW)
            return sl_error_make(err, ENOTEMPTY, "cannot remove snapshot %s with child", key);
        r = exec_id(s, "DELETE FROM snapshots WHERE id = ?", row.id, err);
        if (r >= 0)
            r = txn_commit(&t, err);
        if (r < 0)
            return r;
    }
    /* The row is gone: from here on the directory is an orphan, removed now or, after a
     * crash, by the next cleanup. A failure is not the caller's (containerd logs it too). */
    _cleanup_free_ char *dir = sl_xasprintf("%s/%" PRId64, s->snapdir, row.id);
    (void)sl_snapfs_rmtree(AT_FDCWD, dir);
    return 0;
}

int sl_snap_stat(struct sl_snap *s, const char *key, struct sl_snap_info *ret, sl_error_t *err)
{
    _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
    return load_info(s, key, ret, err);
}

int sl_snap_update(struct sl_snap *s, const struct sl_snap_info *info,
                   const char *const *fieldpaths, size_t npaths, struct sl_snap_info *ret,
                   sl_error_t *err)
{
    if (!info->name || !*info->name)
        return sl_error_make(err, EINVAL, "snapshot name must not be empty");
    int r = check_labels(info->labels, info->nlabels, err);
    if (r < 0)
        return r;
    bool replace_all = npaths == 0;
    for (size_t i = 0; i < npaths; i++) {
        if (strcmp(fieldpaths[i], "labels") == 0)
            replace_all = true;
        else if (strncmp(fieldpaths[i], "labels.", 7) != 0)
            return sl_error_make(err, EINVAL, "cannot update %s field on snapshot %s",
                                 fieldpaths[i], info->name);
    }
    _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
    _cleanup_txn_ struct txn t = {0};
    r = txn_begin(s, &t, err);
    if (r < 0)
        return r;
    struct row row;
    r = need_row(s, info->name, &row, err);
    if (r < 0)
        return r;
    if (replace_all) {
        r = exec_id(s, "DELETE FROM labels WHERE snapshot_id = ?", row.id, err);
        if (r >= 0)
            r = put_labels(s, row.id, info->labels, info->nlabels, err);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < npaths && !replace_all; i++) {
        const char *k = fieldpaths[i] + 7;
        const char *v = NULL;
        for (size_t j = 0; j < info->nlabels; j++)
            if (strcmp(info->labels[j].key, k) == 0)
                v = info->labels[j].value;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        r = prep(s, "DELETE FROM labels WHERE snapshot_id = ? AND key = ?", &st, err);
        if (r < 0)
            return r;
        sqlite3_bind_int64(st, 1, row.id);
        sqlite3_bind_text(st, 2, k, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_err(s, err, "delete label");
        struct sl_snap_label l = {(char *)k, (char *)v};
        r = put_labels(s, row.id, &l, v ? 1 : 0, err);
        if (r < 0)
            return r;
    }
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    r = prep(s, "UPDATE snapshots SET updated_ns = ?2 WHERE id = ?1", &st, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(st, 1, row.id);
    sqlite3_bind_int64(st, 2, now_ns());
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_err(s, err, "update snapshot");
    r = txn_commit(&t, err);
    if (r < 0)
        return r;
    return load_info(s, info->name, ret, err);
}

/* ---- filters (a subset of containerd's filter syntax) ----------------------------------- */

enum filt_op { OP_PRESENT, OP_EQ, OP_NE, OP_RE };

struct clause {
    char *field; /* "name", "parent", "kind" or "labels" */
    char *label; /* label key for "labels" */
    enum filt_op op;
    char *value;
    regex_t re;
    bool has_re;
};

struct filter {
    struct clause *c;
    size_t n;
};

static void filter_clear(struct filter *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->c[i].field);
        free(f->c[i].label);
        free(f->c[i].value);
        if (f->c[i].has_re)
            regfree(&f->c[i].re);
    }
    free(f->c);
    *f = (struct filter){0};
}

/* Reads a quoted ("..." or /.../) or bare token at *p, bare ones ending at any of `stop`. */
static char *read_token(const char **p, const char *stop)
{
    const char *s = *p;
    if (*s == '"' || *s == '/') {
        char q = *s++;
        char *out = sl_xmalloc(strlen(s) + 1);
        size_t n = 0;
        while (*s && *s != q) {
            if (*s == '\\' && s[1])
                s++;
            out[n++] = *s++;
        }
        if (*s != q) {
            free(out);
            return NULL;
        }
        out[n] = '\0';
        *p = s + 1;
        return out;
    }
    size_t n = strcspn(s, stop);
    *p = s + n;
    return sl_xstrndup(s, n);
}

static int parse_filter(const char *text, struct filter *ret, sl_error_t *err)
{
    struct filter f = {0};
    const char *p = text;
    for (;;) {
        while (*p == ' ')
            p++;
        struct clause c = {0};
        const char *start = p;
        if (strncmp(p, "labels.", 7) == 0) {
            /* labels.KEY or labels."KEY" (a quoted key may hold any character) */
            p += 7;
            c.field = sl_xstrdup("labels");
            c.label = read_token(&p, "=!~, ");
        } else {
            size_t n = strcspn(p, "=!~, ");
            if ((n == 4 && strncmp(p, "name", 4) == 0) ||
                (n == 6 && strncmp(p, "parent", 6) == 0) || (n == 4 && strncmp(p, "kind", 4) == 0))
                c.field = sl_xstrndup(p, n);
            p += n;
        }
        if (!c.field || (strcmp(c.field, "labels") == 0 && (!c.label || !*c.label))) {
            free(c.field);
            free(c.label);
            filter_clear(&f);
            return sl_error_make(err, EINVAL, "filter `%s`: unsupported field at `%s`", text,
                                 start);
        }
        while (*p == ' ')
            p++;
        c.op = OP_PRESENT;
        if (strncmp(p, "==", 2) == 0)
            c.op = OP_EQ;
        else if (strncmp(p, "!=", 2) == 0)
            c.op = OP_NE;
        else if (strncmp(p, "~=", 2) == 0)
            c.op = OP_RE;
        if (c.op != OP_PRESENT) {
            p += 2;
            while (*p == ' ')
                p++;
            c.value = read_token(&p, ",");
            if (!c.value) {
                f.c = sl_xrealloc(f.c, (f.n + 1) * sizeof(*f.c));
                f.c[f.n++] = c;
                filter_clear(&f);
                return sl_error_make(err, EINVAL, "filter `%s`: unterminated quote", text);
            }
            if (c.op == OP_RE) {
                if (regcomp(&c.re, c.value, REG_EXTENDED | REG_NOSUB) != 0) {
                    f.c = sl_xrealloc(f.c, (f.n + 1) * sizeof(*f.c));
                    f.c[f.n++] = c;
                    filter_clear(&f);
                    return sl_error_make(err, EINVAL, "filter `%s`: bad regular expression", text);
                }
                c.has_re = true;
            }
        }
        f.c = sl_xrealloc(f.c, (f.n + 1) * sizeof(*f.c));
        f.c[f.n++] = c;
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        if (*p != ',') {
            filter_clear(&f);
            return sl_error_make(err, EINVAL, "filter `%s`: unexpected `%s`", text, p);
        }
        p++;
    }
    *ret = f;
    return 0;
}

static bool clause_match(const struct clause *c, const struct sl_snap_info *info)
{
    const char *v = NULL;
    if (strcmp(c->field, "name") == 0)
        v = info->name;
    else if (strcmp(c->field, "parent") == 0)
        v = info->parent ? info->parent : ""; /* containerd: always present, "" for none
                                               * (its unpack walks `parent==""`) */
    else if (strcmp(c->field, "kind") == 0)
        v = sl_snap_kind_name(info->kind);
    else
        for (size_t i = 0; i < info->nlabels; i++)
            if (strcmp(info->labels[i].key, c->label) == 0)
                v = info->labels[i].value;
    switch (c->op) {
    case OP_PRESENT:
        return v != NULL;
    case OP_EQ:
        return v && strcmp(v, c->value) == 0;
    case OP_NE:
        return !v || strcmp(v, c->value) != 0;
    case OP_RE:
        return v && regexec(&c->re, v, 0, NULL, 0) == 0;
    }
    return false;
}

int sl_snap_list(struct sl_snap *s, const char *const *filters, size_t nfilters,
                 struct sl_snap_info_list *ret, sl_error_t *err)
{
    size_t nf = 0;
    for (size_t i = 0; i < nfilters; i++)
        if (filters[i] && *filters[i])
            nf++;
    struct filter *fs = sl_xcalloc(nf + 1, sizeof(*fs));
    nf = 0;
    int r = 0;
    for (size_t i = 0; i < nfilters && r >= 0; i++)
        if (filters[i] && *filters[i])
            r = parse_filter(filters[i], &fs[nf++], err);
    struct sl_snap_info_list l = {0};
    if (r >= 0) {
        _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        r = prep(s, "SELECT " INFO_COLUMNS " ORDER BY s.key", &st, err);
        size_t cap = 0;
        int rc = SQLITE_DONE;
        while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            struct sl_snap_info info;
            int64_t id = info_from_stmt(st, &info);
            r = load_labels(s, id, &info, err);
            if (r < 0) {
                sl_snap_info_clear(&info);
                break;
            }
            bool keep = nf == 0;
            for (size_t i = 0; i < nf && !keep; i++) {
                bool all = true;
                for (size_t j = 0; j < fs[i].n && all; j++)
                    all = clause_match(&fs[i].c[j], &info);
                keep = all;
            }
            if (!keep) {
                sl_snap_info_clear(&info);
                continue;
            }
            if (l.n == cap) {
                cap = cap ? cap * 2 : 32;
                l.v = sl_xrealloc(l.v, cap * sizeof(*l.v));
            }
            l.v[l.n++] = info;
        }
        if (r >= 0 && rc != SQLITE_DONE)
            r = db_err(s, err, "list snapshots");
    }
    for (size_t i = 0; i < nf; i++)
        filter_clear(&fs[i]);
    free(fs);
    if (r < 0) {
        sl_snap_info_list_clear(&l);
        return r;
    }
    *ret = l;
    return 0;
}

int sl_snap_usage(struct sl_snap *s, const char *key, struct sl_snap_usage *ret, sl_error_t *err)
{
    struct row row;
    {
        _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
        int r = need_row(s, key, &row, err);
        if (r < 0)
            return r;
    }
    if (row.kind != SL_SNAP_KIND_ACTIVE) {
        *ret = (struct sl_snap_usage){row.size, row.inodes};
        return 0;
    }
    _cleanup_free_ char *fs = sl_xasprintf("%s/%" PRId64 "/fs", s->snapdir, row.id);
    int r = sl_snapfs_usage(fs, &ret->size, &ret->inodes);
    if (r < 0)
        return sl_error_make(err, -r, "usage of %s: %s", fs, strerror(-r));
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int sl_snap_cleanup(struct sl_snap *s, sl_error_t *err)
{
    char **doomed = NULL;
    size_t ndoomed = 0;
    _cleanup_close_ int dfd = open(s->snapdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sl_error_make(err, errno, "open %s: %m", s->snapdir);
    {
        /* Listing under the lock: a Prepare creates and renames its directory while holding
         * it, so no half-made snapshot can be taken for an orphan. */
        _cleanup_unlock_ pthread_mutex_t *lk = lock_db(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r = prep(s, "SELECT id FROM snapshots ORDER BY id", &st, err);
        if (r < 0)
            return r;
        int64_t *ids = NULL;
        size_t n = 0, cap = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                ids = sl_xrealloc(ids, cap * sizeof(*ids));
            }
            ids[n++] = sqlite3_column_int64(st, 0);
        }
        int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
        DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
        if (!d) {
            r = sl_error_make(err, errno, "read %s: %m", s->snapdir);
            if (dup >= 0)
                close(dup);
            free(ids);
            return r;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char *end = NULL;
            int64_t id = strtoll(de->d_name, &end, 10);
            if (end && *end == '\0' && end != de->d_name &&
                bsearch(&id, ids, n, sizeof(*ids), cmp_i64))
                continue;
            doomed = sl_xrealloc(doomed, (ndoomed + 1) * sizeof(*doomed));
            doomed[ndoomed++] = sl_xstrdup(de->d_name);
        }
        closedir(d);
        free(ids);
    }
    int r = 0;
    for (size_t i = 0; i < ndoomed; i++) {
        int q = sl_snapfs_rmtree(dfd, doomed[i]);
        if (q < 0 && r == 0)
            r = sl_error_make(err, -q, "remove %s/%s: %s", s->snapdir, doomed[i], strerror(-q));
        free(doomed[i]);
    }
    free(doomed);
    return r;
}
