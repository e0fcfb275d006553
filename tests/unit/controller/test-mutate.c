/* test-mutate.c — the webhook's decision and JSONPatch (controller/mutate.c) on AdmissionReview
 * JSON: annotated Pods get starlight-init first, the volume, the label and the images
 * annotation (docs/kubernetes.md §2), applied with a JSONPatch implementation and compared
 * field by field; Pods with init containers, volumes and labels keep theirs; re-invocation is
 * a no-op; opt-in by namespace list or path, opt-out by annotation; images the proxy does not
 * serve are left out and a proxy that cannot answer lets the Pod through unchanged; malformed
 * envelopes are refused with a message. */
#include "test.h"

#include "base64.h"
#include "cleanup.h"
#include "mutate.h"

#include <jansson.h>
#include <string.h>

static json_t *review(const char *ns, const char *op, json_t *pod)
{
    return json_pack("{s:s,s:s,s:{s:s,s:{s:s,s:s,s:s},s:s,s:s,s:o}}", "apiVersion",
                     "admission.k8s.io/v1", "kind", "AdmissionReview", "request", "uid", "0f1e-uid",
                     "resource", "group", "", "version", "v1", "resource", "pods", "namespace", ns,
                     "operation", op, "object", pod);
}

static int proxy_answer; /* what the fake image check says for images starting with "other/" */

static int check(void *ud, const char *image)
{
    (void)ud;
    if (strncmp(image, "other/", 6) == 0)
        return proxy_answer;
    return 1;
}

static const struct sl_mutate_options base = {.init_image = "reg/starlight-init:1"};

/* Runs the review; returns the patched pod (or NULL when no patch) and the result. */
static json_t *run(json_t *rv, const struct sl_mutate_options *o, enum sl_mutate_result *res)
{
    json_t *ans = NULL;
    sl_error_t err = NULL;
    int r = sl_mutate_review(rv, o, &ans, res, &err);
    if (r < 0)
        fail_msg("review: %s", sl_error_msg(err, r));
    assert_string_equal(json_string_value(json_object_get(ans, "apiVersion")),
                        "admission.k8s.io/v1");
    assert_string_equal(json_string_value(json_object_get(ans, "kind")), "AdmissionReview");
    const json_t *resp = json_object_get(ans, "response");
    assert_string_equal(json_string_value(json_object_get(resp, "uid")), "0f1e-uid");
    assert_true(json_is_true(json_object_get(resp, "allowed")));
    const char *p = json_string_value(json_object_get(resp, "patch"));
    json_t *pod = NULL;
    if (p) {
        assert_string_equal(json_string_value(json_object_get(resp, "patchType")), "JSONPatch");
        uint8_t *raw = NULL;
        size_t n = 0;
        assert_int_equal(sl_base64_decode(p, strlen(p), &raw, &n), 0);
        json_error_t je;
        json_t *patch = json_loadb((const char *)raw, n, 0, &je);
        assert_non_null(patch);
        pod = json_deep_copy(json_object_get(json_object_get(rv, "request"), "object"));
        r = sl_jsonpatch_apply_adds(pod, patch, &err);
        if (r < 0)
            fail_msg("apply: %s", sl_error_msg(err, r));
        json_decref(patch);
        free(raw);
    } else {
        assert_null(json_object_get(resp, "patchType"));
    }
    json_decref(ans);
    return pod;
}

static const char *str_at(const json_t *j, const char *k)
{
    return json_string_value(json_object_get(j, k));
}

static void test_annotated_pod(void **state)
{
    (void)state;
    json_t *pod = json_pack("{s:{s:s,s:{s:s}},s:{s:[{s:s,s:s},{s:s,s:s},{s:s,s:s}]}}", "metadata",
                            "name", "web", "annotations", SL_ANN_PROVISION, "true", "spec",
                            "containers", "name", "a", "image", "r/redis:7", "name", "b", "image",
                            "r/side:1", "name", "c", "image", "r/redis:7");
    json_t *rv = review("default", "CREATE", pod);
    enum sl_mutate_result res;
    json_t *out = run(rv, &base, &res);
    assert_int_equal(res, SL_MUTATE_PATCHED);
    assert_non_null(out);
    const json_t *meta = json_object_get(out, "metadata");
    assert_string_equal(str_at(json_object_get(meta, "labels"), SL_ANN_PROVISION), "true");
    assert_string_equal(str_at(json_object_get(meta, "annotations"), SL_ANN_IMAGES),
                        "r/redis:7,r/side:1");
    assert_string_equal(str_at(json_object_get(meta, "annotations"), SL_ANN_PROVISION), "true");
    const json_t *spec = json_object_get(out, "spec");
    const json_t *inits = json_object_get(spec, "initContainers");
    assert_int_equal(json_array_size(inits), 1);
    const json_t *ic = json_array_get(inits, 0);
    assert_string_equal(str_at(ic, "name"), "starlight-init");
    assert_string_equal(str_at(ic, "image"), "reg/starlight-init:1");
    json_t *want_args =
        json_pack("[s,s,s,s,s,s,s,s]", "--socket", "/run/starlight/starlight-daemon.sock",
                  "--namespace", "k8s.io", "--image", "r/redis:7", "--image", "r/side:1");
    assert_true(json_equal(json_object_get(ic, "args"), want_args));
    json_decref(want_args);
    const json_t *env = json_array_get(json_object_get(ic, "env"), 0);
    assert_string_equal(str_at(env, "name"), "STARLIGHT_IMAGES");
    assert_string_equal(str_at(env, "value"), "r/redis:7,r/side:1");
    const json_t *vm = json_array_get(json_object_get(ic, "volumeMounts"), 0);
    assert_string_equal(str_at(vm, "name"), "starlight-run");
    assert_string_equal(str_at(vm, "mountPath"), "/run/starlight");
    const json_t *vol = json_array_get(json_object_get(spec, "volumes"), 0);
    assert_string_equal(str_at(vol, "name"), "starlight-run");
    assert_string_equal(str_at(json_object_get(vol, "hostPath"), "path"), "/run/starlight");
    assert_string_equal(str_at(json_object_get(vol, "hostPath"), "type"), "DirectoryOrCreate");
    assert_int_equal(json_array_size(json_object_get(spec, "containers")), 3); /* untouched */

    /* re-invocation on the patched pod: nothing more */
    json_t *rv2 = review("default", "CREATE", json_incref(out));
    json_t *again = run(rv2, &base, &res);
    assert_int_equal(res, SL_MUTATE_INJECTED);
    assert_null(again);
    json_decref(rv2);
    json_decref(out);
    json_decref(rv);
}

static void test_existing_fields(void **state)
{
    (void)state;
    json_t *pod = json_pack(
        "{s:{s:s,s:{s:s},s:{s:s,s:s}},s:{s:[{s:s,s:s}],s:[{s:s,s:{}}],s:[{s:s,s:s}]}}", "metadata",
        "generateName", "web-", "labels", "app", "web", "annotations", SL_ANN_PROVISION, "true",
        "a/b", "c", "spec", "initContainers", "name", "setup", "image", "busybox", "volumes",
        "name", "data", "emptyDir", "containers", "name", "a", "image", "r/a:1");
    json_t *rv = review("apps", "CREATE", pod);
    enum sl_mutate_result res;
    json_t *out = run(rv, &base, &res);
    assert_int_equal(res, SL_MUTATE_PATCHED);
    const json_t *meta = json_object_get(out, "metadata");
    assert_string_equal(str_at(json_object_get(meta, "labels"), "app"), "web");
    assert_string_equal(str_at(json_object_get(meta, "labels"), SL_ANN_PROVISION), "true");
    assert_string_equal(str_at(json_object_get(meta, "annotations"), "a/b"), "c");
    assert_string_equal(str_at(json_object_get(meta, "annotations"), SL_ANN_IMAGES), "r/a:1");
    const json_t *spec = json_object_get(out, "spec");
    const json_t *inits = json_object_get(spec, "initContainers");
    assert_int_equal(json_array_size(inits), 2);
    assert_string_equal(str_at(json_array_get(inits, 0), "name"), "starlight-init"); /* first */
    assert_string_equal(str_at(json_array_get(inits, 1), "name"), "setup");
    const json_t *vols = json_object_get(spec, "volumes");
    assert_int_equal(json_array_size(vols), 2);
    assert_string_equal(str_at(json_array_get(vols, 0), "name"), "data");
    assert_string_equal(str_at(json_array_get(vols, 1), "name"), "starlight-run");
    json_decref(out);
    json_decref(rv);
}

static json_t *plain_pod(const char *ann)
{
    json_t *pod = json_pack("{s:{s:s},s:{s:[{s:s,s:s}]}}", "metadata", "name", "p", "spec",
                            "containers", "name", "a", "image", "r/a:1");
    if (ann)
        json_object_set_new(json_object_get(pod, "metadata"), "annotations",
                            json_pack("{s:s}", SL_ANN_PROVISION, ann));
    return pod;
}

static void test_opt_in(void **state)
{
    (void)state;
    enum sl_mutate_result res;
    static const char *const nss[] = {"apps", "web"};
    struct sl_mutate_options o = base;
    o.opt_in_ns = nss;
    o.n_opt_in_ns = 2;
    struct {
        const char *ns, *ann;
        bool path_ns;
        enum sl_mutate_result want;
    } cases[] = {
        {"default", NULL, false, SL_MUTATE_NOT_OPTED},
        {"default", "yes", false, SL_MUTATE_NOT_OPTED}, /* only "true" opts in */
        {"web", NULL, false, SL_MUTATE_PATCHED},        /* --opt-in-namespaces */
        {"web", "false", false, SL_MUTATE_NOT_OPTED},   /* the Pod opts out */
        {"default", NULL, true, SL_MUTATE_PATCHED},     /* /mutate-namespace */
        {"default", "false", true, SL_MUTATE_NOT_OPTED},
        {"default", "true", false, SL_MUTATE_PATCHED},
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(cases); i++) {
        o.namespace_opted_in = cases[i].path_ns;
        json_t *rv = review(cases[i].ns, "CREATE", plain_pod(cases[i].ann));
        json_t *out = run(rv, &o, &res);
        if (res != cases[i].want)
            fail_msg("case %zu: %s, want %s", i, sl_mutate_result_name(res),
                     sl_mutate_result_name(cases[i].want));
        assert_true((out != NULL) == (res == SL_MUTATE_PATCHED));
        if (out) { /* no annotations map before: the patch adds the whole map */
            const json_t *ann = json_object_get(json_object_get(out, "metadata"), "annotations");
            assert_string_equal(str_at(ann, SL_ANN_IMAGES), "r/a:1");
        }
        json_decref(out);
        json_decref(rv);
    }
    /* not a Pod CREATE */
    json_t *rv = review("default", "UPDATE", plain_pod("true"));
    assert_null(run(rv, &o, &res));
    assert_int_equal(res, SL_MUTATE_NOT_POD);
    json_decref(rv);
}

static void test_proxy_answers(void **state)
{
    (void)state;
    struct sl_mutate_options o = base;
    o.is_starlight = check;
    enum sl_mutate_result res;
    json_t *pod =
        json_pack("{s:{s:{s:s}},s:{s:[{s:s},{s:s}]}}", "metadata", "annotations", SL_ANN_PROVISION,
                  "true", "spec", "containers", "image", "other/nginx:1", "image", "r/redis:7");
    json_t *rv = review("default", "CREATE", pod);
    proxy_answer = 0; /* nginx is not a Starlight image: only redis is warmed */
    json_t *out = run(rv, &o, &res);
    assert_int_equal(res, SL_MUTATE_PATCHED);
    assert_string_equal(
        str_at(json_object_get(json_object_get(out, "metadata"), "annotations"), SL_ANN_IMAGES),
        "r/redis:7");
    json_decref(out);
    proxy_answer = -5; /* the proxy cannot tell: let the Pod through unchanged */
    assert_null(run(rv, &o, &res));
    assert_int_equal(res, SL_MUTATE_UNKNOWN);
    json_decref(rv);
    pod = json_pack("{s:{s:{s:s}},s:{s:[{s:s}]}}", "metadata", "annotations", SL_ANN_PROVISION,
                    "true", "spec", "containers", "image", "other/nginx:1");
    rv = review("default", "CREATE", pod);
    proxy_answer = 0;
    assert_null(run(rv, &o, &res));
    assert_int_equal(res, SL_MUTATE_NO_STARLIGHT);
    json_decref(rv);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[]",
        "{}",
        "{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\","
        "\"request\":{\"uid\":\"x\"}}",
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"Pod\",\"request\":{\"uid\":\"x\"}}",
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{}}",
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":"
        "{\"uid\":7}}",
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":",
        "",
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(bad); i++) {
        json_t *ans = NULL;
        enum sl_mutate_result res;
        sl_error_t err = NULL;
        int r = sl_mutate_review_bytes(bad[i], strlen(bad[i]), &base, &ans, &res, &err);
        assert_int_equal(r, -EINVAL);
        assert_null(ans);
        assert_true(strlen(sl_error_msg(err, r)) > 10);
        print_message("  %zu: %s\n", i, sl_error_msg(err, r));
        sl_error_free(&err);
    }
}

static void test_escape(void **state)
{
    (void)state;
    /* the patch path escapes the / of the annotation key (RFC 6901) */
    json_t *pod = json_pack("{s:{s:{s:s}},s:{s:[{s:s}]}}", "metadata", "annotations",
                            SL_ANN_PROVISION, "true", "spec", "containers", "image", "r/a");
    json_t *patch = sl_mutate_pod_patch(pod, (const char *const[]){"r/a"}, 1, &base);
    const json_t *op1 = json_array_get(patch, 1);
    assert_string_equal(str_at(op1, "path"), "/metadata/annotations/starlight-c.dev~1images");
    json_decref(patch);
    json_decref(pod);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_annotated_pod), cmocka_unit_test(test_existing_fields),
        cmocka_unit_test(test_opt_in),        cmocka_unit_test(test_proxy_answers),
        cmocka_unit_test(test_malformed),     cmocka_unit_test(test_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
