/* Unit tests: kubeconfig parsing (contexts, data vs files, merge of a KUBECONFIG list,
 * credential plugins, hostile YAML) and in-cluster configuration. */
#include "test.h"

#include "k8s.h"

#include <stdio.h>
#include <string.h>

static const char basic[] = "apiVersion: v1\n"
                            "kind: Config\n"
                            "current-context: dev\n"
                            "clusters:\n"
                            "- name: c1\n"
                            "  cluster:\n"
                            "    server: https://127.0.0.1:6443/\n"
                            "    certificate-authority-data: LS0tLS1CRUdJTg==\n"
                            "- name: c2\n"
                            "  cluster:\n"
                            "    server: http://[::1]:8080\n"
                            "    insecure-skip-tls-verify: true\n"
                            "    certificate-authority: ca/ca.pem\n"
                            "contexts:\n"
                            "- name: dev\n"
                            "  context: {cluster: c1, user: u1, namespace: team}\n"
                            "- name: other\n"
                            "  context:\n"
                            "    cluster: c2\n"
                            "    user: u2\n"
                            "users:\n"
                            "- name: u1\n"
                            "  user:\n"
                            "    token: abc.def\n"
                            "- name: u2\n"
                            "  user:\n"
                            "    client-certificate: cert.pem\n"
                            "    client-key: /abs/key.pem\n";

static int parse(const char *text, const char *ctx, struct sl_k8s_config *c, sl_error_t *err)
{
    return sl_k8s_config_parse_kubeconfig(text, strlen(text), "/etc/kube", "test", ctx, c, err);
}

static void test_current_context(void **state)
{
    (void)state;
    struct sl_k8s_config c = {0};
    sl_error_t err = NULL;
    assert_int_equal(parse(basic, NULL, &c, &err), 0);
    assert_string_equal(c.server, "https://127.0.0.1:6443");
    assert_string_equal(c.namespace, "team");
    assert_string_equal(c.ca_pem, "-----BEGIN");
    assert_null(c.ca_file);
    assert_string_equal(c.token, "abc.def");
    assert_false(c.insecure);
    sl_k8s_config_free(&c);
}

static void test_other_context_paths(void **state)
{
    (void)state;
    struct sl_k8s_config c = {0};
    sl_error_t err = NULL;
    assert_int_equal(parse(basic, "other", &c, &err), 0);
    assert_string_equal(c.server, "http://[::1]:8080");
    assert_true(c.insecure);
    assert_string_equal(c.ca_file, "/etc/kube/ca/ca.pem");
    assert_string_equal(c.client_cert_file, "/etc/kube/cert.pem");
    assert_string_equal(c.client_key_file, "/abs/key.pem");
    assert_string_equal(c.namespace, "default");
    assert_null(c.token);
    sl_k8s_config_free(&c);
}

static void expect_fail(const char *text, const char *ctx, int code, const char *needle)
{
    struct sl_k8s_config c = {0};
    sl_error_t err = NULL;
    int r = parse(text, ctx, &c, &err);
    if (r != -code || !err || !strstr(err->msg, needle))
        fail_msg("expected -%d with `%s`, got %d: %s", code, needle, r, err ? err->msg : "-");
    sl_error_free(&err);
    sl_k8s_config_free(&c);
}

static void test_errors(void **state)
{
    (void)state;
    expect_fail(basic, "nope", EINVAL, "context `nope` not found");
    expect_fail("current-context: x\n", NULL, EINVAL, "context `x` not found");
    expect_fail("clusters: []\n", NULL, EINVAL, "no current-context");
    expect_fail("- a\n- b\n", NULL, EINVAL, "not a mapping");
    expect_fail("current-context: a\ncontexts:\n- name: a\n  context: {cluster: c}\n"
                "clusters:\n- name: c\n  cluster: {server: ftp://x}\n",
                NULL, EINVAL, "not an http(s) URL");
    expect_fail("current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n"
                "clusters:\n- name: c\n  cluster: {server: 'https://x'}\n"
                "users:\n- name: u\n  user:\n    exec:\n      command: aws\n",
                NULL, ENOTSUP, "unsupported");
    expect_fail("current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n"
                "clusters:\n- name: c\n  cluster: {server: 'https://x'}\n"
                "users:\n- name: u\n  user: {auth-provider: {name: gcp}}\n",
                NULL, ENOTSUP, "credential plugin");
    expect_fail("current-context: a\ncontexts:\n- name: a\n  context: {cluster: c}\n"
                "clusters:\n- name: c\n  cluster: {server: 'https://x', "
                "certificate-authority-data: '!!notbase64'}\n",
                NULL, EINVAL, "not valid base64");
    expect_fail("current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n"
                "clusters:\n- name: c\n  cluster: {server: 'https://x'}\n"
                "users:\n- name: u\n  user: {client-certificate: /a}\n",
                NULL, EINVAL, "needs its key");
}

static void test_hostile(void **state)
{
    (void)state;
    /* billion laughs: anchors/aliases refused outright */
    expect_fail("a: &a [x, x]\nb: [*a, *a]\n", NULL, EINVAL, "anchors");
    expect_fail("a: *b\n", NULL, EINVAL, "aliases");
    /* deep nesting */
    char deep[1000];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        deep[n++] = '[';
    for (int i = 0; i < 200; i++)
        deep[n++] = ']';
    deep[n] = 0;
    expect_fail(deep, NULL, EINVAL, "nested deeper");
    expect_fail("a: 1\na: 2\n", NULL, EINVAL, "duplicate key");
    expect_fail("{[a]: 1}\n", NULL, EINVAL, "mapping keys must be scalars");
    expect_fail("a: b\n---\nc: d\n", NULL, EINVAL, "more than one YAML document");
    expect_fail("a: \"\\x\"\n", NULL, EINVAL, "YAML error");
    expect_fail("current-context: a\ncontexts:\n- name: a\n  context: {cluster: c}\n"
                "clusters:\n- name: c\n  cluster: {server: 'https://x', "
                "certificate-authority-data: 'QUEAQQ=='}\n",
                NULL, EINVAL, "NUL byte");
    /* wrong types everywhere are "not found", never a crash */
    expect_fail("current-context: [a]\ncontexts: 5\n", NULL, EINVAL, "no current-context");
    expect_fail("current-context: a\ncontexts: {a: b}\n", NULL, EINVAL, "not found");
    expect_fail("current-context: a\ncontexts:\n- 7\n- name: a\n  context: [1]\n", NULL, EINVAL,
                "not found");
    /* an empty document */
    expect_fail("", NULL, EINVAL, "no current-context");
}

static char tmpdir[] = "/tmp/sl-test-kubeconfig-XXXXXX";

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_merge_list(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(tmpdir));
    write_file("a", "current-context: first\n"
                    "contexts:\n- name: first\n  context: {cluster: c, user: u}\n"
                    "clusters:\n- name: c\n  cluster: {server: 'https://a:1'}\n");
    write_file("b", "current-context: second\n"
                    "contexts:\n- name: second\n  context: {cluster: c, user: u}\n"
                    "clusters:\n- name: c\n  cluster: {server: 'https://b:2'}\n"
                    "users:\n- name: u\n  user: {tokenFile: tok}\n");
    char list[1024];
    snprintf(list, sizeof(list), "%s/a:%s/missing:%s/b", tmpdir, tmpdir, tmpdir);
    struct sl_k8s_config c = {0};
    sl_error_t err = NULL;
    int r = sl_k8s_config_from_kubeconfig(list, NULL, &c, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    assert_string_equal(c.server, "https://a:1"); /* first cluster `c` wins */
    char tok[512];
    snprintf(tok, sizeof(tok), "%s/tok", tmpdir);
    assert_string_equal(c.token_file, tok); /* user from b, path relative to b */
    sl_k8s_config_free(&c);
    r = sl_k8s_config_from_kubeconfig(list, "second", &c, &err);
    assert_int_equal(r, 0);
    sl_k8s_config_free(&c);

    /* a single explicit missing file is an error */
    snprintf(list, sizeof(list), "%s/missing", tmpdir);
    assert_int_equal(sl_k8s_config_from_kubeconfig(list, NULL, &c, &err), -ENOENT);
    sl_error_free(&err);
}

static void test_in_cluster(void **state)
{
    (void)state;
    struct sl_k8s_config c = {0};
    sl_error_t err = NULL;
    write_file("namespace", "kube-app\n");
    write_file("token", "t0k\n");
    write_file("ca.crt", "pem");
    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(sl_k8s_config_in_cluster(tmpdir, &c, &err), -ENOENT);
    sl_error_free(&err);
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    assert_int_equal(sl_k8s_config_in_cluster(tmpdir, &c, &err), 0);
    assert_string_equal(c.server, "https://[fd00::1]:6443");
    assert_string_equal(c.namespace, "kube-app");
    assert_non_null(c.ca_file);
    assert_non_null(c.token_file);
    sl_k8s_config_free(&c);
    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "44x", 1);
    assert_int_equal(sl_k8s_config_in_cluster(tmpdir, &c, &err), -EINVAL);
    sl_error_free(&err);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(sl_k8s_config_in_cluster(tmpdir, &c, &err), 0);
    assert_string_equal(c.server, "https://10.0.0.1:443");
    /* the client reads the token file */
    struct sl_k8s_client *cl = NULL;
    assert_int_equal(sl_k8s_client_new(&c, NULL, &cl, &err), 0);
    assert_string_equal(sl_k8s_client_namespace(cl), "kube-app");
    sl_k8s_client_free(cl);
    sl_k8s_config_free(&c);
    unsetenv("KUBERNETES_SERVICE_HOST");
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* Event messages are cut at 1024 bytes: never inside a multibyte UTF-8 character. */
static void test_utf8_cut(void **state)
{
    (void)state;
    char msg[1100];
    memset(msg, 'a', 1022);
    strcpy(msg + 1022, "\xe2\x82\xac tail"); /* "€" spans bytes 1022..1024 */
    assert_int_equal(sl_k8s_utf8_cut(msg, 1024), 1022);
    assert_int_equal(sl_k8s_utf8_cut(msg, 1023), 1022);
    assert_int_equal(sl_k8s_utf8_cut(msg, 1025), 1025);
    assert_int_equal(sl_k8s_utf8_cut(msg, 1022), 1022);
    assert_int_equal(sl_k8s_utf8_cut("\xf0\x9f\x98\x80", 3), 0); /* 4-byte emoji */
    assert_int_equal(sl_k8s_utf8_cut("\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(sl_k8s_utf8_cut("\xc3\xa9", 1), 0);
    assert_int_equal(sl_k8s_utf8_cut("ab", 2), 2);
    assert_int_equal(sl_k8s_utf8_cut("", 0), 0);
    /* the cut text is valid UTF-8 for jansson (json_string would return NULL otherwise) */
    size_t n = sl_k8s_utf8_cut(msg, 1024);
    json_t *j = json_stringn(msg, n);
    assert_non_null(j);
    json_decref(j);
    assert_null(json_stringn(msg, 1024)); /* the naive cut is what broke Events */
}

static void test_paths_and_time(void **state)
{
    (void)state;
    char *p = sl_k8s_path("v1", "ns", "pods", "a b", NULL);
    assert_string_equal(p, "/api/v1/namespaces/ns/pods/a%20b");
    free(p);
    p = sl_k8s_path("coordination.k8s.io/v1", "x", "leases", "l", NULL);
    assert_string_equal(p, "/apis/coordination.k8s.io/v1/namespaces/x/leases/l");
    free(p);
    p = sl_k8s_path("v1", NULL, "nodes", "n1", "status");
    assert_string_equal(p, "/api/v1/nodes/n1/status");
    free(p);
    const char *kv[] = {
        "fieldSelector", "spec.nodeName=n1", "labelSelector", NULL, "x", "a&b", NULL};
    p = sl_k8s_query(kv);
    assert_string_equal(p, "fieldSelector=spec.nodeName%3Dn1&x=a%26b");
    free(p);
    char buf[40];
    sl_k8s_time(1700000000123456LL, true, buf, sizeof(buf));
    assert_string_equal(buf, "2023-11-14T22:13:20.123456Z");
    long long us = 0;
    assert_int_equal(sl_k8s_time_parse(buf, &us), 0);
    assert_true(us == 1700000000123456LL);
    assert_int_equal(sl_k8s_time_parse("2023-11-14T23:13:20+01:00", &us), 0);
    assert_true(us == 1700000000000000LL);
    assert_int_equal(sl_k8s_time_parse("2023-11-14", &us), -EINVAL);
    assert_int_equal(sl_k8s_time_parse("2023-11-14T23:13:20.Z", &us), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_current_context), cmocka_unit_test(test_other_context_paths),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_merge_list),      cmocka_unit_test(test_in_cluster),
        cmocka_unit_test(test_paths_and_time),  cmocka_unit_test(test_utf8_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
