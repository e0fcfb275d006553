/* test-pull.c — the delta receiver against a fake proxy on loopback: a valid delta (a real
 * Starlight blob made by the converter) is stored and registered once with the layer the
 * registration hook builds (sl_pull_registrar_image); hostile headers (traversal and absolute
 * names, lying sizes, a chunk outside the payload, a TOC tail that does not match its digest)
 * and a truncated body are refused before registration, with nothing created outside the
 * store. */
#include "test.h"

#include "../../common/format/fmt-test.h"
#include "buf.h"
#include "delta.h"
#include "format.h"
#include "manifest.h"
#include "pull-register.h"
#include "pull.h"
#include "store.h"
#include "toc.h"

#include <arpa/inet.h>
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
};

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
        char buf[8192];
        size_t got = 0;
        while (got < sizeof buf - 1) {
            ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = 0;
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        char head[128];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                          fx->serve_len);
        if (write(c, head, (size_t)hl) == hl) {
            size_t off = 0;
            while (off < fx->serve_len) {
                ssize_t n = write(c, fx->serve + off, fx->serve_len - off);
                if (n <= 0)
                    break;
                off += (size_t)n;
            }
        }
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
        json_str(json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:[{s:s,s:s,s:I}]}", "schemaVersion", 2,
                           "mediaType", "application/vnd.oci.image.manifest.v1+json", "config",
                           "mediaType", "application/vnd.oci.image.config.v1+json", "digest", cdig,
                           "size", (json_int_t)strlen(config), "layers", "mediaType",
                           "application/vnd.oci.image.layer.v1.tar+gzip", "digest", res.blob_digest,
                           "size", (json_int_t)blen));
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
static int on_register(void *ud, const struct sl_delta_header *h, const char *ns, sl_error_t *err)
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
    snprintf(fx->media_type, sizeof fx->media_type, "%s", layers[0].media_type);
    sl_manifest_free(m);
    fx->registered++;
    return 0;
}

static int on_event(void *ud, enum sl_pull_phase phase, const struct sl_pull_stats *st)
{
    struct fixture *fx = ud;
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

static int run(struct fixture *fx, const char *sub, sl_error_t *err)
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
    struct sl_pull_stats st;
    r = sl_pull_run(store, NULL, &rq, &st, err);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_startup_traced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traversal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absolute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
