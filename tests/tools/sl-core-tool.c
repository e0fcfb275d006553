/* sl-core-tool — drives the proxy core (proxy/core/core.h) from end-to-end tests, without the
 * HTTP server:
 *
 *   sl-core-tool notify PG REF                      notify (plain HTTP registry); JSON body
 *   sl-core-tool notify-many PG REF N               N notifies of REF at once; JSON summary
 *   sl-core-tool report PG FILE                     report a trace document
 *   sl-core-tool delta PG OUT TO PLATFORM [--from REF]... [--layer DIGEST]...
 *                                                   plan, write the whole body to OUT, print
 *                                                   {etag, headLen, totalLen, ...}
 *   sl-core-tool check FILE                         decode a body: every chunk inflates to its
 *                                                   chunkDigest, every TOC tail loads and
 *                                                   matches tocDigest; prints the contents
 *   sl-core-tool watch PG TO PLATFORM SECONDS       plans every 100 ms with ONE core; exits 0
 *                                                   once it saw ok, then -EAGAIN, then ok
 *   sl-core-tool health PG
 *
 * SL_CORE_REGISTRY sets the default registry; SL_CORE_CACHE_DIR puts the blob cache there.
 * Exit status 0 on success, 1 on failure (error chain on stderr), 2 on usage errors. */
#include "cleanup.h"
#include "core.h"
#include "delta.h"
#include "json.h"
#include "toc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
    fprintf(stderr, "usage: sl-core-tool notify|notify-many|report|delta|check|watch|health ...\n"
                    "(see the comment at the top of tests/tools/sl-core-tool.c)\n");
    return 2;
}

static int fail(sl_error_t *err, int r, const char *what)
{
    fprintf(stderr, "sl-core-tool: %s: %s (%s)\n", what, sl_error_msg(*err, r), strerror(-r));
    sl_error_free(err);
    return 1;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s);
    free(s);
}

static int new_core(const char *pg, struct sl_core **core, sl_error_t *err)
{
    struct sl_core_config cfg = {
        .postgres = pg,
        .default_registry = getenv("SL_CORE_REGISTRY"),
        .default_insecure = true,
        .db_connections = 4,
        .cache_dir = getenv("SL_CORE_CACHE_DIR"),
        .cache_max_bytes = 512u << 20,
    };
    return sl_core_new(&cfg, core, err);
}

/* Checks the argument count (min..max), then opens the core on argv[0] (the PostgreSQL DSN): 0,
 * or the exit code after the message. */
static int open_core(int argc, char **argv, int min, int max, struct sl_core **core)
{
    if (argc < min || argc > max)
        return usage();
    _cleanup_error_ sl_error_t err = NULL;
    int r = new_core(argv[0], core, &err);
    return r < 0 ? fail(&err, r, "core") : 0;
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return -errno;
    char *buf = sl_xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            free(buf);
            return n < 0 ? -errno : -EIO;
        }
        got += (size_t)n;
    }
    buf[got] = 0;
    *ret = buf;
    *ret_len = got;
    return 0;
}

static int cmd_notify(int argc, char **argv)
{
    struct sl_core *core = NULL;
    int r = open_core(argc, argv, 2, 2, &core);
    if (r)
        return r;
    _cleanup_error_ sl_error_t err = NULL;
    json_t *body = NULL;
    r = sl_core_notify(core, argv[1], true, &body, &err);
    sl_core_free(core);
    if (r < 0)
        return fail(&err, r, "notify");
    print_json(body);
    json_decref(body);
    return 0;
}

struct notify_job {
    struct sl_core *core;
    const char *ref;
    pthread_barrier_t *barrier;
    int r;
    char *msg;
    json_t *body;
};

static void *notify_thread(void *ud)
{
    struct notify_job *j = ud;
    sl_error_t err = NULL;
    pthread_barrier_wait(j->barrier);
    j->r = sl_core_notify(j->core, j->ref, true, &j->body, &err);
    if (j->r < 0)
        j->msg = sl_xstrdup(sl_error_msg(err, j->r));
    sl_error_free(&err);
    return NULL;
}

static int cmd_notify_many(int argc, char **argv)
{
    int n = argc == 3 ? atoi(argv[2]) : 0;
    if (n < 1 || n > 16)
        return usage();
    struct sl_core *core = NULL;
    int r = open_core(argc, argv, 3, 3, &core);
    if (r)
        return r;
    _cleanup_error_ sl_error_t err = NULL;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    struct notify_job jobs[16] = {0};
    pthread_t th[16];
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct notify_job){.core = core, .ref = argv[1], .barrier = &barrier};
        pthread_create(&th[i], NULL, notify_thread, &jobs[i]);
    }
    json_auto_t *out = json_object();
    json_t *res = json_array();
    json_object_set_new(out, "results", res);
    int ok = 0, ingested = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        json_t *o = json_object();
        json_object_set_new(o, "ok", json_boolean(jobs[i].r >= 0));
        if (jobs[i].r < 0) {
            json_object_set_new(o, "error", json_string(jobs[i].msg));
        } else {
            ok++;
            size_t k, l;
            json_t *img, *layer;
            json_array_foreach(json_object_get(jobs[i].body, "images"), k, img)
            {
                json_array_foreach(json_object_get(img, "layers"), l, layer)
                {
                    if (json_is_true(json_object_get(layer, "ingested")))
                        ingested++;
                }
            }
        }
        json_array_append_new(res, o);
        free(jobs[i].msg);
        json_decref(jobs[i].body);
    }
    pthread_barrier_destroy(&barrier);
    sl_core_free(core);
    json_object_set_new(out, "succeeded", json_integer(ok));
    json_object_set_new(out, "layersIngested", json_integer(ingested));
    print_json(out);
    return ok == n ? 0 : 1;
}

static int cmd_report(int argc, char **argv)
{
    if (argc != 2)
        return usage();
    _cleanup_free_ char *doc = NULL;
    size_t len = 0;
    int r = read_file(argv[1], &doc, &len);
    if (r < 0) {
        fprintf(stderr, "sl-core-tool: %s: %s\n", argv[1], strerror(-r));
        return 1;
    }
    _cleanup_error_ sl_error_t err = NULL;
    struct sl_core *core = NULL;
    if ((r = new_core(argv[0], &core, &err)) < 0)
        return fail(&err, r, "core");
    json_t *body = NULL;
    r = sl_core_report(core, doc, len, &body, &err);
    sl_core_free(core);
    if (r < 0)
        return fail(&err, r, "report");
    print_json(body);
    json_decref(body);
    return 0;
}

static int fd_sink(void *ud, const void *data, size_t len)
{
    int fd = *(int *)ud;
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cmd_delta(int argc, char **argv)
{
    const char *from[64], *layers[64];
    size_t nf = 0, nl = 0;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc && nf < 64)
            from[nf++] = argv[++i];
        else if (strcmp(argv[i], "--layer") == 0 && i + 1 < argc && nl < 64)
            layers[nl++] = argv[++i];
        else
            return usage();
    }
    struct sl_core *core = NULL;
    int r = open_core(argc, argv, 4, INT_MAX, &core);
    if (r)
        return r;
    _cleanup_error_ sl_error_t err = NULL;
    struct sl_delta_request req = {.to = argv[2],
                                   .platform = argv[3],
                                   .from = from,
                                   .n_from = nf,
                                   .held_layers = layers,
                                   .n_held_layers = nl,
                                   .insecure = true};
    struct sl_delta *d = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = sl_core_delta_plan(core, &req, &d, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0) {
        sl_core_free(core);
        return fail(&err, r, "delta plan");
    }
    _cleanup_close_ int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || fd_sink(&fd, d->head, d->head_len) < 0) {
        perror(argv[1]);
        sl_delta_free(d);
        sl_core_free(core);
        return 1;
    }
    for (size_t s = 0; s < d->n_segments && r >= 0; s++)
        r = sl_core_read_segment(core, d, s, 0, d->segments[s].length, fd_sink, &fd, &err);
    if (r < 0) {
        sl_delta_free(d);
        sl_core_free(core);
        return fail(&err, r, "read segment");
    }
    json_auto_t *out = json_object();
    json_object_set_new(out, "etag", json_string(d->etag));
    json_object_set_new(out, "headLen", json_integer((json_int_t)d->head_len));
    json_object_set_new(out, "totalLen", json_integer((json_int_t)d->total_len));
    json_object_set_new(out, "payloadBytes", json_integer((json_int_t)d->payload_bytes));
    json_object_set_new(out, "savedBytes", json_integer((json_int_t)d->saved_bytes));
    json_object_set_new(out, "segments", json_integer((json_int_t)d->n_segments));
    json_object_set_new(
        out, "planMs",
        json_real((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6));
    print_json(out);
    sl_delta_free(d);
    sl_core_free(core);
    return 0;
}

struct mem {
    const uint8_t *p;
    size_t n;
    uint64_t base; /* blob offset of p[0] */
};

static int mem_read_at(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err)
{
    struct mem *m = ud;
    if (off < m->base || off - m->base > m->n || len > m->n - (off - m->base))
        return sl_error_make(err, EIO, "read outside the TOC tail");
    memcpy(buf, m->p + (off - m->base), len);
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    if (argc != 1)
        return usage();
    _cleanup_free_ char *body = NULL;
    size_t len = 0;
    int r = read_file(argv[0], &body, &len);
    if (r < 0) {
        fprintf(stderr, "sl-core-tool: %s: %s\n", argv[0], strerror(-r));
        return 1;
    }
    _cleanup_error_ sl_error_t err = NULL;
    _cleanup_delta_header_ struct sl_delta_header *h = NULL;
    size_t head_len = 0;
    if ((r = sl_delta_head_decode(body, len, &h, &head_len, &err)) < 0)
        return fail(&err, r, "decode");
    if (len != head_len + h->payload_length) {
        fprintf(stderr, "sl-core-tool: body is %zu bytes, head %zu + payload %" PRIu64 "\n", len,
                head_len, h->payload_length);
        return 1;
    }
    const uint8_t *payload = (const uint8_t *)body + head_len;
    size_t files = 0;
    for (size_t i = 0; i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        if (l->held)
            continue;
        struct mem m = {l->toc_tail, l->toc_tail_len, l->toc_offset};
        _cleanup_toc_ struct sl_toc *toc = NULL;
        if ((r = sl_toc_load(mem_read_at, &m, l->size, l->toc_digest, &toc, &err)) < 0)
            return fail(&err, r, "TOC tail");
        if (h->version == SL_DELTA_VERSION_2) { /* no file list: every TOC file counts */
            files += sl_toc_regular_files(toc);
            continue;
        }
        if (sl_toc_regular_files(toc) != l->n_files) {
            fprintf(stderr, "sl-core-tool: layer %zu: %zu files in the TOC, %zu listed\n", i,
                    sl_toc_regular_files(toc), l->n_files);
            return 1;
        }
        files += l->n_files;
    }
    json_auto_t *out = json_object();
    json_t *contents = json_array();
    size_t chunks = 0, traced = 0;
    for (size_t i = 0; i < h->n_contents; i++) {
        const struct sl_delta_content *c = &h->contents[i];
        for (size_t k = 0; k < c->n_chunks; k++) {
            const struct sl_delta_chunk *ch = &c->chunks[k];
            struct sl_toc_chunk tc = {.offset = ch->blob_offset,
                                      .compressed_size = ch->compressed_size,
                                      .chunk_offset = ch->chunk_offset,
                                      .size = ch->size};
            memcpy(tc.digest, ch->digest, sizeof(tc.digest));
            _cleanup_free_ uint8_t *outb = sl_xmalloc(ch->size + 1);
            r = sl_toc_chunk_decode(payload + ch->payload_offset, ch->compressed_size, &tc, outb,
                                    &err);
            if (r < 0)
                return fail(&err, r, c->digest);
            chunks++;
        }
        traced += c->traced;
        json_t *o = json_object();
        json_object_set_new(o, "digest", json_string(c->digest));
        json_object_set_new(o, "layer", json_integer(c->layer));
        json_object_set_new(o, "traced", json_boolean(c->traced));
        json_array_append_new(contents, o);
    }
    json_object_set_new(out, "digest", json_string(h->digest));
    json_object_set_new(out, "layers", json_integer((json_int_t)h->n_layers));
    json_object_set_new(out, "files", json_integer((json_int_t)files));
    json_object_set_new(out, "chunksVerified", json_integer((json_int_t)chunks));
    json_object_set_new(out, "traced", json_integer((json_int_t)traced));
    json_object_set_new(out, "payloadLength", json_integer((json_int_t)h->payload_length));
    json_object_set_new(out, "contents", contents);
    print_json(out);
    return 0;
}

static int cmd_watch(int argc, char **argv)
{
    struct sl_core *core = NULL;
    int r = open_core(argc, argv, 4, 4, &core);
    if (r)
        return r;
    _cleanup_error_ sl_error_t err = NULL;
    int secs = atoi(argv[3]);
    int phase = 0; /* 0: waiting for ok, 1: ok seen, 2: EAGAIN seen, 3: recovered */
    struct sl_delta_request req = {.to = argv[1], .platform = argv[2], .insecure = true};
    for (int i = 0; i < secs * 10 && phase < 3; i++) {
        struct sl_delta *d = NULL;
        r = sl_core_delta_plan(core, &req, &d, &err);
        sl_delta_free(d);
        if (r >= 0 && (phase == 0 || phase == 2)) {
            phase++;
            printf("%s\n", phase == 1 ? "ok" : "recovered");
            fflush(stdout);
        } else if (r == -EAGAIN && phase == 1) {
            phase = 2;
            printf("EAGAIN: %s\n", sl_error_msg(err, r));
            fflush(stdout);
        } else if (r < 0 && r != -EAGAIN) {
            sl_core_free(core);
            return fail(&err, r, "plan");
        }
        sl_error_free(&err);
        usleep(100 * 1000);
    }
    sl_core_free(core);
    return phase == 3 ? 0 : 1;
}

static int cmd_health(int argc, char **argv)
{
    struct sl_core *core = NULL;
    int r = open_core(argc, argv, 1, 1, &core);
    if (r)
        return r;
    _cleanup_error_ sl_error_t err = NULL;
    json_t *j = NULL;
    r = sl_core_health(core, &j, &err);
    print_json(j);
    json_decref(j);
    char *metrics = NULL;
    sl_core_metrics(core, &metrics);
    fprintf(stderr, "%s", metrics);
    free(metrics);
    sl_core_free(core);
    return r < 0 ? fail(&err, r, "health") : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    argc -= 2;
    argv += 2;
    if (strcmp(cmd, "notify") == 0)
        return cmd_notify(argc, argv);
    if (strcmp(cmd, "notify-many") == 0)
        return cmd_notify_many(argc, argv);
    if (strcmp(cmd, "report") == 0)
        return cmd_report(argc, argv);
    if (strcmp(cmd, "delta") == 0)
        return cmd_delta(argc, argv);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc, argv);
    if (strcmp(cmd, "watch") == 0)
        return cmd_watch(argc, argv);
    if (strcmp(cmd, "health") == 0)
        return cmd_health(argc, argv);
    return usage();
}
