/* store.c — PostgreSQL store (store.h). libpq is used here and nowhere else. */
#include "store.h"
#include "base64.h"
#include "buf.h"
#include "cleanup.h"
#include "log.h"

#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Advisory lock keys: (class, id). The class spells "SL" so other users of the database are
 * unlikely to collide; id 0 is the migration lock, layers use hashtext(digest). */
#define LOCK_CLASS_MIGRATE 0x534c0000
#define LOCK_CLASS_LAYER   0x534c0001

/* Ingests of at least this many TOC entries refresh the planner statistics of `files`. */
#define ANALYZE_MIN_ENTRIES 1000

/* ---------------------------------------------------------------- schema
 *
 * Version 1. Index choices, checked with EXPLAIN (ANALYZE) on redis 6 + redis 7 + busybox +
 * features (~22k file rows; docs/architecture.md has the plans):
 *  - files: PRIMARY KEY (layer_id, idx). Every hot query selects files by layer
 *    (`layer_id = ANY($1)`): an Index Scan on the primary key, in TOC order for free. No
 *    index on files.digest: the planner asks "which digests do the held layers have", which
 *    is the same layer range scan; a digest index only cost COPY time.
 *  - files (layer_id, path) UNIQUE: ranks join files on it (report filter and the planner's
 *    LEFT JOIN ranks), and it enforces one row per path.
 *  - ranks: PRIMARY KEY (layer_id, path), the ON CONFLICT target of rank accumulation and
 *    the join key of the planner. Separate from files, so ingesting a layer never touches
 *    ranks and a shared layer keeps the ranks gathered through any image.
 *  - tags: PRIMARY KEY (repository, tag, platform) is the delta lookup; images UNIQUE
 *    (repository, digest) is the lookup by digest; images (digest) serves reports, which
 *    name images by manifest digest only; image_layers (layer_id) serves "which images use
 *    this layer" (GC, debugging). */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE layers ("
    "  id bigserial PRIMARY KEY,"
    "  digest text NOT NULL UNIQUE,"
    "  size bigint NOT NULL CHECK (size > 0),"
    "  toc_digest text NOT NULL,"
    "  toc_offset bigint NOT NULL CHECK (toc_offset >= 0 AND toc_offset < size),"
    "  toc_tail bytea NOT NULL," /* blob bytes [toc_offset, size): TOC member + footer */
    "  n_entries integer NOT NULL,"
    "  state text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready')),"
    "  ingested_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE images ("
    "  id bigserial PRIMARY KEY,"
    "  repository text NOT NULL,"
    "  digest text NOT NULL,"
    "  media_type text NOT NULL,"
    "  manifest bytea NOT NULL,"
    "  config_digest text NOT NULL,"
    "  config bytea NOT NULL,"
    "  platform text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  UNIQUE (repository, digest));"
    "CREATE INDEX images_digest ON images (digest);"
    "CREATE TABLE image_layers ("
    "  image_id bigint NOT NULL REFERENCES images ON DELETE CASCADE,"
    "  stack integer NOT NULL CHECK (stack >= 0),"
    "  layer_id bigint NOT NULL REFERENCES layers,"
    "  diff_id text NOT NULL,"
    "  PRIMARY KEY (image_id, stack));"
    "CREATE INDEX image_layers_layer ON image_layers (layer_id);"
    "CREATE TABLE tags ("
    "  repository text NOT NULL,"
    "  tag text NOT NULL," /* a tag, or the digest of an index listing the image */
    "  platform text NOT NULL,"
    "  image_id bigint NOT NULL REFERENCES images ON DELETE CASCADE,"
    "  updated_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (repository, tag, platform));"
    "CREATE TABLE files ("
    "  layer_id bigint NOT NULL REFERENCES layers ON DELETE CASCADE,"
    "  idx integer NOT NULL," /* TOC order */
    "  path text NOT NULL,"   /* normalised TOC name, root = '' */
    "  type text NOT NULL,"
    "  mode integer NOT NULL,"
    "  uid bigint NOT NULL,"
    "  gid bigint NOT NULL,"
    "  size bigint NOT NULL,"
    "  link text,"    /* NULL: not a link */
    "  xattrs jsonb," /* NULL: none; else name -> base64 value */
    "  digest text,"  /* NULL: not a regular file */
    "  chunks jsonb," /* NULL: not a regular file; [[offset, compressedSize, chunkOffset,"
                      "  size, chunkDigest], ...] */
    "  PRIMARY KEY (layer_id, idx));"
    "CREATE UNIQUE INDEX files_layer_path ON files (layer_id, path);"
    "CREATE TABLE ranks ("
    "  layer_id bigint NOT NULL REFERENCES layers ON DELETE CASCADE,"
    "  path text NOT NULL,"
    "  rank_sum double precision NOT NULL,"
    "  n bigint NOT NULL CHECK (n > 0),"
    "  updated_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (layer_id, path));",
    /* 2: prune safety (sl_store_prune). layers.last_used: a notify that finds a layer known
     * (sl_store_layer_known) or lists it in an image (sl_store_put_image) sets it, so a prune
     * never deletes a layer a notify in progress relies on; existing rows start from their
     * ingest time. images.updated_at: every put_image (also of a known image) sets it, so a
     * prune whose registry check predates a re-push + notify keeps the row. Plain ALTERs in the
     * migration transaction, under its advisory lock: two proxies starting at once apply them
     * once (the second sees version 2 and skips). */
    "ALTER TABLE layers ADD COLUMN last_used timestamptz;"
    "UPDATE layers SET last_used = ingested_at;"
    "ALTER TABLE layers ALTER COLUMN last_used SET DEFAULT now(),"
    "  ALTER COLUMN last_used SET NOT NULL;"
    "ALTER TABLE images ADD COLUMN updated_at timestamptz;"
    "UPDATE images SET updated_at = created_at;"
    "ALTER TABLE images ALTER COLUMN updated_at SET DEFAULT now(),"
    "  ALTER COLUMN updated_at SET NOT NULL;",
};

/* ---------------------------------------------------------------- pool */

struct slot {
    PGconn *conn;
    bool busy;
};

struct sl_store {
    char *conninfo;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct slot *slots;
    int n;
    bool migrated;
    _Atomic uint64_t queries, query_errors, query_ns, connects, connect_errors;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = 0;
}

/* Maps a failed statement to an errno class: connection trouble and retryable conflicts are
 * -EAGAIN, the rest -EIO. */
static int pg_fail(struct sl_store *s, PGconn *c, const PGresult *res, const char *what,
                   sl_error_t *err)
{
    atomic_fetch_add(&s->query_errors, 1);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    _cleanup_free_ char *msg = sl_xstrdup(
        res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(c));
    trim(msg);
    bool again = PQstatus(c) != CONNECTION_OK || !state || strncmp(state, "08", 2) == 0 ||
                 strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
                 strcmp(state, "57P03") == 0 || strcmp(state, "40001") == 0 ||
                 strcmp(state, "40P01") == 0;
    return sl_error_make(err, again ? EAGAIN : EIO, "database: %s: %s%s%s", what, msg,
                         state ? " (SQLSTATE " : "", state ? state : "");
}

/* Runs one statement with text parameters (NULL = SQL NULL) and text results; binary
 * parameters where `binary` has a length > 0 for them. */
static int q(struct sl_store *s, PGconn *c, const char *what, const char *sql, int n,
             const char *const *vals, const int *lens, const int *fmts, PGresult **ret,
             sl_error_t *err)
{
    uint64_t t0 = now_ns();
    PGresult *res = PQexecParams(c, sql, n, NULL, vals, lens, fmts, 0);
    atomic_fetch_add(&s->queries, 1);
    atomic_fetch_add(&s->query_ns, now_ns() - t0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int r = pg_fail(s, c, res, what, err);
        PQclear(res);
        return r;
    }
    if (ret)
        *ret = res;
    else
        PQclear(res);
    return 0;
}

static int exec(struct sl_store *s, PGconn *c, const char *what, const char *sql, sl_error_t *err)
{
    return q(s, c, what, sql, 0, NULL, NULL, NULL, NULL, err);
}

static int migrate(struct sl_store *s, PGconn *c, sl_error_t *err)
{
    int r;
    PGresult *res = NULL;
    if ((r = exec(s, c, "migrate", "BEGIN", err)) < 0)
        return r;
    char lock[96];
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%d, 0)", LOCK_CLASS_MIGRATE);
    if ((r = exec(s, c, "migration lock", lock, err)) < 0 ||
        (r = exec(s, c, "migrate",
                  "CREATE TABLE IF NOT EXISTS schema_version ("
                  " version integer PRIMARY KEY,"
                  " applied_at timestamptz NOT NULL DEFAULT now())",
                  err)) < 0 ||
        (r = q(s, c, "schema version", "SELECT coalesce(max(version), 0) FROM schema_version", 0,
               NULL, NULL, NULL, &res, err)) < 0)
        goto fail;
    int cur = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;
    if (cur > (int)SL_ELEMENTSOF(migrations)) {
        r = sl_error_make(err, EPROTO,
                          "database schema version %d is newer than this proxy's (%zu)", cur,
                          SL_ELEMENTSOF(migrations));
        goto fail;
    }
    for (int v = cur + 1; v <= (int)SL_ELEMENTSOF(migrations); v++) {
        char ver[16];
        snprintf(ver, sizeof(ver), "%d", v);
        const char *vals[] = {ver};
        PGresult *mr = PQexec(c, migrations[v - 1]);
        if (PQresultStatus(mr) != PGRES_COMMAND_OK) {
            r = pg_fail(s, c, mr, "migration", err);
            PQclear(mr);
            goto fail;
        }
        PQclear(mr);
        if ((r = q(s, c, "migration", "INSERT INTO schema_version (version) VALUES ($1::int)", 1,
                   vals, NULL, NULL, NULL, err)) < 0)
            goto fail;
        log_debug("store: applied schema migration %d", v);
    }
    if ((r = exec(s, c, "migrate", "COMMIT", err)) < 0)
        goto fail;
    return 0;
fail:
    PQclear(res);
    PQclear(PQexec(c, "ROLLBACK"));
    return sl_error_wrap(err, r, "schema migration");
}

/* Server notices ("relation already exists, skipping") go to the debug log, not stderr. */
static void notice(void *ud, const char *msg)
{
    (void)ud;
    log_debug("database: %s", msg);
}

static void release(struct sl_store *s, int slot)
{
    PGconn *c = s->slots[slot].conn;
    if (c && PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        PQclear(PQexec(c, "ROLLBACK"));
        if (PQtransactionStatus(c) != PQTRANS_IDLE) {
            PQfinish(c);
            c = NULL;
        }
    }
    if (c && PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->slots[slot].conn = c;
    s->slots[slot].busy = false;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int acquire(struct sl_store *s, PGconn **ret, int *ret_slot, sl_error_t *err)
{
    pthread_mutex_lock(&s->mu);
    int slot = -1;
    for (;;) {
        /* prefer a slot with an open connection */
        for (int i = 0; i < s->n; i++)
            if (!s->slots[i].busy && (slot < 0 || (s->slots[i].conn && !s->slots[slot].conn)))
                slot = i;
        if (slot >= 0)
            break;
        pthread_cond_wait(&s->cv, &s->mu);
    }
    s->slots[slot].busy = true;
    bool migrated = s->migrated;
    pthread_mutex_unlock(&s->mu);

    PGconn *c = s->slots[slot].conn;
    if (!c || PQstatus(c) != CONNECTION_OK) {
        if (c)
            PQfinish(c);
        atomic_fetch_add(&s->connects, 1);
        /* defaults first: settings in the caller's conninfo (expanded from dbname) win */
        static const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
        const char *const vals[] = {"10", "starlight-proxy", s->conninfo, NULL};
        c = PQconnectdbParams(keys, vals, 1);
        s->slots[slot].conn = c;
        if (PQstatus(c) != CONNECTION_OK) {
            atomic_fetch_add(&s->connect_errors, 1);
            _cleanup_free_ char *msg = sl_xstrdup(PQerrorMessage(c));
            trim(msg);
            release(s, slot);
            return sl_error_make(err, EAGAIN, "database unreachable: %s", msg);
        }
        PQsetNoticeProcessor(c, notice, NULL);
    }
    if (!migrated) {
        int r = migrate(s, c, err);
        if (r < 0) {
            release(s, slot);
            return r;
        }
        pthread_mutex_lock(&s->mu);
        s->migrated = true;
        pthread_mutex_unlock(&s->mu);
    }
    *ret = c;
    *ret_slot = slot;
    return 0;
}

int sl_store_new(const char *conninfo, int n_conns, struct sl_store **ret, sl_error_t *err)
{
    if (n_conns < 1)
        return sl_error_make(err, EINVAL, "database: pool size %d (must be >= 1)", n_conns);
    struct sl_store *s = sl_xcalloc(1, sizeof(*s));
    s->conninfo = sl_xstrdup(conninfo ? conninfo : "");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->slots = sl_xcalloc((size_t)n_conns, sizeof(*s->slots));
    s->n = n_conns;
    _cleanup_error_ sl_error_t e = NULL;
    int r = sl_store_ping(s, &e);
    if (r < 0)
        log_debug("store: database not ready at start: %s", sl_error_msg(e, r));
    *ret = s;
    return 0;
}

void sl_store_free(struct sl_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        if (s->slots[i].conn)
            PQfinish(s->slots[i].conn);
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->conninfo);
    free(s);
}

#define WITH_CONN(s, c, slot, err)                                                                 \
    PGconn *c = NULL;                                                                              \
    int slot = -1;                                                                                 \
    do {                                                                                           \
        int _r = acquire(s, &c, &slot, err);                                                       \
        if (_r < 0)                                                                                \
            return _r;                                                                             \
    } while (0)

int sl_store_ping(struct sl_store *s, sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    int r = exec(s, c, "ping", "SELECT 1", err);
    release(s, slot);
    return r;
}

/* ---------------------------------------------------------------- helpers */

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A PostgreSQL array literal of text values: {"a","b"} with " and \ escaped. */
static char *text_array(char *const *v, size_t n)
{
    struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    sl_buf_puts(&b, "{");
    for (size_t i = 0; i < n; i++) {
        sl_buf_puts(&b, i ? ",\"" : "\"");
        for (const char *p = v[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                sl_buf_append(&b, "\\", 1);
            sl_buf_append(&b, p, 1);
        }
        sl_buf_puts(&b, "\"");
    }
    sl_buf_puts(&b, "}");
    return sl_buf_steal(&b, NULL);
}

static char *id_array(const int64_t *v, size_t n)
{
    struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    sl_buf_puts(&b, "{");
    for (size_t i = 0; i < n; i++)
        sl_buf_printf(&b, "%s%" PRId64, i ? "," : "", v[i]);
    sl_buf_puts(&b, "}");
    return sl_buf_steal(&b, NULL);
}

static uint64_t val_u64(const PGresult *res, int row, int col)
{
    return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static void copy_digest(char out[SL_DIGEST_STR_LEN], const char *s)
{
    snprintf(out, SL_DIGEST_STR_LEN, "%s", s);
}

/* bytea column (hex text output) → new buffer. */
static int val_bytes(const PGresult *res, int row, int col, uint8_t **ret, size_t *ret_len,
                     sl_error_t *err)
{
    size_t n = 0;
    unsigned char *p = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, col), &n);
    if (!p)
        return sl_error_make(err, EIO, "database: cannot decode a bytea value");
    uint8_t *out = sl_xmalloc(n + 1);
    memcpy(out, p, n);
    out[n] = 0;
    PQfreemem(p);
    *ret = out;
    *ret_len = n;
    return 0;
}

/* ---------------------------------------------------------------- layers */

int sl_store_layer_known(struct sl_store *s, const char *digest, sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    const char *vals[] = {digest};
    /* records the reuse: a prune keeps a layer used within its minimum age */
    int r = q(s, c, "find layer",
              "UPDATE layers SET last_used = clock_timestamp() WHERE digest = $1 RETURNING 1", 1,
              vals, NULL, NULL, &res, err);
    if (r >= 0)
        r = PQntuples(res) > 0;
    PQclear(res);
    release(s, slot);
    return r;
}

/* COPY text format: backslash escapes for \ and the three separators. */
static void copy_escape(struct sl_buf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '\\':
            sl_buf_puts(b, "\\\\");
            break;
        case '\n':
            sl_buf_puts(b, "\\n");
            break;
        case '\r':
            sl_buf_puts(b, "\\r");
            break;
        case '\t':
            sl_buf_puts(b, "\\t");
            break;
        default:
            sl_buf_append(b, p, 1);
        }
    }
}

static void copy_row(struct sl_buf *b, int64_t layer_id, size_t idx, const struct sl_toc_entry *e)
{
    struct sl_buf tmp;
    sl_buf_init(&tmp, SIZE_MAX);
    sl_buf_printf(b, "%" PRId64 "\t%zu\t", layer_id, idx);
    copy_escape(b, e->name);
    sl_buf_printf(b, "\t%s\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu64 "\t",
                  sl_toc_type_name(e->type), e->mode, e->uid, e->gid, e->size);
    if (e->link_name)
        copy_escape(b, e->link_name);
    else
        sl_buf_puts(b, "\\N");
    sl_buf_puts(b, "\t");
    if (e->n_xattrs) {
        sl_buf_puts(&tmp, "{");
        for (size_t i = 0; i < e->n_xattrs; i++) {
            _cleanup_free_ char *v = sl_base64_encode(e->xattrs[i].value, e->xattrs[i].len, NULL);
            if (i)
                sl_buf_puts(&tmp, ",");
            sl_buf_json_string(&tmp, e->xattrs[i].name);
            sl_buf_printf(&tmp, ":\"%s\"", v);
        }
        sl_buf_puts(&tmp, "}");
        copy_escape(b, tmp.data);
        sl_buf_reset(&tmp);
    } else {
        sl_buf_puts(b, "\\N");
    }
    sl_buf_puts(b, "\t");
    if (e->type == SL_TOC_REG) {
        sl_buf_puts(b, e->has_digest ? e->digest : "\\N");
        sl_buf_puts(b, "\t[");
        for (size_t k = 0; k < e->n_chunks; k++) {
            const struct sl_toc_chunk *ch = &e->chunks[k];
            sl_buf_printf(b, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",\"%s\"]",
                          k ? "," : "", ch->offset, ch->compressed_size, ch->chunk_offset, ch->size,
                          ch->digest);
        }
        sl_buf_puts(b, "]\n");
    } else {
        sl_buf_puts(b, "\\N\t\\N\n");
    }
    sl_buf_free(&tmp);
}

static int copy_flush(struct sl_store *s, PGconn *c, struct sl_buf *b, sl_error_t *err)
{
    if (b->len && PQputCopyData(c, b->data, (int)b->len) != 1)
        return pg_fail(s, c, NULL, "COPY files", err);
    sl_buf_reset(b);
    return 0;
}

static int copy_files(struct sl_store *s, PGconn *c, int64_t layer_id, const struct sl_toc *toc,
                      sl_error_t *err)
{
    PGresult *res = PQexec(c, "COPY files (layer_id, idx, path, type, mode, uid, gid, size, link,"
                              " xattrs, digest, chunks) FROM STDIN");
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        int r = pg_fail(s, c, res, "COPY files", err);
        PQclear(res);
        return r;
    }
    PQclear(res);
    _cleanup_buf_ struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    int r = 0;
    for (size_t i = 0; i < sl_toc_count(toc) && r >= 0; i++) {
        copy_row(&b, layer_id, i, sl_toc_entry_at(toc, i));
        if (b.len >= (1u << 20))
            r = copy_flush(s, c, &b, err);
    }
    if (r >= 0)
        r = copy_flush(s, c, &b, err);
    if (PQputCopyEnd(c, r < 0 ? "aborted" : NULL) != 1 && r >= 0)
        r = pg_fail(s, c, NULL, "COPY files", err);
    while ((res = PQgetResult(c))) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && r >= 0)
            r = pg_fail(s, c, res, "COPY files", err);
        PQclear(res);
    }
    return r;
}

int sl_store_ingest_layer(struct sl_store *s, const struct sl_store_layer_in *l, sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    int r;
    char size[24], off[24], entries[24], cls[16];
    snprintf(size, sizeof(size), "%" PRIu64, l->size);
    snprintf(off, sizeof(off), "%" PRIu64, l->toc_offset);
    snprintf(entries, sizeof(entries), "%zu", sl_toc_count(l->toc));
    snprintf(cls, sizeof(cls), "%d", LOCK_CLASS_LAYER);
    const char *lock_vals[] = {cls, l->digest};
    if ((r = exec(s, c, "ingest", "BEGIN", err)) < 0 ||
        (r = q(s, c, "layer lock", "SELECT pg_advisory_xact_lock($1::int, hashtext($2))", 2,
               lock_vals, NULL, NULL, NULL, err)) < 0 ||
        (r = q(s, c, "find layer", "SELECT id FROM layers WHERE digest = $1", 1, &l->digest, NULL,
               NULL, &res, err)) < 0)
        goto out;
    if (PQntuples(res) > 0) { /* another request ingested it first */
        r = 0;
        goto out;
    }
    PQclear(res);
    res = NULL;
    const char *vals[] = {l->digest, size, l->toc_digest, off, (const char *)l->toc_tail, entries};
    const int lens[] = {0, 0, 0, 0, (int)l->toc_tail_len, 0};
    const int fmts[] = {0, 0, 0, 0, 1, 0};
    if ((r = q(s, c, "insert layer",
               "INSERT INTO layers (digest, size, toc_digest, toc_offset, toc_tail, n_entries) "
               "VALUES ($1, $2::bigint, $3, $4::bigint, $5::bytea, $6::int) RETURNING id",
               6, vals, lens, fmts, &res, err)) < 0)
        goto out;
    int64_t id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    if ((r = copy_files(s, c, id, l->toc, err)) < 0 ||
        (r = exec(s, c, "ingest", "COMMIT", err)) < 0)
        goto out;
    /* Fresh statistics keep the per-layer index scans: right after the first big COPY, the
     * planner without them chose sequential scans of every file row (docs/architecture.md). */
    if (sl_toc_count(l->toc) >= ANALYZE_MIN_ENTRIES)
        (void)exec(s, c, "analyze", "ANALYZE files", NULL);
    r = 1;
out:
    PQclear(res);
    release(s, slot); /* rolls back an open transaction */
    return r < 0 ? sl_error_wrap(err, r, "ingest layer %s", l->digest) : r;
}

/* ---------------------------------------------------------------- images */

int sl_store_put_image(struct sl_store *s, const struct sl_store_image_in *img, sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    int r;
    _cleanup_free_ char *digests = text_array((char *const *)img->layer_digests, img->n_layers);
    _cleanup_free_ char *diffs = text_array((char *const *)img->diff_ids, img->n_layers);
    if ((r = exec(s, c, "put image", "BEGIN", err)) < 0)
        goto out;
    const char *vals[] = {img->repository,    img->digest,
                          img->media_type,    (const char *)img->manifest,
                          img->config_digest, (const char *)img->config,
                          img->platform};
    const int lens[] = {0, 0, 0, (int)img->manifest_len, 0, (int)img->config_len, 0};
    const int fmts[] = {0, 0, 0, 1, 0, 1, 0};
    if ((r = q(s, c, "insert image",
               "INSERT INTO images (repository, digest, media_type, manifest, config_digest, "
               "config, platform) VALUES ($1, $2, $3, $4::bytea, $5, $6::bytea, $7) "
               "ON CONFLICT (repository, digest) DO UPDATE SET updated_at = clock_timestamp() "
               "RETURNING id",
               7, vals, lens, fmts, &res, err)) < 0)
        goto out;
    char id[24];
    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;
    /* Every layer must still be there: marking them used row-locks them against a prune in
     * progress (which then re-checks last_used and keeps them) and counts them. */
    const char *uv[] = {digests};
    if ((r = q(s, c, "use image layers",
               "UPDATE layers SET last_used = clock_timestamp() WHERE digest = ANY($1::text[])", 1,
               uv, NULL, NULL, &res, err)) < 0)
        goto out;
    size_t have = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    res = NULL;
    size_t distinct = 0;
    for (size_t i = 0; i < img->n_layers; i++) {
        size_t j = 0;
        while (j < i && strcmp(img->layer_digests[j], img->layer_digests[i]) != 0)
            j++;
        distinct += j == i;
    }
    if (have != distinct) {
        r = sl_error_make(err, EAGAIN,
                          "%zu of its %zu layers are not in the store (pruned while this notify "
                          "ran?): notify again",
                          distinct - have, distinct);
        goto out;
    }
    const char *lv[] = {id, digests, diffs};
    if ((r = q(s, c, "insert image layers",
               "INSERT INTO image_layers (image_id, stack, layer_id, diff_id) "
               "SELECT $1::bigint, a.ord - 1, l.id, a.diff_id "
               "FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS a(digest, diff_id, ord) "
               "JOIN layers l ON l.digest = a.digest "
               "ON CONFLICT (image_id, stack) DO NOTHING",
               3, lv, NULL, NULL, NULL, err)) < 0)
        goto out;
    {
        /* a known image keeps its stack; a new one must have every layer listed */
        if ((r = q(s, c, "count image layers",
                   "SELECT count(*) FROM image_layers WHERE image_id = $1::bigint", 1, lv, NULL,
                   NULL, &res, err)) < 0)
            goto out;
        size_t listed = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        res = NULL;
        if (listed != img->n_layers) {
            r = sl_error_make(err, EIO, "its layer list has %zu rows, the manifest %zu layers",
                              listed, img->n_layers);
            goto out;
        }
    }
    for (size_t i = 0; i < img->n_tags; i++) {
        const char *tv[] = {img->repository, img->tags[i], img->platform, id};
        if ((r = q(s, c, "tag image",
                   "INSERT INTO tags (repository, tag, platform, image_id) "
                   "VALUES ($1, $2, $3, $4::bigint) ON CONFLICT (repository, tag, platform) "
                   "DO UPDATE SET image_id = EXCLUDED.image_id, updated_at = now()",
                   4, tv, NULL, NULL, NULL, err)) < 0)
            goto out;
    }
    r = exec(s, c, "put image", "COMMIT", err);
out:
    PQclear(res);
    release(s, slot);
    return r < 0 ? sl_error_wrap(err, r, "store image %s", img->digest) : 0;
}

int sl_store_find_image(struct sl_store *s, const char *repository, const char *reference,
                        const char *platform, int64_t *ret_id, sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    int r;
    bool is_digest = strncmp(reference, "sha256:", 7) == 0;
    if (is_digest) {
        const char *vals[] = {repository, reference};
        if ((r = q(s, c, "find image",
                   "SELECT id FROM images WHERE repository = $1 AND digest = $2", 2, vals, NULL,
                   NULL, &res, err)) < 0)
            goto out;
        if (PQntuples(res) > 0)
            goto found;
        PQclear(res);
        res = NULL;
    }
    const char *vals[] = {repository, reference, platform};
    if ((r = q(s, c, "find tag",
               "SELECT image_id FROM tags WHERE repository = $1 AND tag = $2 AND platform = $3", 3,
               vals, NULL, NULL, &res, err)) < 0)
        goto out;
    if (PQntuples(res) > 0)
        goto found;
    PQclear(res);
    res = NULL;
    if ((r = q(s, c, "find tag",
               "SELECT string_agg(platform, ', ' ORDER BY platform) FROM tags "
               "WHERE repository = $1 AND tag = $2",
               2, vals, NULL, NULL, &res, err)) < 0)
        goto out;
    if (!PQgetisnull(res, 0, 0))
        r = sl_error_make(err, ENOENT, "image %s%s%s has no %s image (known platforms: %s)",
                          repository, is_digest ? "@" : ":", reference, platform,
                          PQgetvalue(res, 0, 0));
    else
        r = sl_error_make(err, ENOENT, "image %s%s%s is unknown: notify the proxy first",
                          repository, is_digest ? "@" : ":", reference);
    goto out;
found:
    *ret_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    r = 0;
out:
    PQclear(res);
    release(s, slot);
    return r;
}

int sl_store_find_image_by_digest(struct sl_store *s, const char *digest, int64_t *ret_id,
                                  sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    const char *vals[] = {digest};
    int r = q(s, c, "find image", "SELECT min(id) FROM images WHERE digest = $1", 1, vals, NULL,
              NULL, &res, err);
    if (r >= 0) {
        if (PQgetisnull(res, 0, 0))
            r = sl_error_make(err, ENOENT, "image %s is unknown: notify the proxy first", digest);
        else
            *ret_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    release(s, slot);
    return r;
}

void sl_store_image_free(struct sl_store_image *img)
{
    if (!img)
        return;
    free(img->repository);
    free(img->media_type);
    free(img->platform);
    free(img->manifest);
    free(img->config);
    for (size_t i = 0; i < img->n_layers; i++)
        free(img->layers[i].toc_tail);
    free(img->layers);
    free(img);
}

int sl_store_load_image(struct sl_store *s, int64_t id, bool full, struct sl_store_image **ret,
                        sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    char ids[24];
    snprintf(ids, sizeof(ids), "%" PRId64, id);
    const char *vals[] = {ids};
    struct sl_store_image *img = sl_xcalloc(1, sizeof(*img));
    img->id = id;
    int r = q(s, c, "load image",
              full ? "SELECT repository, media_type, platform, digest, config_digest, manifest, "
                     "config FROM images WHERE id = $1::bigint"
                   : "SELECT repository, media_type, platform, digest, config_digest "
                     "FROM images WHERE id = $1::bigint",
              1, vals, NULL, NULL, &res, err);
    if (r < 0)
        goto out;
    if (PQntuples(res) == 0) {
        r = sl_error_make(err, ENOENT, "image %" PRId64 " vanished", id);
        goto out;
    }
    img->repository = sl_xstrdup(PQgetvalue(res, 0, 0));
    img->media_type = sl_xstrdup(PQgetvalue(res, 0, 1));
    img->platform = sl_xstrdup(PQgetvalue(res, 0, 2));
    copy_digest(img->digest, PQgetvalue(res, 0, 3));
    copy_digest(img->config_digest, PQgetvalue(res, 0, 4));
    if (full && ((r = val_bytes(res, 0, 5, &img->manifest, &img->manifest_len, err)) < 0 ||
                 (r = val_bytes(res, 0, 6, &img->config, &img->config_len, err)) < 0))
        goto out;
    PQclear(res);
    res = NULL;
    r = q(s, c, "load image layers",
          full ? "SELECT l.id, l.digest, l.size, il.diff_id, l.toc_digest, l.toc_offset, "
                 "l.toc_tail FROM image_layers il JOIN layers l ON l.id = il.layer_id "
                 "WHERE il.image_id = $1::bigint ORDER BY il.stack"
               : "SELECT l.id, l.digest, l.size, il.diff_id, l.toc_digest, l.toc_offset "
                 "FROM image_layers il JOIN layers l ON l.id = il.layer_id "
                 "WHERE il.image_id = $1::bigint ORDER BY il.stack",
          1, vals, NULL, NULL, &res, err);
    if (r < 0)
        goto out;
    size_t n = (size_t)PQntuples(res);
    img->layers = sl_xcalloc(n + 1, sizeof(*img->layers));
    img->n_layers = n;
    for (size_t i = 0; i < n; i++) {
        struct sl_store_layer *l = &img->layers[i];
        l->id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        copy_digest(l->digest, PQgetvalue(res, (int)i, 1));
        l->size = val_u64(res, (int)i, 2);
        copy_digest(l->diff_id, PQgetvalue(res, (int)i, 3));
        copy_digest(l->toc_digest, PQgetvalue(res, (int)i, 4));
        l->toc_offset = val_u64(res, (int)i, 5);
        if (full && (r = val_bytes(res, (int)i, 6, &l->toc_tail, &l->toc_tail_len, err)) < 0)
            goto out;
    }
    *ret = TAKE_PTR(img);
out:
    sl_store_image_free(img);
    PQclear(res);
    release(s, slot);
    return r;
}

int sl_store_image_layer_ids(struct sl_store *s, int64_t image_id, int64_t **ret_ids, size_t *ret_n,
                             sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    char ids[24];
    snprintf(ids, sizeof(ids), "%" PRId64, image_id);
    const char *vals[] = {ids};
    int r = q(s, c, "image layers",
              "SELECT layer_id FROM image_layers WHERE image_id = $1::bigint ORDER BY stack", 1,
              vals, NULL, NULL, &res, err);
    if (r >= 0) {
        size_t n = (size_t)PQntuples(res);
        int64_t *v = sl_xcalloc(n + 1, sizeof(*v));
        for (size_t i = 0; i < n; i++)
            v[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        *ret_ids = v;
        *ret_n = n;
    }
    PQclear(res);
    release(s, slot);
    return r;
}

int sl_store_layer_ids(struct sl_store *s, char *const *digests, size_t n, int64_t **ret_ids,
                       size_t *ret_n, sl_error_t *err)
{
    if (n == 0) {
        *ret_ids = sl_xcalloc(1, sizeof(int64_t));
        *ret_n = 0;
        return 0;
    }
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    _cleanup_free_ char *arr = text_array(digests, n);
    const char *vals[] = {arr};
    int r =
        q(s, c, "find layers", "SELECT id FROM layers WHERE digest = ANY($1::text[]) ORDER BY id",
          1, vals, NULL, NULL, &res, err);
    if (r >= 0) {
        size_t m = (size_t)PQntuples(res);
        int64_t *v = sl_xcalloc(m + 1, sizeof(*v));
        for (size_t i = 0; i < m; i++)
            v[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        *ret_ids = v;
        *ret_n = m;
    }
    PQclear(res);
    release(s, slot);
    return r;
}

int sl_store_contents(struct sl_store *s, const int64_t *layer_ids, size_t n, char ***ret,
                      size_t *ret_n, sl_error_t *err)
{
    if (n == 0) {
        *ret = sl_xcalloc(1, sizeof(char *));
        *ret_n = 0;
        return 0;
    }
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    _cleanup_free_ char *arr = id_array(layer_ids, n);
    const char *vals[] = {arr};
    /* COLLATE "C": the caller binary-searches with strcmp */
    int r = q(s, c, "held contents",
              "SELECT DISTINCT digest COLLATE \"C\" AS d FROM files "
              "WHERE layer_id = ANY($1::bigint[]) AND digest IS NOT NULL ORDER BY 1",
              1, vals, NULL, NULL, &res, err);
    if (r >= 0) {
        size_t m = (size_t)PQntuples(res);
        char **v = sl_xcalloc(m + 1, sizeof(*v));
        for (size_t i = 0; i < m; i++)
            v[i] = sl_xstrdup(PQgetvalue(res, (int)i, 0));
        *ret = v;
        *ret_n = m;
    }
    PQclear(res);
    release(s, slot);
    return r;
}

void sl_store_files_free(struct sl_store_files *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].path);
        free(f->v[i].chunks);
    }
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

static int parse_chunks(const char *text, struct sl_store_file *f, sl_error_t *err)
{
    json_error_t je;
    json_auto_t *j = json_loads(text, 0, &je);
    if (!json_is_array(j))
        return sl_error_make(err, EIO, "database: files.chunks of `%s` is not an array", f->path);
    size_t n = json_array_size(j);
    f->chunks = sl_xcalloc(n + 1, sizeof(*f->chunks));
    f->n_chunks = n;
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(j, i);
        json_t *d = json_array_get(a, 4);
        if (json_array_size(a) != 5 || !json_is_string(d) || !sl_digest_valid(json_string_value(d)))
            return sl_error_make(err, EIO, "database: files.chunks of `%s` is malformed", f->path);
        struct sl_plan_chunk *ch = &f->chunks[i];
        ch->blob_offset = (uint64_t)json_integer_value(json_array_get(a, 0));
        ch->compressed_size = (uint64_t)json_integer_value(json_array_get(a, 1));
        ch->chunk_offset = (uint64_t)json_integer_value(json_array_get(a, 2));
        ch->size = (uint64_t)json_integer_value(json_array_get(a, 3));
        copy_digest(ch->digest, json_string_value(d));
    }
    return 0;
}

int sl_store_layer_files(struct sl_store *s, const int64_t *layer_ids, size_t n,
                         struct sl_store_files *ret, sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    if (n == 0)
        return 0;
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    _cleanup_free_ char *arr = id_array(layer_ids, n);
    const char *vals[] = {arr};
    int r = q(s, c, "layer files",
              "SELECT f.layer_id, f.idx, f.path, f.size, f.digest, f.chunks, r.rank_sum / r.n "
              "FROM files f LEFT JOIN ranks r ON r.layer_id = f.layer_id AND r.path = f.path "
              "WHERE f.layer_id = ANY($1::bigint[]) AND f.type = 'reg' "
              "ORDER BY f.layer_id, f.idx",
              1, vals, NULL, NULL, &res, err);
    if (r < 0)
        goto out;
    size_t m = (size_t)PQntuples(res);
    ret->v = sl_xcalloc(m + 1, sizeof(*ret->v));
    for (size_t i = 0; i < m; i++) {
        int row = (int)i;
        struct sl_store_file *f = &ret->v[i];
        ret->n = i + 1;
        f->layer_id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        f->toc_index = (uint32_t)val_u64(res, row, 1);
        f->path = sl_xstrdup(PQgetvalue(res, row, 2));
        f->size = val_u64(res, row, 3);
        if (PQgetisnull(res, row, 4)) {
            r = sl_error_make(err, EIO, "database: regular file `%s` has no digest", f->path);
            goto out;
        }
        copy_digest(f->digest, PQgetvalue(res, row, 4));
        if ((r = parse_chunks(PQgetvalue(res, row, 5), f, err)) < 0)
            goto out;
        f->traced = !PQgetisnull(res, row, 6);
        f->rank = f->traced ? strtod(PQgetvalue(res, row, 6), NULL) : 0;
    }
out:
    if (r < 0)
        sl_store_files_free(ret);
    PQclear(res);
    release(s, slot);
    return r;
}

int sl_store_rank_fingerprint(struct sl_store *s, int64_t image_id, char **ret, sl_error_t *err)
{
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, image_id);
    const char *vals[] = {id};
    /* sum(n) grows with every observation added; count and the newest update catch the rest
     * (rows gone with a deleted layer, a clock that did not move). */
    int r = q(s, c, "rank fingerprint",
              "SELECT count(*)::text || '/' || coalesce(sum(r.n), 0)::text || '/' || "
              "coalesce(max(r.updated_at)::text, '-') FROM image_layers il "
              "JOIN ranks r ON r.layer_id = il.layer_id WHERE il.image_id = $1::bigint",
              1, vals, NULL, NULL, &res, err);
    if (r >= 0)
        *ret = sl_xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    release(s, slot);
    return r;
}

int sl_store_add_ranks(struct sl_store *s, const int64_t *layer_ids, char *const *paths,
                       const double *ranks, size_t n, size_t *ret_applied, sl_error_t *err)
{
    *ret_applied = 0;
    if (n == 0)
        return 0;
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    _cleanup_free_ char *ids = id_array(layer_ids, n);
    _cleanup_free_ char *ps = text_array(paths, n);
    struct sl_buf rb;
    sl_buf_init(&rb, SIZE_MAX);
    sl_buf_puts(&rb, "{");
    for (size_t i = 0; i < n; i++)
        sl_buf_printf(&rb, "%s%.17g", i ? "," : "", ranks[i]);
    sl_buf_puts(&rb, "}");
    _cleanup_free_ char *rs = sl_buf_steal(&rb, NULL);
    const char *vals[] = {ids, ps, rs};
    int r = q(s, c, "add ranks",
              "INSERT INTO ranks (layer_id, path, rank_sum, n) "
              "SELECT a.layer_id, a.path, a.rank, 1 "
              "FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS a(layer_id, path, rank) "
              "WHERE EXISTS (SELECT 1 FROM files f WHERE f.layer_id = a.layer_id "
              "AND f.path = a.path) "
              "ON CONFLICT (layer_id, path) DO UPDATE SET rank_sum = ranks.rank_sum + "
              "EXCLUDED.rank_sum, n = ranks.n + 1, updated_at = now()",
              3, vals, NULL, NULL, &res, err);
    if (r >= 0)
        *ret_applied = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    release(s, slot);
    return r;
}

int sl_store_image_rows(struct sl_store *s, struct sl_store_image_row **ret, size_t *ret_n,
                        char **ret_asof, sl_error_t *err)
{
    *ret = NULL;
    *ret_n = 0;
    *ret_asof = NULL;
    WITH_CONN(s, c, slot, err);
    PGresult *res = NULL;
    /* the database's clock, taken before the rows are read: compared with its own timestamps */
    int r =
        q(s, c, "prune start", "SELECT clock_timestamp()::text", 0, NULL, NULL, NULL, &res, err);
    if (r >= 0)
        *ret_asof = sl_xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;
    if (r >= 0)
        r = q(s, c, "list images", "SELECT id, repository, digest FROM images ORDER BY id", 0, NULL,
              NULL, NULL, &res, err);
    if (r < 0) {
        free(*ret_asof);
        *ret_asof = NULL;
    }
    if (r >= 0) {
        size_t n = (size_t)PQntuples(res);
        struct sl_store_image_row *v = sl_xcalloc(n + 1, sizeof(*v));
        for (size_t i = 0; i < n; i++) {
            v[i].id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
            v[i].repository = sl_xstrdup(PQgetvalue(res, (int)i, 1));
            v[i].digest = sl_xstrdup(PQgetvalue(res, (int)i, 2));
        }
        *ret = v;
        *ret_n = n;
    }
    PQclear(res);
    release(s, slot);
    return r;
}

void sl_store_image_rows_free(struct sl_store_image_row *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].repository);
        free(v[i].digest);
    }
    free(v);
}

int sl_store_prune(struct sl_store *s, const int64_t *ids, size_t n, const char *asof,
                   int64_t min_age_s, size_t *ret_layers, sl_error_t *err)
{
    *ret_layers = 0;
    WITH_CONN(s, c, slot, err);
    _cleanup_free_ char *arr = id_array(ids, n);
    char age[32];
    snprintf(age, sizeof(age), "%" PRId64, min_age_s);
    const char *v1[] = {arr, asof};
    const char *v2[] = {age, asof};
    PGresult *res = NULL;
    int r = exec(s, c, "prune: begin", "BEGIN", err);
    if (r >= 0)
        r = q(s, c, "prune images",
              "DELETE FROM images WHERE id = ANY($1::bigint[]) AND updated_at < $2::timestamptz", 2,
              v1, NULL, NULL, NULL, err);
    /* files and ranks cascade; a layer another image lists is not touched */
    if (r >= 0)
        r = q(
            s, c, "prune layers",
            "DELETE FROM layers l WHERE NOT EXISTS (SELECT 1 FROM image_layers il"
            " WHERE il.layer_id = l.id) AND l.last_used < $2::timestamptz - make_interval(secs => "
            "$1::bigint)",
            2, v2, NULL, NULL, &res, err);
    if (r >= 0) {
        *ret_layers = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
        r = exec(s, c, "prune: commit", "COMMIT", err);
    } else {
        exec(s, c, "prune: rollback", "ROLLBACK", NULL);
    }
    PQclear(res);
    release(s, slot);
    return r;
}

void sl_store_metrics(struct sl_store *s, struct sl_buf *out)
{
    uint64_t qn = atomic_load(&s->queries);
    sl_buf_printf(out,
                  "# HELP starlight_db_queries_total Database statements run.\n"
                  "# TYPE starlight_db_queries_total counter\n"
                  "starlight_db_queries_total %" PRIu64 "\n"
                  "# HELP starlight_db_query_errors_total Database statements that failed.\n"
                  "# TYPE starlight_db_query_errors_total counter\n"
                  "starlight_db_query_errors_total %" PRIu64 "\n"
                  "# HELP starlight_db_query_seconds_total Time spent in database statements.\n"
                  "# TYPE starlight_db_query_seconds_total counter\n"
                  "starlight_db_query_seconds_total %.6f\n"
                  "# HELP starlight_db_connects_total Connection attempts (errors in "
                  "starlight_db_connect_errors_total).\n"
                  "# TYPE starlight_db_connects_total counter\n"
                  "starlight_db_connects_total %" PRIu64 "\n"
                  "# TYPE starlight_db_connect_errors_total counter\n"
                  "starlight_db_connect_errors_total %" PRIu64 "\n",
                  qn, atomic_load(&s->query_errors), (double)atomic_load(&s->query_ns) / 1e9,
                  atomic_load(&s->connects), atomic_load(&s->connect_errors));
}

/* keep strv_free referenced for callers added later */
void sl_store_strv_free(char **v, size_t n);
void sl_store_strv_free(char **v, size_t n)
{
    strv_free(v, n);
}
