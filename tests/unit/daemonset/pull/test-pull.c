/* test-pull.c — the delta receiver against a fake proxy on loopback: a valid delta (a real
 * Starlight blob made by the converter) is stored and registered once with the layer the
 * registration hook builds (sl_pull_registrar_image); hostile headers (traversal and absolute
 * names, lying sizes, a chunk outside the payload, a TOC tail that does not match its digest)
 * and a truncated body are refused before registration, with nothing created outside the
 * store. Resume: an answer that breaks off continues with Range/If-Range (nothing received
 * twice), a plan that changed meanwhile gives a new delta naming the verified contents, a
 * flipped payload byte makes the chunk be fetched again (and a proxy flipping it every time
 * fails the pull loudly), a pull stopped midway continues from the store's resume point. */
#include "test.h"

#include "../../common/format/fmt-test.h"
#include "base64.h"
#include "buf.h"
#include "delta.h"
#include "format.h"
#include "fs.h"
#include "manifest.h"
#include "pull-register.h"
#include "pull.h"
#include "store.h"
#include "toc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK 4096

struct fixture {
    char dir[64];
    uint8_t *body; /* prelude + header + payload of the valid delta */
    size_t body_len;
    /* fake proxy */
    int lfd;
    int port;
    pthread_t thr;
    const uint8_t *serve;
    size_t serve_len;
    int registered;
    char media_type[128];
    char phases[256];        /* phases seen by the event callback, space-separated */
    uint64_t startup_done;   /* contents_done when STARTUP came */
    uint64_t startup_traced; /* traced_done / traced_total then */
    uint64_t startup_ttotal;
    /* fake proxy behaviour for the resume tests */
    const char *etag;       /* sent as ETag; Range + If-Range honoured when set */
    const char *etag_after; /* answers after the first carry this ETag (the plan changed) */
    size_t cut_first;       /* > 0: the first answer ends after this many body bytes */
    long flip_first;        /* >= 0: the first answer has this body byte flipped */
    int requests;
    char ranges[8][64]; /* Range of each request ("" = none) */
    int saw_contents;   /* a POST body named held contents */
    bool cancel_on_resume;
    struct sl_store *store; /* of the running pull */
    /* the READY gate's tests */
    bool with_fs;       /* pull with an fs (not mounted): the gate publishes on it */
    struct sl_fs *fs;   /* of the running pull */
    bool bad_expect;    /* small.txt expected with another size: recording fails */
    int register_calls; /* the hook was called */
    int gate_result;    /* what the gate returned to the hook */
};

/* "Name: value" of request head `h` (case as curl sends it), copied into out. */
static bool req_header(const char *h, const char *name, char *out, size_t outsz)
{
    char key[64];
    snprintf(key, sizeof key, "\r\n%s: ", name);
    const char *p = strcasestr(h, key);
    if (!p)
        return false;
    p += strlen(key);
    size_t n = strcspn(p, "\r\n");
    snprintf(out, outsz, "%.*s", (int)SL_MIN(n, outsz - 1), p);
    return true;
}

static void write_all(int c, const void *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(c, (const uint8_t *)p + off, len - off);
        if (n <= 0)
            return;
        off += (size_t)n;
    }
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static void *serve(void *ud)
{
    struct fixture *fx = ud;
    for (;;) {
        int c = accept(fx->lfd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[65536];
        size_t got = 0;
        char *end = NULL;
        while (got < sizeof buf - 1) {
            ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = 0;
            if ((end = strstr(buf, "\r\n\r\n")))
                break;
        }
        char v[256];
        size_t clen = req_header(buf, "Content-Length", v, sizeof v) ? strtoul(v, NULL, 10) : 0;
        while (end && got - (size_t)(end + 4 - buf) < clen && got < sizeof buf - 1) {
            ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = 0;
        }
        if (end && strstr(end, "\"contents\":[\"sha256:"))
            fx->saw_contents = 1;
        int k = fx->requests++;
        const char *etag = k > 0 && fx->etag_after ? fx->etag_after : fx->etag;
        size_t first = 0, last = fx->serve_len - 1;
        bool partial = false;
        char range[64] = "";
        if (req_header(buf, "Range", range, sizeof range) && etag) {
            char ifr[128] = "";
            bool has_ifr = req_header(buf, "If-Range", ifr, sizeof ifr);
            unsigned long a = 0, b = 0;
            int m = sscanf(range, "bytes=%lu-%lu", &a, &b);
            if ((!has_ifr || strcmp(ifr, etag) == 0) && m >= 1 && a < fx->serve_len) {
                partial = true;
                first = a;
                if (m == 2 && b < last)
                    last = b;
            }
        }
        if (k < 8)
            snprintf(fx->ranges[k], sizeof fx->ranges[k], "%s", range);
        size_t len = last + 1 - first;
        char head[512];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n",
                          partial ? "206 Partial Content" : "200 OK", len);
        if (etag)
            hl += snprintf(head + hl, sizeof head - (size_t)hl, "ETag: %s\r\n", etag);
        if (partial)
            hl += snprintf(head + hl, sizeof head - (size_t)hl,
                           "Content-Range: bytes %zu-%zu/%zu\r\n", first, last, fx->serve_len);
        hl += snprintf(head + hl, sizeof head - (size_t)hl, "\r\n");
        write_all(c, head, (size_t)hl);
        uint8_t *body = malloc(len);
        memcpy(body, fx->serve + first, len);
        if (k == 0 && fx->flip_first >= 0 && (size_t)fx->flip_first < len)
            body[fx->flip_first] ^= 0x5a;
        if (k == 0 && fx->cut_first > 0 && fx->cut_first < len)
            len = fx->cut_first;
        write_all(c, body, len);
        free(body);
        shutdown(c, SHUT_RDWR);
        close(c);
    }
}

static char *json_str(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(s);
    json_decref(j);
    return s;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/sl-test-pull.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    uint8_t big[CHUNK * 2 + 100];
    fmt_fill(big, sizeof big, 3);
    struct fmt_spec specs[] = {
        {.name = "dir", .type = '5', .mode = 0755},
        {.name = "dir/big.bin", .type = '0', .mode = 0644, .data = big, .len = sizeof big},
        {.name = "dir/small.txt", .type = '0', .mode = 0644, .data = "hello\n", .len = 6},
        {.name = "dir/empty", .type = '0', .mode = 0644, .data = "", .len = 0},
    };
    int tar = fmt_build_tar(specs, SL_ELEMENTSOF(specs), FMT_GZIP);
    assert_true(tar >= 0);
    int bfd = memfd_create("blob", MFD_CLOEXEC);
    struct sl_format_options o = {.chunk_size = CHUNK, .threads = 1};
    struct sl_format_result res;
    sl_error_t err = NULL;
    assert_int_equal(sl_format_convert(tar, bfd, &o, &res, &err), 0);
    close(tar);
    size_t blen = 0;
    lseek(bfd, 0, SEEK_SET);
    uint8_t *blob = fmt_slurp(bfd, &blen);
    assert_int_equal(blen, res.blob_size);
    struct sl_toc *toc = NULL;
    assert_int_equal(sl_toc_load(sl_toc_pread_fd, &bfd, blen, NULL, &toc, &err), 0);
    close(bfd);

    char *config =
        json_str(json_pack("{s:s,s:s,s:{s:s,s:[s]}}", "architecture", "amd64", "os", "linux",
                           "rootfs", "type", "layers", "diff_ids", res.diff_id));
    char cdig[SL_DIGEST_STR_LEN], mdig[SL_DIGEST_STR_LEN];
    sl_sha256_str(config, strlen(config), cdig);
    char *manifest =
        json_str(json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:[{s:s,s:s,s:I,s:{s:s}}]}", "schemaVersion",
                           2, "mediaType", "application/vnd.oci.image.manifest.v1+json", "config",
                           "mediaType", "application/vnd.oci.image.config.v1+json", "digest", cdig,
                           "size", (json_int_t)strlen(config), "layers", "mediaType",
                           "application/vnd.oci.image.layer.v1.tar+gzip", "digest", res.blob_digest,
                           "size", (json_int_t)blen, "annotations",
                           "containerd.io/snapshot/remote/starlight/toc.digest", res.toc_digest));
    sl_sha256_str(manifest, strlen(manifest), mdig);

    struct sl_delta_file files[8];
    struct sl_delta_content contents[8];
    struct sl_delta_chunk chunks[16];
    size_t nf = 0, nc = 0, nk = 0;
    uint64_t poff = 0;
    struct sl_buf payload = {.max = 1u << 24};
    for (size_t i = 0; i < sl_toc_count(toc); i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(toc, i);
        if (e->type != SL_TOC_REG)
            continue;
        struct sl_delta_file *f = &files[nf++];
        *f = (struct sl_delta_file){.path = (char *)e->name, .size = e->size};
        snprintf(f->digest, sizeof f->digest, "%s", e->digest);
        if (e->size == 0) {
            f->source = SL_DELTA_FILE_EMPTY;
            continue;
        }
        f->source = SL_DELTA_FILE_PAYLOAD;
        f->content = (uint32_t)nc;
        struct sl_delta_content *ct = &contents[nc++];
        *ct = (struct sl_delta_content){
            .size = e->size, .payload_offset = poff, .chunks = &chunks[nk]};
        snprintf(ct->digest, sizeof ct->digest, "%s", e->digest);
        for (size_t k = 0; k < e->n_chunks; k++) {
            const struct sl_toc_chunk *tc = &e->chunks[k];
            struct sl_delta_chunk *dc = &chunks[nk++];
            *dc = (struct sl_delta_chunk){.blob_offset = tc->offset,
                                          .compressed_size = tc->compressed_size,
                                          .chunk_offset = tc->chunk_offset,
                                          .size = tc->size,
                                          .payload_offset = poff};
            snprintf(dc->digest, sizeof dc->digest, "%s", tc->digest);
            assert_int_equal(sl_buf_append(&payload, blob + tc->offset, tc->compressed_size), 0);
            poff += tc->compressed_size;
            ct->payload_length += tc->compressed_size;
            ct->n_chunks++;
        }
    }
    struct sl_delta_hlayer layer = {
        .size = blen,
        .toc_offset = res.toc_offset,
        .toc_tail = blob + res.toc_offset,
        .toc_tail_len = blen - res.toc_offset,
        .files = files,
        .n_files = nf,
    };
    snprintf(layer.digest, sizeof layer.digest, "%s", res.blob_digest);
    snprintf(layer.diff_id, sizeof layer.diff_id, "%s", res.diff_id);
    snprintf(layer.toc_digest, sizeof layer.toc_digest, "%s", res.toc_digest);
    struct sl_delta_header h = {
        .reference = "127.0.0.1:5000/t:1",
        .repository = "127.0.0.1:5000/t",
        .platform = "linux/amd64",
        .media_type = "application/vnd.oci.image.manifest.v1+json",
        .manifest = (uint8_t *)manifest,
        .manifest_len = strlen(manifest),
        .config = (uint8_t *)config,
        .config_len = strlen(config),
        .layers = &layer,
        .n_layers = 1,
        .contents = contents,
        .n_contents = nc,
        .payload_length = poff,
    };
    snprintf(h.digest, sizeof h.digest, "%s", mdig);
    snprintf(h.config_digest, sizeof h.config_digest, "%s", cdig);
    uint8_t *head = NULL;
    size_t head_len = 0;
    int r = sl_delta_header_encode(&h, &head, &head_len, &err);
    if (r < 0)
        fail_msg("encode: %s", sl_error_msg(err, r));
    fx->body_len = head_len + payload.len;
    fx->body = malloc(fx->body_len);
    memcpy(fx->body, head, head_len);
    memcpy(fx->body + head_len, payload.data, payload.len);
    free(head);
    sl_buf_free(&payload);
    sl_toc_free(toc);
    free(blob);
    free(config);
    free(manifest);

    fx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fx->lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(fx->lfd, (struct sockaddr *)&a, &al);
    fx->port = ntohs(a.sin_port);
    assert_int_equal(listen(fx->lfd, 16), 0);
    fx->serve = fx->body;
    fx->serve_len = fx->body_len;
    fx->flip_first = -1;
    assert_int_equal(pthread_create(&fx->thr, NULL, serve, fx), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    shutdown(fx->lfd, SHUT_RDWR);
    pthread_join(fx->thr, NULL);
    close(fx->lfd);
    nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx->body);
    free(fx);
    return 0;
}

/* The hook: builds what would go to containerd and checks it. */
static int on_register(void *ud, const struct sl_delta_header *h, const char *ns,
                       int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud, sl_error_t *err)
{
    struct fixture *fx = ud;
    struct sl_ctrd_layer layers[4];
    struct sl_ctrd_image img;
    struct sl_manifest *m = NULL;
    int r = sl_pull_registrar_image(h, layers, &img, &m, err);
    if (r < 0)
        return r;
    assert_string_equal(ns, "k8s.io");
    assert_string_equal(img.name, "127.0.0.1:5000/t:1");
    assert_int_equal(img.n_layers, 1);
    assert_true(layers[0].starlight);
    assert_string_equal(layers[0].diff_id, h->layers[0].diff_id);
    assert_string_equal(img.manifest_digest, h->digest);
    /* the gate: once it let the registration go on, the new layer is recorded in the store */
    assert_non_null(gate);
    fx->register_calls++;
    r = fx->gate_result = gate(gate_ud, err);
    if (r < 0) {
        sl_manifest_free(m);
        return r;
    }
    struct sl_store_layer rec = {0};
    assert_int_equal(sl_store_layer_get(fx->store, h->layers[0].digest, &rec, NULL), 0);
    sl_store_layer_clear(&rec);
    if (fx->fs) {         /* ... and served by the fs, before the image record */
        char *dir = NULL; /* not mounted here: a served layer answers -ENOTCONN */
        assert_int_equal(sl_fs_layer_dir(fx->fs, h->layers[0].digest, &dir, NULL), -ENOTCONN);
        free(dir);
    }
    assert_int_equal(gate(gate_ud, err), 0); /* idempotent */
    snprintf(fx->media_type, sizeof fx->media_type, "%s", layers[0].media_type);
    sl_manifest_free(m);
    fx->registered++;
    return 0;
}

static int on_event(void *ud, enum sl_pull_phase phase, const struct sl_pull_stats *st)
{
    struct fixture *fx = ud;
    if (fx->cancel_on_resume && phase == SL_PULL_PROGRESS && st->resumes > 0)
        return -ECANCELED; /* as a daemon that stops in the middle of a pull */
    if (phase == SL_PULL_PROGRESS)
        return 0;
    size_t n = strlen(fx->phases);
    snprintf(fx->phases + n, sizeof fx->phases - n, "%s%s", n ? " " : "",
             sl_pull_phase_name(phase));
    if (phase == SL_PULL_STARTUP) {
        assert_true(st->ms_startup >= 0);
        fx->startup_done = st->contents_done;
        fx->startup_traced = st->traced_done;
        fx->startup_ttotal = st->traced_total;
    }
    return 0;
}

static int run_stats(struct fixture *fx, const char *sub, struct sl_pull_stats *st,
                     sl_error_t *err);

static int run(struct fixture *fx, const char *sub, sl_error_t *err)
{
    struct sl_pull_stats st;
    return run_stats(fx, sub, &st, err);
}

static int run_stats(struct fixture *fx, const char *sub, struct sl_pull_stats *st, sl_error_t *err)
{
    fx->phases[0] = 0;
    char root[128], url[64];
    snprintf(root, sizeof root, "%s/%s", fx->dir, sub);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fx->port);
    struct sl_store *store = NULL;
    int r = sl_store_open(root, NULL, &store, err);
    assert_int_equal(r, 0);
    struct sl_pull_request rq = {
        .proxy_url = url,
        .ref = "127.0.0.1:5000/t:1",
        .platform = "linux/amd64",
        .ns = "k8s.io",
        .insecure = true,
        .on_register = on_register,
        .register_ud = fx,
        .on_event = on_event,
        .event_ud = fx,
        .low_speed_time_s = 5,
    };
    fx->store = store;
    if (fx->with_fs) {
        assert_int_equal(sl_fs_new(store, NULL, &fx->fs, NULL), 0);
    }
    if (fx->bad_expect) {
        char dig[SL_DIGEST_STR_LEN];
        sl_sha256_str("hello\n", 6, dig);
        assert_int_equal(sl_store_expect(store, dig, 7, NULL), 0);
    }
    r = sl_pull_run(store, fx->fs, &rq, st, err);
    sl_fs_free(fx->fs);
    fx->fs = NULL;
    fx->store = NULL;
    sl_store_free(store);
    return r;
}

static void test_valid(void **state)
{
    struct fixture *fx = *state;
    sl_error_t err = NULL;
    int r = run(fx, "ok", &err);
    if (r < 0)
        fail_msg("valid delta: %s", sl_error_msg(err, r));
    assert_int_equal(fx->registered, 1);
    assert_string_equal(fx->media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    /* untraced plan: the startup set is the whole image, STARTUP comes with COMPLETE */
    assert_string_equal(fx->phases, "header ready startup complete");
    assert_int_equal(fx->startup_done, 2);
    assert_int_equal(fx->startup_ttotal, 0);
}

static uint8_t *modified(struct fixture *fx, const char *mode, size_t *ret_len);

/* With an fs: the gate publishes the layer before the hook writes the image record. */
static void test_gate_publishes(void **state)
{
    struct fixture *fx = *state;
    fx->with_fs = true;
    sl_error_t err = NULL;
    int r = run(fx, "gate-fs", &err);
    fx->with_fs = false;
    if (r < 0)
        fail_msg("pull with an fs: %s", sl_error_msg(err, r));
    assert_int_equal(fx->registered, 1);
}

/* The store cannot record the layer: the gate fails, the hook registers nothing. */
static void test_gate_recorder_fails(void **state)
{
    struct fixture *fx = *state;
    fx->bad_expect = true;
    sl_error_t err = NULL;
    int r = run(fx, "gate-store", &err);
    fx->bad_expect = false;
    assert_true(r < 0);
    assert_int_equal(fx->register_calls, 1);
    assert_true(fx->gate_result < 0);
    assert_int_equal(fx->registered, 0);
    assert_null(strstr(fx->phases, "ready"));
    sl_error_free(&err);
}

/* A plan whose first content (big.bin, 3 chunks) is traced: STARTUP once it is stored, before
 * small.txt arrives and before COMPLETE. */
static void test_startup_traced(void **state)
{
    struct fixture *fx = *state;
    sl_error_t err = NULL;
    size_t n = 0;
    uint8_t *b = modified(fx, "traced", &n);
    fx->serve = b;
    fx->serve_len = n;
    int r = run(fx, "traced", &err);
    fx->serve = fx->body;
    fx->serve_len = fx->body_len;
    free(b);
    if (r < 0)
        fail_msg("traced delta: %s", sl_error_msg(err, r));
    assert_string_equal(fx->phases, "header ready startup complete");
    assert_int_equal(fx->startup_traced, 1);
    assert_int_equal(fx->startup_ttotal, 1);
    assert_int_equal(fx->startup_done, 1); /* small.txt not stored yet */
}

/* Serves the valid delta with its header changed by `mode` and expects a refusal. */
static void hostile(struct fixture *fx, const char *mode)
{
    sl_error_t err = NULL;
    size_t n = 0;
    uint8_t *b = modified(fx, mode, &n);
    fx->serve = b;
    fx->serve_len = n;
    int r = run(fx, mode, &err);
    fx->serve = fx->body;
    fx->serve_len = fx->body_len;
    free(b);
    if (r >= 0)
        fail_msg("hostile header (%s) accepted", mode);
    print_message("  %s: %s\n", mode, sl_error_msg(err, r));
    sl_error_free(&err);
    assert_int_equal(fx->registered, 0);
    struct stat st;
    assert_int_not_equal(stat("/tmp/evil-absolute", &st), 0);
    char p[128];
    snprintf(p, sizeof p, "%s/../evil-traversal", fx->dir);
    assert_int_not_equal(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/evil-traversal", fx->dir);
    assert_int_not_equal(stat(p, &st), 0);
}

/* The valid delta with its header changed by `mode` (a new buffer, caller frees). */
static uint8_t *modified(struct fixture *fx, const char *mode, size_t *ret_len)
{
    uint64_t hl = 0, pl = 0;
    sl_error_t err = NULL;
    assert_int_equal(sl_delta_prelude_parse(fx->body, 32, &hl, &pl, &err), 0);
    json_error_t je;
    json_t *h = json_loadb((const char *)fx->body + 32, hl, 0, &je);
    assert_non_null(h);
    json_t *layer = json_array_get(json_object_get(h, "layers"), 0);
    json_t *files = json_object_get(layer, "files");
    json_t *contents = json_object_get(h, "contents");
    json_t *f0 = NULL;
    size_t i;
    json_array_foreach(files, i, f0) if (strcmp(json_string_value(json_object_get(f0, "source")),
                                                "payload") == 0) break;
    if (strcmp(mode, "traversal") == 0) {
        json_object_set_new(f0, "path", json_string("../../evil-traversal"));
    } else if (strcmp(mode, "absolute") == 0) {
        json_object_set_new(f0, "path", json_string("/tmp/evil-absolute"));
    } else if (strcmp(mode, "size") == 0) {
        json_t *ct =
            json_array_get(contents, (size_t)json_integer_value(json_object_get(f0, "content")));
        json_t *chunks = json_object_get(ct, "chunks");
        json_t *last = json_array_get(chunks, json_array_size(chunks) - 1);
        json_object_set_new(f0, "size",
                            json_integer(json_integer_value(json_object_get(f0, "size")) + 4096));
        json_object_set_new(ct, "size",
                            json_integer(json_integer_value(json_object_get(ct, "size")) + 4096));
        json_object_set_new(last, "size",
                            json_integer(json_integer_value(json_object_get(last, "size")) + 4096));
    } else if (strcmp(mode, "chunk") == 0) {
        json_t *c = json_array_get(json_object_get(json_array_get(contents, 0), "chunks"), 0);
        json_object_set_new(c, "payloadOffset", json_integer((json_int_t)pl + 10));
    } else if (strcmp(mode, "traced") == 0) {
        json_object_set_new(json_array_get(contents, 0), "traced", json_true());
    } else if (strcmp(mode, "overlap") == 0) { /* the second content reuses the first's bytes */
        json_t *c1 = json_array_get(contents, 1);
        json_object_set_new(c1, "payloadOffset", json_integer(0));
        json_object_set_new(json_array_get(json_object_get(c1, "chunks"), 0), "payloadOffset",
                            json_integer(0));
    } else if (strcmp(mode, "compressed") == 0) { /* a chunk claims more bytes than it has */
        json_t *c0 = json_array_get(contents, 0);
        json_t *ch = json_array_get(json_object_get(c0, "chunks"), 0);
        json_object_set_new(
            ch, "compressedSize",
            json_integer(json_integer_value(json_object_get(ch, "compressedSize")) + 7));
    } else if (strcmp(mode, "blobrange") == 0) { /* a chunk outside its layer blob */
        json_t *ch = json_array_get(json_object_get(json_array_get(contents, 0), "chunks"), 0);
        json_object_set_new(ch, "blobOffset",
                            json_integer(json_integer_value(json_object_get(layer, "size")) + 100));
    } else if (strcmp(mode, "filesize") == 0) { /* a file larger than its TOC entry */
        json_object_set_new(f0, "size",
                            json_integer(json_integer_value(json_object_get(f0, "size")) * 2));
    } else if (strcmp(mode, "unannotated") == 0) { /* nothing vouches for the TOC */
        json_t *t = json_object_get(h, "target");
        const char *mb = json_string_value(json_object_get(t, "manifest"));
        uint8_t *raw = NULL;
        size_t rl = 0;
        assert_int_equal(sl_base64_decode(mb, strlen(mb), &raw, &rl), 0);
        json_t *m = json_loadb((const char *)raw, rl, 0, &je);
        free(raw);
        json_object_del(json_array_get(json_object_get(m, "layers"), 0), "annotations");
        char *ms = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        char dg[SL_DIGEST_STR_LEN];
        sl_sha256_str(ms, strlen(ms), dg);
        char *enc = sl_base64_encode(ms, strlen(ms), NULL);
        json_object_set_new(t, "manifest", json_string(enc));
        json_object_set_new(t, "digest", json_string(dg));
        free(enc);
        free(ms);
    } else if (strcmp(mode, "tail") == 0) {
        const char *t = json_string_value(json_object_get(layer, "tocTail"));
        char *x = strdup(t);
        size_t mid = strlen(x) / 2;
        x[mid] = x[mid] == 'A' ? 'B' : 'A';
        json_object_set_new(layer, "tocTail", json_string(x));
        free(x);
    }
    char *hj = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hjl = strlen(hj);
    size_t n = 32 + hjl + pl;
    uint8_t *b = malloc(n);
    memcpy(b, fx->body, 16);
    for (int k = 0; k < 8; k++) {
        b[16 + k] = (uint8_t)((uint64_t)hjl >> (56 - 8 * k));
        b[24 + k] = (uint8_t)(pl >> (56 - 8 * k));
    }
    memcpy(b + 32, hj, hjl);
    memcpy(b + 32 + hjl, fx->body + 32 + hl, pl);
    if (strcmp(mode, "prelude") == 0) /* the prelude announces more payload than the header */
        for (int k = 0; k < 8; k++)
            b[24 + k] = (uint8_t)((pl + 4096) >> (56 - 8 * k));
    free(hj);
    *ret_len = n;
    return b;
}

static void test_traversal(void **state)
{
    hostile(*state, "traversal");
}
static void test_absolute(void **state)
{
    hostile(*state, "absolute");
}
static void test_size(void **state)
{
    hostile(*state, "size");
}
static void test_chunk(void **state)
{
    hostile(*state, "chunk");
}
static void test_tail(void **state)
{
    hostile(*state, "tail");
}

static void test_overlap(void **state)
{
    hostile(*state, "overlap");
}
static void test_compressed(void **state)
{
    hostile(*state, "compressed");
}
static void test_blobrange(void **state)
{
    hostile(*state, "blobrange");
}
static void test_filesize(void **state)
{
    hostile(*state, "filesize");
}
static void test_prelude(void **state)
{
    hostile(*state, "prelude");
}

static void test_unannotated(void **state)
{
    hostile(*state, "unannotated");
}

static void test_truncated(void **state)
{
    struct fixture *fx = *state;
    fx->serve_len = fx->body_len - 10; /* Content-Length says so too: a short stream */
    sl_error_t err = NULL;
    int r = run(fx, "short", &err);
    fx->serve_len = fx->body_len;
    assert_true(r < 0);
    sl_error_free(&err);
}

/* The first answer breaks off: the pull continues with Range + If-Range, nothing twice. */
static void test_resume_cut(void **state)
{
    struct fixture *fx = *state;
    fx->etag = "\"sha256:e1\"";
    fx->cut_first = fx->body_len / 2;
    struct sl_pull_stats st;
    sl_error_t err = NULL;
    int r = run_stats(fx, "cut", &st, &err);
    if (r < 0)
        fail_msg("cut: %s", sl_error_msg(err, r));
    assert_int_equal(st.resumes, 1);
    assert_int_equal(st.replans, 0);
    assert_int_equal(st.bytes_resent, 0);
    assert_int_equal(st.bytes_received, fx->body_len);
    assert_int_equal(fx->requests, 2);
    char want[64];
    snprintf(want, sizeof want, "bytes=%zu-", fx->body_len / 2);
    assert_string_equal(fx->ranges[1], want);
    assert_int_equal(fx->registered, 1);
}

/* The plan changed between the break and the resume (another ETag: a full answer): a new
 * delta names the contents already verified. */
static void test_resume_replan(void **state)
{
    struct fixture *fx = *state;
    fx->etag = "\"sha256:e1\"";
    fx->etag_after = "\"sha256:e2\"";
    fx->cut_first = fx->body_len - 3; /* big.bin complete, small.txt not */
    struct sl_pull_stats st;
    sl_error_t err = NULL;
    int r = run_stats(fx, "replan", &st, &err);
    if (r < 0)
        fail_msg("replan: %s", sl_error_msg(err, r));
    assert_int_equal(st.replans, 1);
    assert_int_equal(fx->requests, 3);
    assert_true(fx->saw_contents);
    assert_string_equal(fx->ranges[2], "");
}

/* One flipped payload byte: the chunk is refused and fetched again from its first byte. */
static void test_flip_refetch(void **state)
{
    struct fixture *fx = *state;
    uint64_t hl = 0, pl = 0;
    sl_error_t err = NULL;
    assert_int_equal(sl_delta_prelude_parse(fx->body, 32, &hl, &pl, &err), 0);
    fx->etag = "\"sha256:e1\"";
    fx->flip_first = (long)(32 + hl + 100);
    struct sl_pull_stats st;
    int r = run_stats(fx, "flip", &st, &err);
    if (r < 0)
        fail_msg("flip: %s", sl_error_msg(err, r));
    assert_int_equal(st.chunks_refetched, 1);
    assert_int_equal(fx->requests, 2);
    /* from the first byte of the chunk holding the flipped one */
    assert_true(strncmp(fx->ranges[1], "bytes=", 6) == 0);
    uint64_t from = strtoull(fx->ranges[1] + 6, NULL, 10);
    assert_true(from >= 32 + hl && from <= 32 + hl + 100);
    assert_true(st.bytes_resent > 0 && st.bytes_resent <= fx->body_len - from);
}

/* Flipped in every answer: bounded refetches, then a loud failure. */
static void test_flip_always(void **state)
{
    struct fixture *fx = *state;
    uint64_t hl = 0, pl = 0;
    sl_error_t err = NULL;
    assert_int_equal(sl_delta_prelude_parse(fx->body, 32, &hl, &pl, &err), 0);
    uint8_t *bad = malloc(fx->body_len);
    memcpy(bad, fx->body, fx->body_len);
    bad[32 + hl + 100] ^= 0x5a;
    fx->serve = bad;
    fx->etag = "\"sha256:e1\"";
    int r = run(fx, "flip-always", &err);
    fx->serve = fx->body;
    free(bad);
    assert_int_equal(r, -EBADMSG);
    print_message("  %s\n", sl_error_msg(err, r));
    assert_non_null(strstr(sl_error_msg(err, r), "failed verification"));
    sl_error_free(&err);
    assert_int_equal(fx->requests, 4);
}

/* A pull stopped in the middle (daemon restart) continues from the store's resume point:
 * the head once more with If-Range, then the payload from the saved offset. */
static void test_resume_restart(void **state)
{
    struct fixture *fx = *state;
    uint64_t hl = 0, pl = 0;
    sl_error_t err = NULL;
    assert_int_equal(sl_delta_prelude_parse(fx->body, 32, &hl, &pl, &err), 0);
    fx->etag = "\"sha256:e1\"";
    fx->cut_first = fx->body_len - 3;
    fx->cancel_on_resume = true;
    struct sl_pull_stats st;
    int r = run_stats(fx, "restart", &st, &err);
    assert_int_equal(r, -ECANCELED);
    sl_error_free(&err);
    assert_int_equal(fx->requests, 1);
    fx->cancel_on_resume = false;
    r = run_stats(fx, "restart", &st, &err);
    if (r < 0)
        fail_msg("restart: %s", sl_error_msg(err, r));
    assert_int_equal(fx->requests, 3);
    char want[64];
    snprintf(want, sizeof want, "bytes=0-%" PRIu64, 32 + hl - 1);
    assert_string_equal(fx->ranges[1], want);
    assert_true(strncmp(fx->ranges[2], "bytes=", 6) == 0);
    uint64_t from = strtoull(fx->ranges[2] + 6, NULL, 10);
    assert_true(from > 32 + hl);
    assert_int_equal(st.bytes_received, 32 + hl + (fx->body_len - from));
    assert_int_equal(st.contents_done, st.contents_total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_startup_traced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_publishes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_recorder_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traversal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absolute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compressed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blobrange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filesize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prelude, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unannotated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_replan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_refetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_always, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
