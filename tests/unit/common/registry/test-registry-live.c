/* test-registry-live: the registry client against real servers on 127.0.0.1 — three
 * docker-registry instances (anonymous, htpasswd Basic, token auth with a token server) and
 * a scripted fault server. Run directly, it re-executes itself through run-live.sh, which
 * starts the servers and passes their addresses in SL_TEST_* variables. */
#include "test.h"

#include "auth.h"
#include "buf.h"
#include "cleanup.h"
#include "digest.h"
#include "http.h"
#include "registry.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v)
        fail_msg("%s not set", name);
    return v;
}

static struct sl_registry *reg_open(const char *env_name, const struct sl_registry_options *extra)
{
    struct sl_registry_options o = {.insecure = true,
                                    .docker_config = env("SL_TEST_DOCKER_CONFIG"),
                                    .backoff_ms = 20,
                                    .chunk_size = 1 << 20,
                                    .monolithic_max = 1 << 20};
    if (extra) {
        o.username = extra->username;
        o.password = extra->password;
        if (extra->docker_config)
            o.docker_config = extra->docker_config;
        if (extra->retries)
            o.retries = extra->retries;
    }
    struct sl_registry *reg = NULL;
    sl_error_t err = NULL;
    int r = sl_registry_new(env(env_name), &o, &reg, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    return reg;
}

static void fill(char *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (char)(seed >> 16);
    }
}

#define ZEROS64 "0000000000000000000000000000000000000000000000000000000000000000"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        sl_error_t e_ = NULL;                                                                      \
        int r_ = (call);                                                                           \
        if (r_ < 0)                                                                                \
            fail_msg("%s: %s", #call, sl_error_msg(e_, r_));                                       \
    } while (0)

/* Calls expected to fail: returns the class, stores the message in last_msg. */
static char last_msg[2048];
static int expect_fail(int r, sl_error_t *err)
{
    snprintf(last_msg, sizeof(last_msg), "%s", sl_error_msg(*err, r));
    sl_error_free(err);
    return r;
}

static void assert_msg(const char *needle)
{
    if (!strstr(last_msg, needle))
        fail_msg("`%s` not in `%s`", needle, last_msg);
}

static int push_buf(struct sl_registry *reg, const char *repo, const void *p, size_t n,
                    const char *from, char digest[SL_DIGEST_STR_LEN], sl_error_t *err)
{
    sl_sha256_str(p, n, digest);
    struct sl_blob_source src = {.fd = -1, .data = p, .size = (int64_t)n};
    return sl_registry_push_blob(reg, repo, digest, &src, from, err);
}

static char *oci_manifest(const char *cfg_digest, size_t cfg_size, const char *layer_digest,
                          size_t layer_size, const char *mt)
{
    return sl_xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
        "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
        "\"size\":%zu}]}",
        mt, strcmp(mt, SL_MT_OCI_MANIFEST) == 0 ? SL_MT_OCI_CONFIG : SL_MT_DOCKER_CONFIG,
        cfg_digest, cfg_size,
        strcmp(mt, SL_MT_OCI_MANIFEST) == 0 ? SL_MT_OCI_LAYER_GZIP : SL_MT_DOCKER_LAYER,
        layer_digest, layer_size);
}

static const char config_json[] = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{"
                                  "\"type\":\"layers\",\"diff_ids\":[]}}";

static void test_anon_roundtrip(void **state)
{
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG_ANON", NULL);
    sl_error_t err = NULL;
    int r;
    char host[128];
    snprintf(host, sizeof(host), "%s", sl_registry_host(reg));
    CHECK(sl_registry_ping(reg, &e_));

    /* Small blob: monolithic upload, then HEAD short-circuits. */
    char cfg_d[SL_DIGEST_STR_LEN];
    size_t cfg_n = strlen(config_json);
    r = push_buf(reg, "app", config_json, cfg_n, NULL, cfg_d, &err);
    assert_int_equal(r, SL_PUSH_UPLOADED);
    assert_int_equal(push_buf(reg, "app", config_json, cfg_n, NULL, cfg_d, &err), SL_PUSH_EXISTS);
    int64_t size = 0;
    assert_int_equal(sl_registry_head_blob(reg, "app", cfg_d, &size, &err), 1);
    assert_int_equal(size, (int64_t)cfg_n);

    /* Large blob from a file: chunked PATCH upload (1 MiB chunks). */
    size_t big_n = 3 * (1 << 20) + 12345;
    char *big = malloc(big_n);
    fill(big, big_n, 7);
    char path[512];
    snprintf(path, sizeof(path), "%s/big.bin", env("SL_TEST_TMP"));
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "xx", 2), 2); /* the source starts at an offset */
    assert_int_equal(write(fd, big, big_n), (ssize_t)big_n);
    char big_d[SL_DIGEST_STR_LEN];
    sl_sha256_str(big, big_n, big_d);
    struct sl_blob_source src = {.fd = fd, .offset = 2, .size = (int64_t)big_n};
    r = sl_registry_push_blob(reg, "app", big_d, &src, NULL, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    assert_int_equal(r, SL_PUSH_UPLOADED);
    close(fd);

    /* Streaming GET with digest verification, and into a buffer. */
    struct sl_buf b;
    sl_buf_init(&b, 8 << 20);
    CHECK(sl_registry_get_blob(reg, "app", big_d, sl_http_sink_buf, &b, &e_));
    assert_int_equal(b.len, big_n);
    assert_memory_equal(b.data, big, big_n);
    sl_buf_free(&b);
    char *cfg = NULL;
    size_t cfg_len = 0;
    CHECK(sl_registry_get_blob_buf(reg, "app", cfg_d, 1 << 20, &cfg, &cfg_len, &e_));
    assert_int_equal(cfg_len, cfg_n);
    assert_memory_equal(cfg, config_json, cfg_n);
    free(cfg);
    assert_int_equal(sl_registry_get_blob_buf(reg, "app", big_d, 1000, &cfg, &cfg_len, &err),
                     -EFBIG);
    sl_error_free(&err);

    /* Range reads: 206 from the registry. */
    sl_buf_init(&b, 1 << 20);
    CHECK(sl_registry_get_blob_range(reg, "app", big_d, 1000, 5000, sl_http_sink_buf, &b, &e_));
    assert_int_equal(b.len, 5000);
    assert_memory_equal(b.data, big + 1000, 5000);
    sl_buf_reset(&b);
    CHECK(sl_registry_get_blob_range(reg, "app", big_d, (int64_t)big_n - 10, 10, sl_http_sink_buf,
                                     &b, &e_));
    assert_memory_equal(b.data, big + big_n - 10, 10);
    sl_buf_reset(&b);
    r = sl_registry_get_blob_range(reg, "app", big_d, (int64_t)big_n - 10, 20, sl_http_sink_buf, &b,
                                   &err);
    if (expect_fail(r, &err) != -ERANGE)
        fail_msg("%s", last_msg);
    r = sl_registry_get_blob_range(reg, "app", big_d, (int64_t)big_n + 10, 20, sl_http_sink_buf, &b,
                                   &err);
    if (expect_fail(r, &err) != -ERANGE)
        fail_msg("%s", last_msg);
    sl_buf_free(&b);

    /* Manifests of each type: PUT, GET by tag and by digest, bytes exactly as pushed. */
    char *m1 = oci_manifest(cfg_d, cfg_n, big_d, big_n, SL_MT_OCI_MANIFEST);
    char m1_d[SL_DIGEST_STR_LEN];
    CHECK(
        sl_registry_put_manifest(reg, "app", "v1", m1, strlen(m1), SL_MT_OCI_MANIFEST, m1_d, &e_));
    struct sl_registry_manifest got;
    CHECK(sl_registry_get_manifest(reg, "app", "v1", &got, &e_));
    assert_int_equal(got.len, strlen(m1));
    assert_memory_equal(got.data, m1, got.len);
    assert_string_equal(got.digest, m1_d);
    assert_string_equal(got.media_type, SL_MT_OCI_MANIFEST);
    assert_int_equal(got.manifest->n_layers, 1);
    assert_string_equal(got.manifest->layers[0].digest, big_d);
    sl_registry_manifest_free(&got);
    CHECK(sl_registry_get_manifest(reg, "app", m1_d, &got, &e_));
    assert_string_equal(got.digest, m1_d);
    sl_registry_manifest_free(&got);
    /* HEAD (prune's check): 1 for a pushed manifest, 0 for an unknown digest */
    assert_int_equal(sl_registry_head_manifest(reg, "app", m1_d, NULL), 1);
    assert_int_equal(sl_registry_head_manifest(reg, "app", "sha256:" ZEROS64, NULL), 0);

    char *m2 = oci_manifest(cfg_d, cfg_n, big_d, big_n, SL_MT_DOCKER_MANIFEST);
    char m2_d[SL_DIGEST_STR_LEN];
    CHECK(sl_registry_put_manifest(reg, "app", "v2", m2, strlen(m2), SL_MT_DOCKER_MANIFEST, m2_d,
                                   &e_));
    CHECK(sl_registry_put_manifest(reg, "app", m2_d, m2, strlen(m2), SL_MT_DOCKER_MANIFEST, NULL,
                                   &e_));
    CHECK(sl_registry_get_manifest(reg, "app", "v2", &got, &e_));
    assert_int_equal(got.manifest->kind, SL_MANIFEST_DOCKER_V2);
    assert_string_equal(got.digest, m2_d);
    sl_registry_manifest_free(&got);

    char *idx = sl_xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"" SL_MT_OCI_INDEX "\",\"manifests\":[{\"mediaType\":"
        "\"" SL_MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"os\":"
        "\"linux\",\"architecture\":\"amd64\"}}]}",
        m1_d, strlen(m1));
    CHECK(sl_registry_put_manifest(reg, "app", "multi", idx, strlen(idx), SL_MT_OCI_INDEX, NULL,
                                   &e_));
    CHECK(sl_registry_get_manifest(reg, "app", "multi", &got, &e_));
    assert_int_equal(got.manifest->kind, SL_MANIFEST_OCI_INDEX);
    assert_string_equal(got.manifest->manifests[0].digest, m1_d);
    sl_registry_manifest_free(&got);
    char *dl = sl_xasprintf("{\"schemaVersion\":2,\"mediaType\":\"" SL_MT_DOCKER_LIST
                            "\",\"manifests\":[{\"mediaType\":"
                            "\"" SL_MT_DOCKER_MANIFEST
                            "\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"os\":"
                            "\"linux\",\"architecture\":\"amd64\"}}]}",
                            m2_d, strlen(m2));
    CHECK(
        sl_registry_put_manifest(reg, "app", "list", dl, strlen(dl), SL_MT_DOCKER_LIST, NULL, &e_));
    CHECK(sl_registry_get_manifest(reg, "app", "list", &got, &e_));
    assert_int_equal(got.manifest->kind, SL_MANIFEST_DOCKER_LIST);
    sl_registry_manifest_free(&got);

    /* Clear errors naming the operation and the image. */
    char want[512];
    r = sl_registry_get_manifest(reg, "app", "nope", &got, &err);
    assert_int_equal(expect_fail(r, &err), -ENOENT);
    snprintf(want, sizeof(want), "GET manifest `%s/app:nope`: HTTP 404 MANIFEST_UNKNOWN", host);
    assert_msg(want);
    char missing[SL_DIGEST_STR_LEN];
    sl_sha256_str("missing", 7, missing);
    char *bad = oci_manifest(cfg_d, cfg_n, missing, 7, SL_MT_OCI_MANIFEST);
    r = sl_registry_put_manifest(reg, "app", "bad", bad, strlen(bad), SL_MT_OCI_MANIFEST, NULL,
                                 &err);
    assert_int_equal(expect_fail(r, &err), -EINVAL);
    snprintf(want, sizeof(want), "PUT manifest `%s/app:bad`: HTTP 400 MANIFEST_BLOB_UNKNOWN", host);
    assert_msg(want);
    assert_int_equal(sl_registry_head_blob(reg, "app", missing, NULL, &err), 0);
    r = sl_registry_get_blob(reg, "app", missing, sl_http_sink_buf, &b, &err);
    assert_int_equal(expect_fail(r, &err), -ENOENT);
    assert_msg("BLOB_UNKNOWN");
    r = sl_registry_get_manifest(reg, "Bad Repo", "v1", &got, &err);
    assert_int_equal(expect_fail(r, &err), -EINVAL);
    r = sl_registry_get_manifest(reg, "app", "bad tag", &got, &err);
    assert_int_equal(expect_fail(r, &err), -EINVAL);
    r = sl_registry_put_manifest(reg, "app", missing, m1, strlen(m1), SL_MT_OCI_MANIFEST, NULL,
                                 &err);
    assert_int_equal(expect_fail(r, &err), -EINVAL); /* digest reference must match the bytes */

    free(bad);
    free(idx);
    free(dl);
    free(m1);
    free(m2);
    free(big);
}

static void test_mount(void **state)
{
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG_ANON", NULL);
    sl_error_t err = NULL;
    char data[4096], d[SL_DIGEST_STR_LEN];
    fill(data, sizeof(data), 99);
    assert_int_equal(push_buf(reg, "src/app", data, sizeof(data), NULL, d, &err), SL_PUSH_UPLOADED);
    assert_int_equal(push_buf(reg, "dst/app", data, sizeof(data), "src/app", d, &err),
                     SL_PUSH_MOUNTED);
    assert_int_equal(sl_registry_head_blob(reg, "dst/app", d, NULL, &err), 1);
    /* The source repository lacks the blob: the registry opens an upload instead. */
    fill(data, sizeof(data), 100);
    int r = push_buf(reg, "dst/app", data, sizeof(data), "empty/repo", d, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    assert_int_equal(r, SL_PUSH_UPLOADED);
    assert_int_equal(sl_registry_head_blob(reg, "dst/app", d, NULL, &err), 1);
}

static void test_basic_auth(void **state)
{
    sl_error_t err = NULL;
    {
        _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG_BASIC", NULL);
        char d[SL_DIGEST_STR_LEN];
        assert_int_equal(
            push_buf(reg, "private/app", config_json, strlen(config_json), NULL, d, &err),
            SL_PUSH_UPLOADED);
        char *m = oci_manifest(d, strlen(config_json), d, strlen(config_json), SL_MT_OCI_MANIFEST);
        CHECK(sl_registry_put_manifest(reg, "private/app", "v1", m, strlen(m), SL_MT_OCI_MANIFEST,
                                       NULL, &e_));
        struct sl_registry_manifest got;
        CHECK(sl_registry_get_manifest(reg, "private/app", "v1", &got, &e_));
        sl_registry_manifest_free(&got);
        free(m);
    }
    {
        struct sl_registry_options o = {.username = "alice", .password = "wrong"};
        _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG_BASIC", &o);
        int r = sl_registry_ping(reg, &err);
        assert_int_equal(expect_fail(r, &err), -EACCES);
        assert_msg("HTTP 401");
        assert_msg("Basic realm=\"sl-basic\"");
    }
    {
        char path[512];
        snprintf(path, sizeof(path), "%s/empty.json", env("SL_TEST_TMP"));
        FILE *f = fopen(path, "we");
        fputs("{}", f);
        fclose(f);
        struct sl_registry_options o = {.docker_config = path};
        _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG_BASIC", &o);
        struct sl_registry_manifest got;
        int r = sl_registry_get_manifest(reg, "private/app", "v1", &got, &err);
        assert_int_equal(expect_fail(r, &err), -EACCES);
        assert_msg("GET manifest");
        assert_msg("HTTP 401");
    }
}

static int64_t fetch_count(const char *base, const char *path, const char *key, const char *val)
{
    _cleanup_free_ char *u0 = sl_xasprintf("%s%s", base, path), *u = NULL;
    assert_int_equal(sl_http_url_add_query(u0, key, val, &u), 0);
    struct sl_buf b;
    sl_buf_init(&b, 1024);
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.url = u;
    req.body_buf = &b;
    struct sl_http_response resp = {0};
    assert_int_equal(sl_http_perform(NULL, &req, &resp, NULL), 0);
    assert_int_equal(resp.status, 200);
    int64_t n = strtoll(b.data, NULL, 10);
    sl_http_response_free(&resp);
    sl_buf_free(&b);
    return n;
}

static void test_token_auth(void **state)
{
    sl_error_t err = NULL;
    const char *tok_url = env("SL_TEST_TOKEN_URL");
    {
        _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG_TOKEN", NULL);
        char d[SL_DIGEST_STR_LEN], d2[SL_DIGEST_STR_LEN];
        char data[1000];
        fill(data, sizeof(data), 5);
        int r = push_buf(reg, "cached/app", config_json, strlen(config_json), NULL, d, &err);
        if (r < 0)
            fail_msg("%s", sl_error_msg(err, r));
        assert_int_equal(r, SL_PUSH_UPLOADED);
        assert_int_equal(push_buf(reg, "cached/app", data, sizeof(data), NULL, d2, &err),
                         SL_PUSH_UPLOADED);
        char *m = oci_manifest(d, strlen(config_json), d2, sizeof(data), SL_MT_OCI_MANIFEST);
        CHECK(sl_registry_put_manifest(reg, "cached/app", "v1", m, strlen(m), SL_MT_OCI_MANIFEST,
                                       NULL, &e_));
        struct sl_registry_manifest got;
        CHECK(sl_registry_get_manifest(reg, "cached/app", "v1", &got, &e_));
        assert_memory_equal(got.data, m, strlen(m));
        sl_registry_manifest_free(&got);
        CHECK(sl_registry_get_manifest(reg, "cached/app", "v1", &got, &e_));
        sl_registry_manifest_free(&got);
        free(m);
        /* One token per scope, however many requests used it. */
        assert_int_equal(fetch_count(tok_url, "/count", "scope", "repository:cached/app:pull"), 1);
        assert_int_equal(fetch_count(tok_url, "/count", "scope", "repository:cached/app:pull,push"),
                         1);
        /* Mount across repositories asks for both scopes in one token. */
        assert_int_equal(push_buf(reg, "other/app", data, sizeof(data), "cached/app", d2, &err),
                         SL_PUSH_MOUNTED);
        assert_int_equal(fetch_count(tok_url, "/count", "scope",
                                     "repository:other/app:pull,push repository:cached/app:pull"),
                         1);
    }
    {
        char path[512];
        snprintf(path, sizeof(path), "%s/empty.json", env("SL_TEST_TMP"));
        struct sl_registry_options o = {.docker_config = path};
        _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG_TOKEN", &o);
        struct sl_registry_manifest got;
        int r = sl_registry_get_manifest(reg, "cached/app", "v1", &got, &err);
        assert_int_equal(expect_fail(r, &err), -EACCES);
        assert_msg("GET manifest");
        assert_msg("token from http://127.0.0.1");
        assert_msg("anonymous access denied");
    }
}

struct worker {
    struct sl_registry *reg;
    int id;
    int rc;
    char msg[512];
};

static void *worker_main(void *p)
{
    struct worker *w = p;
    sl_error_t err = NULL;
    for (int k = 0; k < 3 && w->rc >= 0; k++) {
        size_t n = k == 2 ? (3u << 19) : 100000u; /* the last is chunked */
        char *data = malloc(n), d[SL_DIGEST_STR_LEN];
        fill(data, n, (uint32_t)(w->id * 10 + k));
        char repo[32];
        snprintf(repo, sizeof(repo), "par/w%d", w->id);
        w->rc = push_buf(w->reg, repo, data, n, NULL, d, &err);
        if (w->rc >= 0) {
            struct sl_buf b;
            sl_buf_init(&b, n);
            w->rc = sl_registry_get_blob(w->reg, repo, d, sl_http_sink_buf, &b, &err);
            if (w->rc >= 0 && (b.len != n || memcmp(b.data, data, n) != 0))
                w->rc = sl_error_make(&err, EIO, "content differs");
            sl_buf_free(&b);
        }
        if (w->rc < 0)
            snprintf(w->msg, sizeof(w->msg), "%s", sl_error_msg(err, w->rc));
        sl_error_free(&err);
        free(data);
    }
    return NULL;
}

static void test_parallel(void **state)
{
    /* One client shared by threads, on the token registry (shared challenge and cache). */
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG_TOKEN", NULL);
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.reg = reg, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        if (w[i].rc < 0)
            fail_msg("worker %d: %s", i, w[i].msg);
    }
}

static int64_t hits(const char *path)
{
    _cleanup_free_ char *base = sl_xasprintf("http://%s", env("SL_TEST_FAULT"));
    return fetch_count(base, "/_hits", "path", path);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char storage_blob[] = "hello from blob storage\n";

static void test_faults(void **state)
{
    struct sl_registry_options o = {.retries = 2};
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_FAULT", &o);
    const char *host = sl_registry_host(reg);
    sl_error_t err = NULL;
    struct sl_registry_manifest got;
    char want[512];

    /* 500 then 200: retried. */
    CHECK(sl_registry_get_manifest(reg, "flaky", "v1", &got, &e_));
    assert_int_equal(got.manifest->kind, SL_MANIFEST_OCI);
    sl_registry_manifest_free(&got);
    assert_int_equal(hits("/v2/flaky/manifests/v1"), 2);

    /* Always 500: a clear error after the retries. */
    int r = sl_registry_get_manifest(reg, "broken", "v1", &got, &err);
    assert_int_equal(expect_fail(r, &err), -EIO);
    snprintf(want, sizeof(want),
             "GET manifest `%s/broken:v1`: HTTP 500 UNKNOWN: storage exploded (after 3 attempts)",
             host);
    assert_msg(want);
    assert_int_equal(hits("/v2/broken/manifests/v1"), 3);

    /* 429 with Retry-After: 1 is honoured. */
    int64_t t0 = now_ms();
    CHECK(sl_registry_get_manifest(reg, "busy", "v1", &got, &e_));
    sl_registry_manifest_free(&got);
    assert_true(now_ms() - t0 >= 900);
    assert_int_equal(hits("/v2/busy/manifests/v1"), 2);

    /* 307 to another host:port: the blob arrives, and the storage server (which answers 400
     * when it sees Authorization) proves the credentials stayed behind. */
    char d[SL_DIGEST_STR_LEN];
    sl_sha256_str(storage_blob, strlen(storage_blob), d);
    char *data = NULL;
    size_t len = 0;
    CHECK(sl_registry_get_blob_buf(reg, "redir", d, 1 << 20, &data, &len, &e_));
    assert_int_equal(len, strlen(storage_blob));
    assert_memory_equal(data, storage_blob, len);
    free(data);
    _cleanup_free_ char *rp = sl_xasprintf("/v2/redir/blobs/%s", d);
    assert_int_equal(hits(rp), 2); /* 401 challenge, then 307 */
    assert_int_equal(hits("storage"), 1);

    /* A server that ignores Range: the window is cut out of the 200 body. */
    char blob[10240];
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (char)(i & 0xff);
    char bd[SL_DIGEST_STR_LEN];
    sl_sha256_str(blob, sizeof(blob), bd);
    struct sl_buf b;
    sl_buf_init(&b, 1 << 20);
    CHECK(sl_registry_get_blob_range(reg, "norange", bd, 1000, 300, sl_http_sink_buf, &b, &e_));
    assert_int_equal(b.len, 300);
    assert_memory_equal(b.data, blob + 1000, 300);
    sl_buf_reset(&b);
    CHECK(sl_registry_get_blob(reg, "norange", bd, sl_http_sink_buf, &b, &e_));
    assert_int_equal(b.len, sizeof(blob));
    sl_buf_reset(&b);
    /* Bytes that do not match the digest. */
    r = sl_registry_get_blob(reg, "norange", d, sl_http_sink_buf, &b, &err);
    assert_int_equal(expect_fail(r, &err), -EBADMSG);
    assert_msg("digest");
    sl_buf_reset(&b);

    /* A connection dying halfway through a blob: resumed with Range. */
    CHECK(sl_registry_get_blob(reg, "midfail", bd, sl_http_sink_buf, &b, &e_));
    assert_int_equal(b.len, sizeof(blob));
    assert_memory_equal(b.data, blob, sizeof(blob));
    sl_buf_free(&b);

    /* A chunk that fails half-stored: the client asks where the upload stands and resumes. */
    {
        struct sl_registry_options o2 = {.retries = 2};
        _cleanup_registry_ struct sl_registry *creg = reg_open("SL_TEST_FAULT", &o2);
        size_t n = 2500000; /* three 1 MiB chunks */
        char *up = malloc(n);
        fill(up, n, 42);
        r = push_buf(creg, "patchfail", up, n, NULL, d, &err);
        if (r < 0)
            fail_msg("%s", sl_error_msg(err, r));
        assert_int_equal(r, SL_PUSH_UPLOADED);
        /* 1 failed (half stored), then 1 MiB from 0.5 MiB and the 0.9 MiB rest */
        assert_int_equal(hits("patch"), 3);
        free(up);
    }

    /* Upload answered 500: retried, then a clear error. */
    r = push_buf(reg, "upload500", config_json, strlen(config_json), NULL, d, &err);
    assert_int_equal(expect_fail(r, &err), -EIO);
    snprintf(want, sizeof(want),
             "push blob `%s/upload500@%s`: HTTP 500 UNKNOWN: disk on fire (after 3 attempts)", host,
             d);
    assert_msg(want);
}

int main(int argc, char **argv)
{
    if (!getenv("SL_TEST_REG_ANON")) {
        /* Started by ctest: let the wrapper start the servers and run us again. */
        char script[4096];
        snprintf(script, sizeof(script), "%s/unit/common/registry/run-live.sh", sl_test_data_dir());
        execl("/bin/bash", "bash", script, argv[0], (char *)NULL);
        perror(script);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anon_roundtrip), cmocka_unit_test(test_mount),
        cmocka_unit_test(test_basic_auth),     cmocka_unit_test(test_token_auth),
        cmocka_unit_test(test_parallel),       cmocka_unit_test(test_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
