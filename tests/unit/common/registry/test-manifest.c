#include "test.h"

#include "manifest.h"

#include <stdio.h>
#include <string.h>

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static const char docker_v2[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SL_MT_DOCKER_MANIFEST "\","
    "\"config\":{\"mediaType\":\"" SL_MT_DOCKER_CONFIG "\",\"size\":1469,\"digest\":\"" DA "\"},"
    "\"layers\":[{\"mediaType\":\"" SL_MT_DOCKER_LAYER "\",\"size\":2818413,\"digest\":\"" DB "\"},"
    "{\"mediaType\":\"" SL_MT_DOCKER_LAYER "\",\"size\":0,\"digest\":\"" DC "\"}]}";

static const char oci_manifest[] =
    "{\"schemaVersion\":2,"
    "\"config\":{\"mediaType\":\"" SL_MT_OCI_CONFIG "\",\"size\":10,\"digest\":\"" DA "\"},"
    "\"layers\":[{\"mediaType\":\"" SL_MT_OCI_LAYER_GZIP "\",\"size\":5,\"digest\":\"" DB "\","
    "\"annotations\":{\"containerd.io/snapshot/stargz/toc.digest\":\"" DC "\"}}],"
    "\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}}";

static const char docker_list[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SL_MT_DOCKER_LIST "\",\"manifests\":["
    "{\"mediaType\":\"" SL_MT_DOCKER_MANIFEST "\",\"size\":7143,\"digest\":\"" DA "\","
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" SL_MT_DOCKER_MANIFEST "\",\"size\":7682,\"digest\":\"" DB "\","
    "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" SL_MT_DOCKER_MANIFEST "\",\"size\":7682,\"digest\":\"" DC "\","
    "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}}]}";

static const char oci_index[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" SL_MT_OCI_INDEX "\",\"manifests\":["
    "{\"mediaType\":\"" SL_MT_OCI_MANIFEST "\",\"size\":1,\"digest\":\"" DA "\","
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"" SL_MT_OCI_MANIFEST "\",\"size\":2,\"digest\":\"" DB "\","
    "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"},"
    "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}}]}";

static struct sl_manifest *parse_ok(const char *doc, const char *ct)
{
    struct sl_manifest *m = NULL;
    sl_error_t err = NULL;
    int r = sl_manifest_parse(doc, strlen(doc), ct, &m, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    return m;
}

static void test_docker_v2(void **state)
{
    struct sl_manifest *m = parse_ok(docker_v2, SL_MT_DOCKER_MANIFEST);
    assert_int_equal(m->kind, SL_MANIFEST_DOCKER_V2);
    assert_string_equal(m->media_type, SL_MT_DOCKER_MANIFEST);
    assert_string_equal(m->config.digest, DA);
    assert_int_equal(m->config.size, 1469);
    assert_int_equal(m->n_layers, 2);
    assert_string_equal(m->layers[0].media_type, SL_MT_DOCKER_LAYER);
    assert_int_equal(m->layers[0].size, 2818413);
    assert_int_equal(m->layers[1].size, 0);
    assert_int_equal(m->n_manifests, 0);
    sl_manifest_free(m);
}

static void test_oci_manifest(void **state)
{
    /* No mediaType field: taken from Content-Type (with parameters), or from the shape. */
    struct sl_manifest *m = parse_ok(oci_manifest, SL_MT_OCI_MANIFEST "; charset=utf-8");
    assert_int_equal(m->kind, SL_MANIFEST_OCI);
    assert_int_equal(m->n_layers, 1);
    assert_string_equal(
        sl_descriptor_annotation(&m->layers[0], "containerd.io/snapshot/stargz/toc.digest"), DC);
    assert_null(sl_descriptor_annotation(&m->layers[0], "x"));
    assert_int_equal(m->n_annotations, 1);
    sl_manifest_free(m);
    m = parse_ok(oci_manifest, NULL);
    assert_int_equal(m->kind, SL_MANIFEST_OCI);
    sl_manifest_free(m);
    m = parse_ok(oci_manifest, "application/json");
    assert_int_equal(m->kind, SL_MANIFEST_OCI);
    sl_manifest_free(m);
}

static void test_indexes(void **state)
{
    struct sl_manifest *m = parse_ok(docker_list, NULL);
    assert_int_equal(m->kind, SL_MANIFEST_DOCKER_LIST);
    assert_true(sl_manifest_kind_is_index(m->kind));
    assert_int_equal(m->n_manifests, 3);
    assert_string_equal(m->manifests[2].platform.variant, "v7");
    assert_null(m->manifests[0].platform.variant);

    struct sl_platform p;
    assert_int_equal(sl_platform_parse("linux/arm64/v8", &p, NULL), 0);
    assert_int_equal(sl_manifest_find_platform(m, &p), 1);
    sl_platform_free(&p);
    assert_int_equal(sl_platform_parse("linux/arm/v7", &p, NULL), 0);
    assert_int_equal(sl_manifest_find_platform(m, &p), 2);
    sl_platform_free(&p);
    assert_int_equal(sl_platform_parse("linux/amd64", &p, NULL), 0);
    assert_int_equal(sl_manifest_find_platform(m, &p), 0);
    sl_platform_free(&p);
    assert_int_equal(sl_platform_parse("windows/amd64", &p, NULL), 0);
    assert_int_equal(sl_manifest_find_platform(m, &p), -ENOENT);
    sl_platform_free(&p);
    assert_int_equal(sl_platform_parse("linux", &p, NULL), -EINVAL);
    assert_int_equal(sl_platform_parse("linux/", &p, NULL), -EINVAL);
    assert_int_equal(sl_platform_parse("a/b/c/d", &p, NULL), -EINVAL);
    sl_manifest_free(m);

    m = parse_ok(oci_index, SL_MT_OCI_INDEX);
    assert_int_equal(m->kind, SL_MANIFEST_OCI_INDEX);
    assert_int_equal(m->n_manifests, 2);
    assert_string_equal(m->manifests[1].platform.os, "unknown");
    sl_manifest_free(m);
}

static void expect_bad(const char *doc, const char *ct, int code, const char *needle)
{
    struct sl_manifest *m = NULL;
    sl_error_t err = NULL;
    int r = sl_manifest_parse(doc, strlen(doc), ct, &m, &err);
    if (r != code)
        fail_msg("expected %d, got %d (%s) for %s", code, r, sl_error_msg(err, r), doc);
    assert_null(m);
    if (!strstr(err->msg, needle))
        fail_msg("`%s` not in `%s`", needle, err->msg);
    sl_error_free(&err);
}

static void test_bad(void **state)
{
    expect_bad("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.example+json\"}", NULL,
               -EPROTONOSUPPORT, "unknown media type `application/vnd.example+json`");
    expect_bad("{\"schemaVersion\":2}", "application/vnd.other", -EPROTONOSUPPORT,
               "application/vnd.other");
    expect_bad("{\"schemaVersion\":1,\"name\":\"x\"}", NULL, -EPROTONOSUPPORT, "schema 1");
    expect_bad("{\"schemaVersion\":3}", NULL, -EINVAL, "schemaVersion");
    expect_bad("{}", NULL, -EINVAL, "schemaVersion");
    expect_bad("[]", NULL, -EINVAL, "object");
    expect_bad("{\"schemaVersion\":2", NULL, -EINVAL, "invalid JSON");
    expect_bad(docker_v2, SL_MT_OCI_MANIFEST, -EINVAL, "does not match");
    expect_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"size\":1,\"digest\":"
               "\"sha256:abc\"},\"layers\":[]}",
               NULL, -EINVAL, ".config.digest: invalid digest");
    expect_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"size\":-1,\"digest\":"
               "\"" DA "\"},\"layers\":[]}",
               NULL, -EINVAL, ".config.size: negative");
    expect_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"size\":1,\"digest\":"
               "\"" DA "\"},\"layers\":[{\"mediaType\":\"x\",\"size\":\"1\",\"digest\":\"" DA
               "\"}]}",
               NULL, -EINVAL, ".layers[0].size: expected an integer");
    expect_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"size\":1,\"digest\":"
               "\"" DA "\"}}",
               NULL, -EINVAL, ".layers: missing");
    expect_bad("{\"schemaVersion\":2,\"mediaType\":\"" SL_MT_OCI_INDEX "\",\"manifests\":[{"
               "\"mediaType\":\"x\",\"size\":1,\"digest\":\"" DA "\",\"platform\":{\"os\":"
               "\"linux\"}}]}",
               NULL, -EINVAL, ".manifests[0].platform.architecture: missing");
    expect_bad("{\"schemaVersion\":2,\"mediaType\":\"" SL_MT_OCI_INDEX "\",\"manifests\":[],"
               "\"layers\":[]}",
               NULL, -EINVAL, "has `layers`");
    expect_bad("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"size\":1,\"digest\":"
               "\"" DA "\",\"annotations\":{\"a\":1}},\"layers\":[]}",
               NULL, -EINVAL, ".config.annotations.a: expected a string");
    expect_bad("{\"schemaVersion\":2,\"a\":1,\"a\":2}", NULL, -EINVAL, "invalid JSON");

    /* Too many layers. */
    size_t cap = 64 + (SL_MANIFEST_MAX_ITEMS + 1) * 120;
    char *doc = malloc(cap);
    size_t n = (size_t)snprintf(doc, cap,
                                "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"size\":1,"
                                "\"digest\":\"" DA "\"},\"layers\":[");
    for (int i = 0; i <= SL_MANIFEST_MAX_ITEMS; i++)
        n += (size_t)snprintf(doc + n, cap - n,
                              "%s{\"mediaType\":\"x\",\"size\":1,\"digest\":\"" DA "\"}",
                              i ? "," : "");
    snprintf(doc + n, cap - n, "]}");
    expect_bad(doc, NULL, -EINVAL, "more than the limit");
    free(doc);

    /* Too large. */
    size_t big = SL_MANIFEST_MAX_BYTES + 10;
    doc = malloc(big + 1);
    memset(doc, ' ', big);
    doc[big] = 0;
    struct sl_manifest *m = NULL;
    assert_int_equal(sl_manifest_parse(doc, big, NULL, &m, NULL), -EFBIG);
    free(doc);
}

static void test_kinds(void **state)
{
    assert_int_equal(sl_manifest_kind_from_type(" " SL_MT_OCI_INDEX " ; x=y"),
                     SL_MANIFEST_OCI_INDEX);
    assert_int_equal(
        sl_manifest_kind_from_type("APPLICATION/VND.DOCKER.DISTRIBUTION.MANIFEST.V2+JSON"),
        SL_MANIFEST_DOCKER_V2);
    assert_int_equal(sl_manifest_kind_from_type("text/plain"), SL_MANIFEST_UNKNOWN);
    assert_int_equal(sl_manifest_kind_from_type(NULL), SL_MANIFEST_UNKNOWN);
    assert_string_equal(sl_manifest_kind_type(SL_MANIFEST_DOCKER_LIST), SL_MT_DOCKER_LIST);
    assert_null(sl_manifest_kind_type(SL_MANIFEST_UNKNOWN));
    assert_non_null(strstr(SL_MANIFEST_ACCEPT, SL_MT_OCI_INDEX));
    assert_non_null(strstr(SL_MANIFEST_ACCEPT, SL_MT_DOCKER_MANIFEST));
    sl_manifest_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_docker_v2), cmocka_unit_test(test_oci_manifest),
        cmocka_unit_test(test_indexes),   cmocka_unit_test(test_bad),
        cmocka_unit_test(test_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
