/* test-proxy-store: the PostgreSQL store's prune safety against a real PostgreSQL. Run
 * directly, it re-executes itself through run-live.sh, which starts the database.
 *  - put_image fails (-EAGAIN, nothing stored) unless every layer row exists;
 *  - a layer found by a notify (layer_known) or listed by put_image after a prune started is
 *    kept by that prune, even with minimum age 0;
 *  - an image stored again after a prune started survives it; otherwise it is removed. */
#include "test.h"

#include "cleanup.h"
#include "store.h"
#include "toc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void dig(char out[SL_DIGEST_STR_LEN], char c)
{
    memcpy(out, "sha256:", 7);
    memset(out + 7, c, 64);
    out[71] = 0;
}

static struct sl_store *store;
static struct sl_toc *toc;
static uint8_t tail[90];

static int setup(void **state)
{
    (void)state;
    sl_error_t err = NULL;
    static const char json[] = "{\"version\":1,\"entries\":[{\"name\":\"d/\",\"type\":\"dir\","
                               "\"mode\":493}]}";
    if (sl_toc_parse_json(json, strlen(json), 10, &toc, &err) < 0 ||
        sl_store_new(getenv("SL_TEST_PG"), 2, &store, &err) < 0 || sl_store_ping(store, &err) < 0) {
        fprintf(stderr, "setup: %s\n", sl_error_msg(err, -EIO));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_store_free(store);
    sl_toc_free(toc);
    return 0;
}

static void ingest(const char *digest)
{
    sl_error_t err = NULL;
    struct sl_store_layer_in l = {.digest = digest,
                                  .size = 100,
                                  .toc_digest = sl_toc_digest(toc),
                                  .toc_offset = 10,
                                  .toc_tail = tail,
                                  .toc_tail_len = sizeof(tail),
                                  .toc = toc};
    int r = sl_store_ingest_layer(store, &l, &err);
    if (r < 0)
        fail_msg("ingest %s: %s", digest, sl_error_msg(err, r));
}

static int put(const char *digest, const char *const *layers, size_t n, sl_error_t *err)
{
    static const char *const diffs[] = {"sha256:d1", "sha256:d2", "sha256:d3"};
    const char *tags[] = {"latest"};
    struct sl_store_image_in in = {.repository = "127.0.0.1:5000/t",
                                   .digest = digest,
                                   .media_type = "application/vnd.oci.image.manifest.v1+json",
                                   .platform = "linux/amd64",
                                   .manifest = (const uint8_t *)"{}",
                                   .manifest_len = 2,
                                   .config_digest = digest,
                                   .config = (const uint8_t *)"{}",
                                   .config_len = 2,
                                   .layer_digests = layers,
                                   .diff_ids = diffs,
                                   .n_layers = n,
                                   .tags = tags,
                                   .n_tags = 1};
    return sl_store_put_image(store, &in, err);
}

static bool image_there(const char *digest)
{
    int64_t id = 0;
    sl_error_t err = NULL;
    int r = sl_store_find_image_by_digest(store, digest, &id, &err);
    if (r < 0 && r != -ENOENT)
        fail_msg("find %s: %s", digest, sl_error_msg(err, r));
    sl_error_free(&err);
    return r == 0;
}

/* Rows + prune start; returns the id of `digest` among the rows (0: none). */
static int64_t rows(const char *digest, char **asof)
{
    struct sl_store_image_row *v = NULL;
    size_t n = 0;
    sl_error_t err = NULL;
    int r = sl_store_image_rows(store, &v, &n, asof, &err);
    if (r < 0)
        fail_msg("rows: %s", sl_error_msg(err, r));
    int64_t id = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].digest, digest) == 0)
            id = v[i].id;
    sl_store_image_rows_free(v, n);
    return id;
}

static size_t prune(const int64_t *ids, size_t n, const char *asof)
{
    size_t layers = 0;
    sl_error_t err = NULL;
    int r = sl_store_prune(store, ids, n, asof, 0, &layers, &err);
    if (r < 0)
        fail_msg("prune: %s", sl_error_msg(err, r));
    return layers;
}

static void test_put_image_needs_every_layer(void **state)
{
    (void)state;
    char a[SL_DIGEST_STR_LEN], missing[SL_DIGEST_STR_LEN], img[SL_DIGEST_STR_LEN];
    dig(a, 'a');
    dig(missing, 'm');
    dig(img, '1');
    ingest(a);
    const char *layers[] = {a, missing};
    sl_error_t err = NULL;
    int r = put(img, layers, 2, &err);
    assert_int_equal(r, -EAGAIN);
    assert_non_null(strstr(sl_error_msg(err, r), "1 of its 2 layers are not in the store"));
    sl_error_free(&err);
    assert_false(image_there(img));
    /* the same layer twice in a stack is one row */
    const char *twice[] = {a, a};
    r = put(img, twice, 2, &err);
    if (r < 0)
        fail_msg("put: %s", sl_error_msg(err, r));
    assert_true(image_there(img));
    /* remove it again (and layer a) for the next test */
    _cleanup_free_ char *asof = NULL;
    int64_t id = rows(img, &asof);
    assert_true(id > 0);
    assert_int_equal(prune(&id, 1, asof), 1);
    assert_false(image_there(img));
    assert_int_equal(sl_store_layer_known(store, a, NULL), 0);
}

static void test_reused_layer_kept(void **state)
{
    (void)state;
    char b[SL_DIGEST_STR_LEN], c[SL_DIGEST_STR_LEN], img[SL_DIGEST_STR_LEN];
    dig(b, 'b');
    dig(c, 'c');
    dig(img, '2');
    ingest(b);
    ingest(c);
    _cleanup_free_ char *asof = NULL;
    rows(img, &asof);
    /* a notify finds b known after the prune started: b kept, c (unused) removed */
    assert_int_equal(sl_store_layer_known(store, b, NULL), 1);
    assert_int_equal(prune(NULL, 0, asof), 1);
    assert_int_equal(sl_store_layer_known(store, c, NULL), 0);
    const char *layers[] = {b};
    sl_error_t err = NULL;
    int r = put(img, layers, 1, &err);
    if (r < 0)
        fail_msg("put: %s", sl_error_msg(err, r));
    assert_true(image_there(img));
}

static void test_renotified_image_survives(void **state)
{
    (void)state;
    char b[SL_DIGEST_STR_LEN], img[SL_DIGEST_STR_LEN];
    dig(b, 'b');
    dig(img, '2');
    const char *layers[] = {b};
    sl_error_t err = NULL;
    _cleanup_free_ char *asof = NULL;
    int64_t id = rows(img, &asof);
    assert_true(id > 0);
    /* re-pushed and notified again while the prune asked the registry */
    int r = put(img, layers, 1, &err);
    if (r < 0)
        fail_msg("put: %s", sl_error_msg(err, r));
    assert_int_equal(prune(&id, 1, asof), 0);
    assert_true(image_there(img));
    assert_int_equal(sl_store_layer_known(store, b, NULL), 1);
    /* a prune that started after the notify removes it and its layer */
    _cleanup_free_ char *asof2 = NULL;
    assert_int_equal(rows(img, &asof2), id);
    assert_int_equal(prune(&id, 1, asof2), 1);
    assert_false(image_there(img));
}

int main(int argc, char **argv)
{
    (void)argc;
    if (!getenv("SL_TEST_PG")) {
        /* Started by ctest: let the wrapper start the database and run us again. */
        char script[4096];
        snprintf(script, sizeof(script), "%s/unit/proxy/core/run-live.sh", sl_test_data_dir());
        execl("/bin/bash", "bash", script, argv[0], (char *)NULL);
        perror(script);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_image_needs_every_layer),
        cmocka_unit_test(test_reused_layer_kept),
        cmocka_unit_test(test_renotified_image_survives),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
