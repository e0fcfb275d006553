#include "test.h"

#include "auth.h"
#include "base64.h"
#include "cleanup.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_challenges(void **state)
{
    struct sl_auth_challenges c;
    sl_error_t err = NULL;

    assert_int_equal(
        sl_auth_parse_challenges(
            "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
            "scope=\"repository:library/redis:pull\"",
            &c, &err),
        0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.v[0].scheme, SL_AUTH_BEARER);
    assert_string_equal(sl_auth_challenge_param(&c.v[0], "realm"), "https://auth.docker.io/token");
    assert_string_equal(sl_auth_challenge_param(&c.v[0], "SERVICE"), "registry.docker.io");
    assert_string_equal(sl_auth_challenge_param(&c.v[0], "scope"), "repository:library/redis:pull");
    assert_null(sl_auth_challenge_param(&c.v[0], "error"));
    sl_auth_challenges_free(&c);

    /* Several challenges, tokens and quoted strings with escapes, odd spacing. */
    assert_int_equal(sl_auth_parse_challenges(
                         "basic realm=\"Registry \\\"Realm\\\"\" , Bearer realm=tok , "
                         "service = svc,error=\"insufficient_scope\",  Negotiate abc==, Foo",
                         &c, &err),
                     0);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.v[0].scheme, SL_AUTH_BASIC);
    assert_string_equal(sl_auth_challenge_param(&c.v[0], "realm"), "Registry \"Realm\"");
    assert_int_equal(c.v[1].scheme, SL_AUTH_BEARER);
    assert_string_equal(sl_auth_challenge_param(&c.v[1], "realm"), "tok");
    assert_string_equal(sl_auth_challenge_param(&c.v[1], "service"), "svc");
    assert_string_equal(sl_auth_challenge_param(&c.v[1], "error"), "insufficient_scope");
    assert_int_equal(c.v[2].scheme, SL_AUTH_OTHER);
    assert_string_equal(c.v[2].scheme_name, "Negotiate");
    assert_int_equal(c.v[2].n_params, 0);
    assert_string_equal(c.v[3].scheme_name, "Foo");
    assert_ptr_equal(sl_auth_find(&c, SL_AUTH_BEARER), &c.v[1]);
    sl_auth_challenges_free(&c);

    /* Commas inside quoted values do not split. */
    assert_int_equal(
        sl_auth_parse_challenges("Bearer realm=\"a,b\",scope=\"repository:x:pull,push\"", &c, &err),
        0);
    assert_int_equal(c.n, 1);
    assert_string_equal(sl_auth_challenge_param(&c.v[0], "scope"), "repository:x:pull,push");
    sl_auth_challenges_free(&c);

    static const char *const bad[] = {
        "",
        "   ,  ",
        "Bearer realm=\"unterminated",
        "Bearer a=b, c=",
        "Bearer realm=\"x\" service=\"y\"",
        "Bearer realm=x, =y",
        "=x",
        "Bearer realm=\"x\\",
        "Bearer\x01 realm=x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = sl_auth_parse_challenges(bad[i], &c, &err);
        if (r != -EINVAL)
            fail_msg("`%s` parsed", bad[i]);
        assert_non_null(strstr(err->msg, "WWW-Authenticate"));
        sl_error_free(&err);
    }
    char *huge = malloc(SL_AUTH_HEADER_MAX + 10);
    memset(huge, 'a', SL_AUTH_HEADER_MAX + 9);
    huge[SL_AUTH_HEADER_MAX + 9] = 0;
    assert_int_equal(sl_auth_parse_challenges(huge, &c, NULL), -EINVAL);
    free(huge);
}

static void test_base64(void **state)
{
    char *e = sl_base64_encode("user:pass", 9, NULL);
    assert_string_equal(e, "dXNlcjpwYXNz");
    free(e);
    e = sl_base64_encode("ab", 2, NULL);
    assert_string_equal(e, "YWI=");
    free(e);
    uint8_t *d = NULL;
    size_t n = 0;
    assert_int_equal(sl_base64_decode("YWI=", 4, &d, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal((char *)d, "ab");
    free(d);
    assert_int_equal(sl_base64_decode("YWI", 3, &d, &n), 0); /* padding optional */
    assert_string_equal((char *)d, "ab");
    free(d);
    assert_int_equal(sl_base64_decode("Y", 1, &d, &n), -EINVAL);
    assert_int_equal(sl_base64_decode("YW!=", 4, &d, &n), -EINVAL);
    struct sl_auth_creds c = {.username = "u", .password = "p"};
    char *h = sl_auth_basic_header(&c);
    assert_string_equal(h, "Basic dTpw");
    free(h);
}

static const char config[] =
    "{\"auths\":{"
    "\"https://index.docker.io/v1/\":{\"auth\":\"aHViOmh1YnBhc3M=\"},"
    "\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6czNjcjN0Om9r\"},"
    "\"http://reg.example.com:8443/path\":{\"username\":\"bob\",\"password\":\"pw\"},"
    "\"helper.example.com\":{},"
    "\"bad.example.com\":{\"auth\":\"bm9jb2xvbg==\"},"
    "\"tok.example.com\":{\"identitytoken\":\"refresh\"}"
    "},\"credsStore\":\"desktop\"}";

static void test_docker_config(void **state)
{
    struct sl_auth_creds c;
    sl_error_t err = NULL;
    assert_int_equal(sl_auth_parse_docker_config(config, strlen(config), "docker.io", &c, &err), 1);
    assert_string_equal(c.username, "hub");
    assert_string_equal(c.password, "hubpass");
    sl_auth_creds_free(&c);
    assert_int_equal(
        sl_auth_parse_docker_config(config, strlen(config), "127.0.0.1:5000", &c, &err), 1);
    assert_string_equal(c.username, "alice");
    assert_string_equal(c.password, "s3cr3t:ok"); /* split at the first colon */
    sl_auth_creds_free(&c);
    assert_int_equal(
        sl_auth_parse_docker_config(config, strlen(config), "reg.example.com:8443", &c, &err), 1);
    assert_string_equal(c.username, "bob");
    sl_auth_creds_free(&c);
    assert_int_equal(
        sl_auth_parse_docker_config(config, strlen(config), "helper.example.com", &c, &err), 0);
    assert_int_equal(
        sl_auth_parse_docker_config(config, strlen(config), "tok.example.com", &c, &err), 1);
    assert_string_equal(c.identity_token, "refresh");
    assert_null(c.username);
    sl_auth_creds_free(&c);
    assert_int_equal(
        sl_auth_parse_docker_config(config, strlen(config), "127.0.0.1:5001", &c, &err), 0);
    assert_int_equal(
        sl_auth_parse_docker_config(config, strlen(config), "bad.example.com", &c, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "user:password"));
    sl_error_free(&err);
    assert_int_equal(sl_auth_parse_docker_config("{}", 2, "x", &c, &err), 0);
    assert_int_equal(sl_auth_parse_docker_config("{\"auths\":[]}", 12, "x", &c, &err), -EINVAL);
    sl_error_free(&err);
    assert_int_equal(sl_auth_parse_docker_config("nope", 4, "x", &c, &err), -EINVAL);
    sl_error_free(&err);
}

static void test_docker_config_file(void **state)
{
    char dir[] = "/tmp/sl-test-auth-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    fputs(config, f);
    fclose(f);

    struct sl_auth_creds c;
    sl_error_t err = NULL;
    assert_int_equal(sl_auth_load_docker_config(path, "127.0.0.1:5000", &c, &err), 1);
    assert_string_equal(c.username, "alice");
    sl_auth_creds_free(&c);
    setenv("DOCKER_CONFIG", dir, 1);
    assert_int_equal(sl_auth_load_docker_config(NULL, "docker.io", &c, &err), 1);
    assert_string_equal(c.username, "hub");
    sl_auth_creds_free(&c);
    /* A missing default file means anonymous; a missing explicit one is an error. */
    setenv("DOCKER_CONFIG", "/nonexistent-sl-dir", 1);
    assert_int_equal(sl_auth_load_docker_config(NULL, "docker.io", &c, &err), 0);
    assert_int_equal(sl_auth_load_docker_config("/nonexistent-sl/config.json", "x", &c, &err),
                     -ENOENT);
    assert_non_null(strstr(err->msg, "/nonexistent-sl/config.json"));
    sl_error_free(&err);
    unsetenv("DOCKER_CONFIG");
    unlink(path);
    rmdir(dir);
}

static void test_token_response(void **state)
{
    char *tok = NULL;
    int64_t exp = 0;
    sl_error_t err = NULL;
    const char *a = "{\"token\":\"abc\",\"expires_in\":300}";
    assert_int_equal(sl_auth_parse_token_response(a, strlen(a), &tok, &exp, &err), 0);
    assert_string_equal(tok, "abc");
    assert_int_equal(exp, 300);
    free(tok);
    const char *b = "{\"access_token\":\"xyz\"}";
    assert_int_equal(sl_auth_parse_token_response(b, strlen(b), &tok, &exp, &err), 0);
    assert_string_equal(tok, "xyz");
    assert_int_equal(exp, 60);
    free(tok);
    const char *c = "{\"token\":\"\",\"access_token\":\"z\"}";
    assert_int_equal(sl_auth_parse_token_response(c, strlen(c), &tok, &exp, &err), 0);
    assert_string_equal(tok, "z");
    free(tok);
    const char *bad[] = {"{}", "{\"token\":5}", "{\"token\":\"a b\"}", "[]", "x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sl_auth_parse_token_response(bad[i], strlen(bad[i]), &tok, &exp, &err),
                         -EINVAL);
        sl_error_free(&err);
    }
}

static void test_token_cache(void **state)
{
    struct sl_token_cache *c = sl_token_cache_new();
    assert_null(sl_token_cache_get(c, "k"));
    sl_token_cache_put(c, "k", "t1", 300);
    char *t = sl_token_cache_get(c, "k");
    assert_string_equal(t, "t1");
    free(t);
    sl_token_cache_put(c, "k", "t2", 300);
    t = sl_token_cache_get(c, "k");
    assert_string_equal(t, "t2");
    free(t);
    sl_token_cache_put(c, "gone", "t", 0); /* already expired */
    assert_null(sl_token_cache_get(c, "gone"));
    for (int i = 0; i < 300; i++) {
        char k[32];
        snprintf(k, sizeof(k), "key%d", i);
        sl_token_cache_put(c, k, "v", 100 + i);
    }
    t = sl_token_cache_get(c, "key299");
    assert_string_equal(t, "v");
    free(t);
    sl_token_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenges),     cmocka_unit_test(test_base64),
        cmocka_unit_test(test_docker_config),  cmocka_unit_test(test_docker_config_file),
        cmocka_unit_test(test_token_response), cmocka_unit_test(test_token_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
